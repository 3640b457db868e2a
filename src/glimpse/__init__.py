"""Glimpse: an image service for VM images, wire-compatible with OpenStack Glance v2."""

__version__ = "0.1.0"
