"""The cluster supervisor (relay.cluster) driven from a test: real hub and worker processes on loopback. What the
command-line tests (tests/cli/test_relay_workers.py) cannot reach: a renewed development certificate reaches every
child, and a hub that dies comes back on its port, its workers' links pinning the renewed certificate."""

from __future__ import annotations

import asyncio
import datetime
import json
import os
import re
import signal
from pathlib import Path
from typing import Any

from moq.api import MoqSession, connect
from moq.model import CachedObject, Track
from moq.transport.errors import CertificateMismatch
from moq.transport.tls import generate_dev_certificate
from moq.wire.params import Parameters
from relay.cluster import Cluster
from relay.config import RelayConfig
from relay.server import single_process_stats, start_relay
from relay.web import start_web

from .conftest import run

NS = (b"live", b"cluster")
DEADLINE = 90.0
#: Sessions opened at most while looking for one on each worker (two workers: 40 misses in a row, once in 2^40).
MAX_CLIENTS = 40


async def client_per_worker(cluster: Cluster, fingerprint: str) -> dict[int, MoqSession]:
    """A session on each worker, pinning `fingerprint`; a worker that still presents another certificate is tried
    again (it takes a renewed one when it reads its control pipe)."""
    found: dict[int, MoqSession] = {}
    for _ in range(MAX_CLIENTS):
        try:
            session = await connect(f"moqt://127.0.0.1:{cluster.port}/", fingerprint=fingerprint)
        except CertificateMismatch:
            continue
        assert session.peer_setup is not None
        match = re.search(r"worker (\d+) of", session.peer_setup.implementation or "")
        assert match is not None
        index = int(match.group(1))
        if index in found:
            session.close()
        else:
            found[index] = session
        if len(found) == len(cluster.workers):
            return found
    raise AssertionError(f"{MAX_CLIENTS} sessions did not reach every worker")


def test_a_renewed_certificate_reaches_every_child_and_a_dead_hub_comes_back(tmp_path: Path) -> None:
    async def scenario() -> None:
        config = RelayConfig(bind="127.0.0.1", port=0, state_dir=str(tmp_path), workers=2, goaway_grace=0.2)
        nine_days_ago = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=9)
        old = generate_dev_certificate(now=nine_days_ago)  # a day left: due for renewal
        cluster = Cluster(config, old, dev_certificate=True)
        stop = asyncio.Event()
        try:
            await cluster.start()
            supervising = asyncio.ensure_future(cluster.supervise(stop))
            for session in (await client_per_worker(cluster, old.fingerprint_hex)).values():
                session.close()
            assert cluster.renew_certificate()
            new = cluster.certificate.fingerprint_hex
            assert new != old.fingerprint_hex
            sessions = await client_per_worker(cluster, new)  # both workers present the renewed certificate
            # The hub dies; the supervisor brings it back on its port, and the workers' links come back to it.
            assert cluster.hub is not None and cluster.hub.pid is not None
            dead = cluster.hub.pid
            os.kill(dead, signal.SIGKILL)
            while not (cluster.hub.up and cluster.hub.pid != dead):
                await asyncio.sleep(0.05)
            # Across workers through the new hub: worker 0's publisher reaches worker 1's subscriber.
            pub = sessions[0]
            track = pub.add_track(Track(NS, b"video"))
            await pub.publish_namespace(NS)
            sub = await sessions[1].subscribe(NS, "video", Parameters(rendezvous_timeout=30_000))
            for oid in range(3):
                track.append(CachedObject(0, 0, oid, b"x" * 100))
            track.end_subgroup(0, 0)
            track.end_track()
            assert sorted([(o.group_id, o.object_id) async for o in sub]) == [(0, 0), (0, 1), (0, 2)]
            for session in sessions.values():
                session.close()
            stop.set()
            await supervising
        finally:
            await cluster.stop()

    run(scenario(), DEADLINE)


def test_a_single_process_relay_serves_stats_of_the_same_shape(tmp_path: Path) -> None:
    """`/stats` of `moq relay` without --workers: one worker, this process, its counts."""

    async def scenario() -> None:
        config = RelayConfig(bind="127.0.0.1", port=0, state_dir=str(tmp_path), goaway_grace=0.2, web_port=0)
        running = await start_relay(config)
        web = await start_web(running, config, stats=lambda: single_process_stats(running))
        try:
            viewer = await connect(f"moqt://127.0.0.1:{running.port}/", fingerprint=running.certificate.fingerprint)

            async def get() -> dict[str, Any]:
                reader, writer = await asyncio.open_connection("127.0.0.1", web.port)
                writer.write(b"GET /stats HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
                head, _, body = (await reader.read()).partition(b"\r\n\r\n")
                writer.close()
                assert head.startswith(b"HTTP/1.1 200")
                stats = json.loads(body)
                assert isinstance(stats, dict)
                return stats

            stats = await get()
            assert stats["sessions"] == 1 and stats["hub"] is None
            assert [(w["index"], w["pid"], w["up"], w["sessions"]) for w in stats["workers"]] == [
                (0, os.getpid(), True, 1)
            ]
            # The relay's probe for bigger packets is acknowledged on loopback: the session's packets grow.
            while (worker := (await get())["workers"][0])["sessions_with_bigger_packets"] != 1:
                await asyncio.sleep(0.02)
            assert worker["path_black_holes"] == 0
            viewer.close()
        finally:
            await web.close()
            await running.stop()

    run(scenario())
