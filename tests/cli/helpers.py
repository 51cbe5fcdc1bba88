"""Helpers for the command tests: a relay in this process, `moq` commands as subprocesses, waiting on their output.

Nothing here sleeps to wait for something: a test waits for a line on a command's stderr, for its exit, or for
the end of its stdout, all inside the scenario's deadline (`run`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import sys
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from relay.config import RelayConfig
from relay.server import RunningRelay, start_relay

#: Each scenario's deadline: the acceptance tests are meant to take well under 30 s.
DEADLINE = 30.0
#: The `moq` command of this environment.
MOQ = str(Path(sys.executable).with_name("moq"))
#: Small and short: what the tests publish.
SMALL = ["--resolution", "320x180", "--bitrate", "300k"]


def run(coro: Awaitable[Any], deadline: float = DEADLINE) -> Any:
    async def guarded() -> Any:
        return await asyncio.wait_for(coro, deadline)

    return asyncio.run(guarded())


@asynccontextmanager
async def relay_running(tmp: Path) -> AsyncIterator[RunningRelay]:
    running = await start_relay(RelayConfig(bind="127.0.0.1", port=0, state_dir=str(tmp / "relay-state")))
    try:
        yield running
    finally:
        await running.stop()


def relay_args(running: RunningRelay) -> list[str]:
    """The URL and certificate pin a command needs to reach the relay."""
    return [f"moqt://127.0.0.1:{running.port}/", "--fingerprint", running.certificate.fingerprint_hex]


class Command:
    """A running `moq` subprocess whose stderr lines are collected as they come."""

    def __init__(self, name: str, process: asyncio.subprocess.Process) -> None:
        self.name = name
        self.process = process
        self.lines: list[str] = []
        self.eof = False
        self._changed = asyncio.Event()
        self._reader = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        stream = self.process.stderr
        assert stream is not None
        async for raw in stream:
            self.lines.append(raw.decode(errors="replace").rstrip("\n"))
            self._changed.set()
        self.eof = True
        self._changed.set()

    @property
    def stderr(self) -> str:
        return "\n".join(self.lines)

    async def line(self, pattern: str) -> str:
        """The first stderr line matching `pattern` (waits for it; fails if the command ends without one)."""
        rx = re.compile(pattern)
        index = 0
        while True:
            while index < len(self.lines):
                if rx.search(self.lines[index]):
                    return self.lines[index]
                index += 1
            if self.eof:
                raise AssertionError(f"{self.name} ended without a line matching {pattern!r}:\n{self.stderr}")
            self._changed.clear()
            await self._changed.wait()

    async def wait(self) -> int:
        """Wait for the command to exit; its exit status, once all of its stderr has been read."""
        code = await self.process.wait()
        await self._reader
        return code

    async def succeeds(self) -> None:
        code = await self.wait()
        assert code == 0, f"{self.name} exited with {code}:\n{self.stderr}"


@asynccontextmanager
async def moq(
    *args: str, name: str | None = None, stdin: bool = False, stdout: bool | int = False
) -> AsyncIterator[Command]:
    """Run `moq ARGS...`; killed (by its pid) if still running when the block ends. `stdout`: True for a pipe
    to read from `process.stdout`, or a file descriptor of the test's own."""
    if stdout is True:
        out: int = asyncio.subprocess.PIPE
    elif stdout is False:
        out = asyncio.subprocess.DEVNULL
    else:
        out = stdout
    process = await asyncio.create_subprocess_exec(
        MOQ,
        *args,
        stdin=asyncio.subprocess.PIPE if stdin else asyncio.subprocess.DEVNULL,
        stdout=out,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    command = Command(name or f"moq {args[0]}", process)
    try:
        yield command
    finally:
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
        with contextlib.suppress(Exception):
            await command._reader


def load_json(path: Path) -> dict[str, Any]:
    data = json.loads(path.read_text())
    assert isinstance(data, dict)
    return data


def one_error_line(stderr: str) -> str:
    """The single line a failing command printed (asserting there is exactly one)."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line, got:\n{stderr}"
    assert lines[0].startswith("Error: "), lines[0]
    return lines[0]
