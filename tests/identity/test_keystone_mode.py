"""`auth = keystone`: a real `glimpse serve` validating real tokens of a real Keystone with
keystonemiddleware (the session's Keystone of tests/identity/conftest.py; the tests that stop a
Keystone start a dedicated one)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from glimpse.api.errors import Unauthenticated
from glimpse.api.keystone import KeystoneAuthenticator
from glimpse.config import Settings
from glimpse.domain.context import RequestContext
from tests.identity.logs import access_line
from tests.keystone import Keystone, start_keystone
from tests.servers import Server, free_port, start_server

AUTH_MESSAGE = "The request you have made requires authentication."


def keystone_settings(keystone: Keystone, account: str = "glimpse",
                      **extra: object) -> dict[str, object]:
    service = keystone.accounts[account]
    return {"auth": "keystone", "keystone_auth_url": keystone.auth_url,
            "keystone_username": service.username, "keystone_password": service.password,
            "keystone_project_name": service.project_name, **extra}


@pytest.fixture(scope="module")
def server(keystone: Keystone, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = start_server(tmp_path_factory.mktemp("keystone-mode") / "data",
                           **keystone_settings(keystone))
    yield running
    running.stop()


def client(server: Server, token: str | None = None, **headers: str) -> httpx.Client:
    if token is not None:
        headers["X-Auth-Token"] = token
    return httpx.Client(base_url=server.url, timeout=60,
                        headers={"Accept": "application/json", **headers})


def assert_401(resp: httpx.Response, keystone: Keystone) -> None:
    assert resp.status_code == 401, resp.text
    assert resp.headers["www-authenticate"] == f'Keystone uri="{keystone.auth_url}"'
    assert resp.json()["message"] == AUTH_MESSAGE


def test_public_paths_need_no_token(server: Server) -> None:
    with client(server) as c:
        assert c.get("/").status_code == 300
        assert c.get("/versions").status_code == 200
        assert c.get("/healthcheck").text == "OK"


@pytest.mark.parametrize("path", ["/v2/images", "/v2/schemas/image", "/v2/nothing-here"])
def test_no_token_is_401_pointing_at_keystone(server: Server, keystone: Keystone,
                                              path: str) -> None:
    with client(server) as c:
        assert_401(c.get(path), keystone)


def test_identity_headers_alone_are_no_credentials(server: Server, keystone: Keystone) -> None:
    forged = {"X-Identity-Status": "Confirmed", "X-Roles": "admin", "X-Project-Id": "admin",
              "X-User-Id": "admin", "X-Service-Roles": "service"}
    with client(server, **forged) as c:
        assert_401(c.get("/v2/images"), keystone)


def test_invalid_token_is_401(server: Server, keystone: Keystone) -> None:
    with client(server, "gAAAAAnot-a-token") as c:
        assert_401(c.get("/v2/images"), keystone)


def test_revoked_token_is_401(server: Server, keystone: Keystone) -> None:
    with client(server, keystone.revoked_token("alpha-member")) as c:
        assert_401(c.get("/v2/images"), keystone)


def test_expired_token_is_401(server: Server, keystone: Keystone) -> None:
    with client(server, keystone.expired_token("alpha-member")) as c:
        assert_401(c.get("/v2/images"), keystone)


def test_revocation_of_a_cached_token_holds_within_the_cache_time(
        keystone: Keystone, tmp_path: Path) -> None:
    server = start_server(tmp_path / "data", **keystone_settings(keystone),
                          keystone_token_cache_time=2)
    try:
        token = keystone.token("alpha-member")
        with client(server, token) as c:
            assert c.get("/v2/images").status_code == 200  # validated and cached
            httpx.delete(f"{keystone.auth_url}/auth/tokens", timeout=60, headers={
                "X-Auth-Token": token, "X-Subject-Token": token}).raise_for_status()
            deadline = time.monotonic() + 60
            while (resp := c.get("/v2/images")).status_code == 200:
                assert time.monotonic() < deadline, "the revoked token is still accepted"
                time.sleep(0.25)
            assert_401(resp, keystone)
    finally:
        server.stop()


def test_without_a_cache_a_revocation_holds_at_once(keystone: Keystone, tmp_path: Path) -> None:
    server = start_server(tmp_path / "data", **keystone_settings(keystone),
                          keystone_token_cache_time=-1)
    try:
        token = keystone.token("alpha-member")
        with client(server, token) as c:
            assert c.get("/v2/images").status_code == 200
            assert c.get("/v2/images").status_code == 200
            httpx.delete(f"{keystone.auth_url}/auth/tokens", timeout=60, headers={
                "X-Auth-Token": token, "X-Subject-Token": token}).raise_for_status()
            assert_401(c.get("/v2/images"), keystone)
    finally:
        server.stop()


@pytest.mark.parametrize("name", ["admin", "alpha-member", "alpha-reader"])
def test_valid_tokens_are_served(server: Server, keystone: Keystone, name: str) -> None:
    with client(server, keystone.token(name)) as c:
        resp = c.get("/v2/images")
    assert resp.status_code == 200, resp.text


def test_identity_comes_from_the_token_not_the_headers(server: Server,
                                                      keystone: Keystone) -> None:
    projects = keystone.projects
    with client(server, keystone.token("beta-member")) as beta:
        private = beta.post("/v2/images", json={"name": "beta's", "visibility": "private"})
        assert private.status_code == 201, private.text
        assert private.json()["owner"] == projects["beta"]
    image_id = private.json()["id"]
    forged = {"X-Project-Id": projects["beta"], "X-Tenant-Id": projects["beta"],
              "X-Roles": "admin", "X-User-Id": "mallory", "X-Identity-Status": "Confirmed",
              "X-OpenStack-Request-ID": "req-keystone-access-0001"}
    with client(server, keystone.token("alpha-member"), **forged) as alpha:
        made = alpha.post("/v2/images", json={"name": "alpha's"})
        assert made.status_code == 201, made.text
        assert made.json()["owner"] == projects["alpha"]
        assert alpha.get(f"/v2/images/{image_id}").status_code == 404
    with client(server, keystone.token("admin")) as admin:
        assert admin.get(f"/v2/images/{image_id}").status_code == 200  # a real admin sees it
    account = keystone.accounts["alpha-member"]
    line = access_line(server, "req-keystone-access-0001")
    assert f"user={account.user_id} project={projects['alpha']}" in line
    assert "mallory" not in line


def test_context_from_a_real_token(keystone: Keystone) -> None:
    """The whole context as the routes get it: ids, domains, lower-cased roles, service roles."""
    settings = Settings(**keystone_settings(keystone))  # type: ignore[arg-type]
    authenticator = KeystoneAuthenticator(settings)
    member = keystone.accounts["alpha-member"]
    token = keystone.token("alpha-member")
    service_token = keystone.token("glimpse")

    async def run() -> tuple[RequestContext, RequestContext]:
        plain = await authenticator.authenticate([(b"x-auth-token", token.encode())], "req-1")
        with_service = await authenticator.authenticate(
            [(b"x-auth-token", token.encode()), (b"x-service-token", service_token.encode()),
             (b"x-service-roles", b"forged")], "req-2")
        return plain, with_service

    try:
        plain, with_service = asyncio.run(run())
        assert plain == RequestContext(
            project_id=member.project_id, roles=frozenset({"member", "reader"}),
            user_id=member.user_id, request_id="req-1", user_domain_id="default",
            project_domain_id="default", service_roles=frozenset(), auth_token=token,
            authenticated=True)
        assert not plain.is_admin
        assert token not in repr(plain)
        assert with_service.service_roles >= {"service", "admin"}
        assert with_service.roles == plain.roles

        async def refused(headers: list[tuple[bytes, bytes]]) -> Unauthenticated:
            with pytest.raises(Unauthenticated) as caught:
                await authenticator.authenticate(headers, "req-3")
            return caught.value

        bad_service = asyncio.run(refused([(b"x-auth-token", token.encode()),
                                           (b"x-service-token", b"gAAAAAbad")]))
        assert bad_service.status == 401
        admin = asyncio.run(authenticator.authenticate(
            [(b"authorization", f"Bearer {keystone.token('admin')}".encode())], "req-4"))
        assert admin.is_admin
    finally:
        authenticator.close()


def test_context_of_a_system_scoped_token(keystone: Keystone) -> None:
    """Bootstrap gives admin the admin role on the system: such a token has no project."""
    body = keystone.accounts["admin"].password_auth()
    body["auth"]["scope"] = {"system": {"all": True}}
    issued = keystone.issue(body)
    assert issued.status_code == 201, issued.text
    authenticator = KeystoneAuthenticator(
        Settings(**keystone_settings(keystone)))  # type: ignore[arg-type]
    try:
        context = asyncio.run(authenticator.authenticate(
            [(b"x-auth-token", issued.headers["X-Subject-Token"].encode())], "req-s"))
    finally:
        authenticator.close()
    assert (context.project_id, context.system_scope) == (None, "all")
    assert context.user_id == keystone.accounts["admin"].user_id


def test_keystone_unreachable_is_503_with_a_clear_message(tmp_path: Path) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}/v3"
    server = start_server(tmp_path / "data", auth="keystone", keystone_auth_url=nowhere,
                          keystone_username="glimpse", keystone_password="secret",
                          keystone_project_name="service", keystone_timeout=2)
    try:
        assert "cannot be asked now" in server.log()  # the start-up check's warning
        with client(server, "gAAAAAany-token") as c:
            resp = c.get("/v2/images")
            assert resp.status_code == 503, resp.text
            assert "Keystone" in resp.json()["message"]
            assert "unavailable" in resp.json()["message"]
            assert c.get("/healthcheck").status_code == 200
        with client(server) as c:
            assert c.get("/v2/images").status_code == 401  # no token needs no Keystone
    finally:
        server.stop()


def _processes(keystone: Keystone) -> list[psutil.Process]:
    """The gunicorn master of a Keystone this test started, and its workers."""
    assert keystone.directory is not None
    master = psutil.Process(int((keystone.directory / "keystone.pid").read_text()))
    return [master, *master.children(recursive=True)]


def test_stopped_keystone_is_503_and_glimpse_recovers(tmp_path: Path) -> None:
    """A dedicated Keystone (the session's one is shared): first paused with SIGSTOP (it
    accepts connections and never answers), then resumed, then stopped for good.

    (A restart on the same port is not possible soon after a stop: `scripts/keystone start
    --port` refuses a port held by the stopped server's TIME_WAIT connections.)"""
    keystone = start_keystone(tmp_path / "keystone")
    server: Server | None = None
    try:
        server = start_server(tmp_path / "data", **keystone_settings(keystone),
                              keystone_timeout=2)
        with client(server, keystone.token("alpha-member")) as c:
            assert c.get("/v2/images").status_code == 200
        unseen = [keystone.token("alpha-member") for _ in range(2)]  # not cached by Glimpse
        paused = _processes(keystone)
        for process in paused:
            process.suspend()
        try:
            with client(server, unseen[0]) as c:
                resp = c.get("/v2/images")
            assert resp.status_code == 503, resp.text
            assert "Keystone" in resp.json()["message"]
        finally:
            for process in paused:
                process.resume()
        with client(server, unseen[0]) as c:
            resp = c.get("/v2/images")
        assert resp.status_code == 200, resp.text  # recovered: the same token now validates
        keystone.stop()
        with client(server, unseen[1]) as c:
            resp = c.get("/v2/images")
            assert resp.status_code == 503, resp.text
            assert "Keystone" in resp.json()["message"]
            assert c.get("/healthcheck").status_code == 200
        assert "Traceback" not in server.log()
    finally:
        if server is not None:
            server.stop()
        keystone.stop()


def _serve(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "glimpse", "serve", "--data-dir", str(tmp_path), "--workers", "1",
         "--port", str(free_port()), "--auth", "keystone"],
        env={**os.environ, **env}, capture_output=True, text=True, timeout=120)


def test_keystone_mode_needs_its_settings(tmp_path: Path) -> None:
    done = _serve(tmp_path)
    assert done.returncode == 2
    assert "keystone_auth_url: required with auth = keystone" in done.stderr


def test_wrong_service_password_is_refused_at_start(tmp_path: Path,
                                                    keystone: Keystone) -> None:
    settings = keystone_settings(keystone, keystone_password="not-the-password")
    env = {f"GLIMPSE_{k.upper()}": str(v) for k, v in settings.items()}
    done = _serve(tmp_path, **env)
    assert done.returncode == 2, done.stderr
    assert "refused the service credentials" in done.stderr


def test_service_user_without_the_service_role_is_refused_at_start(
        tmp_path: Path, keystone: Keystone) -> None:
    env = {f"GLIMPSE_{k.upper()}": str(v)
           for k, v in keystone_settings(keystone, "alpha-reader").items()}
    done = _serve(tmp_path, **env)
    assert done.returncode == 2, done.stderr
    assert "may not validate tokens" in done.stderr
