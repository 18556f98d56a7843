"""Naming faces with a trained run: unknown-face rules, relabelling, exports, and a real five_celebrity run."""

from __future__ import annotations

import csv
import io
import json
import zipfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from core.compare.unknown import UNKNOWN_LABEL, UnknownRule, calibrate_max_distance, nearest_by_person
from core.pipeline.alignment import AlignedFace
from core.pipeline.backbones.base import Backbone
from core.pipeline.detection.base import Detector, Face
from core.pipeline.embeddings import Pipeline
from core.services.predict import (
    CSV_COLUMNS,
    EMBEDDING_SPACE,
    FINETUNED_SPACE,
    SHOWS,
    SORTS,
    DatasetGone,
    FacePrediction,
    PhotoFilter,
    PhotoPrediction,
    PhotoSet,
    Predictor,
    accuracy,
    annotated_zip,
    confusion_table,
    dataset_photos,
    face_crop,
    filter_photos,
    nearest_training_photos,
    people_in,
    per_person,
    photo_sources,
    predictions_csv,
    relabel,
    run_dataset,
    run_test_split,
    show_options,
    stored_batch,
    summarize,
    uploaded_photos,
)
from core.training.heads.centroid import CentroidHead
from tests.conftest import displayed, image_bytes, run_cli, shared_dataset

# --- the rule and the distance helpers -----------------------------------------------------------------


@pytest.mark.parametrize(("rule", "confidence", "distance", "rejected"), [
    (UnknownRule(), 0.49, None, True),
    (UnknownRule(), 0.5, None, False),
    (UnknownRule(0.3, 0.2), 0.9, 0.25, True),  # confident, but far from every training face of that person
    (UnknownRule(0.3, 0.2), 0.9, 0.2, False),
    (UnknownRule(0.3, 0.2), 0.2, 0.01, True),  # close, but the head is unsure
    (UnknownRule(0.3, 0.2), 0.9, None, False),  # no gallery for the person: only the confidence counts
    (UnknownRule(0.0, None), 0.0, 5.0, False),  # everything accepted
])
def test_unknown_rule(rule: UnknownRule, confidence: float, distance: float | None, rejected: bool) -> None:
    assert rule.rejects(confidence, distance) is rejected


def test_nearest_by_person_on_hand_made_vectors() -> None:
    gallery = np.array([[1, 0], [0.8, 0.6], [0, 1], [-1, 0]], np.float32)
    labels = ["amy", "amy", "bob", "cat"]
    queries = np.array([[0.6, 0.8], [0, -1]], np.float32)
    best, where = nearest_by_person(queries, gallery, labels, ["amy", "bob", "cat", "dan"])
    # query 0 is 0.6·0.8+0.8·0.6 = 0.96 similar to amy's second face, 0.8 to bob's
    np.testing.assert_allclose(best[0, :3], [0.04, 0.2, 1.6], atol=1e-6)
    assert list(where[0, :3]) == [1, 2, 3]
    np.testing.assert_allclose(best[1, :3], [1.0 - 0.0, 2.0, 1.0], atol=1e-6)
    assert where[1, 0] == 0  # amy's [1, 0] (distance 1.0) beats [0.8, 0.6] (1.6)
    assert np.isinf(best[:, 3]).all() and (where[:, 3] == -1).all(), "a person without training faces"
    empty_best, empty_where = nearest_by_person(queries, np.zeros((0, 2), np.float32), [], ["amy"])
    assert np.isinf(empty_best).all() and (empty_where == -1).all()


def clusters(rng: np.random.Generator, centres: np.ndarray, per: int, spread: float) -> tuple[np.ndarray, list[str]]:
    vectors = np.concatenate([c + rng.normal(0, spread, (per, centres.shape[1])) for c in centres])
    return vectors.astype(np.float32), [f"p{i}" for i in range(len(centres)) for _ in range(per)]


def test_calibrated_distance_separates_genuine_from_impostor() -> None:
    rng = np.random.default_rng(0)
    centres = np.eye(8)[:4] * 10  # four orthogonal people
    train, train_labels = clusters(rng, centres, 6, 0.4)
    val, val_labels = clusters(rng, centres, 3, 0.4)
    threshold = calibrate_max_distance(train, train_labels, val, val_labels)
    assert threshold is not None
    best, _ = nearest_by_person(val, train, train_labels, ["p0", "p1", "p2", "p3"])
    own = np.array([int(name[1]) for name in val_labels])
    genuine = best[np.arange(len(val)), own]
    best[np.arange(len(val)), own] = np.inf
    impostor = best.min(axis=1)
    assert genuine.max() <= threshold <= impostor.min()


def test_calibration_needs_two_people_and_known_validation_faces() -> None:
    vectors = np.eye(3, dtype=np.float32)
    assert calibrate_max_distance(vectors, ["a", "a", "a"], vectors, ["a", "a", "a"]) is None
    assert calibrate_max_distance(vectors, ["a", "b", "b"], vectors, ["x", "y", "z"]) is None


# --- scoring and exports on hand-made predictions -----------------------------------------------------


def face(label: str, confidence: float, distance: float | None = 0.05, box=(0, 0, 10, 10),
         top3: list | None = None) -> FacePrediction:
    return FacePrediction(box, label, confidence, top3 or [(label, confidence)], distance, 0, 0.99)


def hand_made() -> list[PhotoPrediction]:
    return [
        PhotoPrediction("a1.jpg", "amy", [face("amy", 0.9), face("bob", 0.6, box=(20, 0, 5, 5))]),
        PhotoPrediction("a2.jpg", "amy", [face("bob", 0.7)]),
        PhotoPrediction("b1.jpg", "bob", [face(UNKNOWN_LABEL, 0.4, top3=[("bob", 0.4), ("amy", 0.3)])]),
        PhotoPrediction("b2.jpg", "bob", []),  # no face: counted apart, not judged
        PhotoPrediction("bad.jpg", "bob", error="the file is empty (0 bytes)."),  # unusable: not judged
        PhotoPrediction("new.jpg", None, [face("amy", 0.95)]),  # unlabelled: not judged
    ]


def test_accuracy_confusion_and_per_person() -> None:
    photos = hand_made()
    assert accuracy(photos) == pytest.approx(1 / 3), "of the three photos with a face"
    assert accuracy(photos[3:]) is None
    rows, table = confusion_table(photos, ["amy", "bob"])
    assert rows == ["amy", "bob"]
    assert table == [[1, 1, 0, 0], [0, 0, 1, 1]]  # columns: amy, bob, unknown, no face
    assert per_person(photos) == [
        {"person": "amy", "photos": 2, "correct": 1, "unknown": 0, "accuracy": 0.5},
        {"person": "bob", "photos": 1, "correct": 0, "unknown": 1, "accuracy": 0.0},
    ]


def test_relabel_moves_faces_in_and_out_of_unknown_without_touching_the_originals() -> None:
    photos = hand_made()
    strict = relabel(photos, UnknownRule(0.8, None))
    assert [f.label for f in strict[0].faces] == ["amy", UNKNOWN_LABEL]
    assert strict[1].predicted == UNKNOWN_LABEL
    lenient = relabel(photos, UnknownRule(0.0, None))
    assert lenient[2].predicted == "bob" and lenient[2].correct is True
    by_distance = relabel(photos, UnknownRule(0.0, 0.01))
    assert all(f.unknown for p in by_distance for f in p.faces)
    assert photos[2].predicted == UNKNOWN_LABEL and photos[0].faces[1].label == "bob", "originals unchanged"
    assert by_distance[4].error == photos[4].error and by_distance[3].faces == []


def test_csv_has_a_row_per_face_and_per_faceless_photo() -> None:
    text = predictions_csv(hand_made())
    rows = list(csv.DictReader(io.StringIO(text)))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert len(rows) == 2 + 1 + 1 + 1 + 1 + 1  # a1 has two faces
    first, second = rows[0], rows[1]
    assert (first["photo"], first["face"], first["box"], first["label"]) == ("a1.jpg", "0", "0 0 10 10", "amy")
    assert first["confidence"] == "0.9000" and first["truth"] == "amy" and first["correct"] == "true"
    assert second["face"] == "1" and second["correct"] == "", "only the largest face is judged"
    assert rows[2]["correct"] == "false"
    assert rows[3]["top3"] == "bob 0.4000; amy 0.3000"
    assert rows[4]["error"] == "no face found" and rows[4]["correct"] == "", "no face: not judged"
    assert rows[5]["error"] == "the file is empty (0 bytes)." and rows[5]["correct"] == ""
    assert rows[6]["truth"] == "" and rows[6]["correct"] == ""


# --- a Predictor with a fake pipeline: colours stand in for people ------------------------------------


class ColourDetector(Detector):
    """One face filling any image that is not black; a wide image holds two faces (its halves)."""

    name = "colour"

    def _detect(self, image: np.ndarray) -> list[Face]:
        if image.max() == 0:
            return []
        height, width = image.shape[:2]
        if width >= 2 * height:
            return [Face((0, 0, width // 2, height), 0.9), Face((width // 2, 0, width // 2, height), 0.8)]
        return [Face((0, 0, width, height), 0.9)]


class MeanColour(Backbone):
    """Embedding = the crop's mean colour (plus a little grey, so no embedding is ever zero)."""

    name = "mean-colour"
    input_size = 8
    embedding_dim = 3

    def align(self, image: np.ndarray, face: Face, rotate: bool = True, keep_steps: bool = False) -> AlignedFace:
        x, y, w, h = face.box
        crop = np.asarray(Image.fromarray(image[y:y + h, x:x + w]).resize((8, 8)))
        return AlignedFace(crop=crop, aligned=False, angle=0.0, eyes=None)

    def embed(self, crops: np.ndarray) -> np.ndarray:
        return crops.reshape(len(crops), -1, 3).mean(axis=1).astype(np.float32) + 1.0


def solid(colour: tuple[int, int, int], width: int = 40, height: int = 40) -> np.ndarray:
    return np.broadcast_to(np.array(colour, np.uint8), (height, width, 3)).copy()


@pytest.fixture
def colour_predictor(tmp_path: Path) -> Predictor:
    gallery = np.array([[250, 10, 10], [230, 30, 20], [10, 10, 250], [20, 30, 230]], np.float32)
    labels = np.array(["amy", "amy", "bob", "bob"])
    head = CentroidHead(3, 2)
    head.fit(gallery, np.array([0, 0, 1, 1]))
    run = SimpleNamespace(head=head, labels=["amy", "bob"], config=SimpleNamespace(dataset=str(tmp_path)),
                          extras={"train_embeddings": gallery, "train_labels": labels,
                                  "train_paths": np.array([f"train/{n}/{i}.png" for i, n in enumerate(labels)]),
                                  "unknown_max_distance": np.float32(0.05)})
    return Predictor(run, Pipeline(ColourDetector(), MeanColour()))


def test_fake_predictor_names_faces_rejects_strangers_and_reports_bad_files(colour_predictor: Predictor,
                                                                          tmp_path: Path) -> None:
    red = tmp_path / "red.png"
    red.write_bytes(image_bytes(solid((240, 20, 10))))
    group = np.concatenate([solid((240, 20, 10)), solid((15, 20, 240))], axis=1)
    sources = [red, ("notes.txt", b"hello, not a photo"), ("empty.png", b""), ("group.png", image_bytes(group)),
               ("black.png", image_bytes(solid((0, 0, 0)))), ("green.png", image_bytes(solid((10, 240, 10))))]
    truths = ["amy", None, None, "amy", "bob", None]
    seen: list[tuple[int, int]] = []
    photos = colour_predictor.predict(sources, truths, progress=lambda done, total: seen.append((done, total)))
    assert [p.name for p in photos] == [str(red), "notes.txt", "empty.png", "group.png", "black.png", "green.png"]
    assert photos[0].predicted == "amy" and photos[0].correct is True
    assert photos[0].faces[0].distance < 0.05 and photos[0].faces[0].top3[0][0] == "amy"
    assert "not an image" in photos[1].error and "empty" in photos[2].error
    assert photos[1].faces == [] and photos[1].correct is None
    assert [f.label for f in photos[3].faces] == ["amy", "bob"], "both faces of a group photo are named"
    assert photos[4].error is None and photos[4].faces == [] and photos[4].correct is None
    stranger = photos[5].faces[0]
    assert stranger.unknown and stranger.distance > 0.05 and stranger.best_guess in ("amy", "bob")
    assert seen[-1] == (6, 6)
    nearest = colour_predictor.nearest_training(photos[0].faces[0], "amy", k=5)
    assert [i for i, _ in nearest] == [0, 1] and nearest[0][1] <= nearest[1][1]
    assert colour_predictor.nearest_training(photos[0].faces[0], "zoe") == []


def test_annotate_and_zip_of_annotated_photos(colour_predictor: Predictor) -> None:
    group = np.concatenate([solid((240, 20, 10), 400, 300), solid((90, 240, 10), 400, 300)], axis=1)
    sources = [("group.jpg", image_bytes(group)), ("bad.jpg", b"\xff\xd8 truncated"), ("group.jpg", image_bytes(group))]
    photos = colour_predictor.predict(sources)
    annotated = colour_predictor.annotate(group, photos[0])
    assert annotated.shape == group.shape and (annotated != group).any()
    small = colour_predictor.annotate(group, photos[0], max_side=200)
    assert max(small.shape[:2]) == 200
    assert (small[60:90, 99] != small[60:90, 101]).any(), "the second face's box is drawn at the shrunk scale"
    archive = zipfile.ZipFile(io.BytesIO(annotated_zip(colour_predictor, sources, photos)))
    assert archive.namelist() == ["0001_group.jpg", "0003_group.jpg"], "unusable photos skipped, names unique"
    assert Image.open(archive.open("0001_group.jpg")).size == (800, 300)


def test_predictor_without_a_gallery_uses_confidence_only(colour_predictor: Predictor) -> None:
    run = colour_predictor.run
    bare = Predictor(SimpleNamespace(head=run.head, labels=run.labels, config=run.config, extras={}),
                     colour_predictor.pipeline)
    assert bare.rule == UnknownRule(max_distance=None)
    photo = bare.predict([("green.png", image_bytes(solid((10, 240, 10))))])[0]
    assert photo.faces[0].distance is None and photo.faces[0].nearest == -1


def test_a_fine_tuned_run_measures_distances_in_its_own_networks_space(tmp_path: Path) -> None:
    """A fine-tuned run's gallery holds its retrained network's embeddings, so a new face is embedded by that network
    too (here one that sees red and blue swapped); an older fine-tuned run's gallery holds the backbone's."""

    def swapped(crops: np.ndarray) -> np.ndarray:
        return crops.reshape(len(crops), -1, 3).mean(axis=1)[:, ::-1].astype(np.float32) + 1.0

    head = SimpleNamespace(kind="finetune", embed=swapped, predict_proba=lambda crops: np.tile([0.9, 0.1], (len(crops), 1)))
    gallery = swapped(np.stack([solid((250, 10, 10), 8, 8), solid((10, 10, 250), 8, 8)]))
    extras = {"train_embeddings": gallery, "train_labels": np.array(["amy", "bob"]), "unknown_max_distance": np.float32(0.05)}
    red = [("red.png", image_bytes(solid((240, 20, 10))))]
    for space, label in (({EMBEDDING_SPACE: np.array(FINETUNED_SPACE)}, "amy"), ({}, UNKNOWN_LABEL)):
        run = SimpleNamespace(head=head, labels=["amy", "bob"], config=SimpleNamespace(dataset=str(tmp_path)),
                              extras={**extras, **space})
        face = Predictor(run, Pipeline(ColourDetector(), MeanColour())).predict(red)[0].faces[0]
        assert face.label == label and face.confidence == pytest.approx(0.9)
        if space:
            assert face.distance < 0.01 and np.allclose(face.embedding, swapped(np.stack([solid((240, 20, 10), 8, 8)]))[0])


def write_dataset(root: Path, splits: dict[str, dict[str, int]]) -> Path:
    for split, people in splits.items():
        for person, count in people.items():
            folder = root / split / person
            folder.mkdir(parents=True)
            for i in range(count):
                (folder / f"{i}.png").write_bytes(image_bytes(solid((i * 40, 100, 100), 8, 8)))
    return root


def test_predictions_name_photos_inside_their_dataset_never_by_server_path(colour_predictor: Predictor,
                                                                          tmp_path: Path) -> None:
    dataset = write_dataset(tmp_path / "ds", {"train": {"amy": 1}, "test": {"amy": 2, "bob": 1}})
    (dataset / "test" / "bob" / "broken.png").write_bytes(b"not a photo")
    split = dataset_photos(dataset)
    photos = colour_predictor.predict(split.sources, split.truths, root=split.root)
    assert [p.name for p in photos] == ["test/amy/0.png", "test/amy/1.png", "test/bob/0.png", "test/bob/broken.png"]
    text = predictions_csv(photos)
    everything = text + json.dumps([p.to_dict() for p in photos]) + repr(summarize(photos, ["amy", "bob"]))
    assert str(tmp_path) not in everything and "/tmp" not in everything
    assert [row["photo"] for row in csv.DictReader(io.StringIO(text))][-1] == "test/bob/broken.png"


def test_a_photo_with_more_faces_than_the_cap_says_so(colour_predictor: Predictor,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FACELAB_MAX_FACES", "1")
    group = np.concatenate([solid((240, 20, 10)), solid((15, 20, 240))], axis=1)
    [photo] = colour_predictor.predict([("group.png", image_bytes(group))])
    assert len(photo.faces) == 1 and photo.found == 2
    assert photo.to_dict()["faces_found"] == 2
    assert photo.to_dict()["note"] == "2 faces found, the largest was used"
    rows = list(csv.DictReader(io.StringIO(predictions_csv([photo]))))
    assert [row["note"] for row in rows] == ["2 faces found, the largest was used"]
    assert summarize([photo], ["amy", "bob"]).capped == [("group.png", "2 faces found, the largest was used")]


def test_photo_sources(tmp_path: Path) -> None:
    dataset = write_dataset(tmp_path / "ds", {"train": {"amy": 2}, "test": {"amy": 2, "bob": 1}})
    paths, truths = photo_sources(dataset)
    assert truths == ["amy", "amy", "bob"] and all(p.parent.parent.name == "test" for p in paths)
    no_test = write_dataset(tmp_path / "no_test", {"train": {"amy": 2}})
    with pytest.raises(ValueError, match="without a test"):
        photo_sources(no_test)
    empty_test = write_dataset(tmp_path / "empty_test", {"train": {"amy": 1}})
    (empty_test / "test" / "amy").mkdir(parents=True)
    with pytest.raises(ValueError, match="no photos"):
        photo_sources(empty_test)
    loose = tmp_path / "loose"
    (loose / "day1").mkdir(parents=True)
    (loose / "day1" / "x.png").write_bytes(image_bytes(solid((1, 2, 3))))
    (loose / "readme.txt").write_text("not a photo")
    assert photo_sources(loose) == ([loose / "day1" / "x.png"], [None])
    (tmp_path / "nothing").mkdir()
    for folder in (tmp_path / "nothing", tmp_path / "missing"):
        with pytest.raises(ValueError):
            photo_sources(folder)


# --- the Predict page's engine: photo sets, the session store, filters and figures -------------------


def test_photo_sets_are_keyed_by_their_contents(tmp_path: Path) -> None:
    dataset = write_dataset(tmp_path / "ds", {"train": {"amy": 1}, "test": {"amy": 2, "bob": 1}})
    split = dataset_photos(dataset)
    assert split.label == "the test split of ds" and split.truths == ["amy", "amy", "bob"]
    assert split.sources == photo_sources(dataset)[0]
    assert dataset_photos(dataset) == split, "same files, same key"
    (dataset / "test" / "bob" / "new.png").write_bytes(image_bytes(solid((1, 2, 3), 8, 8)))
    assert dataset_photos(dataset).key != split.key, "a new photo is predicted, not served from the store"

    upload = uploaded_photos([("a.jpg", b"one"), ("b.jpg", b"two")], "2 uploaded photo(s)")
    assert upload.truths == [None, None] and upload.sources == [("a.jpg", b"one"), ("b.jpg", b"two")]
    assert uploaded_photos([("a.jpg", b"one"), ("b.jpg", b"two")], "again").key == upload.key
    for other in ([("a.jpg", b"one"), ("b.jpg", b"TWO")], [("a.jpg", b"one"), ("c.jpg", b"two")], [("a.jpg", b"one")]):
        assert uploaded_photos(other, "x").key != upload.key
    assert len(upload.short_id) == 12 and upload.short_id != split.short_id
    assert int(upload.short_id, 16) >= 0, "hex digits only: safe in a widget key"


def test_run_dataset_and_its_test_split(colour_predictor: Predictor, tmp_path: Path) -> None:
    assert run_dataset(colour_predictor) == tmp_path
    dataset = write_dataset(tmp_path / "trained_on", {"train": {"amy": 1}, "test": {"bob": 2}})
    colour_predictor.run.config.dataset = str(dataset)
    assert run_test_split(colour_predictor) == dataset_photos(dataset)
    for gone in (tmp_path / "moved_away", ""):
        colour_predictor.run.config.dataset = str(gone)
        with pytest.raises(DatasetGone, match="not on this server any more") as raised:
            run_test_split(colour_predictor)
        assert raised.value.root == Path(gone)


def test_nearest_training_photos(colour_predictor: Predictor, tmp_path: Path) -> None:
    red = colour_predictor.predict([("red.png", image_bytes(solid((240, 20, 10))))])[0].faces[0]
    nearest = nearest_training_photos(colour_predictor, red, k=5)
    assert [path for path, _ in nearest] == [tmp_path / "train/amy/0.png", tmp_path / "train/amy/1.png"]
    assert nearest[0][1] <= nearest[1][1]
    stranger = FacePrediction(red.box, UNKNOWN_LABEL, 0.9, [("zoe", 0.9)], None, -1, 0.9, red.embedding)
    assert nearest_training_photos(colour_predictor, stranger) == [], "no training face of zoe"
    colour_predictor.gallery_paths = []
    with pytest.raises(DatasetGone):
        nearest_training_photos(colour_predictor, red)
    colour_predictor.run.config.dataset = str(tmp_path / "moved_away")
    with pytest.raises(DatasetGone):
        nearest_training_photos(colour_predictor, red)


def test_face_crop_keeps_a_margin_inside_the_image() -> None:
    image = np.arange(100 * 120 * 3, dtype=np.uint32).reshape(100, 120, 3)
    crop = face_crop(image, face("amy", 0.9, box=(20, 30, 50, 40)))
    assert crop.shape[:2] == (40 + 2 * 8, 50 + 2 * 10)
    np.testing.assert_array_equal(crop[0, 0], image[22, 10])
    assert face_crop(image, face("amy", 0.9, box=(0, 0, 10, 10))).shape[:2] == (12, 12), "clipped at the edge"


def test_stored_batch_predicts_each_set_once_and_keeps_the_newest(colour_predictor: Predictor) -> None:
    calls: list[str] = []

    def predict(photos: PhotoSet) -> list[PhotoPrediction]:
        calls.append(photos.key)
        return [PhotoPrediction(str(i)) for i in range(len(photos.sources))]

    sets = [uploaded_photos([(f"{n}.png", bytes([n]))], f"set {n}") for n in range(3)]
    store: dict = {}
    first = stored_batch(store, "run1", sets[0], predict, keep=2)
    assert first.label == "set 0" and first.sources == sets[0].sources and len(first.photos) == 1
    assert stored_batch(store, "run1", sets[0], predict, keep=2) is first and len(calls) == 1
    stored_batch(store, "run2", sets[0], predict, keep=2)
    assert len(calls) == 2, "another run predicts the same photos anew"
    stored_batch(store, "run1", sets[1], predict, keep=2)
    assert list(store) == [f"run2|{sets[0].key}", f"run1|{sets[1].key}"], "the oldest set is dropped"
    assert stored_batch(store, "run1", sets[0], predict, keep=2) is not first and len(calls) == 4


def test_batch_keeps_annotated_jpegs_per_size_and_labels(colour_predictor: Predictor) -> None:
    group = image_bytes(np.concatenate([solid((240, 20, 10), 200, 100), solid((15, 20, 240), 200, 100)], axis=1))
    photos = uploaded_photos([("group.png", group)], "one")
    batch = stored_batch({}, "run", photos, lambda p: colour_predictor.predict(p.sources))
    photo = batch.photos[0]
    small = batch.annotated_jpeg(colour_predictor, 0, photo, 100)
    assert Image.open(io.BytesIO(small)).size == (100, 25)
    assert batch.annotated_jpeg(colour_predictor, 0, photo, 100) is small and len(batch.thumbs) == 1
    strict = relabel([photo], UnknownRule(0.0, 0.0))[0]
    assert all(f.unknown for f in strict.faces)
    assert batch.annotated_jpeg(colour_predictor, 0, strict, 100) != small, "new labels, new picture"
    batch.annotated_jpeg(colour_predictor, 0, photo, 300)
    assert len(batch.thumbs) == 3


def test_photo_confidence_and_no_face() -> None:
    photos = hand_made()
    assert [p.confidence for p in photos] == [0.9, 0.7, 0.4, None, None, 0.95]
    assert [p.no_face for p in photos] == [False, False, False, True, False, False], "unusable is not faceless"


@pytest.mark.parametrize(("chosen", "indices"), [
    (PhotoFilter(), [0, 1, 2, 3, 4, 5]),
    (PhotoFilter(show="Correct"), [0]),
    (PhotoFilter(show="Incorrect"), [1, 2]),
    (PhotoFilter(show="With unknown faces"), [2]),
    (PhotoFilter(show="Low confidence", low=0.65), [0, 2]),  # a1's second face is below, too
    (PhotoFilter(show="No face found"), [3]),
    (PhotoFilter(show="Unusable"), [4]),
    (PhotoFilter(person="amy"), [0, 1, 5]),  # truth amy, or a face taken for amy
    (PhotoFilter(person="bob"), [0, 1, 2, 3, 4]),  # b1's unknown face is bob's best guess
    (PhotoFilter(person="bob", show="Incorrect"), [1, 2]),
    (PhotoFilter(order=SORTS[1]), [2, 1, 0, 5, 3, 4]),  # faceless photos last, in file order
    (PhotoFilter(order=SORTS[2]), [5, 0, 1, 2, 3, 4]),
    (PhotoFilter(person="amy", order=SORTS[1]), [1, 0, 5]),
])
def test_filter_photos(chosen: PhotoFilter, indices: list[int]) -> None:
    assert filter_photos(hand_made(), chosen) == indices


def test_filter_choices_follow_the_photos() -> None:
    photos = hand_made()
    assert people_in(photos) == ["amy", "bob"]
    assert people_in([PhotoPrediction("x.jpg", None, [face("cat", 0.9)])]) == ["cat"]
    assert show_options(photos) == list(SHOWS)
    assert show_options(photos[5:]) == [s for s in SHOWS if s not in ("Correct", "Incorrect")], "no labels, no verdict"


def test_summary_of_a_prediction_set() -> None:
    photos = hand_made()
    summary = summarize(photos, ["amy"])
    assert (summary.photos, summary.faces, summary.unknown_faces, summary.no_face) == (6, 5, 1, 1)
    assert (summary.judged, summary.correct, summary.accuracy) == (2, 1, 0.5), "only amy's photos count"
    assert (summary.stranger_photos, summary.rejected, summary.rejection_rate) == (1, 1, 1.0), "b1 rejected"
    both = summarize(photos, ["amy", "bob"])
    assert (both.judged, both.accuracy, both.no_face, both.no_face_photos) == (3, accuracy(photos), 1, ["b2.jpg"])
    assert summary.errors == [("bad.jpg", "the file is empty (0 bytes).")]
    assert summary.strangers == ["bob"], "bob is labelled but not known to the run"
    assert summarize(photos, ["amy", "bob"]).strangers == []
    lenient = summarize(relabel(photos, UnknownRule(0.0, None)), ["amy", "bob"])
    assert (lenient.unknown_faces, lenient.correct) == (0, 2), "the figures follow the thresholds"
    empty = summarize(photos[5:], ["amy"])
    assert (empty.judged, empty.accuracy, empty.strangers) == (0, None, [])


def test_open_set_scoring_rejects_strangers_and_names_false_accepts() -> None:
    known = frozenset({"amy"})
    photos = [PhotoPrediction("a.jpg", "amy", [face("amy", 0.9)], known=known),
              PhotoPrediction("z1.jpg", "zed", [face(UNKNOWN_LABEL, 0.6, top3=[("amy", 0.6)])], known=known),
              PhotoPrediction("z2.jpg", "zed", [face(UNKNOWN_LABEL, 0.3, top3=[("amy", 0.3)])], known=known),
              PhotoPrediction("z3.jpg", "zed", [face("amy", 0.8)], known=known),
              PhotoPrediction("z4.jpg", "zed", [], known=known)]
    assert [p.stranger for p in photos] == [False, True, True, True, True]
    assert [p.correct for p in photos] == [True, True, True, False, None], "a stranger's right answer is unknown"
    assert [p.verdict for p in photos] == ["right", "correctly rejected", "correctly rejected",
                                           "wrongly accepted as amy", ""]
    assert accuracy(photos) == 1.0, "strangers are not part of the identification accuracy"
    summary = summarize(photos, ["amy"])
    assert (summary.judged, summary.correct, summary.stranger_photos, summary.rejected) == (1, 1, 3, 2)
    assert summary.rejection_rate == pytest.approx(2 / 3) and summary.false_accept_rate == pytest.approx(1 / 3)
    assert summary.strangers == ["zed"]
    only_strangers = summarize(photos[1:3], ["amy"])
    assert (only_strangers.accuracy, only_strangers.rejection_rate) == (None, 1.0), "no 0 % accuracy for strangers"
    assert filter_photos(photos, PhotoFilter(show="Incorrect")) == [3]


@pytest.mark.parametrize(("typed", "folder"), [
    ("Lionel Messi", "lionel_messi"), ("José Mourinho", "jose-mourinho"), ("  Ada  LOVELACE ", "ada__lovelace"),
    ("Zoë", "ZOE"), ("Mary-Jane Watson", "mary jane_watson"),
])
def test_person_key_makes_one_person_of_typed_and_folder_names(typed: str, folder: str) -> None:
    from core.data.names import person_key

    assert person_key(typed) == person_key(folder)
    photo = PhotoPrediction("x.jpg", folder, [face(typed, 0.98)], known=frozenset({person_key(typed)}))
    assert photo.correct is True and photo.verdict == "right" and not photo.stranger
    assert summarize([photo], [typed]).accuracy == 1.0


def test_person_key_keeps_different_people_apart() -> None:
    from core.data.names import person_key

    assert person_key("Lionel Messi") != person_key("Lionel Messie")
    assert person_key("ann lee") != person_key("annlee")
    photo = PhotoPrediction("x.jpg", "lionel_messi", [face("Lionel Messie", 0.9)], known=frozenset({"lionel messie"}))
    assert photo.stranger and photo.verdict == "wrongly accepted as Lionel Messie"


def test_unknown_label_text_names_the_closest_person() -> None:
    rejected = face(UNKNOWN_LABEL, 0.63, top3=[("maria_sharapova", 0.63), ("amy", 0.2)])
    assert rejected.text == "unknown (closest: maria_sharapova, 63%)"
    assert face("amy", 0.98).text == "amy 98%"
    photo = PhotoPrediction("m.jpg", None, [rejected])
    assert photo.to_dict()["faces"][0]["text"] == "unknown (closest: maria_sharapova, 63%)"
    row = next(csv.DictReader(io.StringIO(predictions_csv([photo]))))
    assert (row["label"], row["text"]) == (UNKNOWN_LABEL, "unknown (closest: maria_sharapova, 63%)")
    from pages.components.predict_views import caption

    assert "unknown (closest: maria_sharapova, 63%)" in displayed(caption(photo))
    stranger = PhotoPrediction("z.jpg", "zed", [rejected], known=frozenset({"amy"}))
    assert displayed(caption(stranger)).startswith(":green[unknown (closest: maria_sharapova, 63%) · correctly rejected]")
    assert "wrong" not in caption(stranger)


# --- a real run: five_celebrity with dlib HOG + dlib ResNet (offline models) --------------------------


@pytest.fixture(scope="module")
def celebrity_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A run trained once for this module in its own FaceLab home: (home, run id).

    The centroid head trains in a fraction of a second; the Keras heads load and predict the same way.
    """
    dataset = shared_dataset("five_celebrity_faces")
    from core.pipeline.backbones import BACKBONES
    from core.pipeline.detection import DETECTORS
    from core.services.train import train_on_dataset
    from core.training.config import TrainConfig

    home = tmp_path_factory.mktemp("predict_home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FACELAB_HOME", str(home))
        pipeline = Pipeline(DETECTORS.get("dlib-hog"), BACKBONES.get("dlib-resnet"))
        info = train_on_dataset(dataset, pipeline, TrainConfig(head="centroid")).info
    return home, info.id


@pytest.fixture
def real(celebrity_run: tuple[Path, str], monkeypatch: pytest.MonkeyPatch) -> Predictor:
    from core.services.predict import predictor_for_run

    monkeypatch.setenv("FACELAB_HOME", str(celebrity_run[0]))
    return predictor_for_run(celebrity_run[1])


def test_five_celebrity_test_split(real: Predictor, five_celebrity: Path) -> None:
    paths, truths = photo_sources(five_celebrity)
    photos = real.predict(paths, truths)
    correct = sum(p.correct is True for p in photos)
    print(f"five_celebrity test split with dlib-hog + dlib-resnet: {correct}/{len(photos)} named correctly")
    assert len(photos) == 24 and all(p.error is None for p in photos)
    assert correct >= 23
    # dlib HOG finds no face in one ben_afflek photo; every face it does find is named right
    assert all(p.correct for p in photos if p.faces)
    assert real.rule.max_distance is not None and 0 < real.rule.max_distance < 0.5


def test_real_batch_with_a_non_image_and_a_group_photo(real: Predictor, five_celebrity: Path) -> None:
    madonna = sorted((five_celebrity / "test" / "madonna").iterdir())[0]
    elton = sorted((five_celebrity / "test" / "elton_john").iterdir())[1]
    left, right = (np.asarray(Image.open(p).convert("RGB").resize((300, 300))) for p in (madonna, elton))
    group = image_bytes(np.concatenate([left, right], axis=1))
    photos = real.predict([madonna, ("notes.pdf", b"%PDF-1.4 not a photo"), ("group.png", group)],
                          ["madonna", None, None])
    assert photos[0].correct is True
    assert photos[1].error and not photos[1].faces
    assert sorted(f.label for f in photos[2].faces) == ["elton_john", "madonna"]
    face_ = photos[2].faces[0]
    nearest = real.nearest_training(face_, face_.label)
    assert nearest and all(real.gallery_labels[i] == face_.label for i, _ in nearest)
    assert (five_celebrity / real.gallery_paths[nearest[0][0]]).is_file()


def test_strangers_are_rejected_as_unknown(real: Predictor) -> None:
    strangers = shared_dataset("deepface_unit_identities")
    paths, _ = photo_sources(strangers)
    faces = [f for p in real.predict(paths) for f in p.faces]
    rate = sum(f.unknown for f in faces) / len(faces)
    print(f"deepface_unit_identities strangers rejected as unknown: {sum(f.unknown for f in faces)}/{len(faces)}")
    assert len(faces) >= 8 and rate >= 0.8


def test_a_test_split_of_strangers_is_scored_by_rejection(real: Predictor) -> None:
    strangers = shared_dataset("glint360k_celebrity_sample")
    paths, truths = photo_sources(strangers)
    photos = real.predict(paths[:22], truths[:22])
    summary = summarize(photos, real.run.labels)
    print(f"glint360k strangers by a five_celebrity run: {summary.rejected}/{summary.stranger_photos} rejected")
    assert all(p.stranger for p in photos) and summary.judged == 0 and summary.accuracy is None
    assert summary.stranger_photos >= 18 and summary.rejection_rate >= 0.8
    assert not any(p.verdict.startswith("wrong,") for p in photos), "a stranger is never 'wrong, is X'"
    assert sum(p.verdict == "correctly rejected" for p in photos) == summary.rejected


def test_cli_predict_json_and_annotated_copies(celebrity_run: tuple[Path, str], five_celebrity: Path,
                                               tmp_path: Path) -> None:
    home, run_id = celebrity_run
    out = tmp_path / "annotated"
    done = run_cli("predict", run_id, str(five_celebrity), "--json", "--out", str(out), home=home)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout)
    assert result["run"] == run_id and len(result["images"]) == 24
    assert result["accuracy"] == 1.0 and result["judged"] == 23, "over the photos with a face, as train counts"
    assert result["no_face"] == 1 and result["no_face_photos"][0].startswith("test/ben_afflek/")
    assert result["confusion"]["columns"][-2:] == ["unknown", "no face"]
    assert {"name", "truth", "predicted", "correct", "faces"} <= set(result["images"][0])
    files = sorted(out.iterdir())
    assert len(files) == 24 and all(f.suffix == ".jpg" and not f.name.startswith(".tmp") for f in files)
    assert Image.open(files[0]).format == "JPEG"
    bad = run_cli("predict", "nope", str(five_celebrity), home=home)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr and "not a run id" in bad.stderr


def test_cli_scores_strangers_open_set_and_names_by_key(celebrity_run: tuple[Path, str], five_celebrity: Path,
                                                        tmp_path: Path) -> None:
    """Strangers rejected count as right answers, and a folder named "Elton John" is the run's elton_john."""
    home, run_id = celebrity_run
    folder = tmp_path / "mixed"
    strangers = shared_dataset("glint360k_celebrity_sample") / "test"
    for person in sorted(strangers.iterdir())[:3]:
        (folder / "test" / person.name).mkdir(parents=True)
        for photo in sorted(person.iterdir())[:2]:
            (folder / "test" / person.name / photo.name).write_bytes(photo.read_bytes())
    (folder / "test" / "Elton John").mkdir()  # typed as a Builder would keep it; the run knows elton_john
    for photo in sorted((five_celebrity / "test" / "elton_john").iterdir())[:2]:
        (folder / "test" / "Elton John" / photo.name).write_bytes(photo.read_bytes())
    done = run_cli("predict", run_id, str(folder), "--json", home=home)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout)
    print({k: result[k] for k in ("accuracy", "stranger_photos", "rejected", "rejection_rate", "false_accept_rate")})
    assert result["accuracy"] == 1.0 and result["judged"] == 2, "Elton John is elton_john"
    assert result["stranger_photos"] == 6 and result["rejection_rate"] >= 5 / 6
    assert result["false_accept_rate"] == pytest.approx(1 - result["rejection_rate"])
    verdicts = [image["verdict"] for image in result["images"] if image["stranger"]]
    assert verdicts.count("correctly rejected") == result["rejected"]
    assert not any(v.startswith("wrong,") for v in verdicts)
    rejected = [f for image in result["images"] for f in image["faces"] if f["label"] == "unknown"]
    assert rejected and all(f["text"].startswith("unknown (closest: ") for f in rejected)
    printed = run_cli("predict", run_id, str(folder), home=home).stdout
    assert f"{result['rejected']}/6 correctly rejected" in printed and "unknown (closest: " in printed
    assert "· wrong, is" not in printed
    assert "accuracy 100.0% of 2 labelled photos with a face of people the run knows; 0 without a face" in printed
