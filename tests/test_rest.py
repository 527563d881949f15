"""The step runner: dry runs show exactly what the real run sends."""

from __future__ import annotations

import io
import json

import pytest

from tests.recording_server import RecordingServer
from vertexkit.steps import http as rest


@pytest.fixture(autouse=True)
def _no_auth(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VERTEXKIT_NO_AUTH", "1")


def test_endpoint_precedence() -> None:
    assert rest.endpoint("aiplatform", "europe-west4", environ={}) == (
        "https://europe-west4-aiplatform.googleapis.com"
    )
    configured = {"aiplatform": "https://private.example.com/"}
    assert rest.endpoint("aiplatform", "r", configured, environ={}) == "https://private.example.com"
    env = {"VERTEXKIT_ENDPOINT_AIPLATFORM": "http://127.0.0.1:1"}
    assert rest.endpoint("aiplatform", "r", configured, environ=env) == "http://127.0.0.1:1"
    with pytest.raises(ValueError, match="unknown service 'nope'"):
        rest.endpoint("nope", "r", environ={})


def test_dry_run_json_equals_what_is_sent(recording_server: RecordingServer) -> None:
    recording_server.route("POST", "/v1/things", (200, {"name": "things/1"}))
    step = rest.HttpStep("create thing", "POST", f"{recording_server.url}/v1/things", {"a": [1]})
    shown = io.StringIO()
    assert rest.execute([step], dry_run=True, as_json=True, out=shown) == {}
    assert recording_server.requests == []
    [planned] = json.loads(shown.getvalue())
    responses = rest.execute([step], out=io.StringIO())
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
    marker = rest.placeholder("first", "digest")

    def fill(step: rest.HttpStep, responses: rest.Responses) -> rest.HttpStep:
        return rest.with_body(
            step, rest.substitute(step.body, {marker: responses["first"]["digest"]})
        )

    steps = [
        rest.HttpStep("first", "POST", f"{recording_server.url}/first", {}),
        rest.HttpStep(
            "second", "POST", f"{recording_server.url}/second", {"image": marker}, resolve=fill
        ),
    ]
    shown = io.StringIO()
    rest.execute(steps, dry_run=True, out=shown)
    assert "<from first: digest>" in shown.getvalue()
    rest.execute(steps, out=io.StringIO())
    assert recording_server.requests[1].json == {"image": "sha256:abc"}


def test_error_answer_names_the_step(recording_server: RecordingServer) -> None:
    recording_server.route("GET", "/v1/missing", (403, {"error": {"message": "denied"}}))
    step = rest.HttpStep("read thing", "GET", f"{recording_server.url}/v1/missing")
    with pytest.raises(rest.CloudError, match=r"read thing: GET .* answered 403: denied"):
        rest.execute([step], out=io.StringIO())


def test_missing_credentials_say_how_to_log_in(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.delenv("VERTEXKIT_NO_AUTH")
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "absent.json"))
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path))  # no gcloud credentials either
    monkeypatch.setenv("GCE_METADATA_HOST", "127.0.0.1:9")  # no metadata server
    monkeypatch.setenv("GCE_METADATA_IP", "127.0.0.1:9")
    with pytest.raises(rest.CredentialsError, match="gcloud auth application-default login"):
        rest.session()


def test_failed_command_names_the_step() -> None:
    step = rest.CommandStep("check", ("python3", "-c", "import sys; sys.exit('nope')"))
    with pytest.raises(rest.CloudError, match=r"check: .* failed: nope"):
        rest.execute([step], out=io.StringIO())
