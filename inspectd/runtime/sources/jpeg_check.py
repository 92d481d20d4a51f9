"""Is a JPEG whole? A structural check of the bytes, before they are decoded.

libjpeg (inside OpenCV) decodes a truncated or damaged JPEG without an error: it prints a
warning on stderr and fills what it could not read with grey, and OpenCV returns the image.
Python sees no error, so a damaged frame would be inspected as if whole. This walk over the
file's markers finds what such damage leaves behind:

- a missing start (SOI) or end (EOI) marker: a truncated file or frame;
- a header segment whose length runs past the end, or bytes where a marker must be;
- inside the entropy-coded image data, a 0xFF byte followed by anything but a stuffed 0x00,
  the next restart marker in order, or a marker that may follow a scan: bytes overwritten.

Damage inside the image data that keeps all of that intact (a flipped bit between two
markers) is not seen: libjpeg conceals it and reports it only as a warning, which no Python
binding exposes. Cost: one ``bytes.find`` per 0xFF byte, a few tens of microseconds a frame.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

# Markers that may follow the entropy-coded data of a scan: EOI, DHT/DQT/DRI/SOS and COM/APPn
# (progressive and multi-scan files), DNL.
_AFTER_SCAN = {0xD9, 0xC4, 0xDB, 0xDD, 0xDA, 0xDC, 0xFE} | set(range(0xE0, 0xF0))


def jpeg_damage(data: bytes | memoryview | np.ndarray) -> str | None:
    """None if ``data`` is a structurally whole JPEG, else a short description of the damage."""
    data = bytes(data)
    n = len(data)
    if n < 4 or data[0] != 0xFF or data[1] != 0xD8:
        return "not a JPEG (no start marker)"
    i, scans = 2, 0
    while True:
        if i + 2 > n:
            return "truncated (no end marker)"
        if data[i] != 0xFF:
            return f"damaged (no marker at byte {i})"
        m = data[i + 1]
        if m == 0xFF:                       # fill byte before a marker
            i += 1
            continue
        if m == 0xD9:
            return None if scans else "no image data before the end marker"
        if m == 0x01 or 0xD0 <= m <= 0xD7:  # markers without a length
            i += 2
            continue
        if i + 4 > n:
            return "truncated (inside a header)"
        length = (data[i + 2] << 8) | data[i + 3]
        if length < 2 or i + 2 + length > n:
            return f"truncated or damaged (a 0x{m:02X} segment runs past the end)" if i + 2 + length > n \
                else f"damaged (0x{m:02X} segment of length {length})"
        i += 2 + length
        if m != 0xDA:
            continue
        scans += 1
        rst = 0
        while True:                         # entropy-coded data up to the next real marker
            j = data.find(b"\xff", i)
            if j < 0 or j + 1 >= n:
                return "truncated (the image data ends without an end marker)"
            nxt = data[j + 1]
            if nxt == 0x00:
                i = j + 2
            elif 0xD0 <= nxt <= 0xD7:
                if nxt - 0xD0 != rst:
                    return f"damaged (restart marker {nxt - 0xD0} where {rst} was due, byte {j})"
                rst = (rst + 1) % 8
                i = j + 2
            elif nxt == 0xFF:
                i = j + 1                   # fill bytes before the marker
            elif nxt in _AFTER_SCAN:
                i = j
                break
            else:
                return f"damaged (invalid marker 0x{nxt:02X} in the image data, byte {j})"
