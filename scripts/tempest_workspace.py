"""Fill a Tempest workspace for Glimpse's image tests (run by `scripts/tempest`; stdlib only).

    tempest_workspace.py KEYSTONE_FACTS_JSON FILES_DIR FILES_URL WORKSPACE

writes WORKSPACE/etc/tempest.conf for the Keystone that KEYSTONE_FACTS_JSON describes (written by
`scripts/keystone start`), and into FILES_DIR the two images Tempest downloads by URL (served at
FILES_URL from loopback, since this machine reaches no download site): a tar.gz for
`[image] http_image` and a real, empty qcow2 for `http_qcow2_image` (web-download creates a qcow2
image from it).

The configuration claims only what Glimpse has: everything in `[image-feature-enabled]` that
would turn into failures when the server lacks it is off (locations, http store, cache, format
enforcement, conversion), only glance is available, and Glance's scope enforcement is on, so
Tempest reads as a `reader` user. Tempest makes its own projects and users per test class with
the admin credentials (dynamic credentials).
"""

from __future__ import annotations

import io
import json
import os
import struct
import sys
import tarfile
from pathlib import Path

HTTP_IMAGE = "image.tar.gz"
QCOW2_IMAGE = "image.qcow2"


def qcow2(virtual_size: int = 1 << 20, cluster_bits: int = 16) -> bytes:
    """An empty qcow2 (version 3) of `virtual_size` bytes, laid out as `qemu-img create` does:
    cluster 0 header, 1 refcount table, 2 refcount block, 3 L1 table (all entries unallocated)."""
    cluster = 1 << cluster_bits
    l2_entries = cluster // 8
    l1_size = -(-virtual_size // (cluster * l2_entries))
    header = struct.pack(
        ">4sIQIIQIIQQIIQQQQII",
        b"QFI\xfb", 3,           # magic, version
        0, 0,                    # backing file offset, size
        cluster_bits, virtual_size,
        0,                       # crypt method
        l1_size, 3 * cluster,    # L1 entries, L1 table offset
        cluster, 1,              # refcount table offset, clusters
        0, 0,                    # snapshots: count, offset
        0, 0, 0,                 # incompatible, compatible, autoclear features
        4, 104,                  # refcount order (16-bit refcounts), header length
    )
    image = bytearray(4 * cluster)
    image[:len(header)] = header
    struct.pack_into(">Q", image, cluster, 2 * cluster)        # refcount table → block
    for index in range(4):                                     # clusters 0-3 in use
        struct.pack_into(">H", image, 2 * cluster + 2 * index, 1)
    return bytes(image)


def tarball() -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        data = os.urandom(64 * 1024)
        info = tarfile.TarInfo("image.img")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def config(facts: dict[str, object], files_url: str, workspace: Path) -> str:
    admin = facts["accounts"]["admin"]  # type: ignore[index]
    # A second API server of the same deployment, for the remote import and delete tests.
    remote = "alternate_image_endpoint = image_remote\n" if facts.get("image_remote_url") else ""
    return f"""\
[DEFAULT]
log_file = {workspace}/tempest.log

[oslo_concurrency]
lock_path = {workspace}/locks

[auth]
use_dynamic_credentials = True
create_isolated_networks = False
admin_username = {admin["username"]}
admin_password = {admin["password"]}
admin_project_name = {admin["project_name"]}
admin_domain_name = {admin["user_domain_name"]}
default_credentials_domain_name = Default

[identity]
uri_v3 = {facts["auth_url"]}
auth_version = v3
region = {facts["region"]}
v3_endpoint_type = public

[identity-feature-enabled]
api_v2 = False

[service_available]
glance = True
nova = False
cinder = False
neutron = False
swift = False
horizon = False

[image]
catalog_type = image
endpoint_type = publicURL
region = {facts["region"]}
http_image = {files_url}/{HTTP_IMAGE}
http_qcow2_image = {files_url}/{QCOW2_IMAGE}
# Glimpse inspects every upload (docs/image-safety.md), so random bytes declared qcow2 or vhd
# are refused. ListUserImagesTest uploads random bytes in the first six (container, disk)
# format pairs, so the first six formats are ones random bytes truthfully are (raw listed twice:
# only five such formats exist); qcow2 follows for the web-download test, which imports a real
# qcow2, and iso for the glance-download test (its target image is iso until the import copies
# the source's raw).
disk_formats = raw,ami,ari,aki,ploop,raw,qcow2,iso
image_caching_enabled = False
hashing_algorithm = sha512
{remote}
[image-feature-enabled]
manage_locations = True
http_store_enabled = True
image_format_enforcement = False
image_conversion = False
do_secure_hash = True
import_image = True
store_weight_enabled = True

[enforce_scope]
glance = True

[validation]
run_validation = False
"""


def main(argv: list[str]) -> int:
    if len(argv) != 4:
        print(__doc__, file=sys.stderr)
        return 2
    facts = json.loads(Path(argv[0]).read_text())
    files, files_url, workspace = Path(argv[1]), argv[2].rstrip("/"), Path(argv[3])
    files.mkdir(parents=True, exist_ok=True)
    (files / HTTP_IMAGE).write_bytes(tarball())
    (files / QCOW2_IMAGE).write_bytes(qcow2())
    (workspace / "etc").mkdir(parents=True, exist_ok=True)
    (workspace / "etc" / "tempest.conf").write_text(config(facts, files_url, workspace))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
