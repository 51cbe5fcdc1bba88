"""Fixtures for the transport tests."""

from __future__ import annotations

import pytest

from moq.transport import CertificateBundle, generate_dev_certificate


@pytest.fixture(scope="session")
def certificate() -> CertificateBundle:
    """One development certificate for the whole run (ECDSA P-256 keygen is cheap, but not free)."""
    return generate_dev_certificate()
