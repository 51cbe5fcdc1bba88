"""A child of `moq relay --workers N` (the hub or one worker): `python -m relay.child ROLE INDEX PARENT_PID`.

Internal: only the supervisor (relay.cluster) starts it. Its stdin carries, one JSON object per line, first
{"role", "index", "workers", "config", "certificate", "key", "fingerprint"}; later {"certificate", "key",
"fingerprint"} when the supervisor renews the certificate, {"forget": PATH} (to the hub: drop the link of the worker
that connected with PATH, it died) and {"reconnect": true} (to a worker: the hub was restarted). Its stdout carries
{"ready": true, "port": P} once it listens, then {"stats": {...}} when its counts change (at most every
STATS_INTERVAL_SECONDS). Its log goes to stderr, each line naming the child. It stops, with the relay's GOAWAY and
grace, on SIGTERM or SIGINT, when its stdin closes, or (Linux) when its parent dies.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import logging
import os
import signal
import sys
from typing import Any

import msgspec
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

from moq.api.session import IMPLEMENTATION
from moq.transport.tls import CertificateBundle
from relay.cluster import MAX_CONTROL_LINE_BYTES, STATS_INTERVAL_SECONDS
from relay.config import RelayConfig
from relay.server import RunningRelay, start_relay

logger = logging.getLogger("relay.child")  # not "__main__": it runs as `python -m relay.child`

#: prctl(2) option: the signal the kernel sends us when our parent dies.
PR_SET_PDEATHSIG = 1


def die_with_parent(parent: int) -> None:
    """Ask the kernel for SIGTERM when the supervisor dies (Linux); exit now if it already has. Elsewhere the
    closing stdin pipe does the same, a little later."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != parent:
        sys.exit(1)


def certificate_from_pem(chain_pem: str, key_pem: str) -> CertificateBundle:
    """The certificate the supervisor sent: leaf first, then its chain, and its key."""
    certificates = x509.load_pem_x509_certificates(chain_pem.encode())
    key = serialization.load_pem_private_key(key_pem.encode(), password=None)
    if not isinstance(
        key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey
    ):
        raise ValueError(f"unsupported private key type {type(key).__name__}")
    return CertificateBundle(certificate=certificates[0], private_key=key, chain=tuple(certificates[1:]))


class Reporter:
    """Writes lines to the supervisor on stdout without ever blocking the loop: a line that does not fit in the
    pipe right now is dropped (counts are sent again when they next change; the supervisor keeps reading)."""

    def __init__(self) -> None:
        self.fd = sys.stdout.fileno()
        os.set_blocking(self.fd, False)

    def send(self, message: dict[str, Any]) -> None:
        data = json.dumps(message).encode() + b"\n"
        with contextlib.suppress(BlockingIOError, BrokenPipeError):
            os.write(self.fd, data)


async def report_stats(running: RunningRelay, reporter: Reporter) -> None:
    last: dict[str, int] | None = None
    while True:
        stats = running.relay.stats()
        if stats != last:
            reporter.send({"stats": stats})
            last = stats
        await asyncio.sleep(STATS_INTERVAL_SECONDS)


async def follow_supervisor(
    reader: asyncio.StreamReader, running: RunningRelay, stop: asyncio.Event, worker: bool
) -> None:
    """Apply renewed certificates; stop when the pipe closes (the supervisor is gone)."""
    with contextlib.suppress(ConnectionError, ValueError, asyncio.LimitOverrunError):
        async for line in reader:
            message = json.loads(line)
            if isinstance(message, dict) and "certificate" in message:
                certificate = certificate_from_pem(message["certificate"], message["key"])
                running.certificate = certificate
                running.server.replace_certificate(certificate)
                if worker:  # the hub presents the renewed certificate too: the next link to it pins that one
                    relay = running.relay
                    relay.config = msgspec.structs.replace(relay.config, upstream_fingerprint=message["fingerprint"])
                logger.info("took the renewed certificate: sha-256 %s", certificate.fingerprint_hex)
            elif isinstance(message, dict) and isinstance(message.get("forget"), str):
                running.relay.forget_peer(message["forget"])
            elif isinstance(message, dict) and message.get("reconnect"):
                running.relay.reconnect_upstream()
    stop.set()


def setup_logging(level: str, name: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format=f"%(asctime)s %(levelname)-7s [{name}] %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("quic").setLevel(max(logging.WARNING, logging.getLogger().level))


async def run_child() -> int:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=MAX_CONTROL_LINE_BYTES)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    init = json.loads(await reader.readline() or b"null")
    if not isinstance(init, dict):
        return 1  # the supervisor went away before telling us anything
    role, index, workers = str(init["role"]), int(init["index"]), int(init["workers"])
    config = msgspec.convert(init["config"], RelayConfig)
    name = "hub" if role == "hub" else f"worker {index}"
    setup_logging(config.log_level, name)
    certificate = certificate_from_pem(init["certificate"], init["key"])
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        running = await start_relay(
            config,
            certificate=(certificate, False),
            cluster_hub=role == "hub",
            reuse_port=role == "worker",
            implementation=f"{IMPLEMENTATION} relay {name} of {workers}" if role == "worker" else None,
        )
    except OSError as exc:
        logger.error("cannot start: %s", exc)
        return 1
    reporter = Reporter()
    reporter.send({"ready": True, "port": running.port})
    logger.info("%s listening on UDP port %d", name, running.port)
    tasks = [
        asyncio.ensure_future(report_stats(running, reporter)),
        asyncio.ensure_future(follow_supervisor(reader, running, stop, role == "worker")),
    ]
    await stop.wait()
    logger.info("shutting down: GOAWAY to %d sessions", len(running.relay.sessions))
    for task in tasks:
        task.cancel()
    await running.stop()
    return 0


def main() -> None:
    if len(sys.argv) != 4:
        sys.exit("usage: python -m relay.child ROLE INDEX PARENT_PID (started by `moq relay --workers N`)")
    die_with_parent(int(sys.argv[3]))
    sys.exit(asyncio.run(run_child()))


if __name__ == "__main__":
    main()
