"""The Train page, driven headless with Streamlit's AppTest.

Training runs in a background thread that AppTest's fragments cannot poll on a timer, so the
tests rerun the page until the session's job reports the end. One FaceLab home serves the
whole module so five_celebrity_faces is embedded once (the Stop test reuses the cache).
"""

from __future__ import annotations

import io
import json
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from streamlit.runtime.media_file_manager import MediaFileManager
from streamlit.testing.v1 import AppTest

from core import runs as run_store
from core.pipeline.backbones import BACKBONES
from core.training.config import TrainConfig
from core.training.fit import train_head
from tests.conftest import SHARED_DATASETS, displayed, image_bytes, noise_image, open_page, shared_dataset

pytestmark = pytest.mark.usefixtures("workspace")  # the test thread works where the app opened by open_page does

JOB = "tr_job"
FIVE = "five_celebrity_faces"


@pytest.fixture(scope="module")
def module_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("train_page_home")


@pytest.fixture(autouse=True)
def facelab_home(module_home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Overrides conftest's per-test home: the embedding cache is shared by the module's tests."""
    monkeypatch.setenv("FACELAB_HOME", str(module_home))
    return module_home


def synthetic(root: Path, people: dict[str, int]) -> Path:
    """A dataset of noise photos (no faces) with ``people`` → photos per person in train, one in validation."""
    seed = 0
    for person, count in people.items():
        for split, n in (("train", count), ("validation", 1)):
            folder = root / split / person
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                seed += 1
                (folder / f"{i}.png").write_bytes(image_bytes(noise_image(80, 80, seed=seed)))
    return root


def train_page() -> AppTest:
    """The Train page with the fast dlib HOG detector preselected (MTCNN would load TensorFlow to train)."""
    return open_page("pages/train.py", tr_detector="dlib-hog")


def pick(at: AppTest, dataset: str, detector: str = "dlib-hog") -> None:
    picker = at.selectbox(key="tr_dataset")
    picker.set_value(next(option for option in picker.options if option.startswith(f"{dataset} (")))
    at.selectbox(key="tr_detector").set_value(detector)
    at.run()
    assert not at.exception


def wait(at: AppTest, done: Callable[[Any], bool], timeout: float = 240) -> Any:
    """Rerun the page (as the fragment's timer would) until ``done(job)``, then once more so the page shows that state."""
    deadline = time.monotonic() + timeout
    while True:
        at.run()
        assert not at.exception
        job = at.session_state[JOB]
        if done(job):
            # The job's thread may have moved on while that rerun was drawing: draw the state just checked.
            at.run()
            assert not at.exception
            return job
        if time.monotonic() > deadline:
            pytest.fail(f"training job stuck in phase {job.phase} ({job.snapshot().done} done, {len(job.epochs)} epochs)")
        time.sleep(0.5)


def texts(elements: Any) -> str:
    """The elements' text as a reader sees it (names and messages are escaped Markdown)."""
    return "\n".join(displayed(str(element.value)) for element in elements)


def figures(at: AppTest) -> list[dict]:
    return [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]


def test_defaults_render_and_vggface_is_explained() -> None:
    reason = BACKBONES.entry("vggface16").available()
    at = train_page()
    backbones = at.selectbox(key="tr_backbone")
    assert "vggface16" in backbones.options or "VGG-Face (VGG16) — unavailable" in backbones.options
    assert at.selectbox(key="tr_head").value == "softmax"
    assert at.number_input(key="tr_epochs_head").value == TrainConfig().epochs
    assert at.selectbox(key="tr_weighting").value == "balanced"
    if reason is None:
        pytest.skip("VGG-Face weights are installed here: nothing unavailable to explain")
    assert backbones.value == "dlib-resnet"
    assert not at.radio(key="tr_mode").disabled, "dlib-resnet is fine-tunable (through its Keras twin)"
    assert "VGG-Face (VGG16) is unavailable: VGG-Face weights not found" in texts(at.caption)
    assert at.button(key="tr_weights_download") is not None
    backbones.set_value("vggface16").run()
    assert "cannot be used: VGG-Face weights not found" in texts(at.warning)
    at.button(key="tr_start").click().run()
    assert "Cannot start: the vggface16 face model is unavailable" in texts(at.error)
    assert JOB not in at.session_state


def test_first_visit_estimates_without_building_the_detector(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With the default detector (MTCNN, whose model loads TensorFlow) the page and its estimate need no detector:
    it is built only when Start is pressed."""
    synthetic(tmp_path / "shared" / "noise", {"amy": 2, "bob": 2})
    monkeypatch.setenv("FACELAB_DATASET_DIRS", str(tmp_path / "shared"))
    built: list[str] = []

    def refuse(name: str, **settings: Any) -> None:
        built.append(name)
        raise RuntimeError(f"the {name} detector was built")

    monkeypatch.setattr("pages.common.detector", refuse)
    at = open_page("pages/train.py")
    default = at.selectbox(key="tr_detector").value
    picker = at.selectbox(key="tr_dataset")
    picker.set_value(next(option for option in picker.options if option.startswith("noise ("))).run()
    assert not at.exception and not at.error
    assert built == []
    assert "Estimated time: about" in texts(at.info) and "embedding 6 new photo(s)" in texts(at.info)
    at.button(key="tr_start").click().run()
    assert built == [default]
    assert f"Cannot start: the {default} detector was built" in texts(at.error)
    assert JOB not in at.session_state


def test_one_class_dataset_is_refused_before_embedding(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synthetic(tmp_path / "shared" / "solo", {"amy": 3})
    monkeypatch.setenv("FACELAB_DATASET_DIRS", str(tmp_path / "shared"))
    at = train_page()
    pick(at, "solo")
    at.button(key="tr_start").click().run()
    assert "Cannot start: training needs at least two people; the train split of solo only has 'amy'." in texts(at.error)
    assert JOB not in at.session_state


def test_a_too_long_run_name_is_refused_before_training(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synthetic(tmp_path / "shared" / "pair", {"amy": 2, "bob": 2})
    monkeypatch.setenv("FACELAB_DATASET_DIRS", str(tmp_path / "shared"))
    monkeypatch.setattr("pages.common.detector", lambda name, **settings: pytest.fail("models were loaded"))
    at = train_page()
    pick(at, "pair")
    at.text_input(key="tr_name").input("n" * 65).run()
    at.button(key="tr_start").click().run()
    assert "Cannot start: a run name can be at most 64 characters; got 65." in texts(at.error)
    assert JOB not in at.session_state


def test_dataset_without_faces_ends_with_a_clear_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synthetic(tmp_path / "shared" / "noise", {"amy": 2, "bob": 2})
    monkeypatch.setenv("FACELAB_DATASET_DIRS", str(tmp_path / "shared"))
    at = train_page()
    pick(at, "noise")
    assert "embedding 6 new photo(s)" in texts(at.info)
    at.button(key="tr_start").click().run()
    job = wait(at, lambda j: not j.running, timeout=120)
    assert job.phase == "failed"
    assert "Training did not finish: the train split has no photo with a face" in texts(at.error)
    assert "Traceback" not in texts(at.error)
    assert run_store.list_runs() == []


def test_full_training_shows_results_and_runs_table(monkeypatch: pytest.MonkeyPatch) -> None:
    shared_dataset(FIVE)
    monkeypatch.setenv("FACELAB_DATASET_DIRS", str(SHARED_DATASETS))
    at = train_page()
    pick(at, FIVE)
    at.number_input(key="tr_epochs_head").set_value(40)
    at.text_input(key="tr_name").input("five celebs")
    at.run()
    assert "Estimated time: about" in texts(at.info) and "117 new photo(s)" in texts(at.info)
    at.button(key="tr_start").click().run()
    assert at.button(key="tr_start").disabled, "a second start must wait for the first job"
    job = wait(at, lambda j: not j.running)
    assert job.phase == "done", job.error
    at.run()

    assert "Saved run **five celebs** — complete" in texts(at.success)
    # The estimate, which builds no detector, finds every photo the real pipeline just cached.
    assert "embedding 0 new photo(s)" in texts(at.info) and "(117 already cached)" in texts(at.info)
    metrics = {m.label: m.value for m in at.metric}
    assert float(metrics["Validation accuracy"].rstrip("%")) >= 90
    assert float(metrics["Test accuracy"].rstrip("%")) >= 90
    assert metrics["People"] == "5"

    charts = figures(at)
    heatmaps = [f for f in charts if f["data"][0]["type"] == "heatmap"]
    assert len(heatmaps) == 1
    heatmap = heatmaps[0]
    people = ["ben_afflek", "elton_john", "jerry_seinfeld", "madonna", "mindy_kaling"]
    assert heatmap["data"][0]["x"] == people and heatmap["data"][0]["y"] == people
    assert heatmap["layout"]["xaxis"]["title"]["text"] == "predicted"
    loss = next(f for f in charts if f["layout"]["title"]["text"] == "Loss")
    assert {trace["name"] for trace in loss["data"]} == {"train", "validation"}

    per_person = next(d.value for d in at.dataframe if "recall" in d.value.columns)
    assert sorted(per_person["person"]) == people and (per_person["recall"] >= 0.5).all()
    skipped = next(d.value for d in at.dataframe if "what happened" in d.value.columns)
    assert len(skipped) == sum(len(s["no_face"]) + len(s["errors"]) + len(s["many_faces"])
                               for s in job.outcome.report.values())
    assert "Misclassified validation photos" in texts(at.subheader)

    runs = next(d.value for d in at.dataframe if "backbone" in d.value.columns)
    assert list(runs["name"]) == ["five celebs"]
    row = runs.iloc[0]
    assert (row["status"], row["head"], row["detector"], row["backbone"]) == ("complete", "softmax", "dlib-hog",
                                                                             "dlib-resnet")
    assert row["val accuracy"] >= 0.9 and row["people"] == 5


def test_stop_keeps_the_best_model_as_a_stopped_run(monkeypatch: pytest.MonkeyPatch) -> None:
    shared_dataset(FIVE)
    monkeypatch.setenv("FACELAB_DATASET_DIRS", str(SHARED_DATASETS))
    before = {run.id for run in run_store.list_runs()}
    at = train_page()
    pick(at, FIVE)
    at.selectbox(key="tr_head").set_value("notebook").run()
    at.number_input(key="tr_epochs_head").set_value(5000)
    at.number_input(key="tr_patience").set_value(0)
    at.button(key="tr_start").click().run()
    job = wait(at, lambda j: len(j.epochs) >= 3 or not j.running)
    assert job.running, job.error
    live = [f["layout"]["title"]["text"] for f in figures(at)]
    assert live[:2] == ["Loss", "Accuracy"], "live curves are drawn while training"
    at.button(key="tr_stop").click().run()
    assert job.stop.is_set()
    assert all(button.disabled for button in at.button if button.key == "tr_stop"), "Stop is pressed once"
    job = wait(at, lambda j: not j.running)
    assert job.phase == "done", job.error
    at.run()
    new = [run for run in run_store.list_runs() if run.id not in before]
    assert len(new) == 1 and new[0].status == "stopped"
    assert 3 <= new[0].epochs_run < 5000
    assert "stopped by you" in texts(at.success)


def make_run(head: str) -> run_store.RunInfo:
    """A small saved run from random embeddings (no face models needed)."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(12, 8)).astype(np.float32)
    y = ["amy"] * 6 + ["bob"] * 6
    config = TrainConfig(head=head, epochs=3, detector="haar", backbone="dlib-resnet")
    return run_store.save_run(train_head(config, X, y, X, y), config)


def test_run_management(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FACELAB_HOME", str(tmp_path / "own_home"))
    downloads: dict[str, Callable[[], bytes]] = {}
    original = MediaFileManager.add_deferred

    def record(self: MediaFileManager, data: Callable[[], bytes], mimetype: Any, coordinates: str,
               file_name: str | None = None, **kwargs: Any) -> str:
        downloads[str(file_name)] = data
        return original(self, data, mimetype, coordinates, file_name, **kwargs)

    monkeypatch.setattr(MediaFileManager, "add_deferred", record)
    centroid, softmax = make_run("centroid"), make_run("softmax")
    at = train_page()
    table = next(d.value for d in at.dataframe if "backbone" in d.value.columns)
    assert list(table["id"]) == [softmax.id, centroid.id]
    assert list(table["detector"]) == ["haar", "haar"]

    assert at.selectbox(key="tr_run_pick").value == softmax.id
    assert "The SavedModel holds the head only: face embeddings" in texts(at.caption)
    exported = zipfile.ZipFile(io.BytesIO(downloads[f"facelab_savedmodel_{softmax.id}.zip"]()))
    names = exported.namelist()
    assert f"{softmax.id}_saved_model/saved_model.pb" in names and f"{softmax.id}_saved_model/labels.json" in names
    assert f"facelab_run_{softmax.id}.zip" not in downloads, "the run's zip is ready at render (issue 12)"
    whole = zipfile.ZipFile(io.BytesIO(run_store.export_run_zip(softmax.id)))
    assert f"{softmax.id}/run.json" in whole.namelist()

    at.button(key="tr_run_activate").click().run()
    assert run_store.active_run() == softmax.id
    assert "Predict and Verify now use" in texts(at.success)
    table = next(d.value for d in at.dataframe if "backbone" in d.value.columns)
    assert table.set_index("id").loc[softmax.id, "active"] == "★"

    at.selectbox(key="tr_run_pick").set_value(centroid.id).run()
    assert "cannot be exported as a SavedModel" in texts(at.caption)
    at.text_input(key=f"tr_run_name_{centroid.id}").input("   ").run()
    at.button(key="tr_run_rename").click().run()
    assert "Could not rename: a run name cannot be empty." in texts(at.error)
    at.text_input(key=f"tr_run_name_{centroid.id}").input("class average").run()
    at.button(key="tr_run_rename").click().run()
    assert {run.id: run.name for run in run_store.list_runs()}[centroid.id] == "class average"

    assert at.button(key="tr_run_delete").disabled, "deleting needs the confirmation box"
    at.checkbox(key=f"tr_run_delete_ok_{centroid.id}").check().run()
    at.button(key="tr_run_delete").click().run()
    assert [run.id for run in run_store.list_runs()] == [softmax.id]
    assert "Deleted 'class average'." in texts(at.success)
    assert not at.exception


def test_savedmodel_caption_says_what_a_fine_tuned_export_holds(tmp_path: Path) -> None:
    from pages.components.train_runs import savedmodel_contents

    (tmp_path / "config.json").write_text(json.dumps({"backbone": "dlib-resnet"}), encoding="utf-8")
    info = run_store.RunInfo("20260101-000000-abcdef", "tuned", "", 1.0, "complete", "finetune", 2, 1, None, None,
                             tmp_path)
    assert savedmodel_contents(info) == ("The SavedModel holds the whole fine-tuned dlib-resnet: aligned 150×150 face "
                                         "crops (uint8 RGB) in; the probabilities (in the order of its labels.json) "
                                         "and the face embedding out.")
