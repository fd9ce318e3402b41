"""`evoforge.evaluators` is the code that runs inside the sandbox: standard library and numpy only.

Two checks: every import statement in every module of the package (at the top or inside a function) names
the standard library, numpy or `evoforge.evaluators` itself; and importing every module in a fresh
interpreter loads nothing else (what a module's imports pull in transitively).
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

import evoforge.evaluators
from evoforge.evaluators.location import import_root

PACKAGE = Path(evoforge.evaluators.__file__).resolve().parent
MODULES = sorted(PACKAGE.rglob("*.py"))
THIRD_PARTY = {"numpy"}
#: Imports outside the rule, each with the reason it is allowed.
ALLOWED = {
    # The root package: imported anyway as the parent of evoforge.evaluators, and its names load lazily
    # (PEP 562), so `import evoforge` runs nothing but its own standard-library imports
    # (checked below). evaluators.location uses it to find where evoforge is installed.
    "evoforge": "the lazy root package (location.import_root, code_dirs)",
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(["evoforge.evaluators", *[p for p in parts if p != "__init__"]])


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: inside the package by construction
                continue
            found.append((node.lineno, node.module or ""))
    return found


def _allowed(name: str) -> bool:
    top = name.split(".")[0]
    return (top in sys.stdlib_module_names or top in THIRD_PARTY or name in ALLOWED
            or name == "evoforge.evaluators" or name.startswith("evoforge.evaluators."))


def test_the_package_has_modules_to_check():
    names = {_module_name(p) for p in MODULES}
    assert {"evoforge.evaluators.runner", "evoforge.evaluators.candidate", "evoforge.evaluators.errors",
            "evoforge.evaluators.harnesses.bin_packing"} <= names


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_every_import_is_stdlib_numpy_or_the_package_itself(path):
    bad = [f"{path.relative_to(PACKAGE)}:{line}: import {name}" for line, name in _imports(path) if not _allowed(name)]
    assert not bad, ("evoforge.evaluators runs inside the sandbox and may import only the standard library, "
                     "numpy and itself; move this code out or list the import in ALLOWED with a reason:\n"
                     + "\n".join(bad))


def test_the_rule_catches_a_foreign_import(tmp_path):
    module = tmp_path / "bad.py"
    module.write_text("import os\n\ndef f():\n    from evoforge.engine import loop\n    import pandas\n")
    assert [n for _, n in _imports(module) if not _allowed(n)] == ["evoforge.engine", "pandas"]


def test_the_root_package_imports_only_the_standard_library():
    root = Path(import_root()) / "evoforge" / "__init__.py"
    assert all(name.split(".")[0] in sys.stdlib_module_names or name == "__future__"
               for _, name in _imports(root) if not name.startswith("evoforge.")), _imports(root)


def test_importing_every_module_loads_nothing_else():
    names = [_module_name(p) for p in MODULES]
    script = ("import sys, json\nbefore = set(sys.modules)\n"
              f"for name in {names!r}:\n    __import__(name)\n"
              "print(json.dumps(sorted(set(sys.modules) - before)))")
    done = subprocess.run([sys.executable, "-I", "-c", script], capture_output=True, text=True, timeout=120,
                          cwd=import_root(), env={"PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    loaded = json.loads(done.stdout)
    assert "numpy" in loaded and "evoforge.evaluators.harnesses.pde" in loaded
    # Private helpers (`_ctypes`, `_decimal`...) are the standard library's own extension modules.
    foreign = sorted(m for m in loaded if not _allowed(m) and not m.split(".")[0].startswith("_"))
    assert not foreign, f"importing evoforge.evaluators loaded modules outside the rule: {foreign}"
