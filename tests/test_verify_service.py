"""The Verify service and the ``verify``/``calibrate`` commands on real photos (dlib HOG + dlib ResNet, offline)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from core.compare.calibration import calibrate, list_calibrations
from core.compare.distances import METRICS
from core.compare.verification import verify
from core.images import ImageError
from core.pipeline.alignment import AlignedFace
from core.pipeline.backbones import BACKBONES
from core.pipeline.backbones.base import Backbone
from core.pipeline.detection import DETECTORS
from core.pipeline.detection.base import Detector, Face
from core.pipeline.embeddings import Pipeline
from core.services import calibrate as calibrate_service
from core.services import gallery as gallery_service
from core.services import verify as service
from tests.conftest import identity_clusters, image_bytes, run_cli

PEOPLE = ("madonna", "elton_john", "jerry_seinfeld")


@pytest.fixture(scope="module")
def pipeline() -> Pipeline:
    return Pipeline(DETECTORS.get("dlib-hog"), BACKBONES.get("dlib-resnet"))


def photo_path(five_celebrity: Path, person: str, index: int) -> Path:
    return sorted((five_celebrity / "train" / person).iterdir())[index]


def analyse(pipeline: Pipeline, path: Path, with_steps: bool = False) -> service.PhotoAnalysis:
    return service.analyse_photo(pipeline, path.read_bytes(), path.name, with_steps=with_steps)


@pytest.fixture
def tiny_dataset(tmp_path: Path, five_celebrity: Path) -> Path:
    """Three train photos each of three people (copied: calibration keys on the dataset's files)."""
    root = tmp_path / "tiny"
    for person in PEOPLE:
        (root / "train" / person).mkdir(parents=True)
        for index in range(3):
            source = photo_path(five_celebrity, person, index)
            (root / "train" / person / source.name).write_bytes(source.read_bytes())
    return root


def test_same_person_is_verified_and_different_people_are_not(pipeline: Pipeline, five_celebrity: Path) -> None:
    first, same, other = (analyse(pipeline, photo_path(five_celebrity, person, i))
                          for person, i in (("madonna", 0), ("madonna", 1), ("elton_john", 0)))
    match = service.compare(pipeline, first.face(0), same.face(0))
    assert match.verified and match.confidence > 0.5
    assert match.metric == "euclidean" and match.threshold == pytest.approx(0.6)  # dlib's documented threshold
    assert match.threshold_source == "default"
    stranger = service.compare(pipeline, first.face(0), other.face(0))
    assert not stranger.verified and stranger.confidence < 0.5
    assert stranger.distances["euclidean"] > match.distances["euclidean"]


def test_steps_are_drawn_for_the_page(pipeline: Pipeline, five_celebrity: Path) -> None:
    analysis = analyse(pipeline, photo_path(five_celebrity, "madonna", 0), with_steps=True)
    view = analysis.face(0)
    assert view.aligned.aligned and view.aligned.crop.shape == (150, 150, 3)
    for image in (view.detected, view.eye_line, view.network_input, analysis.overview):
        assert image is not None and image.dtype == np.uint8 and image.ndim == 3
    assert view.network_input.shape == (150, 3 * 150 + 2 * service.CHANNEL_GAP, 3)  # one map per input channel
    assert view.aligned.rotated is None  # the whole rotated photo is dropped once drawn
    assert view.to_dict(0)["box"] == list(view.face.box)


class TiltedFaces(Detector):
    """Faces at fixed places of a big photo, eyes tilted by about 22°, largest first; no downscaling."""

    name = "tilted"
    max_side = 100_000

    def _detect(self, image: np.ndarray) -> list[Face]:
        return [Face((1200 + 500 * i, 700, 400 - 50 * i, 400 - 50 * i), 0.9, (1300 + 500 * i, 820),
                     (1500 + 500 * i, 900)) for i in range(3)]


class MeanColour(Backbone):
    """The generic eye-levelling crop (core.pipeline.alignment); embedding = mean colour."""

    name = "mean-colour"
    input_size = 32
    embedding_dim = 3

    def embed(self, crops: np.ndarray) -> np.ndarray:
        return crops.reshape(len(crops), -1, 3).mean(axis=1).astype(np.float32)


MARK = (250, 0, 250)  # painted on the photo at both eyes: no drawing uses it


def marks(picture: np.ndarray) -> list[tuple[float, float]]:
    """Centroids (x, y) of the eye marks left and right of the picture's middle (blended edges included)."""
    pixels = picture.astype(int)
    ys, xs = np.nonzero((pixels[..., 0] > 180) & (pixels[..., 1] < 80) & (pixels[..., 2] > 180))
    middle = (xs.min() + xs.max()) / 2
    return [(float(xs[side].mean()), float(ys[side].mean())) for side in (xs < middle, xs >= middle)]


def test_steps_of_a_big_photo_show_each_face_in_place_and_levelled(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FACELAB_MAX_FACES", "2")
    photo = np.full((2000, 3000, 3), 40, np.uint8)
    for x, y in ((1300, 820), (1500, 900)):
        photo[y - 20:y + 20, x - 20:x + 20] = MARK
    [analysis] = service.analyse_photos(Pipeline(TiltedFaces(), MeanColour()), [(image_bytes(photo), "big.png")],
                                        with_steps=True)
    assert (analysis.found, len(analysis.faces)) == (3, 2)
    assert analysis.note == "3 faces found, the 2 largest were used"
    assert max(analysis.overview.shape[:2]) == 2 * service.DISPLAY_SIDE
    view = analysis.face(0)
    assert view.aligned.aligned and view.aligned.rotated is None
    for picture in (view.detected, view.eye_line):
        assert max(picture.shape[:2]) <= service.DISPLAY_SIDE
    pad = int(400 * service.FACE_CONTEXT)
    scale = view.detected.shape[1] / (400 + 2 * pad)
    (lx, ly), (rx, ry) = marks(view.detected)
    assert (lx, ly) == pytest.approx(((1300 - 1200 + pad) * scale, (820 - 700 + pad) * scale), abs=2)
    assert (rx, ry) == pytest.approx(((1500 - 1200 + pad) * scale, (900 - 700 + pad) * scale), abs=2)
    (_, left_y), (_, right_y) = marks(view.eye_line)
    assert left_y == pytest.approx(right_y, abs=1.5), "step 2 shows the photo turned so the eyes are level"


def test_no_face_and_non_image_give_clear_errors(pipeline: Pipeline) -> None:
    blank = image_bytes(np.full((200, 200, 3), 128, np.uint8))
    with pytest.raises(service.NoFaceError, match="grey.png: no face found by the dlib-hog detector; try another"):
        service.analyse_photo(pipeline, blank, "grey.png")
    with pytest.raises(ImageError, match="notes.jpg: not an image"):
        service.analyse_photo(pipeline, b"plain text", "notes.jpg")


def test_several_photos_at_once_give_what_one_at_a_time_gives(pipeline: Pipeline, five_celebrity: Path) -> None:
    paths = [photo_path(five_celebrity, person, 0) for person in ("madonna", "elton_john")]
    together = service.analyse_photos(pipeline, [(path.read_bytes(), path.name) for path in paths], with_steps=True)
    for path, batched in zip(paths, together):
        alone = analyse(pipeline, path, with_steps=True)
        assert batched.name == path.name and len(batched.faces) == len(alone.faces)
        np.testing.assert_allclose(batched.face(0).embedding, alone.face(0).embedding, atol=1e-6)
        assert batched.face(0).network_input.shape == alone.face(0).network_input.shape
    blank = image_bytes(np.full((200, 200, 3), 128, np.uint8))
    with pytest.raises(service.NoFaceError, match="^second.png: no face"):
        service.analyse_photos(pipeline, [(paths[0].read_bytes(), "first.jpg"), (blank, "second.png")])


def test_asking_for_a_missing_face_names_how_many_there_are(pipeline: Pipeline, five_celebrity: Path) -> None:
    analysis = analyse(pipeline, photo_path(five_celebrity, "madonna", 0))
    with pytest.raises(ValueError, match="there is no face 3; the photo has 1"):
        analysis.face(3)


def test_calibration_round_trip(pipeline: Pipeline, tiny_dataset: Path, five_celebrity: Path) -> None:
    assert calibrate_service.find_calibration(pipeline, tiny_dataset) is None
    gallery = gallery_service.build_gallery(pipeline, tiny_dataset)
    assert sorted(set(gallery.labels)) == sorted(PEOPLE) and gallery.photos == 9 and not gallery.no_face
    made = calibrate_service.calibrate_gallery(pipeline, gallery)
    assert (made.n_genuine, made.n_impostor, made.metric) == (9, 27, "euclidean")
    assert made.context == calibrate_service.calibration_context(pipeline, gallery.fingerprint, "tiny")
    assert calibrate_service.find_calibration(pipeline, tiny_dataset) == made
    assert calibrate_service.find_calibration(pipeline) == made  # newest with this detector, alignment and backbone
    unaligned = Pipeline(pipeline.detector, pipeline.backbone, align=False)
    assert calibrate_service.find_calibration(unaligned) is None and calibrate_service.find_calibration(unaligned, tiny_dataset) is None

    first, second = (analyse(pipeline, photo_path(five_celebrity, "madonna", i)).face(0) for i in (0, 1))
    verdict = service.compare(pipeline, first, second, made)
    assert verdict.threshold_source == "calibrated" and verdict.thresholds == made.thresholds

    matches = gallery_service.search(gallery, first.embedding, "euclidean", k=2)
    assert matches[0].person == "madonna" and matches[0].distance < 1e-3  # the photo itself is in the dataset
    assert len(matches) == 2 and matches[0].path.is_file()
    points, marked = gallery_service.embedding_map(gallery, [first.embedding, second.embedding])
    assert points.shape == (len(gallery.labels), 2) and marked.shape == (2, 2)


def test_calibration_needs_two_people(pipeline: Pipeline, tiny_dataset: Path) -> None:
    for person in PEOPLE[1:]:
        for path in (tiny_dataset / "train" / person).iterdir():
            path.unlink()
    with pytest.raises(ValueError, match="two people"):
        calibrate_service.calibrate_gallery(pipeline, gallery_service.build_gallery(pipeline, tiny_dataset))


# ---------------------------------------------------------------- what the Verify page draws and keeps


def test_the_metric_that_decides_is_the_calibrations_else_the_backbones(pipeline: Pipeline) -> None:
    embeddings, labels = identity_clusters(3, 3, 8, 0.1)
    calibrated = calibrate(embeddings, labels, metric="cosine")
    assert service.decision_metric(pipeline) == pipeline.backbone.decision_metric == "euclidean"
    assert service.decision_metric(pipeline, calibrated) == "cosine"


def test_metric_checks_list_every_metric_and_accept_at_the_threshold() -> None:
    verdict = verify([1.0, 0.0], [0.0, 1.0], defaults={"cosine": 1.0, "euclidean": 1.0, "euclidean_l2": 1.0})
    checks = service.metric_checks(verdict)
    assert [c.metric for c in checks] == list(METRICS)
    same = {c.metric: c.same for c in checks}
    assert same == {"cosine": True, "euclidean": False, "euclidean_l2": False}  # cosine distance is exactly 1.0
    assert checks[1].distance == pytest.approx(math.sqrt(2)) and checks[1].threshold == 1.0


def fake_view(box: tuple[int, int, int, int]) -> service.FaceView:
    face = Face(box=box, score=1.0)
    return service.FaceView(face, AlignedFace(np.zeros((4, 4, 3), np.uint8), False, 0.0, None), np.zeros(4, np.float32))


def test_alignment_change_is_reported_once_both_settings_were_seen(pipeline: Pipeline) -> None:
    unaligned = Pipeline(pipeline.detector, pipeline.backbone, align=False)
    faces = [("photo-a", fake_view((0, 0, 10, 10))), ("photo-b", fake_view((5, 5, 10, 10)))]
    memory: service.AlignmentMemory = {}
    assert service.alignment_change(memory, pipeline, faces, 0.40) is None  # first sight
    assert service.alignment_change(memory, pipeline, faces, 0.40) is None  # a rerun, same setting
    assert service.alignment_change(memory, unaligned, faces, 0.55) == pytest.approx(0.15)
    assert service.alignment_change(memory, pipeline, faces, 0.40) == pytest.approx(-0.15)
    other_face = [faces[0], ("photo-b", fake_view((6, 5, 10, 10)))]
    assert service.alignment_change(memory, unaligned, other_face, 0.5) is None  # another pair is remembered apart


def test_labelled_photos_are_grouped_per_person_and_read_with_their_name(tiny_dataset: Path) -> None:
    (tiny_dataset / "test").mkdir()
    (tiny_dataset / "test" / "stranger.jpg").write_bytes(b"unlabelled")
    photos = service.labelled_photos(tiny_dataset)
    assert list(photos) == sorted(PEOPLE) and all(len(records) == 3 for records in photos.values())
    record = photos["madonna"][0]
    name, data = service.read_photo(record)
    assert name == f"madonna/{record.path.name}" and data == record.path.read_bytes()


def test_calibration_curves_are_shares_of_pairs_and_the_roc_points() -> None:
    embeddings, labels = identity_clusters(4, 5, 16, 0.5)
    calibrated = calibrate(embeddings, labels, metric="euclidean", target_far=0.05)
    curves = calibrate_service.calibration_curves(calibrated, "euclidean")
    chosen = calibrated.metrics["euclidean"]
    edges = np.asarray(chosen.histogram_edges)
    assert len(curves.centres) == len(curves.widths) == len(edges) - 1
    np.testing.assert_allclose(curves.centres - curves.widths / 2, edges[:-1])
    assert curves.genuine_share.sum() == pytest.approx(1.0) and curves.impostor_share.sum() == pytest.approx(1.0)
    assert curves.threshold == chosen.threshold and curves.auc == chosen.auc
    assert curves.eer_point == (chosen.eer, 1.0 - chosen.eer) and curves.chosen_point == (chosen.far, chosen.tar)
    assert curves.chosen_point[0] <= 0.05


def toy_gallery(tmp_path: Path) -> gallery_service.Gallery:
    paths = [tmp_path / f"{name}.jpg" for name in ("b1", "a1", "b2", "a2")]
    embeddings = np.array([[0, 0], [5, 5], [0, 1], [5, 6]], np.float32)
    return gallery_service.Gallery(tmp_path, "fp", embeddings, ["bob", "ann", "bob", "ann"], paths, [], {}, "pipe")


def test_map_helpers_group_people_refuse_tiny_tsne_and_key_by_content(tmp_path: Path) -> None:
    gallery = toy_gallery(tmp_path)
    points = gallery.embeddings * 10
    groups = gallery_service.points_by_person(gallery, points)
    assert [g.person for g in groups] == ["ann", "bob"]
    assert groups[0].names == ["a1.jpg", "a2.jpg"] and groups[0].points.tolist() == [[50, 50], [50, 60]]
    assert gallery_service.projection_problem(gallery, 0, "tsne") == "t-SNE needs at least 5 faces."
    assert gallery_service.projection_problem(gallery, 1, "tsne") is None
    assert gallery_service.projection_problem(gallery, 0, "pca") is None
    assert gallery_service.projection_eta(gallery, 1, "tsne") is None  # a handful of points: no note
    one, other = np.ones(2, np.float32), np.zeros(2, np.float32)
    assert gallery_service.projection_key(gallery, [one]) == gallery_service.projection_key(gallery, [one.copy()])
    assert gallery_service.projection_key(gallery, [one]) != gallery_service.projection_key(gallery, [other])
    assert gallery_service.search(gallery, np.array([5.0, 5.2]), "euclidean", k=1)[0].person == "ann"


def test_large_tsne_maps_get_an_estimate_and_the_largest_are_refused(tmp_path: Path) -> None:
    def gallery_of(count: int) -> gallery_service.Gallery:
        return gallery_service.Gallery(tmp_path, "fp", np.zeros((count, 2), np.float32), ["p"] * count,
                                       [tmp_path / "x.jpg"] * count, [], {}, "pipe")

    large, too_large = gallery_of(49_998), gallery_of(60_000)
    assert gallery_service.projection_eta(large, 2, "tsne") == \
        "A t-SNE map of 50,000 faces takes about 2 min to draw the first time."
    assert gallery_service.projection_eta(large, 2, "pca") is None
    assert gallery_service.projection_problem(large, 2, "tsne") is None
    assert gallery_service.projection_problem(too_large, 0, "tsne") is None  # the limit itself is accepted
    assert gallery_service.projection_problem(too_large, 2, "tsne") == \
        "t-SNE maps at most 60,000 faces (this map has 60,002: about 3 min of both cores); use PCA."
    assert gallery_service.projection_problem(too_large, 2, "pca") is None


def test_gallery_store_builds_once_rebuilds_on_change_and_drops_the_oldest(
        pipeline: Pipeline, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    built: list[Path] = []

    def fake_build(pipeline: Pipeline, root: Path, progress: object = None) -> gallery_service.Gallery:
        built.append(Path(root))
        return toy_gallery(Path(root))

    monkeypatch.setattr(gallery_service, "build_gallery", fake_build)
    first, second = tmp_path / "first", tmp_path / "second"
    for root in (first, second):
        (root / "train" / "ann").mkdir(parents=True)
        (root / "train" / "ann" / "a.jpg").write_bytes(b"a")
    store = gallery_service.GalleryStore(kept=1)
    assert store.get(pipeline, first) is None
    gallery = store.load(pipeline, first)
    assert store.get(pipeline, first) is gallery and store.load(pipeline, first) is gallery and built == [first]
    (first / "train" / "ann" / "b.jpg").write_bytes(b"bb")  # the dataset changed: its old gallery no longer holds
    assert store.get(pipeline, first) is None
    store.load(pipeline, first)
    store.load(pipeline, second)
    assert store.get(pipeline, first) is None and store.get(pipeline, second) is not None  # only one kept
    assert built == [first, first, second]
    with pytest.raises(ValueError, match="at least one"):
        gallery_service.GalleryStore(kept=0)


# ---------------------------------------------------------------- command line


def test_cli_calibrate_then_verify_uses_the_calibration(tiny_dataset: Path, five_celebrity: Path,
                                                          facelab_home: Path) -> None:
    photos = [str(photo_path(five_celebrity, "madonna", 0)), str(photo_path(five_celebrity, "elton_john", 1))]
    done = run_cli("calibrate", str(tiny_dataset), "--detector", "dlib-hog", "--json", home=facelab_home)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert (report["n_genuine"], report["n_impostor"]) == (9, 27)  # 3 people × C(3,2); 3 pairs of people × 3·3
    assert 0.5 <= report["auc"] <= 1.0 and 0.0 <= report["eer"] <= 0.5 and report["threshold"] > 0
    assert Path(report["saved"]).is_file() and len(list_calibrations()) == 1
    assert report["metric"] in ("cosine", "euclidean") and report["metric_chosen_by"] == "eer"
    assert report["decision"].startswith(f"decides on {report['metric']}: EER ")

    done = run_cli("verify", *photos, "--detector", "dlib-hog", "--json", home=facelab_home)
    assert done.returncode == 0, done.stderr
    verdict = json.loads(done.stdout)
    assert set(verdict["distances"]) == set(verdict["thresholds"]) == {"cosine", "euclidean", "euclidean_l2"}
    assert verdict["verified"] is False and 0.0 <= verdict["confidence"] <= 1.0
    assert verdict["threshold_source"] == "calibrated" and verdict["threshold"] == pytest.approx(report["threshold"])
    assert verdict["metric"] == report["metric"]  # the calibration's chosen metric decides
    assert [face["index"] for face in verdict["faces"]] == [0, 0]
    assert all(len(face["box"]) == 4 and face["score"] > 0 for face in verdict["faces"])

    pinned = run_cli("verify", *photos, "--detector", "dlib-hog", "--calibration", str(tiny_dataset), "--no-align",
                     home=facelab_home)
    assert pinned.returncode == 2 and "no calibration for" in pinned.stderr
    assert "Traceback" not in pinned.stderr


def test_cli_errors_are_one_line_with_exit_code_2(tmp_path: Path, five_celebrity: Path, facelab_home: Path) -> None:
    text = tmp_path / "notes.jpg"
    text.write_text("not a photo")
    blank = tmp_path / "blank.png"
    blank.write_bytes(image_bytes(np.full((120, 120, 3), 200, np.uint8)))
    good = str(photo_path(five_celebrity, "madonna", 0))
    for bad, message in ((text, "not an image"), (blank, "no face found")):
        done = run_cli("verify", good, str(bad), "--detector", "dlib-hog", "--json", home=facelab_home)
        assert done.returncode == 2 and done.stdout == ""
        errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and message in errors[0] and bad.name in errors[0]
        assert "Traceback" not in done.stderr
