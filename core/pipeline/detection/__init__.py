"""Stage 1 of the pipeline — face detection. One module per detector, all in one registry.

To add a detector, drop a module here that subclasses :class:`Detector` and calls
``DETECTORS.register(Entry(...))``.
"""

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from core.images import ImageError, load_image
from core.pipeline.detection.base import Detector, Face, chunk_full
from core.registry import Registry

DETECTORS: Registry[Detector] = Registry(kind="detector", package="core.pipeline.detection")

DEFAULT_DETECTOR = "mtcnn"

__all__ = ["DEFAULT_DETECTOR", "DETECTORS", "Detector", "Face", "count_faces"]


def count_faces(paths: Sequence[Path | str | bytes], detector: Detector,
                progress: Callable[[int, int], None] | None = None) -> list[int | None]:
    """How many faces the detector finds in each photo; None for a photo that cannot be read.

    The dataset audit's "faces per photo" (0 / 1 / many) — photos with none cannot train — and the Builder's check of
    added photos (as bytes). Photos are detected in chunks (:func:`chunk_full`), so progress moves a chunk at a time.
    """
    counts: list[int | None] = [None] * len(paths)
    chunk: list[tuple[int, np.ndarray]] = []  # decoded photos waiting for one detect_many call

    def detect_chunk() -> None:
        if not chunk:
            return
        for (index, _), found in zip(chunk, detector.detect_many([image for _, image in chunk])):
            counts[index] = len(found)
        chunk.clear()

    for done, path in enumerate(paths, 1):
        try:
            chunk.append((done - 1, load_image(path)))
        except ImageError:
            pass  # stays None
        if chunk_full([image for _, image in chunk]) or done == len(paths):
            detect_chunk()
            if progress:
                progress(done, len(paths))
    return counts
