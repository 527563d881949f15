"""Generated projects installed the way their README says, then tested and run locally.

A representative set: together the variants cover every value of every choice question
(python_version 3.10, 3.11, 3.12; environments dev, staging, prod).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from copier import run_copy

import vertexkit
from tests.template_support import (
    BASE_ANSWERS,
    ROOT,
    find_python,
    forget_cached_vertexkit,
    render,
)

VARIANTS = {
    "defaults": {"python_version": "3.11"},
    "staging-only-py310": {
        "python_version": "3.10",
        "environments": ["staging"],
        "project_name": "Fraud Scoring",
        "gcp_region": "europe-west4",
        "orchestrator": "kfp",
        "kfp_host": "https://kfp.example.com",
    },
    "all-envs-py312": {
        "python_version": "3.12",
        "environments": ["dev", "staging", "prod"],
        "project_name": "Churn",
        "package_name": "churn_components",
        "naming_prefix": "churn",
    },
}


def _run(
    args: list[str], cwd: Path, timeout: int = 900, extra_env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VERTEXKIT", "GOOGLE"))}
    env.update(extra_env or {})
    env["PATH"] = f"{cwd / '.venv' / 'bin'}{os.pathsep}{env['PATH']}"
    env.pop("VIRTUAL_ENV", None)
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, (
        f"{' '.join(args)} failed ({result.returncode}):\n{result.stdout[-4000:]}\n"
        f"{result.stderr[-4000:]}"
    )
    return result


@pytest.mark.slow
@pytest.mark.parametrize("variant", VARIANTS)
def test_generated_project_end_to_end(tmp_path: Path, variant: str) -> None:
    answers = VARIANTS[variant]
    python = find_python(answers["python_version"])
    if python is None:
        pytest.skip(f"no Python {answers['python_version']} interpreter on this machine")
    project = render(tmp_path / variant, answers)

    # The README's install command, in the project's own virtual environment.
    _run([python, "-m", "venv", ".venv"], project)
    forget_cached_vertexkit(str(project / ".venv" / "bin" / "python"))
    _run([".venv/bin/python", "-m", "pip", "install", "--quiet", "-e", ".[dev]"], project)

    tests = _run([".venv/bin/python", "-m", "pytest", "-q", "-p", "no:cacheprovider"], project)
    assert " passed" in tests.stdout and "failed" not in tests.stdout

    compiled = _run([".venv/bin/invoke", "compile"], project)
    assert "build/pipelines/training.yaml" in compiled.stdout
    assert (project / "build/pipelines/prediction.yaml").is_file()

    # A wrong type fails before anything runs, naming the parameter and the expected type.
    rejected = subprocess.run(
        [".venv/bin/invoke", "run", "--local", "--pipeline", "training", "--param", "seed=abc"],
        cwd=project,
        capture_output=True,
        text=True,
    )
    assert rejected.returncode == 1
    assert "parameter 'seed' expects int, got 'abc'" in rejected.stderr
    assert not (project / "build/local").exists()

    trained = _run(
        [".venv/bin/invoke", "run", "--local", "--pipeline", "training", "--param", "seed=7"],
        project,
    )
    assert "[6/6]" in trained.stdout and "roc_auc" in trained.stdout
    predicted = _run([".venv/bin/invoke", "run", "--local", "--pipeline", "prediction"], project)
    assert "[4/4]" in predicted.stdout
    assert re.search(r"\n  predictions: build/local/\S+/predictions\.csv ", predicted.stdout)
    registry = next((project / "build/local/registry").iterdir())
    champion = json.loads((registry / "champion.json").read_text())
    assert champion["version"] == 1

    for env in answers.get("environments", ["dev", "prod"]):
        shown = _run([".venv/bin/invoke", "config", "--env", env], project)
        assert f"# environment: {env}" in shown.stdout

    if variant == "all-envs-py312":
        _check_base_image_install(project, python)

    # The cloud path, as far as it goes without a cloud: a deploy's dry run needs no credentials.
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com"]
    for command in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "first"]):
        _run([*git, *command], project)
    env = answers.get("environments", ["dev", "prod"])[0]
    planned = _run(
        [".venv/bin/invoke", "deploy", "--env", env, "--dry-run", "--json"],
        project,
        extra_env={
            "GOOGLE_APPLICATION_CREDENTIALS": str(tmp_path / "absent.json"),
            "CLOUDSDK_CONFIG": str(tmp_path / "gcloud"),
            "GCE_METADATA_HOST": "127.0.0.1:9",
        },
    )
    steps = {step["step"]: step for step in json.loads(planned.stdout)}
    submit = steps.get("submit training") or steps["create run training"]
    assert "compile" in steps and submit["body"]

    if variant == "defaults":
        # `invoke lint` runs the pre-commit hooks, which need a git repository.
        linted = _run([".venv/bin/invoke", "lint"], project)
        assert "ruff" in (linted.stdout + linted.stderr).lower()


def _check_base_image_install(project: Path, python: str) -> None:
    """The Dockerfile's install step, run outside Docker (no engine here) on the same wheels.

    `pip wheel .` collects the project and its dependency closure; the Dockerfile's own pip
    command installs them offline into a clean environment, where the components import.
    """
    wheels = project / "build" / "wheels"
    _run([".venv/bin/python", "-m", "pip", "wheel", "--quiet", "-w", str(wheels), "."], project)
    dockerfile = (project / "components" / "Dockerfile").read_text()
    install = re.search(r"^\s*(pip install .*/tmp/wheels/\S*)$", dockerfile, re.MULTILINE)
    assert install, "the Dockerfile's pip install line was not found"
    image = project.parent / "image-env"
    _run([python, "-m", "venv", str(image)], project)
    command = install.group(1).replace("/tmp/wheels", str(wheels))
    _run(["bash", "-c", f"{image}/bin/python -m {command}"], project)
    package = next((project / "components").glob("*/components.py")).parent.name
    _run(
        [f"{image}/bin/python", "-c", f"import {package}.components, kfp.dsl.executor_main"],
        project,
    )


@pytest.mark.slow
def test_field_install_from_the_template_git_url(tmp_path: Path) -> None:
    """Rendered from a git URL at a tag, the project pins vertexkit to that URL and tag."""
    repo = tmp_path / "vertexkit.git"
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\0")
    for name in filter(None, files):
        if (ROOT / name).is_file():
            (repo / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, repo / name)
    git = ["git", "-c", "user.name=test", "-c", "user.email=test@example.com"]
    for command in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "release"]):
        _run([*git, *command], repo)
    _run([*git, "tag", f"v{vertexkit.__version__}"], repo)

    project = tmp_path / "project"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run_copy(
            f"git+file://{repo}", project, data=BASE_ANSWERS, defaults=True, unsafe=True, quiet=True
        )
    requirement = f"vertexkit @ git+file://{repo}@v{vertexkit.__version__}"
    pyproject = (project / "pyproject.toml").read_text()
    assert f'"{requirement}"' in pyproject

    # pip fetches and builds exactly that revision, as it would from GitHub in the field.
    wheels = tmp_path / "wheels"
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "-w",
            str(wheels),
            requirement,
        ],
        tmp_path,
    )
    assert [p.name for p in wheels.iterdir()] == [
        f"vertexkit-{vertexkit.__version__}-py3-none-any.whl"
    ]
