"""The submission service: endpoints, refusals, idempotency, Pub/Sub push, OIDC, parity with
``invoke run``.

Runs go to a recording server playing Vertex AI or Kubeflow Pipelines (tests/fake_backends.py),
the only boundary mocked; the service is the real one, served by uvicorn where HTTP matters.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.fake_backends import FakeKfp, FakeVertex
from tests.recording_server import RecordingServer
from tests.service_support import commit_of, make_project, serving
from vertexkit.service.app import Request, Service, key_label
from vertexkit.service.server import asgi, create_service

JSON = {"content-type": "application/json"}


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_project(tmp_path_factory.mktemp("service") / "project")


@pytest.fixture
def dry(project: Path) -> Service:
    return create_service(project, "dev", backend="dry-run")


@pytest.fixture
def vertex(
    project: Path,
    recording_server: RecordingServer,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[tuple[Service, FakeVertex]]:
    monkeypatch.setenv("VERTEXKIT_NO_AUTH", "1")
    monkeypatch.setenv("VERTEXKIT_ENDPOINT_AIPLATFORM", recording_server.url)
    fake = FakeVertex(recording_server, "acme-ml-dev", "europe-west4")
    yield create_service(project, "dev"), fake


def call(service: Service, method: str, path: str, body: Any = None, **headers: str) -> Any:
    raw = body if isinstance(body, bytes) else b"" if body is None else json.dumps(body).encode()
    response = service.handle(
        Request(method, path, {**JSON, **{k.replace("_", "-"): v for k, v in headers.items()}}, raw)
    )
    return response.status, json.loads(response.encoded()) if response.content_type.endswith(
        "json"
    ) else response.encoded().decode()


def envelope(payload: Any, message_id: str = "m-1", *, raw: bytes | None = None) -> dict:
    data = raw if raw is not None else json.dumps(payload).encode()
    return {
        "message": {
            "data": base64.b64encode(data).decode(),
            "messageId": message_id,
            "attributes": {},
        },
        "subscription": "projects/acme-ml-dev/subscriptions/demo-submit",
    }


# Reading -------------------------------------------------------------------------------------


def test_health_schema_and_docs(dry: Service) -> None:
    assert call(dry, "GET", "/healthz") == (200, {"status": "ok"})
    status, schema = call(dry, "GET", "/openapi.json")
    assert status == 200 and schema["openapi"].startswith("3.0")
    assert set(schema["paths"]) >= {"/pipelines/{name}/runs", "/pubsub/push", "/runs/{run_id}"}
    status, page = call(dry, "GET", "/docs")
    assert status == 200 and "POST /pipelines/{name}/runs" in page


def test_pipelines_lists_each_parameter_with_type_and_default(dry: Service) -> None:
    status, body = call(dry, "GET", "/pipelines")
    assert status == 200
    pipelines = {p["name"]: p for p in body["pipelines"]}
    assert set(pipelines) == {"training", "scoring"}
    scoring = {p["name"]: p for p in pipelines["scoring"]["parameters"]}
    assert scoring["threshold"] == {
        "name": "threshold",
        "type": "float",
        "required": True,
        "default": None,
    }
    assert scoring["rounds"]["type"] == "int" and scoring["rounds"]["default"] == 1
    assert scoring["tags"]["type"] == "list" and scoring["options"]["type"] == "dict"
    # Compiled for dev: the configured value is the template's default (config/dev.yaml: n: 5).
    training = {p["name"]: p for p in pipelines["training"]["parameters"]}
    assert training["n"]["default"] == 5 and pipelines["training"]["template"] == "demo-training"


def test_only_pipelines_compiled_for_the_environment_are_runnable(project: Path, tmp_path) -> None:
    import shutil

    folder = tmp_path / "pipelines"
    shutil.copytree(project / "build" / "pipelines", folder)
    record = json.loads((folder / "compiled.json").read_text())
    record["scoring"]["environment"] = "prod"
    (folder / "compiled.json").write_text(json.dumps(record))
    (folder / "training.yaml").write_text((folder / "training.yaml").read_text() + "# edited\n")
    service = create_service(project, "dev", backend="dry-run", pipelines_dir=folder)
    assert call(service, "GET", "/pipelines") == (200, {"pipelines": []})
    status, body = call(service, "POST", "/pipelines/scoring/runs", {})
    assert status == 404 and "runnable: none" in body["error"]["message"]


# Refusals ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("parameters", "fields"),
    [
        ({"threshold": 0.5, "nope": 1}, {"parameters.nope"}),
        ({"threshold": "high"}, {"parameters.threshold"}),
        (
            {"threshold": 0.5, "rounds": 1.5, "dry": "yes", "tags": {}},
            {
                "parameters.rounds",
                "parameters.dry",
                "parameters.tags",
            },
        ),
        ({}, {"parameters.threshold"}),
        ({"threshold": 0.5, "rounds": 11}, {"parameters.rounds"}),
    ],
    ids=["unknown", "wrong-type", "several", "missing-required", "rule"],
)
def test_bad_parameters_answer_422_naming_each(
    dry: Service, parameters: dict, fields: set[str]
) -> None:
    status, body = call(dry, "POST", "/pipelines/scoring/runs", {"parameters": parameters})
    assert status == 422, body
    problems = body["error"]["problems"]
    assert {p["field"] for p in problems} == fields
    for problem in problems:
        assert problem["field"].split(".")[-1] in problem["message"]


def test_the_missing_parameter_message_names_its_type(dry: Service) -> None:
    _, body = call(dry, "POST", "/pipelines/scoring/runs", {"parameters": {}})
    assert body["error"]["problems"][0]["message"] == (
        "required parameter 'threshold' (float) is missing"
    )


@pytest.mark.parametrize(
    ("body", "headers", "status"),
    [
        (b"{not json", {}, 400),
        (b"\xff\xfe", {}, 400),
        (b"NaN", {}, 400),
        (b'{"parameters": {}}', {"content-type": "text/plain"}, 415),
        (b'{"parameters": {}}', {"content-type": ""}, 415),
        (b"[1, 2]", {}, 422),
        (b'{"parameters": [1]}', {}, 422),
        (b'{"parameters": {"threshold": 1}, "template_uri": "gs://x/y.yaml"}', {}, 422),
        (b'{"parameters": {"threshold": 1}, "labels": {"Bad Key": "x"}}', {}, 422),
        (b'{"parameters": {"threshold": 1}, "labels": {"environment": "prod"}}', {}, 422),
        (b'{"parameters": {"threshold": 1}, "display_name": ""}', {}, 422),
        (b'{"parameters": {"threshold": 1}}', {"idempotency-key": "has space"}, 400),
    ],
)
def test_malformed_requests_answer_4xx(
    dry: Service, body: bytes, headers: dict[str, str], status: int
) -> None:
    response = dry.handle(Request("POST", "/pipelines/scoring/runs", {**JSON, **headers}, body))
    answer = json.loads(response.encoded())
    assert response.status == status, answer
    assert answer["error"]["status"] == status and answer["error"]["message"]


def test_a_template_uri_cannot_be_chosen(dry: Service) -> None:
    status, body = call(
        dry,
        "POST",
        "/pipelines/scoring/runs",
        {"parameters": {"threshold": 1}, "template_uri": "x"},
    )
    assert status == 422
    assert body["error"]["problems"] == [
        {
            "field": "template_uri",
            "message": "unknown field; valid: parameters, labels, display_name",
        }
    ]


def test_unknown_paths_pipelines_runs_and_methods(dry: Service) -> None:
    assert call(dry, "GET", "/nowhere")[0] == 404
    assert call(dry, "POST", "/pipelines/../../etc/runs", {})[0] == 404
    assert call(dry, "POST", "/pipelines/Training/runs", {})[0] == 404
    status, body = call(dry, "POST", "/pipelines/nope/runs", {})
    assert status == 404 and "runnable: scoring, training" in body["error"]["message"]
    response = dry.handle(Request("DELETE", "/pipelines", JSON, b""))
    assert response.status == 405 and response.headers["allow"] == "GET"
    assert call(dry, "GET", "/runs/..%2F")[0] == 404


def test_an_oversized_body_answers_413_over_http(dry: Service) -> None:
    limit = dry.max_body_bytes
    padding = "x" * limit
    with serving(asgi(dry)) as url:
        too_big = requests.post(
            f"{url}/pipelines/scoring/runs",
            data=json.dumps({"parameters": {"mode": padding}}),
            headers=JSON,
            timeout=10,
        )
        assert too_big.status_code == 413, too_big.text
        assert "service.max_body_bytes" in too_big.json()["error"]["message"]

        def chunks() -> Iterator[bytes]:  # no Content-Length: the limit holds while reading
            yield b'{"parameters": {"mode": "'
            for _ in range(limit // 1024 + 1):
                yield b"y" * 1024
            yield b'"}}'

        streamed = requests.post(
            f"{url}/pipelines/scoring/runs", data=chunks(), headers=JSON, timeout=10
        )
        assert streamed.status_code == 413
        ok = requests.post(
            f"{url}/pipelines/scoring/runs", json={"parameters": {"threshold": 0.5}}, timeout=10
        )
        assert ok.status_code == 200 and ok.json()["dry_run"] is True
        assert ok.headers["x-request-id"]


# Runs ----------------------------------------------------------------------------------------


def test_a_run_on_vertex_answers_201_with_id_name_and_link(
    vertex: tuple[Service, FakeVertex],
) -> None:
    service, fake = vertex
    status, body = call(
        service,
        "POST",
        "/pipelines/scoring/runs",
        {"parameters": {"threshold": 0.25, "tags": ["a"]}, "labels": {"team": "risk"}},
    )
    assert status == 201, body
    [job] = fake.jobs
    assert body["name"] == job["name"] and body["run_id"] == job["name"].rsplit("/", 1)[-1]
    assert body["url"].startswith("https://console.cloud.google.com/vertex-ai/locations/")
    assert body["state"] == "pending" and body["replayed"] is False
    assert job["runtimeConfig"]["parameterValues"] == {"threshold": 0.25, "tags": ["a"]}
    assert job["labels"]["team"] == "risk" and job["labels"]["environment"] == "dev"
    assert job["templateUri"].endswith(f"/demo-scoring/{service.backend.release.commit}")
    status, read = call(service, "GET", f"/runs/{body['run_id']}")
    # The fake moves a job on each time it is read, and the background step that adds the run
    # to the experiment reads it too: running or, after both reads, succeeded.
    assert status == 200 and read["run_id"] == body["run_id"]
    assert read["state"] in {"running", "succeeded"} and read["name"] == job["name"]
    assert call(service, "GET", "/runs/no-such-run")[0] == 404


def test_an_idempotency_key_starts_one_run_even_across_instances(
    project: Path, vertex: tuple[Service, FakeVertex]
) -> None:
    service, fake = vertex
    request = {"parameters": {"threshold": 0.5}}
    first = call(service, "POST", "/pipelines/scoring/runs", request, idempotency_key="abc-1")
    again = call(service, "POST", "/pipelines/scoring/runs", request, idempotency_key="abc-1")
    assert first[0] == 201 and again[0] == 200 and again[1]["replayed"] is True
    assert again[1]["run_id"] == first[1]["run_id"] and len(fake.jobs) == 1
    assert fake.jobs[0]["labels"]["idempotency-key"] == key_label("abc-1")
    # A second instance knows nothing of the first: it finds the run by its label.
    other = create_service(project, "dev")
    third = call(other, "POST", "/pipelines/scoring/runs", request, idempotency_key="abc-1")
    assert third[0] == 200 and third[1]["run_id"] == first[1]["run_id"] and len(fake.jobs) == 1
    fresh = call(other, "POST", "/pipelines/scoring/runs", request, idempotency_key="abc-2")
    assert fresh[0] == 201 and len(fake.jobs) == 2


# Pub/Sub push --------------------------------------------------------------------------------


def test_push_valid_redelivered_and_malformed(vertex: tuple[Service, FakeVertex]) -> None:
    service, fake = vertex
    message = envelope({"pipeline": "scoring", "parameters": {"threshold": 0.75}}, "42")
    status, body = call(service, "POST", "/pubsub/push", message)
    assert status == 201 and len(fake.jobs) == 1, body
    assert fake.jobs[0]["runtimeConfig"]["parameterValues"] == {"threshold": 0.75}
    redelivered = call(service, "POST", "/pubsub/push", message)
    assert redelivered[0] == 200 and redelivered[1]["run_id"] == body["run_id"]
    assert len(fake.jobs) == 1
    bad = [
        ({"message": {"data": "!!!not base64", "messageId": "1"}}, 400, "message.data"),
        (envelope(None, raw=b"not json"), 400, "message.data"),
        ({"message": {"data": "e30=", "messageId": ""}}, 400, "message.messageId"),
        ({"subscription": "s"}, 400, "message"),
        (envelope(["x"]), 422, "message.data"),
        (envelope({"parameters": {}}), 422, "message.data.pipeline"),
        (envelope({"pipeline": "nope"}), 404, "message.data.pipeline"),
        (
            envelope({"pipeline": "scoring", "parameters": {"x": 1}}),
            422,
            "message.data.parameters.x",
        ),
    ]
    for payload, expected, field in bad:
        status, answer = call(service, "POST", "/pubsub/push", payload)
        assert status == expected, (payload, answer)
        assert field in {p["field"] for p in answer["error"]["problems"]}, answer
    assert len(fake.jobs) == 1


# Push authentication: tokens signed by a local key, certificates served by a local endpoint.


@pytest.fixture
def signer(recording_server: RecordingServer) -> Any:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID
    from google.auth import crypt, jwt

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test")])
    now = __import__("datetime").datetime.now(__import__("datetime").timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now - __import__("datetime").timedelta(days=1))
        .not_valid_after(now + __import__("datetime").timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    pem = certificate.public_bytes(serialization.Encoding.PEM).decode()
    recording_server.route("GET", "/oauth2/v1/certs", (200, {"key-1": pem}))
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    rsa_signer = crypt.RSASigner.from_string(private, key_id="key-1")

    def sign(**claims: Any) -> str:
        issued = int(time.time())
        payload = {
            "iss": "https://accounts.google.com",
            "aud": "https://submit.example.com/pubsub/push",
            "email": "push@acme-ml-dev.iam.gserviceaccount.com",
            "email_verified": True,
            "iat": issued,
            "exp": issued + 600,
            "sub": "1",
            **claims,
        }
        return jwt.encode(rsa_signer, payload).decode()

    return sign


def test_push_checks_the_oidc_token_when_configured(
    tmp_path: Path,
    recording_server: RecordingServer,
    signer: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    root = make_project(
        tmp_path / "project",
        extra_config="service:\n  push_audience: https://submit.example.com/pubsub/push\n"
        "  push_service_account: push@acme-ml-dev.iam.gserviceaccount.com\n",
    )
    monkeypatch.setenv("VERTEXKIT_OIDC_CERTS_URL", f"{recording_server.url}/oauth2/v1/certs")
    service = create_service(root, "dev", backend="dry-run")
    message = envelope({"pipeline": "scoring", "parameters": {"threshold": 1}})
    cases = [
        (None, 401),
        ("Basic abc", 401),
        ("Bearer not-a-token", 401),
        (f"Bearer {signer(aud='https://elsewhere.example.com')}", 401),
        (f"Bearer {signer(iss='https://evil.example.com')}", 401),
        (f"Bearer {signer(exp=int(time.time()) - 3600, iat=int(time.time()) - 7200)}", 401),
        (f"Bearer {signer(email='other@acme-ml-dev.iam.gserviceaccount.com')}", 403),
        (f"Bearer {signer(email_verified=False)}", 403),
        (f"Bearer {signer()}", 200),
    ]
    for authorization, expected in cases:
        headers = {"authorization": authorization} if authorization else {}
        status, body = call(service, "POST", "/pubsub/push", message, **headers)
        assert status == expected, (authorization, body)
    # Direct submissions are guarded by Cloud Run / Cloud Functions IAM, not by this check.
    assert (
        call(service, "POST", "/pipelines/scoring/runs", {"parameters": {"threshold": 1}})[0] == 200
    )


# Parity with invoke run ----------------------------------------------------------------------


def _invoke_run(root: Path, server_url: str, params: list[str]) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VERTEXKIT")}
    env.update(
        VERTEXKIT_NO_AUTH="1",
        VERTEXKIT_ENDPOINT_AIPLATFORM=server_url,
        VERTEXKIT_ENDPOINT_KFP=server_url,
    )
    args = [sys.executable, "-m", "invoke", "run", "--env", "dev", "--pipeline", "scoring"]
    for item in params:
        args += ["--param", item]
    return subprocess.run(args, cwd=root, env=env, capture_output=True, text=True, timeout=300)


def _bodies(server: RecordingServer, start: int, *, commit: str) -> list[tuple[str, str, Any]]:
    """Method, path and body of each request from ``start``, timestamps made equal."""
    import re

    stamp = re.compile(r"(?<![0-9])20[0-9]{12}(?![0-9])")
    shown = []
    for request in server.requests[start:]:
        text = stamp.sub("<t>", json.dumps(request.json, sort_keys=True))
        shown.append((request.method, stamp.sub("<t>", request.path), json.loads(text)))
    return shown


@pytest.mark.parametrize("kind", ["vertex", "kfp"])
def test_a_service_run_sends_what_invoke_run_sends(
    tmp_path: Path,
    recording_server: RecordingServer,
    monkeypatch: pytest.MonkeyPatch,
    kind: str,
) -> None:
    from vertexkit.orchestrators import for_config
    from vertexkit.project.config import load_config
    from vertexkit.project.release import Release
    from vertexkit.steps import execute

    root = make_project(
        tmp_path / "project", kfp_host=recording_server.url if kind == "kfp" else None
    )
    monkeypatch.setenv("VERTEXKIT_NO_AUTH", "1")
    monkeypatch.setenv("VERTEXKIT_ENDPOINT_AIPLATFORM", recording_server.url)
    config = load_config(root, "dev")
    kfp = None
    if kind == "kfp":
        kfp = FakeKfp(recording_server)
        orchestrator = for_config(config)
        templates = {"scoring": root / "build" / "pipelines" / "scoring.yaml"}
        import io

        execute(orchestrator.plan_publish(templates, Release.of(root)), out=io.StringIO())
    else:
        FakeVertex(recording_server, config.gcp.project_id, config.gcp.region)
    start = len(recording_server.requests)
    result = _invoke_run(
        root, recording_server.url, ["threshold=0.5", 'tags=["a", "b"]', "rounds=3", "dry=true"]
    )
    assert result.returncode == 0, result.stderr
    by_invoke = _bodies(recording_server, start, commit=commit_of(root))
    middle = len(recording_server.requests)
    if kfp is not None:  # the same starting state: the experiment is created again
        kfp.experiments.clear()
    service = create_service(root, "dev")
    status, body = call(
        service,
        "POST",
        "/pipelines/scoring/runs",
        {"parameters": {"threshold": 0.5, "tags": ["a", "b"], "rounds": 3, "dry": True}},
    )
    assert status == 201, body
    # Steps after the run exists (Vertex AI: the experiment link) go on in the background.
    deadline = time.monotonic() + 20
    while len(recording_server.requests) - middle < len(by_invoke) and time.monotonic() < deadline:
        time.sleep(0.05)
    by_service = _bodies(recording_server, middle, commit=commit_of(root))
    assert by_service == by_invoke
    created = [
        p for m, p, _ in by_service if m == "POST" and p.endswith(("/runs", "/pipelineJobs"))
    ]
    assert len(created) == 1


def test_importing_the_service_imports_neither_kfp_nor_the_vertex_sdk(project: Path) -> None:
    code = (
        "import sys\n"
        "from vertexkit.service.server import create_service, asgi\n"
        f"service = create_service({str(project)!r}, 'dev', backend='dry-run')\n"
        "asgi(service)\n"
        "from vertexkit.service.app import Request\n"
        "service.handle(Request('POST', '/pipelines/scoring/runs', "
        "{'content-type': 'application/json'}, b'{\"parameters\": {\"threshold\": 1}}'))\n"
        "bad = sorted(m for m in sys.modules if m == 'kfp' or m.startswith(('kfp.', "
        "'google.cloud.aiplatform')))\n"
        "print(bad)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert result.stdout.strip().splitlines()[-1] == "[]", result.stdout


# invoke serve --------------------------------------------------------------------------------


def _serve(root: Path, *args: str) -> tuple[subprocess.Popen, str, list[str]]:
    from tests.service_support import free_port

    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("VERTEXKIT")}
    process = subprocess.Popen(
        [sys.executable, "-m", "invoke", "serve", "--port", str(port), *args],
        cwd=root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    printed = []
    assert process.stdout is not None
    for line in process.stdout:  # the banner ends with how to stop it
        printed.append(line.rstrip("\n"))
        if line.startswith("  stop:"):
            break
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            requests.get(f"{url}/healthz", timeout=1)
            return process, url, printed
        except requests.ConnectionError:
            assert process.poll() is None and time.monotonic() < deadline, printed
            time.sleep(0.1)


def test_invoke_serve_local_runs_a_posted_run_here(tmp_path: Path) -> None:
    from tests.fixture_project import copy_project

    root = copy_project(tmp_path / "project")  # no git, no cloud account, no compile beforehand
    process, url, printed = _serve(root, "--backend", "local")
    try:
        assert printed[0] == f"serving 1 pipeline(s) at {url} (local backend)"
        assert any(f"curl -s -X POST {url}/pipelines/training/runs" in line for line in printed)
        refused = requests.post(f"{url}/pipelines/training/runs", json={"parameters": {"n": "x"}})
        assert refused.status_code == 422
        started = requests.post(f"{url}/pipelines/training/runs", json={"parameters": {"n": 4}})
        assert started.status_code == 201, started.text
        run_id = started.json()["run_id"]
        deadline = time.monotonic() + 120
        while True:
            state = requests.get(f"{url}/runs/{run_id}", timeout=5).json()
            if state["state"] in ("succeeded", "failed") or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert state["state"] == "succeeded", state
        assert requests.get(f"{url}/runs/local-nope", timeout=5).status_code == 404
    finally:
        process.terminate()
        process.wait(timeout=20)
    # The request log is JSON lines with the request id and the run id.
    remaining = process.stdout.read() if process.stdout else ""
    logged = [json.loads(line) for line in remaining.splitlines() if line.startswith("{")]
    posts = [entry for entry in logged if entry.get("run_id") == run_id]
    assert posts and posts[0]["request_id"] and posts[0]["parameters"] == ["n"]


def test_invoke_serve_refuses_a_bad_backend(tmp_path: Path) -> None:
    from tests.fixture_project import copy_project

    root = copy_project(tmp_path / "project")
    result = subprocess.run(
        [sys.executable, "-m", "invoke", "serve", "--backend", "cloud"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.strip() == "error: --backend 'cloud': choose dry-run or local"


def test_the_container_refuses_to_start_without_what_it_needs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.fixture_project import copy_project
    from vertexkit.service.server import from_environment

    root = copy_project(tmp_path / "project")  # no git, nothing compiled
    monkeypatch.setenv("VERTEXKIT_SERVICE_ROOT", str(root))
    monkeypatch.delenv("VERTEXKIT_ENV", raising=False)
    with pytest.raises(SystemExit, match="VERTEXKIT_ENV is not set"):
        from_environment()
    monkeypatch.setenv("VERTEXKIT_ENV", "dev")
    monkeypatch.delenv("VERTEXKIT_RELEASE_COMMIT", raising=False)
    with pytest.raises(SystemExit, match=r"VERTEXKIT_RELEASE_COMMIT is not set and .* not a git"):
        from_environment()
    monkeypatch.setenv("VERTEXKIT_RELEASE_COMMIT", "abc123def456")
    with pytest.raises(SystemExit, match=r"compiled\.json not found: run `invoke compile --env"):
        from_environment()


def test_labels_are_refused_where_runs_carry_none(tmp_path: Path) -> None:
    """Kubeflow Pipelines runs have no labels: asking for some is a 422 naming the field."""
    root = make_project(tmp_path / "project", kfp_host="http://127.0.0.1:9")
    service = create_service(root, "dev", backend="dry-run")
    status, body = call(
        service, "POST", "/pipelines/scoring/runs", {"parameters": {}, "labels": {"team": "a"}}
    )
    assert status == 422, body
    assert {"field": "labels", "message": "Kubeflow Pipelines runs carry no labels"} in (
        body["error"]["problems"]
    )
