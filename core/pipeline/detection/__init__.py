"""Stage 1 of the pipeline — face detection. One module per detector, all in one registry.

To add a detector, drop a module here that subclasses :class:`Detector` and calls
``DETECTORS.register(Entry(...))``.
"""

from collections.abc import Callable, Sequence
from pathlib import Path

from core.images import ImageError, load_image
from core.pipeline.detection.base import Detector, Face
from core.registry import Registry

DETECTORS: Registry[Detector] = Registry(kind="detector", package="core.pipeline.detection")

DEFAULT_DETECTOR = "mtcnn"

__all__ = ["DEFAULT_DETECTOR", "DETECTORS", "Detector", "Face", "count_faces"]


def count_faces(paths: Sequence[Path | str | bytes], detector: Detector,
                progress: Callable[[int, int], None] | None = None) -> list[int | None]:
    """How many faces the detector finds in each photo; None for a photo that cannot be read.

    The dataset audit's "faces per photo" (0 / 1 / many) — photos with none cannot train — and the Builder's check of
    added photos (as bytes).
    """

    counts: list[int | None] = []
    for done, path in enumerate(paths, 1):
        try:
            counts.append(len(detector.detect(load_image(path))))
        except ImageError:
            counts.append(None)
        if progress:
            progress(done, len(paths))
    return counts
