"""The relay: routes requests between sessions, caches tracks, fans objects out (draft-22 §7).

A relay is both a subscriber and a publisher (moxygen's shape): for every track some downstream session wants,
it holds one upstream subscription (to the session that published the namespace, or to an upstream relay), whose
objects fill one bounded `Track` cache; each downstream subscription is a cursor over that cache, written by its
own task in its own session, so a slow subscriber only ever slows itself (and loses its oldest groups).

Routing, per draft-22 §7 and §9:
- PUBLISH_NAMESPACE records who publishes a namespace; SUBSCRIBE_NAMESPACE subscribers hear NAMESPACE /
  NAMESPACE_DONE for matching namespaces, now and later.
- SUBSCRIBE goes to the publisher of the longest matching namespace (or to the session that PUBLISHed the track,
  or to an `--upstream` relay); SUBSCRIBE_OK only once the upstream subscription is established. With no
  publisher it waits up to its RENDEZVOUS_TIMEOUT (or the relay's default) and then fails.
- PUBLISH is accepted into a track of its own and offered to SUBSCRIBE_TRACKS subscribers.
- FETCH and TRACK_STATUS are answered from the cache, or forwarded to the publisher.
- A publisher that leaves ends its tracks: downstream subscriptions get PUBLISH_DONE.

Edges and clusters (`announce_upstream`, on for the workers of `moq relay --workers N`, relay.cluster): a relay
with an `--upstream` keeps a session to it, forwards to it every namespace published here (PUBLISH_NAMESPACE of its
own, withdrawn when the last local one goes; a PUBLISHed track's namespace too, so the upstream routes SUBSCRIBEs
for it here), and SUBSCRIBE_NAMESPACEs it for every namespace, which it treats as announced by the upstream
session: local SUBSCRIBE_NAMESPACE watchers hear them, local SUBSCRIBEs for them go upstream. What it learned from
the upstream is never forwarded back, local publishers win over the upstream's, and a request that arrives from the
upstream is routed to local publishers only: there is no loop to run round. A `cluster_hub` (the hub that joins a
cluster's workers) tells no session of namespaces only it publishes and routes no request back to its sender.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass, field
from typing import Any

from moq.api import MoqSession, connect
from moq.api.session import fetch_range
from moq.errors import RequestRejected
from moq.model import CachedObject, Track, TrackError
from moq.session.events import RequestCancelled, RequestReceived, RequestUpdated
from moq.session.session import SessionError
from moq.wire.codes import PublishDoneCode, RequestErrorCode, SessionErrorCode
from moq.wire.messages import (
    Fetch,
    Publish,
    PublishNamespace,
    Setup,
    Subscribe,
    SubscribeNamespace,
    SubscribeTracks,
    TrackStatus,
)
from moq.wire.params import Parameters
from moq.wire.primitives import TrackNamespace, namespace_has_prefix, render_name
from relay.config import MAX_RENDEZVOUS_SECONDS, RelayConfig

logger = logging.getLogger(__name__)

TrackKey = tuple[TrackNamespace, bytes]

#: Namespaces a single SUBSCRIBE_NAMESPACE may be told about at once (draft-22 §14: NAMESPACE_TOO_LARGE).
MAX_NAMESPACES_PER_WATCH = 1000
#: Namespaces a relay forwards to its upstream (`announce_upstream`); past this the rest are not forwarded (and a
#: warning says so): their SUBSCRIBEs from elsewhere then fail, nothing else does.
MAX_FORWARDED_NAMESPACES = 10_000
#: Namespaces a relay takes from its upstream's NAMESPACE messages; past this the rest are ignored: local watchers
#: do not hear of them, and SUBSCRIBEs for them still go upstream (the fallback for any unknown namespace).
MAX_UPSTREAM_NAMESPACES = 10_000
#: Pause between attempts to (re)connect the upstream link of an `announce_upstream` relay.
UPSTREAM_RETRY_SECONDS = 1.0


@dataclass(eq=False)
class Announcement:
    """A PUBLISH_NAMESPACE we accepted: `session` publishes tracks under `namespace`."""

    session: MoqSession
    request_id: int
    namespace: TrackNamespace
    #: Learned from the upstream relay's NAMESPACE (`announce_upstream`), not published to us by a client.
    upstream: bool = False


@dataclass(eq=False)
class Watcher:
    """A SUBSCRIBE_NAMESPACE (or SUBSCRIBE_TRACKS) we accepted."""

    session: MoqSession
    request_id: int
    prefix: TrackNamespace
    announced: set[TrackNamespace] = field(default_factory=set)


@dataclass(eq=False)
class RelayTrack:
    """One track as the relay holds it: its cache, where it comes from, who reads it."""

    key: TrackKey
    track: Track
    #: Where objects come from: each upstream session and its request id (a SUBSCRIBE of ours or its PUBLISH).
    sources: dict[MoqSession, int] = field(default_factory=dict)
    ready: asyncio.Future[None] | None = None  # resolved when the first upstream subscription is established
    subscribers: set[tuple[MoqSession, int]] = field(default_factory=set)
    published: bool = False  # came from a PUBLISH (not a SUBSCRIBE of ours)
    #: Its upstream is not forwarding: a PUBLISH with FORWARD=0 nobody has asked for yet, or every downstream
    #: subscriber has FORWARD=0 and we passed that on (REQUEST_UPDATE FORWARD=0).
    paused: bool = False
    via_upstream: bool = False  # fed (or being subscribed) through our upstream relay, not by a local publisher
    #: Asked of the `--upstream` relay because nobody here had published its namespace (not of a publisher).
    asked_relay: bool = False

    @property
    def name(self) -> str:
        return render_name(self.key[0], self.key[1])

    @property
    def live(self) -> bool:
        return bool(self.sources) and not self.track.is_ended


class Relay:
    """The relay's state, shared by every session (see the module docstring).

    `cluster_hub`: this relay joins a cluster's workers (relay.cluster): it tells no session of namespaces only
    that session publishes, and routes no request back to the session it came from. `implementation`: the
    MOQT_IMPLEMENTATION its sessions announce in SETUP (a worker says which one it is)."""

    def __init__(
        self, config: RelayConfig | None = None, *, cluster_hub: bool = False, implementation: str | None = None
    ) -> None:
        self.config = config or RelayConfig()
        self.cluster_hub = cluster_hub
        self.implementation = implementation
        self.sessions: set[MoqSession] = set()
        self.announcements: list[Announcement] = []
        self.watchers: list[Watcher] = []
        self.track_watchers: list[Watcher] = []
        self.tracks: dict[TrackKey, RelayTrack] = {}
        self._changed = asyncio.Event()  # set whenever a publisher arrives (rendezvous waiters re-check)
        self._black_holes = 0  # path MTU black holes of sessions that are gone (stats)
        self._arrivals = 0  # counts those arrivals, so a waiter busy elsewhere when one came does not miss it
        self._upstreams: dict[str, MoqSession] = {}
        self._upstream_lock = asyncio.Lock()
        self.upstream_subscriptions = 0  # counted for tests and metrics: one per track, however many readers
        self._tasks: set[asyncio.Task[None]] = set()
        # The upstream link of an `announce_upstream` relay: its session, and the namespaces forwarded on it
        # (namespace -> our PUBLISH_NAMESPACE's request id) or being forwarded.
        self._link: MoqSession | None = None
        self._link_task: asyncio.Task[None] | None = None
        self._forwarded: dict[TrackNamespace, int] = {}
        self._forwarding: set[TrackNamespace] = set()
        self._warned_forward_bound = False

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run a background task, keeping a reference so it is not collected mid-flight."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def start(self) -> None:
        """Start what runs for the relay's lifetime: the upstream link, when `announce_upstream` is on."""
        if self.config.announce_upstream and self.config.upstream and self._link_task is None:
            self._link_task = asyncio.ensure_future(self._keep_upstream_link())

    def stats(self) -> dict[str, int]:
        """Counts for `/stats` and the cluster's supervisor."""
        return {
            "sessions": len(self.sessions),
            "tracks": len(self.tracks),
            "upstream_subscriptions": self.upstream_subscriptions,
            "namespaces": len({a.namespace for a in self.announcements}),
            # Path MTU discovery (moq.transport.pmtu): sessions sending bigger packets now, and the black holes
            # found so far in every session, gone ones too.
            "sessions_with_bigger_packets": sum(1 for s in self.sessions if s.conn.bigger_packets),
            "path_black_holes": self._black_holes + sum(s.conn.path_black_holes for s in self.sessions),
        }

    # -- sessions -----------------------------------------------------------------------------------------------

    def prepare(self, session: MoqSession) -> None:
        """Route a new session's requests to the relay, before its SETUP (the `serve()` prepare hook)."""
        if self.implementation is not None:
            session.session.setup = Setup.create(implementation=self.implementation)
        session.on_request = self._on_request
        session.on_cancel = self.on_cancelled
        session.on_update = self._on_update
        self.sessions.add(session)  # known from the start, so a shutdown reaches it even mid-SETUP
        self._spawn(self._forget_when_closed(session))

    async def handle_session(self, session: MoqSession) -> None:
        """Own one downstream session until it ends (the `serve()` handler)."""
        logger.info(
            "[%s] session up, draft-%d, %s",
            session.session.session_id,
            session.version.value,
            session.conn.transport_kind,
        )
        await session.wait_closed()

    async def _forget_when_closed(self, session: MoqSession) -> None:
        """Drop a session's routes once it is gone, however it went (even before its SETUP completed)."""
        await session.wait_closed()
        self.sessions.discard(session)
        self._black_holes += session.conn.path_black_holes
        self._session_gone(session)
        code, reason = session.close_reason or (0, "")
        logger.info("[%s] session closed: code 0x%x %s", session.session.session_id, code, reason)

    def _session_gone(self, session: MoqSession) -> None:
        for ann in [a for a in self.announcements if a.session is session]:
            self._withdraw(ann)
        self._sync_upstream_namespaces()
        self.watchers = [w for w in self.watchers if w.session is not session]
        self.track_watchers = [w for w in self.track_watchers if w.session is not session]
        for rt in list(self.tracks.values()):
            rt.subscribers = {(s, r) for (s, r) in rt.subscribers if s is not session}
            if session in rt.sources:
                self._source_ended(rt, session, PublishDoneCode.GOING_AWAY, "the publisher left")
            elif not rt.subscribers and not rt.published:
                self._drop_track(rt)

    async def close(self) -> None:
        """GOAWAY to every session (§9.2), give them `goaway_grace` seconds to leave, then close the rest."""
        grace = self.config.goaway_grace
        if self._link_task is not None:
            self._link_task.cancel()
        sessions = list(self.sessions)
        for session in sessions:
            with contextlib.suppress(SessionError):
                session.session.goaway("", int(grace * 1000))
                session._flush()
        if sessions and grace > 0:
            await asyncio.wait([asyncio.ensure_future(s.wait_closed()) for s in sessions], timeout=grace)
        for upstream in self._upstreams.values():
            upstream.close()
        for session in list(self.sessions):
            session.close(
                SessionErrorCode.GOAWAY_TIMEOUT if session.goaway_sent else SessionErrorCode.NO_ERROR,
                "relay shutting down",
            )

    # -- requests -----------------------------------------------------------------------------------------------

    async def _on_request(self, session: MoqSession, event: RequestReceived) -> None:
        msg = event.message
        rid = event.request_id
        if isinstance(msg, PublishNamespace):
            self._publish_namespace(session, rid, msg)
        elif isinstance(msg, SubscribeNamespace):
            self._subscribe_namespace(session, rid, msg)
        elif isinstance(msg, Subscribe):
            await self._subscribe(session, rid, msg)
        elif isinstance(msg, Publish):
            self._publish(session, rid, msg)
        elif isinstance(msg, SubscribeTracks):
            await self._subscribe_tracks(session, rid, msg)
        elif isinstance(msg, Fetch):
            await self._fetch(session, rid, msg)
        elif isinstance(msg, TrackStatus):
            await self._track_status(session, rid, msg)

    def on_cancelled(self, session: MoqSession, event: RequestCancelled) -> None:
        """The peer cancelled one of its requests: a withdrawn namespace, an unsubscribe, ..."""
        for ann in [a for a in self.announcements if a.session is session and a.request_id == event.request_id]:
            self._withdraw(ann)
        self.watchers = [w for w in self.watchers if not (w.session is session and w.request_id == event.request_id)]
        for rt in list(self.tracks.values()):
            if (session, event.request_id) in rt.subscribers:
                self._unsubscribe(rt, session, event.request_id)
            if rt.sources.get(session) == event.request_id:
                self._source_ended(rt, session, PublishDoneCode.GOING_AWAY, "the publisher cancelled")

    # -- namespaces ---------------------------------------------------------------------------------------------

    def _publish_namespace(self, session: MoqSession, rid: int, msg: PublishNamespace) -> None:
        session.session.accept(rid)
        logger.info("[%s] publishes namespace %s", session.session.session_id, render_name(msg.namespace))
        self._announce(Announcement(session, rid, msg.namespace))

    def _announce(self, ann: Announcement) -> None:
        self.announcements.append(ann)
        self._tell_watchers(ann.namespace)
        if not ann.upstream:
            self._sync_upstream_namespaces()
        self._publisher_arrived()

    def _withdraw(self, ann: Announcement) -> None:
        if ann not in self.announcements:
            return
        self.announcements.remove(ann)
        logger.info("[%s] withdrew namespace %s", ann.session.session.session_id, render_name(ann.namespace))
        self._tell_watchers(ann.namespace)
        if not ann.upstream:
            self._sync_upstream_namespaces()

    def _visible(self, ns: TrackNamespace, session: MoqSession) -> bool:
        """Whether `session`'s watchers are to know of `ns`: someone publishes it (§4.1: echoing a session's own
        namespaces back to it, except at a cluster hub, whose sessions are relays that know their own)."""
        return any(a.namespace == ns and not (self.cluster_hub and a.session is session) for a in self.announcements)

    def _tell_watchers(self, ns: TrackNamespace) -> None:
        """NAMESPACE / NAMESPACE_DONE to each watcher whose view of `ns` changed."""
        for watcher in self.watchers:
            if namespace_has_prefix(ns, watcher.prefix):
                self._tell(watcher, ns, added=self._visible(ns, watcher.session))

    def _subscribe_namespace(self, session: MoqSession, rid: int, msg: SubscribeNamespace) -> None:
        prefix = msg.namespace_prefix
        for other in self.watchers:
            if other.session is session and (
                namespace_has_prefix(other.prefix, prefix) or namespace_has_prefix(prefix, other.prefix)
            ):
                session.session.reject(rid, RequestErrorCode.PREFIX_OVERLAP, "overlaps an existing subscription")
                return
        matching = sorted(
            {
                a.namespace
                for a in self.announcements
                if namespace_has_prefix(a.namespace, prefix) and self._visible(a.namespace, session)
            }
        )
        if len(matching) > MAX_NAMESPACES_PER_WATCH:
            session.session.reject(rid, RequestErrorCode.NAMESPACE_TOO_LARGE, "too many namespaces match")
            return
        watcher = Watcher(session, rid, prefix)
        self.watchers.append(watcher)
        session.session.accept(rid)
        for ns in matching:
            self._tell(watcher, ns, added=True)

    def _tell(self, watcher: Watcher, ns: TrackNamespace, added: bool) -> None:
        if not namespace_has_prefix(ns, watcher.prefix):
            return
        suffix = ns[len(watcher.prefix) :]
        try:
            if added and ns not in watcher.announced:
                watcher.announced.add(ns)
                watcher.session.session.send_namespace(watcher.request_id, suffix)
            elif not added and ns in watcher.announced:
                watcher.announced.discard(ns)
                watcher.session.session.send_namespace_done(watcher.request_id, suffix)
        except SessionError:
            return
        watcher.session._flush()

    # -- subscriptions ------------------------------------------------------------------------------------------

    def _publishers(self, ns: TrackNamespace, exclude: MoqSession | None = None) -> Iterator[Announcement]:
        """Announcements whose namespace prefixes `ns`, longest first (the most specific publisher)."""
        # A publisher that sent GOAWAY gets no new requests (draft-22 §9.2); what it already serves goes on.
        found = [
            a
            for a in self.announcements
            if namespace_has_prefix(ns, a.namespace) and a.session is not exclude and a.session.goaway is None
        ]
        found.sort(key=lambda a: -len(a.namespace))
        return iter(found)

    async def _subscribe(self, session: MoqSession, rid: int, msg: Subscribe) -> None:
        key = (msg.namespace, msg.name)
        if msg.namespace[:1] == (b".session",):
            session.session.reject(rid, RequestErrorCode.DOES_NOT_EXIST, "session-level tracks are not forwarded")
            return
        rt = await self._track_for(key, session, msg)
        if rt is None:
            return
        if session.session.is_closed:
            return
        try:
            session.accept_subscription(rid, msg, rt.track)
        except SessionError:
            return  # the subscriber cancelled while we waited
        rt.subscribers.add((session, rid))
        self._refresh_forward(rt)
        task = session._serving.get(rid)
        if task is not None:
            task.add_done_callback(lambda _: self._unsubscribe(rt, session, rid))
        session._flush()

    async def _track_for(self, key: TrackKey, session: MoqSession, msg: Subscribe | None) -> RelayTrack | None:
        """The track for `key`, subscribing upstream (or waiting for a publisher) if need be; on failure the
        downstream request is rejected and None returned.

        Where from: the sessions that published a matching namespace, local ones before those our upstream told us
        of (`announce_upstream`); with none, the `--upstream` relay. A request that came from our upstream relay is
        answered from local publishers only, never sent back up (no loop)."""
        from_upstream = self._is_upstream(session)
        deadline = asyncio.get_running_loop().time() + self._rendezvous(msg)
        upstream_refused = False  # the upstream relay had nothing: ask again only once something changed here
        while True:
            arrivals = self._arrivals
            rt = self.tracks.get(key)
            if rt is not None and from_upstream and rt.via_upstream:
                if msg is not None:
                    session.session.reject(_rid(msg), RequestErrorCode.DOES_NOT_EXIST, "only known upstream here")
                return None
            if rt is not None and rt.ready is not None:
                try:
                    await asyncio.shield(rt.ready)
                except RequestRejected as exc:
                    if not (rt.asked_relay and self.config.announce_upstream):
                        if msg is not None:
                            session.session.reject(_rid(msg), exc.code, exc.reason)
                        return None
                    # Another request asked the upstream relay, which had nothing yet: wait within our own
                    # rendezvous, as that request does, for the namespace to be announced here or upstream.
                    upstream_refused = True
                else:
                    if not rt.track.is_ended:
                        return rt
                    continue
            elif rt is not None and rt.live:
                return rt
            found = list(self._publishers(key[0], exclude=session if self.cluster_hub else None))
            local = [a for a in found if not a.upstream]
            sources = local if local or from_upstream else found
            ask_upstream = not sources and bool(self.config.upstream) and not from_upstream and not upstream_refused
            if sources or ask_upstream:
                rt = await self._open_upstream(key, sources, forward=msg is None or msg.parameters.forward != 0)
                if rt is not None:
                    return rt
                if sources or not self.config.announce_upstream:
                    if msg is not None:
                        session.session.reject(_rid(msg), RequestErrorCode.DOES_NOT_EXIST, "the publisher refused")
                    return None
                # An edge hears of new namespaces, here and upstream: wait for one within the rendezvous.
                upstream_refused = True
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                if msg is not None:
                    timed = self._rendezvous(msg) > 0
                    code = RequestErrorCode.TIMEOUT if timed else RequestErrorCode.DOES_NOT_EXIST
                    session.session.reject(_rid(msg), code, "no publisher for this track")
                return None
            if self._arrivals != arrivals:
                upstream_refused = False
                continue  # a publisher arrived while we were busy: look again
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except TimeoutError:
                pass
            else:
                upstream_refused = False

    def _rendezvous(self, msg: Subscribe | None) -> float:
        asked = msg.parameters.rendezvous_timeout if msg is not None else None
        seconds = asked / 1000 if asked is not None else self.config.rendezvous_timeout
        return min(seconds, MAX_RENDEZVOUS_SECONDS)

    async def _open_upstream(
        self, key: TrackKey, announcements: list[Announcement], forward: bool = True
    ) -> RelayTrack | None:
        """Subscribe upstream for `key` once, however many downstream subscribers wait for it: to every session
        that published a matching namespace (draft-22 §7), or to an upstream relay when none did; with FORWARD=1
        only if the first downstream subscriber wants objects (`forward`). The track is ready with the first
        upstream SUBSCRIBE_OK; it fails only when every upstream refused."""
        loop = asyncio.get_running_loop()
        track = Track(key[0], key[1], max_groups=self.config.cache_groups, max_bytes=self.config.cache_bytes)
        rt = RelayTrack(
            key,
            track,
            ready=loop.create_future(),
            paused=not forward,
            via_upstream=all(a.upstream for a in announcements),
            asked_relay=not announcements,
        )
        self.tracks[key] = rt
        ready = rt.ready
        assert ready is not None
        upstreams = list(dict.fromkeys(a.session for a in announcements))
        if not upstreams:
            relay_upstream = await self._upstream()
            upstreams = [relay_upstream] if relay_upstream is not None else []
        errors: list[RequestRejected] = []

        async def subscribe(upstream: MoqSession) -> None:
            asked = 0 if rt.paused else 1
            try:
                sub = await upstream.subscribe(key[0], key[1], Parameters(forward=asked), into=track)
            except (RequestRejected, ConnectionError, OSError) as exc:
                if not isinstance(exc, RequestRejected):
                    exc = RequestRejected(RequestErrorCode.INTERNAL_ERROR, str(exc))
                errors.append(exc)
                return
            if track.is_ended or self.tracks.get(key) is not rt:
                sub.cancel()  # everyone left while we waited
                return
            sub.on_end = lambda _sub, status, reason: self._source_ended(rt, upstream, status, reason)
            rt.sources[upstream] = sub.request_id
            self.upstream_subscriptions += 1
            if asked != (0 if rt.paused else 1):  # the audience paused or resumed while we waited
                with contextlib.suppress(SessionError):
                    upstream.session.request_update(sub.request_id, Parameters(forward=0 if rt.paused else 1))
                    upstream._flush()
            if sub.ok is not None and not track.properties:
                track.properties = sub.ok.properties
            logger.info("subscribed upstream for %s (%d source(s))", rt.name, len(rt.sources))
            if not ready.done():
                ready.set_result(None)

        attempts: asyncio.Future[list[None]] = asyncio.ensure_future(asyncio.gather(*(subscribe(u) for u in upstreams)))
        first: set[asyncio.Future[Any]] = {attempts, ready}
        await asyncio.wait(first, return_when=asyncio.FIRST_COMPLETED)
        if ready.done():
            self._spawn(_settle(attempts))  # later sources join as they answer
            self._watch_end(rt)
            return rt
        self.tracks.pop(key, None)
        error = errors[-1] if errors else RequestRejected(RequestErrorCode.DOES_NOT_EXIST, "no upstream")
        ready.set_exception(error)
        ready.exception()  # retrieved: waiters re-raise it themselves
        return None

    def _source_ended(self, rt: RelayTrack, session: MoqSession, status: int, reason: str) -> None:
        """One upstream of `rt` ended; the track ends with the last one."""
        rt.sources.pop(session, None)
        if not rt.sources:
            self._end_track(rt, status, reason)

    def _watch_end(self, rt: RelayTrack) -> None:
        """Drop the track from routing once its upstream ends (downstream writers finish from the cache)."""

        async def wait() -> None:
            consumer = rt.track.consumer_at_end()
            while not rt.track.is_ended:
                await consumer.next()
            if self.tracks.get(rt.key) is rt:
                del self.tracks[rt.key]
            if rt.published:
                self._sync_upstream_namespaces()  # a PUBLISHed track's namespace was forwarded for it

        self._spawn(wait())

    def _unsubscribe(self, rt: RelayTrack, session: MoqSession, rid: int) -> None:
        rt.subscribers.discard((session, rid))
        if not rt.subscribers and not rt.published and self.tracks.get(rt.key) is rt:
            self._drop_track(rt)
        else:
            self._refresh_forward(rt)  # the one that left may have been the last that wanted objects

    def _drop_track(self, rt: RelayTrack) -> None:
        """The last subscriber left: end the upstream subscription (§7: it ends when the last one leaves)."""
        self.tracks.pop(rt.key, None)
        for source, request_id in list(rt.sources.items()):
            sub = source._subscriptions.get(request_id)
            if sub is not None:
                sub.track = None  # don't let the upstream's end touch a cache nobody reads
                sub.on_end = None
                sub.cancel()
        if rt.sources:
            logger.info("last subscriber left %s: unsubscribed upstream", rt.name)
        rt.sources.clear()

    def _end_track(self, rt: RelayTrack, status: int, reason: str) -> None:
        rt.track.end_track(status, reason)
        if self.tracks.get(rt.key) is rt:
            del self.tracks[rt.key]

    # -- PUBLISH and SUBSCRIBE_TRACKS ---------------------------------------------------------------------------

    def _publish(self, session: MoqSession, rid: int, msg: Publish) -> None:
        key = (msg.namespace, msg.name)
        old = self.tracks.get(key)
        if old is not None and old.live and old.published:
            session.session.reject(rid, RequestErrorCode.UNINTERESTED, "the track is already published")
            return
        track = Track(
            msg.namespace,
            msg.name,
            msg.properties,
            max_groups=self.config.cache_groups,
            max_bytes=self.config.cache_bytes,
        )
        rt = RelayTrack(
            key,
            track,
            sources={session: rid},
            published=True,
            paused=msg.parameters.forward == 0,
            via_upstream=self._is_upstream(session),
        )
        self.tracks[key] = rt
        session.accept_publish(rid, msg, track)
        sub = session._subscriptions.get(rid)
        if sub is not None:
            sub.on_end = lambda _sub, status, reason: self._source_ended(rt, session, status, reason)
        self._watch_end(rt)
        logger.info("[%s] publishes track %s", session.session.session_id, rt.name)
        for watcher in self.track_watchers:
            if namespace_has_prefix(msg.namespace, watcher.prefix) and watcher.session is not session:
                self._offer(watcher, rt)
        self._sync_upstream_namespaces()
        self._publisher_arrived()

    async def _subscribe_tracks(self, session: MoqSession, rid: int, msg: SubscribeTracks) -> None:
        prefix = msg.namespace_prefix
        for other in self.track_watchers:
            if other.session is session and (
                namespace_has_prefix(other.prefix, prefix) or namespace_has_prefix(prefix, other.prefix)
            ):
                session.session.reject(rid, RequestErrorCode.PREFIX_OVERLAP, "overlaps an existing subscription")
                return
        watcher = Watcher(session, rid, prefix)
        self.track_watchers.append(watcher)
        session.session.accept(rid)
        for rt in list(self.tracks.values()):
            if rt.published and rt.live and namespace_has_prefix(rt.key[0], prefix) and session not in rt.sources:
                self._offer(watcher, rt)

    def _offer(self, watcher: Watcher, rt: RelayTrack) -> None:
        """PUBLISH a track to a SUBSCRIBE_TRACKS subscriber (never echoing its own tracks, §9.18)."""

        async def offer() -> None:
            with contextlib.suppress(RequestRejected, ConnectionError, SessionError):
                rid = await watcher.session.publish(rt.track)
                rt.subscribers.add((watcher.session, rid))

        self._spawn(offer())

    def _refresh_forward(self, rt: RelayTrack) -> None:
        """Pause a track's upstream (REQUEST_UPDATE FORWARD=0) once every downstream subscriber has FORWARD=0, and
        resume it (FORWARD=1) as soon as one wants objects again (draft-22 §7, §9.20.19): a paused audience costs
        the publisher nothing. A track PUBLISHed paused resumes the same way (from draft-20 on PUBLISH_OK cannot
        carry FORWARD). With no subscriber nothing changes: such a track is dropped, or, PUBLISHed, stays as its
        publisher chose."""
        if not rt.subscribers:
            return
        wanted = any(session.session.forwarding(rid) for session, rid in rt.subscribers)
        if wanted != rt.paused:
            return
        rt.paused = not wanted
        for source, request_id in rt.sources.items():
            with contextlib.suppress(SessionError):
                source.session.request_update(request_id, Parameters(forward=1 if wanted else 0))
                source._flush()
        logger.info("%s the upstream of %s", "resumed" if wanted else "paused", rt.name)

    def _on_update(self, session: MoqSession, event: RequestUpdated) -> None:
        """A downstream subscriber's REQUEST_UPDATE, applied by its session: FORWARD may pause or resume upstream."""
        if event.parameters.forward is None:
            return
        for rt in list(self.tracks.values()):
            if (session, event.request_id) in rt.subscribers:
                self._refresh_forward(rt)

    def _publisher_arrived(self) -> None:
        self._arrivals += 1
        self._changed.set()

    # -- FETCH and TRACK_STATUS ---------------------------------------------------------------------------------

    async def _fetch(self, session: MoqSession, rid: int, msg: Fetch) -> None:
        if msg.joining_request_id is not None:  # draft-18: served from the cache of the subscription it joins
            session.serve_joining_fetch(rid, msg)
            return
        key = (msg.namespace, msg.name)
        rt = self.tracks.get(key)
        if rt is not None and rt.track.largest is not None:
            session.serve_fetch(rid, msg, rt.track)
            return
        upstream = await self._forward_target(msg.namespace, session)
        if upstream is None:
            session.session.reject(rid, RequestErrorCode.DOES_NOT_EXIST, "no such track")
            return
        start, end = fetch_range(msg)
        try:
            objects = await upstream.fetch(msg.namespace, msg.name, start, end)
        except RequestRejected as exc:
            session.session.reject(rid, exc.code, exc.reason)
            return
        # A cache of just this range, to serve it with the same code as a cached track.
        cache = Track(msg.namespace, msg.name, max_groups=1 << 30, max_bytes=self.config.cache_bytes)
        for obj in objects:
            with contextlib.suppress(TrackError):
                cache.append(
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
        session.serve_fetch(rid, msg, cache)

    async def _track_status(self, session: MoqSession, rid: int, msg: TrackStatus) -> None:
        rt = self.tracks.get((msg.namespace, msg.name))
        if rt is not None and rt.live:
            params = Parameters(largest_object=rt.track.largest) if rt.track.largest else Parameters()
            session.session.accept(rid, params, rt.track.properties)
            return
        upstream = await self._forward_target(msg.namespace, session)
        if upstream is None:
            session.session.reject(rid, RequestErrorCode.DOES_NOT_EXIST, "no such track")
            return
        try:
            ok = await upstream.track_status(msg.namespace, msg.name)
        except RequestRejected as exc:
            session.session.reject(rid, exc.code, exc.reason)
            return
        session.session.accept(rid, ok.parameters, ok.properties)

    async def _forward_target(self, ns: TrackNamespace, session: MoqSession) -> MoqSession | None:
        """Where a FETCH or TRACK_STATUS we cannot answer goes: the most specific local publisher, else (unless the
        request came from our upstream relay) one our upstream told us of, else the upstream relay."""
        found = list(self._publishers(ns, exclude=session))
        local = [a for a in found if not a.upstream]
        if local:
            return local[0].session
        if self._is_upstream(session):
            return None
        return found[0].session if found else await self._upstream()

    # -- upstream relays ----------------------------------------------------------------------------------------

    async def _upstream(self) -> MoqSession | None:
        """A session to the first reachable `--upstream` relay (connected once, reused)."""
        async with self._upstream_lock:
            for url in self.config.upstream:
                existing = self._upstreams.get(url)
                if existing is not None and not existing.session.is_closed:
                    return existing
                try:
                    upstream = await connect(
                        url,
                        fingerprint=self.config.upstream_fingerprint,
                        verify=not self.config.upstream_insecure,
                    )
                except (OSError, ConnectionError, TimeoutError, Exception) as exc:
                    logger.warning("upstream %s unreachable: %s", url, exc)
                    continue
                upstream.on_request = self._on_request  # an upstream may route requests to us too
                upstream.on_cancel = self.on_cancelled
                upstream.on_update = self._on_update
                self._upstreams[url] = upstream
                logger.info("connected upstream %s (draft-%d)", url, upstream.version.value)
                return upstream
        return None

    def reconnect_upstream(self) -> None:
        """Drop the upstream link now and connect again (a cluster's supervisor restarted the hub: the old link is
        dead, but QUIC would only notice at its idle timeout)."""
        if self._link is not None:
            logger.info("reconnecting the upstream link")
            self._link.close(SessionErrorCode.NO_ERROR, "reconnecting")

    def forget_peer(self, path: str) -> None:
        """Close the sessions whose SETUP named `path` (a cluster hub drops the link of a worker that died, so its
        namespaces are withdrawn now rather than at the link's idle timeout)."""
        for session in list(self.sessions):
            if session.peer_setup is not None and session.peer_setup.path == path:
                logger.info("[%s] forgetting %s: it is gone", session.session.session_id, path)
                session.close(SessionErrorCode.NO_ERROR, "the peer is gone")

    def _is_upstream(self, session: MoqSession) -> bool:
        return any(session is upstream for upstream in self._upstreams.values())

    # -- the upstream link (announce_upstream) ------------------------------------------------------------------

    async def _keep_upstream_link(self) -> None:
        """Keep a session to the upstream relay for the relay's lifetime: forward our namespaces on it and hear
        its namespaces; when it goes, forget what it told us and connect again."""
        while True:
            link = await self._upstream()
            if link is None:
                await asyncio.sleep(UPSTREAM_RETRY_SECONDS)
                continue
            self._link = link
            self._forwarded.clear()
            self._forwarding.clear()
            hearing = asyncio.ensure_future(self._hear_upstream(link))
            self._sync_upstream_namespaces()
            try:
                await link.wait_closed()
            finally:
                hearing.cancel()
                self._link = None
                self._forwarded.clear()
                self._forwarding.clear()
            self._session_gone(link)  # what it announced is withdrawn here, what it fed ends
            logger.warning("lost the upstream link (%s): reconnecting", (link.close_reason or (0, ""))[1])
            await asyncio.sleep(UPSTREAM_RETRY_SECONDS)  # not a tight loop against an upstream that drops us

    async def _hear_upstream(self, link: MoqSession) -> None:
        """SUBSCRIBE_NAMESPACE (every namespace) on the upstream link; what it announces becomes announcements by
        the link session, so local watchers hear of them and local SUBSCRIBEs go there."""
        try:
            watch = await link.subscribe_namespace(())
        except (RequestRejected, ConnectionError) as exc:
            logger.warning("the upstream refused SUBSCRIBE_NAMESPACE (%s): its namespaces are not announced here", exc)
            return
        learned: dict[TrackNamespace, Announcement] = {}
        warned = False
        async for added, ns in watch:
            if added and ns not in learned:
                if len(learned) >= MAX_UPSTREAM_NAMESPACES:
                    if not warned:
                        logger.warning("over %d namespaces upstream: the rest are not announced here", len(learned))
                        warned = True
                    continue
                logger.debug("upstream publishes namespace %s", render_name(ns))
                learned[ns] = Announcement(link, watch.request_id, ns, upstream=True)
                self._announce(learned[ns])
            elif not added and ns in learned:
                self._withdraw(learned.pop(ns))

    def _local_namespaces(self) -> set[TrackNamespace]:
        """Namespaces published here, by PUBLISH_NAMESPACE or as a PUBLISHed track's (not learned from upstream)."""
        names = {a.namespace for a in self.announcements if not a.upstream}
        names.update(rt.key[0] for rt in self.tracks.values() if rt.published and rt.live and not rt.via_upstream)
        return names

    def _sync_upstream_namespaces(self) -> None:
        """Make the namespaces forwarded on the upstream link those published here: PUBLISH_NAMESPACE the new ones,
        withdraw the gone ones (no-op without a link)."""
        link = self._link
        if link is None or link.session.is_closed:
            return
        wanted = self._local_namespaces()
        for ns in [n for n in self._forwarded if n not in wanted]:
            link.withdraw(self._forwarded.pop(ns))
            logger.info("withdrew namespace %s upstream", render_name(ns))
        for ns in sorted(wanted - self._forwarded.keys() - self._forwarding):
            if len(self._forwarded) + len(self._forwarding) >= MAX_FORWARDED_NAMESPACES:
                if not self._warned_forward_bound:
                    logger.warning("%d namespaces forwarded upstream: no more", MAX_FORWARDED_NAMESPACES)
                    self._warned_forward_bound = True
                break
            self._forwarding.add(ns)
            self._spawn(self._forward_namespace(link, ns))

    async def _forward_namespace(self, link: MoqSession, ns: TrackNamespace) -> None:
        try:
            rid = await link.publish_namespace(ns)
        except (RequestRejected, ConnectionError) as exc:
            logger.warning("the upstream refused namespace %s: %s", render_name(ns), exc)
            if link is self._link:
                self._forwarding.discard(ns)
            return
        if link is not self._link:
            return  # that link is gone; the next one forwards afresh
        self._forwarding.discard(ns)
        self._forwarded[ns] = rid
        logger.info("forwarded namespace %s upstream", render_name(ns))
        self._sync_upstream_namespaces()  # withdraws it at once if it went while we waited


async def _settle(waiter: asyncio.Future[Any]) -> None:
    """Let the remaining upstream attempts finish (their outcome is handled where they run)."""
    with contextlib.suppress(Exception):
        await waiter


def _rid(msg: Subscribe) -> int:
    return msg.request_id
