"""Schedules of pipelines, as ``invoke schedule --env ENV`` applies them, for either scheduler.

The configuration says what runs when: ``scheduler`` (vertex, cloud-scheduler or none) and
``pipelines.<name>.schedule`` (``cron``, ``timezone``, ``parameters``) in ``config/base.yaml``,
changed per environment by ``config/<env>.yaml``.

* ``vertex``: a Vertex AI schedule per pipeline, through the orchestrator interface
  (:func:`vertexkit.gcp.deploy.plan_schedule`), with the cron ``TZ=<timezone> <cron>``; each run
  gets the parameters ``invoke run --env`` would give, plus the schedule's.
* ``cloud-scheduler``: a Cloud Scheduler job per pipeline (REST v1, created or patched by name),
  publishing ``{"pipeline": NAME, "parameters": {...}}`` (base64 JSON) to the topic of run
  requests, from which Pub/Sub pushes it to the submission service
  (:mod:`vertexkit.gcp.service_infra` provisions the route and the same jobs).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vertexkit.gcp import deploy, service_infra
from vertexkit.local import pipelines as compiling
from vertexkit.project.config import ProjectConfig, ScheduleConfig
from vertexkit.project.release import Release
from vertexkit.project.schedule import cron_problem, timezone_problem
from vertexkit.steps import CloudError, Found, HttpStep, Responses, Step, endpoint

ACTIONS = ("create", "pause", "resume", "delete")
DEFAULT_TIMEZONE = "UTC"
UPDATE_MASK = "description,schedule,timeZone,pubsubTarget,retryConfig"


class ScheduleError(ValueError):
    """The schedules cannot be applied as asked; the message names the setting or option."""


@dataclass(frozen=True)
class Wanted:
    """One schedule to apply: the pipeline, when, and its own parameter values."""

    pipeline: str
    cron: str = ""
    timezone: str = DEFAULT_TIMEZONE
    parameters: Mapping[str, Any] | None = None


def split_cron(text: str) -> tuple[str, str | None]:
    """``TZ=Area/City 0 6 * * 1`` (Vertex AI's form, as --cron took it) -> cron and zone."""
    first, _, rest = text.strip().partition(" ")
    for prefix in ("TZ=", "CRON_TZ="):
        if first.startswith(prefix):
            return rest.strip(), first[len(prefix) :]
    return text.strip(), None


def wanted_schedules(
    config: ProjectConfig, pipeline: str | None, action: str, cron: str | None
) -> list[Wanted]:
    """The schedules ``invoke schedule`` acts on: ``pipeline``'s, or every configured one."""
    if action not in ACTIONS:
        raise ScheduleError(f"unknown schedule action {action!r}: {', '.join(ACTIONS)}")
    if config.scheduler == "none":
        raise ScheduleError(
            f"{config.source_of('scheduler')}: scheduler is none, so nothing runs schedules: set "
            "scheduler to vertex (Vertex AI schedules) or cloud-scheduler (Cloud Scheduler -> "
            "Pub/Sub -> the submission service) to apply pipelines.<name>.schedule"
        )
    env = config.environment
    if pipeline is None:
        if cron:
            raise ScheduleError("--cron changes one schedule: name its pipeline with --pipeline")
        names = service_infra.scheduled_pipelines(config)
        if not names:
            raise ScheduleError(
                f"no schedule in config/base.yaml or config/{env}.yaml: add one to a pipeline, "
                "e.g. pipelines.training.schedule: {cron: '0 6 * * MON', timezone: UTC}, or name "
                "a pipeline with --pipeline NAME and --cron"
            )
        return [_configured(config, name, action) for name in names]
    if cron is None:
        return [_configured(config, pipeline, action)]
    if action != "create":
        raise ScheduleError("give --cron, or one of --pause, --resume, --delete")
    expression, zone = split_cron(cron)
    configured = config.pipeline(pipeline).schedule
    zone = zone or (configured.timezone if configured else DEFAULT_TIMEZONE)
    if problem := cron_problem(expression):
        raise ScheduleError(f"--cron: {problem}")
    if problem := timezone_problem(zone):
        raise ScheduleError(f"--cron TZ=: {problem}")
    parameters = dict(configured.parameters) if configured else {}
    return [Wanted(pipeline, expression, zone, parameters)]


def _configured(config: ProjectConfig, name: str, action: str) -> Wanted:
    schedule: ScheduleConfig | None = config.pipeline(name).schedule
    if schedule is None:
        if action != "create":
            return Wanted(name)  # pausing or deleting needs no configured schedule
        raise ScheduleError(
            f"pipeline {name!r} has no schedule in config/base.yaml or "
            f"config/{config.environment}.yaml: add pipelines.{name}.schedule (cron, timezone), "
            "or give --cron"
        )
    return Wanted(name, schedule.cron, schedule.timezone, dict(schedule.parameters))


def _with_parameters(config: ProjectConfig, wanted: Wanted) -> ProjectConfig:
    """``config`` with the schedule's parameters as the pipeline's own (checked the same way)."""
    if not wanted.parameters:
        return config
    pipeline = config.pipeline(wanted.pipeline)
    merged = pipeline.model_copy(
        update={"parameters": {**pipeline.parameters, **wanted.parameters}}
    )
    return config.model_copy(update={"pipelines": {**config.pipelines, wanted.pipeline: merged}})


def plan_schedules(
    project_dir: Path,
    config: ProjectConfig,
    release: Release | None,
    pipeline: str | None,
    action: str,
    cron: str | None,
    overrides: Mapping[str, str],
) -> list[Step]:
    """The steps that create or update (by name), pause, resume or delete the schedules.
    ``release``: the commit whose templates Vertex AI schedules run (None: read it here, only
    when needed)."""
    wanted = wanted_schedules(config, pipeline, action, cron)
    if pipeline is None and overrides:
        raise ScheduleError("--param changes one schedule: name its pipeline with --pipeline")
    steps: list[Step] = []
    for one in wanted:
        if config.scheduler == "vertex":
            release = release or Release.of(project_dir)
            steps += _vertex(project_dir, config, release, one, action, overrides)
        else:
            steps += plan_job(project_dir, config, one, action, overrides)
    return steps


def _vertex(
    project_dir: Path,
    config: ProjectConfig,
    release: Release,
    wanted: Wanted,
    action: str,
    overrides: Mapping[str, str],
) -> list[Step]:
    cron = f"TZ={wanted.timezone} {wanted.cron}" if action == "create" else None
    return deploy.plan_schedule(
        project_dir,
        _with_parameters(config, wanted),
        release,
        wanted.pipeline,
        action,
        cron,
        overrides,
    )


# --- Cloud Scheduler ----------------------------------------------------------------------


def jobs_url(config: ProjectConfig) -> str:
    base = endpoint("cloudscheduler", config.gcp.region, config.endpoints)
    return f"{base}/v1/projects/{config.gcp.project_id}/locations/{config.gcp.region}/jobs"


def job_body(config: ProjectConfig, pipeline: str, wanted: Wanted, data: str) -> dict[str, Any]:
    """The Cloud Scheduler job: the same job Terraform and gcloud provisioning create."""
    return {
        "name": f"projects/{config.gcp.project_id}/locations/{config.gcp.region}/jobs/"
        f"{service_infra.job_name(config, pipeline)}",
        "description": service_infra.job_description(config, pipeline),
        "schedule": wanted.cron,
        "timeZone": wanted.timezone,
        "pubsubTarget": {
            "topicName": service_infra.topic_path(config, service_infra.topic_name(config)),
            "data": data,
        },
        "retryConfig": dict(service_infra.JOB_RETRY),
    }


def message_parameters(
    project_dir: Path, config: ProjectConfig, wanted: Wanted, overrides: Mapping[str, str]
) -> dict[str, Any]:
    """The schedule's parameters and ``--param`` values, checked against the pipeline now
    (names, types, rules), so that a bad value fails here and not at every scheduled run. The
    service adds the environment's configured parameters when it submits the run."""
    pipeline = compiling.load_pipeline(project_dir, wanted.pipeline)
    values = compiling.configured_parameters(
        _with_parameters(config, wanted), wanted.pipeline, pipeline, dict(overrides)
    )
    return {**dict(wanted.parameters or {}), **{key: values[key] for key in overrides}}


def plan_job(
    project_dir: Path,
    config: ProjectConfig,
    wanted: Wanted,
    action: str,
    overrides: Mapping[str, str],
) -> list[Step]:
    """Find the pipeline's job by name; then create or patch it, or pause, resume, delete it."""
    name = service_infra.job_name(config, wanted.pipeline)
    path = f"projects/{config.gcp.project_id}/locations/{config.gcp.region}/jobs/{name}"
    base = endpoint("cloudscheduler", config.gcp.region, config.endpoints)
    find = f"find Cloud Scheduler job {name}"
    lookup = HttpStep(
        find,
        "GET",
        f"{base}/v1/{path}",
        ok_statuses=(200, 404),
        extract=lambda answer: answer if isinstance(answer, dict) and "name" in answer else None,
    )
    if action == "create":
        parameters = message_parameters(project_dir, config, wanted, overrides)
        data = service_infra.job_message(wanted.pipeline, parameters)
        body = job_body(config, wanted.pipeline, wanted, data)
        patch = HttpStep(
            f"update Cloud Scheduler job {name}",
            "PATCH",
            f"{base}/v1/{path}?updateMask={UPDATE_MASK}",
            body,
        )

        def create_or_patch(step: HttpStep, responses: Responses) -> HttpStep | Found:
            return patch if responses.get(find) else step.with_body(step.body)

        create = HttpStep(
            f"create Cloud Scheduler job {name}",
            "POST",
            jobs_url(config),
            body,
            when=f"only if the lookup found no job; otherwise PATCH {path}?updateMask="
            f"{UPDATE_MASK} with this body",
            resolve=create_or_patch,
        )
        return [lookup, create]
    method, suffix = ("DELETE", "") if action == "delete" else ("POST", f":{action}")

    def named(step: HttpStep, responses: Responses) -> HttpStep:
        if not responses.get(find):
            raise CloudError(
                f"no Cloud Scheduler job {name} in projects/{config.gcp.project_id}/locations/"
                f"{config.gcp.region}: create it with `invoke schedule --env "
                f"{config.environment} --pipeline {wanted.pipeline}` (or `invoke provision`)"
            )
        return HttpStep(step.step, step.method, step.url, step.body)

    body = None if action == "delete" else {}
    act = HttpStep(
        f"{action} Cloud Scheduler job {name}",
        method,
        f"{base}/v1/{path}{suffix}",
        body,
        resolve=named,
    )
    return [lookup, act]
