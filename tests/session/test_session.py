"""The sans-IO session, two of them back to back in memory, every byte delivered on its own, a fake clock.

Each request type on its success and error paths, cancellation, PUBLISH_DONE stream counting, and protocol
violations closing the session with the draft's code (draft-22 §6, §9; draft-18 likewise).
"""

from __future__ import annotations

from typing import Any, TypeVar

import pytest

from moq.session.commands import CloseSession, OpenStream, SendStreamData
from moq.session.events import (
    DataStreamEnded,
    Event,
    FetchRangeMissing,
    GoawayReceived,
    NamespacePublished,
    NamespaceWithdrawn,
    ObjectReceived,
    PublishSkippedReceived,
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
from moq.wire.codes import ObjectStatus, PublishDoneCode, RequestErrorCode, SessionErrorCode, StreamResetCode
from moq.wire.data import EndOfRangeKind
from moq.wire.messages import (
    Fetch,
    FetchOk,
    GoAway,
    NamespaceDone,
    Publish,
    Setup,
    Subscribe,
    SubscribeOk,
    encode_message,
)
from moq.wire.params import LocationFilter, LocationFilterType, Parameters
from moq.wire.primitives import Location
from moq.wire.varint import encode_varint
from moq.wire.version import Version

from .pair import Pair

VERSIONS = [Version.DRAFT_22, Version.DRAFT_21, Version.DRAFT_20, Version.DRAFT_18]
NS = (b"live", b"demo")
E = TypeVar("E", bound=Event)


def only(events: list[Event], kind: type[E]) -> list[E]:
    return [e for e in events if isinstance(e, kind)]


def one(events: list[Event], kind: type[E]) -> E:
    found = only(events, kind)
    assert len(found) == 1, f"expected one {kind.__name__}, got {events}"
    return found[0]


@pytest.fixture(params=VERSIONS, ids=lambda v: f"draft-{v.value}")
def pair(request: Any) -> Pair:
    p = Pair(request.param)
    p.setup()
    return p


def closed_with(session: Session, events: list[Event]) -> int:
    terminated = one(events, SessionTerminated)
    assert session.is_closed and not terminated.by_peer
    return terminated.code


# -- setup ------------------------------------------------------------------------------------------------------


def test_setup_completes_both_ways(pair: Pair) -> None:
    client = one(pair.take("client"), SetupCompleted)
    server = one(pair.take("server"), SetupCompleted)
    assert client.version == server.version == pair.version
    assert server.peer_setup.path == "/moq" and server.peer_setup.authority == "relay.test"
    assert server.peer_setup.implementation == "client" and client.peer_setup.implementation == "server"
    assert pair.client.is_ready and pair.server.is_ready


def test_requests_before_setup_are_held_until_setup_completes() -> None:
    p = Pair(Version.DRAFT_22)
    p.client.initiate()
    p.client.subscribe(NS, b"video")
    p.pump()  # the server has not sent SETUP yet: it must not surface the request
    assert only(p.take("server"), RequestReceived) == []
    p.server.initiate()
    p.pump()
    events = p.take("server")
    assert [type(e) for e in events] == [SetupCompleted, RequestReceived]


# -- SUBSCRIBE --------------------------------------------------------------------------------------------------


def serve_subscription(pair: Pair, params: Parameters | None = None) -> int:
    """Client subscribes, server accepts; the request id is the same on both sides."""
    pair.take("client"), pair.take("server")
    rid = pair.client.subscribe(NS, b"video", params or Parameters(subscriber_priority=10))
    pair.pump()
    received = one(pair.take("server"), RequestReceived)
    assert isinstance(received.message, Subscribe) and received.message.name == b"video"
    assert received.request_id == rid
    pair.server.accept_subscribe(rid, Parameters(largest_object=Location(4, 2)))
    pair.pump()
    accepted = one(pair.take("client"), RequestAccepted)
    assert isinstance(accepted.message, SubscribeOk)
    assert accepted.message.parameters.largest_object == Location(4, 2)
    return rid


def test_subscribe_objects_in_order_then_publish_done_counts_streams(pair: Pair) -> None:
    rid = sid = serve_subscription(pair)
    sizes = [0, 1, 127, 128, 1000, 70_000]
    sent: list[tuple[int, int, int]] = []
    streams = 0
    for group in (5, 6):
        handle = pair.server.open_subgroup(sid, group, 0, publisher_priority=7, with_properties=True)
        streams += 1
        for oid, size in enumerate(sizes):
            props = ((0x3C, oid),) if oid % 2 else ()
            if size == 0:
                pair.server.write_object(handle, oid, b"", status=ObjectStatus.NORMAL)
            else:
                pair.server.write_object(handle, oid, bytes([oid]) * size, properties=props)
            sent.append((group, oid, size))
        pair.server.write_object(handle, len(sizes), b"", status=ObjectStatus.END_OF_GROUP, end_stream=True)
    empty = pair.server.open_subgroup(sid, 7, 3, publisher_priority=1)  # an empty subgroup counts too
    pair.server.finish_stream(empty)
    streams += 1
    pair.server.publish_done(sid, PublishDoneCode.TRACK_ENDED, "bye")
    pair.pump()
    events = pair.take("client")
    objects = [e for e in only(events, ObjectReceived) if e.status is ObjectStatus.NORMAL]
    assert [(o.group_id, o.object_id, len(o.payload)) for o in objects] == sent
    assert all(o.request_id == rid and o.source == "subgroup" and o.publisher_priority == 7 for o in objects)
    assert [o.properties for o in objects if o.object_id % 2] == [
        ((0x3C, o.object_id),) for o in objects if o.object_id % 2
    ]
    assert objects[5].payload == bytes([5]) * 70_000
    eog = [e for e in only(events, ObjectReceived) if e.status is ObjectStatus.END_OF_GROUP]
    assert [(o.group_id, o.object_id) for o in eog] == [(5, 6), (6, 6)]
    ended = one(events, SubscriptionEnded)
    assert ended.message.stream_count == streams == 3
    assert ended.message.status_code == PublishDoneCode.TRACK_ENDED and ended.message.reason == "bye"
    assert len(only(events, DataStreamEnded)) == 3
    # SubscriptionEnded comes after every object and stream end.
    assert events.index(ended) == len(events) - 1


def test_subscription_ends_by_timer_when_a_counted_stream_never_comes(pair: Pair) -> None:
    sid = serve_subscription(pair, Parameters(subgroup_delivery_timeout=500))
    first = pair.server.open_subgroup(sid, 1, 0)
    pair.server.write_object(first, 0, b"a", end_stream=True)
    lost = pair.server.open_subgroup(sid, 2, 0)
    pair.drop = lambda side, cmd: isinstance(cmd, SendStreamData) and cmd.stream == lost
    pair.server.write_object(lost, 0, b"b", end_stream=True)
    pair.server.publish_done(sid, PublishDoneCode.TRACK_ENDED)
    pair.pump()
    assert only(pair.take("client"), SubscriptionEnded) == []
    assert pair.client.next_timer() == pytest.approx(0.5)
    pair.client.handle_timer(0.49)
    assert only(pair.client.events(), SubscriptionEnded) == []
    pair.client.handle_timer(0.5)
    assert one(pair.client.events(), SubscriptionEnded).message.stream_count == 2


def test_subgroup_stream_overtaking_subscribe_ok_is_held_then_delivered(pair: Pair) -> None:
    pair.take("client"), pair.take("server")
    rid = pair.client.subscribe(NS, b"video")
    pair.pump()
    pair.take("server")
    # Hold back the server's request stream (SUBSCRIBE_OK) so its data stream arrives first.
    pair.hold = lambda side, cmd: side == "server" and isinstance(cmd, SendStreamData) and cmd.stream % 4 == 0
    pair.server.accept_subscribe(rid)
    handle = pair.server.open_subgroup(rid, 0, 0)
    pair.server.write_object(handle, 0, b"early", end_stream=True)
    pair.pump()
    assert only(pair.take("client"), ObjectReceived) == []
    pair.hold = lambda side, cmd: False
    pair.release()
    events = pair.take("client")
    assert isinstance(events[0], RequestAccepted)
    obj = one(events, ObjectReceived)
    assert obj.request_id == rid and obj.payload == b"early"


def test_subscribe_rejected(pair: Pair) -> None:
    pair.take("client")
    rid = pair.client.subscribe(NS, b"missing")
    pair.pump()
    pair.server.reject(rid, RequestErrorCode.DOES_NOT_EXIST, "no such track", retry_interval=1)
    pair.pump()
    failed = one(pair.take("client"), RequestFailed)
    assert failed.code == RequestErrorCode.DOES_NOT_EXIST and failed.reason == "no such track"
    assert failed.error is not None and failed.error.retry_interval == 1
    with pytest.raises(SessionError):
        pair.client.cancel(rid)  # the request is over


def test_subscriber_cancels_publisher_sees_it_and_resets_streams(pair: Pair) -> None:
    rid = sid = serve_subscription(pair)
    handle = pair.server.open_subgroup(sid, 0, 0)
    pair.server.write_object(handle, 0, b"x")
    pair.pump()
    pair.client.cancel(rid)
    pair.pump()
    cancelled = one(pair.take("server"), RequestCancelled)
    assert cancelled.request_id == sid and cancelled.code == StreamResetCode.CANCELLED
    with pytest.raises(SessionError):
        pair.server.write_object(handle, 1, b"y")  # the data stream was reset with the subscription


def test_datagrams(pair: Pair) -> None:
    sid = serve_subscription(pair)
    pair.server.send_datagram(sid, 3, 0, b"dg0", publisher_priority=9)
    pair.server.send_datagram(sid, 3, 1, b"dg1", properties=((0x3E, 1),))
    pair.server.send_datagram(sid, 3, 2, b"", status=ObjectStatus.END_OF_GROUP)
    pair.pump()
    objects = only(pair.take("client"), ObjectReceived)
    assert [(o.object_id, o.payload, o.source) for o in objects] == [
        (0, b"dg0", "datagram"),
        (1, b"dg1", "datagram"),
        (2, b"", "datagram"),
    ]
    assert objects[0].publisher_priority == 9 and objects[1].properties == ((0x3E, 1),)
    assert objects[2].status is ObjectStatus.END_OF_GROUP


def test_request_update_round_trip(pair: Pair) -> None:
    rid = sid = serve_subscription(pair)
    uid = pair.client.request_update(rid, Parameters(subscriber_priority=1, forward=0))
    pair.pump()
    updated = one(pair.take("server"), RequestUpdated)
    assert (updated.request_id, updated.update_id) == (sid, uid)
    assert updated.parameters.forward == 0 and updated.parameters.subscriber_priority == 1
    pair.server.accept_update(uid, Parameters(largest_object=Location(9, 9)))
    pair.pump()
    answered = one(pair.take("client"), UpdateAnswered)
    assert answered.update_id == uid and answered.ok is not None and answered.error is None
    uid2 = pair.client.request_update(rid, Parameters(subscriber_priority=2))
    pair.pump()
    pair.server.reject_update(uid2, RequestErrorCode.NOT_SUPPORTED, "no")
    pair.pump()
    answered = one(pair.take("client"), UpdateAnswered)
    assert answered.update_id == uid2 and answered.error is not None and answered.error.reason == "no"


# -- PUBLISH ----------------------------------------------------------------------------------------------------


def test_publish_objects_may_precede_publish_ok(pair: Pair) -> None:
    pair.take("client"), pair.take("server")
    rid = pair.client.publish(NS, b"audio", properties=((0x0E, 3),))
    handle = pair.client.open_subgroup(rid, 0, 0)
    pair.client.write_object(handle, 0, b"first")
    pair.pump()
    events = pair.take("server")
    received = one(events, RequestReceived)
    assert isinstance(received.message, Publish) and received.message.properties == ((0x0E, 3),)
    assert one(events, ObjectReceived).payload == b"first"
    # Draft-18's PUBLISH_OK may carry subscription parameters; from draft-20 they travel in REQUEST_UPDATE.
    pair.server.accept(rid, Parameters(forward=1) if pair.version.family == 18 else Parameters())
    pair.pump()
    one(pair.take("client"), RequestAccepted)
    pair.client.write_object(handle, 1, b"second", end_stream=True)
    pair.client.publish_done(rid, PublishDoneCode.TRACK_ENDED)
    pair.pump()
    events = pair.take("server")
    assert [o.payload for o in only(events, ObjectReceived)] == [b"second"]
    assert one(events, SubscriptionEnded).message.stream_count == 1


def test_publish_done_on_a_peers_publish_waits_for_streams_still_in_flight(pair: Pair) -> None:
    """PUBLISH_DONE may overtake the data streams it counts (§9.12): the subscriber waits for them, up to its drain
    timer counted from when PUBLISH_DONE arrived (it was counted from time 0 for a peer's PUBLISH: at any real
    clock the subscription ended at once and the objects in flight were lost)."""
    pair.take("client"), pair.take("server")
    pair.now = 1000.0
    rid = pair.client.publish(NS, b"audio")
    pair.pump()
    one(pair.take("server"), RequestReceived)
    pair.server.accept(rid)
    pair.pump()
    handle = pair.client.open_subgroup(rid, 0, 0)
    pair.client.write_object(handle, 0, b"late", end_stream=True)
    pair.hold = lambda side, cmd: isinstance(cmd, SendStreamData) and cmd.stream == handle
    pair.client.publish_done(rid, PublishDoneCode.TRACK_ENDED)
    pair.pump()
    assert only(pair.take("server"), SubscriptionEnded) == []  # the counted stream is still on its way
    pair.server.handle_timer(pair.now + 0.01)
    assert only(pair.take("server"), SubscriptionEnded) == []
    pair.hold = lambda side, cmd: False
    pair.release()
    events = pair.take("server")
    assert [o.payload for o in only(events, ObjectReceived)] == [b"late"]
    assert one(events, SubscriptionEnded).message.stream_count == 1


def test_subscriber_of_a_publish_updates_it(pair: Pair) -> None:
    """The receiver of PUBLISH may REQUEST_UPDATE it (e.g. FORWARD=1 to unpause, §9.5) and gets the answer."""
    pair.take("client"), pair.take("server")
    rid = pair.client.publish(NS, b"audio", Parameters(forward=0))
    pair.pump()
    one(pair.take("server"), RequestReceived)
    pair.server.accept(rid)
    uid = pair.server.request_update(rid, Parameters(forward=1))
    pair.pump()
    updated = one(pair.take("client"), RequestUpdated)
    assert updated.update_id == uid and updated.parameters.forward == 1
    pair.client.accept_update(uid)
    pair.pump()
    answered = one(pair.take("server"), UpdateAnswered)
    assert answered.update_id == uid and answered.ok is not None
    assert not pair.server.is_closed and not pair.client.is_closed


def test_publish_rejected(pair: Pair) -> None:
    pair.take("client")
    rid = pair.client.publish(NS, b"audio")
    pair.pump()
    pair.server.reject(rid, RequestErrorCode.UNAUTHORIZED, "not yours")
    pair.pump()
    assert one(pair.take("client"), RequestFailed).code == RequestErrorCode.UNAUTHORIZED


# -- FETCH ------------------------------------------------------------------------------------------------------


def test_fetch_returns_the_range(pair: Pair) -> None:
    pair.take("client")
    if pair.version.family == 18:
        rid = pair.client.fetch(NS, b"video", start=Location(1, 0), end=Location(2, 0))
    else:
        flt = LocationFilter(LocationFilterType.ABSOLUTE_RANGE, 1, 0, 2)
        rid = pair.client.fetch(NS, b"video", Parameters(location_filter=flt))
    pair.pump()
    fetch = one(pair.take("server"), RequestReceived).message
    assert isinstance(fetch, Fetch)
    pair.server.accept_fetch(rid, end_location=Location(2, 1))
    handle = pair.server.open_fetch_stream(rid)
    pair.server.write_fetch_object(handle, 1, 0, 0, b"g1o0")
    pair.server.write_fetch_object(handle, 1, 0, 1, b"g1o1", properties=((0x3C, 0),))
    pair.server.write_fetch_end_of_range(handle, EndOfRangeKind.NON_EXISTENT, 1, 5)
    pair.server.write_fetch_object(handle, 2, 1, 0, b"g2o0", publisher_priority=4)
    pair.server.finish_stream(handle)
    pair.pump()
    events = pair.take("client")
    ok = one(events, RequestAccepted).message
    assert isinstance(ok, FetchOk)
    # Inclusive from draft-20 on; draft-18 writes "the last object, plus 1" (draft-18 §"FETCH_OK").
    assert ok.end_location == (Location(2, 2) if pair.version.family == 18 else Location(2, 1))
    objects = only(events, ObjectReceived)
    assert [(o.group_id, o.subgroup_id, o.object_id, o.payload) for o in objects] == [
        (1, 0, 0, b"g1o0"),
        (1, 0, 1, b"g1o1"),
        (2, 1, 0, b"g2o0"),
    ]
    assert all(o.source == "fetch" and o.request_id == rid for o in objects)
    gap = one(events, FetchRangeMissing)
    assert (gap.kind, gap.group_id, gap.object_id) == (EndOfRangeKind.NON_EXISTENT, 1, 5)
    assert one(events, DataStreamEnded).source == "fetch"


def test_fetch_rejected_with_invalid_range(pair: Pair) -> None:
    pair.take("client")
    rid = (
        pair.client.fetch(NS, b"video", start=Location(9, 0), end=Location(10, 0))
        if pair.version.family == 18
        else pair.client.fetch(NS, b"video")
    )
    pair.pump()
    pair.server.reject(rid, RequestErrorCode.INVALID_RANGE, "nothing there")
    pair.pump()
    assert one(pair.take("client"), RequestFailed).code == RequestErrorCode.INVALID_RANGE


# -- TRACK_STATUS, namespaces -----------------------------------------------------------------------------------


def test_track_status(pair: Pair) -> None:
    pair.take("client")
    rid = pair.client.track_status(NS, b"video")
    pair.pump()
    pair.server.accept(rid, Parameters(largest_object=Location(3, 4)), properties=((0x0E, 64),))
    pair.pump()
    ok = one(pair.take("client"), RequestAccepted).message
    assert ok.parameters.largest_object == Location(3, 4) and ok.properties == ((0x0E, 64),)


def test_publish_namespace_then_withdraw(pair: Pair) -> None:
    pair.take("client"), pair.take("server")
    rid = pair.client.publish_namespace(NS)
    pair.pump()
    assert one(pair.take("server"), RequestReceived).message.namespace == NS  # type: ignore[union-attr]
    pair.server.accept(rid)
    pair.pump()
    one(pair.take("client"), RequestAccepted)
    pair.client.cancel(rid)
    pair.pump()
    assert one(pair.take("server"), RequestCancelled).request_id == rid


def test_subscribe_namespace_lifecycle(pair: Pair) -> None:
    pair.take("client")
    rid = pair.client.subscribe_namespace((b"live",))
    pair.pump()
    pair.server.accept(rid)
    pair.server.send_namespace(rid, (b"a",))
    pair.server.send_namespace(rid, (b"b", b"c"))
    pair.server.send_namespace_done(rid, (b"a",))
    pair.pump()
    events = pair.take("client")
    assert [e.namespace for e in only(events, NamespacePublished)] == [(b"live", b"a"), (b"live", b"b", b"c")]
    assert [e.namespace for e in only(events, NamespaceWithdrawn)] == [(b"live", b"a")]
    # The stream ending withdraws whatever is still active (§9.15).
    pair.server.cancel(rid)
    pair.pump()
    assert [e.namespace for e in only(pair.take("client"), NamespaceWithdrawn)] == [(b"live", b"b", b"c")]


def test_subscribe_tracks_and_publish_skipped(pair: Pair) -> None:
    pair.take("client")
    rid = pair.client.subscribe_tracks((b"live",))
    pair.pump()
    pair.server.accept(rid)
    pair.server.send_publish_skipped(rid, (b"x",), b"t")
    pair.pump()
    skipped = one(pair.take("client"), PublishSkippedReceived)
    assert skipped.namespace == (b"live", b"x") and skipped.name == b"t"


def test_goaway_from_server(pair: Pair) -> None:
    pair.take("client")
    pair.server.goaway("moqt://elsewhere.test/moq", timeout_ms=5000)
    pair.pump()
    goaway = one(pair.take("client"), GoawayReceived)
    assert goaway.message.new_session_uri == "moqt://elsewhere.test/moq" and goaway.request_id is None
    with pytest.raises(SessionError):
        pair.client.goaway("moqt://not-allowed.test")


# -- protocol violations ----------------------------------------------------------------------------------------


def test_second_goaway_is_a_protocol_violation(pair: Pair) -> None:
    pair.take("client")
    pair.server.goaway()
    with pytest.raises(SessionError):
        pair.server.goaway()  # our own session refuses to send a second one ...
    pair.pump()
    # ... so write it by hand on the server's control stream (handle 3: its first uni stream).
    pair.client.stream_data_received(3, encode_message(GoAway(), pair.version), False)
    pair.events["client"].extend(pair.client.events())
    assert closed_with(pair.client, pair.take("client")) == SessionErrorCode.PROTOCOL_VIOLATION


def test_namespace_done_before_namespace_closes_the_session(pair: Pair) -> None:
    pair.take("client")
    rid = pair.client.subscribe_namespace((b"live",))
    pair.pump()
    pair.server.accept(rid)
    pair.pump()
    stream = next(c.handle for c in pair.sent["client"] if isinstance(c, OpenStream) and not c.unidirectional)
    pair.client.stream_data_received(stream, encode_message(NamespaceDone((b"z",)), pair.version), False)
    assert closed_with(pair.client, pair.client.events()) == SessionErrorCode.PROTOCOL_VIOLATION
    assert isinstance(pair.client.commands()[-1], CloseSession)


def test_request_stream_must_begin_with_a_request(pair: Pair) -> None:
    pair.take("server")
    pair.server.stream_data_received(0, encode_message(SubscribeOk(1), pair.version), False)
    assert closed_with(pair.server, pair.server.events()) == SessionErrorCode.PROTOCOL_VIOLATION


@pytest.mark.parametrize("request_id", [1, 3], ids=["wrong-parity", "wrong-parity-3"])
def test_wrong_request_id_parity(pair: Pair, request_id: int) -> None:
    pair.take("server")
    pair.server.stream_data_received(0, encode_message(Subscribe(request_id, NS, b"v"), pair.version), False)
    assert closed_with(pair.server, pair.server.events()) == SessionErrorCode.INVALID_REQUEST_ID


def test_duplicate_request_id(pair: Pair) -> None:
    pair.take("server")
    data = encode_message(Subscribe(0, NS, b"v"), pair.version)
    pair.server.stream_data_received(0, data, False)
    assert not pair.server.is_closed
    pair.server.stream_data_received(4, data, False)
    assert closed_with(pair.server, pair.server.events()) == SessionErrorCode.INVALID_REQUEST_ID


def test_closing_the_control_stream_is_a_protocol_violation(pair: Pair) -> None:
    pair.take("server")
    pair.server.stream_data_received(2, b"", True)  # the client's control stream: handle 2
    assert closed_with(pair.server, pair.server.events()) == SessionErrorCode.PROTOCOL_VIOLATION


def test_unknown_uni_stream_type_closes_the_session(pair: Pair) -> None:
    pair.take("server")
    pair.server.stream_data_received(6, encode_varint(0x3F00), False)
    assert closed_with(pair.server, pair.server.events()) == SessionErrorCode.PROTOCOL_VIOLATION


def test_server_sending_path_is_invalid_path() -> None:
    client = Session(Role.CLIENT, Version.DRAFT_22)
    client.initiate()
    client.commands()
    client.stream_data_received(3, encode_message(Setup.create(path="/x"), Version.DRAFT_22), False)
    assert closed_with(client, client.events()) == SessionErrorCode.INVALID_PATH


def test_duplicate_track_alias(pair: Pair) -> None:
    pair.take("client")
    a = pair.client.subscribe(NS, b"a")
    b = pair.client.subscribe(NS, b"b")
    pair.pump()
    pair.server.accept_subscribe(a, track_alias=7)
    pair.server.accept_subscribe(b, track_alias=7)
    pair.pump()
    assert closed_with(pair.client, pair.take("client")) == SessionErrorCode.DUPLICATE_TRACK_ALIAS


def test_garbage_on_a_request_stream_closes_only_with_a_code(pair: Pair) -> None:
    pair.take("server")
    pair.server.stream_data_received(0, bytes([0x03, 0x00, 0x05, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]), False)
    code = closed_with(pair.server, pair.server.events())
    assert code == SessionErrorCode.PROTOCOL_VIOLATION
    pair.server.commands()
    # A closed session ignores whatever else arrives.
    pair.server.stream_data_received(4, b"\x00" * 10, False)
    assert pair.server.events() == [] and pair.server.commands() == []


def test_api_misuse_raises_locally_and_changes_nothing(pair: Pair) -> None:
    pair.take("client")
    with pytest.raises(SessionError):
        pair.client.accept_subscribe(42)
    with pytest.raises(SessionError):
        pair.client.write_object(1234, 0, b"")
    assert pair.client.commands() == [] and not pair.client.is_closed
