"""The contract every face detector fulfils."""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from core.images import ImageError, downscale

Point = tuple[float, float]
CHUNK_PHOTOS = 16  # photos handed to one detect_many call (MTCNN batches the same-sized ones: 64 crops 2.5 → 0.4 s)
CHUNK_PIXELS = 48_000_000  # decoded pixels one such call may hold (~140 MB): large photos make smaller chunks


def chunk_full(images: Sequence[np.ndarray]) -> bool:
    """Whether decoded photos waiting for :meth:`Detector.detect_many` are as many as one call should take."""
    return len(images) >= CHUNK_PHOTOS or sum(image.shape[0] * image.shape[1] for image in images) >= CHUNK_PIXELS


@dataclass(frozen=True)
class Face:
    """One detected face in original-image pixel coordinates.

    ``left_eye`` is the eye on the image's left (the person's right eye), so the
    alignment angle is measured from ``left_eye`` to ``right_eye``. ``dlib_box`` is the
    same face framed as dlib's own detector would frame it (see :class:`BoxMap`); None
    when ``box`` already is.
    """

    box: tuple[int, int, int, int]  # x, y, width, height
    score: float
    left_eye: Point | None = None
    right_eye: Point | None = None
    landmarks: dict[str, Point] = field(default_factory=dict)
    dlib_box: tuple[int, int, int, int] | None = None

    @property
    def landmark_box(self) -> tuple[int, int, int, int]:
        """The box to fit dlib's shape predictor on: it was trained on dlib detector boxes."""
        return self.dlib_box or self.box

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

        dlib_box = data.get("dlib_box")
        return cls(
            box=tuple(int(v) for v in data["box"]),  # type: ignore[arg-type]
            score=float(data["score"]),
            left_eye=point(data.get("left_eye")),
            right_eye=point(data.get("right_eye")),
            landmarks={k: point(v) for k, v in (data.get("landmarks") or {}).items()},  # type: ignore[misc]
            dlib_box=None if dlib_box is None else tuple(int(v) for v in dlib_box),  # type: ignore[arg-type]
        )

    def scaled(self, factor: float) -> Face:
        """The same face with every coordinate divided by ``factor`` (maps a downscaled detection back)."""
        if factor == 1.0:
            return self

        def point(p: Point | None) -> Point | None:
            return None if p is None else (p[0] / factor, p[1] / factor)

        def box(b: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
            return tuple(int(round(v / factor)) for v in b)  # type: ignore[return-value]

        return replace(self, box=box(self.box), left_eye=point(self.left_eye), right_eye=point(self.right_eye),
                       landmarks={k: point(v) for k, v in self.landmarks.items()},  # type: ignore[misc]
                       dlib_box=None if self.dlib_box is None else box(self.dlib_box))


def check_rgb(image: np.ndarray) -> None:
    """Refuse anything but a non-empty (H, W, 3) uint8 array, before a native library crashes on it obscurely."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        shape = getattr(image, "shape", None)
        dtype = getattr(image, "dtype", type(image).__name__)
        raise ImageError(f"expected an RGB uint8 image of shape (height, width, 3), got {dtype} with shape {shape}.")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ImageError(f"the image is empty ({image.shape[1]}×{image.shape[0]} pixels).")


@dataclass(frozen=True)
class BoxMap:
    """How a detector's boxes sit relative to the square boxes of dlib's HOG detector.

    dlib's 5-point shape predictor (and so every dlib face chip) was trained on dlib
    detector boxes; fitted on a box of another shape it puts the eye corners off and the
    chip comes out shifted and scaled. The centre moves by (``dx`` × width, ``dy`` ×
    height) and the square's side is the mean of ``side_w`` × width and ``side_h`` × height.
    """

    dx: float
    dy: float
    side_w: float
    side_h: float

    def apply(self, box: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
        x, y, w, h = box
        side = (self.side_w * w + self.side_h * h) / 2
        cx, cy = x + w / 2 + self.dx * w, y + h / 2 + self.dy * h
        return round(cx - side / 2), round(cy - side / 2), round(side), round(side)


def order_eyes(a: Point, b: Point) -> tuple[Point, Point]:
    """Return two eye centres as (image-left, image-right)."""
    return (a, b) if a[0] <= b[0] else (b, a)


class Detector(ABC):
    """Finds faces in RGB uint8 images. Subclasses implement ``_detect`` on a downscaled image."""

    name: str = "?"
    seconds_per_photo: float = 0.5  # rough CPU cost per web-sized photo, for the Train page's first estimate
    max_side: int = 1280  # detection runs on images no larger than this; boxes are mapped back
    dlib_box_map: BoxMap | None = None  # None: boxes are already framed like dlib's detector frames them

    def __init__(self, **settings: Any) -> None:
        self.settings = dict(sorted(settings.items()))

    @property
    def loaded(self) -> bool:
        """Whether the model is in memory. A detector whose model is heavy builds it in :meth:`load`, on first use,
        so a pass whose photos are all cached never loads it (MTCNN: three networks)."""
        return True

    def load(self) -> None:
        """Build the model now (thread-safe, once); detection calls it. A no-op for detectors built whole."""

    def detect(self, image: np.ndarray) -> list[Face]:
        """All faces in the image, largest first. No face is an empty list, never an error."""
        return self.detect_many([image])[0]

    def detect_many(self, images: Sequence[np.ndarray]) -> list[list[Face]]:
        """:meth:`detect` for several images; detectors whose model takes a batch run them together."""
        for image in images:
            check_rgb(image)
        scaled = [downscale(image, self.max_side) for image in images]
        found = self._detect_batch([small for small, _ in scaled])
        return [self._finish(faces, factor, image) for faces, (_, factor), image in zip(found, scaled, images)]

    def _finish(self, faces: list[Face], factor: float, image: np.ndarray) -> list[Face]:
        """Faces found on the downscaled image, in original pixels, framed for dlib, clipped, largest first."""
        faces = [face.scaled(factor) for face in faces]
        if self.dlib_box_map is not None:  # mapped before clipping: the unclipped box says where the face is
            faces = [replace(face, dlib_box=self.dlib_box_map.apply(face.box)) for face in faces]
        height, width = image.shape[:2]
        faces = [clip_face(face, width, height) for face in faces]
        return sorted((f for f in faces if f.box[2] > 1 and f.box[3] > 1), key=lambda f: -f.area)

    def _detect_batch(self, images: list[np.ndarray]) -> list[list[Face]]:
        """One image at a time unless a subclass can do better."""
        return [self._detect(image) for image in images]

    @abstractmethod
    def _detect(self, image: np.ndarray) -> list[Face]:
        """Detect on an image already scaled to at most ``max_side``."""

    def cache_key(self) -> str:
        """Identity of this detector and its settings, for the embedding cache."""
        return self._key(self.settings)

    @classmethod
    def default_cache_key(cls) -> str:
        """:meth:`cache_key` of this detector built with its default settings, without building it.

        Lets a page count the photos already embedded without loading a model. Tests check it equals the built detector's key for every registered detector.
        """
        defaults = {name: parameter.default for name, parameter in inspect.signature(cls.__init__).parameters.items()
                    if parameter.default is not parameter.empty}
        return cls._key(defaults)

    @classmethod
    def _key(cls, settings: dict[str, Any]) -> str:
        mapped = "" if cls.dlib_box_map is None else f":{cls.dlib_box_map}"
        return f"{cls.name}:{sorted(settings.items())}:{cls.max_side}{mapped}"


def clip_face(face: Face, width: int, height: int) -> Face:
    """Clip the box to the image so crops never index outside it."""
    x, y, w, h = face.box
    x0, y0 = max(0, x), max(0, y)
    x1, y1 = min(width, x + w), min(height, y + h)
    if (x0, y0, x1 - x0, y1 - y0) == face.box:
        return face
    return replace(face, box=(x0, y0, max(0, x1 - x0), max(0, y1 - y0)))
