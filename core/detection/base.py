"""The contract every face detector fulfils."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from core.images import ImageError, downscale

Point = tuple[float, float]


@dataclass(frozen=True)
class Face:
    """One detected face in original-image pixel coordinates.

    ``left_eye`` is the eye on the image's left (the person's right eye), so the
    alignment angle is measured from ``left_eye`` to ``right_eye``.
    """

    box: tuple[int, int, int, int]  # x, y, width, height
    score: float
    left_eye: Point | None = None
    right_eye: Point | None = None
    landmarks: dict[str, Point] = field(default_factory=dict)

    @property
    def area(self) -> int:
        return self.box[2] * self.box[3]

    @property
    def has_eyes(self) -> bool:
        return self.left_eye is not None and self.right_eye is not None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (for the cache and the CLI)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Face:
        def point(value: Any) -> Point | None:
            return None if value is None else (float(value[0]), float(value[1]))

        return cls(
            box=tuple(int(v) for v in data["box"]),  # type: ignore[arg-type]
            score=float(data["score"]),
            left_eye=point(data.get("left_eye")),
            right_eye=point(data.get("right_eye")),
            landmarks={k: point(v) for k, v in (data.get("landmarks") or {}).items()},  # type: ignore[misc]
        )

    def scaled(self, factor: float) -> Face:
        """The same face with every coordinate divided by ``factor`` (maps a downscaled detection back)."""
        if factor == 1.0:
            return self

        def point(p: Point | None) -> Point | None:
            return None if p is None else (p[0] / factor, p[1] / factor)

        return Face(
            box=tuple(int(round(v / factor)) for v in self.box),  # type: ignore[arg-type]
            score=self.score,
            left_eye=point(self.left_eye),
            right_eye=point(self.right_eye),
            landmarks={k: point(v) for k, v in self.landmarks.items()},  # type: ignore[misc]
        )


def check_rgb(image: np.ndarray) -> None:
    """Refuse anything but a non-empty (H, W, 3) uint8 array, before a native library crashes on it obscurely."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        shape = getattr(image, "shape", None)
        dtype = getattr(image, "dtype", type(image).__name__)
        raise ImageError(f"expected an RGB uint8 image of shape (height, width, 3), got {dtype} with shape {shape}.")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ImageError(f"the image is empty ({image.shape[1]}×{image.shape[0]} pixels).")


def order_eyes(a: Point, b: Point) -> tuple[Point, Point]:
    """Return two eye centres as (image-left, image-right)."""
    return (a, b) if a[0] <= b[0] else (b, a)


class Detector(ABC):
    """Finds faces in RGB uint8 images. Subclasses implement ``_detect`` on a downscaled image."""

    name: str = "?"
    max_side: int = 1280  # detection runs on images no larger than this; boxes are mapped back

    def __init__(self, **settings: Any) -> None:
        self.settings = dict(sorted(settings.items()))

    def detect(self, image: np.ndarray) -> list[Face]:
        """All faces in the image, largest first. No face is an empty list, never an error."""
        check_rgb(image)
        small, factor = downscale(image, self.max_side)
        faces = [face.scaled(factor) for face in self._detect(small)]
        height, width = image.shape[:2]
        faces = [clip_face(face, width, height) for face in faces]
        return sorted((f for f in faces if f.box[2] > 1 and f.box[3] > 1), key=lambda f: -f.area)

    @abstractmethod
    def _detect(self, image: np.ndarray) -> list[Face]:
        """Detect on an image already scaled to at most ``max_side``."""

    def cache_key(self) -> str:
        """Identity of this detector and its settings, for the embedding cache."""
        return f"{self.name}:{sorted(self.settings.items())}:{self.max_side}"


def clip_face(face: Face, width: int, height: int) -> Face:
    """Clip the box to the image so crops never index outside it."""
    x, y, w, h = face.box
    x0, y0 = max(0, x), max(0, y)
    x1, y1 = min(width, x + w), min(height, y + h)
    if (x0, y0, x1 - x0, y1 - y0) == face.box:
        return face
    return Face((x0, y0, max(0, x1 - x0), max(0, y1 - y0)), face.score, face.left_eye, face.right_eye, face.landmarks)
