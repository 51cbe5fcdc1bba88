"""The interop matrix: every client against every relay, both transports, every draft the pair shares.

Implementations that run here: ours (`moq relay`, `moq interop`) and aiomoqt (`moq-interop-relay --dual`,
`moq-interop-client`, installed under `.peers/` by `interop.peers`). Looked for and not usable here: `@moq/lite`
0.2.2 on npm (moq-dev's JS library) speaks IETF drafts 14-17 only (`ietf/version.js`: ALPN moq-00, moqt-15..17),
so it shares no draft with us, and Node 20 has no WebTransport of its own.

Each cell gets a fresh relay process (so no state leaks from one cell to another) and runs the client as a
process, the way the interop runner does; its TAP is parsed, failures are matched to `interop.known`, and the
whole matrix is written as Markdown and JSON. Cells run a few at a time (`jobs`).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import os
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from interop.cases import CASES
from interop.known import KnownIssue, explain
from interop.peers import Aiomoqt, aiomoqt_relay, find_aiomoqt, free_udp_port, install_aiomoqt, relay_process
from interop.tap import TapRun, parse_tap
from moq import __version__
from moq.transport.tls import generate_dev_certificate

OURS = "moq"
AIOMOQT = "aiomoqt"
TRANSPORTS = ("quic", "webtransport")
#: The drafts each implementation speaks (ours: moq.wire.version; aiomoqt 0.13: MOQT_DEFAULT_DRAFTS).
DRAFTS: dict[str, tuple[int, ...]] = {OURS: (22, 21, 20, 18), AIOMOQT: (22, 20, 18, 16, 14)}
#: Longest one client run may take before the cell is called an error.
CLIENT_RUN_TIMEOUT = 120.0
#: How long our relay process may take to say it listens.
RELAY_START_TIMEOUT = 20.0


@dataclass
class CaseResult:
    """One case of one cell, as the client reported it."""

    name: str
    status: str  # pass | fail | skip
    message: str = ""
    expected: str = ""
    received: str = ""
    duration_ms: int | None = None
    known: list[str] = field(default_factory=list)  # ids of the known issues that explain a failure
    notes: list[str] = field(default_factory=list)


@dataclass
class Cell:
    """One client x relay x transport x draft."""

    client: str
    relay: str
    transport: str
    draft: int
    status: str = "pending"  # pass | fail | error | skip (the client runs none of the requested cases)
    cases: list[CaseResult] = field(default_factory=list)
    error: str = ""
    duration_ms: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def key(self) -> str:
        return f"{self.client}->{self.relay} {self.transport} d{self.draft}"

    def count(self, status: str) -> int:
        return sum(1 for c in self.cases if c.status == status)

    @property
    def unexplained(self) -> list[CaseResult]:
        return [c for c in self.cases if c.status == "fail" and not c.known]


@dataclass
class Matrix:
    """A whole run: when, with what, every cell, and the known issues its failures point at."""

    generated: str
    implementations: dict[str, dict[str, object]]
    cells: list[Cell]
    known_issues: dict[str, dict[str, object]] = field(default_factory=dict)

    @property
    def unexplained(self) -> int:
        return sum(len(c.unexplained) + (1 if c.status == "error" else 0) for c in self.cells)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)


# -- running implementations -------------------------------------------------------------------------------------------


def moq_command() -> list[str]:
    """How to run our `moq` command from this interpreter (the venv's console script, or the module)."""
    script = Path(sys.executable).parent / "moq"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from cli.main import main; main()"]


@contextlib.asynccontextmanager
async def moq_relay(cert: Path, key: Path, state_dir: Path, log: Path | None = None) -> AsyncIterator[int]:
    """Run `moq relay` on a free loopback port until the block exits; yields the port once it listens."""
    port = free_udp_port()
    args = [*moq_command(), "relay", "--bind", "127.0.0.1", "--port", str(port), "--cert", str(cert)]
    args += ["--key", str(key), "--state-dir", str(state_dir), "--web-port", "0", "--log-level", "info"]
    async with relay_process(args, "relay listening on UDP port", "moq relay", log):
        yield port


async def run_process(args: Sequence[str], timeout: float = CLIENT_RUN_TIMEOUT) -> tuple[int, str, str]:
    """Run a client; returns (exit code, stdout, stderr). A run past `timeout` is killed (exit code -9)."""
    proc = await asyncio.create_subprocess_exec(
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        out, err = await proc.communicate()
        return -9, out.decode(errors="replace"), err.decode(errors="replace") + f"\nkilled after {timeout:.0f} s"
    return proc.returncode or 0, out.decode(errors="replace"), err.decode(errors="replace")


def client_url(transport: str, port: int) -> str:
    # aiomoqt's relay answers WebTransport only on "/" (docs/INTEROP-NOTES.md); ours takes any path.
    return f"{'moqt' if transport == 'quic' else 'https'}://127.0.0.1:{port}/"


async def run_our_client(url: str, draft: int, tests: Sequence[str]) -> list[tuple[int, str, str]]:
    args = [*moq_command(), "interop", "-r", url, "--tls-disable-verify", "--draft", str(draft)]
    if tests:
        mine = [t for t in tests if t in CASES]
        if not mine:
            return []
        args += ["-t", ",".join(mine)]
    return [await run_process(args)]


async def run_aiomoqt_client(peer: Aiomoqt, url: str, draft: int, tests: Sequence[str]) -> list[tuple[int, str, str]]:
    """aiomoqt's client runs its default cases without `-t`, and some (fetch, join) only when named: run the
    default set, then each listed case the default run left out, one process each."""
    base = [str(peer.client), "-r", url, "--tls-disable-verify", "--draft", str(draft)]
    _, listing, _ = await run_process([str(peer.client), "-l"], 30)
    listed = [line.strip() for line in listing.splitlines() if line.strip()]
    if tests:
        return [await run_process([*base, "-t", test]) for test in tests if test in listed]
    runs = [await run_process(base)]
    done = {p.name for p in parse_tap(runs[0][1]).points}
    for name in listed:
        if name not in done:
            runs.append(await run_process([*base, "-t", name]))
    return runs


def cell_from_runs(cell: Cell, runs: list[tuple[int, str, str]]) -> None:
    """Fill `cell` from the client runs' TAP: one CaseResult per test point, known issues attached."""
    if not runs:
        cell.status = "skip"
        cell.notes.append("the client runs none of the requested cases")
        return
    problems: list[str] = []
    for code, out, err in runs:
        tap: TapRun = parse_tap(out)
        for point in tap.points:
            diag = point.diagnostics
            result = CaseResult(
                name=point.name,
                status=point.status,
                message=str(diag.get("message", point.reason) or ""),
                expected=str(diag.get("expected", "") or ""),
                received=str(diag.get("received", "") or ""),
                duration_ms=int(d) if isinstance(d := diag.get("duration_ms"), (int, float)) else None,
            )
            if result.status == "fail":
                issues = explain(cell.client, cell.relay, cell.draft, point.name)
                result.known = [i.id for i in issues]
            cell.cases.append(result)
        if tap.bail_out is not None:
            problems.append(f"bail out: {tap.bail_out}")
        elif tap.planned is None:
            tail = (err.strip().splitlines() or ["no output"])[-1]
            problems.append(f"no TAP plan (exit code {code}): {tail}")
        elif not tap.complete:
            problems.append(f"{len(tap.points)} of {tap.planned} planned test points (exit code {code})")
        elif code not in (0, 1):
            problems.append(f"exit code {code}")
    cell.error = "; ".join(problems)
    if cell.error:
        cell.status = "error"
    else:
        cell.status = "fail" if any(c.status == "fail" for c in cell.cases) else "pass"
    for case in cell.cases:
        for issue_id in case.known:
            if issue_id not in cell.notes:
                cell.notes.append(issue_id)


# -- the matrix --------------------------------------------------------------------------------------------------------


def plan_cells(
    clients: Sequence[str], relays: Sequence[str], transports: Sequence[str], drafts: Sequence[int] | None
) -> list[Cell]:
    """Every (client, relay, transport, draft) to run: the drafts both sides speak, filtered by `drafts`."""
    cells: list[Cell] = []
    for client in clients:
        for relay in relays:
            shared = [d for d in DRAFTS[client] if d in DRAFTS[relay] and (not drafts or d in drafts)]
            for transport in transports:
                cells.extend(Cell(client, relay, transport, d) for d in shared)
    return cells


async def run_matrix(
    out_dir: Path,
    *,
    clients: Sequence[str] = (OURS, AIOMOQT),
    relays: Sequence[str] = (OURS, AIOMOQT),
    transports: Sequence[str] = TRANSPORTS,
    drafts: Sequence[int] | None = None,
    tests: Sequence[str] = (),
    jobs: int = 3,
    install: bool = True,
    progress: Callable[[Cell], None] | None = None,
) -> Matrix:
    """Run the matrix and write `matrix.md`, `matrix.json` and per-cell logs under `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    logs = out_dir / "logs"
    logs.mkdir(exist_ok=True)
    peer: Aiomoqt | None = None
    if AIOMOQT in (*clients, *relays):
        peer = find_aiomoqt()
        if peer is None and install:
            peer = await asyncio.to_thread(install_aiomoqt)
    implementations: dict[str, dict[str, object]] = {
        OURS: {"version": f"moqt-toolkit {__version__}", "drafts": list(DRAFTS[OURS]), "available": True}
    }
    if AIOMOQT in (*clients, *relays):
        implementations[AIOMOQT] = {
            "version": f"aiomoqt {peer.version()}" if peer else "not installed",
            "drafts": list(DRAFTS[AIOMOQT]),
            "available": peer is not None,
        }
    cells = plan_cells(clients, relays, transports, drafts)
    limit = asyncio.Semaphore(max(1, jobs))

    with tempfile.TemporaryDirectory(prefix="moq-matrix-") as tmp:
        certs = Path(tmp)
        bundle = generate_dev_certificate()
        bundle.save(certs / "cert.pem", certs / "key.pem")

        async def run(cell: Cell) -> None:
            async with limit:
                started = time.monotonic()
                try:
                    await run_cell(cell, peer, certs, logs, tests)
                except Exception as exc:
                    cell.status, cell.error = "error", f"{type(exc).__name__}: {exc}"
                cell.duration_ms = round((time.monotonic() - started) * 1000)
                if progress is not None:
                    progress(cell)

        await asyncio.gather(*(run(c) for c in cells))

    issues: dict[str, KnownIssue] = {}
    for cell in cells:
        for case in cell.cases:
            for issue in explain(cell.client, cell.relay, cell.draft, case.name) if case.status == "fail" else []:
                issues[issue.id] = issue
    matrix = Matrix(
        generated=datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        implementations=implementations,
        cells=cells,
        known_issues={i.id: asdict(i) for i in issues.values()},
    )
    (out_dir / "matrix.json").write_text(matrix.to_json())
    (out_dir / "matrix.md").write_text(render_markdown(matrix, list(issues.values())))
    return matrix


async def run_cell(cell: Cell, peer: Aiomoqt | None, certs: Path, logs: Path, tests: Sequence[str] = ()) -> None:
    """Start the cell's relay, run its client against it, parse the outcome into `cell`."""
    if AIOMOQT in (cell.client, cell.relay) and peer is None:
        cell.status, cell.error = "error", "aiomoqt is not installed (python -m interop.peers install)"
        return
    stem = f"{cell.client}-to-{cell.relay}-{cell.transport}-d{cell.draft}"
    relay_log = logs / f"{stem}.relay.log"
    cert, key = certs / "cert.pem", certs / "key.pem"
    relay_cm: contextlib.AbstractAsyncContextManager[int]
    if cell.relay == OURS:
        state = certs / f"state-{stem}"
        relay_cm = moq_relay(cert, key, state, log=relay_log)
    else:
        assert peer is not None
        relay_cm = aiomoqt_relay(peer, cert, key, log=relay_log)
    async with relay_cm as port:
        url = client_url(cell.transport, port)
        if cell.client == OURS:
            runs = await run_our_client(url, cell.draft, tests)
        else:
            assert peer is not None
            runs = await run_aiomoqt_client(peer, url, cell.draft, tests)
    with (logs / f"{stem}.tap").open("w") as f:
        for code, out, err in runs:
            f.write(out)
            f.write(f"# exit code {code}\n")
            if err.strip():
                f.write("# stderr:\n" + "".join(f"#   {line}\n" for line in err.strip().splitlines()[-40:]))
    cell_from_runs(cell, runs)


# -- reports -----------------------------------------------------------------------------------------------------------


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_markdown(matrix: Matrix, issues: Sequence[KnownIssue]) -> str:
    """The matrix as Markdown: one row per cell, then every failing case with its explanation."""
    lines = [f"Generated {matrix.generated}. Implementations:"]
    for name, info in matrix.implementations.items():
        listed = info.get("drafts")
        drafts = ", ".join(str(d) for d in listed) if isinstance(listed, list) else "?"
        lines.append(f"- `{name}`: {info['version']} (drafts {drafts})")
    lines += ["", "| client | relay | transport | draft | result | pass | fail | skip | notes |"]
    lines.append("|---|---|---|---|---|---|---|---|---|")
    for cell in matrix.cells:
        result = {"pass": "pass", "fail": "FAIL", "error": "ERROR", "skip": "skip"}.get(cell.status, cell.status)
        notes = ", ".join(cell.notes)
        if cell.status == "error":
            notes = _md(cell.error)
        elif cell.unexplained:
            notes = (notes + ", " if notes else "") + f"{len(cell.unexplained)} unexplained"
        lines.append(
            f"| {cell.client} | {cell.relay} | {cell.transport} | {cell.draft} | {result} | {cell.count('pass')} "
            f"| {cell.count('fail')} | {cell.count('skip')} | {notes} |"
        )
    total = len(matrix.cells)
    passed = sum(1 for c in matrix.cells if c.status == "pass")
    lines += ["", f"{passed} of {total} cells pass; {matrix.unexplained} failure(s) unexplained."]
    # Failing cases, one row per (case, explanation, message) with the cells it happened in.
    failing: dict[tuple[str, tuple[str, ...], str], list[tuple[str, str]]] = {}
    for cell in matrix.cells:
        for case in cell.cases:
            if case.status == "fail":
                failing.setdefault((case.name, tuple(case.known), case.message), []).append((cell.key, case.received))
    if failing:
        lines += ["", "Failing cases:", "", "| case | cells | message | received | explained by |"]
        lines.append("|---|---|---|---|---|")
        for (name, known, message), seen in failing.items():
            why = ", ".join(known) or "**unexplained**"
            keys = "<br>".join(key for key, _ in seen)
            received = "<br>".join(dict.fromkeys(_md(r) for _, r in seen if r))
            lines.append(f"| {name} | {keys} | {_md(message)} | {received} | {why} |")
    errors = [cell for cell in matrix.cells if cell.status == "error"]
    if errors:
        lines += ["", "Cells that did not run to the end:", ""]
        lines += [f"- {cell.key}: {_md(cell.error)}" for cell in errors]
    if issues:
        lines += ["", "Known issues behind the failures:", ""]
        for issue in issues:
            lines.append(f"- **{issue.id}** ({issue.status}): {issue.side} breaks {issue.section}: {issue.summary}.")
            lines.append(f"  {issue.detail}")
    return "\n".join(lines) + "\n"
