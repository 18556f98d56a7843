"""Paging of long lists (thumbnail grids, galleries): which items page N shows.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

T = TypeVar("T")


def page_count(n_items: int, per_page: int) -> int:
    """Number of pages needed for ``n_items`` (at least 1, so an empty gallery still has page 1)."""
    if per_page < 1:
        raise ValueError("per_page must be at least 1.")
    return max(1, -(-n_items // per_page))


def page(items: Sequence[T], page: int, per_page: int) -> list[T]:
    """The items on 1-based ``page``; out-of-range pages are clamped so a shrinking gallery never shows nothing."""
    number = min(max(1, page), page_count(len(items), per_page))
    start = (number - 1) * per_page
    return list(items[start:start + per_page])
