"""Hypothesis strategies for data-plane structures (moq.wire.data), in their canonical (decoded) forms.

Each strategy draws values that the encoders accept and that decode back equal: properties are `None` / `()` or
non-empty and sorted by type, a FIRST_OBJECT_ID header has `subgroup_id=None`, a non-Normal object has no payload
and no properties, fetch entries follow their group order. Reused by other test modules.
"""

from __future__ import annotations

import itertools

from hypothesis import strategies as st

from moq.wire.codes import ObjectStatus
from moq.wire.data import (
    EndOfRangeKind,
    FetchEndOfRange,
    FetchObject,
    ObjectDatagram,
    SubgroupHeader,
    SubgroupIdMode,
    SubgroupObject,
)
from moq.wire.params import GroupOrder
from moq.wire.primitives import KeyValue, Properties
from moq.wire.varint import MAX_VARINT
from moq.wire.version import Version

#: Values at the MOQT varint length boundaries (1..9 bytes) and the ends of the range.
VARINT_EDGES = (
    0,
    1,
    0x7F,
    0x80,
    0x3FFF,
    0x4000,
    0x1FFFFF,
    0x200000,
    (1 << 56) - 1,
    1 << 56,
    MAX_VARINT - 1,
    MAX_VARINT,
)

versions = st.sampled_from(list(Version))
group_orders = st.sampled_from(list(GroupOrder))
varints = st.one_of(st.sampled_from(VARINT_EDGES), st.integers(min_value=0, max_value=MAX_VARINT))
small_varints = st.one_of(st.integers(min_value=0, max_value=300), st.sampled_from(VARINT_EDGES))
priorities = st.integers(min_value=0, max_value=0xFF)
payloads = st.one_of(st.binary(max_size=64), st.sampled_from([b"", b"\x00", bytes(200)]))
statuses = st.sampled_from(list(ObjectStatus))

_key_value: st.SearchStrategy[KeyValue] = st.one_of(
    st.tuples(varints.map(lambda t: t & ~1), varints),
    st.tuples(varints.map(lambda t: t | 1), st.binary(max_size=32)),
)


def _sorted(pairs: list[KeyValue]) -> Properties:
    return tuple(sorted(pairs, key=lambda pair: pair[0]))


#: Non-empty Object Properties in wire (ascending type) order.
properties = st.lists(_key_value, min_size=1, max_size=4).map(_sorted)
#: Properties as a datagram or fetch object carries them: None, or non-empty.
optional_properties = st.one_of(st.none(), properties)


@st.composite
def subgroup_headers(draw: st.DrawFn) -> SubgroupHeader:
    """A SUBGROUP_HEADER in canonical form."""
    mode = draw(st.sampled_from(list(SubgroupIdMode)))
    subgroup: int | None = 0
    if mode == SubgroupIdMode.EXPLICIT:
        subgroup = draw(varints)
    elif mode == SubgroupIdMode.FIRST_OBJECT_ID:
        subgroup = None
    return SubgroupHeader(
        track_alias=draw(varints),
        group_id=draw(varints),
        subgroup_id=subgroup,
        publisher_priority=draw(st.one_of(st.none(), priorities)),
        subgroup_id_mode=mode,
        has_properties=draw(st.booleans()),
        end_of_group=draw(st.booleans()),
        first_object=draw(st.booleans()),
    )


@st.composite
def subgroup_objects(draw: st.DrawFn, object_id: int, has_properties: bool) -> SubgroupObject:
    """One subgroup object with the given ID; properties only if the header allows them."""
    status = draw(statuses)
    if status != ObjectStatus.NORMAL:
        return SubgroupObject(object_id, (), status, b"")
    props = draw(st.one_of(st.just(()), properties)) if has_properties else ()
    return SubgroupObject(object_id, props, status, draw(payloads))


@st.composite
def subgroup_streams(draw: st.DrawFn, max_objects: int = 8) -> tuple[SubgroupHeader, list[SubgroupObject]]:
    """A header and the objects of one subgroup stream, Object IDs strictly increasing within 2^64-1."""
    header = draw(subgroup_headers())
    count = draw(st.integers(min_value=0, max_value=max_objects))
    objects: list[SubgroupObject] = []
    object_id = draw(small_varints)
    for _ in range(count):
        objects.append(draw(subgroup_objects(object_id, header.has_properties)))
        gap = draw(st.one_of(st.just(0), small_varints))
        object_id += gap + 1
        if object_id > MAX_VARINT:
            break
    return header, objects


@st.composite
def datagrams(draw: st.DrawFn) -> ObjectDatagram:
    """An OBJECT_DATAGRAM in canonical form (every valid flag combination is reachable)."""
    status = draw(st.one_of(st.none(), statuses))
    props = draw(optional_properties)
    if status is not None and status != ObjectStatus.NORMAL:
        props = None
    return ObjectDatagram(
        track_alias=draw(varints),
        group_id=draw(varints),
        object_id=draw(st.one_of(st.just(0), varints)),
        publisher_priority=draw(st.one_of(st.none(), priorities)),
        properties=props,
        end_of_group=False if status is not None else draw(st.booleans()),
        status=status,
        payload=b"" if status is not None else draw(payloads),
    )


FetchEntry = FetchObject | FetchEndOfRange


@st.composite
def fetch_entries(draw: st.DrawFn, version: Version, order: GroupOrder, max_groups: int = 4) -> list[FetchEntry]:
    """The entries of one fetch stream in `order`: objects and End of Range markers, Object IDs ascending."""
    groups = sorted(set(draw(st.lists(varints, min_size=0, max_size=max_groups))))
    if order == GroupOrder.DESCENDING:
        groups.reverse()
    kinds = [EndOfRangeKind.NON_EXISTENT, EndOfRangeKind.UNKNOWN]
    if version.family >= 20:
        kinds.append(EndOfRangeKind.TIMED_OUT)
    entries: list[FetchEntry] = []
    for group in groups:
        object_ids = sorted(set(draw(st.lists(varints, min_size=1, max_size=3))))
        for object_id in object_ids:
            if draw(st.integers(min_value=0, max_value=4)) == 0:
                entries.append(FetchEndOfRange(draw(st.sampled_from(kinds)), group, object_id))
                continue
            subgroup = draw(st.one_of(st.none(), st.just(0), small_varints, varints))
            entries.append(
                FetchObject(
                    group_id=group,
                    subgroup_id=subgroup,
                    object_id=object_id,
                    publisher_priority=draw(priorities),
                    properties=draw(optional_properties),
                    payload=draw(payloads),
                )
            )
    return entries


@st.composite
def split_points(draw: st.DrawFn, length: int) -> list[int]:
    """Sorted cut positions inside a byte string of `length`, for feeding a parser in pieces."""
    if length < 2:
        return []
    return sorted(set(draw(st.lists(st.integers(min_value=1, max_value=length - 1), max_size=12))))


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    """`data` cut at `cuts`."""
    bounds = [0, *cuts, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]
