"""Secrets: read by name at run time, from the environment locally and Secret Manager on the cloud.

The configuration lists secret NAMES (``secrets: [DB_PASSWORD]`` in ``config/base.yaml``), never
values; a component reads a value when it runs::

    from vertexkit.gcp.secrets import get_secret

    password = get_secret("DB_PASSWORD")

1. If the environment variable ``DB_PASSWORD`` is set and not empty (local runs, CI), that is
   the value: no request is sent and no Google credentials are needed.
2. Otherwise the latest version of the Secret Manager secret ``DB_PASSWORD`` is read
   (``GET /v1/projects/PROJECT/secrets/DB_PASSWORD/versions/latest:access``) in ``project``, else
   ``$GOOGLE_CLOUD_PROJECT``, else ``$CLOUD_ML_PROJECT_ID`` (which Vertex AI sets, to the project
   number, in every pipeline task).

The secret id in Secret Manager is the name itself, unchanged: one name for the environment
variable, the config entry and ``gcloud secrets create``. A name is 1 to 255 ASCII letters,
digits and underscores, not starting with a digit (what both an environment variable and a
secret id allow), and not a variable that the system, Python, Google or vertexkit own.

Values are returned, never printed, logged, cached or written anywhere; no error message
carries one. The Secret Manager endpoint can be redirected with
``VERTEXKIT_ENDPOINT_SECRETMANAGER`` (see :mod:`vertexkit.steps.http`).
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Mapping
from typing import Any

from vertexkit.project import naming
from vertexkit.steps import CloudError, HttpStep, Sender, endpoint

PROJECT_VARIABLES = ("GOOGLE_CLOUD_PROJECT", "CLOUD_ML_PROJECT_ID")
ACCESSOR_ROLE = "roles/secretmanager.secretAccessor"
VIEWER_ROLE = "roles/secretmanager.viewer"
# Transient answers worth another try, and the pauses before each retry (seconds).
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
RETRY_DELAYS: tuple[float, ...] = (1.0, 3.0)
TIMEOUT_SECONDS = 30


class SecretError(CloudError):
    """A secret could not be read; the message says why and what to do, never the value."""


def secret_id(name: str) -> str:
    """The Secret Manager id of the secret ``name``: the name itself."""
    return naming.check_secret_name(name)


def secret_url(
    name: str,
    project: str,
    *,
    suffix: str = "",
    endpoints: Mapping[str, str] | None = None,
    region: str = "global",
    environ: Mapping[str, str] | None = None,
) -> str:
    """URL of the secret resource ``name`` in ``project``, plus ``suffix``."""
    base = endpoint("secretmanager", region, endpoints, environ)
    return f"{base}/v1/projects/{project}/secrets/{secret_id(name)}{suffix}"


def resolve_project(
    name: str, project: str | None = None, environ: Mapping[str, str] | None = None
) -> str:
    """The project to read ``name`` from: ``project``, else the first variable that is set."""
    environ = os.environ if environ is None else environ
    if not project:
        project = next((environ[v] for v in PROJECT_VARIABLES if environ.get(v)), None)
    if not project:
        state = "is empty" if name in environ else "is not set"
        raise SecretError(
            f"cannot read secret {name}: the environment variable {name} {state} and no "
            f"project is known to read it from Secret Manager ({' and '.join(PROJECT_VARIABLES)} "
            f"are not set). Locally, export {name}; to read Secret Manager, set "
            "GOOGLE_CLOUD_PROJECT or pass project=..."
        )
    if not project.isdigit() and naming.project_id_problem(project):
        raise ValueError(
            f"invalid project {project!r} for secret {name}: give a project id (6 to 30 "
            "lowercase letters, digits and hyphens, starting with a letter) or a project number"
        )
    return project


def get_secret(
    name: str,
    *,
    project: str | None = None,
    environ: Mapping[str, str] | None = None,
    sender: Sender | None = None,
) -> str:
    """The value of the secret ``name``: its environment variable, else Secret Manager.

    ``environ`` defaults to ``os.environ``; ``sender`` to a new
    :class:`vertexkit.steps.Sender`, which finds credentials only when Secret Manager is needed.
    Raises ValueError for an invalid name or project, SecretError when the secret cannot be read.
    """
    environ = os.environ if environ is None else environ
    naming.check_secret_name(name)
    if value := environ.get(name):
        return value
    project = resolve_project(name, project, environ)
    url = secret_url(name, project, suffix="/versions/latest:access", environ=environ)
    step = HttpStep(
        f"read secret {name}",
        "GET",
        url,
        timeout=TIMEOUT_SECONDS,
        secret_answer=True,  # never quote the body: it may hold the value
        retry_statuses=RETRY_STATUSES,
        retry_delays=RETRY_DELAYS,
    )
    try:
        answer = (sender or Sender()).send(step)
    except CloudError as exc:
        if exc.status is None and exc.detail:
            raise SecretError(
                f"cannot read secret {name}: no answer from Secret Manager at {url}: {exc.detail}"
            ) from None
        if exc.status is None or exc.status == 200:
            raise SecretError(f"cannot read secret {name}: {exc}", exc.status) from None
        raise SecretError(_explain(name, project, exc.status, exc.detail), exc.status) from None
    return _decode(name, project, answer)


def _explain(name: str, project: str, status: int, said: str) -> str:
    create = f"gcloud secrets create {name} --project {project}"
    add = (
        f"printf '%s' \"${name}\" | gcloud secrets versions add {name} --project {project} "
        "--data-file=-"
    )
    grant = (
        f"gcloud secrets add-iam-policy-binding {name} --project {project} "
        f"--member serviceAccount:PIPELINE_SERVICE_ACCOUNT --role {ACCESSOR_ROLE}"
    )
    if status == 404:
        return (
            f"secret {name} not found in project {project} (or it has no version yet): create "
            f"it with `{create}` and add a version with `{add}`. Secret Manager said: {said}"
        )
    if status == 403:
        return (
            f"the pipeline service account cannot read secret {name} in project {project}: "
            f"grant {ACCESSOR_ROLE} on that secret: `{grant}` (locally, your "
            "application-default credentials need that role; if the Secret Manager API is "
            f"disabled, enable secretmanager.googleapis.com). Secret Manager said: {said}"
        )
    if status == 400:
        return (
            f"the latest version of secret {name} in project {project} cannot be read (disabled "
            f"or destroyed?): add a version with `{add}` or enable it with `gcloud secrets "
            f"versions enable VERSION --secret {name} --project {project}`. "
            f"Secret Manager said: {said}"
        )
    return f"reading secret {name} in project {project} failed: HTTP {status}: {said}"


def _decode(name: str, project: str, answer: Any) -> str:
    """``payload.data`` (base64 of the bytes), checked against ``payload.dataCrc32c``, as text."""
    payload = answer.get("payload") if isinstance(answer, dict) else None
    data = payload.get("data") if isinstance(payload, dict) else None
    if not isinstance(data, str):
        raise SecretError(f"Secret Manager's answer for secret {name} has no payload.data")
    try:
        # proto3 JSON encodes bytes as standard base64; accept the URL-safe alphabet and
        # missing padding too, as proto3 JSON parsers do.
        text = data.translate(str.maketrans("-_", "+/"))
        raw = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise SecretError(
            f"Secret Manager's payload.data for secret {name} is not base64"
        ) from None
    expected = payload.get("dataCrc32c")
    if expected is not None and not _crc32c_matches(raw, expected):
        raise SecretError(
            f"the value of secret {name} in project {project} failed its CRC32C check "
            "(corrupted on the way): try again"
        )
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise SecretError(
            f"secret {name} in project {project} is not UTF-8 text; get_secret returns text"
        ) from None


def _crc32c_matches(raw: bytes, expected: Any) -> bool:
    """True when ``raw`` has the CRC32C ``expected`` (or google-crc32c is not installed)."""
    try:
        import google_crc32c
    except ImportError:  # a dependency of google-cloud-storage; skip the check without it
        return True
    try:
        return google_crc32c.value(raw) == int(expected)
    except (TypeError, ValueError):
        return False
