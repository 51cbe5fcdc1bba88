"""`moq interop`: our interop-runner test client, and `moq interop matrix` against other implementations.

`moq interop -r URL [-t TEST] [-l] [-v] [--tls-disable-verify] [--draft N[,M...]]` follows the runner's
TEST-CLIENT-INTERFACE: the environment (RELAY_URL, TESTCASE, VERBOSE, TLS_DISABLE_VERIFY; MOQT_DRAFT for the
draft) fills what the command line leaves out, TAP version 14 goes to stdout, and the exit code is 0 (all passed),
1 (a case failed) or 127 (a case this client does not have).
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import click

from cli.main import main, setup_logging
from interop.cases import CASES
from interop.client import EXIT_UNSUPPORTED, parse_drafts, run_client
from interop.matrix import AIOMOQT, OURS, TRANSPORTS, Cell, run_matrix


def _drafts(value: str | None) -> tuple[int, ...] | None:
    if not value:
        return None
    try:
        return tuple(v.value for v in parse_drafts(value))
    except ValueError:  # the matrix may ask for drafts only the peers speak (16, 14)
        return tuple(int(p.strip().removeprefix("draft-")) for p in value.split(",") if p.strip())


@main.group(invoke_without_command=True)
@click.option("-r", "--relay", "url", envvar="RELAY_URL", default="https://localhost:4443", show_default=True,
              help="Relay URL: https:// for WebTransport, moqt:// for raw QUIC.")  # fmt: skip
@click.option("-t", "--test", "tests", multiple=True, envvar="TESTCASE", help="Run only this case (repeat, or a,b).")
@click.option("-l", "--list", "list_only", is_flag=True, help="List the cases, one per line.")
@click.option("-v", "--verbose", is_flag=True, envvar="VERBOSE", help="Say what each case does; log to stderr.")
@click.option("--tls-disable-verify", is_flag=True, envvar="TLS_DISABLE_VERIFY", help="Do not verify the relay.")
@click.option("--draft", "drafts", envvar="MOQT_DRAFT", help="Drafts to offer, best first (e.g. 22 or 22,18).")
@click.pass_context
def interop(
    ctx: click.Context,
    url: str,
    tests: tuple[str, ...],
    list_only: bool,
    verbose: bool,
    tls_disable_verify: bool,
    drafts: str | None,
) -> None:
    """Interop-runner test client: run the test cases against a relay and print TAP."""
    if ctx.invoked_subcommand is not None:
        return
    if list_only:
        for name in CASES:
            click.echo(name)
        return
    try:
        versions = parse_drafts(drafts)
    except ValueError as exc:
        click.echo(f"# {exc}", err=True)
        ctx.exit(EXIT_UNSUPPORTED)
    setup_logging("info" if verbose else "warning")
    code = asyncio.run(run_client(url, tests, versions=versions, verify=not tls_disable_verify, verbose=verbose))
    ctx.exit(code)


@interop.command()
@click.option("--out-dir", type=click.Path(file_okay=False, path_type=Path), default=Path("interop-results"),
              show_default=True, help="Where matrix.md, matrix.json and the logs go.")  # fmt: skip
@click.option("--client", "clients", default=f"{OURS},{AIOMOQT}", show_default=True, help="Clients to run.")
@click.option("--relay", "relays", default=f"{OURS},{AIOMOQT}", show_default=True, help="Relays to run.")
@click.option("--transport", "transports", default=",".join(TRANSPORTS), show_default=True)
@click.option("--draft", "drafts", help="Only these drafts (default: every draft each pair shares).")
@click.option("-t", "--test", "tests", multiple=True, help="Only these cases (by each client's names).")
@click.option("--jobs", type=int, default=3, show_default=True, help="Cells run at once.")
@click.option("--install/--no-install", default=True, show_default=True, help="Install missing peers (aiomoqt).")
def matrix(
    out_dir: Path,
    clients: str,
    relays: str,
    transports: str,
    drafts: str | None,
    tests: tuple[str, ...],
    jobs: int,
    install: bool,
) -> None:
    """Every client against every relay, both transports, every shared draft; prints the matrix and writes it as
    Markdown and JSON. Exits 1 when a failure is not explained by a known issue (interop/known.py)."""
    setup_logging("warning")
    names = {OURS, AIOMOQT}
    client_list = [c.strip() for c in clients.split(",") if c.strip()]
    relay_list = [r.strip() for r in relays.split(",") if r.strip()]
    transport_list = [t.strip() for t in transports.split(",") if t.strip()]
    for name in (*client_list, *relay_list):
        if name not in names:
            raise click.BadParameter(f"unknown implementation {name!r} (known: {', '.join(sorted(names))})")
    for kind in transport_list:
        if kind not in TRANSPORTS:
            raise click.BadParameter(f"unknown transport {kind!r}")

    def progress(cell: Cell) -> None:
        summary = f"{cell.count('pass')} pass, {cell.count('fail')} fail, {cell.count('skip')} skip"
        extra = f" ({cell.error})" if cell.error else ""
        click.echo(f"{cell.key:<34} {cell.status:<5} {summary}{extra}", err=True)

    result = asyncio.run(
        run_matrix(
            out_dir,
            clients=client_list,
            relays=relay_list,
            transports=transport_list,
            drafts=_drafts(drafts),
            tests=[n.strip() for t in tests for n in t.split(",") if n.strip()],
            jobs=jobs,
            install=install,
            progress=progress,
        )
    )
    click.echo((out_dir / "matrix.md").read_text())
    click.echo(f"written: {out_dir / 'matrix.md'}, {out_dir / 'matrix.json'}", err=True)
    sys.exit(1 if result.unexplained else 0)
