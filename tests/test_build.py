"""vertexkit.gcp.build: the base image on Cloud Build (GCS emulator, recording server) or Docker."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path
from urllib.parse import quote

import pytest
import requests

from tests.gcs_emulator import create_bucket
from tests.recording_server import Recorded, RecordingServer
from vertexkit.gcp import build
from vertexkit.project.config import load_config
from vertexkit.steps import CloudError, Step, execute

COMMIT = "0123456789abcdef0123456789abcdef01234567"
BUCKET = "vertexkit-test"
REPOSITORY = "europe-west4-docker.pkg.dev/acme-ml-dev/demo-images/tiny-base"
IMAGE = f"{REPOSITORY}:{COMMIT}"
DIGEST = "sha256:" + "ab" * 32
OPERATION = "projects/acme-ml-dev/locations/europe-west4/operations/op-1"
LOG_URL = "https://console.cloud.google.com/cloud-build/builds;region=europe-west4/b-1"
VISIBLE = {
    ".dockerignore",
    "components/Dockerfile",
    "build/wheels/dep-1.0-py3-none-any.whl",
    "build/wheels/requirements.txt",
    "build/wheels/tiny-0.1.0-py3-none-any.whl",
}

# A PEP 517 backend in the project itself, so `pip wheel .` builds offline in a blink.
BACKEND = (Path(__file__).parent / "fixtures" / "tiny_backend.py").read_text()
# The project's one dependency, served by a package index in a local folder (file://).
PYPROJECT = """\
[build-system]
requires = []
build-backend = "tiny_backend"
backend-path = ["."]

[project]
name = "tiny"
version = "0.1.0"
requires-python = ">=3.10"
dependencies = ["dep==1.0"]

[[tool.uv.index]]
name = "local"
url = "{index}"
default = true
"""


def _write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)


def _publish(index: Path, wheels: Path, body: str = "") -> Path:
    """Put a wheel of dep 1.0 into ``wheels`` and list it, with its hash, in ``index``."""
    wheel = wheels / "dep-1.0-py3-none-any.whl"
    wheel.parent.mkdir(parents=True, exist_ok=True)
    files = {
        "dep/__init__.py": body,
        "dep-1.0.dist-info/METADATA": "Metadata-Version: 2.1\nName: dep\nVersion: 1.0\n",
        "dep-1.0.dist-info/WHEEL": "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        "dep-1.0.dist-info/RECORD": "",
    }
    with zipfile.ZipFile(wheel, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    (index / "dep").mkdir(parents=True, exist_ok=True)
    (index / "dep" / "index.html").write_text(
        f'<a href="{os.path.relpath(wheel, index / "dep")}#sha256={digest}">{wheel.name}</a>\n'
    )
    return wheel


def _uv(*args: str, cwd: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "uv", *args], cwd=cwd, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("VERTEXKIT_NO_AUTH", "1")
    # The wheel step must not need the network: pip and uv see only the local index.
    index = tmp_path / "index"
    _publish(index, tmp_path / "files")
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_INDEX_URL", index.as_uri())
    monkeypatch.setenv("PIP_DISABLE_PIP_VERSION_CHECK", "1")
    monkeypatch.delenv("PIP_FIND_LINKS", raising=False)
    monkeypatch.setenv("UV_PYTHON_DOWNLOADS", "never")
    root = tmp_path / "proj"
    _write(
        root,
        {
            "config/base.yaml": "name: demo\nnaming_prefix: demo\n"
            "gcp: {project_id: acme-ml-dev, region: europe-west4}\n"
            f"resources: {{bucket: {BUCKET}}}\n",
            "config/dev.yaml": "",
            "pyproject.toml": PYPROJECT.format(index=index.as_uri()),
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
    _uv("lock", cwd=root)
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
    _write(
        project,
        {"build/wheels/x-1-py3-none-any.whl": "wheel", "build/wheels/requirements.txt": "x==1\n"},
    )
    first = build.pack_context(project, tmp_path / "a.tar.gz").read_bytes()
    members = _members(first)
    assert set(members) == {
        ".dockerignore",
        "components/Dockerfile",
        "build/wheels/x-1-py3-none-any.whl",
        "build/wheels/requirements.txt",
    }
    assert {(m.mtime, m.uid, m.uname) for m in members.values()} == {(0, 0, "")}
    # Reproducible: the same files give the same bytes.
    assert build.pack_context(project, tmp_path / "b.tar.gz").read_bytes() == first
    assert not list(tmp_path.glob("*.tmp"))


def test_pack_context_without_wheels_says_what_to_run(project: Path, tmp_path: Path) -> None:
    with pytest.raises(build.BuildError) as excinfo:
        build.pack_context(project, tmp_path / "c.tar.gz")
    assert str(excinfo.value) == (
        "no wheels or no build/wheels/requirements.txt in build/wheels: run `uv export --locked "
        "--no-dev --no-emit-project --no-editable --format requirements-txt --quiet "
        "--output-file build/locked-requirements.txt`, then "
        "`python -m vertexkit.gcp.build wheels .`"
    )


def _build_wheels(project: Path) -> list[Step]:
    """Apply the plan's first steps: remove old wheels, export the lock, build the wheels."""
    steps = _plan(project, local_docker=True)[:3]
    execute(steps, out=io.StringIO())
    return steps


def test_wheels_are_the_locked_versions_and_the_image_installs_only_them(project: Path) -> None:
    _write(project, {"build/wheels/stale-0.9-py3-none-any.whl": "old"})
    _build_wheels(project)
    wheels = project / "build" / "wheels"
    assert sorted(p.name for p in wheels.iterdir()) == [
        "dep-1.0-py3-none-any.whl",
        "requirements.txt",
        "tiny-0.1.0-py3-none-any.whl",
    ]
    # The exported lock names dep 1.0 with the hash uv.lock holds; the wheel is that file.
    locked = (project / "build" / "locked-requirements.txt").read_text()
    dep = hashlib.sha256((wheels / "dep-1.0-py3-none-any.whl").read_bytes()).hexdigest()
    assert f"--hash=sha256:{dep}" in locked and f"sha256:{dep}" in (project / "uv.lock").read_text()
    tiny = hashlib.sha256((wheels / "tiny-0.1.0-py3-none-any.whl").read_bytes()).hexdigest()
    assert (wheels / "requirements.txt").read_text().splitlines()[1:] == [
        f"dep==1.0 --hash=sha256:{dep}",
        f"tiny==0.1.0 --hash=sha256:{tiny}",
    ]


def test_a_file_that_does_not_match_the_lock_fails_the_build(project: Path, tmp_path: Path) -> None:
    # The index now serves another file under the same name and version.
    _publish(tmp_path / "index", tmp_path / "files", body="print('tampered')\n")
    with pytest.raises(CloudError) as excinfo:
        _build_wheels(project)
    assert "build wheels" in str(excinfo.value)
    assert "hash" in str(excinfo.value).lower()
    assert not list((project / "build" / "wheels").glob("dep-*.whl"))


def test_a_stale_lock_fails_the_export(project: Path) -> None:
    pyproject = project / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace('"dep==1.0"', '"dep>=1.0"'))
    with pytest.raises(CloudError) as excinfo:
        _build_wheels(project)
    assert "export locked requirements" in str(excinfo.value)
    assert "uv lock" in str(excinfo.value)


def test_build_without_uv_lock_says_to_lock_and_commit(project: Path) -> None:
    (project / "uv.lock").unlink()
    with pytest.raises(build.BuildError) as excinfo:
        _plan(project)
    assert str(excinfo.value) == (
        f"uv.lock not found in {project.resolve()}: the base image installs exactly the locked "
        "versions; run `uv lock` (or `uv sync`) and commit uv.lock"
    )


def test_split_requirements_keeps_hashed_lines_apart_from_direct_references() -> None:
    exported = (
        "# This file was autogenerated by uv\n"
        "file:///home/me/vertexkit\n    # via demo\n"
        "dep==1.0 ; python_full_version < '3.12' \\\n"
        "    --hash=sha256:aa \\\n    --hash=sha256:bb\n    # via demo\n"
        "vertexkit @ git+https://github.com/org/vertexkit.git@0123abc\n"
    )
    assert build.split_requirements(exported) == (
        ["dep==1.0 ; python_full_version < '3.12'      --hash=sha256:aa      --hash=sha256:bb"],
        [
            "file:///home/me/vertexkit",
            "vertexkit @ git+https://github.com/org/vertexkit.git@0123abc",
        ],
    )
    with pytest.raises(build.BuildError, match="unexpected option"):
        build.split_requirements("-e ./vertexkit\n")


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
        "export locked requirements",
        "build wheels",
        "pack build context",
        "upload build context",
        "start cloud build",
        "wait for cloud build",
    ]
    clean, export, wheels, pack, upload, start, wait = planned
    assert clean["command"] == [sys.executable, "-m", "vertexkit.gcp.build", "clean", root]
    assert export["command"] == [
        build.uv_executable(),
        "export",
        "--locked",
        "--no-dev",
        "--no-emit-project",
        "--no-editable",
        "--format",
        "requirements-txt",
        "--quiet",
        "--output-file",
        "build/locked-requirements.txt",
    ]
    assert wheels["command"] == [sys.executable, "-m", "vertexkit.gcp.build", "wheels", root]
    assert export["cwd"] == wheels["cwd"] == root
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
    assert not (project / "build/locked-requirements.txt").exists()
    assert not (project / "build/context.tar.gz").exists()


def test_local_docker_plan(project: Path) -> None:
    steps = _plan(project, local_docker=True)
    root = str(project.resolve())
    planned = [step.to_json() for step in steps]
    export = [build.uv_executable(), *build.EXPORT_ARGS]
    assert [(s["step"], s["command"], s["cwd"]) for s in planned] == [
        ("remove old wheels", [sys.executable, "-m", "vertexkit.gcp.build", "clean", root], root),
        ("export locked requirements", export, root),
        ("build wheels", [sys.executable, "-m", "vertexkit.gcp.build", "wheels", root], root),
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


def test_a_cloud_run_service_is_built_beside_the_base_image(
    project: Path, gcs: str, recording_server: RecordingServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VERTEXKIT_ENDPOINT_CLOUDBUILD", recording_server.url)
    training = Path(__file__).parent / "fixtures" / "project" / "pipelines" / "training.py"
    _write(
        project,
        {
            "pipelines/training.py": training.read_text(),
            "services/submission/Dockerfile": "FROM python:3.11-slim\n",
            "services/submission/Dockerfile.dockerignore": "*\n!build/wheels/\n!config/\n",
        },
    )
    service_repository = REPOSITORY.replace("tiny-base", "demo-submit")
    service_image = f"{service_repository}:{COMMIT}"
    service_digest = "sha256:" + "cd" * 32
    images = [{"name": IMAGE, "digest": DIGEST}, {"name": service_image, "digest": service_digest}]
    built = {"id": "b-1", "status": "SUCCESS", "logUrl": LOG_URL, "results": {"images": images}}
    _cloud_build(recording_server, {"name": OPERATION, "done": True, "response": built})
    config = load_config(project, "dev", environ={"VERTEXKIT__SERVICE__KIND": "cloud-run"})

    steps = build.plan_build(config, project, git_commit=COMMIT, poll_seconds=0)
    responses = execute(steps, out=io.StringIO())

    # The pipelines were compiled for each environment, with the record the service reads.
    record = json.loads((project / "build/service/pipelines/dev/compiled.json").read_text())
    assert record["training"]["environment"] == "dev"
    name = f"builds/{COMMIT}/context.tar.gz"
    blob = requests.get(f"{gcs}/storage/v1/b/{BUCKET}/o/{quote(name, safe='')}?alt=media")
    assert set(_members(blob.content)) == VISIBLE | {
        "config/base.yaml",
        "config/dev.yaml",
        "build/service/pipelines/dev/compiled.json",
        "build/service/pipelines/dev/training.yaml",
        "services/submission/Dockerfile",
        "services/submission/Dockerfile.dockerignore",
    }
    create = recording_server.requests[0]
    assert create.json["images"] == [IMAGE, service_image]
    assert create.json["steps"][1]["args"] == [
        "build",
        "-f",
        "services/submission/Dockerfile",
        "--build-arg",
        f"GIT_COMMIT={COMMIT}",
        "-t",
        service_image,
        ".",
    ]
    build.record_build(project, "dev", responses)
    assert build.read_image(project, "dev") == f"{REPOSITORY}@{DIGEST}"
    assert build.read_service_image(project, "dev") == f"{service_repository}@{service_digest}"


def test_without_a_cloud_run_service_only_the_base_image_is_built(project: Path) -> None:
    for kind in ("none", "cloud-functions"):
        config = load_config(project, "dev", environ={"VERTEXKIT__SERVICE__KIND": kind})
        steps = build.plan_build(config, project, git_commit=COMMIT)
        assert not [s for s in steps if "service" in s.step]
    with pytest.raises(build.BuildError, match="no service image built for environment 'dev'"):
        build.read_service_image(project, "dev")
