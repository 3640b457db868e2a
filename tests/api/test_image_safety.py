"""Image safety over the API (docs/image-safety.md, docs/signatures.md), against real servers.

Real images made by qemu-img (Debian's qemu-utils) are uploaded with `PUT /file` and come out
active with the virtual size qemu-img reports; hostile images (format mismatches both ways,
backing and data files, a flat VMDK descriptor naming /etc/passwd, QED, a truncated header, an
ISO+qcow2 polyglot) are refused with 415 naming the reason, leave nothing in the store's folder
and nothing to download, on upload and through the API 2.17 `location_import` task alike.
Signed images are verified end to end with a certificate made here.

Servers: `safe` has a filesystem store `local` (its folder inspected by the tests), an HTTP
store `web` that may reach loopback, and a certificate folder; `lax` (per test) has
`require_image_format_match` off; the shared `server` has no certificate folder.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from tests.api.helpers import assert_error, create, md5, show, uid, upload
from tests.api.test_locations import post_location, wait_tasks
from tests.http_source import Source, serving
from tests.servers import Server, start_server
from tests.unit.test_inspection import iso, qcow2, vmdk_text

MiB = 1024 * 1024


def qemu_img(*args: str) -> str:
    if shutil.which("qemu-img") is None:
        pytest.fail("qemu-img is missing: bash scripts/debian-packages qemu-utils")
    return subprocess.run(["qemu-img", *args], check=True, capture_output=True,
                          text=True).stdout


def qemu_virtual_size(path: Path, fmt: str) -> int:
    info = json.loads(qemu_img("info", "--output=json", "-f", fmt, str(path)))
    return int(info["virtual-size"])


# -- the images --------------------------------------------------------------------------------

#: Good images: name → (disk_format, qemu-img's format, convert options).
GOOD = {
    "qcow2": ("qcow2", "qcow2", ()),
    "vmdk-stream-optimized": ("vmdk", "vmdk", ("-o", "subformat=streamOptimized")),
    "vhd-dynamic": ("vhd", "vpc", ()),
    "vhd-fixed": ("vhd", "vpc", ("-o", "subformat=fixed")),
    "vhdx": ("vhdx", "vhdx", ()),
    "vdi": ("vdi", "vdi", ()),
    "raw": ("raw", "raw", ()),
}


@dataclass(frozen=True)
class Hostile:
    disk_format: str
    reason: str  # in the refusal's message


#: Hostile images: name → what they are declared as and the reason their refusal names.
HOSTILE = {
    "random-as-qcow2": Hostile("qcow2", "raw data (no known format header), but its "
                                        "disk_format is 'qcow2'"),
    "qcow2-as-raw": Hostile("raw", "is qcow2, but its disk_format is 'raw'"),
    "qcow2-backing-file": Hostile("qcow2", "backing file"),
    "qcow2-data-file": Hostile("qcow2", "data_file"),
    "vmdk-flat-passwd": Hostile("vmdk", "create type 'monolithicflat' is not allowed"),
    "vmdk-flat-passwd-as-raw": Hostile("raw", "is vmdk, but its disk_format is 'raw'"),
    # qed is no disk_format of Glance's list: whatever it is declared as, it does not match
    "qed-as-raw": Hostile("raw", "is qed, but its disk_format is 'raw'"),
    "qed-as-ami": Hostile("ami", "is qed, which is refused"),
    "qcow2-truncated": Hostile("qcow2", "truncated qcow2"),
    "iso-qcow2-polyglot": Hostile("iso", "several formats at once (iso, qcow2)"),
}


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every image of GOOD and HOSTILE, as a file."""
    work = tmp_path_factory.mktemp("images")
    made: dict[str, Path] = {}
    source = work / "source.raw"  # 3 MiB + a bit, with data (not all zeros), odd-sized
    source.write_bytes(bytes(range(256)) * (3 * MiB // 256) + os.urandom(12345))
    for name, (_, fmt, options) in GOOD.items():
        path = made[name] = work / f"{name}.img"
        qemu_img("convert", "-f", "raw", "-O", fmt, *options, str(source), str(path))
    base = work / "base.raw"
    base.write_bytes(bytes(MiB))

    def write(name: str, data: bytes) -> None:
        made[name] = work / f"{name}.img"
        made[name].write_bytes(data)

    write("random-as-qcow2", os.urandom(MiB + 17))
    made["qcow2-as-raw"] = made["qcow2"]
    made["qcow2-backing-file"] = work / "backed.qcow2"
    qemu_img("create", "-q", "-f", "qcow2", "-b", str(base), "-F", "raw",
             str(made["qcow2-backing-file"]))
    made["qcow2-data-file"] = work / "data-file.qcow2"
    qemu_img("create", "-q", "-f", "qcow2", "-o", f"data_file={work / 'external.raw'}",
             str(made["qcow2-data-file"]), "4M")
    write("vmdk-flat-passwd", vmdk_text("monolithicFlat", 'RW 2048 FLAT "/etc/passwd" 0'))
    made["vmdk-flat-passwd-as-raw"] = made["vmdk-flat-passwd"]
    made["qed-as-raw"] = made["qed-as-ami"] = work / "image.qed"
    qemu_img("create", "-q", "-f", "qed", str(made["qed-as-raw"]), "4M")
    write("qcow2-truncated", made["qcow2"].read_bytes()[:80])
    polyglot = bytearray(iso(blocks=200))
    polyglot[0:512] = qcow2(size=512)
    write("iso-qcow2-polyglot", bytes(polyglot))
    return made


# -- signing -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Signer:
    key: rsa.RSAPrivateKey
    cert_uuid: str

    def sign(self, data: bytes) -> str:
        raw = self.key.sign(data, padding.PSS(mgf=padding.MGF1(hashes.SHA256()),
                                              salt_length=padding.PSS.MAX_LENGTH),
                            hashes.SHA256())
        return base64.b64encode(raw).decode()

    def properties(self, signature: str) -> dict[str, str]:
        return {"img_signature": signature, "img_signature_hash_method": "SHA-256",
                "img_signature_key_type": "RSA-PSS",
                "img_signature_certificate_uuid": self.cert_uuid}


def self_signed(key: rsa.RSAPrivateKey) -> bytes:
    now = datetime.now(UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "glimpse image signer")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=7))
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM)


# -- servers -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Safe:
    client: httpx.Client
    server: Server
    store: Path  # the folder of its filesystem store
    signer: Signer


@pytest.fixture(scope="module")
def safe(tmp_path_factory: pytest.TempPathFactory,
         connect: Callable[..., httpx.Client]) -> Iterator[Safe]:
    folder = tmp_path_factory.mktemp("safety")
    store = folder / "local"
    certificates = folder / "certificates"
    certificates.mkdir()
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    signer = Signer(key, str(uuid.uuid4()))
    (certificates / f"{signer.cert_uuid}.pem").write_bytes(self_signed(key))
    config = folder / "glimpse.toml"
    config.write_text(f'default_store = "local"\n\n[stores.local]\ndriver = "filesystem"\n'
                      f'weight = 100\npath = "{store}"\n\n'
                      '[stores.web]\ndriver = "http"\nweight = 10\n'
                      'allow_private_networks = true\n')
    server = start_server(folder / "data", config=config,
                          signature_certificates_dir=certificates)
    yield Safe(connect(server.url), server, store, signer)
    server.stop()


@pytest.fixture(scope="module")
def source() -> Iterator[Source]:
    with serving() as src:
        yield src


def stored(store: Path, image_id: str) -> list[str]:
    """Files of the store's folder that belong to the image (committed or partial)."""
    if not store.exists():
        return []
    return sorted(p.name for p in store.iterdir() if image_id in p.name)


def assert_nothing_kept(client: httpx.Client, image_id: str, store: Path | None) -> None:
    shown = show(client, image_id)
    assert shown["status"] == "queued", shown
    assert {k: shown[k] for k in ("size", "virtual_size", "checksum", "os_hash_algo",
                                  "os_hash_value")} == dict.fromkeys(
        ("size", "virtual_size", "checksum", "os_hash_algo", "os_hash_value"))
    if store is not None:
        assert stored(store, image_id) == []
    resp = client.get(f"/v2/images/{image_id}/file")
    assert resp.status_code == 204, resp.text
    assert resp.content == b""


def new_image(client: httpx.Client, disk_format: str, **extra: Any) -> dict[str, Any]:
    return create(client, name=f"safety-{uid()}", disk_format=disk_format,
                  container_format="bare", **extra)


# -- real images -------------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(GOOD))
def test_real_images_upload_with_their_virtual_size(safe: Safe, images: dict[str, Path],
                                                    name: str) -> None:
    disk_format, fmt, _ = GOOD[name]
    data = images[name].read_bytes()
    image = new_image(safe.client, disk_format)
    resp = upload(safe.client, image["id"], data)
    assert resp.status_code == 204, resp.text
    shown = show(safe.client, image["id"])
    assert shown["status"] == "active"
    assert shown["disk_format"] == disk_format
    assert shown["virtual_size"] == qemu_virtual_size(images[name], fmt)
    assert shown["size"] == len(data)
    assert shown["checksum"] == md5(data)
    assert (shown["os_hash_algo"], shown["os_hash_value"]) == (
        "sha512", hashlib.sha512(data).hexdigest())
    assert stored(safe.store, image["id"]) != []
    download = safe.client.get(f"/v2/images/{image['id']}/file")
    assert download.status_code == 200
    assert download.content == data


# -- hostile images refused on upload ----------------------------------------------------------

@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_uploads_are_refused_and_nothing_is_kept(safe: Safe, images: dict[str, Path],
                                                         name: str) -> None:
    hostile = HOSTILE[name]
    image = new_image(safe.client, hostile.disk_format)
    resp = upload(safe.client, image["id"], images[name].read_bytes())
    assert_error(resp, 415)
    assert hostile.reason in resp.json()["message"], resp.json()
    assert_nothing_kept(safe.client, image["id"], safe.store)


def test_a_refused_image_can_be_uploaded_again_with_good_data(safe: Safe,
                                                              images: dict[str, Path]) -> None:
    image = new_image(safe.client, "qcow2")
    assert_error(upload(safe.client, image["id"], images["random-as-qcow2"].read_bytes()), 415)
    data = images["qcow2"].read_bytes()
    assert upload(safe.client, image["id"], data).status_code == 204
    shown = show(safe.client, image["id"])
    assert (shown["status"], shown["checksum"]) == ("active", md5(data))
    assert safe.client.get(f"/v2/images/{image['id']}/file").content == data


def test_without_format_match_random_bytes_pass_as_qcow2(
        make_server: Callable[..., Server], connect: Callable[..., httpx.Client],
        images: dict[str, Path]) -> None:
    client = connect(make_server(require_image_format_match="false").url)
    data = images["random-as-qcow2"].read_bytes()
    image = new_image(client, "qcow2")
    resp = upload(client, image["id"], data)
    assert resp.status_code == 204, resp.text
    shown = show(client, image["id"])
    assert (shown["status"], shown["size"], shown["checksum"]) == ("active", len(data), md5(data))
    assert shown["virtual_size"] is None  # not inspected: nothing known
    assert client.get(f"/v2/images/{image['id']}/file").content == data


# -- the same through the location_import task (API 2.17) ----------------------------------------

def test_a_real_image_imported_from_a_location_gets_its_virtual_size(
        safe: Safe, source: Source, images: dict[str, Path]) -> None:
    data = images["qcow2"].read_bytes()
    image = new_image(safe.client, "qcow2")
    url = source.add(f"good-{uid()}.qcow2", data)
    assert post_location(safe.client, image["id"], url).status_code == 202
    wait_tasks(safe.client, image["id"], "success")
    shown = show(safe.client, image["id"])
    assert (shown["status"], shown["size"], shown["checksum"]) == ("active", len(data), md5(data))
    assert shown["virtual_size"] == qemu_virtual_size(images["qcow2"], "qcow2")
    assert safe.client.get(f"/v2/images/{image['id']}/file").content == data


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_location_imports_fail_and_nothing_is_served(
        safe: Safe, source: Source, images: dict[str, Path], name: str) -> None:
    hostile = HOSTILE[name]
    image = new_image(safe.client, hostile.disk_format)
    url = source.add(f"{name}-{uid()}", images[name].read_bytes())
    resp = post_location(safe.client, image["id"], url)
    assert resp.status_code == 202, resp.text
    [task] = wait_tasks(safe.client, image["id"], "failure")
    assert task["type"] == "location_import"
    assert "was refused" in task["message"] and hostile.reason in task["message"], task
    assert_nothing_kept(safe.client, image["id"], safe.store)
    # the failed location is kept, as Glance does (and as test_locations checks)
    listed = safe.client.get(f"/v2/images/{image['id']}/locations")
    assert listed.status_code == 200, listed.text
    assert [x["url"] for x in listed.json()] == [url]


# -- signatures ----------------------------------------------------------------------------------

SIGNED_DATA = bytes(range(256)) * (5 * MiB // 256) + b"signed tail"  # > one 4 MiB batch


def test_a_signed_image_with_a_matching_signature_uploads(safe: Safe) -> None:
    properties = safe.signer.properties(safe.signer.sign(SIGNED_DATA))
    image = new_image(safe.client, "raw", **properties)
    resp = upload(safe.client, image["id"], SIGNED_DATA)
    assert resp.status_code == 204, resp.text
    shown = show(safe.client, image["id"])
    assert (shown["status"], shown["checksum"]) == ("active", md5(SIGNED_DATA))
    assert {k: shown[k] for k in properties} == properties
    assert safe.client.get(f"/v2/images/{image['id']}/file").content == SIGNED_DATA


@pytest.mark.parametrize("case", ["other-data", "flipped-byte", "truncated"])
def test_a_signature_that_does_not_match_is_refused_and_nothing_is_kept(safe: Safe,
                                                                        case: str) -> None:
    signature = safe.signer.sign(b"other data" if case == "other-data" else SIGNED_DATA)
    data = {"other-data": SIGNED_DATA,
            "flipped-byte": SIGNED_DATA[:MiB] + b"\xff" + SIGNED_DATA[MiB + 1:],
            "truncated": SIGNED_DATA[:-1]}[case]
    image = new_image(safe.client, "raw", **safe.signer.properties(signature))
    resp = upload(safe.client, image["id"], data)
    assert_error(resp, 400)  # as Glance answers a signature that does not verify
    message = resp.json()["message"]
    assert "Signature verification failed" in message, message
    assert "does not match its RSA-PSS signature" in message, message
    assert safe.signer.cert_uuid in message, message
    assert_nothing_kept(safe.client, image["id"], safe.store)


def test_a_signed_image_naming_an_unknown_certificate_is_refused(safe: Safe) -> None:
    unknown = str(uuid.uuid4())
    properties = {**safe.signer.properties(safe.signer.sign(SIGNED_DATA)),
                  "img_signature_certificate_uuid": unknown}
    image = new_image(safe.client, "raw", **properties)
    resp = upload(safe.client, image["id"], SIGNED_DATA)
    assert_error(resp, 400)
    assert f"certificate not found with ID: {unknown}" in resp.json()["message"]
    assert_nothing_kept(safe.client, image["id"], safe.store)


def test_a_signed_image_on_a_server_without_certificates_is_refused(
        api: httpx.Client, server: Server, safe: Safe) -> None:
    properties = safe.signer.properties(safe.signer.sign(SIGNED_DATA))
    image = new_image(api, "raw", **properties)
    resp = upload(api, image["id"], SIGNED_DATA)
    assert_error(resp, 400)
    assert "no certificate store is configured" in resp.json()["message"]
    assert_nothing_kept(api, image["id"], server.data_dir / "images")


@pytest.mark.parametrize("matching", [True, False], ids=["matching", "not-matching"])
def test_a_signed_image_imported_from_a_location_is_verified(
        safe: Safe, source: Source, matching: bool) -> None:
    signature = safe.signer.sign(SIGNED_DATA if matching else b"other data")
    image = new_image(safe.client, "raw", **safe.signer.properties(signature))
    url = source.add(f"signed-{uid()}", SIGNED_DATA)
    assert post_location(safe.client, image["id"], url).status_code == 202
    [task] = wait_tasks(safe.client, image["id"], "success" if matching else "failure")
    if matching:
        assert show(safe.client, image["id"])["status"] == "active"
        assert safe.client.get(f"/v2/images/{image['id']}/file").content == SIGNED_DATA
    else:
        assert "does not match its RSA-PSS signature" in task["message"], task
        assert_nothing_kept(safe.client, image["id"], safe.store)
