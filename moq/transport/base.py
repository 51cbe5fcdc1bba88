"""The connection a MOQT session rides on, the same for raw QUIC and WebTransport.

A session needs little from its transport, and `TransportConnection` offers exactly that:

- `await open_uni_stream(priority)` / `await open_bidi_stream(priority)` -> stream id. They wait for the peer's
  stream credit (its MAX_STREAMS) and, for unidirectional streams, for a free slot under
  `max_inflight_uni_streams`; waiting openers are served lowest `priority` first, FIFO among equals.
  `try_open_uni_stream()` / `try_open_bidi_stream()` return None instead of waiting.
- `send(stream_id, data, end_stream=False)`, `reset_stream(stream_id, code)`, `stop_sending(stream_id, code)`,
  `send_datagram(data)`, `close(code, reason)`; all synchronous, none blocks.
- back-pressure: `buffered_bytes`, `stream_buffered(stream_id)` and `await wait_writable(max_buffered)`.
- events (`moq.transport.events`) in network order, either pulled (`await next_event()`, or `async for event in
  connection`) or pushed to a synchronous handler (`set_event_handler(handler)`), which suits a sans-IO session:
  feed the event in, execute the commands it returns.

Codes are MOQT application codes everywhere; the WebTransport subclass maps them to and from the HTTP/3 error
space. Raw QUIC and WebTransport differ only in a few hooks (how a stream is created, how codes and datagrams
are framed, how the session is closed) — DESIGN.md, "the small sink".

Why we gate stream opening ourselves: aioquic never refuses a stream past the peer's MAX_STREAMS; it queues it
as blocked, and its scheduler walks every queued stream for every packet (PLATFORM.md: 20k queued small streams
ran at 175 streams/s; gated, ~29k/s). For the same reason the number of our unidirectional streams still
sending is capped (`MAX_INFLIGHT_UNI_STREAMS`).

The send scheduler (DESIGN.md decision 5; draft §5.1 "Priorities", DIGEST §10). aioquic's send buffers are
unbounded and it serves streams round-robin, so if `send()` wrote straight into aioquic a slow peer would never
look slow (memory grows, nothing can drop old groups) and a keyframe would wait behind any bulk transfer. So:

- `send()` appends to a per-stream queue that we hold (a FIN is queued like data); it never blocks.
- Before every transmit (after each received datagram, i.e. after ACKs and MAX_DATA/MAX_STREAM_DATA, after timers
  and after our own writes) `_feed()` hands queued bytes to aioquic in priority order — lowest priority tuple
  first, deficit round-robin by `ROUND_ROBIN_QUANTUM` among equal ones. It hands over about what aioquic's
  congestion window lets out at once (plus `max_quic_unsent_bytes`), so little waits unsent inside aioquic where
  priorities no longer apply, and never lets aioquic hold more than `max_quic_buffered_bytes` unacknowledged.
  A stream gets no more than its flow-control credit (and the connection's), so a blocked stream neither fills
  the budget nor holds back lower-priority streams.
- Streams opened without a priority (the peer's bidi streams, i.e. its requests) and those at `CONTROL_PRIORITY`
  sort before every data stream.
- `reset_stream()`, the peer's STOP_SENDING and the end of the session drop what is queued for a stream.
- What we hold is bounded (`max_scheduled_bytes`); past it the lowest-priority data streams are reset with
  EXCESSIVE_LOAD (draft "Security Considerations": cancel the lowest-priority streams at resource limits).
- Datagrams bypass the scheduler on purpose: they exist for latency, are dropped rather than queued
  (`MAX_PENDING_DATAGRAMS`), and aioquic puts them in packets before stream data.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import hashlib
import heapq
import itertools
import logging
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from aioquic.asyncio.protocol import QuicConnectionProtocol, QuicStreamHandler
from aioquic.quic import events as quic_events
from aioquic.quic.connection import QuicConnection, stream_is_client_initiated, stream_is_unidirectional
from aioquic.quic.packet import QuicErrorCode, QuicFrameType
from cryptography.hazmat.primitives import serialization

from moq.transport import _aioquic, pmtu
from moq.transport.errors import CertificateMismatch, SessionClosedError, StreamStateError
from moq.transport.events import (
    DatagramReceived,
    SessionClosed,
    StopSendingReceived,
    StreamDataReceived,
    StreamOpened,
    StreamReset,
    TransportEvent,
)
from moq.transport.tls import fingerprint_colon
from moq.transport.udp import UdpEndpoint
from moq.wire.codes import SessionErrorCode, StreamResetCode
from moq.wire.version import Version

__all__ = [
    "CONTROL_PRIORITY",
    "DATAGRAM_PACKET_OVERHEAD",
    "KEEPALIVE_INTERVAL",
    "MAX_DATAGRAM_FRAME_SIZE",
    "MAX_INFLIGHT_UNI_STREAMS",
    "MAX_PENDING_DATAGRAMS",
    "MAX_QUEUED_EVENTS",
    "MAX_QUIC_BUFFERED_BYTES",
    "MAX_QUIC_UNSENT_BYTES",
    "MAX_REASON_BYTES",
    "MAX_SCHEDULED_BYTES",
    "MoqtQuicProtocol",
    "Priority",
    "ROUND_ROBIN_QUANTUM",
    "TransportConnection",
    "TransportKind",
    "truncate_reason",
]

logger = logging.getLogger(__name__)

TransportKind = Literal["quic", "webtransport"]

#: Orders waiting stream openers and the send scheduler: lowest first (a tuple, so a session can compose several
#: priority levels, e.g. (subscriber priority, publisher priority, group order key, subgroup id) for a subgroup
#: stream, draft §5.1). The empty tuple sorts before everything.
Priority = tuple[int, ...]

#: The priority of control and request streams, as the session opens them. It sorts before every data stream's
#: (subscriber priority, ...) tuple, so control messages are sent first (draft §5.1: control streams, then request
#: streams, then objects), and a stream at or before it is never reset to shed load: losing it would break the
#: session, not just a group.
CONTROL_PRIORITY: Priority = (0,)

#: Bytes aioquic may hold per connection on our behalf, all streams together: written to it and not yet
#: acknowledged (in flight, or waiting). It bounds aioquic's memory, and it caps the bytes in flight, so it must
#: cover the bandwidth-delay product of real paths: 1 MiB is 40 Mbit/s at 200 ms RTT, 80 at 100 ms, more than
#: one aioquic connection sends anyway (PLATFORM.md: ~150 Mbit/s per process). On loopback 64 KiB and 256 KiB
#: were no faster (numbers in tests/transport/test_scheduler.py, test_throughput_scheduled_vs_unscheduled), and
#: 64 KiB would cap a 100 ms path at 5 Mbit/s. Per connection: `max_quic_buffered_bytes`.
MAX_QUIC_BUFFERED_BYTES = 1024 * 1024

#: Bytes aioquic may hold not yet sent beyond what its congestion window lets out at the next transmit. What
#: aioquic holds unsent is out of our hands (it goes out round-robin, it cannot be reprioritised or dropped short
#: of a reset), so this is how far a late high-priority object can be stuck behind earlier data, whatever the
#: bandwidth. It only has to cover what aioquic's pacer holds back between two transmits; about a dozen packets.
#: Per connection: `max_quic_unsent_bytes`.
MAX_QUIC_UNSENT_BYTES = 16 * 1024

#: Bytes we hold per connection in our own queues, not yet handed to aioquic. An application that watches
#: `buffered_bytes` / `wait_writable()` never gets near it; it is the safety net for one that does not (a relay
#: fanning out to a stalled subscriber). Past it, the lowest-priority data streams are reset with EXCESSIVE_LOAD
#: until we are under it again (draft §"Security Considerations": cancel the lowest-priority streams when
#: hitting resource limits); if only control and request streams hold data, the session is closed with
#: INTERNAL_ERROR. 16 MiB holds several seconds of high-bitrate video for a publisher that writes a whole group
#: at once. Per connection: `max_scheduled_bytes`.
MAX_SCHEDULED_BYTES = 16 * 1024 * 1024

#: Among streams of equal priority (draft §5.1: "implementation-defined, but no starvation"), how many bytes one
#: stream is given before the next one's turn. About a dozen packets: fair at the scale of a video frame, without
#: a pass through the scheduler per packet.
ROUND_ROBIN_QUANTUM = 16 * 1024

#: Our unidirectional streams not yet finished (opened, and neither FIN-acknowledged nor reset) per connection.
#: aioquic walks every open stream for every packet it builds, so each costs CPU even when idle (measured on
#: loopback: one 4 MB stream ran at 143 Mbit/s alone, 88 Mbit/s beside 100 idle open streams), and it serves
#: streams with pending data round-robin (300 objects of 30 KB, one per stream: 135 Mbit/s with 4 in flight,
#: 94 with 32, 43 with 128; PLATFORM.md saw the same). A MOQT publisher keeps one stream open per active
#: subgroup, so the cap must also exceed the subgroups open at once: 32 is the compromise. (The send scheduler
#: decides which streams have data inside aioquic, but every open stream still costs aioquic a visit per
#: packet.) Per connection: `max_inflight_uni_streams`.
MAX_INFLIGHT_UNI_STREAMS = 32

#: Events waiting for the session to pull them. The transport cannot apply back-pressure to aioquic (it grants
#: flow-control credit as data arrives, not as it is consumed), so a session that stops reading is a bug or a
#: stall; past this bound the session is closed with INTERNAL_ERROR rather than growing without limit.
MAX_QUEUED_EVENTS = 100_000

#: Datagrams queued in aioquic while the congestion window is closed; older ones are dropped first.
MAX_PENDING_DATAGRAMS = 256

#: The max_datagram_frame_size transport parameter we advertise (RFC 9221); MOQT requires datagrams (§6.2).
MAX_DATAGRAM_FRAME_SIZE = 65536

#: Bytes of a QUIC packet not available to a DATAGRAM payload: short header (1 + up to 20 CID + up to 4 packet
#: number), 16 AEAD tag, frame type and length (3), rounded up. aioquic never splits a datagram, and one that
#: does not fit a packet stays at the head of its queue forever, wedging every later datagram: hence the check.
DATAGRAM_PACKET_OVERHEAD = 48

#: Ping an otherwise idle connection this often, so that a quiet session (a subscription waiting for the next
#: group) is not killed by the idle timeout (aioquic: 60 s by default, and it has no keep-alive of its own).
KEEPALIVE_INTERVAL = 15.0

#: How many ended streams we remember how their sending side ended: to refuse a write after our own FIN
#: (misuse) while dropping writes that merely raced with the peer's STOP_SENDING or our reset.
MAX_REMEMBERED_ENDED_STREAMS = 4096


#: MOQT caps reason phrases at 1024 bytes (draft §8.5 "Reason Phrase"); a longer QUIC reason would not fit a packet.
MAX_REASON_BYTES = 1024


def truncate_reason(reason: str, limit: int = MAX_REASON_BYTES) -> str:
    """`reason` cut to at most `limit` UTF-8 bytes, on a character boundary."""
    data = reason.encode("utf-8")
    if len(data) <= limit:
        return reason
    return data[:limit].decode("utf-8", errors="ignore")


class _ConnectionLogger(logging.LoggerAdapter[logging.Logger]):
    """Prefixes each line with the connection id, so interleaved connections can be told apart."""

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, MutableMapping[str, Any]]:
        return f"[{self.extra['conn'] if self.extra else '?'}] {msg}", kwargs


class SendSide(enum.Enum):
    OPEN = "open"
    FINISHED = "finished"  # we wrote the FIN
    RESET = "reset"  # we reset it
    STOPPED = "stopped"  # the peer sent STOP_SENDING (aioquic reset it for us)


@dataclass(slots=True)
class _Stream:
    """Our view of one live stream. Dropped once both directions are over."""

    send: SendSide | None  # None: receive-only (a peer's unidirectional stream)
    receiving: bool  # False once the peer's FIN or reset arrived, or we sent STOP_SENDING
    priority: Priority = ()  # what the send scheduler orders its queued data by

    @property
    def done(self) -> bool:
        return not self.receiving and self.send is not SendSide.OPEN


@dataclass(slots=True, eq=False)
class _SendQueue:
    """The bytes (and FIN) of one stream that the scheduler holds and aioquic has not been given yet."""

    priority: Priority
    chunks: deque[bytes] = field(default_factory=deque)
    head_offset: int = 0  # bytes of chunks[0] already handed over
    size: int = 0
    fin: bool = False
    turn: int = 0  # bytes handed over in its current round-robin turn

    def push(self, data: bytes) -> None:
        self.chunks.append(data)
        self.size += len(data)

    def take(self, limit: int) -> bytes:
        """Remove and return up to `limit` bytes from the front (whole chunks are not copied)."""
        parts: list[bytes] = []
        taken = 0
        chunks = self.chunks
        while chunks and taken < limit:
            head = chunks[0]
            start = self.head_offset
            end = min(len(head), start + limit - taken)
            parts.append(head if start == 0 and end == len(head) else head[start:end])
            taken += end - start
            if end == len(head):
                chunks.popleft()
                self.head_offset = 0
            else:
                self.head_offset = end
        self.size -= taken
        return parts[0] if len(parts) == 1 else b"".join(parts)


class PeerStreamIds:
    """Which peer-initiated stream ids we have already seen, in O(gaps) memory.

    Streams may show up out of order; ids below the watermark that never appeared are kept as gaps. Gaps are
    bounded by the stream credit we give the peer (aioquic enforces it).
    """

    def __init__(self) -> None:
        self._next_index = {False: 0, True: 0}  # keyed by "unidirectional"
        self._gaps: set[int] = set()

    def is_new(self, stream_id: int) -> bool:
        return stream_id // 4 >= self._next_index[stream_is_unidirectional(stream_id)] or stream_id in self._gaps

    def mark(self, stream_id: int) -> None:
        uni = stream_is_unidirectional(stream_id)
        index = stream_id // 4
        if index >= self._next_index[uni]:
            low_bits = stream_id % 4
            self._gaps.update(i * 4 + low_bits for i in range(self._next_index[uni], index))
            self._next_index[uni] = index + 1
        else:
            self._gaps.discard(stream_id)


class MoqtQuicProtocol(QuicConnectionProtocol):
    """aioquic's asyncio protocol, handing every QUIC event to one `TransportConnection`.

    It replaces aioquic's default event handling, which would create an asyncio StreamReader for every stream
    and buffer its data forever when nobody reads it.
    """

    def __init__(
        self, quic: QuicConnection, stream_handler: QuicStreamHandler | None = None, *, probe_path_mtu: bool = True
    ) -> None:
        super().__init__(quic, stream_handler)
        self.connection: TransportConnection | None = None
        #: Finds out whether the path takes packets bigger than the configured size (None: not probing).
        self.pmtu: pmtu.PathMtuProber | None = (
            pmtu.PathMtuProber(quic) if probe_path_mtu and pmtu.PROBED_DATAGRAM_SIZES else None
        )

    @property
    def quic(self) -> QuicConnection:
        """The sans-IO QUIC connection."""
        return self._quic

    def quic_event_received(self, event: quic_events.QuicEvent) -> None:
        if self.connection is not None:
            self.connection._handle_quic_event(event)

    def transmit(self) -> None:
        # Every path to the wire comes through here (our writes, received datagrams after their ACKs are
        # processed, aioquic's timers): top aioquic up from the scheduler's queues first.
        if self.connection is not None:
            self.connection._before_transmit()
        if self.pmtu is not None and self._transport is not None:
            # A probe goes out alone, not in a GSO run of the connection's packets (it is bigger than they are,
            # and a send the kernel refuses for its size must not take them down with it).
            for data, addr in self.pmtu.poll(self._loop.time):
                self._transport.sendto(data, addr)
        if isinstance(self._transport, UdpEndpoint):
            self._transport.cork()
            try:
                super().transmit()
            finally:
                self._transport.uncork()
        else:
            super().transmit()

    def datagram_received(self, data: bytes | str, addr: Any) -> None:
        super().datagram_received(data, addr)
        # ACKs, MAX_STREAMS and CONNECTION_CLOSE have just been processed: refresh what depends on them.
        if self.connection is not None:
            self.connection._after_receive()


class TransportConnection:
    """One MOQT session's transport: a raw QUIC connection or a WebTransport session (see module docstring).

    Attributes a session reads: `version`, `transport_kind`, `is_client`, `authority` and `path` (raw QUIC
    client: from the URL, to put in SETUP; WebTransport server: from the CONNECT request), `connection_id`.
    Send scheduler bounds, per connection and adjustable at any time: `max_quic_buffered_bytes`,
    `max_quic_unsent_bytes` and `max_scheduled_bytes` (defaults: the module constants of those names).
    """

    transport_kind: ClassVar[TransportKind]

    def __init__(
        self,
        protocol: MoqtQuicProtocol,
        *,
        is_client: bool,
        max_inflight_uni_streams: int = MAX_INFLIGHT_UNI_STREAMS,
        authority: str | None = None,
        path: str | None = None,
        pinned_fingerprint: bytes | None = None,
    ) -> None:
        if max_inflight_uni_streams < 1:
            raise ValueError("max_inflight_uni_streams must be at least 1")
        self._protocol = protocol
        self._quic = protocol.quic
        self._loop = asyncio.get_running_loop()
        protocol.connection = self
        self.is_client = is_client
        self.authority = authority
        self.path = path
        self.max_inflight_uni_streams = max_inflight_uni_streams
        self.connection_id = f"{self.transport_kind}:{self._quic.host_cid.hex()[:8]}"
        # Each transport logs under its own module name, every line prefixed with the connection id.
        self.log = _ConnectionLogger(logging.getLogger(type(self).__module__), {"conn": self.connection_id})
        self._version: Version | None = None
        self._pinned_fingerprint = pinned_fingerprint

        # events
        self._events: deque[TransportEvent] = deque()
        self._event_waiter: asyncio.Future[None] | None = None
        self._handler: Callable[[TransportEvent], None] | None = None
        self._final_event_taken = False

        # streams
        self._streams: dict[int, _Stream] = {}
        self._peer_ids = PeerStreamIds()
        self._ended: OrderedDict[int, SendSide] = OrderedDict()
        self._inflight_uni: set[int] = set()
        # Waiting openers per direction, a heap ordered by (priority, arrival).
        self._openers: dict[bool, list[tuple[Priority, int, asyncio.Future[int]]]] = {True: [], False: []}
        self._opener_seq = itertools.count()

        # send scheduler (module docstring)
        self.max_quic_buffered_bytes = MAX_QUIC_BUFFERED_BYTES
        self.max_quic_unsent_bytes = MAX_QUIC_UNSENT_BYTES
        self.max_scheduled_bytes = MAX_SCHEDULED_BYTES
        self._queues: dict[int, _SendQueue] = {}  # streams with bytes or a FIN not yet handed to aioquic
        self._queued_bytes = 0  # sum of their sizes
        self._levels: dict[Priority, deque[int]] = {}  # those streams by priority, in round-robin order
        self._level_heap: list[Priority] = []  # the keys of _levels, as a heap
        # Streams that may hold bytes inside aioquic, and the priority of the last bytes handed over.
        self._fed: dict[int, Priority] = {}
        self._writers: list[tuple[int, asyncio.Future[None]]] = []  # wait_writable(): (threshold, waiter)
        #: Data streams reset with EXCESSIVE_LOAD because `max_scheduled_bytes` was exceeded.
        self.shed_streams = 0

        # lifecycle
        self._ready: asyncio.Future[None] = self._loop.create_future()
        self._closed_event: SessionClosed | None = None
        self._closed = asyncio.Event()
        self._transmit_scheduled = False
        self._keepalive: asyncio.TimerHandle | None = None
        self._on_terminated: list[Callable[[], None]] = []

    # ------------------------------------------------------------------ public: identity

    @property
    def version(self) -> Version:
        """The negotiated MOQT draft (raises RuntimeError before negotiation finished)."""
        if self._version is None:
            raise RuntimeError("no MOQT version negotiated yet")
        return self._version

    @property
    def is_closed(self) -> bool:
        """True once the session is over (closed by either side, or lost)."""
        return self._closed_event is not None

    @property
    def close_info(self) -> SessionClosed | None:
        """How the session ended, once it has."""
        return self._closed_event

    @property
    def max_datagram_payload(self) -> int:
        """The largest `send_datagram()` payload that fits in one QUIC packet (0: the peer takes no datagrams)."""
        peer_limit = _aioquic.peer_max_datagram_frame_size(self._quic)
        if not peer_limit:
            return 0
        packet_room = self._quic.configuration.max_datagram_size - DATAGRAM_PACKET_OVERHEAD
        return max(0, min(packet_room, peer_limit - 3) - self._datagram_prefix_size())

    @property
    def packet_size(self) -> int:
        """The size the connection builds its QUIC packets at now: the configured one, or the bigger one the path
        took (moq.transport.pmtu), until a black hole sends it back."""
        return _aioquic.max_datagram_size(self._quic)

    @property
    def bigger_packets(self) -> bool:
        """True while packets are bigger than the configured size (path MTU discovery found the path takes them)."""
        return self.packet_size > self._quic.configuration.max_datagram_size

    @property
    def path_black_holes(self) -> int:
        """Times this connection's path stopped taking the bigger packets it had taken (moq.transport.pmtu)."""
        prober = self._protocol.pmtu
        return prober.black_holes if prober is not None else 0

    @property
    def inflight_uni_streams(self) -> int:
        """Our unidirectional streams still sending (counted against `max_inflight_uni_streams`)."""
        return len(self._inflight_uni)

    # ------------------------------------------------------------------ public: back-pressure

    @property
    def buffered_bytes(self) -> int:
        """Bytes passed to `send()` and not yet acknowledged by the peer: held by our scheduler plus by aioquic
        (which also counts the few bytes of a WebTransport stream header).

        This is how a slow peer shows: it keeps growing while the peer (or the path) cannot keep up. Bytes of
        reset streams do not count; datagrams are not counted (they are dropped, never queued without bound).
        """
        return self._queued_bytes + self._quic_usage()[0]

    def stream_buffered(self, stream_id: int) -> int:
        """Bytes of one stream passed to `send()` and not yet acknowledged (0 for an unknown or ended stream)."""
        queue = self._queues.get(stream_id)
        return (queue.size if queue is not None else 0) + _aioquic.stream_send_buffered(self._quic, stream_id)[0]

    async def wait_writable(self, max_buffered: int = 0) -> None:
        """Return once `buffered_bytes <= max_buffered`; raise SessionClosedError if the session ends first.

        A publisher or relay calls it between objects to match its pace to the peer's: while it waits it can
        decide to drop old groups instead of queueing them. It does not reserve room: another writer may fill
        the buffer again before the caller resumes.
        """
        if self._closed_event is not None:
            raise SessionClosedError("the session is closed")
        if self.buffered_bytes <= max_buffered:
            return
        waiter: asyncio.Future[None] = self._loop.create_future()
        entry = (max_buffered, waiter)
        self._writers.append(entry)
        try:
            await waiter
        finally:
            with contextlib.suppress(ValueError):
                self._writers.remove(entry)

    def set_stream_priority(self, stream_id: int, priority: Priority) -> None:
        """Change the priority a stream's not-yet-sent data is scheduled by (e.g. after REQUEST_UPDATE changed
        the subscriber priority, which draft §5.1 applies best effort to objects not yet scheduled: bytes already
        handed to aioquic keep their place)."""
        stream = self._streams.get(stream_id)
        if stream is not None:
            stream.priority = priority
        queue = self._queues.get(stream_id)
        if queue is None or queue.priority == priority:
            return
        self._unlist(stream_id, queue.priority)
        queue.priority = priority
        self._enlist(stream_id, priority)

    def stream_priority(self, stream_id: int) -> Priority | None:
        """The priority a stream's queued (and later) data is scheduled by; None once we no longer know the stream
        (its sending side is over and nothing of it is queued)."""
        queue = self._queues.get(stream_id)
        if queue is not None:
            return queue.priority
        stream = self._streams.get(stream_id)
        return stream.priority if stream is not None else None

    # ------------------------------------------------------------------ public: streams

    async def open_uni_stream(self, priority: Priority = ()) -> int:
        """Open a unidirectional stream; waits for the peer's stream credit and an in-flight slot.

        When several openers wait, the lowest `priority` goes first (FIFO among equals). The stream's data is
        then sent in that same order by the send scheduler (e.g. subscriber priority, publisher priority, group
        order key, subgroup id; `CONTROL_PRIORITY` for control and request streams).
        """
        return await self._open(True, priority)

    async def open_bidi_stream(self, priority: Priority = ()) -> int:
        """Open a bidirectional stream; waits for the peer's stream credit (ordered like `open_uni_stream`)."""
        return await self._open(False, priority)

    def try_open_uni_stream(self, priority: Priority = ()) -> int | None:
        """Open a unidirectional stream now (its data scheduled by `priority`), or return None if that would
        have to wait."""
        return self._try_open(True, priority)

    def try_open_bidi_stream(self, priority: Priority = ()) -> int | None:
        """Open a bidirectional stream now (its data scheduled by `priority`), or return None if that would
        have to wait."""
        return self._try_open(False, priority)

    def send(self, stream_id: int, data: bytes, end_stream: bool = False) -> None:
        """Queue `data` on a stream (and its FIN if `end_stream`) for the send scheduler. Never blocks.

        Writes to a stream the peer stopped (STOP_SENDING), or after the session ended, are dropped silently:
        the session learns about those from events and may race with them. Writing to a stream that is not ours
        to write, or after our own FIN, raises StreamStateError. Pace writes with `wait_writable()`: past
        `max_scheduled_bytes` queued, the lowest-priority data streams (possibly this one) are reset with
        EXCESSIVE_LOAD, and the write is dropped with them.
        """
        if self._closed_event is not None:
            return
        self._check_writable_id(stream_id)
        stream = self._streams.get(stream_id)
        if stream is None:
            if self._ended.get(stream_id) is SendSide.FINISHED:
                raise StreamStateError(f"stream {stream_id} was already finished (FIN sent)")
            if self._forgotten(stream_id):
                self.log.debug("dropping %d bytes for ended stream %d", len(data), stream_id)
                return
            raise StreamStateError(f"stream {stream_id} is not open")
        if stream.send is SendSide.FINISHED:
            raise StreamStateError(f"stream {stream_id} was already finished (FIN sent)")
        if stream.send is None:
            raise StreamStateError(f"stream {stream_id} is receive-only")
        if stream.send is not SendSide.OPEN:
            self.log.debug("dropping %d bytes for stream %d (%s)", len(data), stream_id, stream.send.value)
            return
        self._submit(stream_id, stream.priority, data, end_stream)
        if end_stream:
            self._end_send_side(stream_id, stream, SendSide.FINISHED)
        if self._queued_bytes > self.max_scheduled_bytes:
            self._shed_load()

    def reset_stream(self, stream_id: int, code: int) -> None:
        """Abruptly end our sending side of a stream with an MOQT code (RESET_STREAM)."""
        wire = self._encode_code(code)
        if self._closed_event is not None:
            return
        self._check_writable_id(stream_id)
        # Whatever we still hold for the stream will never be sent (the reset's final size is what aioquic sent).
        self._drop_queue(stream_id)
        stream = self._streams.get(stream_id)
        if stream is None:
            if self._forgotten(stream_id):
                # Possibly after our FIN: aioquic resets only what is not fully acknowledged yet.
                self._quic.reset_stream(stream_id, wire)
                self._inflight_uni.discard(stream_id)
                self._schedule_transmit()
                self._wake_openers()
                self._wake_writers()
                return
            raise StreamStateError(f"stream {stream_id} is not open")
        if stream.send in (SendSide.RESET, SendSide.STOPPED):
            return
        self._quic.reset_stream(stream_id, wire)
        self._inflight_uni.discard(stream_id)
        self._end_send_side(stream_id, stream, SendSide.RESET)
        self._schedule_transmit()
        self._wake_openers()
        self._wake_writers()

    def stop_sending(self, stream_id: int, code: int) -> None:
        """Ask the peer to stop sending on a stream (STOP_SENDING); later data on it is discarded."""
        wire = self._encode_code(code)
        if self._closed_event is not None:
            return
        stream = self._streams.get(stream_id)
        if stream is None:
            if self._forgotten(stream_id):
                return
            raise StreamStateError(f"stream {stream_id} is not open")
        if stream_is_unidirectional(stream_id) and self._is_local(stream_id):
            raise StreamStateError(f"stream {stream_id} is our unidirectional stream: nothing to stop")
        if not stream.receiving:
            return
        # ValueError: aioquic already discarded the stream, everything was received.
        with contextlib.suppress(ValueError):
            self._quic.stop_stream(stream_id, wire)
        stream.receiving = False
        self._forget_if_done(stream_id, stream)
        self._schedule_transmit()

    def send_datagram(self, data: bytes) -> None:
        """Send one unreliable datagram. Raises ValueError if it exceeds `max_datagram_payload`.

        Datagrams bypass the send scheduler and its priorities: they exist for low latency, go out ahead of
        stream data, and congestion drops the oldest (`MAX_PENDING_DATAGRAMS`) rather than queueing them.
        """
        limit = self.max_datagram_payload
        if len(data) > limit:
            raise ValueError(f"datagram of {len(data)} bytes exceeds the {limit}-byte limit of this connection")
        if self._closed_event is not None:
            return
        self._send_datagram_now(data)
        dropped = _aioquic.drop_oldest_datagrams(self._quic, MAX_PENDING_DATAGRAMS)
        if dropped:
            self.log.debug("congested: dropped %d stale outgoing datagrams", dropped)
        self._schedule_transmit()

    def close(self, code: int = 0, reason: str = "") -> None:
        """Close the session with an MOQT session termination code and reason (draft §6.6). Idempotent."""
        raise NotImplementedError

    async def wait_closed(self) -> SessionClosed:
        """Wait until the underlying QUIC connection is fully terminated; return how the session ended."""
        await self._closed.wait()
        assert self._closed_event is not None
        return self._closed_event

    # ------------------------------------------------------------------ public: events

    def set_event_handler(self, handler: Callable[[TransportEvent], None] | None) -> None:
        """Deliver events by calling `handler` synchronously, in order, instead of queueing them.

        Events queued before the call are delivered to it at once. The handler must not block; if it raises,
        the session is closed with INTERNAL_ERROR (0x1). Pass None to go back to queueing.
        """
        self._handler = handler
        if handler is not None:
            while self._events and self._handler is handler:
                self._deliver(handler, self._events.popleft())

    async def next_event(self) -> TransportEvent:
        """The next event; `SessionClosed` is the last one, after which this raises SessionClosedError."""
        while not self._events:
            if self._final_event_taken:
                raise SessionClosedError("the session is closed and its events were all delivered")
            self._event_waiter = self._loop.create_future()
            try:
                await self._event_waiter
            finally:
                self._event_waiter = None
        event = self._events.popleft()
        if isinstance(event, SessionClosed):
            self._final_event_taken = True
        return event

    def __aiter__(self) -> AsyncIterator[TransportEvent]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[TransportEvent]:
        while not self._final_event_taken:
            yield await self.next_event()

    # ------------------------------------------------------------------ hooks for the two transports

    def _encode_code(self, code: int) -> int:
        """An MOQT stream code as it goes on the wire."""
        if not 0 <= code < 1 << 62:
            raise ValueError(f"error codes are QUIC varints (< 2**62), got {code}")
        return code

    def _decode_code(self, wire: int) -> int | None:
        """The MOQT code a wire code carries (None if it carries none)."""
        return wire

    def _create_stream(self, unidirectional: bool) -> int:
        """Create the stream in aioquic (and write any stream header); return its id."""
        stream_id = self._quic.get_next_available_stream_id(is_unidirectional=unidirectional)
        # An empty write makes aioquic allocate the stream id now without sending a frame yet.
        self._quic.send_stream_data(stream_id, b"")
        return stream_id

    def _datagram_prefix_size(self) -> int:
        return 0

    def _send_datagram_now(self, data: bytes) -> None:
        self._quic.send_datagram_frame(data)

    def _handle_quic_event(self, event: quic_events.QuicEvent) -> None:
        raise NotImplementedError

    # ------------------------------------------------------------------ the send scheduler

    def _submit(self, stream_id: int, priority: Priority, data: bytes, end_stream: bool) -> None:
        """Every stream write goes through here: queue it; `_feed()` hands it to aioquic in priority order."""
        if not data and not end_stream:
            return
        queue = self._queues.get(stream_id)
        if queue is None:
            queue = self._queues[stream_id] = _SendQueue(priority)
            self._enlist(stream_id, priority)
        if data:
            queue.push(data)
            self._queued_bytes += len(data)
        if end_stream:
            queue.fin = True
        self._schedule_transmit()

    def _enlist(self, stream_id: int, priority: Priority) -> None:
        ring = self._levels.get(priority)
        if ring is None:
            ring = self._levels[priority] = deque()
            heapq.heappush(self._level_heap, priority)
        ring.append(stream_id)

    def _unlist(self, stream_id: int, priority: Priority) -> None:
        ring = self._levels[priority]
        ring.remove(stream_id)
        if not ring:
            del self._levels[priority]
            self._level_heap.remove(priority)
            heapq.heapify(self._level_heap)

    def _drop_queue(self, stream_id: int) -> int:
        """Forget what we hold for a stream (it was reset or stopped); return how many bytes that was."""
        queue = self._queues.pop(stream_id, None)
        if queue is None:
            return 0
        self._unlist(stream_id, queue.priority)
        self._queued_bytes -= queue.size
        return queue.size

    def _quic_usage(self) -> tuple[int, int]:
        """(bytes aioquic holds for our streams, of which never sent yet); forgets streams that hold nothing."""
        held, unsent, _ = self._quic_usage_by_priority()
        return held, unsent

    def _quic_usage_by_priority(self) -> tuple[int, int, Priority | None]:
        """`_quic_usage()`, and the most urgent priority among the streams aioquic holds unsent bytes of."""
        held = unsent = 0
        most_urgent: Priority | None = None
        drained: list[int] = []
        for stream_id, priority in self._fed.items():
            stream_held, stream_unsent = _aioquic.stream_send_buffered(self._quic, stream_id)
            if stream_held:
                held += stream_held
                if stream_unsent:
                    unsent += stream_unsent
                    if most_urgent is None or priority < most_urgent:
                        most_urgent = priority
            else:
                drained.append(stream_id)
        for stream_id in drained:
            del self._fed[stream_id]
        return held, unsent, most_urgent

    def _before_transmit(self) -> None:
        self._feed()
        self._wake_writers()

    def _feed(self) -> None:
        """Hand queued data to aioquic, highest priority first: about what its congestion window lets out now
        (plus `max_quic_unsent_bytes`), and never past `max_quic_buffered_bytes` unacknowledged.

        Strict priority between levels: a level gets nothing while a higher one has data it could send, nor while
        aioquic still holds unsent bytes of a higher one (it would share the link between them, round robin). Within
        a level, streams take turns of `ROUND_ROBIN_QUANTUM` bytes. A stream out of flow-control credit is
        skipped (it is not schedulable, draft §5.1); it is served again once MAX_STREAM_DATA arrives, which
        comes with a received datagram and hence a transmit.
        """
        if not self._level_heap or self._closed_event is not None:
            return
        held, unsent, waiting = self._quic_usage_by_priority()
        sendable = max(0, _aioquic.congestion_window_available(self._quic))
        room = min(self.max_quic_buffered_bytes - held, sendable + self.max_quic_unsent_bytes - unsent)
        # Connection flow control: bytes written but not sent yet will consume credit too.
        credit = _aioquic.connection_send_credit(self._quic) - unsent
        heap = self._level_heap
        fed = 0  # bytes handed to aioquic in this call
        skipped: list[Priority] = []  # levels whose every stream is blocked by flow control
        while heap and room > 0 and credit > 0:
            priority = heap[0]
            if waiting is not None and priority > waiting:
                # aioquic still holds unsent bytes of a more urgent stream. Bytes handed to it now would compete
                # with those in its own stream round robin, which knows no priorities: wait until they are sent.
                break
            ring = self._levels[priority]
            blocked = 0
            fed_before = fed
            while ring and room > 0 and credit > 0 and blocked < len(ring):
                stream_id = ring[0]
                queue = self._queues[stream_id]
                stream_credit = _aioquic.stream_send_credit(self._quic, stream_id)
                if stream_credit is None:
                    # aioquic can take nothing more (a reset we have not heard of yet): nothing left to send.
                    self.log.debug("dropping %d queued bytes of unwritable stream %d", queue.size, stream_id)
                    ring.popleft()
                    del self._queues[stream_id]
                    self._queued_bytes -= queue.size
                    continue
                shared = len(ring) > 1
                if shared and queue.turn >= ROUND_ROBIN_QUANTUM:
                    queue.turn = 0
                    ring.rotate(-1)
                    continue
                limit = min(room, credit, stream_credit, queue.size)
                if shared:
                    # A turn is a quantum of bytes, however many feeds it takes (deficit round-robin): turns of
                    # "whatever room an ACK freed" would favour whichever stream happens to meet the big ones.
                    limit = min(limit, ROUND_ROBIN_QUANTUM - queue.turn)
                if limit > 0:
                    data = queue.take(limit)
                    fed += len(data)
                    room -= len(data)
                    credit -= len(data)
                    self._queued_bytes -= len(data)
                    self._fed[stream_id] = priority
                    self._quic.send_stream_data(stream_id, data, queue.fin and not queue.size)
                    blocked = 0
                    if not queue.size:  # all in aioquic now, with the FIN if there is one
                        ring.popleft()
                        del self._queues[stream_id]
                    elif shared:
                        queue.turn += len(data)
                elif not queue.size:  # only the FIN is left, and it needs no credit
                    self._quic.send_stream_data(stream_id, b"", True)
                    ring.popleft()
                    del self._queues[stream_id]
                else:  # out of flow-control credit: not schedulable for now
                    blocked += 1
                    queue.turn = 0
                    ring.rotate(-1)
            if fed > fed_before and fed > sendable - unsent and (waiting is None or priority < waiting):
                waiting = priority  # more than aioquic sends at once: this level's bytes will wait there too
            if not ring:
                heapq.heappop(heap)
                del self._levels[priority]
            elif room > 0 and credit > 0:
                skipped.append(heapq.heappop(heap))
            else:
                break
        for priority in skipped:
            heapq.heappush(heap, priority)

    def _shed_load(self) -> None:
        """Over `max_scheduled_bytes`: reset the lowest-priority data streams with EXCESSIVE_LOAD until under it.

        Lowest priority means the highest priority tuple, and among equals the newest stream (the one that would
        be served last). Control and request streams (at or before `CONTROL_PRIORITY`, or bidirectional) are never
        shed: if they alone exceed the bound, the peer is not reading control messages and the session is closed.
        """
        while self._queued_bytes > self.max_scheduled_bytes and self._closed_event is None:
            candidates = [
                (queue.priority, stream_id)
                for stream_id, queue in self._queues.items()
                if queue.size
                and queue.priority > CONTROL_PRIORITY
                and stream_is_unidirectional(stream_id)
                and self._is_local(stream_id)
            ]
            if not candidates:
                self.log.error("%d bytes queued on control and request streams: closing", self._queued_bytes)
                self.close(SessionErrorCode.INTERNAL_ERROR, "send queue overflow")
                return
            priority, stream_id = max(candidates)
            self.shed_streams += 1
            self.log.warning(
                "%d bytes queued (limit %d): resetting stream %d, priority %s, with EXCESSIVE_LOAD",
                self._queued_bytes,
                self.max_scheduled_bytes,
                stream_id,
                priority,
            )
            self.reset_stream(stream_id, StreamResetCode.EXCESSIVE_LOAD)

    def _wake_writers(self) -> None:
        if not self._writers:
            return
        buffered = self.buffered_bytes
        for threshold, waiter in self._writers:
            if buffered <= threshold and not waiter.done():
                waiter.set_result(None)

    def _schedule_transmit(self) -> None:
        # Coalesce: a burst of sends in one loop iteration becomes one pass over aioquic's packet builder.
        if not self._transmit_scheduled:
            self._transmit_scheduled = True
            self._loop.call_soon(self._transmit)

    def _transmit(self) -> None:
        self._transmit_scheduled = False
        self._protocol.transmit()

    # ------------------------------------------------------------------ stream opening and credit

    def _is_local(self, stream_id: int) -> bool:
        return stream_is_client_initiated(stream_id) == self.is_client

    def _check_writable_id(self, stream_id: int) -> None:
        if stream_is_unidirectional(stream_id) and not self._is_local(stream_id):
            raise StreamStateError(f"stream {stream_id} is the peer's unidirectional stream")

    def _end_send_side(self, stream_id: int, stream: _Stream, how: SendSide) -> None:
        stream.send = how
        self._ended[stream_id] = how
        while len(self._ended) > MAX_REMEMBERED_ENDED_STREAMS:
            self._ended.popitem(last=False)
        self._forget_if_done(stream_id, stream)

    def _forgotten(self, stream_id: int) -> bool:
        """A stream that existed and is over (so a late command on it is not misuse)."""
        if stream_id in self._ended:
            return True
        if self._is_local(stream_id):
            return stream_id < self._quic.get_next_available_stream_id(stream_is_unidirectional(stream_id))
        return not self._peer_ids.is_new(stream_id)

    def _forget_if_done(self, stream_id: int, stream: _Stream) -> None:
        if stream.done:
            self._streams.pop(stream_id, None)

    def _can_open(self, unidirectional: bool) -> bool:
        next_id = self._quic.get_next_available_stream_id(is_unidirectional=unidirectional)
        if next_id // 4 >= _aioquic.peer_stream_limit(self._quic, unidirectional):
            return False
        return not (unidirectional and len(self._inflight_uni) >= self.max_inflight_uni_streams)

    def _open_now(self, unidirectional: bool, priority: Priority) -> int:
        stream_id = self._create_stream(unidirectional)
        self._streams[stream_id] = _Stream(send=SendSide.OPEN, receiving=not unidirectional, priority=priority)
        self._fed[stream_id] = priority  # a WebTransport stream's header is already in aioquic
        if unidirectional:
            self._inflight_uni.add(stream_id)
        self._schedule_transmit()
        return stream_id

    def _try_open(self, unidirectional: bool, priority: Priority) -> int | None:
        if self._closed_event is not None:
            raise SessionClosedError("the session is closed")
        if not self._ready.done():
            return None
        # Waiting openers go first: a newcomer never overtakes them (those given up meanwhile do not count).
        queue = self._openers[unidirectional]
        while queue and queue[0][2].done():
            heapq.heappop(queue)
        if queue or not self._can_open(unidirectional):
            return None
        return self._open_now(unidirectional, priority)

    async def _open(self, unidirectional: bool, priority: Priority) -> int:
        stream_id = self._try_open(unidirectional, priority)
        if stream_id is not None:
            return stream_id
        waiter: asyncio.Future[int] = self._loop.create_future()
        heapq.heappush(self._openers[unidirectional], (priority, next(self._opener_seq), waiter))
        try:
            return await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                # A stream was opened for us just as we were cancelled: give it back.
                self.reset_stream(waiter.result(), 0)
            raise

    def _wake_openers(self) -> None:
        if not self._ready.done() or self._closed_event is not None:
            return
        for unidirectional, queue in self._openers.items():
            while queue and self._can_open(unidirectional):
                priority, _, waiter = heapq.heappop(queue)
                if not waiter.done():
                    waiter.set_result(self._open_now(unidirectional, priority))

    def _after_receive(self) -> None:
        """Run after each batch of received packets: release finished streams, wake openers, notice a close."""
        if self._closed_event is None:
            close = _aioquic.pending_close(self._quic)
            if close is not None:
                self._on_quic_close(close, by_peer=_aioquic.closed_by_peer(self._quic))
        for stream_id in [s for s in self._inflight_uni if _aioquic.send_side_finished(self._quic, s)]:
            self._inflight_uni.discard(stream_id)
        self._wake_openers()

    # ------------------------------------------------------------------ incoming, shared by both transports

    def _peer_stream(self, stream_id: int) -> _Stream | None:
        """Our record of a stream an event is about, creating it (and announcing it) for a new peer stream."""
        stream = self._streams.get(stream_id)
        if stream is not None or self._is_local(stream_id) or not self._peer_ids.is_new(stream_id):
            return stream
        self._peer_ids.mark(stream_id)
        unidirectional = stream_is_unidirectional(stream_id)
        stream = _Stream(send=None if unidirectional else SendSide.OPEN, receiving=True)
        self._streams[stream_id] = stream
        self._emit(StreamOpened(stream_id=stream_id, bidirectional=not unidirectional))
        return stream

    def _on_stream_data(self, stream_id: int, data: bytes, end_stream: bool) -> None:
        stream = self._peer_stream(stream_id)
        if stream is None or not stream.receiving:
            return  # we sent STOP_SENDING, or the stream is long gone
        if end_stream:
            stream.receiving = False
            self._forget_if_done(stream_id, stream)
        self._emit(StreamDataReceived(stream_id=stream_id, data=data, end_stream=end_stream))

    def _on_stream_reset(self, stream_id: int, wire_code: int) -> None:
        stream = self._peer_stream(stream_id)
        if stream is None or not stream.receiving:
            return
        stream.receiving = False
        self._forget_if_done(stream_id, stream)
        self._emit(StreamReset(stream_id=stream_id, code=self._decode_code(wire_code), wire_code=wire_code))

    def _on_stop_sending(self, stream_id: int, wire_code: int) -> None:
        # aioquic has reset our sending side: what we (and it) still hold for the stream will never be sent.
        self._drop_queue(stream_id)
        self._wake_writers()
        stream = self._peer_stream(stream_id)
        if stream is None or stream.send not in (SendSide.OPEN, SendSide.FINISHED):
            return
        # aioquic has already reset our sending side, echoing the peer's code (RFC 9000 §3.5).
        self._inflight_uni.discard(stream_id)
        self._end_send_side(stream_id, stream, SendSide.STOPPED)
        self._emit(StopSendingReceived(stream_id=stream_id, code=self._decode_code(wire_code), wire_code=wire_code))
        self._wake_openers()

    def _on_datagram(self, data: bytes) -> None:
        self._emit(DatagramReceived(data=data))

    def _on_quic_close(self, close: quic_events.ConnectionTerminated, by_peer: bool) -> None:
        """The QUIC connection is closing (or closed); subclasses say what that means for the session."""
        raise NotImplementedError

    # ------------------------------------------------------------------ lifecycle

    def _certificate_rejected(self) -> bool:
        """Client side, at HandshakeCompleted: if a fingerprint is pinned and the server's certificate does not
        match it, close the connection, fail the connect, and return True.

        aioquic's own verification is off when pinning (self-signed certificates have no CA), but it still
        checks the CertificateVerify signature, so a match proves the server holds the pinned key.
        """
        if self._pinned_fingerprint is None:
            return False
        certificate = _aioquic.peer_certificate(self._quic)
        actual = hashlib.sha256(certificate.public_bytes(serialization.Encoding.DER)).digest() if certificate else None
        if actual == self._pinned_fingerprint:
            return False
        detail = (
            f"server certificate sha-256 {fingerprint_colon(actual)} is not the pinned "
            f"{fingerprint_colon(self._pinned_fingerprint)}"
            if actual is not None
            else "server presented no certificate"
        )
        self.log.warning("%s", detail)
        self._fail_ready(CertificateMismatch(detail))
        self._quic.close(
            error_code=QuicErrorCode.CRYPTO_ERROR + 42,  # TLS alert bad_certificate (RFC 8446 §6.2)
            frame_type=QuicFrameType.CRYPTO,
            reason_phrase="certificate fingerprint mismatch",
        )
        self._protocol.transmit()
        return True

    def _mark_ready(self, version: Version) -> None:
        self._version = version
        if not self._ready.done():
            self._ready.set_result(None)
        self._arm_keepalive()
        self._wake_openers()

    def _fail_ready(self, exc: BaseException) -> None:
        if not self._ready.done():
            self._ready.set_exception(exc)
            # Retrieved by whoever awaits the handshake; mark it so an unawaited failure does not log noise.
            self._ready.exception()

    async def _wait_ready(self) -> None:
        await asyncio.shield(self._ready)

    def _session_closed(self, event: SessionClosed) -> None:
        """Record the end of the session (once), emit the final event and fail everyone waiting."""
        if self._closed_event is not None:
            return
        self._closed_event = event
        # A close with an application code is business as usual; losing the connection otherwise is worth a warning.
        level = logging.WARNING if event.code is None and event.transport_code not in (None, 0) else logging.INFO
        self.log.log(
            level,
            "session closed by %s: code=%s reason=%r transport_code=%s",
            "peer" if event.by_peer else "us",
            f"{event.code:#x}" if event.code is not None else None,
            event.reason,
            f"{event.transport_code:#x}" if event.transport_code is not None else None,
        )
        for queue in self._openers.values():
            for _, _, waiter in queue:
                if not waiter.done():
                    waiter.set_exception(SessionClosedError(f"session closed: {event.reason or event.code}"))
            queue.clear()
        self._inflight_uni.clear()
        # Nothing more goes out on any stream: drop what the scheduler holds and fail whoever waits on it.
        self._queues.clear()
        self._levels.clear()
        self._level_heap.clear()
        self._queued_bytes = 0
        self._fed.clear()
        writers, self._writers = self._writers, []
        for _, writer in writers:
            if not writer.done():
                writer.set_exception(SessionClosedError(f"session closed: {event.reason or event.code}"))
        if self._keepalive is not None:
            self._keepalive.cancel()
            self._keepalive = None
        self._emit(event)

    def _connection_terminated(self) -> None:
        """The QUIC connection is gone for good (aioquic's ConnectionTerminated)."""
        if self._closed.is_set():
            return
        self._closed.set()
        for callback in self._on_terminated:
            try:
                callback()
            except Exception:  # a cleanup callback must not stop the others
                self.log.exception("error in termination callback")

    def _arm_keepalive(self) -> None:
        if self._keepalive is None and self._closed_event is None:
            self._keepalive = self._loop.call_later(KEEPALIVE_INTERVAL, self._send_keepalive)

    def _send_keepalive(self) -> None:
        self._keepalive = None
        if self._closed_event is not None:
            return
        self._quic.send_ping(0)
        self._schedule_transmit()
        self._arm_keepalive()

    # ------------------------------------------------------------------ event delivery

    def _emit(self, event: TransportEvent) -> None:
        handler = self._handler
        if handler is not None and not self._events:
            self._deliver(handler, event)
            return
        self._events.append(event)
        if len(self._events) > MAX_QUEUED_EVENTS and self._closed_event is None:
            self.log.error("%d undelivered events: the session stopped reading; closing", len(self._events))
            self.close(0x1, "transport event queue overflow")
        if self._event_waiter is not None and not self._event_waiter.done():
            self._event_waiter.set_result(None)

    def _deliver(self, handler: Callable[[TransportEvent], None], event: TransportEvent) -> None:
        if isinstance(event, SessionClosed):
            self._final_event_taken = True
        try:
            handler(event)
        except Exception:
            self.log.exception("event handler failed on %s", type(event).__name__)
            if self._closed_event is None:
                self.close(0x1, "internal error")
