"""Several stores at once: discovery (`/v2/info/stores`), the upload's store, the `stores` field.

Two real filesystem stores configured by `[stores.<id>]` tables of a TOML file.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.api.helpers import DATA, OCTET, assert_error, create_raw, show
from tests.servers import start_server


@pytest.fixture(scope="module")
def stores_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("stores")


@pytest.fixture(scope="module")
def multi(stores_dir: Path, connect: Callable[..., httpx.Client]) -> Iterator[httpx.Client]:
    config = stores_dir / "glimpse.toml"
    config.write_text(f'''
default_store = "fast"

[stores.fast]
driver = "filesystem"
description = "Fast disks"
weight = 100
path = "{stores_dir / 'fast'}"

[stores.cheap]
driver = "filesystem"
description = "Cheap disks"
weight = 10
path = "{stores_dir / 'cheap'}"
''')
    server = start_server(stores_dir / "data", config=config)
    yield connect(server.url)
    server.stop()


def test_single_store_servers_have_no_store_discovery(api: httpx.Client) -> None:
    assert_error(api.get("/v2/info/stores"), 404)
    assert_error(api.get("/v2/info/stores/detail"), 404)
    made = api.post("/v2/images", json={})
    assert "openstack-image-store-ids" not in made.headers
    assert "stores" not in made.json()


def test_stores_are_listed_heaviest_first(multi: httpx.Client) -> None:
    listed = multi.get("/v2/info/stores")
    assert listed.status_code == 200, listed.text
    assert listed.json() == {"stores": [
        {"id": "fast", "description": "Fast disks", "default": "true"},
        {"id": "cheap", "description": "Cheap disks"},
    ]}
    detail = multi.get("/v2/info/stores/detail").json()["stores"]
    assert [(s["id"], s["type"], s["weight"]) for s in detail] == [
        ("fast", "filesystem", 100), ("cheap", "filesystem", 10)]
    assert detail[0]["properties"]["path"].endswith("/fast")


def test_only_admins_see_the_details(multi: httpx.Client) -> None:
    member = {"X-Project-Id": "p", "X-Roles": "member"}
    assert multi.get("/v2/info/stores", headers=member).status_code == 200
    assert_error(multi.get("/v2/info/stores/detail", headers=member), 403)


def test_uploads_go_to_the_store_asked_for(multi: httpx.Client, stores_dir: Path) -> None:
    made = multi.post("/v2/images", json={"disk_format": "raw", "container_format": "bare"})
    assert made.headers["openstack-image-store-ids"] == "fast,cheap"
    image = made.json()
    done = multi.put(f"/v2/images/{image['id']}/file", content=DATA,
                     headers={**OCTET, "X-Image-Meta-Store": "cheap"})
    assert done.status_code == 204, done.text
    assert show(multi, image["id"])["stores"] == "cheap"
    assert any(image["id"] in p.name for p in (stores_dir / "cheap").iterdir())
    assert not any(image["id"] in p.name for p in (stores_dir / "fast").iterdir())
    assert multi.get(f"/v2/images/{image['id']}/file").content == DATA

    default = create_raw(multi)
    assert multi.put(f"/v2/images/{default['id']}/file", content=DATA,
                     headers=OCTET).status_code == 204
    assert show(multi, default["id"])["stores"] == "fast"


def test_an_unknown_store_is_400_before_any_byte(multi: httpx.Client) -> None:
    image = create_raw(multi)
    refused = multi.put(f"/v2/images/{image['id']}/file", content=DATA,
                        headers={**OCTET, "X-Image-Meta-Store": "nowhere"})
    assert_error(refused, 400)
    assert "nowhere" in refused.json()["message"]
    assert show(multi, image["id"])["status"] == "queued"


def test_a_bad_store_table_stops_serve(tmp_path: Path) -> None:
    import subprocess
    import sys

    config = tmp_path / "bad.toml"
    config.write_text('[stores.x]\ndriver = "filesystem"\npath = "/tmp/x"\ncolour = "red"\n')
    done = subprocess.run([sys.executable, "-m", "glimpse", "serve", "--config", str(config),
                           "--data-dir", str(tmp_path / "d")],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2
    assert "stores.x.colour: not an option of the filesystem driver" in done.stderr


def test_delete_from_one_store(multi: httpx.Client, stores_dir: Path) -> None:
    image = create_raw(multi)
    assert multi.put(f"/v2/images/{image['id']}/file", content=DATA,
                     headers=OCTET).status_code == 204
    # the only copy: refused; an unknown store: 404; members: 403
    assert_error(multi.delete(f"/v2/stores/fast/{image['id']}"), 409)
    assert_error(multi.delete(f"/v2/stores/cheap/{image['id']}"), 404)
    member = {"X-Project-Id": "admin", "X-Roles": "member"}
    assert_error(multi.delete(f"/v2/stores/fast/{image['id']}", headers=member), 403)
    assert any(image["id"] in p.name for p in (stores_dir / "fast").iterdir())


def test_delete_from_store_needs_several_stores(api: httpx.Client) -> None:
    image = create_raw(api)
    assert_error(api.delete(f"/v2/stores/file/{image['id']}"), 404)


@pytest.mark.parametrize(("table", "said"), [
    ('driver = "swift"\nauth_url = "http://127.0.0.1:9/auth/v1.0"\nuser = "a:b"\nkey = "k"\n'
     'timeout = 2.0\n', "stores.down:"),
    ('driver = "s3"\nendpoint_url = "http://127.0.0.1:9"\naccess_key = "a"\n'
     'secret_key = "b"\nbucket = "images"\n', "stores.down:"),
    ('driver = "swift"\nauth_url = "http://127.0.0.1:9/auth/v1.0"\nuser = "a:b"\nkey = "k"\n'
     'auth_version = "7"\n', "stores.down: auth_version must be 1"),
])
def test_an_unreachable_or_broken_store_stops_serve(tmp_path: Path, table: str,
                                                    said: str) -> None:
    import subprocess
    import sys

    config = tmp_path / "down.toml"
    config.write_text(f"[stores.down]\n{table}")
    done = subprocess.run([sys.executable, "-m", "glimpse", "serve", "--config", str(config),
                           "--data-dir", str(tmp_path / "d")],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 2, done.stderr[-2000:]
    assert said in done.stderr
    assert "Traceback" not in done.stderr


def test_the_versions_document_lists_the_multistore_versions(multi: httpx.Client,
                                                            api: httpx.Client) -> None:
    several = [v["id"] for v in multi.get("/versions").json()["versions"]]
    one = [v["id"] for v in api.get("/versions").json()["versions"]]
    assert several[:8] == ["v2.17", "v2.15", "v2.13", "v2.12", "v2.11", "v2.10", "v2.9", "v2.8"]
    assert "v2.12" not in one and "v2.8" not in one and one[:3] == ["v2.17", "v2.15", "v2.9"]
