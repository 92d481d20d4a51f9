"""Imports point one way: commands -> service -> runtime / bus / backends -> model / domain.

The bus encodes what the runtime makes, from the plain types of ``inspectd.domain``; it never
imports the runtime (not even for type hints), and the domain imports nothing above it.
"""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "inspectd"


def _imports(path: Path, root: Path = ROOT) -> list[tuple[int, str]]:
    """(line, module) of every import in a file, anywhere in it (functions, TYPE_CHECKING blocks
    included); relative imports resolved against the file's package."""
    package = ".".join(path.relative_to(root).with_suffix("").parts[:-1])
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, a.name) for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            if module == "inspectd":      # ``from inspectd import runtime``: the names are packages
                found.extend((node.lineno, f"inspectd.{a.name}") for a in node.names)
            else:
                found.append((node.lineno, module))
    return found


def _offending(folder: str, allowed) -> list[str]:
    return [f"{path.relative_to(ROOT)}:{line}: {module}"
            for path in sorted((PKG / folder).rglob("*.py"))
            for line, module in _imports(path)
            if (module == "inspectd" or module.startswith("inspectd.")) and not allowed(module)]


def test_the_bus_imports_nothing_from_the_runtime():
    bad = _offending("bus", lambda m: not (m == "inspectd.runtime" or m.startswith("inspectd.runtime.")))
    assert not bad, "inspectd/bus/ imports the runtime (use inspectd.domain's types):\n" + "\n".join(bad)


def test_the_domain_imports_nothing_above_it():
    bad = _offending("domain", lambda m: m.startswith("inspectd.domain"))
    assert not bad, "inspectd/domain/ imports from the rest of the package:\n" + "\n".join(bad)


def test_the_checks_see_an_import_of_the_runtime(tmp_path):
    """The walk finds imports in functions, TYPE_CHECKING blocks and relative forms."""
    probe = tmp_path / "inspectd" / "bus" / "probe.py"
    probe.parent.mkdir(parents=True)
    probe.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..runtime import frame\n"
                     "def f():\n    import inspectd.runtime.pipeline\n    from inspectd import runtime\n")
    found = [m for _, m in _imports(probe, tmp_path)]
    assert found == ["typing", "inspectd.runtime", "inspectd.runtime.pipeline", "inspectd.runtime"]


def test_importing_the_bus_loads_no_runtime_module():
    """Transitively too: every bus module imported in a fresh interpreter, then sys.modules looked at."""
    modules = sorted(f"inspectd.bus.{p.stem}" for p in (PKG / "bus").glob("*.py") if p.stem != "__init__")
    code = (f"import importlib, sys\nfor m in {modules!r}: importlib.import_module(m)\n"
            "above = ('inspectd.runtime', 'inspectd.backends', 'inspectd.model', 'inspectd.config', 'inspectd.commands')\n"
            "print(' '.join(sorted(m for m in sys.modules if any(m == a or m.startswith(a + '.') for a in above))))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [], f"importing inspectd.bus loads {out.stdout.strip()}"
