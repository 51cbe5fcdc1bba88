"""The relay's hot path under fan-out load: where its one core goes.

With py-spy installed (a sampling profiler: it reads the relay's stacks from outside, `--nonblocking`, so the relay
runs at nearly full speed), it is attached to the `moq relay` process for the measured window of a fan-out run.
Without it, the relay runs under cProfile for its whole life (deterministic, several times slower, so the load
it sustains is lower, but the shares are comparable). Either way the report is the top functions by inclusive
("cumulative") and by self time, as shares of the relay's busy samples.
"""

from __future__ import annotations

import asyncio
import contextlib
import pstats
import re
import shutil
import sys
from collections import Counter
from pathlib import Path

from bench.common import Json, Table, start_process
from bench.fanout import Hooks, RunEnv, run_fanout, run_loadgen
from bench.relays import aiomoqt_bin, moq_command

#: Samples per second py-spy takes.
RATE = 200
TOP = 25
_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*?)(?::\d+)?\)$")


def pyspy() -> str | None:
    """The py-spy executable, next to this interpreter or on PATH."""
    local = Path(sys.executable).parent / "py-spy"
    return str(local) if local.exists() else shutil.which("py-spy")


def short(path: str) -> str:
    """A source path without the environment's prefix: `aioquic/quic/connection.py`, `moq/api/session.py`."""
    for marker in ("site-packages/", "/work/main/", str(Path(__file__).resolve().parent.parent) + "/"):
        if marker in path:
            return path.split(marker, 1)[1]
    return path.rsplit("/lib/python3", 1)[-1]


#: Frames every busy stack of the relay passes through (the command, asyncio's loop): left out of the tables.
TRUNK = (
    "<module> ",
    "(click/",
    "(asyncio/runners.py)",
    "run_forever (asyncio/base_events.py)",
    "run_until_complete (asyncio/base_events.py)",
    "relay (cli/main.py)",
    "run_relay (relay/server.py)",
)

#: Where self time is spent, by source file: the relay's CPU split into the parts a fix would touch.
COMPONENTS = (
    ("UDP send syscalls (asyncio sendto)", ("sendto (asyncio/",)),
    ("UDP receive (asyncio _read_ready, recvfrom)", ("_read_ready (asyncio/", "recvfrom")),
    ("aioquic packet building and streams", ("aioquic/quic/packet_builder.py", "aioquic/quic/stream.py")),
    ("aioquic connection (send/receive logic, ACKs, recovery)", ("aioquic/quic/connection.py", "aioquic/quic/")),
    ("aioquic crypto (AEAD, header protection)", ("aioquic/_crypto", "aioquic/tls.py", "cryptography/")),
    ("aioquic other (buffer, asyncio protocol)", ("aioquic/",)),
    ("moq.transport (scheduler, events)", ("moq/transport/",)),
    ("moq.session and moq.wire (MOQT encode/decode)", ("moq/session/", "moq/wire/")),
    ("moq.api, moq.model, relay (fan-out, cache)", ("moq/api/", "moq/model/", "relay/")),
    ("asyncio event loop (timers, callbacks, selector)", ("asyncio/",)),
)


def component(name: str) -> str:
    for label, needles in COMPONENTS:
        if any(needle in name for needle in needles):
            return label
    return "other"


def is_trunk(name: str) -> bool:
    return any(part in name for part in TRUNK)


def parse_collapsed(text: str) -> tuple[int, Counter[str], Counter[str]]:
    """py-spy's raw (collapsed) stacks -> (samples, inclusive counts, self counts) per function."""
    total = 0
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    for line in text.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        names = []
        for frame in stack.split(";"):
            match = _FRAME.match(frame.strip())
            names.append(f"{match['func']} ({short(match['file'])})" if match else frame.strip())
        for name in set(names):
            inclusive[name] += count
        if names:
            own[names[-1]] += count
    return total, inclusive, own


def from_pstats(path: Path) -> tuple[float, list[tuple[str, float, float]]]:
    """cProfile output -> (total seconds, [(function, cumulative s, self s)]) sorted by cumulative time."""
    stats = pstats.Stats(str(path))
    raw = stats.stats  # type: ignore[attr-defined]
    rows = []
    total = 0.0
    for (file, line, func), (_cc, _nc, tt, ct, _callers) in raw.items():
        total += tt
        rows.append((f"{func} ({short(file)}:{line})", ct, tt))
    rows.sort(key=lambda r: -r[1])
    return total, rows


async def run(env: RunEnv, subscribers: int, seconds: float) -> tuple[Json, Table]:
    """Profile our relay during one fan-out run of `subscribers` (aiomoqt's load generator when installed)."""
    spy = pyspy()
    out = env.workdir / ("relay-profile.txt" if spy else "relay-profile.pstats")
    tasks: list[asyncio.Task[None]] = []
    hooks = Hooks()
    if spy:

        async def record(pid: int, window: float) -> None:
            args = [spy, "record", "--pid", str(pid), "--duration", str(max(1, int(window))), "--rate", str(RATE)]
            args += ["--format", "raw", "--nonblocking", "-o", str(out)]
            proc = await start_process(args, log=env.workdir / "py-spy.log", stdout=False)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(proc.wait(), window + 30)

        hooks.on_window = lambda pid, window: tasks.append(asyncio.ensure_future(record(pid, window)))
        tool = f"py-spy {RATE} Hz, --nonblocking"
    else:
        command = moq_command()
        if len(command) != 1:
            raise RuntimeError("no py-spy and no `moq` script to run under cProfile")
        hooks.relay_wrapper = [sys.executable, "-m", "cProfile", "-o", str(out)]
        tool = "cProfile (whole relay lifetime)"
    loadgen = aiomoqt_bin() is not None
    if loadgen:
        load = await run_loadgen(env, "moq", subscribers, duration=seconds, hooks=hooks)
    else:
        load = await run_fanout(env, "moq", subscribers, duration=seconds, hooks=hooks, tag="profile")
    for task in tasks:
        await task
    table = Table(
        f"Relay profile: {tool}, {subscribers} subscribers"
        f"{' (aiomoqt load generator)' if loadgen else ''}, {load.get('delivered_mbit_s')} Mbit/s delivered",
        ["function (file)", "inclusive %", "self %"],
    )
    result: Json = {"tool": tool, "subscribers": subscribers, "load": load, "top_cumulative": [], "top_self": []}
    if not out.exists():
        table.notes.append(f"no profile was written ({out}); see py-spy.log in the work directory")
        return result, table
    if spy:
        total, inclusive, own = parse_collapsed(out.read_text())
        result["samples"] = total
        result["busy_share_of_window"] = round(total / (RATE * seconds), 3) if seconds else None
        for name, count in [(n, c) for n, c in inclusive.most_common() if not is_trunk(n)][:TOP]:
            pct = round(100 * count / max(1, total), 1)
            self_pct = round(100 * own[name] / max(1, total), 1)
            result["top_cumulative"].append({"function": name, "inclusive_pct": pct, "self_pct": self_pct})
            table.rows.append([name, pct, self_pct])
        result["top_self"] = [
            {"function": name, "self_pct": round(100 * count / max(1, total), 1)}
            for name, count in own.most_common(TOP)
        ]
        table.notes.append(
            f"{total} samples of the relay's busy threads ({result['busy_share_of_window']:.0%} of the window); idle "
            "(waiting in epoll) is not sampled; the command's and the event loop's own frames are left out"
        )
        result["components"] = _components(own, total)
        result["collapsed_stacks"] = str(out)
    else:
        total_s, rows = from_pstats(out)
        result["total_seconds"] = round(total_s, 2)
        self_by_name = {name: tt for name, _, tt in rows}
        own_ms: Counter[str] = Counter({name: int(tt * 1000) for name, _, tt in rows})
        result["components"] = _components(own_ms, int(total_s * 1000))
        result["top_self"] = [
            {"function": name, "self_pct": round(100 * ms / max(1, total_s * 1000), 1)}
            for name, ms in own_ms.most_common(TOP)
        ]
        for name, cumulative, _own in [r for r in rows if not is_trunk(r[0])][:TOP]:
            pct = round(100 * cumulative / max(1e-9, total_s), 1)
            result["top_cumulative"].append(
                {"function": name, "inclusive_pct": pct, "self_pct": round(100 * self_by_name[name] / total_s, 1)}
            )
            table.rows.append([name, pct, round(100 * self_by_name[name] / total_s, 1)])
    return result, table


def _components(own: Counter[str], total: int) -> list[Json]:
    """Self time summed by component (see COMPONENTS), largest first."""
    shares: Counter[str] = Counter()
    for name, count in own.items():
        shares[component(name)] += count
    return [{"component": c, "self_pct": round(100 * n / max(1, total), 1)} for c, n in shares.most_common()]
