"""The MOQT session state machine, sans IO (draft-ietf-moq-transport-22 §6, §9, §11; draft-18 likewise).

Bytes and transport events go in (`stream_data_received`, `stream_reset`, `stop_sending_received`,
`datagram_received`, `handle_timer`), with the time passed as `now`; transport commands (`moq.session.commands`)
and application events (`moq.session.events`) come out (`commands()`, `events()`). The application acts through
verbs: `subscribe()`, `publish()`, `accept_subscribe()`, `open_subgroup()`, `write_object()`, ...

Errors (DESIGN.md decision 6): a peer that breaks the protocol raises `ProtocolViolation` somewhere below; it is
caught in one place (`_guard`), which closes the session with that code and emits `SessionTerminated`. Misuse
by our own application raises `SessionError` (a `ValueError`) at once and changes nothing.

The draft is fixed when the session is made: ALPN / WT-Protocol negotiated it before any MOQT byte flows.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import Enum

import msgspec

from moq.errors import MoqError, ProtocolViolation
from moq.session.commands import (
    CloseSession,
    Command,
    OpenStream,
    ResetStream,
    SendDatagram,
    SendStreamData,
    StopSending,
)
from moq.session.events import (
    DataStreamEnded,
    Event,
    FetchRangeMissing,
    GoawayReceived,
    NamespacePublished,
    NamespaceWithdrawn,
    ObjectReceived,
    PublishSkippedReceived,
    PublishStateNotified,
    RequestAccepted,
    RequestCancelled,
    RequestFailed,
    RequestMessage,
    RequestReceived,
    RequestUpdated,
    SessionTerminated,
    SetupCompleted,
    SubscriptionEnded,
    UpdateAnswered,
)
from moq.wire.codes import ObjectStatus, SessionErrorCode, StreamResetCode
from moq.wire.data import (
    ControlStreamData,
    DataStreamParser,
    EndOfRangeKind,
    FetchEndOfRange,
    FetchHeader,
    FetchObject,
    FetchObjectEncoder,
    ObjectDatagram,
    ObjectTooLarge,
    Padding,
    SubgroupHeader,
    SubgroupIdMode,
    SubgroupObject,
    decode_datagram,
    encode_datagram,
    encode_fetch_header,
    encode_subgroup_header,
    encode_subgroup_object_header,
)
from moq.wire.messages import (
    Fetch,
    FetchOk,
    FetchType,
    GoAway,
    Message,
    MessageReader,
    Namespace,
    NamespaceDone,
    Publish,
    PublishBlocked,
    PublishDone,
    PublishNamespace,
    PublishSkipped,
    PublishStateNotify,
    RequestError,
    RequestOk,
    RequestUpdate,
    Setup,
    Subscribe,
    SubscribeNamespace,
    SubscribeOk,
    SubscribeTracks,
    TrackStatus,
    encode_message,
)
from moq.wire.params import NO_PARAMETERS, GroupOrder, InvalidFilter, Parameters
from moq.wire.primitives import Location, Properties, TrackNamespace
from moq.wire.version import Version

logger = logging.getLogger(__name__)

#: Streams whose Track Alias we do not know yet (a subgroup stream can overtake its SUBSCRIBE_OK, §3.1.3.1) that
#: we hold, parsed, until the alias is known. Past this, a new such stream is refused with STOP_SENDING.
MAX_UNKNOWN_ALIAS_STREAMS = 64
#: Bytes of objects held for such streams, in all.
MAX_UNKNOWN_ALIAS_BYTES = 4 * 1024 * 1024
#: Requests the peer may open before its SETUP arrives (§6.3: buffered until setup completes).
MAX_REQUESTS_BEFORE_SETUP = 64
#: After PUBLISH_DONE, how long a subscriber waits for the data streams it counted when the subscription named no
#: delivery timeout (§9.9 asks for at least the larger delivery timeout).
PUBLISH_DONE_DRAIN_SECONDS = 2.0
#: Peer streams that may be skipped over at once: QUIC's stream credit bounds this far lower (we grant 128).
MAX_STREAM_ID_GAP = 4096

_PV = SessionErrorCode.PROTOCOL_VIOLATION
_MAX_ID = (1 << 64) - 1
_REQUEST_TYPES = (Subscribe, Publish, Fetch, TrackStatus, PublishNamespace, SubscribeNamespace, SubscribeTracks)


class SessionError(MoqError, ValueError):
    """Our own application used the session wrongly (unknown request id, wrong state, ...)."""


class Role(Enum):
    """Which side of the QUIC connection we are: it fixes request-id parity and stream-id bits."""

    CLIENT = "client"
    SERVER = "server"


class _State(Enum):
    NEW = "new"
    SETUP_SENT = "setup-sent"
    READY = "ready"  # both SETUPs exchanged
    CLOSED = "closed"


class _Phase(Enum):
    PENDING = "pending"  # request sent / received, no answer yet
    ESTABLISHED = "established"
    DONE = "done"


@dataclass(slots=True)
class _Request:
    """One request stream and what the session knows of it."""

    request_id: int
    message: RequestMessage
    stream: int
    local: bool  # we sent the request
    phase: _Phase = _Phase.PENDING
    reader: MessageReader | None = None
    track_alias: int | None = None
    publisher_priority: int = 128
    subscriber_priority: int = 128
    forward: bool = True  # FORWARD (§9.20.19): a subscription whose publisher sends nothing while it is 0
    group_order: GroupOrder = GroupOrder.ASCENDING
    # Publisher side of a subscription: data streams we opened, and those still open.
    streams_opened: int = 0
    open_streams: set[int] = field(default_factory=set)
    # Subscriber side: data streams seen, those still open, and PUBLISH_DONE once it came.
    streams_seen: int = 0
    streams_live: set[int] = field(default_factory=set)
    publish_done: PublishDone | None = None
    drain_deadline: float | None = None
    # REQUEST_UPDATEs in flight on this request: ours (oldest first) or the peer's (by update id).
    our_updates: deque[int] = field(default_factory=deque)
    peer_updates: set[int] = field(default_factory=set)
    # SUBSCRIBE_NAMESPACE (ours): the suffixes announced and not withdrawn.
    namespaces: set[TrackNamespace] = field(default_factory=set)
    send_closed: bool = False
    goaway_seen: bool = False

    @property
    def is_subscription(self) -> bool:
        return isinstance(self.message, (Subscribe, Publish))

    @property
    def we_publish(self) -> bool:
        """We send the objects of this request (we answer a SUBSCRIBE/FETCH, or we sent PUBLISH)."""
        if isinstance(self.message, Publish):
            return self.local
        return not self.local and isinstance(self.message, (Subscribe, Fetch))


@dataclass(slots=True)
class _DataStream:
    """A uni data stream the peer opened: subgroup or fetch."""

    parser: DataStreamParser
    request: _Request | None = None
    header: SubgroupHeader | FetchHeader | None = None
    held: list[Event] = field(default_factory=list)  # objects waiting for an unknown Track Alias
    held_bytes: int = 0
    ended: bool = False


@dataclass(slots=True)
class _Writer:
    """A data stream we opened: a subgroup of a subscription, or a fetch response."""

    handle: int
    request: _Request
    header: SubgroupHeader | None = None
    fetch: FetchObjectEncoder | None = None
    last_object: int | None = None
    finished: bool = False


class _PeerIds:
    """Request ids the peer used, in O(gaps) memory: a new id must have the peer's parity and be unused (§6.4.2.1)."""

    def __init__(self, parity: int) -> None:
        self.parity = parity
        self.next = parity
        self.gaps: set[int] = set()

    def use(self, request_id: int) -> None:
        if request_id % 2 != self.parity:
            raise ProtocolViolation(SessionErrorCode.INVALID_REQUEST_ID, f"request id {request_id} has wrong parity")
        if request_id >= self.next:
            if (request_id - self.next) // 2 > MAX_REQUESTS_BEFORE_SETUP * 64:
                raise ProtocolViolation(SessionErrorCode.INVALID_REQUEST_ID, f"request id {request_id} skips too far")
            self.gaps.update(range(self.next, request_id, 2))
            self.next = request_id + 2
        elif request_id in self.gaps:
            self.gaps.discard(request_id)
        else:
            raise ProtocolViolation(SessionErrorCode.INVALID_REQUEST_ID, f"request id {request_id} is a duplicate")


class _PeerStreams:
    """Which streams the peer has opened, in O(gaps) memory: bytes on a peer stream we have already retired are
    late, not the start of a new request. QUIC opens a peer's streams in order (RFC 9000 §2.1), so an id at or past
    the watermark is new, and an id below it is new only if it never showed up (it arrived out of order)."""

    def __init__(self) -> None:
        self._next = {False: 0, True: 0}  # keyed by "unidirectional": next unseen stream index
        self._gaps: set[int] = set()

    def is_new(self, stream_id: int) -> bool:
        uni = bool(stream_id & 2)
        index = stream_id >> 2
        if index >= self._next[uni]:
            if index - self._next[uni] > MAX_STREAM_ID_GAP:
                raise ProtocolViolation(_PV, f"stream {stream_id} skips past the streams QUIC would allow")
            self._gaps.update((i << 2) | (stream_id & 3) for i in range(self._next[uni], index))
            self._next[uni] = index + 1
            return True
        if stream_id in self._gaps:
            self._gaps.discard(stream_id)
            return True
        return False


class Session:
    """One MOQT session (see the module docstring)."""

    def __init__(
        self,
        role: Role,
        version: Version,
        *,
        setup: Setup | None = None,
        webtransport: bool = False,
        session_id: str = "",
    ) -> None:
        self.role = role
        self.version = version
        self.setup = setup or Setup()
        self.webtransport = webtransport
        self.peer_setup: Setup | None = None
        self.session_id = session_id or role.value
        self._state = _State.NEW
        self._commands: list[Command] = []
        self._events: list[Event] = []
        self._held_events: list[Event] = []  # peer requests that came before its SETUP
        server_bit = 1 if role is Role.SERVER else 0
        self._next_bidi = server_bit
        self._next_uni = 2 | server_bit
        self._next_request_id = server_bit
        self._peer_ids = _PeerIds(1 - server_bit)
        self._control: int | None = None
        self._peer_control: int | None = None
        self._control_reader = MessageReader(version)
        self._requests: dict[int, _Request] = {}
        self._by_stream: dict[int, _Request] = {}
        self._updates: dict[int, _Request] = {}  # update request id -> the request it updates
        self._aliases: dict[int, _Request] = {}  # track alias -> subscription (subscriber side)
        self._data_streams: dict[int, _DataStream] = {}
        self._peer_streams = _PeerStreams()
        self._unknown_alias_streams = 0
        self._unknown_alias_bytes = 0
        self._writers: dict[int, _Writer] = {}
        self._next_alias = 0
        self._goaway_received = False
        self.goaway_sent = False
        self.close_code: int | None = None

    # -- outputs ------------------------------------------------------------------------------------------------

    def commands(self) -> list[Command]:
        """The transport commands produced since the last call, in order."""
        out, self._commands = self._commands, []
        return out

    def events(self) -> list[Event]:
        """The application events produced since the last call, in order."""
        out, self._events = self._events, []
        return out

    @property
    def is_ready(self) -> bool:
        return self._state is _State.READY

    @property
    def is_closed(self) -> bool:
        return self._state is _State.CLOSED

    def next_timer(self) -> float | None:
        """When `handle_timer` next has work, or None."""
        deadlines = [r.drain_deadline for r in self._requests.values() if r.drain_deadline is not None]
        return min(deadlines) if deadlines else None

    # -- inputs -------------------------------------------------------------------------------------------------

    def initiate(self) -> None:
        """Open our control stream and send SETUP (§6.3). Call once, as soon as the transport is up."""
        if self._state is not _State.NEW:
            raise SessionError("SETUP already sent")
        self._control = self._open(unidirectional=True, priority=(0,))
        self._send(self._control, encode_message(self.setup, self.version))
        self._state = _State.SETUP_SENT
        self._maybe_ready()

    def stream_data_received(self, stream_id: int, data: bytes, end_stream: bool, now: float = 0.0) -> None:
        """Bytes (and perhaps FIN) arrived on a stream."""
        if self._state is _State.CLOSED:
            return
        with self._guard():
            self._on_stream_data(stream_id, data, end_stream, now)

    def stream_reset(self, stream_id: int, code: int, now: float = 0.0) -> None:
        """The peer reset its sending side of a stream (RESET_STREAM)."""
        if self._state is _State.CLOSED:
            return
        with self._guard():
            self._on_reset(stream_id, code, now)

    def stop_sending_received(self, stream_id: int, code: int, now: float = 0.0) -> None:
        """The peer asked us to stop sending on a stream (STOP_SENDING)."""
        if self._state is _State.CLOSED:
            return
        with self._guard():
            self._on_stop_sending(stream_id, code)

    def datagram_received(self, data: bytes, now: float = 0.0) -> None:
        """A datagram arrived (§11.2)."""
        if self._state is _State.CLOSED:
            return
        with self._guard():
            self._on_datagram(data)

    def handle_timer(self, now: float) -> None:
        """Run what is due at `now` (PUBLISH_DONE drain timers)."""
        if self._state is _State.CLOSED:
            return
        for request in list(self._requests.values()):
            if request.drain_deadline is not None and request.drain_deadline <= now:
                self._end_subscription(request)

    def transport_closed(self, code: int, reason: str) -> None:
        """The connection went away underneath us (peer close, idle timeout, ...)."""
        if self._state is _State.CLOSED:
            return
        self._state = _State.CLOSED
        self.close_code = code
        self._events.append(SessionTerminated(code, reason, by_peer=True))

    def close(self, code: int = SessionErrorCode.NO_ERROR, reason: str = "") -> None:
        """Close the session (§6.6)."""
        if self._state is _State.CLOSED:
            return
        self._state = _State.CLOSED
        self.close_code = code
        self._commands.append(CloseSession(code, reason))
        self._events.append(SessionTerminated(code, reason, by_peer=False))

    # -- requests we send ---------------------------------------------------------------------------------------

    def subscribe(self, namespace: TrackNamespace, name: bytes, parameters: Parameters = NO_PARAMETERS) -> int:
        """Send SUBSCRIBE (§9.6); the answer comes as `RequestAccepted` / `RequestFailed`."""
        return self._request(lambda rid: Subscribe(rid, namespace, name, parameters))

    def publish(
        self,
        namespace: TrackNamespace,
        name: bytes,
        parameters: Parameters = NO_PARAMETERS,
        properties: Properties = (),
        track_alias: int | None = None,
    ) -> int:
        """Send PUBLISH (§9.8): we offer a track; objects may follow at once unless FORWARD is 0."""
        alias = self._alias() if track_alias is None else track_alias
        request_id = self._request(lambda rid: Publish(rid, namespace, name, alias, parameters, properties))
        request = self._requests[request_id]
        request.track_alias = alias
        request.publisher_priority = _default_priority(properties)
        return request_id

    def fetch(
        self,
        namespace: TrackNamespace,
        name: bytes,
        parameters: Parameters = NO_PARAMETERS,
        start: Location | None = None,
        end: Location | None = None,
    ) -> int:
        """Send a standalone FETCH (§9.11). Draft-18 carries the range as `start`/`end`; later drafts as
        LOCATION_FILTER in `parameters`."""
        if self.version.family == 18:
            return self._request(
                lambda rid: Fetch(
                    rid,
                    namespace,
                    name,
                    parameters,
                    fetch_type=FetchType.STANDALONE,
                    start=start or Location(0, 0),
                    end=end or Location(0, 0),
                )
            )
        return self._request(lambda rid: Fetch(rid, namespace, name, parameters))

    def joining_fetch(
        self, subscribe_id: int, joining_start: int, relative: bool = True, parameters: Parameters = NO_PARAMETERS
    ) -> int:
        """Draft-18 joining FETCH tied to an existing SUBSCRIBE (draft-18 §"Joining Fetches")."""
        if self.version.family != 18:
            raise SessionError("joining FETCH exists only in draft-18; use FILL_PARAMETERS on SUBSCRIBE")
        kind = FetchType.RELATIVE_JOINING if relative else FetchType.ABSOLUTE_JOINING
        return self._request(
            lambda rid: Fetch(
                rid,
                parameters=parameters,
                fetch_type=kind,
                joining_request_id=subscribe_id,
                joining_start=joining_start,
            )
        )

    def track_status(self, namespace: TrackNamespace, name: bytes, parameters: Parameters = NO_PARAMETERS) -> int:
        """Send TRACK_STATUS (§9.13)."""
        return self._request(lambda rid: TrackStatus(rid, namespace, name, parameters))

    def publish_namespace(self, namespace: TrackNamespace, parameters: Parameters = NO_PARAMETERS) -> int:
        """Send PUBLISH_NAMESPACE (§9.14). Withdraw it with `cancel()`."""
        return self._request(lambda rid: PublishNamespace(rid, namespace, parameters))

    def subscribe_namespace(self, prefix: TrackNamespace, parameters: Parameters = NO_PARAMETERS) -> int:
        """Send SUBSCRIBE_NAMESPACE (§9.15): NAMESPACE / NAMESPACE_DONE follow as events."""
        return self._request(lambda rid: SubscribeNamespace(rid, prefix, parameters))

    def subscribe_tracks(self, prefix: TrackNamespace, parameters: Parameters = NO_PARAMETERS) -> int:
        """Send SUBSCRIBE_TRACKS (§9.18): the peer answers with PUBLISH requests of its own."""
        return self._request(lambda rid: SubscribeTracks(rid, prefix, parameters))

    def request_update(self, request_id: int, parameters: Parameters) -> int:
        """Send REQUEST_UPDATE on a request (§9.5); returns the update's own request id."""
        request = self._get(request_id)
        if request.phase is _Phase.DONE:
            raise SessionError(f"request {request_id} is over")
        allowed = request.local or (isinstance(request.message, Publish) and not request.local)
        if not allowed:
            raise SessionError(f"request {request_id} cannot be updated from this side")
        update_id = self._take_request_id()
        self._send(request.stream, encode_message(RequestUpdate(update_id, parameters), self.version))
        request.our_updates.append(update_id)
        self._updates[update_id] = request
        return update_id

    def cancel(self, request_id: int, code: int = StreamResetCode.CANCELLED) -> None:
        """Cancel a request: reset what we still send and stop what we still receive (§6.4.2.3)."""
        request = self._get(request_id)
        if not request.send_closed:
            self._commands.append(ResetStream(request.stream, code))
        self._commands.append(StopSending(request.stream, code))
        self._reset_writers(request, code)
        self._finish(request)

    def goaway(self, new_session_uri: str = "", timeout_ms: int = 0, request_id: int | None = None) -> None:
        """Send GOAWAY on the control stream, or on one request stream (§9.2)."""
        if self.role is Role.CLIENT and new_session_uri:
            raise SessionError("a client's GOAWAY must carry an empty URI")
        msg = GoAway(new_session_uri, timeout_ms)
        if request_id is None:
            if self._control is None:
                raise SessionError("SETUP has not been sent yet")
            if self.goaway_sent:
                raise SessionError("GOAWAY was sent already")  # a second one is a protocol violation (§9.2)
            self.goaway_sent = True
            self._send(self._control, encode_message(msg, self.version))
        else:
            self._send(self._get(request_id).stream, encode_message(msg, self.version))

    # -- answering the peer's requests --------------------------------------------------------------------------

    def accept_subscribe(
        self,
        request_id: int,
        parameters: Parameters = NO_PARAMETERS,
        properties: Properties = (),
        track_alias: int | None = None,
    ) -> int:
        """Answer SUBSCRIBE with SUBSCRIBE_OK (§9.7); returns the Track Alias chosen."""
        request = self._answerable(request_id, Subscribe)
        alias = self._alias() if track_alias is None else track_alias
        request.track_alias = alias
        request.publisher_priority = _default_priority(properties)
        self._send(request.stream, encode_message(SubscribeOk(alias, parameters, properties), self.version))
        request.phase = _Phase.ESTABLISHED
        return alias

    def accept(self, request_id: int, parameters: Parameters = NO_PARAMETERS, properties: Properties = ()) -> None:
        """Answer PUBLISH, PUBLISH_NAMESPACE, SUBSCRIBE_NAMESPACE, SUBSCRIBE_TRACKS or TRACK_STATUS with REQUEST_OK."""
        request = self._answerable(
            request_id, (Publish, PublishNamespace, SubscribeNamespace, SubscribeTracks, TrackStatus)
        )
        self._send(request.stream, encode_message(RequestOk(parameters, properties), self.version))
        request.phase = _Phase.ESTABLISHED
        if isinstance(request.message, TrackStatus):
            self._close_send(request)  # TRACK_STATUS: the answer is all (§9.13)
            self._finish(request)

    def accept_fetch(
        self,
        request_id: int,
        end_location: Location,
        end_of_track: bool = False,
        parameters: Parameters = NO_PARAMETERS,
        properties: Properties = (),
    ) -> None:
        """Answer FETCH with FETCH_OK (§9.12); then `open_fetch_stream` sends the objects. `end_location` is the
        last object the response covers (inclusive); the draft-18 wire form is written from it."""
        request = self._answerable(request_id, Fetch)
        if self.version.family == 18:
            # Draft-18 §"FETCH_OK": the End Location is "the last Object, plus 1; or 0 to indicate the entire
            # Group"; from draft-20 it is inclusive. A whole group is {G, 2^64-1} inclusive, {G, 0} in draft-18.
            last = end_location.object
            end_location = Location(end_location.group, 0 if last == _MAX_ID else last + 1)
        msg = FetchOk(end_of_track, end_location, parameters, properties)
        self._send(request.stream, encode_message(msg, self.version))
        request.phase = _Phase.ESTABLISHED
        # The request stream stays open until the fetch stream is done: a REQUEST_UPDATE may still come (§6.4.2.2).

    def reject(self, request_id: int, code: int, reason: str = "", retry_interval: int = 0) -> None:
        """Answer a request with REQUEST_ERROR and FIN (§9.4, §6.4.2.3)."""
        request = self._answerable(request_id, _REQUEST_TYPES)
        self._send(request.stream, encode_message(RequestError(code, retry_interval, reason), self.version))
        self._close_send(request)
        self._finish(request)

    def accept_update(self, update_id: int, parameters: Parameters = NO_PARAMETERS) -> None:
        """Answer the peer's REQUEST_UPDATE with REQUEST_OK (§9.5)."""
        request = self._peer_update(update_id)
        self._send(request.stream, encode_message(RequestOk(parameters), self.version))

    def reject_update(self, update_id: int, code: int, reason: str = "") -> None:
        """Answer the peer's REQUEST_UPDATE with REQUEST_ERROR (§9.5)."""
        request = self._peer_update(update_id)
        self._send(request.stream, encode_message(RequestError(code, 0, reason), self.version))

    def send_namespace(self, request_id: int, suffix: TrackNamespace) -> None:
        """NAMESPACE on a SUBSCRIBE_NAMESPACE we accepted (§9.16)."""
        request = self._established(request_id, SubscribeNamespace)
        self._send(request.stream, encode_message(Namespace(suffix), self.version))

    def send_namespace_done(self, request_id: int, suffix: TrackNamespace) -> None:
        """NAMESPACE_DONE on a SUBSCRIBE_NAMESPACE we accepted (§9.17)."""
        request = self._established(request_id, SubscribeNamespace)
        self._send(request.stream, encode_message(NamespaceDone(suffix), self.version))

    def send_publish_skipped(self, request_id: int, suffix: TrackNamespace, name: bytes) -> None:
        """PUBLISH_SKIPPED (draft-18: PUBLISH_BLOCKED) on a SUBSCRIBE_TRACKS we accepted (§9.19)."""
        request = self._established(request_id, SubscribeTracks)
        msg = PublishBlocked(suffix, name) if self.version.family == 18 else PublishSkipped(suffix, name)
        self._send(request.stream, encode_message(msg, self.version))

    def forwarding(self, request_id: int) -> bool:
        """Whether the subscriber of `request_id` wants objects now (FORWARD, §9.20.19); False once it is over."""
        request = self._requests.get(request_id)
        return request is not None and request.forward

    def publish_state_notify(self, request_id: int, parameters: Parameters) -> None:
        """PUBLISH_STATE_NOTIFY on a subscription we serve (draft-20+ §9.10)."""
        if self.version.family == 18:
            raise SessionError("PUBLISH_STATE_NOTIFY needs draft-20 or later")
        request = self._get(request_id)
        if not (request.is_subscription and request.we_publish):
            raise SessionError(f"request {request_id} is not a subscription we publish")
        self._send(request.stream, encode_message(PublishStateNotify(parameters), self.version))

    def publish_done(self, request_id: int, status_code: int, reason: str = "") -> None:
        """End a subscription we publish: FIN its open data streams, then PUBLISH_DONE with the exact stream count
        and FIN (§9.9)."""
        request = self._get(request_id)
        if not (request.is_subscription and request.we_publish):
            raise SessionError(f"request {request_id} is not a subscription we publish")
        for handle in list(request.open_streams):
            self.finish_stream(handle)
        msg = PublishDone(status_code, request.streams_opened, reason)
        self._send(request.stream, encode_message(msg, self.version))
        self._close_send(request)
        self._finish(request)

    # -- objects we send ----------------------------------------------------------------------------------------

    def open_subgroup(
        self,
        request_id: int,
        group_id: int,
        subgroup_id: int = 0,
        publisher_priority: int | None = None,
        *,
        first_object_id: int | None = None,
        with_properties: bool = False,
        end_of_group: bool = False,
        first_object: bool = True,
    ) -> int:
        """Open a subgroup stream of a subscription we publish (§11.3); returns its handle.

        `publisher_priority` None sends no priority byte (the track's default applies). `first_object_id`, when
        it equals `subgroup_id`, lets the header omit the Subgroup ID.
        """
        request = self._get(request_id)
        if not (request.is_subscription and request.we_publish) or request.phase is _Phase.DONE:
            raise SessionError(f"request {request_id} is not a live subscription we publish")
        if request.track_alias is None:
            raise SessionError(f"request {request_id} has no track alias yet")
        if subgroup_id == 0:
            mode = SubgroupIdMode.ZERO
        elif first_object_id is not None and first_object_id == subgroup_id:
            mode = SubgroupIdMode.FIRST_OBJECT_ID
        else:
            mode = SubgroupIdMode.EXPLICIT
        header = SubgroupHeader(
            track_alias=request.track_alias,
            group_id=group_id,
            subgroup_id=None if mode is SubgroupIdMode.FIRST_OBJECT_ID else subgroup_id,
            publisher_priority=publisher_priority,
            subgroup_id_mode=mode,
            has_properties=with_properties,
            end_of_group=end_of_group,
            first_object=first_object,
        )
        priority = publisher_priority if publisher_priority is not None else request.publisher_priority
        order_key = group_id if request.group_order is GroupOrder.ASCENDING else -group_id
        handle = self._open(True, (request.subscriber_priority, priority, order_key, subgroup_id))
        self._send(handle, encode_subgroup_header(header, self.version))
        self._writers[handle] = _Writer(handle, request, header=header)
        request.streams_opened += 1
        request.open_streams.add(handle)
        return handle

    def write_object(
        self,
        handle: int,
        object_id: int,
        payload: bytes,
        properties: Properties = (),
        status: ObjectStatus = ObjectStatus.NORMAL,
        end_stream: bool = False,
    ) -> None:
        """Write one object on a subgroup stream (§11.3.1). Object ids must increase within the stream."""
        writer = self._writer(handle)
        assert writer.header is not None
        head = encode_subgroup_object_header(
            writer.header, writer.last_object, object_id, properties, len(payload), status
        )
        writer.last_object = object_id
        self._send(handle, head + payload if len(payload) < 4096 else head)
        if len(payload) >= 4096:
            self._send(handle, payload)  # large payloads go by reference, not copied into the header
        if end_stream:
            self.finish_stream(handle)

    def finish_stream(self, handle: int) -> None:
        """FIN a data stream we opened: everything it was to carry is written (§11.3.2)."""
        writer = self._writers.pop(handle, None)
        if writer is None or writer.finished:
            return
        writer.finished = True
        writer.request.open_streams.discard(handle)
        self._commands.append(SendStreamData(handle, b"", end_stream=True))
        if (
            writer.fetch is not None
            and isinstance(writer.request.message, Fetch)
            and writer.request.request_id in self._requests
        ):
            self._close_send(writer.request)
            self._finish(writer.request)

    def reset_stream(self, handle: int, code: int = StreamResetCode.CANCELLED) -> None:
        """Reset a data stream we opened (delivery timeout, too far behind, ..., §11.3.2), even one we have
        FIN'd already: until the peer has it all, a reset still drops what it has not received."""
        writer = self._writers.pop(handle, None)
        if writer is not None:
            writer.request.open_streams.discard(handle)
        elif self._is_peer_stream(handle) or not handle & 2 or handle >= self._next_uni:
            return  # not a data stream of ours
        self._commands.append(ResetStream(handle, code))

    def withdraw_stream(self, handle: int) -> None:
        """Forget a data stream of ours that never reached the wire (it waited for the peer's stream credit and was
        given up): no RESET_STREAM is sent, and PUBLISH_DONE's stream count (§9.12) leaves it out, so the
        subscriber does not wait for a stream that will never come."""
        writer = self._writers.pop(handle, None)
        if writer is None:
            return
        writer.request.open_streams.discard(handle)
        writer.request.streams_opened -= 1

    def send_datagram(
        self,
        request_id: int,
        group_id: int,
        object_id: int,
        payload: bytes,
        publisher_priority: int | None = None,
        properties: Properties | None = None,
        status: ObjectStatus | None = None,
        end_of_group: bool = False,
    ) -> None:
        """Send one object as an OBJECT_DATAGRAM on a subscription we publish (§11.2)."""
        request = self._get(request_id)
        if not (request.is_subscription and request.we_publish) or request.track_alias is None:
            raise SessionError(f"request {request_id} is not a live subscription we publish")
        dgram = ObjectDatagram(
            request.track_alias,
            group_id,
            object_id,
            publisher_priority,
            properties or None,
            end_of_group,
            status,
            payload,
        )
        self._commands.append(SendDatagram(encode_datagram(dgram, self.version)))

    def open_fetch_stream(self, request_id: int) -> int:
        """Open the uni stream carrying a FETCH's objects, or a SUBSCRIBE's fill (draft-20+ §3.4, §11.4); returns
        its handle. A fill stream is one of the subscription's data streams (PUBLISH_DONE counts it)."""
        request = self._get(request_id)
        msg = request.message
        if isinstance(msg, Fetch) and not request.local:
            order = msg.parameters.group_order or GroupOrder.ASCENDING
        elif isinstance(msg, Subscribe) and not request.local and msg.parameters.fill_parameters is not None:
            order = msg.parameters.fill_parameters.group_order or request.group_order
            request.streams_opened += 1
        else:
            raise SessionError(f"request {request_id} is not a FETCH or a SUBSCRIBE with a fill that we serve")
        # Fill before subscription-delivered objects of the same priorities (§5.1 rule 4): group key -1.
        handle = self._open(True, (request.subscriber_priority, 0, -1, 0))
        self._send(handle, encode_fetch_header(request_id))
        self._writers[handle] = _Writer(handle, request, fetch=FetchObjectEncoder(self.version, order))
        if isinstance(msg, Subscribe):
            request.open_streams.add(handle)
        return handle

    def write_fetch_object(
        self,
        handle: int,
        group_id: int,
        subgroup_id: int | None,
        object_id: int,
        payload: bytes,
        publisher_priority: int = 128,
        properties: Properties | None = None,
    ) -> None:
        """Write one object on a fetch stream, in the fetch's group order (§11.4.1)."""
        writer = self._writer(handle)
        assert writer.fetch is not None
        head = writer.fetch.object_header(
            group_id, subgroup_id, object_id, publisher_priority, properties, len(payload)
        )
        self._send(handle, head + payload)

    def write_fetch_end_of_range(self, handle: int, kind: int, group_id: int, object_id: int) -> None:
        """Mark objects up to (group, object) non-existent, unknown or timed out on a fetch stream (§11.4.1.2)."""
        writer = self._writer(handle)
        assert writer.fetch is not None
        self._send(handle, writer.fetch.end_of_range(EndOfRangeKind(kind), group_id, object_id))

    # -- internals: streams and requests ------------------------------------------------------------------------

    @contextmanager
    def _guard(self) -> Iterator[None]:
        """The one place a peer's protocol violation becomes a session close (DESIGN.md decision 6)."""
        try:
            yield
        except ProtocolViolation as exc:
            logger.info("[%s] closing: %s", self.session_id, exc)
            self.close(exc.code, exc.reason)

    def _open(self, unidirectional: bool, priority: tuple[int, ...] = ()) -> int:
        if self._state is _State.CLOSED:
            raise SessionError("session is closed")
        if unidirectional:
            handle, self._next_uni = self._next_uni, self._next_uni + 4
        else:
            handle, self._next_bidi = self._next_bidi, self._next_bidi + 4
        self._commands.append(OpenStream(handle, unidirectional, priority))
        return handle

    def _send(self, stream: int, data: bytes, end_stream: bool = False) -> None:
        if self._state is _State.CLOSED:
            raise SessionError("session is closed")
        self._commands.append(SendStreamData(stream, data, end_stream))

    def _take_request_id(self) -> int:
        request_id = self._next_request_id
        self._next_request_id += 2
        return request_id

    def _alias(self) -> int:
        alias = self._next_alias
        self._next_alias += 1
        return alias

    def _request(self, build: Callable[[int], RequestMessage]) -> int:
        if self._state is _State.CLOSED:
            raise SessionError("session is closed")
        request_id = self._take_request_id()
        msg = build(request_id)
        data = encode_message(msg, self.version)  # encode first: an EncodeError leaves no trace
        stream = self._open(unidirectional=False, priority=(0,))
        self._send(stream, data)
        request = _Request(request_id, msg, stream, local=True, reader=MessageReader(self.version))
        _apply_request_parameters(request, msg)
        self._requests[request_id] = request
        self._by_stream[stream] = request
        return request_id

    def _get(self, request_id: int) -> _Request:
        request = self._requests.get(request_id)
        if request is None:
            raise SessionError(f"no live request {request_id}")
        return request

    def _answerable(self, request_id: int, kinds: type | tuple[type, ...]) -> _Request:
        request = self._get(request_id)
        if request.local or not isinstance(request.message, kinds) or request.phase is not _Phase.PENDING:
            raise SessionError(f"request {request_id} is not a pending {kinds} from the peer")
        return request

    def _established(self, request_id: int, kind: type) -> _Request:
        request = self._get(request_id)
        if request.local or not isinstance(request.message, kind) or request.phase is not _Phase.ESTABLISHED:
            raise SessionError(f"request {request_id} is not an established {kind.__name__} from the peer")
        return request

    def _peer_update(self, update_id: int) -> _Request:
        request = self._updates.get(update_id)
        if request is None or update_id not in request.peer_updates:
            raise SessionError(f"no pending REQUEST_UPDATE {update_id} from the peer")
        request.peer_updates.discard(update_id)
        del self._updates[update_id]
        return request

    def _writer(self, handle: int) -> _Writer:
        writer = self._writers.get(handle)
        if writer is None:
            raise SessionError(f"no open data stream {handle}")
        return writer

    def _close_send(self, request: _Request) -> None:
        if not request.send_closed:
            request.send_closed = True
            self._commands.append(SendStreamData(request.stream, b"", end_stream=True))

    def _finish(self, request: _Request) -> None:
        request.phase = _Phase.DONE
        self._requests.pop(request.request_id, None)
        self._by_stream.pop(request.stream, None)
        for update_id in [*request.our_updates, *request.peer_updates]:
            self._updates.pop(update_id, None)
        if request.track_alias is not None and self._aliases.get(request.track_alias) is request:
            del self._aliases[request.track_alias]

    def _reset_writers(self, request: _Request, code: int) -> None:
        for handle in list(request.open_streams):
            self.reset_stream(handle, code)
        for handle, writer in list(self._writers.items()):
            if writer.request is request:
                self.reset_stream(handle, code)

    def _maybe_ready(self) -> None:
        if self._state is _State.SETUP_SENT and self.peer_setup is not None:
            self._state = _State.READY
            self._events.append(SetupCompleted(self.version, self.peer_setup))
            self._events.extend(self._held_events)
            self._held_events.clear()

    def _emit(self, event: Event) -> None:
        if self._state is _State.READY:
            self._events.append(event)
        else:
            self._held_events.append(event)

    # -- internals: what the peer sends -------------------------------------------------------------------------

    def _is_peer_stream(self, stream_id: int) -> bool:
        return (stream_id & 1) != (1 if self.role is Role.SERVER else 0)

    def _on_stream_data(self, stream_id: int, data: bytes, end_stream: bool, now: float) -> None:
        if stream_id == self._peer_control:
            self._on_control(data, end_stream)
            return
        request = self._by_stream.get(stream_id)
        if request is not None:
            self._on_request_data(request, data, end_stream, now)
            return
        if not self._is_peer_stream(stream_id) or (
            stream_id not in self._data_streams and not self._peer_streams.is_new(stream_id)
        ):
            return  # a stream whose request or data is over: late bytes are of no interest
        if stream_id & 2:
            self._on_uni_data(stream_id, data, end_stream, now)
        else:
            self._on_new_bidi(stream_id, data, end_stream, now)

    def _on_control(self, data: bytes, end_stream: bool) -> None:
        if end_stream:
            raise ProtocolViolation(_PV, "the peer closed its control stream")
        for msg in self._control_reader.feed(data):
            self._on_control_message(msg)

    def _on_control_message(self, msg: Message) -> None:
        if self.peer_setup is None:
            if not isinstance(msg, Setup):
                raise ProtocolViolation(_PV, f"control stream began with {type(msg).__name__}, not SETUP")
            self._check_setup(msg)
            self.peer_setup = msg
            self._maybe_ready()
        elif isinstance(msg, GoAway):
            if self._goaway_received:
                raise ProtocolViolation(_PV, "a second GOAWAY on the control stream")
            if self.role is Role.SERVER and msg.new_session_uri:
                raise ProtocolViolation(_PV, "a client's GOAWAY carried a URI")
            self._goaway_received = True
            self._emit(GoawayReceived(msg))
        else:
            raise ProtocolViolation(_PV, f"{type(msg).__name__} is not allowed on the control stream")

    def _check_setup(self, msg: Setup) -> None:
        """Setup options a role must not send (§9.1.1-2): AUTHORITY and PATH come only from a raw QUIC client."""
        if self.role is Role.CLIENT or self.webtransport:
            if msg.path is not None:
                raise ProtocolViolation(SessionErrorCode.INVALID_PATH, "the server sent a PATH setup option")
            if msg.authority is not None:
                raise ProtocolViolation(SessionErrorCode.INVALID_AUTHORITY, "the server sent an AUTHORITY option")

    def _on_uni_data(self, stream_id: int, data: bytes, end_stream: bool, now: float) -> None:
        stream = self._data_streams.get(stream_id)
        if stream is None:
            stream = _DataStream(DataStreamParser(self.version, fetch_group_order=self._fetch_order))
            self._data_streams[stream_id] = stream
        try:
            parsed = stream.parser.feed(data, fin=end_stream)
        except ObjectTooLarge as exc:
            logger.info("[%s] stream %d: %s", self.session_id, stream_id, exc)
            self._commands.append(StopSending(stream_id, StreamResetCode.EXCESSIVE_LOAD))
            self._end_data_stream(stream_id, stream, StreamResetCode.EXCESSIVE_LOAD)
            return
        for item in parsed:
            self._on_data_item(stream_id, stream, item)
        if end_stream and stream_id in self._data_streams:
            self._end_data_stream(stream_id, stream, None)

    def _fetch_order(self, request_id: int) -> GroupOrder:
        request = self._requests.get(request_id)
        if request is not None and isinstance(request.message, Fetch):
            return request.message.parameters.group_order or GroupOrder.ASCENDING
        if request is not None:
            fill = request.message.parameters.fill_parameters
            return (fill.group_order if fill is not None else None) or request.group_order
        return GroupOrder.ASCENDING

    def _on_data_item(self, stream_id: int, stream: _DataStream, item: object) -> None:
        if isinstance(item, ControlStreamData):
            if self._peer_control is not None:
                raise ProtocolViolation(_PV, "a second control stream")
            self._data_streams.pop(stream_id, None)
            self._peer_control = stream_id
            self._on_control(item.data, False)
        elif isinstance(item, SubgroupHeader):
            stream.header = item
            self._attach_subgroup(stream_id, stream)
        elif isinstance(item, FetchHeader):
            stream.header = item
            request = self._requests.get(item.request_id)
            if request is None or not request.local:
                self._commands.append(StopSending(stream_id, StreamResetCode.CANCELLED))
                self._data_streams.pop(stream_id, None)
                return
            stream.request = request
            request.streams_seen += 1
            request.streams_live.add(stream_id)
        elif isinstance(item, SubgroupObject):
            header = stream.parser.header
            assert isinstance(header, SubgroupHeader)
            event = ObjectReceived(
                request_id=stream.request.request_id if stream.request else -1,
                group_id=header.group_id,
                subgroup_id=header.subgroup_id if header.subgroup_id is not None else item.object_id,
                object_id=item.object_id,
                publisher_priority=header.publisher_priority,
                status=item.status,
                properties=item.properties,
                payload=item.payload,
                source="subgroup",
            )
            self._deliver(stream, event, len(item.payload))
        elif isinstance(item, FetchObject):
            assert stream.request is not None
            self._emit(
                ObjectReceived(
                    stream.request.request_id,
                    item.group_id,
                    item.subgroup_id,
                    item.object_id,
                    item.publisher_priority,
                    ObjectStatus.NORMAL,
                    item.properties or (),
                    item.payload,
                    "fetch",
                )
            )
        elif isinstance(item, FetchEndOfRange):
            assert stream.request is not None
            self._emit(FetchRangeMissing(stream.request.request_id, item.kind, item.group_id, item.object_id))
        elif isinstance(item, Padding):
            self._data_streams.pop(stream_id, None)
            self._commands.append(StopSending(stream_id, StreamResetCode.CANCELLED))

    def _attach_subgroup(self, stream_id: int, stream: _DataStream) -> None:
        assert isinstance(stream.header, SubgroupHeader)
        request = self._aliases.get(stream.header.track_alias)
        if request is None:
            if self._unknown_alias_streams >= MAX_UNKNOWN_ALIAS_STREAMS:
                self._commands.append(StopSending(stream_id, StreamResetCode.EXCESSIVE_LOAD))
                self._data_streams.pop(stream_id, None)
                return
            self._unknown_alias_streams += 1
            return
        self._bind(stream_id, stream, request)

    def _bind(self, stream_id: int, stream: _DataStream, request: _Request) -> None:
        stream.request = request
        request.streams_seen += 1
        request.streams_live.add(stream_id)
        if request.publish_done is not None and request.streams_seen > request.publish_done.stream_count:
            raise ProtocolViolation(_PV, "more data streams than PUBLISH_DONE counted")

    def _deliver(self, stream: _DataStream, event: ObjectReceived, size: int) -> None:
        if stream.request is not None:
            self._emit(event)
            return
        if self._unknown_alias_bytes + size > MAX_UNKNOWN_ALIAS_BYTES:
            raise ProtocolViolation(_PV, "too many bytes for unknown track aliases")
        stream.held.append(event)
        stream.held_bytes += size
        self._unknown_alias_bytes += size

    def _release_held(self, alias: int, request: _Request) -> None:
        """A Track Alias became known: hand over the streams that were waiting for it."""
        for stream_id, stream in list(self._data_streams.items()):
            header = stream.header
            if stream.request is None and isinstance(header, SubgroupHeader) and header.track_alias == alias:
                self._unknown_alias_streams -= 1
                self._bind(stream_id, stream, request)
                for event in stream.held:
                    assert isinstance(event, ObjectReceived)
                    self._emit(msgspec.structs.replace(event, request_id=request.request_id))
                self._unknown_alias_bytes -= stream.held_bytes
                stream.held.clear()
                stream.held_bytes = 0
                if stream.ended:
                    self._end_data_stream(stream_id, stream, None)

    def _end_data_stream(self, stream_id: int, stream: _DataStream, reset_code: int | None) -> None:
        stream.ended = True
        request = stream.request
        if request is None:
            if isinstance(stream.header, SubgroupHeader) and reset_code is None:
                return  # FIN'd before its alias is known: keep it (bounded) until the alias shows up
            if isinstance(stream.header, SubgroupHeader):
                self._unknown_alias_streams -= 1
                self._unknown_alias_bytes -= stream.held_bytes
            self._data_streams.pop(stream_id, None)
            return
        self._data_streams.pop(stream_id, None)
        request.streams_live.discard(stream_id)
        header = stream.header
        if isinstance(header, SubgroupHeader):
            self._emit(DataStreamEnded(request.request_id, "subgroup", header.group_id, header.subgroup_id, reset_code))
        else:
            self._emit(DataStreamEnded(request.request_id, "fetch", None, None, reset_code))
            if isinstance(request.message, Fetch):  # one fetch, one stream: the fetch is over
                self._close_send(request)
                self._finish(request)
                return
        self._maybe_end_subscription(request)

    def _maybe_end_subscription(self, request: _Request) -> None:
        done = request.publish_done
        if done is not None and not request.streams_live and request.streams_seen >= done.stream_count:
            self._end_subscription(request)

    def _end_subscription(self, request: _Request) -> None:
        assert request.publish_done is not None
        request.drain_deadline = None
        for stream_id in list(request.streams_live):
            self._commands.append(StopSending(stream_id, StreamResetCode.CANCELLED))
            self._data_streams.pop(stream_id, None)
        self._emit(SubscriptionEnded(request.request_id, request.publish_done))
        self._finish(request)

    def _on_new_bidi(self, stream_id: int, data: bytes, end_stream: bool, now: float) -> None:
        reader = MessageReader(self.version)
        reader.push(data)
        msg = reader.next_message()
        if msg is None:
            if end_stream:
                raise ProtocolViolation(_PV, "request stream ended before its first message")
            # Not a whole message yet: keep the bytes in a pending request shell.
            self._pending_bidi(stream_id, reader)
            return
        self._start_peer_request(stream_id, reader, msg, end_stream, now)

    def _pending_bidi(self, stream_id: int, reader: MessageReader) -> None:
        placeholder = _Request(-1, Subscribe(-1, (), b""), stream_id, local=False, reader=reader)
        self._by_stream[stream_id] = placeholder

    def _start_peer_request(
        self, stream_id: int, reader: MessageReader, msg: Message, end_stream: bool, now: float
    ) -> None:
        if not isinstance(msg, _REQUEST_TYPES):
            raise ProtocolViolation(_PV, f"request stream began with {type(msg).__name__}")
        if self._state is not _State.READY and len(self._held_events) >= MAX_REQUESTS_BEFORE_SETUP:
            raise ProtocolViolation(_PV, "too many requests before SETUP")
        self._peer_ids.use(msg.request_id)
        request = _Request(msg.request_id, msg, stream_id, local=False, reader=reader)
        _apply_request_parameters(request, msg)
        self._requests[msg.request_id] = request
        self._by_stream[stream_id] = request
        if isinstance(msg, Publish):
            self._register_alias(msg.track_alias, request)
        self._emit(RequestReceived(msg.request_id, msg))
        # Anything after the first message in this same chunk.
        self._on_request_data(request, b"", end_stream, now)

    def _check_alias(self, alias: int, request: _Request) -> None:
        holder = self._aliases.get(alias)
        if holder is not None and holder is not request:
            raise ProtocolViolation(SessionErrorCode.DUPLICATE_TRACK_ALIAS, f"track alias {alias} is in use")

    def _register_alias(self, alias: int, request: _Request) -> None:
        self._check_alias(alias, request)
        request.track_alias = alias
        self._aliases[alias] = request
        self._release_held(alias, request)

    def _on_request_data(self, request: _Request, data: bytes, end_stream: bool, now: float) -> None:
        reader = request.reader
        assert reader is not None
        if request.request_id == -1:  # a peer stream whose first message is still incomplete
            reader.push(data)
            msg = reader.next_message()
            if msg is None:
                if end_stream:
                    raise ProtocolViolation(_PV, "request stream ended before its first message")
                return
            del self._by_stream[request.stream]
            self._start_peer_request(request.stream, reader, msg, end_stream, now)
            return
        try:
            reader.push(data)
            while (msg := reader.next_message()) is not None:
                if request.local:
                    self._on_response(request, msg, now)
                else:
                    self._on_requester_message(request, msg, now)
                if request.phase is _Phase.DONE:
                    return
        except InvalidFilter as exc:
            self._on_invalid_filter(request, exc)
            return
        if end_stream:
            if reader.buffered:
                raise ProtocolViolation(_PV, "request stream ended in the middle of a message")
            self._on_request_fin(request)

    def _on_invalid_filter(self, request: _Request, exc: InvalidFilter) -> None:
        """A request whose range filter overflows: REQUEST_ERROR INVALID_FILTER (§8.6), not a session error."""
        if not request.local and request.phase is _Phase.PENDING:
            self.reject(request.request_id, exc.code, exc.reason)
        elif request.peer_updates or not request.local:
            self._send(request.stream, encode_message(RequestError(exc.code, 0, exc.reason), self.version))

    def _on_request_fin(self, request: _Request) -> None:
        """The peer FIN'd its side of a request stream (§6.4.2.2)."""
        if request.local:
            if request.phase is _Phase.PENDING:
                self._emit(RequestFailed(request.request_id, None, 0, "stream closed before the response"))
                self._finish(request)
            elif isinstance(request.message, SubscribeNamespace):
                for suffix in sorted(request.namespaces):
                    self._emit(NamespaceWithdrawn(request.request_id, request.message.namespace_prefix + suffix))
                request.namespaces.clear()
                self._finish(request)
            elif request.is_subscription and not request.we_publish and request.publish_done is None:
                self._emit(RequestFailed(request.request_id, None, 0, "stream closed without PUBLISH_DONE"))
                self._finish(request)
            elif not request.is_subscription and not isinstance(request.message, Fetch):
                self._close_send(request)
                self._finish(request)
        # The peer as requester may FIN right after its request (§6.4.2.2): nothing to do.

    def _on_response(self, request: _Request, msg: Message, now: float) -> None:
        """A message from the peer on a request we sent."""
        if isinstance(msg, GoAway):
            if request.goaway_seen:
                raise ProtocolViolation(_PV, "a second GOAWAY on one request stream")
            request.goaway_seen = True
            self._emit(GoawayReceived(msg, request.request_id))
            return
        if request.phase is _Phase.PENDING:
            self._on_first_response(request, msg)
            return
        if isinstance(msg, (RequestOk, RequestError)) and request.our_updates:
            self._on_update_answer(request, msg)
            return
        kind = request.message
        if isinstance(kind, Subscribe) and isinstance(msg, PublishDone):
            self._on_publish_done(request, msg, now)
        elif isinstance(kind, Subscribe) and isinstance(msg, PublishStateNotify):
            self._emit(PublishStateNotified(request.request_id, msg.parameters))
        elif isinstance(kind, SubscribeNamespace) and isinstance(msg, Namespace):
            if msg.namespace_suffix in request.namespaces:
                raise ProtocolViolation(_PV, "NAMESPACE for a namespace already active")
            request.namespaces.add(msg.namespace_suffix)
            self._emit(NamespacePublished(request.request_id, kind.namespace_prefix + msg.namespace_suffix))
        elif isinstance(kind, SubscribeNamespace) and isinstance(msg, NamespaceDone):
            if msg.namespace_suffix not in request.namespaces:
                raise ProtocolViolation(_PV, "NAMESPACE_DONE before its NAMESPACE")
            request.namespaces.discard(msg.namespace_suffix)
            self._emit(NamespaceWithdrawn(request.request_id, kind.namespace_prefix + msg.namespace_suffix))
        elif isinstance(kind, SubscribeTracks) and isinstance(msg, (PublishSkipped, PublishBlocked)):
            self._emit(
                PublishSkippedReceived(request.request_id, kind.namespace_prefix + msg.namespace_suffix, msg.name)
            )
        elif isinstance(kind, Publish) and isinstance(msg, RequestUpdate):
            self._on_peer_update(request, msg)
        else:
            raise ProtocolViolation(_PV, f"unexpected {type(msg).__name__} on a {type(kind).__name__} stream")

    def _on_first_response(self, request: _Request, msg: Message) -> None:
        kind = request.message
        if isinstance(msg, RequestError):
            self._emit(RequestFailed(request.request_id, msg, msg.error_code, msg.reason))
            self._reset_writers(request, StreamResetCode.CANCELLED)
            self._close_send(request)
            self._finish(request)
            return
        expected: type = (
            SubscribeOk if isinstance(kind, Subscribe) else FetchOk if isinstance(kind, Fetch) else RequestOk
        )
        if not isinstance(msg, expected) or not isinstance(msg, (SubscribeOk, FetchOk, RequestOk)):
            raise ProtocolViolation(_PV, f"{type(msg).__name__} answered {type(kind).__name__}")
        if isinstance(msg, RequestOk) and msg.properties and not isinstance(kind, TrackStatus):
            raise ProtocolViolation(_PV, "Track Properties in a REQUEST_OK that is not TRACK_STATUS_OK")
        request.phase = _Phase.ESTABLISHED
        if isinstance(msg, SubscribeOk):
            request.publisher_priority = _default_priority(msg.properties)
            self._check_alias(msg.track_alias, request)
        self._emit(RequestAccepted(request.request_id, msg))
        if isinstance(msg, SubscribeOk):
            self._register_alias(msg.track_alias, request)  # after the event: held objects follow it
        if isinstance(kind, TrackStatus):
            self._close_send(request)
            self._finish(request)

    def _on_publish_done(self, request: _Request, msg: PublishDone, now: float) -> None:
        if request.publish_done is not None:
            raise ProtocolViolation(_PV, "a second PUBLISH_DONE")
        if request.streams_seen > msg.stream_count:
            raise ProtocolViolation(_PV, "more data streams than PUBLISH_DONE counted")
        request.publish_done = msg
        timeouts = [
            t
            for t in (
                request.message.parameters.subgroup_delivery_timeout,
                request.message.parameters.object_delivery_timeout,
            )
            if t
        ]
        request.drain_deadline = now + (max(timeouts) / 1000 if timeouts else PUBLISH_DONE_DRAIN_SECONDS)
        self._maybe_end_subscription(request)

    def _on_requester_message(self, request: _Request, msg: Message, now: float) -> None:
        """A message from the peer on a request it sent us (or on its PUBLISH: also PUBLISH_DONE etc.)."""
        if isinstance(msg, RequestUpdate):
            self._on_peer_update(request, msg)
        elif isinstance(msg, (RequestOk, RequestError)) and request.our_updates:
            # The answer to our REQUEST_UPDATE on the peer's PUBLISH (we are its subscriber, §9.5).
            self._on_update_answer(request, msg)
        elif isinstance(request.message, Publish) and isinstance(msg, PublishDone):
            # The peer published to us and is done: same draining as for our SUBSCRIBE.
            self._on_publish_done(request, msg, now)
        elif isinstance(request.message, Publish) and isinstance(msg, PublishStateNotify):
            self._emit(PublishStateNotified(request.request_id, msg.parameters))
        else:
            raise ProtocolViolation(
                _PV, f"unexpected {type(msg).__name__} from the requester of {type(request.message).__name__}"
            )

    def _on_update_answer(self, request: _Request, msg: RequestOk | RequestError) -> None:
        """REQUEST_OK / REQUEST_ERROR for the oldest REQUEST_UPDATE we sent on this request (answers are in order)."""
        update_id = request.our_updates.popleft()
        self._updates.pop(update_id, None)
        ok = msg if isinstance(msg, RequestOk) else None
        error = msg if isinstance(msg, RequestError) else None
        self._emit(UpdateAnswered(request.request_id, update_id, ok, error))

    def _on_peer_update(self, request: _Request, msg: RequestUpdate) -> None:
        self._peer_ids.use(msg.request_id)
        if request.we_publish:
            # Priority for streams opened from now (the driver moves those already written), FORWARD at once.
            _apply_request_parameters(request, msg)
        request.peer_updates.add(msg.request_id)
        self._updates[msg.request_id] = request
        self._emit(RequestUpdated(request.request_id, msg.request_id, msg.parameters))

    def _on_reset(self, stream_id: int, code: int, now: float) -> None:
        if stream_id == self._peer_control:
            raise ProtocolViolation(_PV, "the peer reset its control stream")
        stream = self._data_streams.get(stream_id)
        if stream is not None:
            self._end_data_stream(stream_id, stream, code)
            return
        request = self._by_stream.get(stream_id)
        if request is None:
            return
        if request.request_id == -1:
            self._by_stream.pop(stream_id, None)
            return
        if request.local:
            if request.phase is _Phase.PENDING or not request.we_publish:
                self._emit(RequestFailed(request.request_id, None, code, "the peer reset the request stream"))
        elif isinstance(request.message, SubscribeNamespace):
            pass
        else:
            self._emit(RequestCancelled(request.request_id, code))
        if isinstance(request.message, SubscribeNamespace) and request.local:
            for suffix in sorted(request.namespaces):
                self._emit(NamespaceWithdrawn(request.request_id, request.message.namespace_prefix + suffix))
        self._reset_writers(request, StreamResetCode.CANCELLED)
        if not request.send_closed:
            self._commands.append(ResetStream(stream_id, StreamResetCode.CANCELLED))
            request.send_closed = True
        self._finish(request)

    def _on_stop_sending(self, stream_id: int, code: int) -> None:
        writer = self._writers.pop(stream_id, None)
        if writer is not None:
            writer.request.open_streams.discard(stream_id)
            self._commands.append(ResetStream(stream_id, code))
            return
        request = self._by_stream.get(stream_id)
        if request is None or request.request_id == -1:
            return
        if not request.send_closed:
            self._commands.append(ResetStream(stream_id, code))
            request.send_closed = True
        if not request.local or request.we_publish:
            self._emit(RequestCancelled(request.request_id, code))
        else:
            self._emit(RequestFailed(request.request_id, None, code, "the peer stopped the request stream"))
        self._reset_writers(request, StreamResetCode.CANCELLED)
        self._commands.append(StopSending(stream_id, StreamResetCode.CANCELLED))
        self._finish(request)

    def _on_datagram(self, data: bytes) -> None:
        dgram = decode_datagram(data, self.version)
        if isinstance(dgram, Padding):
            return
        request = self._aliases.get(dgram.track_alias)
        if request is None:
            return  # unknown alias: a datagram may be dropped (§3.1.3.1)
        self._emit(
            ObjectReceived(
                request.request_id,
                dgram.group_id,
                None,
                dgram.object_id,
                dgram.publisher_priority,
                dgram.status if dgram.status is not None else ObjectStatus.NORMAL,
                dgram.properties or (),
                dgram.payload,
                "datagram",
            )
        )


def _default_priority(properties: Properties) -> int:
    """DEFAULT_PUBLISHER_PRIORITY (track property 0x0E), 128 when absent (§10)."""
    for kind, value in properties:
        if kind == 0x0E and isinstance(value, int):
            return value
    return 128


def _apply_request_parameters(request: _Request, msg: RequestMessage | RequestUpdate) -> None:
    """The parameters that shape how we serve a request; absent ones leave the current value (sticky, §9.5)."""
    params = msg.parameters
    if params.subscriber_priority is not None:
        request.subscriber_priority = params.subscriber_priority
    if params.group_order is not None and not isinstance(msg, RequestUpdate):  # not updatable (§9.20.9)
        request.group_order = params.group_order
    if params.forward is not None:
        request.forward = params.forward == 1
