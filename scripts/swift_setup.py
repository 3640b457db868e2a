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
    swift_setup.py wait DIR TIMEOUT
        Wait until the Swift started from DIR authenticates and stores an object; write
        DIR/swift.json. Exit 1 as soon as one of its processes dies, or after TIMEOUT seconds.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sys
import tempfile
import time
import urllib.error
import urllib.request

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


def wait(folder: str, timeout: str) -> int:
    with open(os.path.join(folder, "ports")) as src:
        layout = dict(line.strip().split("=", 1) for line in src if "=" in line)
    proxy = f"http://127.0.0.1:{layout['proxy_port']}"
    pids = {}
    for name in NAMES:
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
        problem = _probe(proxy) or ""
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
        case ["wait", folder, timeout]:
            return wait(folder, timeout)
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
