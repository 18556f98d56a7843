"""The embedding driver and its cache, with a fake detector and backbone (no model needed)."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from core.pipeline import embeddings
from core.pipeline.alignment import AlignedFace
from core.pipeline.backbones.base import Backbone
from core.pipeline.detection.base import Detector, Face
from core.pipeline.embeddings import EmbeddingCache, Pipeline, Stopped, embed_dataset
from tests.conftest import image_bytes, noise_image


class CountingDetector(Detector):
    """One face covering the left half of any image that is not pure black."""

    name = "counting"

    def __init__(self, **settings: object) -> None:
        super().__init__(**settings)
        self.calls = 0

    def _detect(self, image: np.ndarray) -> list[Face]:
        self.calls += 1
        if image.max() == 0:
            return []
        height, width = image.shape[:2]
        return [Face((0, 0, width // 2, height), 0.9)]


class MeanColourBackbone(Backbone):
    """Embedding = mean colour of the crop; counts batches to check batching."""

    name = "mean-colour"
    input_size = 8
    embedding_dim = 3

    def __init__(self) -> None:
        self.batches: list[int] = []

    def align(self, image: np.ndarray, face: Face, rotate: bool = True, keep_steps: bool = False) -> AlignedFace:
        x, y, w, h = face.box
        crop = np.ascontiguousarray(np.resize(image[y:y + h, x:x + w], (8, 8, 3)))
        return AlignedFace(crop=crop, aligned=False, angle=0.0, eyes=None)

    def embed(self, crops: np.ndarray) -> np.ndarray:
        self.batches.append(len(crops))
        return crops.reshape(len(crops), -1, 3).mean(axis=1).astype(np.float32)


@pytest.fixture
def pipeline() -> Pipeline:
    return Pipeline(CountingDetector(), MeanColourBackbone(), batch_size=4)


def test_embeds_every_photo_in_order_with_errors_reported(pipeline: Pipeline) -> None:
    sources = [("a.png", image_bytes(noise_image(seed=1))), ("black.png", image_bytes(np.zeros((20, 20, 3), np.uint8))),
               ("bad.jpg", b"not an image"), ("b.png", image_bytes(noise_image(seed=2)))]
    results = pipeline.embed(sources)
    assert [r.name for r in results] == ["a.png", "black.png", "bad.jpg", "b.png"]
    assert [len(r.faces) for r in results] == [1, 0, 0, 1]
    assert results[1].ok and results[1].embeddings.shape == (0, 3)
    assert not results[2].ok and "not an image" in results[2].error
    assert results[0].embeddings.shape == (1, 3)
    assert not np.allclose(results[0].embeddings, results[3].embeddings)


def test_faces_are_batched_across_photos(pipeline: Pipeline) -> None:
    sources = [("p%d.png" % i, image_bytes(noise_image(seed=i))) for i in range(10)]
    pipeline.embed(sources)
    assert pipeline.backbone.batches == [4, 4, 2]


def test_second_pass_hits_cache_and_computes_nothing(pipeline: Pipeline) -> None:
    sources = [("p%d.png" % i, image_bytes(noise_image(seed=i))) for i in range(5)]
    first = pipeline.embed(sources)
    calls = pipeline.detector.calls
    second = pipeline.embed(sources)
    assert pipeline.detector.calls == calls
    assert all(r.cached for r in second)
    for a, b in zip(first, second):
        np.testing.assert_allclose(a.embeddings, b.embeddings)
        assert a.faces == b.faces


def test_cache_key_changes_with_alignment_and_settings(pipeline: Pipeline) -> None:
    unaligned = Pipeline(pipeline.detector, pipeline.backbone, align=False)
    tuned = Pipeline(CountingDetector(min_size=10), pipeline.backbone)
    keys = {p.cache_key("abc") for p in (pipeline, unaligned, tuned)}
    assert len(keys) == 3


def test_corrupt_cache_entry_is_recomputed(pipeline: Pipeline) -> None:
    source = ("p.png", image_bytes(noise_image(seed=3)))
    pipeline.embed([source])
    entries = list(EmbeddingCache().root.rglob("*.npz"))
    assert len(entries) == 1
    entries[0].write_bytes(b"garbage")
    result = pipeline.embed([source])[0]
    assert result.ok and not result.cached and result.embeddings.shape == (1, 3)
    assert pipeline.embed([source])[0].cached


def test_concurrent_writers_leave_valid_entries(pipeline: Pipeline, tmp_path: Path) -> None:
    sources = [("p%d.png" % i, image_bytes(noise_image(seed=i))) for i in range(6)]
    cache = EmbeddingCache(tmp_path / "shared-cache")
    errors: list[BaseException] = []

    def work() -> None:
        try:
            Pipeline(CountingDetector(), MeanColourBackbone()).embed(sources, cache=cache)
        except BaseException as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert not list(cache.root.rglob(".tmp-*"))
    assert all(r.cached for r in pipeline.embed(sources, cache=cache))


def test_progress_reports_every_photo(pipeline: Pipeline) -> None:
    seen: list[tuple[int, int]] = []
    pipeline.embed([("p%d.png" % i, image_bytes(noise_image(seed=i))) for i in range(3)], progress=lambda d, t: seen.append((d, t)))
    assert seen == [(1, 3), (2, 3), (3, 3)]


def photo_files(folder: Path, count: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"p{i}.png" for i in range(count)]
    for i, path in enumerate(paths):
        path.write_bytes(image_bytes(noise_image(seed=i)))
    return paths


def test_stop_ends_embedding_between_photos_and_keeps_what_was_done(pipeline: Pipeline, tmp_path: Path) -> None:
    paths = photo_files(tmp_path, 7)
    asked: list[int] = []

    def stop_after_three() -> bool:
        asked.append(len(asked))
        return len(asked) > 3  # asked before each photo: the fourth question stops

    with pytest.raises(Stopped, match="after 3 of 7"):
        pipeline.embed(paths, should_stop=stop_after_three)
    assert pipeline.detector.calls == 3, "no photo is detected after the stop"
    assert pipeline.backbone.batches == [3], "the faces found before the stop are embedded (batch size 4 not reached)"
    again = pipeline.embed(paths)
    assert [r.cached for r in again] == [True] * 3 + [False] * 4


def test_embed_dataset_passes_the_stop_down(pipeline: Pipeline, tmp_path: Path) -> None:
    photo_files(tmp_path / "ds" / "train" / "amy", 3)
    with pytest.raises(Stopped):
        embed_dataset(tmp_path / "ds", pipeline, should_stop=lambda: True)
    assert pipeline.detector.calls == 0


def test_missing_counts_uncached_photos_without_opening_an_entry(pipeline: Pipeline, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    paths = photo_files(tmp_path / "photos", 5)
    unreadable = tmp_path / "photos" / "gone.png"  # listed by a scan, deleted since: embedding reports it, never computes it
    cache = EmbeddingCache()
    assert cache.missing([*paths, unreadable], pipeline.key) == paths
    pipeline.embed(paths[:2])
    other = Pipeline(pipeline.detector, pipeline.backbone, align=False)
    for entry in cache.root.rglob("*.npz"):
        entry.write_bytes(b"garbage")  # present but unreadable: counting must not open it to notice
    monkeypatch.setattr(np, "load", lambda *a, **k: pytest.fail("an entry was opened"))
    assert cache.missing(paths, pipeline.key) == paths[2:]
    assert cache.missing(paths, other.key) == paths, "another pipeline's entries do not count"


def test_missing_reads_each_photo_once_while_it_is_unchanged(pipeline: Pipeline, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    paths = photo_files(tmp_path, 3)
    cache = EmbeddingCache()
    cache.missing(paths, pipeline.key)
    reads: list[Path] = []
    read_file = embeddings.read_file

    def counting(path: Path | str) -> bytes:
        reads.append(Path(path))
        return read_file(path)

    monkeypatch.setattr(embeddings, "read_file", counting)
    assert cache.missing(paths, pipeline.key) == paths
    assert reads == [], "unchanged photos are not read again"
    paths[1].write_bytes(image_bytes(noise_image(seed=99)) + b"changed")
    assert cache.missing(paths, pipeline.key) == paths
    assert reads == [paths[1]], "a changed photo is"


class CrowdDetector(CountingDetector):
    """Thirty faces of thirty sizes in any image (a crowd, or one face tiled)."""

    name = "crowd"

    def _detect(self, image: np.ndarray) -> list[Face]:
        self.calls += 1
        return [Face((i, i, 2 + i, 2 + i), 0.9) for i in range(30)]


def test_only_the_largest_faces_are_embedded_and_the_photo_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    crowd = Pipeline(CrowdDetector(), MeanColourBackbone(), face_choice="largest")  # the cap, not the choice
    [result] = crowd.embed([("crowd.png", image_bytes(noise_image(64, 64, seed=3)))])
    assert result.found == 30 and len(result.faces) == 20 and result.embeddings.shape == (20, 3)
    assert [face.box[2] for face in result.faces] == list(range(31, 11, -1)), "the 20 largest, largest first"
    assert result.note == "30 faces found, the 20 largest were used"
    monkeypatch.setenv("FACELAB_MAX_FACES", "40")
    [result] = crowd.embed([("crowd2.png", image_bytes(noise_image(64, 64, seed=4)))])
    assert (result.found, len(result.faces), result.note) == (30, 30, "")


def test_a_cached_photo_follows_the_face_cap_of_the_day(monkeypatch: pytest.MonkeyPatch) -> None:
    crowd = Pipeline(CrowdDetector(), MeanColourBackbone(), face_choice="largest")  # the cap, not the choice
    source = ("crowd.png", image_bytes(noise_image(64, 64, seed=5)))
    crowd.embed([source])
    monkeypatch.setenv("FACELAB_MAX_FACES", "5")
    [lower] = crowd.embed([source])
    assert lower.cached and len(lower.faces) == 5 and lower.embeddings.shape == (5, 3) and len(lower.angles) == 5
    assert lower.note == "30 faces found, the 5 largest were used" and crowd.detector.calls == 1
    monkeypatch.setenv("FACELAB_MAX_FACES", "25")
    [higher] = crowd.embed([source])
    assert not higher.cached and len(higher.faces) == 25 and crowd.detector.calls == 2, "faces the old cap cut are found again"
