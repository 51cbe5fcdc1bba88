"""Headless Chromium driven over the DevTools protocol on a pipe, with nothing but the standard library.

`--remote-debugging-pipe` makes Chromium read DevTools commands from file descriptor 3 and write replies and
events to descriptor 4, each message a JSON text ended by a NUL byte: no port to find, no WebSocket client to
write. The pipes are put on 3 and 4 by bash (`exec 3<&N 4>&M`; dash refuses descriptors above 9) rather than by a
`preexec_fn`, which is unsafe in a process that runs threads (the media pipeline does).

The browser is launched with the flags PLATFORM.md lists for root on this machine, a fresh profile, autoplay
allowed (the player's AudioContext starts without a click) and audio muted. A test opens a page, evaluates
expressions in it (`evaluate`), and polls a condition inside a deadline (`wait_for`): no sleep stands in for an
event. The page's console and uncaught exceptions are kept (`console`), for the failure messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from typing import Any

CHROMIUM = os.environ.get("MOQ_CHROMIUM", "/usr/bin/chromium")
BASH = shutil.which("bash") or "/bin/bash"

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--autoplay-policy=no-user-gesture-required",
    "--mute-audio",
    "--remote-debugging-pipe",
]

#: A fake camera and microphone (a test pattern and a beep), granted without asking: for pages that capture.
FAKE_MEDIA_FLAGS = ("--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream")

#: Largest DevTools message we read (a `Runtime.evaluate` result with a long trace stays far below).
MAX_MESSAGE_BYTES = 32 * 1024 * 1024
#: Console lines kept for failure messages (the oldest go first).
MAX_CONSOLE_LINES = 400
#: How often `wait_for` asks the page.
POLL_SECONDS = 0.1
#: How long the browser gets to quit before it is killed.
QUIT_SECONDS = 5.0


def available() -> bool:
    return shutil.which(CHROMIUM) is not None


class PageError(AssertionError):
    """An expression failed in the page, or a condition did not come true in time."""


class Chromium:
    """One headless Chromium with one page, driven over DevTools (see the module docstring)."""

    def __init__(self, flags: Sequence[str] = ()) -> None:
        """`flags`: more command-line switches, e.g. `FAKE_MEDIA_FLAGS` for a page that captures."""
        self.flags = tuple(flags)
        self.console: list[str] = []
        self._process: asyncio.subprocess.Process | None = None
        self._profile: tempfile.TemporaryDirectory[str] | None = None
        self._writer: asyncio.WriteTransport | None = None
        self._reader: asyncio.StreamReader | None = None
        self._reading: asyncio.Task[None] | None = None
        self._next_id = 0
        self._replies: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._session: str | None = None

    async def start(self) -> None:
        """Launch the browser and attach to a blank page."""
        loop = asyncio.get_running_loop()
        to_browser_r, to_browser_w = os.pipe()
        from_browser_r, from_browser_w = os.pipe()
        # The child's ends move above 9 first, so that putting them on 3 and 4 cannot overwrite one another.
        for fd in (to_browser_r, from_browser_w):
            high = fcntl.fcntl(fd, fcntl.F_DUPFD, 10)
            os.close(fd)
            if fd == to_browser_r:
                to_browser_r = high
            else:
                from_browser_w = high
        self._profile = tempfile.TemporaryDirectory(prefix="moq-web-chromium-", ignore_cleanup_errors=True)
        script = f'exec "$@" 3<&{to_browser_r} 4>&{from_browser_w} {to_browser_r}<&- {from_browser_w}>&-'
        try:
            self._process = await asyncio.create_subprocess_exec(
                BASH,
                "-c",
                script,
                "sh",
                CHROMIUM,
                *FLAGS,
                *self.flags,
                f"--user-data-dir={self._profile.name}",
                "about:blank",
                pass_fds=(to_browser_r, from_browser_w),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=None if os.environ.get("MOQ_CHROMIUM_LOG") else asyncio.subprocess.DEVNULL,
            )
        finally:
            os.close(to_browser_r)
            os.close(from_browser_w)
        reader = self._reader = asyncio.StreamReader(limit=MAX_MESSAGE_BYTES)
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(from_browser_r, "rb", 0))
        self._writer, _ = await loop.connect_write_pipe(asyncio.Protocol, os.fdopen(to_browser_w, "wb", 0))
        self._reading = asyncio.ensure_future(self._read())
        target = await self.send("Target.createTarget", {"url": "about:blank"})
        attached = await self.send("Target.attachToTarget", {"targetId": target["targetId"], "flatten": True})
        self._session = attached["sessionId"]
        await self.send("Runtime.enable", session=True)

    async def open(self, url: str) -> None:
        """Load `url` in the page."""
        result = await self.send("Page.navigate", {"url": url}, session=True)
        if result.get("errorText"):
            raise PageError(f"cannot open {url}: {result['errorText']}")

    async def send(self, method: str, params: dict[str, Any] | None = None, *, session: bool = False) -> Any:
        """One DevTools command; its result (or PageError with the protocol's error)."""
        assert self._writer is not None
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = self._session
        reply: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._replies[self._next_id] = reply
        self._writer.write(json.dumps(message).encode() + b"\0")
        answer = await reply
        if "error" in answer:
            raise PageError(f"{method}: {answer['error']}")
        return answer.get("result", {})

    async def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (awaited when it is a promise)."""
        result = await self.send(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": True},
            session=True,
        )
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text")
            raise PageError(f"{expression!r} threw: {text}")
        return result["result"].get("value")

    async def wait_for(self, expression: str, condition: Callable[[Any], bool], timeout: float, what: str = "") -> Any:
        """Evaluate `expression` until `condition(value)` holds; its value then, or PageError after `timeout`."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        value: Any = None
        while True:
            with contextlib.suppress(PageError):  # e.g. the page is still loading its modules
                value = await self.evaluate(expression)
                if condition(value):
                    return value
            if loop.time() >= deadline:
                raise PageError(
                    f"timed out after {timeout} s waiting for {what or expression}; last value: {value!r}\n"
                    f"page console:\n{self.console_text()}"
                )
            await asyncio.sleep(POLL_SECONDS)  # the polling interval, not a stand-in for an event

    def console_text(self, last: int = 60) -> str:
        return "\n".join(self.console[-last:])

    async def close(self) -> None:
        """Ask the browser to quit (it takes its helper processes with it), kill it (our own child, by its
        process object) if it has not within `QUIT_SECONDS`, and remove its profile."""
        process = self._process
        if process is not None and process.returncode is None:
            with contextlib.suppress(PageError, TimeoutError):
                await asyncio.wait_for(self.send("Browser.close"), QUIT_SECONDS)
            try:
                await asyncio.wait_for(process.wait(), QUIT_SECONDS)
            except TimeoutError:
                process.kill()
                await process.wait()
        if self._writer is not None:
            self._writer.close()
        if self._reading is not None:
            self._reading.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reading
        for reply in self._replies.values():
            if not reply.done():
                reply.set_exception(PageError("the browser went away"))
        if self._profile is not None:
            self._profile.cleanup()

    async def __aenter__(self) -> Chromium:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def _read(self) -> None:
        assert self._reader is not None
        try:
            while True:
                data = await self._reader.readuntil(b"\0")
                message = json.loads(data[:-1])
                if "id" in message:
                    reply = self._replies.pop(message["id"], None)
                    if reply is not None and not reply.done():
                        reply.set_result(message)
                else:
                    self._event(message)
        except (asyncio.IncompleteReadError, ConnectionError):
            for reply in self._replies.values():
                if not reply.done():
                    reply.set_exception(PageError("the browser closed its DevTools pipe"))

    def _event(self, message: dict[str, Any]) -> None:
        method = message.get("method")
        params = message.get("params", {})
        if method == "Runtime.consoleAPICalled":
            parts = [str(arg.get("value", arg.get("description", ""))) for arg in params.get("args", [])]
            self._log(f"[{params.get('type')}] {' '.join(parts)}")
        elif method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            text = details.get("exception", {}).get("description") or details.get("text")
            self._log(f"[exception] {text}")

    def _log(self, line: str) -> None:
        self.console.append(line)
        if len(self.console) > MAX_CONSOLE_LINES:
            del self.console[: len(self.console) - MAX_CONSOLE_LINES]
