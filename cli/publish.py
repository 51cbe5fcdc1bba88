"""`moq publish`: read or generate media, encode it, and publish it to a relay as LOC tracks with an MSF catalog.

The command parses its options into a `PublishConfig` and runs `cli.media_publish.run_publish`; see that module
for how frames become groups and objects.
"""

from __future__ import annotations

import asyncio

import click
import msgspec

from cli.main import main, setup_logging
from cli.media_options import BITRATE, RESOLUTION, quiet_transport_logs, report_options, tls_options
from cli.media_stage import MAX_STAGE_PARTICIPANTS, parse_stage_allow


class PublishConfig(msgspec.Struct, frozen=True, kw_only=True):
    """Everything `moq publish` was asked to do."""

    url: str
    name: str
    #: "pattern", "-" (MPEG-TS on stdin), "/dev/videoN", or a file or URL FFmpeg reads.
    input: str = "pattern"
    loop: bool = False
    copy: bool = False
    video: bool = True
    audio: bool = True
    bitrate: int | None = None
    audio_bitrate: int | None = None
    resolution: tuple[int, int] | None = None
    framerate: float | None = None
    gop: int | None = None
    duration: float | None = None
    fingerprint: str | None = None
    verify: bool = True
    timeout: float = 10.0
    wait_subscriber: bool = False
    catalog_interval: float = 5.0
    #: Audio frames per group, each group a stream (LOC-04's example: one; moq.media.groups).
    audio_frames_per_group: int = 1
    stats_json: str | None = None
    stats_interval: float = 1.0
    quiet: bool = False
    #: Bring viewers publishing under NAME/stage/<name> on stage (`cli.media_stage`).
    stage: bool = False
    stage_max: int = MAX_STAGE_PARTICIPANTS
    #: Only these names come on stage (None: anyone).
    stage_allow: frozenset[str] | None = None


def _stage_allow(ctx: click.Context, param: click.Parameter, value: str | None) -> frozenset[str] | None:
    if value is None:
        return None
    try:
        return parse_stage_allow(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@main.command()
@click.argument("url")
@click.option(
    "--name", "-n", required=True, metavar="NAMESPACE", help="Namespace to publish, '/'-separated: live/demo."
)
@click.option(
    "--input",
    "-i",
    "input_",
    default="pattern",
    show_default=True,
    metavar="INPUT",
    help="A file or URL FFmpeg reads (MP4, MKV, MPEG-TS...), a camera (/dev/video0), '-' for MPEG-TS on standard "
    "input, or 'pattern': a test pattern with a running clock and a tone.",
)
@click.option("--loop", is_flag=True, help="Start a file again at its end.")
@click.option("--copy", is_flag=True, help="Pass H.264/AAC/Opus through without re-encoding.")
@click.option("--bitrate", "-b", type=BITRATE, help="Video bitrate, e.g. 2M or 800k (default 2M).")
@click.option("--audio-bitrate", type=BITRATE, help="Opus bitrate (default 64k).")
@click.option("--resolution", "-s", type=RESOLUTION, help="Video size, WxH or 720p (default: the input's; 1280x720).")
@click.option(
    "--framerate", "-r", type=click.FloatRange(min=1, max=240), help="Frames per second (default: the input's; 30)."
)
@click.option(
    "--gop", type=click.IntRange(min=1), help="Frames per GOP = per MOQT group (default: one second's worth)."
)
@click.option("--no-audio", is_flag=True, help="Publish video only.")
@click.option("--no-video", is_flag=True, help="Publish audio only.")
@click.option(
    "--duration", "-t", type=click.FloatRange(min=0, min_open=True), help="Stop after this many seconds of media."
)
@tls_options
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=10.0,
    show_default=True,
    help="Seconds to wait for the relay.",
)
@click.option(
    "--wait-subscriber",
    is_flag=True,
    help="Start the input only once every media track has a subscriber, so that it gets the very first frame.",
)
@click.option(
    "--catalog-interval",
    type=click.FloatRange(min=0),
    default=5.0,
    show_default=True,
    help="Seconds between catalog groups (0: only when it changes).",
)
@click.option(
    "--audio-frames-per-group",
    type=click.IntRange(1, 50),
    default=1,
    show_default=True,
    help="Audio frames to a group, one stream each: more means fewer streams for the relay and every viewer (a "
    "browser pays for each), and bigger pieces of audio dropped when one is late.",
)
@click.option(
    "--stats-json", metavar="FILE", help="Write the final figures (frames, objects, groups per track) as JSON."
)
@click.option(
    "--stage",
    is_flag=True,
    help="Bring viewers on stage: whoever publishes under NAMESPACE/stage/<name> (the watch page's 'Join the "
    "stage') gets their video and audio listed in our catalog, with their namespace, for every viewer to play.",
)
@click.option(
    "--stage-max",
    type=click.IntRange(1, MAX_STAGE_PARTICIPANTS),
    help=f"Participants on stage at once (default {MAX_STAGE_PARTICIPANTS}); later ones wait in line. Implies --stage.",
)
@click.option(
    "--stage-allow",
    metavar="NAMES",
    callback=_stage_allow,
    help="Only these names (comma-separated: alice,bob) come on stage. Implies --stage.",
)
@report_options
def publish(
    url: str,
    name: str,
    input_: str,
    loop: bool,
    copy: bool,
    bitrate: int | None,
    audio_bitrate: int | None,
    resolution: tuple[int, int] | None,
    framerate: float | None,
    gop: int | None,
    no_audio: bool,
    no_video: bool,
    duration: float | None,
    tls_disable_verify: bool,
    fingerprint: str | None,
    timeout: float,
    wait_subscriber: bool,
    catalog_interval: float,
    audio_frames_per_group: int,
    stats_json: str | None,
    stage: bool,
    stage_max: int | None,
    stage_allow: frozenset[str] | None,
    stats_interval: float,
    quiet: bool,
    log_level: str,
) -> None:
    """Publish live media to the relay at URL (moqt://host:port/ or https://host:port/ for WebTransport).

    Tracks in the namespace: "video" (H.264, one group per GOP, one object per frame, LOC), "audio" (Opus, or AAC
    with --copy; one frame per group, or --audio-frames-per-group) and "catalog" (MSF; object 0 of each group is
    the full catalog, a new group every --catalog-interval seconds and whenever a track changes). With --stage, the
    catalog also lists the video and audio of the viewers brought on stage, each entry with the viewer's namespace
    (NAMESPACE/stage/<name>).
    """
    from cli.media_glue import CliError
    from cli.media_publish import run_publish

    if no_audio and no_video:
        raise click.UsageError("--no-audio and --no-video leave nothing to publish")
    setup_logging(log_level)
    quiet_transport_logs(log_level)
    config = PublishConfig(
        url=url,
        name=name,
        input=input_,
        loop=loop,
        copy=copy,
        video=not no_video,
        audio=not no_audio,
        bitrate=bitrate,
        audio_bitrate=audio_bitrate,
        resolution=resolution,
        framerate=framerate,
        gop=gop,
        duration=duration,
        fingerprint=fingerprint,
        verify=not tls_disable_verify,
        timeout=timeout,
        wait_subscriber=wait_subscriber,
        catalog_interval=catalog_interval,
        audio_frames_per_group=audio_frames_per_group,
        stats_json=stats_json,
        stats_interval=stats_interval,
        quiet=quiet,
        stage=stage or stage_allow is not None or stage_max is not None,
        stage_max=stage_max or MAX_STAGE_PARTICIPANTS,
        stage_allow=stage_allow,
    )
    try:
        asyncio.run(run_publish(config))
    except CliError as exc:
        raise click.ClickException(str(exc)) from None
