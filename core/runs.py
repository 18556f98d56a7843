"""The run store: every trained recogniser saved as one folder under ``core.config.runs_dir()``.

A run folder ``<runs_dir>/<run_id>/`` holds the head (``head.json`` plus ``model.keras`` or
``centroids.npz``), ``labels.json``, ``config.json``, ``history.json``, ``metrics.json``,
``report.json`` (photos skipped, timings, validation mistakes: what the Train page shows of a
finished run, reopened from the runs table after a reload), optional ``gallery.npz`` extras and,
written last, ``run.json``. Saving writes into a private
``.tmp-…`` folder and renames it into place, so a crash or a second session saving at the same
moment can never leave a half-written run that looks usable; listing ignores ``.tmp-…`` folders
and start-up cleaning (``core.files.remove_stale``) removes those a killed process left. A run the
user stopped is saved with status "stopped".
"""

from __future__ import annotations

import io
import json
import os
import re
import secrets
import shutil
import tempfile
import zipfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from core.config import limits, runs_dir
from core.data.names import clean_text
from core.files import TEMP_PREFIX, children, publish_dir, temporary_dir, write_json_atomic
from core.training.config import TrainConfig, TrainResult
from core.training.heads import Head, load_head

RUN_FILE = "run.json"
ACTIVE_FILE = "active.json"
GALLERY_FILE = "gallery.npz"
REPORT_FILE = "report.json"
RUN_ID = re.compile(r"\d{8}-\d{6}-[0-9a-f]{6}")
STATUSES = ("complete", "stopped")


@dataclass(frozen=True)
class RunInfo:
    """What a list of runs shows about one run (read from its ``run.json``)."""

    id: str
    name: str
    created: str  # ISO 8601, UTC
    seconds: float
    status: str  # "complete" or "stopped"
    head: str
    people: int
    epochs_run: int
    val_accuracy: float | None
    test_accuracy: float | None
    path: Path
    timings: dict[str, float] = field(default_factory=dict)  # phase → seconds ("embedding", …, "total"); {} before


@dataclass(frozen=True)
class RunReport:
    """What a finished run showed when it was trained, read back without loading its model (no TensorFlow).

    ``skipped``: per split, the photos not used as they are (see ``core.services.train.Report``);
    ``mistakes``: validation photos named wrongly, as {"photo" (relative to the dataset), "truth",
    "predicted", "confidence"}; None when they were never listed (a run saved before training listed them
    itself, or one whose listing failed: its notes say why). Runs saved before reports were kept have none.
    """

    info: RunInfo
    dataset: str  # the dataset folder on this server, "" when unknown
    history: dict[str, list[float]]
    best_epoch: int
    warnings: list[str]
    validation: dict[str, Any] | None
    test: dict[str, Any] | None
    skipped: dict[str, dict[str, Any]]
    mistakes: list[dict[str, Any]] | None
    notes: list[str]


@dataclass
class LoadedRun:
    """A saved run ready to predict with."""

    info: RunInfo
    head: Head
    labels: list[str]
    config: TrainConfig
    history: dict[str, list[float]]
    metrics: dict[str, Any]  # {"validation": … or None, "test": … or None}
    extras: dict[str, np.ndarray]


def _write_json(path: Path, data: Any) -> None:
    """Write JSON atomically: readers see the old file or the new one, never half of one."""
    write_json_atomic(path, data, indent=2, default=_json_default)


def _json_default(value: Any) -> Any:
    """numpy scalars and arrays that slip into metrics or context become plain JSON."""
    if isinstance(value, np.generic | np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise ValueError(f"a {type(value).__name__} cannot be saved in a run's JSON files.")


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path} is damaged ({exc}).") from exc


def new_run_id() -> str:
    """Sortable, folder-safe and unique enough for concurrent sessions: UTC timestamp + 6 random hex digits."""
    return f"{datetime.now(timezone.utc):%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"


def _run_path(run_id: str) -> Path:
    """The folder of ``run_id``; rejects anything that is not a run id (no path tricks)."""
    if not isinstance(run_id, str) or not RUN_ID.fullmatch(run_id):
        raise ValueError(f"'{run_id}' is not a run id (expected YYYYMMDD-HHMMSS-xxxxxx).")
    return runs_dir() / run_id


def _existing_run(run_id: str) -> Path:
    path = _run_path(run_id)
    if not (path / RUN_FILE).is_file():
        raise FileNotFoundError(f"run {run_id} does not exist (it may have been deleted).")
    return path


def check_run_name(name: str) -> str:
    """A run's display name as stored: one line, NFC, without characters that hide or reorder text.

    Callers check a name the user typed before training, so a bad one is refused before minutes of work.
    """
    name = " ".join(str(name).split())
    if not name:
        raise ValueError("a run name cannot be empty.")
    name = clean_text(name, "run name")
    if len(name) > limits().max_name_length:
        raise ValueError(f"a run name can be at most {limits().max_name_length} characters; got {len(name)}.")
    return name


def _accuracy(metrics: dict[str, Any] | None) -> float | None:
    return None if not metrics else float(metrics["accuracy"])


def _info(path: Path, record: dict[str, Any]) -> RunInfo:
    return RunInfo(
        id=path.name, name=str(record["name"]), created=str(record["created"]), seconds=float(record["seconds"]),
        status=str(record["status"]), head=str(record["head"]), people=int(record["people"]),
        epochs_run=int(record["epochs_run"]), val_accuracy=record.get("val_accuracy"),
        test_accuracy=record.get("test_accuracy"), path=path,
        timings={str(k): float(v) for k, v in (record.get("timings") or {}).items()},
    )


def _default_name(config: TrainConfig, stopped: bool) -> str:
    what = f"fine-tuned {config.backbone or 'network'}" if config.mode == "finetune" \
        else f"{config.head} on {config.backbone or 'embeddings'}"
    name = f"{what} · {Path(config.dataset).name}" if config.dataset else what
    return f"{name} (stopped)" if stopped else name


def save_run(result: TrainResult, config: TrainConfig, extras: dict[str, np.ndarray] | None = None,
             name: str | None = None, test_metrics: dict[str, Any] | None = None,
             skipped: dict[str, dict[str, Any]] | None = None, timings: dict[str, float] | None = None) -> RunInfo:
    """Save a training result as a new run and return its summary.

    ``extras`` (e.g. training embeddings for "nearest training photos" and unknown-face
    thresholds) go to ``gallery.npz``; ``test_metrics`` (from ``training.evaluate``) beside the
    validation metrics; ``skipped`` photos and phase ``timings`` into the run's report. The run
    appears all at once or not at all.
    """
    arrays = {key: np.asarray(value) for key, value in (extras or {}).items()}
    for key, value in arrays.items():
        if not key.isidentifier():
            raise ValueError(f"extra '{key}' needs a plain name (letters, digits, underscores).")
        if value.dtype == object:
            raise ValueError(f"extra '{key}' must be a numeric or string array, not Python objects.")
    run_id = new_run_id()
    created = datetime.now(timezone.utc).isoformat(timespec="microseconds")  # fine enough to order quick saves
    record = {
        "id": run_id,
        "name": check_run_name(name) if name is not None else _default_name(config, result.stopped),
        "created": created,
        "seconds": round(float(result.seconds), 3),
        "status": "stopped" if result.stopped else "complete",
        "head": result.head.kind,
        "people": len(result.labels),
        "epochs_run": result.epochs_run,
        "best_epoch": result.best_epoch,
        "val_accuracy": _accuracy(result.metrics),
        "test_accuracy": _accuracy(test_metrics),
        "warnings": list(result.warnings),
        "timings": {key: round(float(value), 3) for key, value in (timings or {}).items()},
    }
    final = runs_dir() / run_id
    with temporary_dir(final.parent, run_id) as tmp:
        result.head.save(tmp)
        _write_json(tmp / "labels.json", list(result.labels))
        _write_json(tmp / "config.json", config.to_dict())
        _write_json(tmp / "history.json", result.history)
        _write_json(tmp / "metrics.json", {"validation": result.metrics, "test": test_metrics})
        _write_json(tmp / REPORT_FILE, {"skipped": skipped or {}, "notes": []})
        if arrays:
            np.savez(tmp / GALLERY_FILE, **arrays)
        _write_json(tmp / RUN_FILE, record)  # last: its presence marks a finished folder
        publish_dir(tmp, final, None)
    return _info(final, record)


def load_run(run_id: str) -> LoadedRun:
    """Everything saved for ``run_id``; a clear FileNotFoundError if it was deleted, ValueError if damaged."""
    path = _existing_run(run_id)
    try:
        info = _info(path, _read_json(path / RUN_FILE))
        labels = [str(label) for label in _read_json(path / "labels.json")]
        config = TrainConfig.from_dict(_read_json(path / "config.json"))
        history = _read_json(path / "history.json")
        metrics = _read_json(path / "metrics.json")
        head = load_head(path)
        extras: dict[str, np.ndarray] = {}
        if (path / GALLERY_FILE).is_file():
            with np.load(path / GALLERY_FILE, allow_pickle=False) as data:
                extras = {key: data[key] for key in data.files}
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"run {run_id} is incomplete or was deleted while loading ({exc}).") from exc
    except (KeyError, TypeError) as exc:
        raise ValueError(f"run {run_id} is damaged ({exc}).") from exc
    if len(labels) != head.n_classes:
        raise ValueError(f"run {run_id} is damaged: {len(labels)} labels for a head of {head.n_classes} classes.")
    return LoadedRun(info, head, labels, config, history, metrics, extras)


def add_to_report(run_id: str, mistakes: list[dict[str, Any]] | None = None, notes: list[str] | None = None) -> None:
    """Add what is found after saving (the validation mistakes need the saved run) to its report; ``mistakes``
    None leaves them unlisted."""
    path = _existing_run(run_id) / REPORT_FILE
    try:
        report = _read_json(path)
    except FileNotFoundError:
        report = {}
    if mistakes is not None:
        report["mistakes"] = [*(report.get("mistakes") or []), *mistakes]
    report["notes"] = [*report.get("notes", []), *(notes or [])]
    _write_json(path, report)


def load_report(run_id: str) -> RunReport:
    """A run's report as the Train page shows it; a clear FileNotFoundError if it was deleted, ValueError if damaged."""
    path = _existing_run(run_id)
    try:
        info = _info(path, record := _read_json(path / RUN_FILE))
        metrics = _read_json(path / "metrics.json")
        report = _read_json(path / REPORT_FILE) if (path / REPORT_FILE).is_file() else {}
        return RunReport(info, str(run_config(info).get("dataset", "")), _read_json(path / "history.json"),
                         int(record.get("best_epoch", 0)), [str(w) for w in record.get("warnings", [])],
                         metrics.get("validation"), metrics.get("test"), dict(report.get("skipped", {})),
                         None if report.get("mistakes") is None else list(report["mistakes"]), [str(n) for n in report.get("notes", [])])
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"run {run_id} is incomplete or was deleted while loading ({exc}).") from exc
    except (KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"run {run_id} is damaged ({exc}).") from exc


def run_config(run: str | RunInfo) -> dict[str, Any]:
    """A run's saved settings (its config.json) as a dict, read without loading its model.

    For tables that list every run: a missing or damaged file gives {} (the table shows gaps)
    instead of an error; ``load_run`` reports the details when someone opens that run. A string
    that is not a run id still raises ValueError, like everywhere else in the store.
    """
    path = run.path if isinstance(run, RunInfo) else _run_path(run)
    try:
        config = _read_json(path / "config.json")
    except (FileNotFoundError, ValueError):
        return {}
    return config if isinstance(config, dict) else {}


def list_runs() -> list[RunInfo]:
    """Every finished run, newest first; folders that are not runs (temporary, damaged) are left out."""
    runs = []
    for path in children(runs_dir()):
        if not RUN_ID.fullmatch(path.name) or not (path / RUN_FILE).is_file():
            continue
        try:
            runs.append(_info(path, _read_json(path / RUN_FILE)))
        except (ValueError, KeyError, TypeError, FileNotFoundError):
            continue  # damaged or deleted meanwhile: load_run reports the details if someone asks for it
    return sorted(runs, key=lambda run: (run.created, run.id), reverse=True)


def rename_run(run_id: str, name: str) -> RunInfo:
    """Give a run a new display name (its folder and id stay)."""
    path = _existing_run(run_id)
    record = _read_json(path / RUN_FILE)
    record["name"] = check_run_name(name)
    _write_json(path / RUN_FILE, record)
    return _info(path, record)


def delete_run(run_id: str) -> None:
    """Remove a run; it disappears from listings at once, even while its files are being removed."""
    path = _existing_run(run_id)
    doomed = runs_dir() / f"{TEMP_PREFIX}deleted-{run_id}-{secrets.token_hex(3)}"
    was_active = active_run() == run_id
    os.replace(path, doomed)
    shutil.rmtree(doomed, ignore_errors=True)
    if was_active:
        set_active_run(None)


def set_active_run(run_id: str | None) -> None:
    """Choose the run the Predict page and the CLI use by default (None clears the choice)."""
    if run_id is not None:
        _existing_run(run_id)
    _write_json(runs_dir() / ACTIVE_FILE, {"run_id": run_id})


def active_run() -> str | None:
    """The chosen run's id, or None when none is chosen or it no longer exists."""
    try:
        run_id = _read_json(runs_dir() / ACTIVE_FILE).get("run_id")
        return run_id if run_id and (_run_path(run_id) / RUN_FILE).is_file() else None
    except (FileNotFoundError, ValueError, AttributeError):
        return None


def _zip_folder(folder: Path, prefix: str, replaced: dict[str, bytes] | None = None) -> bytes:
    """Every file below ``folder`` as zip bytes, under ``prefix/``; ``replaced`` gives other contents for some of
    them (by path relative to ``folder``)."""
    replaced = replaced or {}
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for file in sorted(p for p in folder.rglob("*") if p.is_file()):
            name = file.relative_to(folder).as_posix()
            if name in replaced:
                archive.writestr(f"{prefix}/{name}", replaced[name])
            else:
                archive.write(file, f"{prefix}/{name}")
    return buffer.getvalue()


def export_run_zip(run_id: str) -> bytes:
    """The whole run folder as zip bytes (entries under ``<run_id>/``), for a download button or the CLI.

    The stored ``config.json`` holds the dataset's server path (predicting finds its test split by it); the
    exported copy names the dataset by its folder name only, so a download shows nothing of the server's disk.
    """
    path = _existing_run(run_id)
    config = run_config(run_id)
    if config.get("dataset"):
        config["dataset"] = Path(config["dataset"]).name
    shared = json.dumps(config, indent=2, default=_json_default).encode()
    return _zip_folder(path, run_id, {"config.json": shared} if config else None)


def export_savedmodel_zip(run_id: str) -> bytes:
    """The run's Keras model exported as a TensorFlow SavedModel, zipped (entries under ``<run_id>_saved_model/``)."""
    with tempfile.TemporaryDirectory(prefix="facelab-export-") as tmp:
        return _zip_folder(export_savedmodel(run_id, Path(tmp) / "saved_model"), f"{run_id}_saved_model")


def export_savedmodel(run_id: str, dest: Path | str) -> Path:
    """Export a run's Keras model as a TensorFlow SavedModel folder at ``dest`` (which must not exist yet).

    A head run's model takes raw embeddings (normalisation is inside it) and returns class probabilities;
    a fine-tuned run's is the whole network: aligned uint8 RGB crops (N, S, S, 3) in, the probabilities
    and the fine-tuned embedding out. Probabilities are in the order of the run's ``labels.json``, which
    is copied beside it.
    """
    dest = Path(dest).expanduser().resolve()
    if dest.exists():
        raise FileExistsError(f"{dest} already exists; choose a new folder for the export.")
    loaded = load_run(run_id)
    if not loaded.head.savedmodel:
        raise ValueError(f"run {run_id} uses the '{loaded.head.kind}' head, which has no Keras model to export; "
                         "export the run as a zip instead.")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}{dest.name}-", dir=dest.parent))
    try:
        loaded.head.export_savedmodel(tmp)
        _write_json(tmp / "labels.json", loaded.labels)
        os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest
