"""Which calibration decides a verdict: a sound one of the workspace, named; a poisoned one refused or skipped.

A calibration made on mislabelled photos moves the threshold until strangers pass as the same person
(issue 11: 0.60 → 0.85, two different celebrities "same person 53 %"). ``choose_calibration`` refuses one
whose AUC on its deciding metric is below 0.9, or one made on another dataset than the one asked, and skips
it (saying so) when it picks automatically; ``python -m core verify`` says which calibration it used.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from core.compare.calibration import Calibration, calibrate, save_calibration
from core.services.calibrate import MIN_AUC, calibration_context, choose_calibration, find_calibration
from core.services.gallery import dataset_fingerprint
from tests.conftest import identity_clusters, image_bytes, noise_image, run_cli

PIPELINE = SimpleNamespace(detector=SimpleNamespace(cache_key=lambda: "detector-key"), align=True, crop="chip",
                           backbone=SimpleNamespace(cache_key=lambda: "backbone-key", decision_metric="euclidean"))
OTHER_PIPELINE = SimpleNamespace(detector=PIPELINE.detector, align=False, crop="chip", backbone=PIPELINE.backbone)


def folder(root: Path, seed: int = 0) -> Path:
    """A dataset folder (its fingerprint keys the calibrations made on it)."""
    (root / "train" / "amy").mkdir(parents=True)
    (root / "train" / "amy" / "0.png").write_bytes(image_bytes(noise_image(seed=seed)))
    return root


def made_on(root: Path, sound: bool, created: str, name: str | None = None, pipeline: object = PIPELINE) -> Calibration:
    """A stored calibration for ``root``: well separated people (sound) or shuffled labels (AUC about 0.5)."""
    embeddings, labels = identity_clusters(people=4, per_person=6, dim=16, noise=0.1)
    if not sound:
        labels = list(np.random.default_rng(3).permutation(labels))
    context = calibration_context(pipeline, dataset_fingerprint(root), root.name if name is None else name)
    calibration = dataclasses.replace(calibrate(embeddings, labels, metric="euclidean", context=context),
                                      created=created)
    save_calibration(calibration)
    return calibration


def test_automatic_choice_skips_an_unsound_newer_calibration_and_says_so(tmp_path: Path) -> None:
    clean = made_on(folder(tmp_path / "clean"), True, "2026-01-01T00:00:00+00:00")
    poisoned = made_on(folder(tmp_path / "poisoned", 1), False, "2026-02-01T00:00:00+00:00")
    assert poisoned.metrics["euclidean"].auc < MIN_AUC <= clean.metrics["euclidean"].auc
    assert find_calibration(PIPELINE) == poisoned, "the newest, before judging"
    choice = choose_calibration(PIPELINE)
    assert choice.calibration == clean
    assert len(choice.notes) == 1 and choice.notes[0].startswith("skipped: the calibration on 'poisoned'")
    assert f"euclidean AUC {poisoned.metrics['euclidean'].auc:.2f}, below 0.9" in choice.notes[0]
    assert "the calibration on 'clean'" in choice.source and "AUC 1.000" in choice.source
    assert choose_calibration(OTHER_PIPELINE).calibration is None, "only this detector, alignment and backbone"


def test_only_unsound_calibrations_leave_the_defaults_with_the_reason(tmp_path: Path) -> None:
    made_on(folder(tmp_path / "poisoned"), False, "2026-02-01T00:00:00+00:00")
    choice = choose_calibration(PIPELINE)
    assert choice.calibration is None and choice.source == "the backbone's defaults (not calibrated)"
    assert len(choice.notes) == 1 and "'poisoned'" in choice.notes[0]


def test_a_named_dataset_gets_its_own_sound_calibration_or_a_refusal(tmp_path: Path) -> None:
    clean_root, poisoned_root = folder(tmp_path / "clean"), folder(tmp_path / "poisoned", 1)
    clean = made_on(clean_root, True, "2026-01-01T00:00:00+00:00")
    made_on(poisoned_root, False, "2026-02-01T00:00:00+00:00")
    assert choose_calibration(PIPELINE, clean_root).calibration == clean
    refused = choose_calibration(PIPELINE, poisoned_root)
    assert refused.calibration is None and refused.notes[0].startswith("refused: the calibration on 'poisoned'")
    missing = choose_calibration(PIPELINE, folder(tmp_path / "never_calibrated", 2))
    assert missing.calibration is None and missing.notes == [], "nothing refused: there is nothing"


def test_a_calibration_made_on_another_dataset_is_refused(tmp_path: Path) -> None:
    original = folder(tmp_path / "original")
    made_on(original, True, "2026-01-01T00:00:00+00:00")
    copy = tmp_path / "copy"
    shutil.copytree(original, copy)  # the same photos (same fingerprint) under another name
    assert dataset_fingerprint(copy) == dataset_fingerprint(original)
    refused = choose_calibration(PIPELINE, copy)
    assert refused.calibration is None
    assert refused.notes == ["refused: the calibration found was made on 'original', not on 'copy'"]
    unnamed = folder(tmp_path / "unnamed", 3)
    made_on(unnamed, True, "2026-01-01T00:00:00+00:00", name="")
    assert "a dataset whose name was not recorded" in choose_calibration(PIPELINE, unnamed).notes[0]


# ---------------------------------------------------------------- the command line, on real photos


def celebrity_dataset(root: Path, five_celebrity: Path, poisoned: bool) -> Path:
    """Three photos each of three celebrities; poisoned: each folder holds one photo of each of them."""
    people = ("madonna", "elton_john", "jerry_seinfeld")
    for n, person in enumerate(people):
        (root / "train" / person).mkdir(parents=True)
        for index in range(3):
            source = people[(n + index) % 3] if poisoned else person
            photo = sorted((five_celebrity / "train" / source).iterdir())[index]
            shutil.copyfile(photo, root / "train" / person / photo.name)
    return root


def test_cli_verify_names_its_calibration_and_skips_or_refuses_a_poisoned_one(
        tmp_path: Path, five_celebrity: Path, facelab_home: Path) -> None:
    poisoned = celebrity_dataset(tmp_path / "poisoned", five_celebrity, poisoned=True)
    pipeline = ["--detector", "dlib-hog", "--backbone", "dlib-resnet"]
    made = run_cli("calibrate", str(poisoned), *pipeline, "--json", home=facelab_home)
    assert made.returncode == 0, made.stderr
    assert json.loads(made.stdout)["auc"] < MIN_AUC
    strangers = [str(sorted((five_celebrity / "train" / person).iterdir())[index])
                 for person, index in (("madonna", 0), ("elton_john", 1))]

    automatic = run_cli("verify", *strangers, *pipeline, home=facelab_home)
    assert automatic.returncode == 0, automatic.stderr
    assert automatic.stdout.startswith("different people")
    assert "default (not calibrated) threshold 0.6000" in automatic.stdout
    assert "skipped: the calibration on 'poisoned'" in automatic.stdout and "below 0.9" in automatic.stdout

    pinned = run_cli("verify", *strangers, *pipeline, "--calibration", str(poisoned), home=facelab_home)
    assert pinned.returncode == 2 and "Traceback" not in pinned.stderr
    assert pinned.stderr.startswith("error: refused: the calibration on 'poisoned'") and pinned.stdout == ""

    clean = celebrity_dataset(tmp_path / "clean", five_celebrity, poisoned=False)
    assert run_cli("calibrate", str(clean), *pipeline, home=facelab_home).returncode == 0
    named = run_cli("verify", *strangers, *pipeline, "--json", home=facelab_home)
    verdict = json.loads(named.stdout)
    assert verdict["threshold_source"] == "calibrated" and verdict["verified"] is False
    assert verdict["calibration"]["dataset_name"] == "clean" and verdict["calibration"]["auc"] >= MIN_AUC
    assert verdict["calibration"]["dataset"] == dataset_fingerprint(clean)
    assert len(verdict["calibration_notes"]) == 0, "the poisoned one is older now: not even looked at"


def test_notebook_verify_skips_a_poisoned_calibration_with_a_warning(tmp_path: Path, five_celebrity: Path) -> None:
    import core
    from core.api import pipeline

    root = folder(tmp_path / "poisoned")
    context = calibration_context(pipeline("dlib-hog", "dlib-resnet"), dataset_fingerprint(root), "poisoned")
    embeddings, labels = identity_clusters(people=4, per_person=6, dim=128, noise=0.1)
    save_calibration(calibrate(embeddings, list(np.random.default_rng(3).permutation(labels)), metric="euclidean",
                               context=context))
    photos = [sorted((five_celebrity / "train" / "madonna").iterdir())[index] for index in (0, 1)]
    with pytest.warns(UserWarning, match="skipped: the calibration on 'poisoned'"):
        verdict = core.verify(photos[0], photos[1], detector="dlib-hog", backbone="dlib-resnet")
    assert verdict.threshold_source == "default" and verdict.verified
