"""``python -m core scan DATASET``: audit a dataset before training on it."""

from __future__ import annotations

import argparse
from typing import Any

HELP = "Audit a dataset: people and photos per split, broken files, duplicates and train/test leakage."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dataset", help="a dataset folder (train/, validation/, test/) or the name of a FaceLab dataset")
    parser.add_argument("--no-hashes", action="store_true",
                        help="skip the duplicate and leakage check (reads image headers only; faster)")


def _text(result: dict[str, Any], table: str) -> str:
    totals = result["totals"]
    split_line = ", ".join(f"{split} {n}" for split, n in totals["per_split"].items()) or "no splits"
    lines = [
        f"Dataset {result['dataset']}",
        f"{totals['people']} people, {totals['images']} usable images ({split_line}); "
        f"{totals['unreadable']} unreadable, {totals['unlabelled']} unlabelled.",
        "",
        table,
        "",
    ]
    if result["problems"]:
        lines.append(f"{len(result['problems'])} problem(s):")
        lines += [f"  [{p['severity']}] {p['kind']}: {p['path'] + ': ' if p['path'] else ''}{p['message']}"
                  for p in result["problems"]]
    else:
        lines.append("No problems found.")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> dict[str, Any]:
    from core.data.audit import audit
    from core.data.layout import resolve, scan

    result = audit(scan(resolve(args.dataset)), with_hashes=not args.no_hashes)
    document = result.to_json()
    table = result.table
    document["text"] = _text(document, table.to_string() if not table.empty else "(no labelled photos)")
    return document
