"""The provisioning plan's data types: what one environment needs, each piece with its reason.

Pure data, imported by :mod:`vertexkit.gcp.provision` and by the modules that plan further
resources (CI identities, the submission service, alerting) for it to provision.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from vertexkit.gcp.ci_resources import CiResources

Scope = Literal[
    "project",
    "bucket",
    "repository",
    "service_account",
    "secret",
    # the submission service: its Cloud Run service, Pub/Sub topics and subscriptions
    "run_service",
    "topic",
    "subscription",
]


@dataclass(frozen=True)
class Bucket:
    name: str
    location: str
    temporary_prefix: str
    temporary_days: int
    why: str


@dataclass(frozen=True)
class Repository:
    id: str
    format: Literal["DOCKER", "KFP"]
    description: str
    why: str


@dataclass(frozen=True)
class ServiceAccount:
    account_id: str
    email: str
    display_name: str
    description: str
    why: str

    @property
    def member(self) -> str:
        return f"serviceAccount:{self.email}"


@dataclass(frozen=True)
class Secret:
    name: str
    why: str


@dataclass(frozen=True)
class Binding:
    """``role`` for ``member`` on one resource (``scope`` and its name) or on the project."""

    scope: Scope
    resource: str  # the project id, bucket name, repository id, account email or secret name
    role: str
    member: str
    why: str


@dataclass(frozen=True)
class DriftAlerting:
    """A log-based metric counting drift breaches, and the alert policy that watches it."""

    metric: str  # the log-based metric's name
    metric_description: str
    log_filter: str
    policy_display_name: str  # found again by this name
    documentation: str  # Markdown in every notification
    notification_channels: tuple[str, ...]  # projects/P/notificationChannels/ID
    why: str


@dataclass(frozen=True)
class Infrastructure:
    """Everything one environment needs, with the reason for each piece."""

    environment: str
    project_id: str
    region: str
    labels: Mapping[str, str]
    apis: tuple[str, ...]
    buckets: tuple[Bucket, ...]
    repositories: tuple[Repository, ...]
    service_accounts: tuple[ServiceAccount, ...]
    secrets: tuple[Secret, ...]
    bindings: tuple[Binding, ...]
    state_bucket: str = field(default="")
    ci: CiResources | None = None  # the CI system's pool or Cloud Build triggers
    # The submission service, its Pub/Sub route and the Cloud Scheduler jobs (planned by
    # vertexkit.gcp.service_infra).
    submission: SubmissionService | None = None
    topics: tuple[Topic, ...] = ()
    subscriptions: tuple[Subscription, ...] = ()
    scheduler_jobs: tuple[SchedulerJob, ...] = ()
    notes: tuple[str, ...] = ()  # what was left out and why, shown when provisioning
    drift_alerting: DriftAlerting | None = None

    def bindings_on(self, scope: Scope) -> tuple[Binding, ...]:
        return tuple(b for b in self.bindings if b.scope == scope)


# --- the submission service, its Pub/Sub route and Cloud Scheduler ------------------------------


@dataclass(frozen=True)
class SubmissionService:
    """The submission service: a Cloud Run service from an image, or a 2nd gen Cloud Function
    built from ``source_dir``. ``image`` is None until the service image was built."""

    kind: Literal["cloud-run", "cloud-functions"]
    name: str
    service_account: str  # the e-mail it runs as
    environment: Mapping[str, str]
    audience: str  # the audience of Pub/Sub push tokens (a Cloud Run custom audience)
    why: str
    image: str | None = None  # cloud-run: repository/image@sha256:...
    source_dir: str = ""  # cloud-functions: the source folder, zipped and uploaded
    source_object: str = ""  # cloud-functions: the zip's object name in source_bucket
    source_archive: str = ""  # cloud-functions: the local zip Terraform uploads
    source_bucket: str = ""
    runtime: str = ""  # cloud-functions: e.g. python311
    entry_point: str = ""
    build_service_account: str = ""  # cloud-functions: the builder account's e-mail
    docker_repository: str = ""  # cloud-functions: where the build pushes its image

    @property
    def deployable(self) -> bool:
        return self.kind == "cloud-functions" or self.image is not None


@dataclass(frozen=True)
class Topic:
    name: str
    why: str


@dataclass(frozen=True)
class Subscription:
    """A push subscription to the service (``push_path`` set) or a pull one (dead letters)."""

    name: str
    topic: str
    why: str
    push_path: str = ""  # appended to the service's URL
    push_service_account: str = ""
    audience: str = ""
    dead_letter_topic: str = ""
    max_delivery_attempts: int = 5
    minimum_backoff: str = "10s"
    maximum_backoff: str = "600s"
    ack_deadline_seconds: int = 60
    message_retention: str = "604800s"


@dataclass(frozen=True)
class SchedulerJob:
    """A Cloud Scheduler job that publishes one pipeline's run request to ``topic``."""

    name: str
    pipeline: str
    schedule: str
    time_zone: str
    topic: str
    data: str  # base64 of the JSON message
    description: str
    why: str
