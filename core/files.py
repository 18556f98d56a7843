"""Atomic file writes: every file FaceLab writes is complete or absent, never half written.

Each write goes to a temporary file in the target's own folder and is renamed over the
target (``os.replace`` is atomic on one file system), so readers — other browser sessions,
other processes — see the old file or the new one, and a crash leaves at most a hidden
temporary file that nothing reads.

Temporaries (files and the folders whole datasets and runs are built in) are hidden, named
``.tmp-…`` (downloads ``.<name>.….part``), and locked by the process writing them for as long
as it writes (``flock``; the kernel drops the lock when the process dies, even by SIGKILL).
:func:`remove_stale` removes those left by a killed process, never one still being written.
Folders are published with :func:`publish_dir`, which refuses to replace a folder someone else
put in place meanwhile. :func:`storage_problem` says plainly when the disk is read-only or full.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import json
import os
import secrets
import shutil
import stat
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from core.config import UNWRITABLE, home

TEMP_PREFIX = ".tmp-"
# Also removed when stale: what older FaceLab versions named their temporaries, and folders being deleted.
OTHER_TEMP_PREFIXES = (".import-", ".old-", ".split-", ".deleted-")
PART_SUFFIX = ".part"  # unfinished downloads: ``.<name>.<random>.part``
STALE_AFTER_SECONDS = 600.0  # only bridges creating a temporary and locking it; the lock is what protects
STATES = {errno.EROFS: "read-only", errno.ENOSPC: "full", errno.EDQUOT: "over its disk quota"}  # of each UNWRITABLE
Identity = tuple[int, int, int]


def write_atomic(target: Path, write: Callable[[IO[bytes]], None], *, check: Callable[[Path], None] | None = None,
                 prefix: str = TEMP_PREFIX, suffix: str = "") -> None:
    """Call ``write`` on a temporary binary file, let ``check`` refuse it by raising, then rename it to ``target``."""
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=target.parent)
    try:
        with os.fdopen(handle, "wb") as out:  # open (and locked) until renamed: see remove_stale
            fcntl.flock(handle, fcntl.LOCK_SH)  # shared: a check may open it (HDF5 locks too)
            write(out)
            out.flush()
            if check:
                check(Path(temp))
            os.replace(temp, target)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def write_bytes_atomic(target: Path, data: bytes, **options: Any) -> None:
    """``target`` holds exactly ``data`` afterwards, or is untouched."""
    write_atomic(target, lambda out: out.write(data), **options)


def write_json_atomic(target: Path, value: Any, **dump_options: Any) -> None:
    """``value`` as UTF-8 JSON (``dump_options`` go to ``json.dumps``), written atomically."""
    write_bytes_atomic(target, json.dumps(value, **dump_options).encode("utf-8"), suffix=".json")


@contextmanager
def temporary_dir(parent: Path, purpose: str) -> Iterator[Path]:
    """A hidden, locked folder in ``parent`` to build something in before :func:`publish_dir` moves it into place.

    Whatever is still at its path when the block ends (an unfinished build, or the folder a publish
    swapped out) is removed, so a failure leaves nothing behind.
    """
    parent.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}{purpose}-", dir=parent))
    handle = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(handle, fcntl.LOCK_SH)
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
        os.close(handle)


def identity(path: Path) -> Identity | None:
    """What tells the folder at ``path`` from one put there later (device, inode, change time); None if absent."""
    try:
        info = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return None
    return info.st_dev, info.st_ino, info.st_ctime_ns


@contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """One publish at a time in ``folder``, across threads and processes (a lock on the folder itself)."""
    handle = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield
    finally:
        os.close(handle)


def _exchange(first: Path, second: Path) -> bool:
    """Swap two paths in one atomic step (Linux ``renameat2``); False where the system cannot."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except AttributeError:
        return False
    renameat2.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint)
    at_cwd, exchange = -100, 2  # AT_FDCWD, RENAME_EXCHANGE
    if renameat2(at_cwd, os.fsencode(first), at_cwd, os.fsencode(second), exchange) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), str(second))


def publish_dir(source: Path, target: Path, expected: Identity | None) -> None:
    """Move the finished folder ``source`` to ``target``, unless ``target`` changed since the caller saw it.

    ``expected`` is :func:`identity` of ``target`` when the caller started (None: it was absent or must
    not be replaced). FileExistsError when ``target`` is now another folder: someone else created or
    replaced it meanwhile, and the caller's work is still in ``source``. A replaced folder is swapped
    with ``source`` in one step where the system can (Linux), so ``target`` is never missing.
    """
    with _locked(target.parent):
        now = identity(target)
        if now is not None and now != expected:
            raise FileExistsError(errno.EEXIST, "created or replaced by someone else meanwhile", str(target))
        if now is None:
            os.rename(source, target)
        elif not _exchange(source, target):
            aside = target.parent / f"{TEMP_PREFIX}old-{secrets.token_hex(6)}"
            os.rename(target, aside)
            os.rename(source, target)
            os.rename(aside, source)


def children(folder: Path) -> list[Path]:
    """What ``folder`` holds; nothing when it does not exist (e.g. a new workspace in a read-only home)."""
    try:
        return list(folder.iterdir())
    except FileNotFoundError:
        return []


def is_temporary(name: str) -> bool:
    """Whether a file or folder name is one of FaceLab's temporaries."""
    return name.startswith((TEMP_PREFIX, *OTHER_TEMP_PREFIXES)) or (name.startswith(".") and name.endswith(PART_SUFFIX))


def _remove_if_stale(path: Path, cutoff: float) -> bool:
    """Remove ``path`` if it was last changed before ``cutoff`` and no process holds its lock."""
    try:
        info = os.lstat(path)
        if info.st_mtime > cutoff or not (stat.S_ISDIR(info.st_mode) or stat.S_ISREG(info.st_mode)):
            return False
        handle = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return False
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)  # BlockingIOError: its writer is alive
        if stat.S_ISDIR(info.st_mode):
            shutil.rmtree(path)
        else:
            path.unlink()
        return True
    except OSError:
        return False
    finally:
        os.close(handle)


def remove_stale(root: Path, max_age_seconds: float = STALE_AFTER_SECONDS) -> list[Path]:
    """Remove the temporaries a killed or crashed process left anywhere under ``root``; returns what went.

    One goes only when no process holds its lock and it is older than ``max_age_seconds`` (which
    covers the instant between creating a temporary and locking it). Links are never followed.
    """
    cutoff = time.time() - max_age_seconds
    removed, folders = [], [root]
    while folders:
        try:
            entries = list(os.scandir(folders.pop()))
        except OSError:
            continue
        for entry in entries:
            if is_temporary(entry.name):
                if _remove_if_stale(Path(entry.path), cutoff):
                    removed.append(Path(entry.path))
            elif entry.is_dir(follow_symlinks=False):
                folders.append(Path(entry.path))
    return removed


def storage_problem(exc: BaseException) -> str | None:
    """A plain sentence when ``exc`` (or what caused it) is a read-only or full disk, else None.

    Said of FaceLab's home folder, unless the path that failed lies outside it (e.g. a CLI --out folder).
    """
    found = next((e for e in _causes(exc) if isinstance(e, OSError) and e.errno in UNWRITABLE), None)
    if found is None:
        return None
    state = STATES[found.errno]
    if found.filename is not None and not _in_home(Path(os.fsdecode(found.filename))):
        return f"cannot write {os.fsdecode(found.filename)}: its disk is {state}."
    advice = "ask the server's owner" + (" to free some space" if found.errno != errno.EROFS else "")
    return f"FaceLab's home folder is {state}; {advice}."


def _causes(exc: BaseException | None) -> Iterator[BaseException]:
    """``exc`` and what caused it, nearest first (at most 8: a chain is short, and a hand-made one could loop)."""
    for _ in range(8):
        if exc is None:
            return
        yield exc
        exc = exc.__cause__ or exc.__context__


def _in_home(path: Path) -> bool:
    try:
        return path.resolve().is_relative_to(home())
    except OSError:  # no home at all: a failure there is the home's
        return True
