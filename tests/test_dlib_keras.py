"""dlib's ResNet as a Keras 3 model and as an ONNX graph read from dlib's own .dat: same descriptors as dlib, a
careful reader, a conversion done once per file, and the backbone's three engines."""

from __future__ import annotations

import math
import threading
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import shared_dataset

pytest.importorskip("dlib")
pytest.importorskip("face_recognition_models")

from core.pipeline.backbones import _dlib_dat  # noqa: E402
from core.pipeline.weights import WeightsError  # noqa: E402

TOLERANCE = 1e-4  # dlib's documented descriptors against the twin's, per component


def model_file() -> Path:
    return _dlib_dat.model_path()


@pytest.fixture(scope="module")
def chips() -> np.ndarray:
    """At least 100 real face chips cut as dlib's example does (HOG face, 5 points, get_face_chip)."""
    import dlib
    import face_recognition_models

    from core.data.layout import scan
    from core.images import load_image

    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(face_recognition_models.pose_predictor_five_point_model_location())
    found = []
    for name in ("five_celebrity_faces", "glint360k_celebrity_sample"):
        for record in scan(shared_dataset(name)).images:
            image = load_image(record.path)
            faces = detector(image, 1)
            if faces:
                found.append(dlib.get_face_chip(image, predictor(image, faces[0]), size=150, padding=0.25))
            if len(found) == 120:
                return np.stack(found)
    return np.stack(found)


@pytest.fixture(scope="module")
def dlib_descriptors(chips: np.ndarray) -> np.ndarray:
    import dlib

    model = dlib.face_recognition_model_v1(str(model_file()))
    return np.asarray([model.compute_face_descriptor(np.ascontiguousarray(chip)) for chip in chips], np.float32)


# --- equivalence ---------------------------------------------------------------------------------

def test_keras_descriptors_equal_dlibs(chips: np.ndarray, dlib_descriptors: np.ndarray) -> None:
    from core.pipeline.backbones import _dlib_keras

    assert len(chips) >= 100
    keras_descriptors = _dlib_keras.embed(chips)
    assert keras_descriptors.shape == (len(chips), 128) and keras_descriptors.dtype == np.float32
    assert np.abs(keras_descriptors - dlib_descriptors).max() <= TOLERANCE
    assert np.abs(dlib_descriptors).max() > 0.1  # real descriptors, not two sets of zeros


def test_onnx_descriptors_equal_dlibs(chips: np.ndarray, dlib_descriptors: np.ndarray) -> None:
    from core.pipeline.backbones import _dlib_onnx

    assert len(chips) >= 100
    descriptors = _dlib_onnx.embed(chips, model_file())
    assert descriptors.shape == (len(chips), 128) and descriptors.dtype == np.float32
    assert np.abs(descriptors - dlib_descriptors).max() <= TOLERANCE
    assert _dlib_onnx.embed(chips[:0], model_file()).shape == (0, 128)


def test_engines_agree_mirror_averaged(chips: np.ndarray) -> None:
    from core.pipeline.backbones.dlib_resnet import DlibResNet

    by_dlib, by_keras, by_onnx = DlibResNet(engine="dlib"), DlibResNet(engine="keras"), DlibResNet(engine="onnx")
    assert by_keras.flip_average and by_keras.cache_key() == by_dlib.cache_key() == by_onnx.cache_key()  # one cache
    subset = chips[:40]
    keras_vectors = by_keras.embed(subset)
    assert np.abs(keras_vectors - by_dlib.embed(subset)).max() <= TOLERANCE
    assert np.abs(by_onnx.embed(subset) - keras_vectors).max() <= TOLERANCE
    mirrored = DlibResNet(engine="keras", flip_average=False).embed(np.ascontiguousarray(subset[:, :, ::-1]))
    assert not np.allclose(keras_vectors, mirrored, atol=1e-3)  # the average is not just the mirror's descriptor


def test_engine_choices_are_checked() -> None:
    from core.pipeline.backbones.dlib_resnet import DlibResNet

    with pytest.raises(ValueError, match="engine"):
        DlibResNet(engine="tensorflow")
    with pytest.raises(ValueError, match="num_jitters"):
        DlibResNet(engine="keras", num_jitters=2)


def test_auto_engine_is_onnx_except_for_dlibs_jitter(monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 14: the ONNX graph describes ~20× faster than dlib's C++ and starts without TensorFlow; the random
    jitter is dlib's own, and without ONNX Runtime dlib's workers do everything."""
    from core.pipeline.backbones import dlib_resnet
    from core.pipeline.backbones.dlib_resnet import DlibResNet

    assert DlibResNet().engine == "auto" and DlibResNet()._engine == "onnx"
    assert DlibResNet(num_jitters=2)._engine == "dlib"
    assert DlibResNet(engine="keras")._engine == "keras" and DlibResNet(engine="dlib")._engine == "dlib"
    monkeypatch.setattr(dlib_resnet.importlib.util, "find_spec", lambda name: None)
    assert DlibResNet()._engine == "dlib"


def test_warm_starts_what_the_description_will_use(monkeypatch: pytest.MonkeyPatch) -> None:
    """The ONNX session opens on a background thread while detection goes on (once: it stays open); the dlib engine
    starts its workers."""
    from core.pipeline.backbones import dlib_resnet
    from core.pipeline.backbones.dlib_resnet import DlibResNet

    opened, workers = threading.Event(), []
    monkeypatch.setattr(dlib_resnet._dlib_onnx, "load", lambda path: opened.set())
    monkeypatch.setattr(dlib_resnet._dlib_pool, "pool_for", workers.append)
    auto = DlibResNet()
    auto.warm(16)
    assert opened.wait(10) and workers == []
    opened.clear()
    auto.warm(16)
    assert not opened.wait(0.5), "asked again"
    by_dlib = DlibResNet(engine="dlib")
    opened.clear()
    by_dlib.warm(16)
    assert by_dlib._job in workers and not opened.wait(0.5)


def test_auto_engine_gives_dlibs_descriptors(chips: np.ndarray) -> None:
    from core.pipeline.backbones.dlib_resnet import DlibResNet

    subset = np.ascontiguousarray(chips[:6])
    assert np.abs(DlibResNet().embed(subset) - DlibResNet(engine="dlib").embed(subset)).max() < 1e-4


# --- the model ----------------------------------------------------------------------------------

def test_network_contract_for_fine_tuning(chips: np.ndarray, dlib_descriptors: np.ndarray) -> None:
    from core.pipeline.backbones import _dlib_keras
    from core.pipeline.backbones.dlib_resnet import DlibResNet

    first, second = _dlib_keras.network(), DlibResNet(engine="keras").finetune_network()
    assert first is not second and first.output_shape == (None, 128) and first.layers[-1].name == "descriptor"
    weighted = [layer.name for layer in first.layers if layer.weights]
    assert [name for group in _dlib_keras.BLOCKS for name in group] == weighted  # bottom → top, every one
    assert _dlib_keras.BLOCKS[-1] == ("descriptor",) and len(_dlib_keras.BLOCKS) == 7
    assert DlibResNet.fine_tunable and DlibResNet.finetune_blocks == _dlib_keras.BLOCKS
    first.get_layer("descriptor").set_weights([np.zeros((256, 128), np.float32)])  # a copy: the other is untouched
    np.testing.assert_allclose(second.predict_on_batch(chips[:4].astype(np.float32)), dlib_descriptors[:4], atol=TOLERANCE)
    assert not first.predict_on_batch(chips[:4].astype(np.float32)).any()


def test_saved_model_takes_raw_chips(tmp_path: Path, chips: np.ndarray, dlib_descriptors: np.ndarray) -> None:
    import keras

    from core.pipeline.backbones import _dlib_keras

    path = tmp_path / "dlib.keras"
    _dlib_keras.network().save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_allclose(loaded.predict_on_batch(chips[:4]), dlib_descriptors[:4], atol=TOLERANCE)


def test_add_prev_pads_the_smaller_tensor_with_zeros() -> None:
    from core.pipeline.backbones._dlib_keras import DlibAddPrev

    small, large = np.ones((1, 3, 3, 2), np.float32), np.full((1, 4, 4, 5), 10.0, np.float32)
    total = np.asarray(DlibAddPrev()([small, large]))
    assert total.shape == (1, 4, 4, 5)
    assert (total[0, :3, :3, :2] == 11).all() and (total[0, 3, :, :] == 10).all() and (total[0, :, :, 2:] == 10).all()


# --- the reader ---------------------------------------------------------------------------------

def test_reader_parses_dlibs_face_model() -> None:
    network = _dlib_dat.read(model_file())
    assert network.input == {"mean": pytest.approx((122.782, 117.001, 104.298)), "size": (150, 150)}
    assert network.loss["distance_threshold"] == pytest.approx(0.6)
    named = _dlib_dat.check_anet(network, model_file())
    assert list(named) == [name for group in _dlib_dat.BLOCKS for name in group]
    assert named["stem_conv"].arrays["filters"].shape == (32, 3, 7, 7)
    assert named["descriptor"].arrays["weights"].shape == (256, 128) and "bias" not in named["descriptor"].arrays


def refused(path: Path, *words: str) -> str:
    with pytest.raises(WeightsError) as caught:
        _dlib_dat.check_anet(_dlib_dat.read(path), path)
    message = str(caught.value)
    assert path.name in message and "\n" not in message and message.endswith(".")
    for word in words:
        assert word in message, message
    return message


def test_reader_refuses_damaged_files(tmp_path: Path) -> None:
    data = model_file().read_bytes()
    cases = {
        "empty.dat": (b"", "empty"),
        "random.dat": (np.random.default_rng(0).bytes(5000), "not an intact"),
        "head.dat": (data[:40], "truncated"),
        "half.dat": (data[:len(data) // 2], "truncated"),
        "last_byte.dat": (data[:-1], "truncated"),
        "extra.dat": (data + b"\x00\x00", "follow"),
        "kind.dat": (data.replace(b"con_4", b"con_9", 1), "con_9"),
        "control.dat": (data[:2] + b"\x7f" + data[3:], "byte 2"),
    }
    for name, (content, word) in cases.items():
        (tmp_path / name).write_bytes(content)
        refused(tmp_path / name, word)


def test_reader_refuses_other_dlib_files() -> None:
    import face_recognition_models

    detector = Path(face_recognition_models.cnn_face_detector_model_location())  # dlib's CNN face detector
    refused(detector, "loss")
    landmarks = Path(face_recognition_models.pose_predictor_five_point_model_location())  # not a network at all
    refused(landmarks, "not an intact")


# A dlib stream written here, for what the real file does not hold: a batch-norm record (dlib turns it into an
# affine one when loading), a length field far beyond the file, another network.

def integer(value: int) -> bytes:
    magnitude = abs(value).to_bytes(max(1, (abs(value).bit_length() + 7) // 8), "little")
    return bytes([len(magnitude) | (0x80 if value < 0 else 0)]) + magnitude


def text(value: str) -> bytes:
    return integer(len(value)) + value.encode()


def real(value: float) -> bytes:
    mantissa, exponent = math.frexp(value)
    return integer(int(mantissa * 2**52)) + integer(exponent - 52)


def tensor(values: np.ndarray, shape: tuple[int, int, int, int]) -> bytes:
    return integer(2) + b"".join(integer(size) for size in shape) + np.asarray(values, "<f4").tobytes()


def alias(shape: tuple[int, int, int, int]) -> bytes:
    return integer(1) + b"".join(integer(size) for size in shape)


EMPTY = tensor(np.zeros(0), (0, 0, 0, 0))


def tiny_network(con_params: bytes) -> bytes:
    """loss_metric over a batch-norm (read as affine) over a 1×1 convolution of 2 filters over the input."""
    gamma, beta = np.array([2.0, 3.0]), np.array([0.5, -1.0])
    means, variances = np.array([1.0, -2.0]), np.array([4.0, 0.25])
    con = (text("con_4") + con_params + integer(2) + b"".join(integer(v) for v in (1, 1, 1, 1, 0, 0)) +
           alias((2, 3, 1, 1)) + alias((1, 2, 1, 1)) + real(1) * 4)
    bn = (text("bn_con2") + tensor(np.concatenate([gamma, beta]), (4, 1, 1, 1)) + alias((1, 2, 1, 1)) * 2 + EMPTY * 2 +
          tensor(means, (1, 2, 1, 1)) + tensor(variances, (1, 2, 1, 1)) + integer(5) + integer(100) + real(1) * 4 +
          real(1e-4))
    state = b"000" + EMPTY * 2
    return (integer(1) + text("loss_metric_2") + real(0.04) + real(0.6) + integer(2) + integer(3) +
            text("input_rgb_image_sized") + real(122.782) + real(117.001) + real(104.298) + integer(150) + integer(150) +
            con + state + EMPTY + integer(1) + bn + state + EMPTY)


def test_batch_norm_records_become_affine_as_in_dlib(tmp_path: Path) -> None:
    path = tmp_path / "tiny.dat"
    path.write_bytes(tiny_network(tensor(np.arange(8), (8, 1, 1, 1))))
    network = _dlib_dat.read(path)
    assert [layer.kind for layer in network.layers] == ["con", "affine"]
    np.testing.assert_array_equal(network.layers[0].arrays["filters"].reshape(-1), np.arange(6))
    affine = network.layers[1].arrays
    scale = np.array([2.0, 3.0]) / np.sqrt(np.array([4.0, 0.25]) + 1e-4)
    np.testing.assert_allclose(affine["gamma"], scale, rtol=1e-6)
    np.testing.assert_allclose(affine["beta"], np.array([0.5, -1.0]) - scale * np.array([1.0, -2.0]), rtol=1e-6)
    refused(path, "another dlib network")


def test_reader_never_allocates_from_a_length_beyond_the_file(tmp_path: Path) -> None:
    path = tmp_path / "huge.dat"
    path.write_bytes(tiny_network(integer(2) + integer(1 << 30) + integer(1 << 30) + integer(1) + integer(1)))
    refused(path, "truncated")


# --- the conversion -----------------------------------------------------------------------------

def test_conversion_happens_once_per_file(monkeypatch: pytest.MonkeyPatch) -> None:
    from core.config import weights_dir
    from core.pipeline.backbones import _dlib_keras

    seen: list[float] = []
    converted = _dlib_keras.convert(progress=seen.append)
    assert converted.parent == weights_dir() and converted.is_file()
    assert seen[-1] == 1.0 and seen == sorted(seen) and len(seen) > 5
    assert [p.name for p in weights_dir().iterdir()] == [converted.name]

    def no_reading(*args: object, **kwargs: object) -> None:
        raise AssertionError("the .dat was read again")

    monkeypatch.setattr(_dlib_dat, "read", no_reading)
    stamp = converted.stat().st_mtime_ns
    assert _dlib_keras.convert() == converted and converted.stat().st_mtime_ns == stamp
    assert _dlib_keras.network().get_layer("descriptor").get_weights()[0].shape == (256, 128)


@pytest.mark.parametrize("damage", ["truncated", "flipped", "foreign"])
def test_damaged_conversion_is_redone(damage: str) -> None:
    from core.pipeline.backbones import _dlib_keras

    converted = _dlib_keras.convert()
    good = converted.read_bytes()
    if damage == "truncated":
        converted.write_bytes(good[:len(good) // 3])
    elif damage == "flipped":
        middle = len(good) // 2
        converted.write_bytes(good[:middle] + bytes([good[middle] ^ 0xFF]) + good[middle + 1:])
    else:
        np.savez(converted, format=np.asarray("something else"))
    with pytest.raises(WeightsError):
        _dlib_keras._load(converted)
    assert _dlib_keras.convert() == converted
    assert _dlib_keras._load(converted)["descriptor:0"].shape == (256, 128)


def test_failed_conversion_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from core.config import weights_dir
    from core.pipeline.backbones import _dlib_keras

    bad = tmp_path / "bad.dat"
    bad.write_bytes(model_file().read_bytes()[:1000])
    with pytest.raises(WeightsError, match="truncated"):
        _dlib_keras.network(bad)
    assert list(weights_dir().iterdir()) == []

    def broken_savez(out: object, **arrays: object) -> None:
        out.write(b"PK half a zip")  # type: ignore[attr-defined]
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(_dlib_keras.np, "savez", broken_savez)
    with pytest.raises(OSError):
        _dlib_keras.convert()
    assert list(weights_dir().iterdir()) == []
