"""The FaceLab command line: one module per command in this package.

Conventions for every command: with ``--json`` standard output holds only the JSON
document (progress and logs go to standard error); errors print one line and exit
non-zero, never a traceback. A command module defines ``HELP``,
``add_arguments(parser)`` and ``run(args) -> dict``; the returned dict is the JSON
document, and its ``"text"`` entry (dropped from the JSON) is what a person reads.

Command modules import the rest of ``core`` inside ``run`` on purpose (start-up speed): building
the parser imports every command module, and ``--help`` or ``scan`` must not pay for TensorFlow.

Commands work in the default workspace (the home's own datasets, runs and calibrations; see
``core.config``). The global ``--workspace ID`` (or ``FACELAB_WORKSPACE``) lets the server's owner
run a command in a student's workspace instead.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import pkgutil
import sys
from typing import Any

from core.config import check_workspace_id, use_workspace, workspaces_dir
from core.files import storage_problem
from core.services.maintenance import clean_at_startup


class CliError(Exception):
    """A user-facing failure: printed as one line, exit code 2."""


def log(message: str) -> None:
    """Progress and notes for people: always on standard error, so --json output stays clean."""
    print(message, file=sys.stderr, flush=True)


def _existing_workspace(workspace_id: str | None) -> str | None:
    """The workspace to run in: None (the default one), or a well-formed id of a workspace that exists.

    An unknown id is refused rather than created: a mistyped id would otherwise write a run where nobody sees it.
    """
    if workspace_id is None:
        return None
    try:
        check_workspace_id(workspace_id)
    except ValueError as exc:
        raise CliError(f"--workspace {workspace_id!r}: {exc}") from exc
    if not (workspaces_dir() / workspace_id).is_dir():
        raise CliError(f"--workspace {workspace_id}: there is no such workspace in {workspaces_dir()}")
    return workspace_id


def _commands() -> dict[str, Any]:
    package = importlib.import_module(__name__)
    return {
        info.name: importlib.import_module(f"{__name__}.{info.name}")
        for info in pkgutil.iter_modules(package.__path__)
        if not info.name.startswith("_")
    }


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m core", description="FaceLab: face recognition workbench.")
    parser.add_argument("--workspace", metavar="ID", default=os.environ.get("FACELAB_WORKSPACE") or None,
                        help="work in this browser workspace (the id in its link) instead of the default one; "
                             "default: $FACELAB_WORKSPACE")
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
    clean_at_startup()  # what a killed run left in the home goes (never what a running server is writing)
    try:
        with use_workspace(_existing_workspace(args.workspace)):
            result = args._module.run(args)
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    except (CliError, ValueError, RuntimeError, OSError) as exc:
        print(f"error: {storage_problem(exc) or exc}", file=sys.stderr)
        return 2
    text = result.pop("text", "")
    if args.json:
        print(json.dumps(result, indent=2, default=str))
    elif text:
        print(text)
    return 0
