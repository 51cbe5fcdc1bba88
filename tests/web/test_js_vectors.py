"""Cross-tests of the browser codec (web/js) and the Python codec (moq.wire), in both directions.

- Python -> JS: `make_vectors.py` writes vectors from the Python codec; the node suite (web/test/*.test.js)
  decodes and re-encodes each, feeds the parsers whole, bytewise and split, and compares the verdicts on
  damaged bytes. `test_node_suite` runs it, so `pytest` covers the JS tests too.
- JS -> Python: `js_vectors.mjs` encodes structures with the JS codec; the tests below decode every one with
  the Python codec, compare the fields, and check that Python re-encodes the same bytes.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from moq.wire.data import (
    DataStreamParser,
    FetchEndOfRange,
    FetchHeader,
    FetchObject,
    FetchObjectEncoder,
    ObjectDatagram,
    SubgroupHeader,
    SubgroupObject,
    decode_datagram,
    encode_datagram,
    encode_fetch_header,
    encode_subgroup_header,
    encode_subgroup_object,
)
from moq.wire.messages import decode_message, encode_message, message_classes
from moq.wire.params import GroupOrder
from moq.wire.version import Version
from tests.web.make_vectors import j_event, j_message, make_vectors

ROOT = Path(__file__).resolve().parents[2]
NODE = shutil.which("node")
JS_SEEDS = (20261122, 7)

pytestmark = pytest.mark.skipif(NODE is None, reason="node (Node.js 20+) is not installed: the web codec tests need it")


def _node(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    assert NODE is not None
    return subprocess.run(
        [NODE, *args], cwd=ROOT, capture_output=True, text=True, timeout=240, env={**os.environ, **(env or {})}
    )


@pytest.fixture(scope="module", params=JS_SEEDS, ids=lambda seed: f"seed{seed}")
def js_vectors(request: pytest.FixtureRequest) -> Any:
    """What the JS codec encoded for one seed."""
    result = _node("tests/web/js_vectors.mjs", str(request.param), "10")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_node_suite(tmp_path: Path) -> None:
    """The JS tests, against vectors freshly written by the Python codec."""
    vectors = tmp_path / "vectors.json"
    vectors.write_text(json.dumps(make_vectors()))
    files = sorted(str(path.relative_to(ROOT)) for path in (ROOT / "web" / "test").glob("*.test.js"))
    assert len(files) >= 3
    result = _node("--test", *files, env={"MOQ_WEB_VECTORS": str(vectors)})
    assert result.returncode == 0, result.stdout[-20000:] + result.stderr[-5000:]


def test_python_vectors_are_reproducible() -> None:
    assert make_vectors(seed=5, count=2) == make_vectors(seed=5, count=2)


def test_js_messages_decode_in_python(js_vectors: Any) -> None:
    seen: dict[int, set[str]] = {}
    for vector in js_vectors["messages"]:
        version = Version(vector["version"])
        data = bytes.fromhex(vector["hex"])
        msg, consumed = decode_message(data, version)
        assert consumed == len(data)
        assert j_message(msg) == vector["value"], vector["hex"]
        assert encode_message(msg, version) == data
        seen.setdefault(version, set()).add(type(msg).__name__)
    for version in Version:
        assert seen[version] == {cls.__name__ for cls in message_classes(version)}, version


def test_js_datagrams_decode_in_python(js_vectors: Any) -> None:
    assert js_vectors["datagrams"]
    for vector in js_vectors["datagrams"]:
        version = Version(vector["version"])
        data = bytes.fromhex(vector["hex"])
        dgram = decode_datagram(data, version)
        assert isinstance(dgram, ObjectDatagram)
        assert j_event(dgram) == vector["value"], vector["hex"]
        assert encode_datagram(dgram, version) == data


def test_js_streams_parse_in_python(js_vectors: Any) -> None:
    """Each stream parsed whole and one byte at a time, then re-encoded by Python to the same bytes."""
    kinds = set()
    for vector in js_vectors["streams"]:
        version = Version(vector["version"])
        order = GroupOrder(vector["group_order"])
        data = bytes.fromhex(vector["hex"])
        events = DataStreamParser(version, order).feed(data, fin=True)
        assert [j_event(event) for event in events] == vector["events"], vector["hex"]
        bytewise = DataStreamParser(version, order)
        one_by_one = [event for i in range(len(data)) for event in bytewise.feed(data[i : i + 1])]
        one_by_one += bytewise.feed(b"", fin=True)
        assert one_by_one == events
        assert _reencode(events, version, order) == data
        kinds.add(type(events[0]).__name__)
    assert kinds == {"SubgroupHeader", "FetchHeader"}


def _reencode(events: list[Any], version: Version, order: GroupOrder) -> bytes:
    header = events[0]
    if isinstance(header, SubgroupHeader):
        parts = [encode_subgroup_header(header, version)]
        prev = None
        for obj in events[1:]:
            assert isinstance(obj, SubgroupObject)
            parts.append(encode_subgroup_object(header, prev, obj))
            prev = obj.object_id
        return b"".join(parts)
    assert isinstance(header, FetchHeader)
    encoder = FetchObjectEncoder(version, order)
    entries = events[1:]
    assert all(isinstance(entry, FetchObject | FetchEndOfRange) for entry in entries)
    return encode_fetch_header(header.request_id) + b"".join(encoder.encode(entry) for entry in entries)
