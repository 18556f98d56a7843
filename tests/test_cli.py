"""The command line as a user runs it, each command a new ``python -m core`` process: commands listed, JSON-only
stdout, one-line errors."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.conftest import image_bytes, noise_image, run_cli


def test_help_lists_every_command(tmp_path: Path) -> None:
    done = run_cli("--help", home=tmp_path, isolated=True)
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
    done = run_cli("embed", str(dataset), "--detector", "haar", "--backbone", "dlib-resnet", "--json", home=home,
                   isolated=True)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout)  # stdout holds only the JSON document
    assert report["photos"] == 4 and report["errors"] == 1
    assert report["with_face"] + report["no_face"] == 3
    assert {"many_faces", "images_per_second", "splits"} <= set(report)
    assert list((home / "cache" / "embeddings").rglob("*.npz"))


def test_unknown_detector_is_a_one_line_error(tmp_path: Path) -> None:
    done = run_cli("embed", str(tmp_path), "--detector", "nope", home=tmp_path, isolated=True)
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "unknown detector 'nope'" in done.stderr


def special_file(kind: str, folder: Path, name: str = "photo.jpg") -> str:
    """``/dev/zero`` or a FIFO (read from either, a command would never finish)."""
    if kind == "/dev/zero":
        return kind
    path = folder / name
    os.mkfifo(path)
    return str(path)


COMMANDS_READING_A_FILE = [
    ["verify", "{photo}", "{special}"],
    ["verify", "{special}", "{photo}"],
    ["weights", "--from", "{special}"],
    ["scan", "{special}"],
    ["embed", "{special}"],
    ["train", "{special}"],
    ["calibrate", "{special}"],
    ["predict", "active", "{special}"],
]


@pytest.mark.parametrize("kind", ["/dev/zero", "fifo"])
@pytest.mark.parametrize("command", COMMANDS_READING_A_FILE, ids=lambda c: "-".join(c[:2]).strip("{}"))
def test_an_endless_file_as_an_argument_is_one_line_and_status_2(command: list[str], kind: str,
                                                                  tmp_path: Path) -> None:
    photo = tmp_path / "photo.png"
    photo.write_bytes(image_bytes(noise_image(64, 64, seed=1)))
    special = special_file(kind, tmp_path, "pipe.jpg")
    args = [part.format(photo=photo, special=special) for part in command]
    done = run_cli(*args, home=tmp_path / "home", isolated=True, timeout=60)  # reading the file would never end
    assert done.returncode == 2, done.stderr[-2000:]
    assert done.stderr.startswith("error: ") and done.stderr.count("\n") == 1, done.stderr
    assert "Traceback" not in done.stderr and not done.stdout


@pytest.mark.parametrize("kind", ["/dev/zero", "fifo"])
def test_an_endless_file_inside_a_dataset_is_skipped_and_named(kind: str, tmp_path: Path) -> None:
    dataset = tmp_path / "ds"
    (dataset / "train" / "ann").mkdir(parents=True)
    (dataset / "train" / "ann" / "a.png").write_bytes(image_bytes(noise_image(64, 64, seed=2)))
    bad = dataset / "train" / "ann" / "b.jpg"
    if kind == "/dev/zero":
        bad.symlink_to("/dev/zero")
    else:
        os.mkfifo(bad)
    scanned = run_cli("scan", str(dataset), "--json", home=tmp_path / "home", isolated=True, timeout=60)
    assert scanned.returncode == 0, scanned.stderr[-2000:]
    problems = json.loads(scanned.stdout)["problems"]
    assert any(p["path"] == "train/ann/b.jpg" and "not a regular file" in p["message"] for p in problems), problems
    embedded = run_cli("embed", str(dataset), "--detector", "haar", "--backbone", "dlib-resnet", "--json",
                       home=tmp_path / "home", isolated=True, timeout=300)
    assert embedded.returncode == 0, embedded.stderr[-2000:]
    assert json.loads(embedded.stdout)["error_photos"] == {"train/ann/b.jpg": "b.jpg: not a regular file."}
