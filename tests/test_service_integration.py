"""The submission service and its provisioning agree (issue 10): what `invoke build` records is
what `invoke provision` deploys; the Cloud Function is staged with everything the service loads
and starts from that folder under the entry point provisioning names; both deploy kinds get the
variables `from_environment()` needs; Pub/Sub's push token audience is the one the service
accepts; one service image serves every environment."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import requests

import vertexkit
from tests.recording_server import RecordingServer
from tests.service_support import make_project
from tests.template_support import render
from tests.test_build import (
    BUCKET,
    COMMIT,
    DIGEST,
    IMAGE,
    LOG_URL,
    OPERATION,
    REPOSITORY,
    _cloud_build,
    _members,
    _write,
    gcs,  # noqa: F401 - a fixture
)
from tests.test_build import project as buildable  # noqa: F401 - a fixture
from tests.test_service import call
from tests.test_service import signer as signer
from vertexkit.gcp import build, provision, service_infra
from vertexkit.project.config import load_config
from vertexkit.service.server import create_service
from vertexkit.steps import execute

FIXTURES = Path(__file__).parent / "fixtures"
SERVICE = Path("services") / "submission"
SERVICE_DIGEST = "sha256:" + "cd" * 32
TEMPLATE_SERVICE = (
    Path(__file__).parents[1]
    / "template"
    / "{% if submission_service != 'none' %}services{% endif %}"
    / "submission"
)


def _kind(project: Path, kind: str) -> None:
    with (project / "config" / "base.yaml").open("a") as base:
        base.write(f"service: {{kind: {kind}}}\nprovisioning: {{tool: gcloud}}\n")


# --- 1 and 6: the build's record, one image for every environment ------------------------------


def test_the_service_image_invoke_build_records_is_the_one_invoke_provision_deploys(
    buildable: Path,  # noqa: F811
    gcs: str,  # noqa: F811
    recording_server: RecordingServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("VERTEXKIT_ENDPOINT_CLOUDBUILD", recording_server.url)
    project = buildable
    _write(
        project,
        {
            "pipelines/training.py": (
                FIXTURES / "project" / "pipelines" / "training.py"
            ).read_text(),
            "services/submission/Dockerfile": "FROM python:3.11-slim\n",
            "services/submission/Dockerfile.dockerignore": "*\n",
            "config/prod.yaml": "gcp: {project_id: acme-ml-prod}\n",
            "tasks.py": (FIXTURES / "project" / "tasks.py").read_text(),
        },
    )
    _kind(project, "cloud-run")
    service_repository = REPOSITORY.replace("tiny-base", "demo-submit")
    service_image = f"{service_repository}:{COMMIT}"
    images = [{"name": IMAGE, "digest": DIGEST}, {"name": service_image, "digest": SERVICE_DIGEST}]
    built = {"id": "b-1", "status": "SUCCESS", "logUrl": LOG_URL, "results": {"images": images}}
    _cloud_build(recording_server, {"name": OPERATION, "done": True, "response": built})

    config = load_config(project, "dev")
    responses = execute(build.plan_build(config, project, git_commit=COMMIT, poll_seconds=0))
    build.record_build(project, "dev", responses)

    # One image for every environment: the pipelines of each, no environment baked in.
    name = f"builds/{COMMIT}/context.tar.gz"
    blob = requests.get(f"{gcs}/storage/v1/b/{BUCKET}/o/{quote(name, safe='')}?alt=media")
    packed = set(_members(blob.content))
    for env in ("dev", "prod"):
        assert f"build/service/pipelines/{env}/training.yaml" in packed
        record = json.loads((project / f"build/service/pipelines/{env}/compiled.json").read_text())
        assert record["training"]["environment"] == env
    steps = recording_server.requests[0].json["steps"]
    [service_step] = [s for s in steps if "services/submission/Dockerfile" in s["args"]]
    assert not [a for a in service_step["args"] if a.startswith("ENVIRONMENT=")]
    assert f"GIT_COMMIT={COMMIT}" in service_step["args"]
    # The image turns the commit into VERTEXKIT_RELEASE_COMMIT and leaves VERTEXKIT_ENV to the
    # deploy: from_environment() gets both.
    dockerfile = (
        TEMPLATE_SERVICE / "{% if submission_service == 'cloud-run' %}Dockerfile{% endif %}.jinja"
    ).read_text()
    assert "VERTEXKIT_RELEASE_COMMIT=${GIT_COMMIT}" in dockerfile
    assert "VERTEXKIT_ENV=" not in dockerfile

    shown = subprocess.run(
        [sys.executable, "-m", "invoke", "provision", "--env", "dev", "--dry-run", "--json"],
        cwd=project,
        env={k: v for k, v in os.environ.items() if not k.startswith("VERTEXKIT_ENDPOINT")},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert shown.returncode == 0, shown.stderr
    [deploy] = [s for s in json.loads(shown.stdout) if s["step"].startswith("deploy Cloud Run")]
    assert f"--image={service_repository}@{SERVICE_DIGEST}" in deploy["command"]
    [variables] = [a for a in deploy["command"] if a.startswith("--set-env-vars=")]
    assert "VERTEXKIT_ENV=dev" in variables.split("=", 1)[1].split(",")


def test_the_service_serves_the_pipelines_of_its_environment_from_the_images_layout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The image's /srv/project/pipelines holds a folder per environment; VERTEXKIT_ENV picks."""
    from vertexkit.service import from_environment

    project = make_project(tmp_path / "project")
    (project / "config" / "prod.yaml").write_text("gcp: {project_id: acme-ml-prod}\n")
    build.compile_for_service(project, load_config(project, "dev"))
    folder = project / build.SERVICE_PIPELINES
    assert sorted(p.name for p in folder.iterdir()) == ["dev", "prod"]
    monkeypatch.setenv("VERTEXKIT_SERVICE_ROOT", str(project))
    monkeypatch.setenv("VERTEXKIT_SERVICE_PIPELINES", str(folder))
    monkeypatch.setenv("VERTEXKIT_RELEASE_COMMIT", "abc123def456")
    for env in ("dev", "prod"):
        monkeypatch.setenv("VERTEXKIT_ENV", env)
        service = from_environment()
        assert service.config.environment == env
        assert set(service.pipelines) == {"scoring", "training"}


# --- 2, 3 and 4: the Cloud Function's entry point, its staged source and its variables ---------


def _lockable(project: Path) -> None:
    """Give the fixture project a pyproject.toml without dependencies and its uv.lock."""
    (project / "pyproject.toml").write_text(
        '[project]\nname = "demo"\nversion = "0.1.0"\nrequires-python = ">=3.10"\n'
        "dependencies = []\n"
    )
    subprocess.run(
        [sys.executable, "-m", "uv", "lock", "--offline", "--quiet"],
        cwd=project,
        check=True,
        env={**os.environ, "UV_PYTHON_DOWNLOADS": "never"},
    )


def function_project(root: Path) -> Path:
    """A committed project with the template's Cloud Function files (which hold no template
    syntax) and a uv.lock: what staging the function's source needs."""
    project = make_project(root)
    (project / SERVICE).mkdir(parents=True)
    for name in ("main.py", "requirements.txt"):
        found = (
            TEMPLATE_SERVICE
            / f"{{% if submission_service == 'cloud-functions' %}}{name}{{% endif %}}"
        )
        source = found if found.exists() else found.with_name(found.name + ".jinja")
        shutil.copy(source, project / SERVICE / name)
    _lockable(project)
    return project


def test_the_entry_point_provisioning_deploys_is_the_function_main_py_defines(
    tmp_path: Path,
) -> None:
    import ast

    rendered = render(tmp_path / "rendered", {"submission_service": "cloud-functions"})
    tree = ast.parse((rendered / SERVICE / "main.py").read_text())
    http_functions = [
        node.name
        for node in tree.body
        if isinstance(node, ast.FunctionDef)
        and any(ast.unparse(d) == "functions_framework.http" for d in node.decorator_list)
    ]
    assert http_functions == [service_infra.FUNCTION_ENTRY_POINT]
    infra = provision.plan_infrastructure(
        load_config(rendered, "dev").model_copy(update={"environment": "dev"})
    )
    assert infra.submission is not None
    assert infra.submission.entry_point == service_infra.FUNCTION_ENTRY_POINT
    # The rendered requirements.txt names no placeholder repository: vertexkit is staged.
    requirements = (rendered / SERVICE / "requirements.txt").read_text()
    assert "ORG" not in requirements and "vertexkit @" not in requirements


def test_the_staged_function_source_holds_what_the_service_loads_and_starts_from_it(
    tmp_path: Path,
) -> None:
    rendered = render(tmp_path / "rendered", {"submission_service": "cloud-functions"})
    project = make_project(tmp_path / "project")
    shutil.copytree(rendered / SERVICE, project / SERVICE)
    _lockable(project)
    _kind(project, "cloud-functions")
    config = load_config(project, "dev")
    infra = service_infra.for_deploy(provision.plan_infrastructure(config), project)
    function = infra.submission
    assert function is not None and not infra.notes
    commit = subprocess.run(
        ["git", "rev-parse", "--short=12", "HEAD"], cwd=project, capture_output=True, text=True
    ).stdout.strip()
    # 4: what from_environment() needs that the folder cannot hold, the plan sets.
    assert function.environment["VERTEXKIT_ENV"] == "dev"
    assert function.environment["VERTEXKIT_RELEASE_COMMIT"] == commit
    assert function.source_dir == "build/service/function/dev"

    folder = service_infra.stage_function_source(project, "dev")
    assert folder == project / function.source_dir
    assert {p.name for p in folder.iterdir()} == {
        "main.py",
        "requirements.txt",
        "vertexkit",
        "config",
        "pipelines",
    }
    assert (folder / "config" / "dev.yaml").read_text() == (
        project / "config" / "dev.yaml"
    ).read_text()
    record = json.loads((folder / "pipelines" / "compiled.json").read_text())
    assert {name: entry["environment"] for name, entry in record.items()} == {
        "scoring": "dev",
        "training": "dev",
    }
    requirements = (folder / "requirements.txt").read_text().splitlines()
    assert "functions-framework>=3.8,<4" in requirements
    assert not [line for line in requirements if line.startswith(("vertexkit", "-e", "demo"))]
    assert (folder / "vertexkit" / "service" / "server.py").is_file()
    assert not list(folder.rglob("__pycache__"))

    # The function starts from the folder alone (vertexkit from it too), with the plan's
    # variables, under the entry point provisioning deploys, through functions-framework.
    script = f"""
import json, sys
from functions_framework import create_app
client = create_app(target={function.entry_point!r}, source="main.py").test_client()
import vertexkit
listed = client.get("/pipelines").get_json()
run = client.post("/pipelines/scoring/runs", json={{"parameters": {{"threshold": 0.5}}}})
print(json.dumps({{"vertexkit": vertexkit.__file__, "pipelines": listed, "run": run.get_json()}}))
"""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VERTEXKIT", "GIT_"))} | dict(
        function.environment, VERTEXKIT_SERVICE_BACKEND="dry-run"
    )
    env = {k: v.replace("{project_number}", "123") for k, v in env.items()}
    started = subprocess.run(
        [sys.executable, "-c", script], cwd=folder, env=env, capture_output=True, text=True
    )
    assert started.returncode == 0, started.stderr
    answer = json.loads(started.stdout.strip().splitlines()[-1])
    assert Path(answer["vertexkit"]).resolve().is_relative_to(folder.resolve())
    assert {p["name"] for p in answer["pipelines"]["pipelines"]} == {"scoring", "training"}
    [submit] = [s for s in answer["run"]["steps"] if s["step"] == "submit scoring"]
    assert submit["body"]["templateUri"].endswith(f"/demo-scoring/{commit}")

    # The function gets the vertexkit uv.lock locks, or staging stops naming both versions.
    lock = project / "uv.lock"
    lock.write_text(lock.read_text() + '\n[[package]]\nname = "vertexkit"\nversion = "0.0.1"\n')
    with pytest.raises(build.BuildError, match=r"uv\.lock locks vertexkit 0\.0\.1, but this is"):
        service_infra.stage_function_source(project, "dev")
    lock.write_text(lock.read_text().replace('"0.0.1"', f'"{vertexkit.__version__}"'))
    assert service_infra.locked_version(project, "vertexkit") == vertexkit.__version__

    # Terraform uploads the same folder, zipped reproducibly.
    archive = tmp_path / "a.zip"
    service_infra.write_source_archive(folder, archive)
    first = archive.read_bytes()
    time.sleep(1)
    service_infra.write_source_archive(folder, archive)
    assert archive.read_bytes() == first


def test_without_a_commit_the_function_waits_and_says_why(tmp_path: Path) -> None:
    from tests.fixture_project import copy_project

    project = copy_project(tmp_path / "project")
    shutil.copytree(
        render(tmp_path / "rendered", {"submission_service": "cloud-functions"}) / SERVICE,
        project / SERVICE,
    )
    (project / "uv.lock").write_text("")
    _kind(project, "cloud-functions")
    infra = service_infra.for_deploy(
        provision.plan_infrastructure(load_config(project, "dev")), project
    )
    assert infra.submission is None
    [note] = infra.notes
    assert "not a git repository" in note


# --- 5 and 8: the push token's audience, the scheduler's message --------------------------------


def test_a_scheduled_push_with_the_provisioned_audience_starts_the_configured_run(
    tmp_path: Path, signer: Any, recording_server: RecordingServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The subscription's audience and the service's PUSH_AUDIENCE are one string (in the plan
    and in Terraform's variables); the service, configured with the variables provisioning sets,
    accepts a token minted for exactly that audience, and runs the message a Cloud Scheduler
    job publishes with the environment's configured parameters merged in, as `invoke run --env`
    does."""
    project = make_project(tmp_path / "project")
    _kind(project, "cloud-run")
    with (project / "config" / "base.yaml").open("a") as base:
        base.write("scheduler: cloud-scheduler\n")
    with (project / "config" / "dev.yaml").open("a") as dev:
        dev.write("    schedule: {cron: '0 6 * * *', parameters: {label: nightly}}\n")
    config = load_config(project, "dev")
    infra = service_infra.for_deploy(
        provision.plan_infrastructure(config), project, IMAGE_BY_DIGEST
    )
    assert infra.submission is not None
    [push] = [s for s in infra.subscriptions if s.push_path]
    environment = infra.submission.environment
    assert push.audience == environment["VERTEXKIT__SERVICE__PUSH_AUDIENCE"]
    assert push.push_service_account == environment["VERTEXKIT__SERVICE__PUSH_SERVICE_ACCOUNT"]
    written = service_infra.tfvars(infra)
    [subscription] = written["push_subscriptions"].values()
    [service] = written["run_services"].values()
    assert subscription["audience"] == service["environment"]["VERTEXKIT__SERVICE__PUSH_AUDIENCE"]
    assert subscription["push_endpoint"] == subscription["audience"] + "/pubsub/push"

    # The service as deployed: the plan's variables, the project number filled in.
    number = "123456789012"
    for key, value in environment.items():
        monkeypatch.setenv(key, value.replace("{project_number}", number))
    monkeypatch.setenv("VERTEXKIT_OIDC_CERTS_URL", f"{recording_server.url}/oauth2/v1/certs")
    running = create_service(project, "dev", backend="dry-run")
    audience = push.audience.replace("{project_number}", number)
    assert running.config.service.push_audience == audience
    [job] = infra.scheduler_jobs
    message = {
        "message": {"data": job.data, "messageId": "m-1", "attributes": {}},
        "subscription": f"projects/acme-ml-dev/subscriptions/{push.name}",
    }
    token = signer(aud=audience, email=push.push_service_account)
    status, answer = call(running, "POST", "/pubsub/push", message, authorization=f"Bearer {token}")
    assert status == 200, answer
    [submit] = [s for s in answer["steps"] if s["step"] == "submit training"]
    values = submit["body"]["runtimeConfig"]["parameterValues"]
    assert values["label"] == "nightly"  # the schedule's parameter
    assert values["n"] == 5  # dev's configured value
    # A token for another audience (the push endpoint itself) is refused.
    wrong = signer(aud=audience + "/pubsub/push", email=push.push_service_account)
    assert call(running, "POST", "/pubsub/push", message, authorization=f"Bearer {wrong}")[0] == 401


IMAGE_BY_DIGEST = (
    "europe-west4-docker.pkg.dev/acme-ml-dev/demo-images/demo-submit@sha256:" + "ab" * 32
)


# --- 7: a new service image reaches Cloud Run; Terraform neither reverts nor removes it ---------

RUN_SERVICE = "/v2/projects/acme-ml-dev/locations/europe-west4/services/demo-submit"


def _deployed(image: str) -> dict[str, Any]:
    return {"template": {"containers": [{"image": image, "env": []}]}}


def test_terraform_without_a_record_keeps_the_service_that_runs(
    tmp_path: Path, recording_server: RecordingServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fresh CI checkout has no build/images record when `invoke provision` runs: the
    variables keep the deployed service (Terraform ignores its image) instead of removing it,
    its push subscription and its jobs; before the first deploy, they wait as before."""
    from tests.test_service_infra import config

    monkeypatch.setenv("VERTEXKIT_ENDPOINT_RUN", recording_server.url)
    monkeypatch.setenv("VERTEXKIT_NO_AUTH", "1")
    full = provision.plan_infrastructure(config())
    infra = service_infra.for_deploy(full, tmp_path, lookup=True)
    assert infra.submission is not None and infra.submission.image is None
    steps = service_infra.plan_find_deployed(infra, {})
    assert [s.step for s in steps] == [service_infra.FIND_DEPLOYED]

    recording_server.route("GET", RUN_SERVICE, (200, _deployed(IMAGE_BY_DIGEST)))
    kept = provision.tfvars(service_infra.at_apply(infra, execute(steps, out=io.StringIO())))
    assert kept["run_services"]["demo-submit"]["image"] == IMAGE_BY_DIGEST
    assert set(kept["push_subscriptions"]) == {"demo-runs-push"}
    assert set(kept["scheduler_jobs"]) == {"demo-training-local"}

    recording_server.route("GET", RUN_SERVICE, (404, {"error": {"code": 404}}))
    waiting = service_infra.at_apply(infra, execute(steps, out=io.StringIO()))
    assert waiting.submission is None and not waiting.scheduler_jobs
    assert "no image digest" in waiting.notes[-1]
    # With a record, nothing is looked up: the recorded image creates the service.
    assert not service_infra.plan_find_deployed(
        service_infra.for_deploy(full, tmp_path, IMAGE_BY_DIGEST, lookup=True), {}
    )
    # The service's image is Terraform's only at creation: later images come from publish.
    service_tf = (
        Path(__file__).parents[1]
        / "template/{% if provisioning == 'terraform' %}infra{% endif %}/terraform/service.tf"
    ).read_text()
    assert "ignore_changes = [template[0].containers[0].image]" in service_tf


def test_a_rollout_is_skipped_saying_why(
    tmp_path: Path, recording_server: RecordingServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.test_service_infra import IMAGE as RECORDED
    from tests.test_service_infra import _record, config

    monkeypatch.setenv("VERTEXKIT_ENDPOINT_RUN", recording_server.url)
    monkeypatch.setenv("VERTEXKIT_NO_AUTH", "1")
    local = config()
    steps = service_infra.plan_rollout(local, tmp_path)
    nothing = execute(steps, out=io.StringIO())  # nothing built: no record
    assert nothing[service_infra.ROLL_OUT] == {"skipped": "no service image recorded for local"}
    _record(tmp_path, "local")
    missing = execute(steps, out=io.StringIO())  # no service yet
    assert "`invoke provision --env local`" in missing[service_infra.ROLL_OUT]["skipped"]
    recording_server.route("GET", RUN_SERVICE, (200, _deployed(RECORDED)))
    same = execute(steps, out=io.StringIO())
    assert same[service_infra.ROLL_OUT] == {"skipped": f"demo-submit already runs {RECORDED}"}
    assert not [r for r in recording_server.requests if r.method == "PATCH"]
    functions = local.model_copy(
        update={"service": local.service.model_copy(update={"kind": "cloud-functions"})}
    )
    assert service_infra.plan_rollout(functions, tmp_path) == []


def test_gcloud_deploys_the_function_from_the_staged_folder(tmp_path: Path) -> None:
    project = function_project(tmp_path / "project")
    _kind(project, "cloud-functions")
    infra = service_infra.for_deploy(
        provision.plan_infrastructure(load_config(project, "dev")), project
    )
    steps = service_infra.plan_gcloud(infra, project, ())
    names = [s.step for s in steps]
    stage = names.index("stage the submission service's source")
    [deploy] = [s for s in steps if s.step.startswith("deploy Cloud Function")]
    assert stage < names.index(deploy.step)
    command = list(deploy.command)
    assert f"--source={project / 'build/service/function/dev'}" in command
    assert f"--entry-point={service_infra.FUNCTION_ENTRY_POINT}" in command
    [variables] = [a for a in command if a.startswith("--set-env-vars=")]
    assert "VERTEXKIT_ENV=dev" in variables and "VERTEXKIT_RELEASE_COMMIT=" in variables
