"""What `moq publish` and `moq subscribe` share: the glue between the media library and the network API.

DESIGN.md's import rule keeps `moq.media` away from the session and transport layers, so this glue lives in the
command package: opening a session with errors a person can act on, counting what went by (frame rates, bitrates,
latency percentiles), and letting a publisher's last objects reach the relay before it hangs up.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from moq.api import MoqSession, connect
from moq.transport.errors import CertificateMismatch, ConnectError
from moq.wire.primitives import TrackNamespace

logger = logging.getLogger(__name__)

#: Latency samples kept per track for the percentiles. Past this, reservoir sampling keeps a uniform sample of
#: every object seen, so a day-long run reports the same kind of figure in bounded memory (the max stays exact).
MAX_LATENCY_SAMPLES = 20_000
#: How long a publisher that is done waits for its last objects to be acknowledged before it closes (a relay
#: that is gone must not keep it from exiting).
LINGER_SECONDS = 5.0


class CliError(Exception):
    """A failure a person can act on; the message is one line, printed as is (exit status 1)."""


def split_namespace(name: str) -> TrackNamespace:
    """'live/demo' -> (b'live', b'demo'): one namespace field per '/'-separated part."""
    fields = tuple(part.encode() for part in name.split("/") if part)
    if not fields:
        raise CliError(f"bad namespace {name!r}: give one or more fields separated by '/', e.g. live/demo")
    if len(fields) > 32:  # MOQT §2.4.1: at most 32 fields
        raise CliError(f"bad namespace {name!r}: at most 32 fields")
    return fields


async def open_session(url: str, *, fingerprint: str | None, verify: bool, timeout: float) -> MoqSession:
    """Connect to the relay and exchange SETUP; every way this can fail becomes one `CliError` line."""
    try:
        return await connect(url, fingerprint=fingerprint, verify=verify, timeout=timeout)
    except ValueError as exc:  # a bad URL or fingerprint
        raise CliError(f"{exc}") from None
    except CertificateMismatch as exc:
        raise CliError(f"the relay at {url} presented another certificate than --fingerprint names: {exc}") from None
    except (ConnectError, ConnectionError, OSError, TimeoutError) as exc:
        reason = str(exc) or type(exc).__name__
        hint = ""
        if "certificate" in reason.lower() and fingerprint is None and verify:
            hint = " (a development relay? pass its --fingerprint, or --tls-disable-verify)"
        raise CliError(f"cannot reach the relay at {url}: {reason}{hint}") from None


async def drain(session: MoqSession, timeout: float = LINGER_SECONDS) -> None:
    """Let what the session still has to send reach the peer: the subscriptions it serves finish (their last
    objects and PUBLISH_DONE are written) and the peer acknowledges every byte, or `timeout` runs out.

    Closing a QUIC connection drops whatever is unacknowledged, so a publisher that closed right after its last
    frame would cut the end off every subscriber's copy."""
    await session.drain(timeout)


async def close_session(session: MoqSession) -> None:
    """Close the session and give the CONNECTION_CLOSE a moment to leave."""
    session.close()
    with contextlib.suppress(Exception):
        await asyncio.wait_for(session.conn.wait_closed(), 2.0)


def install_stop_signals(stop: asyncio.Event) -> Callable[[], None]:
    """Ctrl-C and SIGTERM end the run cleanly (recordings are finished, statistics written); returns an undo."""
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
            installed.append(sig)
        except (NotImplementedError, RuntimeError, ValueError):  # not the main thread, or not a Unix loop
            pass

    def undo() -> None:
        for sig in installed:
            loop.remove_signal_handler(sig)

    return undo


def now_us() -> int:
    """Wall clock in microseconds since the epoch: what LOC timestamps are in."""
    return time.time_ns() // 1000


def status(message: str, stream: TextIO | None = None) -> None:
    """A line for the person at the terminal, on stderr (stdout may be carrying media)."""
    out = stream or sys.stderr
    out.write(message + "\n")
    out.flush()


def write_json(path: str, data: dict[str, Any]) -> None:
    """Write `data` to `path` ('-' is stderr), atomically for a file: a reader never sees half of it."""
    text = json.dumps(data, indent=2, sort_keys=False) + "\n"
    if path == "-":
        sys.stderr.write(text)
        return
    target = Path(path)
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(target)


# -- statistics -------------------------------------------------------------------------------------------------


def percentile(ordered: list[float], q: float) -> float:
    """The q-th percentile (0..100) of an ascending list, by linear interpolation."""
    if not ordered:
        raise ValueError("no samples")
    pos = (len(ordered) - 1) * q / 100
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


class LatencySamples:
    """Latency samples in milliseconds, bounded (`MAX_LATENCY_SAMPLES`, reservoir sampling); exact count and max."""

    def __init__(self, limit: int = MAX_LATENCY_SAMPLES) -> None:
        self.limit = limit
        self.count = 0
        self.max: float | None = None
        self._samples: list[float] = []
        self._random = random.Random(0)

    def add(self, ms: float) -> None:
        self.count += 1
        if self.max is None or ms > self.max:
            self.max = ms
        if len(self._samples) < self.limit:
            self._samples.append(ms)
            return
        slot = self._random.randrange(self.count)
        if slot < self.limit:
            self._samples[slot] = ms

    def merge(self, other: LatencySamples) -> None:
        for ms in other._samples:
            self.add(ms)
        if other.max is not None and (self.max is None or other.max > self.max):
            self.max = other.max
        self.count += other.count - len(other._samples)

    def summary(self) -> dict[str, float | int] | None:
        """{count, p50, p90, p99, max, mean} in ms, or None with no samples."""
        if not self._samples or self.max is None:
            return None
        ordered = sorted(self._samples)
        return {
            "count": self.count,
            "p50": round(percentile(ordered, 50), 3),
            "p90": round(percentile(ordered, 90), 3),
            "p99": round(percentile(ordered, 99), 3),
            "max": round(self.max, 3),
            "mean": round(sum(ordered) / len(ordered), 3),
        }


class Meter:
    """Frames and bytes over the last interval, for live lines: frames/s and kbit/s."""

    def __init__(self) -> None:
        self.frames = 0
        self.bytes = 0
        self._since = time.monotonic()
        self._frames_mark = 0
        self._bytes_mark = 0

    def add(self, size: int) -> None:
        self.frames += 1
        self.bytes += size

    def rates(self) -> tuple[float, float]:
        """(frames/s, kbit/s) since the last call."""
        now = time.monotonic()
        span = max(now - self._since, 1e-6)
        fps = (self.frames - self._frames_mark) / span
        kbps = (self.bytes - self._bytes_mark) * 8 / span / 1000
        self._since, self._frames_mark, self._bytes_mark = now, self.frames, self.bytes
        return fps, kbps


async def every(interval: float, tick: Callable[[], None]) -> None:
    """Call `tick` every `interval` seconds until cancelled (live statistics lines)."""
    while True:
        await asyncio.sleep(interval)
        tick()
