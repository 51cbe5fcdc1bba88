"""`moq demo` (what `make run` starts): a relay with its pages and a live test-pattern broadcast; SIGTERM stops it."""

from __future__ import annotations

import asyncio
import re
import signal
import sys
import urllib.request
from pathlib import Path

from moq.api import connect
from moq.wire.params import Parameters

MOQ = str(Path(sys.executable).with_name("moq"))


def test_demo_serves_a_watchable_broadcast_and_stops_cleanly(tmp_path: Path) -> None:
    async def scenario() -> None:
        proc = await asyncio.create_subprocess_exec(
            MOQ,
            "demo",
            "--bind",
            "127.0.0.1",
            "--port",
            "0",
            "--web-port",
            "0",
            "--state-dir",
            str(tmp_path),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        assert proc.stderr is not None
        lines: list[str] = []
        try:
            watch = fingerprint = port = None
            while watch is None:
                raw = await asyncio.wait_for(proc.stderr.readline(), 30)
                assert raw, "moq demo exited early:\n" + "".join(lines)
                line = raw.decode()
                lines.append(line)
                if m := re.search(r"UDP port (\d+)", line):
                    port = int(m.group(1))
                if m := re.search(r"fingerprint: ([0-9a-f]{64})", line):
                    fingerprint = m.group(1)
                if m := re.search(r"Watch the demo broadcast: (\S+)", line):
                    watch = m.group(1)
            assert port and fingerprint and watch.endswith("/watch/live/demo")
            page = await asyncio.to_thread(lambda: urllib.request.urlopen(watch, timeout=10).read())
            assert b"<" in page  # the player page is served
            session = await connect(f"moqt://127.0.0.1:{port}/", fingerprint=fingerprint)
            async with session:
                # The publisher may still be starting: let the relay hold the SUBSCRIBE until it is there.
                sub = await session.subscribe("live/demo", "video", Parameters(rendezvous_timeout=20_000))
                first = await asyncio.wait_for(sub.next(), 20)
                assert first is not None and first.payload  # frames of the test pattern flow
                # The tone goes five 20 ms frames to a group (one stream each), lighter for browsers watching.
                audio = await session.subscribe("live/demo", "audio", Parameters(rendezvous_timeout=20_000))
                seen: list[int] = []
                while not seen or seen[-1] != 4:
                    obj = await asyncio.wait_for(audio.next(), 20)
                    assert obj is not None and len(seen) < 10, seen
                    seen.append(obj.object_id)
        finally:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
            code = await asyncio.wait_for(proc.wait(), 20)
        assert code == 0, "".join(lines)

    asyncio.run(asyncio.wait_for(scenario(), 90))
