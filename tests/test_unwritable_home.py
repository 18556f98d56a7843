"""A read-only or full FaceLab home: every page says so and keeps working, every action says what happened, and
nothing is half-written.

The home is a real tmpfs remounted read-only, or filled up, where this machine lets the tests mount (root with
the right to mount: chmod does not stop root); elsewhere the same errors are raised for every write under the
home by patched ``os`` functions. A module-wide home (a small dataset of real faces, a builder dataset, a
trained run and its embedding cache) is copied into each test's home first.
"""

from __future__ import annotations

import errno
import io
import os
import shutil
import subprocess
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from core import runs
from core.cli import main as cli_main
from core.config import datasets_dir, use_workspace
from core.data import builder, zipimport
from core.files import is_temporary, storage_problem
from core.pipeline import weights
from core.pipeline.backbones import vggface16  # noqa: F401 - registers the weight file downloaded below
from tests.conftest import PAGE_WORKSPACE, ROOT, image_bytes, noise_image, open_page, shared_dataset
from tests.test_crash_cleanup import good_things

READ_ONLY = "FaceLab's home folder is read-only; ask the server's owner."
FULL = "FaceLab's home folder is full; ask the server's owner to free some space."
FILLER = "filler"  # what fills a full home: not FaceLab's
PAGES = ["pages/home.py", "pages/dataset.py", "pages/train.py", "pages/predict.py", "pages/verify.py"]
OTHER_WORKSPACE = "another-workspace-0001"  # one that was never opened: its folders cannot be made


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A home with, in the page workspace, 'mini' (3 people, real faces), a builder dataset and a trained run."""
    source = shared_dataset("five_celebrity_faces")
    from core.pipeline.backbones import BACKBONES
    from core.pipeline.detection import DETECTORS
    from core.pipeline.embeddings import Pipeline
    from core.services.train import train_on_dataset
    from core.training.config import TrainConfig

    home = tmp_path_factory.mktemp("prepared_home")
    with pytest.MonkeyPatch.context() as patch, use_workspace(PAGE_WORKSPACE):
        patch.setenv("FACELAB_HOME", str(home))
        root = datasets_dir() / "mini"
        for split, keep in (("train", 3), ("validation", 1), ("test", 1)):
            for person in sorted((source / split).iterdir())[:3]:
                (root / split / person.name).mkdir(parents=True)
                for photo in sorted(person.iterdir())[:keep]:
                    shutil.copy(photo, root / split / person.name / photo.name)
        builder.create_dataset("built")
        builder.add_person("built", "amy")
        train_on_dataset(root, Pipeline(DETECTORS.get("dlib-hog"), BACKBONES.get("dlib-resnet")),
                         TrainConfig(head="centroid"))
    return home


def _mount(path: Path, *options: str) -> bool:
    command = ["mount", "-t", "tmpfs", "-o", ",".join(["size=32m", *options]), "tmpfs", str(path)]
    try:
        return os.geteuid() == 0 and subprocess.run(command, capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def _fill(home: Path) -> None:
    with open(home / FILLER, "wb") as filler:
        try:
            while True:
                filler.write(bytes(1 << 20))
                filler.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC


def _simulate(monkeypatch: pytest.MonkeyPatch, home: Path, code: int) -> None:
    """Without a mount: every creating, renaming or removing call on a path under ``home`` fails with ``code``."""
    writes = os.O_WRONLY | os.O_RDWR | os.O_CREAT | getattr(os, "O_TMPFILE", 0)

    def under_home(path: Any) -> bool:
        return isinstance(path, str | bytes | os.PathLike) and os.path.abspath(os.fsdecode(path)).startswith(str(home))

    def failing(real: Any, writing: Any) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            if kwargs.get("dir_fd") is None and under_home(args[0]) and writing(*args, **kwargs):
                raise OSError(code, os.strerror(code), os.fsdecode(args[0]))
            return real(*args, **kwargs)
        return call

    monkeypatch.setattr(os, "open", failing(os.open, lambda path, flags, *rest, **kw: flags & writes))
    for name in ("mkdir", "rename", "replace", "link", "unlink", "rmdir", "symlink"):
        monkeypatch.setattr(os, name, failing(getattr(os, name), lambda *args, **kwargs: True))


@pytest.fixture(params=["read-only", "full"])
def unwritable(request: pytest.FixtureRequest, prepared: Path, tmp_path: Path,
               monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Path, str]]:
    """(home, what every message must say): a copy of ``prepared`` that can take no more writes."""
    home = tmp_path / "home"
    home.mkdir()
    mounted = _mount(home)
    shutil.copytree(prepared, home, dirs_exist_ok=True)
    monkeypatch.setenv("FACELAB_HOME", str(home))
    try:
        if not mounted:
            _simulate(monkeypatch, home, errno.EROFS if request.param == "read-only" else errno.ENOSPC)
        elif request.param == "read-only":
            subprocess.run(["mount", "-o", "remount,ro", str(home)], check=True, timeout=30)
        else:
            _fill(home)
        yield home, READ_ONLY if request.param == "read-only" else FULL
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(home)], timeout=30)


def texts(elements: Any) -> str:
    """What a list of AppTest messages says, Markdown escapes removed."""
    return "\n".join(str(element.value) for element in elements).replace("\\", "")


def unchanged(home: Path, before: dict[str, bytes]) -> bool:
    """Nothing FaceLab keeps changed, and no temporary was left behind."""
    now = {k: v for k, v in good_things(home).items() if k != FILLER}
    return now == before and not [p for p in home.rglob("*") if is_temporary(p.name)]


@pytest.fixture
def snapshot(unwritable: tuple[Path, str]) -> dict[str, bytes]:
    return {k: v for k, v in good_things(unwritable[0]).items() if k != FILLER}


# --- core and the command line ---------------------------------------------------------------------------


def test_core_writes_fail_with_the_plain_sentence_and_leave_nothing(unwritable: tuple[Path, str],
                                                                      snapshot: dict[str, bytes],
                                                                      tmp_path: Path) -> None:
    home, sentence = unwritable
    source = tmp_path / "mirror.h5"
    source.write_bytes(b"not really weights")
    photo = image_bytes(noise_image(seed=1), "JPEG")
    with use_workspace(PAGE_WORKSPACE):
        actions = {
            "import": lambda: zipimport.import_zip(zip_of_photos(), "incoming"),
            "add photo": lambda: builder.add_photo("built", "amy", photo, "a.jpg"),
            "save run": lambda: runs.save_run(*trained()),
            "download": lambda: weights.download("rcmalli_vggface_tf_vgg16.h5", url=source.as_uri()),
        }
        for what, action in actions.items():
            with pytest.raises((OSError, ValueError)) as caught:
                action()
            assert storage_problem(caught.value) == sentence, what
    assert unchanged(home, snapshot)


def test_the_command_line_says_it_in_one_line(unwritable: tuple[Path, str], snapshot: dict[str, bytes],
                                              capsys: pytest.CaptureFixture[str]) -> None:
    home, sentence = unwritable
    mini = home / "workspaces" / PAGE_WORKSPACE / "datasets" / "mini"
    assert cli_main(["calibrate", str(mini), "--detector", "dlib-hog"]) == 2
    assert capsys.readouterr().err.splitlines()[-1] == f"error: {sentence}"
    assert unchanged(home, snapshot)


def test_a_disk_that_is_not_the_home_is_named(tmp_path: Path) -> None:
    error = OSError(errno.EROFS, "Read-only file system", str(tmp_path / "out" / "a.jpg"))
    assert storage_problem(ValueError("could not write")) is None
    wrapped = ValueError("could not write 'a.jpg'")
    wrapped.__cause__ = error
    assert storage_problem(wrapped) == f"cannot write {tmp_path / 'out' / 'a.jpg'}: its disk is read-only."


def zip_of_photos() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for i in range(3):
            archive.writestr(f"train/amy/{i}.png", image_bytes(noise_image(seed=i)))
    return buffer.getvalue()


def trained() -> tuple[Any, Any]:
    from core.training.config import TrainConfig
    from core.training.fit import train_head

    X = np.concatenate([np.zeros((3, 8)), np.ones((3, 8))]).astype(np.float32)
    config = TrainConfig(head="centroid")
    return train_head(config, X, ["a"] * 3 + ["b"] * 3), config


# --- pages ------------------------------------------------------------------------------------------------


def test_every_page_says_so_and_still_draws(unwritable: tuple[Path, str], snapshot: dict[str, bytes]) -> None:
    home, sentence = unwritable
    app = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    app.query_params["workspace"] = PAGE_WORKSPACE
    app.run()
    assert f"Nothing can be saved now: {sentence}" in texts(app.warning)
    for workspace in (PAGE_WORKSPACE, OTHER_WORKSPACE):
        for page in PAGES:
            at = open_page(page, workspace=workspace)  # asserts: no exception
            assert "Errno" not in texts(at.error), (page, workspace)
    assert unchanged(home, snapshot)


def test_dataset_page_actions(unwritable: tuple[Path, str], snapshot: dict[str, bytes]) -> None:
    home, sentence = unwritable
    at = open_page("pages/dataset.py", timeout=60)
    at.file_uploader(key="ds_zip").upload("faces.zip", zip_of_photos(), "application/zip")
    at.run()
    at.button(key="ds_zip_import").click().run()
    assert f"Import refused: {sentence}" in texts(at.error)
    at.selectbox(key="ds_builder_dataset").set_value("built").run()
    round_ = at.session_state["ds_upload_round"] if "ds_upload_round" in at.session_state else 0
    at.file_uploader(key=f"ds_photos_{round_}").upload("a.jpg", image_bytes(noise_image(seed=7), "JPEG"), "image/jpeg")
    at.run()
    at.button(key="ds_add_photos").click().run()
    assert f"Photos not added: {sentence}" in texts(at.error)
    assert not at.exception and unchanged(home, snapshot)
    at.text_input(key="ds_new_name").input("created").run()
    at.button(key="ds_create").click().run()
    if sentence == READ_ONLY or not (datasets_dir_of(home) / "created").is_dir():  # a full disk may take a folder
        assert f"Could not create the dataset: {sentence}" in texts(at.error)
    assert not at.exception


def datasets_dir_of(home: Path) -> Path:
    return home / "workspaces" / PAGE_WORKSPACE / "datasets"


def test_train_page_says_why_the_run_was_not_saved(unwritable: tuple[Path, str], snapshot: dict[str, bytes]) -> None:
    home, sentence = unwritable
    at = open_page("pages/train.py", tr_detector="dlib-hog")
    at.selectbox(key="tr_dataset").set_value("mini").run()
    at.selectbox(key="tr_head").set_value("centroid").run()
    at.button(key="tr_start").click().run()
    deadline = time.monotonic() + 240
    while at.session_state["tr_job"].running and time.monotonic() < deadline:
        time.sleep(0.5)
        at.run()
    at.run()
    assert f"Training did not finish: {sentence}" in texts(at.error)
    assert not at.exception and unchanged(home, snapshot)


def test_predict_page_still_predicts(unwritable: tuple[Path, str], snapshot: dict[str, bytes]) -> None:
    home, _ = unwritable
    at = open_page("pages/predict.py")
    at.radio(key="pr_source").set_value(at.radio(key="pr_source").options[1]).run()  # a dataset of the workspace
    at.selectbox(key="pr_dataset").set_value("mini").run()
    assert not at.error and not at.exception, texts(at.error)
    assert any(button.key.startswith("pr_details_") for button in at.button)  # the gallery of predicted photos
    assert unchanged(home, snapshot)


def test_verify_page_calibration_says_why(unwritable: tuple[Path, str], snapshot: dict[str, bytes]) -> None:
    home, sentence = unwritable
    at = open_page("pages/verify.py")
    at.selectbox(key="vf_detector").select("dlib-hog").run()
    at.selectbox(key="vf_dataset").set_value("mini").run()
    at.button(key="vf_calibrate").click().run()
    assert f"Calibration failed: {sentence}" in texts(at.error)
    assert not at.exception and unchanged(home, snapshot)
