"""Tests for vertexkit.tasks through the real invoke CLI, run in a subprocess inside a project."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

FIXTURES = Path(__file__).parent / "fixtures"


def invoke(project: Path, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run ``invoke <args>`` with the project's tasks.py, from ``cwd`` (default: the project)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VERTEXKIT__")}
    return subprocess.run(
        [sys.executable, "-m", "invoke", "--search-root", str(project), *args],
        cwd=cwd or project,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def assert_user_error(result: subprocess.CompletedProcess, code: int, message: str) -> None:
    """A clean failure: the exit code, the message on stderr, no Python traceback of ours."""
    assert result.returncode == code, (result.stdout, result.stderr)
    assert result.stderr.strip() == message
    assert result.stdout == ""


def test_list_shows_the_standard_tasks(project: Path) -> None:
    result = invoke(project, "--list", "--list-format", "json")
    assert result.returncode == 0, result.stderr
    names = {task["name"] for task in json.loads(result.stdout)["tasks"]}
    assert names == {
        "build",
        "compile",
        "config",
        "deploy",
        "lint",
        "logs",
        "precheck",
        "provision",
        "deprovision",
        "publish",
        "run",
        "schedule",
        "status",
        "test",
    }


def test_outside_a_project(tmp_path: Path) -> None:
    folder = tmp_path / "not-a-project"
    folder.mkdir()
    shutil.copy(FIXTURES / "project" / "tasks.py", folder / "tasks.py")
    result = invoke(folder, "compile")
    assert_user_error(
        result,
        2,
        f"no config/base.yaml in {folder.resolve()} or above: run this inside a vertexkit project",
    )


def test_compile_writes_build_pipelines_from_a_subfolder(project: Path) -> None:
    result = invoke(project, "compile", cwd=project / "pipelines")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "compiled build/pipelines/training.yaml\n"
    compiled = project / "build" / "pipelines" / "training.yaml"
    spec = yaml.safe_load(compiled.read_text())
    assert spec["pipelineInfo"]["name"] == "demo-training"
    assert spec["root"]["inputDefinitions"]["parameters"]["n"]["defaultValue"] == 3
    assert not (project / "pipelines" / "build").exists()


def test_compile_with_env_needs_a_built_image(project: Path) -> None:
    result = invoke(project, "compile", "--env", "dev", "--pipeline", "training")
    assert_user_error(
        result, 1, "error: no image built for environment 'dev': run `invoke build --env dev` first"
    )


def test_compile_with_env_and_pipeline(project: Path) -> None:
    image = "europe-west4-docker.pkg.dev/acme-ml-dev/demo-images/tiny-base@sha256:" + "a" * 64
    # The record `invoke build --env dev` leaves behind (see vertexkit.gcp.build.record_build).
    record = project / "build" / "images" / "dev.json"
    record.parent.mkdir(parents=True)
    record.write_text(json.dumps({"reference": image}))
    result = invoke(project, "compile", "--env", "dev", "--pipeline", "training")
    assert result.returncode == 0, result.stderr
    compiled = project / "build" / "pipelines" / "training.yaml"
    spec = yaml.safe_load(compiled.read_text())
    assert spec["root"]["inputDefinitions"]["parameters"]["n"]["defaultValue"] == 5
    executors = spec["deploymentSpec"]["executors"].values()
    # Only the base image placeholder (tiny-base:python3.11) becomes the pushed image.
    assert {executor["container"]["image"] for executor in executors} == {image, "python:3.11"}
    tasks = spec["root"]["dag"]["tasks"].values()
    assert all(task["cachingOptions"] == {"enableCache": True} for task in tasks)  # dev.yaml


def test_compile_unknown_pipeline(project: Path) -> None:
    result = invoke(project, "compile", "--pipeline", "nope")
    assert_user_error(
        result, 1, "error: no pipeline named 'nope' in pipelines/ (available: training)"
    )
    assert not (project / "build").exists()


def test_compile_invalid_config(project: Path) -> None:
    (project / "config" / "dev.yaml").write_text("gcp:\n  region: mars-north1\n")
    result = invoke(project, "compile", "--env", "dev")
    assert result.returncode == 1
    assert result.stderr.startswith(
        "error: invalid configuration (1 problem):\n"
        "  config/dev.yaml: gcp.region: 'mars-north1' is not a Vertex AI Pipelines region"
    )
    assert "Traceback" not in result.stderr


def test_run_without_pipeline(project: Path) -> None:
    result = invoke(project, "run", "--local")
    assert_user_error(result, 2, "error: name the pipeline with --pipeline (available: training)")


def test_run_without_local(project: Path) -> None:
    result = invoke(project, "run", "--pipeline", "training")
    assert_user_error(
        result, 2, "error: add --local to run here, or --env ENV to submit to Vertex AI"
    )
    assert not (project / "build").exists()


def test_run_unknown_pipeline(project: Path) -> None:
    result = invoke(project, "run", "--pipeline", "nope", "--local")
    assert_user_error(
        result, 1, "error: no pipeline named 'nope' in pipelines/ (available: training)"
    )


def test_run_bad_param_value(project: Path) -> None:
    result = invoke(project, "run", "--pipeline", "training", "--local", "--param", "n=abc")
    assert_user_error(result, 1, "error: --param n=abc: parameter 'n' expects int, got 'abc'")
    assert not (project / "build").exists()


def test_run_malformed_param(project: Path) -> None:
    result = invoke(
        project, "run", "--pipeline", "training", "--local", "--param", "n=4", "--param", "n"
    )
    assert_user_error(result, 1, "error: --param 'n': expected key=value")


def test_run_local_succeeds_with_params(project: Path) -> None:
    result = invoke(
        project,
        "run",
        "--pipeline",
        "training",
        "--local",
        "--param",
        "label=lines",
        "--param",
        "n=2",
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "Running pipeline 'training' locally (2 tasks)" in out
    assert "parameters: shared_param=1, n=2, label='lines', ratio=1.0" in out
    assert "[1/2] make-data" in out and "[2/2] describe" in out
    assert "Pipeline 'training' succeeded in" in out
    assert "  description: lines:2:1.0" in out
    assert "    rows               2\n" in out
    assert "  log: build/local/logs/training-" in out


def test_run_local_failure_is_one_clear_message(project: Path) -> None:
    shutil.copy(FIXTURES / "pipelines" / "failing.py", project / "pipelines" / "failing.py")
    result = invoke(project, "run", "--pipeline", "failing", "--local")
    assert result.returncode == 1
    assert result.stderr.startswith("error: pipeline 'failing' failed at task 'explode'")
    assert "ValueError: boom: column x" in result.stderr
    assert "full log: build/local/logs/failing-" in result.stderr
    # The component's traceback is shown; ours (invoke -> vertexkit) is not.
    assert "vertexkit/tasks.py" not in result.stderr
    assert "vertexkit/local.py" not in result.stderr
    assert "[1/2] first" in result.stdout and "[2/2] explode" in result.stdout


def test_config_env_dev_prints_the_merged_config(project: Path) -> None:
    result = invoke(project, "config", "--env", "dev")
    assert result.returncode == 0, result.stderr
    first, _, rest = result.stdout.partition("\n")
    assert first == "# environment: dev"
    assert yaml.safe_load(rest) == {
        "name": "demo",
        "naming_prefix": "demo",
        "gcp": {"project_id": "acme-ml-dev", "region": "europe-west4"},
        "parameters": {"shared_param": 1},
        "pipelines": {
            "training": {
                "parameters": {"n": 5, "label": "rows", "ratio": 1},
                "parameter_rules": {},
                "enable_caching": True,
            }
        },
        "local": {"output_dir": "build/local"},
        "resources": {
            "bucket": None,
            "docker_repository": None,
            "kfp_repository": None,
            "pipeline_service_account": None,
        },
        "components": {},
        "endpoints": {},
        "provisioning": {"tool": "terraform", "temporary_artifact_days": 30, "state_bucket": None},
        "orchestrator": "vertex",
        "kfp": None,
        "secrets": [],
    }
    # Keys keep the models' order (name first), not alphabetical order.
    assert rest.splitlines()[0] == "name: demo"
    # The derived names, the new identities among them, follow as comments.
    for line in (
        "#   pipeline_service_account: demo-pipelines@acme-ml-dev.iam.gserviceaccount.com",
        "#   deployer_service_account: demo-deployer@acme-ml-dev.iam.gserviceaccount.com",
        "#   build_service_account: demo-builder@acme-ml-dev.iam.gserviceaccount.com",
        "#   state_bucket: acme-ml-dev-demo-tfstate",
    ):
        assert line in rest.splitlines()


def test_config_default_is_local(project: Path) -> None:
    result = invoke(project, "config")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("# environment: local\n")
    assert "region: us-central1" in result.stdout


def test_config_unknown_environment(project: Path) -> None:
    result = invoke(project, "config", "--env", "qa")
    assert_user_error(
        result, 1, "error: unknown environment 'qa': no config/qa.yaml (available: dev)"
    )
