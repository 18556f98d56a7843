"""Datasets on disk: finding them and scanning their layout.

A dataset is a folder with ``train/``, ``validation/`` (or ``val/``) and ``test/``
splits holding one sub-folder per person. Scanning only lists files (and notes
layout problems such as loose photos); reading the photos is the audit's job.

Nothing here imports TensorFlow: the Dataset page and ``python -m core scan`` must
start fast.
"""

from __future__ import annotations

import hashlib
import os
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from core.config import allow_server_paths, datasets_dir, extra_dataset_roots, serving_browsers
from core.data.names import name_key, safe_name
from core.files import children
from core.images import is_image_name, load_thumbnail

SPLITS = ("train", "validation", "test")


SPLIT_ALIASES = {"train": "train", "validation": "validation", "val": "validation", "test": "test"}


POOL_DIR = "_pool"  # the builder's photo pool (core.data.builder); not a split


JUNK_NAMES = frozenset({"__macosx", "thumbs.db", "desktop.ini"})


def is_junk(name: str) -> bool:
    """Hidden and OS-generated files (.DS_Store, __MACOSX, Thumbs.db) are not part of any dataset."""
    return name.startswith(".") or name.lower() in JUNK_NAMES


@dataclass(frozen=True)
class FileRecord:
    """One file found in a split; ``person`` is None for unlabelled photos."""

    split: str
    person: str | None
    path: Path
    size: int

    @property
    def is_image(self) -> bool:
        return is_image_name(self.path.name)


@dataclass
class Dataset:
    """What :func:`scan` found: every file in the splits plus layout problems."""

    root: Path
    splits: dict[str, Path]
    files: list[FileRecord]
    problems: list[dict[str, str]] = field(default_factory=list)
    people_folders: dict[str, list[str]] = field(default_factory=dict)  # split → person folders, even empty

    @property
    def name(self) -> str:
        return self.root.name

    @property
    def images(self) -> list[FileRecord]:
        """Files with an image extension (readability is checked by :func:`audit`)."""
        return [record for record in self.files if record.is_image]

    def relative(self, path: Path) -> str:
        """A path as shown to people: relative to the dataset, with forward slashes."""
        return path.relative_to(self.root).as_posix()


def problem(kind: str, severity: str, path: str, message: str) -> dict[str, str]:
    return {"kind": kind, "severity": severity, "path": path, "message": message}


def _walk_files(folder: Path) -> list[Path]:
    """Every non-junk file below ``folder``, sorted, skipping junk folders."""
    found = []
    for current, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not is_junk(d))
        found.extend(Path(current) / name for name in sorted(files) if not is_junk(name))
    return found


def _record(dataset: Dataset, split: str, person: str | None, path: Path) -> None:
    try:
        size = path.stat().st_size
    except OSError as exc:
        dataset.problems.append(problem("unreadable", "error", dataset.relative(path), f"cannot be read ({exc.strerror})."))
        return
    record = FileRecord(split, person, path, size)
    dataset.files.append(record)
    if not record.is_image:
        dataset.problems.append(problem(
            "not_image", "warning", dataset.relative(path), "not an image file (ignored for training)."))


def _person_label(dataset: Dataset, person: Path, seen: dict[str, tuple[str, Path]]) -> str:
    """A person folder's label: its name in NFC, trimmed. A folder whose name matches one met before up to
    case, spaces and accent encoding (``name_key``) takes that one's label, with a problem saying so: one
    person is never shown, trained or scored as two look-alike people."""
    label = unicodedata.normalize("NFC", person.name).strip() or person.name
    label, first = seen.setdefault(name_key(person.name), (label, person))
    if first.name != person.name:
        dataset.problems.append(problem(
            "lookalike_people", "warning", dataset.relative(person),
            f"person folders {dataset.relative(first)}/ and {dataset.relative(person)}/ are one name but for case, "
            f"spaces or how accents are encoded ({first.name!a} and {person.name!a}): counted as one person, "
            f"'{label}'; give the folders one spelling."))
    return label


def _scan_split(dataset: Dataset, split: str, folder: Path, labels: dict[str, tuple[str, Path]]) -> None:
    entries = sorted(p for p in folder.iterdir() if not is_junk(p.name))
    people = [p for p in entries if p.is_dir()]
    loose = [p for p in entries if not p.is_dir()]
    dataset.people_folders[split] = [p.name for p in people]
    for person in people:
        files = _walk_files(person)
        if not files:
            dataset.problems.append(problem(
                "empty_folder", "warning", dataset.relative(person), f"person folder '{person.name}' has no files."))
        label = _person_label(dataset, person, labels)
        for path in files:
            _record(dataset, split, label, path)
    for path in loose:
        _record(dataset, split, None, path)
        if is_image_name(path.name) and (split != "test" or people):
            dataset.problems.append(problem(
                "unlabelled", "warning", dataset.relative(path),
                f"photo directly in {split}/ rather than in a person folder, so it has no label."))


def scan(root: Path | str) -> Dataset:
    """List every file of a dataset folder by split and person (no image is opened).

    A ``test/`` folder holding only loose photos is an unlabelled test set (person None).
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise ValueError(f"dataset folder not found: {root}")
    root = root.resolve()
    dataset = Dataset(root=root, splits={}, files=[])
    for entry in sorted(root.iterdir()):
        if is_junk(entry.name) or entry.name == POOL_DIR:
            continue
        split = SPLIT_ALIASES.get(entry.name.lower()) if entry.is_dir() else None
        if split is None:
            dataset.problems.append(problem(
                "outside_splits", "info", entry.name, "not inside train/, validation/ or test/ (ignored)."))
        elif split in dataset.splits:
            dataset.problems.append(problem(
                "duplicate_split", "error", entry.name,
                f"a second {split} folder beside {dataset.splits[split].name}/ (ignored); merge them."))
        else:
            dataset.splits[split] = entry
    dataset.splits = {split: dataset.splits[split] for split in SPLITS if split in dataset.splits}
    labels: dict[str, tuple[str, Path]] = {}  # name_key → (label, first folder): one person across splits
    for split, folder in dataset.splits.items():
        _scan_split(dataset, split, folder, labels)
    return dataset


def fingerprint(dataset: Dataset) -> str:
    """Identity of a dataset's contents (relative paths, sizes, modification times) to key caches and runs."""
    digest = hashlib.sha256()
    for record in sorted(dataset.files, key=lambda r: r.path):
        try:
            mtime = record.path.stat().st_mtime_ns
        except OSError:
            mtime = -1
        digest.update(f"{dataset.relative(record.path)}\0{record.size}\0{mtime}\n".encode())
    return digest.hexdigest()[:16]


@dataclass(frozen=True)
class DatasetRef:
    """A dataset offered to users: ``source`` is "home" or the extra root it was found in."""

    name: str
    path: Path
    source: str

    @property
    def label(self) -> str:
        return self.name if self.source == "home" else f"{self.name} ({self.source})"


def looks_like_dataset(path: Path) -> bool:
    """A folder with a train/ or test/ split."""
    return path.is_dir() and any((path / split).is_dir() for split in ("train", "test"))


def _inside(path: Path, roots: list[Path]) -> bool:
    """Whether ``path`` (links followed) is one of ``roots`` or lies below one."""
    resolved = path.resolve()
    return any(resolved.is_relative_to(root.resolve()) for root in roots)


def is_shared(path: Path) -> bool:
    """Whether ``path`` lies in a folder the server's owner exposes (``FACELAB_DATASET_DIRS``): read-only for all."""
    return _inside(path, extra_dataset_roots())


def own_dataset_path(name: str) -> Path:
    """Where the workspace's dataset ``name`` lives or will live: the only folders the builder and the zip
    import write to, rename in or delete. ValueError for an unsafe name, or when that folder is (or, through
    a link, leads) into a shared dataset folder."""
    path = datasets_dir() / safe_name(name)
    if is_shared(path):
        raise ValueError(f"'{path.name}' is in a folder the server's owner shares with everyone: it is read-only.")
    return path


def may_open(path: Path) -> bool:
    """Whether ``path`` may be opened. In a process serving browsers: a dataset of the user's workspace, one the
    server's owner exposes, or any folder when the owner allows server paths (``FACELAB_ALLOW_SERVER_PATHS``).
    Elsewhere (the CLI, notebooks) the server's owner is the user: anything."""
    return (not serving_browsers() or allow_server_paths()
            or _inside(path, [datasets_dir(), *extra_dataset_roots()]))


def list_datasets() -> list[DatasetRef]:
    """The current workspace's datasets (all of them, even empty builder ones), then those in the extra roots."""
    refs = [DatasetRef(p.name, p, "home") for p in sorted(children(datasets_dir()))
            if p.is_dir() and not is_junk(p.name)]
    for root in extra_dataset_roots():
        if root.is_dir():
            refs += [DatasetRef(p.name, p, str(root)) for p in sorted(root.iterdir())
                     if not is_junk(p.name) and looks_like_dataset(p)]
    return refs


def resolve(name_or_path: str) -> Path:
    """A dataset folder given as a path, or as the name of a dataset from :func:`list_datasets`."""
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path.resolve()
    for ref in list_datasets():
        if ref.name == name_or_path:
            return ref.path
    raise ValueError(f"dataset folder not found: {name_or_path} (give a folder, or one of the FaceLab datasets)")


def thumbnail(path: Path | str, size: int) -> np.ndarray:
    """An EXIF-upright RGB thumbnail whose longer side is at most ``size`` pixels."""
    return load_thumbnail(path, size)
