"""The notebook facade (core.api): the seven functions give what the services give."""

from __future__ import annotations

import numpy as np
import pytest

import core
from core.images import ImageError
from tests.conftest import image_bytes, noise_image, shared_dataset


@pytest.fixture(scope="module")
def two_people() -> tuple[list, list]:
    root = shared_dataset("five_celebrity_faces") / "train"
    people = sorted(p for p in root.iterdir() if p.is_dir())[:2]
    return sorted(people[0].glob("*.jpg"))[:2], sorted(people[1].glob("*.jpg"))[:1]


def test_facade_is_exported_lazily_from_core() -> None:
    assert {"load_image", "detect", "embed", "verify", "calibrate", "train", "predict"} <= set(core.__all__)
    with pytest.raises(AttributeError):
        core.no_such_function  # noqa: B018


def test_load_image_refuses_non_images_clearly() -> None:
    with pytest.raises(ImageError, match="not an image"):
        core.load_image(b"hello, I am text")
    array = core.load_image(image_bytes(noise_image(20, 30, seed=1)))
    assert array.shape == (20, 30, 3) and core.load_image(array) is array


def test_detect_embed_verify_on_real_photos(two_people: tuple[list, list]) -> None:
    (alice, alice2), (bob,) = two_people
    faces = core.detect(alice, detector="dlib-hog")
    assert faces and faces[0].box[2] > 20
    vectors = core.embed(alice, detector="dlib-hog", backbone="dlib-resnet")
    assert vectors.shape == (len(faces), 128) and np.isfinite(vectors).all()
    assert core.embed(noise_image(64, 64, seed=3), detector="dlib-hog", backbone="dlib-resnet").shape == (0, 128)
    same = core.verify(alice, alice2, detector="dlib-hog", backbone="dlib-resnet")
    different = core.verify(alice, bob.read_bytes(), detector="dlib-hog", backbone="dlib-resnet")
    assert same.verified and not different.verified
    assert same.distance < different.distance



def test_calibrate_train_predict_on_a_small_dataset() -> None:
    root = shared_dataset("deepface_unit_identities")
    calibration = core.calibrate(root, detector="dlib-hog", backbone="dlib-resnet")
    assert calibration.metric_chosen_by == "eer" and 0.5 < calibration.auc[calibration.metric] <= 1.0
    assert calibration.eer[calibration.metric] == min(calibration.eer[m] for m in ("cosine", "euclidean"))
    run = core.train(root, detector="dlib-hog", backbone="dlib-resnet", head="centroid", name="facade run")
    assert run.name == "facade run" and run.people >= 2
    photos = sorted((root / "test").rglob("*.jpg"))[:3]
    predictions = core.predict(run.id, photos)
    assert [p.name for p in predictions] == [str(p) for p in photos]
    assert all(p.error is None for p in predictions)
