"""A machine-readable stamp for test-pattern frames: the frame number and the capture time as black/white cells.

lavfi's `testsrc2` already draws a running clock, a frame counter and moving shapes for a person to look at. This
FFmpeg build has no `drawtext` (no fontconfig/freetype), and a drawn number is hard for a test to read back, so each
frame also gets two rows of 32 cells in the luma plane, bottom left: the frame number, and the low 32 bits of the
capture wall clock in milliseconds. A receiver that decodes the frame reads them back with `read_stamp`, which
proves that the pixels it shows are the frame it thinks (order, no freeze) and gives glass-to-glass latency.

Cells are big (1/36 of the width, 1/20 of the height, at least 8x8 pixels) and pure black (Y=16) or white (Y=235),
so they survive H.264 at ordinary bitrates; a reader samples each cell's centre.
"""

from __future__ import annotations

import msgspec
from av.video.frame import VideoFrame

#: Bits per row: a frame number, then the capture time in ms modulo 2^32.
STAMP_BITS = 32
_BLACK = 16
_WHITE = 235


class Stamp(msgspec.Struct, frozen=True):
    """What a stamped frame carries."""

    frame_number: int
    wallclock_ms: int


def _geometry(width: int, height: int) -> tuple[int, int, int, int]:
    """(cell width, cell height, x of the first cell, y of the first row)."""
    cell_w = max(8, width // 36)
    cell_h = max(8, height // 20)
    if cell_w * (STAMP_BITS + 1) > width or cell_h * 3 > height:
        raise ValueError(f"a {width}x{height} frame is too small for the stamp")
    return cell_w, cell_h, cell_w // 2, height - cell_h * 5 // 2


def stamp_frame(frame: VideoFrame, frame_number: int, wallclock_ms: int) -> None:
    """Draw the stamp into `frame` (a planar YUV frame, made writable first)."""
    frame.make_writable()
    plane = frame.planes[0]
    line = plane.line_size
    cell_w, cell_h, x0, y0 = _geometry(frame.width, frame.height)
    white = bytes((_WHITE,)) * cell_w
    black = bytes((_BLACK,)) * cell_w
    view = memoryview(plane)  # VideoPlane implements the buffer protocol
    for row, value in enumerate((frame_number & 0xFFFFFFFF, wallclock_ms & 0xFFFFFFFF)):
        top = y0 + row * cell_h
        for bit in range(STAMP_BITS):
            cell = white if (value >> (STAMP_BITS - 1 - bit)) & 1 else black
            left = x0 + bit * cell_w
            for y in range(top, top + cell_h):
                offset = y * line + left
                view[offset : offset + cell_w] = cell


def read_stamp(frame: VideoFrame) -> Stamp:
    """Read the stamp back from a decoded frame (any planar YUV format; only luma is sampled)."""
    plane = frame.planes[0]
    line = plane.line_size
    cell_w, cell_h, x0, y0 = _geometry(frame.width, frame.height)
    data = bytes(plane)
    values = []
    for row in range(2):
        y = y0 + row * cell_h + cell_h // 2
        value = 0
        for bit in range(STAMP_BITS):
            x = x0 + bit * cell_w + cell_w // 2
            value = (value << 1) | (data[y * line + x] > (_BLACK + _WHITE) // 2)
        values.append(value)
    return Stamp(values[0], values[1])
