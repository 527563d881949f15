"""The one HTTP step type and the one sender of every request vertexkit makes.

An :class:`HttpStep` is a request as data. Its options cover every kind of request the
project sends, so that dry runs show all of them the same way and :class:`Sender` sends all of
them the same way:

* ``auth``: ``google`` (Application Default Credentials; none when ``VERTEXKIT_NO_AUTH=1``, for
  emulators and test servers), ``bearer`` (a token read from the environment variable
  ``token_env``, e.g. for a Kubeflow Pipelines host) or ``none``. Google credentials are only
  ever sent to steps that ask for them.
* ``upload``: a local file sent as a multipart field (``upload_field``, with ``form`` fields)
  or, with ``content_type``, as the raw body.
* ``resolve``: fills placeholders from earlier answers, or returns :class:`Found` to skip a
  conditional request (``when`` says in dry runs when it is sent).
* ``extract``: turns the answer into what later steps read.
* ``repeat_until``: polls the request until the answer satisfies it (long-running operations).
* ``retry_statuses`` / ``retry_delays``: transient failures worth another try.
* ``secret_answer``: the answer may hold a secret: no error message ever quotes its body.

Every Google endpoint can be redirected, for private endpoints and for tests:
``VERTEXKIT_ENDPOINT_<SERVICE>`` (e.g. ``VERTEXKIT_ENDPOINT_AIPLATFORM=http://127.0.0.1:9000``)
wins over ``endpoints.<service>`` in the config, which wins over the public endpoint.
"""

from __future__ import annotations

import json
import mimetypes
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qsl, urlsplit

from vertexkit.steps.base import CloudError, CredentialsError, Responses

DEFAULT_ENDPOINTS: dict[str, str] = {
    "aiplatform": "https://{region}-aiplatform.googleapis.com",
    "artifactregistry": "https://artifactregistry.googleapis.com",
    "cloudbuild": "https://cloudbuild.googleapis.com",
    "cloudresourcemanager": "https://cloudresourcemanager.googleapis.com",
    "cloudscheduler": "https://cloudscheduler.googleapis.com",
    "run": "https://run.googleapis.com",
    "iam": "https://iam.googleapis.com",
    "kfp_registry": "https://{region}-kfp.pkg.dev",
    "secretmanager": "https://secretmanager.googleapis.com",
    "serviceusage": "https://serviceusage.googleapis.com",
    "storage": "https://storage.googleapis.com",
}
ENDPOINT_ENV_PREFIX = "VERTEXKIT_ENDPOINT_"
NO_AUTH_ENV = "VERTEXKIT_NO_AUTH"
SCOPES = ("https://www.googleapis.com/auth/cloud-platform",)
DEFAULT_UPLOAD_FIELD = "content"
TIMEOUT_SECONDS = 300.0
AUTH_STATUSES = frozenset({301, 302, 303, 307, 308, 401, 403})

Auth = Literal["google", "bearer", "none"]


def endpoint(
    service: str,
    region: str,
    configured: Mapping[str, str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> str:
    """Base URL of ``service``, without a trailing slash."""
    environ = os.environ if environ is None else environ
    if service not in DEFAULT_ENDPOINTS:
        raise ValueError(f"unknown service {service!r}; known: {', '.join(DEFAULT_ENDPOINTS)}")
    url = (
        environ.get(f"{ENDPOINT_ENV_PREFIX}{service.upper()}")
        or (configured or {}).get(service)
        or DEFAULT_ENDPOINTS[service]
    )
    return url.format(region=region).rstrip("/")


@dataclass(frozen=True)
class Found:
    """What a conditional step answers when ``resolve`` decides not to send it."""

    answer: Any


@dataclass(frozen=True)
class HttpStep:
    """One HTTP request, shown by dry runs and sent by :class:`Sender` (see the module doc)."""

    step: str
    method: str
    url: str
    body: Any = None
    upload: str | None = None
    form: Mapping[str, Any] = field(default_factory=dict)
    upload_field: str = DEFAULT_UPLOAD_FIELD
    content_type: str | None = None  # with ``upload``: send the file as the raw body
    ok_statuses: tuple[int, ...] = (200,)
    auth: Auth = "google"
    token_env: str | None = None
    token_help: str = ""  # how to get a token, when ``token_env`` is not set
    auth_hint: str = ""  # added to errors that look like refused credentials
    when: str | None = None
    expect_json: bool = False  # an answer that is not JSON is an error (e.g. a login page)
    follow_redirects: bool = True
    timeout: float = TIMEOUT_SECONDS
    secret_answer: bool = False
    retry_statuses: frozenset[int] = frozenset()
    retry_delays: tuple[float, ...] = ()
    repeat: str = ""  # how a dry run describes repeat_until, e.g. "until done"
    repeat_until: Callable[[Any], bool] | None = field(default=None, compare=False, repr=False)
    poll_seconds: float = 5.0
    max_polls: int = 1
    resolve: Callable[[HttpStep, Responses], HttpStep | Found] | None = field(
        default=None, compare=False, repr=False
    )
    extract: Callable[[Any], Any] | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.auth == "bearer" and not self.token_env:
            raise ValueError(f"{self.step}: a bearer-token step names its token_env")

    def with_body(self, body: Any) -> HttpStep:
        """This step with another body, already resolved."""
        return replace(self, body=body, resolve=None)

    def to_json(self) -> dict[str, Any]:
        """The request as a dry run's JSON shows it; options at their default are left out."""
        data: dict[str, Any] = {
            "step": self.step,
            "method": self.method,
            "url": self.url,
            "body": self.body,
        }
        if self.upload:
            data["upload"] = self.upload
            if self.content_type:
                data["content_type"] = self.content_type
            else:
                data["form"] = dict(self.form)
                if self.upload_field != DEFAULT_UPLOAD_FIELD:
                    data["upload_field"] = self.upload_field
        if self.repeat:
            data["repeat"] = self.repeat
        if self.when:
            data["when"] = self.when
        if self.auth == "bearer":
            data["authorization"] = f"Bearer ${self.token_env}"
        return data

    def show(self) -> str:
        lines = [f"{self.method} {self.url}"]
        query = urlsplit(self.url).query
        if "%" in query and "<from " not in query:  # encoded values: show them decoded too
            lines += [f"  ?{key}={value}" for key, value in parse_qsl(query)]
        if self.when:
            lines.append(f"  {self.when}")
        if self.repeat:
            lines.append(f"  repeated {self.repeat}")
        if self.auth == "bearer":
            lines.append(f"  authorization: Bearer ${self.token_env}")
        if self.upload and self.content_type:
            lines.append(f"  raw upload of {self.upload} ({self.content_type})")
        elif self.upload:
            form = f" with {dict(self.form)}" if self.form else ""
            lines.append(f"  multipart upload of {self.upload} as {self.upload_field!r}{form}")
        if self.body is not None:
            lines += ["  " + line for line in json.dumps(self.body, indent=2).splitlines()]
        return "\n".join(lines)

    def apply(self, responses: Responses, sender: Sender | None = None) -> Any:
        """Resolve, send (repeating while asked to) and extract: the step's answer."""
        request: HttpStep | Found = self.resolve(self, responses) if self.resolve else self
        if isinstance(request, Found):
            return request.answer
        sender = sender or Sender()
        answer = sender.send(request)
        polls = 1
        while request.repeat_until and not request.repeat_until(answer):
            if polls >= request.max_polls:
                break
            time.sleep(request.poll_seconds)
            answer = sender.send(request)
            polls += 1
        return self.extract(answer) if self.extract else answer


class Sender:
    """Sends :class:`HttpStep` requests: one session per kind of authorisation, made when first
    needed. Connection failures, refused requests and malformed answers become
    :class:`~vertexkit.steps.base.CloudError` naming the step."""

    def __init__(
        self, environ: Mapping[str, str] | None = None, google_session: Any = None
    ) -> None:
        self._environ = os.environ if environ is None else environ
        self._sessions: dict[tuple[str, str], Any] = {}
        if google_session is not None:
            self._sessions[("google", "")] = google_session

    def session(
        self, auth: Auth = "google", token_env: str | None = None, token_help: str = ""
    ) -> Any:
        """The session for one kind of authorisation; ``token_help``: how to get a missing token."""
        key = (auth, token_env or "")
        if key not in self._sessions:
            self._sessions[key] = self._new_session(auth, token_env, token_help)
        return self._sessions[key]

    def _new_session(self, auth: Auth, token_env: str | None, token_help: str) -> Any:
        import requests

        if auth == "google" and self._environ.get(NO_AUTH_ENV) != "1":
            return google_session()
        http = requests.Session()
        if auth == "bearer":
            token = self._environ.get(token_env or "", "").strip()
            if not token:
                advice = f", {token_help}" if token_help else ""
                raise CredentialsError(
                    f"environment variable {token_env} is not set: export the bearer token in "
                    f"it{advice} (the config names the variable, never the token)"
                )
            http.headers["Authorization"] = f"Bearer {token}"
        return http

    def send(self, step: HttpStep) -> Any:
        """Send ``step`` once (retrying transient failures); its JSON answer, None when empty."""
        http = self.session(step.auth, step.token_env, step.token_help)
        delays = list(step.retry_delays)
        while True:
            try:
                response = self._request(step, http)
            except OSError as exc:  # requests' connection errors and timeouts are OSErrors
                if delays:
                    time.sleep(delays.pop(0))
                    continue
                raise CloudError(
                    f"{step.step}: no answer from {_where(step)}: {exc}", detail=str(exc)
                ) from None
            status = response.status_code
            if status in step.retry_statuses and delays:
                time.sleep(delays.pop(0))
                continue
            return _answer(step, response)

    def _request(self, step: HttpStep, http: Any) -> Any:
        options: dict[str, Any] = {
            "timeout": step.timeout,
            "allow_redirects": step.follow_redirects,
        }
        if not step.upload:
            if step.body is not None:
                options["json"] = step.body
            return http.request(step.method, step.url, **options)
        path = Path(step.upload)
        if not path.is_file():
            raise CloudError(f"{step.step}: {path} not found")
        if step.content_type:
            # Bytes, not a file object: an authorised session resends the body after
            # refreshing its token.
            headers = {"Content-Type": step.content_type}
            return http.request(
                step.method, step.url, data=path.read_bytes(), headers=headers, **options
            )
        mimetype = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        with path.open("rb") as handle:
            files = {step.upload_field: (path.name, handle, mimetype)}
            return http.request(step.method, step.url, data=dict(step.form), files=files, **options)


def send(step: HttpStep, sender: Sender | None = None) -> Any:
    """Send one request with ``sender`` (default: a new one); its answer, not extracted."""
    return (sender or Sender()).send(step)


def google_session() -> Any:
    """An authorised session with Application Default Credentials."""
    import google.auth
    from google.auth.exceptions import DefaultCredentialsError
    from google.auth.transport.requests import AuthorizedSession

    try:
        credentials, _ = google.auth.default(scopes=SCOPES)
    except DefaultCredentialsError as exc:
        raise CredentialsError(
            "no Application Default Credentials found: run "
            "`gcloud auth application-default login` (or, in CI, authenticate with Workload "
            f"Identity Federation) and try again. Details: {exc}"
        ) from None
    return AuthorizedSession(credentials)


def _where(step: HttpStep) -> str:
    return f"{step.method} {step.url}"


def _answer(step: HttpStep, response: Any) -> Any:
    status = response.status_code
    if status not in step.ok_statuses:
        said = error_text(response)
        hint = f" {step.auth_hint}" if step.auth_hint and status in AUTH_STATUSES else ""
        raise CloudError(
            f"{step.step}: {_where(step)} answered {status}: {said}{hint}",
            status,
            said,
            google=step.auth == "google",
        )
    if not response.content:
        return None
    try:
        return response.json()
    except ValueError:
        if step.secret_answer:
            raise CloudError(f"{step.step}: the answer is not JSON", status) from None
        if step.expect_json:
            raise CloudError(
                f"{step.step}: {step.url} answered with something other than JSON (a login "
                f"page?): {response.text[:200]!r}{' ' + step.auth_hint if step.auth_hint else ''}",
                status,
            ) from None
        return response.text


def error_text(response: Any) -> str:
    """The service's own error message: Google's ``error.message``, grpc-gateway's
    ``message``, KFP's upload server's ``error_message``; else the start of the body."""
    try:
        data = response.json()
    except ValueError:
        return str(response.text)[:500]
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict):
            error = error.get("message") or error
        text = error or data.get("message") or data.get("error_message") or data
        return str(text)[:500]
    return str(data)[:500]
