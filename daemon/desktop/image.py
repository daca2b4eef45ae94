"""The display's screen as a picture: read from the X server's own framebuffer, encoded.

Xvfb keeps its screen in a file (``-fbdir``), memory-mapped, in the X Window Dump format: a
header, a colour map, then the pixels, 32 bits each (``BGRX`` in the server's byte order), one
row after another. Reading that file is the cheapest screenshot there is: no X request, no
program started; what is read is bounded by the header's own size (checked against the
largest screen the desktop makes) before the pixels are read.

Pillow (imported on the first screenshot, never at the daemon's start) turns the pixels into a
PNG or JPEG and scales them.
"""

from __future__ import annotations

import base64
import io
import math
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from contracts.daemon.desktop import ImageFormat, Screenshot
from contracts.errors import ToolError

#: The header's first 25 big-endian 32-bit fields (XWDFileHeader, X11/XWDFile.h).
_HEADER = struct.Struct(">25I")
_XWD_VERSION = 7
_Z_PIXMAP = 2
#: One colour map entry (XWDColor): pixel, red, green, blue, flags, pad.
_COLOR_SIZE = 12
#: The largest screen the desktop makes (contracts.daemon.desktop Width, Height).
_MAX_SIDE = 4096
_MAX_HEADER = 64 * 1024
#: The screen is settled when two reads this far apart show the same pixels.
SETTLE_STEP_S = 0.05
JPEG_QUALITY = 80


@dataclass(frozen=True)
class Frame:
    width: int
    height: int
    #: ``BGRX`` pixels, ``stride`` bytes a row.
    pixels: bytes
    stride: int


def read_frame(path: Path) -> Frame:
    """The screen as Xvfb's framebuffer file holds it now."""
    try:
        with open(path, "rb") as f:
            head = f.read(_HEADER.size)
            if len(head) < _HEADER.size:
                raise ToolError("the display's framebuffer is not ready")
            h = _HEADER.unpack(head)
            header_size, version, fmt, width, height = h[0], h[1], h[2], h[4], h[5]
            bpp, stride, ncolors = h[11], h[12], h[19]
            if (version != _XWD_VERSION or fmt != _Z_PIXMAP or bpp != 32
                    or not 0 < width <= _MAX_SIDE or not 0 < height <= _MAX_SIDE
                    or stride != width * 4 or header_size > _MAX_HEADER
                    or ncolors > 65536):  # fmt: skip
                raise ToolError("the display's framebuffer is not a 32-bit XWD screen")
            f.seek(header_size + ncolors * _COLOR_SIZE)
            pixels = f.read(stride * height)
    except OSError as exc:
        raise ToolError(f"the display's framebuffer cannot be read: {exc}") from None
    if len(pixels) != stride * height:
        raise ToolError("the display's framebuffer is shorter than its header says")
    return Frame(width, height, pixels, stride)


def picture_size(width: int, height: int, scale: float, max_pixels: int) -> tuple[int, int]:
    """The picture's size: the screen's times ``scale``, made smaller still to hold at most
    ``max_pixels``."""
    area = width * height * scale * scale
    if area > max_pixels:
        scale = math.sqrt(max_pixels / (width * height))
    return max(1, math.floor(width * scale)), max(1, math.floor(height * scale))


def warm() -> None:
    """Pillow and its encoders imported (a second under gVisor's ptrace platform): done as the
    display starts, so the first screenshot does not pay it."""
    from PIL import Image, JpegImagePlugin, PngImagePlugin  # noqa: F401

    Image.init()


def encode(frame: Frame, fmt: ImageFormat, scale: float, max_pixels: int) -> Screenshot:
    """``frame`` as a PNG or JPEG (base64) of at most ``max_pixels``."""
    from PIL import Image

    image: Any = Image.frombuffer("RGB", (frame.width, frame.height), frame.pixels, "raw",
                                  "BGRX", frame.stride, 1)  # fmt: skip
    size = picture_size(frame.width, frame.height, scale, max_pixels)
    if size != (frame.width, frame.height):
        image = image.resize(size, Image.Resampling.BILINEAR)
    out = io.BytesIO()
    if fmt == "jpeg":
        image.save(out, "JPEG", quality=JPEG_QUALITY)
    else:
        image.save(out, "PNG", compress_level=1)
    return Screenshot(image=base64.b64encode(out.getvalue()).decode("ascii"), format=fmt,
                      width=size[0], height=size[1], screen_width=frame.width,
                      screen_height=frame.height)  # fmt: skip
