"""The GenICam pixel formats the camera source turns into Mono8 or BGR frames: one table for
the config's check and the source's conversion.

Bayer formats are left out on purpose: their OpenCV pattern names differ from the GenICam ones
and a wrong guess gives plausible but wrong colours.
"""
from __future__ import annotations

import cv2

# Camera pixel format -> (bytes per pixel, cv2 conversion to grey, cv2 conversion to BGR);
# None means "copy as is".
CONVERSIONS: dict[str, tuple[int, int | None, int | None]] = {
    "Mono8": (1, None, cv2.COLOR_GRAY2BGR),
    "RGB8": (3, cv2.COLOR_RGB2GRAY, cv2.COLOR_RGB2BGR),
    "RGB8Packed": (3, cv2.COLOR_RGB2GRAY, cv2.COLOR_RGB2BGR),
    "BGR8": (3, cv2.COLOR_BGR2GRAY, None),
    "BGR8Packed": (3, cv2.COLOR_BGR2GRAY, None),
    "RGBa8": (4, cv2.COLOR_RGBA2GRAY, cv2.COLOR_RGBA2BGR),
    "BGRa8": (4, cv2.COLOR_BGRA2GRAY, cv2.COLOR_BGRA2BGR),
}

PIXEL_FORMATS: tuple[str, ...] = tuple(CONVERSIONS)
