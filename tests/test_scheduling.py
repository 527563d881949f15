"""Schedules (issue 10): the cron and time zone rules, the config that holds schedules, and
`invoke schedule` for both schedulers, its requests recorded at a local endpoint (Cloud
Scheduler REST v1 and Vertex AI). The copier side of the rules is in test_copier_answers.py."""

from __future__ import annotations

import base64
import io
import json
import os
import re
import subprocess
import sys
import zoneinfo
from pathlib import Path

import pytest
import yaml

from tests.recording_server import RecordingServer
from vertexkit.gcp import scheduling, service_infra
from vertexkit.project import schedule as rules
from vertexkit.project.config import ConfigError, load_config
from vertexkit.project.release import Release
from vertexkit.steps import CloudError, execute

ROOT = Path(__file__).resolve().parent.parent
JOBS = "/v1/projects/acme-ml-dev/locations/europe-west4/jobs"
JOB = f"{JOBS}/demo-training-dev"
SCHEDULES = "/v1/projects/acme-ml-dev/locations/europe-west4/schedules"
RELEASE = Release(commit="abc123def456", tags=())

CLOUD_SCHEDULER = """
service:
  kind: cloud-run
scheduler: cloud-scheduler
"""
TRAINING_SCHEDULE = """
pipelines:
  training:
    schedule:
      cron: "30 5 * * MON-FRI"
      timezone: Europe/Paris
      parameters: {label: nightly}
"""


def _append(project: Path, name: str, text: str) -> None:
    path = project / "config" / name
    path.write_text(path.read_text() + text)


@pytest.fixture
def scheduled(project: Path) -> Path:
    """The fixture project with Cloud Scheduler and a schedule of training in dev."""
    _append(project, "base.yaml", CLOUD_SCHEDULER)
    _append(project, "dev.yaml", TRAINING_SCHEDULE.replace("pipelines:\n  training:\n", ""))
    return project


# --- the rules ----------------------------------------------------------------------------

GOOD_CRONS = ["0 6 * * MON", "*/15 * * * *", "0 0 1-31/2 jan-DEC 0,7", "5,10 0-23/4 * * sun-sat"]
BAD_CRONS = {
    "0 24 * * *": "hour '24': 24 is out of range 0-23",
    "* * * *": "has 4 fields; a cron has five",
    "0 0 * * * *": "has 6 fields",
    "5/10 * * * *": "write */10 or 5-59/10",
    "0 0 ? * *": "'?' is not a number 1-31",
    "0 0 * FOO *": "'FOO' is not a number 1-12 or a name JAN-DEC",
    "0 0 * * 5-1": "the range '5-1' runs backwards",
    "0 0 1,,2 * *": "an empty list item",
    "0 0 */0 * *": "not a whole number from 1 to 31",
    "0 0 * * MON#2": "'MON#2' is not a number 0-7 or a name SUN-SAT",
}


@pytest.mark.parametrize("cron", GOOD_CRONS)
def test_valid_crons(cron: str) -> None:
    assert rules.cron_problem(cron) is None


@pytest.mark.parametrize(("cron", "message"), BAD_CRONS.items())
def test_invalid_crons_name_the_field(cron: str, message: str) -> None:
    problem = rules.cron_problem(cron)
    assert problem is not None and message in problem


def test_time_zones_are_the_ones_zoneinfo_knows() -> None:
    zones = rules.time_zones()
    assert {"UTC", "Europe/Paris", "America/New_York", "Asia/Kolkata", "Etc/GMT+5"} <= zones
    for name in zones:
        zoneinfo.ZoneInfo(name)  # raises for a name the tz database does not know
    assert rules.timezone_problem("Europe/Paris") is None
    assert "did you mean 'Europe/Paris'?" in (rules.timezone_problem("Europe/Pariss") or "")
    assert "not an IANA time zone name" in (rules.timezone_problem("CET+1") or "")


def test_copier_reads_the_same_zone_file() -> None:
    copier = yaml.safe_load((ROOT / "copier.yml").read_text())
    assert (
        "{% include 'helpers/vertexkit/timezones.yaml' %}"
        in (copier["schedule_timezone"]["validator"])
    )
    text = (ROOT / "helpers" / "vertexkit" / "timezones.yaml").read_text()
    assert "{{" not in text and "{%" not in text  # copier renders the file


# --- the configuration --------------------------------------------------------------------


def test_schedules_load_per_environment(scheduled: Path) -> None:
    base = load_config(scheduled)
    assert base.scheduler == "cloud-scheduler" and base.pipeline("training").schedule is None
    dev = load_config(scheduled, "dev").pipeline("training").schedule
    assert dev is not None
    assert (dev.cron, dev.timezone, dev.parameters) == (
        "30 5 * * MON-FRI",
        "Europe/Paris",
        {"label": "nightly"},
    )


@pytest.mark.parametrize(
    ("overlay", "message"),
    [
        (
            "pipelines: {training: {schedule: {cron: '0 25 * * *'}}}",
            "config/dev.yaml: pipelines.training.schedule.cron: hour '25': 25 is out of range",
        ),
        (
            "pipelines: {training: {schedule: {cron: '0 6 * * *', timezone: Paris}}}",
            "config/dev.yaml: pipelines.training.schedule.timezone: 'Paris' is not an IANA",
        ),
        (
            "pipelines: {training: {schedule: {timezone: UTC}}}",
            "config/dev.yaml: pipelines.training.schedule.cron: required setting is missing",
        ),
        (
            "pipelines: {training: {schedule: {cron: '0 6 * * *', tz: UTC}}}",
            "unknown setting 'tz'",
        ),
        (
            "service: {kind: none}",
            "config/base.yaml: scheduler: cloud-scheduler publishes to Pub/Sub, which pushes to "
            "the submission service, and service.kind is none: set service.kind to cloud-run or "
            "cloud-functions, or scheduler to vertex or none",
        ),
    ],
)
def test_bad_schedules_name_the_file_and_field(scheduled: Path, overlay: str, message: str) -> None:
    _append(scheduled, "dev.yaml", "\n" + overlay + "\n")
    with pytest.raises(ConfigError) as failure:
        load_config(scheduled, "dev")
    assert message in str(failure.value)


def test_vertex_schedules_need_vertex_pipelines(project: Path) -> None:
    _append(project, "base.yaml", "scheduler: vertex\norchestrator: kfp\nkfp: {host: http://k}\n")
    with pytest.raises(ConfigError, match="scheduler: vertex schedules run on Vertex AI"):
        load_config(project, "dev")


# --- Cloud Scheduler ----------------------------------------------------------------------


@pytest.fixture
def scheduler_api(recording_server: RecordingServer, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("VERTEXKIT_ENDPOINT_CLOUDSCHEDULER", recording_server.url)
    monkeypatch.setenv("VERTEXKIT_NO_AUTH", "1")
    return recording_server


def _message(body: dict) -> dict:
    return json.loads(base64.b64decode(body["pubsubTarget"]["data"]))


def test_job_is_created_when_missing_and_patched_when_found(
    scheduled: Path, scheduler_api: RecordingServer
) -> None:
    config = load_config(scheduled, "dev")
    jobs: dict[str, dict] = {}

    def get(request):  # the job as Cloud Scheduler keeps it
        found = jobs.get(request.path)
        return (200, found) if found else (404, {"error": {"code": 404, "message": "NOT_FOUND"}})

    def create(request):
        jobs[f"/v1/{request.json['name']}"] = request.json
        return 200, request.json

    scheduler_api.route("GET", f"{JOBS}/.*", get)
    scheduler_api.route("POST", JOBS, create)
    scheduler_api.route("PATCH", JOB, lambda request: (200, request.json))

    steps = scheduling.plan_schedules(scheduled, config, None, None, "create", None, {})
    execute(steps, out=io.StringIO())
    get_first, post = scheduler_api.requests
    assert (get_first.method, get_first.path) == ("GET", JOB)
    assert (post.method, post.path) == ("POST", JOBS)
    assert post.json == {
        "name": JOB.removeprefix("/v1/"),
        "description": "Runs pipeline training of demo in dev through demo-runs (vertexkit; "
        "config pipelines.training.schedule)",
        "schedule": "30 5 * * MON-FRI",
        "timeZone": "Europe/Paris",
        "pubsubTarget": {
            "topicName": "projects/acme-ml-dev/topics/demo-runs",
            "data": post.json["pubsubTarget"]["data"],
        },
        "retryConfig": {"retryCount": 3, "minBackoffDuration": "10s", "maxBackoffDuration": "300s"},
    }
    assert _message(post.json) == {"pipeline": "training", "parameters": {"label": "nightly"}}

    # Applied again, with a typed --param: the job is found and patched, nothing created.
    steps = scheduling.plan_schedules(
        scheduled, config, None, "training", "create", "TZ=Asia/Tokyo 0 7 * * *", {"n": "9"}
    )
    execute(steps, out=io.StringIO())
    get_again, patch = scheduler_api.requests[2:]
    assert (get_again.path, patch.method, patch.path) == (JOB, "PATCH", JOB)
    assert patch.query == {"updateMask": [scheduling.UPDATE_MASK]}
    assert (patch.json["schedule"], patch.json["timeZone"]) == ("0 7 * * *", "Asia/Tokyo")
    assert _message(patch.json) == {
        "pipeline": "training",
        "parameters": {"label": "nightly", "n": 9},
    }


def test_provisioning_and_invoke_schedule_send_the_same_job(scheduled: Path) -> None:
    """Terraform, gcloud and `invoke schedule` create the same job: no drift between them."""
    from vertexkit.gcp import provision

    config = load_config(scheduled, "dev")
    [job] = provision.plan_infrastructure(config).scheduler_jobs
    wanted = scheduling.wanted_schedules(config, None, "create", None)[0]
    body = scheduling.job_body(config, "training", wanted, job.data)
    assert (body["schedule"], body["timeZone"], body["description"]) == (
        job.schedule,
        job.time_zone,
        job.description,
    )
    assert body["name"].endswith(f"/jobs/{job.name}")
    assert body["pubsubTarget"]["data"] == service_infra.job_message(
        "training", {"label": "nightly"}
    )


@pytest.mark.parametrize(("action", "method", "suffix"), [
    ("pause", "POST", ":pause"), ("resume", "POST", ":resume"), ("delete", "DELETE", "")
])  # fmt: skip
def test_job_actions(
    scheduled: Path, scheduler_api: RecordingServer, action: str, method: str, suffix: str
) -> None:
    config = load_config(scheduled, "dev")
    scheduler_api.route("GET", JOB, (200, {"name": JOB.removeprefix("/v1/")}))
    scheduler_api.route(method, JOB + suffix, (200, {}))
    execute(
        scheduling.plan_schedules(scheduled, config, None, None, action, None, {}),
        out=io.StringIO(),
    )
    assert [(r.method, r.path) for r in scheduler_api.requests] == [
        ("GET", JOB),
        (method, JOB + suffix),
    ]


def test_action_on_a_missing_job_says_how_to_create_it(
    scheduled: Path, scheduler_api: RecordingServer
) -> None:
    config = load_config(scheduled, "dev")
    steps = scheduling.plan_schedules(scheduled, config, None, "training", "pause", None, {})
    with pytest.raises(CloudError, match="invoke schedule --env dev --pipeline training"):
        execute(steps, out=io.StringIO())
    assert [r.method for r in scheduler_api.requests] == ["GET"]  # nothing else sent


@pytest.mark.parametrize(
    ("pipeline", "cron", "overrides", "message"),
    [
        (None, "0 6 * * *", {}, "--cron changes one schedule: name its pipeline with --pipeline"),
        (None, None, {"n": "2"}, "--param changes one schedule"),
        ("training", "0 6 * *", {}, "--cron: '0 6 * *' has 4 fields"),
        ("training", "TZ=Mars/Olympus 0 6 * * *", {}, "--cron TZ=: 'Mars/Olympus' is not an"),
        ("training", None, {"n": "many"}, "--param n=many: parameter 'n' expects int, got 'many'"),
    ],
)
def test_bad_options_are_refused_before_any_request(
    scheduled: Path,
    scheduler_api: RecordingServer,
    pipeline: str | None,
    cron: str | None,
    overrides: dict,
    message: str,
) -> None:
    config = load_config(scheduled, "dev")
    with pytest.raises(ValueError, match=re.escape(message)):
        scheduling.plan_schedules(scheduled, config, None, pipeline, "create", cron, overrides)
    assert scheduler_api.requests == []


def test_nothing_configured_says_what_to_add(project: Path) -> None:
    _append(project, "base.yaml", CLOUD_SCHEDULER)
    config = load_config(project, "dev")
    with pytest.raises(
        scheduling.ScheduleError, match=re.escape("pipelines.training.schedule: {cron:")
    ):
        scheduling.plan_schedules(project, config, None, None, "create", None, {})
    with pytest.raises(
        scheduling.ScheduleError, match=re.escape("add pipelines.training.schedule")
    ):
        scheduling.plan_schedules(project, config, None, "training", "create", None, {})


# --- Vertex AI schedules ------------------------------------------------------------------


def test_vertex_schedule_carries_the_time_zone_and_the_schedules_parameters(
    project: Path, recording_server: RecordingServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VERTEXKIT_ENDPOINT_AIPLATFORM", recording_server.url)
    monkeypatch.setenv("VERTEXKIT_NO_AUTH", "1")
    _append(project, "base.yaml", "scheduler: vertex\n")
    _append(project, "dev.yaml", TRAINING_SCHEDULE.replace("pipelines:\n  training:\n", ""))
    recording_server.route("GET", SCHEDULES, (200, {}))
    recording_server.route("POST", SCHEDULES, (200, {"name": "x"}))
    config = load_config(project, "dev")
    steps = scheduling.plan_schedules(project, config, RELEASE, None, "create", None, {})
    execute(steps, out=io.StringIO())
    _, create = recording_server.requests
    assert create.json["cron"] == "TZ=Europe/Paris 30 5 * * MON-FRI"
    values = create.json["createPipelineJobRequest"]["pipelineJob"]["runtimeConfig"][
        "parameterValues"
    ]
    # The environment's values (n: 5 in dev.yaml), the schedule's own (label), the defaults.
    assert values["label"] == "nightly" and values["n"] == 5


# --- through the project's CLI ------------------------------------------------------------


def test_invoke_schedule_dry_run_and_apply(
    scheduled: Path, recording_server: RecordingServer
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VERTEXKIT")}
    env.update(VERTEXKIT_ENDPOINT_CLOUDSCHEDULER=recording_server.url, VERTEXKIT_NO_AUTH="1")
    recording_server.route("GET", JOB, (404, {"error": {"code": 404, "message": "NOT_FOUND"}}))
    recording_server.route("POST", JOBS, lambda request: (200, request.json))

    def schedule(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "invoke", "schedule", "--env", "dev", *args],
            cwd=scheduled,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    shown = schedule("--dry-run", "--json")
    assert shown.returncode == 0, shown.stderr
    planned = json.loads(shown.stdout)
    assert [step["step"] for step in planned] == [
        "find Cloud Scheduler job demo-training-dev",
        "create Cloud Scheduler job demo-training-dev",
    ]
    assert recording_server.requests == []  # a dry run sends nothing
    applied = schedule()
    assert applied.returncode == 0, applied.stderr
    sent = recording_server.requests[1]
    assert (sent.method, recording_server.url + sent.path) == ("POST", planned[1]["url"])
    assert sent.json == planned[1]["body"]
