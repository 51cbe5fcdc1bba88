"""`moq subscribe --room` without a browser: `moq publish` broadcasts under the room, one leaving on its own and
one still on when SIGTERM ends the command; every recording is finished and agrees with the figures."""

from __future__ import annotations

import signal
from pathlib import Path

import av

from tests.cli.helpers import SMALL, load_json, moq, relay_args, relay_running, run


def video_frames(path: Path) -> int:
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


def test_room_records_who_comes_and_goes_and_stops_on_sigterm(tmp_path: Path) -> None:
    out, sub_json, b_json = tmp_path / "rec", tmp_path / "room.json", tmp_path / "b.json"

    async def scenario() -> None:
        async with relay_running(tmp_path) as relay:
            url = relay_args(relay)
            room = ["subscribe", *url, "--room", "room", "--output", str(out), "--stats-json", str(sub_json)]
            async with moq(*room) as sub:
                await sub.line("watching the room room")
                publish = ["publish", *url, *SMALL, "--framerate", "15", "--gop", "5", "--stats-interval", "0.5"]
                async with moq(*publish, "--name", "room/a") as a:
                    await sub.line(r"subscribed to room/a: ")
                    b_args = ["--name", "room/b", "--duration", "2", "--wait-subscriber", "--stats-json", str(b_json)]
                    async with moq(*publish, *b_args) as b:
                        await sub.line(r"subscribed to room/b: ")
                        await b.succeeds()
                    await sub.line(r"^b: received ")  # b's broadcast ended: its recording is finished
                    await a.line(r"\] published video")  # a is still on
                    sub.process.send_signal(signal.SIGTERM)
                    await sub.succeeds()
                    a.process.send_signal(signal.SIGINT)
                    await a.succeeds()
            print(f"\n{sub.stderr}")

    run(scenario())
    figures = load_json(sub_json)
    assert figures["ended_by"] == "signal" and sorted(figures["participants"]) == ["a", "b"]
    a, b = figures["participants"]["a"], figures["participants"]["b"]
    assert a["ended_by"] == "signal" and b["ended_by"] in ("publish_done", "left")
    published_b = load_json(b_json)["tracks"]["video"]["frames"]
    for name, p in (("a", a), ("b", b)):
        recorded = p["tracks"]["video"]["frames_recorded"]
        in_file = video_frames(out / f"{name}.mkv")
        print(f"{name}: {p['tracks']['video']['objects']} video objects, {recorded} recorded, {in_file} in the file")
        assert p["output"] == str(out / f"{name}.mkv")
        assert in_file == recorded == p["tracks"]["video"]["objects"] > 0
    print(f"b published {published_b} video frames")
    assert b["tracks"]["video"]["frames_recorded"] == published_b  # b started once we were subscribed
