"""The import contract: core/ is layered, acyclic and free of Streamlit; the Dataset page loads no TensorFlow.

Read from the source with ``ast`` (nothing is imported), so a violation is caught even on a
path no other test executes. ARCHITECTURE.md draws the same layers.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Lowest first: a module may import its own layer and those below it, never one above.
LAYERS: list[tuple[str, ...]] = [
    ("core.config", "core.files", "core.images", "core.registry", "core.drawing", "core.workspaces"),
    ("core.data",),
    ("core.pipeline",),
    ("core.compare",),
    ("core.training",),
    ("core.runs",),
    ("core.services",),
    ("core.api", "core.cli", "core.__main__", "core"),
]
HEAVY = ("tensorflow", "keras", "mtcnn", "dlib", "cv2", "onnxruntime", "onnx")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for p in sorted((ROOT / "core").rglob("*.py"))}


def layer_of(module: str) -> int:
    """The index in LAYERS of the longest prefix that owns ``module``."""
    best, rank = -1, -1
    for index, owners in enumerate(LAYERS):
        for owner in owners:
            if (module == owner or module.startswith(owner + ".")) and len(owner) > best:
                best, rank = len(owner), index
    assert rank >= 0, f"{module} belongs to no layer: add it to LAYERS and ARCHITECTURE.md"
    return rank


@functools.cache  # every parametrized test asks again: parse each file once per session
def imports(path: Path, module_level_only: bool = False) -> list[tuple[str, ast.stmt]]:
    """(imported module, statement) pairs; ``from core.x import y`` counts as core.x.y when that is a module."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    nodes = tree.body if module_level_only else list(ast.walk(tree))
    found = []
    for node in nodes:
        if isinstance(node, ast.Import):
            found += [(alias.name, node) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                found.append((full if full in MODULES else node.module, node))
        elif isinstance(node, ast.If) and module_level_only:  # TYPE_CHECKING blocks count as module level
            found += imports_of_block(node.body)
    return found


def imports_of_block(body: list[ast.stmt]) -> list[tuple[str, ast.stmt]]:
    out = []
    for node in body:
        if isinstance(node, ast.Import):
            out += [(alias.name, node) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.append((node.module, node))
    return out


@functools.cache
def core_edges(module_level_only: bool = False) -> dict[str, set[str]]:
    return {name: {target for target, _ in imports(path, module_level_only) if target in MODULES or target == "core"}
            for name, path in MODULES.items()}


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_import_upward(module: str) -> None:
    mine = layer_of(module)
    above = sorted(target for target in core_edges()[module] if layer_of(target) > mine)
    assert not above, f"{module} (layer {mine}) imports a higher layer: {above}"


def test_no_import_cycle() -> None:
    """Every import counts, function-level ones too: a lazy import must never be what hides a cycle."""
    edges = core_edges()
    # A package's __init__ is imported with any of its modules; that is not an edge of the module's own.
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for target in sorted(edges.get(node, ())):
            if target == node or node.startswith(target + "."):
                continue  # a module importing its own package (e.g. a plug-in registering itself)
            if state.get(target) == 1:
                raise AssertionError("import cycle: " + " → ".join(stack[stack.index(target):] + [target]))
            if target not in state:
                visit(target)
        stack.pop()
        state[node] = 2

    for module in sorted(edges):
        if module not in state:
            visit(module)


def test_core_never_imports_streamlit() -> None:
    offenders = sorted(name for name, path in MODULES.items()
                       if any(target.split(".")[0] == "streamlit" for target, _ in imports(path)))
    assert not offenders, f"core must stay usable without Streamlit: {offenders}"


def test_core_imports_inside_functions_say_why() -> None:
    """A function-level import of core is either in the CLI (documented there: start-up speed) or commented."""
    offenders = []
    for name, path in MODULES.items():
        if name.startswith("core.cli"):
            continue
        source = path.read_text(encoding="utf-8")
        lines = source.splitlines()
        functions = [n for n in ast.walk(ast.parse(source)) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]
        for node in {id(n): n for f in functions for n in ast.walk(f)}.values():
            targets = ([a.name for a in node.names] if isinstance(node, ast.Import)
                       else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            if any(t.split(".")[0] == "core" for t in targets) and "#" not in lines[node.lineno - 1]:
                offenders.append(f"{name}:{node.lineno} imports {targets[0]}")
    assert not offenders, "\n".join(offenders)


def module_closure(start: Path) -> set[str]:
    """Every module imported at module level from ``start`` onwards (core, pages and third-party roots)."""
    seen: set[str] = set()
    todo = [start]
    while todo:
        path = todo.pop()
        for target, _ in imports(path, module_level_only=True):
            if target in seen:
                continue
            seen.add(target)
            parts = target.split(".")
            for i in range(1, len(parts) + 1):  # importing a.b.c runs a/__init__ and a/b/__init__ too
                prefix = ".".join(parts[:i])
                seen.add(prefix)
                local = MODULES.get(prefix) or (ROOT / (prefix.replace(".", "/") + ".py"))
                if isinstance(local, Path) and local.is_file() and local not in todo:
                    todo.append(local)
    return seen


def test_dataset_page_loads_no_deep_learning_library() -> None:
    """The Dataset page is the first page a class opens: TensorFlow (~10 s) must not load with it."""
    heavy = sorted(m for m in module_closure(ROOT / "pages" / "dataset.py") if m.split(".")[0] in HEAVY)
    assert not heavy, f"pages/dataset.py loads {heavy} at import"


PAGES = sorted((ROOT / "pages").rglob("*.py")) + [ROOT / "app.py"]


@pytest.mark.parametrize("path", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_pages_only_arrange_widgets(path: Path) -> None:
    """No page holds a thread or a process: long work is a core.services.jobs.Job the page polls."""
    engine = sorted({target for target, _ in imports(path) if target.split(".")[0] in {"threading", "multiprocessing",
                                                                                         "subprocess", "concurrent"}})
    assert not engine, f"{path.name} runs engine machinery itself: {engine}"
    assert len(path.read_text(encoding="utf-8").splitlines()) <= 260, f"{path.name} is too long for a view"
