"""Where FaceLab keeps its files and the limits it enforces.

Everything FaceLab writes (datasets, runs, caches, weights) lives under one home
folder so a teacher can see, back up or delete it in one place. The home is
``$FACELAB_HOME`` when set, else ``./facelab_home`` in the working directory.

Workspaces: a class shares one server, so each browser user's datasets, runs (with the
active run) and calibrations live in a workspace of their own, ``<home>/workspaces/<id>/``.
The id is an unguessable token and the only key: whoever has the workspace link has the
workspace. The current workspace is a ``ContextVar`` because Streamlit runs each session's
script in a thread of its own, and a background job copies the context that started it
(``core.services.jobs``). With no workspace set (the CLI, notebooks, tests) those folders are
the home's own: the default workspace. The server calls :func:`serve_browsers` first; from
then on reaching them without a workspace raises :class:`NoWorkspace` instead of falling back
on the default workspace. The embedding cache (content-addressed, no names) and the weights
stay shared by everyone; nothing lists them per workspace.
"""

from __future__ import annotations

import errno
import os
import re
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")
WORKSPACES = "workspaces"  # the folder of the home that holds one folder per workspace
WORKSPACE_ID = re.compile(r"[A-Za-z0-9_-]{22}")  # what secrets.token_urlsafe(16) gives
_workspace: ContextVar[str | None] = ContextVar("facelab_workspace", default=None)
_serving = False  # set by serve_browsers(): a missing workspace is then an error
UNWRITABLE = frozenset({errno.EROFS, errno.ENOSPC, errno.EDQUOT})  # a read-only or full disk


class NoWorkspace(RuntimeError):
    """A browser request reached per-user folders without a workspace (a bug: never served from the default)."""


def _env_int(name: str, default: int) -> int:
    """Read a positive integer setting from the environment, falling back on bad values."""
    try:
        value = int(os.environ.get(name, default))
    except ValueError:
        return default
    return value if value > 0 else default


def _made(path: Path) -> Path:
    """``path``, created on demand; on a read-only or full disk returned as it is: reading finds nothing
    there, and a write fails with its own error (which ``core.files.storage_problem`` says plainly)."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        if exc.errno not in UNWRITABLE:
            raise
    return path


def home() -> Path:
    """The FaceLab home folder, created on demand."""
    return _made(Path(os.environ.get("FACELAB_HOME", "facelab_home")).expanduser().resolve())


def _sub(name: str) -> Path:
    return _made(home() / name)


def new_workspace_id() -> str:
    """A fresh workspace id: 128 random bits, so nobody finds a workspace by guessing."""
    return secrets.token_urlsafe(16)


def check_workspace_id(value: object) -> str:
    """``value`` if it is a well-formed workspace id; ValueError otherwise (it becomes a folder name)."""
    if not isinstance(value, str) or not WORKSPACE_ID.fullmatch(value):
        raise ValueError("not a workspace id (22 letters, digits, '-' or '_').")
    return value


def current_workspace() -> str | None:
    """The workspace of this thread's request or job; None for the default workspace (the home's own folders)."""
    return _workspace.get()


@contextmanager
def use_workspace(workspace_id: str | None) -> Iterator[str | None]:
    """Work in ``workspace_id`` (None: the default workspace) inside the ``with`` block."""
    token = _workspace.set(None if workspace_id is None else check_workspace_id(workspace_id))
    try:
        yield workspace_id
    finally:
        _workspace.reset(token)


def enter_workspace(workspace_id: str) -> None:
    """Make ``workspace_id`` current for the rest of this context (a Streamlit script run, which has no block)."""
    _workspace.set(check_workspace_id(workspace_id))


def in_current_workspace(call: Callable[[], T]) -> Callable[[], T]:
    """``call`` bound to the workspace current now, for code that runs it later in another thread
    (a download built when clicked)."""
    workspace = current_workspace()

    def bound() -> T:
        with use_workspace(workspace):
            return call()

    return bound


def serve_browsers(on: bool = True) -> None:
    """Switch the process into (or out of) serving browsers: per-user folders then need a workspace."""
    global _serving
    _serving = on


def serving_browsers() -> bool:
    """Whether this process serves browsers (see :func:`serve_browsers`)."""
    return _serving


def workspaces_dir() -> Path:
    """The folder of every workspace (one sub-folder per id)."""
    return _sub(WORKSPACES)


def _own(name: str, default_parent: Callable[[], Path]) -> Path:
    """The current workspace's folder ``name``; in the default workspace, ``default_parent() / name``."""
    workspace = current_workspace()
    if workspace is not None:
        parent = workspaces_dir() / workspace
    elif _serving:
        raise NoWorkspace("this page has no workspace; reload it (your workspace link keeps your work).")
    else:
        parent = default_parent()
    return _made(parent / name)


def datasets_dir() -> Path:
    """Datasets built or imported through FaceLab, in the current workspace."""
    return _own("datasets", home)


def runs_dir() -> Path:
    """Saved training runs (and the active run), in the current workspace."""
    return _own("runs", home)


def calibrations_dir() -> Path:
    """Stored calibrations, in the current workspace (``cache/calibrations`` in the default one)."""
    return _own("calibrations", cache_dir)


def cache_dir() -> Path:
    """The embedding cache, shared by every workspace (and the default workspace's calibrations)."""
    return _sub("cache")


def weights_dir() -> Path:
    """Downloaded model weights."""
    return _sub("weights")


@dataclass(frozen=True)
class Limits:
    """Bounds on untrusted input; each can be overridden by ``FACELAB_<FIELD>`` (e.g. FACELAB_MAX_ZIP_FILES)."""

    max_zip_files: int = 20_000
    max_zip_bytes: int = 2 * 1024**3
    max_image_pixels: int = 24_000_000  # decoded pixels; ~190 MB peak a photo (BENCHMARKS.md, bench_memory.py)
    max_image_bytes: int = 50 * 1024**2
    max_name_length: int = 64
    max_faces: int = 20  # faces aligned and embedded per photo, the largest first


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
