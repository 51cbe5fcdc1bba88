"""The `moq` command: a click group; each subcommand is a thin shell over a library function."""

from __future__ import annotations

import asyncio
import logging
import sys

import click

from moq import __version__
from moq.wire.version import SUPPORTED_VERSIONS


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="moq")
def main() -> None:
    """Media over QUIC: relay, publish, subscribe and interop tools."""


@main.command()
def drafts() -> None:
    """List the MOQT drafts this build speaks, best first, with their ALPN tokens."""
    for version in SUPPORTED_VERSIONS:
        click.echo(f"draft-{version.value}\t{version.alpn}")


def setup_logging(level: str) -> None:
    """One line per event, on stderr, at the level the user picked."""
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # aioquic logs every packet-level detail at INFO; keep it out of a relay operator's way.
    logging.getLogger("quic").setLevel(max(logging.WARNING, logging.getLogger().level))


@main.command()
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False), help="relay.toml")
@click.option("--bind", help="Address to listen on (default :: = dual stack).")
@click.option("--port", type=int, help="UDP port for raw QUIC and WebTransport (default 4443).")
@click.option("--cert", type=click.Path(exists=True, dir_okay=False), help="Certificate chain (PEM).")
@click.option("--key", type=click.Path(exists=True, dir_okay=False), help="Private key (PEM).")
@click.option("--state-dir", help="Where the development certificate is kept (default .moq-relay).")
@click.option("--upstream", multiple=True, help="Upstream relay URL for namespaces no local publisher has.")
@click.option("--upstream-fingerprint", help="Pin the upstream relay's certificate (sha-256 hex).")
@click.option("--upstream-insecure", is_flag=True, default=None, help="Do not verify the upstream's certificate.")
@click.option("--cache-groups", type=int, help="Groups kept cached per track.")
@click.option("--cache-bytes", type=int, help="Payload bytes kept cached per track.")
@click.option("--rendezvous-timeout", type=float, help="Seconds a SUBSCRIBE waits for a publisher by default.")
@click.option("--web-port", type=int, help="TCP port of the browser pages (default 8080; HTTPS with --cert).")
@click.option("--max-datagram-size", type=click.IntRange(1200, 65527), help="QUIC packet size (default 1200).")
@click.option(
    "--pmtu-discovery/--no-pmtu-discovery",
    "path_mtu_discovery",
    default=None,
    help="Probe each path and send 1452-byte packets where it takes them (default on).",
)
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), help="Default info.")
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    help="Relay processes sharing the port, one per core (default 1; at most 64).",
)
@click.option(
    "--announce-upstream/--no-announce-upstream",
    default=None,
    help="Forward namespaces published here to the --upstream relay and take its namespaces (an edge).",
)
def relay(config_path: str | None, **flags: object) -> None:
    """Run a relay: routes, caches and fans out MoQ tracks (raw QUIC and WebTransport on one UDP port)."""
    from relay.config import load_config
    from relay.server import run_relay

    try:
        config = load_config(config_path, **flags)
    except Exception as exc:  # a bad file or flag: one clear line
        raise click.ClickException(f"bad relay configuration: {exc}") from exc
    setup_logging(config.log_level)
    try:
        asyncio.run(run_relay(config))
    except OSError as exc:
        raise click.ClickException(f"cannot start the relay: {exc}") from exc


from cli import demo as _demo  # noqa: E402, F401  (registers `moq demo`)
from cli import interop as _interop  # noqa: E402, F401  (registers `moq interop`)
from cli import publish as _publish  # noqa: E402, F401  (registers `moq publish`)
from cli import subscribe as _subscribe  # noqa: E402, F401  (registers `moq subscribe`)
