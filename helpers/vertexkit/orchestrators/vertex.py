"""Vertex AI Pipelines as the orchestrator (``orchestrator: vertex``).

Templates are published to the environment's Artifact Registry KFP repository
(:mod:`vertexkit.orchestrators.vertex_templates`); runs are PipelineJobs that run as the pipeline
service account, labelled with the environment and the commit, and filed in the environment's
Vertex AI Experiment; schedules are Vertex AI schedules found again by display name.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import quote

import vertexkit
from vertexkit.orchestrators import vertex_templates
from vertexkit.orchestrators.base import Orchestrator, Run, RunState, follow_tasks
from vertexkit.project.config import ProjectConfig
from vertexkit.project.release import Release
from vertexkit.steps import CloudError, HttpStep, Responses, Sender, Step, endpoint, placeholder

TERMINAL_STATES = {
    "PIPELINE_STATE_SUCCEEDED",
    "PIPELINE_STATE_FAILED",
    "PIPELINE_STATE_CANCELLED",
}
_LABEL_VALUE = re.compile(r"[^a-z0-9_-]")
_CRON_FIELD = re.compile(r"^[0-9A-Za-z*/,?#LW-]+$")


def check_cron(cron: str) -> str:
    """A Vertex AI schedule cron: five fields, optionally after ``TZ=Area/City``."""
    fields = cron.split()
    if fields and fields[0].startswith(("TZ=", "CRON_TZ=")):
        fields = fields[1:]
    if len(fields) != 5 or not all(_CRON_FIELD.match(f) for f in fields):
        raise ValueError(
            f"--cron {cron!r} is not a cron expression: five fields (minute hour day-of-month "
            "month day-of-week), optionally after TZ=Area/City, e.g. 'TZ=Europe/Paris 0 6 * * 1'"
        )
    return cron


def parent(config: ProjectConfig) -> str:
    return f"projects/{config.gcp.project_id}/locations/{config.gcp.region}"


def api(config: ProjectConfig) -> str:
    """Base URL of the Vertex AI v1 API for the environment's project and region."""
    base = endpoint("aiplatform", config.gcp.region, config.endpoints)
    return f"{base}/v1/{parent(config)}"


def label_value(text: str) -> str:
    """A Google label value: lowercase letters, digits, '_' and '-', at most 63 characters."""
    return _LABEL_VALUE.sub("-", text.lower())[:63]


def job_id(pipeline_name: str, now: datetime) -> str:
    """A unique, valid PipelineJob id: the pipeline name and a UTC timestamp."""
    stem = label_value(pipeline_name).replace("_", "-")[:100].strip("-")
    return f"{stem}-{now.astimezone(timezone.utc):%Y%m%d%H%M%S}"


def pipeline_job(
    config: ProjectConfig,
    *,
    display_name: str,
    template_uri: str,
    parameter_values: Mapping[str, Any],
    git_commit: str,
    pipeline: str | None = None,
    labels: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The PipelineJob resource: template, runtime config, service account, labels.

    ``labels`` come first, so that vertexkit's own (environment, commit ...) win.
    """
    return {
        "displayName": display_name,
        "templateUri": template_uri,
        "runtimeConfig": {
            "gcsOutputDirectory": config.names.pipeline_root,
            "parameterValues": dict(parameter_values),
        },
        "serviceAccount": config.names.pipeline_service_account,
        "labels": {
            **(labels or {}),
            "vertexkit-version": label_value(vertexkit.__version__.replace(".", "-")),
            "git-commit": label_value(git_commit),
            "environment": label_value(config.environment),
            "pipeline": label_value(pipeline or display_name),
        },
    }


def plan_run(
    config: ProjectConfig,
    pipeline_name: str,
    *,
    template_uri: str,
    parameter_values: Mapping[str, Any],
    git_commit: str,
    now: datetime | None = None,
    labels: Mapping[str, str] | None = None,
    display_name: str | None = None,
) -> HttpStep:
    """The request that submits one run of ``pipeline_name``."""
    run_id = job_id(pipeline_name, now or datetime.now(timezone.utc))
    body = pipeline_job(
        config,
        display_name=display_name or pipeline_name,
        template_uri=template_uri,
        parameter_values=parameter_values,
        git_commit=git_commit,
        pipeline=pipeline_name,
        labels=labels,
    )
    url = f"{api(config)}/pipelineJobs?pipelineJobId={run_id}"
    return HttpStep(f"submit {pipeline_name}", "POST", url, body)


def console_url(config: ProjectConfig, run_id: str) -> str:
    return (
        f"https://console.cloud.google.com/vertex-ai/locations/{config.gcp.region}"
        f"/pipelines/runs/{run_id}?project={config.gcp.project_id}"
    )


def wait(
    config: ProjectConfig,
    job_name: str,
    sender: Sender | None = None,
    *,
    out: TextIO | None = None,
    poll_seconds: float = 20.0,
    timeout_seconds: float = 24 * 3600,
) -> dict[str, Any]:
    """Follow a pipeline job's task states until it ends; return the final job."""
    base = endpoint("aiplatform", config.gcp.region, config.endpoints)

    def tasks(job: Mapping[str, Any]) -> list[tuple[str, str]]:
        details = job.get("jobDetail", {}).get("taskDetails", [])
        return [
            (task.get("taskName", "?"), task.get("state", "?").lower())
            for task in details
            if task.get("taskName") != job.get("displayName")  # the pipeline itself
        ]

    return follow_tasks(
        HttpStep("follow run", "GET", f"{base}/v1/{job_name}"),
        tasks=tasks,
        finished=lambda job: job.get("state") in TERMINAL_STATES,
        sender=sender,
        out=out,
        poll_seconds=poll_seconds,
        timeout_seconds=timeout_seconds,
    )


def plan_status(
    config: ProjectConfig, limit: int = 10, labels: Mapping[str, str] | None = None
) -> HttpStep:
    """The environment's latest runs (those labelled with it when submitted), with ``labels``
    too when given."""
    wanted = {**(labels or {}), "environment": label_value(config.environment)}
    label = quote(" AND ".join(f'labels.{key}="{value}"' for key, value in wanted.items()))
    url = f"{api(config)}/pipelineJobs?filter={label}&orderBy=create_time%20desc&pageSize={limit}"
    return HttpStep("list runs", "GET", url)


def render_status(config: ProjectConfig, answer: Mapping[str, Any] | None) -> str:
    jobs = (answer or {}).get("pipelineJobs", [])
    if not jobs:
        return f"no pipeline runs in {parent(config)}"
    lines = []
    for job in jobs:
        run_id = job["name"].rsplit("/", 1)[-1]
        state = job.get("state", "?").removeprefix("PIPELINE_STATE_").lower()
        created = job.get("createTime", "")[:19].replace("T", " ")
        lines.append(f"{run_id:<48} {state:<10} {created}  {console_url(config, run_id)}")
    return "\n".join(lines)


def plan_job(config: ProjectConfig, run_id: str) -> HttpStep:
    return HttpStep("read run", "GET", f"{api(config)}/pipelineJobs/{run_id}")


def render_logs(config: ProjectConfig, job: Mapping[str, Any]) -> str:
    """Task states and errors of one run, with where to read the full logs."""
    run_id = job["name"].rsplit("/", 1)[-1]
    lines = [f"{run_id}: {job.get('state', '?').removeprefix('PIPELINE_STATE_').lower()}"]
    if error := job.get("error", {}).get("message"):
        lines.append(f"  error: {error}")
    for task in job.get("jobDetail", {}).get("taskDetails", []):
        if task.get("taskName") == job.get("displayName"):
            continue  # the pipeline itself, whose state is the run's
        state = task.get("state", "?").lower()
        lines.append(f"  {task.get('taskName', '?'):<28} {state}")
        if message := task.get("error", {}).get("message"):
            lines.append(f"    {message}")
    query = quote(
        'resource.type="aiplatform.googleapis.com/PipelineJob" '
        f'resource.labels.pipeline_job_id="{run_id}"'
    )
    lines.append(f"  console: {console_url(config, run_id)}")
    lines.append(
        f"  logs: https://console.cloud.google.com/logs/query;query={query}"
        f"?project={config.gcp.project_id}"
    )
    return "\n".join(lines)


def schedule_name(config: ProjectConfig, pipeline_name: str) -> str:
    """Schedules are found again by this display name, which makes create idempotent."""
    return f"{config.name}-{pipeline_name}-{config.environment}"


def plan_schedule_lookup(config: ProjectConfig, pipeline_name: str) -> HttpStep:
    display = schedule_name(config, pipeline_name)
    url = f"{api(config)}/schedules?filter=display_name%3D%22{display}%22"
    return HttpStep("find schedule", "GET", url)


def plan_schedule_upsert(
    config: ProjectConfig, pipeline_name: str, cron: str, job: Mapping[str, Any]
) -> HttpStep:
    """Create the schedule, or update it when the lookup step found one by name."""
    body = {
        "displayName": schedule_name(config, pipeline_name),
        "cron": check_cron(cron),
        "maxConcurrentRunCount": 1,
        "createPipelineJobRequest": {"parent": parent(config), "pipelineJob": dict(job)},
    }

    def create_or_update(step: HttpStep, responses: Responses) -> HttpStep:
        found = (responses.get("find schedule") or {}).get("schedules", [])
        if not found:
            return step.with_body(step.body)
        base = endpoint("aiplatform", config.gcp.region, config.endpoints)
        url = f"{base}/v1/{found[0]['name']}?updateMask=cron,createPipelineJobRequest"
        return HttpStep("update schedule", "PATCH", url, body)

    return HttpStep(
        "create schedule", "POST", f"{api(config)}/schedules", body, resolve=create_or_update
    )


def plan_schedule_action(config: ProjectConfig, pipeline_name: str, action: str) -> HttpStep:
    """Pause, resume or delete the schedule the lookup step found."""
    if action not in {"pause", "resume", "delete"}:
        raise ValueError(f"unknown schedule action {action!r}: pause, resume or delete")
    marker = placeholder("find schedule", "schedule name")
    base = endpoint("aiplatform", config.gcp.region, config.endpoints)
    method, suffix = ("DELETE", "") if action == "delete" else ("POST", f":{action}")

    def named(step: HttpStep, responses: Responses) -> HttpStep:
        found = (responses.get("find schedule") or {}).get("schedules", [])
        if not found:
            raise CloudError(
                f"no schedule named {schedule_name(config, pipeline_name)!r} in "
                f"{parent(config)}: create it with `invoke schedule --env "
                f"{config.environment} --pipeline {pipeline_name} --cron '...'`"
            )
        return HttpStep(step.step, method, f"{base}/v1/{found[0]['name']}{suffix}")

    return HttpStep(f"{action} schedule", method, f"{base}/v1/{marker}{suffix}", resolve=named)


def experiment_name(config: ProjectConfig) -> str:
    """The Vertex AI Experiment of an environment's runs: ``<project name>-<environment>``."""
    return label_value(f"{config.name}-{config.environment}").replace("_", "-")[:128]


def plan_experiment(config: ProjectConfig) -> list[HttpStep]:
    """Make sure the metadata store and the environment's experiment exist (409: they do)."""
    stores = f"{api(config)}/metadataStores"
    name = experiment_name(config)
    return [
        HttpStep(
            "ensure metadata store",
            "POST",
            f"{stores}?metadataStoreId=default",
            {},
            ok_statuses=(200, 409),
        ),
        HttpStep(
            "ensure experiment",
            "POST",
            f"{stores}/default/contexts?contextId={name}",
            {
                "displayName": name,
                "schemaTitle": "system.Experiment",
                "schemaVersion": "0.0.1",
                "metadata": {"experiment_deleted": False},
            },
            ok_statuses=(200, 409),
        ),
    ]


def plan_link_experiment(
    config: ProjectConfig,
    submit_step: str,
    *,
    poll_seconds: float = 10.0,
    timeout_seconds: float = 900.0,
) -> HttpStep:
    """Add the submitted run to the environment's experiment, as an experiment run.

    Vertex AI creates the run's metadata context once the run starts, so sending this step
    first waits (bounded) for ``jobDetail.pipelineRunContext`` to appear.
    """
    marker = placeholder(submit_step, "pipeline run context")
    context = f"{api(config)}/metadataStores/default/contexts/{experiment_name(config)}"

    def with_run_context(step: HttpStep, responses: Responses) -> HttpStep:
        job_name = (responses.get(submit_step) or {}).get("name")
        if not job_name:
            raise CloudError(f"{step.step}: the submit step returned no run name")
        base = endpoint("aiplatform", config.gcp.region, config.endpoints)
        read = HttpStep("read run", "GET", f"{base}/v1/{job_name}")
        sender = Sender()  # resolve callbacks get no sender: this one polls the run
        deadline = time.monotonic() + timeout_seconds
        while True:
            job = sender.send(read)
            run_context = job.get("jobDetail", {}).get("pipelineRunContext", {}).get("name")
            if run_context:
                return step.with_body({"childContexts": [run_context]})
            if job.get("state") in TERMINAL_STATES or time.monotonic() > deadline:
                raise CloudError(
                    f"{step.step}: run {job_name} has no metadata context "
                    f"(state {job.get('state', 'unknown')}); it is not in the experiment"
                )
            time.sleep(poll_seconds)

    return HttpStep(
        "add run to experiment",
        "POST",
        f"{context}:addContextChildren",
        {"childContexts": [marker]},
        resolve=with_run_context,
    )


# Vertex AI's PipelineState, normalised.
RUN_STATES: dict[str, RunState] = {
    "PIPELINE_STATE_QUEUED": "pending",
    "PIPELINE_STATE_PENDING": "pending",
    "PIPELINE_STATE_RUNNING": "running",
    "PIPELINE_STATE_CANCELLING": "running",
    "PIPELINE_STATE_PAUSED": "running",
    "PIPELINE_STATE_SUCCEEDED": "succeeded",
    "PIPELINE_STATE_FAILED": "failed",
    "PIPELINE_STATE_CANCELLED": "cancelled",
}


class VertexPipelines(Orchestrator):
    """Vertex AI Pipelines in the environment's project and region."""

    name = "vertex"
    title = "Vertex AI Pipelines"
    supports_schedules = True
    supports_labels = True

    def plan_publish(
        self, templates: Mapping[str, Path], release: Release, *, compiled_earlier: bool = True
    ) -> list[Step]:
        return list(
            vertex_templates.plan_publish(
                self.config, templates, release.tags, compiled_earlier=compiled_earlier
            )
        )

    def published(self, responses: Responses) -> list[str]:
        lines = []
        for step, answer in responses.items():
            if step.startswith("publish "):
                package, version = vertex_templates.parse_upload_answer(answer)
                uri = vertex_templates.template_uri(self.config, package, version)
                lines.append(f"published {uri}")
        return lines

    def plan_find_published(
        self, pipeline: str, release: Release, *, template_name: str
    ) -> list[Step]:
        advice = f"publish it first: invoke publish --env {self.config.environment}"
        return [vertex_templates.plan_find_tag(self.config, template_name, release.commit, advice)]

    def plan_submit(
        self,
        pipeline: str,
        parameters: Mapping[str, Any],
        release: Release,
        *,
        template_name: str,
        published_in_plan: bool = False,
        labels: Mapping[str, str] | None = None,
        display_name: str | None = None,
    ) -> list[Step]:
        # Published in the plan or before, the template carries the commit as its tag.
        uri = vertex_templates.template_uri(self.config, template_name, release.commit)
        submit = plan_run(
            self.config,
            pipeline,
            template_uri=uri,
            parameter_values=parameters,
            git_commit=release.commit,
            labels=labels,
            display_name=display_name,
        )
        return [
            *plan_experiment(self.config),
            submit,
            plan_link_experiment(self.config, submit.step),
        ]

    def submitted(self, responses: Responses) -> Run | None:
        for answer in responses.values():
            if isinstance(answer, dict) and "/pipelineJobs/" in str(answer.get("name", "")):
                return self._run(answer)
        return None

    def follow(
        self,
        run_id: str,
        *,
        sender: Sender | None = None,
        out: TextIO | None = None,
        poll_seconds: float = 20.0,
    ) -> Run:
        job_name = f"{parent(self.config)}/pipelineJobs/{run_id}"
        return self._run(wait(self.config, job_name, sender, out=out, poll_seconds=poll_seconds))

    def plan_list_runs(self, limit: int = 10) -> list[Step]:
        return [plan_status(self.config, limit)]

    def plan_find_runs(self, labels: Mapping[str, str], limit: int = 10) -> list[Step]:
        return [plan_status(self.config, limit, labels)]

    def runs(self, responses: Responses) -> list[Run]:
        jobs = (responses.get("list runs") or {}).get("pipelineJobs") or []
        return [self._run(job) for job in jobs]

    def render_runs(self, responses: Responses) -> str:
        return render_status(self.config, responses.get("list runs"))

    def plan_read_run(self, run_id: str) -> list[Step]:
        return [plan_job(self.config, run_id)]

    def run(self, responses: Responses) -> Run:
        return self._run(responses["read run"])

    def render_run(self, responses: Responses) -> str:
        return render_logs(self.config, responses["read run"])

    def run_url(self, run_id: str) -> str:
        return console_url(self.config, run_id)

    def plan_schedule(
        self,
        pipeline: str,
        action: str,
        release: Release,
        *,
        template_name: str = "",
        cron: str | None = None,
        parameters: Mapping[str, Any] | None = None,
    ) -> list[Step]:
        lookup = plan_schedule_lookup(self.config, pipeline)
        if action != "create":
            return [lookup, plan_schedule_action(self.config, pipeline, action)]
        if not cron:
            raise ValueError("--cron is required to create or update a schedule")
        job = pipeline_job(
            self.config,
            display_name=pipeline,
            template_uri=vertex_templates.template_uri(
                self.config, template_name or pipeline, release.commit
            ),
            parameter_values=dict(parameters or {}),
            git_commit=release.commit,
        )
        return [lookup, plan_schedule_upsert(self.config, pipeline, cron, job)]

    def _run(self, job: Mapping[str, Any]) -> Run:
        run_id = str(job.get("name", "?")).rsplit("/", 1)[-1]
        state = str(job.get("state", ""))
        return Run(
            run_id=run_id,
            state=RUN_STATES.get(state, "unknown"),
            backend_state=state,
            display_name=str(job.get("displayName", "")),
            created=str(job.get("createTime", "")),
            url=console_url(self.config, run_id),
            name=str(job.get("name", "")),
        )
