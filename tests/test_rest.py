"""The step runner: dry runs show exactly what the real run sends."""

from __future__ import annotations

import io
import json

import pytest

from tests.recording_server import RecordingServer
from vertexkit.steps import (
    CloudError,
    CommandStep,
    CredentialsError,
    HttpStep,
    Responses,
    Sender,
    endpoint,
    execute,
    placeholder,
    substitute,
)


@pytest.fixture(autouse=True)
def _no_auth(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VERTEXKIT_NO_AUTH", "1")


def test_endpoint_precedence() -> None:
    assert endpoint("aiplatform", "europe-west4", environ={}) == (
        "https://europe-west4-aiplatform.googleapis.com"
    )
    configured = {"aiplatform": "https://private.example.com/"}
    assert endpoint("aiplatform", "r", configured, environ={}) == "https://private.example.com"
    env = {"VERTEXKIT_ENDPOINT_AIPLATFORM": "http://127.0.0.1:1"}
    assert endpoint("aiplatform", "r", configured, environ=env) == "http://127.0.0.1:1"
    with pytest.raises(ValueError, match="unknown service 'nope'"):
        endpoint("nope", "r", environ={})


def test_dry_run_json_equals_what_is_sent(recording_server: RecordingServer) -> None:
    recording_server.route("POST", "/v1/things", (200, {"name": "things/1"}))
    step = HttpStep("create thing", "POST", f"{recording_server.url}/v1/things", {"a": [1]})
    shown = io.StringIO()
    assert execute([step], dry_run=True, as_json=True, out=shown) == {}
    assert recording_server.requests == []
    [planned] = json.loads(shown.getvalue())
    responses = execute([step], out=io.StringIO())
    [sent] = recording_server.requests
    assert (sent.method, recording_server.url + sent.path, sent.json) == (
        planned["method"],
        planned["url"],
        planned["body"],
    )
    assert responses == {"create thing": {"name": "things/1"}}


def test_later_steps_resolve_placeholders(recording_server: RecordingServer) -> None:
    recording_server.route("POST", "/first", (200, {"digest": "sha256:abc"}))
    recording_server.route("POST", "/second", (200, {}))
    marker = placeholder("first", "digest")

    def fill(step: HttpStep, responses: Responses) -> HttpStep:
        return step.with_body(substitute(step.body, {marker: responses["first"]["digest"]}))

    steps = [
        HttpStep("first", "POST", f"{recording_server.url}/first", {}),
        HttpStep(
            "second", "POST", f"{recording_server.url}/second", {"image": marker}, resolve=fill
        ),
    ]
    shown = io.StringIO()
    execute(steps, dry_run=True, out=shown)
    assert "<from first: digest>" in shown.getvalue()
    execute(steps, out=io.StringIO())
    assert recording_server.requests[1].json == {"image": "sha256:abc"}


def test_error_answer_names_the_step(recording_server: RecordingServer) -> None:
    recording_server.route("GET", "/v1/missing", (403, {"error": {"message": "denied"}}))
    step = HttpStep("read thing", "GET", f"{recording_server.url}/v1/missing")
    with pytest.raises(CloudError, match=r"read thing: GET .* answered 403: denied"):
        execute([step], out=io.StringIO())


def test_missing_credentials_say_how_to_log_in(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.delenv("VERTEXKIT_NO_AUTH")
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "absent.json"))
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path))  # no gcloud credentials either
    monkeypatch.setenv("GCE_METADATA_HOST", "127.0.0.1:9")  # no metadata server
    monkeypatch.setenv("GCE_METADATA_IP", "127.0.0.1:9")
    with pytest.raises(CredentialsError, match="gcloud auth application-default login"):
        Sender().session()


def test_failed_command_names_the_step() -> None:
    step = CommandStep("check", ("python3", "-c", "import sys; sys.exit('nope')"))
    with pytest.raises(CloudError, match=r"check: .* failed: nope"):
        execute([step], out=io.StringIO())
