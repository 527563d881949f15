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

Steps are :class:`KfpRequest` objects: ``rest.LocalStep`` subclasses that ``rest.execute`` runs
as it runs any step, and that show (``--dry-run``) and serialise (``--json``) as the exact
request. They are not ``rest.HttpStep`` because ``rest.send`` signs requests with Google
credentials, which must never reach a third-party host, and names the multipart field
``content``, where KFP expects ``uploadfile``.

Authentication: ``kfp.token_env`` names an environment variable that holds a bearer token, sent
as ``Authorization: Bearer ...`` (what ``kfp.Client(existing_token=...)`` sends). The config
never holds the token itself. ``VERTEXKIT_ENDPOINT_KFP`` redirects every request to another
host, as ``VERTEXKIT_ENDPOINT_<SERVICE>`` does for Google services.
"""

from __future__ import annotations

import json
import mimetypes
import os
import re
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import parse_qsl, quote, quote_plus, urlencode, urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

from vertexkit.steps import http as rest

API = "/apis/v2beta1"
UPLOAD_FIELD = "uploadfile"
ENDPOINT_ENV = "VERTEXKIT_ENDPOINT_KFP"
# v2beta1 RuntimeState values that end a run (kfp.Client waits for the same ones).
TERMINAL_STATES = frozenset({"SUCCEEDED", "SKIPPED", "FAILED", "CANCELED"})
# Filter operations, as kfp.client.client._FILTER_OPERATIONS numbers them.
EQUALS = 1
IS_SUBSTRING = 9

HOST_RE = re.compile(
    r"^https?://(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?)(:[0-9]{1,5})?"
    r"(/[^\s?#]*)?$"
)
ENV_VAR_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
NAMESPACE_RE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_HOST_EXAMPLE = "e.g. https://kfp.example.com, or http://localhost:8080 for a port-forward"


def host_problem(value: str) -> str | None:
    """Why ``value`` is not a KFP API host URL, or None. Mirrors copier.yml's ``kfp_host``."""
    if not isinstance(value, str) or not value:
        return f"a KFP host is an http(s) URL, {_HOST_EXAMPLE}"
    authority = value.split("://", 1)[-1].split("/", 1)[0]
    if "@" in authority:
        return (
            "the URL must not hold credentials: put a bearer token in an environment variable "
            "and name that variable in kfp.token_env"
        )
    match = HOST_RE.match(value)
    if not match:
        return f"{value!r} is not an http(s) URL without query or fragment ({_HOST_EXAMPLE})"
    if match.group(3) and not 0 < int(match.group(3)[1:]) < 65536:
        return f"{value!r}: port {match.group(3)[1:]} is out of range"
    return None


def check_host(value: str) -> str:
    if problem := host_problem(value):
        raise ValueError(problem)
    return value.rstrip("/")


class KfpSettings(BaseModel):
    """``kfp:`` in the project config: where the Kubeflow Pipelines API is and how to reach it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = Field(
        description="Base URL of the KFP API (what kfp.Client(host=...) takes), "
        "e.g. https://kfp.example.com, https://kubeflow.example.com/pipeline or "
        "http://localhost:8080 for a port-forward of svc/ml-pipeline-ui."
    )
    namespace: str | None = Field(
        default=None,
        description="Kubernetes namespace of pipelines, experiments and runs on a multi-user "
        "cluster (a Kubeflow profile); leave unset on a single-user KFP.",
    )
    token_env: str | None = Field(
        default=None,
        description="Name of the environment variable that holds a bearer token for the host "
        "(never the token itself); unset sends no Authorization header.",
    )
    experiment: str | None = Field(
        default=None,
        description="Experiment that runs are filed under (default: <name>-<environment>).",
    )

    @field_validator("host")
    @classmethod
    def _host(cls, value: str) -> str:
        return check_host(value)

    @field_validator("namespace")
    @classmethod
    def _namespace(cls, value: str | None) -> str | None:
        if value is not None and not NAMESPACE_RE.match(value):
            raise ValueError(
                f"{value!r} is not a Kubernetes namespace: at most 63 lowercase letters, digits "
                "and hyphens, starting and ending with a letter or digit"
            )
        return value

    @field_validator("token_env")
    @classmethod
    def _token_env(cls, value: str | None) -> str | None:
        if value is not None and not ENV_VAR_RE.match(value):
            raise ValueError(
                f"{value!r} is not an environment variable name (letters, digits and "
                "underscores, not starting with a digit): token_env names the variable that "
                "holds the token, e.g. KFP_TOKEN; never put the token itself in the config"
            )
        return value

    @field_validator("experiment")
    @classmethod
    def _experiment(cls, value: str | None) -> str | None:
        if value is not None and (not value.strip() or "\n" in value or len(value) > 128):
            raise ValueError("an experiment name is one non-empty line of at most 128 characters")
        return value


class KfpError(rest.CloudError):
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


@dataclass(frozen=True)
class Found:
    """A conditional step's answer when an earlier lookup found the resource: nothing is sent."""

    answer: Any


@dataclass(frozen=True)
class KfpRequest(rest.LocalStep):
    """One request to the KFP API: shown as-is by dry runs, sent by :func:`send`.

    ``resolve`` fills placeholders from earlier answers (or returns :class:`Found` to skip the
    request); ``extract`` turns the answer into what later steps read (e.g. the one pipeline a
    lookup found, or None). ``when`` says, in dry runs, when a conditional request is sent.
    """

    description: str = field(default="", compare=False, repr=False)
    action: Callable[[rest.Responses], Any] = field(init=False, compare=False, repr=False)
    method: str = "GET"
    url: str = ""
    body: Any = None
    upload: str | None = None
    token_env: str | None = None
    when: str | None = None
    resolve: Callable[[KfpRequest, rest.Responses], KfpRequest | Found] | None = field(
        default=None, compare=False, repr=False
    )
    extract: Callable[[Any], Any] | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "action", self._apply)

    def _apply(self, responses: rest.Responses) -> Any:
        request: KfpRequest | Found = self
        if self.resolve:
            request = self.resolve(self, responses)
        if isinstance(request, Found):
            return request.answer
        answer = send(request, session(request.token_env))
        return self.extract(answer) if self.extract else answer

    def to_json(self) -> dict[str, Any]:
        data = rest.request_json(self.step, self.method, self.url, self.body, self.upload)
        if self.upload:
            data["upload_field"] = UPLOAD_FIELD
        if self.when:
            data["when"] = self.when
        if self.token_env:
            data["authorization"] = f"Bearer ${self.token_env}"
        return data

    def show(self) -> str:
        lines = [f"{self.method} {self.url}"]
        query = urlsplit(self.url).query
        if "%" in query:  # encoded values (filters): show them decoded too
            lines += [f"  ?{key}={value}" for key, value in parse_qsl(query)]
        if self.when:
            lines.append(f"  {self.when}")
        if self.token_env:
            lines.append(f"  authorization: Bearer ${self.token_env}")
        if self.upload:
            lines.append(f"  multipart upload of {self.upload} as {UPLOAD_FIELD!r}")
        if self.body is not None:
            lines += ["  " + line for line in json.dumps(self.body, indent=2).splitlines()]
        return "\n".join(lines)


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


def _required(responses: rest.Responses, step: str, key: str) -> str:
    answer = responses.get(step)
    if not isinstance(answer, dict) or not answer.get(key):
        raise KfpError(f"no {key} in the answer of step {step!r}: {answer!r}")
    return str(answer[key])


# ---------------------------------------------------------------------------------------------
# Plans


def plan_find_pipeline(settings: KfpSettings, pipeline: str, full_name: str) -> KfpRequest:
    """Look a pipeline up by name (what kfp.Client.get_pipeline_id sends, plus the namespace)."""
    url = _url(
        api_base(settings),
        "/pipelines",
        {"filter": _filter("display_name", full_name), "namespace": settings.namespace},
    )
    return KfpRequest(
        f"find pipeline {pipeline}",
        url=url,
        token_env=settings.token_env,
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
) -> list[rest.Step]:
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
    steps: list[rest.Step] = []
    for name, path in templates.items():
        full = pipeline_name(project, name, environment)
        find = plan_find_pipeline(settings, name, full)
        ensure_step = f"ensure pipeline {name}"

        def upload_if_missing(
            step: KfpRequest, responses: rest.Responses, find_step: str = find.step
        ) -> KfpRequest | Found:
            found = responses.get(find_step)
            return Found(found) if found else replace(step, resolve=None)

        ensure = KfpRequest(
            ensure_step,
            method="POST",
            url=_url(base, "/pipelines/upload", {"name": full, "namespace": settings.namespace}),
            upload=str(path),
            token_env=settings.token_env,
            when=f"only if {find.step!r} finds none; creates {full!r} with a first version",
            resolve=upload_if_missing,
        )
        marker = rest.placeholder(ensure_step, "pipeline_id")
        query = {"name": version, "pipelineid": marker, "description": description}

        def with_pipeline_id(
            step: KfpRequest,
            responses: rest.Responses,
            source: str = ensure_step,
            query: dict[str, Any] = query,
        ) -> KfpRequest:
            pipeline_id = _required(responses, source, "pipeline_id")
            url = _url(base, "/pipelines/upload_version", {**query, "pipelineid": pipeline_id})
            return replace(step, url=url, resolve=None)

        upload = KfpRequest(
            f"upload version {name}",
            method="POST",
            url=_url(base, "/pipelines/upload_version", query),
            upload=str(path),
            token_env=settings.token_env,
            resolve=with_pipeline_id,
        )
        steps += [find, ensure, upload]
    return steps


def plan_experiment(settings: KfpSettings, experiment: str) -> list[rest.Step]:
    """Find the experiment by name, create it if missing (as kfp.Client.create_experiment)."""
    base = api_base(settings)
    query = {"filter": _filter("display_name", experiment), "namespace": settings.namespace}
    find = KfpRequest(
        "find experiment",
        url=_url(base, "/experiments", query),
        token_env=settings.token_env,
        extract=_one("experiment", experiment, "experiments"),
    )
    body: dict[str, Any] = {"display_name": experiment}
    if settings.namespace:
        body["namespace"] = settings.namespace

    def create_if_missing(step: KfpRequest, responses: rest.Responses) -> KfpRequest | Found:
        found = responses.get(find.step)
        return Found(found) if found else replace(step, resolve=None)

    ensure = KfpRequest(
        "ensure experiment",
        method="POST",
        url=_url(base, "/experiments"),
        body=body,
        token_env=settings.token_env,
        when="only if 'find experiment' finds none",
        resolve=create_if_missing,
    )
    return [find, ensure]


def plan_version_lookup(
    settings: KfpSettings, pipeline: str, commit: str, *, project: str, environment: str
) -> list[rest.Step]:
    """Find the newest version of ``pipeline`` published from ``commit`` (runs without publish)."""
    full = pipeline_name(project, pipeline, environment)
    find = plan_find_pipeline(settings, pipeline, full)
    base = api_base(settings)
    query = {
        "page_size": 1,
        "sort_by": "created_at desc",
        "filter": _filter("display_name", f"{commit}-", IS_SUBSTRING),
    }
    marker = rest.placeholder(find.step, "pipeline_id")
    advice = f"publish it first: invoke publish --env {environment}"

    def in_pipeline(step: KfpRequest, responses: rest.Responses) -> KfpRequest:
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
                f"pipeline {full!r} on {base} has no version from commit {commit}: {advice}"
            )
        return versions[0]

    lookup = KfpRequest(
        f"find version {pipeline}",
        url=_url(base, f"/pipelines/{marker}/versions", query),
        token_env=settings.token_env,
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
) -> KfpRequest:
    """The request that creates one run of a pipeline version (as kfp.Client.run_pipeline).

    The experiment and the version come from earlier steps: ``experiment_step`` answers an
    experiment, ``version_step`` (default ``upload version <pipeline>``) a pipeline version.
    """
    version_step = version_step or f"upload version {pipeline}"
    body = {
        "experiment_id": rest.placeholder(experiment_step, "experiment_id"),
        "display_name": display_name,
        "pipeline_version_reference": {
            "pipeline_id": rest.placeholder(version_step, "pipeline_id"),
            "pipeline_version_id": rest.placeholder(version_step, "pipeline_version_id"),
        },
        "runtime_config": {"parameters": dict(parameters)},
    }

    def with_ids(step: KfpRequest, responses: rest.Responses) -> KfpRequest:
        values = {
            rest.placeholder(experiment_step, "experiment_id"): _required(
                responses, experiment_step, "experiment_id"
            ),
            rest.placeholder(version_step, "pipeline_id"): _required(
                responses, version_step, "pipeline_id"
            ),
            rest.placeholder(version_step, "pipeline_version_id"): _required(
                responses, version_step, "pipeline_version_id"
            ),
        }
        resolved = dict(step.body)
        resolved["experiment_id"] = values[body["experiment_id"]]
        resolved["pipeline_version_reference"] = rest.substitute(
            step.body["pipeline_version_reference"], values
        )
        return replace(step, body=resolved, resolve=None)

    return KfpRequest(
        f"create run {pipeline}",
        method="POST",
        url=_url(api_base(settings), "/runs"),
        body=body,
        token_env=settings.token_env,
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
) -> list[rest.Step]:
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
    display = run_name(pipeline, now or datetime.now(timezone.utc))
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


def submitted_run(responses: rest.Responses) -> dict[str, Any] | None:
    """The run a plan created (the answer of its ``create run`` step), or None."""
    for step, answer in responses.items():
        if step.startswith("create run ") and isinstance(answer, dict) and answer.get("run_id"):
            return answer
    return None


def plan_status(settings: KfpSettings, experiment: str, limit: int = 10) -> list[rest.Step]:
    """The newest runs of the environment's experiment."""
    find, _ = plan_experiment(settings, experiment)
    base = api_base(settings)
    query = {
        "namespace": settings.namespace,
        "experiment_id": rest.placeholder(find.step, "experiment_id"),
        "page_size": limit,
        "sort_by": "created_at desc",
    }

    def in_experiment(step: KfpRequest, responses: rest.Responses) -> KfpRequest | Found:
        found = responses.get(find.step)
        if not found:
            return Found({"runs": []})
        url = _url(base, "/runs", {**query, "experiment_id": found["experiment_id"]})
        return replace(step, url=url, resolve=None)

    runs = KfpRequest(
        "list runs",
        url=_url(base, "/runs", query),
        token_env=settings.token_env,
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


def plan_read_run(settings: KfpSettings, run_id: str) -> KfpRequest:
    url = _url(api_base(settings), f"/runs/{quote(run_id, safe='')}")
    return KfpRequest("read run", url=url, token_env=settings.token_env)


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
    http: Any = None,
    *,
    out: TextIO | None = None,
    poll_seconds: float = 20.0,
    timeout_seconds: float = 24 * 3600,
) -> dict[str, Any]:
    """Follow a run's task states until the run ends; return the final run."""
    out = out or sys.stdout
    request = replace(plan_read_run(settings, run_id), step="follow run")
    http = http or session(settings.token_env)
    seen: dict[str, str] = {}
    deadline = time.monotonic() + timeout_seconds
    while True:
        run = send(request, http) or {}
        for task in _tasks(run):
            name, state = task.get("display_name", "?"), _state(task)
            if seen.get(name) != state:
                seen[name] = state
                out.write(f"  {name:<28} {state}\n")
                out.flush()
        if str(run.get("state", "")).upper() in TERMINAL_STATES:
            return run
        if time.monotonic() > deadline:
            raise KfpError(f"gave up waiting for run {run_id} after {timeout_seconds:.0f}s")
        time.sleep(poll_seconds)


# ---------------------------------------------------------------------------------------------
# Sending


def session(token_env: str | None, environ: Mapping[str, str] | None = None) -> Any:
    """A requests session for the KFP host: a bearer token from ``token_env`` if named.

    Never Google credentials: those are for Google endpoints only.
    """
    import requests

    http = requests.Session()
    if token_env:
        environ = os.environ if environ is None else environ
        token = environ.get(token_env, "").strip()
        if not token:
            raise KfpError(
                f"environment variable {token_env} (kfp.token_env) is not set: export a bearer "
                "token for the KFP host in it, e.g. `export "
                f"{token_env}=$(kubectl create token SERVICE_ACCOUNT -n NAMESPACE "
                "--audience=pipelines.kubeflow.org)`, or `$(gcloud auth print-identity-token)` "
                "behind IAP"
            )
        http.headers["Authorization"] = f"Bearer {token}"
    return http


def send(request: KfpRequest, http: Any) -> Any:
    """Send one request; return its JSON answer (None when empty)."""
    if request.upload:
        path = Path(request.upload)
        if not path.is_file():
            raise KfpError(f"{request.step}: {path} not found: compile it first")
        mimetype = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        with path.open("rb") as handle:
            files = {UPLOAD_FIELD: (path.name, handle, mimetype)}
            response = http.request(
                request.method, request.url, files=files, allow_redirects=False, timeout=300
            )
    else:
        extra = {} if request.body is None else {"json": request.body}
        response = http.request(
            request.method, request.url, allow_redirects=False, timeout=120, **extra
        )
    status = response.status_code
    if status != 200:
        raise KfpError(
            f"{request.step}: {request.method} {request.url} answered {status}: "
            f"{_error_text(response)}{_auth_hint(request, status)}",
            status=status,
        )
    if not response.content:
        return None
    try:
        return response.json()
    except ValueError:
        raise KfpError(
            f"{request.step}: {request.url} answered with something other than JSON "
            f"(a login page?): {response.text[:200]!r}{_auth_hint(request, 401)}"
        ) from None


def _auth_hint(request: KfpRequest, status: int) -> str:
    if status not in (301, 302, 303, 307, 308, 401, 403):
        return ""
    if request.token_env:
        return (
            f" (the bearer token in {request.token_env} was refused: is it valid, unexpired and "
            "for this host? On a multi-user cluster, is kfp.namespace a profile you can use?)"
        )
    return (
        " (the host wants credentials: name the environment variable that holds a bearer token "
        "in kfp.token_env)"
    )


def _error_text(response: Any) -> str:
    """KFP's error message: grpc-gateway's ``message``, the upload server's ``error_message``."""
    try:
        data = response.json()
    except ValueError:
        return response.text[:500]
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict):
            error = error.get("message") or error
        text = data.get("message") or data.get("error_message") or error or data
        return str(text)[:500]
    return str(data)[:500]
