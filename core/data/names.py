"""Names a user types or uploads (people, datasets, runs) checked before FaceLab stores them.

A name is stored as it was checked: NFC-normalised and trimmed, so ``José`` typed composed or decomposed,
or ``alice`` with a stray space, is one name. Characters that change how text reads without being seen
(control characters, line and paragraph separators, bidi overrides, zero-width characters) are refused.
Folder names (people, datasets) are stricter still, and two that differ only in case (same
:func:`name_key`) are one name: the second is refused rather than becoming a look-alike person.
People are compared across runs and folders by the looser :func:`person_key` (accents dropped, case folded,
spaces, underscores and hyphens one separator), so "Lionel Messi" and ``lionel_messi`` are one person; the name
shown stays as it was stored.
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

from core.config import limits
from core.files import children

WINDOWS_RESERVED = frozenset(
    {"con", "prn", "aux", "nul"} | {f"com{i}" for i in range(10)} | {f"lpt{i}" for i in range(10)}
)


DRIVE_LETTER = re.compile(r"^[A-Za-z]:")


HIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs"})  # control, format (bidi, zero-width), separators


def hidden_characters(text: str) -> list[str]:
    """The code points (``U+202E``…) in ``text`` that are invisible or reorder what is shown, each once."""
    return [f"U+{ord(c):04X}" for c in dict.fromkeys(text) if unicodedata.category(c) in HIDDEN_CATEGORIES]


def clean_text(text: str, what: str = "name") -> str:
    """``text`` NFC-normalised and trimmed; ValueError when it is empty or holds hidden characters.

    The message quotes no part of ``text``: it may be printed to a terminal, where control characters act.
    """
    if not isinstance(text, str):
        raise ValueError(f"a {what} must be text.")
    cleaned = unicodedata.normalize("NFC", text).strip()
    if not cleaned:
        raise ValueError(f"the {what} is empty.")
    hidden = hidden_characters(cleaned)
    if hidden:
        raise ValueError(f"the {what} contains invisible or control characters ({', '.join(hidden)}) that could "
                         "hide or reorder what people see; remove them.")
    return cleaned


def name_key(name: str) -> str:
    """What two names must share to be the same name: NFC form, trimmed, case folded."""
    return unicodedata.normalize("NFC", unicodedata.normalize("NFC", name).strip().casefold())


PERSON_SEPARATORS = re.compile(r"[\s_\-]+")


def person_key(name: str) -> str:
    """The key two names of one person share, so a run trained on "Lionel Messi" (typed in the Builder) judges
    photos in a ``lionel_messi`` folder: accents removed (NFKD, combining marks dropped), case folded, every run
    of spaces, underscores and hyphens one space, trimmed. Used to compare people, never to display them.
    """
    decomposed = unicodedata.normalize("NFKD", name)
    bare = "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()
    return PERSON_SEPARATORS.sub(" ", bare).strip()


def lookalike(name: str, folder: Path) -> str | None:
    """The entry of ``folder`` that is ``name`` up to case and Unicode form (None if none): the name is taken."""
    key = name_key(name)
    return next((entry.name for entry in children(folder) if name_key(entry.name) == key), None)


def safe_name(name: str) -> str:
    """Return ``name`` (NFC, trimmed) if it is safe as a dataset or person folder name, else raise ValueError.

    Letters of any script (with their combining marks), digits, spaces and ``- _ .`` are allowed;
    separators, ``..``, hidden characters, leading dots, Windows device names and over-long names are not.
    """
    cleaned = clean_text(name)
    max_length = limits().max_name_length
    if len(cleaned) > max_length:
        raise ValueError(f"the name is {len(cleaned)} characters long; at most {max_length} are allowed.")
    if "/" in cleaned or "\\" in cleaned:
        raise ValueError(f"'{cleaned}' contains a path separator (/ or \\); use letters, digits, spaces, - or _.")
    if ".." in cleaned:
        raise ValueError(f"'{cleaned}' contains '..', which is not allowed in a name.")
    if cleaned.startswith(".") or cleaned.endswith("."):
        raise ValueError(f"'{cleaned}' starts or ends with a dot; such names are hidden or unportable.")
    bad = [c for i, c in enumerate(cleaned)
           if not (c.isalnum() or c in " -_." or (i and unicodedata.category(c).startswith("M")))]
    if bad:
        shown = ", ".join(repr(c) for c in dict.fromkeys(bad))
        raise ValueError(f"'{cleaned.encode('unicode_escape').decode()}' contains characters that are not allowed ({shown}); "
                         "use letters, digits, spaces, - or _.")
    if cleaned.split(".")[0].strip().lower() in WINDOWS_RESERVED:
        raise ValueError(f"'{cleaned}' is a reserved device name on Windows; choose another name.")
    return cleaned
