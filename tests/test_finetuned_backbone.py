"""A fine-tuned run as a backbone (core.services.finetuned): Verify, calibration and the CLI in the run's own embedding
space. The real runs come from the session's shared dlib fine-tune (tests/conftest.py::finetuned_dlib_run)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from core.compare.calibration import calibrate
from core.compare.distances import METRICS
from core.compare.verification import NEUTRAL_THRESHOLDS, verify
from core.config import runs_dir
from core.runs import GALLERY_FILE, RunInfo, load_run, save_run
from core.services import finetuned
from core.training.config import TrainConfig
from core.training.fit import train_head
from tests.conftest import FinetunedRun, identity_clusters, image_bytes, noise_image, run_cli

pytest.importorskip("keras")


def validation_photos(run: FinetunedRun) -> list[Path]:
    return sorted((run.root / "validation").rglob("*.*"))


def save_head_run() -> RunInfo:
    """A head-mode run (centroids on made-up dlib-resnet embeddings): it has no network of its own."""
    X, y = identity_clusters(3, 4, 128, 0.1)
    config = TrainConfig(head="centroid", backbone="dlib-resnet", detector="dlib-hog")
    return save_run(train_head(config, X, y), config)


def test_it_cuts_like_its_base_and_embeds_with_the_runs_network(finetuned_dlib_run: FinetunedRun) -> None:
    from core.images import load_image
    from core.pipeline.backbones import BACKBONES
    from core.pipeline.detection import DETECTORS

    run_id = finetuned_dlib_run.install()
    backbone = finetuned.finetuned_backbone(run_id)
    assert finetuned.finetuned_backbone(run_id) is backbone, "loaded once per process"
    base = BACKBONES.get("dlib-resnet")
    assert (backbone.name, backbone.embedding_dim, backbone.input_size, backbone.decision_metric) == \
        (f"run:{run_id}", 128, base.input_size, "cosine")
    crops = []
    for path in validation_photos(finetuned_dlib_run)[:3]:
        image = load_image(path)
        face = DETECTORS.get("dlib-hog").detect(image)[0]
        crop = backbone.align(image, face).crop
        np.testing.assert_array_equal(crop, base.align(image, face).crop)  # dlib's own 150×150 chip
        crops.append(crop)
    chips = np.stack(crops)
    embedded = backbone.embed(chips)
    np.testing.assert_allclose(embedded, load_run(run_id).head.embed(chips), atol=1e-5)
    pretrained = base.finetune_network().predict_on_batch(chips.astype(np.float32))
    assert np.abs(embedded - pretrained).max() > 1e-4, "the fine-tuned network, not the pretrained one"
    np.testing.assert_array_equal(backbone.preprocess(chips), base.preprocess(chips))


def test_its_cache_key_keeps_embeddings_and_calibrations_apart(finetuned_dlib_run: FinetunedRun) -> None:
    from core.pipeline.backbones import BACKBONES
    from core.pipeline.detection import DETECTORS
    from core.pipeline.embeddings import Pipeline
    from core.services.calibrate import calibrate_gallery, find_calibration
    from core.services.gallery import build_gallery

    run_id = finetuned_dlib_run.install()
    backbone, base = finetuned.finetuned_backbone(run_id), BACKBONES.get("dlib-resnet")
    assert backbone.cache_key() != base.cache_key()
    assert backbone.cache_key().startswith(f"run:{run_id}:") and backbone.cache_key().endswith(base.cache_key())
    tuned = finetuned.pipeline("dlib-hog", f"run:{run_id}")
    pretrained = Pipeline(DETECTORS.get("dlib-hog"), base)
    assert tuned.backbone is backbone and tuned.key != pretrained.key

    gallery = build_gallery(tuned, finetuned_dlib_run.root)
    assert gallery.embeddings.shape == (22, 128) and gallery.pipeline_key == tuned.key
    calibration = calibrate_gallery(tuned, gallery)
    assert calibration.context["backbone"] == backbone.cache_key()
    assert calibration.eer[calibration.metric] == min(calibration.eer[m] for m in ("cosine", "euclidean"))
    assert find_calibration(tuned, finetuned_dlib_run.root).created == calibration.created
    assert find_calibration(pretrained) is None, "the pretrained backbone's verdicts never use it"


def test_training_stored_the_equal_error_threshold_of_its_validation_faces(finetuned_dlib_run: FinetunedRun) -> None:
    from core.images import load_image
    from core.pipeline.detection import DETECTORS

    run = load_run(finetuned_dlib_run.install())
    assert not finetuned_dlib_run.outcome.result.warnings, "12 same-person pairs are enough: no fallback"
    assert int(run.extras[finetuned.GENUINE_KEY]) == 12 and int(run.extras[finetuned.IMPOSTOR_KEY]) == 33
    stored = dict(zip(METRICS, run.extras[finetuned.THRESHOLDS_KEY].tolist()))
    backbone = finetuned.finetuned_backbone(run.info.id)
    paths = validation_photos(finetuned_dlib_run)
    images = [load_image(path) for path in paths]
    chips = np.stack([backbone.align(image, DETECTORS.get("dlib-hog").detect(image)[0]).crop for image in images])
    measured = calibrate(run.head.embed(chips), [p.parent.name for p in paths], metric="cosine")
    for metric in METRICS:
        assert stored[metric] == pytest.approx(measured.thresholds[metric], rel=1e-3)
    assert dict(backbone.default_thresholds) == pytest.approx(stored)
    assert "12 same-person and 33 different-people pairs" in backbone.thresholds_note


def test_too_few_validation_pairs_give_neutral_thresholds_and_say_so(finetuned_dlib_run: FinetunedRun) -> None:
    vectors, labels = identity_clusters(4, 5, 16, 0.3)
    enough, note = finetuned.verification_extras(vectors, labels)
    assert note is None and int(enough[finetuned.GENUINE_KEY]) == 40
    np.testing.assert_allclose(enough[finetuned.THRESHOLDS_KEY],
                               [calibrate(vectors, labels).thresholds[m] for m in METRICS], rtol=1e-6)

    few, note = finetuned.verification_extras(vectors[:4], ["a", "a", "b", None])
    assert note is not None and "gave 1 same-person pair(s) of 2 person(s)" in note and "neutral default thresholds" in note
    assert np.isnan(few[finetuned.THRESHOLDS_KEY]).all()
    run_id = finetuned_dlib_run.install()
    gallery = runs_dir() / run_id / GALLERY_FILE
    with np.load(gallery) as saved:
        extras = {**{key: saved[key] for key in saved.files}, **few}
    np.savez(gallery, **extras)
    backbone = finetuned.finetuned_backbone(run_id)
    assert dict(backbone.default_thresholds) == {}
    assert backbone.thresholds_note.startswith("neutral default thresholds") and "too few" in backbone.thresholds_note
    rng = np.random.default_rng(0)
    verdict = verify(rng.normal(size=128), rng.normal(size=128), defaults=backbone.default_thresholds, metric="cosine")
    assert verdict.threshold == NEUTRAL_THRESHOLDS["cosine"] and verdict.threshold_source == "default"


def test_only_fine_tuned_runs_are_offered_and_a_head_run_is_refused(finetuned_dlib_run: FinetunedRun) -> None:
    head_run = save_head_run()
    assert finetuned.run_choices() == []
    with pytest.raises(ValueError, match=r"is a head-mode run \(a centroid head on dlib-resnet backbone's embeddings\): "
                                         r"it has no fine-tuned network to embed with"):
        finetuned.finetuned_backbone(head_run.id)
    with pytest.raises(FileNotFoundError, match="run 20990101-000000-abcdef does not exist"):
        finetuned.finetuned_backbone("20990101-000000-abcdef")
    run_id = finetuned_dlib_run.install()
    [choice] = finetuned.run_choices()
    assert (choice.name, choice.label) == (f"run:{run_id}", "Fine-tuned run: fine-tuned dlib-resnet · five (dlib-resnet)")


# --- the command line ------------------------------------------------------------------------------------------


def test_cli_verify_and_calibrate_with_a_run_work_in_its_space(finetuned_dlib_run: FinetunedRun,
                                                               facelab_home: Path) -> None:
    from core.services.verify import analyse_photos, compare

    run_id = finetuned_dlib_run.install()
    first, second = (str(p) for p in validation_photos(finetuned_dlib_run)[:2])
    done = run_cli("verify", first, second, "--detector", "dlib-hog", "--run", run_id, "--json", home=facelab_home)
    assert done.returncode == 0, done.stderr[-2000:]
    answer = json.loads(done.stdout)
    tuned = finetuned.pipeline("dlib-hog", f"run:{run_id}")
    faces = analyse_photos(tuned, [(Path(first).read_bytes(), "a"), (Path(second).read_bytes(), "b")])
    expected = compare(tuned, faces[0].face(0), faces[1].face(0))
    assert (answer["backbone"], answer["run"], answer["metric"]) == (f"run:{run_id}", run_id, "cosine")
    assert answer["distance"] == pytest.approx(expected.distance, abs=1e-4)
    assert answer["threshold_source"] == "default"
    assert answer["threshold"] == pytest.approx(tuned.backbone.default_thresholds["cosine"], rel=1e-6)
    assert "validation faces in its fine-tuned space" in answer["default_thresholds_from"]

    done = run_cli("calibrate", str(finetuned_dlib_run.root), "--detector", "dlib-hog", "--run", run_id, "--json",
                   home=facelab_home)
    assert done.returncode == 0, done.stderr[-2000:]
    calibrated = json.loads(done.stdout)
    assert calibrated["context"]["backbone"] == tuned.backbone.cache_key() and calibrated["metric_chosen_by"] == "eer"


def test_cli_verify_refuses_a_head_run_an_unknown_run_and_two_models_in_one_line(facelab_home: Path,
                                                                                 tmp_path: Path) -> None:
    head_run = save_head_run()
    photos = []
    for seed in (1, 2):
        photos.append(tmp_path / f"{seed}.png")
        photos[-1].write_bytes(image_bytes(noise_image(64, 64, seed)))
    cases = [(["--run", head_run.id], f"run {head_run.id} is a head-mode run"),
             (["--run", "20990101-000000-abcdef"], "run 20990101-000000-abcdef does not exist"),
             (["--run", head_run.id, "--backbone", "dlib-resnet"], "--run and --backbone both choose")]
    for options, message in cases:
        done = run_cli("verify", *map(str, photos), *options, home=facelab_home)
        assert done.returncode == 2, done.stderr[-2000:]
        assert done.stderr.startswith("error: ") and done.stderr.count("\n") == 1 and message in done.stderr
        assert "Traceback" not in done.stderr and not done.stdout
