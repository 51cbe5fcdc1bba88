"""Two publishers whose namespaces both match a track (draft-22 §7: the relay SUBSCRIBEs to each): one has the
track, the other refuses. The refusal must not end the relay's cache of the track that the other one fills (it
did: a refused upstream subscription ended the shared cache, and the subscriber got nothing)."""

from __future__ import annotations

from pathlib import Path

import pytest

from moq.model import Track

from .conftest import client, relay_running, run
from .test_relay import KINDS, NS, by_group, produce, read_all


@pytest.mark.parametrize("kind", KINDS)
def test_a_refusing_publisher_of_a_prefix_leaves_the_track_another_publishes(tmp_path: Path, kind: str) -> None:
    async def scenario() -> None:
        async with relay_running(tmp_path) as running:
            host = await client(running, kind)  # publishes the prefix `live`, has no track `live/show/video`
            await host.publish_namespace(NS[:1])
            participant = await client(running, kind)
            track = participant.add_track(Track(NS, b"video"))
            await participant.publish_namespace(NS)
            viewer = await client(running, kind)
            sub = await viewer.subscribe(NS, "video")
            sent = produce(track, range(3))
            track.end_track()
            assert by_group(await read_all(sub)) == by_group(sent)  # each group whole and in order
            sources = [rt.sources for rt in running.relay.tracks.values()]
            assert all(host not in s for s in sources)  # the relay asked the host too, which refused
            for s in (host, participant, viewer):
                s.close()

    run(scenario())
