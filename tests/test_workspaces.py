"""Workspaces: where each user's datasets, runs and calibrations live, and what one workspace can reach of another.

Unit tests of ``core.config`` (default, set and missing workspace, bad ids), of a job keeping its starter's
workspace, of the shared dataset folders staying read-only, of the run-dataset check the Predict page relies on,
of the owner's list (``core.workspaces``) and of the CLI's ``--workspace``.
"""

from __future__ import annotations

import io
import threading
import zipfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from core import runs as run_store
from core import workspaces
from core.compare.calibration import calibrate, list_calibrations, save_calibration
from core.config import (
    NoWorkspace,
    calibrations_dir,
    check_workspace_id,
    current_workspace,
    datasets_dir,
    enter_workspace,
    in_current_workspace,
    new_workspace_id,
    runs_dir,
    serve_browsers,
    use_workspace,
)
from core.data import builder, zipimport
from core.data.layout import list_datasets, may_open
from core.services.jobs import Job
from core.services.predict import DatasetGone, run_dataset
from core.training.config import TrainConfig
from core.training.fit import train_head
from tests.conftest import identity_clusters, image_bytes, noise_image, run_cli

A, B = "A" * 22, "b-_" * 7 + "B"
BAD_IDS = ["", "short", "A" * 21, "A" * 23, "../" + "A" * 19, "A" * 21 + "/", "A" * 21 + "é", "A" * 21 + ".",
           None, 12345]


def save_small_run(name: str, dataset: str = "") -> run_store.RunInfo:
    """A centroid run on random embeddings (no face model needed)."""
    X = np.random.default_rng(0).normal(size=(8, 4)).astype(np.float32)
    config = TrainConfig(head="centroid", detector="haar", backbone="dlib-resnet", dataset=dataset)
    return run_store.save_run(train_head(config, X, ["amy"] * 4 + ["bob"] * 4), config, name=name)


def small_calibration(name: str, auc_wanted: str = "high"):  # noqa: ANN201 - a Calibration
    """A calibration on synthetic embeddings: well separated people ("high" AUC) or shuffled labels ("low")."""
    embeddings, labels = identity_clusters(people=4, per_person=5, dim=16, noise=0.1)
    if auc_wanted == "low":
        labels = list(np.random.default_rng(1).permutation(labels))
    return calibrate(embeddings, labels, metric="euclidean",
                     context={"dataset": "f" * 16, "dataset_name": name, "detector": "d", "align": True, "backbone": "b"})


# ---------------------------------------------------------------- resolving the folders


def test_without_a_workspace_the_folders_are_the_homes_own(facelab_home: Path) -> None:
    assert current_workspace() is None
    assert datasets_dir() == facelab_home.resolve() / "datasets"
    assert runs_dir() == facelab_home.resolve() / "runs"
    assert calibrations_dir() == facelab_home.resolve() / "cache" / "calibrations"


def test_a_workspace_has_folders_of_its_own(facelab_home: Path) -> None:
    with use_workspace(A):
        assert current_workspace() == A
        where = facelab_home.resolve() / "workspaces" / A
        assert (datasets_dir(), runs_dir(), calibrations_dir()) == (where / "datasets", where / "runs",
                                                                    where / "calibrations")
    assert current_workspace() is None and datasets_dir() == facelab_home.resolve() / "datasets"


def test_serving_browsers_a_missing_workspace_is_an_error_never_the_default() -> None:
    serve_browsers()
    for folder in (datasets_dir, runs_dir, calibrations_dir):
        with pytest.raises(NoWorkspace, match="no workspace"):
            folder()
    with pytest.raises(NoWorkspace):
        run_store.list_runs()
    with use_workspace(A):
        assert runs_dir().parent.name == A
    serve_browsers(False)
    assert runs_dir().parent.name != A


@pytest.mark.parametrize("bad", BAD_IDS)
def test_malformed_workspace_ids_are_refused_everywhere(bad: object) -> None:
    with pytest.raises(ValueError, match="not a workspace id"):
        check_workspace_id(bad)
    if bad is not None:  # None is the default workspace there
        with pytest.raises(ValueError, match="not a workspace id"):
            with use_workspace(bad):  # type: ignore[arg-type]
                pass
    with pytest.raises(ValueError, match="not a workspace id"):
        enter_workspace(bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="not a workspace id"):
        workspaces.delete_workspace(bad)  # type: ignore[arg-type]
    assert current_workspace() is None


def test_new_workspace_ids_are_well_formed_and_unguessable() -> None:
    ids = {new_workspace_id() for _ in range(200)}
    assert len(ids) == 200 and all(check_workspace_id(i) == i for i in ids)


def test_two_workspaces_see_nothing_of_each_other() -> None:
    with use_workspace(A):
        builder.create_dataset("a_photos")
        run = save_small_run("a's run")
        run_store.set_active_run(run.id)
        save_calibration(small_calibration("a_photos"))
    with use_workspace(B):
        assert [ref.name for ref in list_datasets()] == [] and builder.builder_datasets() == []
        assert run_store.list_runs() == [] and run_store.active_run() is None and list_calibrations() == []
        with pytest.raises(FileNotFoundError):
            run_store.delete_run(run.id)
        with pytest.raises(FileNotFoundError):
            run_store.export_run_zip(run.id)
        with pytest.raises(ValueError, match="no dataset called"):
            builder.delete_dataset("a_photos")
    assert run_store.list_runs() == [] and list_calibrations() == [], "nor does the default workspace"
    with use_workspace(A):
        assert [r.id for r in run_store.list_runs()] == [run.id] and run_store.active_run() == run.id
        assert builder.builder_datasets() == ["a_photos"] and len(list_calibrations()) == 1


# ---------------------------------------------------------------- threads


def test_a_job_saves_in_the_workspace_that_started_it_whatever_the_watcher_does_next() -> None:
    go = threading.Event()

    def work(job: Job) -> str:
        go.wait(10)
        return save_small_run("trained in A").id

    with use_workspace(A):
        job = Job(["training"]).start(work)
        with use_workspace(B):  # the watcher's context moves on while the job works
            go.set()
            assert job.wait(10) and job.phase == "done", job.error
            assert run_store.list_runs() == []
        assert [r.id for r in run_store.list_runs()] == [job.outcome]


def test_a_job_started_while_serving_without_a_workspace_fails_with_a_message() -> None:
    serve_browsers()
    job = Job(["training"]).start(lambda job: save_small_run("nowhere").id)
    assert job.wait(10) and job.phase == "failed" and "no workspace" in job.error


def test_work_handed_to_another_thread_keeps_the_workspace_it_was_bound_in() -> None:
    serve_browsers()
    with use_workspace(A):
        run = save_small_run("a's run")
        export = in_current_workspace(lambda: run_store.export_run_zip(run.id))
    found: dict[str, object] = {}

    def download() -> None:  # a deferred download runs in a server thread with no workspace of its own
        try:
            found["zip"] = export()
        except Exception as exc:  # noqa: BLE001 - the assertion below shows it
            found["error"] = exc

    thread = threading.Thread(target=download)
    thread.start()
    thread.join(10)
    assert "error" not in found, found.get("error")
    assert f"{run.id}/run.json" in zipfile.ZipFile(io.BytesIO(found["zip"])).namelist()


# ---------------------------------------------------------------- shared folders are read-only


def shared_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder the server's owner exposes (FACELAB_DATASET_DIRS) holding one dataset, "class"."""
    root = tmp_path / "shared"
    (root / "class" / "train" / "amy").mkdir(parents=True)
    (root / "class" / "train" / "amy" / "0.png").write_bytes(image_bytes(noise_image(seed=1)))
    (root / "class" / "_pool" / "amy").mkdir(parents=True)
    monkeypatch.setenv("FACELAB_DATASET_DIRS", str(root))
    return root


def a_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("train/zoe/1.png", image_bytes(noise_image(seed=2)))
    return buffer.getvalue()


def test_shared_datasets_cannot_be_changed_through_a_link_in_the_workspace(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    root = shared_root(tmp_path, monkeypatch)
    before = sorted(p.relative_to(root) for p in root.rglob("*"))
    with use_workspace(A):
        (datasets_dir() / "class").symlink_to(root / "class", target_is_directory=True)
        attempts = [
            lambda: builder.add_person("class", "bob"),
            lambda: builder.add_photo("class", "amy", image_bytes(noise_image(seed=3))),
            lambda: builder.rename_person("class", "amy", "ann"),
            lambda: builder.delete_person("class", "amy"),
            lambda: builder.split_dataset("class"),
            lambda: builder.delete_dataset("class"),
            lambda: zipimport.import_zip(a_zip(), "class", overwrite=True),
        ]
        for attempt in attempts:
            with pytest.raises(ValueError, match="shares with everyone: it is read-only"):
                attempt()
    assert sorted(p.relative_to(root) for p in root.rglob("*")) == before
    assert (root / "class" / "train" / "amy" / "0.png").is_file()


def test_a_shared_folder_holding_the_datasets_folder_is_read_only_too(facelab_home: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FACELAB_DATASET_DIRS", str(facelab_home / "workspaces"))
    with use_workspace(A):
        with pytest.raises(ValueError, match="read-only"):
            builder.create_dataset("mine")
        with pytest.raises(ValueError, match="read-only"):
            zipimport.import_zip(a_zip(), "mine")
        assert list(datasets_dir().iterdir()) == [], "nothing written, no temporary folder left"


def test_the_workspaces_own_datasets_stay_writable_beside_shared_ones(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    shared_root(tmp_path, monkeypatch)
    with use_workspace(A):
        builder.create_dataset("class")  # the same name as the shared one: the workspace's own
        builder.add_person("class", "zoe")
        assert zipimport.import_zip(a_zip(), "imported").images == 1
        assert [(ref.name, ref.source == "home") for ref in list_datasets()] == [
            ("class", True), ("imported", True), ("class", False)]


# ---------------------------------------------------------------- a run's dataset on the Predict page


def predictor_on(folder: Path) -> object:
    """What ``run_dataset`` reads of a predictor: the folder its run was trained on."""
    return SimpleNamespace(run=SimpleNamespace(config=SimpleNamespace(dataset=str(folder))))


def test_a_runs_dataset_opens_only_when_it_is_the_users_or_shared(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    server_folder = tmp_path / "teacher" / "private_faces"
    (server_folder / "test" / "amy").mkdir(parents=True)
    monkeypatch.delenv("FACELAB_ALLOW_SERVER_PATHS", raising=False)
    assert run_dataset(predictor_on(server_folder)) == server_folder, "the CLI and notebooks are the owner's"
    serve_browsers()
    with use_workspace(A):
        own = datasets_dir() / "mine"
        (own / "test" / "amy").mkdir(parents=True)
        assert run_dataset(predictor_on(own)) == own and may_open(own)
        with pytest.raises(DatasetGone) as refused:
            run_dataset(predictor_on(server_folder))
        assert "teacher" not in str(refused.value) and "opening other server folders is off" in str(refused.value)
        with use_workspace(B):
            with pytest.raises(DatasetGone):
                run_dataset(predictor_on(own))  # another workspace's dataset is just another server folder
        monkeypatch.setenv("FACELAB_DATASET_DIRS", str(server_folder.parent))
        assert run_dataset(predictor_on(server_folder)) == server_folder
        monkeypatch.delenv("FACELAB_DATASET_DIRS")
        monkeypatch.setenv("FACELAB_ALLOW_SERVER_PATHS", "1")
        assert run_dataset(predictor_on(server_folder)) == server_folder


# ---------------------------------------------------------------- the owner's list


def test_the_owner_lists_and_deletes_workspaces_only_with_the_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FACELAB_ADMIN_TOKEN", raising=False)
    assert not workspaces.is_admin("anything") and not workspaces.is_admin("")
    monkeypatch.setenv("FACELAB_ADMIN_TOKEN", "s3cret-token")
    assert workspaces.is_admin("s3cret-token")
    assert not workspaces.is_admin("s3cret-tokeN") and not workspaces.is_admin(None) and not workspaces.is_admin("")
    with use_workspace(A):
        builder.create_dataset("faces")
        builder.add_person("faces", "amy")
        builder.add_photo("faces", "amy", image_bytes(noise_image(seed=4)))
    with use_workspace(B):
        save_small_run("b's run")
    (datasets_dir().parent / "workspaces" / "not-a-workspace").mkdir()
    listed = {info.id: info for info in workspaces.list_workspaces()}
    assert set(listed) == {A, B}
    assert listed[A].files == 1 and listed[A].bytes == len(image_bytes(noise_image(seed=4)))
    assert listed[B].files >= 5 and listed[B].changed >= listed[A].changed
    workspaces.delete_workspace(A)
    assert [info.id for info in workspaces.list_workspaces()] == [B]
    with use_workspace(A):
        assert list_datasets() == []
    with pytest.raises(ValueError, match="no workspace"):
        workspaces.delete_workspace(new_workspace_id())


# ---------------------------------------------------------------- the command line


def dataset(root: Path) -> Path:
    for person in ("amy", "bob"):
        (root / "train" / person).mkdir(parents=True)
        (root / "train" / person / "0.png").write_bytes(image_bytes(noise_image(seed=len(person))))
    return root


def test_cli_works_in_the_default_workspace_or_the_one_named(facelab_home: Path) -> None:
    with use_workspace(A):
        dataset(datasets_dir() / "students")
    dataset(datasets_dir() / "teachers")
    plain = run_cli("scan", "students", home=facelab_home, isolated=True)
    assert plain.returncode == 2 and "dataset folder not found: students" in plain.stderr
    assert run_cli("scan", "teachers", home=facelab_home, isolated=True).returncode == 0
    named = run_cli("--workspace", A, "scan", "students", "--json", home=facelab_home, isolated=True)
    assert named.returncode == 0, named.stderr
    by_env = run_cli("scan", "students", home=facelab_home, isolated=True, FACELAB_WORKSPACE=A)
    assert by_env.returncode == 0, by_env.stderr
    assert run_cli("--workspace", A, "scan", "teachers", home=facelab_home, isolated=True).returncode == 2


@pytest.mark.parametrize("bad", ["../../etc", "A" * 21, "A" * 22])
def test_cli_refuses_a_malformed_or_unknown_workspace_in_one_line(bad: str, facelab_home: Path) -> None:
    done = run_cli("--workspace", bad, "scan", "x", home=facelab_home, isolated=True)
    assert done.returncode == 2 and "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert ("not a workspace id" if len(bad) != 22 else "no such workspace") in done.stderr
    assert not (facelab_home / "workspaces" / bad).exists()
