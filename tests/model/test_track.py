"""The track cache and its cursors: fan-out without copies, bounds, slow readers losing old groups."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given
from hypothesis import strategies as st

from moq.model import CachedObject, GroupsDropped, SubgroupEnded, Track, TrackEnded, TrackError
from moq.wire.primitives import Location

NS = (b"live",)


def obj(group: int, oid: int, size: int = 10, subgroup: int = 0) -> CachedObject:
    return CachedObject(group, subgroup, oid, bytes([oid % 256]) * size)


def drain(consumer: object) -> list[object]:
    out = []
    while (event := consumer.poll()) is not None:  # type: ignore[attr-defined]
        out.append(event)
        if isinstance(event, TrackEnded):
            break
    return out


def test_every_consumer_reads_every_object_in_order_sharing_payloads() -> None:
    track = Track(NS, b"v")
    a, b = track.consumer(0), track.consumer(0)
    for g in range(3):
        for o in range(4):
            track.append(obj(g, o))
        track.end_subgroup(g, 0)
    track.end_track()
    events_a, events_b = drain(a), drain(b)
    objects_a = [e for e in events_a if isinstance(e, CachedObject)]
    assert [(o.group_id, o.object_id) for o in objects_a] == [(g, o) for g in range(3) for o in range(4)]
    assert [e for e in events_a if isinstance(e, SubgroupEnded)] == [SubgroupEnded(g, 0) for g in range(3)]
    assert isinstance(events_a[-1], TrackEnded) and events_a[-1].final == Location(2, 3)
    # The same payload objects, not copies.
    objects_b = [e for e in events_b if isinstance(e, CachedObject)]
    assert all(x.payload is y.payload for x, y in zip(objects_a, objects_b, strict=True))


def test_a_new_consumer_starts_at_the_latest_group() -> None:
    track = Track(NS, b"v")
    for g in range(3):
        track.append(obj(g, 0))
        track.append(obj(g, 1))
    late = track.consumer()
    first = late.poll()
    assert isinstance(first, CachedObject) and (first.group_id, first.object_id) == (2, 0)


def test_a_consumer_never_goes_back_to_groups_before_its_start() -> None:
    """Groups travel on streams of their own, so an older group's objects can be appended after a newer group's
    first object; a cursor that starts at (or skipped to) the newer group must not deliver them."""
    track = Track(NS, b"v")
    track.append(obj(1, 0))
    track.append(obj(2, 0))  # group 2 starts while group 1 is still arriving
    track.append(obj(1, 1))
    late, at_end = track.consumer(), track.consumer_at_end()
    track.append(obj(1, 2))
    track.end_subgroup(1, 0)
    track.append(obj(2, 1))
    track.append(obj(2, 2))
    assert [(e.group_id, e.object_id) for e in drain(late) if isinstance(e, CachedObject)] == [(2, 0), (2, 1), (2, 2)]
    assert [(e.group_id, e.object_id) for e in drain(at_end) if isinstance(e, CachedObject)] == [(2, 1), (2, 2)]
    # Skipping ahead is the same: what arrives later of a skipped group stays skipped.
    behind = track.consumer(1)
    first = behind.poll()
    assert isinstance(first, CachedObject) and (first.group_id, first.object_id) == (1, 0)
    track.append(obj(3, 0))
    assert behind.skip_to_latest_group() == (1, 2)
    track.append(obj(2, 3))
    track.append(obj(3, 1))
    assert [(e.group_id, e.object_id) for e in drain(behind) if isinstance(e, CachedObject)] == [(3, 0), (3, 1)]


def test_cache_is_bounded_by_groups_and_bytes() -> None:
    track = Track(NS, b"v", max_groups=3, max_bytes=250)
    for g in range(10):
        for o in range(5):
            track.append(obj(g, o, size=20))
            assert track.cached_bytes <= 250 or len(track.cached_groups) == 1
            assert len(track.cached_groups) <= 3
    assert track.cached_groups == [7, 8, 9] or track.cached_bytes <= 250
    # 5 x 20 bytes per group: 250 bytes hold two whole groups plus the newest in progress.
    assert track.cached_groups[-1] == 9 and track.evicted_groups >= 7


def test_the_newest_group_is_kept_whole_even_when_alone_it_is_larger() -> None:
    track = Track(NS, b"v", max_groups=4, max_bytes=50)
    for o in range(10):
        track.append(obj(1, o, size=20))
    assert track.cached_groups == [1] and track.cached_bytes == 200


def test_a_slow_consumer_loses_its_oldest_groups_and_goes_on() -> None:
    track = Track(NS, b"v", max_groups=2)
    slow = track.consumer(0)
    track.append(obj(0, 0))
    assert isinstance(slow.poll(), CachedObject)  # it is inside group 0 ...
    for g in range(1, 6):
        for o in range(3):
            track.append(obj(g, o))
    events = drain(slow)
    dropped = [e for e in events if isinstance(e, GroupsDropped)]
    assert dropped and 0 in dropped[0].group_ids  # ... and is told group 0 is gone
    remaining = [(e.group_id, e.object_id) for e in events if isinstance(e, CachedObject)]
    assert remaining == [(4, 0), (4, 1), (4, 2), (5, 0), (5, 1), (5, 2)]


def test_fetch_range_from_cache_in_group_then_object_order() -> None:
    track = Track(NS, b"v")
    for g in range(3):
        track.append(obj(g, 0, subgroup=0))
        track.append(obj(g, 2, subgroup=1))
        track.append(obj(g, 1, subgroup=0))
    got = [(o.group_id, o.object_id) for o in track.objects(Location(0, 1), Location(2, 0))]
    assert got == [(0, 1), (0, 2), (1, 0), (1, 1), (1, 2), (2, 0)]


def test_producer_rules() -> None:
    track = Track(NS, b"v")
    track.append(obj(0, 5))
    with pytest.raises(TrackError):
        track.append(obj(0, 5))
    track.end_subgroup(0, 0)
    with pytest.raises(TrackError):
        track.append(obj(0, 6))
    track.end_track()
    with pytest.raises(TrackError):
        track.append(obj(1, 0))


def test_next_waits_for_the_producer() -> None:
    async def scenario() -> list[object]:
        track = Track(NS, b"v")
        consumer = track.consumer(0)
        reader = asyncio.ensure_future(asyncio.gather(consumer.next(), consumer.next()))
        await asyncio.sleep(0)
        assert not reader.done()
        track.append(obj(0, 0))
        track.append(obj(0, 1))
        return list(await asyncio.wait_for(reader, 5))

    first, second = asyncio.run(scenario())
    assert isinstance(first, CachedObject) and isinstance(second, CachedObject)
    assert (first.object_id, second.object_id) == (0, 1)


@given(st.lists(st.tuples(st.integers(0, 20), st.integers(1, 400)), max_size=200), st.integers(1, 5))
def test_bounds_hold_for_any_sequence(appends: list[tuple[int, int]], max_groups: int) -> None:
    track = Track(NS, b"v", max_groups=max_groups, max_bytes=1000)
    next_object: dict[int, int] = {}
    consumer = track.consumer(0)
    for group, size in appends:
        oid = next_object.get(group, 0)
        next_object[group] = oid + 1
        track.append(obj(group, oid, size))
        assert len(track.cached_groups) <= max_groups
        assert track.cached_bytes <= 1000 or len(track.cached_groups) == 1
        assert track.cached_bytes == sum(len(o.payload) for o in track.objects(Location(0, 0)))
    seen = [e for e in drain(consumer) if isinstance(e, CachedObject)]
    assert all(o.payload for o in seen)
