"""`auth = tokens`: the real `glimpse token` CLI and a real `glimpse serve` reading its file."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.identity.logs import access_line
from tests.servers import Server, start_server

CHALLENGE = 'Bearer realm="glimpse"'


def glimpse(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "GLIMPSE_DATA_DIR": str(data_dir)}
    return subprocess.run([sys.executable, "-m", "glimpse", *args], env=env,
                          capture_output=True, text=True, timeout=60)


def create(data_dir: Path, project: str, user: str, roles: str,
           description: str | None = None) -> str:
    args = ["token", "create", "--project", project, "--user", user, "--roles", roles]
    if description:
        args += ["--description", description]
    done = glimpse(data_dir, *args)
    assert done.returncode == 0, done.stderr
    token = done.stdout.strip()
    assert token.startswith("glimpse-"), done.stdout
    return token


def token_id(token: str) -> str:
    return token.removeprefix("glimpse-").split(".")[0]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("tokens") / "data"


@pytest.fixture(scope="module")
def tokens(data_dir: Path) -> dict[str, str]:
    return {
        "alpha": create(data_dir, "alpha", "alice", "Member,reader", "alpha's member"),
        "beta": create(data_dir, "beta", "bob", "member,reader"),
        "admin": create(data_dir, "admin", "root", "admin"),
    }


@pytest.fixture(scope="module")
def server(data_dir: Path, tokens: dict[str, str]) -> Iterator[Server]:
    running = start_server(data_dir, auth="tokens")
    yield running
    running.stop()


def client(server: Server, token: str | None = None, **headers: str) -> httpx.Client:
    if token is not None:
        headers["X-Auth-Token"] = token
    return httpx.Client(base_url=server.url, timeout=30,
                        headers={"Accept": "application/json", **headers})


def test_token_file_holds_salted_hashes_only(data_dir: Path, tokens: dict[str, str]) -> None:
    path = data_dir / "tokens"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_text()
    document = json.loads(text)
    entries = document["tokens"]
    assert len(entries) == len(tokens)
    for token in tokens.values():
        secret = token.split(".", 1)[1]
        assert secret not in text
    salts = {e["salt"] for e in entries}
    assert len(salts) == len(entries)  # one salt per token
    alpha = next(e for e in entries if e["id"] == token_id(tokens["alpha"]))
    assert alpha["roles"] == ["member", "reader"]  # lower-cased
    assert (alpha["project"], alpha["user"]) == ("alpha", "alice")


def test_list_shows_ids_never_secrets(data_dir: Path, tokens: dict[str, str]) -> None:
    done = glimpse(data_dir, "token", "list")
    assert done.returncode == 0, done.stderr
    for token in tokens.values():
        assert token_id(token) in done.stdout
        assert token.split(".", 1)[1] not in done.stdout
    assert "alpha's member" in done.stdout


def test_create_refuses_bad_values(data_dir: Path) -> None:
    done = glimpse(data_dir, "token", "create", "--project", "p", "--user", "u", "--roles", " ,")
    assert done.returncode == 2
    assert "roles" in done.stderr
    done = glimpse(data_dir, "token", "create", "--project", "p\tq", "--user", "u",
                   "--roles", "member")
    assert done.returncode == 2
    assert "project" in done.stderr


def test_revoking_an_unknown_token_fails(data_dir: Path) -> None:
    done = glimpse(data_dir, "token", "revoke", "0123456789abcdef")
    assert done.returncode == 1
    assert "no token" in done.stderr


def test_public_paths_need_no_token(server: Server) -> None:
    with client(server) as c:
        assert c.get("/").status_code == 300
        assert c.get("/versions").status_code == 200
        health = c.get("/healthcheck")
        assert health.status_code == 200
        assert health.text == "OK"
        assert health.headers["content-type"].startswith("text/plain")


@pytest.mark.parametrize("path", ["/v2/images", "/v2/schemas/image", "/v2/no-such-thing",
                                  "/v2.1/images"])
def test_no_token_is_401_with_bearer_challenge(server: Server, path: str) -> None:
    with client(server) as c:
        resp = c.get(path)
    assert resp.status_code == 401, resp.text
    assert resp.headers["www-authenticate"] == CHALLENGE
    assert resp.json()["message"] == "The request you have made requires authentication."
    assert resp.headers["x-openstack-request-id"].startswith("req-")


@pytest.mark.parametrize("kind", ["garbage", "unknown id", "wrong secret", "truncated"])
def test_invalid_token_is_401(server: Server, tokens: dict[str, str], kind: str) -> None:
    good = tokens["alpha"]
    bad = {
        "garbage": "not-a-token",
        "unknown id": "glimpse-0123456789abcdef." + good.split(".", 1)[1],
        "wrong secret": good.split(".", 1)[0] + ".x" + good.split(".", 1)[1][1:],
        "truncated": good[:-1],
    }[kind]
    with client(server, bad) as c:
        resp = c.get("/v2/images")
    assert resp.status_code == 401, resp.text
    assert resp.headers["www-authenticate"] == CHALLENGE


def test_client_identity_headers_are_ignored(server: Server, tokens: dict[str, str]) -> None:
    forged = {"X-Project-Id": "beta", "X-Tenant-Id": "beta", "X-Roles": "admin",
              "X-User-Id": "mallory", "X-Identity-Status": "Confirmed"}
    with client(server) as anonymous:
        resp = anonymous.get("/v2/images", headers=forged)
        assert resp.status_code == 401  # headers are no credentials
    with client(server, tokens["beta"]) as beta:
        private = beta.post("/v2/images", json={"name": "beta's", "visibility": "private"})
        assert private.status_code == 201, private.text
        assert private.json()["owner"] == "beta"
    with client(server, tokens["alpha"], **forged) as alpha:
        made = alpha.post("/v2/images", json={"name": "alpha's"})
        assert made.status_code == 201, made.text
        assert made.json()["owner"] == "alpha"  # from the token, not X-Project-Id
        listed = {i["id"] for i in alpha.get("/v2/images").json()["images"]}
        assert private.json()["id"] not in listed  # X-Roles: admin gave nothing
        assert alpha.get(f"/v2/images/{private.json()['id']}").status_code == 404
    with client(server, tokens["admin"]) as admin:
        listed = {i["id"] for i in admin.get("/v2/images").json()["images"]}
        assert private.json()["id"] in listed  # a real admin token does


def test_bearer_authorization_is_accepted(server: Server, tokens: dict[str, str]) -> None:
    with client(server, Authorization=f"Bearer {tokens['alpha']}") as c:
        resp = c.post("/v2/images", json={"name": "bearer"})
    assert resp.status_code == 201, resp.text
    assert resp.json()["owner"] == "alpha"


def test_access_log_names_request_id_and_identity(server: Server,
                                                  tokens: dict[str, str]) -> None:
    request_id = "req-access-log-tokens-0001"
    with client(server, tokens["alpha"], **{"X-OpenStack-Request-ID": request_id}) as c:
        assert c.get("/v2/images", params={"limit": 1}).status_code == 200
    with client(server, **{"X-OpenStack-Request-ID": request_id + "-anon"}) as c:
        assert c.get("/v2/images").status_code == 401
    line = access_line(server, request_id)
    assert "glimpse.access" in line
    assert "GET /v2/images?limit=1 200 " in line
    assert "user=alice project=alpha" in line
    anon = access_line(server, f"{request_id}-anon")
    assert "GET /v2/images 401 " in anon and "user=- project=-" in anon
    assert tokens["alpha"] not in server.log()  # never the token itself


def test_revocation_is_seen_by_the_running_server(server: Server, data_dir: Path) -> None:
    token = create(data_dir, "gamma", "carol", "member")
    with client(server, token) as c:
        assert c.get("/v2/images").status_code == 200  # now also in the verified memory
        done = glimpse(data_dir, "token", "revoke", token_id(token))
        assert done.returncode == 0, done.stderr
        assert token_id(token) not in glimpse(data_dir, "token", "list").stdout
        resp = c.get("/v2/images")
        assert resp.status_code == 401, resp.text
        assert resp.headers["www-authenticate"] == CHALLENGE
    # A token created while the server runs is taken at once, too.
    fresh = create(data_dir, "gamma", "carol", "member")
    with client(server, fresh) as c:
        assert c.get("/v2/images").status_code == 200


def test_unreadable_token_file_is_503_then_recovers(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    token = create(data_dir, "delta", "dave", "member")
    server = start_server(data_dir, auth="tokens")
    try:
        with client(server, token) as c:
            assert c.get("/v2/images").status_code == 200
            path = data_dir / "tokens"
            good = path.read_bytes()
            broken = data_dir / "broken"
            broken.write_text("{not json")
            os.replace(broken, path)
            resp = c.get("/v2/images")
            assert resp.status_code == 503, resp.text  # never a pass, never a 500
            assert "token file" in resp.json()["message"]
            assert c.get("/healthcheck").status_code == 200
            fixed = data_dir / "fixed"
            fixed.write_bytes(good)
            os.replace(fixed, path)
            assert c.get("/v2/images").status_code == 200
    finally:
        server.stop()


def test_no_token_file_means_every_call_is_401(tmp_path: Path) -> None:
    server = start_server(tmp_path / "data", auth="tokens",
                          token_file=str(tmp_path / "elsewhere" / "tokens"))
    try:
        with client(server, "glimpse-0123456789abcdef.secret") as c:
            assert c.get("/v2/images").status_code == 401
        assert "holds no token yet" in server.log()
    finally:
        server.stop()
