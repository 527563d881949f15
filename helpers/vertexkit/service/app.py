"""The submission service's one request-handling core, framework-free.

:meth:`Service.handle` takes a :class:`Request` (method, path, headers, body) and returns a
:class:`Response`; :mod:`vertexkit.service.server` adapts it to ASGI (Cloud Run, ``invoke
serve``) and to Flask (the Cloud Functions entry point). Every answer is JSON except the docs
page; bad input gets a 4xx whose body names each problem, never a 5xx.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import re
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from vertexkit.orchestrators import ORCHESTRATORS, Orchestrator
from vertexkit.project.config import ProjectConfig
from vertexkit.service.auth import AuthError, PushVerifier
from vertexkit.service.backends import Backend, NotFound, Submission
from vertexkit.service.catalog import Pipeline, check_parameters
from vertexkit.service.openapi import docs_page, openapi_schema
from vertexkit.steps import CloudError

log = logging.getLogger("vertexkit.service")

LABEL_KEY = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
LABEL_VALUE = re.compile(r"^[a-z0-9_-]{0,63}$")
# Labels vertexkit sets on every run; a caller cannot set them.
RESERVED_LABELS = frozenset(
    {"vertexkit-version", "git-commit", "environment", "pipeline", "idempotency-key"}
)
MAX_LABELS = 32
IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,256}$")
RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
PIPELINE_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")
RUN_FIELDS = ("parameters", "labels", "display_name")
MESSAGE_FIELDS = ("pipeline", *RUN_FIELDS)


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: Mapping[str, str] = field(default_factory=dict)  # lower-case names
    body: bytes = b""


@dataclass
class Response:
    status: int
    body: Any
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    log: dict[str, Any] = field(default_factory=dict)  # fields of the request's log line

    def encoded(self) -> bytes:
        if isinstance(self.body, bytes):
            return self.body
        if isinstance(self.body, str):
            return self.body.encode("utf-8")
        return json.dumps(self.body, separators=(",", ":"), allow_nan=False).encode("utf-8")


class Problem(Exception):
    """A request the service refuses: status, message and the fields at fault."""

    def __init__(
        self, status: int, message: str, problems: list[dict[str, str]] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.problems = problems or []

    def response(self) -> Response:
        error: dict[str, Any] = {"status": self.status, "message": self.message}
        if self.problems:
            error["problems"] = self.problems
        return Response(self.status, {"error": error})


def key_label(key: str) -> str:
    """An idempotency key as a label value: ``k`` and 40 hex digits of its SHA-256."""
    return "k" + hashlib.sha256(key.encode("utf-8")).hexdigest()[:40]


class Service:
    """Routes, checks and idempotency; the runs themselves go to ``backend``."""

    def __init__(
        self,
        config: ProjectConfig,
        pipelines: Mapping[str, Pipeline],
        backend: Backend,
        *,
        verifier: PushVerifier | None = None,
    ) -> None:
        self.config = config
        self.pipelines = dict(pipelines)
        self.backend = backend
        self.max_body_bytes = config.service.max_body_bytes
        self.verifier = verifier or PushVerifier(
            config.service.push_audience, config.service.push_service_account
        )
        self.schema = openapi_schema(config, self.pipelines)
        # Idempotency keys seen by this instance: key -> the answer, with one lock per key so
        # that concurrent duplicates start one run.
        self._seen: dict[str, dict[str, Any]] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._locks_lock = threading.Lock()

    # Routing ----------------------------------------------------------------------------------

    def handle(self, request: Request) -> Response:
        started = time.monotonic()
        request_id = _request_id(request.headers)
        try:
            response = self._route(request, request_id)
        except Problem as problem:
            response = problem.response()
        except CloudError as exc:
            response = Problem(
                502, f"{self.config.orchestrator}: {exc}".replace("\n", " ")
            ).response()
        except Exception:  # a bug: logged with its traceback, answered without one
            log.exception("unexpected error", extra={"request_id": request_id})
            response = Problem(
                500, f"internal error; the service's log has it under request id {request_id}"
            ).response()
        response.headers.setdefault("x-request-id", request_id)
        log.info(
            "%s %s %d",
            request.method,
            request.path,
            response.status,
            extra={
                "request_id": request_id,
                "status": response.status,
                "latency_ms": round((time.monotonic() - started) * 1000, 1),
                **response.log,
            },
        )
        return response

    def _route(self, request: Request, request_id: str) -> Response:
        method, parts = request.method.upper(), [p for p in request.path.split("/") if p]
        routes: list[tuple[list[str], str, Any]] = [
            (["healthz"], "GET", lambda: Response(200, {"status": "ok"})),
            (["openapi.json"], "GET", lambda: Response(200, self.schema)),
            (["docs"], "GET", lambda: Response(200, docs_page(self.schema), "text/html")),
            (["pipelines"], "GET", self._list_pipelines),
            (["pubsub", "push"], "POST", lambda: self._push(request, request_id)),
        ]
        if len(parts) == 3 and parts[0] == "pipelines" and parts[2] == "runs":
            routes.append((parts, "POST", lambda: self._submit_direct(request, parts[1])))
        if len(parts) == 2 and parts[0] == "runs":
            routes.append((parts, "GET", lambda: self._read(parts[1])))
        allowed = [m for path, m, _ in routes if path == parts]
        for path, route_method, action in routes:
            if path == parts and route_method == method:
                return action()
        if allowed:
            response = Problem(405, f"{method} not allowed on {request.path}").response()
            response.headers["allow"] = ", ".join(allowed)
            return response
        raise Problem(404, f"no such endpoint: {request.path}")

    # Endpoints --------------------------------------------------------------------------------

    def _list_pipelines(self) -> Response:
        return Response(200, {"pipelines": [p.describe() for p in self.pipelines.values()]})

    def _read(self, run_id: str) -> Response:
        if not RUN_ID.match(run_id):
            raise Problem(404, f"no run {run_id!r}")
        try:
            return Response(200, self.backend.read(run_id))
        except NotFound:
            raise Problem(404, f"no run {run_id!r}") from None

    def _submit_direct(self, request: Request, name: str) -> Response:
        body = self._json_body(request)
        key = request.headers.get("idempotency-key")
        if key is not None and not IDEMPOTENCY_KEY.match(key):
            raise Problem(
                400,
                "Idempotency-Key must be 1 to 256 printable ASCII characters without spaces",
                [{"field": "Idempotency-Key", "message": "invalid"}],
            )
        if not isinstance(body, dict):
            raise Problem(
                422,
                "the body must be a JSON object",
                [{"field": "body", "message": f"expected an object, got {_kind(body)}"}],
            )
        return self._start(name, body, key, fields=RUN_FIELDS, where="")

    def _push(self, request: Request, request_id: str) -> Response:
        try:
            self.verifier.check(request.headers.get("authorization"))
        except AuthError as exc:
            raise Problem(exc.status, str(exc)) from None
        envelope = self._json_body(request)
        message = envelope.get("message") if isinstance(envelope, dict) else None
        if not isinstance(message, dict):
            raise Problem(
                400,
                "not a Pub/Sub push envelope",
                [{"field": "message", "message": "expected an object with data and messageId"}],
            )
        message_id = message.get("messageId", message.get("message_id"))
        if not isinstance(message_id, str) or not message_id:
            raise Problem(
                400,
                "not a Pub/Sub push envelope",
                [{"field": "message.messageId", "message": "expected a non-empty string"}],
            )
        data = message.get("data")
        if not isinstance(data, str):
            raise Problem(
                400,
                "the message has no data",
                [{"field": "message.data", "message": "expected base64-encoded JSON"}],
            )
        try:
            payload = json.loads(base64.b64decode(data, validate=True).decode("utf-8"))
        except (binascii.Error, ValueError):
            raise Problem(
                400,
                "the message data is not base64-encoded JSON",
                [{"field": "message.data", "message": "expected base64-encoded JSON"}],
            ) from None
        if not isinstance(payload, dict):
            raise Problem(
                422,
                "the message data must be a JSON object",
                [{"field": "message.data", "message": f"expected an object, got {_kind(payload)}"}],
            )
        pipeline = payload.get("pipeline")
        if not isinstance(pipeline, str):
            raise Problem(
                422,
                "the message names no pipeline",
                [{"field": "message.data.pipeline", "message": "expected a pipeline name"}],
            )
        body = {k: v for k, v in payload.items() if k != "pipeline"}
        return self._start(
            pipeline,
            body,
            f"pubsub:{message_id}",
            fields=RUN_FIELDS,
            where="message.data.",
            extra_allowed=("pipeline",),
        )

    # Runs -------------------------------------------------------------------------------------

    def _start(
        self,
        name: str,
        body: dict[str, Any],
        key: str | None,
        *,
        fields: tuple[str, ...],
        where: str,
        extra_allowed: tuple[str, ...] = (),
    ) -> Response:
        pipeline = self.pipelines.get(name) if PIPELINE_NAME.match(name) else None
        if pipeline is None:
            raise Problem(
                404,
                f"no runnable pipeline {name!r} (runnable: {', '.join(self.pipelines) or 'none'})",
                [{"field": f"{where}pipeline" if where else "name", "message": "unknown pipeline"}],
            )
        submission, problems = self._check(pipeline, body, fields, where, extra_allowed, key)
        if problems:
            raise Problem(422, f"the run of {name!r} was refused", problems)
        if key is None:
            return self._submitted(self.backend.submit(submission), submission, replayed=False)
        with self._lock(key):
            if key in self._seen:
                return self._submitted(self._seen[key], submission, replayed=True)
            found = self.backend.find(submission.key_label or "")
            if found is not None:
                self._seen[key] = found
                return self._submitted(found, submission, replayed=True)
            answer = self.backend.submit(submission)
            self._seen[key] = answer
            return self._submitted(answer, submission, replayed=False)

    def _submitted(
        self, answer: dict[str, Any], submission: Submission, *, replayed: bool
    ) -> Response:
        status = 200 if answer.get("dry_run") or replayed else 201
        log_fields = {
            "run_id": answer.get("run_id"),
            "pipeline": submission.pipeline,
            "parameters": sorted(submission.given),  # names only, never values
        }
        return Response(status, {**answer, "replayed": replayed}, log=log_fields)

    def _check(
        self,
        pipeline: Pipeline,
        body: dict[str, Any],
        fields: tuple[str, ...],
        where: str,
        extra_allowed: tuple[str, ...],
        key: str | None,
    ) -> tuple[Submission, list[dict[str, str]]]:
        problems = [
            {"field": f"{where}{k}", "message": f"unknown field; valid: {', '.join(fields)}"}
            for k in body
            if k not in fields and k not in extra_allowed
        ]
        given = body.get("parameters", {})
        if not isinstance(given, dict):
            problems.append(
                {
                    "field": f"{where}parameters",
                    "message": f"expected an object, got {_kind(given)}",
                }
            )
            given = {}
        labels = body.get("labels", {})
        kind = ORCHESTRATORS[self.config.orchestrator]
        problems += _label_problems(labels, f"{where}labels", kind)
        display_name = body.get("display_name")
        if display_name is not None and (
            not isinstance(display_name, str)
            or not 1 <= len(display_name) <= 128
            or not display_name.isprintable()
        ):
            problems.append(
                {
                    "field": f"{where}display_name",
                    "message": "expected 1 to 128 printable characters",
                }
            )
            display_name = None
        values, parameter_problems = check_parameters(self.config, pipeline, given)
        for problem in parameter_problems:
            problem["field"] = f"{where}{problem['field']}"
        problems += parameter_problems
        submission = Submission(
            pipeline=pipeline.name,
            template_name=pipeline.template_name,
            parameters=values,
            given=given,
            labels=labels if isinstance(labels, dict) else {},
            display_name=display_name,
            key_label=key_label(key) if key is not None else None,
        )
        return submission, problems

    def _json_body(self, request: Request) -> Any:
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type != "application/json":
            raise Problem(
                415,
                f"expected Content-Type application/json, got {content_type or 'none'}",
                [{"field": "Content-Type", "message": "use application/json"}],
            )
        if len(request.body) > self.max_body_bytes:
            raise too_large(self.max_body_bytes)
        try:
            return json.loads(request.body.decode("utf-8"), parse_constant=_no_constant)
        except (UnicodeDecodeError, ValueError) as exc:
            raise Problem(
                400, "the body is not valid JSON", [{"field": "body", "message": str(exc)}]
            ) from None

    def _lock(self, key: str) -> threading.Lock:
        with self._locks_lock:
            return self._locks.setdefault(key, threading.Lock())


def too_large(limit: int) -> Problem:
    return Problem(
        413,
        f"the body is larger than {limit} bytes (service.max_body_bytes)",
        [{"field": "body", "message": f"at most {limit} bytes"}],
    )


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _kind(value: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean"}.get(
        type(value), "null" if value is None else "number"
    )


def _label_problems(
    labels: Any, field: str, orchestrator: type[Orchestrator]
) -> list[dict[str, str]]:
    if not isinstance(labels, dict):
        return [{"field": field, "message": f"expected an object, got {_kind(labels)}"}]
    if labels and not orchestrator.supports_labels:
        return [{"field": field, "message": f"{orchestrator.title} runs carry no labels"}]
    problems = []
    if len(labels) > MAX_LABELS:
        problems.append({"field": field, "message": f"at most {MAX_LABELS} labels"})
    for key, value in labels.items():
        if key in RESERVED_LABELS:
            problems.append({"field": f"{field}.{key}", "message": "set by the service"})
        elif not LABEL_KEY.match(key):
            problems.append(
                {
                    "field": f"{field}.{key}",
                    "message": "label keys are 1-63 lowercase letters, digits, '_' and '-', "
                    "starting with a letter",
                }
            )
        elif not isinstance(value, str) or not LABEL_VALUE.match(value):
            problems.append(
                {
                    "field": f"{field}.{key}",
                    "message": "label values are strings of at most 63 lowercase letters, "
                    "digits, '_' and '-'",
                }
            )
    return problems


def _request_id(headers: Mapping[str, str]) -> str:
    """Cloud Run's trace id when there is one, else a new id."""
    trace = headers.get("x-cloud-trace-context", "").split("/")[0]
    given = headers.get("x-request-id", "")
    for candidate in (trace, given):
        if re.fullmatch(r"[A-Za-z0-9._-]{1,64}", candidate):
            return candidate
    return uuid.uuid4().hex
