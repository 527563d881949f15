"""`invoke deploy`: the dry run needs no credentials, and the real run sends what it showed.

The real run goes to a local recording server (Cloud Build, Artifact Registry, Vertex AI)
and to gcp-storage-emulator (the build context upload), through the project's invoke CLI.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.gcs_emulator import create_bucket
from tests.recording_server import Recorded, RecordingServer

FIXTURES = Path(__file__).parent / "fixtures"
BUCKET = "acme-ml-dev-demo-pipelines"
PARENT = "projects/acme-ml-dev/locations/europe-west4"
DIGEST = "sha256:" + "cd" * 32
OPERATION = f"{PARENT}/operations/op-7"
RUN_CONTEXT = f"{PARENT}/metadataStores/default/contexts/x"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """The fixture project, made buildable (tiny wheel backend, uv.lock, Dockerfile), committed."""
    root = tmp_path / "project"
    shutil.copytree(FIXTURES / "project", root)
    shutil.copy(FIXTURES / "tiny_backend.py", root / "tiny_backend.py")
    (root / "pyproject.toml").write_text(
        '[build-system]\nrequires = []\nbuild-backend = "tiny_backend"\nbackend-path = ["."]\n'
        '\n[project]\nname = "tiny"\nversion = "0.1.0"\nrequires-python = ">=3.10"\n'
    )
    subprocess.run([sys.executable, "-m", "uv", "lock", "--offline"], cwd=root, check=True)
    (root / "components" / "tiny").mkdir(parents=True)
    (root / "components" / "tiny" / "__init__.py").write_text("")
    (root / "components" / "Dockerfile").write_text("FROM python:3.11-slim\n")
    (root / ".dockerignore").write_text("*\n!build/wheels/\n")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com"]
    for command in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "first"]):
        subprocess.run([*git, *command], cwd=root, check=True)
    return root


def _commit(project: Path) -> str:
    return subprocess.run(
        ["git", "rev-parse", "--short=12", "HEAD"], cwd=project, capture_output=True, text=True
    ).stdout.strip()


def _invoke(project: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("VERTEXKIT", "GOOGLE"))}
    return subprocess.run(
        [sys.executable, "-m", "invoke", *args],
        cwd=project,
        env={**base, "PIP_NO_INDEX": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1", **env},
        capture_output=True,
        text=True,
        timeout=300,
    )


def _no_credentials(tmp_path: Path) -> dict[str, str]:
    """No ADC file, no gcloud config, no metadata server: a machine without credentials."""
    return {
        "GOOGLE_APPLICATION_CREDENTIALS": str(tmp_path / "absent.json"),
        "CLOUDSDK_CONFIG": str(tmp_path / "gcloud"),
        "GCE_METADATA_HOST": "127.0.0.1:9",
        "GCE_METADATA_IP": "127.0.0.1:9",
    }


@pytest.fixture
def gcs(gcs_emulator: str) -> str:
    create_bucket(gcs_emulator, BUCKET)
    return gcs_emulator


def _fake_google(server: RecordingServer) -> None:
    """Cloud Build (create, then the finished operation), Artifact Registry, Vertex AI."""
    build = {"id": "b-7", "status": "WORKING", "logUrl": "https://console/b-7"}
    server.route(
        "POST", f"/v1/{PARENT}/builds", (200, {"name": OPERATION, "metadata": {"build": build}})
    )

    def finished(_: Recorded) -> tuple[int, dict]:
        created = next(r for r in server.requests if r.path == f"/v1/{PARENT}/builds")
        images = [{"name": name, "digest": DIGEST} for name in created.json["images"]]
        result = {"id": "b-7", "status": "SUCCESS", "results": {"images": images}}
        return 200, {"name": OPERATION, "done": True, "response": result}

    server.route("GET", f"/v1/{OPERATION}", finished)
    server.route("POST", "/acme-ml-dev/demo-pipelines", (200, f"demo-training/{DIGEST}"))
    server.route("POST", f"/v1/{PARENT}/pipelineJobs", (200, {"name": f"{PARENT}/pipelineJobs/x"}))
    stores = f"/v1/{PARENT}/metadataStores"
    server.route("POST", stores, (409, {"error": {"message": "already exists"}}))
    server.route("POST", f"{stores}/default/contexts", (200, {"name": f"{PARENT}/ctx/demo-dev"}))
    running = {
        "state": "PIPELINE_STATE_RUNNING",
        "jobDetail": {"pipelineRunContext": {"name": RUN_CONTEXT}},
    }
    server.route("GET", f"/v1/{PARENT}/pipelineJobs/x", (200, running))
    server.route("POST", f"{stores}/default/contexts/demo-dev:addContextChildren", (200, {}))


def test_deploy_dry_run_json_needs_no_credentials(project: Path, tmp_path: Path) -> None:
    result = _invoke(
        project, _no_credentials(tmp_path), "deploy", "--env", "dev", "--dry-run", "--json"
    )
    assert result.returncode == 0, result.stderr
    steps = json.loads(result.stdout)
    http = [s for s in steps if "method" in s]
    assert all(set(s) >= {"step", "method", "url", "body"} for s in http)
    names = [s["step"] for s in steps]
    assert names.index("compile") < names.index("publish training") < names.index("submit training")
    assert not (project / "build" / "images").exists(), "a dry run must not build"


def test_deploy_without_credentials_says_how_to_log_in(project: Path, tmp_path: Path) -> None:
    result = _invoke(project, _no_credentials(tmp_path), "deploy", "--env", "dev")
    assert result.returncode == 1
    assert "gcloud auth application-default login" in result.stderr
    assert "Traceback" not in result.stderr


def test_deploy_sends_exactly_what_the_dry_run_showed(
    project: Path, tmp_path: Path, recording_server: RecordingServer, gcs: str
) -> None:
    _fake_google(recording_server)
    endpoints = {
        f"VERTEXKIT_ENDPOINT_{service}": recording_server.url
        for service in ("CLOUDBUILD", "KFP_REGISTRY", "AIPLATFORM")
    }
    env = {**endpoints, "VERTEXKIT_ENDPOINT_STORAGE": gcs, "VERTEXKIT_NO_AUTH": "1"}
    shown = _invoke(project, env, "deploy", "--env", "dev", "--dry-run", "--json")
    assert shown.returncode == 0, shown.stderr
    planned = {s["step"]: s for s in json.loads(shown.stdout) if "method" in s}

    deployed = _invoke(project, env, "deploy", "--env", "dev", "--param", "n=9")
    assert deployed.returncode == 0, deployed.stderr + deployed.stdout
    assert "submitted " in deployed.stdout

    sent = {(r.method, r.path): r for r in recording_server.requests}
    build_request = sent[("POST", f"/v1/{PARENT}/builds")]
    expected_build = planned["start cloud build"]["body"]
    generation = build_request.json["source"]["storageSource"]["generation"]
    expected_build["source"]["storageSource"]["generation"] = generation
    assert build_request.json == expected_build

    commit = _commit(project)
    upload = sent[("POST", "/acme-ml-dev/demo-pipelines")]
    assert f"{commit},latest".encode() in upload.body
    compiled = (project / "build" / "pipelines" / "training.yaml").read_bytes()
    assert compiled in upload.body, "the uploaded template is the compiled file"
    assert f"@{DIGEST}".encode() in compiled, "compiled with the pushed image's digest"

    job = sent[("POST", f"/v1/{PARENT}/pipelineJobs")]
    expected_job = planned["submit training"]["body"]
    expected_job["runtimeConfig"]["parameterValues"]["n"] = 9  # the --param of the real run
    assert job.json == expected_job
    assert job.json["templateUri"].endswith(f"/demo-pipelines/demo-training/{commit}")
    assert job.json["serviceAccount"] == "demo-pipelines@acme-ml-dev.iam.gserviceaccount.com"
    assert job.json["runtimeConfig"]["gcsOutputDirectory"] == f"gs://{BUCKET}/pipeline-root"
    assert json.loads((project / "build" / "images" / "dev.json").read_text())["digest"] == DIGEST

    experiment = sent[("POST", f"/v1/{PARENT}/metadataStores/default/contexts")]
    assert experiment.query == {"contextId": ["demo-dev"]}
    assert experiment.json == planned["ensure experiment"]["body"]
    assert experiment.json["schemaTitle"] == "system.Experiment"
    link = sent[
        ("POST", f"/v1/{PARENT}/metadataStores/default/contexts/demo-dev:addContextChildren")
    ]
    assert planned["add run to experiment"]["body"] == {
        "childContexts": ["<from submit training: pipeline run context>"]
    }
    assert link.json == {"childContexts": [RUN_CONTEXT]}


def test_deploy_stops_at_the_first_failure(
    project: Path, recording_server: RecordingServer, gcs: str
) -> None:
    _fake_google(recording_server)
    failed = {"name": OPERATION, "done": True, "error": {"code": 2, "message": "step 0 failed"}}
    recording_server.route("GET", f"/v1/{OPERATION}", (200, failed))
    env = {
        "VERTEXKIT_ENDPOINT_CLOUDBUILD": recording_server.url,
        "VERTEXKIT_ENDPOINT_KFP_REGISTRY": recording_server.url,
        "VERTEXKIT_ENDPOINT_AIPLATFORM": recording_server.url,
        "VERTEXKIT_ENDPOINT_STORAGE": gcs,
        "VERTEXKIT_NO_AUTH": "1",
    }
    result = _invoke(project, env, "deploy", "--env", "dev")
    assert result.returncode == 1
    assert "b-7" in result.stderr or "step 0 failed" in result.stderr
    paths = [r.path for r in recording_server.requests]
    assert f"/v1/{PARENT}/pipelineJobs" not in paths
    assert "/acme-ml-dev/demo-pipelines" not in paths


def test_unknown_parameter_is_rejected_before_anything_is_sent(
    project: Path, recording_server: RecordingServer
) -> None:
    env = {"VERTEXKIT_ENDPOINT_CLOUDBUILD": recording_server.url, "VERTEXKIT_NO_AUTH": "1"}
    result = _invoke(project, env, "deploy", "--env", "dev", "--param", "nope=1")
    assert result.returncode == 1
    assert "pipeline 'training' has no parameter 'nope'" in result.stderr
    assert recording_server.requests == []


def test_missing_bucket_points_to_precheck(
    project: Path, recording_server: RecordingServer, gcs_emulator: str
) -> None:
    _fake_google(recording_server)
    env = {
        "VERTEXKIT_ENDPOINT_CLOUDBUILD": recording_server.url,
        "VERTEXKIT_ENDPOINT_STORAGE": gcs_emulator,  # no bucket created
        "VERTEXKIT_NO_AUTH": "1",
    }
    result = _invoke(project, env, "deploy", "--env", "dev")
    assert result.returncode == 1
    assert "upload build context" in result.stderr and "404" in result.stderr
    assert "`invoke precheck --env dev` lists what is missing" in result.stderr
    # The fixture provisions with Terraform (the default): the task that creates it is named.
    assert "`invoke provision --env dev` creates it" in result.stderr
    assert recording_server.requests == [], "nothing may be sent after the failed upload"

    # Infrastructure managed elsewhere: precheck lists the gcloud commands; no provision hint.
    with (project / "config" / "base.yaml").open("a") as base:
        base.write("provisioning:\n  tool: none\n")
    result = _invoke(project, env, "deploy", "--env", "dev")
    assert result.returncode == 1
    assert "`invoke precheck --env dev` lists what is missing" in result.stderr
    assert "invoke provision" not in result.stderr


@pytest.mark.parametrize(("state", "code"), [("SUCCEEDED", 0), ("FAILED", 1)])
def test_run_wait_follows_the_run_and_fails_with_it(
    project: Path, recording_server: RecordingServer, state: str, code: int
) -> None:
    _fake_google(recording_server)
    finished = {
        "name": f"{PARENT}/pipelineJobs/x",
        "state": f"PIPELINE_STATE_{state}",
        "jobDetail": {
            "pipelineRunContext": {"name": RUN_CONTEXT},
            "taskDetails": [{"taskName": "describe", "state": state}],
        },
    }
    recording_server.route("GET", f"/v1/{PARENT}/pipelineJobs/x", (200, finished))
    env = {"VERTEXKIT_ENDPOINT_AIPLATFORM": recording_server.url, "VERTEXKIT_NO_AUTH": "1"}
    result = _invoke(project, env, "run", "--env", "dev", "--pipeline", "training", "--wait")
    assert result.returncode == code, result.stderr
    assert f"describe                     {state.lower()}" in result.stdout
    if code:
        assert "error: run x ended PIPELINE_STATE_FAILED" in result.stderr
    else:
        assert "run x succeeded" in result.stdout


def test_cloud_tasks_outside_git_say_so(tmp_path: Path) -> None:
    project = tmp_path / "project"
    shutil.copytree(FIXTURES / "project", project)
    result = _invoke(project, {}, "deploy", "--env", "dev", "--dry-run")
    assert result.returncode == 1
    assert "is not a git repository" in result.stderr
    assert "Traceback" not in result.stderr
    # status needs no commit: it only reads.
    listed = _invoke(project, {}, "status", "--env", "dev", "--dry-run", "--json")
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout)[0]["step"] == "list runs"


def test_publish_prints_the_pinned_template_uris(
    project: Path, recording_server: RecordingServer
) -> None:
    _fake_google(recording_server)
    image = "europe-west4-docker.pkg.dev/acme-ml-dev/demo-images/tiny-base@" + DIGEST
    record = project / "build" / "images" / "dev.json"
    record.parent.mkdir(parents=True)
    record.write_text(json.dumps({"reference": image}))  # as `invoke build --env dev` leaves it
    env = {"VERTEXKIT_ENDPOINT_KFP_REGISTRY": recording_server.url, "VERTEXKIT_NO_AUTH": "1"}
    assert _invoke(project, env, "compile", "--env", "dev").returncode == 0
    result = _invoke(project, env, "publish", "--env", "dev")
    assert result.returncode == 0, result.stderr
    uri = f"https://europe-west4-kfp.pkg.dev/acme-ml-dev/demo-pipelines/demo-training/{DIGEST}"
    assert f"published {uri}" in result.stdout


def test_publish_refuses_templates_compiled_without_env(project: Path, tmp_path: Path) -> None:
    assert _invoke(project, {}, "compile").returncode == 0  # no --env: the local image
    result = _invoke(project, _no_credentials(tmp_path), "publish", "--env", "dev", "--dry-run")
    assert result.returncode == 1, result.stdout
    assert result.stderr.strip() == (
        "error: build/pipelines/training.yaml was compiled without --env, not for 'dev' (its "
        "image, parameter values and caching); run `invoke build --env dev` (once per image "
        "change), then `invoke compile --env dev`, then publish again"
    )
    assert result.stdout == ""


def _record_image(project: Path, env: str, digest: str = DIGEST) -> str:
    image = f"europe-west4-docker.pkg.dev/acme-ml-{env}/demo-images/tiny-base@{digest}"
    record = project / "build" / "images" / f"{env}.json"
    record.parent.mkdir(parents=True, exist_ok=True)
    record.write_text(json.dumps({"reference": image}))  # as `invoke build --env ENV` leaves it
    return image


def test_publish_refuses_templates_compiled_for_another_environment(project: Path) -> None:
    (project / "config" / "prod.yaml").write_text("gcp:\n  project_id: acme-ml-prod\n")
    _record_image(project, "dev")
    _record_image(project, "prod")
    assert _invoke(project, {}, "compile", "--env", "prod").returncode == 0
    result = _invoke(project, {}, "publish", "--env", "dev", "--dry-run")
    assert result.returncode == 1, result.stdout
    assert result.stderr.startswith(
        "error: build/pipelines/training.yaml was compiled for 'prod', not for 'dev'"
    )


def test_publish_refuses_templates_changed_after_compile(project: Path) -> None:
    _record_image(project, "dev")
    assert _invoke(project, {}, "compile", "--env", "dev").returncode == 0
    template = project / "build" / "pipelines" / "training.yaml"
    template.write_text(template.read_text() + "# edited by hand\n")
    result = _invoke(project, {}, "publish", "--env", "dev", "--dry-run")
    assert result.returncode == 1, result.stdout
    assert result.stderr.startswith(
        "error: build/pipelines/training.yaml was not written by `invoke compile --env dev` (or "
        "changed since)"
    )
    assert _invoke(project, {}, "compile", "--env", "dev").returncode == 0
    result = _invoke(project, {}, "publish", "--env", "dev", "--dry-run")
    assert result.returncode == 0, result.stderr


def test_publish_refuses_templates_compiled_before_the_last_build(project: Path) -> None:
    record = project / "build" / "images" / "dev.json"
    record.parent.mkdir(parents=True)
    repository = "europe-west4-docker.pkg.dev/acme-ml-dev/demo-images/tiny-base"
    record.write_text(json.dumps({"reference": f"{repository}@sha256:{'a' * 64}"}))
    assert _invoke(project, {}, "compile", "--env", "dev").returncode == 0
    record.write_text(json.dumps({"reference": f"{repository}@{DIGEST}"}))  # a newer build
    result = _invoke(project, {}, "publish", "--env", "dev", "--dry-run")
    assert result.returncode == 1, result.stdout
    assert result.stderr.startswith(
        f"error: build/pipelines/training.yaml was compiled with '{repository}@sha256:{'a' * 64}',"
        f" not the image last built for 'dev' ({repository}@{DIGEST}); run `invoke compile --env"
        " dev`, then publish again"
    )
