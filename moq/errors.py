"""Errors shared by every layer of `moq`.

Each error says whose fault it is (DESIGN.md, decision 6):

- `ProtocolViolation`: the peer broke the protocol. It carries the session termination code the session must close
  with (a `moq.wire.codes.SessionErrorCode` value) and a reason phrase for the peer.
- `NeedMoreData`: not an error of anyone's: a parser needs more bytes before it can say anything.
- `EncodeError`: our own caller asked for something the negotiated draft cannot express. Raised at once, locally.
- `RequestRejected`: the peer refused a request with REQUEST_ERROR (or a stream reset); carries its code and reason.
"""

from __future__ import annotations


class MoqError(Exception):
    """Base of every error `moq` raises on purpose."""


class NeedMoreData(MoqError):
    """The bytes so far end before the structure does: feed more and try again."""


class ProtocolViolation(MoqError):
    """The peer broke the protocol; the session must close with `code` and `reason`."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"{reason} (code 0x{code:x})")
        self.code = code
        self.reason = reason


class EncodeError(MoqError, ValueError):
    """A value that cannot be encoded for the negotiated draft (API misuse, never the peer's fault)."""


class RequestRejected(MoqError):
    """The peer answered a request with REQUEST_ERROR (or reset it): `code` is its REQUEST_ERROR code."""

    def __init__(self, code: int, reason: str, retry_interval: int = 0) -> None:
        super().__init__(f"request rejected: {reason} (code 0x{code:x})")
        self.code = code
        self.reason = reason
        self.retry_interval = retry_interval
