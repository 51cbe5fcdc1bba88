"""A track as the relay and the publishing API see it: a bounded cache of groups and cursors over it.

DESIGN.md decision 3: producer/consumer pairs. A `Track` is written by one producer (`append`, `end_subgroup`,
`end_track`); any number of `TrackConsumer`s read it, each an independent cursor over the same immutable
`CachedObject`s, so fan-out to N subscribers hands out N cursors and copies no payload.

Decision 4: everything is bounded. The cache keeps the newest groups within `max_groups` and `max_bytes` (the
newest group is always kept whole, even when it alone is larger). A consumer that falls behind the cache does
not slow anyone: when the objects it would read next have been evicted it jumps forward, and reports the groups
it lost, so its writer can reset their streams and go on with the newest.

Objects are delivered to consumers in arrival order; within a subgroup that is object-id order, as the producer
must append them (§11.3: a relay never reorders objects of a stream).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass, field

import msgspec

from moq.errors import MoqError
from moq.wire.codes import ObjectStatus
from moq.wire.primitives import Location, Properties, TrackNamespace

#: Default bound on the groups one track keeps cached. Audio tracks commonly make one group per 20 ms frame, so
#: a handful would hold a fraction of a second; 64 is ~1.3 s of such audio and minutes of 2-second-GOP video, where
#: MAX_CACHE_BYTES is the bound that bites.
MAX_CACHE_GROUPS = 64
#: Default bound on the payload bytes one track keeps cached.
MAX_CACHE_BYTES = 32 * 1024 * 1024


class TrackError(MoqError, ValueError):
    """The producer broke the model's rules (an object out of order, appended after the end...)."""


class CachedObject(msgspec.Struct, frozen=True):
    """One object as published, immutable (§2.2). `subgroup_id` is None for a datagram object."""

    group_id: int
    subgroup_id: int | None
    object_id: int
    payload: bytes
    publisher_priority: int | None = None
    status: ObjectStatus = ObjectStatus.NORMAL
    properties: Properties = ()

    @property
    def location(self) -> Location:
        return Location(self.group_id, self.object_id)


class SubgroupEnded(msgspec.Struct, frozen=True):
    """Every object of (group, subgroup) has been appended: a writer may FIN that stream."""

    group_id: int
    subgroup_id: int


class SubgroupReset(msgspec.Struct, frozen=True):
    """(group, subgroup) was cut short upstream (its stream was reset): a writer resets that stream too."""

    group_id: int
    subgroup_id: int


class GroupsDropped(msgspec.Struct, frozen=True):
    """A consumer fell behind: these groups were evicted before it read them all (oldest first)."""

    group_ids: tuple[int, ...]


class TrackEnded(msgspec.Struct, frozen=True):
    """The producer ended the track: no more objects will come. `status` is a PUBLISH_DONE code (§12.4)."""

    final: Location | None
    status: int = 0x2  # TRACK_ENDED
    reason: str = ""


TrackEvent = CachedObject | SubgroupEnded | SubgroupReset | GroupsDropped | TrackEnded


@dataclass(slots=True)
class _Subgroup:
    objects: list[CachedObject] = field(default_factory=list)
    arrivals: list[float] = field(default_factory=list)  # time.monotonic() when each object was appended
    ended: bool = False
    ended_at: float = 0.0  # time.monotonic() when its end was known (the upstream FIN)


@dataclass(slots=True)
class _Group:
    group_id: int
    first_seq: int
    subgroups: dict[int | None, _Subgroup] = field(default_factory=dict)
    size: int = 0
    evicted: bool = False


# A log entry: (group, subgroup id, index of the object in it, or -1 for "subgroup ended", -2 for "reset").
# It names the group object, not its id: a group evicted and later re-created (a late object) is another group.
_Entry = tuple[_Group, int | None, int]


class Track:
    """A track's cache and its producer side (see the module docstring)."""

    def __init__(
        self,
        namespace: TrackNamespace,
        name: bytes,
        properties: Properties = (),
        *,
        max_groups: int = MAX_CACHE_GROUPS,
        max_bytes: int = MAX_CACHE_BYTES,
    ) -> None:
        if max_groups < 1 or max_bytes < 1:
            raise ValueError("a track cache must hold at least one group and one byte")
        self.namespace = namespace
        self.name = name
        self.properties = properties
        self.max_groups = max_groups
        self.max_bytes = max_bytes
        self.largest: Location | None = None
        self.ended: Location | None = None
        self.is_ended = False
        self.end_status: tuple[int, str] = (0x2, "")
        self.cached_bytes = 0
        self.evicted_groups = 0
        self._groups: dict[int, _Group] = {}
        self._log: deque[_Entry] = deque()
        self._base = 0  # sequence number of self._log[0]
        self._waiters: list[asyncio.Future[None]] = []

    # -- producer -----------------------------------------------------------------------------------------------

    def append(self, obj: CachedObject) -> None:
        """Add an object; consumers see it next. Within a subgroup, object ids must increase."""
        if self.is_ended:
            raise TrackError("the track has ended")
        group = self._groups.get(obj.group_id)
        if group is None:
            if self._groups and obj.group_id < min(self._groups) and len(self._groups) >= self.max_groups:
                return  # older than everything we keep, and no room: it would be evicted at once
            group = _Group(obj.group_id, self._base + len(self._log))
            self._groups[obj.group_id] = group
        sub = group.subgroups.get(obj.subgroup_id)
        if sub is None:
            sub = group.subgroups[obj.subgroup_id] = _Subgroup()
        elif sub.ended:
            raise TrackError(f"subgroup {obj.group_id}/{obj.subgroup_id} has ended")
        elif obj.subgroup_id is not None and sub.objects and obj.object_id <= sub.objects[-1].object_id:
            raise TrackError(f"object {obj.object_id} does not follow {sub.objects[-1].object_id} in its subgroup")
        sub.objects.append(obj)
        sub.arrivals.append(time.monotonic())
        size = len(obj.payload)
        group.size += size
        self.cached_bytes += size
        self._log.append((group, obj.subgroup_id, len(sub.objects) - 1))
        if self.largest is None or obj.location > self.largest:
            self.largest = obj.location
        self._evict()
        self._wake()

    def end_subgroup(self, group_id: int, subgroup_id: int, reset: bool = False) -> None:
        """Mark (group, subgroup) complete (its stream was FIN'd upstream), or cut short (`reset`)."""
        group = self._groups.get(group_id)
        if group is None:
            return
        sub = group.subgroups.setdefault(subgroup_id, _Subgroup())
        if sub.ended:
            return
        sub.ended = True
        sub.ended_at = time.monotonic()
        self._log.append((group, subgroup_id, -2 if reset else -1))
        self._wake()

    def end_track(self, status: int = 0x2, reason: str = "") -> None:
        """No more objects (PUBLISH_DONE, or the publisher went away): consumers finish after what is cached.
        `status` is the PUBLISH_DONE code downstream subscriptions end with (default TRACK_ENDED)."""
        if not self.is_ended:
            self.is_ended = True
            self.ended = self.largest
            self.end_status = (status, reason)
            self._wake()

    # -- readers ------------------------------------------------------------------------------------------------

    @property
    def latest_group(self) -> int | None:
        return max(self._groups) if self._groups else None

    @property
    def cached_groups(self) -> list[int]:
        """The ids of the groups held, ascending."""
        return sorted(self._groups)

    def consumer(self, start_group: int | None = None) -> TrackConsumer:
        """A cursor from the start of `start_group` (or the oldest cached group after it), or from the latest
        group when None: a new live subscriber starts at the latest group (§3.1: relays start there too)."""
        if start_group is None:
            start_group = self.latest_group
        if start_group is None:
            return TrackConsumer(self, self._base + len(self._log))
        candidates = [g for g in self._groups.values() if g.group_id >= start_group]
        seq = min((g.first_seq for g in candidates), default=self._base + len(self._log))
        return TrackConsumer(self, max(seq, self._base), from_group=start_group)

    def consumer_at_end(self) -> TrackConsumer:
        """A cursor that sees only what is appended from now on (a NEXT_OBJECT subscription), and no late object
        of a group older than the newest."""
        return TrackConsumer(self, self._base + len(self._log), from_group=self.latest_group or 0)

    def objects(self, start: Location, end: Location | None = None) -> list[CachedObject]:
        """Cached objects from `start` to `end` inclusive (None: to the largest), in group then object order,
        as a FETCH delivers them (§3.2). Objects no longer cached are simply absent."""
        out: list[CachedObject] = []
        for gid in sorted(self._groups):
            if gid < start.group or (end is not None and gid > end.group):
                continue
            items = [o for sub in self._groups[gid].subgroups.values() for o in sub.objects]
            items.sort(key=lambda o: o.object_id)
            for obj in items:
                loc = obj.location
                if loc >= start and (end is None or loc <= end):
                    out.append(obj)
        return out

    def has_group(self, group_id: int) -> bool:
        return group_id in self._groups

    def subgroup_ended_at(self, group_id: int, subgroup_id: int) -> float | None:
        """When (group, subgroup) was known complete (time.monotonic()), or None if it is not (or not cached)."""
        group = self._groups.get(group_id)
        sub = group.subgroups.get(subgroup_id) if group is not None else None
        return sub.ended_at if sub is not None and sub.ended else None

    # -- internals ----------------------------------------------------------------------------------------------

    def _evict(self) -> None:
        while len(self._groups) > 1 and (len(self._groups) > self.max_groups or self.cached_bytes > self.max_bytes):
            oldest = min(self._groups)
            group = self._groups.pop(oldest)
            self.cached_bytes -= group.size
            self.evicted_groups += 1
            group.evicted = True
            group.subgroups = {}  # free the payloads now; log entries still naming the group are skipped on read
        # Trim log entries of evicted groups from the front.
        while self._log and self._log[0][0].evicted:
            self._log.popleft()
            self._base += 1

    def _wake(self) -> None:
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def _entry(self, seq: int) -> _Entry:
        return self._log[seq - self._base]

    def _wait(self) -> asyncio.Future[None]:
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        return waiter


class TrackConsumer:
    """One reader's cursor over a `Track` (see the module docstring)."""

    def __init__(self, track: Track, seq: int, from_group: int = 0) -> None:
        self.track = track
        self._seq = seq
        # Groups older than this are not ours to deliver: the log is in arrival order, and objects of an older group
        # may arrive after the first object of the group we start at (its stream was slower).
        self._from_group = from_group
        self._dropped: list[int] = []
        self._active: set[int] = set()  # groups this cursor has delivered objects of (a writer has streams open)
        self.closed = False
        #: When the object `poll`/`next` last returned was appended (time.monotonic()): its age decides
        #: delivery timeouts (draft-22 §5.2).
        self.arrival = 0.0

    def poll(self) -> TrackEvent | None:
        """The next event if one is ready, else None (never waits)."""
        track = self.track
        if self._seq < track._base:
            self._seq = track._base  # the entries we would read were evicted, with their groups
            self._lose([gid for gid in sorted(self._active) if gid not in track._groups])
        while self._seq < track._base + len(track._log):
            group, sid, index = track._entry(self._seq)
            self._seq += 1
            gid = group.group_id
            if gid < self._from_group:
                continue
            if group.evicted:
                self._lose([gid])
                continue
            if self._dropped:
                dropped, self._dropped = tuple(self._dropped), []
                self._seq -= 1  # read this entry again after reporting the drop
                return GroupsDropped(dropped)
            if index < 0:
                assert sid is not None
                return SubgroupEnded(gid, sid) if index == -1 else SubgroupReset(gid, sid)
            if gid not in self._active:
                self._active.add(gid)
                if len(self._active) > 2 * track.max_groups:  # keep it bounded: forget groups long gone
                    self._active.intersection_update(track._groups)
            sub = group.subgroups[sid]
            self.arrival = sub.arrivals[index]
            return sub.objects[index]
        if self._dropped:
            dropped, self._dropped = tuple(self._dropped), []
            return GroupsDropped(dropped)
        if track.is_ended:
            return TrackEnded(track.ended, *track.end_status)
        return None

    def _lose(self, group_ids: list[int]) -> None:
        for gid in group_ids:
            if gid not in self._dropped:
                self._dropped.append(gid)
            self._active.discard(gid)

    async def next(self) -> TrackEvent:
        """The next event, waiting for the producer when there is none yet."""
        while True:
            event = self.poll()
            if event is not None:
                return event
            if self.closed:
                return TrackEnded(self.track.ended, *self.track.end_status)
            await self.track._wait()

    @property
    def lag(self) -> int:
        """Log entries between this cursor and the newest (0 when caught up)."""
        return max(0, self.track._base + len(self.track._log) - self._seq)

    def skip_to_latest_group(self) -> tuple[int, ...]:
        """Jump to the start of the newest group; returns the groups skipped (so their streams can be reset)."""
        latest = self.track.latest_group
        if latest is None:
            return ()
        target = self.track._groups[latest].first_seq
        skipped = sorted({gid for gid in self.track._groups if gid < latest})
        self._seq = max(self._seq, target)
        self._from_group = max(self._from_group, latest)  # what arrives later of the skipped groups stays skipped
        return tuple(skipped)

    def rewind_to_group(self, group_id: int) -> None:
        """Go back to the start of `group_id` (if it is still cached and behind us), to read it again: a writer
        whose subscriber was paused replays the current group from its start (it skips what it already sent)."""
        group = self.track._groups.get(group_id)
        if group is not None and group.first_seq < self._seq:
            self._seq = max(group.first_seq, self.track._base)
            self._from_group = min(self._from_group, group_id)
            self.track._wake()

    def close(self) -> None:
        self.closed = True
        self.track._wake()
