"""The package's layers: each module imports only its own layer or those below, and no cycles.

The rule is written in docs/contributing.md ("Layers"); this test is what enforces it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "helpers" / "vertexkit"
# Bottom up. The package root (``vertexkit``: the version) is below every layer.
LAYERS = ["project", "steps", "local", "orchestrators", "gcp", "faces"]
FACES = {"tasks", "service", "cli"}  # top-level modules that are faces


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def resolve(name: str, root: Path) -> str:
    """The module ``name`` names: itself if it is a module or package, else its parent (a name
    imported from a module)."""
    relative = Path(*name.split(".")[1:]) if "." in name else Path()
    if (root / relative).with_suffix(".py").is_file() or (
        root / relative / "__init__.py"
    ).is_file():
        return name
    return name.rsplit(".", 1)[0]


def imports(path: Path, root: Path) -> set[str]:
    """Every vertexkit module ``path`` imports, anywhere in the file (TYPE_CHECKING too)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {resolve(a.name, root) for a in node.names if a.name.startswith("vertexkit")}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            module = node.module or ""
            if module == "vertexkit" or module.startswith("vertexkit."):
                found |= {resolve(f"{module}.{a.name}", root) for a in node.names}
    return found


def layer(module: str) -> int:
    """-1 for the package root; else the index of the module's layer in LAYERS."""
    parts = module.split(".")
    if len(parts) == 1:
        return -1
    if parts[1] in FACES:
        return LAYERS.index("faces")
    return LAYERS.index(parts[1])


def graph(root: Path) -> dict[str, set[str]]:
    modules = {module_name(p, root): p for p in sorted(root.rglob("*.py"))}
    return {name: imports(path, root) - {name} for name, path in modules.items()}


def violations(edges: dict[str, set[str]]) -> list[str]:
    """Imports of a higher layer, and import cycles, each as one line."""
    problems = [
        f"{source} (layer {LAYERS[layer(source)]}) imports {target} (layer {LAYERS[layer(target)]})"
        for source, targets in sorted(edges.items())
        for target in sorted(targets)
        if layer(target) > layer(source)
    ]
    visiting: list[str] = []
    done: set[str] = set()

    def visit(node: str) -> None:
        if node in visiting:
            cycle = [*visiting[visiting.index(node) :], node]
            problems.append("import cycle: " + " -> ".join(cycle))
            return
        if node in done:
            return
        visiting.append(node)
        for target in sorted(edges.get(node, ())):
            visit(target)
        visiting.pop()
        done.add(node)

    for node in sorted(edges):
        visit(node)
    return problems


def test_every_module_belongs_to_a_layer() -> None:
    for name in graph(PACKAGE):
        parts = name.split(".")
        if len(parts) > 1:
            assert parts[1] in LAYERS or parts[1] in FACES, f"{name} is in no layer"


def test_the_package_follows_its_layering_rule() -> None:
    assert violations(graph(PACKAGE)) == []


def _tree(root: Path, files: dict[str, str]) -> Path:
    package = root / "vertexkit"
    for name, text in {"__init__.py": "", **files}.items():
        (package / name).parent.mkdir(parents=True, exist_ok=True)
        (package / name).write_text(text)
    return package


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        (
            {
                "project/__init__.py": "",
                "project/config.py": "from vertexkit.steps import Sender\n",
                "steps/__init__.py": "",
            },
            "vertexkit.project.config (layer project) imports vertexkit.steps (layer steps)",
        ),
        (
            {
                "steps/__init__.py": "",
                "steps/a.py": "def f():\n    from vertexkit.steps import b\n",
                "steps/b.py": "from vertexkit.steps.a import f\n",
            },
            "import cycle: vertexkit.steps.a -> vertexkit.steps.b -> vertexkit.steps.a",
        ),
    ],
)
def test_the_check_finds_upward_imports_and_cycles(
    tmp_path: Path, files: dict[str, str], expected: str
) -> None:
    assert expected in violations(graph(_tree(tmp_path, files)))
