"""One UDP port answering both raw QUIC MOQT and MOQT over WebTransport.

The TLS ALPN decides per connection (draft-ietf-moq-transport §6.1.2): `moqt-NN` -> a raw QUIC session of that
draft; `h3` -> HTTP/3, where a WebTransport CONNECT then negotiates the draft. Our ALPN list puts the MOQT drafts
first (best first) and `h3` last, so a client offering both gets native QUIC.

Sessions are handed over once established: to `handler(connection)` (run as a task per session) when given,
else queued for `await server.accept()`.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import logging
import socket
from collections.abc import Awaitable, Callable, Collection, Sequence

from aioquic.asyncio.protocol import QuicStreamHandler
from aioquic.asyncio.server import QuicServer
from aioquic.quic import events as quic_events
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection

from moq.transport import _aioquic
from moq.transport.base import (
    MAX_DATAGRAM_FRAME_SIZE,
    MAX_INFLIGHT_UNI_STREAMS,
    MoqtQuicProtocol,
    TransportConnection,
)
from moq.transport.quic import ALPN_FAILURE, QuicTransportConnection, format_alpn_refusal
from moq.transport.tls import CertificateBundle
from moq.transport.udp import open_udp_endpoint
from moq.transport.webtransport import WebTransportConnection
from moq.wire.version import SUPPORTED_VERSIONS, Version

__all__ = ["MAX_PENDING_ACCEPTS", "MoqtServer", "SessionHandler", "serve"]

logger = logging.getLogger(__name__)

#: Established sessions waiting for `accept()`; past this the newest is closed with INTERNAL_ERROR, because a
#: server that does not accept is overloaded and must not hoard connections.
MAX_PENDING_ACCEPTS = 128

SessionHandler = Callable[[TransportConnection], Awaitable[None]]


class _ServerProtocol(MoqtQuicProtocol):
    """Picks raw QUIC or WebTransport for its connection once TLS has chosen the ALPN."""

    def __init__(self, quic: QuicConnection, stream_handler: QuicStreamHandler | None = None, *, server: MoqtServer):
        super().__init__(quic, stream_handler, probe_path_mtu=server.path_mtu_discovery)
        self._server = server

    def quic_event_received(self, event: quic_events.QuicEvent) -> None:
        if self.connection is None and isinstance(event, quic_events.ProtocolNegotiated):
            self._server._adopt(self, event.alpn_protocol)
        super().quic_event_received(event)

    def transmit(self) -> None:
        if self.connection is None:
            # TLS failed for want of a common ALPN: say which ones we speak, the client's only way to learn it.
            _aioquic.replace_pending_close_reason(self._quic, ALPN_FAILURE, format_alpn_refusal(self._server.alpns))
        super().transmit()


class MoqtServer:
    """A MOQT server socket (see module docstring). Create it with `serve()`."""

    def __init__(
        self,
        *,
        certificate: CertificateBundle,
        versions: Sequence[Version] = SUPPORTED_VERSIONS,
        handler: SessionHandler | None = None,
        allowed_origins: Collection[str] | None = None,
        max_inflight_uni_streams: int = MAX_INFLIGHT_UNI_STREAMS,
        idle_timeout: float = 60.0,
        max_datagram_size: int | None = None,
        webtransport: bool = True,
        path_mtu_discovery: bool = True,
    ) -> None:
        if not versions:
            raise ValueError("a server needs at least one MOQT version")
        self.versions = tuple(versions)
        #: The ALPNs we accept, in preference order.
        self.alpns = [v.alpn for v in self.versions] + (["h3"] if webtransport else [])
        self.certificate = certificate
        #: Probe each connection's path for packets bigger than the configured size (moq.transport.pmtu).
        self.path_mtu_discovery = path_mtu_discovery
        self._handler = handler
        self._allowed_origins = allowed_origins
        self._max_inflight_uni_streams = max_inflight_uni_streams
        self._configuration = QuicConfiguration(
            is_client=False,
            alpn_protocols=self.alpns,
            # Without it, datagrams from browsers are dropped without a word (PLATFORM.md).
            max_datagram_frame_size=MAX_DATAGRAM_FRAME_SIZE,
            idle_timeout=idle_timeout,
        )
        if max_datagram_size is not None:
            self._configuration.max_datagram_size = max_datagram_size
        self._configuration.certificate = certificate.certificate
        self._configuration.certificate_chain = list(certificate.chain)
        self._configuration.private_key = certificate.private_key
        self._accepted: asyncio.Queue[TransportConnection] = asyncio.Queue(MAX_PENDING_ACCEPTS)
        self._sessions: set[TransportConnection] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._endpoint: QuicServer | None = None
        self._transport: asyncio.DatagramTransport | None = None
        self._closed = asyncio.Event()

    def replace_certificate(self, certificate: CertificateBundle) -> None:
        """Present `certificate` to new connections from now on (live sessions keep theirs): renewal without a
        restart. aioquic's server hands this one configuration to every connection it creates."""
        self.certificate = certificate
        self._configuration.certificate = certificate.certificate
        self._configuration.certificate_chain = list(certificate.chain)
        self._configuration.private_key = certificate.private_key

    @property
    def address(self) -> tuple[str, int]:
        """(host, port) the socket is bound to."""
        if self._transport is None:
            raise RuntimeError("server not started")
        sockname = self._transport.get_extra_info("sockname")
        return str(sockname[0]), int(sockname[1])

    @property
    def port(self) -> int:
        """The bound UDP port (useful after binding port 0)."""
        return self.address[1]

    @property
    def sessions(self) -> frozenset[TransportConnection]:
        """Established sessions not yet terminated."""
        return frozenset(self._sessions)

    async def start(self, host: str = "::", port: int = 0, *, reuse_port: bool = False) -> None:
        """Bind the UDP socket. `::` is dual stack (browsers try ::1 first for `localhost`). `reuse_port`: share
        the port with other sockets that set it too (SO_REUSEPORT; the kernel hashes each client's address 4-tuple
        to one socket, so a connection stays with one process unless the client's address changes)."""
        sock = _bind_udp(host, port, reuse_port)
        transport, protocol = await open_udp_endpoint(
            lambda: QuicServer(
                configuration=self._configuration,
                create_protocol=functools.partial(_ServerProtocol, server=self),
            ),
            sock,
        )
        assert isinstance(protocol, QuicServer)
        self._transport = transport
        self._endpoint = protocol
        logger.info("MOQT server on %s port %d, ALPNs %s", host, self.port, self.alpns)

    async def accept(self) -> TransportConnection:
        """The next established session (only when no handler was given)."""
        if self._handler is not None:
            raise RuntimeError("sessions go to the handler given to serve()")
        return await self._accepted.get()

    def close(self) -> None:
        """Close every session (code 0, "server shutting down") and the socket."""
        if self._closed.is_set():
            return
        self._closed.set()
        for session in list(self._sessions):
            session.close(0, "server shutting down")
        for task in list(self._tasks):
            task.cancel()
        if self._endpoint is not None:
            self._endpoint.close()

    async def wait_closed(self) -> None:
        """Wait for `close()` and for the session handlers to finish."""
        await self._closed.wait()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def __aenter__(self) -> MoqtServer:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()
        await self.wait_closed()

    # ------------------------------------------------------------------ internals

    def _adopt(self, protocol: _ServerProtocol, alpn: str | None) -> None:
        connection: TransportConnection
        if alpn == "h3":
            connection = WebTransportConnection(
                protocol,
                is_client=False,
                versions=self.versions,
                max_inflight_uni_streams=self._max_inflight_uni_streams,
                allowed_origins=self._allowed_origins,
            )
        elif alpn is not None and Version.from_alpn(alpn) in self.versions:
            connection = QuicTransportConnection(
                protocol,
                is_client=False,
                offered=self.versions,
                max_inflight_uni_streams=self._max_inflight_uni_streams,
            )
        else:
            return
        connection._ready.add_done_callback(lambda ready: self._established(connection, ready))

    def _established(self, connection: TransportConnection, ready: asyncio.Future[None]) -> None:
        if ready.cancelled() or ready.exception() is not None or self._closed.is_set():
            return
        self._sessions.add(connection)
        connection._on_terminated.append(lambda: self._sessions.discard(connection))
        if self._handler is not None:
            task = asyncio.get_running_loop().create_task(self._run_handler(self._handler, connection))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            return
        try:
            self._accepted.put_nowait(connection)
        except asyncio.QueueFull:
            connection.log.warning("accept queue full: closing")
            connection.close(0x1, "server busy")

    async def _run_handler(self, handler: SessionHandler, connection: TransportConnection) -> None:
        try:
            await handler(connection)
        except asyncio.CancelledError:
            raise
        except Exception:
            connection.log.exception("session handler failed")
            connection.close(0x1, "internal error")


def _bind_udp(host: str, port: int, reuse_port: bool = False) -> socket.socket:
    try:
        family = socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET
    except ValueError:
        family = socket.AF_INET6 if host in ("", "::") else socket.AF_INET
        host = host or "::"
    if reuse_port and not hasattr(socket, "SO_REUSEPORT"):
        raise OSError("SO_REUSEPORT is not available on this platform")
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            # Dual stack explicitly: the default depends on a sysctl.
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind((host, port))
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


async def serve(
    host: str = "::",
    port: int = 0,
    *,
    certificate: CertificateBundle,
    versions: Sequence[Version] = SUPPORTED_VERSIONS,
    handler: SessionHandler | None = None,
    allowed_origins: Collection[str] | None = None,
    max_inflight_uni_streams: int = MAX_INFLIGHT_UNI_STREAMS,
    idle_timeout: float = 60.0,
    max_datagram_size: int | None = None,
    path_mtu_discovery: bool = True,
    webtransport: bool = True,
    reuse_port: bool = False,
) -> MoqtServer:
    """Start a MOQT server for raw QUIC and WebTransport on one UDP port and return it.

    `versions` are accepted in that preference order. `handler(connection)` runs once per established session
    (its return does not close the session); without a handler use `await server.accept()`.
    `max_datagram_size` is the QUIC packet size (aioquic's default 1200 is safe on any path; larger packets cut
    aioquic's per-packet CPU cost on known-good paths). `webtransport=False` serves raw QUIC only. `reuse_port`
    binds with SO_REUSEPORT, so several processes can serve one port (`MoqtServer.start`).
    """
    server = MoqtServer(
        certificate=certificate,
        versions=versions,
        handler=handler,
        allowed_origins=allowed_origins,
        max_inflight_uni_streams=max_inflight_uni_streams,
        idle_timeout=idle_timeout,
        max_datagram_size=max_datagram_size,
        path_mtu_discovery=path_mtu_discovery,
        webtransport=webtransport,
    )
    await server.start(host, port, reuse_port=reuse_port)
    return server
