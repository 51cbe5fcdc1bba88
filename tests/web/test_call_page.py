"""The relay's page server and the call page: `/call/ROOM` serves `call.html` whatever the room's name holds, and
`call_path` names a room as the page reads it (the same encoding as `watch_path`)."""

from __future__ import annotations

import asyncio

import pytest

from relay.web import WEB_ROOT, WebServer, call_path, watch_path

pytestmark = pytest.mark.network


async def _get(server: WebServer, path: str) -> tuple[int, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
    raw = await reader.read()
    writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), body


def test_call_pages_are_served_for_any_room() -> None:
    async def scenario() -> None:
        server = WebServer(relay_port=4443, relay_host="127.0.0.1")
        await server.start("127.0.0.1", 0)
        try:
            page = (WEB_ROOT / "call.html").read_bytes()
            for path in ("/call/team", "/call/team?name=alice&watch=live/demo", "/call/a%2F..%2Fb/c", "/call"):
                assert await _get(server, path) == (200, page), path
            status, body = await _get(server, "/js/call.js")
            assert status == 200 and b"SUBSCRIBE_NAMESPACE" in body
        finally:
            await server.close()

    asyncio.run(asyncio.wait_for(scenario(), 10))


def test_call_path_encodes_a_room_as_watch_path_names_a_broadcast() -> None:
    assert call_path((b"team",)) == "/call/team"
    assert call_path((b"my team", b"a/b")) == "/call/my%20team/a%2Fb"
    assert call_path((b"x", b"y")).removeprefix("/call/") == watch_path((b"x", b"y")).removeprefix("/watch/")
