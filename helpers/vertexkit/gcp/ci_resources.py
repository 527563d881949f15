"""The CI identity resources of one environment, as data (planned by gcp.ci_identity).

Pure data that :class:`vertexkit.gcp.infrastructure.Infrastructure` carries, so that both
provisioning tools create them: a Workload Identity Federation pool and its OIDC provider for an
external CI system, or a Cloud Build repository connection and its triggers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

Host = Literal["github", "gitlab", "bitbucket"]


@dataclass(frozen=True)
class OidcProvider:
    """One OIDC provider of the pool: whose tokens it accepts, and which of them."""

    id: str
    display_name: str
    issuer_uri: str
    attribute_mapping: Mapping[str, str]
    attribute_condition: str
    allowed_audiences: tuple[str, ...]
    # The principalSet the deployer account trusts, after the pool's name: an attribute filter
    # (attribute.repository/owner/name), or * for every identity of the pool.
    principal: str
    why: str


@dataclass(frozen=True)
class IdentityPool:
    id: str
    display_name: str
    description: str
    providers: tuple[OidcProvider, ...]


@dataclass(frozen=True)
class BuildConnection:
    """A Cloud Build 2nd-gen connection to the repository host, and the repository linked."""

    name: str
    host: Host
    repository: str  # the name of the linked repository resource
    remote_uri: str
    # Secret Manager secret names (values added by the team, never by vertexkit), by use:
    # authorizer (GitHub: the OAuth token; GitLab/Bitbucket: the admin token), read_authorizer
    # and webhook (GitLab and Bitbucket only).
    secrets: Mapping[str, str]
    host_uri: str | None = None  # GitLab
    app_installation_id: int | None = None  # GitHub
    workspace: str | None = None  # Bitbucket Cloud


@dataclass(frozen=True)
class BuildTrigger:
    """A trigger on the linked repository; exactly one of the three events is set."""

    name: str
    description: str
    filename: str
    approval_required: bool
    pull_request_branch: str | None = None
    push_branch: str | None = None
    push_tag: str | None = None
    included_files: tuple[str, ...] = ()  # run only when one of these globs changed
    service_account: str = ""  # the e-mail of the account the builds run as


@dataclass(frozen=True)
class CiRole:
    """A role of a CI provisioning account: on the project, on the Terraform state bucket, or
    on a service account (by e-mail)."""

    scope: Literal["project", "state_bucket", "service_account"]
    resource: str
    role: str
    why: str


@dataclass(frozen=True)
class CiAccount:
    """The CI provisioner (terraform apply, main branch only) or planner (terraform plan, pull
    requests), in the environment main deploys to (docs/ci-identity.md)."""

    kind: Literal["provisioner", "planner"]
    account_id: str
    email: str
    display_name: str
    description: str
    why: str
    roles: tuple[CiRole, ...]
    # The principalSets of the pool (after its name) trusted to act as it, e.g.
    # attribute.ref/refs/heads/main; empty for Cloud Build (its triggers run as the account).
    principals: tuple[str, ...]
    admitted: str  # who may act as it, in words

    @property
    def member(self) -> str:
        return f"serviceAccount:{self.email}"


@dataclass(frozen=True)
class CiResources:
    """What the environment's CI system needs: a pool (external CI) or a connection (Cloud
    Build); the CI deployer account both act as."""

    system: str
    deployer: str  # the CI deployer account's e-mail
    pool: IdentityPool | None = None
    connection: BuildConnection | None = None
    triggers: tuple[BuildTrigger, ...] = field(default=())
    # Jenkins agents on GKE: their Kubernetes service account, which runs as the deployer.
    agent_member: str | None = None
    # What Cloud Build still needs before its connection and triggers can be made (a sentence).
    pending: str = ""
    # Terraform only: the provisioner and planner accounts of the environment main deploys to.
    accounts: tuple[CiAccount, ...] = ()
