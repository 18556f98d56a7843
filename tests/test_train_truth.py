"""Issue 12: time, runs and downloads that tell the truth — the core half (throughput store, estimate, time parts,
the run's saved report)."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core import runs as run_store
from core.pipeline import throughput
from core.pipeline.detection import DETECTORS
from core.services import train as train_service
from core.services.faces import count_cost, count_dataset_faces
from core.services.jobs import exact_duration
from core.services.train import estimate, start_training, timing_summary, train_on_dataset
from core.training.config import TrainConfig
from tests.conftest import PAGE_WORKSPACE, ROOT
from tests.test_train_dataset import BLUE, RED, TIMEOUT, fake_pipeline, priced, solid_photos, write_dataset

__all__ = ["priced"]  # the fixture, imported for the estimate tests


def test_throughput_is_remembered_in_the_home_and_follows_new_measurements(facelab_home: Path) -> None:
    key = throughput.embedding_key("mtcnn", "dlib-resnet")
    assert throughput.measured(key) is None
    assert throughput.record(key, 0.0, 0) is None, "nothing is learnt from zero photos"
    first = throughput.record(key, 30.0, 20)
    assert first == throughput.Measurement(1.5, 20)
    assert json.loads((facelab_home / throughput.FILE).read_text())[key]["seconds_per_photo"] == 1.5
    second = throughput.record(key, 20.0, 20)  # 1 s a photo now: the mean of both
    assert second == throughput.Measurement(1.25, 40)
    throughput.record_load(throughput.load_key("detector", "mtcnn"), 12.04)
    assert throughput.load_time(throughput.load_key("detector", "mtcnn")) == 12.04
    assert throughput.measured(key) == second, "a load time is kept apart from the pace"
    assert not list(facelab_home.glob(".tmp*")), "written atomically, no temporary left"
    many = throughput.record(key, 1000 * 0.5, 1000)  # past figures weigh at most MEMORY photos
    assert many.seconds_per_photo == pytest.approx((1.25 * 40 + 500) / 1040, abs=1e-4)
    assert throughput.record(key, 10.0, 10).photos == throughput.MEMORY + 10


def test_a_damaged_store_means_nothing_measured(facelab_home: Path) -> None:
    facelab_home.mkdir(parents=True)
    (facelab_home / throughput.FILE).write_text("{not json")
    assert throughput.measured(throughput.detection_key("haar")) is None
    assert throughput.record(throughput.detection_key("haar"), 1.0, 10).seconds_per_photo == 0.1


def test_estimate_uses_the_pace_measured_here_and_says_rough_only_without_one(tmp_path: Path, priced) -> None:
    root = write_dataset(tmp_path / "ds", {"train": {"ann": 3, "bob": 2}, "validation": {"ann": 1}})
    rough = estimate(root, "counting", "mean-colour", True, TrainConfig(head="centroid"))
    assert rough.rough and rough.parts[0] == "embedding 6 new photo(s) × ~1.25 s"
    throughput.record(throughput.embedding_key("counting", "mean-colour"), 9.0, 6)
    found = estimate(root, "counting", "mean-colour", True, TrainConfig(head="centroid"))
    assert not found.rough
    assert found.parts[0] == "embedding 6 new photo(s) × 1.50 s measured here"
    assert found.seconds == pytest.approx(6 * 1.5 + 1.0)


def test_training_measures_the_new_photos_and_saves_its_time_in_parts(tmp_path: Path) -> None:
    root = write_dataset(tmp_path / "ds", {"train": {"ann": 3, "bob": 3}, "validation": {"ann": 1, "bob": 1}})
    pipeline = fake_pipeline()
    outcome = train_on_dataset(root, pipeline, TrainConfig(head="centroid"))
    timings = outcome.timings
    assert set(timings) == {"embedding", "training", "evaluating", "total"}
    assert timings["total"] == pytest.approx(timings["embedding"] + timings["training"] + timings["evaluating"])
    assert run_store.list_runs()[0].timings == pytest.approx({k: round(v, 3) for k, v in timings.items()}, abs=1e-3)
    pace = throughput.measured(throughput.embedding_key(pipeline.detector.name, pipeline.backbone.name))
    assert pace is not None and pace.photos == 8, "every new photo was measured"

    expected: list[float] = []
    train_on_dataset(root, pipeline, TrainConfig(head="centroid"), expect=expected.append)
    assert throughput.measured(throughput.embedding_key(pipeline.detector.name, pipeline.backbone.name)).photos == 8, \
        "cached photos are not a measurement of detection and embedding"
    assert expected == [pytest.approx(0.01)], "all cached: the job expects the cache's pace"


def test_time_parts_read_as_a_person_says_them() -> None:
    assert [exact_duration(s) for s in (0.04, 3.21, 32.3, 292, 3900)] == ["0.0 s", "3.2 s", "32 s", "4 min 52 s",
                                                                          "1 h 5 min"]
    assert timing_summary({"embedding": 260, "training": 32, "evaluating": 0.2, "total": 292.2}) == \
        "Trained in 4 min 52 s: embedding 4 min 20 s, training 32 s"


def test_a_runs_report_reopens_with_curves_metrics_skipped_photos_mistakes_and_timings(tmp_path: Path) -> None:
    root = solid_photos(tmp_path / "ds", {"train": {"ann": [RED] * 3, "bob": [BLUE] * 3},
                                          "validation": {"ann": [RED, BLUE], "bob": [BLUE]}})
    (root / "train" / "ann" / "broken.png").write_bytes(b"not a photo")
    job = start_training(root, fake_pipeline(), TrainConfig(head="centroid"))
    assert job.wait(TIMEOUT) and job.snapshot().phase == "done", job.snapshot().error
    report = run_store.load_report(job.outcome.info.id)  # as after a reload: from disk only
    assert report.info == job.outcome.info and report.dataset == str(root)
    assert report.history == job.outcome.result.history
    assert report.validation["confusion"] == [[1, 1], [0, 1]]
    assert list(report.skipped["train"]["errors"]) == ["train/ann/broken.png"]
    assert report.mistakes == [{"photo": "validation/ann/1.png", "truth": "ann", "predicted": "bob",
                                "confidence": pytest.approx(job.outcome.mistakes[0].confidence)}]
    assert report.info.timings["total"] > 0
    with zipfile.ZipFile(io.BytesIO(run_store.export_run_zip(report.info.id))) as archive:
        saved = archive.read(f"{report.info.id}/{run_store.REPORT_FILE}").decode()
    assert str(root) not in saved, "the report names photos relative to the dataset: no server path leaves"


def two_person_photos(root: Path) -> Path:
    """ann and bob, one of ann's validation photos blue like bob's: the centroid head names it bob."""
    return solid_photos(root, {"train": {"ann": [RED] * 3, "bob": [BLUE] * 3},
                               "validation": {"ann": [RED, BLUE], "bob": [BLUE]}})


def run_with_unlisted_mistakes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A run saved while listing its mistakes failed (the dataset went away meanwhile)."""

    def fails(*_: object) -> list:
        raise OSError("the dataset went away")

    monkeypatch.setattr(train_service, "validation_mistakes", fails)
    return train_on_dataset(two_person_photos(tmp_path / "gone"), fake_pipeline(), TrainConfig(head="centroid")).info.id


def test_a_run_trained_without_the_page_lists_its_mistakes_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI trains through train_on_dataset alone: its runs reopen with their mistakes, and a listing that failed
    is saved as "not listed", never as an empty list the page would read as "every photo named right"."""
    outcome = train_on_dataset(two_person_photos(tmp_path / "ds"), fake_pipeline(), TrainConfig(head="centroid"))
    assert [m["photo"] for m in run_store.load_report(outcome.info.id).mistakes] == ["validation/ann/1.png"]
    report = run_store.load_report(run_with_unlisted_mistakes(tmp_path, monkeypatch))
    assert report.mistakes is None
    assert report.notes == ["The misclassified validation photos could not be listed: the dataset went away"]


# --- the pages (AppTest) ------------------------------------------------------------------------------------------


def train_page_at(**params: str) -> AppTest:
    """The whole app opened on the Train page with these query parameters, as a reload of a kept URL does."""
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=180)
    at.query_params.update({"workspace": PAGE_WORKSPACE, **params})
    at.run()
    at.switch_page("pages/train.py")
    at.run()
    assert not at.exception, at.exception
    return at


def dataset_option(at: AppTest, name: str) -> str:
    return next(option for option in at.selectbox(key="tr_dataset").options if option.startswith(f"{name} ("))


@pytest.mark.usefixtures("workspace")
def test_the_chosen_dataset_survives_a_reload_and_a_hostile_one_is_ignored(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    shelf = tmp_path / "shelf"
    for name in ("alpha", "beta"):
        write_dataset(shelf / name, {"train": {"ann": 2, "bob": 2}})
    monkeypatch.setenv("FACELAB_DATASET_DIRS", str(shelf))
    at = train_page_at()
    first = at.selectbox(key="tr_dataset").value
    beta = dataset_option(at, "beta")
    assert first != beta
    at.selectbox(key="tr_dataset").set_value(beta).run()
    assert at.query_params["dataset"] == "beta", "the choice is written into the URL, by name: no server path"

    reloaded = train_page_at(dataset="beta")  # a new session on the same URL
    assert reloaded.selectbox(key="tr_dataset").value == beta
    for hostile in ("../../../etc", str(shelf / "beta"), beta, "gamma"):
        assert train_page_at(dataset=hostile).selectbox(key="tr_dataset").value == first, hostile


@pytest.mark.usefixtures("workspace")
def test_the_runs_table_reopens_a_runs_report_after_a_reload(tmp_path: Path) -> None:
    root = solid_photos(tmp_path / "ds", {"train": {"ann": [RED] * 3, "bob": [BLUE] * 3},
                                          "validation": {"ann": [RED, BLUE], "bob": [BLUE]}})
    job = start_training(root, fake_pipeline(), TrainConfig(head="centroid"), name="reopened")
    assert job.wait(TIMEOUT) and job.snapshot().phase == "done", job.snapshot().error
    run_id = job.outcome.info.id
    at = train_page_at(run=run_id)
    assert at.selectbox(key="tr_run_pick").value == run_id
    at.toggle(key="tr_run_report").set_value(True).run()
    assert not at.exception and not at.error
    banner = next(s.value for s in at.success if "Saved run" in s.value)
    assert "reopened" in banner and "Trained in" in banner and "embedding" in banner
    charts = [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]
    assert any(chart["layout"]["title"]["text"] == "Confusion matrix (validation)" for chart in charts)
    assert "Misclassified validation photos (1)" in [h.value for h in at.subheader]


def test_counting_faces_measures_its_pace_and_the_detector_build(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 12: 24 photos took 23.5 s against a promised 0.05–0.4 s a photo; the promise is now what was measured."""
    monkeypatch.setattr(DETECTORS, "_instances", {})  # a freshly started server: the detector is not built yet
    photos = sorted(write_dataset(tmp_path / "ds", {"train": {"ann": 4}}).rglob("*.png"))
    before = count_cost("haar", len(photos))
    assert before.loading and before.measured_photos == 0, "nothing measured yet: the declared cost, rough"
    assert before.seconds_per_photo == DETECTORS.entry("haar").factory.seconds_per_photo
    counted = count_dataset_faces(photos, "haar", DETECTORS.get)
    assert counted.counts == [0, 0, 0, 0] and counted.load_seconds >= 0 and counted.count_seconds > 0
    after = count_cost("haar", 10)
    assert not after.loading and after.load_seconds is None, "built now: the next count pays no build"
    assert after.measured_photos == 4 and after.seconds_per_photo == pytest.approx(counted.count_seconds / 4, abs=1e-4)
    assert throughput.load_time(throughput.load_key("detector", "haar")) == pytest.approx(counted.load_seconds, abs=0.01)
    monkeypatch.setattr(DETECTORS, "_instances", {})  # the server restarted: the build is expected again, as measured
    assert count_cost("haar", 10).load_seconds == pytest.approx(counted.load_seconds, abs=0.01)



@pytest.mark.usefixtures("workspace")
def test_a_run_whose_mistakes_were_not_listed_says_so_instead_of_praising_it(tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    at = train_page_at(run=run_with_unlisted_mistakes(tmp_path, monkeypatch))
    at.toggle(key="tr_run_report").set_value(True).run()
    assert not at.exception
    assert "Misclassified validation photos" in [h.value for h in at.subheader]
    assert "Not listed for this run (its notes say why)." in [i.value for i in at.info]
    assert not any("named right" in s.value for s in at.success)
