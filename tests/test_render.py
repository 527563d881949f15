"""Render every combination of the choice questions and check the generated tree statically."""

from __future__ import annotations

import itertools
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import yaml

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

import vertexkit
from tests.template_support import GIT, ROOT, release_repo, render, render_from_git, text_files
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
    ".python-version",
    ".gitignore",
    ".dockerignore",
    ".pre-commit-config.yaml",
    "renovate.json",
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
    # Schedules and the submission service vary along the matrix: every allowed value is
    # rendered (cloud-scheduler needs a service; vertex schedules need Vertex AI Pipelines).
    index = MATRIX.index((envs, python, orchestrator))
    kinds = (
        ["none", "vertex", "cloud-scheduler"]
        if orchestrator == "vertex"
        else ["none", "cloud-scheduler"]
    )
    schedule = kinds[index // 2 % len(kinds)]
    service = ["cloud-run", "cloud-functions", "none"][index % 3]
    if schedule == "cloud-scheduler" and service == "none":
        service = "cloud-run"
    answers = {
        "environments": envs,
        "python_version": python,
        "package_name": "demo_pkg",
        "orchestrator": orchestrator,
        "submission_service": service,
        "schedule": schedule,
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
    assert (project / ".python-version").read_text() == f"{python}\n"
    _check_vertexkit_from_checkout(project, pyproject)
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
        assert (config.scheduler, config.service.kind) == (schedule, service)
        assert (config.pipeline("training").schedule is not None) == (schedule != "none")
    readme = (project / "README.md").read_text()
    assert ("invoke schedule" in readme) == (schedule != "none")
    assert ("\n\n## Schedules\n\n" in readme) == (schedule != "none")
    assert "\n\n## Provisioning\n\n" in readme
    assert ("Cloud Scheduler" in readme) == (schedule == "cloud-scheduler")
    _ruff_clean(project)


def _check_vertexkit_from_checkout(project: Path, pyproject: dict) -> None:
    """Pinned to the template's version; uv takes it from this checkout, in editable mode."""
    dependencies = pyproject["project"]["dependencies"]
    assert f"vertexkit=={vertexkit.__version__}" in dependencies
    assert not [dep for dep in dependencies if "@" in dep or "file:" in dep]
    assert pyproject["tool"]["uv"]["sources"] == {
        "vertexkit": {"path": str(ROOT), "editable": True}
    }
    assert pyproject["dependency-groups"]["dev"] == [f"{pyproject['project']['name']}[dev]"]
    readme = (project / "README.md").read_text()
    assert f'pip install -e "{ROOT}" -e ".[dev]"' in readme


def _git(project: Path, *args: str) -> str:
    result = subprocess.run([*GIT, *args], cwd=project, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_copy_needs_no_trust_and_prints_the_first_commit(tmp_path: Path) -> None:
    # The copier command line without --trust: the template has no tasks, migrations or Jinja
    # extensions at this version, so neither copy nor a later update needs it (Renovate).
    project = tmp_path / "project"
    answers = {"gcp_project_id": "acme-ml-dev", "project_name": "Fraud"}
    data = [arg for key, value in answers.items() for arg in ("--data", f"{key}={value}")]
    copy = [sys.executable, "-m", "copier", "copy", "--defaults", "--vcs-ref", "HEAD"]
    copied = subprocess.run([*copy, *data, str(ROOT), str(project)], capture_output=True, text=True)
    assert copied.returncode == 0, copied.stderr
    output = copied.stdout + copied.stderr
    assert "cd " + str(project) in output
    version = vertexkit.__version__
    command = f'git init && git add --all && git commit -m "Render Fraud from vertexkit {version}"'
    assert command in output
    assert not (project / ".git").exists()
    # The printed command makes the repository, with nothing left out or ignored.
    subprocess.run(
        command.replace("git commit", " ".join([*GIT, "commit"])),
        shell=True,
        cwd=project,
        check=True,
        capture_output=True,
    )
    status = _git(project, "status", "--porcelain", "--untracked-files=all", "--ignored")
    assert status == ""
    tracked = _git(project, "ls-files").split()
    assert ".copier-answers.yml" in tracked and "pyproject.toml" in tracked


def test_copy_inside_a_git_repository_leaves_the_committing_to_it(tmp_path: Path) -> None:
    outer = tmp_path / "monorepo"
    outer.mkdir()
    _git(outer, "init", "-q")
    project = render(outer / "ml", {})
    assert not (project / ".git").exists()
    assert _git(outer, "rev-list", "--all") == ""
    assert _git(outer, "status", "--porcelain") == "?? ml/\n"


def test_rendered_from_git_takes_vertexkit_from_the_tag_and_updates_without_conflict(
    tmp_path: Path,
) -> None:
    version = vertexkit.__version__
    repo = release_repo(tmp_path / "vertexkit.git", tag=f"v{version}")
    project = render_from_git(repo, tmp_path / "project")
    pyproject = tomllib.loads((project / "pyproject.toml").read_text())
    assert f"vertexkit=={version}" in pyproject["project"]["dependencies"]
    assert pyproject["tool"]["uv"]["sources"] == {
        "vertexkit": {"git": f"file://{repo}", "tag": f"v{version}"}
    }
    readme = (project / "README.md").read_text()
    assert f'pip install "vertexkit @ git+file://{repo}@v{version}" -e ".[dev]"' in readme
    assert _git(project, "rev-list", "--count", "HEAD") == "1\n"

    # The team adds a dependency of its own, first in its part of the list, and commits.
    text = (project / "pyproject.toml").read_text()
    ours = "  # The project's own dependencies: add yours here.\n"
    assert ours in text
    (project / "pyproject.toml").write_text(text.replace(ours, ours + '  "xgboost>=2",\n'))
    _git(project, "commit", "-qam", "xgboost")

    # A later, untagged template commit moves vertexkit to 0.3.0: `copier update` to it changes
    # the pin and its source without conflicting with the team's line, and commits nothing.
    copier_yml = (repo / "copier.yml").read_text()
    (repo / "copier.yml").write_text(copier_yml.replace(f'"{version}"', '"0.3.0"', 1))
    _git(repo, "commit", "-qam", "vertexkit 0.3.0")
    head = _git(repo, "rev-parse", "HEAD").strip()
    from copier import run_update

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the old version's answers are replayed, with warnings
        run_update(project, vcs_ref="HEAD", defaults=True, overwrite=True, quiet=True)
    text = (project / "pyproject.toml").read_text()
    assert "<<<<<<<" not in text
    pyproject = tomllib.loads(text)
    assert pyproject["project"]["dependencies"][:3] == [
        "vertexkit==0.3.0",
        "xgboost>=2",
        "kfp==2.17.0",
    ]
    assert pyproject["tool"]["uv"]["sources"] == {
        "vertexkit": {"git": f"file://{repo}", "rev": head}
    }
    assert _git(project, "rev-list", "--count", "HEAD") == "2\n"
    assert " M pyproject.toml" in _git(project, "status", "--porcelain")


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


@pytest.mark.parametrize("tool", ["terraform", "gcloud", "none"])
def test_provisioning_choice_fills_the_config_and_the_readme(tmp_path: Path, tool: str) -> None:
    project = render(tmp_path / "project", {"provisioning": tool, "environments": ["dev", "prod"]})
    for env in (None, "dev", "prod"):
        assert load_config(project, env).provisioning.tool == tool
    answers = yaml.safe_load((project / ".copier-answers.yml").read_text())
    assert answers["provisioning"] == tool  # kept for copier update
    readme = (project / "README.md").read_text()
    section = readme[readme.index("## Provisioning") : readme.index("## Layout")]
    # Only the chosen tool's path is shown.
    assert ("terraform init" in section) == (tool == "terraform")
    assert ("-tfstate" in section) == (tool == "terraform")
    assert ("describe ... || gcloud ... create" in section) == (tool == "gcloud")
    assert ("managed elsewhere" in readme) == (tool == "none")
    assert ("invoke provision --env dev" in readme) == (tool != "none")
    assert "invoke precheck --env" in section
    assert "`config/<env>.yaml`" in section and "gcp.project_id" in section
    assert ("| `invoke provision --env ENV" in readme) == (tool != "none")
