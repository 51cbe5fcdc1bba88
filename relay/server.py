"""Running a relay node: certificate, one UDP port for raw QUIC and WebTransport, clean shutdown; with
`workers` >= 2, a supervisor and its worker processes instead (relay.cluster)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import os
import signal
from dataclasses import dataclass
from pathlib import Path

from moq.api import serve
from moq.transport.server import MoqtServer
from moq.transport.tls import CertificateBundle, load_certificate, load_or_create_dev_certificate
from moq.wire.version import Version
from relay.config import GOAWAY_GRACE_SECONDS, RelayConfig
from relay.relay import Relay
from relay.web import describe_web, start_web

logger = logging.getLogger(__name__)

#: How often a running relay checks whether its development certificate needs renewing (it is valid 10 days and
#: renewed with 2 days left, so hourly checks leave ample margin).
CERTIFICATE_CHECK_SECONDS = 3600.0


@dataclass
class RunningRelay:
    """A relay that is up: its routing state, its server, and the certificate it presents."""

    relay: Relay
    server: MoqtServer
    certificate: CertificateBundle
    dev_certificate: bool
    config: RelayConfig

    @property
    def port(self) -> int:
        return self.server.port

    def urls(self, host: str = "localhost") -> list[str]:
        return [f"moqt://{host}:{self.port}/", f"https://{host}:{self.port}/"]

    def renew_certificate(self, now: datetime.datetime | None = None) -> bool:
        """Swap in a new development certificate when the current one is near expiry; True if it did.

        A browser pins the fingerprint, so pages must read it afresh (the web pages fetch it per load)."""
        if not self.dev_certificate or not self.certificate.needs_renewal(now):
            return False
        state = Path(self.config.state_dir)
        self.certificate = load_or_create_dev_certificate(state / "dev-cert.pem", state / "dev-key.pem", now=now)
        self.server.replace_certificate(self.certificate)
        logger.info("renewed the development certificate: sha-256 %s", self.certificate.fingerprint_hex)
        return True

    async def keep_certificate_fresh(self) -> None:
        """Check every CERTIFICATE_CHECK_SECONDS and renew when needed (runs for the relay's lifetime)."""
        while True:
            await asyncio.sleep(CERTIFICATE_CHECK_SECONDS)
            self.renew_certificate()

    async def stop(self) -> None:
        """GOAWAY every session, give them a moment, then close everything."""
        await self.relay.close()
        self.server.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.server.wait_closed(), GOAWAY_GRACE_SECONDS)


def certificate_for(config: RelayConfig) -> tuple[CertificateBundle, bool]:
    """The configured certificate, or a development one kept (and renewed near expiry) in the state directory."""
    if config.cert:
        return load_certificate(config.cert, config.key), False
    state = Path(config.state_dir)
    state.mkdir(parents=True, exist_ok=True)
    return load_or_create_dev_certificate(state / "dev-cert.pem", state / "dev-key.pem"), True


async def start_relay(
    config: RelayConfig,
    *,
    certificate: tuple[CertificateBundle, bool] | None = None,
    cluster_hub: bool = False,
    implementation: str | None = None,
    reuse_port: bool = False,
) -> RunningRelay:
    """Start one relay process's relay with `config`; returns once it listens.

    For a cluster's children (relay.child): `certificate` (the bundle, and whether it is a development one) instead
    of the configured or development one; `cluster_hub` and `implementation` as for `Relay`; `reuse_port` binds the
    port with SO_REUSEPORT, shared with the other workers."""
    bundle, dev = certificate if certificate is not None else certificate_for(config)
    relay = Relay(config, cluster_hub=cluster_hub, implementation=implementation)
    server = await serve(
        relay.handle_session,
        host=config.bind,
        port=config.port,
        certificate=bundle,
        versions=tuple(Version(v) for v in config.versions),
        prepare=relay.prepare,
        max_datagram_size=config.max_datagram_size,
        path_mtu_discovery=config.path_mtu_discovery,
        reuse_port=reuse_port,
    )
    relay.start()
    return RunningRelay(relay, server, bundle, dev, config)


def single_process_stats(running: RunningRelay) -> dict[str, object]:
    """`/stats` of a relay that is one process: the same shape as a cluster's (relay.cluster), one worker."""
    counts = running.relay.stats()
    worker = {"index": 0, "pid": os.getpid(), "up": True, "restarts": 0, "port": running.port, **counts}
    return {"sessions": counts["sessions"], "workers": [worker], "hub": None}


async def run_relay(config: RelayConfig, announce: bool = True) -> None:
    """Run a relay until SIGINT / SIGTERM, then shut it down cleanly (GOAWAY, then close). With `config.workers`
    >= 2 it runs as a supervisor of that many worker processes (relay.cluster)."""
    if config.workers > 1:
        from relay.cluster import run_cluster

        await run_cluster(config, announce)
        return
    running = await start_relay(config)
    try:
        web = await start_web(running, config, stats=lambda: single_process_stats(running))
    except OSError:  # e.g. the web port is taken: do not leave the relay half up
        await running.stop()
        raise
    if announce:
        describe(running)
        describe_web(web, config.bind)
    renewer = asyncio.ensure_future(running.keep_certificate_fresh())
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    renewer.cancel()
    logger.info("shutting down: GOAWAY to %d sessions", len(running.relay.sessions))
    await web.close()
    await running.stop()


def describe(running: RunningRelay) -> None:
    """Log what a person needs to use the relay: where it listens and how to trust its certificate."""
    logger.info("relay listening on UDP port %d (raw QUIC and WebTransport)", running.port)
    for url in running.urls():
        logger.info("  %s", url)
    kind = "development certificate" if running.dev_certificate else "certificate"
    logger.info("%s sha-256 fingerprint: %s", kind, running.certificate.fingerprint_hex)
