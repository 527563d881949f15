"""Render every combination of the choice questions and check the generated tree statically."""

from __future__ import annotations

import itertools
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

from tests.template_support import render, text_files
from vertexkit.project.config import environments, load_config

ENVIRONMENTS = ["dev", "staging", "prod"]
ENV_SETS = [
    list(combo)
    for size in range(1, len(ENVIRONMENTS) + 1)
    for combo in itertools.combinations(ENVIRONMENTS, size)
]
PYTHONS = ["3.10", "3.11", "3.12"]
ORCHESTRATORS = ["vertex", "kfp"]
MATRIX = [(envs, py, orch) for envs in ENV_SETS for py in PYTHONS for orch in ORCHESTRATORS]
LEFTOVER = re.compile(r"\{\{|\}\}|\{%|%\}|\{#|#\}")

EXPECTED_FILES = [
    ".copier-answers.yml",
    ".gitignore",
    ".dockerignore",
    ".pre-commit-config.yaml",
    "README.md",
    "pyproject.toml",
    "tasks.py",
    "config/base.yaml",
    "components/Dockerfile",
    "components/demo_pkg/__init__.py",
    "components/demo_pkg/components.py",
    "components/demo_pkg/data.py",
    "components/demo_pkg/model.py",
    "components/demo_pkg/schema.yaml",
    "pipelines/training.py",
    "pipelines/prediction.py",
    "data/train.csv",
    "data/score.csv",
    "data/README.md",
    "tests/conftest.py",
    "tests/test_model.py",
    "tests/test_pipelines.py",
]


def _ruff_clean(project: Path) -> None:
    for command in (["check", "--no-cache", "."], ["format", "--check", "--no-cache", "."]):
        result = subprocess.run(
            [sys.executable, "-m", "ruff", *command], cwd=project, capture_output=True, text=True
        )
        assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(("envs", "python", "orchestrator"), MATRIX, ids=lambda v: str(v))
def test_rendered_project(tmp_path: Path, envs: list[str], python: str, orchestrator: str) -> None:
    answers = {
        "environments": envs,
        "python_version": python,
        "package_name": "demo_pkg",
        "orchestrator": orchestrator,
    }
    project = render(tmp_path / "project", answers)
    for relative in EXPECTED_FILES:
        assert (project / relative).is_file(), f"{relative} missing"
    assert environments(project) == sorted(envs)
    for env in ENVIRONMENTS:
        assert (project / "config" / f"{env}.yaml").exists() == (env in envs)

    for path in text_files(project):
        text = path.read_text(encoding="utf-8")
        assert not LEFTOVER.search(text), f"template syntax left in {path.relative_to(project)}"
        assert not path.name.endswith(".jinja")
        relative = path.relative_to(project)
        assert text.endswith("\n") and not text.endswith("\n\n"), f"{relative}: end of file"
        assert not re.search(r"[ \t]+$", text, re.MULTILINE), f"{relative}: trailing whitespace"
        if path.suffix in {".yaml", ".yml"}:
            yaml.safe_load(text)

    pyproject = tomllib.loads((project / "pyproject.toml").read_text())
    assert pyproject["project"]["requires-python"] == f">={python},<3.13"
    assert pyproject["tool"]["ruff"]["target-version"] == f"py{python.replace('.', '')}"
    assert any(dep.startswith("vertexkit @ ") for dep in pyproject["project"]["dependencies"])
    assert f"FROM python:{python}." in (project / "components" / "Dockerfile").read_text()

    # Values that come from answers are quoted in the generated YAML: a name YAML reads as a
    # boolean, null, number or date stays a string.
    for path in sorted((project / "config").glob("*.yaml")):
        for line in path.read_text().splitlines():
            from_answers = "acme-ml-dev" in line or "ml-pipelines" in line
            if from_answers and not line.lstrip().startswith("#"):
                assert re.match(r'^\s*[a-z_]+: "[^"]+"$', line), f"{path.name}: unquoted: {line}"

    for env in [None, *envs]:
        config = load_config(project, env)
        assert config.gcp.project_id == "acme-ml-dev"
        assert config.orchestrator == orchestrator
        assert (config.kfp is not None) == (orchestrator == "kfp")
    readme = (project / "README.md").read_text()
    assert ("invoke schedule" in readme) == (orchestrator == "vertex")
    _ruff_clean(project)


@pytest.mark.parametrize("python", PYTHONS)
def test_dockerfile_is_hadolint_clean(tmp_path: Path, python: str) -> None:
    project = render(tmp_path / "project", {"python_version": python})
    result = subprocess.run(
        [str(Path(sys.executable).parent / "hadolint"), "components/Dockerfile"],
        cwd=project,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_long_names_stay_ruff_clean(tmp_path: Path) -> None:
    """Generated lines grow with the names: the longest valid names must still be formatted."""
    answers = {
        "project_name": "Fraud Detection Models For Card Payments",
        "package_name": "a_very_long_package_name_for_fraud_detection_models",
        "naming_prefix": "a-very-long-prefix-x",
    }
    _ruff_clean(render(tmp_path / "long", answers))
