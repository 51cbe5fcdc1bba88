"""A long-lived session's handle <-> stream id maps stay bounded (MAX_STREAM_MAP): a publisher opens a stream per
group, and the mappings of streams that are over are forgotten. Real QUIC on loopback."""

from __future__ import annotations

import asyncio

import pytest

from moq.api import MoqSession, connect, serve
from moq.api import session as api_session
from moq.model import CachedObject, Track
from moq.transport.tls import CertificateBundle
from tests.api.test_end_to_end import NS, certificate, run, url

__all__ = ["certificate"]

GROUPS = 300
BOUND = 16


@pytest.mark.parametrize("kind", ["quic", "webtransport"])
def test_a_stream_per_group_keeps_the_stream_maps_bounded(
    certificate: CertificateBundle, kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(api_session, "MAX_STREAM_MAP", BOUND)
    track = Track(NS, b"video")
    sessions: list[MoqSession] = []

    async def handler(session: MoqSession) -> None:
        sessions.append(session)
        session.add_track(track)
        await session.wait_closed()

    async def scenario() -> None:
        server = await serve(handler, host="127.0.0.1", port=0, certificate=certificate)
        try:
            client = await connect(url(kind, server.port), fingerprint=certificate.fingerprint)
            async with client:
                sub = await client.subscribe(NS, "video")
                largest = 0
                for group in range(GROUPS):  # one at a time: each group's stream ends before the next opens
                    track.append(CachedObject(group, 0, 0, bytes([group % 256]) * 200))
                    track.end_subgroup(group, 0)
                    obj = await asyncio.wait_for(sub.next(), 5)
                    assert obj is not None and (obj.group_id, obj.payload[:1]) == (group, bytes([group % 256]))
                    largest = max(largest, len(sessions[0]._stream_ids))
                print(f"\n{kind}: {GROUPS} streams served; the publisher's stream map held {largest} at most")
                assert largest <= 2 * BOUND + 2
                assert len(sessions[0]._handles) == len(sessions[0]._stream_ids)
        finally:
            server.close()
            await server.wait_closed()

    run(scenario())
