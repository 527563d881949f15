"""Cloud steps as data: plan (pure), show (dry run), apply (send).

Every cloud task builds a list of steps, each an HTTP request or a command, with the same code
for the dry run and the real run: ``--dry-run`` prints the steps, ``--dry-run --json`` prints
them as a JSON array, and the real run sends exactly those requests. A step may depend on what
an earlier step returned (an image digest, say); until then its fields hold a placeholder
``<from STEP: what>`` and a ``resolve`` callback fills them in from the earlier responses.

Every Google endpoint can be redirected, for private endpoints and for tests:
``VERTEXKIT_ENDPOINT_<SERVICE>`` (e.g. ``VERTEXKIT_ENDPOINT_AIPLATFORM=http://127.0.0.1:9000``)
wins over ``endpoints.<service>`` in the config, which wins over the public endpoint.
``VERTEXKIT_NO_AUTH=1`` sends requests without credentials (emulators and test servers only).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, TextIO

DEFAULT_ENDPOINTS: dict[str, str] = {
    "aiplatform": "https://{region}-aiplatform.googleapis.com",
    "artifactregistry": "https://artifactregistry.googleapis.com",
    "cloudbuild": "https://cloudbuild.googleapis.com",
    "cloudresourcemanager": "https://cloudresourcemanager.googleapis.com",
    "iam": "https://iam.googleapis.com",
    "kfp_registry": "https://{region}-kfp.pkg.dev",
    "secretmanager": "https://secretmanager.googleapis.com",
    "serviceusage": "https://serviceusage.googleapis.com",
    "storage": "https://storage.googleapis.com",
}
ENDPOINT_ENV_PREFIX = "VERTEXKIT_ENDPOINT_"
SCOPES = ("https://www.googleapis.com/auth/cloud-platform",)

Responses = dict[str, Any]


class CloudError(RuntimeError):
    """A cloud step failed; the message names the step and what to do."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class CredentialsError(CloudError):
    """No usable Google credentials."""


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


def request_json(
    step: str,
    method: str,
    url: str,
    body: Any,
    upload: str | None = None,
    form: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """How a dry run shows one HTTP request: step, method, url, body (and any file upload)."""
    data: dict[str, Any] = {"step": step, "method": method, "url": url, "body": body}
    if upload:
        data["upload"] = upload
        data["form"] = dict(form or {})
    return data


@dataclass(frozen=True)
class HttpStep:
    """One HTTP request. ``body`` is JSON; ``upload`` is a local file sent as multipart."""

    step: str
    method: str
    url: str
    body: Any = None
    upload: str | None = None
    form: Mapping[str, Any] = field(default_factory=dict)
    ok_statuses: tuple[int, ...] = (200,)
    resolve: Callable[[HttpStep, Responses], HttpStep] | None = field(
        default=None, compare=False, repr=False
    )

    def to_json(self) -> dict[str, Any]:
        return request_json(self.step, self.method, self.url, self.body, self.upload, self.form)

    def show(self) -> str:
        lines = [f"{self.method} {self.url}"]
        if self.upload:
            lines.append(f"  multipart upload of {self.upload} with {dict(self.form)}")
        if self.body is not None:
            lines += ["  " + line for line in json.dumps(self.body, indent=2).splitlines()]
        return "\n".join(lines)


@dataclass(frozen=True)
class CommandStep:
    """One local command, run without a shell."""

    step: str
    command: tuple[str, ...]
    cwd: str | None = None
    resolve: Callable[[CommandStep, Responses], CommandStep] | None = field(
        default=None, compare=False, repr=False
    )

    def to_json(self) -> dict[str, Any]:
        return {"step": self.step, "command": list(self.command), "cwd": self.cwd}

    def show(self) -> str:
        where = f"(in {self.cwd}) " if self.cwd else ""
        return f"{where}$ {' '.join(self.command)}"


@dataclass(frozen=True)
class LocalStep:
    """Work done in this process between cloud steps (compiling, recording a build)."""

    step: str
    description: str
    action: Callable[[Responses], Any] = field(compare=False, repr=False)

    def to_json(self) -> dict[str, Any]:
        return {"step": self.step, "local": self.description}

    def show(self) -> str:
        return self.description


Step = HttpStep | CommandStep | LocalStep


def session() -> Any:
    """An authorised requests session, or a plain one when VERTEXKIT_NO_AUTH=1."""
    import requests

    if os.environ.get("VERTEXKIT_NO_AUTH") == "1":
        return requests.Session()
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


def send(step: HttpStep, http: Any) -> Any:
    """Send one request; return its JSON answer (None when empty)."""
    if step.upload:
        if not os.path.isfile(step.upload):
            raise CloudError(f"{step.step}: {step.upload} not found")
        with open(step.upload, "rb") as handle:
            files = {"content": (os.path.basename(step.upload), handle)}
            response = http.request(step.method, step.url, data=dict(step.form), files=files)
    else:
        response = http.request(step.method, step.url, json=step.body)
    if response.status_code not in step.ok_statuses:
        raise CloudError(
            f"{step.step}: {step.method} {step.url} answered {response.status_code}: "
            f"{_error_text(response)}",
            status=response.status_code,
        )
    if not response.content:
        return None
    try:
        return response.json()
    except ValueError:
        return response.text


def _error_text(response: Any) -> str:
    try:
        error = response.json().get("error", {})
        return str(error.get("message") or error or response.text)[:500]
    except (ValueError, AttributeError):
        return response.text[:500]


def run_command(step: CommandStep) -> str:
    result = subprocess.run(step.command, cwd=step.cwd, capture_output=True, text=True)
    if result.returncode != 0:
        output = (result.stderr or result.stdout).strip()[-2000:]
        raise CloudError(f"{step.step}: `{' '.join(step.command)}` failed: {output}")
    return result.stdout


def execute(
    steps: Sequence[Step],
    *,
    dry_run: bool = False,
    as_json: bool = False,
    http: Any = None,
    out: TextIO | None = None,
) -> Responses:
    """Show or apply ``steps`` in order; returns each step's response by step name."""
    out = out or sys.stdout
    if dry_run:
        if as_json:
            out.write(json.dumps([s.to_json() for s in steps], indent=2) + "\n")
        else:
            for number, step in enumerate(steps, 1):
                out.write(f"[{number}/{len(steps)}] {step.step} (dry run: not sent)\n")
                out.write("  " + step.show().replace("\n", "\n  ") + "\n")
        return {}
    responses: Responses = {}
    for number, step in enumerate(steps, 1):
        if not isinstance(step, LocalStep) and step.resolve:
            step = step.resolve(step, responses)
        out.write(f"[{number}/{len(steps)}] {step.step}\n")
        out.flush()
        if isinstance(step, HttpStep):
            http = http or session()
            responses[step.step] = send(step, http)
        elif isinstance(step, LocalStep):
            responses[step.step] = step.action(responses)
        else:
            responses[step.step] = run_command(step)
    return responses


def placeholder(step: str, what: str) -> str:
    """The text a dry run shows for a value that an earlier step returns."""
    return f"<from {step}: {what}>"


def substitute(value: Any, replacements: Mapping[str, str]) -> Any:
    """Replace placeholders anywhere in a JSON-like value."""
    if isinstance(value, str):
        for old, new in replacements.items():
            value = value.replace(old, new)
        return value
    if isinstance(value, list):
        return [substitute(v, replacements) for v in value]
    if isinstance(value, dict):
        return {k: substitute(v, replacements) for k, v in value.items()}
    return value


def with_body(step: HttpStep, body: Any) -> HttpStep:
    return replace(step, body=body, resolve=None)
