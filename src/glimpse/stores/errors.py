"""Errors every store driver raises, whatever its backend.

    StoreError             every one carries `store_id` once it leaves a `Store`
    ├── ObjectNotFound     no committed object under that key
    ├── ObjectExists       a commit found an object committed under its key (it stored nothing)
    ├── InvalidKey         the key is malformed or would escape the store
    ├── InvalidRange       offset/length outside the object
    ├── StoreFull          no space left (ENOSPC, EFBIG, EDQUOT, quota)
    ├── WriteDenied        the backend refuses writes (permissions, read-only store)
    ├── Unsupported        the driver lacks the capability (ranged reads)
    └── StoreUnavailable   the backend cannot be reached or failed
"""

from __future__ import annotations

from typing import Self


class StoreError(Exception):
    def __init__(self, message: str, store_id: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.store_id = store_id

    def stamp(self, store_id: str) -> Self:
        """Name the store the error came from (the first stamp wins)."""
        if self.store_id is None:
            self.store_id = store_id
        return self


class ObjectExists(StoreError):
    pass


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


class Unsupported(StoreError):
    pass


class StoreUnavailable(StoreError):
    pass
