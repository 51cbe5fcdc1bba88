"""`moq publish --stage`: viewers brought on stage, their tracks listed in the broadcast's own catalog.

A viewer steps up by publishing its camera and microphone under NAME/stage/<name> (the watch page's "Join the
stage": PUBLISH_NAMESPACE, and the tracks a call page publishes: `catalog`, `video`, `audio`). The host, this
module inside `moq publish NAME --stage`, decides who appears:

- It SUBSCRIBE_NAMESPACEs NAME/stage. NAMESPACE NAME/stage/x is x asking to come on stage (deeper namespaces, and
  names that are not UTF-8 or longer than `MAX_STAGE_NAME_BYTES`, are nobody).
- `StageRoster` (no IO) answers: admitted while fewer than the limit (`--stage-max`, at most
  `MAX_STAGE_PARTICIPANTS`) are on stage and x is allowed (`--stage-allow`); else x waits in line (at most
  `MAX_STAGE_WAITING`), or is refused (not on the allow list, or the line is full).
- For each admitted x it SUBSCRIBEs to x's catalog. Every catalog it reads (object 0 of a new group; deltas of that
  group applied) gives x's entries (`moq.media.catalog.stage_tracks`: x's first LOC video and audio, with x's
  namespace and name), and the broadcast publishes a new catalog group listing them after its own tracks.
- NAMESPACE_DONE, the end of x's catalog track, or no catalog within `STAGE_CATALOG_WAIT_SECONDS`: x leaves the
  stage, the broadcast publishes a catalog without x, and the first one waiting in line (if any) is admitted.

Viewers see the stage in the catalog they already follow: a player plays each namespace other than the
broadcast's in a tile of its own (web/js/stage.js).

SUBSCRIBEs for a participant's tracks reach the host too: a relay sends a SUBSCRIBE to every session whose
published namespace is a prefix of the track's (draft-22 §7), and NAME prefixes NAME/stage/x. The host has no such
track and refuses (DOES_NOT_EXIST, the default answer); the relay keeps the track the participant feeds.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
from collections.abc import Callable, Iterable

from cli.media_glue import status
from moq.api import MoqSession, NamespaceWatch, Subscription
from moq.errors import RequestRejected
from moq.media.catalog import (
    CATALOG_TRACK_NAME,
    Catalog,
    CatalogDelta,
    Track,
    apply_delta,
    decode_catalog,
    namespace_text,
    stage_tracks,
)
from moq.media.errors import CatalogError
from moq.session.events import ObjectReceived
from moq.wire.codes import ObjectStatus
from moq.wire.primitives import TrackNamespace

logger = logging.getLogger(__name__)

#: The namespace field under the broadcast's where stage participants publish: NAME/stage/<name>.
STAGE_FIELD = b"stage"
#: Participants on stage at once, at most. Every viewer decodes each of them (a video decoder and an audio decoder
#: per participant in every page), and the catalog grows by two entries for each.
MAX_STAGE_PARTICIPANTS = 8
#: Viewers remembered in line while the stage is full (admitted in the order they asked, as places free up).
MAX_STAGE_WAITING = 32
#: A participant's name (the last namespace field) longer than this is nobody's: it is shown on every tile.
MAX_STAGE_NAME_BYTES = 64
#: An admitted participant whose catalog has not arrived within this many seconds leaves the stage (its place must
#: not be held by a page that never publishes).
STAGE_CATALOG_WAIT_SECONDS = 10.0
#: A participant's catalog object larger than this is ignored (a camera and a microphone take well under 1 KiB).
MAX_STAGE_CATALOG_BYTES = 64 * 1024


class Admission(enum.Enum):
    """What `StageRoster.ask` decided."""

    ADMITTED = "admitted"
    WAITING = "waiting"  # the stage is full: in line
    ALREADY = "already"  # on stage or in line already (a duplicate request): nothing changes
    NOT_ALLOWED = "not allowed"  # not on --stage-allow
    LINE_FULL = "line full"  # the stage and the line are full


def check_stage_name(name: str) -> str:
    """`name` if it can be a stage participant's name (one namespace field: non-empty, no '/', at most
    `MAX_STAGE_NAME_BYTES` of UTF-8); ValueError saying why not otherwise."""
    if not name:
        raise ValueError("a stage name must not be empty")
    if "/" in name:
        raise ValueError(f"stage name {name!r}: no '/' (a name is one namespace field)")
    if len(name.encode()) > MAX_STAGE_NAME_BYTES:
        raise ValueError(f"stage name {name[:20]!r}...: over {MAX_STAGE_NAME_BYTES} bytes")
    return name


def parse_stage_allow(text: str) -> frozenset[str]:
    """'alice,bob' -> {'alice', 'bob'} (spaces around names ignored); ValueError for an empty list or a bad name."""
    names = frozenset(check_stage_name(part.strip()) for part in text.split(",") if part.strip())
    if not names:
        raise ValueError("--stage-allow needs at least one name, e.g. alice,bob")
    return names


def stage_participant(namespace: TrackNamespace, prefix: TrackNamespace) -> str | None:
    """The participant a namespace under `prefix` (NAME/stage) names: NAME/stage/x -> 'x'; None for anything else
    (deeper or shallower namespaces, a name that is not UTF-8 or is too long)."""
    if len(namespace) != len(prefix) + 1 or namespace[: len(prefix)] != prefix:
        return None
    try:
        return check_stage_name(namespace[-1].decode())
    except (UnicodeDecodeError, ValueError):
        return None


class StageRoster:
    """Who is on stage and who waits in line (no IO; see the module notes). Names are unique."""

    def __init__(
        self,
        limit: int = MAX_STAGE_PARTICIPANTS,
        *,
        allow: Iterable[str] | None = None,
        max_waiting: int = MAX_STAGE_WAITING,
    ) -> None:
        if not 1 <= limit <= MAX_STAGE_PARTICIPANTS:
            raise ValueError(f"a stage holds 1 to {MAX_STAGE_PARTICIPANTS} participants, not {limit}")
        if not 0 <= max_waiting <= MAX_STAGE_WAITING:
            raise ValueError(f"a stage's line holds 0 to {MAX_STAGE_WAITING} viewers, not {max_waiting}")
        self.limit = limit
        self.allow = frozenset(allow) if allow is not None else None
        self.max_waiting = max_waiting
        self._on_stage: list[str] = []
        self._waiting: list[str] = []

    @property
    def on_stage(self) -> tuple[str, ...]:
        """The participants on stage, in the order they were admitted."""
        return tuple(self._on_stage)

    @property
    def waiting(self) -> tuple[str, ...]:
        """The viewers in line, first come first."""
        return tuple(self._waiting)

    def ask(self, name: str) -> Admission:
        """`name` asks to come on stage."""
        if name in self._on_stage or name in self._waiting:
            return Admission.ALREADY
        if self.allow is not None and name not in self.allow:
            return Admission.NOT_ALLOWED
        if len(self._on_stage) < self.limit:
            self._on_stage.append(name)
            return Admission.ADMITTED
        if len(self._waiting) < self.max_waiting:
            self._waiting.append(name)
            return Admission.WAITING
        return Admission.LINE_FULL

    def leave(self, name: str) -> tuple[str, ...]:
        """`name` leaves the stage (or the line); returns those admitted from the line into the places freed."""
        if name in self._waiting:
            self._waiting.remove(name)
            return ()
        if name not in self._on_stage:
            return ()
        self._on_stage.remove(name)
        admitted: list[str] = []
        while self._waiting and len(self._on_stage) < self.limit:
            first = self._waiting.pop(0)
            self._on_stage.append(first)
            admitted.append(first)
        return tuple(admitted)


class StageHost:
    """The IO around a `StageRoster` (see the module notes): follows NAME/stage on `session`, reads each admitted
    participant's catalog, and calls `on_change` with the entries the broadcast's catalog must list (participants
    in the order they were admitted) whenever they change."""

    def __init__(
        self,
        session: MoqSession,
        broadcast: TrackNamespace,
        roster: StageRoster,
        on_change: Callable[[tuple[Track, ...]], None],
        *,
        catalog_wait: float = STAGE_CATALOG_WAIT_SECONDS,
    ) -> None:
        self.session = session
        self.prefix: TrackNamespace = (*broadcast, STAGE_FIELD)
        self.roster = roster
        self.on_change = on_change
        self.catalog_wait = catalog_wait
        #: Each participant's entries, once its catalog arrived.
        self.entries: dict[str, tuple[Track, ...]] = {}
        self.joined = 0
        self.refused = 0
        self._namespaces: dict[str, TrackNamespace] = {}
        self._followers: dict[str, asyncio.Task[None]] = {}
        self._watch: NamespaceWatch | None = None
        self._listed: tuple[Track, ...] = ()

    @property
    def prefix_text(self) -> str:
        return "/".join(f.decode(errors="replace") for f in self.prefix)

    async def start(self) -> None:
        """SUBSCRIBE_NAMESPACE NAME/stage; raises `RequestRejected` if the relay refuses."""
        self._watch = await self.session.subscribe_namespace(self.prefix)

    async def run(self) -> None:
        """Follow the stage until the namespace subscription ends (the session's end) or the task is cancelled."""
        assert self._watch is not None, "start() first"
        try:
            async for added, namespace in self._watch:
                name = stage_participant(namespace, self.prefix)
                if name is None:
                    continue
                if added:
                    self._namespaces[name] = namespace
                    self._ask(name)
                elif self._namespaces.pop(name, None) is not None:
                    self._leave(name, "left")
        finally:
            self.close()

    def close(self) -> None:
        """Stop following: cancel the namespace subscription and every catalog subscription."""
        if self._watch is not None:
            self._watch.cancel()
        for task in self._followers.values():
            task.cancel()
        self._followers.clear()

    def tracks(self) -> tuple[Track, ...]:
        """The entries to list: every participant on stage whose catalog has arrived, in admission order."""
        return tuple(t for name in self.roster.on_stage for t in self.entries.get(name, ()))

    def figures(self) -> dict[str, object]:
        return {
            "on_stage": list(self.roster.on_stage),
            "waiting": list(self.roster.waiting),
            "joined": self.joined,
            "refused": self.refused,
        }

    # -- admission -------------------------------------------------------------------------------------------------

    def _ask(self, name: str) -> None:
        answer = self.roster.ask(name)
        if answer is Admission.ADMITTED:
            self._admit(name)
        elif answer is Admission.WAITING:
            status(f"stage: {name} waits in line (the stage is full: {self.roster.limit} on stage)")
        elif answer is Admission.NOT_ALLOWED:
            self.refused += 1
            status(f"stage: {name} is not on --stage-allow: not brought on stage")
        elif answer is Admission.LINE_FULL:
            self.refused += 1
            status(f"stage: {name} refused: the stage and its line are full")

    def _admit(self, name: str) -> None:
        self.joined += 1
        status(f"stage: {name} joined ({len(self.roster.on_stage)} of {self.roster.limit} on stage)")
        namespace = self._namespaces[name]
        self._followers[name] = asyncio.create_task(self._follow(name, namespace))

    def _leave(self, name: str, why: str) -> None:
        was_on = name in self.roster.on_stage
        admitted = self.roster.leave(name)
        task = self._followers.pop(name, None)
        if task is not None and task is not asyncio.current_task():
            task.cancel()
        self.entries.pop(name, None)
        if was_on:
            status(f"stage: {name} {why}")
        for other in admitted:
            self._admit(other)
        self._publish()

    def _publish(self) -> None:
        listed = self.tracks()
        if listed != self._listed:
            self._listed = listed
            self.on_change(listed)

    # -- a participant's catalog ---------------------------------------------------------------------------------

    async def _follow(self, name: str, namespace: TrackNamespace) -> None:
        """Read `name`'s catalog until it ends; then `name` leaves the stage."""
        why = "left (its catalog ended)"
        sub: Subscription | None = None
        try:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + self.catalog_wait
            try:
                sub = await asyncio.wait_for(self.session.subscribe(namespace, CATALOG_TRACK_NAME), self.catalog_wait)
            except (RequestRejected, TimeoutError, ConnectionError) as exc:
                why = f"left: its catalog cannot be read ({exc or type(exc).__name__})"
                return
            catalog: Catalog | None = None
            group: int | None = None
            while True:
                if catalog is None:
                    try:
                        obj = await asyncio.wait_for(sub.next(), max(0.0, deadline - loop.time()))
                    except TimeoutError:
                        why = f"left: no catalog within {self.catalog_wait:g} s"
                        return
                else:
                    obj = await sub.next()
                if obj is None:
                    return
                read = self._read(name, namespace, obj, catalog, group)
                if read is None:
                    continue
                catalog, group = read
                entries = stage_tracks(catalog, namespace, label=name)
                if entries != self.entries.get(name):
                    self.entries[name] = entries
                    kinds = ", ".join(t.role or t.name for t in entries) or "nothing (camera and microphone off)"
                    status(f"stage: the catalog lists {name}: {kinds}")
                    self._publish()
        except asyncio.CancelledError:
            why = ""
            raise
        except Exception as exc:  # a bug of ours must not take the broadcast down: the participant leaves
            logger.exception("stage: following %s failed", name)
            why = f"left: {exc}"
        finally:
            if sub is not None:
                sub.cancel()
            if why and self._followers.get(name) is asyncio.current_task():
                self._followers.pop(name, None)
                self._leave(name, why)

    def _read(
        self, name: str, namespace: TrackNamespace, obj: ObjectReceived, catalog: Catalog | None, group: int | None
    ) -> tuple[Catalog, int] | None:
        """The catalog after one object of the participant's catalog track, or None when it changes nothing: an
        independent catalog in object 0 of a group newer than the one we have, or a delta of that group."""
        if obj.status != ObjectStatus.NORMAL or not obj.payload:
            return None
        if len(obj.payload) > MAX_STAGE_CATALOG_BYTES:
            logger.warning("stage: %s's catalog object is %d bytes: ignored", name, len(obj.payload))
            return None
        try:
            parsed = decode_catalog(obj.payload)
            if isinstance(parsed, CatalogDelta):
                if catalog is None or obj.group_id != group:
                    return None  # a delta of a group whose catalog we did not read
                return apply_delta(catalog, parsed, namespace_text(namespace)), obj.group_id
        except CatalogError as exc:
            logger.warning("stage: %s's catalog cannot be read: %s", name, exc)
            return None
        if group is not None and obj.group_id < group:
            return None  # an older group, arrived late
        return parsed, obj.group_id


async def cancel_quietly(task: asyncio.Task[None] | None) -> None:
    """Cancel a task and wait for it, whatever it ends with."""
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task
