"""Signature verification of image data (services/signature.py), with keys, certificates and
signatures made here as a client makes them (cryptography, and the openssl command of Glance's
documentation)."""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import subprocess
import tracemalloc
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, padding, rsa, utils
from cryptography.x509.oid import NameOID

from glimpse import config
from glimpse.domain.errors import Invalid
from glimpse.services.signature import CertificateStore, SignatureVerification

MiB = 1024 * 1024
HASHES: dict[str, hashes.HashAlgorithm] = {
    "SHA-224": hashes.SHA224(), "SHA-256": hashes.SHA256(),
    "SHA-384": hashes.SHA384(), "SHA-512": hashes.SHA512(),
}
PrivateKey = rsa.RSAPrivateKey | dsa.DSAPrivateKey | ec.EllipticCurvePrivateKey


@pytest.fixture(scope="module")
def keys() -> dict[str, PrivateKey]:
    return {
        "RSA-PSS": rsa.generate_private_key(public_exponent=65537, key_size=2048),
        "DSA": dsa.generate_private_key(key_size=2048),
        "ECC_SECP521R1": ec.generate_private_key(ec.SECP521R1()),
        "ECC_SECP384R1": ec.generate_private_key(ec.SECP384R1()),
    }


@pytest.fixture(scope="module")
def data() -> bytes:
    return os.urandom(9 * MiB + 12345)  # more than two 4 MiB batches, not a multiple of them


def certificate(key: PrivateKey, not_before: datetime | None = None,
                not_after: datetime | None = None) -> bytes:
    """A self-signed PEM certificate of `key`, as `openssl x509 -req -signkey` makes one."""
    now = datetime.now(UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "image signer")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(not_before or now - timedelta(days=1))
            .not_valid_after(not_after or now + timedelta(days=14))
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM)


def sign(key: PrivateKey, data: bytes, hash_method: str,
         salt_length: int = padding.PSS.MAX_LENGTH) -> str:
    """The `img_signature` a client computes: over the whole data, base64."""
    algorithm = HASHES[hash_method]
    if isinstance(key, rsa.RSAPrivateKey):
        raw = key.sign(data, padding.PSS(mgf=padding.MGF1(algorithm), salt_length=salt_length),
                       algorithm)
    elif isinstance(key, dsa.DSAPrivateKey):
        raw = key.sign(data, algorithm)
    else:
        raw = key.sign(data, ec.ECDSA(algorithm))
    return base64.b64encode(raw).decode()


@dataclass
class Signer:
    folder: Path

    def add(self, key: PrivateKey, **dates: datetime) -> str:
        cert_uuid = str(uuid.uuid4())
        (self.folder / f"{cert_uuid}.pem").write_bytes(certificate(key, **dates))
        return cert_uuid

    @property
    def store(self) -> CertificateStore:
        return CertificateStore(str(self.folder))


@pytest.fixture
def signer(tmp_path: Path) -> Signer:
    return Signer(tmp_path)


def props(signature: str, hash_method: str, key_type: str, cert_uuid: str) -> dict[str, str]:
    return {"img_signature": signature, "img_signature_hash_method": hash_method,
            "img_signature_key_type": key_type, "img_signature_certificate_uuid": cert_uuid}


def batches(data: bytes, batch_size: int, chunk_size: int) -> Iterator[list[bytes]]:
    """`data` as the pipeline hands it over: batches of about `batch_size` bytes, each a list of
    received chunks of `chunk_size` bytes."""
    for start in range(0, len(data), batch_size):
        batch = data[start:start + batch_size]
        yield [batch[i:i + chunk_size] for i in range(0, len(batch), chunk_size)]


def run(stage: SignatureVerification, data: bytes, batch_size: int = 4 * MiB,
        chunk_size: int = 64 * 1024) -> None:
    for batch in batches(data, batch_size, chunk_size):
        stage.update(batch)
    stage.finish()


def stage_for(properties: dict[str, str], store: CertificateStore) -> SignatureVerification:
    stage = SignatureVerification.for_image(properties, store)
    assert stage is not None
    return stage


# -- signatures that verify --------------------------------------------------------------------

KEY_AND_HASH = [("RSA-PSS", h) for h in HASHES] + [
    ("DSA", "SHA-256"), ("DSA", "SHA-224"),
    ("ECC_SECP521R1", "SHA-512"), ("ECC_SECP384R1", "SHA-384"), ("ECC_SECP384R1", "SHA-256"),
]


@pytest.mark.parametrize(("key_type", "hash_method"), KEY_AND_HASH)
def test_valid_signature_verifies(keys: dict[str, PrivateKey], data: bytes, signer: Signer,
                                  key_type: str, hash_method: str) -> None:
    key = keys[key_type]
    properties = props(sign(key, data, hash_method), hash_method, key_type, signer.add(key))
    run(stage_for(properties, signer.store), data)


@pytest.mark.parametrize(("batch_size", "chunk_size"),
                         [(4 * MiB, 64 * 1024), (1, 1), (4 * MiB + 1, 4096), (10 * MiB, 10 * MiB),
                          (333_333, 65_537)])
def test_batch_sizes_do_not_matter(keys: dict[str, PrivateKey], data: bytes, signer: Signer,
                                   batch_size: int, chunk_size: int) -> None:
    key = keys["RSA-PSS"]
    sample = data if batch_size > 1 else data[:100_000]  # byte by byte: a smaller image
    properties = props(sign(key, sample, "SHA-256"), "SHA-256", "RSA-PSS", signer.add(key))
    run(stage_for(properties, signer.store), sample, batch_size, chunk_size)


def test_empty_image(keys: dict[str, PrivateKey], signer: Signer) -> None:
    key = keys["ECC_SECP384R1"]
    properties = props(sign(key, b"", "SHA-384"), "SHA-384", "ECC_SECP384R1", signer.add(key))
    stage_for(properties, signer.store).finish()


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
@pytest.mark.parametrize(("key_type", "hash_method", "options"), [
    ("RSA-PSS", "SHA-256", ["-sigopt", "rsa_padding_mode:pss", "-sigopt", "rsa_pss_saltlen:max"]),
    ("ECC_SECP521R1", "SHA-512", []),
    ("DSA", "SHA-256", []),
])
def test_signature_made_with_openssl(keys: dict[str, PrivateKey], data: bytes, signer: Signer,
                                     tmp_path: Path, key_type: str, hash_method: str,
                                     options: list[str]) -> None:
    """As Glance's docs/source/user/signature.rst signs:
    `openssl dgst -sha256 -sign private_key.pem -sigopt rsa_padding_mode:pss -out sig image`."""
    key = keys[key_type]
    key_file, image, sig = tmp_path / "key.pem", tmp_path / "image", tmp_path / "sig"
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    image.write_bytes(data)
    digest = "-" + hash_method.lower().replace("-", "")
    subprocess.run(["openssl", "dgst", digest, "-sign", str(key_file), *options,
                    "-out", str(sig), str(image)], check=True, capture_output=True)
    wrapped = subprocess.run(["base64", str(sig)], check=True, capture_output=True,
                             text=True).stdout  # wrapped lines: a multi-line v2 property
    properties = props(wrapped, hash_method, key_type, signer.add(key))
    run(stage_for(properties, signer.store), data)


# -- data that does not match ------------------------------------------------------------------

@pytest.mark.parametrize(("key_type", "hash_method"), KEY_AND_HASH)
def test_flipped_byte_is_refused(keys: dict[str, PrivateKey], data: bytes, signer: Signer,
                                 key_type: str, hash_method: str) -> None:
    key = keys[key_type]
    properties = props(sign(key, data, hash_method), hash_method, key_type, signer.add(key))
    tampered = bytearray(data)
    tampered[5 * MiB + 7] ^= 0x01
    with pytest.raises(Invalid, match=r"does not match its .* signature"):
        run(stage_for(properties, signer.store), bytes(tampered))


def test_truncated_and_extended_data_are_refused(keys: dict[str, PrivateKey], data: bytes,
                                                 signer: Signer) -> None:
    key = keys["RSA-PSS"]
    properties = props(sign(key, data, "SHA-256"), "SHA-256", "RSA-PSS", signer.add(key))
    for other in (data[:-1], data + b"\0"):
        with pytest.raises(Invalid, match="Signature verification failed"):
            run(stage_for(properties, signer.store), other)


def test_signature_of_another_key_is_refused(keys: dict[str, PrivateKey], data: bytes,
                                             signer: Signer) -> None:
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    properties = props(sign(other, data, "SHA-256"), "SHA-256", "RSA-PSS",
                       signer.add(keys["RSA-PSS"]))
    with pytest.raises(Invalid):
        run(stage_for(properties, signer.store), data)


def test_signed_with_another_hash_than_declared_is_refused(
        keys: dict[str, PrivateKey], data: bytes, signer: Signer) -> None:
    for key_type in ("RSA-PSS", "ECC_SECP384R1"):
        key = keys[key_type]
        properties = props(sign(key, data, "SHA-384"), "SHA-256", key_type, signer.add(key))
        with pytest.raises(Invalid, match="SHA-256"):
            run(stage_for(properties, signer.store), data)


@pytest.mark.parametrize("salt_length", [padding.PSS.MAX_LENGTH, padding.PSS.DIGEST_LENGTH, 0])
def test_pss_salt_length_is_recovered(keys: dict[str, PrivateKey], data: bytes, signer: Signer,
                                      salt_length: int) -> None:
    """The maximum salt (cursive, OpenSSL 3.0) and the digest-length salt (OpenSSL 3.1 and
    later by default) both verify, as they do under cursive's `MAX_LENGTH` in cryptography."""
    key = keys["RSA-PSS"]
    properties = props(sign(key, data, "SHA-256", salt_length=salt_length), "SHA-256", "RSA-PSS",
                       signer.add(key))
    run(stage_for(properties, signer.store), data)


def test_finish_again_gives_the_same_outcome(keys: dict[str, PrivateKey], signer: Signer) -> None:
    key = keys["DSA"]
    properties = props(sign(key, b"image", "SHA-256"), "SHA-256", "DSA", signer.add(key))
    good = stage_for(properties, signer.store)
    good.update([b"ima", b"ge"])
    good.finish()
    good.finish()
    with pytest.raises(RuntimeError):
        good.update([b"more"])
    bad = stage_for(properties, signer.store)
    bad.update([b"imagE"])
    for _ in range(2):
        with pytest.raises(Invalid):
            bad.finish()


# -- properties and certificates that cannot be used (400 before any byte) ---------------------

def test_unsigned_image_gets_no_stage(signer: Signer) -> None:
    assert SignatureVerification.for_image({}, signer.store) is None
    assert SignatureVerification.for_image({"os_distro": "cirros", "img_sig": "x"},
                                           CertificateStore("")) is None


@pytest.mark.parametrize("missing", ["img_signature", "img_signature_hash_method",
                                     "img_signature_key_type", "img_signature_certificate_uuid"])
def test_missing_property(keys: dict[str, PrivateKey], signer: Signer, missing: str) -> None:
    key = keys["RSA-PSS"]
    properties = props(sign(key, b"x", "SHA-256"), "SHA-256", "RSA-PSS", signer.add(key))
    del properties[missing]
    with pytest.raises(Invalid, match=f"missing: {missing} "):
        SignatureVerification.for_image(properties, signer.store)


@pytest.mark.parametrize("hash_method", ["SHA-1", "MD5", "sha256", "SHA256", "SHA3-256", ""])
def test_unknown_hash_method(keys: dict[str, PrivateKey], signer: Signer,
                             hash_method: str) -> None:
    key = keys["RSA-PSS"]
    properties = props(sign(key, b"x", "SHA-256"), hash_method, "RSA-PSS", signer.add(key))
    with pytest.raises(Invalid, match=r"invalid signature hash method .*SHA-224, SHA-256"):
        SignatureVerification.for_image(properties, signer.store)


@pytest.mark.parametrize("key_type", ["RSA", "rsa-pss", "ECDSA", "ECC_SECP256R1", "ED25519", ""])
def test_unknown_key_type(keys: dict[str, PrivateKey], signer: Signer, key_type: str) -> None:
    key = keys["RSA-PSS"]
    properties = props(sign(key, b"x", "SHA-256"), "SHA-256", key_type, signer.add(key))
    with pytest.raises(Invalid, match=r"invalid signature key type .*RSA-PSS, DSA, ECC_"):
        SignatureVerification.for_image(properties, signer.store)


@pytest.mark.skipif(hasattr(ec, "SECT571K1"), reason="this cryptography still has binary curves")
def test_binary_curve_key_type_without_library_support(keys: dict[str, PrivateKey],
                                                       signer: Signer) -> None:
    key = keys["ECC_SECP521R1"]
    properties = props(sign(key, b"x", "SHA-512"), "SHA-512", "ECC_SECT571K1", signer.add(key))
    with pytest.raises(Invalid, match="ECC_SECT571K1 is not supported by this server"):
        SignatureVerification.for_image(properties, signer.store)


@pytest.mark.parametrize(("key_type", "cert_key"), [("RSA-PSS", "ECC_SECP384R1"),
                                                    ("DSA", "RSA-PSS"),
                                                    ("ECC_SECP521R1", "DSA")])
def test_key_type_that_does_not_fit_the_certificate(keys: dict[str, PrivateKey], signer: Signer,
                                                    key_type: str, cert_key: str) -> None:
    properties = props(sign(keys[cert_key], b"x", "SHA-256"), "SHA-256", key_type,
                       signer.add(keys[cert_key]))
    with pytest.raises(Invalid, match=f"invalid public key type for signature key type "
                                      f"{key_type}"):
        SignatureVerification.for_image(properties, signer.store)


@pytest.mark.parametrize("signature", ["not base64!", "QUJ", "====", "", "   ", "QU JD\x00"])
def test_signature_that_is_not_base64(keys: dict[str, PrivateKey], signer: Signer,
                                      signature: str) -> None:
    properties = props(signature, "SHA-256", "RSA-PSS", signer.add(keys["RSA-PSS"]))
    with pytest.raises(Invalid, match="img_signature is not valid base64"):
        SignatureVerification.for_image(properties, signer.store)


def test_unknown_certificate(keys: dict[str, PrivateKey], signer: Signer) -> None:
    signer.add(keys["RSA-PSS"])
    unknown = str(uuid.uuid4())
    properties = props(sign(keys["RSA-PSS"], b"x", "SHA-256"), "SHA-256", "RSA-PSS", unknown)
    with pytest.raises(Invalid, match=f"certificate not found with ID: {unknown}"):
        SignatureVerification.for_image(properties, signer.store)


@pytest.mark.parametrize("cert_uuid", ["../../etc/passwd", "not-a-uuid", "", "a" * 32,
                                       "{12345678-1234-1234-1234-123456789abc}"])
def test_certificate_id_that_is_not_a_uuid(keys: dict[str, PrivateKey], signer: Signer,
                                           cert_uuid: str) -> None:
    properties = props(sign(keys["RSA-PSS"], b"x", "SHA-256"), "SHA-256", "RSA-PSS", cert_uuid)
    with pytest.raises(Invalid, match="is not a UUID"):
        SignatureVerification.for_image(properties, signer.store)


def test_certificate_uuid_in_upper_case(keys: dict[str, PrivateKey], signer: Signer) -> None:
    key = keys["RSA-PSS"]
    properties = props(sign(key, b"x", "SHA-256"), "SHA-256", "RSA-PSS", signer.add(key).upper())
    run(stage_for(properties, signer.store), b"x")


def test_expired_certificate(keys: dict[str, PrivateKey], signer: Signer) -> None:
    key = keys["RSA-PSS"]
    now = datetime.now(UTC)
    cert_uuid = signer.add(key, not_before=now - timedelta(days=30),
                           not_after=now - timedelta(days=1))
    properties = props(sign(key, b"x", "SHA-256"), "SHA-256", "RSA-PSS", cert_uuid)
    with pytest.raises(Invalid, match=f"certificate {cert_uuid} expired on"):
        SignatureVerification.for_image(properties, signer.store)


def test_certificate_not_yet_valid(keys: dict[str, PrivateKey], signer: Signer) -> None:
    key = keys["ECC_SECP384R1"]
    now = datetime.now(UTC)
    cert_uuid = signer.add(key, not_before=now + timedelta(days=1),
                           not_after=now + timedelta(days=30))
    properties = props(sign(key, b"x", "SHA-256"), "SHA-256", "ECC_SECP384R1", cert_uuid)
    with pytest.raises(Invalid, match="is not valid before"):
        SignatureVerification.for_image(properties, signer.store)


def test_validity_follows_the_clock(keys: dict[str, PrivateKey], signer: Signer) -> None:
    key = keys["RSA-PSS"]
    properties = props(sign(key, b"x", "SHA-256"), "SHA-256", "RSA-PSS", signer.add(key))
    later = CertificateStore(str(signer.folder),
                             clock=lambda: datetime.now(UTC) + timedelta(days=15))
    with pytest.raises(Invalid, match="expired on"):
        SignatureVerification.for_image(properties, later)


@pytest.mark.parametrize("content", [b"", b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END "
                                     b"CERTIFICATE-----\n", b"\x30\x82garbage"])
def test_certificate_that_is_not_one(keys: dict[str, PrivateKey], signer: Signer,
                                     content: bytes) -> None:
    cert_uuid = str(uuid.uuid4())
    (signer.folder / f"{cert_uuid}.pem").write_bytes(content)
    properties = props(sign(keys["RSA-PSS"], b"x", "SHA-256"), "SHA-256", "RSA-PSS", cert_uuid)
    with pytest.raises(Invalid, match=f"certificate {cert_uuid} is not a usable PEM X.509"):
        SignatureVerification.for_image(properties, signer.store)


def test_no_certificate_store_configured(keys: dict[str, PrivateKey]) -> None:
    properties = props(sign(keys["RSA-PSS"], b"x", "SHA-256"), "SHA-256", "RSA-PSS",
                       str(uuid.uuid4()))
    store = CertificateStore("")
    assert not store.configured
    with pytest.raises(Invalid, match="no certificate store is configured"):
        SignatureVerification.for_image(properties, store)


def test_setting_names_an_existing_folder(tmp_path: Path) -> None:
    assert config.load(environ={}).signature_certificates_dir == ""
    env = {"GLIMPSE_SIGNATURE_CERTIFICATES_DIR": str(tmp_path)}
    assert config.load(environ=env).signature_certificates_dir == str(tmp_path)
    with pytest.raises(config.ConfigError, match="signature_certificates_dir: no such folder"):
        config.load(environ={"GLIMPSE_SIGNATURE_CERTIFICATES_DIR": str(tmp_path / "none")})


# -- memory ------------------------------------------------------------------------------------

def test_memory_stays_flat(keys: dict[str, PrivateKey], signer: Signer) -> None:
    """64 MiB through the stage in 4 MiB batches: the stage keeps none of it."""
    block = os.urandom(4 * MiB)
    expected = hashlib.sha256()
    for _ in range(16):
        expected.update(block)
    key = keys["ECC_SECP384R1"]
    raw = key.sign(expected.digest(), ec.ECDSA(utils.Prehashed(hashes.SHA256())))
    properties = props(base64.b64encode(raw).decode(), "SHA-256", "ECC_SECP384R1",
                       signer.add(key))
    stage = stage_for(properties, signer.store)
    chunks: Sequence[bytes] = [block[i:i + MiB] for i in range(0, len(block), MiB)]
    tracemalloc.start()
    try:
        for _ in range(16):
            stage.update(chunks)
        stage.finish()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 256 * 1024, peak

