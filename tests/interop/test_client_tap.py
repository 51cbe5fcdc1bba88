"""The TAP version 14 our client writes, read back by the parser the matrix uses on any client's output."""

from __future__ import annotations

import io

from interop.tap import TapWriter, parse_tap, yaml_scalar


def test_written_tap_reads_back_with_its_diagnostics() -> None:
    out = io.StringIO()
    tap = TapWriter(out)
    tap.version()
    tap.comment("Relay: moqt://127.0.0.1:4443/")
    tap.plan(3)
    tap.result("setup-only", True, diagnostics={"duration_ms": 24, "connection_id": "84ee7793841adcad"})
    tap.result(
        "subscribe-error",
        False,
        diagnostics={
            "duration_ms": 2001,
            "expected": "SUBSCRIBE_ERROR",
            "received": "timeout",
            "message": 'no answer: "quoted", a: colon # and hash',
            "publisher_connection_id": "4739109795541e09",  # digits and an e: must stay a string
        },
    )
    tap.result("join", True, skip="not on draft-14")
    text = out.getvalue()
    assert text.startswith("TAP version 14\n# Relay: moqt://127.0.0.1:4443/\n1..3\nok 1 - setup-only\n  ---\n")
    assert "ok 3 - join # SKIP not on draft-14\n" in text

    run = parse_tap(text)
    assert run.complete and run.version == 14 and run.comments == ["Relay: moqt://127.0.0.1:4443/"]
    assert [(p.number, p.name, p.status) for p in run.points] == [
        (1, "setup-only", "pass"),
        (2, "subscribe-error", "fail"),
        (3, "join", "skip"),
    ]
    failed = run.points[1].diagnostics
    assert failed["duration_ms"] == 2001 and failed["received"] == "timeout"
    assert failed["message"] == 'no answer: "quoted", a: colon # and hash'
    assert failed["publisher_connection_id"] == "4739109795541e09"
    assert run.points[2].reason == "not on draft-14"


def test_yaml_scalars_are_quoted_when_they_would_change_meaning() -> None:
    assert yaml_scalar("PUBLISH_NAMESPACE_OK") == "PUBLISH_NAMESPACE_OK"
    assert yaml_scalar("true") == '"true"'
    assert yaml_scalar("1e5") == '"1e5"'
    assert yaml_scalar("a: b") == '"a: b"'
    assert yaml_scalar("§9.2 SHOULD NOT") == '"§9.2 SHOULD NOT"'
    assert yaml_scalar(3) == "3" and yaml_scalar(True) == "true" and yaml_scalar(None) == "null"


def test_foreign_tap_with_nested_yaml_and_a_bail_out() -> None:
    """aiomoqt nests its connection ids under `sessions:`; a bail out makes the run incomplete."""
    text = """TAP version 14
# version: aiomoqt/0.13.3
1..3
ok 1 - setup-only
  ---
  duration_ms: 176
  sessions:
    client:
      transport: "quic"
      quic_initial_destination_connection_id: "e624f200c2b30dfc"
  message: "SERVER_SETUP received with compatible version"
  ...
not ok 2 - announce-only
Bail out! relay went away
"""
    run = parse_tap(text)
    assert not run.complete and run.bail_out == "relay went away" and run.planned == 3
    first = run.points[0].diagnostics
    sessions = first["sessions"]
    assert isinstance(sessions, dict) and sessions["client"]["transport"] == "quic"
    assert first["message"] == "SERVER_SETUP received with compatible version"
    assert run.points[1].status == "fail" and run.points[1].diagnostics == {}
