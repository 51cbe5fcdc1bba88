"""`MoqSession`: a sans-IO `Session` driven over a `TransportConnection` by asyncio, with a small API on top.

The driver is the one place where the session's commands meet the network:

- transport events go into the session synchronously (the transport's event handler), and the commands and
  events the session produces are carried out / dispatched at once (`_flush`);
- streams the session opens are named by handles (`moq.session.commands`); a handle maps to the real stream id
  once the transport grants the stream (it may wait for the peer's stream credit), and whatever the session
  writes to a handle before then is kept, in order, until it is open;
- timers: the session says when it next needs `handle_timer`, the driver schedules it on the loop.

On top, the API a person uses: `subscribe()` (an async iterator of objects), `fetch()`, `publish_namespace()`,
`subscribe_namespace()`, and publishing `Track`s (model) that the session serves to SUBSCRIBE, FETCH and its
own PUBLISH. A relay replaces the default request handling with its own (`on_request`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable

import msgspec

from moq.errors import RequestRejected
from moq.model import (
    CachedObject,
    GroupsDropped,
    SubgroupEnded,
    SubgroupReset,
    Track,
    TrackConsumer,
    TrackEnded,
    TrackError,
)
from moq.session.commands import (
    CloseSession,
    OpenStream,
    ResetStream,
    SendDatagram,
    SendStreamData,
    StopSending,
)
from moq.session.events import (
    DataStreamEnded,
    Event,
    GoawayReceived,
    NamespacePublished,
    NamespaceWithdrawn,
    ObjectReceived,
    RequestAccepted,
    RequestCancelled,
    RequestFailed,
    RequestReceived,
    RequestUpdated,
    SessionTerminated,
    SetupCompleted,
    SubscriptionEnded,
    UpdateAnswered,
)
from moq.session.session import Role, Session, SessionError
from moq.transport.base import TransportConnection
from moq.transport.errors import SessionClosedError, StreamStateError
from moq.transport.events import (
    DatagramReceived,
    SessionClosed,
    StopSendingReceived,
    StreamDataReceived,
    StreamReset,
    TransportEvent,
)
from moq.wire.codes import PublishDoneCode, RequestErrorCode, SessionErrorCode, StreamResetCode
from moq.wire.messages import (
    Fetch,
    FetchOk,
    FetchType,
    GoAway,
    Publish,
    PublishDone,
    RequestOk,
    Setup,
    Subscribe,
    SubscribeOk,
)
from moq.wire.params import FillParameters, LocationFilter, LocationFilterType, Parameters
from moq.wire.primitives import Location, TrackNamespace
from moq.wire.version import Version

logger = logging.getLogger(__name__)

#: Objects a `Subscription` holds for an application that has not read them yet; past this the oldest are dropped
#: (and counted in `Subscription.dropped`), so an application that stops reading cannot grow memory without bound.
MAX_SUBSCRIPTION_BUFFER = 4096
#: Streams the session asked to open that still wait for the peer's stream credit; past this the session is
#: closed with INTERNAL_ERROR (a peer that never grants credit must not make us hoard data).
MAX_PENDING_OPENS = 1024
#: How long a data stream of ours may wait for the peer's stream credit (or for our cap on streams in flight) while
#: a newer group of its subscription is ready, before it is given up: it never opens, its group is dropped
#: (counted in groups_dropped), and the subscriber gets the newer groups. A subscriber that takes streams more slowly
#: than the track makes groups (audio: 50 one-object groups a second; a browser whose page is starved, a long RTT
#: with MAX_INFLIGHT_UNI_STREAMS in flight) would otherwise get every group, oldest first, later and later: the byte
#: backlog of such a track (a few KB a second) never reaches MAX_SUBSCRIPTION_BACKLOG_BYTES.
MAX_STREAM_OPEN_WAIT_SECONDS = 0.5
#: Our streams whose handle -> stream id mapping the session keeps before it forgets those of streams that are over
#: (sent, acknowledged, forgotten by the transport): a long-lived relay session opens a stream per group.
MAX_STREAM_MAP = 1024
#: How long `connect()` / `serve()` wait for the peer's SETUP.
SETUP_TIMEOUT = 10.0

IMPLEMENTATION = "moqt-toolkit/0.1"
MAX_ID = (1 << 64) - 1
#: Subscriptions we serve whose join point we remember for a draft-18 joining FETCH (oldest forgotten first).
MAX_JOINABLE_SUBSCRIPTIONS = 1024
#: Bytes one subscription may have waiting to be sent (our queues + aioquic's) before its writer stops taking
#: objects and waits for the peer. Small, so a congested subscriber's backlog is a few objects, not seconds; per
#: subscription, so one track's backlog never holds up another's (the scheduler orders them by priority).
MAX_SUBSCRIPTION_BACKLOG_BYTES = 256 * 1024
#: How many groups a subscriber may fall behind the newest before its older groups are dropped (reset) and it
#: goes on from the newest (once stalled or behind for long): a slow subscriber stays within a group or two of
#: live (bench/, a 0.5 Mbit/s link on a 1 Mbit/s track: 1.6 groups behind at the median, 2.9 at most).
MAX_SUBSCRIBER_LAG_GROUPS = 1
#: How long a peer must take nothing (the backlog not draining) before it counts as stalled: a burst of cached
#: objects that is draining must not cost a healthy subscriber its groups.
MAX_SUBSCRIBER_STALL_SECONDS = 0.5
#: The shortest period at which a writer checks its subgroups against the subgroup delivery timeout.
MIN_EXPIRY_CHECK_SECONDS = 0.01
#: How long a subscriber may stay MAX_SUBSCRIBER_LAG_GROUPS or more behind while still draining (a link slower than
#: the track) before it skips ahead; long enough that a healthy subscriber draining a burst of cached groups never
#: does (bench/: a 0.5 Mbit/s link on a 1 Mbit/s track drifted 5 groups behind without this).
MAX_SUBSCRIBER_BEHIND_SECONDS = 2.0
#: While waiting for a slow peer, how often a writer checks whether it has fallen too far behind.
LAG_CHECK_SECONDS = 0.05

RequestHandler = Callable[["MoqSession", RequestReceived], Awaitable[None]]


def namespace(value: str | TrackNamespace) -> TrackNamespace:
    """A namespace from 'a/b/c' (fields split on '/') or from a tuple of byte fields."""
    if isinstance(value, str):
        return tuple(part.encode() for part in value.split("/") if part)
    return value


def track_name(value: str | bytes) -> bytes:
    return value.encode() if isinstance(value, str) else value


class Subscription:
    """One subscription we made: iterate it for objects (`async for obj in sub`) until the publisher ends it."""

    def __init__(
        self, session: MoqSession, request_id: int, ns: TrackNamespace, name: bytes, track: Track | None = None
    ) -> None:
        self.session = session
        self.request_id = request_id
        self.namespace = ns
        self.name = name
        #: When set, objects go into this track's cache (a relay's upstream) instead of this iterator.
        self.track = track
        #: When set, called at the end instead of ending `track` (a track fed by several publishers ends with
        #: the last of them).
        self.on_end: Callable[[Subscription, int, str], None] | None = None
        self.ok: SubscribeOk | None = None
        self.done: PublishDone | None = None
        self.dropped = 0
        self._objects: deque[ObjectReceived] = deque()
        self._ended = False
        self._joins_pending = 0  # draft-18 joining FETCHes still delivering into this subscription
        self._wake = asyncio.Event()

    def _push(self, obj: ObjectReceived) -> None:
        if self.track is not None:
            try:
                self.track.append(
                    CachedObject(
                        obj.group_id,
                        obj.subgroup_id,
                        obj.object_id,
                        obj.payload,
                        obj.publisher_priority,
                        obj.status,
                        obj.properties,
                    )
                )
            except TrackError as exc:  # e.g. a duplicate from a second publisher: keep the first (§7)
                logger.debug(
                    "[%s] object %d/%d not cached: %s",
                    self.session.session.session_id,
                    obj.group_id,
                    obj.object_id,
                    exc,
                )
            return
        if len(self._objects) >= MAX_SUBSCRIPTION_BUFFER:
            self._objects.popleft()
            self.dropped += 1
        self._objects.append(obj)
        self._wake.set()

    def _end(self, done: PublishDone | None, status: int = PublishDoneCode.GOING_AWAY, reason: str = "") -> None:
        self.done = done
        self._ended = True
        self._wake.set()
        if done is not None:
            status, reason = done.status_code, done.reason
        reason = reason or "the publisher went away"
        if self.on_end is not None:
            self.on_end(self, status, reason)
        elif self.track is not None and self.ok is not None:
            # Only an established subscription ends the track it fills. A refused one never filled it, and the
            # track may be shared: a relay subscribes to every publisher of a matching namespace (draft-22 §7) into
            # one cache, and one of them refusing must not end what another one feeds.
            self.track.end_track(status, reason)

    async def next(self) -> ObjectReceived | None:
        """The next object, or None once the subscription has ended and everything was read."""
        while not self._objects:
            if self._ended and not self._joins_pending:
                return None
            self._wake.clear()
            await self._wake.wait()
        return self._objects.popleft()

    def __aiter__(self) -> AsyncIterator[ObjectReceived]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[ObjectReceived]:
        while (obj := await self.next()) is not None:
            yield obj

    def cancel(self) -> None:
        """Unsubscribe: cancel the request stream (§6.4.2.3)."""
        if not self._ended:
            with contextlib.suppress(SessionError):
                self.session.session.cancel(self.request_id)
            self._end(None)
            self.session._flush()


class NamespaceWatch:
    """SUBSCRIBE_NAMESPACE: iterate (`added`, namespace) pairs as the peer announces and withdraws namespaces."""

    def __init__(self, session: MoqSession, request_id: int) -> None:
        self.session = session
        self.request_id = request_id
        self.active: set[TrackNamespace] = set()
        self._changes: asyncio.Queue[tuple[bool, TrackNamespace] | None] = asyncio.Queue()

    def __aiter__(self) -> AsyncIterator[tuple[bool, TrackNamespace]]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[tuple[bool, TrackNamespace]]:
        while (change := await self._changes.get()) is not None:
            yield change

    def cancel(self) -> None:
        with contextlib.suppress(SessionError):
            self.session.session.cancel(self.request_id)
        self._changes.put_nowait(None)
        self.session._flush()


class _ServedStreams:
    """The data streams of one subscription we serve that may still hold bytes not yet sent: its open subgroup
    streams, those it FIN'd whose bytes are not all acknowledged yet, and its fill stream. Its writer keeps the
    first two; a REQUEST_UPDATE of the subscriber priority re-prioritises all three (draft-22 §5.1)."""

    __slots__ = ("fills", "finished", "open")

    def __init__(self) -> None:
        self.open: dict[tuple[int, int], int] = {}  # (group, subgroup) -> handle
        self.finished: dict[int, tuple[int, int]] = {}  # handle -> (group, subgroup)
        self.fills: set[int] = set()

    def handles(self) -> list[int]:
        return [*self.open.values(), *self.finished, *self.fills]


class MoqSession:
    """A MOQT session over a live transport connection (see the module docstring)."""

    def __init__(self, conn: TransportConnection, *, setup: Setup | None = None) -> None:
        role = Role.CLIENT if conn.is_client else Role.SERVER
        if setup is None:
            raw_client = conn.is_client and conn.transport_kind == "quic"
            setup = Setup.create(
                path=(conn.path or "/") if raw_client else None,
                authority=conn.authority if raw_client else None,
                implementation=IMPLEMENTATION,
            )
        self.conn = conn
        self.version: Version = conn.version
        self.session = Session(
            role,
            conn.version,
            setup=setup,
            webtransport=conn.transport_kind == "webtransport",
            session_id=str(conn.connection_id),
        )
        self.tracks: dict[tuple[TrackNamespace, bytes], Track] = {}
        #: Objects this session has written to subscriptions (streams and datagrams), for tests and metrics.
        self.objects_sent = 0
        #: Groups skipped because a subscriber fell behind, and objects dropped by a delivery timeout.
        self.groups_dropped = 0
        self.objects_expired = 0
        self.on_request: RequestHandler | None = None
        #: Told when the peer cancels one of its requests (a relay withdraws namespaces, drops subscribers).
        self.on_cancel: Callable[[MoqSession, RequestCancelled], None] | None = None
        #: Told when the peer has updated one of its requests (REQUEST_UPDATE), once the update is applied to what
        #: we serve and answered (e.g. a relay might pass FORWARD=1 on to a paused upstream).
        self.on_update: Callable[[MoqSession, RequestUpdated], None] | None = None
        self.peer_setup: Setup | None = None
        self.goaway: GoAway | None = None
        #: Set when the peer sends GOAWAY: start no new requests here, move to `goaway.new_session_uri` (or
        #: reconnect to the same URL) and close this session (§6.6.1).
        self.goaway_received = asyncio.Event()
        self.closed = asyncio.Event()
        self.close_reason: tuple[int, str] | None = None
        self._ready = asyncio.Event()
        self._stream_ids: dict[int, int] = {}  # our handle -> real stream id (our streams only)
        self._handles: dict[int, int] = {}  # real stream id -> our handle
        self._prune_at = MAX_STREAM_MAP
        self._pending: dict[int, list[SendStreamData | ResetStream | StopSending]] = {}
        self._opening: dict[int, tuple[float, asyncio.Task[None]]] = {}  # pending handle -> (since, its opener)
        self._answers: dict[int, asyncio.Future[Event]] = {}
        self._subscriptions: dict[int, Subscription] = {}
        self._watches: dict[int, NamespaceWatch] = {}
        self._fetches: dict[int, list[ObjectReceived]] = {}
        self._serving: dict[int, asyncio.Task[None]] = {}
        self._joining: dict[int, tuple[Track, Location | None]] = {}  # subscriptions we serve: track, join point
        self._joins: dict[int, Subscription] = {}  # our draft-18 joining FETCHes -> the subscription they fill
        self._resumers: dict[int, Callable[[], None]] = {}  # subscriptions we serve -> replay after a pause
        self._served: dict[int, _ServedStreams] = {}  # subscriptions we serve -> their data streams
        self._priority_on_open: dict[int, int] = {}  # stream waiting to open -> subscriber priority updated meanwhile
        self._tasks: set[asyncio.Task[None]] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._loop = asyncio.get_running_loop()

    # -- life cycle ---------------------------------------------------------------------------------------------

    async def start(self, timeout: float = SETUP_TIMEOUT) -> MoqSession:
        """Send SETUP and wait for the peer's."""
        self.conn.set_event_handler(self._on_transport_event)
        self.session.initiate()
        self._flush()
        try:
            await asyncio.wait_for(self._wait_ready(), timeout)
        except TimeoutError:
            self.close(SessionErrorCode.CONTROL_MESSAGE_TIMEOUT, "no SETUP from the peer")
            raise
        return self

    async def _wait_ready(self) -> None:
        ready = asyncio.ensure_future(self._ready.wait())
        closed = asyncio.ensure_future(self.closed.wait())
        await asyncio.wait({ready, closed}, return_when=asyncio.FIRST_COMPLETED)
        ready.cancel()
        closed.cancel()
        if not self._ready.is_set():
            code, reason = self.close_reason or (SessionErrorCode.INTERNAL_ERROR, "closed")
            raise ConnectionError(f"session closed before SETUP completed: {reason} (code 0x{code:x})")

    @property
    def goaway_sent(self) -> bool:
        return self.session.goaway_sent

    def close(self, code: int = SessionErrorCode.NO_ERROR, reason: str = "") -> None:
        """Close the session (and its transport)."""
        self.session.close(code, reason)
        self._flush()

    async def wait_closed(self) -> None:
        await self.closed.wait()

    async def __aenter__(self) -> MoqSession:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.conn.wait_closed(), 2.0)

    # -- the API: subscribing -----------------------------------------------------------------------------------

    async def subscribe(
        self,
        ns: str | TrackNamespace,
        name: str | bytes,
        parameters: Parameters | None = None,
        *,
        into: Track | None = None,
        fill_groups: int | None = None,
    ) -> Subscription:
        """SUBSCRIBE and wait for SUBSCRIBE_OK; raises `RequestRejected` on REQUEST_ERROR.

        With `into`, the objects are appended to that track (and its end follows PUBLISH_DONE) instead of being
        iterated: this is how a relay fills its cache from upstream.

        With `fill_groups=n`, the subscription starts at the next object and the past is fetched too, from the
        start of the group n-1 before the current one (1 = the current group): a fill (FILL_PARAMETERS) from
        draft-20 on, a relative joining FETCH in draft-18. Those objects arrive with `source == "fetch"`."""
        ns, name_b = namespace(ns), track_name(name)
        params = parameters or Parameters()
        if fill_groups is not None:
            if fill_groups < 1:
                raise ValueError("fill_groups counts groups back from the current one: at least 1")
            changes: dict[str, object] = {"location_filter": LocationFilter(LocationFilterType.NEXT_OBJECT)}
            if self.version.family >= 20:
                fill_filter = LocationFilter(LocationFilterType.RELATIVE_START_GROUP, fill_groups)
                changes["fill_parameters"] = FillParameters(location_filter=fill_filter)
            params = msgspec.structs.replace(params, **changes)
        rid = self.session.subscribe(ns, name_b, params)
        sub = Subscription(self, rid, ns, name_b, into)
        self._subscriptions[rid] = sub
        answer = await self._answer(rid)
        assert isinstance(answer, RequestAccepted) and isinstance(answer.message, SubscribeOk)
        sub.ok = answer.message
        if fill_groups is not None and self.version.family == 18 and sub.ok.parameters.largest_object is not None:
            fetch_id = self.session.joining_fetch(rid, fill_groups - 1, relative=True)
            self._joins[fetch_id] = sub
            sub._joins_pending += 1
            self._future(fetch_id)
            self._flush()
        return sub

    async def fetch(
        self,
        ns: str | TrackNamespace,
        name: str | bytes,
        start: Location,
        end: Location | None = None,
        parameters: Parameters | None = None,
    ) -> list[ObjectReceived]:
        """A standalone FETCH of [start, end] (end None: to the largest object); returns the objects received."""
        ns, name_b = namespace(ns), track_name(name)
        params = parameters or Parameters()
        if self.version.family == 18:
            # Draft-18 §"Standalone Fetch": End Location is the end plus 1; Object 0 means the whole end group.
            wire_end = Location(MAX_ID, 0) if end is None else Location(end.group, end.object + 1)
            rid = self.session.fetch(ns, name_b, params, start=start, end=wire_end)
        else:
            if end is None:
                flt = LocationFilter(LocationFilterType.ABSOLUTE_START, start.group, start.object)
            else:
                flt = LocationFilter(
                    LocationFilterType.ABSOLUTE_RANGE_OBJECT, start.group, start.object, end.group, end.object
                )
            rid = self.session.fetch(ns, name_b, msgspec.structs.replace(params, location_filter=flt))
        self._fetches[rid] = []
        done = self._future(rid, "fetch-done")
        answer = await self._answer(rid)
        assert isinstance(answer, RequestAccepted) and isinstance(answer.message, FetchOk)
        await done
        return self._fetches.pop(rid)

    async def update(self, request_id: int, parameters: Parameters) -> RequestOk:
        """REQUEST_UPDATE one of our requests (e.g. a subscription's SUBSCRIBER_PRIORITY or FORWARD) and wait for
        the answer; raises `RequestRejected` on REQUEST_ERROR (§9.5)."""
        update_id = self.session.request_update(request_id, parameters)
        answer = await self._answer(update_id)
        assert isinstance(answer, UpdateAnswered)
        if answer.ok is None:
            error = answer.error
            raise RequestRejected(error.error_code if error else 0, error.reason if error else "update refused")
        return answer.ok

    async def track_status(self, ns: str | TrackNamespace, name: str | bytes) -> RequestOk:
        """TRACK_STATUS: the track's state (LARGEST_OBJECT, properties) without subscribing (§9.13)."""
        rid = self.session.track_status(namespace(ns), track_name(name))
        answer = await self._answer(rid)
        assert isinstance(answer, RequestAccepted) and isinstance(answer.message, RequestOk)
        return answer.message

    def accept_publish(self, rid: int, msg: Publish, track: Track, parameters: Parameters | None = None) -> None:
        """Accept the peer's PUBLISH (REQUEST_OK) and append its objects to `track`."""
        sub = Subscription(self, rid, msg.namespace, msg.name, track)
        self._subscriptions[rid] = sub
        self.session.accept(rid, parameters or Parameters())

    async def subscribe_tracks(self, prefix: str | TrackNamespace) -> int:
        """SUBSCRIBE_TRACKS (draft-18+ §9.18) and wait for REQUEST_OK; returns its request id. The peer then
        PUBLISHes matching tracks to us: they arrive at `on_request` as PUBLISH requests."""
        rid = self.session.subscribe_tracks(namespace(prefix))
        await self._answer(rid)
        return rid

    def send_goaway(self, new_session_uri: str = "", timeout_ms: int = 0) -> None:
        """GOAWAY on the control stream (§9.2): the peer should move to `new_session_uri` and leave."""
        self.session.goaway(new_session_uri, timeout_ms)
        self._flush()

    async def served(self, request_id: int) -> None:
        """Until we have finished serving subscription `request_id` (its PUBLISH_DONE is written)."""
        task = self._serving.get(request_id)
        if task is not None:
            await asyncio.shield(task)

    async def drain(self, timeout: float = 5.0) -> None:
        """Let what this session still has to send reach the peer: the subscriptions it serves finish (their
        last objects and PUBLISH_DONE are written) and every byte is acknowledged, or `timeout` runs out.
        Closing drops whatever is unacknowledged, so a publisher drains before it closes."""
        deadline = self._loop.time() + timeout
        serving = list(self._serving.values())
        if serving:
            await asyncio.wait(serving, timeout=timeout)
        remaining = deadline - self._loop.time()
        if remaining > 0 and not self.closed.is_set():
            with contextlib.suppress(TimeoutError, SessionClosedError):
                await asyncio.wait_for(self.conn.wait_writable(0), remaining)

    async def subscribe_namespace(self, prefix: str | TrackNamespace) -> NamespaceWatch:
        """SUBSCRIBE_NAMESPACE and wait for REQUEST_OK; iterate the result for announcements."""
        rid = self.session.subscribe_namespace(namespace(prefix))
        watch = NamespaceWatch(self, rid)
        self._watches[rid] = watch
        await self._answer(rid)
        return watch

    # -- the API: publishing ------------------------------------------------------------------------------------

    def add_track(self, track: Track) -> Track:
        """Serve `track` to the peer's SUBSCRIBE and FETCH (the default request handling)."""
        self.tracks[(track.namespace, track.name)] = track
        return track

    async def publish_namespace(self, ns: str | TrackNamespace) -> int:
        """PUBLISH_NAMESPACE and wait for REQUEST_OK; returns the request id (`withdraw()` it later)."""
        rid = self.session.publish_namespace(namespace(ns))
        await self._answer(rid)
        return rid

    def withdraw(self, request_id: int) -> None:
        """Withdraw a PUBLISH_NAMESPACE (cancel its request stream)."""
        with contextlib.suppress(SessionError):
            self.session.cancel(request_id)
        self._flush()

    async def publish(self, track: Track, parameters: Parameters | None = None) -> int:
        """PUBLISH `track` (§9.8) and stream its objects; returns once PUBLISH_OK arrives."""
        rid = self.session.publish(track.namespace, track.name, parameters or Parameters(), track.properties)
        self.serve_track(rid, track, track.consumer())
        await self._answer(rid)
        return rid

    # -- default handling of the peer's requests ----------------------------------------------------------------

    async def handle_request(self, event: RequestReceived) -> None:
        """The default handling of a peer's request: serve our tracks (SUBSCRIBE, FETCH, joining FETCH), accept
        namespace requests, refuse PUBLISH. An `on_request` hook may do its own work and then call this."""
        msg = event.message
        rid = event.request_id
        if isinstance(msg, Subscribe):
            track = self.tracks.get((msg.namespace, msg.name))
            if track is None:
                self.session.reject(rid, RequestErrorCode.DOES_NOT_EXIST, "no such track")
                return
            self.accept_subscription(rid, msg, track)
        elif isinstance(msg, Fetch) and msg.joining_request_id is not None:
            self.serve_joining_fetch(rid, msg)
        elif isinstance(msg, Fetch):
            track = self.tracks.get((msg.namespace, msg.name))
            if track is None:
                self.session.reject(rid, RequestErrorCode.DOES_NOT_EXIST, "no such track")
                return
            self.serve_fetch(rid, msg, track)
        elif isinstance(msg, Publish):
            self.session.reject(rid, RequestErrorCode.NOT_SUPPORTED, "this endpoint takes no PUBLISH")
        else:
            self.session.accept(rid)

    def accept_subscription(self, rid: int, msg: Subscribe, track: Track) -> None:
        """SUBSCRIBE_OK for `track` and start sending it from where the filter says; with FILL_PARAMETERS
        (draft-20+ §3.4), also a fill stream of the requested past objects from the cache."""
        params = Parameters(largest_object=track.largest) if track.largest is not None else Parameters()
        self.session.accept_subscribe(rid, params, track.properties)
        # Where the subscription joins the track: a draft-18 joining FETCH ends here (draft-18 §"Joining Fetch").
        self._joining[rid] = (track, track.largest)
        if len(self._joining) > MAX_JOINABLE_SUBSCRIPTIONS:
            self._joining.pop(next(iter(self._joining)))
        fill = msg.parameters.fill_parameters
        if fill is not None and msg.parameters.forward != 0 and track.largest is not None:
            start, end = fetch_window(fill.location_filter or msg.parameters.location_filter, track.largest)
            objects = track.objects(start, end) if start <= end else []
            if objects:  # an empty fill range opens no stream (§3.4)
                fill_stream = self._write_fetch_stream(rid, objects)
                # One of the subscription's data streams: a priority update moves its queued bytes too (§5.1).
                self._served.setdefault(rid, _ServedStreams()).fills.add(fill_stream)
        timeouts = DeliveryTimeouts(
            delivery_timeout(msg.parameters.object_delivery_timeout, track, 0x02),
            delivery_timeout(msg.parameters.subgroup_delivery_timeout, track, 0x06),
        )
        self.serve_track(rid, track, consumer_for(track, msg.parameters.location_filter), timeouts)

    def serve_joining_fetch(self, rid: int, msg: Fetch) -> None:
        """Answer a draft-18 joining FETCH from the cache of the subscription it joins (draft-18 §"Joining
        Fetches"): from {J.Group - Joining Start, 0} (relative) or {Joining Start, 0} (absolute) to J inclusive,
        J being where the subscription began."""
        assert msg.joining_request_id is not None and msg.joining_start is not None
        joined = self._joining.get(msg.joining_request_id)
        if joined is None:
            self.session.reject(rid, RequestErrorCode.INVALID_JOINING_REQUEST_ID, "no such subscription")
            return
        track, joining = joined
        if joining is None:
            self.session.reject(rid, RequestErrorCode.INVALID_RANGE, "nothing was published before the join")
            return
        if msg.fetch_type == FetchType.ABSOLUTE_JOINING:
            start = Location(msg.joining_start, 0)
        else:
            start = Location(max(0, joining.group - msg.joining_start), 0)
        self.session.accept_fetch(rid, joining, end_of_track=False)
        self._write_fetch_stream(rid, track.objects(start, joining) if start <= joining else [])

    def serve_fetch(self, rid: int, msg: Fetch, track: Track) -> None:
        """Answer a standalone FETCH from the track's cache (§9.11)."""
        start, end = fetch_range(msg)
        if track.largest is None or start > track.largest:
            self.session.reject(rid, RequestErrorCode.INVALID_RANGE, "nothing published in that range")
            return
        end = track.largest if end is None or end > track.largest else end
        self.session.accept_fetch(rid, end, end_of_track=track.is_ended and end == track.ended)
        self._write_fetch_stream(rid, track.objects(start, end))

    def _write_fetch_stream(self, rid: int, objects: list[CachedObject]) -> int:
        """One fetch stream for request `rid` (a FETCH, or a SUBSCRIBE's fill) carrying `objects`, then FIN;
        returns its handle."""
        handle = self.session.open_fetch_stream(rid)
        for obj in objects:
            self.session.write_fetch_object(
                handle,
                obj.group_id,
                obj.subgroup_id,
                obj.object_id,
                obj.payload,
                obj.publisher_priority if obj.publisher_priority is not None else 128,
                obj.properties or None,
            )
        self.session.finish_stream(handle)
        return handle

    def serve_track(
        self, rid: int, track: Track, consumer: TrackConsumer, timeouts: DeliveryTimeouts | None = None
    ) -> asyncio.Task[None]:
        """Send `track` from `consumer` on subscription `rid` until it ends or is cancelled; returns the task.
        `timeouts` are the subscription's effective delivery timeouts (draft-22 §5.2)."""
        served = self._served.setdefault(rid, _ServedStreams())
        task = self._loop.create_task(self._send_track(rid, track, consumer, timeouts or DeliveryTimeouts(), served))
        self._serving[rid] = task

        def done(_: asyncio.Task[None]) -> None:
            self._serving.pop(rid, None)
            self._served.pop(rid, None)

        task.add_done_callback(done)
        return task

    def served_stream_ids(self, request_id: int) -> list[int]:
        """The transport stream ids of the data streams of subscription `request_id` (one we serve) that may still
        hold bytes not yet sent: open subgroup streams, FIN'd ones not wholly acknowledged, its fill stream. Streams
        still waiting to open (for the peer's credit or a slot in flight) have no id yet and are left out. For tests
        and metrics."""
        served = self._served.get(request_id)
        if served is None:
            return []
        return [self._stream_ids[h] for h in served.handles() if h in self._stream_ids]

    async def _send_track(
        self, rid: int, track: Track, consumer: TrackConsumer, timeouts: DeliveryTimeouts, served: _ServedStreams
    ) -> None:
        """Write a track's objects to one subscription: a stream per subgroup, a datagram per datagram object.

        A slow subscriber only slows itself (DESIGN.md decision 4): when the session has more than
        MAX_SESSION_BACKLOG_BYTES waiting, this writer stops taking objects and waits for the peer; if meanwhile it
        falls MAX_SUBSCRIBER_LAG_GROUPS groups behind the newest, it resets the streams of its older groups (their
        queued bytes are dropped) and goes on from the newest group. Delivery timeouts (draft-22 §5.2): an object
        older than the object timeout when it would be handed over resets its stream with DELIVERY_TIMEOUT, and
        so does a subgroup not wholly delivered within the subgroup timeout of its upstream end. The streams it
        keeps in `served` are those a REQUEST_UPDATE of the subscriber priority moves (`_answer_update`).
        """
        object_timeout = timeouts.object
        streams = served.open
        finished = served.finished  # streams we FIN'd, bytes maybe still queued: -> (group, subgroup)
        timed_out: set[tuple[int, int]] = set()  # subgroups cut by a delivery timeout: never reopened (§5.2)
        paused: set[tuple[int, int]] = set()  # subgroups cut while FORWARD was 0: reopened once it is 1 (§11.3.2)
        sent_upto: dict[tuple[int, int], int] = {}  # per subgroup, the last object id written (a replay skips it)

        def resume() -> None:
            """FORWARD went back to 1: replay the newest group skipped while paused, from its start (what was
            already sent is skipped), so the subscriber gets the group it joined whole rather than a tail."""
            if paused:
                newest_paused = max(key[0] for key in paused)
                paused.clear()
                consumer.rewind_to_group(newest_paused)

        self._resumers[rid] = resume
        session = self.session
        newest = -1  # the newest group this writer has written to
        behind_since: float | None = None  # since when it has been MAX_SUBSCRIBER_LAG_GROUPS or more behind

        async def expire_subgroups() -> None:
            """Reset subgroups not wholly delivered within the subgroup timeout of their upstream end (§5.2),
            whether or not this writer has got to their end yet (a stalled writer lags behind the cache)."""
            while True:
                await asyncio.sleep(max(MIN_EXPIRY_CHECK_SECONDS, timeouts.subgroup / 4))
                now = time.monotonic()
                expired = False
                for key, handle in list(streams.items()):
                    ended = track.subgroup_ended_at(*key)
                    if ended is not None and now - ended > timeouts.subgroup:
                        del streams[key]
                        timed_out.add(key)
                        session.reset_stream(handle, StreamResetCode.DELIVERY_TIMEOUT)
                        self.objects_expired += 1
                        expired = True
                for handle, (group, subgroup) in list(finished.items()):
                    ended = track.subgroup_ended_at(group, subgroup)
                    if ended is not None and now - ended > timeouts.subgroup and self._backlog((handle,)):
                        del finished[handle]
                        session.reset_stream(handle, StreamResetCode.DELIVERY_TIMEOUT)
                        self.objects_expired += 1
                        expired = True
                if expired:
                    self._flush()

        expirer = asyncio.ensure_future(expire_subgroups()) if timeouts.subgroup else None

        def drop_unopened_before(group: int) -> None:
            """Give up streams of older groups that have waited MAX_STREAM_OPEN_WAIT_SECONDS to open (see there)."""
            now = time.monotonic()
            dropped: set[int] = set()
            for key, handle in [*streams.items(), *((k, h) for h, k in finished.items())]:
                since = self._waiting_to_open_since(handle)
                if since is not None and key[0] < group and now - since >= MAX_STREAM_OPEN_WAIT_SECONDS:
                    dropped.add(key[0])
                    streams.pop(key, None)
                    finished.pop(handle, None)
                    session.withdraw_stream(handle)  # never on the wire: no RESET_STREAM, not in PUBLISH_DONE's count
                    self._abandon_open(handle)
            self.groups_dropped += len(dropped)

        def drop_before(group: int, code: int) -> None:
            for key in [k for k in streams if k[0] < group]:
                session.reset_stream(streams.pop(key), code)
            for handle in [h for h, (g, _) in finished.items() if g < group]:
                del finished[handle]
                session.reset_stream(handle, code)  # a FIN'd stream can be reset until its data is acknowledged

        try:
            while True:
                event = await consumer.next()
                if isinstance(event, CachedObject):
                    key = (event.group_id, event.subgroup_id if event.subgroup_id is not None else -1)
                    if sent_upto.get(key, -1) >= event.object_id:
                        continue  # already written (a replay after a pause)
                    if object_timeout and time.monotonic() - consumer.arrival > object_timeout:
                        handle = streams.pop(key, None)
                        if handle is not None:
                            session.reset_stream(handle, StreamResetCode.DELIVERY_TIMEOUT)
                        timed_out.add(key)
                        self.objects_expired += 1
                    elif key in timed_out:
                        pass
                    elif not session.forwarding(rid):
                        # Paused: send nothing; a stream that would skip this object is reset (§11.3.2).
                        handle = streams.pop(key, None)
                        if handle is not None:
                            session.reset_stream(handle, StreamResetCode.CANCELLED)
                        paused.add(key)
                    elif event.subgroup_id is None:
                        session.send_datagram(
                            rid,
                            event.group_id,
                            event.object_id,
                            event.payload,
                            event.publisher_priority,
                            event.properties or None,
                        )
                        self.objects_sent += 1
                    else:
                        handle = streams.get(key)
                        if handle is None:
                            handle = streams[key] = session.open_subgroup(
                                rid,
                                event.group_id,
                                event.subgroup_id,
                                event.publisher_priority,
                                first_object_id=event.object_id,
                                with_properties=True,
                            )
                        session.write_object(handle, event.object_id, event.payload, event.properties, event.status)
                        sent_upto[key] = event.object_id
                        self.objects_sent += 1
                    if event.group_id > newest:
                        newest = event.group_id
                        drop_unopened_before(newest)
                elif isinstance(event, SubgroupEnded):
                    handle = streams.pop((event.group_id, event.subgroup_id), None)
                    if handle is not None:
                        session.finish_stream(handle)
                        finished[handle] = (event.group_id, event.subgroup_id)
                elif isinstance(event, SubgroupReset):
                    handle = streams.pop((event.group_id, event.subgroup_id), None)
                    if handle is not None:
                        session.reset_stream(handle, StreamResetCode.CANCELLED)
                elif isinstance(event, GroupsDropped):
                    for key in [k for k in streams if k[0] in event.group_ids]:
                        session.reset_stream(streams.pop(key), StreamResetCode.TOO_FAR_BEHIND)
                    self.groups_dropped += len(event.group_ids)
                elif isinstance(event, TrackEnded):
                    session.publish_done(rid, event.status, event.reason)
                    self._flush()
                    return
                self._flush()
                if len(timed_out) > 4 * track.max_groups:
                    timed_out = {k for k in timed_out if track.has_group(k[0])}
                if len(sent_upto) > 4 * track.max_groups:
                    sent_upto = {k: v for k, v in sent_upto.items() if track.has_group(k[0])}
                # Back-pressure, per subscription: wait for the peer rather than queue without end, and skip ahead
                # if left behind. Only this subscription's own backlog counts, so a bulk track never holds up an
                # urgent one (the scheduler sends the urgent streams first). A burst that drains is not a stall;
                # a backlog that does not shrink for MAX_SUBSCRIBER_STALL_SECONDS while groups pile up is.
                for handle in [h for h in finished if not self._backlog((h,))]:
                    del finished[handle]  # delivered
                served.fills.difference_update([h for h in served.fills if not self._backlog((h,))])
                backlog = self._backlog([*streams.values(), *finished])
                stalled_since = time.monotonic()
                while backlog > MAX_SUBSCRIPTION_BACKLOG_BYTES:
                    latest = track.latest_group
                    now = time.monotonic()
                    lagging = latest is not None and latest - newest >= MAX_SUBSCRIBER_LAG_GROUPS
                    if not lagging:
                        behind_since = None
                    elif behind_since is None:
                        behind_since = now
                    # Skip ahead when stalled (nothing drains) or when it keeps draining too slowly to catch up.
                    stalled = now - stalled_since >= MAX_SUBSCRIBER_STALL_SECONDS
                    slow = behind_since is not None and now - behind_since >= MAX_SUBSCRIBER_BEHIND_SECONDS
                    if lagging and (stalled or slow) and latest is not None:
                        skipped = consumer.skip_to_latest_group()
                        drop_before(latest, StreamResetCode.TOO_FAR_BEHIND)
                        self.groups_dropped += len([g for g in skipped if g >= newest])
                        self._flush()
                        newest = latest
                        behind_since = None
                        break
                    with contextlib.suppress(TimeoutError):
                        # Any progress of the connection wakes us; then see whether ours moved.
                        await asyncio.wait_for(self.conn.wait_writable(self.conn.buffered_bytes - 1), LAG_CHECK_SECONDS)
                    now_backlog = self._backlog([*streams.values(), *finished])
                    if now_backlog < backlog:
                        stalled_since = time.monotonic()
                    backlog = now_backlog
        except (SessionError, SessionClosedError):
            pass  # the subscription or the session ended under us
        finally:
            consumer.close()
            self._resumers.pop(rid, None)
            if expirer is not None:
                expirer.cancel()

    # -- internals ----------------------------------------------------------------------------------------------

    def _future(self, rid: int, kind: str = "answer") -> asyncio.Future[Event]:
        future: asyncio.Future[Event] = self._loop.create_future()
        self._answers[rid if kind == "answer" else -rid - 1] = future
        return future

    async def _answer(self, rid: int) -> Event:
        future = self._answers.get(rid) or self._future(rid)
        self._flush()
        event = await future
        if isinstance(event, RequestFailed):
            raise RequestRejected(event.code, event.reason, event.error.retry_interval if event.error else 0)
        if isinstance(event, SessionTerminated):
            raise ConnectionError(f"session closed: {event.reason} (code 0x{event.code:x})")
        return event

    def _resolve(self, key: int, event: Event) -> None:
        future = self._answers.pop(key, None)
        if future is not None and not future.done():
            future.set_result(event)

    def _on_transport_event(self, event: TransportEvent) -> None:
        now = self._loop.time()
        session = self.session
        if isinstance(event, (StreamDataReceived, StreamReset, StopSendingReceived)):
            handle = self._handle(event.stream_id)
            if handle is None:
                return  # about a stream of ours that is over and forgotten
            if isinstance(event, StreamDataReceived):
                session.stream_data_received(handle, event.data, event.end_stream, now)
            elif isinstance(event, StreamReset):
                code = event.code if event.code is not None else StreamResetCode.INTERNAL_ERROR
                session.stream_reset(handle, code, now)
            else:
                code = event.code if event.code is not None else StreamResetCode.INTERNAL_ERROR
                session.stop_sending_received(handle, code, now)
        elif isinstance(event, DatagramReceived):
            session.datagram_received(event.data, now)
        elif isinstance(event, SessionClosed):
            code = event.code if event.code is not None else SessionErrorCode.INTERNAL_ERROR
            session.transport_closed(code, event.reason)
        self._flush()

    def _flush(self) -> None:
        """Carry out the session's commands and dispatch its events."""
        session = self.session
        while True:
            commands = session.commands()
            events = session.events()
            if not commands and not events:
                break
            for cmd in commands:
                try:
                    self._execute(cmd)
                except StreamStateError as exc:
                    logger.debug("[%s] %s: %s", session.session_id, type(cmd).__name__, exc)
            for event in events:
                self._dispatch(event)
        self._schedule_timer()

    def _execute(self, cmd: object) -> None:
        conn = self.conn
        if isinstance(cmd, OpenStream):
            if cmd.unidirectional:
                sid = conn.try_open_uni_stream(cmd.priority)
            else:
                sid = conn.try_open_bidi_stream(cmd.priority)
            if sid is not None:
                self._map(cmd.handle, sid)
            else:
                if len(self._pending) >= MAX_PENDING_OPENS:
                    self.close(SessionErrorCode.INTERNAL_ERROR, "too many streams waiting for credit")
                    return
                self._pending[cmd.handle] = []
                task = self._spawn(self._open_later(cmd))
                self._opening[cmd.handle] = (time.monotonic(), task)
        elif isinstance(cmd, (SendStreamData, ResetStream, StopSending)):
            pending = self._pending.get(cmd.stream)
            if pending is not None:
                pending.append(cmd)
                return
            sid = self._sid(cmd.stream)
            if sid is None:
                return  # a stream of ours that is over, whose mapping was forgotten: nothing left to do on it
            if isinstance(cmd, SendStreamData):
                conn.send(sid, cmd.data, cmd.end_stream)
            elif isinstance(cmd, ResetStream):
                conn.reset_stream(sid, cmd.code)
            else:
                conn.stop_sending(sid, cmd.code)
        elif isinstance(cmd, SendDatagram):
            conn.send_datagram(cmd.data)
        elif isinstance(cmd, CloseSession):
            conn.close(cmd.code, cmd.reason)

    async def _open_later(self, cmd: OpenStream) -> None:
        try:
            if cmd.unidirectional:
                sid = await self.conn.open_uni_stream(cmd.priority)
            else:
                sid = await self.conn.open_bidi_stream(cmd.priority)
        except Exception:  # the session closed while we waited
            self._pending.pop(cmd.handle, None)
            self._priority_on_open.pop(cmd.handle, None)
            self._opening.pop(cmd.handle, None)
            return
        self._opening.pop(cmd.handle, None)
        self._map(cmd.handle, sid)
        priority = self._priority_on_open.pop(cmd.handle, None)
        if priority is not None and cmd.priority:  # REQUEST_UPDATE changed it while the stream waited (§5.1)
            self.conn.set_stream_priority(sid, (priority, *cmd.priority[1:]))
        for queued in self._pending.pop(cmd.handle, []):
            with contextlib.suppress(StreamStateError):
                self._execute(queued)

    def _abandon_open(self, handle: int) -> None:
        """A stream still waiting to open is given up: it never opens (its opener is cancelled, its data dropped)."""
        self._pending.pop(handle, None)
        self._priority_on_open.pop(handle, None)
        opening = self._opening.pop(handle, None)
        if opening is not None:
            opening[1].cancel()

    def _waiting_to_open_since(self, handle: int) -> float | None:
        """When a stream of ours started waiting to open (time.monotonic()), or None if it is not waiting."""
        opening = self._opening.get(handle)
        return opening[0] if opening is not None else None

    def _map(self, handle: int, sid: int) -> None:
        self._stream_ids[handle] = sid
        self._handles[sid] = handle
        if len(self._stream_ids) > self._prune_at:
            self._forget_finished_streams()

    def _is_ours(self, stream: int) -> bool:
        """Whether a handle or stream id names a stream we opened (the initiator bit, as QUIC numbers them)."""
        return (stream & 1 == 0) == self.conn.is_client  # bit 0: 0 for client-initiated (RFC 9000 §2.1)

    def _sid(self, handle: int) -> int | None:
        """The stream id of a handle: the mapped one for our streams (None once forgotten), the same number for
        the peer's streams."""
        sid = self._stream_ids.get(handle)
        if sid is None and not self._is_ours(handle):
            return handle
        return sid

    def _handle(self, sid: int) -> int | None:
        """The handle of a stream id: None for one of ours whose mapping was forgotten (its events are late)."""
        handle = self._handles.get(sid)
        if handle is None and not self._is_ours(sid):
            return sid
        return handle

    def _forget_finished_streams(self) -> None:
        """Drop the mappings of our streams that are over: the transport has forgotten them and holds nothing of
        them (all sent and acknowledged, or reset): no command can act on them any more (bounded: MAX_STREAM_MAP)."""
        conn = self.conn
        for handle, sid in list(self._stream_ids.items()):
            if handle not in self._pending and conn.stream_priority(sid) is None and not conn.stream_buffered(sid):
                del self._stream_ids[handle]
                self._handles.pop(sid, None)
        self._prune_at = max(MAX_STREAM_MAP, 2 * len(self._stream_ids))

    def _spawn(self, coro: Awaitable[None]) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _schedule_timer(self) -> None:
        when = self.session.next_timer()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if when is not None:
            self._timer = self._loop.call_at(when, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self.session.handle_timer(self._loop.time())
        self._flush()

    def _dispatch(self, event: Event) -> None:
        if isinstance(event, ObjectReceived):
            sub = self._subscriptions.get(event.request_id) or self._joins.get(event.request_id)
            if sub is not None:
                sub._push(event)
            elif event.request_id in self._fetches:
                self._fetches[event.request_id].append(event)
        elif isinstance(event, DataStreamEnded):
            if event.source == "fetch":
                self._resolve(-event.request_id - 1, event)
                self._join_done(event.request_id)
            else:
                sub = self._subscriptions.get(event.request_id)
                if (
                    sub is not None
                    and sub.track is not None
                    and event.group_id is not None
                    and event.subgroup_id is not None
                ):
                    sub.track.end_subgroup(event.group_id, event.subgroup_id, reset=event.reset_code is not None)
        elif isinstance(event, (RequestAccepted, RequestFailed)):
            self._resolve(event.request_id, event)
            if isinstance(event, RequestFailed):
                self._resolve(-event.request_id - 1, event)
                self._join_done(event.request_id)
                sub = self._subscriptions.pop(event.request_id, None)
                if sub is not None:
                    sub._end(None)
        elif isinstance(event, SubscriptionEnded):
            sub = self._subscriptions.pop(event.request_id, None)
            if sub is not None:
                sub._end(event.message)
        elif isinstance(event, RequestReceived):
            handler = self.on_request
            if handler is not None:
                self._spawn(self._run_handler(handler, event))
            else:
                self._spawn(self._run_default(event))
        elif isinstance(event, RequestCancelled):
            task = self._serving.pop(event.request_id, None)
            if task is not None:
                task.cancel()
            if self.on_cancel is not None:
                self.on_cancel(self, event)
        elif isinstance(event, NamespacePublished):
            watch = self._watches.get(event.request_id)
            if watch is not None:
                watch.active.add(event.namespace)
                watch._changes.put_nowait((True, event.namespace))
        elif isinstance(event, NamespaceWithdrawn):
            watch = self._watches.get(event.request_id)
            if watch is not None:
                watch.active.discard(event.namespace)
                watch._changes.put_nowait((False, event.namespace))
        elif isinstance(event, SetupCompleted):
            self.peer_setup = event.peer_setup
            self._ready.set()
        elif isinstance(event, GoawayReceived):
            if event.request_id is None:
                self.goaway = event.message
                self.goaway_received.set()
        elif isinstance(event, UpdateAnswered):
            self._resolve(event.update_id, event)
        elif isinstance(event, RequestUpdated):
            self._answer_update(event)
        elif isinstance(event, SessionTerminated):
            self.close_reason = (event.code, event.reason)
            for key in list(self._answers):
                self._resolve(key, event)
            for sub in [*self._subscriptions.values(), *self._joins.values()]:
                sub._joins_pending = 0
                sub._end(None)
            for watch in self._watches.values():
                watch._changes.put_nowait(None)
            for task in self._serving.values():
                task.cancel()
            if self._timer is not None:
                self._timer.cancel()
            self.closed.set()

    def _backlog(self, handles: Iterable[int]) -> int:
        """Bytes written to these streams and not yet acknowledged (or still waiting for the stream to open)."""
        total = 0
        for handle in handles:
            pending = self._pending.get(handle)
            if pending is not None:
                total += sum(len(cmd.data) for cmd in pending if isinstance(cmd, SendStreamData))
            else:
                sid = self._sid(handle)
                total += self.conn.stream_buffered(sid) if sid is not None else 0
        return total

    def _answer_update(self, event: RequestUpdated) -> None:
        """REQUEST_UPDATE from the peer: the session has applied what shapes our serving (priority, FORWARD) to
        what it sends from now on; here the subscription's data already written follows a new subscriber priority,
        and a pause ends. Answer REQUEST_OK, with LARGEST_OBJECT for a subscription we serve (§9.5)."""
        joined = self._joining.get(event.request_id)
        largest = joined[0].largest if joined is not None else None
        priority = event.parameters.subscriber_priority
        served = self._served.get(event.request_id)
        if priority is not None and served is not None:
            self._set_subscriber_priority(served.handles(), priority)
        resume = self._resumers.get(event.request_id)
        if resume is not None and self.session.forwarding(event.request_id):
            resume()
        with contextlib.suppress(SessionError):
            self.session.accept_update(event.update_id, Parameters(largest_object=largest) if largest else Parameters())
        if self.on_update is not None:
            self.on_update(self, event)

    def _set_subscriber_priority(self, handles: Iterable[int], priority: int) -> None:
        """Move data streams we opened to a new subscriber priority (draft-22 §5.1: "a best effort SHOULD be made
        to apply the change to all objects that have not been scheduled"). What our send scheduler still holds
        for them, and whatever they carry later, is scheduled by the new priority; bytes already handed to
        aioquic keep their place. A data stream's priority tuple starts with the subscriber priority (the
        session's `open_subgroup` / `open_fetch_stream`); only that part changes: publisher priority, group order
        (fixed for a subscription, §5.1) and subgroup are the objects' own."""
        for handle in handles:
            if handle in self._pending:  # not open yet: it takes the new priority when it opens (_open_later)
                self._priority_on_open[handle] = priority
                continue
            sid = self._stream_ids.get(handle)
            current = self.conn.stream_priority(sid) if sid is not None else None
            if sid is not None and current:
                self.conn.set_stream_priority(sid, (priority, *current[1:]))

    def _join_done(self, fetch_id: int) -> None:
        sub = self._joins.pop(fetch_id, None)
        if sub is not None:
            sub._joins_pending -= 1
            sub._wake.set()

    async def _run_default(self, event: RequestReceived) -> None:
        with contextlib.suppress(SessionError):
            await self.handle_request(event)
        self._flush()

    async def _run_handler(self, handler: RequestHandler, event: RequestReceived) -> None:
        try:
            await handler(self, event)
        except SessionError as exc:
            logger.debug("[%s] request %d: %s", self.session.session_id, event.request_id, exc)
        except Exception:
            logger.exception("[%s] request handler failed", self.session.session_id)
            with contextlib.suppress(SessionError):
                self.session.reject(event.request_id, RequestErrorCode.INTERNAL_ERROR, "internal error")
        self._flush()


def consumer_for(track: Track, flt: LocationFilter | None) -> TrackConsumer:
    """Where a new subscription starts reading `track` (§3.3): the latest group unless the filter says otherwise."""
    if flt is None or flt.type is LocationFilterType.NONE:
        return track.consumer()
    if flt.type is LocationFilterType.NEXT_OBJECT:
        return track.consumer_at_end()
    if flt.type is LocationFilterType.RELATIVE_START_GROUP:
        latest = track.latest_group
        if latest is None:
            return track.consumer()
        return track.consumer(max(0, latest + 1 - flt.start_group))
    return track.consumer(flt.start_group)


class DeliveryTimeouts(msgspec.Struct, frozen=True):
    """A subscription's effective delivery timeouts in seconds, 0 = none (draft-22 §5.2)."""

    object: float = 0.0
    subgroup: float = 0.0


def delivery_timeout(subscriber_ms: int | None, track: Track, kind: int) -> float:
    """An effective delivery timeout in seconds (0 = none): the smaller of the subscriber's parameter and the
    track's property `kind` (0x02 OBJECT_, 0x06 SUBGROUP_DELIVERY_TIMEOUT) when both are set (draft-22 §5.2)."""
    publisher_ms = next((v for k, v in track.properties if k == kind and isinstance(v, int)), 0)
    values = [v for v in (subscriber_ms or 0, publisher_ms) if v]
    return min(values) / 1000 if values else 0.0


def fetch_window(flt: LocationFilter | None, largest: Location) -> tuple[Location, Location]:
    """The [start, end] a location filter selects under the rules for a fetch (draft-21 §9.20.10): never past
    `largest`; a relative StartGroup counts back from the largest group; Next Object selects nothing."""
    if flt is None or flt.type is LocationFilterType.NONE:
        return Location(0, 0), largest
    if flt.type is LocationFilterType.NEXT_OBJECT:
        return largest.next(), largest
    if flt.type is LocationFilterType.RELATIVE_START_GROUP:
        return Location(max(0, largest.group + 1 - flt.start_group), 0), largest
    start = Location(flt.start_group, flt.start_object)
    if flt.end_group is None:
        return start, largest
    end = Location(flt.end_group, MAX_ID if flt.end_object is None else flt.end_object)
    return start, min(end, largest)


def fetch_range(msg: Fetch) -> tuple[Location, Location | None]:
    """The [start, end] a standalone FETCH asks for, in either draft's form (end None: up to the largest)."""
    if msg.start is not None:  # draft-18: End Location is the end plus 1, Object 0 = the whole group
        end = msg.end
        if end is None or end.group == MAX_ID:
            return msg.start, None
        if end.object == 0:
            return msg.start, Location(end.group, MAX_ID)
        return msg.start, Location(end.group, end.object - 1)
    flt = msg.parameters.location_filter
    if flt is None or flt.type in (LocationFilterType.NONE, LocationFilterType.NEXT_OBJECT):
        return Location(0, 0), None
    start = Location(flt.start_group, flt.start_object)
    if flt.end_group is None:
        return start, None
    if flt.end_object is None:
        return start, Location(flt.end_group, MAX_ID)
    return start, Location(flt.end_group, flt.end_object)
