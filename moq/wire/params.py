"""Message Parameters (draft-22 §9.20 / draft-21 §9.20; draft-18 §"Message Parameters").

Wire form: `Number of Parameters (vi64)` then `{Type Delta (vi64), Value}` in ascending type order. These are not
Key-Value-Pairs: each parameter has its own value encoding (uint8, varint, Location or length-prefixed), so an
unknown parameter cannot be skipped and closes the session with PROTOCOL_VIOLATION; so does a parameter in a
message it is not allowed in, and an unexpected duplicate.

`Parameters` holds every parameter any supported draft defines, as optional fields (None = absent). Which of them a
message may carry, and how 0x21 is encoded, depends on the draft: see `ALLOWED` and the codec functions below.
"""

from __future__ import annotations

from enum import IntEnum

import msgspec

from moq.wire.primitives import Location, Token, TrackNamespace


class ParameterType(IntEnum):
    """Message Parameter types. 0x21 is LOCATION_FILTER from draft-20 on, SUBSCRIPTION_FILTER in draft-18."""

    OBJECT_DELIVERY_TIMEOUT = 0x02
    AUTHORIZATION_TOKEN = 0x03
    RENDEZVOUS_TIMEOUT = 0x04
    SUBGROUP_DELIVERY_TIMEOUT = 0x06
    EXPIRES = 0x08
    LARGEST_OBJECT = 0x09
    FILL_TIMEOUT = 0x0A
    FORWARD = 0x10
    SUBSCRIBER_PRIORITY = 0x20
    LOCATION_FILTER = 0x21
    GROUP_ORDER = 0x22
    FILL_PARAMETERS = 0x23
    SUBGROUP_FILTER = 0x25
    OBJECTID_FILTER = 0x26
    PRIORITY_FILTER = 0x27
    OBJECT_PROPERTY_FILTER = 0x28
    TRACK_PROPERTY_FILTER = 0x29
    NEW_GROUP_REQUEST = 0x32
    TRACK_NAMESPACE_PREFIX = 0x34
    INCLUDE_PROPERTIES = 0x35


class GroupOrder(IntEnum):
    """GROUP_ORDER values (0 is only valid as "publisher's default" where a draft says so)."""

    ASCENDING = 0x1
    DESCENDING = 0x2


class LocationFilterType(IntEnum):
    """The forms a location filter takes. Values are draft-22's Location Filter Type codepoints (§9.20.x)."""

    NONE = 0x00  # no filter (removes one in REQUEST_UPDATE)
    RELATIVE_START_GROUP = 0x01  # start = {Largest.Group + 1 - start_group, 0}
    ABSOLUTE_START = 0x02  # start = {start_group, start_object}, open-ended
    ABSOLUTE_RANGE = 0x03  # start .. end of group end_group
    ABSOLUTE_RANGE_OBJECT = 0x04  # start .. {end_group, end_object}
    NEXT_OBJECT = 0x05  # start = {Largest.Group, Largest.Object + 1}


class LocationFilter(msgspec.Struct, frozen=True):
    """A location filter: an inclusive range of Locations (draft-20+ LOCATION_FILTER, draft-18 SUBSCRIPTION_FILTER).

    `end_group` is absolute here; on the wire it travels as a delta from `start_group`. Draft-18's Subscription
    Filter types map onto these forms: NextGroupStart = RELATIVE_START_GROUP with start_group 0, LargestObject =
    NEXT_OBJECT, AbsoluteStart = ABSOLUTE_START, AbsoluteRange = ABSOLUTE_RANGE. A form a draft cannot express
    is refused with `EncodeError` when encoding for that draft.
    """

    type: LocationFilterType
    start_group: int = 0
    start_object: int = 0
    end_group: int | None = None
    end_object: int | None = None


class RangeFilter(msgspec.Struct, frozen=True):
    """A range filter parameter, 0x25-0x29 (draft-21 §3.3.2, §8.6; draft-19 and later).

    `ranges` are absolute inclusive (start, end) pairs; the last end may be None (open-ended). An empty filter
    (`set_id` None) is the zero-length form that removes a filter in REQUEST_UPDATE.
    """

    set_id: int | None = None
    property_type: int | None = None  # only for OBJECT_PROPERTY_FILTER and TRACK_PROPERTY_FILTER
    ranges: tuple[tuple[int, int | None], ...] = ()


class FillParameters(msgspec.Struct, frozen=True):
    """FILL_PARAMETERS (0x23, draft-20+): the parameters of a fill fetch, their own delta scope, no count."""

    fill_timeout: int | None = None
    subscriber_priority: int | None = None
    location_filter: LocationFilter | None = None
    group_order: GroupOrder | None = None
    subgroup_filters: tuple[RangeFilter, ...] = ()
    objectid_filters: tuple[RangeFilter, ...] = ()
    priority_filters: tuple[RangeFilter, ...] = ()
    object_property_filters: tuple[RangeFilter, ...] = ()


class Parameters(msgspec.Struct, frozen=True):
    """The Message Parameters of one message; None (or an empty tuple) means absent."""

    object_delivery_timeout: int | None = None
    authorization_tokens: tuple[Token, ...] = ()
    rendezvous_timeout: int | None = None
    subgroup_delivery_timeout: int | None = None
    expires: int | None = None
    largest_object: Location | None = None
    fill_timeout: int | None = None
    forward: int | None = None
    subscriber_priority: int | None = None
    location_filter: LocationFilter | None = None
    group_order: GroupOrder | None = None
    fill_parameters: FillParameters | None = None
    subgroup_filters: tuple[RangeFilter, ...] = ()
    objectid_filters: tuple[RangeFilter, ...] = ()
    priority_filters: tuple[RangeFilter, ...] = ()
    object_property_filters: tuple[RangeFilter, ...] = ()
    track_property_filters: tuple[RangeFilter, ...] = ()
    new_group_request: int | None = None
    track_namespace_prefix: TrackNamespace | None = None
    include_properties: int | None = None


NO_PARAMETERS = Parameters()
