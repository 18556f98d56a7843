"""kill -9 in the middle of a write leaves a hidden temporary; the next start removes it, and nothing else.

Each test starts a real FaceLab process that pauses at the worst moment (a patched write inside the
child only: it prints "paused" and waits on its standard input), kills it with SIGKILL, lets time pass
(the leftovers' clocks are set back beyond the age bound), and starts FaceLab again: the command line,
or app.py the way the server runs it. What a living process is still writing is never removed, however
old it looks.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from core import files, runs
from core.config import datasets_dir, runs_dir, weights_dir
from core.data import zipimport
from core.files import STALE_AFTER_SECONDS, is_temporary, publish_dir, remove_stale, temporary_dir, write_bytes_atomic
from core.training.config import TrainConfig
from core.training.fit import train_head
from tests.conftest import PAGE_WORKSPACE, ROOT, run_cli
from tests.test_importer import good_entries, make_zip

PAUSE = """
import sys
sys.path.insert(0, {root!r})

def pause():
    print("paused", flush=True)
    sys.stdin.readline()  # killed here, or let go on by the test
"""

IMPORT = PAUSE + """
from core.data import zipimport
real, written = zipimport.write_bytes_atomic, []

def write_then_pause(path, data, **options):
    real(path, data, **options)
    written.append(path)
    if len(written) == 3:
        pause()

zipimport.write_bytes_atomic = write_then_pause
print("imported", zipimport.import_zip(sys.argv[1], "incoming").images, flush=True)
"""

SAVE_RUN = PAUSE + """
import numpy as np
from core import runs
from core.training.config import TrainConfig
from core.training.fit import train_head

X = np.concatenate([np.zeros((4, 8)), np.ones((4, 8))]).astype(np.float32)
config = TrainConfig(head="centroid")
result = train_head(config, X, ["a"] * 4 + ["b"] * 4)
real = runs._write_json

def pause_before_the_run_file(path, data):
    if path.name == runs.RUN_FILE:  # the model and every other file are written by now
        pause()
    real(path, data)

runs._write_json = pause_before_the_run_file
print("saved", runs.save_run(result, config).id, flush=True)
"""

DOWNLOAD = PAUSE + """
from core.pipeline import weights
from core.pipeline.backbones import vggface16  # registers its weight files
weights.download(sys.argv[1], progress=lambda done, total: pause(), url=sys.argv[2])
"""


def start_paused(script: str, home: Path, *args: str) -> subprocess.Popen:
    """A FaceLab process on ``home`` that has reached its pause."""
    process = subprocess.Popen([sys.executable, "-c", script.format(root=str(ROOT)), *args], cwd=ROOT,
                               env={**os.environ, "FACELAB_HOME": str(home)}, text=True,
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    line = process.stdout.readline()  # type: ignore[union-attr]
    if line != "paused\n":
        process.kill()
        pytest.fail(f"the child did not reach its pause: {line!r} {process.communicate()[1][-2000:]}")
    return process


def kill_9(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGKILL)
    assert process.wait(timeout=30) == -signal.SIGKILL


def temporaries(home: Path) -> list[Path]:
    return sorted(p for p in home.rglob("*") if is_temporary(p.name))


def let_time_pass(paths: list[Path]) -> None:
    """Set the clocks of ``paths`` back beyond the age bound, as if the server restarted an hour later."""
    old = time.time() - STALE_AFTER_SECONDS - 3600
    for path in paths:
        os.utime(path, (old, old), follow_symlinks=False)


def good_things(home: Path) -> dict[str, bytes]:
    """Every file that is not a temporary, with its bytes: what a clean-up must leave exactly as it was."""
    return {str(p.relative_to(home)): p.read_bytes() for p in sorted(home.rglob("*"))
            if p.is_file() and not any(is_temporary(part) for part in p.relative_to(home).parts)}


@pytest.fixture
def saved_run() -> runs.RunInfo:
    X = np.concatenate([np.zeros((4, 8)), np.ones((4, 8))]).astype(np.float32)
    config = TrainConfig(head="centroid", dataset="good")
    return runs.save_run(train_head(config, X, ["a"] * 4 + ["b"] * 4), config)


def test_import_killed_midway_is_cleaned_by_the_next_cli_start(facelab_home: Path, tmp_path: Path,
                                                                saved_run: runs.RunInfo) -> None:
    zipimport.import_zip(make_zip(good_entries()), "good")
    upload = tmp_path / "upload.zip"
    upload.write_bytes(make_zip(good_entries()))
    kill_9(start_paused(IMPORT, facelab_home, str(upload)))
    left = temporaries(facelab_home)
    assert [p.parent for p in left if p.is_dir()] == [datasets_dir()]  # the hidden import folder, with photos:
    assert len([p for p in left[0].rglob("*.png")]) == 3
    before = good_things(facelab_home)
    let_time_pass(left)
    result = run_cli("scan", str(datasets_dir() / "good"), home=facelab_home, isolated=True)
    assert result.returncode == 0, result.stderr
    assert temporaries(facelab_home) == []
    assert good_things(facelab_home) == before and runs.list_runs() == [saved_run]
    assert not (datasets_dir() / "incoming").exists()


def test_run_save_killed_midway_is_cleaned_by_the_next_server_start(facelab_home: Path) -> None:
    zipimport.import_zip(make_zip(good_entries()), "good")
    kill_9(start_paused(SAVE_RUN, facelab_home))
    left = [p for p in temporaries(facelab_home) if p.parent == runs_dir()]
    assert len(left) == 1 and (left[0] / "head.json").is_file()  # a model without its run.json
    before = good_things(facelab_home)
    let_time_pass(left)
    app = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    app.query_params["workspace"] = PAGE_WORKSPACE
    app.run()
    assert not app.exception
    assert temporaries(facelab_home) == []
    assert {k: v for k, v in good_things(facelab_home).items() if k in before} == before


def test_download_killed_midway_is_cleaned(facelab_home: Path, tmp_path: Path) -> None:
    source = tmp_path / "mirror.h5"
    source.write_bytes(os.urandom(3 << 20))
    kill_9(start_paused(DOWNLOAD, facelab_home, "rcmalli_vggface_tf_vgg16.h5", source.as_uri()))
    left = temporaries(facelab_home)
    assert [p.parent for p in left] == [weights_dir()] and left[0].name.endswith(".part")
    let_time_pass(left)
    assert run_cli("scan", str(tmp_path), home=facelab_home, isolated=True).returncode == 0
    assert temporaries(facelab_home) == []


def test_what_a_living_process_writes_is_kept_however_old(facelab_home: Path, tmp_path: Path) -> None:
    """A second server or a CLI run starting while an import is under way must not delete that import."""
    upload = tmp_path / "upload.zip"
    upload.write_bytes(make_zip(good_entries()))
    importer = start_paused(IMPORT, facelab_home, str(upload))
    try:
        left = temporaries(facelab_home)
        let_time_pass([p for path in left for p in [path, *path.rglob("*")]])
        # a start: it cleans what is stale
        assert run_cli("scan", str(tmp_path), home=facelab_home, isolated=True).returncode == 0
        assert temporaries(facelab_home) == left
        assert remove_stale(facelab_home, max_age_seconds=0) == []
        out, err = importer.communicate("go on\n", timeout=60)
    finally:
        importer.kill()
    assert importer.returncode == 0, err
    assert out.splitlines()[-1] == "imported 8"
    assert temporaries(facelab_home) == [] and len(list((datasets_dir() / "incoming").rglob("*.png"))) == 8


def test_remove_stale_walks_every_workspace_and_only_takes_temporaries(facelab_home: Path) -> None:
    workspace = facelab_home / "workspaces" / PAGE_WORKSPACE
    keep = [workspace / "datasets" / "mine" / "train" / "amy" / "1.png", facelab_home / "cache" / "ab" / "x.npz",
            workspace / "runs" / "active.json"]
    stale = [workspace / "datasets" / ".tmp-import-x1" / "train" / "amy" / "1.png",
             workspace / "runs" / ".tmp-20260101-000000-abcdef-x2" / "head.json",
             facelab_home / "cache" / "ab" / ".tmp-y.npz", facelab_home / "weights" / ".w.h5.z.part",
             workspace / "datasets" / ".import-legacy" / "a.png"]
    for path in keep + stale:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    outside = facelab_home.parent / "outside"
    (outside / ".tmp-not-ours").mkdir(parents=True)
    (workspace / "datasets" / "link").symlink_to(outside)  # never followed
    tops = [workspace / "datasets" / ".tmp-import-x1", workspace / "runs" / ".tmp-20260101-000000-abcdef-x2",
            facelab_home / "cache" / "ab" / ".tmp-y.npz", facelab_home / "weights" / ".w.h5.z.part",
            workspace / "datasets" / ".import-legacy"]
    assert remove_stale(facelab_home) == []  # young: maybe being created this very moment
    let_time_pass(tops + [outside / ".tmp-not-ours"])
    assert sorted(remove_stale(facelab_home)) == sorted(tops)
    assert all(path.is_file() for path in keep) and (outside / ".tmp-not-ours").is_dir()


def test_temporary_dir_is_locked_while_used_and_gone_after() -> None:
    with temporary_dir(datasets_dir(), "import") as temp:
        (temp / "photo.png").write_bytes(b"x")
        let_time_pass([temp])
        assert remove_stale(datasets_dir(), max_age_seconds=0) == [] and temp.is_dir()
    assert not temp.exists()
    with pytest.raises(RuntimeError), temporary_dir(datasets_dir(), "import") as temp:
        raise RuntimeError("failed halfway")
    assert list(datasets_dir().iterdir()) == []


def test_a_file_being_written_is_kept() -> None:
    seen: list[list[Path]] = []

    def write(out: object) -> None:
        temp = next(p for p in datasets_dir().iterdir() if is_temporary(p.name))
        let_time_pass([temp])
        seen.append(remove_stale(datasets_dir(), max_age_seconds=0))

    from core.files import write_atomic

    write_atomic(datasets_dir() / "file.bin", write)
    assert seen == [[]] and (datasets_dir() / "file.bin").is_file()


@pytest.mark.parametrize("exchange", [True, False], ids=["renameat2", "without-exchange"])
def test_publish_dir_replaces_and_refuses_a_changed_target(exchange: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    if not exchange:  # a system without an atomic exchange: two renames under the same lock
        monkeypatch.setattr(files, "_exchange", lambda first, second: False)
    target = datasets_dir() / "set"
    with temporary_dir(datasets_dir(), "a") as first:
        write_bytes_atomic(first / "a.txt", b"first")
        publish_dir(first, target, None)
    seen = os.stat(target)
    with temporary_dir(datasets_dir(), "b") as second:
        write_bytes_atomic(second / "b.txt", b"second")
        with pytest.raises(FileExistsError):
            publish_dir(second, target, None)  # it exists now, and the caller thought it did not
        with pytest.raises(FileExistsError):
            publish_dir(second, target, (seen.st_dev, seen.st_ino, seen.st_ctime_ns - 1))  # not the one it saw
        publish_dir(second, target, (seen.st_dev, seen.st_ino, seen.st_ctime_ns))
        assert (second / "a.txt").read_bytes() == b"first"  # the replaced folder, removed with the temporary
    assert [p.name for p in datasets_dir().iterdir()] == ["set"] and (target / "b.txt").read_bytes() == b"second"
