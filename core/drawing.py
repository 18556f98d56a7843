"""Annotated photos: boxes, names and confidences drawn so they stay readable at any photo size."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFont

KNOWN = (46, 204, 113)
UNKNOWN = (231, 76, 60)
EYE = (52, 152, 219)


@dataclass(frozen=True)
class Label:
    """What to write on one face: its box, text and colour."""

    box: tuple[int, int, int, int]
    text: str
    colour: tuple[int, int, int] = KNOWN


def line_width(side: int) -> int:
    """Box and line width for a picture whose longer side is ``side`` pixels: about 1/160 of it, so a line stays
    visible when the picture is shown a few hundred pixels wide (1/250 left 1-pixel hairlines on the Verify steps)."""
    return max(2, side // 160)


def marker_radius(side: int) -> int:
    """Radius of a point marker (eye, landmark) for a picture whose longer side is ``side`` pixels: about 1/60 of it."""
    return max(3, side // 60)


def _scale(image: Image.Image) -> tuple[int, ImageFont.ImageFont]:
    """Line width and font size proportional to the photo, so labels read the same on 100 px and 4000 px photos."""
    side = max(image.size)
    font_size = max(10, side // 30)
    return line_width(side), ImageFont.load_default(size=font_size)


def draw_labels(image: np.ndarray, labels: Sequence[Label]) -> np.ndarray:
    """A copy of the RGB image with each box outlined and its text on a filled tag.

    The tag sits above the box, or inside it when the face touches the top edge, and is
    shifted left when it would run off the right edge.
    """
    canvas = Image.fromarray(image).convert("RGB")
    draw = ImageDraw.Draw(canvas)
    width, font = _scale(canvas)
    for label in labels:
        x, y, w, h = label.box
        draw.rectangle([x, y, x + w, y + h], outline=label.colour, width=width)
        left, top, right, bottom = draw.textbbox((0, 0), label.text, font=font)
        text_w, text_h = right - left + 2 * width, bottom - top + 2 * width
        tag_y = y - text_h if y - text_h >= 0 else y
        tag_x = max(0, min(x, canvas.width - text_w))
        draw.rectangle([tag_x, tag_y, tag_x + text_w, tag_y + text_h], fill=label.colour)
        draw.text((tag_x + width - left, tag_y + width - top), label.text, fill=(255, 255, 255), font=font)
    return np.asarray(canvas)


def draw_points(image: np.ndarray, points: Sequence[tuple[float, float]], colour: tuple[int, int, int] = EYE,
                line: bool = False) -> np.ndarray:
    """A copy of the image with dots at ``points`` (eye centres, landmarks), optionally joined by a line."""
    canvas = Image.fromarray(image).convert("RGB")
    draw = ImageDraw.Draw(canvas)
    radius = marker_radius(max(canvas.size))
    if line and len(points) >= 2:
        draw.line([tuple(p) for p in points], fill=colour, width=line_width(max(canvas.size)))
    for px, py in points:
        draw.ellipse([px - radius, py - radius, px + radius, py + radius], fill=colour)
    return np.asarray(canvas)
