"""Vertex AI requests built by vertexkit.orchestrators.vertex, sent to a recording server."""

from __future__ import annotations

import io
import json
from datetime import datetime, timezone

import pytest

import vertexkit
from tests.recording_server import RecordingServer
from vertexkit.orchestrators import vertex
from vertexkit.project.config import ProjectConfig
from vertexkit.steps import CloudError, HttpStep, Sender, execute

NOW = datetime(2026, 11, 23, 10, 30, 5, tzinfo=timezone.utc)
TEMPLATE = "https://europe-west4-kfp.pkg.dev/acme-ml-dev/churn-pipelines/churn-training/abc123"


@pytest.fixture
def config(recording_server: RecordingServer, monkeypatch: pytest.MonkeyPatch) -> ProjectConfig:
    monkeypatch.setenv("VERTEXKIT_ENDPOINT_AIPLATFORM", recording_server.url)
    monkeypatch.setenv("VERTEXKIT_NO_AUTH", "1")
    loaded = ProjectConfig.model_validate(
        {
            "name": "churn",
            "naming_prefix": "churn",
            "gcp": {"project_id": "acme-ml-dev", "region": "europe-west4"},
        }
    )
    loaded._environment = "dev"
    return loaded


PARENT = "/v1/projects/acme-ml-dev/locations/europe-west4"


def test_run_request_body(config: ProjectConfig, recording_server: RecordingServer) -> None:
    recording_server.route("POST", f"{PARENT}/pipelineJobs", (200, {"name": "x/pipelineJobs/1"}))
    step = vertex.plan_run(
        config,
        "training",
        template_uri=TEMPLATE,
        parameter_values={"seed": 7, "data_uri": "gs://b/train.csv", "ratio": 0.5},
        git_commit="abc123",
        now=NOW,
    )
    shown = io.StringIO()
    execute([step], dry_run=True, as_json=True, out=shown)
    execute([step], out=io.StringIO())

    [sent] = recording_server.requests
    assert sent.query == {"pipelineJobId": ["training-20261123103005"]}
    assert sent.json == {
        "displayName": "training",
        "templateUri": TEMPLATE,
        "runtimeConfig": {
            "gcsOutputDirectory": "gs://acme-ml-dev-churn-pipelines/pipeline-root",
            "parameterValues": {"seed": 7, "data_uri": "gs://b/train.csv", "ratio": 0.5},
        },
        "serviceAccount": "churn-pipelines@acme-ml-dev.iam.gserviceaccount.com",
        "labels": {
            "vertexkit-version": vertexkit.__version__.replace(".", "-"),
            "git-commit": "abc123",
            "environment": "dev",
            "pipeline": "training",
        },
    }
    [planned] = json.loads(shown.getvalue())
    assert planned["body"] == sent.json
    assert (
        planned["url"]
        == recording_server.url + sent.path + "?pipelineJobId=training-20261123103005"
    )


def test_wait_reports_task_states_until_the_end(
    config: ProjectConfig, recording_server: RecordingServer
) -> None:
    answers = iter(
        [
            {
                "state": "PIPELINE_STATE_RUNNING",
                "jobDetail": {"taskDetails": [{"taskName": "load-data", "state": "RUNNING"}]},
            },
            {
                "state": "PIPELINE_STATE_FAILED",
                "jobDetail": {
                    "taskDetails": [
                        {"taskName": "load-data", "state": "SUCCEEDED"},
                        {"taskName": "train-model", "state": "FAILED"},
                    ]
                },
            },
        ]
    )
    recording_server.route("GET", f"{PARENT}/pipelineJobs/run-1", lambda _: (200, next(answers)))
    out = io.StringIO()
    job = vertex.wait(
        config,
        "projects/acme-ml-dev/locations/europe-west4/pipelineJobs/run-1",
        Sender(),
        out=out,
        poll_seconds=0,
    )
    assert job["state"] == "PIPELINE_STATE_FAILED"
    assert out.getvalue().splitlines() == [
        f"  {'load-data':<28} running",
        f"  {'load-data':<28} succeeded",
        f"  {'train-model':<28} failed",
    ]
    assert len(recording_server.requests) == 2


def test_schedule_is_created_when_missing_and_updated_when_found(
    config: ProjectConfig, recording_server: RecordingServer
) -> None:
    job = vertex.pipeline_job(
        config, display_name="training", template_uri=TEMPLATE, parameter_values={}, git_commit="c1"
    )
    found: list[dict] = []
    recording_server.route("GET", f"{PARENT}/schedules", lambda _: (200, {"schedules": found}))
    recording_server.route("POST", f"{PARENT}/schedules", (200, {"name": f"{PARENT}/schedules/9"}))
    recording_server.route("PATCH", f"{PARENT}/schedules/9", (200, {}))
    steps = [
        vertex.plan_schedule_lookup(config, "training"),
        vertex.plan_schedule_upsert(config, "training", "TZ=Europe/Paris 0 6 * * 1", job),
    ]
    execute(steps, out=io.StringIO())
    lookup, create = recording_server.requests
    assert lookup.query["filter"] == ['display_name="churn-training-dev"']
    assert create.method == "POST"
    assert create.json["cron"] == "TZ=Europe/Paris 0 6 * * 1"
    assert create.json["createPipelineJobRequest"] == {
        "parent": "projects/acme-ml-dev/locations/europe-west4",
        "pipelineJob": job,
    }

    found.append({"name": "projects/acme-ml-dev/locations/europe-west4/schedules/9"})
    execute(steps, out=io.StringIO())
    update = recording_server.requests[-1]
    assert (update.method, update.path) == ("PATCH", f"{PARENT}/schedules/9")
    assert update.query["updateMask"] == ["cron,createPipelineJobRequest"]
    assert update.json == create.json


@pytest.mark.parametrize(
    ("action", "method", "suffix"),
    [
        ("pause", "POST", ":pause"),
        ("resume", "POST", ":resume"),
        ("delete", "DELETE", ""),
    ],
)
def test_schedule_actions(
    config: ProjectConfig, recording_server: RecordingServer, action: str, method: str, suffix: str
) -> None:
    name = "projects/acme-ml-dev/locations/europe-west4/schedules/9"
    recording_server.route("GET", f"{PARENT}/schedules", (200, {"schedules": [{"name": name}]}))
    recording_server.route(method, f"/v1/{name}{suffix}", (200, {}))
    steps = [
        vertex.plan_schedule_lookup(config, "training"),
        vertex.plan_schedule_action(config, "training", action),
    ]
    execute(steps, out=io.StringIO())
    assert (recording_server.requests[-1].method, recording_server.requests[-1].path) == (
        method,
        f"/v1/{name}{suffix}",
    )


def test_schedule_action_without_a_schedule_says_how_to_create_one(
    config: ProjectConfig, recording_server: RecordingServer
) -> None:
    recording_server.route("GET", f"{PARENT}/schedules", (200, {}))
    steps = [
        vertex.plan_schedule_lookup(config, "training"),
        vertex.plan_schedule_action(config, "training", "pause"),
    ]
    with pytest.raises(CloudError, match="invoke schedule --env dev --pipeline training"):
        execute(steps, out=io.StringIO())
    assert len(recording_server.requests) == 1


@pytest.mark.parametrize("cron", ["", "0 6 * *", "every monday", "TZ=Europe/Paris 0 6 * * 1 2"])
def test_bad_cron_is_rejected(config: ProjectConfig, cron: str) -> None:
    with pytest.raises(ValueError, match="is not a cron expression"):
        vertex.check_cron(cron)


def test_status_and_logs_render_the_answers(
    config: ProjectConfig, recording_server: RecordingServer
) -> None:
    job = {
        "name": f"{PARENT[4:]}/pipelineJobs/training-20261123103005",
        "state": "PIPELINE_STATE_FAILED",
        "createTime": "2026-11-23T10:30:06.123Z",
        "error": {"message": "task train-model failed"},
        "jobDetail": {
            "taskDetails": [
                {"taskName": "train-model", "state": "FAILED", "error": {"message": "OOM"}}
            ]
        },
    }
    recording_server.route("GET", f"{PARENT}/pipelineJobs", (200, {"pipelineJobs": [job]}))
    recording_server.route("GET", f"{PARENT}/pipelineJobs/training-20261123103005", (200, job))
    listed = execute([vertex.plan_status(config)], out=io.StringIO())["list runs"]
    table = vertex.render_status(config, listed)
    assert "training-20261123103005" in table and "failed" in table
    assert "console.cloud.google.com/vertex-ai/locations/europe-west4/pipelines/runs/" in table
    read = execute([vertex.plan_job(config, "training-20261123103005")], out=io.StringIO())
    text = vertex.render_logs(config, read["read run"])
    assert "error: task train-model failed" in text
    assert "OOM" in text
    assert recording_server.requests[0].query == {
        "filter": ['labels.environment="dev"'],
        "orderBy": ["create_time desc"],
        "pageSize": ["10"],
    }


def test_experiment_link_waits_for_the_run_context(
    config: ProjectConfig, recording_server: RecordingServer
) -> None:
    job = "projects/acme-ml-dev/locations/europe-west4/pipelineJobs/run-1"
    states = iter(
        [
            {"state": "PIPELINE_STATE_PENDING"},
            {
                "state": "PIPELINE_STATE_RUNNING",
                "jobDetail": {"pipelineRunContext": {"name": "c/1"}},
            },
        ]
    )
    recording_server.route("POST", f"{PARENT}/pipelineJobs", (200, {"name": job}))
    recording_server.route("GET", f"/v1/{job}", lambda _: (200, next(states)))
    recording_server.route("POST", rf"{PARENT}/metadataStores/default/contexts/.*", (200, {}))
    submit = HttpStep("submit training", "POST", f"{recording_server.url}{PARENT}/pipelineJobs")
    link = vertex.plan_link_experiment(config, "submit training", poll_seconds=0)
    execute([submit, link], out=io.StringIO())
    last = recording_server.requests[-1]
    assert last.path == f"{PARENT}/metadataStores/default/contexts/churn-dev:addContextChildren"
    assert last.json == {"childContexts": ["c/1"]}


def test_experiment_link_fails_clearly_when_the_run_ends_first(
    config: ProjectConfig, recording_server: RecordingServer
) -> None:
    job = "projects/acme-ml-dev/locations/europe-west4/pipelineJobs/run-2"
    recording_server.route("POST", f"{PARENT}/pipelineJobs", (200, {"name": job}))
    recording_server.route("GET", f"/v1/{job}", (200, {"state": "PIPELINE_STATE_FAILED"}))
    submit = HttpStep("submit training", "POST", f"{recording_server.url}{PARENT}/pipelineJobs")
    link = vertex.plan_link_experiment(config, "submit training", poll_seconds=0)
    with pytest.raises(CloudError, match=r"PIPELINE_STATE_FAILED.*not in the experiment"):
        execute([submit, link], out=io.StringIO())
