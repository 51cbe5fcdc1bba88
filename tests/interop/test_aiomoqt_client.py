"""Foreign check: aiomoqt's interop-runner client (picoquic) against `moq relay`, every case it runs by default,
raw QUIC and WebTransport, drafts 22 and 18. Its TAP output must report every case ok."""

from __future__ import annotations

import asyncio
import os
import re
from pathlib import Path

import pytest

from interop.peers import Aiomoqt, find_aiomoqt
from moq.wire.version import Version
from relay.config import RelayConfig
from relay.server import start_relay

PEER = find_aiomoqt()
pytestmark = pytest.mark.skipif(
    PEER is None and not os.environ.get("MOQ_REQUIRE_PEERS"),
    reason="aiomoqt is not installed (python -m interop.peers install; make test does it)",
)
#: The cases aiomoqt's client runs by default; its `-l` lists `fetch` and `join` too, which run on their own.
EXPECTED_CASES = 12
EXTRA_CASES = ("fetch", "join")


@pytest.fixture(scope="module")
def peer() -> Aiomoqt:
    assert PEER is not None, "MOQ_REQUIRE_PEERS is set but aiomoqt is not installed"
    return PEER


async def run_client(peer: Aiomoqt, url: str, version: Version, *tests: str) -> str:
    args = [str(peer.client), "-r", url, "--tls-disable-verify", "--draft", str(version.value)]
    for test in tests:
        args += ["-t", test]
    proc = await asyncio.create_subprocess_exec(*args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await proc.communicate()
    return out.decode(errors="replace")


@pytest.mark.parametrize("kind", ["quic", "webtransport"])
@pytest.mark.parametrize("version", [Version.DRAFT_22, Version.DRAFT_18], ids=lambda v: f"draft-{v.value}")
def test_aiomoqt_client_passes_against_our_relay(peer: Aiomoqt, tmp_path: Path, kind: str, version: Version) -> None:
    async def scenario() -> str:
        running = await start_relay(RelayConfig(bind="127.0.0.1", port=0, state_dir=str(tmp_path)))
        try:
            url = f"{'moqt' if kind == 'quic' else 'https'}://127.0.0.1:{running.port}/"
            outputs = [await run_client(peer, url, version)]
            outputs += [await run_client(peer, url, version, case) for case in EXTRA_CASES]
            return "".join(outputs)
        finally:
            await running.stop()

    tap = asyncio.run(asyncio.wait_for(scenario(), 240))
    results = re.findall(r"^(ok|not ok) \d+ - (\S+)", tap, flags=re.MULTILINE)
    failed = [name for status, name in results if status != "ok"]
    assert not failed, f"aiomoqt's client failed {failed}:\n{tap}"
    assert len(results) == EXPECTED_CASES + len(EXTRA_CASES), tap
