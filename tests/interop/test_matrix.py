"""`moq interop matrix`: our relay and aiomoqt's, each run by our client and by aiomoqt's, both transports, at
draft 22; the JSON and Markdown come out, every cell ran to the end, and every failing case is explained."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from interop.known import KNOWN_ISSUES, explain
from interop.matrix import CaseResult, Cell, Matrix, plan_cells, render_markdown
from interop.peers import find_aiomoqt

needs_aiomoqt = pytest.mark.skipif(
    find_aiomoqt() is None and not os.environ.get("MOQ_REQUIRE_PEERS"),
    reason="aiomoqt is not installed (python -m interop.peers install; make test does it)",
)


def test_cells_cover_the_drafts_each_pair_shares() -> None:
    cells = plan_cells(["moq", "aiomoqt"], ["moq", "aiomoqt"], ["quic", "webtransport"], None)
    shared: dict[tuple[str, str], set[int]] = {}
    for cell in cells:
        shared.setdefault((cell.client, cell.relay), set()).add(cell.draft)
    assert shared[("moq", "moq")] == {18, 20, 21, 22}
    assert shared[("moq", "aiomoqt")] == shared[("aiomoqt", "moq")] == {18, 20, 22}
    assert shared[("aiomoqt", "aiomoqt")] == {14, 16, 18, 20, 22}
    assert len(cells) == 2 * (4 + 3 + 3 + 5)


def test_the_report_explains_each_failure_or_says_it_is_unexplained() -> None:
    issue = KNOWN_ISSUES[0]
    explained = CaseResult(issue.case, "fail", "slow", known=[issue.id])
    cell = Cell(issue.client or "moq", issue.relay or "moq", "quic", 22, "fail", [explained, CaseResult("x", "pass")])
    odd = Cell("aiomoqt", "moq", "quic", 22, "fail", [CaseResult("mystery", "fail", "huh", received="nothing")])
    matrix = Matrix("now", {"moq": {"version": "v", "drafts": [22]}}, [cell, odd])
    text = render_markdown(matrix, [issue])
    assert "| moq | moq | quic | 22 | FAIL | 1 | 1 | 0 |" in text
    assert f"**{issue.id}**" in text and issue.section in text
    assert "**unexplained**" in text and matrix.unexplained == 1
    assert explain("aiomoqt", "moq", 22, "mystery") == []


@needs_aiomoqt
def test_matrix_of_both_relays_and_both_clients(tmp_path: Path) -> None:
    command = [sys.executable, "-c", "from cli.main import main; main()", "interop", "matrix"]
    command += ["--draft", "22", "--out-dir", str(tmp_path), "--no-install", "--jobs", "3"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=240)
    data = json.loads((tmp_path / "matrix.json").read_text())
    cells = {(c["client"], c["relay"], c["transport"]): c for c in data["cells"]}
    assert len(cells) == 8 and {c["draft"] for c in data["cells"]} == {22}, result.stderr
    for cell in data["cells"]:
        assert cell["status"] in ("pass", "fail"), f"{cell['client']}->{cell['relay']}: {cell['error']}"
        assert cell["cases"], cell
        for case in cell["cases"]:
            assert case["status"] != "fail" or case["known"], f"unexplained failure in {cell}: {case}"
    # aiomoqt's client passes all its cases against either relay.
    for relay in ("moq", "aiomoqt"):
        for transport in ("quic", "webtransport"):
            assert cells[("aiomoqt", relay, transport)]["status"] == "pass"
    assert result.returncode == 0, result.stdout + result.stderr
    markdown = (tmp_path / "matrix.md").read_text()
    assert "| client | relay | transport | draft |" in markdown and markdown in result.stdout
    assert (tmp_path / "logs" / "moq-to-aiomoqt-webtransport-d22.tap").exists()
