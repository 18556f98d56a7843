"""How fast this machine really detects and embeds faces, measured on real work and remembered in the FaceLab home.

A plug-in's declared ``seconds_per_photo`` is one figure for every machine; on a busy 2-core server the first
training on 165 photos took four times the estimate made from it. So every embedding job and every face count
records its measured seconds per photo per detector and backbone (and building a model records what that cost once), in
``<home>/throughput.json``; estimates read it back and fall back to the declared costs, marked rough, only
while nothing was measured. The figures are about the machine, not a user: one file for every workspace.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass

from core.config import home
from core.files import write_json_atomic

FILE = "throughput.json"
MEMORY = 200  # photos: past measurements weigh at most this much against a new one, so the figure follows the machine
_lock = threading.Lock()  # read-modify-write of the file by this process's jobs and pages


@dataclass(frozen=True)
class Measurement:
    """Seconds per photo measured here over ``photos`` photos."""

    seconds_per_photo: float
    photos: int


def detection_key(detector: str) -> str:
    """The store's key for a detector alone (the Dataset page's face count)."""
    return f"detect:{detector}"


def embedding_key(detector: str, backbone: str) -> str:
    """The store's key for detect → align → embed with one detector and backbone (training, prediction)."""
    return f"embed:{detector}+{backbone}"


def load_key(kind: str, name: str) -> str:
    """The store's key for building one model (e.g. ``load_key("detector", "mtcnn")``: its three networks)."""
    return f"load:{kind}:{name}"


def _read() -> dict[str, dict[str, float]]:
    try:
        data = json.loads((home() / FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}  # nothing measured yet, or a damaged file: estimates say "rough" until the next measurement
    return data if isinstance(data, dict) else {}


def measured(key: str) -> Measurement | None:
    """What was measured for ``key`` on this machine, or None."""
    entry = _read().get(key)
    try:
        return Measurement(float(entry["seconds_per_photo"]), int(entry["photos"]))
    except (TypeError, KeyError, ValueError):
        return None


def load_time(key: str) -> float | None:
    """Seconds the last build of the model (a :func:`load_key`) took here, or None."""
    try:
        return float(_read()[key]["seconds"])
    except (TypeError, KeyError, ValueError):
        return None


def _update(key: str, entry: dict[str, float]) -> bool:
    """Write one entry into the store; False when the home cannot take it (the next measurement tries again)."""
    data = _read()
    data[key] = entry
    try:
        write_json_atomic(home() / FILE, data, indent=2)
    except OSError:
        return False
    return True


def record(key: str, seconds: float, photos: int) -> Measurement | None:
    """Remember that ``photos`` photos took ``seconds`` (model building excluded); returns the updated figure.

    The new figure is the photo-weighted mean of the old one (its weight capped at MEMORY photos) and this
    measurement. Nothing is recorded for zero photos; a failed write is not the caller's problem, so an
    unwritable home never breaks the work that was measured.
    """
    if photos <= 0 or seconds < 0:
        return None
    with _lock:
        old = measured(key)
        weight = min(old.photos, MEMORY) if old else 0
        per_photo = ((old.seconds_per_photo * weight if old else 0.0) + seconds) / (weight + photos)
        if not _update(key, {"seconds_per_photo": round(per_photo, 4), "photos": weight + photos}):
            return None
    return measured(key)


def record_load(key: str, seconds: float) -> None:
    """Remember how long building a model (a :func:`load_key`) took: the latest build is the figure."""
    with _lock:
        _update(key, {"seconds": round(seconds, 2)})
