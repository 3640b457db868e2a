"""`auth = tokens`: API tokens from the token file (`glimpse.tokens`, `glimpse token ...`).

The token comes in `X-Auth-Token` (what OpenStack clients send) or `Authorization: Bearer`.
A missing or unknown token is 401 with `WWW-Authenticate: Bearer realm="glimpse"`.

The file is checked for a change (inode, size, mtime: one `stat`) on every request and re-read
when it changed, so a revocation holds from the next request on, without a restart. A token
that matched once is remembered (by a SHA-256 of the whole token, per file version), so the
deliberately slow hash runs once per token, file version and process; the check runs on a
small thread pool, never on the event loop. An unreadable or malformed file is 503 (nothing is
let through on a file that cannot be read), and the server recovers once the file is fixed.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from glimpse.api.errors import IdentityUnavailable, Unauthenticated
from glimpse.api.identity import RawHeaders, presented_token
from glimpse.domain.context import RequestContext
from glimpse.tokens import ApiToken, TokenFile, TokenFileError, split

log = logging.getLogger(__name__)

CHALLENGE = 'Bearer realm="glimpse"'
#: Threads hashing presented secrets (a miss costs one PBKDF2 run).
THREADS = 2
#: Tokens remembered as verified; the memory is cleared when it is full (or the file changes).
VERIFIED_MAX = 4096

_Version = tuple[int, int, int]


class TokenAuthenticator:
    """Authenticates requests against the token file at `path`."""

    requires_credentials = True

    def __init__(self, path: Path) -> None:
        self._file = TokenFile(path)
        self._version: _Version | None = None
        self._tokens: dict[str, ApiToken] = {}
        self._problem: str | None = None
        self._verified: dict[bytes, str] = {}
        self._pool = ThreadPoolExecutor(max_workers=THREADS, thread_name_prefix="tokens")
        self._refresh()
        if not self._tokens and self._problem is None:
            log.warning("auth = tokens and %s holds no token yet: every request but / and "
                        "/healthcheck gets 401 (create one with `glimpse token create`)", path)

    def _refresh(self) -> None:
        try:
            st = os.stat(self._file.path)
            version: _Version | None = (st.st_ino, st.st_size, st.st_mtime_ns)
        except FileNotFoundError:
            version = None
        except OSError as exc:
            self._set_problem(f"cannot read the token file: {exc.strerror}")
            return
        if version == self._version and self._problem is None:
            return
        try:
            tokens = self._file.load()
        except TokenFileError as exc:
            self._set_problem(str(exc))
            return
        if self._problem is not None:
            log.info("token file %s readable again", self._file.path)
        self._version, self._tokens, self._problem = version, tokens, None
        self._verified = {}

    def _set_problem(self, problem: str) -> None:
        if problem != self._problem:
            log.error("token file unusable, answering 503: %s", problem)
        self._problem, self._tokens, self._verified = problem, {}, {}
        self._version = None

    async def authenticate(self, headers: RawHeaders, request_id: str) -> RequestContext:
        self._refresh()
        if self._problem is not None:
            raise IdentityUnavailable("The API token file cannot be read; tokens cannot be "
                                      "checked now.")
        token = presented_token(headers)
        if token is None:
            raise Unauthenticated(CHALLENGE)
        key = hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()
        token_id = self._verified.get(key)
        entry = self._tokens.get(token_id) if token_id is not None else None
        if entry is None:
            entry = await self._verify(token)
            if len(self._verified) >= VERIFIED_MAX:
                self._verified.clear()
            self._verified[key] = entry.id
        return RequestContext(project_id=entry.project, roles=frozenset(entry.roles),
                              user_id=entry.user, request_id=request_id, auth_token=token,
                              authenticated=True)

    async def _verify(self, token: str) -> ApiToken:
        parts = split(token)
        entry = self._tokens.get(parts[0]) if parts is not None else None
        if parts is None or entry is None:
            raise Unauthenticated(CHALLENGE)
        loop = asyncio.get_running_loop()
        if not await loop.run_in_executor(self._pool, entry.matches, parts[1]):
            raise Unauthenticated(CHALLENGE)
        return entry

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
