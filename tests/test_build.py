"""vertexkit.gcp.build: the base image on Cloud Build (GCS emulator, recording server) or Docker."""

from __future__ import annotations

import io
import json
import sys
import tarfile
from pathlib import Path
from urllib.parse import quote

import pytest
import requests

from tests.gcs_emulator import create_bucket
from tests.recording_server import Recorded, RecordingServer
from vertexkit.gcp import build
from vertexkit.project.config import load_config
from vertexkit.steps import Step, execute

COMMIT = "0123456789abcdef0123456789abcdef01234567"
BUCKET = "vertexkit-test"
REPOSITORY = "europe-west4-docker.pkg.dev/acme-ml-dev/demo-images/tiny-base"
IMAGE = f"{REPOSITORY}:{COMMIT}"
DIGEST = "sha256:" + "ab" * 32
OPERATION = "projects/acme-ml-dev/locations/europe-west4/operations/op-1"
LOG_URL = "https://console.cloud.google.com/cloud-build/builds;region=europe-west4/b-1"
VISIBLE = {".dockerignore", "components/Dockerfile", "build/wheels/tiny-0.1.0-py3-none-any.whl"}

# A PEP 517 backend in the project itself, so `pip wheel .` builds offline in a blink.
BACKEND = (Path(__file__).parent / "fixtures" / "tiny_backend.py").read_text()


def _write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("VERTEXKIT_NO_AUTH", "1")
    monkeypatch.setenv("PIP_NO_INDEX", "1")  # the wheel step must not need the network
    monkeypatch.setenv("PIP_DISABLE_PIP_VERSION_CHECK", "1")
    root = tmp_path / "proj"
    _write(
        root,
        {
            "config/base.yaml": "name: demo\nnaming_prefix: demo\n"
            "gcp: {project_id: acme-ml-dev, region: europe-west4}\n"
            f"resources: {{bucket: {BUCKET}}}\n",
            "config/dev.yaml": "",
            "pyproject.toml": '[build-system]\nrequires = []\nbuild-backend = "tiny_backend"\n'
            'backend-path = ["."]\n',
            "tiny_backend.py": BACKEND,
            "components/tiny/__init__.py": "",
            "components/Dockerfile": "FROM python:3.11-slim\n",
            ".dockerignore": "*\n!build/wheels/\n",
            # Never part of the build context:
            ".env": "SECRET=1\n",
            "data/train.csv": "a\n1\n",
            "build/local/run/out.csv": "x\n",
            "build/pipelines/training.yaml": "{}\n",
        },
    )
    return root


@pytest.fixture
def gcs(gcs_emulator: str) -> str:
    """The emulator with an empty bucket; yields its URL."""
    create_bucket(gcs_emulator, BUCKET)
    return gcs_emulator


def _members(data: bytes) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        return {m.name: m for m in tar.getmembers() if m.isfile()}


def test_pack_context_holds_exactly_what_docker_sees(project: Path, tmp_path: Path) -> None:
    _write(project, {"build/wheels/x-1-py3-none-any.whl": "wheel", "build/wheels/y.txt": "y"})
    first = build.pack_context(project, tmp_path / "a.tar.gz").read_bytes()
    members = _members(first)
    assert set(members) == {
        ".dockerignore",
        "components/Dockerfile",
        "build/wheels/x-1-py3-none-any.whl",
        "build/wheels/y.txt",
    }
    assert {(m.mtime, m.uid, m.uname) for m in members.values()} == {(0, 0, "")}
    # Reproducible: the same files give the same bytes.
    assert build.pack_context(project, tmp_path / "b.tar.gz").read_bytes() == first
    assert not list(tmp_path.glob("*.tmp"))


def test_pack_context_without_wheels_says_what_to_run(project: Path, tmp_path: Path) -> None:
    with pytest.raises(build.BuildError, match=r"no wheels in build/wheels: run `pip wheel"):
        build.pack_context(project, tmp_path / "c.tar.gz")


def _cloud_build(server: RecordingServer, final: dict) -> None:
    metadata = {"build": {"id": "b-1", "status": "WORKING", "logUrl": LOG_URL}}
    server.route(
        "POST",
        "/v1/projects/acme-ml-dev/locations/europe-west4/builds",
        (200, {"name": OPERATION, "metadata": metadata}),
    )
    polls: list[Recorded] = []

    def poll(request: Recorded) -> tuple[int, dict]:
        polls.append(request)
        return 200, final if len(polls) == 2 else {"name": OPERATION, "metadata": metadata}

    server.route("GET", f"/v1/{OPERATION}", poll)


def _plan(project: Path, **kwargs: object) -> list[Step]:
    config = load_config(project, "dev", environ={})
    return build.plan_build(config, project, git_commit=COMMIT, **kwargs)  # type: ignore[arg-type]


def test_cloud_build_uploads_context_builds_and_records_digest(
    project: Path, gcs: str, recording_server: RecordingServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VERTEXKIT_ENDPOINT_CLOUDBUILD", recording_server.url)
    built = {"id": "b-1", "status": "SUCCESS", "logUrl": LOG_URL}
    result = {**built, "results": {"images": [{"name": IMAGE, "digest": DIGEST}]}}
    _cloud_build(recording_server, {"name": OPERATION, "done": True, "response": result})

    responses = execute(_plan(project, poll_seconds=0), out=io.StringIO())

    # The context arrived in the bucket, holding only what Docker would see.
    name = f"builds/{COMMIT}/context.tar.gz"
    listing = requests.get(f"{gcs}/storage/v1/b/{BUCKET}/o").json()
    [stored] = [item for item in listing["items"] if item["name"] == name]
    blob = requests.get(f"{gcs}/storage/v1/b/{BUCKET}/o/{quote(name, safe='')}?alt=media")
    assert set(_members(blob.content)) == VISIBLE

    create, *polls = recording_server.requests
    assert create.method == "POST"
    assert create.json == {
        "source": {
            "storageSource": {"bucket": BUCKET, "object": name, "generation": stored["generation"]}
        },
        "steps": [
            {
                "name": "gcr.io/cloud-builders/docker",
                "args": ["build", "-f", "components/Dockerfile", "-t", IMAGE, "."],
                "env": ["DOCKER_BUILDKIT=1"],
            }
        ],
        "images": [IMAGE],
        "tags": ["vertexkit", "dev"],
        "options": {"logging": "CLOUD_LOGGING_ONLY"},
    }
    assert [(r.method, r.path) for r in polls] == [("GET", f"/v1/{OPERATION}")] * 2

    reference = build.record_build(project, "dev", responses)
    assert reference == f"{REPOSITORY}@{DIGEST}"
    record = json.loads((project / "build/images/dev.json").read_text())
    assert {k: record[k] for k in ("image", "digest", "reference", "backend")} == {
        "image": IMAGE,
        "digest": DIGEST,
        "reference": reference,
        "backend": "cloudbuild",
    }
    assert record["built_at"].endswith("+00:00")
    assert build.read_image(project, "dev") == reference


def test_failed_cloud_build_names_build_and_logs(
    project: Path, gcs: str, recording_server: RecordingServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VERTEXKIT_ENDPOINT_CLOUDBUILD", recording_server.url)
    failed = {"id": "b-1", "status": "FAILURE", "logUrl": LOG_URL, "statusDetail": "step 0 failed"}
    error = {"code": 2, "message": "Build failed; check build logs for details"}
    _cloud_build(
        recording_server,
        {"name": OPERATION, "done": True, "error": error, "metadata": {"build": failed}},
    )
    with pytest.raises(build.BuildError) as excinfo:
        execute(_plan(project, poll_seconds=0), out=io.StringIO())
    assert str(excinfo.value) == (
        f"Cloud Build build b-1 ended FAILURE: step 0 failed; logs: {LOG_URL}"
    )
    assert not (project / "build/images").exists()


def test_wait_gives_up_after_max_polls_naming_the_build(
    project: Path, gcs: str, recording_server: RecordingServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VERTEXKIT_ENDPOINT_CLOUDBUILD", recording_server.url)
    _cloud_build(recording_server, {"name": OPERATION, "done": False})
    with pytest.raises(build.BuildError, match=f"b-1 still running after 1 checks; .*{LOG_URL}"):
        execute(_plan(project, poll_seconds=0, max_polls=1), out=io.StringIO())


def test_dry_run_shows_placeholders_and_sends_nothing(
    project: Path, recording_server: RecordingServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    for service in ("STORAGE", "CLOUDBUILD"):
        monkeypatch.setenv(f"VERTEXKIT_ENDPOINT_{service}", recording_server.url)
    steps = _plan(project, service_account="builder@acme-ml-dev.iam.gserviceaccount.com")
    shown = io.StringIO()
    execute(steps, dry_run=True, as_json=True, out=shown)
    planned = json.loads(shown.getvalue())
    root = str(project.resolve())
    assert [s["step"] for s in planned] == [
        "remove old wheels",
        "build wheels",
        "pack build context",
        "upload build context",
        "start cloud build",
        "wait for cloud build",
    ]
    clean, wheels, pack, upload, start, wait = planned
    assert clean["command"] == [sys.executable, "-m", "vertexkit.gcp.build", "clean", root]
    assert wheels["command"] == [
        sys.executable,
        "-m",
        "pip",
        "wheel",
        ".",
        "--wheel-dir",
        "build/wheels",
    ]
    assert wheels["cwd"] == root
    context = f"{root}/build/context.tar.gz"
    assert pack["command"] == [sys.executable, "-m", "vertexkit.gcp.build", "pack", root, context]
    assert upload == {
        "step": "upload build context",
        "body": None,
        "method": "POST",
        "url": f"{recording_server.url}/upload/storage/v1/b/{BUCKET}/o?uploadType=media"
        f"&name=builds%2F{COMMIT}%2Fcontext.tar.gz",
        "upload": context,
        "content_type": "application/octet-stream",
    }
    source = start["body"]["source"]["storageSource"]
    assert source["generation"] == "<from upload build context: generation>"
    assert start["body"]["serviceAccount"] == (
        "projects/acme-ml-dev/serviceAccounts/builder@acme-ml-dev.iam.gserviceaccount.com"
    )
    assert wait == {
        "step": "wait for cloud build",
        "body": None,
        "method": "GET",
        "url": f"{recording_server.url}/v1/<from start cloud build: operation name>",
        "repeat": "until done",
    }
    text = io.StringIO()
    execute(steps, dry_run=True, out=text)
    assert f"raw upload of {context} (application/octet-stream)" in text.getvalue()
    assert recording_server.requests == []
    assert not (project / "build/wheels").exists()
    assert not (project / "build/context.tar.gz").exists()


def test_local_docker_plan(project: Path) -> None:
    steps = _plan(project, local_docker=True)
    root = str(project.resolve())
    planned = [step.to_json() for step in steps]
    assert [(s["step"], s["command"], s["cwd"]) for s in planned] == [
        ("remove old wheels", [sys.executable, "-m", "vertexkit.gcp.build", "clean", root], root),
        (
            "build wheels",
            [sys.executable, "-m", "pip", "wheel", ".", "--wheel-dir", "build/wheels"],
            root,
        ),
        (
            "docker build",
            ["docker", "build", "-f", "components/Dockerfile", "-t", IMAGE, "."],
            root,
        ),
        ("docker push", ["docker", "push", IMAGE], root),
        (
            "read image digest",
            ["docker", "inspect", "--format", "{{index .RepoDigests 0}}", IMAGE],
            root,
        ),
    ]
    shown = io.StringIO()
    execute(steps, dry_run=True, out=shown)
    # The dry run of the digest read can be pasted into a shell as it is.
    assert f"$ docker inspect --format '{{{{index .RepoDigests 0}}}}' {IMAGE}" in shown.getvalue()


def test_record_local_docker_build(project: Path) -> None:
    answer = {"image": IMAGE, "reference": f"{REPOSITORY}@{DIGEST}"}
    assert build.record_build(project, "dev", {"read image digest": answer}) == answer["reference"]
    assert json.loads((project / "build/images/dev.json").read_text())["backend"] == "docker"
    other = {"image": IMAGE, "reference": f"elsewhere/tiny-base@{DIGEST}"}
    with pytest.raises(build.BuildError, match="digest for 'elsewhere/tiny-base'"):
        build.record_build(project, "dev", {"read image digest": other})


def test_read_image_without_record_says_how_to_build(project: Path) -> None:
    with pytest.raises(build.BuildError) as excinfo:
        build.read_image(project, "dev")
    assert str(excinfo.value) == (
        "no image built for environment 'dev': run `invoke build --env dev` first"
    )


def test_image_name_rejects_an_invalid_tag(project: Path) -> None:
    config = load_config(project, "dev", environ={})
    assert build.image_name(config, "tiny", COMMIT) == IMAGE
    with pytest.raises(ValueError, match="not a valid image tag"):
        build.image_name(config, "tiny", "feature/x")
