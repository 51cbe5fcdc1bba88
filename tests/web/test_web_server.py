"""The relay's page server (relay/web.py) over real TCP on loopback: what it serves, what it refuses, its bounds.

Requests are written by hand on raw sockets, so malformed and hostile ones can be sent as they are.
"""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import json
import ssl
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import pytest

from moq.transport.tls import generate_dev_certificate
from relay.config import RelayConfig
from relay.server import start_relay
from relay.web import MAX_REQUEST_HEAD_BYTES, WEB_ROOT, WebServer, start_web, watch_path

pytestmark = pytest.mark.network

T = TypeVar("T")
DEADLINE = 10.0


def run(coro: Coroutine[Any, Any, T]) -> T:
    async def guarded() -> T:
        return await asyncio.wait_for(coro, DEADLINE)

    return asyncio.run(guarded())


@asynccontextmanager
async def pages(**options: Any) -> AsyncIterator[WebServer]:
    options.setdefault("relay_port", 4443)
    options.setdefault("relay_host", "127.0.0.1")
    server = WebServer(fingerprint="ab" * 32, drafts=[22, 18], **options)
    await server.start("127.0.0.1", 0)
    try:
        yield server
    finally:
        await server.close()


class Reply:
    def __init__(self, raw: bytes) -> None:
        head, _, self.body = raw.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        self.status = int(lines[0].split()[1])
        self.headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}


async def exchange(port: int, raw: bytes) -> Reply:
    """Send `raw` on a new connection and read the reply until the server closes the connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(raw)
    await writer.drain()
    data = await reader.read()
    writer.close()
    return Reply(data)


def get(path: str, *extra: str, method: str = "GET") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", *extra, "Connection: close", "", ""]
    return "\r\n".join(lines).encode()


def test_serves_the_pages_the_scripts_and_the_config() -> None:
    async def scenario() -> None:
        async with pages() as server:
            index = await exchange(server.port, get("/"))
            assert index.status == 200
            assert index.headers["content-type"] == "text/html; charset=utf-8"
            assert index.body == (WEB_ROOT / "index.html").read_bytes()
            assert int(index.headers["content-length"]) == len(index.body)
            watch = await exchange(server.port, get("/watch/live/late%20show%2F2?trace=1"))
            assert watch.status == 200 and watch.body == (WEB_ROOT / "watch.html").read_bytes()
            script = await exchange(server.port, get("/js/player.js"))
            assert script.status == 200 and script.headers["content-type"] == "text/javascript; charset=utf-8"
            assert script.headers["x-content-type-options"] == "nosniff"
            style = await exchange(server.port, get("/css/moq.css"))
            assert style.status == 200 and style.headers["content-type"] == "text/css; charset=utf-8"
            config = await exchange(server.port, get("/config.json"))
            assert config.headers["content-type"] == "application/json"
            assert json.loads(config.body) == {
                "url": "https://127.0.0.1:4443/",
                "fingerprint": "ab" * 32,
                "drafts": [22, 18],
            }
            head = await exchange(server.port, get("/js/player.js", method="HEAD"))
            assert head.status == 200 and head.body == b""
            assert int(head.headers["content-length"]) == len(script.body)

    run(scenario())


def test_config_names_the_host_the_page_was_loaded_from_when_the_relay_listens_everywhere() -> None:
    async def scenario() -> None:
        async with pages(relay_host="::") as server:
            for host, url in [
                ("localhost:8080", "https://localhost:4443/"),
                ("[::1]:8080", "https://[::1]:4443/"),
                ("127.0.0.1", "https://127.0.0.1:4443/"),
                ("evil/path", "https://localhost:4443/"),  # not a host name: fall back
            ]:
                reply = await exchange(
                    server.port, get("/config.json").replace(b"Host: 127.0.0.1", f"Host: {host}".encode())
                )
                assert json.loads(reply.body)["url"] == url, host

    run(scenario())


def test_path_traversal_and_files_outside_the_client_are_refused(tmp_path: Path) -> None:
    root = tmp_path / "web"
    (root / "js").mkdir(parents=True)
    (root / "js" / "ok.js").write_text("export {};")
    (root / ".hidden.js").write_text("secret")
    (tmp_path / "secret.js").write_text("secret")
    (root / "js" / "link.js").symlink_to(tmp_path / "secret.js")

    async def scenario() -> None:
        async with pages(root=root) as server:
            assert (await exchange(server.port, get("/js/ok.js"))).status == 200
            for path in [
                "/../secret.js",
                "/js/../../secret.js",
                "/js/%2e%2e/%2e%2e/secret.js",
                "/%2E%2E%2Fsecret.js",
                "/js/..%5c..%5csecret.js",
                "/js/ok.js%00.html",
                "/./js/ok.js",
            ]:
                reply = await exchange(server.port, get(path))
                assert reply.status == 403, path
                assert b"secret" not in reply.body
            assert (await exchange(server.port, get("/js/link.js"))).status == 403  # a symlink out of the root
            for path in ["/.hidden.js", "/js/", "/js", "/README.md", "/nothing.js", "/js/ok.js/x.js"]:
                assert (await exchange(server.port, get(path))).status == 404, path

    run(scenario())


def test_refuses_other_methods_bodies_and_malformed_requests() -> None:
    async def scenario() -> None:
        async with pages() as server:
            post = await exchange(server.port, get("/", method="POST"))
            assert post.status == 405 and post.headers["allow"] == "GET, HEAD"
            body = await exchange(server.port, get("/", "Content-Length: 5") + b"hello")
            assert body.status == 413
            chunked = await exchange(server.port, get("/", "Transfer-Encoding: chunked"))
            assert chunked.status == 413
            assert (await exchange(server.port, b"GARBAGE\r\n\r\n")).status == 400
            assert (await exchange(server.port, b"GET / HTTP/2.0\r\nHost: x\r\n\r\n")).status == 505
            assert (await exchange(server.port, b"GET http://x/ HTTP/1.1\r\nHost: x\r\n\r\n")).status == 400
            assert (await exchange(server.port, b"GET / HTTP/1.1\r\n\r\n")).status == 400  # no Host
            folded = b"GET / HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n"
            assert (await exchange(server.port, folded)).status == 400
            huge = get("/", "X-Filler: " + "a" * MAX_REQUEST_HEAD_BYTES)
            assert (await exchange(server.port, huge)).status == 431

    run(scenario())


def test_keeps_connections_alive_and_bounds_them() -> None:
    async def scenario() -> None:
        async with pages(max_connections=2, request_timeout=0.5) as server:
            # Two requests on one connection.
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            for _ in range(2):
                writer.write(b"GET /config.json HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                head = await reader.readuntil(b"\r\n\r\n")
                assert head.startswith(b"HTTP/1.1 200") and b"Connection: keep-alive" in head
                length = int(
                    next(v for k, _, v in (h.partition(b":") for h in head.split(b"\r\n")) if k == b"Content-Length")
                )
                await reader.readexactly(length)
            # A second connection fills the bound; a third is turned away at once.
            other = await asyncio.open_connection("127.0.0.1", server.port)
            while server.connections < 2:
                await asyncio.sleep(0.01)
            refused = await exchange(server.port, get("/"))
            assert refused.status == 503 and server.refused == 1
            # An idle connection is closed after the request timeout, which frees its place.
            assert await asyncio.wait_for(reader.read(), 3) == b""
            assert await asyncio.wait_for(other[0].read(), 3) == b""
            writer.close()
            other[1].close()
            assert (await exchange(server.port, get("/"))).status == 200

    run(scenario())


def test_start_web_serves_a_running_relay_and_its_development_certificate(tmp_path: Path) -> None:
    async def scenario() -> None:
        config = RelayConfig(bind="127.0.0.1", port=0, state_dir=str(tmp_path), web_port=0, versions=[18])
        running = await start_relay(config)
        web = await start_web(running, config)
        try:
            reply = await exchange(web.port, get("/config.json"))
            assert json.loads(reply.body) == {
                "url": f"https://127.0.0.1:{running.port}/",
                "fingerprint": running.certificate.fingerprint_hex,
                "drafts": [18],
            }
            assert web.url("127.0.0.1", watch_path((b"live", b"a b/c"))).endswith("/watch/live/a%20b%2Fc")
            # The relay renews its development certificate while it runs: the next page load gets the new pin.
            old = running.certificate.fingerprint_hex
            assert running.renew_certificate(datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=9))
            reply = await exchange(web.port, get("/config.json"))
            assert json.loads(reply.body)["fingerprint"] == running.certificate.fingerprint_hex != old
        finally:
            await web.close()
            await running.stop()

    run(scenario())


def test_pages_go_over_https_when_the_relay_has_a_certificate_of_its_own(tmp_path: Path) -> None:
    """With --cert the pages are HTTPS, with the same certificate, and the page pins nothing (a certificate
    browsers trust is not pinned: serverCertificateHashes only takes short-lived ones)."""
    certificate = generate_dev_certificate()
    certificate.save(tmp_path / "cert.pem", tmp_path / "key.pem")

    async def scenario() -> None:
        config = RelayConfig(
            bind="127.0.0.1",
            port=0,
            web_port=0,
            state_dir=str(tmp_path / "state"),
            cert=str(tmp_path / "cert.pem"),
            key=str(tmp_path / "key.pem"),
        )
        running = await start_relay(config)
        web = await start_web(running, config)
        try:
            assert web.scheme == "https" and web.url("127.0.0.1").startswith("https://")
            context = ssl.create_default_context(cafile=str(tmp_path / "cert.pem"))
            reader, writer = await asyncio.open_connection("127.0.0.1", web.port, ssl=context)
            served = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
            assert hashlib.sha256(served).hexdigest() == certificate.fingerprint_hex
            writer.write(get("/config.json"))
            reply = Reply(await reader.read())
            writer.close()
            assert reply.status == 200
            assert json.loads(reply.body)["fingerprint"] is None
        finally:
            await web.close()
            await running.stop()

    run(scenario())
