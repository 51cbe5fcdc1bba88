"""`moq subscribe`: read a broadcast's catalog, subscribe to its tracks, decode, record or pipe them, and report.

The command parses its options into a `SubscribeConfig` and runs `cli.media_subscribe.run_subscribe` (or `run_room`).
"""

from __future__ import annotations

import asyncio

import click
import msgspec

from cli.main import main, setup_logging
from cli.media_options import quiet_transport_logs, report_options, tls_options


class SubscribeConfig(msgspec.Struct, frozen=True, kw_only=True):
    """Everything `moq subscribe` was asked to do."""

    url: str
    #: The broadcast's namespace ("" with `room`).
    name: str = ""
    #: A room: record every broadcast published under this namespace prefix (`output` is then a directory).
    room: str | None = None
    #: Track names to subscribe to; empty: every audio and video track of the catalog.
    tracks: tuple[str, ...] = ()
    decode: bool = False
    #: A file (.mp4, .mkv, .ts) or "-" for MPEG-TS on standard output.
    output: str | None = None
    verify_pattern: bool = False
    duration: float | None = None
    #: Seconds the relay may hold our SUBSCRIBE waiting for a publisher (rendezvous); 0: fail at once.
    wait: float = 0.0
    fingerprint: str | None = None
    verify: bool = True
    timeout: float = 10.0
    stats_json: str | None = None
    stats_interval: float = 1.0
    quiet: bool = False


@main.command()
@click.argument("url")
@click.option("--name", "-n", metavar="NAMESPACE", help="Namespace to subscribe to: live/demo.")
@click.option(
    "--room",
    metavar="ROOM",
    help="Instead of --name: join the call ROOM (SUBSCRIBE_NAMESPACE) and subscribe to every participant's "
    "broadcast ROOM/<participant> as it is announced, until it leaves; --output is then a directory that gets "
    "<participant>.mkv each.",
)
@click.option("--track", "tracks", multiple=True, metavar="NAME", help="Only this track (repeat for more).")
@click.option("--decode", is_flag=True, help="Decode every frame (PyAV) and count what decodes.")
@click.option(
    "--output",
    "-o",
    metavar="FILE",
    help="Record to FILE (.mp4, .mkv or .ts, no re-encoding), or '-' for MPEG-TS on standard output; with --room, "
    "a directory.",
)
@click.option(
    "--verify-pattern",
    is_flag=True,
    help="With --decode: read the test pattern's frame-number stamp from each picture (order, gaps, "
    "glass-to-glass latency).",
)
@click.option("--duration", "-t", type=click.FloatRange(min=0, min_open=True), help="Stop after this many seconds.")
@click.option(
    "--wait",
    type=click.FloatRange(min=0),
    default=0.0,
    help="Let the relay hold the subscription up to this many seconds until someone publishes the namespace.",
)
@tls_options
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=10.0,
    show_default=True,
    help="Seconds to wait for the relay, and then for the catalog.",
)
@click.option("--stats-json", metavar="FILE", help="Write the final figures (per track, latency percentiles) as JSON.")
@report_options
def subscribe(
    url: str,
    name: str | None,
    room: str | None,
    tracks: tuple[str, ...],
    decode: bool,
    output: str | None,
    verify_pattern: bool,
    duration: float | None,
    wait: float,
    tls_disable_verify: bool,
    fingerprint: str | None,
    timeout: float,
    stats_json: str | None,
    stats_interval: float,
    quiet: bool,
    log_level: str,
) -> None:
    """Subscribe to the broadcast NAMESPACE at the relay URL (--name), or to everyone in a call (--room).

    Reads the MSF "catalog" track first (object 0 of its latest group is the full catalog), then subscribes to its
    audio and video tracks. Live statistics go to stderr once a second: frames/s, kbit/s, end-to-end latency
    (now - the LOC capture TIMESTAMP) and groups dropped. Ends by itself when the publisher ends every track, or
    after --duration.

    With --room, each participant's broadcast (ROOM/<participant>) is read the same way from its announcement
    to its NAMESPACE_DONE, recorded to DIR/<participant>.mkv with --output DIR; the command runs until
    --duration passes or Ctrl-C, and --stats-json has the figures per participant.
    """
    from cli.media_glue import CliError
    from cli.media_subscribe import run_room, run_subscribe

    if (name is None) == (room is None):
        raise click.UsageError("give either --name NAMESPACE or --room ROOM")

    if verify_pattern:
        decode = True
    setup_logging(log_level)
    quiet_transport_logs(log_level)
    config = SubscribeConfig(
        url=url,
        name=name or "",
        room=room,
        tracks=tracks,
        decode=decode,
        output=output,
        verify_pattern=verify_pattern,
        duration=duration,
        wait=wait,
        fingerprint=fingerprint,
        verify=not tls_disable_verify,
        timeout=timeout,
        stats_json=stats_json,
        stats_interval=stats_interval,
        quiet=quiet,
    )
    try:
        asyncio.run(run_room(config) if room is not None else run_subscribe(config))
    except CliError as exc:
        raise click.ClickException(str(exc)) from None
