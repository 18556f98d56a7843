"""Counting the faces in a dataset's photos, timed: the Dataset page's "Count faces" and the time its caption promises.

Counting 24 photos took 23.5 s where the caption promised 0.05–0.4 s a photo: on a busy 2-core server MTCNN
takes about 0.8 s a photo, and the first count after the server starts also builds the detector (then
TensorFlow and three networks: half a minute). So each count records its pace and each build its time in the throughput store
(:mod:`core.pipeline.throughput`), and the caption says what was measured here.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from core.pipeline.detection import DETECTORS, Detector, count_faces
from core.pipeline.throughput import detection_key, load_key, load_time, measured, record, record_load


@dataclass(frozen=True)
class CountCost:
    """What counting ``photos`` photos should cost: a pace, and the detector's build when it is not built yet."""

    photos: int
    seconds_per_photo: float
    measured_photos: int  # photos the pace was measured on here; 0: the detector's declared cost (rough)
    load_seconds: float | None  # building the detector first (None: already built, or never timed here)
    loading: bool  # the detector is not built yet in this server process

    @property
    def seconds(self) -> float:
        return self.photos * self.seconds_per_photo + (self.load_seconds or 0.0)


@dataclass(frozen=True)
class CountResult:
    """Faces per photo (None: unreadable), and where the time went."""

    counts: list[int | None]
    load_seconds: float
    count_seconds: float


def _not_loaded(detector_name: str) -> bool:
    """Whether counting would first load the detector's model (never builds it to find out)."""
    return not (DETECTORS.built(detector_name) and DETECTORS.get(detector_name).loaded)


def count_cost(detector_name: str, photos: int) -> CountCost:
    """The expected cost of counting ``photos`` photos with ``detector_name``, from what was measured here."""
    pace = measured(detection_key(detector_name))
    loading = _not_loaded(detector_name)
    declared = DETECTORS.entry(detector_name).factory.seconds_per_photo
    return CountCost(photos, pace.seconds_per_photo if pace else declared, pace.photos if pace else 0,
                     load_time(load_key("detector", detector_name)) if loading else None, loading)


def count_dataset_faces(paths: Sequence[Path], detector_name: str, build: Callable[[str], Detector],
                        progress: Callable[[int, int], None] | None = None) -> CountResult:
    """Faces per photo with the shared detector (``build`` gets it, e.g. behind a spinner), timed and remembered."""
    loading = _not_loaded(detector_name)
    started = time.perf_counter()
    detector = build(detector_name)
    detector.load()
    built = time.perf_counter()
    if loading:
        record_load(load_key("detector", detector_name), built - started)
    counts = count_faces(list(paths), detector, progress)
    ended = time.perf_counter()
    record(detection_key(detector_name), ended - built, len(paths))
    return CountResult(counts, built - started, ended - built)
