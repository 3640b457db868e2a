"""Pure parts of identity: settings of the modes, the token format and file, header parsing."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

from glimpse import config
from glimpse.api.identity import NoAuth, presented_token, roles_of
from glimpse.domain.errors import Invalid
from glimpse.tokens import TokenFile, TokenFileError, parse, split


def load(**env: str) -> config.Settings:
    return config.load(environ={f"GLIMPSE_{k.upper()}": v for k, v in env.items()})


def test_default_is_noauth_on_loopback() -> None:
    settings = load()
    assert (settings.auth, settings.allow_noauth_on_network, settings.access_log) == (
        "noauth", False, True)


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "127.0.0.2"])
def test_loopback_hosts_serve_noauth(host: str) -> None:
    assert load(host=host).host == host


@pytest.mark.parametrize("host", ["0.0.0.0", "::"])
def test_network_hosts_need_the_override(host: str) -> None:
    with pytest.raises(config.ConfigError, match="--insecure-noauth"):
        load(host=host)
    assert load(host=host, allow_noauth_on_network="true").allow_noauth_on_network
    assert load(host=host, auth="tokens").auth == "tokens"


@pytest.mark.parametrize(("value", "expected"), [("1", True), ("Yes", True), ("off", False),
                                                 ("false", False)])
def test_booleans(value: str, expected: bool) -> None:
    assert load(access_log=value).access_log is expected


def test_a_boolean_that_is_none() -> None:
    with pytest.raises(config.ConfigError, match="access_log: cannot use 'maybe'"):
        load(access_log="maybe")


@pytest.mark.parametrize("missing", config.KEYSTONE_REQUIRED)
def test_keystone_mode_needs_url_and_credentials(missing: str) -> None:
    values = {"auth": "keystone", "keystone_auth_url": "http://127.0.0.1:5000/v3",
              "keystone_username": "glimpse", "keystone_password": "pw",
              "keystone_project_name": "service"}
    assert load(**values).www_authenticate_uri == "http://127.0.0.1:5000/v3"
    values[missing] = " "
    with pytest.raises(config.ConfigError, match=f"^{missing}: required with auth = keystone"):
        load(**values)


def test_keystone_url_must_be_http() -> None:
    with pytest.raises(config.ConfigError, match="keystone_auth_url: 'ftp://x'"):
        load(auth="keystone", keystone_auth_url="ftp://x", keystone_username="u",
             keystone_password="p", keystone_project_name="s")


@pytest.mark.parametrize("value", ["0", "-2"])
def test_token_cache_time_is_minus_one_or_positive(value: str) -> None:
    with pytest.raises(config.ConfigError, match="keystone_token_cache_time"):
        load(auth="keystone", keystone_auth_url="http://127.0.0.1:5000/v3",
             keystone_username="u", keystone_password="p", keystone_project_name="s",
             keystone_token_cache_time=value)


def test_password_is_not_in_repr() -> None:
    assert "hunter2" not in repr(load(keystone_password="hunter2"))


@pytest.mark.parametrize(("headers", "token"), [
    ([(b"x-auth-token", b" abc ")], "abc"),
    ([(b"authorization", b"Bearer abc")], "abc"),
    ([(b"authorization", b"bearer  abc")], "abc"),
    ([(b"authorization", b"Basic abc")], None),
    ([(b"x-auth-token", b"")], None),
    ([], None),
])
def test_presented_token(headers: list[tuple[bytes, bytes]], token: str | None) -> None:
    assert presented_token(headers) == token


def test_roles_are_lower_cased() -> None:
    assert roles_of(" Admin, ,reader ") == {"admin", "reader"}


def test_noauth_context_and_its_header_checks() -> None:
    noauth = NoAuth("admin")
    default = asyncio.run(noauth.authenticate([], "req-1"))
    assert (default.project_id, default.is_admin, default.authenticated) == ("admin", True, False)
    narrowed = asyncio.run(noauth.authenticate(
        [(b"x-tenant-id", b"p"), (b"x-roles", b"Member"), (b"x-user-id", b"u")], "req-2"))
    assert (narrowed.project_id, narrowed.roles, narrowed.user_id) == ("p", {"member"}, "u")
    with pytest.raises(Invalid, match="X-Roles"):
        asyncio.run(noauth.authenticate([(b"x-roles", b"caf\xe9")], "req-3"))


def test_token_round_trip(tmp_path: Path) -> None:
    tokens = TokenFile(tmp_path / "tokens")
    entry, token = tokens.create("p", "u", ["Reader", "reader", "member"], "note")
    token_id, secret = split(token) or ("", "")
    assert token_id == entry.id
    assert entry.roles == ("reader", "member")
    stored = tokens.load()[entry.id]
    assert stored.matches(secret)
    assert not stored.matches(secret[:-1] + ("A" if secret[-1] != "A" else "B"))
    assert tokens.revoke(token) == stored  # the whole token names it too
    assert tokens.load() == {}
    with pytest.raises(KeyError):
        tokens.revoke(entry.id)


@pytest.mark.parametrize("token", ["", "glimpse-", "glimpse-abc.def", "other-0123456789abcdef.x",
                                   "glimpse-0123456789abcdef."])
def test_malformed_tokens_do_not_split(token: str) -> None:
    assert split(token) is None


@pytest.mark.parametrize("content", [b"", b"[]", b'{"format": 2, "tokens": []}',
                                     b'{"format": 1, "tokens": [{"id": "x"}]}', b"\xff"])
def test_malformed_files_are_refused(content: bytes) -> None:
    with pytest.raises(TokenFileError):
        parse(content)


def test_concurrent_creates_lose_nothing(tmp_path: Path) -> None:
    env = {**os.environ, "GLIMPSE_DATA_DIR": str(tmp_path)}
    processes = [subprocess.Popen(
        [sys.executable, "-m", "glimpse", "token", "create", "--project", "p", "--user",
         f"u{i}", "--roles", "member"], env=env, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE) for i in range(6)]
    for process in processes:
        assert process.wait(60) == 0, process.stderr.read() if process.stderr else ""
        for pipe in (process.stdout, process.stderr):
            if pipe:
                pipe.close()
    users = {t.user for t in TokenFile(tmp_path / "tokens").load().values()}
    assert users == {f"u{i}" for i in range(6)}
