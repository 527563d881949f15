"""Tests for vertexkit.tasks through the real invoke CLI, run in a subprocess inside a project."""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

FIXTURES = Path(__file__).parent / "fixtures"


def invoke(
    project: Path, *args: str, cwd: Path | None = None, environ: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """Run ``invoke <args>`` with the project's tasks.py, from ``cwd`` (default: the project)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VERTEXKIT__")}
    env.update(environ or {})
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
        "promote",
        "provision",
        "deprovision",
        "publish",
        "report",
        "run",
        "schedule",
        "serve",
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
    # A path that works from where the user stands: outside the working directory, absolute.
    assert result.stdout == f"compiled {project.resolve()}/build/pipelines/training.yaml\n"
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
    assert_user_error(
        result, 2, "error: name the pipeline with --pipeline NAME (available: training)"
    )


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
    # Every parameter the run got, in the order of the pipeline's signature.
    assert "\n  parameters: n=2, shared_param=1, label='lines', ratio=1.0\n" in out
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
                "schedule": None,
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
        "ci": {
            "system": "none",
            "repository_host": None,
            "repository": None,
            "gitlab_url": "https://gitlab.com",
            "release_tags_only": None,
            "github_app_installation_id": None,
            "bitbucket_workspace_uuid": None,
            "bitbucket_repository_uuid": None,
            "bitbucket_deployment_environment_uuid": None,
            "jenkins_issuer": None,
            "jenkins_job_url": None,
            "jenkins_agent_member": None,
        },
        "service": {
            "kind": "none",
            "max_body_bytes": 65536,
            "push_audience": None,
            "push_service_account": None,
        },
        "scheduler": "none",
        "monitoring": {
            "thresholds": {"distance": 0.3, "missing_rate": 0.05, "out_of_range_rate": 0.05},
            "features": {},
            "retrain_on_drift": False,
            "retrain_cooldown_hours": 24.0,
            "alert_notification_channels": [],
        },
    }
    # Keys keep the models' order (name first), not alphabetical order.
    assert rest.splitlines()[0] == "name: demo"
    # The derived names, the new identities among them, follow as comments.
    for line in (
        "#   pipeline_service_account: demo-pipelines@acme-ml-dev.iam.gserviceaccount.com",
        "#   deployer_service_account: demo-deployer@acme-ml-dev.iam.gserviceaccount.com",
        "#   build_service_account: demo-builder@acme-ml-dev.iam.gserviceaccount.com",
        "#   state_bucket: acme-ml-dev-demo-tfstate",
        "#   submission_service_account: demo-submit@acme-ml-dev.iam.gserviceaccount.com",
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


def _task_names() -> list[str]:
    from vertexkit.tasks import namespace

    return sorted(namespace().task_names)


def namespace_doc(name: str) -> str:
    from vertexkit.tasks import namespace

    return (namespace()[name].__doc__ or "").strip().splitlines()[0]


def test_every_task_prints_its_help(project: Path) -> None:
    """`--help` comes first, even for tasks whose options are required (--env, --pipeline)."""
    for name in _task_names():
        result = invoke(project, name, "--help")
        assert result.returncode == 0, (name, result.stderr)
        assert result.stdout.startswith(f"Usage: inv[oke] [--core-opts] {name} "), result.stdout
        summary = namespace_doc(name)
        assert f"Docstring:\n  {summary}" in result.stdout, (name, result.stdout)
        assert "\nOptions:\n" in result.stdout, (name, result.stdout)
        assert result.stderr == "", (name, result.stderr)


def test_help_shows_value_placeholders(project: Path) -> None:
    result = invoke(project, "run", "--help")
    assert result.returncode == 0, result.stderr
    text = " ".join(result.stdout.split())
    assert "-P, --param KEY=VALUE: override a parameter" in text
    assert "-e STRING, --env=STRING ENV: environment" in text
    assert "-p STRING, --pipeline=STRING NAME: pipeline to run" in text


def test_an_option_has_the_same_flags_in_every_task() -> None:
    from vertexkit.tasks import namespace

    collection = namespace()
    flags: dict[str, dict[str, tuple[str, ...]]] = {}
    for name in collection.task_names:
        task = copy.copy(collection[name])
        task.help = dict(task.help)  # get_arguments consumes the help texts
        for argument in task.get_arguments():
            flags.setdefault(argument.name, {})[name] = tuple(sorted(argument.names))
    shared = {option: by_task for option, by_task in flags.items() if len(by_task) > 1}
    assert {"env", "pipeline", "param", "dry_run", "json"} <= set(shared)
    for option, by_task in shared.items():
        assert len(set(by_task.values())) == 1, (option, by_task)
    # No letter stands for two options.
    letters: dict[str, str] = {}
    for option, by_task in flags.items():
        for names in by_task.values():
            for short in (n for n in names if len(n) == 1):
                assert letters.setdefault(short, option) == option, (short, option, letters)
    assert flags["param"]["run"] == ("P", "param")
    assert flags["env"]["deploy"] == ("e", "env")
    assert flags["pause"]["schedule"] == ("pause",)


def test_required_options_name_what_is_valid(project: Path) -> None:
    for name in ("build", "publish", "deploy", "schedule", "status", "logs", "precheck"):
        result = invoke(project, name)
        assert_user_error(result, 2, "error: --env ENV is required (environments in config/: dev)")
    # Without --pipeline, every configured schedule: none here, as nothing runs schedules.
    result = invoke(project, "schedule", "--env", "dev")
    assert_user_error(
        result,
        1,
        "error: config/base.yaml: scheduler is none, so nothing runs schedules: set scheduler "
        "to vertex (Vertex AI schedules) or cloud-scheduler (Cloud Scheduler -> Pub/Sub -> the "
        "submission service) to apply pipelines.<name>.schedule",
    )
    result = invoke(project, "schedule", "--env", "dev", "--pipeline", "nightly")
    assert_user_error(
        result, 1, "error: no pipeline named 'nightly' in pipelines/ (available: training)"
    )
    result = invoke(project, "logs", "-e", "dev")
    assert_user_error(
        result, 2, "error: --run RUN is required (the run ids: `invoke status --env dev`)"
    )


def test_run_local_without_credentials_says_how_to_get_them(project: Path, tmp_path: Path) -> None:
    shutil.copy(FIXTURES / "pipelines" / "cloud_read.py", project / "pipelines" / "cloud_read.py")
    (tmp_path / "gcloud").mkdir()
    no_credentials = {  # no ADC file, an empty gcloud config, no metadata server
        "GOOGLE_APPLICATION_CREDENTIALS": str(tmp_path / "absent.json"),
        "CLOUDSDK_CONFIG": str(tmp_path / "gcloud"),
        "GCE_METADATA_HOST": "127.0.0.1:9",
        "GCE_METADATA_IP": "127.0.0.1:9",
    }
    result = invoke(project, "run", "--local", "-p", "cloud_read", environ=no_credentials)
    assert result.returncode == 1, result.stdout
    lines = result.stderr.splitlines()
    assert lines[:3] == [
        "error: pipeline 'cloud_read' failed at task 'read-table': the task needs Google Cloud "
        "credentials and found none (DefaultCredentialsError: File "
        f"{tmp_path / 'absent.json'} was not found.)",
        f"  GOOGLE_APPLICATION_CREDENTIALS names {tmp_path / 'absent.json'}, which does not "
        "exist: unset it or point it at a credentials file",
        "  get Application Default Credentials with `gcloud auth application-default login` "
        "(in CI: Workload Identity Federation), then run again",
    ]
    assert lines[3].startswith("  full log: build/local/logs/cloud_read-")
    assert len(lines) == 4
    assert "Traceback" not in result.stderr


def test_run_local_summary_shows_defaults_used(project: Path) -> None:
    shutil.copy(FIXTURES / "pipelines" / "defaults.py", project / "pipelines" / "defaults.py")
    result = invoke(project, "run", "-l", "-p", "defaults", "-P", "label=y")
    assert result.returncode == 0, result.stderr
    summary = result.stdout.split("Pipeline 'defaults' succeeded in", 1)[1]
    used = summary.splitlines()[1]
    assert used.startswith("  parameters: ")
    assert used == "  parameters: n=1 (default), label='y', shared_param=1"


def test_paths_are_relative_to_where_the_user_stands(project: Path) -> None:
    outside = project.parent  # invoke --search-root project, from the folder above it
    result = invoke(project, "compile", cwd=outside)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "compiled project/build/pipelines/training.yaml\n"
    result = invoke(project, "run", "--local", "-p", "training", cwd=outside)
    assert result.returncode == 0, result.stderr
    assert "\n  log: project/build/local/logs/training-" in result.stdout
    assert "\n  outputs: project/build/local/demo-training-" in result.stdout
    shutil.copy(FIXTURES / "pipelines" / "failing.py", project / "pipelines" / "failing.py")
    inside = project / "pipelines"
    result = invoke(project, "run", "--local", "-p", "failing", cwd=inside)
    assert result.returncode == 1
    assert f"\n  full log: {project.resolve()}/build/local/logs/failing-" in result.stderr
