"""The public API: what generated projects import from vertexkit, documented and importable."""

from __future__ import annotations

import ast
import importlib
import re
import subprocess
import sys
from pathlib import Path

import pytest

import vertexkit
from tests.template_support import ROOT, render


def test_every_public_name_is_importable_and_exported() -> None:
    for module_name, names in vertexkit.PUBLIC_API.items():
        module = importlib.import_module(module_name)
        for name in names:
            assert getattr(module, name) is not None, f"{module_name}.{name}"
        if hasattr(module, "__all__"):
            assert set(names) == set(module.__all__), module_name


def test_the_docs_list_every_public_name() -> None:
    text = (ROOT / "docs" / "api.md").read_text()
    sections = dict(re.findall(r"^## `([\w.]+)`\n(.*?)(?=^## |\Z)", text, re.M | re.S))
    assert set(sections) == set(vertexkit.PUBLIC_API)
    for module_name, names in vertexkit.PUBLIC_API.items():
        documented = set(re.findall(r"^\| `(\w+)` \|", sections[module_name], re.M))
        assert documented == set(names), module_name


def _vertexkit_imports(root: Path) -> set[tuple[str, str]]:
    """(module, name) of every ``from vertexkit... import name`` in the project's Python files;
    ``import vertexkit...`` statements as (module, "")."""
    found: set[tuple[str, str]] = set()
    for path in root.rglob("*.py"):
        if ".venv" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("vertexkit"):
                found |= {(str(node.module), alias.name) for alias in node.names}
            elif isinstance(node, ast.Import):
                found |= {(a.name, "") for a in node.names if a.name.startswith("vertexkit")}
    return found


@pytest.mark.parametrize("orchestrator", ["vertex", "kfp"])
def test_generated_projects_import_only_the_public_api(tmp_path: Path, orchestrator: str) -> None:
    project = render(tmp_path / "project", {"orchestrator": orchestrator})
    imports = _vertexkit_imports(project)
    assert imports, "the generated project imports nothing from vertexkit"
    outside = {
        f"{module}.{name}" if name else module
        for module, name in imports
        if name not in vertexkit.PUBLIC_API.get(module, ())
    }
    assert outside == set(), "imports outside vertexkit.PUBLIC_API (docs/api.md)"
    for module, name in imports:
        assert getattr(importlib.import_module(module), name) is not None


def test_a_package_loads_only_the_module_of_the_name_asked_for() -> None:
    code = (
        "import sys\n"
        "from vertexkit.local import read_table\n"
        "print('vertexkit.local.pipelines' in sys.modules, 'kfp' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.split() == ["False", "False"], result.stderr
