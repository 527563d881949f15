"""Generated projects set up the way their README says (uv), then tested and run locally.

A representative set: together the variants cover every value of every choice question
(python_version 3.10, 3.11, 3.12; environments dev, staging, prod). vertexkit comes from this
checkout (the uv source of a project rendered from a local checkout), the rest from the package
index or uv's cache.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import vertexkit
from tests.template_support import find_python, release_repo, render, render_from_git

UV = [sys.executable, "-m", "uv"]

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
    env["PATH"] = f"{cwd / '.venv' / 'bin'}{os.pathsep}{env['PATH']}"
    env["UV_PYTHON_DOWNLOADS"] = "never"
    env.pop("VIRTUAL_ENV", None)
    env.update(extra_env or {})
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

    # The README's set-up: `uv sync` writes uv.lock, which the team commits.
    _run([*UV, "sync", "--python", python], project)
    _run(["git", "add", "uv.lock"], project)
    _run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qm", "Lock"],
        project,
    )
    assert _run(["git", "status", "--porcelain"], project).stdout == ""
    uv_run = [*UV, "run", "--frozen"]

    tests = _run([*uv_run, "pytest", "-q", "-p", "no:cacheprovider"], project)
    assert " passed" in tests.stdout and "failed" not in tests.stdout

    compiled = _run([*uv_run, "invoke", "compile"], project)
    assert "build/pipelines/training.yaml" in compiled.stdout
    assert (project / "build/pipelines/prediction.yaml").is_file()

    # A wrong type fails before anything runs, naming the parameter and the expected type.
    rejected = subprocess.run(
        [*uv_run, "invoke", "run", "--local", "--pipeline", "training", "--param", "seed=abc"],
        cwd=project,
        capture_output=True,
        text=True,
    )
    assert rejected.returncode == 1
    assert "parameter 'seed' expects int, got 'abc'" in rejected.stderr
    assert not (project / "build/local").exists()

    trained = _run(
        [*uv_run, "invoke", "run", "--local", "--pipeline", "training", "--param", "seed=7"],
        project,
    )
    assert "[6/6]" in trained.stdout and "roc_auc" in trained.stdout
    predicted = _run([*uv_run, "invoke", "run", "--local", "--pipeline", "prediction"], project)
    assert "[5/5]" in predicted.stdout
    assert re.search(r"\n  predictions: build/local/\S+/predictions\.csv ", predicted.stdout)
    # The sample scoring data does not drift from the training data.
    assert re.search(
        r"\n  drift_report: build/local/\S+/report\.html \(.*breached=False", predicted.stdout
    )
    registry = next((project / "build/local/registry").iterdir())
    champion = json.loads((registry / "champion.json").read_text())
    assert champion["version"] == 1
    assert (registry / "versions" / "1" / "statistics.json").is_file()  # the drift reference

    if variant == "defaults":
        # The drifted sample breaches; `invoke report` finds that run's report.
        drifted = _run(
            [*uv_run, "invoke", "run", "--local", "--pipeline", "prediction",
             "--param", "data_uri=data/score_drifted.csv"],
            project,
        )  # fmt: skip
        shown = re.search(
            r"\n  drift_report: (build/local/\S+/report\.html) \(.*breached=True", drifted.stdout
        )
        assert shown, drifted.stdout
        log = project / re.search(r"\n  log: (\S+)", drifted.stdout).group(1)
        assert '"event": "vertexkit.drift.breach"' in log.read_text()
        found = _run([*uv_run, "invoke", "report"], project)
        assert found.stdout.strip() == shown.group(1)
        assert "Drift: 2 of 30 features" in (project / shown.group(1)).read_text()

    envs = answers.get("environments", ["dev", "prod"])
    for env in envs:
        shown = _run([*uv_run, "invoke", "config", "--env", env], project)
        assert f"# environment: {env}" in shown.stdout

    if variant == "all-envs-py312":
        _check_base_image_install(project, python, envs[0])

    # The cloud path, as far as it goes without a cloud: a deploy's dry run needs no credentials,
    # and the commit `copier copy` made.
    planned = _run(
        [*uv_run, "invoke", "deploy", "--env", envs[0], "--dry-run", "--json"],
        project,
        extra_env={
            "GOOGLE_APPLICATION_CREDENTIALS": str(tmp_path / "absent.json"),
            "CLOUDSDK_CONFIG": str(tmp_path / "gcloud"),
            "GCE_METADATA_HOST": "127.0.0.1:9",
        },
    )
    steps = {step["step"]: step for step in json.loads(planned.stdout)}
    submit = steps.get("submit training") or steps["create run training"]
    assert "compile" in steps and "export locked requirements" in steps and submit["body"]

    if variant == "defaults":
        # `invoke lint` runs the pre-commit hooks, which need a git repository.
        linted = _run([*uv_run, "invoke", "lint"], project)
        assert "ruff" in (linted.stdout + linted.stderr).lower()


def _check_base_image_install(project: Path, python: str, env: str) -> None:
    """`invoke build`'s wheel steps, then the Dockerfile's install outside Docker (no engine).

    The image environment gets exactly the versions `uv sync` installed from uv.lock, offline,
    and its components import.
    """
    planned = _run([*UV, "run", "invoke", "build", "--env", env, "--dry-run", "--json"], project)
    wheel_steps = json.loads(planned.stdout)[:3]
    assert [step["step"] for step in wheel_steps] == [
        "remove old wheels",
        "export locked requirements",
        "build wheels",
    ]
    for step in wheel_steps:
        _run(step["command"], Path(step["cwd"]))

    dockerfile = (project / "components" / "Dockerfile").read_text().replace("\\\n", " ")
    mount = "RUN --mount=type=bind,source=build/wheels,target=/tmp/wheels"
    install = re.search(rf"^{re.escape(mount)}\s+(.+)$", dockerfile, re.MULTILINE)
    assert install, "the Dockerfile's install step was not found"
    image = project.parent / "image-env"
    _run([python, "-m", "venv", str(image)], project)
    command = install.group(1).replace("/tmp/wheels", str(project / "build" / "wheels"))
    assert "--no-index" in command and "--require-hashes" in command
    _run(
        ["bash", "-c", command], image, extra_env={"PATH": f"{image / 'bin'}:{os.environ['PATH']}"}
    )

    package = next((project / "components").glob("*/components.py")).parent.name
    _run(
        [f"{image}/bin/python", "-c", f"import {package}.components, kfp.dsl.executor_main"], image
    )
    # Every wheel the image installs is at the version `uv sync` installed from uv.lock.
    wanted = (project / "build" / "wheels" / "requirements.txt").read_text()
    wanted_versions = dict(re.findall(r"^(\S+)==(\S+) --hash=", wanted, re.MULTILINE))
    listed = _run([f"{image}/bin/python", "-m", "pip", "list", "--format=json"], image)
    synced = _run([".venv/bin/python", "-m", "pip", "list", "--format=json"], project)
    for environment in (listed, synced):
        versions = {_normal(p["name"]): p["version"] for p in json.loads(environment.stdout)}
        assert {name: versions.get(name) for name in wanted_versions} == wanted_versions
    assert wanted_versions["vertexkit"] == vertexkit.__version__


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@pytest.mark.slow
def test_field_install_from_the_template_git_url(tmp_path: Path) -> None:
    """Rendered from a git URL at a tag: uv locks vertexkit at that tag; pip, as README says."""
    tag = f"v{vertexkit.__version__}"
    repo = release_repo(tmp_path / "vertexkit.git", tag=tag)
    commit = _run(["git", "rev-parse", "HEAD"], repo).stdout.strip()
    project = render_from_git(repo, tmp_path / "project")

    _run([*UV, "lock"], project)
    lock = (project / "uv.lock").read_text()
    assert f'source = {{ git = "file://{repo}?tag={tag}#{commit}" }}' in lock

    # pip users: the README's commands resolve (the install as a dry run: nothing installed).
    readme = (project / "README.md").read_text()
    block = readme.split("### Without uv", 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]
    commands = block.splitlines()
    assert commands[-1] == "invoke run --local --pipeline training"
    assert commands[-2] == f'pip install "vertexkit @ git+file://{repo}@{tag}" -e ".[dev]"'
    script = "\n".join(["set -e", *commands[:-2], f"{commands[-2]} --dry-run --quiet"])
    _run(["bash", "-c", script], project)
