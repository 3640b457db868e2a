"""The API token file of `auth = tokens`: tokens for deployments without Keystone.

A token is `glimpse-<id>.<secret>`: `id` (16 hex digits) names its entry, so a lookup is one
dictionary access; `secret` (32 random bytes, URL-safe base64) is never stored. The file keeps,
per token, a per-token random salt and PBKDF2-HMAC-SHA256 of the secret (`iterations` recorded
with it), plus the project, user and roles it stands for. Checking compares digests with
`hmac.compare_digest` (constant time).

The file is JSON, written whole to a temporary file in the same folder (mode 0600), fsynced and
renamed over the old one, so a reader sees the old or the new file, never half of one; writers
(`glimpse token create|revoke`) take a lock beside it first, so two of them cannot lose each
other's change. Running servers notice a new file by its inode, size and mtime and re-read it.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import hmac
import json
import os
import secrets
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

PREFIX = "glimpse-"
#: The secret is 256 random bits, so no amount of hashing is what protects it; the stretching
#: only slows an attacker holding a copy of the file. Modest, as a server checks a token once
#: per file version and process (then its verified cache answers).
ITERATIONS = 20_000
FORMAT = 1
MAX_FIELD = 255


class TokenFileError(ValueError):
    """The token file cannot be read or written, or a value cannot be stored in it."""


@dataclass(frozen=True)
class ApiToken:
    """One entry of the token file (the secret itself is not in it)."""

    id: str
    project: str
    user: str
    roles: tuple[str, ...]
    description: str
    created_at: str
    salt: str
    digest: str
    iterations: int = ITERATIONS

    def matches(self, secret: str) -> bool:
        """Whether `secret` is this token's secret (constant-time comparison)."""
        return hmac.compare_digest(_digest(secret, bytes.fromhex(self.salt), self.iterations),
                                   bytes.fromhex(self.digest))


def _digest(secret: str, salt: bytes, iterations: int) -> bytes:
    return hashlib.pbkdf2_hmac("sha256", secret.encode(), salt, iterations)


def split(token: str) -> tuple[str, str] | None:
    """`(id, secret)` of a token in Glimpse's format, or None."""
    if not token.startswith(PREFIX):
        return None
    token_id, dot, secret = token[len(PREFIX):].partition(".")
    if not dot or len(token_id) != 16 or not secret:
        return None
    return token_id, secret


def _checked(name: str, value: str) -> str:
    value = value.strip()
    if not value or len(value) > MAX_FIELD or not all(" " <= c <= "~" for c in value):
        raise TokenFileError(f"{name}: must be 1 to {MAX_FIELD} printable ASCII characters")
    return value


def _entry(raw: Mapping[str, Any]) -> ApiToken:
    try:
        return ApiToken(
            id=str(raw["id"]), project=str(raw["project"]), user=str(raw["user"]),
            roles=tuple(str(r) for r in raw["roles"]), description=str(raw["description"]),
            created_at=str(raw["created_at"]), salt=str(raw["salt"]),
            digest=str(raw["digest"]), iterations=int(raw["iterations"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise TokenFileError(f"malformed entry {raw!r:.80}: {exc}") from exc


def parse(data: bytes) -> dict[str, ApiToken]:
    """The tokens of a token file's content, by id; `TokenFileError` if it is malformed."""
    try:
        document = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise TokenFileError(f"not JSON: {exc}") from exc
    if not isinstance(document, dict) or document.get("format") != FORMAT or not isinstance(
            document.get("tokens"), list):
        raise TokenFileError(f"not a token file of format {FORMAT}")
    entries = [_entry(raw) for raw in document["tokens"]]
    return {entry.id: entry for entry in entries}


class TokenFile:
    """The token file at `path`: read it, and change it atomically under a lock."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def load(self) -> dict[str, ApiToken]:
        """Every token by id; no file is no token."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise TokenFileError(f"cannot read {self.path}: {exc.strerror}") from exc
        try:
            return parse(data)
        except TokenFileError as exc:
            raise TokenFileError(f"{self.path}: {exc}") from exc

    def create(self, project: str, user: str, roles: list[str],
               description: str = "") -> tuple[ApiToken, str]:
        """A new token for `user` in `project` with `roles`: its entry and the token itself,
        which is shown this once and can never be recovered."""
        role_names = tuple(dict.fromkeys(_checked("roles", r).lower() for r in roles if r.strip()))
        if not role_names:
            raise TokenFileError("roles: name at least one role")
        description = description.strip()
        if description:
            _checked("description", description)
        secret = secrets.token_urlsafe(32)
        salt = secrets.token_bytes(16)
        with self._changing() as tokens:
            token_id = secrets.token_hex(8)
            while token_id in tokens:
                token_id = secrets.token_hex(8)
            entry = ApiToken(
                id=token_id, project=_checked("project", project), user=_checked("user", user),
                roles=role_names, description=description,
                created_at=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                salt=salt.hex(), digest=_digest(secret, salt, ITERATIONS).hex(),
            )
            tokens[token_id] = entry
        return entry, f"{PREFIX}{token_id}.{secret}"

    def revoke(self, token_id: str) -> ApiToken:
        """Remove token `token_id` (its id, or the whole token); `KeyError` if there is none."""
        parts = split(token_id)
        if parts is not None:
            token_id = parts[0]
        with self._changing() as tokens:
            return tokens.pop(token_id)

    @contextlib.contextmanager
    def _changing(self) -> Iterator[dict[str, ApiToken]]:
        """The tokens, locked against other writers; written back if the block succeeds."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock_path = self.path.with_name(self.path.name + ".lock")
        with open(os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600), "rb") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            tokens = self.load()
            yield tokens
            self._write(tokens)

    def _write(self, tokens: Mapping[str, ApiToken]) -> None:
        document = {"format": FORMAT, "tokens": [asdict(t) for t in tokens.values()]}
        payload = json.dumps(document, indent=1).encode() + b"\n"
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.parent)
        try:
            os.fchmod(fd, 0o600)  # mkstemp makes it 0600; said again, as it is the point
            with os.fdopen(fd, "wb") as out:
                out.write(payload)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        directory = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
