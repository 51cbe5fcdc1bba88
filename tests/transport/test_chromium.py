"""Real headless Chromium against our server over WebTransport.

The page (tests/transport/web/webtransport.html) is served over plain HTTP from 127.0.0.1 (a secure context)
by a tiny asyncio HTTP server of our own; it opens `new WebTransport(url, {serverCertificateHashes,
protocols})` to our MOQT server, runs its checks and POSTs a JSON result back to that HTTP server. No
selenium, no DevTools: Chromium is launched with the headless flags from PLATFORM.md and killed afterwards.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

from moq.transport import (
    CertificateBundle,
    DatagramReceived,
    SessionClosed,
    StreamDataReceived,
    StreamReset,
    TransportConnection,
    serve,
)
from moq.wire.version import Version
from tests.transport.helpers import run

CHROMIUM = os.environ.get("MOQ_CHROMIUM", "/usr/bin/chromium")
PAGE = Path(__file__).parent / "web" / "webtransport.html"

pytestmark = [
    pytest.mark.network,
    # `make test` sets MOQ_REQUIRE_BROWSER: there a missing browser fails the run instead of skipping it.
    pytest.mark.skipif(
        shutil.which(CHROMIUM) is None and not os.environ.get("MOQ_REQUIRE_BROWSER"),
        reason=f"{CHROMIUM} not found: apt-get install -y chromium (or set MOQ_CHROMIUM)",
    ),
]

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]


class PageServer:
    """Serves the test page and receives the page's JSON result (HTTP/1.1, one request per connection)."""

    def __init__(self) -> None:
        self.result: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._server: asyncio.Server | None = None

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request_line = (await reader.readline()).decode("latin-1").split()
            headers: dict[str, str] = {}
            while (line := (await reader.readline()).decode("latin-1").strip()) != "":
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            method, target = request_line[0], request_line[1]
            if method == "GET" and target.startswith("/webtransport.html"):
                self._reply(writer, 200, PAGE.read_bytes(), "text/html; charset=utf-8")
            elif method == "POST" and target == "/result":
                if not self.result.done():
                    self.result.set_result(json.loads(body))
                self._reply(writer, 204, b"", "text/plain")
            else:
                self._reply(writer, 404, b"not found", "text/plain")
            await writer.drain()
        finally:
            writer.close()

    @staticmethod
    def _reply(writer: asyncio.StreamWriter, status: int, body: bytes, content_type: str) -> None:
        head = (
            f"HTTP/1.1 {status} X\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
            "Cache-Control: no-store\r\nConnection: close\r\n\r\n"
        )
        writer.write(head.encode("latin-1") + body)


class ServerSide:
    """What our MOQT server does with the browser's session, and what it saw."""

    def __init__(self) -> None:
        self.established: asyncio.Future[TransportConnection] = asyncio.get_running_loop().create_future()
        self.closed: asyncio.Future[SessionClosed] = asyncio.get_running_loop().create_future()
        self.reset_codes: list[int | None] = []
        self.echoed = b""

    async def handle(self, connection: TransportConnection) -> None:
        self.established.set_result(connection)
        buffers: dict[int, bytes] = {}
        async for event in connection:
            if isinstance(event, StreamDataReceived) and event.stream_id % 4 == 0:  # the browser's bidi stream
                buffers[event.stream_id] = buffers.get(event.stream_id, b"") + event.data
                if event.end_stream:
                    self.echoed = buffers.pop(event.stream_id)
                    connection.send(event.stream_id, self.echoed, end_stream=True)
                    uni = await connection.open_uni_stream()
                    connection.send(uni, b"hello from the server", end_stream=True)
            elif isinstance(event, DatagramReceived):
                connection.send_datagram(event.data)
            elif isinstance(event, StreamReset):
                self.reset_codes.append(event.code)
                go = await connection.open_uni_stream()
                connection.send(go, b"go", end_stream=True)
            elif isinstance(event, SessionClosed):
                self.closed.set_result(event)


async def launch_chromium(url: str, profile: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        CHROMIUM,
        *CHROMIUM_FLAGS,
        f"--user-data-dir={profile}",
        url,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )


async def stop(process: asyncio.subprocess.Process) -> str:
    """Kill Chromium (our own child, by its process object) and return what it wrote to stderr."""
    if process.returncode is None:
        process.kill()
    _, stderr = await process.communicate()
    return stderr.decode(errors="replace")[-3000:]


async def chromium_session(certificate: CertificateBundle, protocols: list[str]) -> None:
    side = ServerSide()
    server = await serve("127.0.0.1", 0, certificate=certificate, handler=side.handle)
    pages = PageServer()
    http_port = await pages.start()
    wt_url = f"https://127.0.0.1:{server.port}/moq"
    page_url = (
        f"http://127.0.0.1:{http_port}/webtransport.html?url={wt_url}"
        f"&hash={certificate.fingerprint_hex}&protocols={','.join(protocols)}"
    )
    with tempfile.TemporaryDirectory(prefix="moq-chromium-") as profile:
        started = time.perf_counter()
        browser = await launch_chromium(page_url, profile)
        stderr = ""
        try:
            result = await asyncio.wait_for(asyncio.shield(pages.result), 20)
            connection = await asyncio.wait_for(side.established, 1)
            closed = await asyncio.wait_for(side.closed, 5)
        except TimeoutError:
            stderr = await stop(browser)
            raise AssertionError(f"Chromium did not finish; its stderr:\n{stderr}") from None
        finally:
            if not stderr:
                stderr = await stop(browser)
            server.close()
            await server.wait_closed()
            await pages.close()
        print(f"\nChromium WebTransport round trip: {time.perf_counter() - started:.2f} s, result {result}")

    assert "error" not in result, f"page failed: {result}\nChromium stderr:\n{stderr}"
    expected = next(Version.from_alpn(p) for p in protocols if Version.from_alpn(p) is not None)
    assert connection.transport_kind == "webtransport"
    assert connection.version == expected
    assert result["protocol"] == expected.alpn  # transport.protocol in the page
    assert connection.path == "/moq"
    assert result["echo"] == "ping from chromium" == side.echoed.decode()
    assert result["uni"] == "hello from the server"
    assert result["datagram"] == "datagram from chromium"
    assert side.reset_codes == [42]  # Chromium's WebTransportError streamErrorCode, mapped back by us
    assert result["closed"] == {"closeCode": 4242, "reason": "bye from chromium"}
    assert closed.code == 4242
    assert closed.reason == "bye from chromium"
    assert closed.by_peer


def test_chromium_webtransport_session(certificate: CertificateBundle) -> None:
    """Chromium negotiates moqt-22 from ["moqt-22", "moqt-18"], echoes, exchanges datagrams, resets, closes."""
    run(chromium_session(certificate, ["moqt-22", "moqt-18"]), deadline=28)


def test_chromium_negotiates_older_draft(certificate: CertificateBundle) -> None:
    """When the page offers only moqt-18, that is what both sides agree on."""
    run(chromium_session(certificate, ["moqt-18"]), deadline=28)


async def refused_session(certificate: CertificateBundle) -> dict[str, Any]:
    side = ServerSide()
    server = await serve("127.0.0.1", 0, certificate=certificate, handler=side.handle)
    pages = PageServer()
    http_port = await pages.start()
    page_url = (
        f"http://127.0.0.1:{http_port}/webtransport.html?url=https://127.0.0.1:{server.port}/moq"
        f"&hash={certificate.fingerprint_hex}&protocols=moqt-99,moqt-15"
    )
    with tempfile.TemporaryDirectory(prefix="moq-chromium-") as profile:
        browser = await launch_chromium(page_url, profile)
        try:
            return await asyncio.wait_for(asyncio.shield(pages.result), 20)
        finally:
            await stop(browser)
            assert not side.established.done()
            server.close()
            await server.wait_closed()
            await pages.close()


def test_chromium_without_common_version_is_refused(certificate: CertificateBundle) -> None:
    """A page offering only drafts we do not speak gets no session (ready rejects)."""
    result = run(refused_session(certificate), deadline=28)
    print(f"\nChromium refused as expected: {result}")
    assert result["steps"] == []
    assert "error" in result
