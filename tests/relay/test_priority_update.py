"""A downstream subscriber's REQUEST_UPDATE of SUBSCRIBER_PRIORITY at the relay (draft-22 §5.1, §5.1.3, §9.5): the
relay answers REQUEST_OK and schedules its streams to that subscriber by the new priority. Real QUIC and
WebTransport on loopback."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from moq.api import MoqSession
from moq.model import CachedObject, Track
from moq.wire.messages import RequestOk
from moq.wire.params import Parameters
from moq.wire.version import Version
from tests.api.test_priority_update import read

from .conftest import client, relay_running, run

NS = (b"live", b"prio")
KINDS = ["quic", "webtransport"]
EVENT_TIMEOUT = 10.0


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("version", [Version.DRAFT_22, Version.DRAFT_18], ids=lambda v: f"draft-{v.value}")
def test_the_relay_answers_and_reprioritises_its_streams_to_the_subscriber(
    tmp_path: Path, kind: str, version: Version
) -> None:
    async def scenario() -> None:
        async with relay_running(tmp_path) as running:
            pub = await client(running, kind, version)
            video, audio = pub.add_track(Track(NS, b"video")), pub.add_track(Track(NS, b"audio"))
            await pub.publish_namespace(NS)
            viewer = await client(running, kind, version)
            sub = await viewer.subscribe(NS, "video", Parameters(subscriber_priority=100))
            other = await viewer.subscribe(NS, "audio", Parameters(subscriber_priority=100))
            video.append(CachedObject(0, 0, 0, b"a"))
            video.append(CachedObject(0, 1, 0, b"b"))  # two long-lived subgroup streams at the relay
            audio.append(CachedObject(0, 0, 0, b"c"))
            assert sorted(await read(sub, 2)) == [(0, 0, 0), (0, 1, 0)]
            assert await read(other, 1) == [(0, 0, 0)]
            # The relay's side of the viewer's session: the one serving both of its subscriptions.
            serving: list[MoqSession] = [
                s
                for s in running.relay.sessions
                if s.served_stream_ids(sub.request_id) and s.served_stream_ids(other.request_id)
            ]
            assert len(serving) == 1
            downstream = serving[0]
            before = [downstream.conn.stream_priority(s) for s in downstream.served_stream_ids(sub.request_id)]
            assert len(before) == 2 and all(p is not None and p[0] == 100 for p in before), before

            ok = await asyncio.wait_for(viewer.update(sub.request_id, Parameters(subscriber_priority=7)), EVENT_TIMEOUT)
            assert isinstance(ok, RequestOk)  # answered (REQUEST_UPDATE_OK, §9.5)

            after = [downstream.conn.stream_priority(s) for s in downstream.served_stream_ids(sub.request_id)]
            assert len(after) == 2 and all(p is not None and p[0] == 7 for p in after), after
            untouched = [downstream.conn.stream_priority(s) for s in downstream.served_stream_ids(other.request_id)]
            assert untouched and all(p is not None and p[0] == 100 for p in untouched), untouched
            # Streams the relay opens to the viewer from now on start at the new priority too.
            video.append(CachedObject(1, 0, 0, b"later"))
            assert await read(sub, 1) == [(1, 0, 0)]
            opened = downstream.served_stream_ids(sub.request_id)
            assert len(opened) == 3
            assert all((downstream.conn.stream_priority(s) or (None,))[0] == 7 for s in opened)
            pub.close()
            viewer.close()

    run(scenario())
