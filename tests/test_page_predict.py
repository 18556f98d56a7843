"""The Predict page, driven headless with Streamlit's AppTest against a real (small) run."""

from __future__ import annotations

import csv
import io
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage
from streamlit.testing.v1 import AppTest

from core.services.predict import Predictor
from tests.conftest import PAGE_WORKSPACE, displayed, image_bytes, noise_image, open_page, shared_dataset

pytestmark = pytest.mark.usefixtures("workspace")  # the test thread works where the app opened by open_page does

TRAIN_PER_PERSON = 4


@pytest.fixture(scope="module")
def run_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A FaceLab home holding one centroid run (dlib HOG + dlib ResNet) on a slimmed copy of five_celebrity, both
    in the page tests' workspace (a browser user may open only their own or shared datasets).

    Four training photos per person keep the module fast and leave the model a few mistakes to filter on;
    the test split is the full one (24 photos).
    """
    source = shared_dataset("five_celebrity_faces")
    from core.config import datasets_dir, use_workspace
    from core.pipeline.backbones import BACKBONES
    from core.pipeline.detection import DETECTORS
    from core.pipeline.embeddings import Pipeline
    from core.services.train import train_on_dataset
    from core.training.config import TrainConfig

    home = tmp_path_factory.mktemp("page_home")
    with pytest.MonkeyPatch.context() as patch, use_workspace(PAGE_WORKSPACE):
        patch.setenv("FACELAB_HOME", str(home))
        root = datasets_dir() / "five_slim"
        for split, keep in (("train", TRAIN_PER_PERSON), ("validation", 1), ("test", None)):
            for person in sorted((source / split).iterdir()):
                for photo in sorted(person.iterdir())[:keep]:
                    (root / split / person.name).mkdir(parents=True, exist_ok=True)
                    shutil.copy(photo, root / split / person.name / photo.name)
        pipeline = Pipeline(DETECTORS.get("dlib-hog"), BACKBONES.get("dlib-resnet"))
        train_on_dataset(root, pipeline, TrainConfig(head="centroid"))
    return home


@pytest.fixture
def with_run(run_home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("FACELAB_HOME", str(run_home))
    return run_home


@pytest.fixture
def downloads(monkeypatch: pytest.MonkeyPatch) -> dict[str, bytes]:
    """Bytes handed to AppTest's in-memory media store, by file id (how a download button's data is reached)."""
    saved: dict[str, bytes] = {}
    original = MemoryMediaFileStorage.load_and_get_id

    def record(self, path_or_data, mimetype, kind, filename=None):  # noqa: ANN001, ANN202 - mirrors Streamlit's
        file_id = original(self, path_or_data, mimetype, kind, filename)
        if isinstance(path_or_data, bytes):
            saved[file_id] = path_or_data
        return file_id

    monkeypatch.setattr(MemoryMediaFileStorage, "load_and_get_id", record)
    return saved


@pytest.fixture
def predict_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many photos each Predictor.predict call was given (to prove filters and sliders do not re-predict)."""
    calls: list[int] = []
    original = Predictor.predict

    def counting(self, sources, truths=None, progress=None, root=None):  # noqa: ANN001, ANN202
        calls.append(len(sources))
        return original(self, sources, truths, progress, root)

    monkeypatch.setattr(Predictor, "predict", counting)
    return calls


def page_app() -> AppTest:
    return open_page("pages/predict.py")


def metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def shown(at: AppTest) -> str:
    """The gallery's "n of m photo(s)" caption."""
    return next(c.value for c in at.caption if c.value.endswith("photo(s)"))


def threshold(at: AppTest, prefix: str):  # noqa: ANN201 - an AppTest slider
    return next(s for s in at.slider if s.key.startswith(prefix))


def test_no_run_points_at_the_train_page() -> None:
    at = page_app()
    assert any("Train page" in i.value for i in at.info)
    assert not at.error and not at.exception


def test_gallery_filters_thresholds_details_and_csv(with_run: Path, downloads: dict[str, bytes],
                                                    predict_calls: list[int]) -> None:
    at = page_app()
    assert predict_calls == [24]
    figures = metrics(at)
    assert figures["Photos"] == "24" and int(figures["Faces"]) >= 23
    assert shown(at) == "24 of 24 photo(s)"
    assert len(at.get("image")) >= 12  # a full gallery page (plus the detail view)
    batch = next(iter(at.session_state["pr_batches"].values()))
    wrong = sum(p.correct is False for p in batch.photos)
    assert wrong < 12, "the slim run makes few mistakes"
    faceless = [p for p in batch.photos if p.no_face]
    assert faceless and all(p.correct is None for p in faceless), "a photo without a face is not judged"
    with_face = sum(bool(p.faces) for p in batch.photos)
    assert figures["Correct"] == f"{with_face - wrong} / {with_face}"
    assert any(c.value.startswith(f"Accuracy of {with_face} photo(s) with a face of the run's people; "
                                  f"{len(faceless)} without a face") for c in at.caption)

    at.selectbox(key="pr_show").select("Incorrect").run()
    assert shown(at) == f"{wrong} of 24 photo(s)"
    at.selectbox(key="pr_show").select("With unknown faces").run()
    unknown_before = int(metrics(at)["Unknown faces"])
    threshold(at, "pr_min_conf_").set_value(0.99).run()
    assert int(metrics(at)["Unknown faces"]) > unknown_before
    assert shown(at) == f"{int(metrics(at)['Faces'])} of 24 photo(s)", "every face is now unknown"
    threshold(at, "pr_min_conf_").set_value(0.0).run()
    threshold(at, "pr_max_dist_").set_value(1.0).run()
    assert metrics(at)["Unknown faces"] == "0"
    assert "No photo matches" in " ".join(i.value for i in at.info)

    at.selectbox(key="pr_show").select("All photos").run()
    at.selectbox(key="pr_sort").select("Confidence: lowest first").run()
    at.button(key="pr_details_5").click().run()
    detail = next(s for s in at.selectbox if s.key.startswith("pr_detail_"))
    assert detail.value == 5
    assert any(c.value.startswith("Nearest training photos of") for c in at.caption)
    assert predict_calls == [24], "filters, sliders and details reuse the stored predictions"

    button = at.get("download_button")[0]
    assert button.proto.label == "Download predictions (CSV)"
    rows = list(csv.DictReader(io.StringIO(downloads[Path(button.proto.url).stem].decode())))
    faces = int(metrics(at)["Faces"])
    assert len(rows) == faces + sum(1 for p in batch.photos if not p.faces)
    assert {r["truth"] for r in rows} == {"ben_afflek", "elton_john", "jerry_seinfeld", "madonna", "mindy_kaling"}
    assert all(r["photo"].startswith(f"test/{r['truth']}/") for r in rows), "dataset-relative, no server path"
    assert "unknown" not in {r["label"] for r in rows}, "the CSV follows the thresholds on screen"
    assert not at.exception and not at.error


def test_a_test_split_of_strangers_is_scored_by_rejection_not_accuracy(with_run: Path) -> None:
    """Photos of people the run never saw: the right answer is unknown, so the page reports how many were rejected
    (never "Accuracy 0.0 %" and cards saying "wrong, is …")."""
    from core.config import datasets_dir

    root = datasets_dir() / "strangers"
    for person in sorted((shared_dataset("glint360k_celebrity_sample") / "test").iterdir())[:4]:
        (root / "test" / person.name).mkdir(parents=True)
        for photo in sorted(person.iterdir())[:2]:
            shutil.copy(photo, root / "test" / person.name / photo.name)
    try:
        at = page_app()
        at.radio(key="pr_source").set_value("Test split of another dataset").run()
        at.selectbox(key="pr_dataset").select("strangers").run()
        assert not at.exception and not at.error
        figures = metrics(at)
        rejected, strangers = (int(n) for n in figures["Strangers rejected"].split(" / "))
        assert figures["Photos"] == "8" and strangers >= 6 and rejected >= strangers - 1
        assert figures["Accuracy"] == "—", "no accuracy without a photo of the run's own people"
        assert figures["Rejection rate"] == f"{rejected / strangers:.1%}"
        assert figures["False-accept rate"] == f"{1 - rejected / strangers:.1%}"
        captions = [displayed(c.value) for c in at.caption]
        cards = [c for c in captions if "\n" in c][:8]  # the gallery's cards (the detail view repeats one after)
        assert sum("correctly rejected" in c for c in cards) == rejected
        assert not any("wrong, is" in c for c in captions)
        assert any("unknown (closest: " in c for c in cards)
        assert any("the right answer for them is 'unknown'" in c for c in captions)
    finally:
        shutil.rmtree(root)


def test_bad_uploads_get_a_message_each_and_good_ones_are_predicted(with_run: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FACELAB_MAX_IMAGE_PIXELS", "4000000")
    test = shared_dataset("five_celebrity_faces") / "test"
    good = [sorted((test / person).iterdir())[0] for person in ("madonna", "mindy_kaling")]
    huge = image_bytes(np.zeros((2100, 2100, 3), np.uint8))
    at = page_app()
    at.radio(key="pr_source").set_value("Upload photos").run()
    assert any("Upload one or more" in i.value for i in at.info)
    files = [(p.name, p.read_bytes(), "image/jpeg") for p in good]
    files += [("notes.txt", b"just text", "text/plain"), ("empty.jpg", b"", "image/jpeg"),
              ("huge.png", huge, "image/png"), ("noise.png", image_bytes(noise_image(seed=3)), "image/png")]
    at.file_uploader(key="pr_upload").set_value(files).run()
    assert not at.exception
    errors = {displayed(e.value).split(":")[0]: displayed(e.value) for e in at.error}
    assert set(errors) == {"notes.txt", "empty.jpg", "huge.png"}
    assert "not an image" in errors["notes.txt"] and "empty" in errors["empty.jpg"]
    assert "megapixels" in errors["huge.png"]
    figures = metrics(at)
    assert figures["Photos"] == "6" and figures["Faces"] == "2" and figures["Accuracy"] == "—"
    assert figures["No face"] == "1"  # the noise image
    assert shown(at) == "6 of 6 photo(s)"
    assert "Incorrect" not in at.selectbox(key="pr_show").options, "no labels, no right or wrong"
    batch = next(b for b in at.session_state["pr_batches"].values() if b.label.startswith("6 uploaded"))
    assert [f.best_guess for p in batch.photos[:2] for f in p.faces] == ["madonna", "mindy_kaling"]


def test_webcam_shot_is_predicted(with_run: Path) -> None:
    photo = sorted((shared_dataset("five_celebrity_faces") / "test" / "jerry_seinfeld").iterdir())[0]
    at = page_app()
    at.radio(key="pr_source").set_value("Webcam").run()
    at.camera_input(key="pr_camera").upload("shot.jpg", photo.read_bytes(), "image/jpeg").run()
    assert not at.exception and not at.error
    assert metrics(at)["Photos"] == "1" and metrics(at)["Faces"] == "1"


def test_missing_dataset_folder_is_explained_not_fatal(with_run: Path) -> None:
    from core.runs import list_runs, load_run

    root = Path(load_run(list_runs()[0].id).config.dataset)
    photo = (sorted((root / "test" / "madonna").iterdir())[0]).read_bytes()
    moved = root.with_name("moved_away")
    root.rename(moved)
    try:
        at = page_app()
        assert any("not on this server any more" in w.value for w in at.warning)
        at.radio(key="pr_source").set_value("Upload photos").run()
        at.file_uploader(key="pr_upload").set_value([("madonna.jpg", photo, "image/jpeg")]).run()
        assert metrics(at)["Faces"] == "1"
        assert any("cannot be shown" in c.value for c in at.caption), "no training thumbnails, and no crash"
        assert not at.exception and not at.error
    finally:
        moved.rename(root)


def test_a_crowded_upload_says_how_many_faces_were_left_out(with_run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FACELAB_MAX_FACES", "2")
    face = sorted((shared_dataset("five_celebrity_faces") / "test" / "madonna").iterdir())[0]
    pixels = np.asarray(Image.open(face).convert("RGB"))
    tile = np.concatenate([np.concatenate([pixels, pixels], axis=1)] * 2, axis=0)  # one face, four times
    at = page_app()
    at.radio(key="pr_source").set_value("Upload photos").run()
    at.file_uploader(key="pr_upload").set_value([("tile.png", image_bytes(tile), "image/png")]).run()
    assert not at.exception
    assert metrics(at)["Faces"] == "2"
    assert "tile.png: 4 faces found, the 2 largest were used (FACELAB_MAX_FACES)." in [displayed(i.value) for i in at.info]
