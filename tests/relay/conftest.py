"""Relay test helpers: a relay in this process on a loopback port, clients of it, deadlines instead of sleeps."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from moq.api import MoqSession, connect
from moq.wire.version import Version
from relay.config import RelayConfig
from relay.server import RunningRelay, start_relay

DEADLINE = 60.0


def run(coro: Awaitable[Any], deadline: float = DEADLINE) -> Any:
    async def guarded() -> Any:
        return await asyncio.wait_for(coro, deadline)

    return asyncio.run(guarded())


@asynccontextmanager
async def relay_running(tmp: Path, **settings: Any) -> AsyncIterator[RunningRelay]:
    settings.setdefault("goaway_grace", 0.2)  # tests need not wait the production grace period
    config = RelayConfig(bind="127.0.0.1", port=0, state_dir=str(tmp / "state"), **settings)
    running = await start_relay(config)
    try:
        yield running
    finally:
        await running.stop()


def url_of(running: RunningRelay, kind: str) -> str:
    scheme = "moqt" if kind == "quic" else "https"
    return f"{scheme}://127.0.0.1:{running.port}/"


async def client(running: RunningRelay, kind: str, version: Version | None = None) -> MoqSession:
    versions = (
        (version,) if version is not None else (Version.DRAFT_22, Version.DRAFT_21, Version.DRAFT_20, Version.DRAFT_18)
    )
    return await connect(url_of(running, kind), fingerprint=running.certificate.fingerprint, versions=versions)
