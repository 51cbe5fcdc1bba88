"""Our interop-runner test client: run cases against a relay URL and report them as TAP version 14.

`run_client()` is what `moq interop` calls; it runs the requested cases one after another (they share the
runner's namespaces, so they must not overlap), each under its own timeout, and returns the contract's exit code:
0 when every case passed (or was skipped), 1 when one failed, 127 when a requested case does not exist here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TextIO

from interop.cases import CASES, Case, CaseContext, CaseFailed, CaseSkipped, RunConfig, describe_rejection, scaled
from interop.tap import TapWriter, YamlValue
from moq import __version__
from moq.errors import RequestRejected
from moq.transport.errors import ConnectError
from moq.wire.version import SUPPORTED_VERSIONS, Version

logger = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_UNSUPPORTED = 127
#: How long closing a case's sessions may take once the case is over.
CLOSE_GRACE = 2.0


@dataclass
class CaseOutcome:
    """What one case came to: status "pass", "fail" or "skip", and its TAP diagnostics."""

    name: str
    status: str
    message: str = ""
    duration_ms: int = 0
    diagnostics: dict[str, YamlValue] = field(default_factory=dict)
    unreachable: bool = False  # the relay could not be reached at all

    @property
    def ok(self) -> bool:
        return self.status != "fail"


def parse_drafts(text: str | None) -> tuple[Version, ...]:
    """`22` or `22,18` (or `draft-22`) -> the versions to offer, in that order; None: every draft we speak."""
    if not text:
        return SUPPORTED_VERSIONS
    versions: list[Version] = []
    for part in text.split(","):
        part = part.strip().lower().removeprefix("draft-")
        if not part:
            continue
        try:
            version = Version(int(part))
        except ValueError:
            spoken = ", ".join(str(v.value) for v in SUPPORTED_VERSIONS)
            raise ValueError(f"draft {part!r} is not one we speak ({spoken})") from None
        if version not in versions:
            versions.append(version)
    if not versions:
        raise ValueError("no draft given")
    return tuple(versions)


def select_cases(requested: Sequence[str]) -> tuple[list[Case], list[str]]:
    """The cases to run (all when none requested, comma lists allowed) and the names we do not know."""
    wanted = [name.strip() for item in requested for name in item.split(",") if name.strip()]
    if not wanted:
        return list(CASES.values()), []
    unknown = [name for name in wanted if name not in CASES]
    return [CASES[name] for name in dict.fromkeys(wanted) if name in CASES], unknown


async def run_case(case: Case, config: RunConfig) -> CaseOutcome:
    """Run one case to an outcome; never raises (except cancellation)."""
    ctx = CaseContext(config, case)
    started = time.monotonic()
    status, message = "pass", ""
    fields: dict[str, YamlValue] = {}
    unreachable = False
    try:
        async with asyncio.timeout(scaled(case.timeout)):
            message = await case.run(ctx)
    except CaseSkipped as exc:
        status, message = "skip", str(exc)
    except CaseFailed as exc:
        status, message = "fail", exc.message
        fields.update(expected=exc.expected, received=exc.received)
    except TimeoutError:
        status = "fail"
        message = f"timeout after {scaled(case.timeout) * 1000:.0f} ms while {ctx.step}"
        fields.update(expected=case.expected, received="timeout")
        unreachable = not ctx.connected_any and ctx.step.endswith("connecting")
    except RequestRejected as exc:
        status, message = "fail", f"{ctx.step}: {describe_rejection(exc)}"
        fields.update(expected=case.expected, received=describe_rejection(exc))
    except (ConnectError, ConnectionError, OSError) as exc:
        status, message = "fail", f"{ctx.step}: {type(exc).__name__}: {exc}"
        fields.update(expected=case.expected, received=f"{type(exc).__name__}: {exc}")
        unreachable = not ctx.connected_any
    except Exception as exc:  # a bug of ours or a peer's surprise: report it, go on with the next case
        logger.exception("case %s crashed", case.name)
        status, message = "fail", f"{ctx.step}: unexpected {type(exc).__name__}: {exc}"
        fields.update(expected=case.expected, received=f"{type(exc).__name__}: {exc}")
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(ctx.close_all(), CLOSE_GRACE)
    duration = round((time.monotonic() - started) * 1000)
    diagnostics: dict[str, YamlValue] = {"duration_ms": duration}
    if ctx.version is not None:
        diagnostics["draft"] = ctx.version.value
    if len(case.roles) == 1 and len(ctx.connection_ids) == 1:
        diagnostics["connection_id"] = next(iter(ctx.connection_ids.values()))
    else:
        for role, cid in ctx.connection_ids.items():
            diagnostics[f"{role}_connection_id"] = cid
    if message:
        diagnostics["message"] = message
    diagnostics.update({k: v for k, v in fields.items() if v is not None})
    diagnostics.update(ctx.notes)
    return CaseOutcome(case.name, status, message, duration, diagnostics, unreachable)


async def run_cases(
    url: str,
    cases: Sequence[Case],
    *,
    versions: tuple[Version, ...] = SUPPORTED_VERSIONS,
    verify: bool = True,
    out: TextIO | None = None,
    verbose: bool = False,
) -> list[CaseOutcome]:
    """Run `cases` in order against `url`, writing TAP to `out` as they finish; returns their outcomes.

    When the relay cannot be reached at all, the run stops with `Bail out!` (the contract's fatal error)."""
    tap = TapWriter(out or sys.stdout)
    tap.version()
    tap.comment(f"moq-test-client moqt-toolkit {__version__}")
    tap.comment(f"Relay: {url}")
    tap.comment("Draft: " + ", ".join(f"draft-{v.value}" for v in versions))
    tap.plan(len(cases))
    config = RunConfig(url=url, versions=versions, verify=verify, run_id=secrets.token_hex(3))
    outcomes: list[CaseOutcome] = []
    for case in cases:
        if verbose:
            tap.comment(f"{case.name}: {case.summary}")
        outcome = await run_case(case, config)
        outcomes.append(outcome)
        skip = outcome.message if outcome.status == "skip" else None
        tap.result(case.name, outcome.ok, skip=skip, diagnostics=outcome.diagnostics)
        if outcome.unreachable:
            tap.bail_out(f"relay unreachable: {outcome.message}")
            break
    return outcomes


def exit_code(outcomes: Sequence[CaseOutcome], planned: int) -> int:
    if len(outcomes) < planned or any(o.status == "fail" for o in outcomes):
        return EXIT_FAILED
    return EXIT_OK


async def run_client(
    url: str,
    tests: Sequence[str] = (),
    *,
    versions: tuple[Version, ...] = SUPPORTED_VERSIONS,
    verify: bool = True,
    verbose: bool = False,
    out: TextIO | None = None,
) -> int:
    """The whole client: select cases, run them, print TAP; returns the contract's exit code."""
    cases, unknown = select_cases(tests)
    if unknown:
        stream = out or sys.stdout
        tap = TapWriter(stream)
        tap.version()
        tap.comment(f"not supported by this client: {', '.join(unknown)}")
        tap.plan(0)
        return EXIT_UNSUPPORTED
    outcomes = await run_cases(url, cases, versions=versions, verify=verify, out=out, verbose=verbose)
    return exit_code(outcomes, len(cases))
