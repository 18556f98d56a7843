"""Training from a dataset folder: the shared code path of the CLI and the Train page."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import core.cli.train as cli_train
from core.cli import main as cli_main
from core.pipeline.backbones import BACKBONES
from core.pipeline.detection import DETECTORS
from core.pipeline.detection.base import CHUNK_PHOTOS
from core.pipeline.embeddings import EmbeddingCache, Pipeline
from core.registry import Entry
from core.runs import list_runs, load_run
from core.services.jobs import Cancelled, Job
from core.services.train import (
    STOPPED_WHILE_EMBEDDING,
    TrainJob,
    check_trainable,
    estimate,
    start_training,
    train_on_dataset,
)
from core.training.config import TrainConfig
from tests.conftest import image_bytes, noise_image, run_cli, shared_dataset
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
    outcome = train_on_dataset(root, fake_pipeline(), TrainConfig(head="centroid"))
    info, result, report = outcome.info, outcome.result, outcome.report
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
    done = run_cli("train", str(dataset), "--detector", "dlib-hog", "--backbone", "dlib-resnet", "--json",
                   home=facelab_home)
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout)
    assert out["test_accuracy"] == 1.0 and out["val_accuracy"] == 1.0
    assert out["epochs"] >= 1 and out["seconds"] > 0 and out["run"]
    assert (facelab_home / "runs" / out["run"] / "run.json").exists()


def test_cli_error_is_one_line(tmp_path: Path) -> None:
    done = run_cli("train", str(tmp_path / "missing"), "--detector", "haar", "--backbone", "dlib-resnet",
                   home=tmp_path / "home", isolated=True)  # what a user's terminal shows: one line, no traceback
    assert done.returncode == 2
    assert "Traceback" not in done.stderr and done.stderr.strip().startswith("error:")


# --- refusing early, estimating, stopping: the train service around train_on_dataset ----------------

TIMEOUT = 120  # seconds to wait for a job that should end (only reached when something hangs)


def test_check_trainable_refuses_before_any_photo_is_embedded(tmp_path: Path) -> None:
    (tmp_path / "empty" / "train").mkdir(parents=True)
    with pytest.raises(ValueError, match=r"the train split of empty is empty: put photos in train/<person>/"):
        check_trainable(tmp_path / "empty")
    solo = write_dataset(tmp_path / "solo", {"train": {"amy": 2}, "validation": {"bob": 1}})
    with pytest.raises(ValueError, match="training needs at least two people; the train split of solo only has 'amy'."):
        check_trainable(solo)
    check_trainable(write_dataset(tmp_path / "pair", {"train": {"amy": 1, "bob": 1}}))


class PricedDetector(CountingDetector):
    seconds_per_photo = 0.75


class PricedBackbone(MeanColourBackbone):
    seconds_per_photo = 0.5
    fine_tunable = True
    finetune_images_per_second = 4.0
    finetune_blocks = (("lower",), ("top",))


@pytest.fixture
def priced(monkeypatch: pytest.MonkeyPatch) -> Pipeline:
    """The fake plug-ins registered under their names, with declared costs the estimate must read."""
    for registry, cls in ((DETECTORS, PricedDetector), (BACKBONES, PricedBackbone)):
        registry.entries()  # discover the real plug-ins first, so the fakes are removed after the test
        monkeypatch.setitem(registry._entries, cls.name, Entry(cls.name, cls.name, cls))
    monkeypatch.setattr(BACKBONES, "_instances", {})
    return Pipeline(PricedDetector(), BACKBONES.get(PricedBackbone.name))


def test_estimate_uses_the_declared_costs_and_the_cache(tmp_path: Path, priced: Pipeline) -> None:
    root = write_dataset(tmp_path / "ds", {"train": {"ann": 3, "bob": 2}, "validation": {"ann": 1}})
    names = ("counting", "mean-colour")
    found = estimate(root, *names, True, TrainConfig(epochs=100))
    assert found.parts == ("embedding 6 new photo(s) × ~1.25 s", "up to 100 head epochs (a fraction of a second each)")
    assert found.seconds == pytest.approx(6 * 1.25 + 3.0 + 100 * (0.03 + 5 / 5000))
    assert found.details == "; ".join(found.parts)

    priced.embed(sorted((root / "train" / "ann").iterdir())[:2])  # the estimate builds no detector, yet finds them
    found = estimate(root, *names, True, TrainConfig(head="centroid"))
    assert found.parts == ("embedding 4 new photo(s) × ~1.25 s (2 already cached)", "averaging embeddings (instant)")
    assert found.seconds == pytest.approx(4 * 1.25 + 2 * 0.01 + 1.0)
    assert estimate(root, *names, False, TrainConfig(head="centroid")).parts[0] == "embedding 6 new photo(s) × ~1.25 s"
    boxes = estimate(root, *names, True, TrainConfig(head="centroid"), crop="box")  # another crop: nothing cached
    assert boxes.parts[0] == "embedding 6 new photo(s) × ~1.25 s"

    found = estimate(root, *names, True, TrainConfig(mode="finetune", epochs=10))
    assert found.parts[1] == "10 fine-tuning epoch(s) of 5 crops at ~4 images/s on a CPU"
    assert found.seconds == pytest.approx(4 * 1.25 + 2 * 0.01 + 6 * 0.75 + 13)


def test_estimate_refuses_fine_tuning_a_backbone_that_cannot(tmp_path: Path, priced: Pipeline,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(PricedBackbone, "fine_tunable", False)
    root = write_dataset(tmp_path / "ds", {"train": {"ann": 1, "bob": 1}})
    with pytest.raises(ValueError, match="cannot be fine-tuned"):
        estimate(root, "counting", "mean-colour", True, TrainConfig(mode="finetune"))
    monkeypatch.setattr(PricedBackbone, "fine_tunable", True)
    with pytest.raises(ValueError, match="finetune_blocks must be between 0 and 1 for mean-colour"):
        estimate(root, "counting", "mean-colour", True, TrainConfig(mode="finetune", finetune_blocks=2))


def test_stop_while_embedding_saves_nothing_and_keeps_the_embedded_photos(tmp_path: Path) -> None:
    root = write_dataset(tmp_path / "ds", {"train": {"ann": 3, "bob": 3}})
    pipeline = fake_pipeline()
    asked: list[bool] = []

    def stop_after_two() -> bool:
        asked.append(True)
        return len(asked) > 2

    with pytest.raises(Cancelled) as stopped:
        train_on_dataset(root, pipeline, TrainConfig(head="centroid"), should_stop=stop_after_two)
    assert str(stopped.value) == STOPPED_WHILE_EMBEDDING
    assert list_runs() == []
    photos = sorted(root.rglob("*.png"))
    assert len(EmbeddingCache().missing(photos, pipeline.key)) == len(photos) - 2


def solid_photos(root: Path, layout: dict[str, dict[str, list[tuple[int, int, int]]]]) -> Path:
    """Photos of one colour each: the fake backbone's embedding is that colour, so who is mistaken for whom is known."""
    for split, people in layout.items():
        for person, colours in people.items():
            (root / split / person).mkdir(parents=True)
            for i, colour in enumerate(colours):
                (root / split / person / f"{i}.png").write_bytes(image_bytes(np.full((20, 20, 3), colour, np.uint8)))
    return root


RED, BLUE = (200, 10, 10), (10, 10, 200)


def test_start_training_runs_the_phases_and_lists_the_validation_mistakes(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    root = solid_photos(tmp_path / "ds", {"train": {"ann": [RED] * 3, "bob": [BLUE] * 3},
                                          "validation": {"ann": [RED, BLUE], "bob": [BLUE]}})
    phases: list[str] = []
    enter = TrainJob.enter
    monkeypatch.setattr(TrainJob, "enter", lambda self, phase: (phases.append(phase), enter(self, phase))[1])
    job = start_training(root, fake_pipeline(), TrainConfig(head="centroid"), name="centroids")
    assert job.wait(TIMEOUT)
    snap = job.snapshot()
    assert snap.phase == "done", snap.error
    assert phases == ["training", "evaluating"]
    outcome = snap.outcome
    assert outcome.info.name == "centroids" and outcome.result.labels == ["ann", "bob"]
    assert outcome.report["validation"]["used"] == 3 and outcome.notes == []
    assert len(job.epochs) == 1 and list(job.history()) == ["loss", "accuracy", "val_loss", "val_accuracy"]
    assert [(m.path, m.truth, m.predicted) for m in outcome.mistakes] == [(root / "validation/ann/1.png", "ann", "bob")]
    assert 0.5 <= outcome.mistakes[0].confidence <= 1


def test_stop_while_training_saves_the_best_model_as_stopped(tmp_path: Path) -> None:
    root = write_dataset(tmp_path / "ds", {"train": {"ann": 4, "bob": 4}, "validation": {"ann": 1, "bob": 1}})
    config = TrainConfig(head="notebook", epochs=100_000, early_stopping_patience=0)
    job = start_training(root, fake_pipeline(), config)
    while len(job.epochs) < 3 and not job.wait(0.05):
        pass
    assert job.snapshot().can_stop, job.error
    job.stop.set()
    assert job.wait(TIMEOUT)
    snap = job.snapshot()
    assert snap.phase == "done", snap.error
    assert snap.outcome.result.stopped and snap.outcome.info.status == "stopped"
    assert 3 <= snap.outcome.result.epochs_run < 100_000


# --- the CLI: Ctrl-C asks the job to stop ---------------------------------------------------------

PRESS = threading.Event()  # set by the work when the test's Ctrl-C should come


@pytest.fixture
def cli_jobs(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Job]]:
    """The jobs the CLI starts, with a Ctrl-C pressed during the first wait once ``press`` is set."""
    jobs: list[Job] = []
    start, wait = Job.start, Job.wait
    monkeypatch.setattr(Job, "start", lambda self, work, name="": (jobs.append(self), start(self, work, name))[1])
    pressed: list[bool] = []

    def ctrl_c_once(self: Job, timeout: float | None = None) -> bool:
        if not pressed:
            assert PRESS.wait(TIMEOUT), "the test never pressed Ctrl-C"
            pressed.append(True)
            raise KeyboardInterrupt
        return wait(self, timeout)

    monkeypatch.setattr(Job, "wait", ctrl_c_once)
    PRESS.clear()
    yield jobs


def train_cli(root: Path, monkeypatch: pytest.MonkeyPatch, pipeline: Pipeline, *options: str) -> int:
    """``core train ROOT --json OPTIONS`` in this process, on ``pipeline`` (its exit code; output in capsys)."""
    monkeypatch.setattr("core.cli.train.build_pipeline", lambda args: pipeline)
    return cli_main(["train", str(root), "--json", *options])


def test_cli_ctrl_c_while_embedding_prints_the_message_and_keeps_the_cache(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], cli_jobs: list[Job]) -> None:
    root = write_dataset(tmp_path / "ds", {"train": {"ann": 10, "bob": 10}})

    class WaitingDetector(CountingDetector):
        def _detect(self, image: np.ndarray) -> list[Any]:
            PRESS.set()  # Ctrl-C while the first chunk of photos is being detected
            assert cli_jobs[0].stop.wait(TIMEOUT)
            return super()._detect(image)

    pipeline = Pipeline(WaitingDetector(), MeanColourBackbone())
    assert train_cli(root, monkeypatch, pipeline) == 2
    err = capsys.readouterr().err
    assert f"error: {STOPPED_WHILE_EMBEDDING}" in err and "Traceback" not in err
    assert list_runs() == []
    photos = sorted(root.rglob("*.png"))  # the chunk being detected was kept, the rest never started
    assert len(EmbeddingCache().missing(photos, pipeline.key)) == len(photos) - CHUNK_PHOTOS


def test_cli_ctrl_c_while_training_saves_a_stopped_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str], cli_jobs: list[Job]) -> None:
    root = write_dataset(tmp_path / "ds", {"train": {"ann": 4, "bob": 4}, "validation": {"ann": 1, "bob": 1}})
    log = cli_train.log

    def epoch_three_waits(message: str) -> None:
        log(message)
        if message.startswith("epoch 3/"):
            PRESS.set()
            assert cli_jobs[0].stop.wait(TIMEOUT)

    monkeypatch.setattr("core.cli.train.log", epoch_three_waits)
    assert train_cli(root, monkeypatch, fake_pipeline(), "--head", "notebook", "--epochs", "100000") == 0
    captured = capsys.readouterr()
    out = json.loads(captured.out)
    assert out["stopped"] is True and out["epochs"] == 3
    assert load_run(out["run"]).info.status == "stopped"
    assert "stopping…" in captured.err and "Traceback" not in captured.err


def test_a_bad_run_name_is_refused_before_any_photo_is_embedded(tmp_path: Path) -> None:
    root = write_dataset(tmp_path / "ds", {"train": {"ann": 2, "bob": 2}})
    pipeline = fake_pipeline()
    for name, message in (("x" * 65, "at most 64 characters"), ("red\x1b[31m", "control characters")):
        with pytest.raises(ValueError, match=message):
            train_on_dataset(root, pipeline, TrainConfig(head="centroid"), name=name)
    assert pipeline.detector.calls == 0 and list_runs() == []


def test_cli_train_takes_a_dataset_name_and_refuses_a_long_run_name_before_loading_models(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    write_dataset(tmp_path / "shared" / "pairs", {"train": {"ann": 2, "bob": 2}})
    monkeypatch.setenv("FACELAB_DATASET_DIRS", str(tmp_path / "shared"))
    monkeypatch.setattr("core.cli.train.build_pipeline", lambda args: pytest.fail("models were loaded"))
    assert cli_main(["train", "pairs", "--name", "x" * 65]) == 2
    assert capsys.readouterr().err.strip() == "error: a run name can be at most 64 characters; got 65."
    monkeypatch.setattr("core.cli.train.build_pipeline", lambda args: fake_pipeline())
    assert cli_main(["train", "pairs", "--head", "centroid", "--name", "by name", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["name"] == "by name"
    assert load_run(list_runs()[0].id).config.dataset == str(tmp_path / "shared" / "pairs")
