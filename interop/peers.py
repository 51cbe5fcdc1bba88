"""Foreign MoQ implementations we can install and run here, for interop tests and the matrix.

Today: aiomoqt (>= 0.13, on picoquic: foreign to aioquic too), which needs Python >= 3.12 and so lives in its own
virtual environment under `.peers/aiomoqt` (see the team's INTEROP.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PEERS_DIR = Path(os.environ.get("MOQ_PEERS_DIR", ROOT / ".peers"))
AIOMOQT_SPEC = "aiomoqt>=0.13"
#: How long a foreign relay may take to say it listens.
RELAY_START_TIMEOUT = 20.0


@dataclass(frozen=True)
class Aiomoqt:
    """An installed aiomoqt: its relay and its interop-runner client."""

    bin_dir: Path

    @property
    def relay(self) -> Path:
        return self.bin_dir / "moq-interop-relay"

    @property
    def client(self) -> Path:
        return self.bin_dir / "moq-interop-client"

    def version(self) -> str:
        out = subprocess.run(
            [str(self.bin_dir / "python"), "-c", "import importlib.metadata as m; print(m.version('aiomoqt'))"],
            capture_output=True,
            text=True,
            check=False,
        )
        return out.stdout.strip()


def find_python312() -> str | None:
    """A Python >= 3.12 interpreter: on PATH, or in pyenv's versions (installed but not on PATH here)."""
    for name in ("python3.13", "python3.12"):
        found = shutil.which(name)
        if found and subprocess.run([found, "-c", "pass"], capture_output=True, check=False).returncode == 0:
            return found
    root = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
    for pattern in ("3.12*/bin/python3.12", "3.13*/bin/python3.13"):
        matches = sorted(glob.glob(os.path.join(root, "versions", pattern)))
        if matches:
            return matches[-1]
    return None


def find_aiomoqt() -> Aiomoqt | None:
    """The aiomoqt installed under PEERS_DIR, if any."""
    peer = Aiomoqt(PEERS_DIR / "aiomoqt" / "bin")
    return peer if peer.relay.exists() and peer.client.exists() else None


def install_aiomoqt(quiet: bool = True) -> Aiomoqt:
    """Install aiomoqt into its own venv (Python 3.12+) under PEERS_DIR; returns it. Idempotent."""
    found = find_aiomoqt()
    if found is not None:
        return found
    python = find_python312()
    if python is None:
        raise RuntimeError("aiomoqt needs Python >= 3.12 and none was found (PATH or pyenv)")
    venv = PEERS_DIR / "aiomoqt"
    subprocess.run([python, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "pip"), "install", *(["--quiet"] if quiet else []), AIOMOQT_SPEC]
    subprocess.run(pip, check=True)
    peer = find_aiomoqt()
    if peer is None:
        raise RuntimeError("aiomoqt installed but its commands are missing")
    return peer


def free_udp_port() -> int:
    """A UDP port free right now on loopback (the peer binds it a moment later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.asynccontextmanager
async def relay_process(args: Sequence[str], ready: str, name: str, log: Path | None = None) -> AsyncIterator[None]:
    """Run a relay process until the block exits: enter once a line of its output contains `ready` (not after a
    fixed time); its output goes to `log`; at the end it is terminated (killed if it lingers)."""
    proc = await asyncio.create_subprocess_exec(*args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    assert proc.stdout is not None
    lines: list[str] = []
    drainer: asyncio.Future[None] | None = None

    async def wait_ready() -> None:
        assert proc.stdout is not None
        while True:
            raw = await proc.stdout.readline()
            if not raw:
                last = [line.strip() for line in lines if line.strip()][-1:] or ["no output"]
                raise RuntimeError(f"{name} exited: {last[0]}")
            lines.append(raw.decode(errors="replace"))
            if ready in lines[-1]:
                return

    async def drain() -> None:
        assert proc.stdout is not None
        while raw := await proc.stdout.readline():
            if log is not None:
                with log.open("ab") as f:
                    f.write(raw)

    try:
        await asyncio.wait_for(wait_ready(), RELAY_START_TIMEOUT)
        if log is not None:
            log.write_text("".join(lines))
        drainer = asyncio.ensure_future(drain())
        yield
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 5)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        if drainer is not None:
            drainer.cancel()


@contextlib.asynccontextmanager
async def aiomoqt_relay(
    peer: Aiomoqt, cert: Path, key: Path, *, drafts: str | None = None, log: Path | None = None
) -> AsyncIterator[int]:
    """Run aiomoqt's relay (raw QUIC and WebTransport on one port) until the block exits; yields its port."""
    port = free_udp_port()
    args = [
        str(peer.relay),
        "--bind",
        "127.0.0.1",
        "--port",
        str(port),
        "--cert",
        str(cert),
        "--key",
        str(key),
        "--dual",
    ]
    if drafts:
        args += ["--draft", drafts]
    async with relay_process(args, "Listening on", "aiomoqt relay", log):
        yield port


if __name__ == "__main__":  # `python -m interop.peers install`: what `make test` runs
    if sys.argv[1:] == ["install"]:
        installed = install_aiomoqt()
        print(f"aiomoqt {installed.version()} at {installed.bin_dir}")
