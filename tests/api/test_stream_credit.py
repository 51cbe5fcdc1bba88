"""A subscriber that takes new streams more slowly than the track makes groups stays live: a group whose stream
has waited MAX_STREAM_OPEN_WAIT_SECONDS to open while a newer group is ready is given up, never opened.

An audio-like track (one small object per group, 50 groups a second) to a subscriber that stops acknowledging for
two seconds: the publisher's streams in flight (capped low here) are not acknowledged, so new streams wait to open.
The track's bytes are far below MAX_SUBSCRIPTION_BACKLOG_BYTES, so without this rule every group of the stall would
be delivered after it, oldest first, seconds late. Real QUIC on loopback.
"""

from __future__ import annotations

import asyncio
import struct
import time

import pytest

from moq.api import MoqSession, connect, serve
from moq.api import session as api_session
from moq.model import CachedObject, Track
from moq.transport.tls import CertificateBundle
from tests.api.test_end_to_end import NS, certificate, run, url
from tests.api.test_priority_update import pause_socket

__all__ = ["certificate"]

PERIOD = 0.02  # 50 groups a second, as 20 ms audio frames
IN_FLIGHT = 4
STALL = 2.0
LATE = 1.0  # an object this old when it arrives is late (the stall is twice that)


@pytest.mark.parametrize("kind", ["quic", "webtransport"])
@pytest.mark.parametrize("rule", [True, False], ids=["rule", "without the rule"])
def test_groups_that_cannot_open_in_time_are_dropped_and_the_subscriber_stays_live(
    certificate: CertificateBundle, kind: str, rule: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not rule:
        monkeypatch.setattr(api_session, "MAX_STREAM_OPEN_WAIT_SECONDS", float("inf"))
    track = Track(NS, b"audio")
    served: list[MoqSession] = []

    async def handler(session: MoqSession) -> None:
        session.conn.max_inflight_uni_streams = IN_FLIGHT
        served.append(session)
        session.add_track(track)
        await session.wait_closed()

    async def scenario() -> tuple[int, list[tuple[int, float, float]], int]:
        server = await serve(handler, host="127.0.0.1", port=0, certificate=certificate)
        try:
            client = await connect(url(kind, server.port), fingerprint=certificate.fingerprint)
            async with client:
                sub = await client.subscribe(NS, "audio")
                got: list[tuple[int, float, float]] = []  # (group, sent at, received at)
                last = asyncio.Event()
                groups = 0

                async def receive() -> None:
                    async for obj in sub:
                        got.append((obj.group_id, struct.unpack("!d", obj.payload[:8])[0], time.monotonic()))
                        if obj.group_id == groups - 1 and groups:
                            last.set()

                async def publish_for(seconds: float) -> None:
                    nonlocal groups
                    until = time.monotonic() + seconds
                    while time.monotonic() < until:
                        track.append(CachedObject(groups, 0, 0, struct.pack("!d", time.monotonic()) + bytes(72)))
                        track.end_subgroup(groups, 0)
                        groups += 1
                        await asyncio.sleep(PERIOD)  # the track's pace, not a wait for an event

                reader = asyncio.ensure_future(receive())
                await publish_for(0.4)
                pause_socket(client, True)
                await publish_for(STALL)
                pause_socket(client, False)
                resumed = time.monotonic()
                await publish_for(1.0)
                await asyncio.wait_for(last.wait(), 10)  # the newest group arrives, whatever came before it
                reader.cancel()
                assert not served[0].closed.is_set()
                after = [g for g in got if g[2] >= resumed]
                return groups, after, served[0].groups_dropped
        finally:
            server.close()
            await server.wait_closed()

    published, after_resume, dropped = run(scenario())
    late = [g for g, sent, received in after_resume if received - sent > LATE]
    print(
        f"\n{kind}, {'with' if rule else 'without'} the rule: {published} groups published, {len(after_resume)} "
        f"received after the stall ({len(late)} over {LATE} s late), {dropped} dropped by the publisher"
    )
    if rule:
        # Only the streams already in flight when the stall began (and retransmitted after it) come that late.
        assert len(late) <= IN_FLIGHT + 2, late
        assert dropped >= (STALL - api_session.MAX_STREAM_OPEN_WAIT_SECONDS) / PERIOD / 2
    else:
        # What the rule prevents: the stall's groups, delivered after it, oldest first.
        assert len(late) > 20 and dropped == 0
