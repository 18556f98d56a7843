"""Zip import: a zip of ``train/ validation/ test/`` person folders becomes a dataset, or nothing.

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
import stat
import unicodedata
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from core.config import datasets_dir, limits
from core.data.layout import SPLIT_ALIASES, is_junk, own_dataset_path
from core.data.names import DRIVE_LETTER, hidden_characters, lookalike, name_key, safe_name
from core.files import Identity, identity, publish_dir, temporary_dir, write_bytes_atomic
from core.images import ImageError, is_image_name, load_thumbnail, read_info

ARCHIVE_SUFFIXES = frozenset({".zip", ".tar", ".gz", ".tgz", ".bz2", ".xz", ".7z", ".rar", ".zst", ".lz", ".cab"})


_CHUNK = 1 << 20


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
                                 "lay the zip out as train/<person>/<photo>.jpg.")
            _publish(temp, target, seen)
    return report
