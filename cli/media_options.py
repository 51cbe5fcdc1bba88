"""Options `moq publish` and `moq subscribe` share, and their value types (light: no media or network imports)."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any, TypeVar

import click

_BITRATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kKmMgG]?)(?:bit/s|bps|b)?\s*$")


def parse_bitrate(text: str) -> int:
    """'2M', '800k', '1500000' -> bits per second."""
    match = _BITRATE.match(text)
    if match is None:
        raise ValueError(f"{text!r} is not a bitrate (e.g. 2M, 800k, 1500000)")
    scale = {"": 1, "k": 1_000, "m": 1_000_000, "g": 1_000_000_000}[match.group(2).lower()]
    value = round(float(match.group(1)) * scale)
    if value <= 0:
        raise ValueError(f"{text!r}: a bitrate must be positive")
    return value


_NAMED_SIZES = {"180p": (320, 180), "360p": (640, 360), "480p": (854, 480), "720p": (1280, 720), "1080p": (1920, 1080)}


def parse_resolution(text: str) -> tuple[int, int]:
    """'1280x720' or '720p' -> (1280, 720)."""
    named = _NAMED_SIZES.get(text.lower())
    if named is not None:
        return named
    match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if match is None:
        raise ValueError(f"{text!r} is not a resolution (e.g. 1280x720 or 720p)")
    width, height = int(match.group(1)), int(match.group(2))
    if not (16 <= width <= 8192 and 16 <= height <= 8192):
        raise ValueError(f"{text!r}: width and height must be 16 to 8192 pixels")
    return width, height


class _Bitrate(click.ParamType[int]):
    name = "BITRATE"

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        try:
            return parse_bitrate(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


class _Resolution(click.ParamType[tuple[int, int]]):
    name = "WxH"

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> tuple[int, int]:
        if isinstance(value, tuple):
            return (int(value[0]), int(value[1]))
        try:
            return parse_resolution(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


BITRATE = _Bitrate()
RESOLUTION = _Resolution()


F = TypeVar("F", bound=Callable[..., Any])


def report_options(func: F) -> F:
    """--stats-interval, --quiet and --log-level, shared by publish and subscribe."""
    func = click.option(
        "--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default="warning", show_default=True
    )(func)
    func = click.option("--quiet", "-q", is_flag=True, help="No live statistics lines.")(func)
    func = click.option(
        "--stats-interval",
        type=click.FloatRange(min=0.1),
        default=1.0,
        show_default=True,
        help="Seconds between live lines.",
    )(func)
    return func


def tls_options(func: F) -> F:
    """--fingerprint and --tls-disable-verify, shared by publish and subscribe."""
    func = click.option(
        "--tls-disable-verify",
        is_flag=True,
        help="Do not verify the relay's certificate (development only).",
    )(func)
    func = click.option(
        "--fingerprint",
        metavar="SHA256",
        help="Pin the relay's certificate by its SHA-256 (hex, colons optional): a development relay prints it.",
    )(func)
    return func


def quiet_transport_logs(level: str) -> None:
    """Below info, keep the transport's own account of a failed connection out of the way: the command says what
    went wrong in one line of its own."""
    if level in ("warning", "error"):
        for name in ("quic", "moq.transport"):
            logging.getLogger(name).setLevel(logging.ERROR)
