"""Use cases: what a caller can do with images, independent of HTTP and of storage technology."""
