"""The FaceLab command line: one module per command in this package.

Conventions for every command: with ``--json`` standard output holds only the JSON
document (progress and logs go to standard error); errors print one line and exit
non-zero, never a traceback. A command module defines ``HELP``,
``add_arguments(parser)`` and ``run(args) -> dict``; the returned dict is the JSON
document, and its ``"text"`` entry (dropped from the JSON) is what a person reads.

Command modules import the rest of ``core`` inside ``run`` on purpose (start-up speed): building
the parser imports every command module, and ``--help`` or ``scan`` must not pay for TensorFlow.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import pkgutil
import sys
from typing import Any


class CliError(Exception):
    """A user-facing failure: printed as one line, exit code 2."""


def log(message: str) -> None:
    """Progress and notes for people: always on standard error, so --json output stays clean."""
    print(message, file=sys.stderr, flush=True)


def _commands() -> dict[str, Any]:
    package = importlib.import_module(__name__)
    return {
        info.name: importlib.import_module(f"{__name__}.{info.name}")
        for info in pkgutil.iter_modules(package.__path__)
        if not info.name.startswith("_")
    }


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m core", description="FaceLab: face recognition workbench.")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, module in sorted(_commands().items()):
        command = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(command)
        command.add_argument("--json", action="store_true", help="print one JSON document on standard output")
        command.set_defaults(_module=module)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns the process exit code."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    args = build_parser().parse_args(argv)
    try:
        result = args._module.run(args)
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    except (CliError, ValueError, RuntimeError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    text = result.pop("text", "")
    if args.json:
        print(json.dumps(result, indent=2, default=str))
    elif text:
        print(text)
    return 0
