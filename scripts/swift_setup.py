"""Helpers of scripts/swift, run by Debian's /usr/bin/python3 (which has Swift's modules).

    swift_setup.py ports CACHE
        Print shell assignments of free 127.0.0.1 ports (proxy, account, container, object,
        memcached): the newest port layout with rings in CACHE whose ports are all free, else
        fresh ones.
    swift_setup.py rings ETC LAYOUT ACCOUNT_PORT CONTAINER_PORT OBJECT_PORT CACHE
        Put account, container and object rings (part power 10, one replica, one device d1) in
        ETC: copied from CACHE/<ports>/ when built before for that port layout, else built in
        this one process (no swift-ring-builder start-ups) and cached (the newest
        KEEP_LAYOUTS layouts are kept).
    swift_setup.py keystone KEYSTONE_JSON DIR
        For a Keystone-authenticated proxy: pick a free port for it and a random password for
        its service user, and write DIR/keystone.env (shell assignments for its configuration).
        No network: the proxy can start while `register` runs.
    swift_setup.py register DIR
        Register that proxy in the Keystone that KEYSTONE_JSON (of `scripts/keystone start`)
        describes, as its admin: region `swift-<port>`, the endpoints (public, internal, admin)
        of service `object-store` there at `http://127.0.0.1:<port>/v1/AUTH_$(project_id)s`,
        project `swift-<port>` with user `swift-<port>-member` (role member: an operator role of
        keystoneauth, random password), and user `swift-<port>-service` (role service on
        project service: what authtoken validates tokens with). Writes DIR/keystone-swift.json
        (the test account, for `wait`).
    swift_setup.py wait DIR TIMEOUT
        Wait until the Swift started from DIR authenticates and stores an object (through the
        Keystone proxy too, when DIR/keystone-swift.json exists); write DIR/swift.json. Exit 1
        as soon as one of its processes dies, or after TIMEOUT seconds.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import socket
import sys
import tempfile
import time
import urllib.error
import urllib.request
from typing import Any

NAMES = ("proxy", "account", "container", "object", "memcached")
USER, KEY = "test:tester", "testing"


KEEP_LAYOUTS = 16


def _free(port: int) -> bool:
    with socket.socket() as sock:
        # as the servers bind: a port some closed connection still lingers on is free
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _layouts(cache: str) -> list[str]:
    """Cached layouts (folder names `proxy-account-container-object-memcached`), newest first."""
    try:
        names = [n for n in os.listdir(cache) if n.count("-") == 4 and n.replace("-", "").isdigit()]
    except FileNotFoundError:
        return []
    return sorted(names, key=lambda n: os.stat(os.path.join(cache, n)).st_mtime, reverse=True)


def ports(cache: str) -> int:
    chosen: list[int] | None = None
    for layout in _layouts(cache):
        numbers = [int(p) for p in layout.split("-")]
        if all(_free(p) for p in numbers):
            chosen = numbers
            break
    if chosen is None:
        sockets = []
        for _ in NAMES:
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        chosen = [sock.getsockname()[1] for sock in sockets]
        for sock in sockets:
            sock.close()
    for name, port in zip(NAMES, chosen, strict=True):
        print(f"{name}_port={port}")
    return 0


def rings(etc: str, layout: str, account: str, container: str, object_: str,
          cache: str) -> int:
    cached = os.path.join(cache, layout)
    files = [f"{kind}.ring.gz" for kind in ("account", "container", "object")]
    if not all(os.path.exists(os.path.join(cached, f)) for f in files):
        from swift.common.ring import RingBuilder

        os.makedirs(cache, exist_ok=True)
        tmp = tempfile.mkdtemp(dir=cache, prefix="tmp-")
        for kind, port in (("account", account), ("container", container),
                           ("object", object_)):
            builder = RingBuilder(10, 1, 1)
            builder.add_dev({"id": 0, "region": 1, "zone": 1, "ip": "127.0.0.1",
                             "port": int(port), "device": "d1", "weight": 100.0, "meta": ""})
            builder.rebalance()
            builder.save(os.path.join(tmp, f"{kind}.builder"))
            builder.get_ring().save(os.path.join(tmp, f"{kind}.ring.gz"))
        try:
            os.rename(tmp, cached)
        except OSError:  # another start built the same layout meanwhile
            shutil.rmtree(tmp, ignore_errors=True)
    for name in files:
        shutil.copy(os.path.join(cached, name), os.path.join(etc, name))
    os.utime(cached)  # newest first, for `ports`
    for old in _layouts(cache)[KEEP_LAYOUTS:]:
        shutil.rmtree(os.path.join(cache, old), ignore_errors=True)
    return 0


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _probe(proxy: str) -> str | None:
    """None once an object goes in and out through every server, else what failed."""
    try:
        auth = urllib.request.Request(f"{proxy}/auth/v1.0",
                                      headers={"X-Auth-User": USER, "X-Auth-Key": KEY})
        with urllib.request.urlopen(auth, timeout=5) as response:
            token = response.headers["X-Auth-Token"]
            storage = response.headers["X-Storage-Url"]
        for method, path, body in (("PUT", "/glimpse-probe", None),
                                   ("PUT", "/glimpse-probe/probe", b"probe"),
                                   ("DELETE", "/glimpse-probe/probe", None)):
            request = urllib.request.Request(f"{storage}{path}", data=body, method=method,
                                             headers={"X-Auth-Token": token})
            with urllib.request.urlopen(request, timeout=5):
                pass
        return None
    except (urllib.error.URLError, OSError, KeyError) as exc:
        return str(exc)


def _keystone_api(keystone_json: str) -> tuple[Any, dict[str, Any]]:
    """An admin session of scripts/keystone_accounts.py's client, and the Keystone's facts."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from keystone_accounts import Api

    with open(keystone_json) as src:
        facts: dict[str, Any] = json.load(src)
    admin = facts["accounts"]["admin"]
    api = Api(facts["url"])
    api.login(admin["username"], admin["password"], admin["project_name"])
    return api, facts


def _user(api: Any, name: str, project_id: str, role_id: str, password: str) -> None:
    """Make user `name` (or give it a new password) with `role_id` on `project_id`."""
    found = api.find("users", name=name, domain_id="default")
    if found:
        user_id = found[0]["id"]
        api.call("PATCH", f"/v3/users/{user_id}", {"user": {"password": password,
                                                            "enabled": True}})
    else:
        body, _ = api.call("POST", "/v3/users", {"user": {
            "name": name, "password": password, "domain_id": "default",
            "default_project_id": project_id, "enabled": True}})
        user_id = body["user"]["id"]
    api.call("PUT", f"/v3/projects/{project_id}/users/{user_id}/roles/{role_id}")


def keystone(keystone_json: str, folder: str) -> int:
    with open(os.path.join(folder, "ports")) as src:
        taken = {int(v) for k, v in (line.strip().split("=", 1) for line in src if "=" in line)
                 if k.endswith("_port")}
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port not in taken:
            break
    with open(keystone_json) as src:
        auth_url = json.load(src)["auth_url"]
    with open(os.path.join(folder, "keystone.env"), "w") as out:
        out.write(f"keystone_facts={keystone_json}\n"
                  f"keystone_proxy_port={port}\n"
                  f"keystone_auth_url={auth_url}\n"
                  f"keystone_service_user=swift-{port}-service\n"
                  f"keystone_service_password={secrets.token_urlsafe(18)}\n"
                  f"keystone_service_project=service\n")
    return 0


def register(folder: str) -> int:
    with open(os.path.join(folder, "keystone.env")) as src:
        env = dict(line.strip().split("=", 1) for line in src if "=" in line)
    try:
        return _register(env["keystone_facts"], folder, int(env["keystone_proxy_port"]),
                         env["keystone_service_password"])
    except (urllib.error.URLError, OSError) as exc:
        print(f"swift: the Keystone of {env['keystone_facts']} cannot be reached: {exc}",
              file=sys.stderr)
        return 1


def _register(keystone_json: str, folder: str, port: int, service_password: str) -> int:
    api, facts = _keystone_api(keystone_json)
    region = f"swift-{port}"
    if not any(r["id"] == region for r in api.find("regions")):
        api.call("POST", "/v3/regions", {"region": {
            "id": region, "description": "a Glimpse test Swift"}})
    services = api.find("services", type="object-store")
    if services:
        service_id = services[0]["id"]
    else:
        body, _ = api.call("POST", "/v3/services", {"service": {
            "name": "swift", "type": "object-store", "enabled": True,
            "description": "Glimpse test Swifts"}})
        service_id = body["service"]["id"]
    url = f"http://127.0.0.1:{port}/v1/AUTH_$(project_id)s"
    existing = {e["interface"]: e["id"]
                for e in api.find("endpoints", service_id=service_id, region_id=region)}
    for interface in ("public", "internal", "admin"):
        if interface in existing:
            api.call("PATCH", f"/v3/endpoints/{existing[interface]}", {"endpoint": {"url": url}})
        else:
            api.call("POST", "/v3/endpoints", {"endpoint": {
                "url": url, "interface": interface, "region_id": region,
                "service_id": service_id, "enabled": True}})
    project_name = f"swift-{port}"
    found = api.find("projects", name=project_name, domain_id="default")
    if found:
        project_id = found[0]["id"]
    else:
        body, _ = api.call("POST", "/v3/projects", {"project": {
            "name": project_name, "domain_id": "default", "enabled": True,
            "description": "a Glimpse test Swift's account"}})
        project_id = body["project"]["id"]
    roles = {r["name"]: r["id"] for r in api.find("roles")}
    user, password = f"swift-{port}-member", secrets.token_urlsafe(18)
    _user(api, user, project_id, roles["member"], password)
    _user(api, f"swift-{port}-service", facts["projects"]["service"], roles["service"],
          service_password)
    account = {
        "proxy_url": f"http://127.0.0.1:{port}",
        "auth_url": facts["auth_url"],
        "auth_version": "3",
        "user": user,
        "key": password,
        "project_name": project_name,
        "project_id": project_id,
        "user_domain_name": "Default",
        "project_domain_name": "Default",
        "region_name": region,
        "storage_url": f"http://127.0.0.1:{port}/v1/AUTH_{project_id}",
        "port": port,
    }
    with open(os.path.join(folder, "keystone-swift.json"), "w") as out:
        json.dump(account, out, indent=2)
    return 0


def _probe_keystone(account: dict[str, Any]) -> str | None:
    """None once a Keystone token stores an object through the Keystone proxy, else what
    failed (the storage URL must come from the catalog, in the proxy's region)."""
    body = json.dumps({"auth": {
        "identity": {"methods": ["password"], "password": {"user": {
            "name": account["user"], "password": account["key"],
            "domain": {"name": account["user_domain_name"]}}}},
        "scope": {"project": {"name": account["project_name"],
                              "domain": {"name": account["project_domain_name"]}}}}}).encode()
    try:
        login = urllib.request.Request(f"{account['auth_url']}/auth/tokens", data=body,
                                       headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(login, timeout=10) as response:
            token = response.headers["X-Subject-Token"]
            catalog = json.load(response)["token"]["catalog"]
        urls = [e["url"] for s in catalog if s["type"] == "object-store"
                for e in s["endpoints"]
                if e["interface"] == "public" and e["region_id"] == account["region_name"]]
        if urls != [account["storage_url"]]:
            return f"the catalog's object-store endpoints in the region: {urls}"
        storage = urls[0]
        for method, path, data in (("PUT", "/glimpse-probe", None),
                                   ("PUT", "/glimpse-probe/probe", b"probe"),
                                   ("DELETE", "/glimpse-probe/probe", None)):
            request = urllib.request.Request(f"{storage}{path}", data=data, method=method,
                                             headers={"X-Auth-Token": token})
            with urllib.request.urlopen(request, timeout=10):
                pass
        return None
    except urllib.error.HTTPError as exc:
        return f"{exc.url}: {exc.code} {exc.reason}"
    except (urllib.error.URLError, OSError, KeyError, ValueError) as exc:
        return str(exc)


def wait(folder: str, timeout: str) -> int:
    with open(os.path.join(folder, "ports")) as src:
        layout = dict(line.strip().split("=", 1) for line in src if "=" in line)
    proxy = f"http://127.0.0.1:{layout['proxy_port']}"
    account: dict[str, Any] | None = None
    with contextlib.suppress(FileNotFoundError), \
            open(os.path.join(folder, "keystone-swift.json")) as src:
        account = json.load(src)
    pids = {}
    for name in (*NAMES, "proxy-keystone") if account else NAMES:
        with open(os.path.join(folder, "pids", name)) as src:
            pids[name] = int(src.read())
    deadline = time.monotonic() + float(timeout)
    problem = "not tried"
    while time.monotonic() < deadline:
        for name, pid in pids.items():
            if not _alive(pid):
                print(f"swift: the {name} process ({pid}) exited during start-up",
                      file=sys.stderr)
                return 1
        problem = _probe(proxy) or (_probe_keystone(account) if account else None) or ""
        if not problem:
            break
        time.sleep(0.2)
    else:
        print(f"swift: no answer from {proxy}: {problem}", file=sys.stderr)
        return 1
    facts = {
        "proxy_url": proxy,
        "auth_url": f"{proxy}/auth/v1.0",
        "auth_version": "1",
        "user": USER,
        "key": KEY,
        "storage_url": f"{proxy}/v1/AUTH_test",
        "s3_endpoint": proxy,
        "s3_access_key": USER,
        "s3_secret_key": KEY,
        "s3_region": "us-east-1",
        "ports": {name: int(layout[f"{name}_port"]) for name in NAMES},
        "pids": pids,
        "dir": folder,
    }
    if account:
        facts["keystone"] = {**account, "pid": pids["proxy-keystone"]}
        facts["ports"]["proxy-keystone"] = account["port"]
    tmp = os.path.join(folder, "swift.json.tmp")
    with open(tmp, "w") as out:
        json.dump(facts, out, indent=2)
    os.rename(tmp, os.path.join(folder, "swift.json"))
    return 0


def main(argv: list[str]) -> int:
    match argv:
        case ["ports", cache]:
            return ports(cache)
        case ["rings", etc, layout, account, container, object_, cache]:
            return rings(etc, layout, account, container, object_, cache)
        case ["keystone", keystone_json, folder]:
            return keystone(keystone_json, folder)
        case ["register", folder]:
            return register(folder)
        case ["wait", folder, timeout]:
            return wait(folder, timeout)
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
