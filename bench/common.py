"""What every part of the benchmark shares: processes and their /proc figures, percentiles, tables, the machine.

Workers are separate Python processes (`python -m bench.worker ROLE JSON`) that talk to the orchestrator in JSON
lines on stdout and take commands ("go") on stdin. Every process we start stops by itself: it dies with its
parent (PR_SET_PDEATHSIG), each worker has its own deadline, and the orchestrator terminates whatever is left when
a part ends. All traffic stays on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import datetime
import json
import logging
import math
import os
import platform
import signal
import socket
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
#: Loopback only: nothing the benchmark starts listens or sends anywhere else.
HOST = "127.0.0.1"
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024
#: How long a worker may take to say it is ready (imports, handshakes) before the part gives up on it.
READY_TIMEOUT = 60.0
#: How long a terminated process gets before it is killed.
TERM_GRACE = 5.0

Json = dict[str, Any]


# -- /proc ---------------------------------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds the process has used (its threads included; 0.0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return 0.0
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime (fields 14 and 15 of proc(5))


def memory_kb(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) in KiB: resident now, and the peak so far; (0, 0) once the process is gone."""
    rss = hwm = 0
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1])
                elif line.startswith("VmHWM:"):
                    hwm = int(line.split()[1])
    except OSError:
        pass
    return rss, hwm


@dataclass
class CpuWindow:
    """CPU used by a set of processes between `start()` and `stop()`, as a share of one core (1.0 = 100%)."""

    pids: list[int]
    _cpu0: float = 0.0
    _t0: float = 0.0
    share: float = 0.0
    seconds: float = 0.0

    def start(self) -> None:
        self._cpu0 = sum(cpu_seconds(p) for p in self.pids)
        self._t0 = time.monotonic()

    def stop(self) -> float:
        self.seconds = time.monotonic() - self._t0
        used = sum(cpu_seconds(p) for p in self.pids) - self._cpu0
        self.share = used / self.seconds if self.seconds > 0 else 0.0
        return self.share


def parents() -> dict[int, int]:
    """Every process's parent (pid -> ppid), from /proc."""
    found: dict[int, int] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as f:
                stat = f.read()
        except OSError:
            continue  # gone meanwhile
        found[int(entry.name)] = int(stat[stat.rindex(")") + 2 :].split()[1])
    return found


def children_of(pid: int) -> set[int]:
    """The processes whose parent is `pid` right now."""
    return {child for child, parent in parents().items() if parent == pid}


def process_tree(root: int) -> list[int]:
    """`root` and every process below it (its children, theirs, ...): a browser is many processes."""
    below: dict[int, list[int]] = {}
    for child, parent in parents().items():
        below.setdefault(parent, []).append(child)
    found: list[int] = []
    todo = [root] if Path(f"/proc/{root}").exists() else []
    for _ in range(100_000):  # bounded: a process tree is far smaller
        if not todo:
            break
        pid = todo.pop()
        found.append(pid)
        todo.extend(below.get(pid, []))
    return found


@dataclass
class TreeCpuWindow:
    """CPU used by process trees (each root and everything below it) between `start()` and `stop()`, as a share
    of one core. A process that starts inside the window counts whole; one that ends inside it is not counted
    (its figures are gone from /proc), so this is a lower bound when processes come and go."""

    roots: list[int]
    _cpu0: dict[int, float] = field(default_factory=dict)
    _t0: float = 0.0
    share: float = 0.0
    seconds: float = 0.0

    def _pids(self) -> list[int]:
        return [pid for root in self.roots for pid in process_tree(root)]

    def start(self) -> None:
        self._cpu0 = {pid: cpu_seconds(pid) for pid in self._pids()}
        self._t0 = time.monotonic()

    def stop(self) -> float:
        self.seconds = time.monotonic() - self._t0
        used = sum(max(0.0, cpu_seconds(pid) - self._cpu0.get(pid, 0.0)) for pid in self._pids())
        self.share = used / self.seconds if self.seconds > 0 else 0.0
        return self.share


@dataclass
class MemorySampler:
    """Samples a process's RSS every `interval` seconds, for the peak in a window (VmHWM covers the whole life)."""

    pid: int
    interval: float = 0.25
    peak_kb: int = 0
    #: Sum the RSS of the process and everything below it (a relay with worker processes).
    tree: bool = False
    _task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    def _rss_kb(self) -> int:
        return tree_rss_kb(self.pid) if self.tree else memory_kb(self.pid)[0]

    async def _run(self) -> None:
        for _ in range(100_000):  # bounded; stopped long before
            self.peak_kb = max(self.peak_kb, self._rss_kb())
            await asyncio.sleep(self.interval)

    async def stop(self) -> int:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.peak_kb = max(self.peak_kb, self._rss_kb())
        return self.peak_kb


def tree_rss_kb(root: int) -> int:
    """The resident memory of `root` and every process below it, in KiB."""
    return sum(memory_kb(pid)[0] for pid in process_tree(root))


# -- processes -----------------------------------------------------------------------------------------------------


def _die_with_parent() -> None:
    """In the child, before exec: get SIGTERM when the parent dies, so nothing outlives a crashed benchmark."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


async def start_process(
    args: Sequence[str], *, log: Path, stdin: bool = False, stdout: bool = True, env: dict[str, str] | None = None
) -> asyncio.subprocess.Process:
    """Start a child that dies with us; stderr goes to `log`, and stdout too unless `stdout` (a pipe to read).

    Children import this checkout's code first (PYTHONPATH = the directory above `bench/`), whatever the virtual
    environment's install points at, so a copy of the tree benchmarks its own changes."""
    if env is None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    err: IO[bytes] = log.open("ab")
    try:
        return await asyncio.create_subprocess_exec(
            *args,
            stdin=asyncio.subprocess.PIPE if stdin else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE if stdout else err,
            stderr=err,
            cwd=str(ROOT),
            env=env,
            preexec_fn=_die_with_parent,
            limit=64 * 1024 * 1024,  # result lines carry latency samples
        )
    finally:
        err.close()


async def stop_process(proc: asyncio.subprocess.Process, sig: int = signal.SIGTERM) -> int | None:
    """Signal a child we started (by its pid) and reap it; kill it if it does not go within TERM_GRACE."""
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)
        try:
            await asyncio.wait_for(proc.wait(), TERM_GRACE)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
    return proc.returncode


class Worker:
    """A `python -m bench.worker ROLE` process: JSON lines out, command lines in."""

    def __init__(self, role: str, proc: asyncio.subprocess.Process, log: Path) -> None:
        self.role = role
        self.proc = proc
        self.log = log
        self.messages: list[Json] = []

    @property
    def pid(self) -> int:
        return self.proc.pid

    @classmethod
    async def start(cls, role: str, params: Json, workdir: Path, tag: str) -> Worker:
        log = workdir / f"{tag}.log"
        proc = await start_process(
            [sys.executable, "-m", "bench.worker", role, json.dumps(params)], log=log, stdin=True
        )
        return cls(role, proc, log)

    async def message(self, event: str, timeout: float) -> Json:
        """The next JSON line whose "event" is `event` (earlier other lines are kept in `messages`)."""
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        for _ in range(100_000):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                raw = await asyncio.wait_for(self.proc.stdout.readline(), remaining)
            except TimeoutError:
                break
            if not raw:
                raise RuntimeError(f"{self.role} worker exited ({self.proc.returncode}); see {self.log}")
            with contextlib.suppress(ValueError):
                msg = json.loads(raw)
                self.messages.append(msg)
                if msg.get("event") == event:
                    return dict(msg)
        raise TimeoutError(f"{self.role} worker: no {event!r} within {timeout:.0f} s; see {self.log}")

    def tell(self, line: str) -> None:
        """Send a command line to the worker (ignored once it has gone)."""
        if self.proc.stdin is not None and not self.proc.stdin.is_closing():
            self.proc.stdin.write(line.encode() + b"\n")

    async def stop(self) -> None:
        await stop_process(self.proc)


def tell_all(workers: Sequence[Worker], line: str) -> None:
    for worker in workers:
        worker.tell(line)


def free_udp_port() -> int:
    """A UDP port free right now on loopback (the process we start binds it a moment later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


# -- worker side ---------------------------------------------------------------------------------------------------


def emit(event: str, **data: Any) -> None:
    """A worker's message to the orchestrator: one JSON line on stdout."""
    sys.stdout.write(json.dumps({"event": event, **data}) + "\n")
    sys.stdout.flush()


async def stdin_lines() -> asyncio.StreamReader:
    """stdin as an asyncio stream (the orchestrator's commands)."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    return reader


async def wait_for_line(reader: asyncio.StreamReader, expected: str, timeout: float) -> bool:
    """True once `expected` arrives on stdin; False at EOF or after `timeout`."""
    deadline = time.monotonic() + timeout
    for _ in range(10_000):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        try:
            raw = await asyncio.wait_for(reader.readline(), remaining)
        except TimeoutError:
            return False
        if not raw:
            return False
        if raw.decode().strip() == expected:
            return True
    return False


# -- numbers -------------------------------------------------------------------------------------------------------


def percentile(ordered: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) of sorted values, nearest rank; NaN when empty."""
    if not ordered:
        return math.nan
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return float(ordered[min(rank, len(ordered)) - 1])


def latency_summary(samples_ms: list[float]) -> Json:
    """p50, p99 and max of latency samples in ms (NaN-free: None when there are none)."""
    if not samples_ms:
        return {"samples": 0, "p50_ms": None, "p99_ms": None, "max_ms": None}
    ordered = sorted(samples_ms)
    return {
        "samples": len(ordered),
        "p50_ms": round(percentile(ordered, 50), 2),
        "p99_ms": round(percentile(ordered, 99), 2),
        "max_ms": round(ordered[-1], 2),
    }


def mbit(bytes_: float, seconds: float) -> float:
    return bytes_ * 8 / seconds / 1e6 if seconds > 0 else 0.0


def cpu_ms_per_mb(cpu_share: float, mbit_s: float | None) -> float | None:
    """CPU milliseconds per megabyte moved: a cost per byte that, unlike throughput, hardly depends on how much of
    the machine other processes take (a busy machine slows a process down; it does not make its bytes dearer)."""
    if not mbit_s:
        return None
    return round(cpu_share * 1000 / (mbit_s / 8), 1)


def per_core_mbit_s(ms_per_mb: float | None) -> float | None:
    """The throughput one whole core would give at that cost per byte."""
    if not ms_per_mb:
        return None
    return round(1000 / ms_per_mb * 8, 1)


# -- the machine and the report ------------------------------------------------------------------------------------


def machine() -> Json:
    """Where the numbers were measured: nproc, CPU model, memory, kernel, Python and library versions."""
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem_kb = 0
    with contextlib.suppress(OSError, ValueError, IndexError):
        mem_kb = int(Path("/proc/meminfo").read_text().split("\n")[0].split()[1])
    versions: Json = {}
    for package in ("aioquic", "av", "msgspec", "cryptography"):
        with contextlib.suppress(Exception):
            from importlib.metadata import version

            versions[package] = version(package)
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "memory_gb": round(mem_kb / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "versions": versions,
    }


@dataclass
class Table:
    """A printed table: a title, column names, rows, and notes under it."""

    title: str
    columns: list[str]
    rows: list[list[Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def render(self) -> str:
        cells = [[_cell(v) for v in row] for row in self.rows]
        widths = [max([len(c)] + [len(r[i]) for r in cells if i < len(r)]) for i, c in enumerate(self.columns)]
        lines = [f"## {self.title}", ""]
        lines.append("| " + " | ".join(c.ljust(w) for c, w in zip(self.columns, widths, strict=True)) + " |")
        lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
        for row in cells:
            padded = row + [""] * (len(widths) - len(row))
            lines.append("| " + " | ".join(v.rjust(w) for v, w in zip(padded, widths, strict=True)) + " |")
        if self.notes:
            lines.append("")
            lines.extend(f"- {note}" for note in self.notes)
        return "\n".join(lines)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        return f"{value:.1f}" if abs(value) >= 10 else f"{value:.2f}"
    return str(value)
