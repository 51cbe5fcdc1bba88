"""Codes per draft, GREASE, and version negotiation tables."""

from __future__ import annotations

from moq.wire.codes import (
    PublishDoneCode,
    RequestErrorCode,
    SessionErrorCode,
    codes_for,
    interpret,
    is_grease,
)
from moq.wire.version import SUPPORTED_VERSIONS, Version, choose_version


def test_per_draft_codes() -> None:
    assert SessionErrorCode.VERSION_NEGOTIATION_FAILED in codes_for(SessionErrorCode, Version.DRAFT_18)
    assert SessionErrorCode.VERSION_NEGOTIATION_FAILED not in codes_for(SessionErrorCode, Version.DRAFT_22)
    assert SessionErrorCode.TOO_MANY_REQUEST_UPDATES in codes_for(SessionErrorCode, Version.DRAFT_20)
    assert SessionErrorCode.TOO_MANY_REQUEST_UPDATES not in codes_for(SessionErrorCode, Version.DRAFT_18)
    assert PublishDoneCode.SUBSCRIPTION_ENDED in codes_for(PublishDoneCode, Version.DRAFT_18)
    assert PublishDoneCode.SUBSCRIPTION_ENDED not in codes_for(PublishDoneCode, Version.DRAFT_21)
    assert RequestErrorCode.INVALID_FILTER in codes_for(RequestErrorCode, Version.DRAFT_22)
    assert RequestErrorCode.INVALID_JOINING_REQUEST_ID in codes_for(RequestErrorCode, Version.DRAFT_18)


def test_unknown_and_grease_codes_read_as_internal_error() -> None:
    assert is_grease(0x9D) and is_grease(0x9D + 0x7F) and not is_grease(0x9E) and not is_grease(0x1C)
    assert interpret(RequestErrorCode, 0x9D, Version.DRAFT_22) is RequestErrorCode.INTERNAL_ERROR
    assert interpret(RequestErrorCode, 0x7777, Version.DRAFT_22) is RequestErrorCode.INTERNAL_ERROR
    assert interpret(PublishDoneCode, 0x3, Version.DRAFT_22) is PublishDoneCode.INTERNAL_ERROR
    assert interpret(PublishDoneCode, 0x3, Version.DRAFT_18) is PublishDoneCode.SUBSCRIPTION_ENDED
    assert interpret(RequestErrorCode, 0x10, Version.DRAFT_18) is RequestErrorCode.DOES_NOT_EXIST


def test_version_negotiation_tables() -> None:
    assert [v.alpn for v in SUPPORTED_VERSIONS] == ["moqt-22", "moqt-21", "moqt-20", "moqt-18"]
    assert Version.from_alpn("moqt-18") is Version.DRAFT_18
    assert Version.from_alpn("moq-00") is None
    assert Version.DRAFT_21.family == Version.DRAFT_20.family == 20 and Version.DRAFT_18.family == 18
    assert choose_version(SUPPORTED_VERSIONS, ["moqt-18", "moqt-20"]) is Version.DRAFT_20
    assert choose_version(SUPPORTED_VERSIONS, ["h3", "moqt-16"]) is None
    assert choose_version((Version.DRAFT_18,), ["moqt-22", "moqt-18"]) is Version.DRAFT_18
