"""Entry point of every benchmark worker process: `python -m bench.worker ROLE 'JSON PARAMS'`.

A worker runs one role (a ceiling sender or receiver, the publisher, a batch of subscribers, the media publisher)
until it is done or its `deadline` (seconds, in the params) passes, whichever comes first, and reports in JSON lines
on stdout (`bench.common.emit`).
"""

from __future__ import annotations

import asyncio
import importlib
import json
import logging
import sys
from collections.abc import Awaitable, Callable
from typing import Any

Role = Callable[[dict[str, Any]], Awaitable[None]]


#: role -> (module, function); imported only when that role runs, so a worker loads what it needs.
ROLES = {
    "ceiling-sender": ("bench.ceiling", "sender_main"),
    "ceiling-receiver": ("bench.ceiling", "receiver_main"),
    "publisher": ("bench.workload", "publisher_main"),
    "subscribers": ("bench.workload", "subscribers_main"),
    "media-publisher": ("bench.media", "publisher_main"),
}


def _role(name: str) -> Role | None:
    where = ROLES.get(name)
    if where is None:
        return None
    role: Role = getattr(importlib.import_module(where[0]), where[1])
    return role


async def _run(role: Role, params: dict[str, Any]) -> None:
    deadline = float(params.get("deadline", 120.0))
    try:
        await asyncio.wait_for(role(params), deadline)
    except TimeoutError:
        from bench.common import emit

        emit("timeout", deadline=deadline)


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m bench.worker ROLE 'JSON PARAMS'", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("quic").setLevel(logging.ERROR)
    role = _role(argv[0])
    if role is None:
        print(f"unknown role {argv[0]!r}; roles: {', '.join(sorted(ROLES))}", file=sys.stderr)
        return 2
    asyncio.run(_run(role, json.loads(argv[1])))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
