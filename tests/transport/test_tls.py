"""Development certificates and PEM loading. No sockets."""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from moq.transport.tls import (
    DEV_CERT_VALIDITY,
    CertificateBundle,
    fingerprint_colon,
    generate_dev_certificate,
    load_certificate,
    load_or_create_dev_certificate,
    parse_fingerprint,
)


def test_dev_certificate_suits_server_certificate_hashes(certificate: CertificateBundle) -> None:
    """What Chromium's serverCertificateHashes demands: ECDSA P-256, self-signed, valid for at most 14 days."""
    cert = certificate.certificate
    key = certificate.private_key
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert isinstance(key.curve, ec.SECP256R1)
    assert cert.issuer == cert.subject
    span = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert span == DEV_CERT_VALIDITY <= datetime.timedelta(days=14)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert set(san.get_values_for_type(x509.IPAddress)) == {
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
    }


def test_extra_hostnames_and_ips() -> None:
    bundle = generate_dev_certificate(["relay.test", "10.1.2.3", "localhost"])
    assert bundle.covers(["relay.test", "10.1.2.3", "localhost", "127.0.0.1", "::1"])
    assert not bundle.covers(["other.test"])
    assert not bundle.covers(["10.9.9.9"])


def test_fingerprint_forms(certificate: CertificateBundle) -> None:
    der = certificate.certificate.public_bytes(serialization.Encoding.DER)
    assert certificate.fingerprint == hashlib.sha256(der).digest()
    assert certificate.fingerprint_hex == hashlib.sha256(der).hexdigest()
    assert certificate.fingerprint_colon == ":".join(f"{b:02X}" for b in certificate.fingerprint)
    assert len(certificate.fingerprint_colon) == 32 * 3 - 1
    for text in (certificate.fingerprint_hex, certificate.fingerprint_colon, certificate.fingerprint_colon.lower()):
        assert parse_fingerprint(text) == certificate.fingerprint
    assert fingerprint_colon(b"\x01\xab") == "01:AB"
    with pytest.raises(ValueError):
        parse_fingerprint("abcd")
    with pytest.raises(ValueError):
        parse_fingerprint("zz" * 32)


def test_renewal_window(certificate: CertificateBundle) -> None:
    issued = certificate.certificate.not_valid_before_utc
    assert not certificate.needs_renewal()
    assert not certificate.needs_renewal(now=issued + datetime.timedelta(days=7))
    assert certificate.needs_renewal(now=issued + datetime.timedelta(days=8, hours=1))  # < 2 days left
    assert certificate.needs_renewal(now=issued - datetime.timedelta(hours=1))  # not valid yet
    assert certificate.remaining(now=issued) == DEV_CERT_VALIDITY


def test_save_and_load(certificate: CertificateBundle, tmp_path: Path) -> None:
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    certificate.save(cert_file, key_file)
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    loaded = load_certificate(cert_file, key_file)
    assert loaded.fingerprint == certificate.fingerprint
    # The key may also follow the certificate in one file.
    combined = tmp_path / "combined.pem"
    combined.write_bytes(certificate.certificate_pem() + certificate.private_key_pem())
    assert load_certificate(combined).fingerprint == certificate.fingerprint


def test_load_refuses_a_key_that_does_not_match(certificate: CertificateBundle, tmp_path: Path) -> None:
    other = generate_dev_certificate()
    certificate.save(tmp_path / "cert.pem", tmp_path / "key.pem")
    other.save(tmp_path / "other.pem", tmp_path / "other-key.pem")
    with pytest.raises(ValueError, match="does not match"):
        load_certificate(tmp_path / "cert.pem", tmp_path / "other-key.pem")
    with pytest.raises(ValueError, match="no usable PEM private key"):
        load_certificate(tmp_path / "cert.pem")
    (tmp_path / "empty.pem").write_bytes(b"")
    with pytest.raises(ValueError):
        load_certificate(tmp_path / "empty.pem", tmp_path / "key.pem")


def test_load_or_create_reuses_then_renews(tmp_path: Path) -> None:
    cert_file, key_file = tmp_path / "dev.pem", tmp_path / "dev-key.pem"
    first = load_or_create_dev_certificate(cert_file, key_file, ["relay.test"])
    again = load_or_create_dev_certificate(cert_file, key_file, ["relay.test"])
    assert again.fingerprint == first.fingerprint
    # A name the certificate lacks, or a certificate about to expire, gets a new one.
    wider = load_or_create_dev_certificate(cert_file, key_file, ["relay.test", "other.test"])
    assert wider.fingerprint != first.fingerprint
    later = wider.certificate.not_valid_after_utc - datetime.timedelta(days=1)
    renewed = load_or_create_dev_certificate(cert_file, key_file, ["relay.test", "other.test"], now=later)
    assert renewed.fingerprint != wider.fingerprint
    assert load_certificate(cert_file, key_file).fingerprint == renewed.fingerprint
