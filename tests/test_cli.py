"""The command line as a user runs it: commands listed, JSON-only stdout, one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT, image_bytes, noise_image


def run_cli(*args: str, home: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "core", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=600, env={**os.environ, "FACELAB_HOME": str(home)})


def test_help_lists_every_command(tmp_path: Path) -> None:
    done = run_cli("--help", home=tmp_path)
    assert done.returncode == 0
    for command in ("scan", "embed", "weights", "train", "predict", "verify", "calibrate"):
        assert command in done.stdout


def test_embed_json_reports_faces_and_fills_the_cache(tmp_path: Path) -> None:
    dataset = tmp_path / "ds"
    for split, person, seed in [("train", "ann", 1), ("train", "bob", 2), ("test", "ann", 3)]:
        (dataset / split / person).mkdir(parents=True)
        (dataset / split / person / "a.png").write_bytes(image_bytes(noise_image(64, 64, seed)))
    (dataset / "train" / "bob" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    home = tmp_path / "home"
    done = run_cli("embed", str(dataset), "--detector", "haar", "--backbone", "dlib-resnet", "--json", home=home)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout)  # stdout holds only the JSON document
    assert report["photos"] == 4 and report["errors"] == 1
    assert report["with_face"] + report["no_face"] == 3
    assert {"many_faces", "images_per_second", "splits"} <= set(report)
    assert list((home / "cache" / "embeddings").rglob("*.npz"))


def test_unknown_detector_is_a_one_line_error(tmp_path: Path) -> None:
    done = run_cli("embed", str(tmp_path), "--detector", "nope", home=tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "unknown detector 'nope'" in done.stderr
