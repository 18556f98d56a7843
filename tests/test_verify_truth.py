"""Issue 12: Verify pictures and calibration that mean what they seem.

The calibration picks the metric that separates its pairs best (and says so), barcodes are drawn on one fixed
scale per backbone (VGG-Face's 2622 slots too), step 4 shows the numbers the network receives rather than the crop
again, markers stay visible on big photos, a photo met twice is named as such, and a failed detector is not the one
recommended.
"""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest

from core.compare.barcode import UNIT_DIFFERENCE_SPREAD, UNIT_VALUE_SPREAD, barcode_scale
from core.compare.calibration import Calibration, calibrate, load_calibration, save_calibration
from core.drawing import EYE, Label, draw_points, marker_radius
from core.pipeline.backbones.base import Backbone
from core.pipeline.backbones.dlib_resnet import DlibResNet
from core.pipeline.backbones.vggface16 import VGGFace16
from core.services import verify as service
from tests.conftest import identity_clusters

CONTEXT = {"dataset": "d", "dataset_name": "people", "detector": "det", "align": True, "backbone": "bb"}


def lengths_vary(seed: int = 0) -> tuple[np.ndarray, list[str]]:
    """People told apart by direction, each photo at a random length: cosine separates them, euclidean less so."""
    embeddings, labels = identity_clusters(8, 6, 24, 0.35, seed, prefix="p")
    lengths = np.random.default_rng(seed).uniform(0.3, 3.0, size=(len(embeddings), 1))
    return embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True) * lengths, labels


def one_direction(seed: int = 0) -> tuple[np.ndarray, list[str]]:
    """People along one ray at different distances: nearly one direction (cosine blind), far apart (euclidean sees)."""
    rng = np.random.default_rng(seed)
    ray = np.ones(24) / math.sqrt(24)
    embeddings = np.concatenate([ray * (2.0 + person) + rng.normal(0, 0.15, (6, 24)) for person in range(8)])
    return embeddings, [f"p{person}" for person in range(8) for _ in range(6)]


# ---------------------------------------------------------------- the deciding metric

def test_calibration_decides_on_cosine_when_cosine_has_the_lower_eer() -> None:
    calibration = calibrate(*lengths_vary(), default_metric="euclidean", context=CONTEXT)
    assert calibration.eer["cosine"] < calibration.eer["euclidean"]
    assert (calibration.metric, calibration.metric_chosen_by) == ("cosine", "eer")
    assert calibration.decision.startswith("decides on cosine: EER ")
    assert "vs euclidean" in calibration.decision


def test_calibration_decides_on_euclidean_when_euclidean_has_the_lower_eer() -> None:
    calibration = calibrate(*one_direction(), default_metric="cosine", context=CONTEXT)
    assert calibration.eer["euclidean"] < calibration.eer["cosine"]
    assert (calibration.metric, calibration.metric_chosen_by) == ("euclidean", "eer")


@pytest.mark.parametrize("default", ["cosine", "euclidean"])
def test_a_tie_keeps_the_backbones_own_metric(default: str) -> None:
    embeddings, labels = identity_clusters(4, 4, 16, 0.01, prefix="p")  # perfectly separated: EER 0 on both
    calibration = calibrate(embeddings, labels, default_metric=default)
    assert calibration.eer["cosine"] == calibration.eer["euclidean"] == 0.0
    assert calibration.metric == default


def test_at_a_target_far_the_metric_with_fewer_false_rejects_decides() -> None:
    calibration = calibrate(*lengths_vary(), target_far=0.01, default_metric="euclidean")
    assert calibration.frr("cosine") < calibration.frr("euclidean")
    assert (calibration.metric, calibration.metric_chosen_by) == ("cosine", "frr")
    assert calibration.decision.startswith("decides on cosine: ") and "false-accept rate ≤ 0.01" in calibration.decision


def test_a_metric_asked_for_is_kept_and_said() -> None:
    calibration = calibrate(*lengths_vary(), metric="euclidean")
    assert (calibration.metric, calibration.metric_chosen_by) == ("euclidean", "given")
    assert calibration.decision.startswith("decides on euclidean (as asked): EER ")


def test_the_decision_reads_as_the_issue_asks() -> None:
    calibration = calibrate(*lengths_vary())
    rates = {"cosine": 0.0168, "euclidean": 0.0206}
    metrics = {name: dataclasses.replace(m, eer=rates.get(name, m.eer)) for name, m in calibration.metrics.items()}
    shown = dataclasses.replace(calibration, metric="cosine", metric_chosen_by="eer", metrics=metrics)
    assert shown.decision == "decides on cosine: EER 1.7 % vs euclidean 2.1 %"
    close = {name: dataclasses.replace(m, eer={"cosine": 0.0168, "euclidean": 0.0171}.get(name, m.eer))
             for name, m in calibration.metrics.items()}
    assert dataclasses.replace(shown, metrics=close).decision == "decides on cosine: EER 1.68 % vs euclidean 1.71 %"


def test_a_calibration_stored_before_the_choice_still_loads(facelab_home) -> None:
    made = calibrate(*lengths_vary(), metric="euclidean", context=CONTEXT)
    record = made.to_dict()
    del record["metric_chosen_by"]  # as written before issue 12
    old = Calibration.from_dict(json.loads(json.dumps(record)))
    assert (old.metric, old.metric_chosen_by, old.thresholds) == ("euclidean", None, made.thresholds)
    assert "the backbone's default" in old.decision and "calibrate again" in old.decision
    save_calibration(old)
    assert load_calibration(CONTEXT) == old
    with pytest.raises(ValueError, match="metric_chosen_by"):
        Calibration.from_dict({**record, "metric_chosen_by": "guess"})


class FakeBackbone(Backbone):
    """A backbone declaring nothing: no weights, the embeddings are given."""

    name = "fake"
    embedding_dim = 24
    decision_metric = "euclidean"

    def embed(self, crops: np.ndarray) -> np.ndarray:
        raise AssertionError("not used")


def test_verification_decides_on_the_calibrations_metric() -> None:
    calibration = calibrate(*lengths_vary(), default_metric="euclidean")
    pipeline = type("P", (), {"backbone": FakeBackbone()})()
    a, b = (service.FaceView(None, None, vector) for vector in lengths_vary()[0][:2])  # type: ignore[arg-type]
    verdict = service.compare(pipeline, a, b, calibration)  # type: ignore[arg-type]
    assert verdict.metric == calibration.metric == "cosine"
    assert verdict.threshold == calibration.thresholds["cosine"]


# ---------------------------------------------------------------- barcodes

class VggLike(FakeBackbone):
    """VGG-Face's 2622-slot fc8 without its 580 MB weights: only what the barcodes read."""

    embedding_dim = 2622
    barcode_limits = VGGFace16.barcode_limits


def test_a_photo_gets_the_same_barcode_whatever_it_is_compared_with() -> None:
    rng = np.random.default_rng(1)
    photo, close, far = rng.normal(0, 0.1, 128), rng.normal(0, 0.02, 128), rng.normal(0, 0.4, 128)
    backbone = DlibResNet.__new__(DlibResNet)  # only class attributes are read: no dlib model loaded
    with_close, with_far = service.barcodes(backbone, photo, close), service.barcodes(backbone, photo, far)
    np.testing.assert_array_equal(with_close.first, with_far.first)
    assert with_close.scale == with_far.scale == barcode_scale(128, DlibResNet.barcode_limits)
    assert with_close.scale.value_range == (-0.35, 0.35) and with_close.scale.difference_range == (0.0, 0.2)
    np.testing.assert_allclose(with_close.first[0], photo)  # dlib's values are drawn as they are
    assert with_close.unit == "value"


def test_vgg_faces_2622_slots_are_drawn_on_a_fixed_unit_length_scale() -> None:
    assert VGGFace16.barcode_limits is None  # never measured: no weights offline
    rng = np.random.default_rng(2)
    first, second = rng.normal(0, 5.0, 2622), rng.normal(0, 50.0, 2622)  # fc8 logits of any size
    drawn = service.barcodes(VggLike(), first, second)
    assert drawn.first.shape == drawn.second.shape == drawn.difference.shape == (24, 2622)
    limit = UNIT_VALUE_SPREAD / math.sqrt(2622)
    assert drawn.scale.value_range == pytest.approx((-limit, limit))
    assert drawn.scale.difference_range == pytest.approx((0.0, UNIT_DIFFERENCE_SPREAD / math.sqrt(2622)))
    assert np.linalg.norm(drawn.first[0]) == pytest.approx(1.0)  # divided by its length, so any size fits
    assert drawn.unit == "value ÷ vector length"
    assert service.barcodes(VggLike(), first * 10, second).first == pytest.approx(drawn.first)


def test_barcode_figures_keep_the_fixed_range_and_show_a_colour_bar() -> None:
    from pages.components.verify_views import barcode_figure  # lazy: importing the view imports Streamlit

    drawn = service.barcodes(VggLike(), np.ones(2622), -np.ones(2622))
    heatmap = barcode_figure(drawn.first, "Photo 1", drawn.scale.value_range, "RdBu_r", drawn.unit).data[0]
    assert (heatmap.zmin, heatmap.zmax) == pytest.approx(drawn.scale.value_range)
    assert heatmap.showscale and heatmap.colorbar.title.text == drawn.unit
    assert len(heatmap.z[0]) == 2622


@pytest.mark.parametrize("limits", [(0.0, 0.2), (0.3, -1.0)])
def test_barcode_limits_must_be_positive(limits: tuple[float, float]) -> None:
    with pytest.raises(ValueError, match="positive"):
        barcode_scale(128, limits)


# ---------------------------------------------------------------- steps

def eye_pixels(picture: np.ndarray) -> int:
    return int(np.all(picture == np.array(EYE, np.uint8), axis=-1).sum())


def test_markers_stay_visible_on_a_4000_px_photo() -> None:
    photo = np.full((3000, 4000, 3), 90, np.uint8)
    eyes = [(1700.0, 1300.0), (2300.0, 1300.0)]
    picture = service._step(photo, Label((1400, 1000, 1200, 1200), "0.99"), eyes, line=True)
    assert max(picture.shape[:2]) == service.DISPLAY_SIDE
    radius = marker_radius(service.DISPLAY_SIDE)
    assert radius >= service.DISPLAY_SIDE / 70  # about 1/60 of the picture shown, not of the 4000 px photo
    assert eye_pixels(picture) >= 2 * math.pi * radius ** 2 * 0.9  # two whole dots and the line between them


def test_marker_size_grows_with_the_picture() -> None:
    assert marker_radius(100) < marker_radius(640) < marker_radius(4000)
    small, large = np.full((100, 100, 3), 90, np.uint8), np.full((1000, 1000, 3), 90, np.uint8)
    assert eye_pixels(draw_points(large, [(500.0, 500.0)])) > 10 * eye_pixels(draw_points(small, [(50.0, 50.0)]))


def test_step_4_shows_each_input_channel_as_a_colour_map() -> None:
    crop = np.zeros((150, 150, 3), np.uint8)
    crop[:, :75] = 250  # bright left half
    network_input = DlibResNet.preprocess(DlibResNet.__new__(DlibResNet), crop[None])[0]
    assert network_input.min() < 0 < network_input.max()  # mean-subtracted, as dlib's input layer does
    shown = service.channel_maps(network_input)
    assert shown.shape == (150, 3 * 150 + 2 * service.CHANNEL_GAP, 3) and shown.dtype == np.uint8
    left, right = shown[75, 10].astype(int), shown[75, 140].astype(int)
    assert left[0] > left[2] and right[2] > right[0]  # above the mean: red; below: blue
    assert (service.channel_maps(np.zeros((4, 4, 3))) == 255).all()  # zero is white, and no division by zero


# ---------------------------------------------------------------- notes

def test_the_no_face_hint_never_recommends_the_detector_that_failed() -> None:
    assert "mtcnn finds the most faces" in service.no_face_message("a.jpg", "dlib-hog")
    after_mtcnn = service.no_face_message("a.jpg", "mtcnn")
    assert "try another detector" in after_mtcnn and "mtcnn finds" not in after_mtcnn


def test_a_distance_of_zero_is_the_same_photo() -> None:
    assert service.same_photo(0.0) and service.same_photo(3e-7)
    assert not service.same_photo(0.01)
