"""Names a user types (people, datasets) checked before they become folder names.
"""

from __future__ import annotations

import re
import unicodedata

from core.config import limits

WINDOWS_RESERVED = frozenset(
    {"con", "prn", "aux", "nul"} | {f"com{i}" for i in range(10)} | {f"lpt{i}" for i in range(10)}
)


DRIVE_LETTER = re.compile(r"^[A-Za-z]:")


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
