"""Zip import: a zip of ``train/ validation/ test/`` person folders becomes a dataset, or nothing.

A flat zip of person folders alone (``<person>/<photo>``, what Teachable Machine users have) is split
into train/validation/test on the way in, by the builder's rule and always the same way for the same zip.

Everything here handles untrusted input (uploads from a browser). The zip is extracted into a
hidden temporary folder inside the datasets folder, every entry is checked (no traversal,
absolute paths, links, nested archives, encryption; file count and byte limits counted while
extracting), every photo is decoded by ``core.images`` before it is kept, and only then is the
folder moved into place in one step (``core.files.publish_dir``). A refused upload leaves nothing
behind, and of two imports racing for one name exactly one wins: the other is told, never
silently replaced.
"""

from __future__ import annotations

import io
import random
import stat
import unicodedata
import zipfile
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from core.config import datasets_dir, limits
from core.data.builder import split_counts
from core.data.layout import SPLIT_ALIASES, SPLITS, is_junk, own_dataset_path
from core.data.names import DRIVE_LETTER, hidden_characters, lookalike, name_key, safe_name
from core.files import Identity, identity, publish_dir, temporary_dir, write_bytes_atomic
from core.images import ImageError, is_image_name, load_thumbnail, read_info

ARCHIVE_SUFFIXES = frozenset({".zip", ".tar", ".gz", ".tgz", ".bz2", ".xz", ".7z", ".rar", ".zst", ".lz", ".cab"})


_CHUNK = 1 << 20


FLAT_SPLIT = (70, 15, 15)  # train/validation/test percentages for a flat person/photo zip (the builder's default)


FLAT_SEED = 0  # the builder's default seed (seeded per person as the builder does): one zip, one split


@dataclass
class ImportReport:
    """What an import kept and what it left out (with the reason for each file)."""

    name: str
    path: Path
    images: int = 0
    people: list[str] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)  # {"path", "reason"}
    wrapper: str | None = None  # the single top-level folder that was unwrapped, if any
    per_split: dict[str, int] = field(default_factory=dict)  # photos kept per split
    flat_split: tuple[int, int, int] | None = None  # the percentages, when a flat person/photo zip was split here

    def summary(self) -> str:
        """What was imported, in one sentence; for a flat zip, how it was split."""
        kept = f"{self.images} photos of {len(self.people)} people"
        if self.flat_split is None:
            return f"Imported {kept} as '{self.name}'."
        counts = ", ".join(f"{self.per_split.get(split, 0)} {split}" for split in SPLITS)
        return (f"Flat zip (no train/validation/test folders): {kept} split {'/'.join(map(str, self.flat_split))} "
                f"({counts}), imported as '{self.name}'.")


def name_from_file(filename: str) -> str:
    """A dataset name from an upload's file name (``My faces (2).zip`` → ``My faces 2``): characters a name may not
    hold become spaces, then the result must pass :func:`~core.data.names.safe_name`; "" when nothing does."""
    stem = PurePosixPath(filename.replace("\\", "/")).name
    stem = unicodedata.normalize("NFC", stem[:-4] if stem.lower().endswith(".zip") else stem)
    kept = "".join(c if c.isalnum() or c in "-_" or unicodedata.category(c).startswith("M") else " " for c in stem)
    try:
        return safe_name(" ".join(kept.split())[:limits().max_name_length])
    except ValueError:
        return ""


def _entry_parts(info: zipfile.ZipInfo) -> list[str]:
    """The entry's path components, or ValueError for anything that could escape the target folder."""
    raw = info.filename
    shown = raw.encode("unicode_escape").decode()
    hidden = hidden_characters(raw)
    if hidden:
        raise ValueError(f"zip entry '{shown}' has control or invisible characters in its name ({', '.join(hidden)}).")
    name = raw.replace("\\", "/")
    if name.startswith("/") or DRIVE_LETTER.match(name):
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
    if not any(parts[0].lower() in SPLIT_ALIASES for _, parts in files):
        return _split_flat(files, report)
    return files


def _split_flat(files: list[tuple[zipfile.ZipInfo, list[str]]],
                report: ImportReport) -> list[tuple[zipfile.ZipInfo, list[str]]]:
    """Deal the photos of a zip without split folders (``<person>/<photo>``) into train/validation/test.

    Each person's photos, in file-name order, are shuffled with the builder's seeding and cut by its
    ``split_counts``, so the same zip always gives the same dataset. A zip with no ``<person>/<photo>`` is left
    as it is (its entries are then refused as outside the layout). Other entries are skipped with the reason.
    """
    people: dict[str, list[tuple[zipfile.ZipInfo, list[str]]]] = defaultdict(list)
    for info, parts in files:
        if len(parts) == 2 and is_image_name(parts[1]):
            people[parts[0]].append((info, parts))
    if not people:
        return files
    for info, parts in files:
        if len(parts) != 2 or not is_image_name(parts[1]):
            reason = ("not an image file" if len(parts) == 2 else "not inside a person folder"
                      if len(parts) == 1 else "nested deeper than <person>/<photo>")
            report.skipped.append({"path": "/".join(parts), "reason": reason})
    dealt = []
    shares = tuple(p / 100 for p in FLAT_SPLIT)
    for person, photos in people.items():
        photos.sort(key=lambda item: item[1][1])
        random.Random(f"{FLAT_SEED}:{person}").shuffle(photos)
        start = 0
        for split, count in zip(SPLITS, split_counts(len(photos), shares)):
            dealt += [(info, [split, *parts]) for info, parts in photos[start:start + count]]
            start += count
    report.flat_split = FLAT_SPLIT
    return dealt


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


def _destination(parts: list[str]) -> list[str]:
    """Where an entry that fits the layout is written: its split's own name, the person's checked name and
    every other part in NFC, so ``Train/`` and ``train/``, or ``José`` composed and decomposed, are one folder."""
    rest = [unicodedata.normalize("NFC", part) for part in parts[1:]]
    if len(parts) >= 3:
        rest[0] = safe_name(parts[1])
    return [SPLIT_ALIASES[parts[0].lower()], *rest]


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
    spellings: dict[str, str] = {}  # name_key → the person folder's one spelling
    seen: set[tuple[str, ...]] = set()
    for info, parts in files:
        shown = "/".join(parts)
        reason = _layout_reason(parts)
        if reason is None and not is_image_name(parts[-1]):
            reason = "not an image file"
        if reason:
            report.skipped.append({"path": shown, "reason": reason})
            continue
        parts = _destination(parts)
        key = tuple(name_key(p) for p in parts)
        if key in seen:
            raise ValueError(f"zip entry '{shown}' appears twice in the archive (names differing only in case "
                             "count as the same).")
        seen.add(key)
        if len(parts) >= 3:
            spelling = spellings.setdefault(key[1], parts[1])
            if spelling != parts[1]:
                raise ValueError(f"the person folders '{spelling}' and '{parts[1]}' differ only in case; give each "
                                 "person one spelling and import again.")
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
        report.per_split[parts[0]] = report.per_split.get(parts[0], 0) + 1
        if len(parts) >= 3:
            people.add(parts[1])
    report.people = sorted(people)


def _open_zip(source: bytes | Path | str) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(io.BytesIO(source) if isinstance(source, bytes) else Path(source))
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        raise ValueError(f"not a readable zip file ({exc}).") from exc


def _publish(temp: Path, target: Path, expected: Identity | None) -> None:
    """Move the finished import into place, unless someone else's dataset took the name meanwhile (then say so)."""
    try:
        publish_dir(temp, target, expected)
    except FileExistsError as exc:
        if expected is None:
            raise ValueError(f"a dataset called '{target.name}' was just created by someone else; your photos were "
                             "not imported. Choose another name or overwrite it.") from exc
        raise ValueError(f"the dataset '{target.name}' was just replaced by someone else while yours was being "
                         "imported; theirs was kept. Look at it, then import again to overwrite it.") from exc


def import_zip(source: bytes | Path | str, name: str, *, overwrite: bool = False) -> ImportReport:
    """Unpack a zip of ``train/ validation/ test/`` person folders into the datasets folder as ``name``.

    Raises ValueError (and leaves nothing behind) for hostile or unusable archives.
    """
    target = own_dataset_path(name)
    name = target.name
    taken = lookalike(name, target.parent)
    if taken not in (None, name):
        raise ValueError(f"a dataset called '{taken}' already exists (names differing only in case are one name); "
                         f"import as '{taken}' to overwrite it, or choose another name.")
    seen = identity(target)  # what an overwrite may replace: a dataset put there meanwhile is not
    if seen is not None and not overwrite:
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
        with temporary_dir(datasets_dir(), "import") as temp:
            try:
                _extract(archive, files, temp.resolve(), report)
            except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, RuntimeError, EOFError,
                    OSError) as exc:
                raise ValueError(f"the archive is damaged or uses an unsupported feature ({exc}).") from exc
            if not report.people:
                raise ValueError("no photo inside a person folder of train/, validation/ or test/ was found; "
                                 "lay the zip out as train/<person>/<photo>.jpg, or as <person>/<photo>.jpg to "
                                 "have it split.")
            _publish(temp, target, seen)
    return report
