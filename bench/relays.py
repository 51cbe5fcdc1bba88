"""The relays under test, each run as its own process: `moq relay`, and aiomoqt's `moq-interop-relay --dual`.

Both listen on 127.0.0.1 on a free UDP port with the run's certificate; the part reads their CPU and memory from
/proc. They are ready when they log that they listen (no fixed sleeps), die with the benchmark if it dies, and are
stopped with SIGTERM (ours then sends GOAWAY and closes) when the part is done.
"""

from __future__ import annotations

import asyncio
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from bench.common import HOST, free_udp_port, memory_kb, start_process, stop_process, tree_rss_kb
from bench.settings import Settings

#: How long a relay may take to say it listens.
RELAY_START_TIMEOUT = 20.0
#: Seconds our relay gives sessions to leave after GOAWAY when stopped (its default, 2 s, is for real clients).
GOAWAY_GRACE = 0.2


def moq_command() -> list[str]:
    """How to run our `moq` command from this interpreter's environment."""
    script = Path(sys.executable).parent / "moq"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "import sys; from cli.main import main; sys.exit(main())"]


def aiomoqt_bin() -> Path | None:
    """aiomoqt's bin directory (`.peers/aiomoqt/bin`), if it is installed."""
    from interop.peers import find_aiomoqt

    peer = find_aiomoqt()
    return peer.bin_dir if peer is not None else None


class RelayExited(RuntimeError):
    """The relay process went away during a run."""


@dataclass
class RelayProcess:
    """A relay running as its own process."""

    kind: str  # "moq" or "aiomoqt"
    proc: asyncio.subprocess.Process
    port: int
    log: Path
    started: float
    #: `moq relay --workers`: a supervisor, a hub and this many relay processes sharing the port.
    workers: int = 1
    #: The TCP port of its web pages (ours only).
    web_port: int | None = None

    @property
    def label(self) -> str:
        """How tables name it: `moq`, `moq x2` (two worker processes), `aiomoqt`."""
        return self.kind if self.workers == 1 else f"{self.kind} x{self.workers}"

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def url(self) -> str:
        return f"moqt://{HOST}:{self.port}/"

    def rss_kb(self) -> int:
        """Resident memory, of every process of the relay."""
        return tree_rss_kb(self.pid) if self.workers > 1 else memory_kb(self.pid)[0]

    def peak_kb(self) -> int:
        return memory_kb(self.pid)[1]

    def check_alive(self) -> None:
        """Raise RelayExited if the relay process is gone."""
        if self.proc.returncode is not None or not Path(f"/proc/{self.pid}").exists():
            raise RelayExited(
                f"the {self.kind} relay exited during the run (code {self.proc.returncode}); see {self.log}"
            )

    async def stop(self) -> None:
        await stop_process(self.proc)

    @classmethod
    async def start(
        cls,
        kind: str,
        workdir: Path,
        cert: Path | None,
        key: Path | None,
        settings: Settings,
        *,
        tag: str = "",
        wrapper: list[str] | None = None,
        workers: int = 1,
    ) -> RelayProcess:
        """Start a relay of `kind` and wait until it listens. `wrapper` prefixes the command (a profiler);
        `workers` > 1 runs `moq relay --workers` (one process per core sharing the port). Ours without `cert`
        makes a development certificate in its state directory, whose fingerprint its web pages hand to browsers
        (`/config.json`; a browser refuses a self-signed certificate it is not told the hash of)."""
        port = free_udp_port()
        log = workdir / f"relay-{kind}{tag}.log"
        if kind == "moq":
            # The GOAWAY grace is only in the config file: a benchmark's sessions are gone when it stops the relay.
            config = workdir / "relay.toml"
            config.write_text(f"goaway-grace = {GOAWAY_GRACE}\n")
            args = [
                *moq_command(),
                "relay",
                "--config",
                str(config),
                "--bind",
                HOST,
                "--port",
                str(port),
                *(["--cert", str(cert), "--key", str(key)] if cert is not None and key is not None else []),
                "--state-dir",
                str(workdir / f"relay-state{tag}"),
                "--web-port",
                "0",
                "--cache-groups",
                str(settings.cache_groups),
                "--cache-bytes",
                str(settings.cache_bytes),
                "--log-level",
                "info",
                *(["--workers", str(workers)] if workers > 1 else []),
            ]
            ready_text = "relay listening on UDP port"
        elif kind == "aiomoqt":
            bin_dir = aiomoqt_bin()
            if bin_dir is None:
                raise RuntimeError("aiomoqt is not installed (python -m interop.peers install)")
            if cert is None or key is None:
                raise ValueError("aiomoqt's relay needs a certificate")
            args = [
                str(bin_dir / "moq-interop-relay"),
                "--bind",
                HOST,
                "--port",
                str(port),
                "--cert",
                str(cert),
                "--key",
                str(key),
                "--dual",
            ]
            ready_text = "Listening on"
        else:
            raise ValueError(f"unknown relay kind {kind!r}")
        if wrapper:
            args = [*wrapper, *args]
        offset = log.stat().st_size if log.exists() else 0  # a kept workdir's log holds earlier runs' lines
        proc = await start_process(args, log=log, stdout=False)  # aiomoqt logs on stdout, ours on stderr
        relay = cls(kind, proc, port, log, time.time(), workers)
        deadline = time.monotonic() + RELAY_START_TIMEOUT
        for _ in range(10_000):
            if proc.returncode is not None:
                raise RuntimeError(f"the {kind} relay exited at start; see {log}")
            with log.open("rb") as f:
                f.seek(offset)
                text = f.read().decode(errors="replace")
            if ready_text in text:
                web = re.search(r"web pages on HTTPS? port (\d+)", text)
                if kind != "moq" or web is not None:
                    relay.web_port = int(web.group(1)) if web is not None else None
                    return relay
            if time.monotonic() > deadline:
                await relay.stop()
                raise TimeoutError(f"the {kind} relay did not listen within {RELAY_START_TIMEOUT} s; see {log}")
            await asyncio.sleep(0.05)
        raise TimeoutError(f"the {kind} relay did not start; see {log}")
