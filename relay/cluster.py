"""`moq relay --workers N`: one relay on every core, as a supervisor and its child processes.

One relay process saturates at about 100 Mbit/s of fan-out, bound by aioquic's per-packet cost (README
"Performance"), so a relay that is to use every core runs as several processes:

- the supervisor (the `moq relay` process) makes the certificate once and hands it to every child, because
  browsers pin its sha-256 and every worker must present the same one; it serves the web pages, restarts a child
  that dies (at most MAX_WORKER_RESTARTS times within WORKER_RESTART_WINDOW_SECONDS), renews a development
  certificate for all of them, and forwards SIGINT / SIGTERM to the children, each of which then sends its own
  GOAWAY and waits its own grace;
- one hub: a relay on 127.0.0.1, on an ephemeral port, private to the cluster; it carries the configured
  `--upstream`s, if any;
- N workers: relays that bind the public UDP port with SO_REUSEPORT. The kernel hashes each client's address
  4-tuple to one of them, so a QUIC connection stays on one worker. A client whose address changes mid-connection
  (QUIC connection migration, a NAT rebinding) may land on a worker that does not know its connection: it has to
  reconnect.

Each worker's upstream is the hub, with `announce_upstream` on: it forwards every namespace published at it to the
hub (a PUBLISHed track's namespace too), and SUBSCRIBE_NAMESPACEs the hub for every namespace, so a namespace
published at one worker is announced at every other, and SUBSCRIBEs for it are routed there through the hub. The
hub runs as a `cluster_hub`: it tells no worker of its own namespaces and routes no request back to the worker it
came from. A track crosses to a worker once, however many of that worker's subscribers read it.

The supervisor and a child talk over the child's stdin and stdout, one JSON object per line (`relay.child`): down,
the configuration and the certificate, later each renewed certificate, and news the child cannot learn fast enough
by itself (to the hub: a worker died, drop its link; to the workers: the hub was restarted, reconnect); up, `ready`
with the bound port, then the child's counts (sessions, tracks), which the supervisor serves at `/stats`. A child
exits when its stdin closes, that is when the supervisor is gone however it went, and on Linux also asks the kernel
for SIGTERM when its parent dies (PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import os
import signal
import socket
import ssl
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from moq.transport.tls import CertificateBundle, load_or_create_dev_certificate
from relay.config import RelayConfig
from relay.server import CERTIFICATE_CHECK_SECONDS, certificate_for
from relay.web import WebServer, describe_web

logger = logging.getLogger(__name__)

#: Times one child may be restarted within WORKER_RESTART_WINDOW_SECONDS; past that the supervisor gives up and
#: stops the whole relay (a child that keeps dying has a cause a restart will not fix, and a process manager
#: watching `moq relay` should hear of it).
MAX_WORKER_RESTARTS = 5
#: The window MAX_WORKER_RESTARTS counts in.
WORKER_RESTART_WINDOW_SECONDS = 60.0
#: Pause before restarting a child whose previous start failed (a port still held, say).
RESTART_BACKOFF_SECONDS = 1.0
#: How long a child may take to say it listens.
CHILD_START_TIMEOUT_SECONDS = 30.0
#: Beyond its GOAWAY grace, how long a stopping child gets before it is killed.
CHILD_EXIT_MARGIN_SECONDS = 5.0
#: Longest line on a child's control pipes (the configuration and a certificate chain are a few KiB).
MAX_CONTROL_LINE_BYTES = 1024 * 1024
#: How often a child reports its counts to the supervisor, when they changed.
STATS_INTERVAL_SECONDS = 0.25


class ClusterFailed(OSError):
    """A child could not be started, or died too often: the relay cannot run."""


def worker_path(index: int, generation: int) -> str:
    """The path of a worker's link to the hub: which worker, and which start of it."""
    return f"/worker/{index}/{generation}"


def reserve_port(host: str, port: int) -> int:
    """The public UDP port (`port`, or a free one for 0), checked free: bound for a moment without SO_REUSEPORT,
    which fails if any socket holds the port, another program's SO_REUSEPORT group included; then released for the
    workers. Binding with SO_REUSEPORT straight away could silently join such a group (the kernel shares a port
    among SO_REUSEPORT sockets of one user, and even picks such a port for port 0)."""
    try:
        family = socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET
    except ValueError:
        family = socket.AF_INET6 if host in ("", "::") else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)  # as the workers bind it: dual stack
            sock.bind((host or "::", port))
            return int(sock.getsockname()[1])
    except OSError as exc:
        raise ClusterFailed(f"UDP port {port} on {host!r} is not available: {exc}") from exc


def certificate_message(certificate: CertificateBundle) -> dict[str, str]:
    """The certificate as it travels to a child: its chain and its key, PEM, and its fingerprint, which workers pin
    on their link to the hub (which presents it too)."""
    return {
        "certificate": certificate.certificate_pem().decode(),
        "key": certificate.private_key_pem().decode(),
        "fingerprint": certificate.fingerprint_hex,
    }


@dataclass(eq=False)
class Child:
    """One child process: the hub or a worker."""

    role: str  # "hub" or "worker"
    index: int
    config: RelayConfig
    process: asyncio.subprocess.Process | None = None
    up: bool = False  # it said it listens, and has not exited since
    port: int | None = None
    #: The child's latest counts (sessions, tracks, upstream_subscriptions, namespaces).
    stats: dict[str, int] = field(default_factory=dict)
    restarts: int = 0
    #: When it was restarted, within the restart window.
    restart_times: deque[float] = field(default_factory=deque)
    reader: asyncio.Task[None] | None = None

    @property
    def name(self) -> str:
        return "hub" if self.role == "hub" else f"worker {self.index}"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.returncode is None

    def describe(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "pid": self.pid,
            "up": self.up and self.running,
            "restarts": self.restarts,
            "port": self.port,
            **self.stats,
        }


class Cluster:
    """The supervisor's view of its children (see the module docstring)."""

    def __init__(self, config: RelayConfig, certificate: CertificateBundle, dev_certificate: bool) -> None:
        self.config = config
        self.certificate = certificate
        self.dev_certificate = dev_certificate
        self.hub: Child | None = None
        self.workers: list[Child] = []
        self.port: int | None = None  # the public UDP port, once reserved (`reserve_port`)
        self.stopping = False
        self._exited: asyncio.Queue[Child] = asyncio.Queue()

    # -- configurations -----------------------------------------------------------------------------------------

    def hub_config(self, port: int) -> RelayConfig:
        """The hub: private, on loopback; it keeps the configured upstreams (and whether to announce to them)."""
        return msgspec.structs.replace(self.config, bind="127.0.0.1", port=port, workers=1)

    def worker_config(self, index: int, generation: int) -> RelayConfig:
        """A worker: the public port, the hub as its only upstream, announcing what is published at it. The path of
        its link names it (`worker_path`), so the hub can drop the link of a worker that died."""
        assert self.hub is not None and self.hub.port is not None and self.port is not None
        return msgspec.structs.replace(
            self.config,
            port=self.port,
            workers=1,
            upstream=[f"moqt://127.0.0.1:{self.hub.port}{worker_path(index, generation)}"],
            upstream_fingerprint=self.certificate.fingerprint_hex,
            upstream_insecure=False,
            announce_upstream=True,
        )

    # -- starting -----------------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the hub, then the workers, all on the public port."""
        self.port = reserve_port(self.config.bind, self.config.port)
        self.hub = Child("hub", 0, self.hub_config(0))
        await self._launch(self.hub)
        self.hub.config = self.hub_config(self.hub.port or 0)  # a restarted hub comes back where workers look
        for index in range(self.config.workers):
            worker = Child("worker", index, self.worker_config(index, 0))
            self.workers.append(worker)
            await self._launch(worker)

    async def _launch(self, child: Child) -> None:
        """Start `child` and wait until it listens; ClusterFailed if it does not."""
        if child.role == "worker":  # the current certificate's pin, and this start's link path
            child.config = self.worker_config(child.index, child.restarts)
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "relay.child",
            child.role,
            str(child.index),
            str(os.getpid()),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            limit=MAX_CONTROL_LINE_BYTES,
        )
        child.process = process
        child.up = False
        assert process.stdin is not None and process.stdout is not None
        init = {
            "role": child.role,
            "index": child.index,
            "workers": self.config.workers,
            "config": msgspec.to_builtins(child.config),
            **certificate_message(self.certificate),
        }
        try:
            process.stdin.write(json.dumps(init).encode() + b"\n")
            await process.stdin.drain()
            line = await asyncio.wait_for(process.stdout.readline(), CHILD_START_TIMEOUT_SECONDS)
            ready = json.loads(line) if line else None
            if not isinstance(ready, dict) or not isinstance(ready.get("port"), int):
                raise ClusterFailed(f"the relay's {child.name} did not start (its log says why)")
        except (TimeoutError, ConnectionError, ValueError, ClusterFailed) as exc:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
            if isinstance(exc, ClusterFailed):
                raise
            raise ClusterFailed(f"the relay's {child.name} did not start: {exc!r}") from exc
        child.port = ready["port"]
        child.up = True
        child.stats = {}
        child.reader = asyncio.ensure_future(self._read(child, process))
        logger.info("%s up: pid %d, UDP port %d", child.name, process.pid, child.port)

    async def _read(self, child: Child, process: asyncio.subprocess.Process) -> None:
        """Take a child's reports until it exits; then queue it for a restart (unless we are stopping)."""
        assert process.stdout is not None
        with contextlib.suppress(ConnectionError, asyncio.LimitOverrunError, ValueError):
            async for line in process.stdout:
                with contextlib.suppress(ValueError):
                    report = json.loads(line)
                    if isinstance(report, dict) and isinstance(report.get("stats"), dict):
                        child.stats = {k: v for k, v in report["stats"].items() if isinstance(v, int)}
        await process.wait()
        child.up = False
        if not self.stopping and child.process is process:
            self._exited.put_nowait(child)

    # -- running ------------------------------------------------------------------------------------------------

    async def supervise(self, stop: asyncio.Event) -> None:
        """Restart children that die until `stop` is set; ClusterFailed when one dies too often."""
        stopped = asyncio.ensure_future(stop.wait())
        try:
            while not stop.is_set():
                exited = asyncio.ensure_future(self._exited.get())
                await asyncio.wait({exited, stopped}, return_when=asyncio.FIRST_COMPLETED)
                if stop.is_set():  # children that exit now are stopping with us (Ctrl-C reaches them too)
                    exited.cancel()
                    return
                await self._restart(exited.result(), stop)
        finally:
            stopped.cancel()

    async def _restart(self, child: Child, stop: asyncio.Event) -> None:
        code = child.process.returncode if child.process is not None else None
        now = time.monotonic()
        while child.restart_times and now - child.restart_times[0] > WORKER_RESTART_WINDOW_SECONDS:
            child.restart_times.popleft()
        if len(child.restart_times) >= MAX_WORKER_RESTARTS:
            raise ClusterFailed(
                f"the relay's {child.name} died {MAX_WORKER_RESTARTS + 1} times within "
                f"{WORKER_RESTART_WINDOW_SECONDS:.0f} s (last exit code {code}): giving up"
            )
        child.restart_times.append(now)
        if child.role == "worker" and self.hub is not None:
            # The hub would notice the dead worker's link only at its idle timeout: until then its namespaces
            # would still be announced to the other workers. Tell it now.
            self._send(self.hub, {"forget": worker_path(child.index, child.restarts)})
        child.restarts += 1
        logger.warning(
            "%s (pid %s) exited with code %s: restarting it (%d of at most %d restarts within %.0f s)",
            child.name,
            child.pid,
            code,
            len(child.restart_times),
            MAX_WORKER_RESTARTS,
            WORKER_RESTART_WINDOW_SECONDS,
        )
        try:
            await self._launch(child)
            if child.role == "hub":  # the workers' links to the old hub are dead, though QUIC cannot tell yet
                for worker in self.workers:
                    self._send(worker, {"reconnect": True})
        except (ClusterFailed, OSError) as exc:
            logger.warning("%s did not come back: %s", child.name, exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), RESTART_BACKOFF_SECONDS)  # a pause, cut short by a stop
            if not stop.is_set():
                self._exited.put_nowait(child)

    def children(self) -> list[Child]:
        return [*self.workers, *([self.hub] if self.hub is not None else [])]

    def stats(self) -> dict[str, Any]:
        """What `/stats` shows: each worker's pid, restarts and counts, the hub's, and the sessions in all."""
        return {
            "sessions": sum(w.stats.get("sessions", 0) for w in self.workers),
            "workers": [w.describe() for w in self.workers],
            "hub": self.hub.describe() if self.hub is not None else None,
        }

    def renew_certificate(self) -> bool:
        """Renew a development certificate near expiry and hand the new one to every child; True if it did."""
        if not self.dev_certificate or not self.certificate.needs_renewal():
            return False
        state = Path(self.config.state_dir)
        self.certificate = load_or_create_dev_certificate(state / "dev-cert.pem", state / "dev-key.pem")
        for child in self.children():
            self._send(child, certificate_message(self.certificate))
        logger.info("renewed the development certificate: sha-256 %s", self.certificate.fingerprint_hex)
        return True

    def _send(self, child: Child, message: dict[str, Any]) -> None:
        """A line down a running child's control pipe (dropped if the child is gone)."""
        process = child.process
        if child.running and process is not None and process.stdin is not None:
            with contextlib.suppress(ConnectionError):
                process.stdin.write(json.dumps(message).encode() + b"\n")

    async def keep_certificate_fresh(self) -> None:
        while True:
            await asyncio.sleep(CERTIFICATE_CHECK_SECONDS)
            self.renew_certificate()

    # -- stopping -----------------------------------------------------------------------------------------------

    async def stop(self) -> None:
        """SIGTERM the workers (each sends GOAWAY and waits its grace), then the hub; kill what outlives that."""
        self.stopping = True
        await self._stop(self.workers)
        await self._stop([self.hub] if self.hub is not None else [])

    async def _stop(self, children: list[Child]) -> None:
        processes = [c.process for c in children if c.process is not None]
        for process in processes:
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(signal.SIGTERM)
        waits = [asyncio.ensure_future(p.wait()) for p in processes]
        if waits:
            await asyncio.wait(waits, timeout=self.config.goaway_grace + CHILD_EXIT_MARGIN_SECONDS)
        for process in processes:
            if process.returncode is None:
                logger.warning("pid %d did not stop in time: killing it", process.pid)
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
            if process.stdin is not None:
                process.stdin.close()
        for child in children:
            if child.reader is not None:
                with contextlib.suppress(Exception):
                    await child.reader


def cluster_web(cluster: Cluster) -> WebServer:
    """The web pages, served by the supervisor: the WebTransport URL names the public port every worker shares."""
    config = cluster.config
    context: ssl.SSLContext | None = None
    if config.cert:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(config.cert, config.key)
    assert cluster.port is not None
    return WebServer(
        relay_port=cluster.port,
        relay_host=config.bind,
        fingerprint=lambda: cluster.certificate.fingerprint_hex if cluster.dev_certificate else None,
        drafts=config.versions,
        ssl_context=context,
        stats=cluster.stats,
    )


async def run_cluster(config: RelayConfig, announce: bool = True) -> None:
    """Run `config.workers` relay workers and their hub until SIGINT / SIGTERM (see the module docstring)."""
    certificate, dev = certificate_for(config)
    cluster = Cluster(config, certificate, dev)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    web: WebServer | None = None
    renewer: asyncio.Future[None] | None = None
    try:
        starting = asyncio.ensure_future(cluster.start())
        stopped = asyncio.ensure_future(stop.wait())
        await asyncio.wait({starting, stopped}, return_when=asyncio.FIRST_COMPLETED)
        if not starting.done():  # stopped while starting
            starting.cancel()
            with contextlib.suppress(asyncio.CancelledError, ClusterFailed):
                await starting
            return
        stopped.cancel()
        starting.result()
        web = cluster_web(cluster)
        await web.start(config.bind, config.web_port)
        if announce:
            logger.info(
                "relay listening on UDP port %d (raw QUIC and WebTransport), %d workers sharing it",
                cluster.port,
                config.workers,
            )
            logger.info("  hub on 127.0.0.1 UDP port %s (private)", cluster.hub.port if cluster.hub else None)
            kind = "development certificate" if dev else "certificate"
            logger.info("%s sha-256 fingerprint: %s", kind, cluster.certificate.fingerprint_hex)
            describe_web(web, config.bind)
        renewer = asyncio.ensure_future(cluster.keep_certificate_fresh())
        await cluster.supervise(stop)
        logger.info("shutting down: stopping %d workers and the hub", len(cluster.workers))
    finally:
        if renewer is not None:
            renewer.cancel()
        if web is not None:
            await web.close()
        await cluster.stop()
