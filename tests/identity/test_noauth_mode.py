"""`auth = noauth` (the default): loopback only unless overridden; headers narrow the context;
the health check and the access log, as in every mode."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.identity.logs import access_line
from tests.servers import Server, free_port, start_server


def serve(data_dir: Path, *args: str, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "glimpse", "serve", "--data-dir", str(data_dir), "--workers", "1",
         *args], env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)


def finish(process: subprocess.Popen[str]) -> tuple[int, str]:
    try:
        _, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return process.returncode, err


@pytest.mark.parametrize("how", ["flag", "env"])
def test_noauth_refuses_a_network_address(tmp_path: Path, how: str) -> None:
    if how == "flag":
        process = serve(tmp_path, "--host", "0.0.0.0", "--port", str(free_port()))
    else:
        process = serve(tmp_path, GLIMPSE_HOST="0.0.0.0", GLIMPSE_PORT=str(free_port()))
    status, err = finish(process)
    assert status == 2, err
    assert err.startswith("glimpse: configuration error: host: '0.0.0.0'"), err
    assert "--insecure-noauth" in err
    assert not (tmp_path / "glimpse.db").exists()  # refused before anything was done


def test_noauth_on_a_network_address_with_the_override(tmp_path: Path) -> None:
    port = free_port()
    process = serve(tmp_path, "--host", "0.0.0.0", "--port", str(port), "--insecure-noauth")
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, process.communicate()[1]
            try:  # probed on loopback only
                resp = httpx.get(f"http://127.0.0.1:{port}/healthcheck", timeout=1)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "server did not start"
                time.sleep(0.1)
        assert resp.status_code == 200
        assert resp.text == "OK"
    finally:
        process.send_signal(signal.SIGTERM)
        finish(process)


def test_noauth_serves_localhost_names(tmp_path: Path) -> None:
    server = start_server(tmp_path / "data", host="localhost")
    server.stop()


def test_unknown_mode_is_refused(tmp_path: Path) -> None:
    status, err = finish(serve(tmp_path, GLIMPSE_AUTH="kerberos"))
    assert status == 2
    assert "auth: unknown mode 'kerberos'" in err


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = start_server(tmp_path_factory.mktemp("noauth") / "data")
    yield running
    running.stop()


def test_healthcheck(server: Server) -> None:
    resp = httpx.get(f"{server.url}/healthcheck")
    assert resp.status_code == 200
    assert resp.text == "OK"
    assert resp.headers["content-type"].startswith("text/plain")
    assert resp.headers["x-openstack-request-id"].startswith("req-")
    assert httpx.post(f"{server.url}/healthcheck").status_code == 405


def test_headers_still_narrow_the_context(server: Server) -> None:
    headers = {"X-Project-Id": "narrowed", "X-Roles": "member", "X-User-Id": "nora",
               "X-OpenStack-Request-ID": "req-noauth-access-0001"}
    resp = httpx.post(f"{server.url}/v2/images", json={"name": "n"}, headers=headers)
    assert resp.status_code == 201, resp.text
    assert resp.json()["owner"] == "narrowed"
    line = access_line(server, "req-noauth-access-0001")
    assert "POST /v2/images 201 " in line
    assert "user=nora project=narrowed" in line


def test_access_log_escapes_the_path(server: Server) -> None:
    resp = httpx.get(f"{server.url}/v2/images/%0aforged%20line",
                     headers={"X-OpenStack-Request-ID": "req-noauth-escape-0001"})
    assert resp.status_code == 404
    line = access_line(server, "req-noauth-escape-0001")
    assert "/v2/images/%0aforged%20line 404" in line
    assert not any(x.startswith("forged") for x in server.log().splitlines())


def test_access_log_can_be_turned_off(tmp_path: Path) -> None:
    quiet = start_server(tmp_path / "data", access_log="false")
    try:
        httpx.get(f"{quiet.url}/v2/images", headers={"X-OpenStack-Request-ID": "req-quiet-1"})
    finally:
        quiet.stop()
    assert "req-quiet-1" not in quiet.log()


def test_percent_encoded_identity_headers_are_decoded(server: Server) -> None:
    """python-glanceclient sends its identity_headers quoted: `X-Roles: member%2Creader`."""
    with httpx.Client(base_url=server.url, timeout=30, headers={"Accept": "application/json"}) as c:
        made = c.post("/v2/images", json={}, headers={"X-Project-Id": "p%20q"})
        assert made.status_code == 201 and made.json()["owner"] == "p q", made.text
        image = made.json()["id"]
        quoted = {"X-Project-Id": "p%20q", "X-Roles": "member%2Creader"}
        assert c.get(f"/v2/images/{image}", headers=quoted).status_code == 200
        reader_only = {"X-Project-Id": "p%20q", "X-Roles": "reader"}
        assert c.post("/v2/images", json={}, headers=reader_only).status_code == 403
        bad = c.get("/v2/images", headers={"X-Project-Id": "a%00b"})
        assert bad.status_code == 400 and "X-Project-Id" in bad.json()["message"], bad.text
