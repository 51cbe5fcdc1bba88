"""Opening sessions: `connect()` to a URL, `serve()` on a UDP port; both hand back started `MoqSession`s."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Awaitable, Callable, Sequence

from moq.api.session import MoqSession
from moq.transport import client, server
from moq.transport.base import TransportConnection
from moq.transport.tls import CertificateBundle
from moq.wire.codes import SessionErrorCode
from moq.wire.version import SUPPORTED_VERSIONS, Version

logger = logging.getLogger(__name__)

SessionHandler = Callable[[MoqSession], Awaitable[None]]


async def connect(
    url: str,
    *,
    versions: Sequence[Version] = SUPPORTED_VERSIONS,
    fingerprint: bytes | str | None = None,
    ca_file: str | os.PathLike[str] | None = None,
    verify: bool = True,
    timeout: float = 10.0,
) -> MoqSession:
    """Connect to `moqt://host:port/path` (raw QUIC) or `https://host:port/path` (WebTransport) and exchange
    SETUP. `fingerprint` pins a development certificate's sha-256; `verify=False` disables checks (tests)."""
    conn = await client.connect(
        url, versions=versions, fingerprint=fingerprint, ca_file=ca_file, verify=verify, timeout=timeout
    )
    session = MoqSession(conn)
    try:
        return await session.start(timeout)
    except BaseException:
        conn.close(SessionErrorCode.INTERNAL_ERROR, "setup failed")
        raise


async def serve(
    handler: SessionHandler,
    *,
    host: str = "::",
    port: int = 0,
    certificate: CertificateBundle,
    versions: Sequence[Version] = SUPPORTED_VERSIONS,
    prepare: Callable[[MoqSession], None] | None = None,
    max_datagram_size: int | None = None,
    reuse_port: bool = False,
    path_mtu_discovery: bool = True,
) -> server.MoqtServer:
    """Serve raw QUIC and WebTransport on one UDP port; each session, once SETUP is done, goes to `handler`,
    which owns it until it returns (then the session is closed).

    `prepare(session)` runs before SETUP is exchanged: install request handlers there, because a peer may
    pipeline requests right behind its SETUP (§6.3) and they are dispatched as soon as they arrive.
    `max_datagram_size` is the QUIC packet size (aioquic's 1200 by default; 1452 costs less CPU per byte where
    the path carries it); with `path_mtu_discovery`, each connection probes its path and grows its packets to
    1452 bytes where the path and the peer take them (moq.transport.pmtu). `reuse_port`: bind with
    SO_REUSEPORT, sharing the port with other processes that do (a relay's workers)."""

    async def on_connection(conn: TransportConnection) -> None:
        session = MoqSession(conn)
        if prepare is not None:
            prepare(session)
        try:
            await session.start()
        except (TimeoutError, ConnectionError) as exc:
            logger.info("[%s] setup failed: %s", conn.connection_id, exc)
            session.close(SessionErrorCode.CONTROL_MESSAGE_TIMEOUT, "setup failed")
            return
        try:
            await handler(session)
        finally:
            session.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.wait_closed(), 2.0)

    return await server.serve(
        host,
        port,
        certificate=certificate,
        versions=versions,
        handler=on_connection,
        max_datagram_size=max_datagram_size,
        reuse_port=reuse_port,
        path_mtu_discovery=path_mtu_discovery,
    )
