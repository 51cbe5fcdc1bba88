"""`moq relay --workers 2` as a subprocess: a supervisor, a hub and two workers sharing one UDP port.

Real processes and real QUIC on loopback. Each client has its own UDP socket (its own source port), so the kernel
spreads clients over the workers; a worker names itself in its SETUP (MOQT_IMPLEMENTATION), and the supervisor's
`/stats` counts each worker's sessions. Nothing sleeps in place of an event: the tests wait for log lines, for
answers, and poll `/stats` or process state within the scenario's deadline.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from moq.api import MoqSession, Subscription, connect
from moq.model import CachedObject, Track
from moq.wire.params import Parameters
from moq.wire.primitives import TrackNamespace

from .helpers import Command, moq, run

NS = (b"live", b"workers")
#: Each scenario's deadline: three relay processes start, and the machine may be busy with other tests.
DEADLINE = 90.0
#: Clients a test opens at most while looking for one on a given worker: with 2 workers, 40 misses in a row
#: happen once in 2^40.
MAX_CLIENTS = 40
WORKER = re.compile(r"relay worker (\d+) of (\d+)")
#: A bound on how soon a dead worker's namespaces are withdrawn: well under the QUIC idle timeout (60 s) that would
#: end its link to the hub otherwise.
FORGET_WITHIN = 30.0


@dataclass
class Cluster:
    command: Command
    port: int
    web_port: int
    fingerprint: str

    async def stats(self) -> dict[str, Any]:
        """GET /stats from the supervisor's web server."""
        reader, writer = await asyncio.open_connection("127.0.0.1", self.web_port)
        writer.write(b"GET /stats HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        response = await reader.read()
        writer.close()
        head, _, body = response.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200"), head
        data = json.loads(body)
        assert isinstance(data, dict)
        return data

    async def until(self, condition: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        """Poll /stats until `condition` holds for it (within the scenario's deadline)."""
        while not condition(stats := await self.stats()):
            await asyncio.sleep(0.05)
        return stats

    async def client(self, scheme: str = "moqt") -> tuple[MoqSession, int]:
        """A new session (its own UDP socket; raw QUIC, or WebTransport with "https") and the index of the worker
        that took it."""
        session = await connect(f"{scheme}://127.0.0.1:{self.port}/", fingerprint=self.fingerprint)
        assert session.peer_setup is not None
        match = WORKER.search(session.peer_setup.implementation or "")
        assert match is not None, session.peer_setup.implementation
        return session, int(match.group(1))

    async def clients_on(self, wanted: dict[int, int]) -> tuple[dict[int, list[MoqSession]], list[MoqSession]]:
        """Connect until worker i has wanted[i] of our sessions; returns them per worker, and every session."""
        per: dict[int, list[MoqSession]] = {i: [] for i in wanted}
        every: list[MoqSession] = []
        for _ in range(MAX_CLIENTS):
            if all(len(per[i]) >= n for i, n in wanted.items()):
                return per, every
            session, index = await self.client()
            every.append(session)
            per.setdefault(index, []).append(session)
        raise AssertionError(f"{MAX_CLIENTS} clients did not reach workers {wanted}: {[len(v) for v in per.values()]}")


@asynccontextmanager
async def relay_workers(tmp: Path, workers: int = 2) -> AsyncIterator[Cluster]:
    config = tmp / "relay.toml"
    config.write_text("goaway-grace = 0.5\n")
    async with moq(
        "relay",
        "--config",
        str(config),
        "--workers",
        str(workers),
        "--bind",
        "127.0.0.1",
        "--port",
        "0",
        "--web-port",
        "0",
        "--state-dir",
        str(tmp / "state"),
        name="moq relay --workers",
    ) as command:
        listening = await command.line(r"relay listening on UDP port (\d+)")
        web = await command.line(r"web pages on HTTP port (\d+)")
        fingerprint = await command.line(r"certificate sha-256 fingerprint: ([0-9a-f]{64})")
        yield Cluster(
            command,
            int(_group(r"UDP port (\d+)", listening)),
            int(_group(r"HTTP port (\d+)", web)),
            _group(r"fingerprint: ([0-9a-f]{64})", fingerprint),
        )


def _group(pattern: str, line: str) -> str:
    match = re.search(pattern, line)
    assert match is not None, line
    return match.group(1)


def produce(track: Track, groups: range, objects: int = 4) -> list[tuple[int, int]]:
    sent = []
    for group in groups:
        for oid in range(objects):
            track.append(CachedObject(group, 0, oid, bytes([group % 256, oid]) * 1000))
            sent.append((group, oid))
        track.end_subgroup(group, 0)
    return sent


async def subscribe(session: MoqSession, ns: TrackNamespace) -> Subscription:
    """SUBSCRIBE, answered once the relay has the track: from then on every new object reaches us. The rendezvous
    covers the moment the namespace takes to reach the other worker through the hub."""
    return await session.subscribe(ns, "video", Parameters(rendezvous_timeout=30_000))


async def received(sub: Subscription) -> list[tuple[int, int]]:
    return sorted([(o.group_id, o.object_id) async for o in sub])


def gone(pid: int) -> bool:
    """The process has exited (reaped, or a zombie nobody has reaped yet)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


async def until_gone(pids: list[int]) -> None:
    while not all(gone(pid) for pid in pids):
        await asyncio.sleep(0.05)


def child_pids(stats: dict[str, Any]) -> list[int]:
    return [w["pid"] for w in stats["workers"]] + [stats["hub"]["pid"]]


def test_a_publisher_on_one_worker_reaches_subscribers_on_both(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with relay_workers(tmp_path) as relay:
            per, every = await relay.clients_on({0: 3, 1: 2})
            # The supervisor's /stats counts each worker's sessions: ours, as the workers named themselves.
            stats = await relay.until(lambda s: [w["sessions"] for w in s["workers"]] == [len(per[0]), len(per[1])])
            assert stats["sessions"] == len(every) and stats["hub"]["sessions"] == 2  # a link from each worker
            browser_like, _ = await relay.client("https")  # WebTransport, as the web pages connect
            every.append(browser_like)
            pub = per[0][0]
            track = pub.add_track(Track(NS, b"video"))
            await pub.publish_namespace(NS)
            subs = await asyncio.gather(*(subscribe(s, NS) for s in [*per[0][1:], *per[1], browser_like]))
            sent = produce(track, range(4))
            track.end_track()
            for got in await asyncio.gather(*(received(sub) for sub in subs)):
                assert got == sent
            # One upstream subscription per track per worker: worker 1 has the track once, through the hub, which
            # has it once from worker 0 (counts only grow, and every subscription was made before this).
            await relay.until(
                lambda s: s["workers"][1]["upstream_subscriptions"] == 1 and s["hub"]["upstream_subscriptions"] == 1
            )
            assert pub.objects_sent == len(sent)  # the publisher sent each object once, for both workers
            for s in every:
                s.close()

    run(scenario(), DEADLINE)


def test_subscribe_namespace_hears_namespaces_published_at_the_other_worker(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with relay_workers(tmp_path) as relay:
            per, every = await relay.clients_on({0: 1, 1: 1})
            watch = await per[1][0].subscribe_namespace((b"live",))
            changes = aiter(watch)
            publisher = per[0][0]
            rid = await publisher.publish_namespace(NS)
            assert await anext(changes) == (True, NS)
            publisher.withdraw(rid)
            assert await anext(changes) == (False, NS)
            await publisher.publish_namespace(NS)
            assert await anext(changes) == (True, NS)
            publisher.close()  # leaving withdraws it too
            assert await anext(changes) == (False, NS)
            for s in every:
                s.close()

    run(scenario(), DEADLINE)


def test_a_killed_worker_is_restarted_and_serves_new_clients(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with relay_workers(tmp_path) as relay:
            stats = await relay.until(lambda s: all(w["up"] for w in s["workers"]))
            old = stats["workers"][0]["pid"]
            # A namespace published at worker 0, heard at worker 1.
            before, _ = await relay.clients_on({0: 1, 1: 1})
            watch = await before[1][0].subscribe_namespace(())
            changes = aiter(watch)
            await before[0][0].publish_namespace(NS)
            assert await anext(changes) == (True, NS)
            os.kill(old, signal.SIGKILL)
            # Withdrawn at once (the supervisor tells the hub), not when the dead link's idle timeout (60 s) ends.
            assert await asyncio.wait_for(anext(changes), FORGET_WITHIN) == (False, NS)
            await relay.command.line(rf"worker 0 \(pid {old}\) exited with code -9: restarting it")
            stats = await relay.until(lambda s: s["workers"][0]["up"] and s["workers"][0]["pid"] != old)
            assert stats["workers"][0]["restarts"] == 1
            assert stats["workers"][1]["restarts"] == 0 and stats["hub"]["restarts"] == 0
            await relay.command.line(rf"worker 0 up: pid {stats['workers'][0]['pid']}")
            # The new worker 0 serves, and is part of the cluster: its publisher reaches worker 1.
            per, every = await relay.clients_on({0: 1, 1: 1})
            pub = per[0][0]
            track = pub.add_track(Track(NS, b"video"))
            await pub.publish_namespace(NS)
            sub = await subscribe(per[1][0], NS)
            sent = produce(track, range(2))
            track.end_track()
            assert await received(sub) == sent
            for s in [*before[0], *before[1], *every]:
                s.close()

    run(scenario(), DEADLINE)


def test_sigterm_to_the_supervisor_stops_every_child(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with relay_workers(tmp_path) as relay:
            stats = await relay.until(lambda s: all(child_pids(s)))
            pids = child_pids(stats)
            session, _ = await relay.client()
            relay.command.process.send_signal(signal.SIGTERM)
            # The worker holding our session sends GOAWAY before it goes.
            await asyncio.wait_for(session.goaway_received.wait(), 30)
            session.close()
            assert await relay.command.wait() == 0
            await until_gone(pids)

    run(scenario(), DEADLINE)


def test_children_do_not_outlive_a_killed_supervisor(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with relay_workers(tmp_path) as relay:
            stats = await relay.until(lambda s: all(child_pids(s)))
            pids = child_pids(stats)
            relay.command.process.kill()  # no chance to stop them: they must notice by themselves
            await relay.command.wait()
            await until_gone(pids)

    run(scenario(), DEADLINE)


def test_workers_beyond_the_bound_are_refused(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with moq("relay", "--workers", "65", "--state-dir", str(tmp_path), name="moq relay") as command:
            assert await command.wait() != 0
            assert "bad relay configuration" in command.stderr and "workers" in command.stderr

    run(scenario())


def test_a_port_another_socket_holds_is_refused_even_with_so_reuseport(tmp_path: Path) -> None:
    """Workers bind with SO_REUSEPORT, which would quietly share the port with another program's SO_REUSEPORT
    socket of the same user: the supervisor checks the port is free first."""

    async def scenario() -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as stranger:
            stranger.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            stranger.bind(("127.0.0.1", 0))
            port = stranger.getsockname()[1]
            args = ["--workers", "2", "--bind", "127.0.0.1", "--port", str(port), "--web-port", "0"]
            async with moq("relay", *args, "--state-dir", str(tmp_path), name="moq relay") as command:
                assert await command.wait() != 0
                assert f"UDP port {port}" in command.stderr and "not available" in command.stderr

    run(scenario())
