"""The relay's web pages: a small HTTP/1.1 server for `web/` (the browser client), beside the MOQT port.

What it serves (GET and HEAD only):

- `/` -> `web/index.html`, the broadcasts the relay has; `/watch/NAME` -> `web/watch.html`, the player, which
  reads NAME (the namespace, fields between '/', each percent-encoded: `watch_path`) from its own address;
- `/call/ROOM` -> `web/call.html`, a call: each participant publishes its camera and microphone under ROOM (named
  like NAME: `call_path`) and plays the others';
- `/stats`: the relay's counts as JSON: sessions in all, and per worker process its pid, restarts, sessions,
  tracks, upstream subscriptions and namespaces (one worker unless `moq relay --workers N`);
- `/config.json`: how the page reaches the relay: its WebTransport URL and, for a development certificate, the
  certificate's sha-256 fingerprint, which the page hands to `serverCertificateHashes` (so a browser accepts the
  self-signed certificate with no flags; PLATFORM.md: ECDSA P-256, valid <= 14 days, as `moq.transport.tls` makes);
- any other file under `web/` whose type it knows (.html, .js, .css, .json, ...), as it is on disk.

The URL in `/config.json` names the host the browser used to load the page (its `Host` header) when the relay
listens on every address, else the address the relay is bound to: a page loaded from `localhost` then opens
WebTransport to `localhost`, which Chromium tries on ::1 first (the default bind `::` is dual stack).

It is not a general web server, and it is bounded (DESIGN.md decision 4): a request head over
`MAX_REQUEST_HEAD_BYTES` gets 431, a request with a body 413, more than `MAX_CONNECTIONS` connections at once
get 503, a client that takes longer than `REQUEST_TIMEOUT_SECONDS` to send a request (or stays idle that long
between requests) is disconnected, and a connection carries at most `MAX_REQUESTS_PER_CONNECTION` requests.
Paths with '..' or '.' segments, backslashes or NUL bytes are refused (403), hidden files are not served, and
the resolved file must lie inside `web/` (a symlink pointing out is refused too). Only the standard library.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import json
import logging
import re
import socket
import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote_to_bytes

from moq.wire.primitives import TrackNamespace

if TYPE_CHECKING:
    from relay.config import RelayConfig
    from relay.server import RunningRelay

logger = logging.getLogger(__name__)

#: The browser client's files.
WEB_ROOT = Path(__file__).resolve().parent.parent / "web"
#: Request line and headers together; browsers send well under 4 KiB.
MAX_REQUEST_HEAD_BYTES = 16 * 1024
#: Header fields in one request.
MAX_HEADER_FIELDS = 100
#: Connections served at once; the next ones get 503 and are closed (a page needs about six).
MAX_CONNECTIONS = 64
#: Requests on one kept-alive connection before we close it.
MAX_REQUESTS_PER_CONNECTION = 1000
#: Time a client has to send a whole request head, and to start the next one on a kept-alive connection.
REQUEST_TIMEOUT_SECONDS = 15.0
#: Largest file served (the client's files are a few tens of KiB).
MAX_FILE_BYTES = 4 * 1024 * 1024

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
}

REASONS = {
    200: "OK",
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    413: "Content Too Large",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
    505: "HTTP Version Not Supported",
}

_TOKEN = re.compile(rb"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_HOSTNAME = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.\-]+)(:\d+)?$")
_WILDCARDS = {"", "::", "0.0.0.0"}


def watch_path(ns: TrackNamespace) -> str:
    """The player's path for a broadcast: `/watch/` and the namespace fields, each percent-encoded (every byte
    but RFC 3986's unreserved ones, '/' included), joined by '/'. The page decodes it the same way."""
    return "/watch/" + "/".join(quote(f, safe="") for f in ns)


def call_path(room: TrackNamespace) -> str:
    """The call page's path for a room (a namespace prefix its participants publish under), named as `watch_path`
    names a broadcast: `/call/team`."""
    return "/call/" + "/".join(quote(f, safe="") for f in room)


@dataclass
class Response:
    status: int
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"
    headers: list[tuple[str, str]] = field(default_factory=list)
    close: bool = False


class _BadRequest(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


class WebServer:
    """The HTTP server for the pages (see the module docstring). Start it with `start()` or `start_web()`."""

    def __init__(
        self,
        *,
        relay_port: int,
        relay_host: str = "::",
        fingerprint: str | Callable[[], str | None] | None = None,
        drafts: Sequence[int] = (),
        root: Path = WEB_ROOT,
        ssl_context: ssl.SSLContext | None = None,
        max_connections: int = MAX_CONNECTIONS,
        request_timeout: float = REQUEST_TIMEOUT_SECONDS,
        stats: Callable[[], dict[str, Any]] | None = None,
    ) -> None:
        """`relay_port` / `relay_host`: where the relay's WebTransport listens (its bind address); `fingerprint`:
        the development certificate's sha-256 in hex, or a function giving the current one (the relay renews its
        development certificate while it runs, so each page load must read it afresh); None for a certificate
        browsers trust by themselves. `stats`: what `/stats` shows (404 without it)."""
        self.relay_port = relay_port
        self.relay_host = relay_host
        self.fingerprint = fingerprint
        self.drafts = tuple(drafts)
        self.root = root.resolve()
        self.ssl_context = ssl_context
        self.max_connections = max_connections
        self.request_timeout = request_timeout
        self.stats = stats
        self.connections = 0
        self.refused = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def scheme(self) -> str:
        return "https" if self.ssl_context is not None else "http"

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the web server is not started")
        return int(self._server.sockets[0].getsockname()[1])

    def url(self, host: str = "localhost", path: str = "/") -> str:
        """The address of a page, e.g. `url("127.0.0.1", watch_path(ns))`."""
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        return f"{self.scheme}://{host}:{self.port}{path}"

    async def start(self, host: str = "::", port: int = 8080) -> None:
        """Listen on `host` (`::`: every IPv6 and IPv4 address, one socket) and `port` (0: any free one)."""
        if host in _WILDCARDS and socket.has_dualstack_ipv6():
            sock = socket.create_server(("::", port), family=socket.AF_INET6, dualstack_ipv6=True)
            self._server = await asyncio.start_server(
                self._connection, sock=sock, ssl=self.ssl_context, limit=MAX_REQUEST_HEAD_BYTES
            )
        else:
            self._server = await asyncio.start_server(
                self._connection,
                host="0.0.0.0" if host in _WILDCARDS else host,
                port=port,
                ssl=self.ssl_context,
                limit=MAX_REQUEST_HEAD_BYTES,
            )
        logger.info("web pages on %s port %d", self.scheme.upper(), self.port)

    async def close(self) -> None:
        """Stop listening and close every connection."""
        if self._server is None:
            return
        self._server.close()
        for writer in list(self._writers):
            writer.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._server.wait_closed(), 2.0)

    # -- connections --------------------------------------------------------------------------------------------

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.connections >= self.max_connections:
            self.refused += 1
            with contextlib.suppress(Exception):
                self._write(writer, Response(503, b"too many connections\n", close=True), head_only=False)
                await asyncio.wait_for(writer.drain(), 2.0)
            writer.close()
            return
        self.connections += 1
        self._writers.add(writer)
        try:
            for _ in range(MAX_REQUESTS_PER_CONNECTION):
                if not await self._one_request(reader, writer):
                    break
        except (ConnectionError, TimeoutError, ssl.SSLError, asyncio.IncompleteReadError):
            pass  # the client went away or was too slow: nothing to answer
        except Exception:
            logger.exception("web request failed")
        finally:
            self.connections -= 1
            self._writers.discard(writer)
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 2.0)

    async def _one_request(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Read and answer one request; False when the connection is to be closed."""
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), self.request_timeout)
        except asyncio.IncompleteReadError as exc:
            if exc.partial.strip():
                self._write(writer, Response(400, b"incomplete request\n", close=True), head_only=False)
                await writer.drain()
            return False
        except asyncio.LimitOverrunError:
            self._write(writer, Response(431, b"request head too large\n", close=True), head_only=False)
            await writer.drain()
            return False
        except TimeoutError:
            return False  # idle, or too slow to say what it wants
        head_only = False
        try:
            method, target, version, headers = _parse_head(head)
            head_only = method == "HEAD"
            response = self._respond(method, target, headers)
            keep = version == "HTTP/1.1" and "close" not in headers.get("connection", "").lower()
            response.close = response.close or not keep
        except _BadRequest as exc:
            response = Response(exc.status, f"{exc}\n".encode(), close=True)
        self._write(writer, response, head_only)
        await writer.drain()
        return not response.close

    def _write(self, writer: asyncio.StreamWriter, response: Response, head_only: bool) -> None:
        reason = REASONS.get(response.status, "Unknown")
        lines = [
            f"HTTP/1.1 {response.status} {reason}",
            f"Date: {email.utils.formatdate(usegmt=True)}",
            "Server: moq-relay",
            f"Content-Type: {response.content_type}",
            f"Content-Length: {len(response.body)}",
            "Cache-Control: no-cache",
            "X-Content-Type-Options: nosniff",
            "Referrer-Policy: no-referrer",
            *(f"{name}: {value}" for name, value in response.headers),
            f"Connection: {'close' if response.close else 'keep-alive'}",
        ]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        if not head_only:
            writer.write(response.body)

    # -- routing ------------------------------------------------------------------------------------------------

    def _respond(self, method: str, target: str, headers: dict[str, str]) -> Response:
        # A body is never read: the connection closes after the answer, so its bytes cannot pass for a request.
        has_body = int(headers.get("content-length", "0") or "0") > 0 or "transfer-encoding" in headers
        if method not in ("GET", "HEAD"):
            return Response(405, b"only GET and HEAD\n", headers=[("Allow", "GET, HEAD")], close=has_body)
        if has_body:
            return Response(413, b"requests here carry no body\n", close=True)
        path = _request_path(target)
        if path == "/config.json":
            return Response(200, self._config(headers.get("host", "")), "application/json")
        if path == "/stats" and self.stats is not None:
            return Response(200, json.dumps(self.stats()).encode(), "application/json")
        if path == "/" or path == "/index.html":
            return self._file("index.html")
        if path.startswith("/watch/") or path == "/watch":
            return self._file("watch.html")
        if path.startswith("/call/") or path == "/call":
            return self._file("call.html")
        return self._file(path.lstrip("/"))

    def _config(self, host_header: str) -> bytes:
        """What the page needs to reach the relay (see the module docstring)."""
        host = self.relay_host
        if host in _WILDCARDS:
            match = _HOSTNAME.match(host_header)
            host = match.group(1) if match else "localhost"
            if host == "localhost" and self.relay_host == "0.0.0.0":
                host = "127.0.0.1"  # Chromium tries ::1 first for localhost, where an IPv4-only relay is not
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        config = {
            "url": f"https://{host}:{self.relay_port}/",
            "fingerprint": self.fingerprint() if callable(self.fingerprint) else self.fingerprint,
            "drafts": list(self.drafts),
        }
        return json.dumps(config).encode()

    def _file(self, relative: str) -> Response:
        parts = relative.split("/")
        if any(p in ("", ".", "..") or p.startswith(".") for p in parts):
            return Response(403 if any(p in (".", "..") for p in parts) else 404, b"not found\n")
        content_type = CONTENT_TYPES.get(Path(parts[-1]).suffix.lower())
        if content_type is None:
            return Response(404, b"not found\n")
        path = self.root.joinpath(*parts)
        try:
            resolved = path.resolve(strict=True)
        except (OSError, RuntimeError):
            return Response(404, b"not found\n")
        if not resolved.is_relative_to(self.root):
            return Response(403, b"outside the web root\n")
        try:
            if not resolved.is_file() or resolved.stat().st_size > MAX_FILE_BYTES:
                return Response(404, b"not found\n")
            body = resolved.read_bytes()  # small files: reading them costs less than a thread hop
        except OSError:
            return Response(404, b"not found\n")
        return Response(200, body, content_type)


def _parse_head(head: bytes) -> tuple[str, str, str, dict[str, str]]:
    """(method, target, version, headers with lower-case names) of a request head; `_BadRequest` if malformed."""
    lines = head[:-4].split(b"\r\n")
    request_line = lines[0].split(b" ")
    if len(request_line) != 3 or not _TOKEN.match(request_line[0]):
        raise _BadRequest(400, "malformed request line")
    method, target, version = (part.decode("latin-1") for part in request_line)
    if not version.startswith("HTTP/1."):
        raise _BadRequest(505, "HTTP/1.x only")
    if version not in ("HTTP/1.0", "HTTP/1.1"):
        raise _BadRequest(505, "HTTP/1.0 or HTTP/1.1 only")
    if not target.startswith("/"):
        raise _BadRequest(400, "only origin-form targets (/path)")
    if len(lines) - 1 > MAX_HEADER_FIELDS:
        raise _BadRequest(431, "too many header fields")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon or not _TOKEN.match(name):
            raise _BadRequest(400, "malformed header field")  # includes obsolete line folding
        key = name.decode("latin-1").lower()
        text = value.strip(b" \t").decode("latin-1")
        headers[key] = f"{headers[key]}, {text}" if key in headers else text
    if version == "HTTP/1.1" and "host" not in headers:
        raise _BadRequest(400, "HTTP/1.1 needs a Host header")
    length = headers.get("content-length", "0")
    if not length.isdigit():
        raise _BadRequest(400, "bad Content-Length")
    return method, target, version, headers


def _request_path(target: str) -> str:
    """The decoded path of an origin-form target (query dropped); refused when it could escape the web root."""
    raw = target.split("?", 1)[0].split("#", 1)[0]
    try:
        path = unquote_to_bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        raise _BadRequest(400, "the path is not UTF-8") from None
    if "\0" in path or "\\" in path:
        raise _BadRequest(403, "forbidden character in the path")
    if path.startswith(("/watch/", "/call/")):
        return path  # the player's or the call's page, whatever the broadcast's or room's name holds
    if any(segment in (".", "..") for segment in path.split("/")):
        raise _BadRequest(403, "path traversal refused")
    return path


def _display_host(bind: str) -> str:
    if bind == "0.0.0.0":
        return "127.0.0.1"
    return "localhost" if bind in _WILDCARDS else bind


async def start_web(
    running: RunningRelay,
    config: RelayConfig,
    *,
    port: int | None = None,
    stats: Callable[[], dict[str, Any]] | None = None,
) -> WebServer:
    """Serve the pages for a running relay on `config.web_port` (or `port`), HTTPS when the relay has a
    configured certificate (`--cert`), plain HTTP with a development one (localhost is a secure context);
    `stats` for `/stats`."""
    context: ssl.SSLContext | None = None
    if config.cert:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(config.cert, config.key)
    server = WebServer(
        relay_port=running.port,
        relay_host=config.bind,
        fingerprint=lambda: running.certificate.fingerprint_hex if running.dev_certificate else None,
        drafts=[int(v) for v in running.server.versions],
        ssl_context=context,
        stats=stats,
    )
    await server.start(config.bind, config.web_port if port is None else port)
    return server


def describe_web(server: WebServer, bind: str) -> None:
    """Log where a person points a browser."""
    host = _display_host(bind)
    logger.info("broadcasts: %s", server.url(host))
    logger.info("watch one:  %s", server.url(host, "/watch/NAME") + "  (NAME: the namespace, '/' between fields)")
    logger.info("call:       %s", server.url(host, "/call/ROOM") + "  (everyone on the same ROOM is in the call)")
