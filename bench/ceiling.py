"""Part 1, the ceiling: raw QUIC throughput on loopback through our transport, with no MOQT on top.

It is the physical limit a relay process on aioquic lives under (PLATFORM.md: the cost is Python work per packet),
measured in the same run as the rest so that the relay's figures can be read against it.

- one connection: one process sends one unidirectional stream of N MB to another process;
- many connections: one sender process (as a relay is one process) sends a stream on each of 10 connections,
  each connection received by its own process.

Each either through `send()` (our send scheduler, which every MOQT session uses) or written straight into aioquic's
stream buffer (what aioquic alone does: the difference is the scheduler's cost), and, in the full run, with
1452-byte packets instead of aioquic's default 1200 (what a relay on a known path could use: fewer packets per byte).

The sender is the QUIC server, as the relay is: it opens a unidirectional stream per connection once all of them
are up, writes it in 64 KiB chunks paced by `wait_writable()` (the transport's back-pressure), and FINs it. Each
receiver counts bytes until the FIN. Throughput is all bytes over (last FIN received - sending started).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import HOST, READY_TIMEOUT, Json, Table, Worker, cpu_ms_per_mb, emit, mbit, memory_kb, per_core_mbit_s
from bench.settings import Settings

CHUNK = 64 * 1024
#: Bytes the sender lets wait in the transport (its queue plus what aioquic holds) before it waits to write more.
SEND_WINDOW = 2 * 1024 * 1024


# -- worker side ---------------------------------------------------------------------------------------------------


async def sender_main(params: dict[str, Any]) -> None:
    """Serve raw QUIC; once `connections` sessions are up, send `bytes` on one stream of each, then report."""
    from moq.transport import SessionClosedError, TransportConnection, _aioquic, load_certificate, serve
    from moq.wire.version import Version

    want = int(params["connections"])
    size = int(params["bytes"])
    conns: list[TransportConnection] = []
    all_in = asyncio.Event()
    finished: list[float] = []

    async def on_connection(conn: TransportConnection) -> None:
        conns.append(conn)
        if len(conns) >= want:
            all_in.set()
        await conn.wait_closed()

    server = await serve(
        HOST,
        0,
        certificate=load_certificate(params["cert"], params["key"]),
        versions=(Version.DRAFT_22,),
        handler=on_connection,
        webtransport=False,
        path_mtu_discovery=bool(params.get("discovery", True)),
    )
    emit("ready", port=server.port)
    await all_in.wait()
    started = time.time()
    cpu0 = _cpu_self()
    emit("started", at=started)

    async def send(conn: TransportConnection) -> None:
        stream = await conn.open_uni_stream((1,))
        chunk = bytes(CHUNK)
        if params.get("direct"):
            # Straight into aioquic's stream buffer, past our scheduler: what aioquic alone does (bench only; a
            # session must never do this, it is what the scheduler exists to prevent).
            conn._quic.send_stream_data(stream, bytes(size), True)
            conn._protocol.transmit()
            await conn.wait_closed()
            finished.append(time.time())
            return
        sent = 0
        while sent < size:
            await conn.wait_writable(SEND_WINDOW)
            piece = chunk if size - sent >= CHUNK else chunk[: size - sent]
            sent += len(piece)
            conn.send(stream, piece, end_stream=sent >= size)
        with contextlib.suppress(SessionClosedError):  # the receiver may close as soon as it has the FIN
            await conn.wait_writable(0)  # everything acknowledged
        finished.append(time.time())

    await asyncio.gather(*(send(c) for c in conns[:want]))
    emit(
        "result",
        started=started,
        finished=max(finished),
        cpu_seconds=_cpu_self() - cpu0,
        rss_kb=memory_kb(os.getpid())[0],
        # The packet size each connection ended at (path MTU discovery grows it from 1200 where the path allows).
        datagram_sizes=sorted({_aioquic.max_datagram_size(c._quic) for c in conns[:want]}),
    )
    for conn in conns:
        with_timeout = asyncio.wait_for(conn.wait_closed(), 5.0)
        try:
            await with_timeout
        except TimeoutError:
            conn.close()
    server.close()


async def receiver_main(params: dict[str, Any]) -> None:
    """Open `connections` raw QUIC connections to the sender and count each one's stream until its FIN."""
    from moq.transport import StreamDataReceived, TransportEvent, connect
    from moq.wire.version import Version

    url = f"moqt://{HOST}:{params['port']}/"

    async def receive() -> Json:
        conn = await connect(url, verify=False, versions=(Version.DRAFT_22,))
        done = asyncio.get_running_loop().create_future()
        got = {"bytes": 0, "first": 0.0, "end": 0.0, "cpu0": 0.0, "cpu_seconds": 0.0}

        def on_event(event: TransportEvent) -> None:
            if isinstance(event, StreamDataReceived):
                if not got["first"]:
                    got["first"] = time.time()
                    got["cpu0"] = _cpu_self()
                got["bytes"] += len(event.data)
                if event.end_stream and not done.done():
                    got["end"] = time.time()
                    got["cpu_seconds"] = _cpu_self() - got["cpu0"]
                    done.set_result(None)

        conn.set_event_handler(on_event)
        await done
        conn.close()
        return got

    results = await asyncio.gather(*(receive() for _ in range(int(params["connections"]))))
    emit("result", connections=results)


def _cpu_self() -> float:
    """CPU seconds this process has used (all threads)."""
    times = os.times()
    return times.user + times.system


# -- orchestrator side ---------------------------------------------------------------------------------------------

#: The QUIC packet size aioquic uses by default, and ours where path MTU discovery finds nothing bigger.
DEFAULT_DATAGRAM_SIZE = 1200


@dataclass(frozen=True)
class Variant:
    """One ceiling measurement."""

    connections: int
    mb_each: int
    direct: bool = False
    #: Path MTU discovery on (as the relay runs): packets grow from 1200 B to what the path takes (1452 here).
    discovery: bool = True

    @property
    def label(self) -> str:
        how = "direct to aioquic" if self.direct else "send() + scheduler"
        return how + ("" if self.discovery else f", {DEFAULT_DATAGRAM_SIZE} B packets (no path MTU discovery)")


def variants(settings: Settings) -> list[Variant]:
    one, many = settings.ceiling_mb, settings.ceiling_conn_mb
    n = settings.ceiling_connections
    if settings.mode == "tiny":
        return [Variant(1, one), Variant(n, many)]
    if settings.mode == "quick":
        return [Variant(1, one), Variant(1, one, direct=True), Variant(n, many)]
    return [
        Variant(1, one),
        Variant(1, one, direct=True),
        Variant(1, one, discovery=False),
        Variant(n, many),
        Variant(n, many, direct=True),
    ]


async def transfer(variant: Variant, workdir: Path, cert: Path, key: Path, deadline: float) -> Json:
    """One measurement: a stream of `mb_each` MB on each of `connections` connections from one sender process,
    each connection received by its own process."""
    connections = variant.connections
    params = {
        "connections": connections,
        "bytes": variant.mb_each * 1_000_000,
        "cert": str(cert),
        "key": str(key),
        "deadline": deadline,
        "direct": variant.direct,
        "discovery": variant.discovery,
    }
    tag = f"{connections}{'-direct' if variant.direct else ''}{'' if variant.discovery else '-1200'}"
    sender = await Worker.start("ceiling-sender", params, workdir, f"ceiling-sender-{tag}")
    workers: list[Worker] = []
    try:
        port = (await sender.message("ready", READY_TIMEOUT))["port"]
        for i in range(connections):
            receiver = {"port": port, "connections": 1, "deadline": deadline}
            workers.append(await Worker.start("ceiling-receiver", receiver, workdir, f"ceiling-receiver-{tag}-{i}"))
        started = (await sender.message("started", READY_TIMEOUT))["at"]
        results = [await w.message("result", deadline) for w in workers]
        sent = await sender.message("result", deadline)
    finally:
        await asyncio.gather(*(w.stop() for w in workers), sender.stop())
    streams = [c for r in results for c in r["connections"]]
    total = sum(c["bytes"] for c in streams)
    end = max(c["end"] for c in streams)
    per_stream = [mbit(c["bytes"], c["end"] - started) for c in streams]
    wall = end - started
    # Each process measured its own CPU (all threads) over its part of the transfer: nothing is lost when a
    # process exits before we could read /proc.
    sender_cpu = sent["cpu_seconds"] / wall if wall > 0 else 0.0
    receivers_cpu = sum(c["cpu_seconds"] for c in streams) / wall if wall > 0 else 0.0
    return {
        "variant": variant.label,
        "connections": connections,
        "mb_each": variant.mb_each,
        "direct": variant.direct,
        "discovery": variant.discovery,
        "datagram_sizes": sent.get("datagram_sizes", []),
        "bytes": total,
        "seconds": round(end - started, 3),
        "mbit_s": round(mbit(total, end - started), 1),
        "per_connection_mbit_s_min": round(min(per_stream), 1),
        "per_connection_mbit_s_max": round(max(per_stream), 1),
        "sender_cpu": round(sender_cpu, 3),
        "receivers_cpu": round(receivers_cpu, 3),
        "sender_rss_mb": round(sent["rss_kb"] / 1024, 1),
        "sender_cpu_ms_per_mb": cpu_ms_per_mb(sender_cpu, mbit(total, wall)),
        "receivers_cpu_ms_per_mb": cpu_ms_per_mb(receivers_cpu, mbit(total, wall)),
    }


async def run(settings: Settings, workdir: Path, cert: Path, key: Path) -> tuple[Json, Table]:
    table = Table(
        "Ceiling: raw QUIC on loopback through moq.transport (no MOQT)",
        [
            "connections",
            "how",
            "packet B",
            "MB each",
            "Mbit/s total",
            "per conn min-max",
            "sender CPU",
            "receivers CPU",
            "sender CPU ms/MB",
            "receivers CPU ms/MB",
        ],
    )
    rows = []
    for variant in variants(settings):
        row = await transfer(variant, workdir, cert, key, deadline=120.0)
        rows.append(row)
        table.rows.append(
            [
                row["connections"],
                row["variant"],
                "/".join(str(n) for n in row["datagram_sizes"]) or "?",
                row["mb_each"],
                row["mbit_s"],
                f"{row['per_connection_mbit_s_min']:.0f}-{row['per_connection_mbit_s_max']:.0f}",
                f"{row['sender_cpu'] * 100:.0f}%",
                f"{row['receivers_cpu'] * 100:.0f}%",
                row["sender_cpu_ms_per_mb"],
                row["receivers_cpu_ms_per_mb"],
            ]
        )
    table.notes.append(
        "one sender process (the QUIC server, like a relay), each connection received by its own process; CPU is a "
        "share of one core (100% = one core busy); the ceiling the relay is compared with is the best of these at "
        "the relay's packet size (path MTU discovery on, as the relay runs); CPU ms/MB is the cost per byte, which a "
        "busy machine hardly changes"
    )
    default = [r for r in rows if r["discovery"]]
    ceiling = max(r["mbit_s"] for r in default)
    # Per byte, the relay is compared with the sender of many connections: that is the relay's shape.
    shaped = [r for r in default if r["connections"] > 1] or default
    cheapest = min((r["sender_cpu_ms_per_mb"] for r in shaped if r["sender_cpu_ms_per_mb"]), default=None)
    many = [r["mbit_s"] for r in default if r["connections"] > 1]
    return {
        "runs": rows,
        "ceiling_mbit_s": ceiling,
        # One sender to many connections, each its own receiver process: the shape of a relay's fan-out.
        "ceiling_many_connections_mbit_s": max(many) if many else None,
        "sender_cpu_ms_per_mb": cheapest,
        "sender_per_core_mbit_s": per_core_mbit_s(cheapest),
    }, table
