"""Real browser, two students on one server: each works in a workspace of their own.

Student A's run is created through core in A's workspace before the browsers open (the quickest path: a
centroid head on a tiny dataset of deepface_unit_identities photos). Student B, in another browser context,
sees neither the run nor the dataset and so cannot delete them; a reload keeps A in A's workspace; A's
workspace link, opened in a third context (a lab partner), shows A's run; the server's owner, with the admin
link, lists the workspaces and deletes B's.
"""

from __future__ import annotations

import os
import re
import shutil
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from core.config import datasets_dir, new_workspace_id, use_workspace
from tests.browser import MODEL_WAIT, choose, expect, go_to, screenshot, settle, workspace_of
from tests.conftest import shared_dataset

pytestmark = pytest.mark.browser

ADMIN_TOKEN = "owner-token-for-this-test"
RUN_NAME = "alice centroid run"
DATASET = "alice_faces"


@pytest.fixture(scope="module", autouse=True)
def admin_token() -> Iterator[None]:
    """The owner's token, in the environment before the module's server starts (live_app copies it)."""
    os.environ["FACELAB_ADMIN_TOKEN"] = ADMIN_TOKEN
    yield
    os.environ.pop("FACELAB_ADMIN_TOKEN", None)


@pytest.fixture(scope="module")
def alice(live_app: tuple[str, Path]) -> str:
    """Student A's workspace, holding a tiny dataset and a centroid run trained on it (dlib HOG + dlib ResNet)."""
    source = shared_dataset("deepface_unit_identities")
    from core.pipeline.backbones import BACKBONES
    from core.pipeline.detection import DETECTORS
    from core.pipeline.embeddings import Pipeline
    from core.services.train import train_on_dataset
    from core.training.config import TrainConfig

    _, home = live_app
    workspace = new_workspace_id()
    with pytest.MonkeyPatch.context() as patch, use_workspace(workspace):
        patch.setenv("FACELAB_HOME", str(home))
        root = datasets_dir() / DATASET
        for person in ("person_01", "person_02"):
            for split in ("train", "validation", "test"):
                if (source / split / person).is_dir():
                    shutil.copytree(source / split / person, root / split / person)
        pipeline = Pipeline(DETECTORS.get("dlib-hog"), BACKBONES.get("dlib-resnet"))
        train_on_dataset(root, pipeline, TrainConfig(head="centroid"), name=RUN_NAME)
    return workspace


@pytest.fixture
def context_factory(browser) -> Iterator[Any]:  # noqa: ANN001
    """New browser contexts (each its own cookies and Streamlit sessions), closed after the test."""
    contexts = []

    def new_page() -> Any:
        context = browser.new_context(viewport={"width": 1400, "height": 1100})
        contexts.append(context)
        return context.new_page()

    yield new_page
    for context in contexts:
        context.close()


def open_train(page: Any, url: str) -> None:
    page.goto(url)
    page.get_by_role("heading", name="Runs").wait_for(timeout=MODEL_WAIT)
    settle(page)


def expect_run(page: Any) -> None:
    """The runs section offers A's run (the pick box shows it; the table draws its cells on a canvas)."""
    expect(page.get_by_role("combobox", name="Run")).to_have_value(re.compile(f"^{RUN_NAME} · "))


def sidebar_link(page: Any) -> str:
    return page.get_by_test_id("stSidebar").get_by_test_id("stCode").inner_text().strip()


def test_two_students_each_see_only_their_own_workspace(live_app: tuple[str, Path], alice: str, context_factory: Any,
                                                        artifacts_dir: Path) -> None:
    url, home = live_app

    # A opens her workspace link: her run is in the runs table and her dataset in the picker
    a = context_factory()
    open_train(a, f"{url}/train?workspace={alice}")
    expect_run(a)
    assert sidebar_link(a) == f"{url}/train?workspace={alice}"
    screenshot(a, artifacts_dir / "workspaces_1_student_a.png")
    with a.expect_download(timeout=60_000) as download:  # built on click, in a server thread: in A's workspace
        a.get_by_role("button", name="Download run (zip)").click()
    with zipfile.ZipFile(download.value.path()) as archive:
        assert any(name.endswith("/run.json") for name in archive.namelist())

    # B arrives without a link: a new workspace, no run to see, delete or use
    b = context_factory()
    open_train(b, f"{url}/train")
    b.get_by_text("No run yet: train one above.").wait_for(timeout=30_000)
    workspace_b = workspace_of(b)
    assert workspace_b != alice and sidebar_link(b) == f"{url}/train?workspace={workspace_b}"
    assert b.get_by_text(RUN_NAME).count() == 0 and b.get_by_role("button", name="Delete run").count() == 0
    go_to(b, "Dataset")
    assert workspace_of(b) == workspace_b, "navigation keeps the workspace"
    b.get_by_role("tab", name="Builder").click()
    b.get_by_text("No builder dataset yet: create one.").wait_for(timeout=30_000)
    assert b.get_by_text(DATASET).count() == 0
    go_to(b, "Predict")
    b.get_by_text("No trained run yet").wait_for(timeout=30_000)
    screenshot(b, artifacts_dir / "workspaces_2_student_b.png")

    # a reload keeps A in her workspace
    a.reload()
    a.get_by_role("heading", name="Runs").wait_for(timeout=MODEL_WAIT)
    settle(a)
    assert workspace_of(a) == alice
    expect_run(a)

    # A's link, opened by a lab partner in another browser, shows A's run and dataset
    partner = context_factory()
    open_train(partner, sidebar_link(a))
    expect_run(partner)
    choose(partner, "Dataset", DATASET)
    partner.get_by_text("Estimated time").first.wait_for(timeout=MODEL_WAIT)
    screenshot(partner, artifacts_dir / "workspaces_3_lab_partner.png")

    # the owner's admin link lists the workspaces and deletes B's
    owner = context_factory()
    owner.goto(f"{url}/?workspace={new_workspace_id()}&admin={ADMIN_TOKEN}")
    sidebar = owner.get_by_test_id("stSidebar")
    sidebar.get_by_text("Workspaces (server owner)").wait_for(timeout=60_000)
    settle(owner)
    choose(owner, "Workspace", workspace_b)
    sidebar.get_by_text("Yes, delete it").click()
    sidebar.get_by_role("button", name="Delete workspace").click()
    sidebar.get_by_text(f"Deleted workspace {workspace_b}.").wait_for(timeout=30_000)
    settle(owner)
    screenshot(owner, artifacts_dir / "workspaces_4_owner.png")
    assert not (home / "workspaces" / workspace_b).exists()
    assert (home / "workspaces" / alice / "runs").is_dir()

    for page in (a, b, partner, owner):
        assert "Traceback" not in page.content()
        assert "NoWorkspace" not in page.content()


def test_a_damaged_link_and_a_wrong_admin_token_get_a_message_and_nothing_else(live_app: tuple[str, Path],
                                                                              context_factory: Any) -> None:
    url, home = live_app
    page = context_factory()
    page.goto(f"{url}/train?workspace=..%2F..%2Fetc")
    page.get_by_text("This workspace link is damaged").wait_for(timeout=60_000)
    assert page.get_by_role("heading", name="Runs").count() == 0
    page.goto(f"{url}/?workspace={new_workspace_id()}&admin=not-the-token")
    page.get_by_text("This admin link is not valid on this server.").wait_for(timeout=60_000)
    assert page.get_by_text("Workspaces (server owner)").count() == 0
    assert [p.name for p in (home / "workspaces").glob("*") if len(p.name) != 22] == [], "no folder from the bad link"
