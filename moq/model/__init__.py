"""The object model shared by the API, the relay and media: tracks, groups and objects, producer and consumers."""

from moq.model.track import (
    MAX_CACHE_BYTES,
    MAX_CACHE_GROUPS,
    CachedObject,
    GroupsDropped,
    SubgroupEnded,
    SubgroupReset,
    Track,
    TrackConsumer,
    TrackEnded,
    TrackError,
    TrackEvent,
)

__all__ = [
    "MAX_CACHE_BYTES",
    "MAX_CACHE_GROUPS",
    "CachedObject",
    "GroupsDropped",
    "SubgroupEnded",
    "SubgroupReset",
    "Track",
    "TrackConsumer",
    "TrackEnded",
    "TrackError",
    "TrackEvent",
]
