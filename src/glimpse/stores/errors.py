"""Errors every store driver raises, whatever its backend.

    StoreError
    ├── ObjectNotFound     no committed object under that key
    ├── InvalidKey         the key is malformed or would escape the store
    ├── InvalidRange       offset/length outside the object
    ├── StoreFull          no space left (ENOSPC, EFBIG, EDQUOT, quota)
    ├── WriteDenied        the backend refuses writes (permissions, read-only store)
    └── StoreUnavailable   the backend cannot be reached or failed
"""

from __future__ import annotations


class StoreError(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ObjectNotFound(StoreError):
    pass


class InvalidKey(StoreError):
    pass


class InvalidRange(StoreError):
    def __init__(self, message: str, size: int) -> None:
        super().__init__(message)
        self.size = size


class StoreFull(StoreError):
    pass


class WriteDenied(StoreError):
    pass


class StoreUnavailable(StoreError):
    pass
