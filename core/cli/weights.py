"""``python -m core weights``: where each backbone's weights are; download or install them."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

HELP = "Show each backbone's weight files (where found, size, checksum); download or install them."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--download", metavar="NAME",
                        help="download a backbone's weights (e.g. vggface16) or a weight file by its name")
    parser.add_argument("--url", help="with --download: fetch from this URL instead (a mirror, or file:///path)")
    parser.add_argument("--from", dest="source", metavar="PATH",
                        help="install a weight file you already have (copied into the FaceLab weights folder)")


def _progress_bar(label: str) -> Callable[[int, int], None]:
    """A ``(done, total)`` callback drawing a one-line bar on standard error, redrawn once per percent."""
    shown = -1

    def update(done: int, total: int) -> None:
        nonlocal shown
        percent = min(100, done * 100 // total) if total else 0
        if percent != shown:
            shown = percent
            bar = "#" * (percent // 4)
            print(f"\r{label} [{bar:<25}] {percent:3d}%  {done / 1e6:.0f}/{total / 1e6:.0f} MB",
                  end="", file=sys.stderr, flush=True)

    return update


def _table(rows: list[dict[str, Any]]) -> str:
    header = ("backbone", "file", "size", "sha256", "where")
    lines = [
        (row["backbone"], row["name"], f"{row['size'] / 1e6:.0f} MB" if row["size"] else "-",
         row["sha256"][:16] if row["sha256"] else "-", row["path"] or f"missing ({row['error'] or 'not downloaded'})")
        for row in rows
    ]
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *lines)]
    return "\n".join("  ".join(str(cell).ljust(width) for cell, width in zip(line, widths)).rstrip()
                     for line in (header, *lines))


def run(args: argparse.Namespace) -> dict[str, Any]:
    from core.pipeline import weights
    from core.pipeline.backbones import BACKBONES

    BACKBONES.entries()  # each backbone module declares its weight files when imported

    if args.url and not args.download:
        raise ValueError("--url only makes sense with --download NAME")
    if args.download and args.source:
        raise ValueError("use either --download or --from, not both")
    notes = []
    if args.download:
        entry = weights.known(args.download)
        path = weights.download(entry.name, progress=_progress_bar(entry.name), url=args.url)
        print(file=sys.stderr)
        notes.append(f"Downloaded {entry.name} to {path}.")
    elif args.source:
        path = weights.install_local(args.source)
        notes.append(f"Installed {args.source} as {path}.")
    rows = weights.status()
    return {"weights": rows, "text": "\n".join([*notes, _table(rows)])}
