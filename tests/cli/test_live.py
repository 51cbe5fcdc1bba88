"""`moq publish` -> `moq relay` -> `moq subscribe` on loopback: real QUIC, real encoders, the commands as
subprocesses. The test pattern's stamped frame numbers prove order and completeness."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import av
import pytest

from tests.cli.helpers import SMALL, load_json, moq, relay_args, relay_running, run


@pytest.mark.parametrize("audio_per_group", [1, 5], ids=["one audio frame a group", "five audio frames a group"])
def test_pattern_every_frame_decoded_in_order(tmp_path: Path, audio_per_group: int) -> None:
    """3 s of the test pattern at 15 fps: the subscriber decodes exactly the frames the publisher published,
    video and audio, in order (the stamps read back 0, 1, 2, ... with no gap), and ends with the broadcast. Audio
    goes one frame to a group (LOC-04's example, the default) or five (--audio-frames-per-group)."""
    pub_json, sub_json = tmp_path / "pub.json", tmp_path / "sub.json"

    async def scenario() -> None:
        async with relay_running(tmp_path) as relay:
            url = relay_args(relay)
            publish = ["publish", *url, "--name", "live/demo", *SMALL, "--framerate", "15", "--duration", "3"]
            publish += ["--wait-subscriber", "--stats-json", str(pub_json)]
            publish += ["--audio-frames-per-group", str(audio_per_group)]
            async with moq(*publish) as pub:
                await pub.line("waiting for a subscriber")
                subscribe = [
                    "subscribe",
                    *url,
                    "--name",
                    "live/demo",
                    "--verify-pattern",
                    "--stats-json",
                    str(sub_json),
                ]
                async with moq(*subscribe) as sub:
                    await sub.succeeds()
                await pub.succeeds()
            assert any("fps" in line and "ms" in line for line in sub.lines), sub.stderr

    run(scenario())
    published, received = load_json(pub_json), load_json(sub_json)
    video, audio = published["tracks"]["video"], published["tracks"]["audio"]
    assert video["frames"] == 45 and video["groups"] == 3  # 15 fps x 3 s, one group per 1 s GOP
    assert audio["frames"] >= 150 and audio["groups"] == -(-audio["frames"] // audio_per_group)
    got_video, got_audio = received["tracks"]["video"], received["tracks"]["audio"]
    assert got_video["objects"] == got_video["frames_decoded"] == video["frames"]
    assert got_audio["objects"] == got_audio["frames_decoded"] == audio["frames"]
    assert got_video["groups"] == video["groups"] and got_audio["groups"] == audio["groups"]
    assert received["groups_dropped"] == 0
    assert got_video["objects_missing"] == got_audio["objects_missing"] == 0
    assert got_video["objects_late"] == got_audio["objects_late"] == 0  # (reordered ones were put back in order)
    pattern = received["pattern"]
    assert pattern["frames_checked"] == 45
    assert (pattern["first_frame_number"], pattern["last_frame_number"]) == (0, 44)
    assert pattern["out_of_order"] == pattern["missing"] == 0
    assert received["ended_by"] == "publish_done"
    assert got_video["done"] == got_audio["done"] == "TRACK_ENDED"


def test_stats_json_reports_end_to_end_latency(tmp_path: Path) -> None:
    """--stats-json carries latency percentiles per track and overall (present and positive; no time bound)."""
    sub_json = tmp_path / "sub.json"

    async def scenario() -> None:
        async with relay_running(tmp_path) as relay:
            url = relay_args(relay)
            publish = ["publish", *url, "--name", "live/lat", *SMALL, "--framerate", "15", "--duration", "2"]
            async with moq(*publish, "--wait-subscriber", "--quiet") as pub:
                await pub.line("waiting for a subscriber")
                async with moq("subscribe", *url, "--name", "live/lat", "--stats-json", str(sub_json)) as sub:
                    await sub.succeeds()
                await pub.succeeds()

    run(scenario())
    received = load_json(sub_json)
    tracks = received["tracks"].values()
    figures = [received["latency_ms"], *(t["latency_ms"] for t in tracks)]
    figures += [received["latency_after_join_ms"], *(t["latency_after_join_ms"] for t in tracks)]
    for latency in figures:
        assert latency is not None
        assert latency["count"] > 0
        assert 0 < latency["p50"] <= latency["p90"] <= latency["p99"] <= latency["max"]


def test_late_joiner_gets_catalog_and_starts_at_a_keyframe(tmp_path: Path) -> None:
    """A subscriber that arrives mid-broadcast gets the catalog (several catalog groups have gone by), starts at
    the latest group's keyframe so every frame it receives decodes, and leaves after --duration. The publisher
    ends cleanly on SIGINT."""
    sub_json, pub_json = tmp_path / "sub.json", tmp_path / "pub.json"

    async def scenario() -> None:
        async with relay_running(tmp_path) as relay:
            url = relay_args(relay)
            publish = ["publish", *url, "--name", "live/late", *SMALL, "--framerate", "15", "--gop", "5"]
            publish += ["--catalog-interval", "0.2", "--stats-interval", "0.5", "--stats-json", str(pub_json)]
            async with moq(*publish) as pub:
                await pub.line(r"\] published video")  # a live line: media has been flowing for a while
                subscribe = ["subscribe", *url, "--name", "live/late", "--decode", "--duration", "1.5"]
                async with moq(*subscribe, "--stats-json", str(sub_json)) as sub:
                    await sub.succeeds()
                pub.process.send_signal(signal.SIGINT)
                await pub.succeeds()

    run(scenario())
    received, published = load_json(sub_json), load_json(pub_json)
    assert received["ended_by"] == "duration"
    video = received["tracks"]["video"]
    assert video["objects"] > 0 and video["frames_decoded"] == video["objects"]
    assert received["tracks"]["audio"]["frames_decoded"] == received["tracks"]["audio"]["objects"] > 0
    assert published["ended_by"] == "signal"
    assert published["tracks"]["catalog"]["groups"] >= 2


def test_stdin_to_stdout_pipe_is_valid_mpeg_ts(tmp_path: Path, ts_file: Path) -> None:
    """`... | moq publish --input -` and `moq subscribe --output - | ...`: what comes out of the pipe is MPEG-TS
    that PyAV opens, with every video frame the publisher sent."""
    piped, pub_json = tmp_path / "piped.ts", tmp_path / "pub.json"
    data = ts_file.read_bytes()

    async def feed(stdin: asyncio.StreamWriter | None) -> None:
        assert stdin is not None
        stdin.write(data)
        await stdin.drain()
        stdin.close()

    async def scenario() -> None:
        async with relay_running(tmp_path) as relay:
            url = relay_args(relay)
            publish = ["publish", *url, "--name", "live/pipe", "--input", "-", "--wait-subscriber", "--quiet"]
            async with moq(*publish, "--stats-json", str(pub_json), stdin=True) as pub:
                feeding = asyncio.ensure_future(feed(pub.process.stdin))
                await pub.line("waiting for a subscriber")
                async with moq("subscribe", *url, "--name", "live/pipe", "--output", "-", "-q", stdout=True) as sub:
                    assert sub.process.stdout is not None
                    piped.write_bytes(await sub.process.stdout.read())  # to EOF: the command closes it at exit
                    await sub.succeeds()
                await pub.succeeds()
                await feeding

    run(scenario())
    published = load_json(pub_json)
    with av.open(str(piped)) as container:
        assert container.format.name == "mpegts"
        assert {s.type for s in container.streams} == {"video", "audio"}
        frames = sum(1 for _ in container.decode(video=0))
    assert frames == published["tracks"]["video"]["frames"] == 60
