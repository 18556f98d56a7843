"""The VGG-Face (Keras 3) and dlib ResNet backbones: topology, weight loading, preprocessing, embeddings."""

from __future__ import annotations

import hashlib
import math
import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from core.images import load_image
from core.pipeline import weights
from core.pipeline.backbones import BACKBONES, default_backbone
from core.pipeline.backbones import vggface16 as vgg
from core.pipeline.backbones.vggface16 import (
    ENV_VGGFACE,  # also declares the VGG-Face weight files
    VGGFace16,
    build_vggface16,
    load_weights,
    preprocess_input,
)
from core.pipeline.detection.base import Face
from core.pipeline.weights import WeightsError
from tests.test_weights import RCMALLI, write_keras2_h5

# Reduced model for loading tests: the real convolutions, a 32×32 input (pool5 is 1×1×512), a small top.
SMALL = {"input_size": 32, "classes": 10, "fc_units": 16}


@pytest.fixture(scope="session")
def vgg_fc8() -> VGGFace16:
    """The full 145M-parameter model with random weights, built once per session."""
    return VGGFace16(layer="fc8", weights="random")


@pytest.fixture(scope="session")
def vgg_fc7() -> VGGFace16:
    return VGGFace16(layer="fc7", weights="random")


@pytest.fixture(scope="session")
def small_model():
    return build_vggface16(**SMALL)


def random_arrays(model, seed: int) -> dict[str, list[np.ndarray]]:
    """Distinct random arrays for every weighted layer of ``model``, keyed by layer name."""
    rng = np.random.default_rng(seed)
    return {layer.name: [rng.standard_normal(tuple(w.shape)).astype(np.float32) for w in layer.weights]
            for layer in model.layers if layer.weights}


def crops(count: int, size: int = 224, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (count, size, size, 3), dtype=np.uint8)


# --- VGG-Face topology -------------------------------------------------------------------------

def test_full_model_has_the_published_parameter_count(vgg_fc8: VGGFace16) -> None:
    model = vgg_fc8.model
    assert model.count_params() == 145_002_878
    assert model.input_shape == (None, 224, 224, 3)
    assert model.output_shape == (None, 2622)
    weighted = [layer.name for layer in model.layers if layer.weights]
    assert weighted == list(vgg.CONV_LAYERS) + ["fc6", "fc7", "fc8"]
    assert model.get_layer("fc6").kernel.shape == (25088, 4096)
    assert model.get_layer("fc8_softmax").activation.__name__ == "softmax"


def test_notop_layers() -> None:
    model = build_vggface16(include_top=False)
    assert [layer.name for layer in model.layers] == [
        "input", "conv1_1", "conv1_2", "pool1", "conv2_1", "conv2_2", "pool2",
        "conv3_1", "conv3_2", "conv3_3", "pool3", "conv4_1", "conv4_2", "conv4_3", "pool4",
        "conv5_1", "conv5_2", "conv5_3", "pool5"]
    assert model.output_shape == (None, 7, 7, 512)
    assert model.count_params() == 14_714_688
    with pytest.raises(ValueError, match="at least 32"):
        build_vggface16(input_size=16)


def test_preprocessing_matches_keras_vggface_version_1() -> None:
    pixel = np.array([[[[10, 20, 30]]]], dtype=np.uint8)  # R, G, B
    out = preprocess_input(pixel)
    # BGR order, each minus its channel mean: B 30 − 93.5940, G 20 − 104.7624, R 10 − 129.1863.
    np.testing.assert_allclose(out[0, 0, 0], [-63.594, -84.7624, -119.1863], rtol=0, atol=1e-4)
    assert out.dtype == np.float32
    batch = crops(2, 8)
    np.testing.assert_allclose(preprocess_input(batch)[..., 2], batch[..., 0] - 129.1863, atol=1e-4)


# --- VGG-Face embeddings ------------------------------------------------------------------------

def test_fc8_and_fc7_embedding_dims(vgg_fc8: VGGFace16, vgg_fc7: VGGFace16) -> None:
    one = crops(1)
    assert vgg_fc8.embedding_dim == 2622 and vgg_fc8.embed(one).shape == (1, 2622)
    fc7 = vgg_fc7.embed(one)
    assert vgg_fc7.embedding_dim == 4096 and fc7.shape == (1, 4096) and fc7.dtype == np.float32
    assert (fc7 >= 0).all()  # taken after fc7's ReLU
    assert vgg_fc8.cache_key() != vgg_fc7.cache_key()


def test_random_weights_are_flagged(vgg_fc8: VGGFace16) -> None:
    assert vgg_fc8.is_random and vgg_fc8.weights_id == "random" and vgg_fc8.weights_path is None
    assert vgg_fc8.fine_tunable and vgg_fc8.input_size == 224 and vgg_fc8.name == "vggface16"


def test_batched_embeddings_equal_one_at_a_time(vgg_fc8: VGGFace16, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vgg, "BATCH_SIZE", 2)
    batch = crops(3, seed=1)
    together = vgg_fc8.embed(batch)
    alone = np.concatenate([vgg_fc8.embed(batch[i:i + 1]) for i in range(3)])
    np.testing.assert_allclose(together, alone, rtol=1e-3, atol=1e-3)
    assert not np.allclose(together[0], together[1])
    assert vgg_fc8.embed(crops(0)).shape == (0, 2622)


def test_wrong_crop_shape_is_refused(vgg_fc8: VGGFace16) -> None:
    with pytest.raises(ValueError, match=r"\(N, 224, 224, 3\)"):
        vgg_fc8.embed(crops(1, 150))


def test_unknown_layer_is_refused() -> None:
    with pytest.raises(ValueError, match="fc8, fc7"):
        VGGFace16(layer="pool5", weights="random")


def test_missing_weights_explain_what_to_do(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv(ENV_VGGFACE, raising=False)
    with pytest.raises(WeightsError, match="--download vggface16"):
        VGGFace16()
    reason = BACKBONES.entry("vggface16").available()
    assert reason and RCMALLI in reason
    with pytest.raises(RuntimeError, match="not available"):
        BACKBONES.get("vggface16", layer="fc7")
    assert default_backbone() == "dlib-resnet"
    monkeypatch.setenv(ENV_VGGFACE, str(write_keras2_h5(tmp_path / "w.h5", [])))
    assert BACKBONES.entry("vggface16").available() is None
    assert default_backbone() == "vggface16"


def test_constructor_refuses_bad_files_before_building(tmp_path: Path) -> None:
    truncated = tmp_path / RCMALLI
    write_keras2_h5(truncated, [(name, [np.ones((64, 64), np.float32)]) for name in vgg.CONV_LAYERS])
    truncated.write_bytes(truncated.read_bytes()[:3000])
    with pytest.raises(WeightsError, match=f"{RCMALLI}: not a readable HDF5"):
        VGGFace16(weights=truncated)
    notop = write_keras2_h5(tmp_path / "notop.h5", [(name, [np.ones(1, np.float32)]) for name in vgg.CONV_LAYERS])
    with pytest.raises(WeightsError, match="notop.h5: has 13 layers"):
        VGGFace16(weights=notop)


def test_constructor_refuses_a_file_changed_since_download(tmp_path: Path) -> None:
    path = write_keras2_h5(tmp_path / RCMALLI, [(f"conv2d_{i}", [np.ones(1, np.float32)]) for i in range(16)])
    weights.sidecar(path).write_text("0" * 64 + f"  {RCMALLI}\n")
    with pytest.raises(WeightsError, match="pinned"):
        VGGFace16(weights=path)


# --- VGG-Face weight files ----------------------------------------------------------------------

def test_by_name_loading_puts_each_array_in_its_layer(small_model, tmp_path: Path) -> None:
    arrays = random_arrays(small_model, seed=3)
    # Reverse order plus weightless pooling groups, as Keras wrote them: only the names may matter.
    layout = [(name, arrays[name]) for name in reversed(list(arrays))] + [("pool1", []), ("flatten", [])]
    path = write_keras2_h5(tmp_path / "by_name.h5", layout)
    assert load_weights(small_model, path) == "by-name"
    for name, expected in arrays.items():
        for got, want in zip(small_model.get_layer(name).get_weights(), expected):
            np.testing.assert_array_equal(got, want)


def test_sequential_deepface_layout_maps_in_order(small_model, tmp_path: Path) -> None:
    arrays = random_arrays(small_model, seed=4)
    layout: list[tuple[str, list[np.ndarray]]] = []
    for index, name in enumerate(vgg.CONV_LAYERS, 1):
        layout += [(f"zero_padding2d_{index}", []), (f"conv2d_{index}", arrays[name])]
    # The deepface file's fully connected layers are convolutions: 1×1 here because pool5 is 1×1 at 32 px.
    for index, name in enumerate(("fc6", "fc7", "fc8"), 14):
        kernel, bias = arrays[name]
        layout += [(f"conv2d_{index}", [kernel.reshape(1, 1, *kernel.shape), bias]), (f"dropout_{index}", [])]
    path = write_keras2_h5(tmp_path / "vgg_face_weights.h5", layout)  # conv2d_10 sorts before conv2d_2
    assert load_weights(small_model, path) == "sequential"
    for name, expected in arrays.items():
        for got, want in zip(small_model.get_layer(name).get_weights(), expected):
            np.testing.assert_array_equal(got, want)


def test_fc6_from_a_7x7_convolution_keeps_the_flatten_order(tmp_path: Path) -> None:
    """At 224 px pool5 is 7×7×512; a (7, 7, 512, n) kernel must become (25088, n) in (row, column, channel) order."""
    kernel = np.random.default_rng(5).standard_normal((7, 7, 512, 4)).astype(np.float32)
    import keras

    dense = keras.layers.Dense(4, name="fc6")
    dense.build((None, 25088))
    pairs = vgg._match(tmp_path / "x.h5", dense, "conv2d_14", [kernel, np.zeros(4, np.float32)])
    assert pairs[0][1] == (25088, 4)
    feature = np.random.default_rng(6).standard_normal((7, 7, 512)).astype(np.float32)
    as_conv = np.einsum("hwc,hwcn->n", feature, kernel)
    np.testing.assert_allclose(feature.reshape(-1) @ kernel.reshape(pairs[0][1]), as_conv, rtol=1e-4, atol=1e-3)


def test_notop_file_loads_into_notop_model_but_not_full(tmp_path: Path) -> None:
    notop_model = build_vggface16(include_top=False, input_size=32)
    arrays = random_arrays(notop_model, seed=7)
    path = write_keras2_h5(tmp_path / "rcmalli_vggface_tf_notop_vgg16.h5", list(arrays.items()))
    assert load_weights(notop_model, path) == "by-name"
    np.testing.assert_array_equal(notop_model.get_layer("conv5_3").get_weights()[0], arrays["conv5_3"][0])
    full = build_vggface16(**SMALL)
    with pytest.raises(WeightsError, match="fc6, fc7, fc8.*no-top"):
        load_weights(full, path)


def test_wrong_shapes_name_the_file_and_layer(small_model, tmp_path: Path) -> None:
    arrays = random_arrays(small_model, seed=8)
    arrays["conv1_1"] = [np.zeros((3, 3, 3, 32), np.float32), np.zeros(32, np.float32)]
    path = write_keras2_h5(tmp_path / "other_model.h5", list(arrays.items()))
    with pytest.raises(WeightsError, match=r"other_model.h5: layer conv1_1 has weights of shape \(3, 3, 3, 32\)"):
        load_weights(small_model, path)
    few = write_keras2_h5(tmp_path / "few.h5", [(f"conv2d_{i}", arrays["conv1_2"]) for i in range(5)])
    with pytest.raises(WeightsError, match="few.h5: has 5 layers"):
        load_weights(small_model, few)


def test_truncated_or_foreign_file_is_a_clear_error(small_model, tmp_path: Path) -> None:
    path = write_keras2_h5(tmp_path / "cut.h5", list(random_arrays(small_model, seed=9).items()))
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(WeightsError, match="cut.h5"):
        load_weights(small_model, path)
    text = tmp_path / "readme.h5"
    text.write_text("hello")
    with pytest.raises(WeightsError, match="readme.h5: not a readable HDF5"):
        load_weights(small_model, text)


# --- dlib ResNet --------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def dlib_resnet():
    return BACKBONES.get("dlib-resnet")


@pytest.fixture(scope="session")
def celebrity_faces(five_celebrity: Path) -> dict[str, list[tuple[np.ndarray, Face]]]:
    """Up to four single-face photos of three people, with dlib's detected face box."""
    import dlib

    detector = dlib.get_frontal_face_detector()
    found: dict[str, list[tuple[np.ndarray, Face]]] = {}
    for person in ("ben_afflek", "madonna", "elton_john"):
        for path in sorted((five_celebrity / "train" / person).iterdir()):
            image = load_image(path)
            rects = detector(image, 1)
            if len(rects) == 1 and len(found.setdefault(person, [])) < 4:
                rect = rects[0]
                found[person].append((image, Face((rect.left(), rect.top(), rect.width(), rect.height()), 1.0)))
    assert all(len(faces) == 4 for faces in found.values())
    return found


def test_dlib_same_person_is_closer_than_different_people(dlib_resnet, celebrity_faces) -> None:
    labels, chips = [], []
    for person, faces in celebrity_faces.items():
        for image, face in faces:
            labels.append(person)
            chips.append(dlib_resnet.align(image, face).crop)
    vectors = dlib_resnet.embed(np.stack(chips))
    assert vectors.shape == (12, 128) and vectors.dtype == np.float32
    distance = np.linalg.norm(vectors[:, None] - vectors[None], axis=-1)
    labels_array = np.array(labels)
    same = (labels_array[:, None] == labels_array[None]) & ~np.eye(len(labels), dtype=bool)
    different = labels_array[:, None] != labels_array[None]
    assert distance[same].mean() + 0.15 < distance[different].mean()
    # Nearest neighbour (leave one out) is the same person for most photos.
    np.fill_diagonal(distance, np.inf)
    assert (labels_array[distance.argmin(axis=1)] == labels_array).mean() >= 0.75


def test_dlib_align_cuts_a_150_chip_and_reports_the_rotation(dlib_resnet, celebrity_faces) -> None:
    import cv2

    image, face = celebrity_faces["madonna"][0]
    upright = dlib_resnet.align(image, face, keep_steps=True)
    assert upright.crop.shape == (150, 150, 3) and upright.crop.dtype == np.uint8 and upright.aligned
    assert upright.rotated.shape == image.shape
    left, right = upright.eyes
    assert left[0] < right[0] and face.box[0] <= left[0] <= face.box[0] + face.box[2]
    (rl, rr) = upright.rotated_eyes
    assert abs(rr[1] - rl[1]) < 0.2 * math.dist(rl, rr)  # eyes nearly level after dlib's rotation
    assert upright.crop_box[2] == upright.crop_box[3] > face.box[2]  # 25 % padding around the face

    # Tilt the photo 20° (counter-clockwise on screen): dlib's angle must change by about −20°.
    height, width = image.shape[:2]
    centre = (face.box[0] + face.box[2] / 2, face.box[1] + face.box[3] / 2)
    tilted = cv2.warpAffine(image, cv2.getRotationMatrix2D(centre, 20, 1.0), (width, height))
    tilted_result = dlib_resnet.align(tilted, face)
    assert tilted_result.angle == pytest.approx(upright.angle - 20, abs=4)

    plain = dlib_resnet.align(image, face, rotate=False)
    assert plain.crop.shape == (150, 150, 3) and not plain.aligned and plain.angle == 0


def test_dlib_embed_shapes_and_options(dlib_resnet, celebrity_faces) -> None:
    chip = dlib_resnet.align(*celebrity_faces["elton_john"][0]).crop
    assert dlib_resnet.embed(np.stack([chip] * 3)).shape == (3, 128)
    assert dlib_resnet.embed(np.zeros((0, 150, 150, 3), np.uint8)).shape == (0, 128)
    with pytest.raises(ValueError, match=r"\(N, 150, 150, 3\)"):
        dlib_resnet.embed(crops(1, 224))
    with pytest.raises(ValueError, match="uint8"):
        dlib_resnet.embed(np.zeros((1, 150, 150, 3), np.float32))
    assert dlib_resnet.flip_average  # the default: mirror-averaged descriptors
    plain = BACKBONES.get("dlib-resnet", flip_average=False)
    plain_vector, flip_vector = plain.embed(chip[None])[0], dlib_resnet.embed(chip[None])[0]
    mirror_vector = plain.embed(np.ascontiguousarray(chip[None, :, ::-1]))[0]
    np.testing.assert_allclose(flip_vector, (plain_vector + mirror_vector) / 2, atol=1e-5)
    assert plain.cache_key() != dlib_resnet.cache_key()
    with pytest.raises(ValueError, match="num_jitters"):
        BACKBONES.get("dlib-resnet", num_jitters=-1)


def test_dlib_identity(dlib_resnet) -> None:
    from core.pipeline.backbones.dlib_resnet import model_path

    assert BACKBONES.entry("dlib-resnet").available() is None
    assert dlib_resnet.weights_id == hashlib.sha256(model_path().read_bytes()).hexdigest()[:16]
    assert (dlib_resnet.input_size, dlib_resnet.embedding_dim, dlib_resnet.fine_tunable) == (150, 128, True)


def test_worker_processes_give_the_in_process_descriptors(dlib_resnet, celebrity_faces) -> None:
    from core.pipeline import _dlib_pool

    chips = np.stack([dlib_resnet.align(image, face).crop for image, face in celebrity_faces["madonna"]])
    pool = _dlib_pool.pool_for(dlib_resnet._job)
    assert pool is not None and len(pool._workers) == _dlib_pool.worker_count() >= 1
    np.testing.assert_array_equal(pool.describe(chips, 0), dlib_resnet._describe_here(chips))
    assert pool.describe(chips[:1], 0).shape == (1, 128)  # fewer chips than workers


@pytest.fixture
def private_pool(monkeypatch: pytest.MonkeyPatch):
    """A dlib backbone with its own pool of two workers (not the session's), closed afterwards."""
    from core.pipeline import _dlib_pool
    from core.pipeline.backbones.dlib_resnet import DlibResNet

    monkeypatch.setattr(_dlib_pool, "_pools", {})
    monkeypatch.setenv(_dlib_pool.WORKERS_ENV, "2")
    backbone = DlibResNet(flip_average=False, engine="dlib")
    pool = _dlib_pool.pool_for(backbone._job)
    yield backbone, pool
    pool.close()


def pids(pool) -> list[int]:
    return [worker.process.pid for worker in pool._workers]


def test_a_dead_worker_is_restarted(private_pool, celebrity_faces) -> None:
    from core.pipeline import _dlib_pool

    backbone, pool = private_pool
    chips = np.stack([backbone.align(image, face).crop for image, face in celebrity_faces["elton_john"][:2]])
    expected = backbone.embed(chips)
    killed = pids(pool)
    for worker in pool._workers:
        worker.process.kill()
        worker.process.wait()
    np.testing.assert_array_equal(backbone.embed(chips), expected)  # this request: computed in-process
    assert _dlib_pool.pool_for(backbone._job) is pool  # not given up for the life of the server …
    assert not set(pids(pool)) & set(killed) and all(w.process.poll() is None for w in pool._workers)
    np.testing.assert_array_equal(pool.describe(chips, 0), expected)  # … the fresh workers answer


def test_a_stalled_worker_is_killed_and_restarted(private_pool, celebrity_faces,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """SIGSTOP used to hang embedding in every session forever; now the request falls back after its deadline."""
    from core.pipeline import _dlib_pool

    backbone, pool = private_pool
    chips = np.stack([backbone.align(image, face).crop for image, face in celebrity_faces["elton_john"][:4]])
    expected = backbone.embed(chips)  # the workers are up (a start on a busy machine takes seconds)
    monkeypatch.setattr(_dlib_pool, "REQUEST_SECONDS", 2.0)
    monkeypatch.setattr(_dlib_pool, "CHIP_SECONDS", 0.5)
    stalled = pool._workers[0].process
    os.kill(stalled.pid, signal.SIGSTOP)
    try:
        outcome: list[np.ndarray] = []
        caller = threading.Thread(target=lambda: outcome.append(backbone.embed(chips)), daemon=True)
        caller.start()
        caller.join(timeout=60)
        assert not caller.is_alive(), "embedding still hangs on the stopped worker"
    finally:
        stalled.send_signal(signal.SIGCONT)  # never leave a stopped process behind (a no-op once it is gone)
    np.testing.assert_array_equal(outcome[0], expected)
    assert stalled.poll() is not None  # killed, not left stopped
    assert stalled.pid not in pids(pool) and _dlib_pool.pool_for(backbone._job) is pool
    np.testing.assert_array_equal(pool.describe(chips, 0), expected)


def test_workers_that_cannot_start_are_not_restarted_forever(tmp_path: Path) -> None:
    """A worker that ends by itself before it is ready (no model here) makes the caller give the pool up."""
    from core.pipeline import _dlib_pool

    pool = _dlib_pool.WorkerPool(("describe", str(tmp_path / "missing.dat")), 1)
    with pytest.raises(_dlib_pool.NotStarted):
        pool.describe(np.zeros((1, 150, 150, 3), np.uint8), 0)
    assert all(worker.process.poll() is not None for worker in pool._workers)


def test_workers_ignore_ctrl_c(private_pool, celebrity_faces) -> None:
    """Ctrl-C in a terminal reaches the whole process group: the workers leave the decision to the parent."""
    backbone, pool = private_pool
    chips = np.stack([backbone.align(image, face).crop for image, face in celebrity_faces["elton_john"][:2]])
    expected = pool.describe(chips, 0)  # the workers are up
    before = pids(pool)
    for pid in before:
        os.kill(pid, signal.SIGINT)
    time.sleep(1)
    assert all(worker.process.poll() is None for worker in pool._workers)
    np.testing.assert_array_equal(pool.describe(chips, 0), expected)
    assert pids(pool) == before


def test_worker_count_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    from core.pipeline import _dlib_pool

    monkeypatch.setenv(_dlib_pool.WORKERS_ENV, "0")
    assert _dlib_pool.worker_count() == 0
    monkeypatch.setattr(_dlib_pool, "_pools", {})
    assert _dlib_pool.pool_for(("describe", "any.dat")) is None  # 0: no worker processes at all
    for bad in ("-1", "two", "1.5"):
        monkeypatch.setenv(_dlib_pool.WORKERS_ENV, bad)
        with pytest.raises(ValueError, match="FACELAB_DLIB_WORKERS must be a whole number"):
            _dlib_pool.worker_count()
    monkeypatch.delenv(_dlib_pool.WORKERS_ENV)
    assert 1 <= _dlib_pool.worker_count() <= _dlib_pool.MAX_DEFAULT_WORKERS
