"""TAP version 14, as the interop-runner contract uses it: a writer for our client, a reader for any client's output.

The writer prints what TEST-CLIENT-INTERFACE.md asks for: `TAP version 14`, header comments, the plan `1..N`, one
`ok N - name` / `not ok N - name` per case (`# SKIP reason` for a case not run), and a YAML diagnostics block
indented two spaces (`duration_ms`, connection ids, `expected` / `received` / `message`).

The reader is lenient where TAP is: it takes every top-level test point, its directive and the YAML block after
it (flat keys, and one level of nesting such as aiomoqt's `sessions:`), and ignores indented subtests.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TextIO

#: A YAML value we write: scalars, or a mapping of them (one level, e.g. per-role connection ids).
YamlValue = str | int | float | bool | None | Mapping[str, "YamlValue"]

_PLAIN = re.compile(r"^[A-Za-z0-9_./:@+-][A-Za-z0-9_ ./:@+,()=-]*$")
_YAML_KEYWORDS = {"true", "false", "yes", "no", "null", "on", "off", "~"}


def yaml_scalar(value: str | int | float | bool | None) -> str:
    """One YAML scalar: numbers and booleans as they are, strings plain when safe, else double-quoted (JSON)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value) if isinstance(value, float) else str(value)
    text = str(value)
    if (
        _PLAIN.match(text)
        and text.lower() not in _YAML_KEYWORDS
        and not text.endswith(" ")
        and not _looks_numeric(text)
        and ": " not in text
    ):
        return text
    return json.dumps(text, ensure_ascii=False)


def _looks_numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def yaml_block(fields: Mapping[str, YamlValue], indent: int = 2) -> list[str]:
    """A TAP YAML diagnostics block (`---` ... `...`), indented `indent` spaces; None values are left out."""
    pad = " " * indent
    lines = [f"{pad}---"]

    def emit(mapping: Mapping[str, YamlValue], depth: int) -> None:
        inner = pad + "  " * depth
        for key, value in mapping.items():
            if value is None:
                continue
            if isinstance(value, Mapping):
                lines.append(f"{inner}{key}:")
                emit(value, depth + 1)
            else:
                lines.append(f"{inner}{key}: {yaml_scalar(value)}")

    emit(fields, 0)
    lines.append(f"{pad}...")
    return lines


class TapWriter:
    """Writes one TAP version 14 run to a text stream, a line at a time (flushed, so a harness sees progress)."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.count = 0

    def _line(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def version(self) -> None:
        self._line("TAP version 14")

    def comment(self, text: str) -> None:
        for part in text.splitlines() or [""]:
            self._line(f"# {part}".rstrip())

    def plan(self, count: int) -> None:
        self._line(f"1..{count}")

    def result(
        self, name: str, ok: bool, *, skip: str | None = None, diagnostics: Mapping[str, YamlValue] | None = None
    ) -> None:
        """One test point; a skipped case is `ok N - name # SKIP reason` (TAP counts it apart from passes)."""
        self.count += 1
        line = f"{'ok' if ok else 'not ok'} {self.count} - {name}"
        if skip is not None:
            line += f" # SKIP {skip}".rstrip()
        self._line(line)
        if diagnostics:
            for text in yaml_block(diagnostics):
                self._line(text)

    def bail_out(self, reason: str) -> None:
        self._line(f"Bail out! {reason}")


# -- reading --------------------------------------------------------------------------------------------------------


@dataclass
class TapPoint:
    """One top-level test point of a TAP run."""

    number: int
    name: str
    ok: bool
    directive: str | None = None  # "SKIP" or "TODO" (upper case), None without one
    reason: str = ""
    diagnostics: dict[str, object] = field(default_factory=dict)

    @property
    def status(self) -> str:
        """ "pass", "fail" or "skip" (a TODO point counts as what it says)."""
        if self.directive == "SKIP":
            return "skip"
        return "pass" if self.ok else "fail"


@dataclass
class TapRun:
    """A parsed TAP run: its plan, points, header comments and whether it bailed out."""

    planned: int | None = None
    points: list[TapPoint] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)
    bail_out: str | None = None
    version: int | None = None

    @property
    def complete(self) -> bool:
        """The plan was printed and every planned point is there, and nobody bailed out."""
        return self.bail_out is None and self.planned is not None and len(self.points) == self.planned


_POINT = re.compile(r"^(ok|not ok)\b\s*(\d+)?\s*(?:-\s*)?([^#]*?)\s*(?:#\s*(SKIP|TODO)\S*\s*(.*))?$", re.IGNORECASE)
_PLAN = re.compile(r"^1\.\.(\d+)")


def parse_tap(text: str) -> TapRun:
    """Parse TAP output (version 13 or 14). Lines that are not TAP are ignored, as a harness must."""
    run = TapRun()
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        if line.startswith("TAP version"):
            digits = line.split()[-1]
            run.version = int(digits) if digits.isdigit() else None
        elif m := _PLAN.match(line):
            run.planned = int(m.group(1))
        elif line.startswith("Bail out!"):
            run.bail_out = line[len("Bail out!") :].strip()
        elif line.startswith("#"):
            run.comments.append(line[1:].strip())
        elif m := _POINT.match(line):
            number = int(m.group(2)) if m.group(2) else len(run.points) + 1
            directive = m.group(4).upper() if m.group(4) else None
            point = TapPoint(number, m.group(3).strip(), m.group(1).lower() == "ok", directive, (m.group(5) or ""))
            if i < len(lines) and lines[i].strip() == "---" and lines[i].startswith(" "):
                block: list[str] = []
                i += 1
                while i < len(lines) and lines[i].strip() != "...":
                    block.append(lines[i])
                    i += 1
                i += 1
                point.diagnostics = _parse_yaml(block)
            run.points.append(point)
    return run


def _parse_yaml(lines: list[str]) -> dict[str, object]:
    """The small YAML subset test clients write: `key: scalar` and nested mappings by indentation."""
    root: dict[str, object] = {}
    stack: list[tuple[int, dict[str, object]]] = [(-1, root)]
    for raw in lines:
        if not raw.strip() or raw.strip().startswith("#"):
            continue
        indent = len(raw) - len(raw.lstrip(" "))
        key, sep, value = raw.strip().partition(":")
        if not sep:
            continue
        while stack and indent <= stack[-1][0]:
            stack.pop()
        parent = stack[-1][1] if stack else root
        value = value.strip()
        if not value:
            child: dict[str, object] = {}
            parent[key.strip()] = child
            stack.append((indent, child))
        else:
            parent[key.strip()] = _yaml_value(value)
    return root


def _yaml_value(text: str) -> object:
    if text.startswith('"'):
        try:
            return json.loads(text)
        except ValueError:
            return text.strip('"')
    if text.startswith("'") and text.endswith("'"):
        return text[1:-1].replace("''", "'")
    if text in ("true", "false"):
        return text == "true"
    if text in ("null", "~"):
        return None
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text
