"""The dataset builder (Teachable-Machine style): people, photos, then a deterministic split.

Photos are added to a pool, ``<dataset>/_pool/<person>/<sha256 prefix>.<ext>``. The
content-hash name makes re-adding the same photo harmless and keeps the order independent of
upload order. :func:`split_dataset` then lays out ``train/``, ``validation/`` and ``test/``
from the pool deterministically (seeded shuffle per person), as hard links where the file
system allows (copies otherwise). The pool is the single source of truth: re-splitting
rebuilds the splits from it, so it is idempotent and loses nothing; removing, renaming or
deleting in the pool applies the same change to the split folders. Deleting really deletes
the files (biometric data).
"""

from __future__ import annotations

import os
import random
import shutil
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from core.config import datasets_dir
from core.data.layout import POOL_DIR, SPLITS, is_junk, own_dataset_path
from core.data.names import lookalike, safe_name
from core.files import children, publish_dir, temporary_dir, write_bytes_atomic
from core.images import ImageError, content_hash, load_thumbnail, read_info

EXTENSION_BY_FORMAT = {"JPEG": ".jpg", "MPO": ".jpg", "PNG": ".png", "GIF": ".gif", "BMP": ".bmp",
                       "PPM": ".ppm", "TIFF": ".tif", "WEBP": ".webp"}


def _dataset_dir(dataset: str, *, must_exist: bool = True) -> Path:
    """The workspace's own dataset folder (never a shared one: see ``layout.own_dataset_path``)."""
    path = own_dataset_path(dataset)
    if must_exist and not path.is_dir():
        raise ValueError(f"there is no dataset called '{dataset}'.")
    return path


def _person_dir(dataset: str, person: str) -> Path:
    path = _dataset_dir(dataset) / POOL_DIR / safe_name(person)
    if not path.is_dir():
        raise ValueError(f"there is no person called '{person}' in '{dataset}'.")
    return path


def is_builder_dataset(dataset: str) -> bool:
    """True for datasets made with the builder (they have a photo pool)."""
    return (datasets_dir() / safe_name(dataset) / POOL_DIR).is_dir()


def builder_datasets() -> list[str]:
    """Names of the datasets made with the builder, sorted."""
    return sorted(p.name for p in children(datasets_dir()) if (p / POOL_DIR).is_dir() and not is_junk(p.name))


def create_dataset(dataset: str) -> Path:
    """An empty builder dataset; ValueError if the name is unsafe or taken, even by someone a moment ago."""
    path = _dataset_dir(dataset, must_exist=False)
    taken = lookalike(path.name, path.parent)
    if taken is not None:
        raise ValueError(f"a dataset called '{taken}' already exists (names differing only in case are one name).")
    with temporary_dir(path.parent, "create") as temp:
        (temp / POOL_DIR).mkdir()
        try:
            publish_dir(temp, path, None)
        except FileExistsError as exc:
            raise ValueError(f"a dataset called '{path.name}' was just created by someone else; "
                             "choose another name.") from exc
    return path


def add_person(dataset: str, person: str) -> Path:
    """A new, empty person in the pool; ValueError if the name is unsafe or taken."""
    path = _dataset_dir(dataset) / POOL_DIR / safe_name(person)
    taken = lookalike(path.name, path.parent)
    if taken is not None:
        raise ValueError(f"'{taken}' is already in '{dataset}' (names differing only in case are one name).")
    path.mkdir(parents=True)
    return path


def list_people(dataset: str) -> list[str]:
    """The people in a builder dataset's pool, sorted."""
    pool = _dataset_dir(dataset) / POOL_DIR
    return sorted(p.name for p in pool.iterdir() if p.is_dir() and not is_junk(p.name)) if pool.is_dir() else []


def list_photos(dataset: str, person: str) -> list[Path]:
    """A person's pool photos, sorted by (content-hash) name."""
    return sorted(p for p in _person_dir(dataset, person).iterdir() if p.is_file() and not is_junk(p.name))


def add_photo(dataset: str, person: str, data: bytes, filename: str = "") -> Path:
    """Validate a photo (it must decode) and store its bytes unchanged under a content-hash name.

    ValueError/ImageError (with the original file name) for unusable photos or one already in the dataset.
    """
    folder = _person_dir(dataset, person)
    label = filename or "photo"
    try:
        info = read_info(data)
        load_thumbnail(data, 32)
    except ImageError as exc:
        raise ImageError(f"{label}: {exc}") from exc
    extension = EXTENSION_BY_FORMAT.get(info.format)
    if extension is None:
        raise ImageError(f"{label}: {info.format} images are not supported; use JPEG or PNG.")
    digest = content_hash(data)[:16]
    for existing in (_dataset_dir(dataset) / POOL_DIR).glob(f"*/{digest}.*"):
        raise ValueError(f"{label}: this photo is already in the dataset (under '{existing.parent.name}').")
    path = folder / f"{digest}{extension}"
    write_bytes_atomic(path, data)
    return path


@dataclass
class AddReport:
    """Result of adding several photos: the stored paths and, per refused file, why."""

    added: list[Path] = field(default_factory=list)
    rejected: list[tuple[str, str]] = field(default_factory=list)  # (original file name, message)


def add_photos(dataset: str, person: str, files: Iterable[tuple[str, bytes]]) -> AddReport:
    """Add many (file name, bytes) photos; one bad photo does not stop the others."""
    _person_dir(dataset, person)
    report = AddReport()
    for filename, data in files:
        try:
            report.added.append(add_photo(dataset, person, data, filename))
        except ValueError as exc:
            report.rejected.append((filename, str(exc)))
    return report


def _split_folders(dataset: Path, person: str) -> list[Path]:
    return [dataset / split / person for split in SPLITS if (dataset / split / person).is_dir()]


def remove_photo(dataset: str, person: str, filename: str) -> None:
    """Delete one photo from the pool and from the split folders."""
    folder = _person_dir(dataset, person)
    if Path(filename).name != filename or not (folder / filename).is_file():
        raise ValueError(f"'{filename}' is not a photo of '{person}'.")
    (folder / filename).unlink()
    for split_folder in _split_folders(_dataset_dir(dataset), folder.name):
        (split_folder / filename).unlink(missing_ok=True)


def rename_person(dataset: str, old: str, new: str) -> None:
    """Rename a person in the pool and in every split folder."""
    source = _person_dir(dataset, old)
    new = safe_name(new)
    root = _dataset_dir(dataset)
    taken = lookalike(new, source.parent)
    if taken not in (None, source.name):  # the person themself: a change of case is a rename
        raise ValueError(f"'{taken}' is already in '{dataset}' (names differing only in case are one name).")
    for folder in _split_folders(root, source.name):
        os.replace(folder, folder.parent / new)
    os.replace(source, source.parent / new)


def delete_person(dataset: str, person: str) -> None:
    """Delete a person and all their photos (pool and splits)."""
    folder = _person_dir(dataset, person)
    for split_folder in _split_folders(_dataset_dir(dataset), folder.name):
        shutil.rmtree(split_folder)
    shutil.rmtree(folder)


def delete_dataset(dataset: str) -> None:
    """Delete a dataset of the FaceLab home with every photo in it."""
    shutil.rmtree(_dataset_dir(dataset))


def split_counts(n: int, ratios: tuple[float, float, float]) -> tuple[int, int, int]:
    """How many of ``n`` photos go to train, validation, test.

    Largest-remainder rounding of the ratios, then every split with a non-zero ratio gets at least
    one photo while photos remain, in priority order train, validation, test.
    """
    exact = [n * r for r in ratios]
    counts = [int(x) for x in exact]
    for i in sorted(range(3), key=lambda i: -(exact[i] - counts[i]))[: n - sum(counts)]:
        counts[i] += 1
    for i in range(3):
        if counts[i] == 0 and ratios[i] > 0:
            donor = max(range(3), key=lambda j: counts[j])
            if counts[donor] > 1:
                counts[donor] -= 1
                counts[i] += 1
    return counts[0], counts[1], counts[2]


def _place(source: Path, destination: Path) -> None:
    """Hard-link a pool photo into a split (no second copy of the data), copying where links are impossible."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, destination)
    except OSError:
        shutil.copy2(source, destination)


def split_dataset(dataset: str, ratios: tuple[float, float, float] = (0.7, 0.15, 0.15),
                  seed: int = 0) -> dict[str, dict[str, int]]:
    """Lay out train/validation/test from the pool, deterministically for a given pool, ratios and seed.

    Returns ``{split: {person: n}}``. The splits are rebuilt in a temporary folder and swapped in.
    """
    if len(ratios) != 3 or any(r < 0 for r in ratios) or ratios[0] <= 0:
        raise ValueError("ratios must be three non-negative numbers (train, validation, test) with train > 0.")
    total = float(sum(ratios))
    shares = (ratios[0] / total, ratios[1] / total, ratios[2] / total)
    root = _dataset_dir(dataset)
    people = list_people(dataset)
    if not people:
        raise ValueError(f"'{dataset}' has no people yet; add people and photos first.")
    layout: dict[str, dict[str, int]] = {split: {} for split in SPLITS}
    with temporary_dir(root, "split") as staging:
        for person in people:
            photos = list_photos(dataset, person)
            random.Random(f"{seed}:{person}").shuffle(photos)
            start = 0
            for split, n in zip(SPLITS, split_counts(len(photos), shares)):
                for photo in photos[start:start + n]:
                    _place(photo, staging / split / person / photo.name)
                start += n
                if n:
                    layout[split][person] = n
        for split in SPLITS:
            (staging / split).mkdir(exist_ok=True)
            if (root / split).exists():
                os.replace(root / split, staging / f"old-{split}")
            os.replace(staging / split, root / split)
    return layout
