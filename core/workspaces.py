"""The server owner's view of the workspaces: list them (size, last change) and delete one.

Workspaces are invisible to each other (see :mod:`core.config`): only an owner who set
``FACELAB_ADMIN_TOKEN`` and opens the app with the matching ``admin`` link may list them.
Deleting really deletes (biometric data): the folder leaves the listing at once, then its
files are removed.
"""

from __future__ import annotations

import hmac
import os
import secrets
import shutil
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from core.config import WORKSPACE_ID, check_workspace_id, workspaces_dir
from core.files import children

ADMIN_TOKEN_ENV = "FACELAB_ADMIN_TOKEN"


@dataclass(frozen=True)
class WorkspaceInfo:
    """One workspace as the owner's list shows it."""

    id: str
    bytes: int  # every file in it
    files: int
    changed: datetime  # the latest modification of any file or folder in it (UTC)


def is_admin(token: str | None) -> bool:
    """Whether ``token`` is the owner's ``FACELAB_ADMIN_TOKEN`` (never when none is set); constant-time."""
    expected = os.environ.get(ADMIN_TOKEN_ENV, "")
    if not expected or not token:
        return False
    return hmac.compare_digest(token.encode(), expected.encode())


def _describe(folder: Path) -> WorkspaceInfo:
    size = count = 0
    latest = folder.stat().st_mtime
    for current, dirs, files in os.walk(folder):
        for names, are_files in ((dirs, False), (files, True)):
            for name in names:
                try:
                    stat = (Path(current) / name).lstat()
                except OSError:  # removed while walking
                    continue
                latest = max(latest, stat.st_mtime)
                if are_files:
                    size, count = size + stat.st_size, count + 1
    return WorkspaceInfo(folder.name, size, count, datetime.fromtimestamp(latest, timezone.utc))


def list_workspaces() -> list[WorkspaceInfo]:
    """Every workspace, the most recently changed first (folders that are not workspaces are left out)."""
    found = [_describe(p) for p in children(workspaces_dir()) if p.is_dir() and WORKSPACE_ID.fullmatch(p.name)]
    return sorted(found, key=lambda info: info.changed, reverse=True)


def delete_workspace(workspace_id: str) -> None:
    """Delete a workspace with every dataset, run and calibration in it."""
    folder = workspaces_dir() / check_workspace_id(workspace_id)
    if not folder.is_dir():
        raise ValueError(f"there is no workspace {workspace_id} (it may have been deleted).")
    doomed = workspaces_dir() / f".deleted-{workspace_id}-{secrets.token_hex(3)}"
    os.replace(folder, doomed)
    shutil.rmtree(doomed, ignore_errors=True)
