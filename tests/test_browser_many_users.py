"""Real browser, five users on one server at once: one trains, two verify, two browse.

Each Playwright context is its own Streamlit session. Playwright's sync API drives them one after
another from this thread while the server trains in the trainer's background thread. The scenario
runs once (a module fixture) and records what each user saw; the tests below check it: nobody sees
another user's uploads, verdict or job; the other users' pages stay usable while training runs; and
exactly one run is saved, with the trainer's settings.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.browser import MODEL_WAIT, PHOTOS, PlaywrightTimeout, choose, expect, metric, settle, type_into, workspace_of
from tests.conftest import SHARED_DATASETS, recording_foreign_hosts, shared_dataset

pytestmark = pytest.mark.browser

RESPONSIVE_S = 60  # a generous bound (a frozen server would take minutes) for another user's page while training runs, not a speed target
EPOCHS = 5000  # the form's maximum, with batches of one photo: training outlasts the other users' visits
VERIFY_S = 120  # the same, for two uploads on the Verify page (models already loaded by the first verifier)
VERDICTS = ("Same person", "Different people")
FIVE = f"five_celebrity_faces ({SHARED_DATASETS.resolve()})"  # how the pickers label the shared dataset


@dataclass
class Scenario:
    """What the five users saw, gathered once for the tests of this module."""

    home: Path
    pages: dict[str, Any] = field(default_factory=dict)  # user → Playwright page
    texts: dict[str, str] = field(default_factory=dict)  # user → the page's text while training ran
    render_seconds: dict[str, float | None] = field(default_factory=dict)  # phase → Dataset page time (None: > bound)
    trainer_phase: dict[str, str] = field(default_factory=dict)  # when → the trainer's progress text
    verify_seconds: dict[str, float] = field(default_factory=dict)


@pytest.fixture(scope="module")
def open_session(browser, live_app) -> Iterator[Callable[[str], Any]]:  # noqa: ANN001
    """Opens a page of the live app in a new browser context (a new Streamlit session) that records foreign hosts."""
    url, _ = live_app
    contexts = []

    def open_(path: str) -> Any:
        context = browser.new_context(viewport={"width": 1400, "height": 1400})
        contexts.append(context)
        page = recording_foreign_hosts(context.new_page())
        page.goto(f"{url}/{path}")
        page.get_by_role("heading", name=path.capitalize()).first.wait_for(timeout=MODEL_WAIT)
        return page

    yield open_
    for context in contexts:
        context.close()


def renamed_photos(folder: Path, user: str, picks: list[tuple[str, int]]) -> list[str]:
    """Copies of five_celebrity train photos named after ``user`` (so a leak shows up as that name)."""
    root = shared_dataset("five_celebrity_faces") / "train"
    paths = []
    for n, (person, index) in enumerate(picks, 1):
        source = sorted((root / person).iterdir())[index]
        target = folder / f"{user}_photo{n}{source.suffix}"
        shutil.copyfile(source, target)
        paths.append(str(target))
    return paths


def verify(page, photos: list[str], verdict: str) -> float | None:  # noqa: ANN001
    """Upload two photos on the Verify page; seconds until ``verdict`` shows, or None past VERIFY_S
    (the caller waits for it later, so the scenario goes on)."""
    uploads = page.locator("[data-testid=stFileUploader] input[type=file]")
    uploads.first.wait_for(state="attached", timeout=MODEL_WAIT)
    # As a person would, once the page has finished drawing: twice in clean-clone runs, a file set while the page's
    # first run was still going on (slow while another user trained) never appeared in the uploader.
    settle(page, timeout=MODEL_WAIT)
    start = time.perf_counter()
    uploads.nth(0).set_input_files(photos[0])
    # As a person would: the second photo once the first is analysed. Clean-clone runs twice waited minutes for
    # Bob's verdict when the second file was set while the page still ran for the first (suspected upload race).
    page.get_by_test_id("stFileUploader").first.get_by_text(Path(photos[0]).name).wait_for(timeout=MODEL_WAIT)
    page.get_by_text("Add the second photo to compare.").wait_for(timeout=MODEL_WAIT)
    uploads.nth(1).set_input_files(photos[1])
    try:
        page.get_by_text(verdict, exact=True).wait_for(timeout=VERIFY_S * 1000)
    except PlaywrightTimeout:
        return None
    return time.perf_counter() - start


def dataset_page_seconds(open_session: Callable[[str], Any]) -> tuple[Any, float | None]:
    """A new user opens the Dataset page and audits five_celebrity: seconds until its metrics and first
    thumbnail show, or None past RESPONSIVE_S (then it waits on, so the scenario can go on)."""
    start = time.perf_counter()
    page = open_session("dataset")
    choose(page, "Dataset", FIVE)
    expect(metric(page, "Train")).to_have_text("77", timeout=MODEL_WAIT)
    page.locator(PHOTOS).first.wait_for(timeout=MODEL_WAIT)
    seconds = time.perf_counter() - start
    return page, seconds if seconds <= RESPONSIVE_S else None


def trainer_progress(page) -> str:  # noqa: ANN001
    """The trainer's progress-bar text ("Embedding photos 12/117 …", "Epoch 40/5000 …"), "" once it stopped."""
    bar = page.get_by_test_id("stProgress")
    return bar.first.inner_text() if bar.count() else ""


def stop(trainer) -> None:  # noqa: ANN001
    """Press Stop as a user does, once, and wait for the saved run. A plain click must be enough: the button
    sits outside the live view that redraws every second."""
    trainer.get_by_role("button", name="Stop", exact=True).click(timeout=30_000)
    trainer.get_by_text("Stopping…").or_(trainer.get_by_text("Saved run")).first.wait_for(timeout=30_000)
    trainer.get_by_text("Saved run").first.wait_for(timeout=MODEL_WAIT)


@pytest.fixture(scope="module")
def scenario(open_session, live_app, tmp_path_factory: pytest.TempPathFactory, artifacts_dir: Path) -> Scenario:
    shared_dataset("five_celebrity_faces")  # skips cleanly where the shared datasets are absent
    _, home = live_app
    seen = Scenario(home)
    photos = tmp_path_factory.mktemp("uploads")

    # 1 · The trainer starts a long run (dlib HOG + dlib ResNet on five_celebrity_faces, no early stop).
    trainer = seen.pages["trainer"] = open_session("train")
    choose(trainer, "Dataset", FIVE)
    choose(trainer, "Face detector", "dlib HOG")
    trainer.get_by_text("new photo(s)").first.wait_for(timeout=MODEL_WAIT)
    type_into(trainer, "Epochs (at most)", str(EPOCHS))
    type_into(trainer, "Batch size", "1")
    type_into(trainer, "Early-stopping patience", "0")
    trainer.get_by_text(f"up to {EPOCHS} head epochs").first.wait_for(timeout=30_000)
    settle(trainer)
    trainer.get_by_role("button", name="Start training").click()
    trainer.get_by_role("button", name="Stop", exact=True).wait_for(timeout=30_000)

    # 2 · While the trainer's photos are embedded, then while its epochs run, a new user audits a dataset.
    trainer.get_by_text("Embedding photos").first.wait_for(timeout=30_000)
    seen.trainer_phase["embedding visit, before"] = trainer_progress(trainer)
    seen.pages["browsing"], seen.render_seconds["embedding"] = dataset_page_seconds(open_session)
    seen.trainer_phase["embedding visit, after"] = trainer_progress(trainer)
    trainer.get_by_text(re.compile(rf"Epoch \d+/{EPOCHS}")).first.wait_for(timeout=2 * MODEL_WAIT)
    seen.trainer_phase["epochs visit, before"] = trainer_progress(trainer)
    seen.pages["browsing_2"], seen.render_seconds["epochs"] = dataset_page_seconds(open_session)
    seen.trainer_phase["epochs visit, after"] = trainer_progress(trainer)
    assert f"/{EPOCHS}" in seen.trainer_phase["epochs visit, after"], "training ended before the visits: no proof"

    # 3 · A visitor on the Train page, two users verifying their own photos, one who uploads nothing.
    seen.pages["visitor"] = open_session("train")
    seen.pages["visitor"].get_by_text("No run yet: train one above.").wait_for(timeout=MODEL_WAIT)
    alice = seen.pages["alice"] = open_session("verify")
    seen.verify_seconds["alice"] = verify(alice, renamed_photos(photos, "alice", [("madonna", 0), ("madonna", 1)]),
                                          "Same person")
    bob = seen.pages["bob"] = open_session("verify")
    seen.verify_seconds["bob"] = verify(bob, renamed_photos(photos, "bob", [("elton_john", 0), ("madonna", 0)]),
                                        "Different people")
    idle = seen.pages["idle"] = open_session("verify")
    idle.get_by_text("Photo 2 from").wait_for(timeout=MODEL_WAIT)
    seen.trainer_phase["after the visits"] = trainer_progress(trainer)
    stop(trainer)
    alice.get_by_text("Same person", exact=True).wait_for(timeout=MODEL_WAIT)
    bob.get_by_text("Different people", exact=True).wait_for(timeout=MODEL_WAIT)
    for name, page in seen.pages.items():
        if name != "trainer":
            settle(page, timeout=MODEL_WAIT)
        seen.texts[name] = page.locator("body").inner_text()
        page.screenshot(path=str(artifacts_dir / f"many_users_{name}.png"))

    # 4 · After the trainer stopped, the idle user opens the Predict page and the visitor reloads Train: each works in
    # a workspace of their own, so neither finds the trainer's run.
    idle.get_by_test_id("stSidebarNav").get_by_role("link", name="Predict").click()
    idle.get_by_text("No trained run yet").wait_for(timeout=MODEL_WAIT)
    seen.pages["visitor"].reload()
    seen.pages["visitor"].get_by_role("heading", name="Runs").wait_for(timeout=MODEL_WAIT)
    print("\n| while another user trains | seconds |\n|---|---:|")
    for phase, seconds in seen.render_seconds.items():
        print(f"| Dataset page audit + first thumbnail, during {phase} | "
              f"{'over %d' % RESPONSIVE_S if seconds is None else f'{seconds:.1f}'} |")
    for user, seconds in seen.verify_seconds.items():
        print(f"| verify two uploads ({user}) | {'over %d' % VERIFY_S if seconds is None else f'{seconds:.1f}'} |")
    print("trainer progress at each visit:", seen.trainer_phase)
    return seen


def test_nobody_sees_another_users_uploads_verdict_or_job(scenario: Scenario) -> None:
    texts = scenario.texts
    assert "alice_photo1" in texts["alice"] and "Same person" in texts["alice"]
    assert "bob_photo1" in texts["bob"] and "Different people" in texts["bob"]
    assert "bob_photo" not in texts["alice"] and "Different people" not in texts["alice"]
    assert "alice_photo" not in texts["bob"] and "Same person" not in texts["bob"]
    for user in ("idle", "visitor", "browsing", "browsing_2"):
        leaked = [word for word in ("alice_photo", "bob_photo", *VERDICTS, "Epoch ", "Embedding photos")
                  if word in texts[user]]
        assert leaked == [], f"{user} sees {leaked}"
    visitor = scenario.pages["visitor"]
    assert visitor.get_by_role("button", name="Stop", exact=True).count() == 0
    assert visitor.get_by_role("heading", name="Training", exact=True).count() == 0
    expect(visitor.get_by_role("button", name="Start training")).to_be_enabled()
    assert "Saved run" in texts["trainer"]
    assert f"/{EPOCHS}" in scenario.trainer_phase["after the visits"], "training ended before the visits: no proof"


def test_exactly_one_run_with_the_trainers_settings(scenario: Scenario) -> None:
    runs = [p.parent for p in scenario.home.glob("workspaces/*/runs/*/run.json")]
    assert len(runs) == 1, runs
    assert runs[0].parent.parent.name == workspace_of(scenario.pages["trainer"]), "in the trainer's workspace"
    config = json.loads((runs[0] / "config.json").read_text(encoding="utf-8"))
    assert (config["detector"], config["backbone"], config["epochs"], config["batch_size"],
            config["early_stopping_patience"]) == ("dlib-hog", "dlib-resnet", EPOCHS, 1, 0)
    assert Path(config["dataset"]).name == "five_celebrity_faces"
    assert json.loads((runs[0] / "run.json").read_text(encoding="utf-8"))["status"] == "stopped"
    trainer = scenario.pages["trainer"]
    assert trainer.get_by_text("stopped by you").count() == 1
    # the others do not see that run: it is the trainer's (workspaces); the idle user has none to predict with,
    # the visitor's runs table is empty
    assert scenario.pages["idle"].get_by_text("No trained run yet").count() == 1
    assert scenario.pages["idle"].get_by_text("Summary: the test split of five_celebrity_faces").count() == 0
    expect(scenario.pages["visitor"].get_by_text("No run yet: train one above.")).to_have_count(1, timeout=30_000)
    expect(scenario.pages["visitor"].get_by_test_id("stDataFrame")).to_have_count(0)


def test_other_users_pages_render_while_the_epochs_run(scenario: Scenario) -> None:
    assert scenario.render_seconds["epochs"] is not None, f"the Dataset page took over {RESPONSIVE_S} s"


def test_other_users_verify_while_the_epochs_run(scenario: Scenario) -> None:
    slow = [user for user, seconds in scenario.verify_seconds.items() if seconds is None]
    assert slow == [], f"no verdict within {VERIFY_S} s for {slow}"


def test_other_users_pages_render_while_photos_are_embedded(scenario: Scenario) -> None:
    """dlib's descriptors hold the GIL; they run in worker processes so the server's threads stay free."""
    assert scenario.render_seconds["embedding"] is not None, f"the Dataset page took over {RESPONSIVE_S} s"


def test_no_error_and_no_request_leaves_the_machine(scenario: Scenario) -> None:
    for name, page in scenario.pages.items():
        assert "Traceback" not in page.content(), name
        assert page.foreign_requests == [], name
