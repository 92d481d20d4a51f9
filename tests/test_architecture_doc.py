"""docs/architecture.md names functions as `name()` or `Class.method()`: each must exist in the
package, in the class named (so that a rename shows up here, not in a newcomer's search)."""
from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "architecture.md"


def _definitions() -> tuple[set[str], dict[str, set[str]], set[str]]:
    """Every function name defined in inspectd/, the methods of every class, and the names
    assigned at module level (constants, type aliases)."""
    functions: set[str] = set()
    methods: dict[str, set[str]] = {}
    assigned: set[str] = set()
    for path in (ROOT / "inspectd").rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                functions.add(node.name)
            elif isinstance(node, ast.ClassDef):
                methods.setdefault(node.name, set()).update(
                    n.name for n in node.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)))
        for node in tree.body:
            targets = node.targets if isinstance(node, ast.Assign) else \
                [node.target] if isinstance(node, ast.AnnAssign) else []
            assigned.update(t.id for t in targets if isinstance(t, ast.Name))
    return functions, methods, assigned


def test_every_function_the_architecture_doc_cites_exists():
    cited = re.findall(r"`([A-Za-z_][\w.]*)\(\)`", DOC.read_text(encoding="utf-8"))
    assert len(cited) > 30, "the doc cites its functions as `name()`"
    functions, methods, _ = _definitions()
    missing = []
    for name in cited:
        if "." in name:
            cls, meth = name.split(".", 1)
            if meth not in methods.get(cls, set()):
                missing.append(name)
        elif name not in functions:
            missing.append(name)
    assert not missing, f"docs/architecture.md cites what the code lacks: {sorted(set(missing))}"


def test_the_classes_and_constants_the_architecture_doc_names_exist():
    _, methods, assigned = _definitions()
    named = set(re.findall(r"`([A-Z][A-Za-z_]+)`", DOC.read_text(encoding="utf-8")))
    assert {"Pipeline", "RingBuffer", "Backend", "Source", "KINDS"} <= named
    missing = named - set(methods) - assigned
    assert not missing, f"docs/architecture.md names what the code lacks: {sorted(missing)}"
