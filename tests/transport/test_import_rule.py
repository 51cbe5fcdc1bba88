"""DESIGN.md's import rule, as far as the transport is concerned: only moq/transport touches aioquic's asyncio
layer, and the sans-IO helpers of moq/transport stay free of IO."""

from __future__ import annotations

import ast
from pathlib import Path

MOQ = Path(__file__).resolve().parents[2] / "moq"

#: Modules of moq/transport that must stay sans-IO (no asyncio, no sockets, no aioquic.asyncio).
SANS_IO = ("wtproto.py", "events.py", "errors.py")


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module is not None and node.level == 0:
            names.add(node.module)
    return names


def test_only_moq_transport_imports_the_aioquic_asyncio_layer() -> None:
    offenders = [
        str(path.relative_to(MOQ.parent))
        for path in MOQ.rglob("*.py")
        if "transport" not in path.relative_to(MOQ).parts
        and any(name == "aioquic.asyncio" or name.startswith("aioquic.asyncio.") for name in imported_modules(path))
    ]
    assert offenders == []


def test_transport_helpers_stay_sans_io() -> None:
    for name in SANS_IO:
        modules = imported_modules(MOQ / "transport" / name)
        assert not {m for m in modules if m.split(".")[0] in ("asyncio", "socket")}, name
        assert not {m for m in modules if m.startswith("aioquic.asyncio")}, name
