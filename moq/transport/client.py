"""Connecting to a MOQT server: `connect("moqt://host:port/path")` (raw QUIC) or `connect("https://...")`
(WebTransport), draft-ietf-moq-transport §6.1-6.2.
"""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection

from moq.transport.base import MAX_DATAGRAM_FRAME_SIZE, MAX_INFLIGHT_UNI_STREAMS, MoqtQuicProtocol, TransportConnection
from moq.transport.errors import ConnectError
from moq.transport.quic import QuicTransportConnection
from moq.transport.tls import parse_fingerprint
from moq.transport.udp import open_udp_endpoint
from moq.transport.webtransport import WebTransportConnection
from moq.wire.version import SUPPORTED_VERSIONS, Version

__all__ = ["MoqtUrl", "connect", "parse_url"]

_DEFAULT_PORT = 443


@dataclass(frozen=True)
class MoqtUrl:
    """A parsed `moqt://` or `https://` URL.

    `authority` and `path` are what a raw QUIC client puts in its SETUP's AUTHORITY and PATH options
    (draft §6.2.2: path-abempty plus "?" query when there is one). The fragment stays local (§6.1.1).
    """

    scheme: str
    host: str
    port: int
    authority: str
    path: str
    fragment: str

    @property
    def webtransport(self) -> bool:
        """True for `https://` (WebTransport), False for `moqt://` (raw QUIC)."""
        return self.scheme == "https"


def parse_url(url: str) -> MoqtUrl:
    """Parse a MOQT URL (draft §6.1); raise ValueError for other schemes or an empty host."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("moqt", "https"):
        raise ValueError(f"expected a moqt:// (raw QUIC) or https:// (WebTransport) URL, got {url!r}")
    host = parts.hostname
    if not host:
        raise ValueError(f"the URL has no host: {url!r}")
    try:
        port = parts.port or _DEFAULT_PORT
    except ValueError as exc:
        raise ValueError(f"bad port in {url!r}") from exc
    authority = parts.netloc.rpartition("@")[2]  # userinfo is not part of the authority we send
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    return MoqtUrl(scheme=scheme, host=host, port=port, authority=authority, path=path, fragment=parts.fragment)


async def connect(
    url: str,
    *,
    versions: Sequence[Version] = SUPPORTED_VERSIONS,
    ca_file: str | os.PathLike[str] | None = None,
    fingerprint: bytes | str | None = None,
    verify: bool = True,
    server_name: str | None = None,
    origin: str | None = None,
    timeout: float = 10.0,
    max_inflight_uni_streams: int = MAX_INFLIGHT_UNI_STREAMS,
    idle_timeout: float = 60.0,
    max_datagram_size: int | None = None,
) -> TransportConnection:
    """Establish a MOQT session's transport and return it once the version is negotiated.

    - `versions`: offered best first (the server picks by its own preference among them).
    - Server authentication: `fingerprint` pins the SHA-256 of the server certificate's DER (bytes, or hex with
      or without colons), as browsers' `serverCertificateHashes`; otherwise the certificate is verified against
      `ca_file` (or the system/certifi roots) and `server_name` (default: the URL's host); `verify=False`
      disables all checks (tests only).
    - Raises `VersionNegotiationFailed` (naming both sides' lists), `CertificateMismatch`,
      `WebTransportRejected`, or `ConnectError` for anything else, including the timeout.
    """
    target = parse_url(url)
    versions = tuple(versions)
    if not versions:
        raise ValueError("offer at least one MOQT version")
    pinned = parse_fingerprint(fingerprint) if isinstance(fingerprint, str) else fingerprint
    configuration = QuicConfiguration(
        is_client=True,
        alpn_protocols=["h3"] if target.webtransport else [v.alpn for v in versions],
        max_datagram_frame_size=MAX_DATAGRAM_FRAME_SIZE,
        server_name=server_name or target.host,
        idle_timeout=idle_timeout,
    )
    if max_datagram_size is not None:
        configuration.max_datagram_size = max_datagram_size
    if pinned is not None or not verify:
        # A pinned certificate is checked by its hash once the handshake completes (no CA involved).
        configuration.verify_mode = ssl.CERT_NONE
    elif ca_file is not None:
        configuration.load_verify_locations(cafile=os.fspath(ca_file))

    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(target.host, target.port, type=socket.SOCK_DGRAM)
    except OSError as exc:
        raise ConnectError(f"cannot resolve {target.host!r}: {exc}") from exc
    family, _, _, _, address = infos[0]
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.bind(("::", 0, 0, 0) if family == socket.AF_INET6 else ("0.0.0.0", 0))
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    quic = QuicConnection(configuration=configuration)
    transport, protocol = await open_udp_endpoint(lambda: MoqtQuicProtocol(quic), sock)
    assert isinstance(protocol, MoqtQuicProtocol)

    connection: TransportConnection
    if target.webtransport:
        connection = WebTransportConnection(
            protocol,
            is_client=True,
            versions=versions,
            max_inflight_uni_streams=max_inflight_uni_streams,
            authority=target.authority,
            path=target.path or "/",
            pinned_fingerprint=pinned,
            origin=origin,
        )
    else:
        connection = QuicTransportConnection(
            protocol,
            is_client=True,
            offered=versions,
            max_inflight_uni_streams=max_inflight_uni_streams,
            authority=target.authority,
            path=target.path,
            pinned_fingerprint=pinned,
        )
    connection._on_terminated.append(transport.close)
    connection.log.debug("connecting to %s (%s)", url, address)
    protocol.connect(address)
    try:
        await asyncio.wait_for(connection._wait_ready(), timeout)
    except BaseException as exc:
        if not connection.is_closed:
            connection.close(0x1, "connect failed")
        # The CONNECTION_CLOSE went out synchronously; nothing else needs this socket.
        transport.close()
        if isinstance(exc, TimeoutError):
            raise ConnectError(f"no MOQT session with {target.authority} within {timeout} s") from None
        raise
    return connection
