"""Where FaceLab keeps its files and the limits it enforces.

Everything FaceLab writes (datasets, runs, caches, weights) lives under one home
folder so a teacher can see, back up or delete it in one place. The home is
``$FACELAB_HOME`` when set, else ``./facelab_home`` in the working directory.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


def _env_int(name: str, default: int) -> int:
    """Read a positive integer setting from the environment, falling back on bad values."""
    try:
        value = int(os.environ.get(name, default))
    except ValueError:
        return default
    return value if value > 0 else default


def home() -> Path:
    """The FaceLab home folder, created on demand."""
    path = Path(os.environ.get("FACELAB_HOME", "facelab_home")).expanduser().resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


def _sub(name: str) -> Path:
    path = home() / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def datasets_dir() -> Path:
    """Datasets built or imported through FaceLab."""
    return _sub("datasets")


def runs_dir() -> Path:
    """Saved training runs."""
    return _sub("runs")


def cache_dir() -> Path:
    """The embedding cache and calibrations."""
    return _sub("cache")


def weights_dir() -> Path:
    """Downloaded model weights."""
    return _sub("weights")


@dataclass(frozen=True)
class Limits:
    """Bounds on untrusted input; each can be overridden by ``FACELAB_<FIELD>`` (e.g. FACELAB_MAX_ZIP_FILES)."""

    max_zip_files: int = 20_000
    max_zip_bytes: int = 2 * 1024**3
    max_image_pixels: int = 60_000_000
    max_image_bytes: int = 50 * 1024**2
    max_name_length: int = 64


def limits() -> Limits:
    """Current limits (read from the environment each call so tests can change them)."""
    base = Limits()
    return Limits(**{
        field: _env_int(f"FACELAB_{field.upper()}", getattr(base, field))
        for field in base.__dataclass_fields__
    })


def allow_server_paths() -> bool:
    """Whether browser users may open arbitrary folders on the server.

    Off by default: on a classroom server a student must not browse the teacher's disk.
    """
    return os.environ.get("FACELAB_ALLOW_SERVER_PATHS", "").lower() in {"1", "true", "yes"}


def extra_dataset_roots() -> list[Path]:
    """Folders of datasets the server's owner exposes to every user (``FACELAB_DATASET_DIRS``, os.pathsep-separated).

    Each sub-folder of such a root that looks like a dataset is offered beside the home's own datasets.
    """
    raw = os.environ.get("FACELAB_DATASET_DIRS", "")
    return [Path(part).expanduser().resolve() for part in raw.split(os.pathsep) if part.strip()]
