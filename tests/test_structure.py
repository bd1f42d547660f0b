"""The import graph of src/reasonsift keeps the project's three structural rules (read with ``ast``).

1. No import cycle, counting imports inside functions too (a lazy import still ties two modules).
2. No module imports a private (``_name``) name from another module.
3. A ``run_<stage>.py`` exports its stage only: no other stage imports it. What two stages share
   lives in a module both may import; only the front door (``api.py``) and the demo, which runs
   every stage end to end, call the stage functions.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "reasonsift"
# The modules that may call a run_<stage>.py: the one front door, and the end-to-end demo.
STAGE_CALLERS = {"reasonsift.api", "reasonsift.synth.demo"}


def _modules() -> dict[str, Path]:
    """{dotted name: file} of every module of the package (a package is named by its __init__)."""
    out = {}
    for path in sorted((SRC / PACKAGE).rglob("*.py")):
        parts = path.relative_to(SRC).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _imports(path: Path, modules: dict[str, Path]) -> list[tuple[str, str, int]]:
    """(imported module, imported name or "", line) for every reasonsift import in ``path``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(a.name, "", node.lineno) for a in node.names if a.name.split(".")[0] == PACKAGE]
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == PACKAGE:
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                # ``from reasonsift.scoring import scorer`` imports the module scorer, not a name
                found.append((sub, "", node.lineno) if sub in modules else (node.module, alias.name, node.lineno))
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: {m for m, _, _ in _imports(path, modules) if m in modules and m != name}
            for name, path in modules.items()}


def test_the_scan_sees_the_package():
    graph = _graph()
    assert {"reasonsift.api", "reasonsift.runfolder", "reasonsift.scoring.run_scoring"} <= set(graph)
    assert "reasonsift.runfolder" in graph["reasonsift.scoring.run_scoring"]


def test_no_import_cycle():
    graph = _graph()
    # The package face (reasonsift/__init__.py re-exports the API) is what every absolute import
    # passes through; its own edge is not a dependency of the modules below it.
    graph[PACKAGE] = set()
    cycles, state = [], {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_no_private_name_imported_from_another_module():
    modules = _modules()
    bad = [f"{path.relative_to(SRC)}:{line} imports {name} from {module}"
           for path in modules.values() for module, name, line in _imports(path, modules)
           if name.startswith("_") and not name.startswith("__")]
    assert not bad, "\n".join(bad)


def test_no_stage_imports_another_stages_run_module():
    modules = _modules()
    bad = []
    for importer, path in modules.items():
        for module, _, line in _imports(path, modules):
            is_stage = re.fullmatch(rf"{PACKAGE}\.\w+\.run_\w+", module)  # reasonsift.<stage>.run_<stage>
            if is_stage and importer not in STAGE_CALLERS:
                bad.append(f"{path.relative_to(SRC)}:{line} imports {module}")
    assert not bad, "\n".join(bad)


def test_enumerations_are_declared_once():
    """Selection dispatches on exactly the methods the config's Literal declares."""
    from reasonsift.config import SELECT_METHODS
    from reasonsift.selection.select import METHODS

    assert tuple(METHODS) == SELECT_METHODS
