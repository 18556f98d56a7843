"""Datasets on disk: finding them, scanning their layout and auditing their photos.

A dataset is a folder with ``train/``, ``validation/`` (or ``val/``) and ``test/``
splits holding one sub-folder per person. Scanning only lists files; the audit
reads image headers and (optionally) small thumbnails to find what would spoil
training: broken files, people missing from a split, too few photos, a single
class, and duplicates — byte-identical (sha256) or near-identical (256-bit
dHash) — especially across splits, where they leak test photos into training.

Nothing here imports TensorFlow: the Dataset page and ``python -m core scan`` must
start fast. Face statistics per photo (0/1/many faces) come from the face pipeline
later; the audit reserves the ``faces`` column for them.
"""

from __future__ import annotations

import hashlib
import os
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pandas as pd

from core.config import datasets_dir, extra_dataset_roots, limits
from core.images import ImageError, content_hash, is_image_name, load_thumbnail, read_info

SPLITS = ("train", "validation", "test")
SPLIT_ALIASES = {"train": "train", "validation": "validation", "val": "validation", "test": "test"}
POOL_DIR = "_pool"  # the builder's photo pool (core.importer); not a split
JUNK_NAMES = frozenset({"__macosx", "thumbs.db", "desktop.ini"})
DHASH_SIDE = 16  # dHash grid: 16×16 = 256 bits. 64 bits flags dozens of distinct tight face crops per dataset
NEAR_DUPLICATE_BITS = 10  # max Hamming distance (of 256) for "near-identical": catches resized/re-encoded copies
MIN_TRAIN_PHOTOS = 2
FACES_COLUMN = "faces"  # faces found per photo (0/1/many); None until the face pipeline fills it in

T = TypeVar("T")


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


def _problem(kind: str, severity: str, path: str, message: str) -> dict[str, str]:
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
        dataset.problems.append(_problem("unreadable", "error", dataset.relative(path), f"cannot be read ({exc.strerror})."))
        return
    record = FileRecord(split, person, path, size)
    dataset.files.append(record)
    if not record.is_image:
        dataset.problems.append(_problem(
            "not_image", "warning", dataset.relative(path), "not an image file (ignored for training)."))


def _scan_split(dataset: Dataset, split: str, folder: Path) -> None:
    entries = sorted(p for p in folder.iterdir() if not is_junk(p.name))
    people = [p for p in entries if p.is_dir()]
    loose = [p for p in entries if not p.is_dir()]
    dataset.people_folders[split] = [p.name for p in people]
    for person in people:
        files = _walk_files(person)
        if not files:
            dataset.problems.append(_problem(
                "empty_folder", "warning", dataset.relative(person), f"person folder '{person.name}' has no files."))
        for path in files:
            _record(dataset, split, person.name, path)
    for path in loose:
        _record(dataset, split, None, path)
        if is_image_name(path.name) and (split != "test" or people):
            dataset.problems.append(_problem(
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
            dataset.problems.append(_problem(
                "outside_splits", "info", entry.name, "not inside train/, validation/ or test/ (ignored)."))
        elif split in dataset.splits:
            dataset.problems.append(_problem(
                "duplicate_split", "error", entry.name,
                f"a second {split} folder beside {dataset.splits[split].name}/ (ignored); merge them."))
        else:
            dataset.splits[split] = entry
    dataset.splits = {split: dataset.splits[split] for split in SPLITS if split in dataset.splits}
    for split, folder in dataset.splits.items():
        _scan_split(dataset, split, folder)
    return dataset


@dataclass
class Audit:
    """The audit of a dataset: tables for the page, plain data for the CLI's JSON."""

    dataset: Dataset
    images: pd.DataFrame  # one row per image file: split, person, path, size, width, height, mode, format, …
    problems: list[dict[str, str]]

    @property
    def usable(self) -> pd.DataFrame:
        """Readable, labelled images: what training and evaluation will see."""
        return self.images[self.images["ok"] & self.images["person"].notna()]

    @property
    def people(self) -> list[str]:
        return sorted(self.usable["person"].unique())

    @property
    def counts(self) -> dict[str, dict[str, int]]:
        """``{split: {person: usable images}}`` for the splits present."""
        counts: dict[str, dict[str, int]] = {split: {} for split in SPLITS if split in self.dataset.splits}
        for (split, person), n in self.usable.groupby(["split", "person"]).size().items():
            counts[split][person] = int(n)
        return counts

    @property
    def table(self) -> pd.DataFrame:
        """People × split image counts (zeros where a person is missing), people sorted."""
        columns = [split for split in SPLITS if split in self.dataset.splits]
        table = pd.DataFrame(self.counts, index=self.people, columns=columns).fillna(0).astype(int)
        table.index.name = "person"
        return table

    @property
    def per_person(self) -> pd.Series:
        """Usable images per person over all splits."""
        return self.usable.groupby("person").size().reindex(self.people).astype(int)

    @property
    def formats(self) -> pd.DataFrame:
        """How many readable images have each (format, mode) pair: shows greyscale, RGBA, 16-bit…"""
        ok = self.images[self.images["ok"]]
        return ok.groupby(["format", "mode"]).size().rename("images").reset_index()

    def totals(self) -> dict[str, Any]:
        """Headline numbers: images per split, people, files, unlabelled photos, problems by severity."""
        usable = self.usable
        severities = defaultdict(int)
        for problem in self.problems:
            severities[problem["severity"]] += 1
        return {
            "people": len(self.people),
            "images": len(usable),
            "files": len(self.dataset.files),
            "per_split": {split: int((usable["split"] == split).sum()) for split in self.counts},
            "unlabelled": int((self.images["ok"] & self.images["person"].isna()).sum()),
            "unreadable": int((~self.images["ok"]).sum()),
            "exif_rotated": int((self.images["exif_orientation"] > 1).sum()),
            "problems": dict(severities),
        }

    def problems_frame(self) -> pd.DataFrame:
        """The problems as a table, most severe first."""
        order = {"error": 0, "warning": 1, "info": 2}
        frame = pd.DataFrame(self.problems, columns=["severity", "kind", "path", "message"])
        return frame.sort_values("severity", key=lambda column: column.map(order), kind="stable")

    def to_json(self) -> dict[str, Any]:
        """Plain data for ``python -m core scan --json``."""
        return {
            "dataset": str(self.dataset.root),
            "fingerprint": fingerprint(self.dataset),
            "people": self.people,
            "counts": self.counts,
            "totals": self.totals(),
            "formats": self.formats.to_dict(orient="records"),
            "problems": self.problems,
        }


def dhash(thumbnail: np.ndarray) -> str:
    """Difference hash (hex): signs of horizontal gradients of a small greyscale copy.

    Survives re-encoding and resizing, so a resized copy of a photo keeps (nearly) the same hash.
    """
    from PIL import Image

    grey = Image.fromarray(thumbnail).convert("L").resize((DHASH_SIDE + 1, DHASH_SIDE), Image.Resampling.BILINEAR)
    pixels = np.asarray(grey, dtype=np.int16)
    return np.packbits(pixels[:, 1:] > pixels[:, :-1]).tobytes().hex()


def _inspect(record: FileRecord, with_hashes: bool) -> dict[str, Any]:
    """Header facts (and hashes) of one image; ``error`` holds the reason when it cannot be used."""
    row: dict[str, Any] = {
        "split": record.split, "person": record.person, "path": record.path, "size": record.size,
        "width": None, "height": None, "mode": None, "format": None, "exif_orientation": 1,
        "sha256": None, "dhash": None, "ok": False, "error": None, FACES_COLUMN: None,
    }
    try:
        if record.size > limits().max_image_bytes:
            raise ImageError(f"file is {record.size / 1e6:.0f} MB, above the "
                             f"{limits().max_image_bytes / 1e6:.0f} MB limit.")
        data = record.path.read_bytes()
        info = read_info(data)
        row.update(width=info.width, height=info.height, mode=info.mode, format=info.format,
                   exif_orientation=info.exif_orientation)
        if with_hashes:
            row.update(sha256=content_hash(data), dhash=dhash(load_thumbnail(data, 64)))
        row["ok"] = True
    except ImageError as exc:
        row["error"] = str(exc)
    except OSError as exc:
        row["error"] = f"cannot be read ({exc.strerror or exc})."
    return row


def _near_pairs(hashes: np.ndarray, max_bits: int) -> list[tuple[int, int, int]]:
    """(i, j, distance) for i < j whose hashes (rows of bytes) differ in at most ``max_bits`` bits.

    Chunked so memory stays bounded on datasets of tens of thousands of photos.
    """
    pairs: list[tuple[int, int, int]] = []
    chunk = 64
    for start in range(0, len(hashes), chunk):
        distance = np.bitwise_count(hashes[start:start + chunk, None, :] ^ hashes[None, :, :]).sum(axis=2)
        rows, cols = np.nonzero(distance <= max_bits)
        pairs.extend((start + i, j, int(distance[i, j])) for i, j in zip(rows.tolist(), cols.tolist()) if start + i < j)
    return pairs


def _duplicate_problems(dataset: Dataset, images: pd.DataFrame) -> list[dict[str, str]]:
    """Byte-identical groups and near-identical pairs; across splits they are leakage (an error)."""
    problems = []
    ok = images[images["ok"] & images["sha256"].notna()]
    exact: set[frozenset[int]] = set()
    for _, group in ok.groupby("sha256"):
        if len(group) < 2:
            continue
        exact.update(frozenset((a, b)) for a in group.index for b in group.index if a != b)
        names = [dataset.relative(p) for p in group["path"]]
        across = group["split"].nunique() > 1
        people = {p for p in group["person"] if p is not None}
        note = f" under different people ({', '.join(sorted(people))})" if len(people) > 1 else ""
        problems.append(_problem(
            "leakage" if across else "duplicate", "error" if across else "warning", names[0],
            f"byte-identical files{note}{' across splits' if across else ''}: {', '.join(names)}."))
    indexes = ok.index.to_numpy()
    hashes = np.array([np.frombuffer(bytes.fromhex(h), dtype=np.uint8) for h in ok["dhash"]],
                      dtype=np.uint8).reshape(len(ok), DHASH_SIDE * DHASH_SIDE // 8)
    for i, j, distance in _near_pairs(hashes, NEAR_DUPLICATE_BITS):
        a, b = int(indexes[i]), int(indexes[j])
        if frozenset((a, b)) in exact:
            continue
        first, second = images.loc[a], images.loc[b]
        across = first["split"] != second["split"]
        problems.append(_problem(
            "near_leakage" if across else "near_duplicate", "error" if across else "info",
            dataset.relative(first["path"]),
            f"near-identical to {dataset.relative(second['path'])} (dHash distance {distance})"
            f"{' in another split' if across else ''}."))
    return problems


def _layout_problems(dataset: Dataset, audit: Audit) -> list[dict[str, str]]:
    """Missing splits, people missing from a split, too few training photos, a single class."""
    problems = []
    table = audit.table
    if "train" not in dataset.splits:
        problems.append(_problem("no_train", "error", "", "no train/ folder: nothing to train on."))
    for split in ("validation", "test"):
        if split not in dataset.splits:
            problems.append(_problem("missing_split", "info", "", f"no {split}/ folder."))
    unlabelled_test = "test" in dataset.splits and not dataset.people_folders.get("test")
    for person in table.index:
        for split in table.columns:
            if table.at[person, split] == 0 and not (split == "test" and unlabelled_test):
                problems.append(_problem("missing_from_split", "warning", f"{split}/{person}",
                                         f"'{person}' has no usable photo in {split}/."))
    if "train" in table.columns:
        for person, n in table["train"].items():
            if 0 < n < MIN_TRAIN_PHOTOS:
                problems.append(_problem("too_few_train", "warning", f"train/{person}",
                                         f"'{person}' has only {n} training photo; at least {MIN_TRAIN_PHOTOS} are needed."))
        classes = int((table["train"] > 0).sum())
        if classes < 2:
            problems.append(_problem("one_class", "error", "train",
                                     f"train/ has {classes} person with photos: a classifier needs at least 2."))
    return problems


def audit(dataset: Dataset, *, with_hashes: bool = True) -> Audit:
    """Read every image's header (and, with hashes, its sha256 and dHash) and list the problems found."""
    rows = [_inspect(record, with_hashes) for record in dataset.images]
    columns = ["split", "person", "path", "size", "width", "height", "mode", "format", "exif_orientation",
               "sha256", "dhash", "ok", "error", FACES_COLUMN]
    images = pd.DataFrame(rows, columns=columns)
    images["ok"] = images["ok"].astype(bool)
    images["person"] = images["person"].astype(object)
    problems = list(dataset.problems)
    problems += [_problem("unreadable", "error", dataset.relative(row.path), row.error)
                 for row in images[~images["ok"]].itertuples()]
    result = Audit(dataset=dataset, images=images, problems=problems)
    result.problems += _layout_problems(dataset, result)
    if with_hashes:
        result.problems += _duplicate_problems(dataset, images)
    return result


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


def list_datasets() -> list[DatasetRef]:
    """Datasets in the FaceLab home (all of them, even empty builder ones), then those in the extra roots."""
    refs = [DatasetRef(p.name, p, "home") for p in sorted(datasets_dir().iterdir())
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


def page_count(n_items: int, per_page: int) -> int:
    """Number of pages needed for ``n_items`` (at least 1, so an empty gallery still has page 1)."""
    if per_page < 1:
        raise ValueError("per_page must be at least 1.")
    return max(1, -(-n_items // per_page))


def page(items: Sequence[T], page: int, per_page: int) -> list[T]:
    """The items on 1-based ``page``; out-of-range pages are clamped so a shrinking gallery never shows nothing."""
    number = min(max(1, page), page_count(len(items), per_page))
    start = (number - 1) * per_page
    return list(items[start:start + per_page])
