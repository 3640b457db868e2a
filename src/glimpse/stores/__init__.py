"""Byte stores: they keep opaque objects under keys and know nothing of images."""
