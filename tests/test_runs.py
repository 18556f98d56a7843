"""The run store: atomic saves, loading, listing, renaming, deleting, the active run and exports."""

from __future__ import annotations

import dataclasses
import io
import json
import os
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from core import runs
from core.config import runs_dir
from core.files import remove_stale
from core.training.config import TrainConfig, TrainResult
from core.training.fit import train_head
from core.training.metrics import evaluate

DIM = 32
PEOPLE = ["ada", "bob", "cyd"]


def clusters(per_person: int, seed: int) -> tuple[np.ndarray, list[str]]:
    centres = np.random.default_rng(99).normal(size=(len(PEOPLE), DIM)) * 2
    rng = np.random.default_rng(seed)
    X = np.concatenate([c + rng.normal(size=(per_person, DIM)) for c in centres]).astype(np.float32)
    return X, [name for name in PEOPLE for _ in range(per_person)]


@pytest.fixture(scope="module")
def data() -> dict[str, tuple[np.ndarray, list[str]]]:
    return {"train": clusters(8, 1), "val": clusters(3, 2), "test": clusters(3, 3)}


@pytest.fixture(scope="module")
def results(data: dict) -> dict[str, tuple[TrainResult, TrainConfig]]:
    """One short training per head kind, shared by the module (the store does not care how good they are)."""
    out = {}
    for kind in ("softmax", "notebook", "centroid"):
        config = TrainConfig(head=kind, epochs=3, dataset="toy", backbone="dlib", weights_id="w1")
        out[kind] = (train_head(config, *data["train"], *data["val"]), config)
    return out


@pytest.mark.parametrize("kind", ["softmax", "notebook", "centroid"])
def test_save_then_load_predicts_the_same(results: dict, data: dict, kind: str) -> None:
    result, config = results[kind]
    test_metrics = evaluate(result.head, result.labels, *data["test"])
    gallery = {"embeddings": data["train"][0], "labels": np.array(data["train"][1]), "threshold": np.float32(0.4)}
    info = runs.save_run(result, config, extras=gallery, name="My run", test_metrics=test_metrics)
    assert info.status == "complete" and info.name == "My run" and info.head == kind and info.people == 3
    assert info.path.parent == runs_dir() and info.path.name == info.id
    assert info.val_accuracy == result.metrics["accuracy"] and info.test_accuracy == test_metrics["accuracy"]

    loaded = runs.load_run(info.id)
    X_test = data["test"][0]
    np.testing.assert_allclose(loaded.head.predict_proba(X_test), result.head.predict_proba(X_test), atol=1e-6)
    assert loaded.labels == result.labels
    assert loaded.config == config
    assert loaded.history.keys() == result.history.keys()
    for key, values in result.history.items():  # pytest ≥ 9.2's approx refuses a dict of lists: compare per key
        assert loaded.history[key] == pytest.approx(values), key
    assert loaded.metrics["validation"]["confusion"] == result.metrics["confusion"]
    assert loaded.metrics["test"]["accuracy"] == test_metrics["accuracy"]
    np.testing.assert_array_equal(loaded.extras["embeddings"], gallery["embeddings"])
    assert loaded.extras["labels"].tolist() == data["train"][1]
    assert float(loaded.extras["threshold"]) == pytest.approx(0.4)
    assert loaded.info == info


def test_list_is_newest_first_and_ignores_other_folders(results: dict) -> None:
    result, config = results["centroid"]
    ids = [runs.save_run(result, config, name=f"run {i}").id for i in range(3)]
    (runs_dir() / ".tmp-20990101-000000-abcdef-x").mkdir()
    (runs_dir() / "not-a-run").mkdir()
    listed = runs.list_runs()
    assert [run.id for run in listed] == ids[::-1]
    assert [run.name for run in listed] == ["run 2", "run 1", "run 0"]


def test_rename_and_delete(results: dict) -> None:
    result, config = results["centroid"]
    keep, doomed = runs.save_run(result, config), runs.save_run(result, config)
    renamed = runs.rename_run(keep.id, "  Class   of 2025 ")
    assert renamed.name == "Class of 2025"
    assert runs.load_run(keep.id).info.name == "Class of 2025"
    with pytest.raises(ValueError, match="empty"):
        runs.rename_run(keep.id, "   ")
    with pytest.raises(ValueError, match="at most"):
        runs.rename_run(keep.id, "x" * 200)
    runs.delete_run(doomed.id)
    assert [run.id for run in runs.list_runs()] == [keep.id]
    assert sorted(p.name for p in runs_dir().iterdir()) == [keep.id]  # nothing left behind
    with pytest.raises(FileNotFoundError, match="does not exist"):
        runs.load_run(doomed.id)
    with pytest.raises(FileNotFoundError):
        runs.delete_run(doomed.id)


def test_run_config_reads_the_settings_without_the_model(results: dict) -> None:
    result, config = results["softmax"]
    info = runs.save_run(result, config)
    (info.path / "model.keras").unlink()  # the settings must not need the model
    assert runs.run_config(info) == config.to_dict()
    assert runs.run_config(info.id) == config.to_dict()


@pytest.mark.parametrize("damage", ["missing", "not json", "not an object", "run deleted"])
def test_run_config_of_a_damaged_run_is_empty(results: dict, damage: str) -> None:
    result, config = results["centroid"]
    info = runs.save_run(result, config)
    settings = info.path / "config.json"
    if damage == "missing":
        settings.unlink()
    elif damage == "not json":
        settings.write_text("{not json", encoding="utf-8")
    elif damage == "not an object":
        settings.write_text("[1, 2]", encoding="utf-8")
    else:
        runs.delete_run(info.id)
    assert runs.run_config(info) == {} and runs.run_config(info.id) == {}


@pytest.mark.parametrize("bad_id", ["../etc", "20250101-000000-abcdeg", "", "20250101-000000-abcdef/..",
                                    "20250101-000000-abcdef\n"])
def test_run_ids_cannot_escape_the_store(bad_id: str) -> None:
    with pytest.raises(ValueError, match="not a run id"):
        runs.load_run(bad_id)
    with pytest.raises(ValueError, match="not a run id"):
        runs.run_config(bad_id)


def test_active_run(results: dict) -> None:
    result, config = results["centroid"]
    assert runs.active_run() is None
    first, second = runs.save_run(result, config), runs.save_run(result, config)
    runs.set_active_run(first.id)
    assert runs.active_run() == first.id
    runs.set_active_run(second.id)
    assert json.loads((runs_dir() / runs.ACTIVE_FILE).read_text()) == {"run_id": second.id}
    runs.delete_run(first.id)
    assert runs.active_run() == second.id  # deleting another run keeps the choice
    runs.delete_run(second.id)
    assert runs.active_run() is None
    with pytest.raises(FileNotFoundError):
        runs.set_active_run(second.id)
    runs.set_active_run(None)
    assert runs.active_run() is None


def test_crash_during_save_leaves_nothing(results: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    result, config = results["softmax"]
    real_write = runs._write_json

    def crash_on_history(path: Path, data: object) -> None:
        if path.name == "history.json":
            raise OSError("disk full")
        real_write(path, data)

    monkeypatch.setattr(runs, "_write_json", crash_on_history)
    with pytest.raises(OSError, match="disk full"):
        runs.save_run(result, config)
    assert runs.list_runs() == []
    assert list(runs_dir().iterdir()) == []


def test_hard_crash_leftovers_are_ignored_and_cleaned(results: dict) -> None:
    result, config = results["centroid"]
    info = runs.save_run(result, config)
    # A process killed after writing everything but before the rename leaves a complete-looking temp folder.
    leftover = runs_dir() / f".tmp-{runs.new_run_id()}-abc"
    leftover.mkdir()
    for file in info.path.iterdir():
        (leftover / file.name).write_bytes(file.read_bytes())
    assert [run.id for run in runs.list_runs()] == [info.id]
    assert remove_stale(runs_dir()) == []  # too recent: maybe another session is saving right now
    old = time.time() - 7200
    os.utime(leftover, (old, old))
    assert remove_stale(runs_dir()) == [leftover]
    assert not leftover.exists() and info.path.exists()


def test_stopped_run_is_saved_as_stopped(results: dict) -> None:
    result, config = results["softmax"]
    info = runs.save_run(dataclasses.replace(result, stopped=True), config)
    assert info.status == "stopped" and "stopped" in info.name
    assert runs.list_runs()[0].status == "stopped"
    assert runs.load_run(info.id).info.status == "stopped"


def test_export_zip_holds_the_whole_run(results: dict) -> None:
    result, config = results["softmax"]
    info = runs.save_run(result, config, extras={"embeddings": np.zeros((2, DIM), np.float32)})
    with zipfile.ZipFile(io.BytesIO(runs.export_run_zip(info.id))) as archive:
        names = set(archive.namelist())
        assert names == {f"{info.id}/{name}" for name in ("run.json", "labels.json", "config.json", "history.json",
                                                           "metrics.json", "report.json", "head.json", "model.keras",
                                                           "gallery.npz")}
        assert json.loads(archive.read(f"{info.id}/labels.json")) == result.labels


def test_export_zip_names_the_dataset_without_its_server_path(results: dict, tmp_path: Path) -> None:
    result, config = results["centroid"]
    dataset = tmp_path / "classroom" / "five_faces"
    info = runs.save_run(result, dataclasses.replace(config, dataset=str(dataset)),
                         extras={"train_paths": np.array(["train/ada/1.jpg", "train/bob/2.jpg"])})
    with zipfile.ZipFile(io.BytesIO(runs.export_run_zip(info.id))) as archive:
        assert json.loads(archive.read(f"{info.id}/config.json"))["dataset"] == "five_faces"
        for name in archive.namelist():
            assert str(tmp_path).encode() not in archive.read(name), f"{name} holds a server path"
        with np.load(io.BytesIO(archive.read(f"{info.id}/gallery.npz"))) as gallery:
            assert not any(Path(path).is_absolute() for path in gallery["train_paths"])
    assert runs.load_run(info.id).config.dataset == str(dataset), "the stored run still finds its dataset"


def test_export_savedmodel_serves_the_same_probabilities(results: dict, data: dict, tmp_path: Path) -> None:
    import tensorflow as tf

    result, config = results["softmax"]
    info = runs.save_run(result, config)
    dest = runs.export_savedmodel(info.id, tmp_path / "export")
    assert json.loads((dest / "labels.json").read_text()) == result.labels
    reloaded = tf.saved_model.load(str(dest))  # kept in a variable: its functions need the object alive
    served = reloaded.serve(tf.constant(data["test"][0]))
    np.testing.assert_allclose(served.numpy(), result.head.predict_proba(data["test"][0]), atol=1e-5)
    with pytest.raises(FileExistsError):
        runs.export_savedmodel(info.id, dest)
    centroid = runs.save_run(*results["centroid"])
    with pytest.raises(ValueError, match="zip"):
        runs.export_savedmodel(centroid.id, tmp_path / "other")
    assert not (tmp_path / "other").exists()


def test_concurrent_saves_make_distinct_complete_runs(results: dict, data: dict) -> None:
    kinds = ["centroid", "softmax", "notebook"] * 2
    infos, errors = [], []

    def save(kind: str) -> None:
        try:
            infos.append(runs.save_run(*results[kind]))
        except Exception as exc:  # noqa: BLE001 - collected and reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=save, args=(kind,)) for kind in kinds]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len({info.id for info in infos}) == len(kinds)
    assert {run.id for run in runs.list_runs()} == {info.id for info in infos}
    for info in infos:
        loaded = runs.load_run(info.id)
        np.testing.assert_allclose(loaded.head.predict_proba(data["test"][0]),
                                   results[info.head][0].head.predict_proba(data["test"][0]), atol=1e-6)


def test_run_removed_while_in_use_gives_clear_errors(results: dict) -> None:
    result, config = results["centroid"]
    info = runs.save_run(result, config)
    (info.path / "centroids.npz").unlink()
    with pytest.raises(FileNotFoundError, match=f"run {info.id}"):
        runs.load_run(info.id)
    (info.path / "run.json").write_text("{not json")
    with pytest.raises(ValueError, match="damaged"):
        runs.load_run(info.id)
    assert runs.list_runs() == []


def test_bad_extras_and_names_are_refused_before_writing(results: dict) -> None:
    result, config = results["centroid"]
    with pytest.raises(ValueError, match="plain name"):
        runs.save_run(result, config, extras={"../x": np.zeros(2)})
    with pytest.raises(ValueError, match="Python objects"):
        runs.save_run(result, config, extras={"mixed": np.array([1, "a", None], dtype=object)})
    with pytest.raises(ValueError, match="empty"):
        runs.save_run(result, config, name=" ")
    with pytest.raises(ValueError, match="cannot be saved"):
        runs.save_run(result, dataclasses.replace(config, extra={"callback": print}))
    assert list(runs_dir().iterdir()) == []
