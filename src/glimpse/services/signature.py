"""Image signature verification as Glance does it: a stage of the upload pipeline.

An image that carries the properties `img_signature` (base64), `img_signature_hash_method`
(SHA-224, SHA-256, SHA-384, SHA-512), `img_signature_key_type` (RSA-PSS, DSA or ECC_<curve>)
and `img_signature_certificate_uuid` has its data checked while it streams in: each batch goes
into a hash of the named method, and at the end the digest is verified against the signature
with the public key of the certificate (RSA-PSS with MGF1 of the same hash, as Glance's
`cursive` library does, accepting the maximum salt length clients use and the digest-length
salt of newer OpenSSL; DSA; ECDSA). The data is never held: memory stays flat whatever the
image size.

Certificates come from a folder of PEM files named `<uuid>.pem` (`CertificateStore`), where
Glance asks Barbican. With no folder configured, a signed image cannot be verified and its
upload is refused with a 400, as Glance refuses it when its key manager cannot give the
certificate.

    for_image(properties, certificates)   None: the image is not signed
                                          Invalid: properties incomplete or malformed, or the
                                          certificate unknown, unreadable, not yet or no longer
                                          valid, or of a key that does not fit the key type
    update(chunks)                        in a worker thread, batch after batch, in order
    finish()                              Invalid: the data does not match the signature
                                          (a 400, as Glance answers cursive's
                                          SignatureVerificationError)
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import dsa, ec, padding, rsa, utils

from glimpse.domain.errors import Invalid
from glimpse.stores.base import Chunk

log = logging.getLogger(__name__)

SIGNATURE = "img_signature"
HASH_METHOD = "img_signature_hash_method"
KEY_TYPE = "img_signature_key_type"
CERT_UUID = "img_signature_certificate_uuid"
#: The properties that ask for verification, in the order their absence is reported.
PROPERTIES = (SIGNATURE, HASH_METHOD, KEY_TYPE, CERT_UUID)

#: Glance's hash methods, by property value: (hashlib name, cryptography algorithm).
HASH_METHODS: Mapping[str, tuple[str, Callable[[], hashes.HashAlgorithm]]] = {
    "SHA-224": ("sha224", hashes.SHA224),
    "SHA-256": ("sha256", hashes.SHA256),
    "SHA-384": ("sha384", hashes.SHA384),
    "SHA-512": ("sha512", hashes.SHA512),
}
RSA_PSS = "RSA-PSS"
DSA = "DSA"
#: Glance's elliptic curves (cursive's list). The binary SECT* curves left `cryptography` in
#: 47.0; on a version without them, those key types are refused with a message that says so.
ECC_CURVES = ("SECT571K1", "SECT409K1", "SECT571R1", "SECT409R1", "SECP521R1", "SECP384R1")
KEY_TYPES = (RSA_PSS, DSA, *(f"ECC_{curve}" for curve in ECC_CURVES))

#: A certificate file larger than this is not a certificate.
MAX_CERTIFICATE_SIZE = 1024 * 1024
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")

PublicKey = rsa.RSAPublicKey | dsa.DSAPublicKey | ec.EllipticCurvePublicKey


def _now() -> datetime:
    return datetime.now(UTC)


class CertificateStore:
    """The certificates signed images name, from a folder of PEM files named `<uuid>.pem`.

    `folder` empty: no store is configured, and every lookup is refused (`Invalid`). Files
    are read on each lookup, so an operator adds, replaces or removes certificates without a
    restart.
    """

    def __init__(self, folder: str | Path, clock: Callable[[], datetime] = _now) -> None:
        self._folder = Path(folder) if str(folder) else None
        self._clock = clock

    @property
    def configured(self) -> bool:
        return self._folder is not None

    def public_key(self, cert_uuid: str) -> PublicKey:
        """The public key of certificate `cert_uuid`, valid now.

        Raises `Invalid` when no store is configured, `cert_uuid` is not a UUID, there is no
        such certificate, it cannot be read or parsed, it is not yet or no longer valid, or its
        key cannot verify signatures (not RSA, DSA or EC).
        """
        if self._folder is None:
            raise Invalid("Signature verification failed: no certificate store is configured "
                          "on this server (signature_certificates_dir), so the certificate "
                          f"{cert_uuid!r} of this signed image cannot be found.")
        name = cert_uuid.strip().lower()
        if not _UUID.fullmatch(name):
            raise Invalid(f"Signature verification failed: {CERT_UUID} {cert_uuid!r} is not "
                          "a UUID.")
        path = self._folder / f"{name}.pem"
        try:
            with path.open("rb") as file:
                data = file.read(MAX_CERTIFICATE_SIZE + 1)
        except FileNotFoundError:
            raise Invalid("Signature verification failed: certificate not found with ID: "
                          f"{name}.") from None
        except OSError as exc:
            log.error("cannot read signature certificate %s: %s", path, exc)
            raise Invalid("Signature verification failed: unable to retrieve certificate "
                          f"with ID: {name}.") from exc
        if len(data) > MAX_CERTIFICATE_SIZE:
            raise Invalid(f"Signature verification failed: certificate {name} is not a "
                          f"certificate (larger than {MAX_CERTIFICATE_SIZE} bytes).")
        try:
            certificate = x509.load_pem_x509_certificate(data)
            key = certificate.public_key()
        except (ValueError, UnsupportedAlgorithm) as exc:
            raise Invalid(f"Signature verification failed: certificate {name} is not a "
                          f"usable PEM X.509 certificate ({exc}).") from exc
        now = self._clock()
        if now < certificate.not_valid_before_utc:
            raise Invalid(f"Signature verification failed: certificate {name} is not valid "
                          f"before {certificate.not_valid_before_utc.isoformat()}.")
        if now > certificate.not_valid_after_utc:
            raise Invalid(f"Signature verification failed: certificate {name} expired on "
                          f"{certificate.not_valid_after_utc.isoformat()}.")
        if not isinstance(key, rsa.RSAPublicKey | dsa.DSAPublicKey | ec.EllipticCurvePublicKey):
            raise Invalid(f"Signature verification failed: certificate {name} holds a "
                          f"{type(key).__name__}, which is not an RSA, DSA or EC key.")
        return key


@dataclass(frozen=True)
class _Request:
    """What the properties of a signed image ask for, checked."""

    signature: bytes
    hash_method: str
    key_type: str
    cert_uuid: str


def _parse(properties: Mapping[str, str]) -> _Request | None:
    present = [name for name in PROPERTIES if name in properties]
    if not present:
        return None
    missing = [name for name in PROPERTIES if name not in properties]
    if missing:
        raise Invalid("Signature verification failed: required image properties for "
                      f"signature verification do not exist; missing: {', '.join(missing)} "
                      f"(a signed image needs all of {', '.join(PROPERTIES)}).")
    hash_method = properties[HASH_METHOD]
    if hash_method not in HASH_METHODS:
        raise Invalid(f"Signature verification failed: invalid signature hash method "
                      f"{hash_method!r}; use one of {', '.join(HASH_METHODS)}.")
    key_type = properties[KEY_TYPE]
    if key_type not in KEY_TYPES:
        raise Invalid(f"Signature verification failed: invalid signature key type "
                      f"{key_type!r}; use one of {', '.join(KEY_TYPES)}.")
    if key_type.startswith("ECC_") and not hasattr(ec, key_type.removeprefix("ECC_")):
        raise Invalid(f"Signature verification failed: signature key type {key_type} is not "
                      "supported by this server's cryptography library (binary curves were "
                      "removed from it); use ECC_SECP521R1 or ECC_SECP384R1.")
    # Glance v2 takes multi-line properties: `base64` without `-w 0` wraps its output.
    encoded = "".join(properties[SIGNATURE].split())
    try:
        signature = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        signature = b""
    if not signature:
        raise Invalid(f"Signature verification failed: {SIGNATURE} is not valid base64 "
                      "(the signature data was not properly encoded using base64).")
    return _Request(signature, hash_method, key_type, properties[CERT_UUID])


def _check_key(key: PublicKey, key_type: str, cert_uuid: str) -> None:
    """The certificate's key must be of the family the key type names (as cursive checks; the
    curve of an ECC_* type is not compared with the key's, as in Glance)."""
    if key_type == RSA_PSS:
        fits = isinstance(key, rsa.RSAPublicKey)
    elif key_type == DSA:
        fits = isinstance(key, dsa.DSAPublicKey)
    else:
        fits = isinstance(key, ec.EllipticCurvePublicKey)
    if not fits:
        raise Invalid(f"Signature verification failed: invalid public key type for signature "
                      f"key type {key_type}: certificate {cert_uuid} holds a "
                      f"{type(key).__name__}.")


class SignatureVerification:
    """A pipeline stage verifying the data of a signed image; see the module docstring."""

    def __init__(self, request: _Request, key: PublicKey) -> None:
        self._request = request
        self._key = key
        hashlib_name, algorithm = HASH_METHODS[request.hash_method]
        # hashlib releases the GIL on large buffers, so the stage runs beside the other hashes.
        self._hash = hashlib.new(hashlib_name)
        self._algorithm = algorithm()
        self._outcome: Invalid | None = None
        self._finished = False

    @classmethod
    def for_image(cls, properties: Mapping[str, str],
                  certificates: CertificateStore) -> SignatureVerification | None:
        """The stage for an image with these properties, or None when it carries none of the
        `img_signature*` properties. Raises `Invalid` (see the module docstring) before any
        byte is read."""
        request = _parse(properties)
        if request is None:
            return None
        key = certificates.public_key(request.cert_uuid)
        _check_key(key, request.key_type, request.cert_uuid)
        return cls(request, key)

    def update(self, chunks: Sequence[Chunk]) -> None:
        if self._finished:
            raise RuntimeError("SignatureVerification.update after finish")
        for chunk in chunks:
            self._hash.update(chunk)

    def finish(self) -> None:
        """Verify the data seen so far against the signature; raises `Invalid` (400, as in
        Glance; every signature failure is one) when it does not match. Calling it again gives
        the same outcome."""
        if not self._finished:
            self._finished = True
            self._outcome = self._verify(self._hash.digest())
        if self._outcome is not None:
            raise self._outcome

    def _verify(self, digest: bytes) -> Invalid | None:
        request, key = self._request, self._key
        prehashed = utils.Prehashed(self._algorithm)
        try:
            if isinstance(key, rsa.RSAPublicKey):
                key.verify(request.signature, digest, _pss(self._algorithm), prehashed)
            elif isinstance(key, dsa.DSAPublicKey):
                key.verify(request.signature, digest, prehashed)
            else:
                key.verify(request.signature, digest, ec.ECDSA(prehashed))
        except InvalidSignature:
            return Invalid(self._refusal())
        return None

    def _refusal(self) -> str:
        request = self._request
        return (f"Signature verification failed: the image data does not match its "
                f"{request.key_type} signature with {request.hash_method} and certificate "
                f"{request.cert_uuid.strip().lower()}.")


def _pss(algorithm: hashes.HashAlgorithm) -> padding.PSS:
    """PSS with MGF1 of the signature's hash, as cursive verifies. Clients sign with the maximum
    salt length (cursive's `PSS.MAX_LENGTH`; `openssl dgst -sigopt rsa_padding_mode:pss` before
    OpenSSL 3.1), newer OpenSSL with the digest length; `cryptography` verifies both under
    `MAX_LENGTH` (50.0 tried), and `AUTO` says so whatever its version."""
    return padding.PSS(mgf=padding.MGF1(algorithm), salt_length=padding.PSS.AUTO)
