"""Classifier heads: the small models that turn face embeddings into "which person is this".

One module per head, all in one registry (:data:`HEADS`), like detectors and backbones: a
new head is one file here that subclasses :class:`Head` and calls ``HEADS.register``. A
head's class declares what the rest of FaceLab needs to know about it (its ``mode``, whether
it trains in epochs, whether it exports as a SavedModel); saved runs name their head's
``kind``, and :func:`load_head` finds the class by that name, so nothing outside this
package lists the heads.

Every head sees embeddings only (an (N, D) float32 matrix and integer class indices), so it
does not care which backbone, detector or alignment produced them — except the fine-tuned
head, whose input is face crops (it *is* the backbone, retrained).
"""

from __future__ import annotations

import json
from pathlib import Path

from core.registry import Entry, Registry
from core.training.heads.base import HEAD_FILE, Head, check_embeddings, l2_normalise

HEADS: Registry[Head] = Registry(kind="head", package="core.training.heads")

__all__ = ["HEADS", "Head", "check_embeddings", "head_class", "head_kinds", "l2_normalise", "load_head", "make_head"]


def head_kinds() -> dict[str, Entry[Head]]:
    """The heads a user picks in head mode (the fine-tuned head comes from fine-tune mode instead)."""
    return {name: entry for name, entry in HEADS.entries().items() if entry.factory.mode == "head"}


def head_class(kind: str) -> type[Head]:
    """The class of head ``kind`` (a ValueError listing the known kinds otherwise)."""
    return HEADS.entry(kind).factory  # type: ignore[return-value]


def make_head(kind: str, input_dim: int, n_classes: int) -> Head:
    """A new, untrained head of ``kind`` (one of :func:`head_kinds`)."""
    if kind not in head_kinds():
        raise ValueError(f"unknown head '{kind}'; choose one of: {', '.join(head_kinds())}")
    return head_class(kind)(input_dim, n_classes)


def load_head(directory: Path | str) -> Head:
    """The head saved in ``directory``, whichever kind it is."""
    directory = Path(directory)
    try:
        meta = json.loads((directory / HEAD_FILE).read_text(encoding="utf-8"))
        kind, input_dim, n_classes = meta["kind"], int(meta["input_dim"]), int(meta["n_classes"])
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"no saved head in {directory} ({HEAD_FILE} is missing).") from exc
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{directory / HEAD_FILE} is damaged ({exc}).") from exc
    if kind not in HEADS.entries():
        raise ValueError(f"{directory}: unknown head kind '{kind}'.")
    return head_class(kind)._load_weights(directory, input_dim, n_classes)
