"""The dependency rules of docs/architecture.md ("Who imports whom"), checked on the source: every import of
``evoforge.<folder>`` in each folder, at the top of a module or inside a function."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import evoforge.archive
import evoforge.engine
import evoforge.evaluators
import evoforge.prompts
import evoforge.sandbox

FOLDERS = {name: Path(module.__file__).resolve().parent for name, module in {
    "engine": evoforge.engine, "evaluators": evoforge.evaluators, "prompts": evoforge.prompts,
    "archive": evoforge.archive, "sandbox": evoforge.sandbox}.items()}
#: folder -> the other folders it may import
ALLOWED = {
    "engine": {"archive", "evaluators", "prompts", "sandbox"},
    "archive": {"evaluators"},
    "sandbox": {"evaluators"},
    "prompts": set(),
    "evaluators": set(),
}
DOCUMENT = Path(__file__).resolve().parents[1] / "docs" / "architecture.md"


def _imported_folders(path: Path) -> dict[str, list[str]]:
    """Our folders a module imports -> the import statements (``file:line``)."""
    found: dict[str, list[str]] = {}
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                 else [node.module] if isinstance(node, ast.ImportFrom) and node.module and not node.level else [])
        for name in names:
            parts = name.split(".")
            if parts[0] == "evoforge" and len(parts) > 1:
                found.setdefault(parts[1], []).append(f"{path.name}:{node.lineno}")
    return found


@pytest.mark.parametrize("folder", sorted(FOLDERS))
def test_dependencies_point_one_way(folder):
    wrong = []
    for path in sorted(FOLDERS[folder].rglob("*.py")):
        for target, where in _imported_folders(path).items():
            if target != folder and target not in ALLOWED[folder]:
                wrong += [f"{folder}/{w} imports evoforge.{target}" for w in where]
    assert not wrong, "docs/architecture.md, 'Who imports whom', forbids:\n" + "\n".join(wrong)


def test_nothing_imports_the_cli():
    users = [f"{p}" for folder in FOLDERS.values() for p in folder.rglob("*.py")
             if p.name != "cli.py" and any(
                 isinstance(n, ast.ImportFrom) and n.module == "evoforge.engine.cli"
                 or isinstance(n, ast.Import) and any(a.name == "evoforge.engine.cli" for a in n.names)
                 for n in ast.walk(ast.parse(p.read_text())))]
    assert users == []


def test_the_sandbox_registry_and_ray_executor_do_not_import_each_other():
    registry = FOLDERS["sandbox"] / "registry.py"
    ray = FOLDERS["sandbox"] / "ray_executor.py"
    imported = {n.module for n in ast.walk(ast.parse(ray.read_text())) if isinstance(n, ast.ImportFrom)}
    assert "evoforge.sandbox.registry" not in imported and "evoforge.sandbox.isolation" in imported
    assert registry.is_file()


def test_docstrings_cite_only_files_in_the_repository():
    offenders = [f"{p}" for folder in FOLDERS.values() for p in folder.rglob("*.py") if "DESIGN.md" in p.read_text()]
    assert offenders == []
    assert DOCUMENT.is_file()
    headings = {line[3:].replace("(contract)", "").strip() for line in DOCUMENT.read_text().splitlines()
                if line.startswith("## ")}
    cited = set()
    for folder in FOLDERS.values():
        for p in folder.rglob("*.py"):
            text = " ".join(p.read_text().split())
            cited |= {part.split('"')[0] for part in text.split('docs/architecture.md, "')[1:]}
    assert cited and cited <= headings, cited - headings
