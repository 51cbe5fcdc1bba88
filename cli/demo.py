"""`moq demo`: a relay with its web pages and a test-pattern broadcast in one process (what `make run` starts)."""

from __future__ import annotations

import asyncio
import logging

import click

from cli.main import main, setup_logging


@main.command()
@click.option("--bind", default="::", show_default=True, help="Address to listen on (:: = dual stack).")
@click.option("--port", default=4443, show_default=True, help="UDP port for raw QUIC and WebTransport.")
@click.option("--web-port", default=8080, show_default=True, help="TCP port of the browser pages.")
@click.option("--name", default="live/demo", show_default=True, help="Namespace of the demo broadcast.")
@click.option("--state-dir", default=".moq-relay", show_default=True, help="Where the dev certificate is kept.")
@click.option("--log-level", default="info", type=click.Choice(["debug", "info", "warning", "error"]))
def demo(bind: str, port: int, web_port: int, name: str, state_dir: str, log_level: str) -> None:
    """Run a relay with a demo broadcast (test pattern with a clock and a tone) and print the URL to watch it."""
    setup_logging(log_level)
    try:
        asyncio.run(run_demo(bind, port, web_port, name, state_dir))
    except OSError as exc:
        raise click.ClickException(f"cannot start the demo: {exc}") from exc


async def run_demo(bind: str, port: int, web_port: int, name: str, state_dir: str) -> None:
    from cli.media_glue import CliError
    from cli.media_publish import run_publish
    from cli.publish import PublishConfig
    from relay.config import RelayConfig
    from relay.server import describe, start_relay
    from relay.web import describe_web, start_web, watch_path

    config = RelayConfig(bind=bind, port=port, web_port=web_port, state_dir=state_dir)
    running = await start_relay(config)
    web = await start_web(running, config)
    try:
        describe(running)
        describe_web(web, bind)
        ns = tuple(part.encode() for part in name.split("/") if part)
        click.echo(f"\nWatch the demo broadcast: {web.url('localhost', watch_path(ns))}\n", err=True)
        publish = PublishConfig(
            url=f"moqt://127.0.0.1:{running.port}/",
            name=name,
            fingerprint=running.certificate.fingerprint_hex,
            quiet=True,
            # Five 20 ms audio frames to a stream: browsers watching pay for every stream (the call page does too).
            audio_frames_per_group=5,
        )
        try:
            await run_publish(publish)  # until Ctrl-C / SIGTERM
        except CliError as exc:
            logging.getLogger(__name__).error("the demo publisher stopped: %s", exc)
    finally:
        await web.close()
        await running.stop()
