"""Secrets: environment variables locally, Secret Manager (a recording server here) on the cloud."""

from __future__ import annotations

import base64
import io
import json
import logging
import traceback
from pathlib import Path

import pytest

from tests.recording_server import RecordingServer
from vertexkit.gcp import precheck, secrets
from vertexkit.project import naming
from vertexkit.project.config import ConfigError, ProjectConfig, load_config
from vertexkit.steps import CloudError, execute

FIXTURES = Path(__file__).parent / "fixtures"
VALUE = "s3cr3t-Välue\n"  # non-ASCII and a trailing newline: returned exactly as stored
ACCESS = "/v1/projects/acme-ml-dev/secrets/DB_PASSWORD/versions/latest:access"
HAS_SECRETS_FIELD = "secrets" in ProjectConfig.model_fields
needs_config_field = pytest.mark.skipif(
    not HAS_SECRETS_FIELD, reason="config.secrets is not in vertexkit.project.config yet"
)


@pytest.fixture(autouse=True)
def _no_auth(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VERTEXKIT_NO_AUTH", "1")
    monkeypatch.setattr(secrets, "RETRY_DELAYS", (0.0, 0.0))  # retry at once in tests


@pytest.fixture
def env(recording_server: RecordingServer) -> dict[str, str]:
    """What a Vertex AI task sees: the project, no secret variables; endpoint redirected."""
    return {
        "GOOGLE_CLOUD_PROJECT": "acme-ml-dev",
        "VERTEXKIT_ENDPOINT_SECRETMANAGER": recording_server.url,
    }


def payload(value: bytes, crc: int | None = None) -> dict:
    data: dict = {"data": base64.b64encode(value).decode()}
    if crc is not None:
        data["dataCrc32c"] = str(crc)  # int64 is a string in proto3 JSON
    return {"name": "projects/123/secrets/DB_PASSWORD/versions/3", "payload": data}


def error(status: int, message: str) -> tuple[int, dict]:
    return status, {"error": {"code": status, "message": message}}


def no_leak(exc: BaseException, value: str = VALUE) -> None:
    """Neither the message nor the formatted traceback (with its chain) holds the value."""
    assert value.strip() not in str(exc)
    assert value.strip() not in "".join(traceback.format_exception(exc))


# --- environment variables -----------------------------------------------------------------


def test_environment_variable_wins_and_nothing_is_sent(
    recording_server: RecordingServer, env: dict[str, str]
) -> None:
    recording_server.route("GET", ACCESS, (200, payload(b"from the cloud")))
    value = secrets.get_secret("DB_PASSWORD", environ={**env, "DB_PASSWORD": "local"})
    assert value == "local"
    assert recording_server.requests == []


def test_environment_variable_needs_no_project_or_credentials(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("VERTEXKIT_NO_AUTH")  # a session would look for credentials
    assert secrets.get_secret("API_TOKEN", environ={"API_TOKEN": "t"}) == "t"


def test_os_environ_is_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("API_TOKEN", "from os.environ")
    assert secrets.get_secret("API_TOKEN") == "from os.environ"


# --- Secret Manager ------------------------------------------------------------------------


def test_reads_the_latest_version_from_secret_manager(
    recording_server: RecordingServer, env: dict[str, str], capsys, caplog
) -> None:
    recording_server.route("GET", ACCESS, (200, payload(VALUE.encode())))
    with caplog.at_level(logging.DEBUG):
        assert secrets.get_secret("DB_PASSWORD", environ=env) == VALUE
    [sent] = recording_server.requests
    assert (sent.method, sent.path, sent.body) == ("GET", ACCESS, b"")
    assert "authorization" not in sent.headers  # VERTEXKIT_NO_AUTH=1
    out, err = capsys.readouterr()
    assert VALUE.strip() not in out + err + caplog.text


def test_empty_variable_falls_through_to_secret_manager(
    recording_server: RecordingServer, env: dict[str, str]
) -> None:
    recording_server.route("GET", ACCESS, (200, payload(b"cloud")))
    assert secrets.get_secret("DB_PASSWORD", environ={**env, "DB_PASSWORD": ""}) == "cloud"


def test_project_argument_then_google_cloud_project_then_vertex_ai_variable(
    recording_server: RecordingServer,
) -> None:
    recording_server.route(
        "GET", r"/v1/projects/[^/]+/secrets/TOKEN/versions/latest:access", (200, payload(b"x"))
    )
    base = {"VERTEXKIT_ENDPOINT_SECRETMANAGER": recording_server.url}
    vertex = {**base, "CLOUD_ML_PROJECT_ID": "123456789012"}  # Vertex AI sets the number
    secrets.get_secret("TOKEN", environ=vertex)
    secrets.get_secret("TOKEN", environ={**vertex, "GOOGLE_CLOUD_PROJECT": "acme-ml-dev"})
    secrets.get_secret("TOKEN", project="other-project", environ=vertex)
    assert [r.path.split("/")[3] for r in recording_server.requests] == [
        "123456789012",
        "acme-ml-dev",
        "other-project",
    ]


def test_url_safe_base64_without_padding_is_accepted(
    recording_server: RecordingServer, env: dict[str, str]
) -> None:
    text = "ü?ÿ~~"  # standard base64 "w7w/w79+fg==": both "/" and "+"
    data = base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")
    assert "-" in data and "_" in data
    recording_server.route("GET", ACCESS, (200, {"payload": {"data": data}}))
    assert secrets.get_secret("DB_PASSWORD", environ=env) == text


def test_crc32c_is_checked(recording_server: RecordingServer, env: dict[str, str]) -> None:
    google_crc32c = pytest.importorskip("google_crc32c")
    crc = google_crc32c.value(VALUE.encode())
    recording_server.route("GET", ACCESS, (200, payload(VALUE.encode(), crc)))
    assert secrets.get_secret("DB_PASSWORD", environ=env) == VALUE

    recording_server.route("GET", ACCESS, (200, payload(VALUE.encode(), crc + 1)))
    with pytest.raises(secrets.SecretError, match="failed its CRC32C check") as caught:
        secrets.get_secret("DB_PASSWORD", environ=env)
    no_leak(caught.value)


def test_transient_errors_are_retried(
    recording_server: RecordingServer, env: dict[str, str]
) -> None:
    answers = [error(503, "try later"), error(429, "slow down"), (200, payload(b"ok"))]
    recording_server.route("GET", ACCESS, lambda request: answers.pop(0))
    assert secrets.get_secret("DB_PASSWORD", environ=env) == "ok"
    assert len(recording_server.requests) == 3


def test_persistent_server_error_names_status_and_secret(
    recording_server: RecordingServer, env: dict[str, str]
) -> None:
    recording_server.route("GET", ACCESS, error(503, "unavailable"))
    with pytest.raises(secrets.SecretError) as caught:
        secrets.get_secret("DB_PASSWORD", environ=env)
    assert str(caught.value) == (
        "reading secret DB_PASSWORD in project acme-ml-dev failed: HTTP 503: unavailable"
    )
    assert caught.value.status == 503
    assert len(recording_server.requests) == 1 + len(secrets.RETRY_DELAYS)


# --- errors --------------------------------------------------------------------------------


def test_not_found_says_how_to_create_the_secret(
    recording_server: RecordingServer, env: dict[str, str]
) -> None:
    recording_server.route(
        "GET", ACCESS, error(404, "Secret [projects/1/secrets/DB_PASSWORD] not found")
    )
    with pytest.raises(secrets.SecretError) as caught:
        secrets.get_secret("DB_PASSWORD", environ={**env, "OTHER": VALUE})
    message = str(caught.value)
    assert message.startswith("secret DB_PASSWORD not found in project acme-ml-dev")
    assert "`gcloud secrets create DB_PASSWORD --project acme-ml-dev`" in message
    assert "gcloud secrets versions add DB_PASSWORD --project acme-ml-dev --data-file=-" in message
    assert caught.value.status == 404
    assert isinstance(caught.value, CloudError)  # the tasks' error handling applies
    no_leak(caught.value)


def test_permission_denied_names_the_role(
    recording_server: RecordingServer, env: dict[str, str]
) -> None:
    recording_server.route(
        "GET", ACCESS, error(403, "Permission 'secretmanager.versions.access' denied")
    )
    with pytest.raises(secrets.SecretError) as caught:
        secrets.get_secret("DB_PASSWORD", environ=env)
    message = str(caught.value)
    assert message.startswith(
        "the pipeline service account cannot read secret DB_PASSWORD in project acme-ml-dev: "
        "grant roles/secretmanager.secretAccessor on that secret"
    )
    assert "gcloud secrets add-iam-policy-binding DB_PASSWORD --project acme-ml-dev" in message
    assert "Permission 'secretmanager.versions.access' denied" in message
    assert caught.value.status == 403
    no_leak(caught.value)


def test_disabled_version_says_how_to_fix_it(
    recording_server: RecordingServer, env: dict[str, str]
) -> None:
    recording_server.route("GET", ACCESS, error(400, "is in DISABLED state"))
    with pytest.raises(secrets.SecretError, match="gcloud secrets versions enable VERSION"):
        secrets.get_secret("DB_PASSWORD", environ=env)


@pytest.mark.parametrize(
    ("answer", "problem"),
    [
        ((200, {"name": "x"}), "has no payload.data"),
        ((200, {"payload": {"data": "%%%" + VALUE}}), "is not base64"),
        ((200, payload(b"\xff\xfe" + VALUE.encode())), "is not UTF-8 text"),
    ],
)
def test_malformed_answers_never_quote_the_value(
    recording_server: RecordingServer, env: dict[str, str], answer: tuple, problem: str
) -> None:
    recording_server.route("GET", ACCESS, answer)
    with pytest.raises(secrets.SecretError, match=problem) as caught:
        secrets.get_secret("DB_PASSWORD", environ=env)
    no_leak(caught.value)
    # no chained decoding error (a UnicodeDecodeError holds the bytes)
    assert caught.value.__context__ is None or caught.value.__suppress_context__


def test_unreachable_secret_manager(env: dict[str, str]) -> None:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    closed = {**env, "VERTEXKIT_ENDPOINT_SECRETMANAGER": f"http://127.0.0.1:{port}"}
    with pytest.raises(secrets.SecretError, match="no answer from Secret Manager"):
        secrets.get_secret("DB_PASSWORD", environ=closed)


def test_missing_project_says_what_to_set(recording_server: RecordingServer) -> None:
    environ = {"VERTEXKIT_ENDPOINT_SECRETMANAGER": recording_server.url}
    with pytest.raises(secrets.SecretError) as caught:
        secrets.get_secret("DB_PASSWORD", environ=environ)
    message = str(caught.value)
    assert "the environment variable DB_PASSWORD is not set" in message
    assert "export DB_PASSWORD" in message
    assert "GOOGLE_CLOUD_PROJECT" in message and "project=" in message
    assert recording_server.requests == []

    with pytest.raises(secrets.SecretError, match="DB_PASSWORD is empty"):
        secrets.get_secret("DB_PASSWORD", environ={**environ, "DB_PASSWORD": ""})


def test_invalid_project_is_refused_before_any_request(
    recording_server: RecordingServer, env: dict[str, str]
) -> None:
    with pytest.raises(ValueError, match=r"invalid project 'acme/../x' for secret DB_PASSWORD"):
        secrets.get_secret("DB_PASSWORD", project="acme/../x", environ=env)
    assert recording_server.requests == []


@pytest.mark.parametrize(
    ("name", "rule"),
    [
        ("db-password", "letters, digits and underscores"),
        ("1PASSWORD", "not starting with a digit"),
        ("", "1 to 255"),
        ("A" * 256, "1 to 255"),
        ("DB PASSWORD", "letters, digits and underscores"),
        ("../x", "letters, digits and underscores"),
        ("PATH", "belongs to the system"),
        ("GOOGLE_APPLICATION_CREDENTIALS", "names starting with"),
        ("vertexkit_no_auth", "names starting with"),
    ],
)
def test_invalid_names_are_refused_naming_the_rule(
    recording_server: RecordingServer, env: dict[str, str], name: str, rule: str
) -> None:
    with pytest.raises(ValueError) as caught:
        secrets.get_secret(name, environ={**env, name: "x"})
    assert str(caught.value).startswith(f"invalid secret name {name!r}: ")
    assert rule in str(caught.value)
    assert recording_server.requests == []


def test_valid_names() -> None:
    for name in ("DB_PASSWORD", "api_token", "_X", "A" * 255, "Key2"):
        assert naming.secret_name_problem(name) is None
        assert secrets.secret_id(name) == name  # the secret id is the name, unchanged


# --- precheck ------------------------------------------------------------------------------


@pytest.fixture
def config() -> ProjectConfig:
    return load_config(FIXTURES / "project", "dev", environ={})


def test_precheck_requests_for_two_secrets(
    config: ProjectConfig, recording_server: RecordingServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VERTEXKIT_ENDPOINT_SECRETMANAGER", recording_server.url)
    checks = precheck.plan_access_checks(config, ["DB_PASSWORD", "API_TOKEN", "DB_PASSWORD"])
    assert all(isinstance(check, precheck.Check) for check in checks)
    shown = io.StringIO()
    execute(precheck.steps(checks), dry_run=True, as_json=True, out=shown)
    base = f"{recording_server.url}/v1/projects/acme-ml-dev/secrets"
    assert json.loads(shown.getvalue()) == [
        {"step": f"check {what}", "method": "GET", "url": url, "body": None}
        for what, url in [
            ("secret DB_PASSWORD", f"{base}/DB_PASSWORD"),
            ("latest version of secret DB_PASSWORD", f"{base}/DB_PASSWORD/versions/latest"),
            ("secret API_TOKEN", f"{base}/API_TOKEN"),
            ("latest version of secret API_TOKEN", f"{base}/API_TOKEN/versions/latest"),
        ]
    ]
    assert recording_server.requests == []

    secret = f"{base.removeprefix(recording_server.url)}/API_TOKEN"
    recording_server.route("GET", f"{secret}/versions/latest", (200, {"state": "ENABLED"}))
    recording_server.route("GET", secret, (200, {"name": "projects/1/secrets/API_TOKEN"}))
    results = {r.check: r for r in precheck.run_checks(checks)}
    sent = [(r.method, recording_server.url + r.path) for r in recording_server.requests]
    assert sent == [(c.request.method, c.request.url) for c in checks]

    ok = results["secret API_TOKEN"]
    assert (ok.status, ok.fix) == ("OK", "")
    assert "needs roles/secretmanager.secretAccessor" in ok.detail
    assert results["latest version of secret API_TOKEN"].status == "OK"
    missing = results["secret DB_PASSWORD"]
    assert missing.status == "MISSING"
    assert missing.fix.startswith("gcloud secrets create DB_PASSWORD --project acme-ml-dev")
    account = "demo-pipelines@acme-ml-dev.iam.gserviceaccount.com"
    assert (
        f"--member serviceAccount:{account} --role roles/secretmanager.secretAccessor"
        in missing.fix
    )


def test_precheck_disabled_version_and_denied_metadata(
    config: ProjectConfig, recording_server: RecordingServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VERTEXKIT_ENDPOINT_SECRETMANAGER", recording_server.url)
    secret = "/v1/projects/acme-ml-dev/secrets/DB_PASSWORD"
    recording_server.route("GET", secret, error(403, "Permission 'secretmanager.secrets.get'"))
    recording_server.route(
        "GET",
        f"{secret}/versions/latest",
        (200, {"name": "projects/1/secrets/DB_PASSWORD/versions/4", "state": "DISABLED"}),
    )
    checks = precheck.plan_access_checks(config, ["DB_PASSWORD"])
    results = {r.check: r for r in precheck.run_checks(checks)}
    denied = results["secret DB_PASSWORD"]
    assert denied.status == "DENIED"
    assert denied.fix == (
        "request roles/secretmanager.viewer on secret DB_PASSWORD (metadata only, not the value)"
    )
    version = results["latest version of secret DB_PASSWORD"]
    assert (version.status, version.detail) == ("MISSING", "latest version is DISABLED")
    assert version.fix.startswith(
        "gcloud secrets versions enable 4 --secret DB_PASSWORD --project acme-ml-dev"
    )


def test_precheck_refuses_invalid_names(config: ProjectConfig) -> None:
    with pytest.raises(ValueError, match="invalid secret name 'db-password'"):
        precheck.plan_access_checks(config, ["db-password"])


# --- config (vertexkit.project.config's secrets field) ------------------------------------------


def write_project(tmp_path: Path, base_extra: str, dev: str = "") -> Path:
    config_dir = tmp_path / "config"
    config_dir.mkdir(parents=True)
    base = "name: demo\nnaming_prefix: demo\ngcp: {project_id: acme-ml-dev, region: us-central1}\n"
    (config_dir / "base.yaml").write_text(base + base_extra)
    (config_dir / "dev.yaml").write_text(dev)
    return tmp_path


@needs_config_field
def test_config_lists_secret_names(tmp_path: Path) -> None:
    project = write_project(tmp_path, "secrets: [DB_PASSWORD, API_TOKEN]\n", "secrets: [X]\n")
    assert load_config(project, environ={}).secrets == ["DB_PASSWORD", "API_TOKEN"]
    assert load_config(project, "dev", environ={}).secrets == ["X"]
    assert load_config(write_project(tmp_path / "b", ""), environ={}).secrets == []


@needs_config_field
def test_config_error_names_file_and_field_but_not_the_entry(tmp_path: Path) -> None:
    project = write_project(tmp_path, "secrets: [DB_PASSWORD]\n", "secrets: [OK, 'hunter2 !']\n")
    with pytest.raises(ConfigError) as caught:
        load_config(project, "dev", environ={})
    message = str(caught.value)
    assert "config/dev.yaml: secrets.1: not a valid secret name" in message
    assert "never their values" in message
    assert "hunter2" not in message  # it may be a value pasted by mistake


@needs_config_field
def test_config_refuses_duplicates_and_a_mapping(tmp_path: Path) -> None:
    project = write_project(tmp_path, "secrets: [A_KEY, A_KEY]\n")
    with pytest.raises(ConfigError, match=r"config/base\.yaml: secrets: A_KEY is listed twice"):
        load_config(project, environ={})
    project = write_project(tmp_path / "b", "secrets: {DB_PASSWORD: hunter2}\n")
    with pytest.raises(ConfigError) as caught:
        load_config(project, environ={})
    assert "config/base.yaml: secrets: " in str(caught.value)
    assert "hunter2" not in str(caught.value)


@needs_config_field
def test_precheck_includes_the_configured_secrets(tmp_path: Path) -> None:
    project = write_project(tmp_path, "secrets: [DB_PASSWORD]\n")
    names = [check.name for check in precheck.plan_checks(load_config(project, "dev", environ={}))]
    assert names[-2:] == ["secret DB_PASSWORD", "latest version of secret DB_PASSWORD"]
