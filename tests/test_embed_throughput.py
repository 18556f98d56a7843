"""Issue 14: the embedding driver keeps every part busy and loads nothing the cache makes unnecessary.

Photos are detected in chunks (one ``detect_many`` call each, bounded in photos and pixels), their faces embedded
on a background thread while the next chunk is detected, and a pass whose photos are all cached never builds the
detector's model (checked with fakes here, and with MTCNN in a separate process: no TensorFlow import).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from core.images import load_image
from core.pipeline.detection import base as detection_base
from core.pipeline.detection import count_faces
from core.pipeline.embeddings import Pipeline, Stopped
from tests.conftest import image_bytes, noise_image, shared_dataset
from tests.test_embeddings import CountingDetector, MeanColourBackbone

ROOT = Path(__file__).resolve().parents[1]


class BatchRecordingDetector(CountingDetector):
    """Records how many images each ``detect_many`` call got; builds its "model" only in ``load``."""

    name = "batch-recording"

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[int] = []
        self.loads = 0

    @property
    def loaded(self) -> bool:
        return self.loads > 0

    def load(self) -> None:
        self.loads = max(self.loads, 1)

    def _detect_batch(self, images: list[np.ndarray]) -> list[list[detection_base.Face]]:
        self.load()
        self.batches.append(len(images))
        return super()._detect_batch(images)


def photos(count: int, height: int = 64, width: int = 48) -> list[tuple[str, bytes]]:
    return [(f"p{i}.png", image_bytes(noise_image(height, width, seed=i))) for i in range(count)]


def test_photos_are_detected_in_chunks_with_the_same_faces_as_one_by_one() -> None:
    chunked = Pipeline(BatchRecordingDetector(), MeanColourBackbone(), batch_size=4)
    results = chunked.embed(photos(20))
    assert chunked.detector.batches == [detection_base.CHUNK_PHOTOS, 20 - detection_base.CHUNK_PHOTOS]
    alone = BatchRecordingDetector()
    single = [alone.detect(load_image(data)) for _, data in photos(20)]
    assert [r.faces for r in results] == single
    assert chunked.backbone.batches == [4, 4, 4, 4, 4]  # faces still embedded in batches across photos


def test_large_photos_make_smaller_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(detection_base, "CHUNK_PIXELS", 3 * 64 * 48)
    pipeline = Pipeline(BatchRecordingDetector(), MeanColourBackbone())
    pipeline.embed(photos(7))
    assert pipeline.detector.batches == [3, 3, 1]


def test_faces_are_embedded_while_the_next_chunk_is_detected() -> None:
    embedding = threading.Event()
    overlapped: list[bool] = []

    class WaitingDetector(BatchRecordingDetector):
        def _detect_batch(self, images: list[np.ndarray]) -> list[list[detection_base.Face]]:
            if self.batches:  # the second chunk: the first one's faces are being embedded meanwhile, or never will be
                overlapped.append(embedding.wait(timeout=10))
            return super()._detect_batch(images)

    class WaitingBackbone(MeanColourBackbone):
        def embed(self, crops: np.ndarray) -> np.ndarray:
            embedding.set()
            return super().embed(crops)

    pipeline = Pipeline(WaitingDetector(), WaitingBackbone(), batch_size=detection_base.CHUNK_PHOTOS)
    results = pipeline.embed(photos(2 * detection_base.CHUNK_PHOTOS))
    assert overlapped == [True]
    assert all(r.embeddings.shape == (1, 3) for r in results)


def test_a_failing_backbone_fails_the_embedding() -> None:
    class BrokenBackbone(MeanColourBackbone):
        def embed(self, crops: np.ndarray) -> np.ndarray:
            raise RuntimeError("descriptor workers died")

    with pytest.raises(RuntimeError, match="descriptor workers died"):
        Pipeline(BatchRecordingDetector(), BrokenBackbone()).embed(photos(3))


def test_a_stop_embeds_and_caches_the_detected_chunk(tmp_path: Path) -> None:
    pipeline = Pipeline(BatchRecordingDetector(), MeanColourBackbone(), batch_size=4)
    asked = iter(range(100))
    with pytest.raises(Stopped, match="after 5 of 20"):
        pipeline.embed(photos(20), should_stop=lambda: next(asked) >= 5)
    again = Pipeline(BatchRecordingDetector(), MeanColourBackbone(), batch_size=4)
    results = again.embed(photos(5))
    assert all(r.cached for r in results) and again.detector.batches == []


def test_a_fully_cached_pass_never_builds_the_detector_model() -> None:
    Pipeline(BatchRecordingDetector(), MeanColourBackbone()).embed(photos(6))
    cached = Pipeline(BatchRecordingDetector(), MeanColourBackbone())
    results = cached.embed(photos(6))
    assert all(r.cached and len(r.faces) == 1 for r in results)
    assert cached.detector.loads == 0 and cached.backbone.batches == []


def test_count_faces_detects_in_chunks_and_marks_unreadable_photos() -> None:
    detector = BatchRecordingDetector()
    sources = [data for _, data in photos(18)]
    sources[3] = b"not an image"
    sources[17] = image_bytes(np.zeros((20, 20, 3), np.uint8))
    seen: list[int] = []
    counts = count_faces(sources, detector, progress=lambda done, total: seen.append(done))
    assert counts == [1, 1, 1, None] + [1] * 13 + [0]
    assert detector.batches == [detection_base.CHUNK_PHOTOS, 1]
    assert seen == [17, 18]  # progress follows detection, a chunk at a time


def test_mtcnn_builds_nothing_until_it_detects() -> None:
    pytest.importorskip("mtcnn")
    from core.pipeline.detection.mtcnn_detector import MtcnnDetector

    fresh = MtcnnDetector()
    assert not fresh.loaded
    assert fresh.detect(np.zeros((40, 40, 3), np.uint8)) == []
    assert fresh.loaded


def test_a_cli_embed_never_imports_tensorflow_and_a_cached_one_runs_no_network(tmp_path: Path) -> None:
    """Whole ``python -m core embed`` processes with the defaults (MTCNN, dlib ResNet): both run on ONNX Runtime,
    so TensorFlow (4.6 s to import) never loads; on a cached dataset not even ONNX Runtime does."""
    pytest.importorskip("mtcnn")
    source = shared_dataset("five_celebrity_faces")
    dataset = tmp_path / "mini"
    for split, person in (("train", "madonna"), ("test", "elton_john")):
        folder = dataset / split / person
        folder.mkdir(parents=True)
        for path in sorted((source / split / person).iterdir())[:2]:
            (folder / path.name).write_bytes(path.read_bytes())
    script = ("import json, sys; from core.cli import main; code = main(['embed', sys.argv[1], '--json']); "
              "print(json.dumps({'tensorflow': 'tensorflow' in sys.modules, 'onnxruntime': 'onnxruntime' in sys.modules, "
              "'code': code}))")
    env = {**os.environ, "FACELAB_HOME": str(tmp_path / "home")}
    runs = [subprocess.run([sys.executable, "-c", script, str(dataset)], cwd=ROOT, env=env, capture_output=True,
                           text=True, timeout=600) for _ in range(2)]
    first, second = (json.loads(run.stdout.strip().splitlines()[-1]) for run in runs)
    embedded = json.loads(runs[1].stdout[:runs[1].stdout.rindex("{")])
    assert first == {"tensorflow": False, "onnxruntime": True, "code": 0}  # the first pass detects and describes
    assert second == {"tensorflow": False, "onnxruntime": False, "code": 0}
    assert embedded["with_face"] == 4
