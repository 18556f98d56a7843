"""Housekeeping of the FaceLab home: what a killed process left goes at start-up; a read-only or full home is said.

A process killed while it imports a zip, saves a run, writes a cache entry or downloads weights
(SIGKILL, power loss, the out-of-memory killer) leaves a hidden temporary with photos, a model or
half a download. The server (``app.py``) and the command line call :func:`clean_at_startup`; it walks
the whole home once per process, every workspace included, and removes only temporaries that no
living process holds (see ``core.files.remove_stale``), so a second server or a CLI run on the same
home never loses work in progress.
"""

from __future__ import annotations

import logging
import tempfile
import threading
import time
from pathlib import Path

from core.config import home
from core.files import remove_stale, storage_problem

PROBE_EVERY_SECONDS = 30.0
PROBE_BYTES = 1 << 16
log = logging.getLogger("facelab.maintenance")
_cleaned: set[Path] = set()
_probed: dict[Path, tuple[float, str | None]] = {}  # home → (when, what was wrong)
_lock = threading.Lock()


def clean_at_startup() -> list[Path]:
    """Remove stale temporaries under the home, the first time this process asks for that home; returns what went.

    Never raises: a home that cannot be read or written is reported by the action that needs it.
    """
    try:
        root = home()
    except OSError as exc:
        log.warning("FaceLab's home cannot be opened (%s); nothing cleaned.", exc)
        return []
    with _lock:
        if root in _cleaned:
            return []
        _cleaned.add(root)
    removed = remove_stale(root)
    if removed:
        log.info("removed %d temporaries left by a stopped process: %s", len(removed),
                 ", ".join(str(path.relative_to(root)) for path in removed))
    return removed


def home_problem() -> str | None:
    """Why nothing can be saved in the home now (read-only, full), or None; found by writing a little, at most
    every PROBE_EVERY_SECONDS, so every page can say it at the top instead of each action failing unexplained."""
    root = home()
    with _lock:
        when, problem = _probed.get(root, (-PROBE_EVERY_SECONDS, None))
        if time.monotonic() - when < PROBE_EVERY_SECONDS:
            return problem
        try:  # home() already made the folder where the disk allows
            with tempfile.TemporaryFile(dir=root) as probe:  # unnamed where the system can: nothing to leave behind
                probe.write(bytes(PROBE_BYTES))
                probe.flush()
            problem = None
        except OSError as exc:
            problem = storage_problem(exc)
        _probed[root] = (time.monotonic(), problem)
        return problem
