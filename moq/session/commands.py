"""What a `Session` asks its transport to do: plain data, executed in order by the driver.

Streams the session opens are named by a handle chosen by the session: the stream id the stream would have
in QUIC numbering (RFC 9000 §2.1), so handles never collide with the ids of streams the peer opens. The driver
maps each handle to the real stream once it is open (the peer's stream credit may delay that).
"""

from __future__ import annotations

import msgspec


class Command(msgspec.Struct, frozen=True):
    """Base of every transport command."""


class OpenStream(Command, frozen=True):
    """Open a stream for `handle`. `priority` orders data streams in the send scheduler, lowest first."""

    handle: int
    unidirectional: bool
    priority: tuple[int, ...] = ()


class SendStreamData(Command, frozen=True):
    """Write `data` on a stream (a handle we opened or a stream id the peer opened); `end_stream` writes FIN."""

    stream: int
    data: bytes
    end_stream: bool = False


class ResetStream(Command, frozen=True):
    """Abort the sending side of a stream with an MOQT stream reset code (§12.5)."""

    stream: int
    code: int


class StopSending(Command, frozen=True):
    """Ask the peer to stop sending on a stream, with an MOQT stream reset code (§12.5)."""

    stream: int
    code: int


class SendDatagram(Command, frozen=True):
    """Send one QUIC / WebTransport datagram."""

    data: bytes


class CloseSession(Command, frozen=True):
    """Close the whole session with an MOQT session termination code (§12.2) and a reason phrase."""

    code: int
    reason: str
