"""The provisioning plan's data types: what one environment needs, each piece with its reason.

Pure data, imported by :mod:`vertexkit.gcp.provision` and by the modules that plan further
resources (CI identities, the submission service, alerting) for it to provision.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

Scope = Literal["project", "bucket", "repository", "service_account", "secret"]


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
    drift_alerting: DriftAlerting | None = None

    def bindings_on(self, scope: Scope) -> tuple[Binding, ...]:
        return tuple(b for b in self.bindings if b.scope == scope)
