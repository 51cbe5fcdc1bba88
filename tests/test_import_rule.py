"""The import rule of DESIGN.md, kept true by reading every module's imports (ast, no dependency).

    types, errors  <-  wire  <-  session  <-  transport  <-  relay, cli, interop
    types, errors  <-  model <-  transport, media, relay
    media  <-  cli            (relay never imports media)

and `moq/wire`, `moq/session` do no IO: no asyncio, sockets, clocks or aioquic's asyncio layer.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# What each part may import from the project (itself is always allowed).
ALLOWED: dict[str, set[str]] = {
    "moq.errors": set(),
    "moq.types": {"moq.errors"},
    "moq.wire": {"moq.errors", "moq.types"},
    "moq.model": {"moq.errors", "moq.types", "moq.wire"},
    "moq.session": {"moq.errors", "moq.types", "moq.wire", "moq.model"},
    "moq.transport": {"moq.errors", "moq.types", "moq.wire", "moq.model", "moq.session"},
    "moq.media": {"moq.errors", "moq.types", "moq.wire", "moq.model"},
    "moq.api": {"moq.errors", "moq.types", "moq.wire", "moq.model", "moq.session", "moq.transport"},
    "relay": {"moq.errors", "moq.types", "moq.wire", "moq.model", "moq.session", "moq.transport", "moq.api"},
    "interop": {"moq"},
    "cli": {"moq", "relay", "interop"},
}
# Modules no sans-IO layer may import.
IO_MODULES = {"asyncio", "socket", "selectors", "time", "threading", "aioquic.asyncio", "ssl", "subprocess"}
SANS_IO = {"moq.wire", "moq.session"}


def _part(module: str) -> str | None:
    """The part of ALLOWED that `module` belongs to (longest prefix)."""
    best = None
    for part in ALLOWED:
        if (module == part or module.startswith(part + ".")) and (best is None or len(part) > len(best)):
            best = part
    if best is None and module.startswith("moq"):
        return "moq"  # top-level moq/__init__.py: may import nothing of the layers above wire
    return best


def _modules() -> list[tuple[str, Path]]:
    found = []
    for top in ("moq", "relay", "cli", "interop"):
        for path in sorted((ROOT / top).rglob("*.py")):
            rel = path.relative_to(ROOT).with_suffix("")
            parts = list(rel.parts)
            if parts[-1] == "__init__":
                parts.pop()
            found.append((".".join(parts), path))
    return found


def _imports(path: Path, module: str) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: list[str] = []
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                names.append(".".join([*base, node.module] if node.module else base))
            elif node.module:
                names.append(node.module)
    return names


def _is_project(name: str) -> bool:
    return name.split(".")[0] in {"moq", "relay", "cli", "interop"}


@pytest.mark.parametrize(("module", "path"), _modules(), ids=lambda v: str(v) if isinstance(v, str) else "")
def test_module_obeys_import_rule(module: str, path: Path) -> None:
    part = _part(module)
    assert part is not None, f"{module} is in no part of the import rule"
    allowed = ALLOWED.get(part, {"moq.errors", "moq.types"})
    for name in _imports(path, module):
        if _is_project(name):
            target = _part(name) or name
            ok = target == part or any(target == a or target.startswith(a + ".") for a in allowed)
            ok = ok or (part == "moq" and target in {"moq", "moq.errors", "moq.types"})
            assert ok, f"{module} imports {name}: {part} may import only {sorted(allowed)}"
        if any(part == s or part.startswith(s + ".") for s in SANS_IO):
            root = name.split(".")[0]
            assert name not in IO_MODULES and root not in IO_MODULES, f"sans-IO {module} imports {name}"
            assert not name.startswith("aioquic.asyncio"), f"sans-IO {module} imports {name}"
        if part == "relay":
            assert not name.startswith("moq.media"), f"the relay never imports media: {module} imports {name}"


def test_rule_catches_a_violation(tmp_path: Path) -> None:
    """The checker itself: a wire module importing asyncio and the session is refused."""
    bad = tmp_path / "bad.py"
    bad.write_text("import asyncio\nfrom moq.session import x\n")
    names = _imports(bad, "moq.wire.bad")
    assert "asyncio" in names and "moq.session" in names
    assert _part("moq.wire.bad") == "moq.wire"
    assert "moq.session" not in ALLOWED["moq.wire"]
