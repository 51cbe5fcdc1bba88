"""Failures a person can act on: one clear line on stderr, non-zero exit."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli.main import main
from tests.cli.helpers import SMALL, moq, one_error_line, relay_args, relay_running, run


def free_udp_port() -> int:
    """A loopback UDP port nobody listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stderr


@pytest.fixture
def unreachable() -> str:
    return f"moqt://127.0.0.1:{free_udp_port()}/"


def test_missing_device(unreachable: str) -> None:
    code, err = invoke("publish", unreachable, "--name", "live/cam", "--input", "/dev/video99")
    assert code != 0
    assert one_error_line(err) == "Error: no such input device: /dev/video99"


def test_unreadable_file(tmp_path: Path, unreachable: str) -> None:
    missing = tmp_path / "missing.mp4"
    code, err = invoke("publish", unreachable, "--name", "live/f", "--input", str(missing))
    assert code != 0
    assert one_error_line(err).startswith(f"Error: cannot open {missing}: No such file")
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"this is not a movie" * 100)
    code, err = invoke("publish", unreachable, "--name", "live/f", "--input", str(garbage))
    assert code != 0
    assert one_error_line(err).startswith(f"Error: cannot open {garbage}")


def test_unsupported_codec_for_copy(mpeg4_file: Path, unreachable: str) -> None:
    code, err = invoke("publish", unreachable, "--name", "live/f", "--input", str(mpeg4_file), "--copy")
    assert code != 0
    assert one_error_line(err) == "Error: cannot --copy mpeg4 video: only H.264 passes through"


def test_unreachable_relay(unreachable: str) -> None:
    args = ["--name", "live/demo", "--timeout", "1"]
    code, err = invoke("publish", unreachable, *args, "--duration", "1", "--resolution", "320x180")
    assert code != 0
    assert one_error_line(err).startswith(f"Error: cannot reach the relay at {unreachable}")
    code, err = invoke("subscribe", unreachable, *args)
    assert code != 0
    assert one_error_line(err).startswith(f"Error: cannot reach the relay at {unreachable}")


def test_unpinned_development_certificate(tmp_path: Path) -> None:
    """A development relay's self-signed certificate without --fingerprint: the line says what to do."""

    async def scenario() -> None:
        async with relay_running(tmp_path) as relay:
            url = relay_args(relay)[0]
            async with moq("subscribe", url, "--name", "live/demo") as sub:
                assert await sub.wait() != 0
            assert "--fingerprint" in one_error_line(sub.stderr)

    run(scenario())


def test_subscribe_to_nothing(tmp_path: Path) -> None:
    """Nobody publishes live/demo: the relay answers REQUEST_ERROR DOES_NOT_EXIST, and the command says so."""

    async def scenario() -> None:
        async with relay_running(tmp_path) as relay:
            async with moq("subscribe", *relay_args(relay), "--name", "live/demo") as sub:
                assert await sub.wait() != 0
            assert one_error_line(sub.stderr) == "Error: nothing is published at live/demo"
            async with moq("subscribe", *relay_args(relay), "--name", "live/demo", "--wait", "0.5") as sub:
                assert await sub.wait() != 0
            assert one_error_line(sub.stderr) == "Error: nothing was published at live/demo within 0.5 s"

    run(scenario())


def test_bad_options() -> None:
    code, err = invoke("publish", "moqt://127.0.0.1:1/", "--name", "x", "--resolution", "big")
    assert code == 2 and "is not a resolution" in err
    code, err = invoke("publish", "moqt://127.0.0.1:1/", "--name", "x", "--bitrate", "fast")
    assert code == 2 and "is not a bitrate" in err
    code, err = invoke("publish", "moqt://127.0.0.1:1/", "--name", "x", "--no-audio", "--no-video")
    assert code == 2
    code, err = invoke("publish", "moqt://127.0.0.1:1/", "--name", "x", "--copy")
    assert code == 1 and one_error_line(err) == "Error: the test pattern is generated raw: there is nothing to --copy"
    code, err = invoke("subscribe", "ftp://127.0.0.1:1/", "--name", "x")
    assert code == 1 and "moqt://" in one_error_line(err)


def test_reader_of_the_pipe_goes_away(tmp_path: Path) -> None:
    """`moq subscribe --output - | head -c N`: once the reader closes the pipe, the command ends by itself."""

    async def scenario() -> None:
        async with relay_running(tmp_path) as relay:
            url = relay_args(relay)
            async with moq("publish", *url, "--name", "live/p", *SMALL, "-q") as pub:
                await pub.line("started the input")
                read_end, write_end = os.pipe()
                try:
                    async with moq(
                        "subscribe", *url, "--name", "live/p", "--output", "-", "-q", stdout=write_end
                    ) as sub:
                        os.close(write_end)
                        write_end = -1
                        data = b""
                        while len(data) < 188 * 10:  # some TS packets
                            chunk = await asyncio.to_thread(os.read, read_end, 4096)
                            assert chunk, sub.stderr
                            data += chunk
                        os.close(read_end)  # the reader goes away
                        read_end = -1
                        assert await sub.wait() != 0
                finally:
                    for fd in (read_end, write_end):
                        if fd >= 0:
                            os.close(fd)
                assert sub.lines[-1] == "Error: standard output was closed: whoever read the MPEG-TS went away"
                pub.process.send_signal(signal.SIGINT)
                await pub.succeeds()

    run(scenario())
