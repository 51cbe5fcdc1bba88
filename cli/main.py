"""The `moq` command: a click group; each subcommand is a thin shell over a library function."""

from __future__ import annotations

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
