"""TLS certificates for MOQT servers: short-lived development certificates and real PEM files.

A browser reaches a server with a self-signed certificate only through WebTransport's
`serverCertificateHashes`, which (W3C WebTransport §"Certificate hashes") accepts an ECDSA P-256 certificate
valid for at most 14 days, pinned by the SHA-256 of its DER encoding. `generate_dev_certificate()` makes exactly
that; `CertificateBundle.fingerprint_hex` / `fingerprint_colon` are the pins a page or a `connect(...,
fingerprint=...)` call needs. Certificates are renewed well before they expire (`needs_renewal()`).

This module does no IO beyond reading and writing the PEM files it is given.
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = [
    "DEV_CERT_VALIDITY",
    "RENEWAL_MARGIN",
    "CertificateBundle",
    "PrivateKey",
    "fingerprint_colon",
    "fingerprint_hex",
    "generate_dev_certificate",
    "load_certificate",
    "load_or_create_dev_certificate",
    "parse_fingerprint",
]

#: How long a development certificate is valid. Chromium refuses `serverCertificateHashes` certificates valid
#: for more than 14 days (a 30-day one was refused on this platform, see PLATFORM.md); 10 days leaves room.
DEV_CERT_VALIDITY = datetime.timedelta(days=10)

#: Renew a certificate when less than this is left, so a long-running server never serves an expired one.
RENEWAL_MARGIN = datetime.timedelta(days=2)

#: Backdating of `not_valid_before`, so that a peer whose clock is slightly behind still accepts a fresh cert.
#: Kept small because Chromium counts it in the 14-day validity limit.
_CLOCK_SKEW = datetime.timedelta(minutes=5)

#: The names every development certificate covers, whatever else is asked for.
_DEFAULT_NAMES = ("localhost", "127.0.0.1", "::1")

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey


def _utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def fingerprint_hex(digest: bytes) -> str:
    """A SHA-256 digest as lowercase hex without separators (`"3f2a..."`)."""
    return digest.hex()


def fingerprint_colon(digest: bytes) -> str:
    """A SHA-256 digest in the colon form browsers and OpenSSL print (`"3F:2A:..."`)."""
    return ":".join(f"{b:02X}" for b in digest)


def parse_fingerprint(text: str) -> bytes:
    """Parse a SHA-256 fingerprint given as hex, with or without colons or spaces; raise ValueError otherwise."""
    cleaned = text.strip().replace(":", "").replace(" ", "")
    if cleaned.lower().startswith("sha-256="):
        cleaned = cleaned[len("sha-256=") :]
    try:
        digest = bytes.fromhex(cleaned)
    except ValueError:
        raise ValueError(f"not a hex SHA-256 fingerprint: {text!r}") from None
    if len(digest) != 32:
        raise ValueError(f"a SHA-256 fingerprint has 32 bytes, got {len(digest)}: {text!r}")
    return digest


@dataclass(frozen=True)
class CertificateBundle:
    """A certificate, its chain (leaf first, chain without the leaf) and its private key."""

    certificate: x509.Certificate
    private_key: PrivateKey
    chain: tuple[x509.Certificate, ...] = ()

    @property
    def der(self) -> bytes:
        """The leaf certificate, DER-encoded: what `serverCertificateHashes` hashes."""
        return self.certificate.public_bytes(serialization.Encoding.DER)

    @property
    def fingerprint(self) -> bytes:
        """SHA-256 of the leaf certificate's DER encoding (32 bytes)."""
        return hashlib.sha256(self.der).digest()

    @property
    def fingerprint_hex(self) -> str:
        """`fingerprint` as lowercase hex."""
        return fingerprint_hex(self.fingerprint)

    @property
    def fingerprint_colon(self) -> str:
        """`fingerprint` in the colon form (`AB:CD:...`)."""
        return fingerprint_colon(self.fingerprint)

    @property
    def not_valid_after(self) -> datetime.datetime:
        """End of validity (UTC)."""
        return self.certificate.not_valid_after_utc

    def remaining(self, now: datetime.datetime | None = None) -> datetime.timedelta:
        """Time left before the certificate expires (negative once expired)."""
        return self.not_valid_after - (now or _utcnow())

    def needs_renewal(self, now: datetime.datetime | None = None, margin: datetime.timedelta = RENEWAL_MARGIN) -> bool:
        """True when less than `margin` of validity is left (or the certificate is not valid yet)."""
        now = now or _utcnow()
        return now < self.certificate.not_valid_before_utc or self.remaining(now) < margin

    def covers(self, names: Iterable[str]) -> bool:
        """True when every name (DNS name or IP address) is in the certificate's subjectAltName."""
        try:
            san = self.certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        except x509.ExtensionNotFound:
            return False
        dns = {name.lower() for name in san.get_values_for_type(x509.DNSName)}
        ips = set(san.get_values_for_type(x509.IPAddress))
        for name in names:
            ip = _as_ip(name)
            if ip is None and name.lower() not in dns:
                return False
            if ip is not None and ip not in ips:
                return False
        return True

    def certificate_pem(self) -> bytes:
        """The leaf followed by its chain, PEM-encoded."""
        return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in (self.certificate, *self.chain))

    def private_key_pem(self) -> bytes:
        """The private key as unencrypted PKCS#8 PEM."""
        return self.private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    def save(self, cert_path: str | os.PathLike[str], key_path: str | os.PathLike[str]) -> None:
        """Write the certificate (with chain) and the key as PEM; the key file is created mode 0600."""
        Path(cert_path).write_bytes(self.certificate_pem())
        key_file = Path(key_path)
        # Create the key file private from the start instead of chmod-ing after the key is already on disk.
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fp:
            fp.write(self.private_key_pem())


def _as_ip(name: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(name.strip("[]"))
    except ValueError:
        return None


def generate_dev_certificate(
    hostnames: Iterable[str] = (),
    *,
    validity: datetime.timedelta = DEV_CERT_VALIDITY,
    now: datetime.datetime | None = None,
) -> CertificateBundle:
    """A fresh self-signed ECDSA P-256 certificate for localhost, 127.0.0.1, ::1 and `hostnames`.

    Meant for development and tests: pin it with `fingerprint` (browsers: `serverCertificateHashes`).
    It is not a CA and cannot sign other certificates.
    """
    now = now or _utcnow()
    names: list[str] = []
    for name in (*_DEFAULT_NAMES, *hostnames):
        if name and name not in names:
            names.append(name)
    alt_names: list[x509.GeneralName] = []
    for name in names:
        ip = _as_ip(name)
        alt_names.append(x509.IPAddress(ip) if ip is not None else x509.DNSName(name))

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name(
        [x509.NameAttribute(NameOID.COMMON_NAME, names[len(_DEFAULT_NAMES)] if hostnames else "moq dev")]
    )
    not_before = now - _CLOCK_SKEW
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        # Validity counted from not_before so the total span never exceeds `validity` (Chromium's limit is on
        # the span, not on the time left).
        .not_valid_after(not_before + validity)
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    )
    certificate = builder.sign(key, hashes.SHA256())
    return CertificateBundle(certificate=certificate, private_key=key)


def load_certificate(
    cert_path: str | os.PathLike[str],
    key_path: str | os.PathLike[str] | None = None,
    password: bytes | None = None,
) -> CertificateBundle:
    """Load a PEM certificate (leaf first, then its chain) and its PEM private key.

    The key may be in the certificate file itself (after the certificates) when `key_path` is None.
    Raises ValueError when a file holds no certificate or no usable key, or when the key does not match.
    """
    cert_data = Path(cert_path).read_bytes()
    certificates = x509.load_pem_x509_certificates(cert_data)
    if not certificates:
        raise ValueError(f"no PEM certificate in {os.fspath(cert_path)!r}")
    key_data = Path(key_path).read_bytes() if key_path is not None else cert_data
    try:
        key = serialization.load_pem_private_key(key_data, password=password)
    except ValueError as exc:
        where = os.fspath(key_path if key_path is not None else cert_path)
        raise ValueError(f"no usable PEM private key in {where!r}: {exc}") from exc
    if not isinstance(
        key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey
    ):
        raise ValueError(f"unsupported private key type {type(key).__name__}")
    leaf = certificates[0]
    ours = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    theirs = leaf.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    if ours != theirs:
        raise ValueError("the private key does not match the certificate")
    return CertificateBundle(certificate=leaf, private_key=key, chain=tuple(certificates[1:]))


def load_or_create_dev_certificate(
    cert_path: str | os.PathLike[str],
    key_path: str | os.PathLike[str],
    hostnames: Iterable[str] = (),
    *,
    now: datetime.datetime | None = None,
) -> CertificateBundle:
    """Reuse the development certificate at the paths if it is still good, else generate and save a new one.

    "Still good" means: loadable, covering every requested name, and not `needs_renewal()`.
    """
    names = list(hostnames)
    try:
        bundle = load_certificate(cert_path, key_path)
    except (OSError, ValueError):
        bundle = None
    if bundle is not None and not bundle.needs_renewal(now) and bundle.covers([*_DEFAULT_NAMES, *names]):
        return bundle
    bundle = generate_dev_certificate(names, now=now)
    bundle.save(cert_path, key_path)
    return bundle
