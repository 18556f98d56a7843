"""Shared fixtures: an isolated FaceLab home per test, the shared datasets, synthetic images."""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

SHARED_DATASETS = Path(os.environ.get("FACELAB_SHARED_DATASETS", ROOT.parent / "shared" / "datasets"))


def shared_dataset(name: str) -> Path:
    """Path of a dataset in ../shared/datasets, or skip the test when it is not there."""
    path = SHARED_DATASETS / name
    if not path.is_dir():
        pytest.skip(f"shared dataset {name} not present at {path}")
    return path


PAGE_WORKSPACE = "facelab-test-workspace"  # a well-formed workspace id (22 characters) for AppTest pages


@pytest.fixture(autouse=True)
def facelab_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test writes into its own FaceLab home, never into the repository (a module may override this)."""
    home = tmp_path / "facelab_home"
    monkeypatch.setenv("FACELAB_HOME", str(home))
    return home


@pytest.fixture(autouse=True)
def not_serving_afterwards(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A test that ran app.py (AppTest) leaves the process serving browsers, and app.py as ``__main__`` (which a
    process started with "spawn" runs again, opening a workspace of its own there): the next test inherits neither.
    Apart from ``facelab_home`` so that a module overriding the home keeps this."""
    from core.config import serve_browsers

    monkeypatch.setitem(sys.modules, "__main__", sys.modules["__main__"])
    yield
    serve_browsers(False)


@pytest.fixture
def workspace() -> Iterator[str]:
    """The test's thread works in the workspace :func:`open_page` opens the app in (after app.py ran, the per-user
    folders need one)."""
    from core.config import use_workspace

    with use_workspace(PAGE_WORKSPACE):
        yield PAGE_WORKSPACE


@pytest.fixture(scope="session")
def five_celebrity() -> Path:
    return shared_dataset("five_celebrity_faces")


FINETUNE_PEOPLE = ("elton_john", "jerry_seinfeld", "madonna")


def small_dataset(root: Path, per_person: int = 3) -> Path:
    """Three five_celebrity people: the first ``per_person`` photos of each to train on, all their validation photos
    (3 + 4 + 3: 12 same-person pairs, enough to measure a verification threshold) and one test photo each."""
    source = shared_dataset("five_celebrity_faces")
    for split, count in (("train", per_person), ("validation", None), ("test", 1)):
        for person in FINETUNE_PEOPLE:
            (root / split / person).mkdir(parents=True)
            for photo in sorted((source / split / person).iterdir())[:count]:
                shutil.copy(photo, root / split / person / photo.name)
    return root


# Files that share an expensive session fixture, scheduled on one worker (see pytest_xdist_make_scheduler): the
# fine-tuned run (~15 s) is trained once, not once per worker.
SAME_WORKER = {path: "finetuned_dlib_run" for path in (
    "tests/test_finetune.py", "tests/test_finetuned_backbone.py", "tests/test_page_verify.py")}


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """``--dist loadfile`` (pytest.ini) with the files of SAME_WORKER as one file. (xdist's own ``loadgroup`` cannot
    do it with pytest 9.2: the group it writes into a test's id no longer reaches the scheduler, and every test is
    scheduled alone.)"""
    if config.getvalue("dist") != "loadfile":
        return None  # another --dist asked for on the command line
    from xdist.scheduler import LoadFileScheduling

    class FilesAndGroups(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path = super()._split_scope(nodeid)
            return SAME_WORKER.get(path, path)

    return FilesAndGroups(config, log)


@dataclass(frozen=True)
class FinetunedRun:
    """A real fine-tuned dlib-resnet run, saved in a FaceLab home of its own (see :func:`finetuned_dlib_run`)."""

    root: Path  # the dataset it was trained on
    path: Path  # its run folder
    outcome: Any  # the train service's TrainOutcome

    @property
    def id(self) -> str:
        return self.path.name

    def install(self) -> str:
        """Copy the run into the current workspace's runs (the test's own home) and return its id."""
        from core.config import runs_dir

        shutil.copytree(self.path, runs_dir() / self.id)
        return self.id


@pytest.fixture(scope="session")
def finetuned_dlib_run(tmp_path_factory: pytest.TempPathFactory) -> FinetunedRun:
    """One warm-up and one fine-tune epoch of dlib's ResNet on 9 chips of three people, through the train service as
    the CLI and the Train page run it: trained once per session, in a home of its own (tests install a copy)."""
    pytest.importorskip("face_recognition_models")
    pytest.importorskip("dlib")
    pytest.importorskip("keras")
    from core.config import use_workspace
    from core.pipeline.backbones import BACKBONES
    from core.pipeline.detection import DETECTORS
    from core.pipeline.embeddings import Pipeline
    from core.services.train import train_on_dataset
    from core.training.config import TrainConfig

    folder = tmp_path_factory.mktemp("finetuned")
    root = small_dataset(folder / "five")
    with pytest.MonkeyPatch.context() as patch, use_workspace(None):
        patch.setenv("FACELAB_HOME", str(folder / "home"))
        pipeline = Pipeline(DETECTORS.get("dlib-hog"), BACKBONES.get("dlib-resnet"))
        config = TrainConfig(mode="finetune", epochs=2, warmup_epochs=1, batch_size=4, learning_rate=0.1,
                             finetune_learning_rate=1e-4)
        outcome = train_on_dataset(root, pipeline, config)
    return FinetunedRun(root, outcome.info.path, outcome)


def run_cli(*args: str, home: Path, isolated: bool = False, timeout: float = 600,
            **env: str) -> subprocess.CompletedProcess:
    """``python -m core ARGS`` with FACELAB_HOME=``home`` and ``env`` (FACELAB_WORKSPACE only when given there).

    By default in this process: the CLI's whole path (arguments, command, printed output, exit code) without a new
    interpreter importing NumPy, OpenCV, ONNX Runtime and TensorFlow again (1–6 s a call on two cores).
    ``isolated`` starts ``python -m core`` for what only a process shows: a hang cut by ``timeout``, a clean start.
    """
    variables = {"FACELAB_HOME": str(home), **env}
    if isolated:
        environment = {k: v for k, v in os.environ.items() if k != "FACELAB_WORKSPACE"} | variables
        return subprocess.run([sys.executable, "-m", "core", *args], cwd=ROOT, env=environment, capture_output=True,
                              text=True, timeout=timeout)
    from core.cli import main
    from core.config import use_workspace

    out, err = io.StringIO(), io.StringIO()
    with pytest.MonkeyPatch.context() as patch, use_workspace(None), redirect_stdout(out), redirect_stderr(err):
        patch.delenv("FACELAB_WORKSPACE", raising=False)
        for name, value in variables.items():
            patch.setenv(name, value)
        try:
            code = main(list(args))
        except SystemExit as exc:  # argparse: --help, or a usage error
            code = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
    return subprocess.CompletedProcess(["python", "-m", "core", *args], code, out.getvalue(), err.getvalue())


def image_bytes(array: np.ndarray, fmt: str = "PNG") -> bytes:
    """Encode an array as image file bytes."""
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt)
    return buffer.getvalue()


def noise_image(height: int = 64, width: int = 48, seed: int = 0) -> np.ndarray:
    """A random RGB image (distinct per seed, so never a duplicate of another)."""
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


# Debian's headless build of chromium (the same engine without the browser's own windows and tabs, about half the
# browser-process CPU here); the full browser where only it is installed.
CHROMIUM = next((path for path in map(Path, ("/usr/bin/chromium-headless-shell", "/usr/bin/chromium"))
                 if path.exists()), Path("/usr/bin/chromium"))
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    """Where browser tests save screenshots for people to look at (test-artifacts/, git-ignored)."""
    path = ROOT / "test-artifacts"
    path.mkdir(exist_ok=True)
    return path


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def exposed_datasets() -> Path:
    """The folder of datasets live_app's server offers every user (FACELAB_DATASET_DIRS); a module may override it."""
    return SHARED_DATASETS


@pytest.fixture(scope="module")
def live_app(tmp_path_factory: pytest.TempPathFactory, exposed_datasets: Path):
    """A real FaceLab server on a free loopback port, with ``exposed_datasets`` exposed; yields its URL."""
    import subprocess
    import time
    import urllib.request

    home = tmp_path_factory.mktemp("live_home")
    port = _free_port()
    log_path = home / "server.log"
    env = {**os.environ, "FACELAB_HOME": str(home), "FACELAB_DATASET_DIRS": str(exposed_datasets)}
    with open(log_path, "wb") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port)],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 60
        while True:
            try:
                if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                    break
            except OSError:
                pass
            if time.time() > deadline or server.poll() is not None:
                pytest.fail(f"FaceLab server did not become healthy:\n{log_path.read_text(errors='replace')[-3000:]}")
            time.sleep(0.5)
        yield url, home
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()


@pytest.fixture(scope="session")
def browser():
    """Debian's chromium driven by Playwright (never a downloaded browser): one per test process (starting a browser
    and its driver costs ~1.1 CPU-seconds here). Tests of one user take its one :class:`Tab`; tests of several
    users open a context for each."""
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed (apt-get install chromium-headless-shell)")
    playwright_api = pytest.importorskip("playwright.sync_api")
    with playwright_api.sync_playwright() as p:
        instance = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield instance
        instance.close()


def is_loopback(url: str) -> bool:
    """Whether a request stays on this machine (the live server, or data the page made itself)."""
    return url.startswith(("http://127.0.0.1", "ws://127.0.0.1", "data:", "blob:"))


def recording_foreign_hosts(page):  # noqa: ANN001, ANN201 - a Playwright page
    """``page``, noting in ``page.foreign_requests`` every request that would leave the machine."""
    page.foreign_requests = []
    page.on("request", lambda r: None if is_loopback(r.url) else page.foreign_requests.append(r.url))
    return page


class Tab:
    """One browser tab per test process, for the tests that play one user. Each test opens its own Streamlit
    session in it (a page load is a new session, and the workspace is in the URL), but the tab's renderer process
    stays, with Streamlit's and plotly's scripts compiled: a fresh context compiles them again, about 3 CPU-seconds
    a page load here (BENCHMARKS.md)."""

    def __init__(self, browser) -> None:  # noqa: ANN001 - Playwright's browser
        self.browser, self.page = browser, None

    def take(self):  # noqa: ANN201 - a Playwright page
        """The tab, at desktop size, without cookies and with no foreign request on record. Cookies do not tell
        ports apart: Streamlit's XSRF cookie from the previous test's server made the next server refuse uploads."""
        if self.page is None:
            self.page = recording_foreign_hosts(self.browser.new_context().new_page())
        self.page.context.clear_cookies()
        self.page.set_viewport_size({"width": 1400, "height": 1000})
        self.page.foreign_requests.clear()
        return self.page

    def give_back(self) -> None:
        """Leave the tab blank, which ends the test's Streamlit session as closing its window would; a tab that
        cannot (its renderer crashed or hangs after a failure) is closed, and the next test gets a new one."""
        try:
            self.page.goto("about:blank", timeout=10_000)
        except Exception:  # noqa: BLE001 - whatever broke the tab, the next test must not inherit it
            self.close()

    def close(self) -> None:
        if self.page is not None:
            self.page.context.close()
            self.page = None


@pytest.fixture(scope="session")
def tab(browser) -> Iterator[Tab]:  # noqa: ANN001
    """The test process's one reused tab (see :class:`Tab`)."""
    reused = Tab(browser)
    yield reused
    reused.close()


@pytest.fixture
def page(tab: Tab, live_app):  # noqa: ANN001, ANN201
    """The process's tab for this test; left blank afterwards."""
    yield tab.take()
    tab.give_back()


def displayed(markdown: str) -> str:
    """What a reader sees of Markdown that ``pages.common.plain`` made literal: backslash escapes and the
    invisible word joiners that break bare links taken out (AppTest gives an element's Markdown source)."""
    return re.sub(r"\\(.)", r"\1", markdown).replace("\u2060", "")


def open_page(page: str, timeout: float = 180, workspace: str | None = None, **session_state: object):
    """An AppTest of the whole app switched to ``page`` (e.g. "pages/verify.py"), with ``session_state`` preset.

    Going through app.py exercises the real navigation; the page must render without an exception. The app
    opens ``workspace``, by default the test thread's (see the ``workspace`` fixture), else PAGE_WORKSPACE.
    """
    from streamlit.testing.v1 import AppTest

    from core.config import current_workspace

    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=timeout)
    at.query_params["workspace"] = workspace or current_workspace() or PAGE_WORKSPACE
    at.run()
    for key, value in session_state.items():
        at.session_state[key] = value
    at.switch_page(page)
    at.run()
    assert not at.exception, at.exception
    return at


def identity_clusters(people: int, per_person: int, dim: int, noise: float, seed: int = 0,
                      prefix: str = "person_") -> tuple[np.ndarray, list[str]]:
    """Synthetic embeddings: ``per_person`` noisy copies of a random centre per identity, with their labels."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(people, dim))
    labels = np.repeat(np.arange(people), per_person)
    return centres[labels] + noise * rng.normal(size=(len(labels), dim)), [f"{prefix}{i}" for i in labels]
