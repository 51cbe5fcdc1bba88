"""`moq subscribe --room`: two headless Chromium pages in a call, recorded from the terminal, one file each.

The relay runs in this process with its web pages (port 0); alice publishes H.264, bob VP8 (`codec=vp8`), both
with the fake camera and microphone. The command runs as a subprocess with the relay's fingerprint pinned; bob
leaves while it runs, alice stays until --duration ends it. Each recording must open in PyAV with exactly the
video frames the command says it recorded, and agree with the page's own count of frames it encoded: everything
encoded while the command was subscribed, plus at most the start of the group it joined in. Nothing sleeps in
place of an event: the test waits on the command's stderr lines and exit, and polls the pages inside deadlines.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import av
import pytest

from tests.cli.helpers import load_json, moq, relay_args
from tests.web.test_call import Participant, participants, pytestmark, relay_with_pages, run

__all__ = ["pytestmark"]  # the call tests' marks: a network test, skipped without Chromium

#: Frames (at the pages' 20 fps) that may be in flight or encoded between a page sample and the moment it
#: stands for: one second.
SLACK = 20
#: Frames in a group the command may join in the middle of (the publisher's keyframe interval: fps frames).
GOP = 20
DURATION = 8.0


async def encoded(page: Participant) -> int:
    value = (await page.stats())["publisher"]["videoFramesEncoded"]
    assert isinstance(value, int)
    return value


def count_video(path: Path) -> tuple[str, int, int, bool]:
    """(codec, packets, decoded frames, has audio) of a recording."""
    with av.open(str(path)) as container:
        video = container.streams.video[0]
        codec = video.codec_context.name
        has_audio = bool(container.streams.audio)
        packets = sum(1 for packet in container.demux(video) if packet.size > 0)
    with av.open(str(path)) as container:
        frames = sum(1 for _ in container.decode(video=0))
    return codec, packets, frames, has_audio


def test_subscribe_room_records_each_participant(tmp_path: Path) -> None:
    out = tmp_path / "recordings"
    stats_file = tmp_path / "room.json"

    async def scenario() -> dict[str, Any]:
        async with relay_with_pages(tmp_path) as (running, web), participants(web, "alice", "bob") as (alice, bob):
            await asyncio.gather(alice.join(), bob.join())
            for page in (alice, bob):
                await page.wait(
                    lambda s: s["publisher"]["state"] == "publishing" and s["publisher"]["videoFramesEncoded"] >= 10,
                    30,
                    f"{page.name} publishing",
                )
            args = [*relay_args(running), "--room", "team", "--output", str(out), "--duration", str(DURATION)]
            async with moq("subscribe", *args, "--stats-json", str(stats_file), "--quiet") as command:
                counts: dict[str, dict[str, int]] = {"alice": {}, "bob": {}}
                for page in (alice, bob):
                    await command.line(rf"subscribed to team/{page.name}: ")
                    counts[page.name]["subscribed"] = await encoded(page)
                # bob leaves after two more seconds of video; the command goes on with alice.
                await bob.wait(
                    lambda s: s["publisher"]["videoFramesEncoded"] >= counts["bob"]["subscribed"] + 40,
                    15,
                    "bob publishing for 2 s",
                )
                counts["bob"]["end"] = await encoded(bob)
                await bob.leave()
                await command.line(r"^bob left the room")
                await command.line(r"^bob: received ")
                await command.line(r"^alice: received ")  # after --duration: alice's recording is finished
                counts["alice"]["end"] = await encoded(alice)
                await command.succeeds()
                print(f"\n{command.stderr}\npage counters (video frames encoded): {counts}")
                return {"counts": counts, "stderr": command.stderr}

    result = run(scenario())
    counts: dict[str, dict[str, int]] = result["counts"]
    figures = load_json(stats_file)
    assert figures["room"] == "team" and figures["ended_by"] == "duration"
    assert sorted(figures["participants"]) == ["alice", "bob"]
    assert figures["participants"]["alice"]["ended_by"] == "duration"
    assert figures["participants"]["bob"]["ended_by"] in ("left", "publish_done")
    for name, codec in (("alice", "h264"), ("bob", "h264")):
        p = figures["participants"][name]
        assert p["namespace"] == f"team/{name}" and "error" not in p
        path = Path(p["output"])
        assert path == out / f"{name}.mkv" and path.is_file()
        video = p["tracks"]["video"]
        file_codec, packets, frames, has_audio = count_video(path)
        page = counts[name]
        encoded_while_subscribed = page["end"] - page["subscribed"]
        print(
            f"{name}: {video['codec']}, {video['objects']} objects received ({video['status_objects']} status, "
            f"{video.get('objects_late', 0)} late), {video['frames_recorded']} recorded, "
            f"file {packets} packets / {frames} decoded frames; the page encoded {encoded_while_subscribed} "
            f"while subscribed ({page['subscribed']} -> {page['end']})"
        )
        assert file_codec == codec and has_audio
        assert video["frames_recorded"] > 0
        assert frames == packets == video["frames_recorded"]
        # Every object is recorded but status objects (END_OF_GROUP) and those that came too late for the reorder
        # buffer (a group's stream overtaken by the next one's for longer than MAX_REORDER_WAIT: a loaded machine).
        late = video.get("objects_late", 0)
        assert video["frames_recorded"] == video["frames"] == video["objects"] - video["status_objects"] - late
        assert late <= SLACK
        assert video["groups_dropped"] == 0 and video["objects_missing"] == 0
        # Everything the page encoded while we were subscribed, plus at most the group we joined in the middle of.
        assert encoded_while_subscribed - SLACK <= video["frames_recorded"] <= encoded_while_subscribed + GOP + SLACK
        assert p["tracks"]["audio"]["frames_recorded"] > 0


@pytest.mark.parametrize("args", [["--room", "team", "--name", "team/alice"], []])
def test_subscribe_takes_either_a_name_or_a_room(args: list[str]) -> None:
    async def scenario() -> str:
        async with moq("subscribe", "moqt://127.0.0.1:9/", *args) as command:
            assert await command.wait() == 2
            return command.stderr

    assert "give either --name NAMESPACE or --room ROOM" in run(scenario())
