"""Sans-IO pieces of WebTransport over HTTP/3 that aioquic's H3 layer does not provide.

- codepoints (settings, stream signals, capsules, error codes) of draft-ietf-webtrans-http3;
- the mapping of 32-bit application error codes into the HTTP/3 error space (draft-ietf-webtrans-http3 §4.4:
  "WebTransport implementations MUST remap those error codes into the error range reserved for
  WT_APPLICATION_ERROR", skipping the reserved `0x1f * N + 0x21` codepoints of RFC 9114 §8.1);
- the capsule stream parser (RFC 9297 §3.2) and WT_CLOSE_SESSION / WT_DRAIN_SESSION capsules (§6 of the draft);
- Structured Field parsing and serialisation (RFC 9651) for `WT-Available-Protocols` (a List of Strings) and
  `WT-Protocol` (a String Item), draft-ietf-webtrans-http3 §3.3.

No IO and no asyncio here: everything is a pure function or a small feed-bytes-get-results parser.
"""

from __future__ import annotations

from collections.abc import Iterable

from aioquic.buffer import Buffer, BufferReadError, encode_uint_var

__all__ = [
    "CAPSULE_CLOSE_SESSION",
    "CAPSULE_DRAIN_SESSION",
    "H3_MESSAGE_ERROR",
    "H3_NO_ERROR",
    "H3_REQUEST_REJECTED",
    "MAX_CAPSULE_SIZE",
    "MAX_CLOSE_REASON_BYTES",
    "SETTING_ENABLE_CONNECT_PROTOCOL",
    "SETTING_ENABLE_WEBTRANSPORT",
    "SETTING_H3_DATAGRAM",
    "SETTING_WEBTRANSPORT_MAX_SESSIONS_DRAFT07",
    "SETTING_WT_ENABLED",
    "SETTING_WT_MAX_SESSIONS",
    "WT_APPLICATION_ERROR_FIRST",
    "WT_APPLICATION_ERROR_LAST",
    "WT_BIDI_SIGNAL",
    "WT_BUFFERED_STREAM_REJECTED",
    "WT_SESSION_GONE",
    "WT_UNI_STREAM_TYPE",
    "CapsuleParser",
    "CapsuleTooLarge",
    "app_code_to_http3",
    "decode_close_session",
    "encode_capsule",
    "encode_close_session",
    "http3_to_app_code",
    "parse_sf_string_list",
    "serialize_sf_string",
    "serialize_sf_string_list",
]

# --- HTTP/3 SETTINGS (RFC 9220, RFC 9297, draft-ietf-webtrans-http3 across its drafts) ---
SETTING_ENABLE_CONNECT_PROTOCOL = 0x08
SETTING_H3_DATAGRAM = 0x33
#: draft-02..06 "SETTINGS_ENABLE_WEBTRANSPORT"; aioquic sends this one itself.
SETTING_ENABLE_WEBTRANSPORT = 0x2B603742
#: draft-07..12 "SETTINGS_WEBTRANSPORT_MAX_SESSIONS".
SETTING_WEBTRANSPORT_MAX_SESSIONS_DRAFT07 = 0xC671706A
#: draft-13/14 "SETTINGS_WT_MAX_SESSIONS" (Safari requires it >= 1).
SETTING_WT_MAX_SESSIONS = 0x14E9CD29
#: draft-15+ "SETTINGS_WT_ENABLED".
SETTING_WT_ENABLED = 0x2C7CF000

# --- stream framing (draft-ietf-webtrans-http3 §4.1, §4.2) ---
WT_UNI_STREAM_TYPE = 0x54
WT_BIDI_SIGNAL = 0x41

# --- capsules (draft-ietf-webtrans-http3 §5.5, §6) ---
CAPSULE_CLOSE_SESSION = 0x2843
CAPSULE_DRAIN_SESSION = 0x78AE
#: "Application Error Message ... MUST NOT exceed 1024 bytes".
MAX_CLOSE_REASON_BYTES = 1024
#: Largest capsule we buffer. The largest one we understand is WT_CLOSE_SESSION (4 + 1024 bytes; the draft's
#: figure allows 8192); anything bigger is a peer bug or an attack, and buffering it would be unbounded.
MAX_CAPSULE_SIZE = 16384

# --- error codes (RFC 9114 §8.1, draft-ietf-webtrans-http3 §9.5) ---
H3_NO_ERROR = 0x100
H3_REQUEST_REJECTED = 0x10B
H3_MESSAGE_ERROR = 0x10E
WT_SESSION_GONE = 0x170D7B68
WT_BUFFERED_STREAM_REJECTED = 0x3994BD84
WT_APPLICATION_ERROR_FIRST = 0x52E4A40FA8DB
WT_APPLICATION_ERROR_LAST = 0x52E5AC983162


def app_code_to_http3(code: int) -> int:
    """Map a 32-bit WebTransport application error code to its HTTP/3 error code (draft §4.4).

    One HTTP/3 codepoint in every 31 is reserved (`0x1f * N + 0x21`) and skipped, hence the `code // 0x1e`.
    Raises ValueError for codes outside 0..2**32-1: WebTransport cannot carry them.
    """
    if not 0 <= code <= 0xFFFFFFFF:
        raise ValueError(f"WebTransport application error codes are 32-bit, got {code:#x}")
    return WT_APPLICATION_ERROR_FIRST + code + code // 0x1E


def http3_to_app_code(wire: int) -> int | None:
    """The application error code an HTTP/3 error code carries, or None if it is not one (draft §4.4)."""
    if not WT_APPLICATION_ERROR_FIRST <= wire <= WT_APPLICATION_ERROR_LAST:
        return None
    if (wire - 0x21) % 0x1F == 0:
        return None  # a reserved (GREASE) codepoint, never produced by app_code_to_http3
    shifted = wire - WT_APPLICATION_ERROR_FIRST
    return shifted - shifted // 0x1F


# --- capsules ---


def encode_capsule(capsule_type: int, payload: bytes) -> bytes:
    """One capsule: Type (i), Length (i), Value (RFC 9297 §3.2)."""
    return encode_uint_var(capsule_type) + encode_uint_var(len(payload)) + payload


def _truncate_utf8(text: str, limit: int) -> bytes:
    data = text.encode("utf-8")
    if len(data) <= limit:
        return data
    # Cut on a character boundary so the peer never sees invalid UTF-8.
    return data[:limit].decode("utf-8", errors="ignore").encode("utf-8")


def encode_close_session(code: int, reason: str) -> bytes:
    """A WT_CLOSE_SESSION capsule: 32-bit code, then the UTF-8 reason cut to 1024 bytes."""
    if not 0 <= code <= 0xFFFFFFFF:
        raise ValueError(f"WebTransport session close codes are 32-bit, got {code:#x}")
    return encode_capsule(
        CAPSULE_CLOSE_SESSION, code.to_bytes(4, "big") + _truncate_utf8(reason, MAX_CLOSE_REASON_BYTES)
    )


def decode_close_session(payload: bytes) -> tuple[int, str]:
    """(code, reason) of a WT_CLOSE_SESSION payload; raises ValueError when it is shorter than 4 bytes."""
    if len(payload) < 4:
        raise ValueError("WT_CLOSE_SESSION shorter than its 32-bit code")
    return int.from_bytes(payload[:4], "big"), payload[4:].decode("utf-8", errors="replace")


class CapsuleTooLarge(ValueError):
    """A capsule longer than MAX_CAPSULE_SIZE."""


class CapsuleParser:
    """Splits the data of a CONNECT stream into capsules, whatever the chunking.

    `feed()` returns the complete capsules as (type, payload) pairs; partial ones wait for more bytes.
    """

    def __init__(self, max_size: int = MAX_CAPSULE_SIZE) -> None:
        self._buffer = bytearray()
        self._max_size = max_size

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        """Add bytes; return every capsule they complete. Raises CapsuleTooLarge for an oversized capsule."""
        self._buffer += data
        capsules: list[tuple[int, bytes]] = []
        while self._buffer:
            buf = Buffer(data=bytes(self._buffer[:32]))
            try:
                capsule_type = buf.pull_uint_var()
                length = buf.pull_uint_var()
            except BufferReadError:
                break
            if length > self._max_size:
                raise CapsuleTooLarge(f"capsule type {capsule_type:#x} of {length} bytes")
            header = buf.tell()
            if len(self._buffer) < header + length:
                break
            capsules.append((capsule_type, bytes(self._buffer[header : header + length])))
            del self._buffer[: header + length]
        return capsules

    @property
    def pending(self) -> int:
        """Bytes of an incomplete capsule held back."""
        return len(self._buffer)


# --- Structured Fields (RFC 9651), just enough for WT-Available-Protocols / WT-Protocol ---


class _SfError(ValueError):
    pass


_TCHAR_EXTRA = set("!#$%&'*+-.^_`|~:/")
_KEY_EXTRA = set("_-.*")
_BASE64 = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=")


class _SfParser:
    """A strict RFC 9651 §4.2 parser for Lists; it records the type of each member."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def _peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def _skip(self, chars: str) -> None:
        while self.pos < len(self.text) and self.text[self.pos] in chars:
            self.pos += 1

    def parse_list(self) -> list[tuple[str, object]]:
        self._skip(" ")
        members: list[tuple[str, object]] = []
        while self.pos < len(self.text):
            members.append(self._member())
            self._skip(" \t")
            if self.pos >= len(self.text):
                return members
            if self._peek() != ",":
                raise _SfError("expected ','")
            self.pos += 1
            self._skip(" \t")
            if self.pos >= len(self.text):
                raise _SfError("trailing ','")
        return members

    def parse_item(self) -> tuple[str, object]:
        self._skip(" ")
        item = self._bare_item()
        self._parameters()
        self._skip(" ")
        if self.pos != len(self.text):
            raise _SfError("trailing characters after item")
        return item

    def _member(self) -> tuple[str, object]:
        if self._peek() == "(":
            self.pos += 1
            while True:
                self._skip(" ")
                if self._peek() == ")":
                    self.pos += 1
                    break
                if not self._peek():
                    raise _SfError("unterminated inner list")
                self._bare_item()
                self._parameters()
                if self._peek() not in (" ", ")"):
                    raise _SfError("bad inner list")
            self._parameters()
            return ("inner-list", None)
        item = self._bare_item()
        self._parameters()
        return item

    def _parameters(self) -> None:
        while self._peek() == ";":
            self.pos += 1
            self._skip(" ")
            self._key()
            if self._peek() == "=":
                self.pos += 1
                self._bare_item()

    def _key(self) -> str:
        start = self.pos
        first = self._peek()
        if not (first.islower() and first.isascii()) and first != "*":
            raise _SfError("bad key")
        self.pos += 1
        while (c := self._peek()) and ((c.islower() and c.isascii()) or c.isdigit() or c in _KEY_EXTRA):
            self.pos += 1
        return self.text[start : self.pos]

    def _bare_item(self) -> tuple[str, object]:
        c = self._peek()
        if c == '"':
            return ("string", self._string())
        if c == "-" or c.isdigit():
            return ("number", self._number())
        if c == "*" or (c.isascii() and c.isalpha()):
            return ("token", self._token())
        if c == ":":
            return ("binary", self._binary())
        if c == "?":
            self.pos += 1
            if self._peek() not in ("0", "1"):
                raise _SfError("bad boolean")
            self.pos += 1
            return ("boolean", self.text[self.pos - 1] == "1")
        if c == "@":
            self.pos += 1
            return ("date", self._number())
        if c == "%":
            return ("displaystring", self._display_string())
        raise _SfError(f"unexpected {c!r}")

    def _string(self) -> str:
        self.pos += 1
        out: list[str] = []
        while self.pos < len(self.text):
            c = self.text[self.pos]
            self.pos += 1
            if c == "\\":
                if self.pos >= len(self.text) or self.text[self.pos] not in '"\\':
                    raise _SfError("bad escape")
                out.append(self.text[self.pos])
                self.pos += 1
            elif c == '"':
                return "".join(out)
            elif not " " <= c <= "~":
                raise _SfError("non-printable character in string")
            else:
                out.append(c)
        raise _SfError("unterminated string")

    def _number(self) -> float | int:
        start = self.pos
        if self._peek() == "-":
            self.pos += 1
        while (c := self._peek()) and (c.isdigit() or c == "."):
            self.pos += 1
        token = self.text[start : self.pos]
        try:
            return float(token) if "." in token else int(token)
        except ValueError:
            raise _SfError("bad number") from None

    def _token(self) -> str:
        start = self.pos
        self.pos += 1
        while (c := self._peek()) and c.isascii() and (c.isalnum() or c in _TCHAR_EXTRA):
            self.pos += 1
        return self.text[start : self.pos]

    def _binary(self) -> str:
        self.pos += 1
        start = self.pos
        while (c := self._peek()) and c in _BASE64:
            self.pos += 1
        if self._peek() != ":":
            raise _SfError("bad byte sequence")
        self.pos += 1
        return self.text[start : self.pos - 1]

    def _display_string(self) -> str:
        self.pos += 1
        if self._peek() != '"':
            raise _SfError("bad display string")
        self.pos += 1
        start = self.pos
        while (c := self._peek()) and c != '"':
            self.pos += 1
        if self._peek() != '"':
            raise _SfError("unterminated display string")
        self.pos += 1
        return self.text[start : self.pos - 1]


def parse_sf_string_list(values: str | Iterable[str]) -> list[str] | None:
    """The Strings of a `WT-Available-Protocols` List, in order, or None when the field must be ignored.

    Several field lines are joined with ", " first (RFC 9651 §4.2). Parameters are ignored; any member that is
    not a String, or any syntax error, makes the whole field ignored (draft-ietf-webtrans-http3 §3.3).
    """
    text = values if isinstance(values, str) else ", ".join(values)
    try:
        members = _SfParser(text).parse_list()
    except _SfError:
        return None
    strings: list[str] = []
    for kind, value in members:
        if kind != "string" or not isinstance(value, str):
            return None
        strings.append(value)
    return strings


def parse_sf_string(value: str) -> str | None:
    """The String of a `WT-Protocol` Item, or None when it is not exactly one String (parameters ignored)."""
    try:
        kind, parsed = _SfParser(value).parse_item()
    except _SfError:
        return None
    return parsed if kind == "string" and isinstance(parsed, str) else None


def serialize_sf_string(value: str) -> str:
    """`value` as an sf-string: quoted, with `"` and `\\` escaped; raises ValueError for non-printable ASCII."""
    if any(not " " <= c <= "~" for c in value):
        raise ValueError(f"Structured Field strings are printable ASCII only: {value!r}")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def serialize_sf_string_list(values: Iterable[str]) -> str:
    """A List of sf-strings, as `WT-Available-Protocols` carries them (`"moqt-22", "moqt-20"`)."""
    return ", ".join(serialize_sf_string(v) for v in values)
