"""Detectors: every registered one on real photos, on synthetic and tiny images; the Face record; MTCNN eyes."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.images import ImageError, downscale, load_image
from core.pipeline.alignment import eye_angle
from core.pipeline.detection import DEFAULT_DETECTOR, DETECTORS, Detector, Face
from core.pipeline.detection._dlib_landmarks import five_point_landmarks, shape_for
from core.pipeline.detection.base import BoxMap, clip_face
from core.pipeline.detection.dlib_cnn import DlibCnnDetector
from core.pipeline.detection.dlib_hog import DlibHogDetector
from core.pipeline.detection.haar import HaarDetector, best_eye_pair
from core.pipeline.detection.mtcnn_detector import MtcnnDetector
from tests.conftest import noise_image, shared_dataset

NAMES = ["haar", "mtcnn", "dlib-hog", "dlib-cnn"]
# Three clear, frontal test photos of different people; dlib-cnn (~1 s each) only gets the first.
PHOTOS = [
    "test/ben_afflek/httpabsolumentgratuitfreefrimagesbenaffleckjpg.jpg",
    "test/jerry_seinfeld/httpaurorasblogcomwpcontentuploadsjerryseinfeldpublicityshotjpg.jpg",
    "test/elton_john/httpcdncdnjustjaredcomwpcontentuploadsheadlineseltonjohnemmysperformancewatchnowjpg.jpg",
]


@pytest.fixture(scope="session")
def photos(five_celebrity: Path) -> list[np.ndarray]:
    return [load_image(five_celebrity / name) for name in PHOTOS]


def detector(name: str) -> Detector:
    return DETECTORS.get(name)  # built once per process by the registry's cache


def test_every_detector_is_registered_described_and_available() -> None:
    entries = DETECTORS.entries()
    assert set(NAMES) <= set(entries)
    assert DEFAULT_DETECTOR == "mtcnn"
    for name in NAMES:
        assert entries[name].available() is None
        assert len(entries[name].description) > 40
    assert "both eyes" in entries["haar"].description and "false faces" in entries["haar"].description
    assert "2 s" in entries["dlib-cnn"].description


@pytest.mark.parametrize("name", NAMES)
def test_real_photos_give_a_plausible_face(name: str, photos: list[np.ndarray]) -> None:
    for image in photos[:1] if name == "dlib-cnn" else photos:
        faces = detector(name).detect(image)
        assert faces, f"{name} found no face"
        assert all(isinstance(face, Face) for face in faces)
        assert [f.area for f in faces] == sorted((f.area for f in faces), reverse=True)
        height, width = image.shape[:2]
        x, y, w, h = faces[0].box
        assert 0 <= x and 0 <= y and x + w <= width and y + h <= height
        assert 0.1 * width <= w <= width and 0.1 * height <= h <= height
        assert 0.5 <= w / h <= 2.0
        if faces[0].has_eyes:
            (lx, ly), (rx, ry) = faces[0].left_eye, faces[0].right_eye
            assert x <= lx < rx <= x + w and y <= ly <= y + h * 0.75 and y <= ry <= y + h * 0.75
    if name != "dlib-cnn":  # a mirrored view (negative strides) must work without the caller copying it
        assert detector(name).detect(photos[0][:, ::-1])


@pytest.mark.parametrize("name", ["mtcnn", "dlib-hog", "dlib-cnn"])
def test_landmark_detectors_give_image_left_eye_first(name: str, photos: list[np.ndarray]) -> None:
    face = detector(name).detect(photos[0])[0]
    assert face.has_eyes
    assert face.left_eye[0] < face.right_eye[0]
    assert face.landmarks["left_eye"] == face.left_eye and face.landmarks["right_eye"] == face.right_eye
    assert face.landmarks["nose"][1] > max(face.left_eye[1], face.right_eye[1])  # nose below the eyes


def test_mtcnn_gives_five_landmarks_and_respects_min_confidence(photos: list[np.ndarray]) -> None:
    faces = detector("mtcnn").detect(photos[1])
    assert set(faces[0].landmarks) == {"left_eye", "right_eye", "nose", "mouth_left", "mouth_right"}
    assert all(face.score >= 0.8 for face in faces)
    strict = DETECTORS.get("mtcnn", min_confidence=0.99999999)
    assert all(face.score >= 0.99999999 for face in strict.detect(photos[1]))


@pytest.mark.parametrize("tilt", [15, -15])
def test_mtcnn_eye_angle_follows_a_rotated_photo(tilt: int, photos: list[np.ndarray]) -> None:
    upright = detector("mtcnn").detect(photos[0])[0]
    # PIL turns the photo anticlockwise for a positive angle, lifting the image-right eye.
    turned = np.asarray(Image.fromarray(photos[0]).rotate(tilt, resample=Image.Resampling.BILINEAR, expand=True))
    face = detector("mtcnn").detect(turned)[0]
    change = eye_angle(face.left_eye, face.right_eye) - eye_angle(upright.left_eye, upright.right_eye)
    assert change == pytest.approx(-tilt, abs=5)


@pytest.mark.parametrize("name", NAMES)
def test_synthetic_and_tiny_images_give_no_face_and_no_crash(name: str) -> None:
    grey = np.full((240, 320, 3), 128, np.uint8)
    assert detector(name).detect(grey) == []
    for image in (np.zeros((1, 1, 3), np.uint8), noise_image(10, 10), noise_image(5, 400), noise_image(400, 3)):
        assert detector(name).detect(image) == []
    noisy = detector(name).detect(noise_image(240, 320, seed=7))
    assert isinstance(noisy, list)
    for face in noisy:  # haar may report a false face in noise; it must still be a valid record
        x, y, w, h = face.box
        assert 0 <= x and 0 <= y and x + w <= 320 and y + h <= 240


@pytest.mark.parametrize("name", NAMES)
def test_detectors_refuse_arrays_that_are_not_rgb_uint8(name: str) -> None:
    for image in (np.zeros((50, 50), np.uint8), np.zeros((50, 50, 4), np.uint8), np.zeros((50, 50, 3), np.float32),
                  np.zeros((0, 50, 3), np.uint8)):
        with pytest.raises(ImageError):
            detector(name).detect(image)


def test_large_photos_are_detected_small_and_mapped_back(photos: list[np.ndarray]) -> None:
    image = photos[0]
    height, width = image.shape[:2]
    hog = DlibHogDetector()
    hog.max_side = max(height, width)  # so the 4× photo is detected at the original's size
    big = np.asarray(Image.fromarray(image).resize((width * 4, height * 4), Image.Resampling.BILINEAR))
    small, factor = downscale(big, hog.max_side)
    assert factor == 0.25
    expected = hog._detect(small)[0].scaled(factor)
    found = hog.detect(big)[0]
    assert found == clip_face(expected, width * 4, height * 4)
    # the landmarks land where they are on the original photo (HOG boxes themselves jump by a cell)
    original = hog.detect(image)[0]
    assert found.left_eye == pytest.approx(tuple(4 * v for v in original.left_eye), abs=4 * 2)
    assert found.right_eye == pytest.approx(tuple(4 * v for v in original.right_eye), abs=4 * 2)


def test_haar_is_safe_to_share_between_threads(photos: list[np.ndarray]) -> None:
    haar = detector("haar")
    expected = [haar.detect(image) for image in photos]
    results: dict[int, list] = {}

    def work(index: int) -> None:
        results[index] = [haar.detect(image) for image in photos]

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(result == expected for result in results.values()) and len(results) == 4


def test_dlib_five_point_helpers(photos: list[np.ndarray]) -> None:
    box = detector("dlib-hog").detect(photos[0])[0].box
    shape = shape_for(photos[0], box)
    assert shape.num_parts == 5
    points = five_point_landmarks(photos[0], box)
    # dlib's order: 0-1 corners of the image-right eye, 2-3 of the image-left eye
    parts = [(p.x, p.y) for p in shape.parts()]
    assert points["left_eye"] == pytest.approx(tuple(np.mean(parts[2:4], axis=0)))
    assert points["right_eye"] == pytest.approx(tuple(np.mean(parts[0:2], axis=0)))
    assert points["nose"] == parts[4]
    assert points["left_eye"][0] < points["right_eye"][0]


def test_best_eye_pair_picks_a_plausible_pair() -> None:
    box = (0, 0, 100, 100)
    left, right, nostril, eyebrow = (30, 40, 20), (70, 42, 20), (55, 70, 12), (72, 20, 40)
    assert best_eye_pair([left, nostril, right, eyebrow], box) == ((30, 40), (70, 42))
    assert best_eye_pair([left, (40, 41, 20)], box) is None  # both on one side of the centre
    assert best_eye_pair([(30, 60, 20), (70, 60, 20)], box) is None  # below the middle
    assert best_eye_pair([left, (70, 40, 60)], box) is None  # sizes too different
    assert best_eye_pair([(45, 40, 20), (55, 40, 20)], box) is None  # too close together
    assert best_eye_pair([left], box) is None


@pytest.mark.parametrize("factory, kwargs", [
    (HaarDetector, {"scale_factor": 1.0}),
    (HaarDetector, {"min_neighbors": -1}),
    (HaarDetector, {"min_size": 0}),
    (MtcnnDetector, {"min_confidence": 1.5}),
    (MtcnnDetector, {"min_face_size": 5}),
    (DlibHogDetector, {"upsample": 9}),
    (DlibCnnDetector, {"upsample": -1}),
])
def test_bad_settings_are_refused_with_a_message(factory, kwargs) -> None:
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        factory(**kwargs)


def test_face_scaled_maps_every_coordinate_back() -> None:
    face = Face((10, 20, 30, 40), 0.9, (12.0, 24.0), (30.0, 24.0), {"nose": (20.0, 30.0)})
    assert face.scaled(1.0) is face
    big = face.scaled(0.5)
    assert big.box == (20, 40, 60, 80) and big.score == 0.9
    assert big.left_eye == (24.0, 48.0) and big.right_eye == (60.0, 48.0) and big.landmarks == {"nose": (40.0, 60.0)}
    assert Face.from_dict(big.to_dict()) == big


def test_clip_face_keeps_boxes_inside_the_image() -> None:
    inside = Face((10, 10, 20, 20), 1.0)
    assert clip_face(inside, 100, 100) is inside
    assert clip_face(Face((-5, -10, 30, 30), 1.0), 100, 100).box == (0, 0, 25, 20)
    assert clip_face(Face((90, 95, 30, 30), 1.0), 100, 100).box == (90, 95, 10, 5)
    assert clip_face(Face((150, 150, 10, 10), 1.0), 100, 100).box[2:] == (0, 0)


def test_box_map_frames_a_box_like_dlib() -> None:
    square = BoxMap(dx=0.0, dy=0.0, side_w=1.0, side_h=1.0)
    assert square.apply((10, 20, 40, 40)) == (10, 20, 40, 40)
    # MTCNN-shaped box 80×100 at (100, 50): centre (140, 100) moves down 0.1 × 100; side (80 + 100·0.8) / 2 = 80.
    assert BoxMap(dx=0.0, dy=0.1, side_w=1.0, side_h=0.8).apply((100, 50, 80, 100)) == (100, 70, 80, 80)


def test_dlib_box_travels_with_the_face() -> None:
    face = Face((10, 20, 30, 40), 0.9, dlib_box=(8, 26, 34, 34))
    assert face.landmark_box == (8, 26, 34, 34) and Face((1, 2, 3, 4), 1.0).landmark_box == (1, 2, 3, 4)
    assert face.scaled(0.5).dlib_box == (16, 52, 68, 68)
    assert Face.from_dict(face.to_dict()) == face
    assert Face.from_dict({"box": [1, 2, 3, 4], "score": 1.0}).dlib_box is None  # cache entries from before
    assert clip_face(Face((-5, 0, 30, 30), 1.0, dlib_box=(-6, 2, 31, 31)), 100, 100).dlib_box == (-6, 2, 31, 31)


def test_mtcnn_faces_carry_a_dlib_framed_box_and_the_map_is_in_the_cache_key(photos: list[np.ndarray]) -> None:
    mtcnn = detector("mtcnn")
    face = mtcnn.detect(photos[0])[0]
    x, y, w, h = face.box
    bx, by, side, same = face.dlib_box
    assert side == same and by + side / 2 > y + h / 2  # a square, lower than MTCNN's taller box
    assert str(MtcnnDetector.dlib_box_map) in mtcnn.cache_key()
    assert detector("dlib-hog").detect(photos[0])[0].dlib_box is None  # dlib's own boxes need no framing


def test_mtcnn_large_min_face_size_works_on_any_photo(photos: list[np.ndarray]) -> None:
    """The mtcnn package's pyramid failed with min_face_size 40 on a 640×480 photo (P-Net got a 2×3 level)."""
    frame = np.asarray(Image.fromarray(photos[0]).resize((640, 480)))
    for size in (40, 120):
        faces = DETECTORS.get("mtcnn", min_face_size=size).detect(frame)
        assert faces and faces[0].box[2] >= 0.8 * size
    assert DETECTORS.get("mtcnn", min_face_size=400).detect(np.zeros((30, 30, 3), np.uint8)) == []  # shrunk to 2×2


def test_detect_many_gives_what_detect_gives(photos: list[np.ndarray]) -> None:
    mtcnn = detector("mtcnn")
    same_size = [np.asarray(Image.fromarray(p).resize((320, 240))) for p in photos]
    for batch in (same_size, photos):  # one batched call, then photos of three sizes
        for one, many in zip((mtcnn.detect(p) for p in batch), mtcnn.detect_many(batch)):
            assert len(one) == len(many)
            for a, b in zip(one, many):
                assert np.allclose(a.box, b.box, atol=1) and a.score == pytest.approx(b.score, abs=1e-3)
    assert mtcnn.detect_many([]) == []
    assert [len(f) for f in detector("haar").detect_many(photos[:2])] == [len(detector("haar").detect(p)) for p in photos[:2]]


@pytest.mark.parametrize("name", NAMES)
def test_default_cache_key_needs_no_model_and_matches_the_built_detector(name: str) -> None:
    assert DETECTORS.entry(name).factory.default_cache_key() == detector(name).cache_key()


@pytest.fixture
def hog_pool(monkeypatch: pytest.MonkeyPatch):
    """dlib HOG workers of this test's own (two), closed afterwards."""
    from core.pipeline import _dlib_pool

    monkeypatch.setattr(_dlib_pool, "_pools", {})
    monkeypatch.setenv(_dlib_pool.WORKERS_ENV, "2")
    pool = _dlib_pool.pool_for(("hog",))
    yield pool
    pool.close()


def hog_photos(photos: list[np.ndarray]) -> list[np.ndarray]:
    """Six photos of three sizes and a blank one (no face), enough for the worker processes to take them."""
    blank = np.full((90, 120, 3), 128, np.uint8)
    return [*photos, blank, *(np.ascontiguousarray(p[::-1, ::-1]) for p in photos[:2])]


def test_dlib_hog_workers_find_what_the_process_finds(photos: list[np.ndarray], hog_pool) -> None:
    """Several photos go to dlib's worker processes (one per core); boxes, scores and eyes are the in-process ones."""
    from core.pipeline.detection import dlib_hog

    hog = detector("dlib-hog")
    batch = hog_photos(photos)
    assert len(batch) >= dlib_hog.WORKERS_FROM_PHOTOS
    here = [hog.detect(p) for p in batch]
    assert hog.detect_many(batch) == here and [len(f) for f in here][:3] == [1, 1, 1] and here[3] == []
    assert all(worker.ready for worker in hog_pool._workers)  # the workers answered (not the in-process fallback)


def test_a_dead_dlib_hog_worker_costs_one_request(photos: list[np.ndarray], hog_pool) -> None:
    from core.pipeline import _dlib_pool

    hog, batch = detector("dlib-hog"), hog_photos(photos)
    expected = hog.detect_many(batch)
    killed = [worker.process.pid for worker in hog_pool._workers]
    for worker in hog_pool._workers:
        worker.process.kill()
        worker.process.wait()
    assert hog.detect_many(batch) == expected  # this request: detected in-process
    assert _dlib_pool.pool_for(("hog",)) is hog_pool
    assert not {worker.process.pid for worker in hog_pool._workers} & set(killed)
    assert [len(rows) for rows in hog_pool.detect(batch, 1)] == [len(f) for f in expected]  # fresh workers answer


def test_dlib_hog_detects_two_photos_without_workers(photos: list[np.ndarray], monkeypatch: pytest.MonkeyPatch) -> None:
    """Verify's two photos: starting worker processes would cost more than it saves."""
    from core.pipeline import _dlib_pool

    monkeypatch.setattr(_dlib_pool, "_pools", {})
    assert [len(f) for f in detector("dlib-hog").detect_many(photos[:2])] == [1, 1]
    assert _dlib_pool._pools == {}


def test_mtcnn_cascade_finds_what_the_mtcnn_package_finds(photos: list[np.ndarray]) -> None:
    """FaceLab runs mtcnn's networks on ONNX Runtime with its own cascade (no TensorFlow): the package's faces.

    Real photos of three sets, one at a time and as a same-sized batch, and a half-size copy: the same faces,
    boxes and landmarks to the pixel the package reports, scores to 1e-4.
    """
    from mtcnn import MTCNN

    from core.data.layout import scan

    package, ours = MTCNN(), detector("mtcnn")
    images = [*photos, np.ascontiguousarray(photos[0][::2, ::2])]
    for name in ("five_celebrity_faces", "glint360k_celebrity_sample", "orl_att_faces"):
        images += [downscale(load_image(record.path), ours.max_side)[0] for record in scan(shared_dataset(name)).images[:8]]
    found = [ours._detect_batch([image])[0] for image in images]
    same_size = [image for image in images if image.shape == images[-1].shape]
    assert len(same_size) > 1 and ours._detect_batch(same_size) == found[-len(same_size):]
    assert sum(map(len, found)) >= len(images)
    for image, faces in zip(images, found):
        expected = package.detect_faces(np.ascontiguousarray(image), fit_to_image=False, threshold_onet=0.8)
        assert len(faces) == len(expected)
        for face, reference in zip(faces, expected):
            assert face.box == tuple(reference["box"]) and face.score == pytest.approx(reference["confidence"], abs=1e-4)
            assert all(np.allclose(face.landmarks[k], reference["keypoints"][k], atol=1) for k in ("nose", "mouth_left"))
            assert {face.left_eye, face.right_eye} == {tuple(map(float, reference["keypoints"][k]))
                                                       for k in ("left_eye", "right_eye")}
