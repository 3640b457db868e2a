"""Errors of the domain and the services, reported faithfully; the API edge picks HTTP statuses.

    DomainError
    ├── NotFound           the thing does not exist, or the caller may not see it
    ├── Forbidden          the caller may see it but may not do this
    ├── Conflict           the request clashes with the current state (status, duplicate id, a race)
    │   └── StaleImage     a compare-and-swap save lost a race on `fields` (services retry)
    ├── Invalid            the request itself is malformed or breaks a rule
    ├── RefusedData        image data that is not what it claims to be, or is unsafe to keep
    ├── TooLarge           a size cap or quota would be exceeded
    ├── RangeNotSatisfiable  a byte range lies outside the image data
    └── Gone               the image was deleted while its data was being uploaded
"""

from __future__ import annotations


class DomainError(Exception):
    """Base of every error the domain and the services raise on purpose."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotFound(DomainError):
    pass


class Forbidden(DomainError):
    pass


class Conflict(DomainError):
    pass


class StaleImage(Conflict):
    """Raised by a repository when fields a save read or wrote changed since it read them."""

    def __init__(self, message: str, fields: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.fields = fields


class Invalid(DomainError):
    pass


class RefusedData(DomainError):
    """The bytes were inspected and refused (a format that does not match `disk_format`, a
    qcow2 with a backing file, a bad signature, ...); the message names the reason."""


class TooLarge(DomainError):
    pass


class RangeNotSatisfiable(DomainError):
    def __init__(self, message: str, size: int) -> None:
        super().__init__(message)
        self.size = size


class Gone(DomainError):
    pass
