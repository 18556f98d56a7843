"""Shared fixtures: an isolated FaceLab home per test, the shared datasets, synthetic images."""

from __future__ import annotations

import io
import os
import sys
from pathlib import Path

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


@pytest.fixture(autouse=True)
def facelab_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test writes into its own FaceLab home, never into the repository."""
    home = tmp_path / "facelab_home"
    monkeypatch.setenv("FACELAB_HOME", str(home))
    return home


@pytest.fixture(scope="session")
def five_celebrity() -> Path:
    return shared_dataset("five_celebrity_faces")


def image_bytes(array: np.ndarray, fmt: str = "PNG") -> bytes:
    """Encode an array as image file bytes."""
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt)
    return buffer.getvalue()


def noise_image(height: int = 64, width: int = 48, seed: int = 0) -> np.ndarray:
    """A random RGB image (distinct per seed, so never a duplicate of another)."""
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
