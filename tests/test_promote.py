"""`invoke promote`: the image dev built is copied by digest (never rebuilt), the templates are
compiled from the same commit for the target and published there with the same tags.

Real runs go through the project's invoke CLI to a local recording server standing in for
Artifact Registry, Cloud Build and the KFP registry.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.recording_server import RecordingServer
from tests.test_deploy import _commit, _invoke, _no_credentials
from tests.test_deploy import project as deployable  # noqa: F401 - a fixture

DEV = "projects/acme-ml-dev/locations/europe-west4"
PROD = "projects/acme-ml-prod/locations/europe-west4"
DEV_DIGEST = "sha256:" + "cd" * 32
OPERATION = f"{PROD}/operations/copy-1"
GCRANE = "gcr.io/go-containerregistry/gcrane:v0.21.9"


@pytest.fixture
def project(deployable: Path) -> Path:  # noqa: F811 - the fixture above, extended
    """The deployable fixture project with a prod environment in another Google Cloud project."""
    (deployable / "config" / "prod.yaml").write_text(
        "gcp:\n  project_id: acme-ml-prod\n  region: europe-west4\n"
    )
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run([*git, "add", "-A"], cwd=deployable, check=True)
    subprocess.run([*git, "commit", "-qm", "prod"], cwd=deployable, check=True)
    return deployable


def _environ(server: RecordingServer) -> dict[str, str]:
    services = ("ARTIFACTREGISTRY", "CLOUDBUILD", "KFP_REGISTRY", "AIPLATFORM", "RUN")
    return {
        **{f"VERTEXKIT_ENDPOINT_{s}": server.url for s in services},
        "VERTEXKIT_NO_AUTH": "1",
    }


def _fake_google(server: RecordingServer, commit: str, *, published: bool = True) -> None:
    template_tag = f"/v1/{DEV}/repositories/demo-pipelines/packages/demo-training/tags/{commit}"
    server.route(
        "GET",
        template_tag,
        (200, {"name": template_tag, "version": "x/versions/sha256:" + "ab" * 32})
        if published
        else (404, {"error": {"code": 404, "message": "tag not found"}}),
    )
    image_tag = f"/v1/{DEV}/repositories/demo-images/packages/tiny-base/tags/{commit}"
    server.route("GET", image_tag, (200, {"name": image_tag, "version": f"v/{DEV_DIGEST}"}))
    build = {"id": "copy-1", "status": "QUEUED", "logUrl": "https://console/copy-1"}
    server.route(
        "POST", f"/v1/{PROD}/builds", (200, {"name": OPERATION, "metadata": {"build": build}})
    )
    done = {"name": OPERATION, "done": True, "response": {**build, "status": "SUCCESS"}}
    server.route("GET", f"/v1/{OPERATION}", (200, done))
    server.route("POST", "/acme-ml-prod/demo-pipelines", (200, f"demo-training/{DEV_DIGEST}"))


def test_dry_run_shows_every_step_without_credentials(project: Path, tmp_path: Path) -> None:
    shown = _invoke(
        project, _no_credentials(tmp_path), "promote", "--from", "dev", "--to", "prod", "-d", "-j"
    )
    assert shown.returncode == 0, shown.stderr
    steps = [s["step"] for s in json.loads(shown.stdout)]
    assert steps == [
        "confirm",
        "find template demo-training",
        "find image in dev",
        "start image copy",
        "wait for image copy",
        "record image",
        "compile",
        "publish training",
    ]
    assert not (project / "build" / "images" / "prod.json").exists(), "a dry run writes nothing"


def test_promotes_the_image_by_digest_and_publishes_the_same_commit(
    project: Path, recording_server: RecordingServer
) -> None:
    commit = _commit(project)
    _fake_google(recording_server, commit)
    promoted = _invoke(
        project, _environ(recording_server), "promote", "--from", "dev", "--to", "prod", "--yes"
    )
    assert promoted.returncode == 0, promoted.stderr + promoted.stdout
    assert f"promoted {commit} from dev to prod" in promoted.stdout

    sent = {(r.method, r.path): r for r in recording_server.requests}
    assert ("POST", f"/v1/{DEV}/builds") not in sent, "nothing is rebuilt in dev"
    copy = sent[("POST", f"/v1/{PROD}/builds")].json
    assert copy["steps"] == [
        {
            "name": GCRANE,
            "args": [
                "cp",
                f"europe-west4-docker.pkg.dev/acme-ml-dev/demo-images/tiny-base@{DEV_DIGEST}",
                f"europe-west4-docker.pkg.dev/acme-ml-prod/demo-images/tiny-base:{commit}",
            ],
        }
    ]
    assert copy["serviceAccount"] == (
        "projects/acme-ml-prod/serviceAccounts/demo-builder@acme-ml-prod.iam.gserviceaccount.com"
    )

    record = json.loads((project / "build" / "images" / "prod.json").read_text())
    assert record["digest"] == DEV_DIGEST
    assert record["backend"] == "promoted from dev"
    compiled = (project / "build" / "pipelines" / "training.yaml").read_text()
    assert f"acme-ml-prod/demo-images/tiny-base@{DEV_DIGEST}" in compiled
    assert "acme-ml-dev" not in compiled, "the target's template names nothing of dev"
    upload = sent[("POST", "/acme-ml-prod/demo-pipelines")]
    assert f"{commit},latest".encode() in upload.body
    assert compiled.encode() in upload.body


def test_a_commit_dev_never_published_is_refused_before_anything_is_copied(
    project: Path, recording_server: RecordingServer
) -> None:
    commit = _commit(project)
    _fake_google(recording_server, commit, published=False)
    promoted = _invoke(
        project, _environ(recording_server), "promote", "--from", "dev", "--to", "prod", "--yes"
    )
    assert promoted.returncode == 1
    assert f"no template demo-training:{commit}" in promoted.stderr
    assert "invoke publish --env dev" in promoted.stderr
    assert not any(r.path.startswith(f"/v1/{PROD}") for r in recording_server.requests)
    assert not (project / "build" / "images" / "prod.json").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--to", "prod"), "--from ENV is required (environments: dev, prod)"),
        (("--from", "dev"), "--to ENV is required"),
        (("--from", "dev", "--to", "dev"), "--from and --to are both 'dev'"),
        (("--from", "dev", "--to", "qa"), "unknown environment 'qa': no config/qa.yaml"),
    ],
)
def test_bad_arguments_are_named(project: Path, args: tuple[str, ...], message: str) -> None:
    result = _invoke(project, {}, "promote", *args, "--dry-run")
    assert result.returncode == 2 if "required" in message else result.returncode != 0
    assert message in result.stderr


def test_uncommitted_changes_are_refused(project: Path) -> None:
    pipeline = project / "pipelines" / "training.py"
    pipeline.write_text(pipeline.read_text() + "\n# edited\n")
    result = _invoke(project, {}, "promote", "--from", "dev", "--to", "prod", "--dry-run")
    assert result.returncode != 0
    assert "uncommitted changes in pipelines/training.py" in result.stderr


def test_without_a_terminal_it_asks_for_yes(
    project: Path, recording_server: RecordingServer
) -> None:
    _fake_google(recording_server, _commit(project))
    result = _invoke(
        project, _environ(recording_server), "promote", "--from", "dev", "--to", "prod"
    )
    assert result.returncode != 0
    assert "pass --yes" in result.stderr
    assert recording_server.requests == []


def test_the_targets_schedules_follow_the_promoted_templates(project: Path, tmp_path: Path) -> None:
    (project / "config" / "prod.yaml").write_text(
        "gcp:\n  project_id: acme-ml-prod\n  region: europe-west4\nscheduler: vertex\n"
        "pipelines:\n  training:\n    schedule: {cron: '0 6 * * MON', timezone: Europe/Paris}\n"
    )
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run([*git, "commit", "-qam", "schedule in prod"], cwd=project, check=True)
    shown = _invoke(
        project, _no_credentials(tmp_path), "promote", "--from", "dev", "--to", "prod", "-d", "-j"
    )
    assert shown.returncode == 0, shown.stderr
    steps = json.loads(shown.stdout)
    names = [s["step"] for s in steps]
    assert names.index("publish training") < len(names) - 1, "schedules come after publishing"
    schedule = steps[-1]
    assert schedule["body"]["cron"] == "TZ=Europe/Paris 0 6 * * MON"
    assert f"/demo-training/{_commit(project)}" in json.dumps(schedule["body"])


SERVICE_DIGEST = "sha256:" + "ef" * 32
PROD_IMAGES = "europe-west4-docker.pkg.dev/acme-ml-prod/demo-images"


def test_a_cloud_run_service_image_is_promoted_by_digest_with_the_base_image(
    project: Path, recording_server: RecordingServer
) -> None:
    """One service image serves every environment: promotion copies it in the same build as
    the base image, by digest, and records it for the target as `invoke build` does."""
    with (project / "config" / "base.yaml").open("a") as base:
        base.write("service: {kind: cloud-run}\n")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run([*git, "commit", "-qam", "service"], cwd=project, check=True)
    commit = _commit(project)
    _fake_google(recording_server, commit)
    service_tag = f"/v1/{DEV}/repositories/demo-images/packages/demo-submit/tags/{commit}"
    recording_server.route(
        "GET", service_tag, (200, {"name": service_tag, "version": f"v/{SERVICE_DIGEST}"})
    )
    shown = _invoke(project, {}, "promote", "--from", "dev", "--to", "prod", "-d", "-j")
    steps = [s["step"] for s in json.loads(shown.stdout)]
    assert steps[2:4] == ["find image in dev", "find service image in dev"]
    # After the templates, prod's service gets the promoted image (Cloud Run Admin API).
    assert steps[-3:] == [
        "read the Cloud Run service",
        "deploy the service image",
        "wait for the service's new revision",
    ]
    service = "/v2/projects/acme-ml-prod/locations/europe-west4/services/demo-submit"
    running = {
        "name": service[4:],
        "template": {
            "revision": "demo-submit-00001-abc",
            "serviceAccount": "demo-submit@acme-ml-prod.iam.gserviceaccount.com",
            "containers": [
                {
                    "image": f"{PROD_IMAGES}/demo-submit@sha256:{'00' * 32}",
                    "env": [{"name": "VERTEXKIT_ENV", "value": "prod"}],
                }
            ],
        },
    }
    recording_server.route("GET", service, (200, running))
    rollout = "projects/acme-ml-prod/locations/europe-west4/operations/rollout-1"
    recording_server.route("PATCH", service, (200, {"name": rollout, "done": False}))
    recording_server.route("GET", f"/v2/{rollout}", (200, {"name": rollout, "done": True}))

    promoted = _invoke(
        project, _environ(recording_server), "promote", "--from", "dev", "--to", "prod", "--yes"
    )
    assert promoted.returncode == 0, promoted.stderr + promoted.stdout
    sent = [(r.method, r.path) for r in recording_server.requests]
    assert ("GET", service_tag) in sent
    [copy] = [r.json for r in recording_server.requests if r.path == f"/v1/{PROD}/builds"]
    dev_images = "europe-west4-docker.pkg.dev/acme-ml-dev/demo-images"
    prod_images = "europe-west4-docker.pkg.dev/acme-ml-prod/demo-images"
    assert [step["args"] for step in copy["steps"]] == [
        ["cp", f"{dev_images}/tiny-base@{DEV_DIGEST}", f"{prod_images}/tiny-base:{commit}"],
        ["cp", f"{dev_images}/demo-submit@{SERVICE_DIGEST}", f"{prod_images}/demo-submit:{commit}"],
    ]
    assert {step["name"] for step in copy["steps"]} == {GCRANE}
    record = json.loads((project / "build" / "images" / "prod.json").read_text())
    assert record["service"] == {
        "image": f"{prod_images}/demo-submit:{commit}",
        "digest": SERVICE_DIGEST,
        "reference": f"{prod_images}/demo-submit@{SERVICE_DIGEST}",
    }
    # What provisioning prod deploys is that image (the build's reader, one record).
    from vertexkit.gcp import build, service_infra

    assert build.read_service_image(project, "prod") == record["service"]["reference"]
    assert service_infra.recorded_service_image(project, "prod") == record["service"]["reference"]
    [patch] = [r for r in recording_server.requests if r.method == "PATCH"]
    assert patch.path == service and patch.query == {"updateMask": ["template"]}
    expected = json.loads(json.dumps(running["template"]))
    del expected["revision"]  # the new revision gets a new name
    expected["containers"][0]["image"] = record["service"]["reference"]
    assert patch.json == {"template": expected}  # everything else as it was
    assert sent.index(("PATCH", service)) > sent.index(("POST", "/acme-ml-prod/demo-pipelines"))
    assert ("GET", f"/v2/{rollout}") in [(r.method, r.path) for r in recording_server.requests]
