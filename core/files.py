"""Atomic file writes: every file FaceLab writes is complete or absent, never half written.

Each write goes to a temporary file in the target's own folder and is renamed over the
target (``os.replace`` is atomic on one file system), so readers — other browser sessions,
other processes — see the old file or the new one, and a crash leaves at most a hidden
temporary file that nothing reads.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any


def write_atomic(target: Path, write: Callable[[IO[bytes]], None], *, check: Callable[[Path], None] | None = None,
                 prefix: str = ".tmp-", suffix: str = "") -> None:
    """Call ``write`` on a temporary binary file, let ``check`` refuse it by raising, then rename it to ``target``."""
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=target.parent)
    try:
        with os.fdopen(handle, "wb") as out:
            write(out)
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
