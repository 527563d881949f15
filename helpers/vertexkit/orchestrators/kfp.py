"""Kubeflow Pipelines on any Kubernetes cluster as the orchestrator (``orchestrator: kfp``).

The same compiled pipelines that run on Vertex AI Pipelines are published to a self-managed KFP
cluster and run there, through the KFP v2beta1 REST API that ``kfp.Client`` (kfp 2.17) speaks:

* publish: find the pipeline by name; upload it the first time (``POST
  /apis/v2beta1/pipelines/upload``, which also creates a first version named like the
  pipeline); then upload the release as a new version (``POST
  /apis/v2beta1/pipelines/upload_version``). Names and descriptions travel in the query string,
  the YAML in the multipart field ``uploadfile``, as in ``kfp_server_api``.
* run: find or create the environment's experiment (``GET``/``POST /apis/v2beta1/experiments``),
  then ``POST /apis/v2beta1/runs`` with a ``pipeline_version_reference`` and the typed
  ``runtime_config.parameters``.

The requests are built here, shown by dry runs and sent by this module; tests check that they
are the requests ``kfp.Client`` itself sends for the same operations (``upload_pipeline``,
``upload_pipeline_version``, ``create_experiment``, ``run_pipeline``). ``kfp.Client`` is not
called at run time: its constructor calls ``/apis/v2beta1/healthz`` (retrying five times with
five-second sleeps), reads and may write ``~/.config/kfp/context.json``, falls back to kube
config, in-cluster or Google credentials on its own, and offers no dry run.

Steps are ordinary :class:`vertexkit.steps.HttpStep` requests with a bearer token (or no
authorisation), never Google credentials, which must not reach a third-party host; the
multipart field is ``uploadfile``, as KFP expects.

Authentication: ``kfp.token_env`` names an environment variable that holds a bearer token, sent
as ``Authorization: Bearer ...`` (what ``kfp.Client(existing_token=...)`` sends). The config
never holds the token itself. ``VERTEXKIT_ENDPOINT_KFP`` redirects every request to another
host, as ``VERTEXKIT_ENDPOINT_<SERVICE>`` does for Google services.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import quote, quote_plus, urlencode

from vertexkit.orchestrators.base import Orchestrator, Run, RunState, follow_tasks
from vertexkit.project.config import ProjectConfig
from vertexkit.project.release import LATEST, Release
from vertexkit.project.settings import KfpSettings, host_problem
from vertexkit.steps import (
    CloudError,
    Found,
    HttpStep,
    Responses,
    Sender,
    Step,
    placeholder,
    substitute,
)

API = "/apis/v2beta1"
UPLOAD_FIELD = "uploadfile"
ENDPOINT_ENV = "VERTEXKIT_ENDPOINT_KFP"
# v2beta1 RuntimeState values that end a run (kfp.Client waits for the same ones).
TERMINAL_STATES = frozenset({"SUCCEEDED", "SKIPPED", "FAILED", "CANCELED"})
# Filter operations, as kfp.client.client._FILTER_OPERATIONS numbers them.
EQUALS = 1
IS_SUBSTRING = 9


class KfpError(CloudError):
    """The KFP host refused a request or answered something unexpected."""


# ---------------------------------------------------------------------------------------------
# Names


def api_base(settings: KfpSettings, environ: Mapping[str, str] | None = None) -> str:
    """The KFP host requests go to: ``VERTEXKIT_ENDPOINT_KFP`` if set, else ``kfp.host``."""
    environ = os.environ if environ is None else environ
    if override := environ.get(ENDPOINT_ENV):
        if problem := host_problem(override):
            raise ValueError(f"environment variable {ENDPOINT_ENV}: {problem}")
        return override.rstrip("/")
    return settings.host


def pipeline_name(project: str, pipeline: str, environment: str) -> str:
    """The KFP pipeline of ``pipeline`` in an environment; unique on a shared cluster."""
    return f"{project}-{pipeline}-{environment}"


def experiment_name(settings: KfpSettings, project: str, environment: str) -> str:
    return settings.experiment or f"{project}-{environment}"


def _stamp(now: datetime) -> str:
    return f"{now.astimezone(timezone.utc):%Y%m%d%H%M%S}"


def version_name(commit: str, now: datetime) -> str:
    """A pipeline version: the release commit and a UTC timestamp (KFP refuses duplicate names,
    and a commit may be published more than once, e.g. after rebuilding its image)."""
    if not re.match(r"^[0-9A-Za-z._-]+$", commit or ""):
        raise ValueError(f"invalid commit {commit!r} for a pipeline version name")
    return f"{commit}-{_stamp(now)}"


def run_name(pipeline: str, now: datetime) -> str:
    return f"{pipeline}-{_stamp(now)}"


def run_url(settings: KfpSettings, run_id: str) -> str:
    """The run in the KFP UI (the link kfp.Client prints; assumes the UI shares the host)."""
    return f"{api_base(settings)}/#/runs/details/{run_id}"


# ---------------------------------------------------------------------------------------------
# Requests as steps


def _request(settings: KfpSettings, step: str, *, url: str, **options: Any) -> HttpStep:
    """A request to the KFP API: the settings' bearer token (or none), no redirects, JSON."""
    auth = "bearer" if settings.token_env else "none"
    return HttpStep(
        step,
        options.pop("method", "GET"),
        url,
        auth=auth,
        token_env=settings.token_env,
        token_help=(
            f"e.g. `export {settings.token_env}=$(kubectl create token SERVICE_ACCOUNT -n "
            "NAMESPACE --audience=pipelines.kubeflow.org)`, or `$(gcloud auth "
            "print-identity-token)` behind IAP (kfp.token_env names the variable)"
        ),
        auth_hint=_auth_hint(settings.token_env),
        upload_field=UPLOAD_FIELD,
        expect_json=True,
        follow_redirects=False,
        **options,
    )


def _auth_hint(token_env: str | None) -> str:
    if token_env:
        return (
            f"(the bearer token in {token_env} was refused: is it valid, unexpired and for this "
            "host? On a multi-user cluster, is kfp.namespace a profile you can use?)"
        )
    return (
        "(the host wants credentials: name the environment variable that holds a bearer token "
        "in kfp.token_env)"
    )


def _quote(
    value: Any, safe: str = "", encoding: str | None = None, errors: str | None = None
) -> str:
    """urlencode's quoting (quote_plus, as kfp_server_api's), leaving placeholders readable."""
    if isinstance(value, str) and value.startswith("<from "):
        return value
    return quote_plus(value, safe, encoding, errors)


def _url(base: str, path: str, query: Mapping[str, Any] | None = None) -> str:
    params = {k: v for k, v in (query or {}).items() if v is not None}
    url = f"{base}{API}{path}"
    return f"{url}?{urlencode(params, quote_via=_quote)}" if params else url


def _filter(key: str, value: str, operation: int = EQUALS) -> str:
    """A v2beta1 Filter as kfp.Client serialises it (json.dumps, numeric operation)."""
    return json.dumps({"predicates": [{"operation": operation, "key": key, "stringValue": value}]})


def _one(kind: str, name: str, items_key: str) -> Callable[[Any], Any]:
    """Extract the single resource a by-name lookup found, or None."""

    def pick(answer: Any) -> Any:
        items = (answer.get(items_key) or []) if isinstance(answer, dict) else []
        if len(items) > 1:
            raise KfpError(f"{len(items)} {kind}s are named {name!r}; names must be unique")
        return items[0] if items else None

    return pick


def _required(responses: Responses, step: str, key: str) -> str:
    answer = responses.get(step)
    if not isinstance(answer, dict) or not answer.get(key):
        raise KfpError(f"no {key} in the answer of step {step!r}: {answer!r}")
    return str(answer[key])


# ---------------------------------------------------------------------------------------------
# Plans


def plan_find_pipeline(settings: KfpSettings, pipeline: str, full_name: str) -> HttpStep:
    """Look a pipeline up by name (what kfp.Client.get_pipeline_id sends, plus the namespace)."""
    url = _url(
        api_base(settings),
        "/pipelines",
        {"filter": _filter("display_name", full_name), "namespace": settings.namespace},
    )
    return _request(
        settings,
        f"find pipeline {pipeline}",
        url=url,
        extract=_one("pipeline", full_name, "pipelines"),
    )


def plan_publish(
    settings: KfpSettings,
    templates: Mapping[str, str | Path],
    version: str,
    *,
    project: str,
    environment: str,
    description: str | None = None,
    compiled_earlier: bool = True,
) -> list[Step]:
    """Per compiled template (pipeline name -> YAML path): find the KFP pipeline, upload it if
    it is missing, then upload the template as version ``version``.

    ``compiled_earlier=False`` is for plans that compile first (deploy): the files are then
    checked when the upload is sent, not when it is planned.
    """
    if not version:
        raise ValueError("a pipeline version needs a name")
    for name, path in templates.items():
        if compiled_earlier and not Path(path).is_file():
            raise ValueError(f"no compiled template for {name!r} at {path}: compile it first")
    base = api_base(settings)
    steps: list[Step] = []
    for name, path in templates.items():
        full = pipeline_name(project, name, environment)
        find = plan_find_pipeline(settings, name, full)
        ensure_step = f"ensure pipeline {name}"

        def upload_if_missing(
            step: HttpStep, responses: Responses, find_step: str = find.step
        ) -> HttpStep | Found:
            found = responses.get(find_step)
            return Found(found) if found else replace(step, resolve=None)

        ensure = _request(
            settings,
            ensure_step,
            method="POST",
            url=_url(base, "/pipelines/upload", {"name": full, "namespace": settings.namespace}),
            upload=str(path),
            when=f"only if {find.step!r} finds none; creates {full!r} with a first version",
            resolve=upload_if_missing,
        )
        marker = placeholder(ensure_step, "pipeline_id")
        query = {"name": version, "pipelineid": marker, "description": description}

        def with_pipeline_id(
            step: HttpStep,
            responses: Responses,
            source: str = ensure_step,
            query: dict[str, Any] = query,
        ) -> HttpStep:
            pipeline_id = _required(responses, source, "pipeline_id")
            url = _url(base, "/pipelines/upload_version", {**query, "pipelineid": pipeline_id})
            return replace(step, url=url, resolve=None)

        upload = _request(
            settings,
            f"upload version {name}",
            method="POST",
            url=_url(base, "/pipelines/upload_version", query),
            upload=str(path),
            resolve=with_pipeline_id,
        )
        steps += [find, ensure, upload]
    return steps


def plan_experiment(settings: KfpSettings, experiment: str) -> list[Step]:
    """Find the experiment by name, create it if missing (as kfp.Client.create_experiment)."""
    base = api_base(settings)
    query = {"filter": _filter("display_name", experiment), "namespace": settings.namespace}
    find = _request(
        settings,
        "find experiment",
        url=_url(base, "/experiments", query),
        extract=_one("experiment", experiment, "experiments"),
    )
    body: dict[str, Any] = {"display_name": experiment}
    if settings.namespace:
        body["namespace"] = settings.namespace

    def create_if_missing(step: HttpStep, responses: Responses) -> HttpStep | Found:
        found = responses.get(find.step)
        return Found(found) if found else replace(step, resolve=None)

    ensure = _request(
        settings,
        "ensure experiment",
        method="POST",
        url=_url(base, "/experiments"),
        body=body,
        when="only if 'find experiment' finds none",
        resolve=create_if_missing,
    )
    return [find, ensure]


def plan_version_lookup(
    settings: KfpSettings, pipeline: str, commit: str, *, project: str, environment: str
) -> list[Step]:
    """Find the newest version of ``pipeline`` published from ``commit`` (runs without publish);
    ``latest``: the newest version, whatever its commit (as the tag ``latest`` on Vertex AI)."""
    full = pipeline_name(project, pipeline, environment)
    find = plan_find_pipeline(settings, pipeline, full)
    base = api_base(settings)
    query: dict[str, Any] = {"page_size": 1, "sort_by": "created_at desc"}
    if commit != LATEST:
        query["filter"] = _filter("display_name", f"{commit}-", IS_SUBSTRING)
    marker = placeholder(find.step, "pipeline_id")
    advice = f"publish it first: invoke publish --env {environment}"

    def in_pipeline(step: HttpStep, responses: Responses) -> HttpStep:
        found = responses.get(find.step)
        if not found:
            raise KfpError(f"no pipeline {full!r} on {base}: {advice}")
        pipeline_id = quote(str(found["pipeline_id"]), safe="")
        url = _url(base, f"/pipelines/{pipeline_id}/versions", query)
        return replace(step, url=url, resolve=None)

    def newest(answer: Any) -> Any:
        versions = (answer or {}).get("pipeline_versions") or []
        if not versions:
            raise KfpError(
                f"pipeline {full!r} on {base} has no version"
                + ("" if commit == LATEST else f" from commit {commit}")
                + f": {advice}"
            )
        return versions[0]

    lookup = _request(
        settings,
        f"find version {pipeline}",
        url=_url(base, f"/pipelines/{marker}/versions", query),
        resolve=in_pipeline,
        extract=newest,
    )
    return [find, lookup]


def plan_run(
    settings: KfpSettings,
    pipeline: str,
    *,
    display_name: str,
    parameters: Mapping[str, Any],
    version_step: str | None = None,
    experiment_step: str = "ensure experiment",
) -> HttpStep:
    """The request that creates one run of a pipeline version (as kfp.Client.run_pipeline).

    The experiment and the version come from earlier steps: ``experiment_step`` answers an
    experiment, ``version_step`` (default ``upload version <pipeline>``) a pipeline version.
    """
    version_step = version_step or f"upload version {pipeline}"
    body = {
        "experiment_id": placeholder(experiment_step, "experiment_id"),
        "display_name": display_name,
        "pipeline_version_reference": {
            "pipeline_id": placeholder(version_step, "pipeline_id"),
            "pipeline_version_id": placeholder(version_step, "pipeline_version_id"),
        },
        "runtime_config": {"parameters": dict(parameters)},
    }

    def with_ids(step: HttpStep, responses: Responses) -> HttpStep:
        values = {
            placeholder(experiment_step, "experiment_id"): _required(
                responses, experiment_step, "experiment_id"
            ),
            placeholder(version_step, "pipeline_id"): _required(
                responses, version_step, "pipeline_id"
            ),
            placeholder(version_step, "pipeline_version_id"): _required(
                responses, version_step, "pipeline_version_id"
            ),
        }
        resolved = dict(step.body)
        resolved["experiment_id"] = values[body["experiment_id"]]
        resolved["pipeline_version_reference"] = substitute(
            step.body["pipeline_version_reference"], values
        )
        return replace(step, body=resolved, resolve=None)

    return _request(
        settings,
        f"create run {pipeline}",
        method="POST",
        url=_url(api_base(settings), "/runs"),
        body=body,
        resolve=with_ids,
    )


def plan_submit(
    settings: KfpSettings,
    pipeline: str,
    *,
    project: str,
    environment: str,
    parameters: Mapping[str, Any],
    commit: str | None = None,
    now: datetime | None = None,
    display_name: str | None = None,
) -> list[Step]:
    """Experiment, then a run. With ``commit`` the run uses the newest version published from
    that commit (``invoke run --env``); without, the version uploaded earlier in the same plan
    (``invoke deploy``)."""
    steps = plan_experiment(settings, experiment_name(settings, project, environment))
    version_step = None
    if commit:
        lookup = plan_version_lookup(
            settings, pipeline, commit, project=project, environment=environment
        )
        steps += lookup
        version_step = lookup[-1].step
    display = display_name or run_name(pipeline, now or datetime.now(timezone.utc))
    steps.append(
        plan_run(
            settings,
            pipeline,
            display_name=display,
            parameters=parameters,
            version_step=version_step,
        )
    )
    return steps


def submitted_run(responses: Responses) -> dict[str, Any] | None:
    """The run a plan created (the answer of its ``create run`` step), or None."""
    for step, answer in responses.items():
        if step.startswith("create run ") and isinstance(answer, dict) and answer.get("run_id"):
            return answer
    return None


def plan_status(settings: KfpSettings, experiment: str, limit: int = 10) -> list[Step]:
    """The newest runs of the environment's experiment."""
    find, _ = plan_experiment(settings, experiment)
    base = api_base(settings)
    query = {
        "namespace": settings.namespace,
        "experiment_id": placeholder(find.step, "experiment_id"),
        "page_size": limit,
        "sort_by": "created_at desc",
    }

    def in_experiment(step: HttpStep, responses: Responses) -> HttpStep | Found:
        found = responses.get(find.step)
        if not found:
            return Found({"runs": []})
        url = _url(base, "/runs", {**query, "experiment_id": found["experiment_id"]})
        return replace(step, url=url, resolve=None)

    runs = _request(
        settings,
        "list runs",
        url=_url(base, "/runs", query),
        resolve=in_experiment,
    )
    return [find, runs]


def _state(item: Mapping[str, Any]) -> str:
    return str(item.get("state") or "?").lower()


def render_status(
    settings: KfpSettings, answer: Mapping[str, Any] | None, experiment: str = ""
) -> str:
    runs = (answer or {}).get("runs") or []
    if not runs:
        where = f"experiment {experiment!r} on " if experiment else ""
        return f"no pipeline runs in {where}{api_base(settings)}"
    lines = []
    for run in runs:
        run_id = run.get("run_id", "?")
        created = str(run.get("created_at", ""))[:19].replace("T", " ")
        lines.append(
            f"{run_id:<38} {_state(run):<10} {created}  {run.get('display_name', '')}  "
            f"{run_url(settings, run_id)}"
        )
    return "\n".join(lines)


def plan_read_run(settings: KfpSettings, run_id: str) -> HttpStep:
    url = _url(api_base(settings), f"/runs/{quote(run_id, safe='')}")
    return _request(settings, "read run", url=url)


def _tasks(run: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The run's tasks, without the root DAG (named like the run, or ``root``)."""
    tasks = (run.get("run_details") or {}).get("task_details") or []
    skip = {"", "root", run.get("display_name")}
    return [t for t in tasks if t.get("display_name", "") not in skip]


def render_logs(settings: KfpSettings, run: Mapping[str, Any]) -> str:
    """A run's state, errors and task states, with where to read the full logs."""
    run_id = run.get("run_id", "?")
    lines = [f"{run_id}: {_state(run)}"]
    if message := (run.get("error") or {}).get("message"):
        lines.append(f"  error: {message}")
    for task in _tasks(run):
        lines.append(f"  {task.get('display_name', '?'):<28} {_state(task)}")
        if message := (task.get("error") or {}).get("message"):
            lines.append(f"    {message}")
        if pod := task.get("pod_name"):
            lines.append(f"    pod: {pod}")
    lines.append(f"  ui: {run_url(settings, run_id)}")
    lines.append("  logs: kubectl logs <pod> -c main (in the namespace the runs execute in)")
    return "\n".join(lines)


def wait(
    settings: KfpSettings,
    run_id: str,
    sender: Sender | None = None,
    *,
    out: TextIO | None = None,
    poll_seconds: float = 20.0,
    timeout_seconds: float = 24 * 3600,
) -> dict[str, Any]:
    """Follow a run's task states until the run ends; return the final run."""
    return follow_tasks(
        replace(plan_read_run(settings, run_id), step="follow run"),
        tasks=lambda run: [(t.get("display_name", "?"), _state(t)) for t in _tasks(run)],
        finished=lambda run: str(run.get("state", "")).upper() in TERMINAL_STATES,
        sender=sender,
        out=out,
        poll_seconds=poll_seconds,
        timeout_seconds=timeout_seconds,
    )


# KFP v2beta1 RuntimeState, normalised.
RUN_STATES: dict[str, RunState] = {
    "PENDING": "pending",
    "RUNNING": "running",
    "PAUSED": "running",
    "CANCELING": "running",
    "SUCCEEDED": "succeeded",
    "SKIPPED": "succeeded",
    "FAILED": "failed",
    "CANCELED": "cancelled",
}


class KubeflowPipelines(Orchestrator):
    """A Kubeflow Pipelines cluster, through its v2beta1 REST API (the config's ``kfp:``)."""

    name = "kfp"
    title = "Kubeflow Pipelines"
    supports_schedules = False

    def __init__(self, config: ProjectConfig, *, now: Callable[[], datetime] | None = None) -> None:
        super().__init__(config)
        if config.kfp is None:
            raise ValueError(
                f"orchestrator kfp needs a kfp: section (host, ...) in config/base.yaml or "
                f"config/{config.environment}.yaml"
            )
        self.settings: KfpSettings = config.kfp
        self._now = now or (lambda: datetime.now(timezone.utc))

    @property
    def experiment(self) -> str:
        return experiment_name(self.settings, self.config.name, self.config.environment)

    def plan_publish(
        self, templates: Mapping[str, Path], release: Release, *, compiled_earlier: bool = True
    ) -> list[Step]:
        return plan_publish(
            self.settings,
            templates,
            version_name(release.commit, self._now()),
            project=self.config.name,
            environment=self.config.environment,
            description=f"commit {release.commit} (tags: {', '.join(release.tags)})",
            compiled_earlier=compiled_earlier,
        )

    def published(self, responses: Responses) -> list[str]:
        lines = []
        for step, answer in responses.items():
            if step.startswith("upload version ") and isinstance(answer, dict):
                lines.append(
                    f"published {step.removeprefix('upload version ')} as version "
                    f"{answer.get('display_name', '?')} ({answer.get('pipeline_version_id', '?')})"
                    f" on {api_base(self.settings)}"
                )
        return lines

    def plan_find_published(
        self, pipeline: str, release: Release, *, template_name: str
    ) -> list[Step]:
        return plan_version_lookup(
            self.settings,
            pipeline,
            release.commit,
            project=self.config.name,
            environment=self.config.environment,
        )

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
        if labels:
            raise ValueError("Kubeflow Pipelines runs carry no labels")
        return plan_submit(
            self.settings,
            pipeline,
            project=self.config.name,
            environment=self.config.environment,
            parameters=parameters,
            commit=None if published_in_plan else release.commit,
            now=self._now(),
            display_name=display_name,
        )

    def submitted(self, responses: Responses) -> Run | None:
        answer = submitted_run(responses)
        return self._run(answer) if answer else None

    def follow(
        self,
        run_id: str,
        *,
        sender: Sender | None = None,
        out: TextIO | None = None,
        poll_seconds: float = 20.0,
    ) -> Run:
        return self._run(wait(self.settings, run_id, sender, out=out, poll_seconds=poll_seconds))

    def plan_list_runs(self, limit: int = 10) -> list[Step]:
        return plan_status(self.settings, self.experiment, limit)

    def runs(self, responses: Responses) -> list[Run]:
        return [self._run(run) for run in (responses.get("list runs") or {}).get("runs") or []]

    def render_runs(self, responses: Responses) -> str:
        return render_status(self.settings, responses.get("list runs"), self.experiment)

    def plan_read_run(self, run_id: str) -> list[Step]:
        return [plan_read_run(self.settings, run_id)]

    def run(self, responses: Responses) -> Run:
        return self._run(responses["read run"])

    def render_run(self, responses: Responses) -> str:
        return render_logs(self.settings, responses["read run"])

    def run_url(self, run_id: str) -> str:
        return run_url(self.settings, run_id)

    def _run(self, run: Mapping[str, Any]) -> Run:
        run_id = str(run.get("run_id", "?"))
        state = str(run.get("state", "")).upper()
        return Run(
            run_id=run_id,
            state=RUN_STATES.get(state, "unknown"),
            backend_state=state,
            display_name=str(run.get("display_name", "")),
            created=str(run.get("created_at", "")),
            url=run_url(self.settings, run_id),
            name=run_id,
        )
