"""Kubeflow Pipelines requests built by vertexkit.orchestrators.kfp, sent to a local server that
records them, and compared with what kfp.Client itself sends for the same operations."""

from __future__ import annotations

import email.policy
import importlib.util
import io
import json
import mimetypes
import re
from datetime import datetime, timezone
from email.parser import BytesParser
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import kfp
import pydantic
import pytest
from kfp import compiler

from tests.fake_backends import API, FakeKfp
from tests.recording_server import Recorded, RecordingServer
from vertexkit.local import pipelines as compiling
from vertexkit.orchestrators import kfp as kfp_backend
from vertexkit.orchestrators.kfp import KfpSettings
from vertexkit.project.config import load_config
from vertexkit.steps import CloudError, Responses, execute, substitute

FIXTURES = Path(__file__).parent / "fixtures"
NOW = datetime(2026, 11, 23, 10, 30, 5, tzinfo=timezone.utc)
COMMIT = "abc123def456"
VERSION = kfp_backend.version_name(COMMIT, NOW)
FULL = "demo-training-dev"  # kfp_backend.pipeline_name("demo", "training", "dev")
# The part type kfp_server_api gives a .yaml file (it depends on the platform's mime tables).
YAML_TYPE = mimetypes.guess_type("training.yaml")[0] or "application/octet-stream"
PARAMETERS = {"n": 5, "shared_param": 1, "label": "rows", "ratio": 1.0}


@pytest.fixture
def fake(recording_server: RecordingServer) -> FakeKfp:
    return FakeKfp(recording_server)


@pytest.fixture
def settings(recording_server: RecordingServer) -> KfpSettings:
    return KfpSettings(host=recording_server.url)


@pytest.fixture
def template(tmp_path: Path) -> Path:
    """The fixture project's training pipeline, compiled by kfp."""
    source = FIXTURES / "project" / "pipelines" / "training.py"
    spec = importlib.util.spec_from_file_location("_kfp_backend_training", source)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    path = tmp_path / "training.yaml"
    compiler.Compiler().compile(module.training, str(path))
    return path


def publish(settings: KfpSettings, template: Path, description: str | None = None) -> list:
    return kfp_backend.plan_publish(
        settings,
        {"training": template},
        VERSION,
        project="demo",
        environment="dev",
        description=description,
    )


def submit(settings: KfpSettings, commit: str | None = None) -> list:
    return kfp_backend.plan_submit(
        settings,
        "training",
        project="demo",
        environment="dev",
        parameters=PARAMETERS,
        commit=commit,
        now=NOW,
    )


def form_parts(request: Recorded) -> list[tuple[str, str | None, str, bytes]]:
    """The multipart/form-data parts: (field name, file name, content type, content)."""
    head = f"Content-Type: {request.headers['content-type']}\r\n\r\n".encode()
    message = BytesParser(policy=email.policy.HTTP).parsebytes(head + request.body)
    assert message.is_multipart(), request.headers["content-type"]
    return [
        (
            part.get_param("name", header="content-disposition"),
            part.get_filename(),
            part.get_content_type(),
            part.get_payload(decode=True),
        )
        for part in message.iter_parts()
    ]


def test_first_publish_uploads_the_pipeline_then_the_release_version(
    settings: KfpSettings, fake: FakeKfp, recording_server: RecordingServer, template: Path
) -> None:
    responses = execute(publish(settings, template, "commit abc"), out=io.StringIO())

    find, upload, version = recording_server.requests
    assert (find.method, find.path) == ("GET", f"{API}/pipelines")
    assert json.loads(find.query["filter"][0]) == {
        "predicates": [{"operation": 1, "key": "display_name", "stringValue": FULL}]
    }
    assert (upload.method, upload.path, upload.query) == (
        "POST",
        f"{API}/pipelines/upload",
        {"name": [FULL]},
    )
    assert form_parts(upload) == [("uploadfile", "training.yaml", YAML_TYPE, template.read_bytes())]
    assert (version.method, version.path, version.query) == (
        "POST",
        f"{API}/pipelines/upload_version",
        {"name": [VERSION], "pipelineid": ["p1"], "description": ["commit abc"]},
    )
    assert form_parts(version) == form_parts(upload)
    assert "authorization" not in version.headers
    assert responses["upload version training"]["pipeline_version_id"] == "v2"
    assert [v["name"] for v in fake.versions] == [FULL, VERSION]


def test_publish_to_an_existing_pipeline_uploads_only_a_version(
    settings: KfpSettings, fake: FakeKfp, recording_server: RecordingServer, template: Path
) -> None:
    fake.pipelines.append({"pipeline_id": "p9", "name": FULL, "display_name": FULL})
    responses = execute(publish(settings, template), out=io.StringIO())

    find, version = recording_server.requests
    assert find.path == f"{API}/pipelines"
    assert version.path == f"{API}/pipelines/upload_version"
    assert version.query == {"name": [VERSION], "pipelineid": ["p9"]}
    assert responses["ensure pipeline training"]["pipeline_id"] == "p9"


def test_publish_checks_the_templates_before_anything_is_sent(
    settings: KfpSettings, tmp_path: Path
) -> None:
    with pytest.raises(ValueError, match=r"no compiled template for 'training'.*compile it first"):
        publish(settings, tmp_path / "missing.yaml")


def test_deploy_creates_a_run_of_the_uploaded_version_with_typed_parameters(
    settings: KfpSettings, fake: FakeKfp, recording_server: RecordingServer, template: Path
) -> None:
    # The parameter values a deploy computes, from the fixture project's config and pipeline.
    config = load_config(FIXTURES / "project", "dev", environ={})
    pipeline = compiling.load_pipeline(FIXTURES / "project", "training")
    values = compiling.configured_parameters(config, "training", pipeline, {"label": "x"})
    steps = publish(settings, template) + kfp_backend.plan_submit(
        settings,
        "training",
        project=config.name,
        environment=config.environment,
        parameters=values,
        now=NOW,
    )
    responses = execute(steps, out=io.StringIO())

    *_, find_experiment, create_experiment, run = recording_server.requests
    assert json.loads(find_experiment.query["filter"][0])["predicates"][0]["stringValue"] == (
        "demo-dev"
    )
    assert create_experiment.json == {"display_name": "demo-dev"}
    assert (run.method, run.path, run.query) == ("POST", f"{API}/runs", {})
    assert run.json == {
        "experiment_id": "e1",
        "display_name": "training-20261123103005",
        "pipeline_version_reference": {"pipeline_id": "p1", "pipeline_version_id": "v2"},
        "runtime_config": {
            "parameters": {"n": 5, "shared_param": 1, "label": "x", "ratio": 1.0},
        },
    }
    sent = json.loads(run.body)["runtime_config"]["parameters"]
    assert type(sent["n"]) is int and type(sent["ratio"]) is float
    assert kfp_backend.submitted_run(responses)["run_id"] == "r1"

    # A second deploy reuses the experiment and the pipeline: no creation, a new version.
    recording_server.requests.clear()
    later = kfp_backend.version_name(COMMIT, datetime(2026, 11, 24, tzinfo=timezone.utc))
    again = kfp_backend.plan_publish(
        settings, {"training": template}, later, project="demo", environment="dev"
    ) + kfp_backend.plan_submit(
        settings, "training", project="demo", environment="dev", parameters=values, now=NOW
    )
    execute(again, out=io.StringIO())
    assert [(r.method, r.path) for r in recording_server.requests] == [
        ("GET", f"{API}/pipelines"),
        ("POST", f"{API}/pipelines/upload_version"),
        ("GET", f"{API}/experiments"),
        ("POST", f"{API}/runs"),
    ]
    assert recording_server.requests[-1].json["experiment_id"] == "e1"
    assert recording_server.requests[-1].json["pipeline_version_reference"] == {
        "pipeline_id": "p1",
        "pipeline_version_id": "v3",
    }


def _placeholders(plan: list[dict], responses: Responses) -> dict[str, str]:
    """Each ``<from STEP: key>`` of a dry run, with the value STEP's answer gave."""
    found = set(re.findall(r"<from [^>]+>", json.dumps(plan)))
    values = {}
    for marker in found:
        step, key = marker[len("<from ") : -1].rsplit(": ", 1)
        values[marker] = str(responses[step][key])
    return values


def test_dry_run_json_is_what_is_sent(
    settings: KfpSettings, fake: FakeKfp, recording_server: RecordingServer, template: Path
) -> None:
    steps = publish(settings, template, "commit abc") + submit(settings)
    shown = io.StringIO()
    execute(steps, dry_run=True, as_json=True, out=shown)
    assert recording_server.requests == [], "a dry run sent something"
    responses = execute(steps, out=io.StringIO())

    plan = json.loads(shown.getvalue())
    resolved = substitute(plan, _placeholders(plan, responses))
    sent = recording_server.requests
    assert len(sent) == len(resolved) == 6  # nothing existed: every conditional step was sent
    for planned, request in zip(resolved, sent, strict=True):
        url = urlsplit(planned["url"])
        assert planned["method"] == request.method, planned["step"]
        assert f"{url.scheme}://{url.netloc}" == recording_server.url, planned["step"]
        assert (url.path, parse_qs(url.query)) == (request.path, request.query), planned["step"]
        if "upload" not in planned:
            assert planned["body"] == request.json, planned["step"]
        else:
            assert planned["body"] is None
            assert form_parts(request) == [
                (
                    planned["upload_field"],
                    "training.yaml",
                    YAML_TYPE,
                    Path(planned["upload"]).read_bytes(),
                )
            ]


def _proto3(value: Any) -> Any:
    """A JSON body as the server's protojson reads it: an empty string is an unset field."""
    if isinstance(value, dict):
        return {k: _proto3(v) for k, v in value.items() if v != ""}
    return value


def _canonical(request: Recorded) -> tuple:
    """What a request means to the KFP server: method, path, query, credentials and body.

    (The recorded query already drops empty values, as the server does: kfp.Client's default
    namespace is "", which it sends as ``namespace=`` and ``"namespace": ""``.)
    """
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        body: Any = tuple(form_parts(request))
    else:
        body = json.dumps(_proto3(request.json), sort_keys=True)
    query = tuple(sorted((k, tuple(v)) for k, v in request.query.items()))
    media = content_type.split(";")[0] if request.body else ""
    return (request.method, request.path, query, request.headers.get("authorization"), media, body)


def test_requests_equal_what_kfp_client_sends(
    fake: FakeKfp,
    recording_server: RecordingServer,
    template: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KFP_TOKEN", "t0ken")
    settings = KfpSettings(host=recording_server.url, token_env="KFP_TOKEN")
    execute(publish(settings, template, "commit abc") + submit(settings), out=io.StringIO())
    ours = list(recording_server.requests)

    recording_server.requests.clear()
    fake.reset()
    # kfp.Client keeps a context file in the home directory: keep it out of the user's.
    monkeypatch.setattr(kfp.Client, "_LOCAL_KFP_CONTEXT", str(tmp_path / "kfp-context.json"))
    with pytest.warns(FutureWarning):
        client = kfp.Client(host=recording_server.url, existing_token="t0ken")
    # Its constructor asks the server whether it runs in multi-user mode.
    [healthz] = recording_server.requests
    assert (healthz.method, healthz.path) == ("GET", f"{API}/healthz")
    recording_server.requests.clear()

    client.upload_pipeline(str(template), pipeline_name=FULL)
    version = client.upload_pipeline_version(
        str(template), pipeline_version_name=VERSION, pipeline_name=FULL, description="commit abc"
    )
    experiment = client.create_experiment("demo-dev")
    client.run_pipeline(
        experiment_id=experiment.experiment_id,
        job_name="training-20261123103005",
        params=PARAMETERS,
        pipeline_id=version.pipeline_id,
        version_id=version.pipeline_version_id,
    )
    theirs = list(recording_server.requests)

    # Same requests; kfp.Client looks the pipeline up after uploading it, vertexkit before.
    assert sorted(map(_canonical, ours)) == sorted(map(_canonical, theirs))
    assert len(ours) == 6
    assert all(r.headers["authorization"] == "Bearer t0ken" for r in ours)


def test_run_without_publish_uses_the_newest_version_of_the_commit(
    settings: KfpSettings, fake: FakeKfp, recording_server: RecordingServer, template: Path
) -> None:
    fake.pipelines.append({"pipeline_id": "p1", "name": FULL, "display_name": FULL})
    fake._version("p1", FULL)
    fake._version("p1", f"{COMMIT}-20261101000000")
    fake._version("p1", f"{COMMIT}-20261102000000")
    fake._version("p1", "0ther0commit-20261103000000")
    execute(submit(settings, commit=COMMIT), out=io.StringIO())

    lookup = recording_server.requests[3]
    assert (lookup.method, lookup.path) == ("GET", f"{API}/pipelines/p1/versions")
    assert lookup.query["sort_by"] == ["created_at desc"]
    assert lookup.query["page_size"] == ["1"]
    assert json.loads(lookup.query["filter"][0]) == {
        "predicates": [{"operation": 9, "key": "display_name", "stringValue": f"{COMMIT}-"}]
    }
    run = recording_server.requests[-1]
    assert run.json["pipeline_version_reference"] == {
        "pipeline_id": "p1",
        "pipeline_version_id": "v3",
    }


def test_run_of_an_unpublished_commit_says_to_publish(
    settings: KfpSettings, fake: FakeKfp, recording_server: RecordingServer
) -> None:
    with pytest.raises(CloudError, match=r"no pipeline 'demo-training-dev'.*invoke publish"):
        execute(submit(settings, commit=COMMIT), out=io.StringIO())

    fake.pipelines.append({"pipeline_id": "p1", "name": FULL, "display_name": FULL})
    with pytest.raises(CloudError, match=f"no version from commit {COMMIT}.*invoke publish"):
        execute(submit(settings, commit=COMMIT), out=io.StringIO())
    assert not any(r.path == f"{API}/runs" for r in recording_server.requests)


def test_multi_user_namespace_goes_with_pipelines_experiments_and_runs(
    recording_server: RecordingServer, template: Path
) -> None:
    FakeKfp(recording_server, multi_user=True)
    settings = KfpSettings(host=recording_server.url, namespace="team-a", experiment="nightly")
    execute(publish(settings, template) + submit(settings), out=io.StringIO())
    find, upload, version, find_experiment, create_experiment, _ = recording_server.requests
    assert find.query["namespace"] == ["team-a"]
    assert upload.query["namespace"] == ["team-a"]
    assert "namespace" not in version.query  # a version lives in its pipeline's namespace
    assert find_experiment.query["namespace"] == ["team-a"]
    assert create_experiment.json == {"display_name": "nightly", "namespace": "team-a"}


def test_token_comes_from_the_named_environment_variable(
    fake: FakeKfp,
    recording_server: RecordingServer,
    template: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = KfpSettings(host=recording_server.url, token_env="KFP_TOKEN")
    steps = publish(settings, template) + submit(settings)
    shown = io.StringIO()
    execute(steps, dry_run=True, out=shown)
    assert "authorization: Bearer $KFP_TOKEN" in shown.getvalue()

    monkeypatch.delenv("KFP_TOKEN", raising=False)
    with pytest.raises(CloudError, match=r"KFP_TOKEN .*is not set"):
        execute(steps, out=io.StringIO())
    assert recording_server.requests == []

    monkeypatch.setenv("KFP_TOKEN", "s3cret")
    execute(steps, out=io.StringIO())
    assert {r.headers.get("authorization") for r in recording_server.requests} == {"Bearer s3cret"}
    assert "s3cret" not in shown.getvalue()


def test_refused_token_and_login_redirects_are_explained(
    settings: KfpSettings, recording_server: RecordingServer, template: Path
) -> None:
    recording_server.route("GET", f"{API}/pipelines", (401, {"message": "Unauthenticated"}))
    with pytest.raises(CloudError, match=r"find pipeline training.*401: Unauthenticated.*"):
        execute(publish(settings, template), out=io.StringIO())

    recording_server.route("GET", f"{API}/pipelines", (302, None))
    with pytest.raises(CloudError, match=r"302.*kfp.token_env") as failure:
        execute(publish(settings, template), out=io.StringIO())
    assert failure.value.status == 302


def test_endpoint_can_be_redirected_by_environment(
    recording_server: RecordingServer, fake: FakeKfp, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = KfpSettings(host="https://kfp.example.com")
    monkeypatch.setenv("VERTEXKIT_ENDPOINT_KFP", recording_server.url + "/")
    execute(kfp_backend.plan_experiment(settings, "x"), out=io.StringIO())
    assert [r.path for r in recording_server.requests] == [f"{API}/experiments"] * 2

    monkeypatch.setenv("VERTEXKIT_ENDPOINT_KFP", "kfp.internal:8888")
    with pytest.raises(ValueError, match=r"VERTEXKIT_ENDPOINT_KFP.*http"):
        kfp_backend.plan_experiment(settings, "x")


def test_wait_reports_task_states_until_the_run_ends(
    settings: KfpSettings, recording_server: RecordingServer
) -> None:
    answers = iter(
        [
            {"run_id": "r1", "display_name": "training-1", "state": "PENDING"},
            {
                "run_id": "r1",
                "display_name": "training-1",
                "state": "RUNNING",
                "run_details": {
                    "task_details": [
                        {"display_name": "root", "state": "RUNNING"},
                        {"display_name": "make-data", "state": "RUNNING"},
                    ]
                },
            },
            {
                "run_id": "r1",
                "display_name": "training-1",
                "state": "FAILED",
                "run_details": {
                    "task_details": [
                        {"display_name": "root", "state": "FAILED"},
                        {"display_name": "make-data", "state": "SUCCEEDED"},
                        {"display_name": "describe", "state": "FAILED"},
                    ]
                },
            },
        ]
    )
    recording_server.route("GET", f"{API}/runs/r1", lambda _: (200, next(answers)))
    out = io.StringIO()
    run = kfp_backend.wait(settings, "r1", out=out, poll_seconds=0)
    assert run["state"] == "FAILED"
    assert out.getvalue().splitlines() == [
        f"  {'make-data':<28} running",
        f"  {'make-data':<28} succeeded",
        f"  {'describe':<28} failed",
    ]
    assert len(recording_server.requests) == 3


def test_status_lists_the_experiments_runs_and_logs_render_a_run(
    settings: KfpSettings, recording_server: RecordingServer
) -> None:
    run = {
        "run_id": "0b6f-r1",
        "display_name": "training-20261123103005",
        "state": "FAILED",
        "created_at": "2026-11-23T10:30:06Z",
        "error": {"message": "task describe failed"},
        "run_details": {
            "task_details": [
                {
                    "display_name": "describe",
                    "state": "FAILED",
                    "pod_name": "training-abc-describe-1",
                    "error": {"message": "exit code 1"},
                }
            ]
        },
    }
    recording_server.route(
        "GET", f"{API}/experiments", (200, {"experiments": [{"experiment_id": "e7"}]})
    )
    recording_server.route("GET", f"{API}/runs", (200, {"runs": [run]}))
    recording_server.route("GET", f"{API}/runs/0b6f-r1", (200, run))
    responses = execute(kfp_backend.plan_status(settings, "demo-dev"), out=io.StringIO())
    assert recording_server.requests[-1].query == {
        "experiment_id": ["e7"],
        "page_size": ["10"],
        "sort_by": ["created_at desc"],
    }
    table = kfp_backend.render_status(settings, responses["list runs"], "demo-dev")
    assert "0b6f-r1" in table and "failed" in table and "2026-11-23 10:30:06" in table
    assert f"{recording_server.url}/#/runs/details/0b6f-r1" in table

    read = execute([kfp_backend.plan_read_run(settings, "0b6f-r1")], out=io.StringIO())
    text = kfp_backend.render_logs(settings, read["read run"])
    assert "error: task describe failed" in text
    assert "exit code 1" in text and "pod: training-abc-describe-1" in text


def test_status_without_the_experiment_sends_one_request(
    settings: KfpSettings, recording_server: RecordingServer, fake: FakeKfp
) -> None:
    responses = execute(kfp_backend.plan_status(settings, "demo-dev"), out=io.StringIO())
    assert len(recording_server.requests) == 1
    assert "no pipeline runs in experiment 'demo-dev'" in kfp_backend.render_status(
        settings, responses["list runs"], "demo-dev"
    )


@pytest.mark.parametrize(
    "host",
    [
        "https://kfp.example.com",
        "http://localhost:8080",
        "http://127.0.0.1:8888",
        "https://kubeflow.example.com/pipeline",
        "http://ml-pipeline.kubeflow.svc.cluster.local:8888",
        "http://[::1]:8080",
    ],
)
def test_good_hosts_are_accepted(host: str) -> None:
    assert KfpSettings(host=host + "/").host == host


@pytest.mark.parametrize(
    ("host", "fragment"),
    [
        ("kfp.example.com", "not an http(s) URL"),
        ("ftp://kfp.example.com", "not an http(s) URL"),
        ("https://", "not an http(s) URL"),
        ("https://kfp example.com", "not an http(s) URL"),
        ("https://kfp.example.com/?ns=a", "without query or fragment"),
        ("https://kfp.example.com/#/runs", "without query or fragment"),
        ("https://kfp.example.com:99999", "port 99999 is out of range"),
        ("https://admin:pw@kfp.example.com", "must not hold credentials"),
        ("", "http(s) URL"),
    ],
)
def test_bad_hosts_are_rejected(host: str, fragment: str) -> None:
    with pytest.raises(pydantic.ValidationError, match=re.escape(fragment)):
        KfpSettings(host=host)


@pytest.mark.parametrize(
    ("field", "value", "fragment"),
    [
        ("token_env", "Bearer eyJhbGciOi.x.y", "not an environment variable name"),
        ("token_env", "kfp-token", "not an environment variable name"),
        ("namespace", "Team_A", "not a Kubernetes namespace"),
        ("experiment", " ", "one non-empty line"),
        ("token", "eyJhbGciOi", "Extra inputs are not permitted"),
    ],
)
def test_bad_settings_are_rejected(field: str, value: str, fragment: str) -> None:
    with pytest.raises(pydantic.ValidationError, match=re.escape(fragment)):
        KfpSettings.model_validate({"host": "https://kfp.example.com", field: value})


def test_names() -> None:
    settings = KfpSettings(host="https://kfp.example.com")
    assert kfp_backend.pipeline_name("demo", "training", "dev") == FULL
    assert kfp_backend.experiment_name(settings, "demo", "dev") == "demo-dev"
    assert VERSION == "abc123def456-20261123103005"
    with pytest.raises(ValueError, match="invalid commit"):
        kfp_backend.version_name("", NOW)
