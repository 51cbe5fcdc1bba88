"""Shared helpers for the transport tests: run a coroutine with a deadline, start a server, wait for events.

No sleeps stand in for events anywhere: every wait is on an event, inside a timeout.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from moq.transport import (
    CertificateBundle,
    MoqtServer,
    TransportConnection,
    TransportEvent,
    TransportKind,
    connect,
    serve,
)
from moq.wire.version import SUPPORTED_VERSIONS, Version

T = TypeVar("T")
E = TypeVar("E")

#: Every test finishes well within this; it is a guard against hangs, not a performance bound.
TEST_DEADLINE = 25.0
EVENT_TIMEOUT = 10.0

KINDS: tuple[TransportKind, ...] = ("quic", "webtransport")


def run(coroutine: Coroutine[Any, Any, T], deadline: float = TEST_DEADLINE) -> T:
    """Run a test coroutine on a fresh event loop, failing it if it takes longer than `deadline`."""

    async def guarded() -> T:
        return await asyncio.wait_for(coroutine, deadline)

    return asyncio.run(guarded())


def url_for(kind: TransportKind, port: int, path: str = "/moq") -> str:
    """The URL a client uses to reach our server on `port` with the given transport."""
    scheme = "moqt" if kind == "quic" else "https"
    return f"{scheme}://127.0.0.1:{port}{path}"


async def next_event_of(connection: TransportConnection, kind: type[E], timeout: float = EVENT_TIMEOUT) -> E:
    """Skip events until one of type `kind` arrives (fails on timeout or if the session ends first)."""

    async def wait() -> E:
        while True:
            event = await connection.next_event()
            if isinstance(event, kind):
                return event
            if type(event).__name__ == "SessionClosed":
                raise AssertionError(f"session closed while waiting for {kind.__name__}: {event}")

    return await asyncio.wait_for(wait(), timeout)


async def collect_until(
    connection: TransportConnection, done: Callable[[TransportEvent], bool], timeout: float = EVENT_TIMEOUT
) -> list[TransportEvent]:
    """All events up to and including the first for which `done(event)` is true."""

    async def wait() -> list[TransportEvent]:
        events: list[TransportEvent] = []
        while True:
            event = await connection.next_event()
            events.append(event)
            if done(event):
                return events

    return await asyncio.wait_for(wait(), timeout)


@asynccontextmanager
async def server_and_client(
    kind: TransportKind,
    certificate: CertificateBundle,
    *,
    server_versions: tuple[Version, ...] = SUPPORTED_VERSIONS,
    client_versions: tuple[Version, ...] = SUPPORTED_VERSIONS,
    **client_options: Any,
) -> AsyncIterator[tuple[MoqtServer, TransportConnection, TransportConnection]]:
    """A server on 127.0.0.1 port 0 and one connected client: yields (server, server side, client side)."""
    server = await serve("127.0.0.1", 0, certificate=certificate, versions=server_versions)
    try:
        client = await connect(
            url_for(kind, server.port),
            versions=client_versions,
            fingerprint=client_options.pop("fingerprint", certificate.fingerprint),
            **client_options,
        )
        peer = await asyncio.wait_for(server.accept(), EVENT_TIMEOUT)
        try:
            yield server, peer, client
        finally:
            await finish(client)
    finally:
        server.close()
        await server.wait_closed()


async def finish(*connections: TransportConnection) -> None:
    """Close client connections and wait out QUIC's closing period, so their UDP sockets are closed too."""
    for connection in connections:
        connection.close()
    await asyncio.wait_for(asyncio.gather(*(c.wait_closed() for c in connections)), EVENT_TIMEOUT)


async def gather_all(*awaitables: Awaitable[T]) -> list[T]:
    """`asyncio.gather` with a type that mypy can follow."""
    return list(await asyncio.gather(*awaitables))
