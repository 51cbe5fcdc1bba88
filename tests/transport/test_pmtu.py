"""Path MTU discovery (moq/transport/pmtu.py): packets grow to 1452 bytes where the path takes them, and stay at
1200 where it does not.

Real QUIC sessions on loopback, through a UDP forwarder between client and server that records every datagram's
size and can drop the ones bigger than a limit (a path with a smaller MTU, as a tunnel would have).
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from aioquic.buffer import Buffer
from aioquic.quic.packet import QuicTransportParameters, push_quic_transport_parameters

from moq.transport import (
    CertificateBundle,
    StreamDataReceived,
    TransportConnection,
    TransportKind,
    _aioquic,
    connect,
    pmtu,
    serve,
)
from moq.transport.base import MoqtQuicProtocol
from tests.transport.helpers import KINDS, finish, run, url_for
from tests.transport.test_transport import read_stream

BASE = 1200
PROBED = pmtu.PROBED_DATAGRAM_SIZES[0]


class Forwarder(asyncio.DatagramProtocol):
    """A UDP path between one client and a server: forwards both ways, records sizes, drops datagrams > `mtu`."""

    def __init__(self, server: tuple[str, int], mtu: int) -> None:
        self.server = server
        self.mtu = mtu
        self.client: Any = None
        self.transport: asyncio.DatagramTransport | None = None
        self.to_server: list[int] = []
        self.to_client: list[int] = []
        self.dropped = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # asyncio's is a DatagramTransport, unregistered

    def datagram_received(self, data: bytes, addr: Any) -> None:
        assert self.transport is not None
        from_server = addr == self.server
        if not from_server:
            self.client = addr
        (self.to_client if from_server else self.to_server).append(len(data))
        if len(data) > self.mtu:
            self.dropped += 1
            return
        target = self.client if from_server else self.server
        if target is not None:
            self.transport.sendto(data, target)


@asynccontextmanager
async def forwarded(
    kind: TransportKind, certificate: CertificateBundle, mtu: int
) -> AsyncIterator[tuple[Forwarder, TransportConnection, TransportConnection]]:
    """A server, a client connected to it through a Forwarder (the path, with `mtu`): (path, server side, client)."""
    server = await serve("127.0.0.1", 0, certificate=certificate)
    transport: asyncio.DatagramTransport | None = None
    try:
        loop = asyncio.get_running_loop()
        transport, forwarder = await loop.create_datagram_endpoint(
            lambda: Forwarder(("127.0.0.1", server.port), mtu), local_addr=("127.0.0.1", 0)
        )
        forwarder.transport = transport
        port = transport.get_extra_info("sockname")[1]
        client = await connect(url_for(kind, port), fingerprint=certificate.fingerprint)
        try:
            peer = await asyncio.wait_for(server.accept(), 10)
            yield forwarder, peer, client
        finally:
            await finish(client)
    finally:
        if transport is not None:
            transport.close()
        server.close()
        await server.wait_closed()


def prober(connection: TransportConnection) -> pmtu.PathMtuProber:
    protocol = connection._protocol
    assert isinstance(protocol, MoqtQuicProtocol) and protocol.pmtu is not None
    return protocol.pmtu


def congestion_losses(connection: TransportConnection) -> list[int]:
    """The sizes of the lost packets aioquic reports to a connection's congestion controller, from now on."""
    sizes: list[int] = []
    _aioquic.watch_lost_packets(connection._quic, lambda packets: sizes.extend(p.sent_bytes for p in packets))
    return sizes


async def exchange_until(peer: TransportConnection, client: TransportConnection, done: Callable[[], bool]) -> int:
    """Send a stream of 20 KB each way, again and again, until `done()` (at most 200 rounds); the rounds it took."""
    payload = bytes(range(256)) * 80
    for rounds in range(1, 201):
        for sender, receiver in ((peer, client), (client, peer)):
            stream_id = sender.try_open_uni_stream()
            assert stream_id is not None
            sender.send(stream_id, payload, end_stream=True)
            _, data = await asyncio.wait_for(read_stream(receiver, stream_id), 10)
            assert data == payload
        if done():
            return rounds
    raise AssertionError("not done after 200 rounds")


@pytest.mark.parametrize("kind", KINDS)
def test_packets_grow_to_the_probed_size_on_a_path_that_takes_it(
    kind: TransportKind, certificate: CertificateBundle
) -> None:
    async def scenario() -> None:
        async with forwarded(kind, certificate, mtu=1500) as (path, peer, client):
            server_side, client_side = prober(peer), prober(client)
            await exchange_until(peer, client, lambda: server_side.size == PROBED and client_side.size == PROBED)
            # One probe acknowledged on each side (a probe lost on a busy machine's loopback is sent again).
            for side in (server_side, client_side):
                assert side.probes_acked == 1 and side.probes_sent == 1 + side.probes_lost
            # From now on, full packets are PROBED bytes in both directions; none bigger.
            seen = len(path.to_client), len(path.to_server)
            await exchange_until(peer, client, lambda: True)
            to_client, to_server = path.to_client[seen[0] :], path.to_server[seen[1] :]
            assert max(to_client) == PROBED and max(to_server) == PROBED
            assert to_client.count(PROBED) >= 10 and to_server.count(PROBED) >= 10
            assert path.dropped == 0

    run(scenario())


@pytest.mark.parametrize("kind", KINDS)
def test_a_path_that_drops_big_packets_keeps_the_connection_at_1200_bytes(
    kind: TransportKind, certificate: CertificateBundle, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pmtu, "PROBE_RETRY_SECONDS", 0.05)

    async def scenario() -> None:
        async with forwarded(kind, certificate, mtu=1400) as (path, peer, client):
            server_side, client_side = prober(peer), prober(client)
            server_losses, client_losses = congestion_losses(peer), congestion_losses(client)
            gave_up = (pmtu.MAX_PROBES, 0, pmtu.MAX_PROBES)
            rounds = await exchange_until(
                peer,
                client,
                lambda: (
                    (server_side.probes_sent, server_side.probes_acked, server_side.probes_lost) == gave_up
                    and (client_side.probes_sent, client_side.probes_acked, client_side.probes_lost) == gave_up
                ),
            )
            assert server_side.size == BASE and client_side.size == BASE
            # Every probe was dropped on the path; nothing else was, and the data kept flowing meanwhile.
            assert path.dropped == 2 * pmtu.MAX_PROBES
            # Probes stop: more traffic sends none.
            await exchange_until(peer, client, lambda: True)
            assert server_side.probes_sent == client_side.probes_sent == pmtu.MAX_PROBES
            assert path.dropped == 2 * pmtu.MAX_PROBES and rounds >= 1
            assert max(path.to_client[-20:]) <= BASE
            # A lost probe is no congestion signal (RFC 9000 §14.4): the congestion controllers were told of lost
            # packets only of the connection's own size (the forwarder may lose some under load), never of a probe.
            assert max(server_losses + client_losses, default=0) <= BASE

    run(scenario())


def test_a_peer_that_takes_less_is_probed_at_its_own_limit(
    certificate: CertificateBundle, monkeypatch: pytest.MonkeyPatch
) -> None:
    """picoquic's max_udp_payload_size is 1440: its connections are probed at 1440, not left at 1200."""
    monkeypatch.setattr(_aioquic, "peer_max_udp_payload_size", lambda quic: 1300)

    async def scenario() -> None:
        async with forwarded(KINDS[0], certificate, mtu=1500) as (path, peer, client):
            await exchange_until(peer, client, lambda: prober(peer).size == 1300 and prober(client).size == 1300)
            seen = len(path.to_client)
            await exchange_until(peer, client, lambda: True)
            assert max(path.to_client[seen:]) == 1300

    run(scenario())


def test_probing_can_be_turned_off(certificate: CertificateBundle) -> None:
    async def scenario() -> None:
        server = await serve("127.0.0.1", 0, certificate=certificate, path_mtu_discovery=False)
        try:
            client = await connect(url_for(KINDS[0], server.port), fingerprint=certificate.fingerprint)
            peer = await asyncio.wait_for(server.accept(), 10)
            protocol = peer._protocol
            assert isinstance(protocol, MoqtQuicProtocol) and protocol.pmtu is None
            await exchange_until(peer, client, lambda: prober(client).size == PROBED)
            assert _aioquic.max_datagram_size(peer._quic) == BASE  # the server still sends 1200
            await finish(client)
        finally:
            server.close()
            await server.wait_closed()

    run(scenario())


class FakeTls:
    def __init__(self, extensions: list[tuple[int, bytes]]) -> None:
        self.received_extensions = extensions


class FakeQuic:
    def __init__(self, extensions: list[tuple[int, bytes]]) -> None:
        self.tls = FakeTls(extensions)


def transport_parameters(**fields: Any) -> bytes:
    buf = Buffer(capacity=512)
    push_quic_transport_parameters(buf, QuicTransportParameters(**fields))
    return buf.data


def test_the_peers_max_udp_payload_size_is_read_from_its_transport_parameters() -> None:
    ext = 0x39  # quic_transport_parameters (RFC 9001 §8.2)
    said = FakeQuic([(ext, transport_parameters(max_udp_payload_size=1350))])
    unsaid = FakeQuic([(ext, transport_parameters(initial_max_data=1000))])
    assert _aioquic.peer_max_udp_payload_size(said) == 1350  # type: ignore[arg-type]
    assert _aioquic.peer_max_udp_payload_size(unsaid) == 65527  # type: ignore[arg-type]
    assert _aioquic.peer_max_udp_payload_size(FakeQuic([])) == 65527  # type: ignore[arg-type]


def test_a_path_that_stops_taking_big_packets_falls_back_and_is_probed_again(
    certificate: CertificateBundle, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A black hole (RFC 8899 §4.3): packets grew to 1452 bytes, then the path's MTU shrinks to 1280. With bulk data
    every packet is big and nothing is acknowledged any more: probe timeouts pile up, each side goes back to 1200
    bytes, and the data flows again; once the path takes big packets again they come back."""
    monkeypatch.setattr(pmtu, "BLACK_HOLE_REPROBE_SECONDS", 0.5)
    monkeypatch.setattr(pmtu, "PROBE_RETRY_SECONDS", 0.05)

    async def scenario() -> None:
        async with forwarded(KINDS[0], certificate, mtu=1500) as (path, peer, client):
            sides = prober(peer), prober(client)
            await exchange_until(peer, client, lambda: all(s.size == PROBED for s in sides))
            path.mtu = 1280
            await exchange_until(peer, client, lambda: all(s.size == BASE for s in sides))
            assert all(s.black_holes == 1 for s in sides)
            # Data flows at 1200 bytes: whole exchanges with nothing over the path's MTU dropped any more.
            dropped = path.dropped
            await exchange_until(peer, client, lambda: True)
            assert path.dropped == dropped
            path.mtu = 1500
            await exchange_until(peer, client, lambda: all(s.size == PROBED for s in sides))
            assert all(s.probes_acked == 2 for s in sides)

    run(scenario())


def test_a_black_hole_under_small_packets_that_still_pass_is_found_by_confirmation_probes(
    certificate: CertificateBundle, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Media at a low rate: a 100-byte stream every 10 ms (audio) and a 1400-byte one every 50 ms (a video frame,
    one packet of 1452 bytes). When the path's MTU shrinks to 1280 the audio packets still pass and are
    acknowledged, so probe timeouts never pile up, while every video packet, and its retransmission, is lost. The
    lost big packets call for confirmation probes at 1452 bytes; MAX_PROBES of them lost in a row and the size
    falls back, and every video frame sent arrives. (Probe timeouts are left out of it: a stall of the machine under
    load could make some.)"""
    monkeypatch.setattr(pmtu, "BLACK_HOLE_PTOS", 10**9)

    async def scenario() -> None:
        sizes: dict[int, int] = {}
        complete: list[int] = []

        async def receive(client: TransportConnection) -> None:
            while True:
                event = await client.next_event()
                if isinstance(event, StreamDataReceived):
                    sizes[event.stream_id] = sizes.get(event.stream_id, 0) + len(event.data)
                    if event.end_stream:
                        complete.append(sizes.pop(event.stream_id))

        async def media(peer: TransportConnection, sent: list[int]) -> None:
            for tick in itertools.count():
                for size in (100, 1400) if tick % 5 == 0 else (100,):
                    stream_id = peer.try_open_uni_stream()
                    if stream_id is not None:
                        peer.send(stream_id, bytes(size), end_stream=True)
                        sent.append(size)
                await asyncio.sleep(0.01)

        async with forwarded(KINDS[0], certificate, mtu=1500) as (path, peer, client):
            side = prober(peer)
            await exchange_until(peer, client, lambda: side.size == PROBED)
            receiver = asyncio.ensure_future(receive(client))
            try:
                path.mtu = 1280
                dropped = path.dropped
                sent: list[int] = []
                sender = asyncio.ensure_future(media(peer, sent))
                loop = asyncio.get_running_loop()
                end = loop.time() + 20
                while side.size != BASE:
                    assert loop.time() < end, (side.confirmations_sent, side.confirmations_lost, complete.count(1400))
                    await asyncio.sleep(0.05)
                sender.cancel()
                assert side.black_holes == 1 and side.confirmations_lost >= pmtu.MAX_PROBES
                assert path.dropped > dropped + pmtu.MAX_PROBES  # video packets were lost, not only the probes
                # Every frame sent arrives, the ones lost before the fall-back too.
                while complete.count(1400) < sent.count(1400):
                    assert loop.time() < end, (complete.count(1400), sent.count(1400))
                    await asyncio.sleep(0.05)
            finally:
                receiver.cancel()

    run(scenario())
