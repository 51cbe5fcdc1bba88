"""What a `Session` tells its application: events, named in the past tense (DESIGN.md decision 2).

Events carry the decoded wire message where the application needs its fields; request ids identify requests
across events (draft-22 §6.4.2.1).
"""

from __future__ import annotations

import msgspec

from moq.wire.codes import ObjectStatus
from moq.wire.messages import (
    Fetch,
    FetchOk,
    GoAway,
    Publish,
    PublishDone,
    PublishNamespace,
    RequestError,
    RequestOk,
    Setup,
    Subscribe,
    SubscribeNamespace,
    SubscribeOk,
    SubscribeTracks,
    TrackStatus,
)
from moq.wire.params import Parameters
from moq.wire.primitives import Properties, TrackNamespace
from moq.wire.version import Version


class Event(msgspec.Struct, frozen=True):
    """Base of every session event."""


class SetupCompleted(Event, frozen=True):
    """Both SETUP messages have been exchanged; requests may flow (§9.1)."""

    version: Version
    peer_setup: Setup


class SessionTerminated(Event, frozen=True):
    """The session is over: closed by us (`by_peer` False) or by the peer / transport."""

    code: int
    reason: str
    by_peer: bool


class GoawayReceived(Event, frozen=True):
    """The peer asked us to migrate: the whole session (`request_id` None) or one request (§9.2)."""

    message: GoAway
    request_id: int | None = None


RequestMessage = Subscribe | Publish | Fetch | TrackStatus | PublishNamespace | SubscribeNamespace | SubscribeTracks


class RequestReceived(Event, frozen=True):
    """The peer opened a request stream; answer with `accept_*` or `reject` (§6.4.2)."""

    request_id: int
    message: RequestMessage


class RequestAccepted(Event, frozen=True):
    """Our request succeeded: SUBSCRIBE_OK, FETCH_OK or REQUEST_OK (PUBLISH_OK, PUBLISH_NAMESPACE_OK, ...)."""

    request_id: int
    message: SubscribeOk | FetchOk | RequestOk


class RequestFailed(Event, frozen=True):
    """Our request failed: REQUEST_ERROR (`error`), or the peer reset / closed the stream (`error` None)."""

    request_id: int
    error: RequestError | None
    code: int
    reason: str


class RequestCancelled(Event, frozen=True):
    """The peer cancelled a request we were answering or serving (RESET_STREAM / STOP_SENDING, §6.4.2.3)."""

    request_id: int
    code: int


class RequestUpdated(Event, frozen=True):
    """REQUEST_UPDATE on `request_id`; answer with `accept_update` / `reject_update` using `update_id` (§9.5)."""

    request_id: int
    update_id: int
    parameters: Parameters


class UpdateAnswered(Event, frozen=True):
    """The peer answered our REQUEST_UPDATE `update_id` (ok, with parameters; or an error)."""

    request_id: int
    update_id: int
    ok: RequestOk | None
    error: RequestError | None


class PublishStateNotified(Event, frozen=True):
    """PUBLISH_STATE_NOTIFY on a subscription (draft-20+ §9.10)."""

    request_id: int
    parameters: Parameters


class NamespacePublished(Event, frozen=True):
    """NAMESPACE on our SUBSCRIBE_NAMESPACE: `namespace` is the full namespace (prefix + suffix, §9.16)."""

    request_id: int
    namespace: TrackNamespace


class NamespaceWithdrawn(Event, frozen=True):
    """NAMESPACE_DONE (or the end of the SUBSCRIBE_NAMESPACE stream) for a namespace announced before (§9.17)."""

    request_id: int
    namespace: TrackNamespace


class PublishSkippedReceived(Event, frozen=True):
    """PUBLISH_SKIPPED (draft-20+) / PUBLISH_BLOCKED (draft-18) on our SUBSCRIBE_TRACKS."""

    request_id: int
    namespace: TrackNamespace
    name: bytes


class ObjectReceived(Event, frozen=True):
    """One object of a subscription (subgroup stream or datagram) or of a fetch (§11).

    `request_id` is the SUBSCRIBE / PUBLISH / FETCH it belongs to; `subgroup_id` is None for datagrams;
    `publisher_priority` None means the subscription's default.
    """

    request_id: int
    group_id: int
    subgroup_id: int | None
    object_id: int
    publisher_priority: int | None
    status: ObjectStatus
    properties: Properties
    payload: bytes
    source: str  # "subgroup" | "datagram" | "fetch"


class FetchRangeMissing(Event, frozen=True):
    """A FETCH stream said objects up to (group_id, object_id) do not exist, are unknown or timed out (§11.4.1.2)."""

    request_id: int
    kind: int
    group_id: int
    object_id: int


class DataStreamEnded(Event, frozen=True):
    """A subgroup or fetch stream of `request_id` ended: FIN (`reset_code` None) or reset."""

    request_id: int
    source: str  # "subgroup" | "fetch"
    group_id: int | None
    subgroup_id: int | None
    reset_code: int | None


class SubscriptionEnded(Event, frozen=True):
    """PUBLISH_DONE arrived and every data stream it counted has been seen (or the drain timer ran out) (§9.9)."""

    request_id: int
    message: PublishDone
