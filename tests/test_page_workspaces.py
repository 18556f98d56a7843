"""Workspaces in the app, driven headless with Streamlit's AppTest: each session sees its own workspace only.

Two AppTest sessions with different ``?workspace=`` ids are two students: neither sees the other's datasets,
runs, active run or calibrations. A first visit gets a new workspace written into the URL, the sidebar shows
its link, a damaged link is refused without creating anything, and only the owner's admin token lists the
workspaces.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from core import runs as run_store
from core import workspaces
from core.compare.calibration import calibrate, save_calibration
from core.config import WORKSPACE_ID, new_workspace_id, use_workspace
from core.data import builder
from core.services.calibrate import calibration_context
from core.services.gallery import dataset_fingerprint
from core.training.config import TrainConfig
from core.training.fit import train_head
from tests.conftest import ROOT, identity_clusters, image_bytes, noise_image, open_page, shared_dataset

A, B = new_workspace_id(), new_workspace_id()


def save_run(name: str, dataset: Path | str = "") -> run_store.RunInfo:
    """A centroid run on random embeddings, with the pipeline the Predict page would rebuild (haar + dlib ResNet)."""
    X = np.random.default_rng(0).normal(size=(8, 4)).astype(np.float32)
    config = TrainConfig(head="centroid", detector="haar", backbone="dlib-resnet", dataset=str(dataset))
    return run_store.save_run(train_head(config, X, ["amy"] * 4 + ["bob"] * 4), config, name=name)


def texts(elements: object) -> str:
    return "\n".join(str(element.value) for element in elements)  # type: ignore[attr-defined]


def runs_table(at: AppTest) -> list[str]:
    tables = [d.value for d in at.dataframe if "backbone" in d.value.columns]
    return [] if not tables else [f"{row['active']}{row['name']}" for _, row in tables[0].iterrows()]


def test_two_workspaces_see_nothing_of_each_others_datasets_runs_or_active_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FACELAB_DATASET_DIRS", raising=False)
    with use_workspace(A):
        builder.create_dataset("alice_faces")
        builder.add_person("alice_faces", "amy")
        run = save_run("alice's run")
        run_store.set_active_run(run.id)

    train_a, train_b = open_page("pages/train.py", workspace=A), open_page("pages/train.py", workspace=B)
    assert runs_table(train_a) == ["★alice's run"]
    assert runs_table(train_b) == [] and "No run yet: train one above." in texts(train_b.info)
    assert train_a.selectbox(key="tr_dataset").options == ["alice_faces"]
    assert "tr_dataset" not in {s.key for s in train_b.selectbox} and "No dataset yet" in texts(train_b.info)

    dataset_b = open_page("pages/dataset.py", workspace=B)
    assert "No builder dataset yet: create one." in texts(dataset_b.info)
    predict_b = open_page("pages/predict.py", workspace=B)
    assert any("No trained run yet" in i.value for i in predict_b.info)

    # B builds a dataset of the same name and makes a run active: A's stay as they were
    dataset_b.text_input(key="ds_new_name").input("alice_faces")
    dataset_b.button(key="ds_create").click().run()
    assert not dataset_b.exception and not dataset_b.error
    with use_workspace(B):
        assert builder.builder_datasets() == ["alice_faces"] and builder.list_people("alice_faces") == []
        run_store.set_active_run(save_run("bob's run").id)
    with use_workspace(A):
        assert builder.list_people("alice_faces") == ["amy"] and run_store.active_run() == run.id
    assert runs_table(open_page("pages/train.py", workspace=A)) == ["★alice's run"]


def test_a_calibration_changes_only_its_own_workspaces_verdicts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A calibration made in A on a shared dataset is A's; a poisoned one in B is refused on B's page, with why."""
    source = shared_dataset("five_celebrity_faces")
    mini = tmp_path / "shared" / "mini"
    for person in ("madonna", "elton_john"):
        (mini / "train" / person).mkdir(parents=True)
        for path in sorted((source / "train" / person).iterdir())[:2]:
            (mini / "train" / person / path.name).write_bytes(path.read_bytes())
    monkeypatch.setenv("FACELAB_DATASET_DIRS", str(mini.parent))
    from core.api import pipeline

    context = calibration_context(pipeline("dlib-hog", "dlib-resnet", True), dataset_fingerprint(mini), "mini")
    embeddings, labels = identity_clusters(people=4, per_person=5, dim=128, noise=0.1)
    with use_workspace(A):
        save_calibration(calibrate(embeddings, labels, metric="euclidean", context=context))
    with use_workspace(B):
        shuffled = list(np.random.default_rng(2).permutation(labels))
        save_calibration(calibrate(embeddings, shuffled, metric="euclidean", context=context))

    def verify_page(workspace: str) -> AppTest:
        at = open_page("pages/verify.py", workspace=workspace, vf_detector="dlib-hog", vf_backbone="dlib-resnet")
        at.selectbox(key="vf_dataset").select(next(o for o in at.selectbox(key="vf_dataset").options
                                                   if o.startswith("mini"))).run()
        assert not at.exception
        return at

    in_a, in_b, in_c = verify_page(A), verify_page(B), verify_page(new_workspace_id())
    assert "AUC" in {m.label for m in in_a.metric} and not in_a.warning
    assert "AUC" not in {m.label for m in in_b.metric}
    refused = texts(in_b.warning)
    assert "Calibration not used" in refused and "refused" in refused and "below 0" in refused
    assert "AUC" not in {m.label for m in in_c.metric} and not in_c.warning, "a third workspace has none"


def test_a_first_visit_gets_a_workspace_of_its_own_kept_in_the_url_with_its_link_in_the_sidebar() -> None:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.run()
    assert not at.exception
    workspace = at.query_params["workspace"]
    assert WORKSPACE_ID.fullmatch(workspace)
    assert [code.value for code in at.sidebar.code] == [f"/?workspace={workspace}"]
    assert "Your workspace link" in texts(at.sidebar.caption)
    at.switch_page("pages/dataset.py").run()  # navigating keeps it
    assert at.query_params["workspace"] == workspace
    at.text_input(key="ds_new_name").input("mine")
    at.button(key="ds_create").click().run()
    with use_workspace(workspace):
        assert builder.builder_datasets() == ["mine"]
    other = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    other.run()
    assert other.query_params["workspace"] != workspace, "another visitor, another workspace"
    again = open_page("pages/dataset.py", workspace=workspace)  # the link opened in another tab or browser
    assert again.selectbox(key="ds_builder_dataset").value == "mine"


@pytest.mark.parametrize("damaged", ["../../etc", "x" * 21, "A" * 21 + "%", "A" * 30])
def test_a_damaged_workspace_link_is_refused_and_creates_nothing(damaged: str, facelab_home: Path) -> None:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.query_params["workspace"] = damaged
    at.run()
    assert not at.exception
    assert len(at.error) == 1 and "This workspace link is damaged" in at.error[0].value
    assert at.query_params["workspace"] == damaged, "the link stays as given, to be corrected"
    assert not at.title, "no page is drawn"
    assert not (facelab_home / "workspaces").exists() or list((facelab_home / "workspaces").iterdir()) == []


def admin_app(token: str | None) -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.query_params["workspace"] = A
    if token is not None:
        at.query_params["admin"] = token
    at.run()
    assert not at.exception
    return at


def test_only_the_owners_token_lists_and_deletes_workspaces(monkeypatch: pytest.MonkeyPatch) -> None:
    for workspace in (A, B):
        with use_workspace(workspace):
            builder.create_dataset("faces")
            builder.add_person("faces", "amy")
            builder.add_photo("faces", "amy", image_bytes(noise_image(seed=len(workspace))))
    monkeypatch.delenv("FACELAB_ADMIN_TOKEN", raising=False)
    assert not admin_app(None).sidebar.dataframe
    unset = admin_app("guess")
    assert not unset.sidebar.dataframe and "This admin link is not valid" in texts(unset.sidebar.caption)
    monkeypatch.setenv("FACELAB_ADMIN_TOKEN", "owner-secret")
    wrong = admin_app("owner-secreT")
    assert not wrong.sidebar.dataframe and "not valid" in texts(wrong.sidebar.caption)

    owner = admin_app("owner-secret")
    listed = owner.sidebar.dataframe[0].value
    assert sorted(listed["workspace"]) == sorted([f"{A} (this one)", B])
    assert list(listed.columns) == ["workspace", "MB", "files", "last change"] and set(listed["files"]) == {1}
    owner.switch_page("pages/train.py").run()
    assert owner.query_params["admin"] == "owner-secret", "navigation keeps the admin link"
    owner.selectbox(key="ws_admin_pick").select(B).run()
    assert owner.button(key="ws_admin_delete").disabled, "deleting needs the confirmation box"
    owner.checkbox(key=f"ws_admin_ok_{B}").check().run()
    owner.button(key="ws_admin_delete").click().run()
    assert not owner.exception and not owner.error
    assert [info.id for info in workspaces.list_workspaces()] == [A]
    assert f"Deleted workspace {B}." in texts(owner.sidebar.success).replace("\\", "")
    assert list(owner.sidebar.dataframe[0].value["workspace"]) == [f"{A} (this one)"]


def test_predict_opens_a_runs_dataset_only_when_the_user_may(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A run in the workspace trained on another server folder (e.g. by the owner's CLI): its test photos stay shut."""
    server_folder = tmp_path / "teacher_only" / "private_faces"
    (server_folder / "test" / "amy").mkdir(parents=True)
    (server_folder / "test" / "amy" / "0.png").write_bytes(image_bytes(noise_image(seed=9)))
    monkeypatch.delenv("FACELAB_ALLOW_SERVER_PATHS", raising=False)
    with use_workspace(A):
        save_run("trained on a server folder", server_folder)
    at = open_page("pages/predict.py", workspace=A)
    warning = texts(at.warning)
    assert "cannot be shown" in warning and "opening other server folders is off" in warning
    assert "teacher_only" not in warning and "private_faces" not in warning
    assert not at.metric, "nothing predicted"
