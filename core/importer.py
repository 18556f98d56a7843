"""Getting photos into FaceLab: zip imports and the dataset builder.

Everything here handles untrusted input (uploads from a browser), so names are
validated by :func:`safe_name`, every photo is decoded by ``core.images`` before it
is kept, and nothing is ever half-written:

* **Zip import** extracts into a hidden temporary folder inside the datasets
  folder, checks every entry (no traversal, absolute paths, links, nested
  archives, encryption; file count and byte limits counted while extracting), and
  only then moves the folder into place with ``os.replace``. A refused upload
  leaves nothing behind.
* **Builder** (Teachable-Machine style): photos are added to a pool,
  ``<dataset>/_pool/<person>/<sha256 prefix>.<ext>``. The content-hash name makes
  re-adding the same photo harmless and keeps the order independent of upload
  order. :func:`split_dataset` then lays out ``train/``, ``validation/`` and
  ``test/`` from the pool deterministically (seeded shuffle per person), as hard
  links where the file system allows (copies otherwise). The pool is the single
  source of truth: re-splitting rebuilds the splits from it, so it is idempotent
  and loses nothing; removing, renaming or deleting in the pool applies the same
  change to the split folders. Deleting really deletes the files (biometric data).
"""

from __future__ import annotations

import io
import os
import random
import re
import shutil
import stat
import tempfile
import unicodedata
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from core.config import datasets_dir, limits
from core.dataset import POOL_DIR, SPLIT_ALIASES, SPLITS, is_junk
from core.files import write_bytes_atomic
from core.images import ImageError, content_hash, is_image_name, load_thumbnail, read_info

WINDOWS_RESERVED = frozenset(
    {"con", "prn", "aux", "nul"} | {f"com{i}" for i in range(10)} | {f"lpt{i}" for i in range(10)}
)
ARCHIVE_SUFFIXES = frozenset({".zip", ".tar", ".gz", ".tgz", ".bz2", ".xz", ".7z", ".rar", ".zst", ".lz", ".cab"})
EXTENSION_BY_FORMAT = {"JPEG": ".jpg", "MPO": ".jpg", "PNG": ".png", "GIF": ".gif", "BMP": ".bmp",
                       "PPM": ".ppm", "TIFF": ".tif", "WEBP": ".webp"}
_DRIVE = re.compile(r"^[A-Za-z]:")
_CHUNK = 1 << 20


def safe_name(name: str) -> str:
    """Return ``name`` (trimmed) if it is safe as a dataset or person folder name, else raise ValueError.

    Letters of any script, digits, spaces and ``- _ .`` are allowed; separators, ``..``, control
    characters, leading dots, Windows device names and over-long names are not.
    """
    if not isinstance(name, str):
        raise ValueError("a name must be text.")
    cleaned = unicodedata.normalize("NFC", name).strip()
    max_length = limits().max_name_length
    if not cleaned:
        raise ValueError("the name is empty.")
    if len(cleaned) > max_length:
        raise ValueError(f"the name is {len(cleaned)} characters long; at most {max_length} are allowed.")
    if "/" in cleaned or "\\" in cleaned:
        raise ValueError(f"'{cleaned}' contains a path separator (/ or \\); use letters, digits, spaces, - or _.")
    if ".." in cleaned:
        raise ValueError(f"'{cleaned}' contains '..', which is not allowed in a name.")
    if cleaned.startswith(".") or cleaned.endswith("."):
        raise ValueError(f"'{cleaned}' starts or ends with a dot; such names are hidden or unportable.")
    bad = [c for c in cleaned if not (c.isalnum() or c in " -_.")]
    if bad:
        shown = ", ".join(repr(c) for c in dict.fromkeys(bad))
        raise ValueError(f"'{cleaned.encode('unicode_escape').decode()}' contains characters that are not allowed ({shown}); "
                         "use letters, digits, spaces, - or _.")
    if cleaned.split(".")[0].strip().lower() in WINDOWS_RESERVED:
        raise ValueError(f"'{cleaned}' is a reserved device name on Windows; choose another name.")
    return cleaned


@dataclass
class ImportReport:
    """What an import kept and what it left out (with the reason for each file)."""

    name: str
    path: Path
    images: int = 0
    people: list[str] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)  # {"path", "reason"}
    wrapper: str | None = None  # the single top-level folder that was unwrapped, if any


def _entry_parts(info: zipfile.ZipInfo) -> list[str]:
    """The entry's path components, or ValueError for anything that could escape the target folder."""
    raw = info.filename
    shown = raw.encode("unicode_escape").decode()
    if any(unicodedata.category(c) == "Cc" for c in raw):
        raise ValueError(f"zip entry '{shown}' has control characters in its name.")
    name = raw.replace("\\", "/")
    if name.startswith("/") or _DRIVE.match(name):
        raise ValueError(f"zip entry '{shown}' has an absolute path; refusing the archive.")
    parts = [p for p in PurePosixPath(name).parts if p not in ("", ".")]
    if ".." in parts:
        raise ValueError(f"zip entry '{shown}' points outside the archive (..); refusing the archive.")
    if any(len(p.encode()) > 255 for p in parts):
        raise ValueError(f"zip entry '{shown[:80]}…' has a file name longer than 255 bytes.")
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        raise ValueError(f"zip entry '{shown}' is a symbolic link; links are not allowed.")
    if info.flag_bits & 0x1:
        raise ValueError(f"zip entry '{shown}' is encrypted; upload an archive without a password.")
    if not info.is_dir() and PurePosixPath(name).suffix.lower() in ARCHIVE_SUFFIXES:
        raise ValueError(f"zip entry '{shown}' is itself an archive; unpack nested archives first.")
    return parts


def _plan(infos: list[zipfile.ZipInfo], report: ImportReport) -> list[tuple[zipfile.ZipInfo, list[str]]]:
    """Validate every entry; return the files to consider, with a single wrapper folder unwrapped.

    Hidden and system files (__MACOSX, .DS_Store) are reported as skipped.
    """
    files = []
    for info in infos:
        parts = _entry_parts(info)
        if info.is_dir() or not parts:
            continue
        if any(is_junk(p) for p in parts):
            report.skipped.append({"path": "/".join(parts), "reason": "hidden or system file"})
            continue
        files.append((info, parts))
    tops = {parts[0] for _, parts in files}
    if len(tops) == 1 and all(len(parts) > 1 for _, parts in files):
        top = next(iter(tops))
        if top.lower() not in SPLIT_ALIASES:
            report.wrapper = top
            files = [(info, parts[1:]) for info, parts in files]
    return files


def _layout_reason(parts: list[str]) -> str | None:
    """Why an entry is outside the dataset layout (None when it fits), e.g. not under a split folder."""
    if parts[0].lower() not in SPLIT_ALIASES:
        return "not inside a train/, validation/ or test/ folder"
    if len(parts) == 2 and SPLIT_ALIASES[parts[0].lower()] != "test":
        return "photo outside a person folder (no label)"
    if len(parts) >= 3:
        try:
            safe_name(parts[1])
        except ValueError as exc:
            return f"unusable person folder name: {exc}"
    return None


def _read_entry(archive: zipfile.ZipFile, info: zipfile.ZipInfo, budget: int) -> bytes | None:
    """The entry's bytes, counted as they are inflated so a lying header cannot exceed ``budget``.

    None when the entry alone is above the per-photo size limit (it is skipped, not buffered whole).
    """
    buffer = io.BytesIO()
    with archive.open(info) as stream:
        while chunk := stream.read(_CHUNK):
            buffer.write(chunk)
            if buffer.tell() > budget:
                raise ValueError("the archive unpacks to more data than allowed "
                                 f"({limits().max_zip_bytes / 1e6:.0f} MB); split it into smaller uploads.")
            if buffer.tell() > limits().max_image_bytes:
                return None
    return buffer.getvalue()


def _extract(archive: zipfile.ZipFile, files: list[tuple[zipfile.ZipInfo, list[str]]], target: Path,
             report: ImportReport) -> None:
    budget = limits().max_zip_bytes
    people: set[str] = set()
    seen: set[tuple[str, ...]] = set()
    for info, parts in files:
        shown = "/".join(parts)
        reason = _layout_reason(parts)
        if reason is None and not is_image_name(parts[-1]):
            reason = "not an image file"
        if reason:
            report.skipped.append({"path": shown, "reason": reason})
            continue
        key = tuple(p.lower() for p in parts)
        if key in seen:
            raise ValueError(f"zip entry '{shown}' appears twice in the archive (names differing only in case "
                             "count as the same).")
        seen.add(key)
        data = _read_entry(archive, info, budget)
        if data is None:
            report.skipped.append({"path": shown, "reason": "larger than the per-photo size limit"})
            continue
        budget -= len(data)
        try:
            read_info(data)
            load_thumbnail(data, 32)  # reads every pixel at reduced scale: catches truncated files
        except ImageError as exc:
            report.skipped.append({"path": shown, "reason": f"broken image: {exc}"})
            continue
        destination = target.joinpath(*parts)
        if not destination.resolve().is_relative_to(target):
            raise ValueError(f"zip entry '{shown}' points outside the dataset folder.")
        try:
            write_bytes_atomic(destination, data)
        except OSError as exc:
            raise ValueError(f"could not write '{shown}': {exc.strerror or exc}") from exc
        report.images += 1
        if len(parts) >= 3:
            people.add(parts[1])
    report.people = sorted(people)


def _open_zip(source: bytes | Path | str) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(io.BytesIO(source) if isinstance(source, bytes) else Path(source))
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        raise ValueError(f"not a readable zip file ({exc}).") from exc


def _replace_dir(source: Path, target: Path) -> None:
    """Move ``source`` to ``target``, swapping out an existing ``target`` only once the new one is ready."""
    if not target.exists():
        os.replace(source, target)
        return
    old = Path(tempfile.mkdtemp(prefix=".old-", dir=target.parent))
    os.replace(target, old / "dataset")
    os.replace(source, target)
    shutil.rmtree(old)


def import_zip(source: bytes | Path | str, name: str, *, overwrite: bool = False) -> ImportReport:
    """Unpack a zip of ``train/ validation/ test/`` person folders into the datasets folder as ``name``.

    Raises ValueError (and leaves nothing behind) for hostile or unusable archives.
    """
    name = safe_name(name)
    target = datasets_dir() / name
    if target.exists() and not overwrite:
        raise ValueError(f"a dataset called '{name}' already exists; choose another name or overwrite it.")
    with _open_zip(source) as archive:
        infos = archive.infolist()
        if len(infos) > limits().max_zip_files:
            raise ValueError(f"the archive has {len(infos)} entries; at most {limits().max_zip_files} are allowed.")
        declared = sum(info.file_size for info in infos)
        if declared > limits().max_zip_bytes:
            raise ValueError(f"the archive unpacks to {declared / 1e6:.0f} MB; at most "
                             f"{limits().max_zip_bytes / 1e6:.0f} MB are allowed.")
        report = ImportReport(name=name, path=target)
        files = _plan(infos, report)
        temp = Path(tempfile.mkdtemp(prefix=".import-", dir=datasets_dir())).resolve()
        try:
            _extract(archive, files, temp, report)
            if not report.people:
                raise ValueError("no photo inside a person folder of train/, validation/ or test/ was found; "
                                 "lay the zip out as train/<person>/<photo>.jpg.")
            _replace_dir(temp, target)
        except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, RuntimeError, EOFError,
                OSError) as exc:
            shutil.rmtree(temp, ignore_errors=True)
            raise ValueError(f"the archive is damaged or uses an unsupported feature ({exc}).") from exc
        except BaseException:
            shutil.rmtree(temp, ignore_errors=True)
            raise
    return report


# --- builder -----------------------------------------------------------------------------------------


def _dataset_dir(dataset: str, *, must_exist: bool = True) -> Path:
    path = datasets_dir() / safe_name(dataset)
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
    return sorted(p.name for p in datasets_dir().iterdir() if (p / POOL_DIR).is_dir() and not is_junk(p.name))


def create_dataset(dataset: str) -> Path:
    """An empty builder dataset; ValueError if the name is unsafe or taken."""
    path = _dataset_dir(dataset, must_exist=False)
    if path.exists():
        raise ValueError(f"a dataset called '{path.name}' already exists.")
    (path / POOL_DIR).mkdir(parents=True)
    return path


def add_person(dataset: str, person: str) -> Path:
    """A new, empty person in the pool; ValueError if the name is unsafe or taken."""
    path = _dataset_dir(dataset) / POOL_DIR / safe_name(person)
    if path.exists():
        raise ValueError(f"'{path.name}' is already in '{dataset}'.")
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
    if (root / POOL_DIR / new).exists():
        raise ValueError(f"'{new}' is already in '{dataset}'.")
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
    staging = Path(tempfile.mkdtemp(prefix=".split-", dir=root))
    try:
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
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return layout
