"""``python -m core train DATASET``: train a recogniser and save it as a run.

Ctrl-C stops the run as the Train page's Stop does: while embedding, nothing is saved (the photos
embedded so far stay cached); while training, the best model so far is saved as "stopped".
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from core.cli import CliError, log
from core.cli._pipeline import add_pipeline_arguments, build_pipeline, progress_printer

if TYPE_CHECKING:
    from core.services.jobs import Job

HELP = "train a face recogniser on a dataset (a head on embeddings, or the face network fine-tuned) and save a run"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from core.training.config import TrainConfig
    from core.training.heads import head_kinds

    defaults = TrainConfig()
    parser.add_argument("dataset", help="dataset folder (train/, validation/, test/) or a FaceLab dataset name")
    add_pipeline_arguments(parser)
    parser.add_argument("--mode", choices=("head", "finetune"), default="head",
                        help="head: classifier on cached embeddings (fast); finetune: the backbone's own network "
                             "(VGG-Face, dlib's ResNet) retrained end to end on the face crops (slow)")
    parser.add_argument("--head", choices=list(head_kinds()), default=defaults.head)
    finetuned = "; when fine-tuning, the backbone's own default"
    parser.add_argument("--epochs", type=int, default=None, help=f"default {defaults.epochs}{finetuned}")
    parser.add_argument("--batch-size", type=int, default=None, help=f"default {defaults.batch_size}{finetuned}")
    parser.add_argument("--learning-rate", type=float, default=None,
                        help=f"default {defaults.learning_rate:g}; when fine-tuning, the warm-up's{finetuned}")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--finetune-blocks", type=int, default=None,
                        help="fine-tuning: groups of layers unfrozen below the network's top one (VGG-Face: conv blocks "
                             f"under fc6-fc7; dlib: residual stages){finetuned}")
    parser.add_argument("--finetune-learning-rate", type=float, default=None,
                        help=f"fine-tuning: the learning rate once layers are unfrozen{finetuned}")
    parser.add_argument("--name", default=None, help="a name for the saved run")


def wait_stopping_on_ctrl_c(job: Job[Any]) -> None:
    """Wait for a job in the background; the first Ctrl-C asks it to stop, a second one quits at once.

    Training runs in the job's thread so that Ctrl-C, which Python raises in the main thread, only
    sets the stop: embedding ends between photos, training between batches and the best model so far
    is saved as "stopped", instead of a traceback from deep inside TensorFlow.
    """
    try:
        while not job.wait(0.5):
            pass
    except KeyboardInterrupt:
        job.stop.set()
        log("\nstopping… (the best model so far is saved; press Ctrl-C again to quit at once)")
        while not job.wait(0.5):
            pass


def run(args: argparse.Namespace) -> dict[str, Any]:
    from core.data.layout import resolve
    from core.pipeline.backbones import BACKBONES, default_backbone
    from core.runs import check_run_name
    from core.services.jobs import Job
    from core.services.train import PHASES, TrainOutcome, check_trainable, timing_summary, train_on_dataset
    from core.training.config import TrainConfig

    backbone = args.backbone or default_backbone()
    given = {"epochs": args.epochs, "batch_size": args.batch_size, "learning_rate": args.learning_rate,
             "finetune_blocks": args.finetune_blocks, "finetune_learning_rate": args.finetune_learning_rate}
    chosen = dict(BACKBONES.entry(backbone).factory.finetune_defaults) if args.mode == "finetune" else {}
    chosen.update({key: value for key, value in given.items() if value is not None})
    config = TrainConfig(head=args.head, mode=args.mode, seed=args.seed, backbone=backbone, **chosen)
    # Everything that can be refused is refused before the models load (seconds) and the photos are embedded (minutes).
    config.validate()
    name = None if args.name is None else check_run_name(args.name)
    root = resolve(args.dataset)
    check_trainable(root)
    pipeline = build_pipeline(args)

    def on_epoch(epoch: int, logs: dict[str, float]) -> None:
        log(f"epoch {epoch + 1}/{config.epochs}: " + "  ".join(f"{k} {v:.4f}" for k, v in logs.items()))

    def work(job: Job[TrainOutcome]) -> TrainOutcome:
        return train_on_dataset(root, pipeline, config, progress=progress_printer("embedding"),
                                on_epoch=on_epoch, should_stop=job.should_stop, on_phase=job.enter, name=name)

    job: Job[TrainOutcome] = Job(PHASES).start(work, name="facelab-train")
    wait_stopping_on_ctrl_c(job)
    if job.outcome is None:
        if job.phase == "cancelled":
            log("")  # ends the embedding progress line the stop left open
        raise CliError(job.error)
    info, result, report = job.outcome.info, job.outcome.result, job.outcome.report
    out: dict[str, Any] = {
        "run": info.id, "name": info.name, "mode": config.mode, "head": config.head,
        "detector": config.detector, "backbone": config.backbone, "align": config.align,
        "crop": config.extra.get("crop"),
        "people": result.labels, "val_accuracy": info.val_accuracy, "test_accuracy": info.test_accuracy,
        "epochs": result.epochs_run, "best_epoch": result.best_epoch + 1, "seconds": round(result.seconds, 2),
        "stopped": result.stopped, "skipped": report, "warnings": result.warnings,
        "timings": {phase: round(seconds, 2) for phase, seconds in job.outcome.timings.items()},
        "validation_mistakes": [{"photo": str(m.path), "truth": m.truth, "predicted": m.predicted,
                                 "confidence": round(m.confidence, 4)} for m in job.outcome.mistakes],
        "notes": job.outcome.notes,
    }
    pct = lambda v: "n/a" if v is None else f"{v:.1%}"  # noqa: E731
    lines = [f"saved run {info.id} ({info.name})",
             f"  {len(result.labels)} people, {result.epochs_run} epochs in {result.seconds:.1f} s "
             f"(best epoch {result.best_epoch + 1})",
             f"  validation accuracy {pct(info.val_accuracy)}, test accuracy {pct(info.test_accuracy)}",
             f"  {timing_summary(job.outcome.timings)}"]
    for split, entry in report.items():
        for photo in entry["no_face"]:
            lines.append(f"  skipped (no face, {split}): {photo}")
        for photo, error in entry["errors"].items():
            lines.append(f"  skipped (unreadable, {split}): {photo}: {error}")
    lines += [f"  validation mistake: {m.path.name} is {m.truth}, named {m.predicted} ({m.confidence:.0%})"
              for m in job.outcome.mistakes]
    lines += [f"  note: {w}" for w in [*result.warnings, *job.outcome.notes]]
    out["text"] = "\n".join(lines)
    return out
