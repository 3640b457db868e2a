"""End to end with an object store as the default store: python-glanceclient and openstacksdk
against a real `glimpse serve` whose only store is the real Swift (tempauth), or S3 through
Swift's s3api. Images round-trip through the store; deletes remove the objects."""

from __future__ import annotations

import hashlib
import io
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import glanceclient
import httpx
import pytest
from openstack import connection

from tests.servers import Server, start_server

pytestmark = [
    pytest.mark.filterwarnings("ignore::openstack.warnings.RemovedInSDK50Warning"),
    pytest.mark.filterwarnings("ignore::openstack.warnings.RemovedInSDK60Warning"),
]
MIB = 1024 * 1024


def _table(swift: dict[str, Any], kind: str, bucket: str) -> str:
    if kind == "swift":
        return (f'driver = "swift"\nauth_url = "{swift["auth_url"]}"\nuser = "{swift["user"]}"\n'
                f'key = "{swift["key"]}"\ncontainer = "{bucket}"\nlarge_object_size = {4 * MIB}\n'
                f'segment_size = {MIB}\n')
    return (f'driver = "s3"\nendpoint_url = "{swift["s3_endpoint"]}"\n'
            f'region = "{swift["s3_region"]}"\naccess_key = "{swift["s3_access_key"]}"\n'
            f'secret_key = "{swift["s3_secret_key"]}"\nbucket = "{bucket}"\n'
            f'addressing_style = "path"\nmultipart_threshold = {8 * MIB}\n'
            f'part_size = {5 * MIB}\n')


@pytest.fixture(scope="module", params=["swift", "s3-on-swift"])
def server(request: pytest.FixtureRequest, swift: dict[str, Any],
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    kind = "swift" if request.param == "swift" else "s3"
    bucket = f"e2e-{uuid.uuid4().hex[:10]}"
    if kind == "s3":  # an S3 store writes to a bucket the operator made
        boto3.client("s3", endpoint_url=swift["s3_endpoint"], region_name=swift["s3_region"],
                     aws_access_key_id=swift["s3_access_key"],
                     aws_secret_access_key=swift["s3_secret_key"]).create_bucket(Bucket=bucket)
    folder = tmp_path_factory.mktemp(f"e2e-{kind}")
    config = folder / "glimpse.toml"
    config.write_text(f"[stores.objects]\n{_table(swift, kind, bucket)}")
    srv = start_server(folder / "data", config=config)
    yield srv
    srv.stop()


def _payload(size: int) -> bytes:
    return os.urandom(size)


def test_glanceclient_round_trip_through_the_object_store(server: Server) -> None:
    gc = glanceclient.Client("2", endpoint=server.url, token="anything")
    data = _payload(9 * MIB + 3)  # above the large-object and multipart thresholds
    image = gc.images.create(name="obj", disk_format="raw", container_format="bare")
    gc.images.upload(image.id, io.BytesIO(data), image_size=len(data))
    shown = gc.images.get(image.id)
    assert shown.status == "active" and shown.size == len(data)
    assert shown.checksum == hashlib.md5(data).hexdigest()
    assert b"".join(gc.images.data(image.id)) == data
    ranged = httpx.get(f"{server.url}/v2/images/{image.id}/file",
                       headers={"Range": "bytes=1000-1999"})
    assert ranged.status_code == 206 and ranged.content == data[1000:2000]
    gc.images.delete(image.id)
    assert httpx.get(f"{server.url}/v2/images/{image.id}").status_code == 404


def test_openstacksdk_round_trip_through_the_object_store(server: Server,
                                                          tmp_path: Path) -> None:
    conn = connection.Connection(auth_type="none", image_endpoint_override=server.url)
    try:
        data = _payload(3 * MIB + 7)  # below the thresholds: one plain object
        image = conn.image.create_image(name="sdk-obj", disk_format="raw",
                                        container_format="bare", data=data,
                                        validate_checksum=True, allow_duplicates=True)
        got = conn.image.get_image(image.id)
        assert got.status == "active" and got.size == len(data)
        target = tmp_path / "down"
        conn.image.download_image(got, output=str(target))
        assert target.read_bytes() == data
        conn.image.delete_image(got)
    finally:
        conn.close()
