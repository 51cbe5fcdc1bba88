"""Our interop client (`moq interop`): every case against our relay and against aiomoqt's (picoquic), raw QUIC
and WebTransport, drafts 22 and 18 (and 20 with aiomoqt), plus the runner's command-line contract.

The client runs in-process against a relay on loopback and its TAP is parsed back, as a harness would. A failing
case must be explained by an open known issue (interop/known.py, with whose side, the section and the bytes): the
test then reports XFAIL naming the issues; anything unexplained fails it. aiomoqt's relay supports every case.
"""

from __future__ import annotations

import asyncio
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from interop.cases import CASES
from interop.client import run_cases
from interop.known import triage
from interop.peers import Aiomoqt, aiomoqt_relay, find_aiomoqt
from interop.tap import parse_tap
from moq.transport.tls import generate_dev_certificate
from moq.wire.version import Version
from relay.config import RelayConfig
from relay.server import start_relay

#: The whole run (20 cases, each with its own timeout) on one cell.
CELL_DEADLINE = 90.0


def judge(client: str, relay: str, draft: int, tap: str) -> None:
    """Every case reported, none failed but for known open issues (then XFAIL naming them)."""
    run = parse_tap(tap)
    assert run.complete, tap
    assert [p.name for p in run.points] == list(CASES), tap
    failed = [p.name for p in run.points if p.status == "fail"]
    explained, unexplained = triage(client, relay, draft, failed)
    assert not unexplained, f"unexplained failures {unexplained}:\n{tap}"
    if explained:
        ids = sorted({issue.id for issues in explained.values() for issue in issues})
        pytest.xfail(f"known open issues: {', '.join(ids)} (cases {', '.join(explained)})")


@pytest.mark.parametrize("kind", ["quic", "webtransport"])
@pytest.mark.parametrize("version", [Version.DRAFT_22, Version.DRAFT_18], ids=lambda v: f"draft-{v.value}")
def test_our_client_passes_every_case_against_our_relay(tmp_path: Path, kind: str, version: Version) -> None:
    async def scenario() -> str:
        running = await start_relay(RelayConfig(bind="127.0.0.1", port=0, state_dir=str(tmp_path)))
        try:
            url = f"{'moqt' if kind == 'quic' else 'https'}://127.0.0.1:{running.port}/"
            out = io.StringIO()
            await run_cases(url, list(CASES.values()), versions=(version,), verify=False, out=out)
            return out.getvalue()
        finally:
            await running.stop()

    tap = asyncio.run(asyncio.wait_for(scenario(), CELL_DEADLINE))
    assert f"draft: {version.value}" in tap
    judge("moq", "moq", version.value, tap)


PEER = find_aiomoqt()
needs_aiomoqt = pytest.mark.skipif(
    PEER is None and not os.environ.get("MOQ_REQUIRE_PEERS"),
    reason="aiomoqt is not installed (python -m interop.peers install; make test does it)",
)


@pytest.fixture(scope="module")
def cert_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    directory = tmp_path_factory.mktemp("certs")
    generate_dev_certificate().save(directory / "cert.pem", directory / "key.pem")
    return directory / "cert.pem", directory / "key.pem"


@needs_aiomoqt
@pytest.mark.parametrize("kind", ["quic", "webtransport"])
@pytest.mark.parametrize(
    "version", [Version.DRAFT_22, Version.DRAFT_20, Version.DRAFT_18], ids=lambda v: f"draft-{v.value}"
)
def test_our_client_passes_every_case_against_aiomoqt_relay(
    cert_files: tuple[Path, Path], kind: str, version: Version
) -> None:
    assert PEER is not None, "MOQ_REQUIRE_PEERS is set but aiomoqt is not installed"
    peer: Aiomoqt = PEER

    async def scenario() -> str:
        async with aiomoqt_relay(peer, *cert_files) as port:
            # aiomoqt's relay answers WebTransport on "/" only (docs/INTEROP-NOTES.md).
            url = f"{'moqt' if kind == 'quic' else 'https'}://127.0.0.1:{port}/"
            out = io.StringIO()
            await run_cases(url, list(CASES.values()), versions=(version,), verify=False, out=out)
            return out.getvalue()

    tap = asyncio.run(asyncio.wait_for(scenario(), CELL_DEADLINE))
    assert f"draft: {version.value}" in tap
    judge("moq", "aiomoqt", version.value, tap)


def moq(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`moq ...` as a person (or the runner) would run it."""
    command = [sys.executable, "-c", "from cli.main import main; main()", *args]
    environment = {k: v for k, v in os.environ.items() if k not in ("RELAY_URL", "TESTCASE", "TLS_DISABLE_VERIFY")}
    return subprocess.run(command, capture_output=True, text=True, env={**environment, **(env or {})}, timeout=60)


def test_the_command_line_contract(tmp_path: Path) -> None:
    """`-l` lists one case a line; the environment names the relay and the case; TAP 14 on stdout; exit codes
    0 (passed), 127 (no such case); an explicit `-t` beats TESTCASE."""
    listed = moq("interop", "-l")
    assert listed.returncode == 0 and listed.stdout.split() == list(CASES)

    unknown = moq("interop", "-r", "moqt://127.0.0.1:9/", "-t", "no-such-case")
    assert unknown.returncode == 127, unknown.stdout + unknown.stderr

    async def scenario() -> tuple[subprocess.CompletedProcess[str], subprocess.CompletedProcess[str]]:
        running = await start_relay(RelayConfig(bind="127.0.0.1", port=0, state_dir=str(tmp_path)))
        try:
            env = {
                "RELAY_URL": f"moqt://127.0.0.1:{running.port}/",
                "TESTCASE": "setup-only",
                "TLS_DISABLE_VERIFY": "1",
            }
            by_env = await asyncio.to_thread(moq, "interop", env=env)
            by_flag = await asyncio.to_thread(moq, "interop", "-t", "subscribe-error", "--draft", "18", env=env)
            return by_env, by_flag
        finally:
            await running.stop()

    by_env, by_flag = asyncio.run(asyncio.wait_for(scenario(), 60))
    assert by_env.returncode == 0, by_env.stdout + by_env.stderr
    run = parse_tap(by_env.stdout)
    assert (
        run.version == 14 and run.planned == 1 and [(p.name, p.status) for p in run.points] == [("setup-only", "pass")]
    )
    assert isinstance(run.points[0].diagnostics.get("duration_ms"), int)
    assert "connection_id" in run.points[0].diagnostics
    assert by_flag.returncode == 0, by_flag.stdout + by_flag.stderr
    flagged = parse_tap(by_flag.stdout)
    assert [p.name for p in flagged.points] == ["subscribe-error"]
    assert flagged.points[0].diagnostics["draft"] == 18


def test_an_unreachable_relay_bails_out_with_exit_code_1() -> None:
    """Nothing listens: the first case fails, the run stops with `Bail out!` (the contract's fatal error)."""
    from interop.peers import free_udp_port

    result = moq("interop", "-r", f"moqt://127.0.0.1:{free_udp_port()}/", "--tls-disable-verify", "-t",
                 "setup-only,announce-only")  # fmt: skip
    assert result.returncode == 1, result.stdout + result.stderr
    run = parse_tap(result.stdout)
    assert run.bail_out and [p.status for p in run.points] == ["fail"]
