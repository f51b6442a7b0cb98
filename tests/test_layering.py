"""The architecture as a test: imports flow one way (DESIGN.md §3).

``cli → workers → messages → industriverse``; inside the core the stages of the value loop,
bottom first: model, plan, verify, trust, fleet, operate, report (each imports only those below
it; ``industriverse/__init__.py`` and ``errors.py`` serve all of them); no import circle between
modules, counting imports made inside functions too.  The check itself is tested on a synthetic
module tree, so a deliberate upward import is shown to fail.
"""
from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components

ROOT = Path(__file__).resolve().parent.parent
TOP_PACKAGES = ("industriverse", "messages", "workers", "console", "cli")
# which top-level packages each may import (the project's own; third-party ones are free)
MAY_IMPORT = {
    "industriverse": {"industriverse"},
    "messages": {"messages", "industriverse"},
    "workers": {"workers", "messages", "industriverse"},
    "console": {"console", "workers", "messages", "industriverse"},
    "cli": {"cli", "console", "workers", "messages", "industriverse"},
}
CORE_STAGES = ("model", "plan", "verify", "trust", "fleet", "operate", "report")


def module_names(root: Path, packages=TOP_PACKAGES) -> dict[str, Path]:
    """``{dotted module name: file}`` for every ``.py`` file under the given top-level packages."""
    out = {}
    for pkg in packages:
        for path in sorted((root / pkg).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


def import_graph(root: Path, packages=TOP_PACKAGES) -> dict[str, set[str]]:
    """``{module: modules of the project it imports}``, from every import statement (also inside functions)."""
    modules = module_names(root, packages)
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        is_pkg = path.name == "__init__.py"
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            if isinstance(node, ast.Import):
                candidates = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = name.split(".") if is_pkg else name.split(".")[:-1]
                    base = base[: len(base) - (node.level - 1)]
                    mod = ".".join(base + ([node.module] if node.module else []))
                else:
                    mod = node.module or ""
                # ``from pkg import name``: the submodule pkg.name where there is one, else pkg
                candidates = [f"{mod}.{alias.name}" if f"{mod}.{alias.name}" in modules else mod for alias in node.names]
            else:
                continue
            for cand in candidates:
                # the longest prefix that is a module of the project
                parts = cand.split(".")
                for i in range(len(parts), 0, -1):
                    prefix = ".".join(parts[:i])
                    if prefix in modules:
                        if prefix != name:
                            targets.add(prefix)
                        break
        graph[name] = targets
    return graph


def _stage(module: str) -> int | None:
    parts = module.split(".")
    if parts[0] != "industriverse" or len(parts) < 2 or parts[1] not in CORE_STAGES:
        return None  # the package itself and errors.py sit below every stage
    return CORE_STAGES.index(parts[1])


def layering_violations(graph: dict[str, set[str]]) -> list[str]:
    """Every import that runs against the architecture, one line each."""
    bad = []
    for src, targets in sorted(graph.items()):
        top = src.split(".")[0]
        for dst in sorted(targets):
            dtop = dst.split(".")[0]
            if dtop not in MAY_IMPORT.get(top, {top}):
                bad.append(f"{src} imports {dst}: {top} may not import {dtop}")
                continue
            s, d = _stage(src), _stage(dst)
            if d is not None and (s is None and top == "industriverse" or s is not None and d > s):
                bad.append(f"{src} imports {dst}: upward ({dst.split('.')[1]} is above "
                           f"{src.split('.')[1] if s is not None else 'the package root'})")
    return bad


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (import circles)."""
    names = sorted(graph)
    index = {n: i for i, n in enumerate(names)}
    rows = [index[s] for s in names for d in graph[s] if d in index]
    cols = [index[d] for s in names for d in graph[s] if d in index]
    adj = csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(names), len(names)))
    _, labels = connected_components(adj, directed=True, connection="strong")
    groups: dict[int, list[str]] = {}
    for n, lab in zip(names, labels):
        groups.setdefault(int(lab), []).append(n)
    return [g for g in groups.values() if len(g) > 1]


def test_the_project_follows_its_layers():
    assert layering_violations(import_graph(ROOT)) == []


def test_the_project_has_no_import_circle():
    assert import_cycles(import_graph(ROOT)) == []


def test_core_holds_only_its_root_modules_and_the_stages():
    core = ROOT / "industriverse"
    files = {p.name for p in core.glob("*.py")}
    dirs = {p.name for p in core.iterdir() if p.is_dir() and not p.name.startswith(("_", "."))}
    assert files == {"__init__.py", "errors.py"}
    assert dirs == set(CORE_STAGES)


# ---- the check itself, on a synthetic tree ------------------------------------------------
def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    for pkg in TOP_PACKAGES:
        (tmp_path / pkg).mkdir(exist_ok=True)
    return tmp_path


CLEAN = {
    "industriverse/__init__.py": "",
    "industriverse/errors.py": "",
    "industriverse/model/__init__.py": "",
    "industriverse/model/network.py": "from industriverse.errors import BadInput\n",
    "industriverse/plan/__init__.py": "",
    "industriverse/plan/lp.py": "from industriverse.model.network import Network\nfrom . import tracking\n",
    "industriverse/plan/tracking.py": "import numpy\n",
    "messages/__init__.py": "",
    "messages/types.py": "from industriverse.model import network\n",
    "workers/__init__.py": "",
    "cli/__init__.py": "",
    "workers/optimizer.py": "from messages import types\nfrom industriverse.plan.lp import solve\n",
}


def test_check_passes_a_clean_tree(tmp_path):
    graph = import_graph(_tree(tmp_path, CLEAN))
    assert graph["industriverse.plan.lp"] == {"industriverse.model.network", "industriverse.plan.tracking"}
    assert layering_violations(graph) == [] and import_cycles(graph) == []


@pytest.mark.parametrize("rel, text, expected", [
    # a lower stage importing a higher one, even lazily inside a function
    ("industriverse/model/network.py", "def f():\n    from industriverse.plan import lp\n", "upward (plan is above model)"),
    # the core importing a bus
    ("industriverse/plan/tracking.py", "import workers.optimizer\n", "industriverse may not import workers"),
    ("industriverse/model/network.py", "from messages.types import X\n", "industriverse may not import messages"),
    ("messages/types.py", "from workers import optimizer\n", "messages may not import workers"),
    ("workers/optimizer.py", "import cli\n", "workers may not import cli"),
])
def test_check_fails_a_deliberate_bad_import(tmp_path, rel, text, expected):
    files = dict(CLEAN, **{rel: text})
    bad = layering_violations(import_graph(_tree(tmp_path, files)))
    assert any(expected in line for line in bad), bad


def test_check_finds_an_import_circle(tmp_path):
    files = dict(CLEAN, **{"industriverse/plan/tracking.py": "from .lp import solve\n"})
    assert import_cycles(import_graph(_tree(tmp_path, files))) == [["industriverse.plan.lp", "industriverse.plan.tracking"]]
