"""Training from a dataset folder: the shared code path of the CLI and the Train page."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from core.pipeline.embeddings import Pipeline
from core.runs import list_runs, load_run
from core.services.train import train_on_dataset
from core.training.config import TrainConfig
from tests.conftest import ROOT, image_bytes, noise_image, shared_dataset
from tests.test_embeddings import CountingDetector, MeanColourBackbone


def write_dataset(root: Path, layout: dict[str, dict[str, int]], blank: set[str] = frozenset()) -> Path:
    """A dataset of random photos; people in ``blank`` get all-black photos (no face for the fake detector)."""
    seed = 0
    for split, people in layout.items():
        for person, count in people.items():
            folder = root / split / person
            folder.mkdir(parents=True)
            for i in range(count):
                seed += 1
                pixels = np.zeros((20, 20, 3), np.uint8) if person in blank else noise_image(seed=seed)
                (folder / f"{i}.png").write_bytes(image_bytes(pixels))
    return root


def fake_pipeline() -> Pipeline:
    return Pipeline(CountingDetector(), MeanColourBackbone())


def test_one_person_dataset_is_refused_clearly(tmp_path: Path) -> None:
    root = write_dataset(tmp_path / "solo", {"train": {"ann": 3}})
    with pytest.raises(ValueError, match="at least two people"):
        train_on_dataset(root, fake_pipeline(), TrainConfig(head="centroid"))
    assert list_runs() == []


def test_train_split_without_faces_is_refused(tmp_path: Path) -> None:
    root = write_dataset(tmp_path / "blank", {"train": {"ann": 2, "bob": 2}}, blank={"ann", "bob"})
    with pytest.raises(ValueError, match="no photo with a face"):
        train_on_dataset(root, fake_pipeline(), TrainConfig(head="centroid"))


def test_faceless_photos_are_listed_and_run_saved(tmp_path: Path) -> None:
    root = write_dataset(tmp_path / "ds", {"train": {"ann": 3, "bob": 3, "cat": 2}, "validation": {"ann": 1, "bob": 1},
                                           "test": {"ann": 1, "bob": 1}}, blank={"cat"})
    info, result, report = train_on_dataset(root, fake_pipeline(), TrainConfig(head="centroid"))
    assert sorted(report["train"]["no_face"]) == ["train/cat/0.png", "train/cat/1.png"]
    assert result.labels == ["ann", "bob"]
    run = load_run(info.id)
    assert run.config.dataset == str(root.resolve()) and run.config.detector == "counting"
    assert run.extras["train_embeddings"].shape == (6, 3)
    assert list(run.extras["train_labels"]) == ["ann"] * 3 + ["bob"] * 3


def test_finetune_mode_needs_a_finetunable_backbone(tmp_path: Path) -> None:
    root = write_dataset(tmp_path / "ds", {"train": {"ann": 2, "bob": 2}})
    with pytest.raises(ValueError, match="cannot be fine-tuned"):
        train_on_dataset(root, fake_pipeline(), TrainConfig(mode="finetune"))


def test_cli_trains_five_celebrity_offline_to_full_test_accuracy(facelab_home: Path) -> None:
    dataset = shared_dataset("five_celebrity_faces")
    env = {**os.environ, "FACELAB_HOME": str(facelab_home)}
    done = subprocess.run([sys.executable, "-m", "core", "train", str(dataset), "--detector", "dlib-hog",
                           "--backbone", "dlib-resnet", "--json"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout)
    assert out["test_accuracy"] == 1.0 and out["val_accuracy"] == 1.0
    assert out["epochs"] >= 1 and out["seconds"] > 0 and out["run"]
    assert (facelab_home / "runs" / out["run"] / "run.json").exists()


def test_cli_error_is_one_line(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "core", "train", str(tmp_path / "missing"), "--detector", "haar",
                           "--backbone", "dlib-resnet"], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "FACELAB_HOME": str(tmp_path / "home")})
    assert done.returncode == 2
    assert "Traceback" not in done.stderr and done.stderr.strip().startswith("error:")
