"""The dataset audit: what would spoil training, found before training.

The audit reads image headers and (optionally) small thumbnails to find broken
files, people missing from a split, too few photos, a single class, and duplicates
— byte-identical (sha256) or near-identical (256-bit dHash) — especially across
splits, where they leak test photos into training. Face statistics per photo
(0/1/many faces) come from the face pipeline later; the audit reserves the
``faces`` column for them.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from core.data.layout import SPLITS, Dataset, FileRecord, fingerprint, problem
from core.images import ImageError, content_hash, read_file, read_info, read_info_and_thumbnail

DHASH_SIDE = 16  # dHash grid: 16×16 = 256 bits. 64 bits flags dozens of distinct tight face crops per dataset


NEAR_DUPLICATE_BITS = 10  # max Hamming distance (of 256) for "near-identical": catches resized/re-encoded copies


MIN_TRAIN_PHOTOS = 2


FACES_COLUMN = "faces"  # faces found per photo (0/1/many); None until the face pipeline fills it in


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
        for item in self.problems:
            severities[item["severity"]] += 1
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
        data = read_file(record.path)  # a regular file, never read past the byte limit (a FIFO would hang the scan)
        if with_hashes:
            info, thumbnail = read_info_and_thumbnail(data, 64)
            row.update(sha256=content_hash(data), dhash=dhash(thumbnail))
        else:
            info = read_info(data)
        row.update(width=info.width, height=info.height, mode=info.mode, format=info.format,
                   exif_orientation=info.exif_orientation)
        row["ok"] = True
    except ImageError as exc:
        row["error"] = str(exc).removeprefix(f"{record.path.name}: ")  # the problem list names the file already
    return row


def _near_pairs(hashes: np.ndarray, max_bits: int) -> list[tuple[int, int, int]]:
    """(i, j, distance) for i < j whose hashes (rows of bytes) differ in at most ``max_bits`` bits, by (i, j).

    Multi-index hashing, not all pairs (51,200 photos took 93 s that way): the bits are dealt into
    ``max_bits + 1`` chunks, and hashes within ``max_bits`` differ in at most ``max_bits`` chunks, so they agree
    exactly on one at least (pigeonhole). Only hashes that share a chunk's value are compared, with the exact
    distance, so the pairs are exactly those of an all-pairs search. Chunks take every (max_bits + 1)-th bit,
    not a run of bits: a run covers one band of the picture, which a plain backdrop makes alike in most photos.
    """
    count, bits = hashes.shape[0], hashes.shape[1] * 8
    if not 0 <= max_bits < bits:
        raise ValueError(f"the near-duplicate distance must be between 0 and {bits - 1} bits, got {max_bits}")
    unpacked = np.unpackbits(hashes, axis=1)
    found = [np.zeros(0, np.int64)]
    for chunk in range(max_bits + 1):
        values = np.unique(np.packbits(unpacked[:, chunk::max_bits + 1], axis=1), axis=0, return_inverse=True)[1]
        order = np.argsort(values.ravel())
        ordered = values.ravel()[order]
        # Equal values are adjacent once sorted: pair each position with the one `step` further on while
        # they agree; a position whose value differs `step` on differs further on too, so it drops out.
        alive, step = np.arange(count), 1
        while alive.size:
            alive = alive[alive + step < count]
            alive = alive[ordered[alive] == ordered[alive + step]]
            first, second = order[alive], order[alive + step]
            low, high = np.minimum(first, second), np.maximum(first, second)
            near = np.bitwise_count(hashes[low] ^ hashes[high]).sum(axis=1) <= max_bits
            found.append(low[near].astype(np.int64) * count + high[near])
            step += 1
    keys = np.unique(np.concatenate(found))
    low, high = np.divmod(keys, count)  # keys is empty when count is 0
    distances = np.bitwise_count(hashes[low] ^ hashes[high]).sum(axis=1)
    return list(zip(low.tolist(), high.tolist(), distances.tolist()))


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
        problems.append(problem(
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
        problems.append(problem(
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
        problems.append(problem("no_train", "error", "", "no train/ folder: nothing to train on."))
    for split in ("validation", "test"):
        if split not in dataset.splits:
            problems.append(problem("missing_split", "info", "", f"no {split}/ folder."))
    unlabelled_test = "test" in dataset.splits and not dataset.people_folders.get("test")
    for person in table.index:
        for split in table.columns:
            if table.at[person, split] == 0 and not (split == "test" and unlabelled_test):
                problems.append(problem("missing_from_split", "warning", f"{split}/{person}",
                                         f"'{person}' has no usable photo in {split}/."))
    if "train" in table.columns:
        for person, n in table["train"].items():
            if 0 < n < MIN_TRAIN_PHOTOS:
                problems.append(problem("too_few_train", "warning", f"train/{person}",
                                         f"'{person}' has only {n} training photo; at least {MIN_TRAIN_PHOTOS} are needed."))
        classes = int((table["train"] > 0).sum())
        if classes < 2:
            problems.append(problem("one_class", "error", "train",
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
    problems += [problem("unreadable", "error", dataset.relative(row.path), row.error)
                 for row in images[~images["ok"]].itertuples()]
    result = Audit(dataset=dataset, images=images, problems=problems)
    result.problems += _layout_problems(dataset, result)
    if with_hashes:
        result.problems += _duplicate_problems(dataset, images)
    return result


def face_classes(counts: Sequence[int | None]) -> list[str]:
    """Faces found per photo as the audit's classes: "0" cannot train, "many" uses the face the face choice picks
    (which may be someone else: worth a look), "unreadable"."""
    return ["unreadable" if c is None else "0" if c == 0 else "1" if c == 1 else "many" for c in counts]


def with_face_counts(result: Audit, counts: Sequence[int | None]) -> pd.DataFrame:
    """The audit's photos with their face class (FACES_COLUMN) and dataset-relative path ("photo")."""
    if len(counts) != len(result.images):
        raise ValueError(f"{len(counts)} face counts for {len(result.images)} photos.")
    frame = result.images.assign(**{FACES_COLUMN: face_classes(counts)})
    frame["photo"] = [result.dataset.relative(p) for p in frame["path"]]
    return frame


def several_faces(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows of a :func:`with_face_counts` frame whose photo shows several faces: only one of them trains, and
    when the subject is not the one chosen the run learns the wrong person."""
    return frame[frame[FACES_COLUMN] == "many"]


NOTE_SEVERITY = "info"  # a note: worth knowing (a missing test/ folder, a look-alike photo), nothing to fix


def problems_and_notes(result: Audit) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The problems table cut in two, problems to act on (errors, warnings) and notes, so the page's headline
    number and its "Problems (n)" list count the same rows."""
    frame = result.problems_frame()
    is_note = frame["severity"] == NOTE_SEVERITY
    return frame[~is_note].reset_index(drop=True), frame[is_note].reset_index(drop=True)


def problem_count(result: Audit) -> int:
    """Problems worth acting on (errors and warnings; notes are left out): the rows of the page's problem list."""
    return len(problems_and_notes(result)[0])
