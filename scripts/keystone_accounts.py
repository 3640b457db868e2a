"""The accounts and catalog the Glimpse identity tests need, made in a running Keystone.

Run by `scripts/keystone` (standard library only, so any Python 3 will do):

    keystone_accounts.py wait URL PID TIMEOUT
        Wait until Keystone at URL answers `GET /v3` with 200. Exit 1 with a message as soon as
        process PID is gone, or after TIMEOUT seconds.
    keystone_accounts.py populate URL ADMIN_PASSWORD_FILE IMAGE_URL FACTS_JSON
        Point the identity endpoints at URL, then create (all in domain Default):
        - project `service` with user `glimpse` holding admin and service there (what
          keystonemiddleware's auth_token needs to validate tokens);
        - projects `alpha`, `beta` and `gamma`, each with users `<project>-member` (role
          member, which implies reader) and `<project>-reader` (role reader);
        - service `glance` of type `image` with public, internal and admin endpoints at IMAGE_URL;
        and write the facts the tests need to FACTS_JSON (see `facts` below for its shape).
    keystone_accounts.py free-port
        Print a TCP port free on 127.0.0.1. `free-port PORT` exits 1 if PORT is taken.
    keystone_accounts.py probe URL
        Exit 0 if GET URL answers 2xx within 10 s, else 1.
    keystone_accounts.py image-endpoint FACTS_JSON IMAGE_URL
    keystone_accounts.py remote-image-endpoint FACTS_JSON IMAGE_URL
        Point the image endpoints of the Keystone that FACTS_JSON describes at IMAGE_URL (for a
        Glimpse whose port is known only after Keystone is up) and record it in FACTS_JSON.

Passwords are random per start. Everything goes through Keystone's v3 API as the admin user.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import sys
import time
import urllib.error
import urllib.request
from typing import Any

REGION = "RegionOne"
#: The catalog type of a second API server (Tempest's `alternate_image_endpoint`).
REMOTE_IMAGE_TYPE = "image_remote"
DOMAIN = "Default"
INTERFACES = ("public", "internal", "admin")
#: Projects the tests act in, and the users each gets: name suffix → role assigned.
TEST_PROJECTS = ("alpha", "beta", "gamma")
TEST_ROLES = {"member": "member", "reader": "reader"}


class Api:
    """A tiny Keystone v3 client: JSON in, JSON out, errors raised with Keystone's message."""

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")
        self.token = ""

    def call(self, method: str, path: str, body: dict[str, Any] | None = None,
             ) -> tuple[dict[str, Any], dict[str, str]]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.url + path, data=data, method=method)
        request.add_header("Content-Type", "application/json")
        if self.token:
            request.add_header("X-Auth-Token", self.token)
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                raw = response.read()
                return (json.loads(raw) if raw else {}), dict(response.headers)
        except urllib.error.HTTPError as err:
            detail = err.read().decode(errors="replace")
            raise SystemExit(f"keystone: {method} {path} -> {err.code}: {detail}") from None

    def login(self, username: str, password: str, project: str) -> dict[str, Any]:
        body, headers = self.call("POST", "/v3/auth/tokens", password_auth(username, password,
                                                                          project))
        self.token = headers["X-Subject-Token"]
        token: dict[str, Any] = body["token"]
        return token

    def find(self, collection: str, **query: str) -> list[dict[str, Any]]:
        qs = "&".join(f"{k}={v}" for k, v in query.items())
        body, _ = self.call("GET", f"/v3/{collection}?{qs}")
        return list(body[collection])


def password_auth(username: str, password: str, project: str) -> dict[str, Any]:
    """A project-scoped password authentication request body."""
    return {"auth": {
        "identity": {"methods": ["password"], "password": {"user": {
            "name": username, "domain": {"name": DOMAIN}, "password": password}}},
        "scope": {"project": {"name": project, "domain": {"name": DOMAIN}}},
    }}


def wait(url: str, pid: int, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            print(f"keystone: the server process {pid} exited during start-up", file=sys.stderr)
            return 1
        try:
            left = max(0.5, min(5.0, deadline - time.monotonic()))
            with urllib.request.urlopen(url.rstrip("/") + "/v3", timeout=left) as response:
                if response.status == 200:
                    return 0
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    print(f"keystone: no answer from {url}/v3 within {timeout:g} s", file=sys.stderr)
    return 1


def set_endpoints(api: Api, service_id: str, url: str) -> None:
    """Give `service_id` exactly one endpoint per interface in REGION, at `url`."""
    existing = {e["interface"]: e for e in api.find("endpoints", service_id=service_id)}
    for interface in INTERFACES:
        endpoint = {"url": url, "interface": interface, "region_id": REGION,
                    "service_id": service_id, "enabled": True}
        if interface in existing:
            api.call("PATCH", f"/v3/endpoints/{existing[interface]['id']}",
                     {"endpoint": {"url": url}})
        else:
            api.call("POST", "/v3/endpoints", {"endpoint": endpoint})


def create_user(api: Api, name: str, project: dict[str, Any], roles: list[str],
                role_ids: dict[str, str]) -> dict[str, Any]:
    password = secrets.token_urlsafe(18)
    body, _ = api.call("POST", "/v3/users", {"user": {
        "name": name, "password": password, "domain_id": "default",
        "default_project_id": project["id"], "enabled": True}})
    user_id = body["user"]["id"]
    for role in roles:
        api.call("PUT", f"/v3/projects/{project['id']}/users/{user_id}/roles/{role_ids[role]}")
    return {"username": name, "password": password, "user_id": user_id,
            "project_name": project["name"], "project_id": project["id"], "roles": roles,
            "user_domain_name": DOMAIN, "project_domain_name": DOMAIN}


def populate(url: str, admin_password: str, image_url: str, facts_path: str) -> int:
    api = Api(url)
    admin_token = api.login("admin", admin_password, "admin")
    identity = api.find("services", type="identity")[0]
    set_endpoints(api, identity["id"], url.rstrip("/") + "/v3")

    role_ids = {r["name"]: r["id"] for r in api.find("roles")}
    accounts: dict[str, dict[str, Any]] = {"admin": {
        "username": "admin", "password": admin_password, "user_id": admin_token["user"]["id"],
        "project_name": "admin", "project_id": admin_token["project"]["id"], "roles": ["admin"],
        "user_domain_name": DOMAIN, "project_domain_name": DOMAIN}}
    projects = {"admin": admin_token["project"]["id"]}
    for name in ("service", *TEST_PROJECTS):
        body, _ = api.call("POST", "/v3/projects", {"project": {
            "name": name, "domain_id": "default", "enabled": True,
            "description": "Glimpse identity tests"}})
        project = body["project"]
        projects[name] = project["id"]
        if name == "service":
            accounts["glimpse"] = create_user(api, "glimpse", project, ["admin", "service"],
                                              role_ids)
            continue
        for suffix, role in TEST_ROLES.items():
            accounts[f"{name}-{suffix}"] = create_user(api, f"{name}-{suffix}", project, [role],
                                                       role_ids)

    body, _ = api.call("POST", "/v3/services", {"service": {
        "name": "glance", "type": "image", "enabled": True, "description": "Glimpse"}})
    set_endpoints(api, body["service"]["id"], image_url)

    facts = {
        "url": url.rstrip("/"),
        "auth_url": url.rstrip("/") + "/v3",
        "region": REGION,
        "image_url": image_url,
        "image_service_id": body["service"]["id"],
        "projects": projects,
        "accounts": accounts,
    }
    tmp = facts_path + ".tmp"
    with open(tmp, "w") as out:
        json.dump(facts, out, indent=2)
    os.replace(tmp, facts_path)
    return 0


def image_endpoint(facts_path: str, image_url: str) -> int:
    with open(facts_path) as src:
        facts = json.load(src)
    admin = facts["accounts"]["admin"]
    api = Api(facts["url"])
    api.login(admin["username"], admin["password"], admin["project_name"])
    set_endpoints(api, facts["image_service_id"], image_url)
    facts["image_url"] = image_url
    tmp = facts_path + ".tmp"
    with open(tmp, "w") as out:
        json.dump(facts, out, indent=2)
    os.replace(tmp, facts_path)
    return 0


def remote_image_endpoint(facts_path: str, image_url: str) -> int:
    """A second image service in the catalog (type `image_remote`, Tempest's
    `alternate_image_endpoint`) at `image_url`: another API server of the same deployment."""
    with open(facts_path) as src:
        facts = json.load(src)
    admin = facts["accounts"]["admin"]
    api = Api(facts["url"])
    api.login(admin["username"], admin["password"], admin["project_name"])
    found = api.find("services", type=REMOTE_IMAGE_TYPE)
    if found:
        service_id = found[0]["id"]
    else:
        body, _ = api.call("POST", "/v3/services", {"service": {
            "name": "glance_remote", "type": REMOTE_IMAGE_TYPE, "enabled": True,
            "description": "Glimpse, a second API server"}})
        service_id = body["service"]["id"]
    set_endpoints(api, service_id, image_url)
    facts["image_remote_url"] = image_url
    tmp = facts_path + ".tmp"
    with open(tmp, "w") as out:
        json.dump(facts, out, indent=2)
    os.replace(tmp, facts_path)
    return 0


def free_port(port: int = 0) -> int:
    with socket.socket() as sock:
        # As the server will bind: a port whose old connections linger in TIME_WAIT is free.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return 1
        print(sock.getsockname()[1])
    return 0


def probe(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10):
            return 0
    except (urllib.error.URLError, OSError):
        return 1


def main(argv: list[str]) -> int:
    match argv:
        case ["free-port"]:
            return free_port()
        case ["free-port", port]:
            return free_port(int(port))
        case ["probe", url]:
            return probe(url)
        case ["wait", url, pid, timeout]:
            return wait(url, int(pid), float(timeout))
        case ["populate", url, password_file, image_url, facts]:
            with open(password_file) as src:
                password = src.read().strip()
            return populate(url, password, image_url, facts)
        case ["image-endpoint", facts, image_url]:
            return image_endpoint(facts, image_url)
        case ["remote-image-endpoint", facts, image_url]:
            return remote_image_endpoint(facts, image_url)
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
