"""Keyless CI: what an environment needs so that its CI system deploys as the CI deployer account.

From the ``ci`` section of the config (docs/ci-identity.md), :func:`plan_ci` computes, as data:

* for GitHub Actions, GitLab CI, Bitbucket Pipelines and Jenkins (OpenID Connect Provider
  plugin): a Workload Identity Federation pool (``<naming_prefix>-ci``) with one OIDC provider
  whose ``attribute_condition`` admits only this repository's tokens, and only release tags (or
  the protected deployment) in an environment that takes release tags only; the deployer account
  trusts the pool's identities of that repository (``roles/iam.workloadIdentityUser`` on the
  account, never on the project);
* for Jenkins agents on GKE: their Kubernetes service account runs as the deployer
  (``roles/iam.workloadIdentityUser`` on the account); agents on Compute Engine have the
  deployer attached and need nothing;
* for Cloud Build: a 2nd-gen connection to the repository host (tokens read from Secret
  Manager secrets the team creates), the linked repository, and the environment's triggers,
  which run as the deployer account (until the repository and, on GitHub, the app's
  installation id are configured, only a note says what is missing);
* with Terraform, in the environment main deploys to, the CI provisioner (``terraform apply``,
  admitted from the main branch only) and the read-only CI planner (``terraform plan``, pull
  requests), with :func:`provisioning_accounts`: principalSets narrowed by an attribute the
  provider maps, or the infra-apply and infra-plan Cloud Build triggers running as them.

:mod:`vertexkit.gcp.provision` calls the hooks here (:func:`extend`, :func:`tfvars`,
:func:`plan_gcloud`, :func:`plan_gcloud_teardown`, :func:`terraform_notes`,
:func:`identity_rows`, :func:`with_ci_apis`) so that both tools create the same resources.

Sources of the issuers and claims (read 2026-12): GitHub "OpenID Connect reference"
(token.actions.githubusercontent.com; repository, ref, ref_type); GitLab "OpenID Connect (OIDC)
Authentication Using ID Tokens" (issuer = the instance URL; project_path, ref_type,
ref_protected); Atlassian "Integrate Pipelines with resource servers using OIDC" (per-workspace
issuer, audience ari:cloud:bitbucket::workspace/<uuid>; repositoryUuid,
deploymentEnvironmentUuid); Jenkins OpenID Connect Provider plugin README (issuer
<jenkins>/oidc, sub = the job URL); the google provider's google_iam_workload_identity_pool_provider
and cloudbuildv2_connection pages (v7.45.0).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from vertexkit.gcp.ci_resources import (
    BuildConnection,
    BuildTrigger,
    CiAccount,
    CiResources,
    CiRole,
    IdentityPool,
    OidcProvider,
)
from vertexkit.gcp.gcloud import delete_if_found
from vertexkit.gcp.gcloud import gcloud as _gcloud
from vertexkit.gcp.infrastructure import Binding, Infrastructure
from vertexkit.project.config import ConfigError, ProjectConfig
from vertexkit.steps import CommandStep, LocalStep, Responses, Step, placeholder

WIF_SYSTEMS = ("github-actions", "gitlab-ci", "bitbucket-pipelines", "jenkins")
WIF_APIS = ("iamcredentials.googleapis.com", "sts.googleapis.com")
SECRET_API = "secretmanager.googleapis.com"

GITHUB_ISSUER = "https://token.actions.githubusercontent.com"
BITBUCKET_ISSUER = (
    "https://api.bitbucket.org/2.0/workspaces/{workspace}/pipelines-config/identity/oidc"
)
BITBUCKET_AUDIENCE = "ari:cloud:bitbucket::workspace/{uuid}"
REMOTE_URIS = {
    "github": "https://github.com/{repository}.git",
    "bitbucket": "https://bitbucket.org/{repository}.git",
}

MAIN_BRANCH = "main"
RELEASE_TAG = r"^v[0-9]+\.[0-9]+\.[0-9]+$"
# The build config of each trigger, in the repository (the template's cloudbuild/ files): the
# promotion to each environment taking release tags has a file of its own.
BUILD_CONFIGS = {
    "pull-request": "cloudbuild/pull-request.yaml",
    "main": "cloudbuild/main.yaml",
    "infra-plan": "cloudbuild/infra-plan.yaml",
    "infra-apply": "cloudbuild/infra-apply.yaml",
    "promote": "cloudbuild/promote-{env}.yaml",
}
# The files whose change runs the infra-plan trigger (provisioning.tool terraform).
INFRA_FILES = ("infra/**", "config/**")
# Pull requests of people outside the repository build only after a collaborator's /gcbrun.
COMMENT_CONTROL = "COMMENTS_ENABLED_FOR_EXTERNAL_CONTRIBUTORS_ONLY"

# GitLab: "<ref_type>/<ref_protected>/<ref>", e.g. branch/true/main for the protected main.
GITLAB_REF_SCOPE = "assertion.ref_type + '/' + assertion.ref_protected + '/' + assertion.ref"

WORKLOAD_IDENTITY_USER = "roles/iam.workloadIdentityUser"
SECRET_ACCESSOR = "roles/secretmanager.secretAccessor"
CLOUD_BUILD_AGENT = "service-{number}@gcp-sa-cloudbuild.iam.gserviceaccount.com"

GITHUB_APP_PENDING = (
    "Cloud Build connection and triggers not created yet: install the Cloud Build GitHub App on "
    "the repository (https://github.com/apps/google-cloud-build), set "
    "ci.github_app_installation_id in config/base.yaml to the number at the end of its "
    "Configure page URL "
    "(https://github.com/settings/installations/<id>), store the GitHub token in Secret Manager "
    "(docs/ci-identity.md), then run invoke provision again"
)

REPOSITORY_PENDING = (
    "Cloud Build connection and triggers not created yet: set ci.repository_host and "
    "ci.repository (e.g. acme/ml-project) in config/base.yaml, then run invoke provision again"
)

NUMBER_STEP = "look up the project number"
NUMBER = placeholder(NUMBER_STEP, "project number")


# --- the plan -----------------------------------------------------------------------------


def release_tags_only(config: ProjectConfig) -> bool:
    """Whether only release tags deploy to ``config``'s environment (the promotion targets)."""
    configured = config.ci.release_tags_only
    return configured if configured is not None else config.environment != "dev"


def _missing(config: ProjectConfig, field: str, why: str) -> ConfigError:
    return ConfigError(f"{config.source_of('ci', field)}: ci.{field} is not set: {why}")


def _repository(config: ProjectConfig) -> str:
    ci = config.ci
    if ci.repository_host is None:
        raise _missing(
            config,
            "repository_host",
            f"ci.system {ci.system} needs the repository's host: github, gitlab or bitbucket",
        )
    if ci.repository is None:
        raise _missing(
            config,
            "repository",
            f"ci.system {ci.system} admits only this repository: set its path, e.g. "
            "acme/ml-project (owner/name; a group path on GitLab)",
        )
    return ci.repository


def _quoted(value: str) -> str:
    """A CEL string literal (single quotes; the values come from validated config)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _github(config: ProjectConfig, release: bool) -> OidcProvider:
    repository = _repository(config)
    condition = f"assertion.repository == {_quoted(repository)}"
    if release:
        condition += " && assertion.ref_type == 'tag' && assertion.ref.startsWith('refs/tags/v')"
    mapping = {
        "google.subject": "assertion.sub",
        "attribute.repository": "assertion.repository",
        "attribute.ref": "assertion.ref",
    }
    if not release:  # the provisioner trusts refs/heads/main, the planner pull_request runs
        mapping["attribute.event_name"] = "assertion.event_name"
    return OidcProvider(
        id="github",
        display_name="GitHub Actions",
        issuer_uri=GITHUB_ISSUER,
        attribute_mapping=mapping,
        attribute_condition=condition,
        allowed_audiences=(),  # google-github-actions/auth asks for the provider's own name
        principal=f"attribute.repository/{repository}",
        why=f"GitHub Actions workflows of {repository}"
        + (" run for release tags v*" if release else ""),
    )


def _gitlab(config: ProjectConfig, release: bool) -> OidcProvider:
    repository = _repository(config)
    condition = f"assertion.project_path == {_quoted(repository)}"
    if release:
        condition += (
            " && assertion.ref_type == 'tag' && assertion.ref_protected == 'true'"
            " && assertion.ref.startsWith('v')"
        )
    mapping = {
        "google.subject": "assertion.sub",
        "attribute.repository": "assertion.project_path",
        "attribute.ref": "assertion.ref",
    }
    if not release:  # the provisioner trusts branch/true/main, the planner merge requests
        mapping["attribute.ref_scope"] = GITLAB_REF_SCOPE
        mapping["attribute.pipeline_source"] = "assertion.pipeline_source"
    return OidcProvider(
        id="gitlab",
        display_name="GitLab CI",
        issuer_uri=config.ci.gitlab_url.rstrip("/"),  # GitLab's iss has no slash
        attribute_mapping=mapping,
        attribute_condition=condition,
        allowed_audiences=(),  # id_tokens aud: https://iam.googleapis.com/<provider name>
        principal=f"attribute.repository/{repository}",
        why=f"GitLab CI jobs of {repository}" + (" for protected tags v*" if release else ""),
    )


def _bitbucket(config: ProjectConfig, release: bool) -> OidcProvider:
    ci, repository = config.ci, _repository(config)
    where = "Repository settings > Pipelines > OpenID Connect"
    if ci.bitbucket_workspace_uuid is None:
        raise _missing(
            config,
            "bitbucket_workspace_uuid",
            "Bitbucket's tokens name their workspace in the audience "
            f"ari:cloud:bitbucket::workspace/<uuid>: copy that UUID from {where}",
        )
    if ci.bitbucket_repository_uuid is None:
        raise _missing(
            config,
            "bitbucket_repository_uuid",
            f"Bitbucket's tokens name the repository only by its UUID: copy it from {where}",
        )
    condition = f"assertion.repositoryUuid == {_quoted('{' + ci.bitbucket_repository_uuid + '}')}"
    if release:
        if ci.bitbucket_deployment_environment_uuid is None:
            raise ConfigError(
                f"config/{config.environment}.yaml: ci.bitbucket_deployment_environment_uuid is "
                f"not set: environment {config.environment} takes release tags only, which on "
                "Bitbucket means only steps of its deployment environment: copy that "
                f"environment's UUID from {where} (Deployment environments) into "
                f"config/{config.environment}.yaml"
            )
        uuid = "{" + ci.bitbucket_deployment_environment_uuid + "}"
        condition += f" && assertion.deploymentEnvironmentUuid == {_quoted(uuid)}"
    workspace = repository.split("/", 1)[0]
    mapping = {
        "google.subject": "assertion.sub",
        "attribute.repository": "assertion.repositoryUuid",
        "attribute.workspace": "assertion.workspaceUuid",
    }
    if not release:  # the provisioner trusts steps of branch main
        mapping["attribute.branch"] = "assertion.branchName"
    return OidcProvider(
        id="bitbucket",
        display_name="Bitbucket Pipelines",
        issuer_uri=BITBUCKET_ISSUER.format(workspace=workspace),
        attribute_mapping=mapping,
        attribute_condition=condition,
        allowed_audiences=(BITBUCKET_AUDIENCE.format(uuid=ci.bitbucket_workspace_uuid),),
        # The tokens name the repository by a braced UUID: the condition pins it, and the
        # deployer trusts the pool, whose one provider admits nothing else.
        principal="*",
        why=f"Bitbucket Pipelines steps of {repository}"
        + (f" in deployment environment {config.environment}" if release else ""),
    )


def _jenkins(config: ProjectConfig, release: bool) -> OidcProvider | None:
    ci = config.ci
    if ci.jenkins_issuer is None and ci.jenkins_job_url is None:
        return None  # agents on Google Cloud run as the deployer: no pool (docs/ci-identity.md)
    if ci.jenkins_issuer is None or ci.jenkins_job_url is None:
        field = "jenkins_issuer" if ci.jenkins_issuer is None else "jenkins_job_url"
        raise _missing(
            config,
            field,
            "the OpenID Connect Provider plugin needs both ci.jenkins_issuer (the credential's "
            "issuer URI, e.g. https://jenkins.example.com/oidc) and ci.jenkins_job_url (the job "
            "that builds this repository, e.g. https://jenkins.example.com/job/acme-ml/)",
        )
    # The token's sub is the URL of the build's job: a branch or tag job of the project.
    prefix = ci.jenkins_job_url + ("job/v" if release else "")
    return OidcProvider(
        id="jenkins",
        display_name="Jenkins",
        issuer_uri=ci.jenkins_issuer,
        # The provisioner trusts the main branch's job (attribute.job, the job's URL).
        attribute_mapping={"google.subject": "assertion.sub"}
        if release
        else {"google.subject": "assertion.sub", "attribute.job": "assertion.sub"},
        attribute_condition=f"assertion.sub.startsWith({_quoted(prefix)})",
        allowed_audiences=(),  # the credential's audience: https://iam.googleapis.com/<provider>
        principal="*",  # Jenkins' tokens name no repository: the condition pins the job
        why=f"Jenkins builds of {ci.jenkins_job_url}" + (" for tags v*" if release else ""),
    )


def _connection(config: ProjectConfig) -> BuildConnection:
    ci, prefix = config.ci, config.naming_prefix
    repository = _repository(config)
    host = ci.repository_host
    assert host is not None  # checked by _repository
    name = f"{prefix}-{host}"
    slug = repository.rsplit("/", 1)[-1]
    if host == "github":
        assert ci.github_app_installation_id is not None  # checked by plan_ci
        return BuildConnection(
            name=name,
            host=host,
            repository=slug,
            remote_uri=REMOTE_URIS["github"].format(repository=repository),
            secrets={"authorizer": f"{prefix}-cloudbuild-github-token"},
            app_installation_id=ci.github_app_installation_id,
        )
    secrets = {
        "authorizer": f"{prefix}-cloudbuild-{host}-api-token",
        "read_authorizer": f"{prefix}-cloudbuild-{host}-read-token",
        "webhook": f"{prefix}-cloudbuild-{host}-webhook-secret",
    }
    if host == "gitlab":
        return BuildConnection(
            name=name,
            host=host,
            repository=slug,
            remote_uri=f"{ci.gitlab_url.rstrip('/')}/{repository}.git",
            secrets=secrets,
            host_uri=ci.gitlab_url.rstrip("/"),
        )
    return BuildConnection(
        name=name,
        host=host,
        repository=slug,
        remote_uri=REMOTE_URIS["bitbucket"].format(repository=repository),
        secrets=secrets,
        workspace=repository.split("/", 1)[0],
    )


def _triggers(config: ProjectConfig) -> tuple[BuildTrigger, ...]:
    env, prefix, names = config.environment, config.naming_prefix, config.names
    deployer = names.deployer_service_account
    if release_tags_only(config):
        return (
            BuildTrigger(
                name=f"{prefix}-{env}-release",
                description=f"Release tags vX.Y.Z: promote to {env}, once approved",
                filename=BUILD_CONFIGS["promote"].format(env=env),
                approval_required=True,
                push_tag=RELEASE_TAG,
                service_account=deployer,
            ),
        )
    main = f"^{MAIN_BRANCH}$"
    triggers = [
        BuildTrigger(
            name=f"{prefix}-{env}-pull-request",
            description=f"Pull requests to {MAIN_BRANCH}: checks, tests, a local run",
            filename=BUILD_CONFIGS["pull-request"],
            approval_required=False,
            pull_request_branch=main,
            service_account=deployer,
        ),
        BuildTrigger(
            name=f"{prefix}-{env}-main",
            description=f"Pushes to {MAIN_BRANCH}: build, publish and run in {env}",
            filename=BUILD_CONFIGS["main"],
            approval_required=False,
            push_branch=main,
            service_account=deployer,
        ),
    ]
    if config.provisioning.tool == "terraform":
        triggers.append(
            BuildTrigger(
                name=f"{prefix}-{env}-infra-plan",
                description=f"Pull requests changing infra/ or config/: what provisioning {env} "
                "would run",
                filename=BUILD_CONFIGS["infra-plan"],
                approval_required=False,
                pull_request_branch=main,
                included_files=INFRA_FILES,
                service_account=names.planner_service_account,
            )
        )
        triggers.append(
            BuildTrigger(
                name=f"{prefix}-{env}-infra-apply",
                description=f"Pushes to {MAIN_BRANCH} changing infra/ or config/: provision {env}",
                filename=BUILD_CONFIGS["infra-apply"],
                approval_required=False,
                push_branch=main,
                included_files=INFRA_FILES,
                service_account=names.provisioner_service_account,
            )
        )
    return tuple(triggers)


def plan_ci(config: ProjectConfig) -> CiResources | None:
    """The CI resources of ``config``'s environment (None with ci.system none); a ConfigError
    names a setting provisioning needs and cannot derive."""
    ci, deployer = config.ci, config.names.deployer_service_account
    if ci.system == "none":
        return None
    if ci.system == "cloud-build":
        # Everything else can be provisioned before the repository's settings are known: the
        # connection and triggers follow once they are (the default answers leave them out).
        if ci.repository_host is None or ci.repository is None:
            return CiResources(system=ci.system, deployer=deployer, pending=REPOSITORY_PENDING)
        if ci.repository_host == "github" and ci.github_app_installation_id is None:
            return CiResources(system=ci.system, deployer=deployer, pending=GITHUB_APP_PENDING)
        return CiResources(
            system=ci.system,
            deployer=deployer,
            connection=_connection(config),
            triggers=_triggers(config),
        )
    release = release_tags_only(config)
    planners = {"github-actions": _github, "gitlab-ci": _gitlab, "bitbucket-pipelines": _bitbucket}
    provider = (
        _jenkins(config, release)
        if ci.system == "jenkins"
        else planners[ci.system](config, release)
    )
    pool = None
    if provider is not None:
        pool_id = f"{config.naming_prefix}-ci"
        if pool_id.startswith("gcp-"):  # Google reserves the prefix for its own pools
            raise ConfigError(
                f"{config.source_of('naming_prefix')}: naming_prefix: workload identity pool "
                f"{pool_id!r} would start with 'gcp-', which Google reserves: choose a naming "
                "prefix that does not start with gcp-"
            )
        pool = IdentityPool(
            id=pool_id,
            display_name=f"{config.naming_prefix} CI"[:32],
            description=f"{provider.display_name} deploys {config.environment} as the CI deployer",
            providers=(provider,),
        )
    agent = ci.jenkins_agent_member if ci.system == "jenkins" else None
    return CiResources(system=ci.system, deployer=deployer, pool=pool, agent_member=agent)


# --- the provisioner and the planner (Terraform, the environment main deploys to) ---------

STATE_OBJECT_ADMIN = "roles/storage.objectAdmin"
STATE_OBJECT_VIEWER = "roles/storage.objectViewer"


def _principals(config: ProjectConfig) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The principalSets (after the pool's name) the provisioner and the planner trust."""
    system = config.ci.system
    if system == "github-actions":
        return (f"attribute.ref/refs/heads/{MAIN_BRANCH}",), ("attribute.event_name/pull_request",)
    if system == "gitlab-ci":
        return (
            (f"attribute.ref_scope/branch/true/{MAIN_BRANCH}",),
            ("attribute.pipeline_source/merge_request_event",),
        )
    if system == "bitbucket-pipelines":
        return (f"attribute.branch/{MAIN_BRANCH}",), ("*",)
    if system == "jenkins":
        return (f"attribute.job/{config.ci.jenkins_job_url}job/{MAIN_BRANCH}/",), ("*",)
    return (), ()  # Cloud Build: the triggers run as the accounts


# Who may act as each account, by CI system: (provisioner, planner).
ADMITTED = {
    "github-actions": (
        "GitHub Actions runs on refs/heads/main of {repository}",
        "GitHub Actions pull_request runs of {repository} (GitHub gives no id-token to pull "
        "requests from forks)",
    ),
    "gitlab-ci": (
        "GitLab CI jobs of {repository} on the protected branch main",
        "GitLab CI merge request pipelines of {repository} (a fork's merge requests run in the "
        "fork's project, whose tokens the provider refuses, unless a maintainer runs them in "
        "this project)",
    ),
    "bitbucket-pipelines": (
        "Bitbucket Pipelines steps of {repository} on branch main",
        "Bitbucket Pipelines steps of {repository} (its tokens name no pull request; pipelines "
        "of forks do not run here)",
    ),
    "jenkins": (
        "the Jenkins job of branch main ({job}job/main/)",
        "every Jenkins job of {job} (its tokens name only the job: pull request jobs included)",
    ),
    "cloud-build": (
        "the Cloud Build trigger infra-apply (pushes to main)",
        "the Cloud Build trigger infra-plan (pull requests)",
    ),
}


def provisioning_accounts(
    config: ProjectConfig, infra: Infrastructure, ci: CiResources
) -> tuple[CiAccount, ...]:
    """The provisioner (``terraform apply``, main branch) and the planner (``terraform plan``,
    pull requests) of the environment main deploys to, with Terraform; none otherwise (gcloud
    projects do not provision from CI)."""
    if config.provisioning.tool != "terraform" or release_tags_only(config):
        return ()
    if ci.pool is None and ci.system != "cloud-build":
        return ()  # Jenkins agents on Google Cloud: they run as the deployer, no federation
    names, project = config.names, infra.project_id
    state = infra.state_bucket
    cloud_build = ci.system == "cloud-build"

    def on_project(role: str, why: str) -> CiRole:
        return CiRole("project", project, role, why)

    applies = [
        on_project("roles/serviceusage.serviceUsageAdmin", "enable the APIs the stack needs"),
        on_project(
            "roles/storage.admin",
            "create the environment's buckets and grant roles on them (no narrower predefined "
            "role creates buckets)",
        ),
        on_project(
            "roles/artifactregistry.admin",
            "create the Artifact Registry repositories and grant roles on them",
        ),
        on_project(
            "roles/iam.serviceAccountAdmin", "create the service accounts and grant roles on them"
        ),
        on_project(
            "roles/resourcemanager.projectIamAdmin",
            "grant the plan's project roles: it can change any IAM binding of the project, so "
            "only the main branch may act as it",
        ),
    ]
    if infra.secrets or ci.connection is not None:
        applies.append(
            on_project(
                "roles/secretmanager.admin",
                "create the secrets and grant access to them (their values are never written)",
            )
        )
    if ci.pool is not None:
        applies.append(
            on_project(
                "roles/iam.workloadIdentityPoolAdmin",
                "keep the CI pool and its provider in step with the config",
            )
        )
    if cloud_build:
        applies += [
            on_project(
                "roles/cloudbuild.connectionAdmin",
                "keep the repository connection and the linked repository",
            ),
            on_project("roles/cloudbuild.builds.editor", "create and update the triggers"),
            on_project("roles/logging.logWriter", "the infra-apply builds run as it: their logs"),
        ]
        applies += [
            CiRole(
                "service_account",
                email,
                "roles/iam.serviceAccountUser",
                "create triggers whose builds run as this account",
            )
            for email in (
                names.deployer_service_account,
                names.planner_service_account,
                names.provisioner_service_account,
            )
        ]
    # The drift alert (monitoring.tf) is in every environment's module.
    applies += [
        on_project("roles/logging.configWriter", "keep the drift breaches' log-based metric"),
        on_project("roles/monitoring.alertPolicyEditor", "keep the drift alert policy"),
    ]
    service = config.service.kind
    if service != "none":  # service.tf, pubsub.tf (and scheduler.tf)
        deploys = {
            "cloud-run": ("roles/run.admin", "deploy the submission service and its invokers"),
            "cloud-functions": (
                "roles/cloudfunctions.admin",
                "deploy the submission service's function and its invokers",
            ),
        }[service]
        applies += [
            on_project(*deploys),
            on_project("roles/pubsub.admin", "keep the run-request topics and subscriptions"),
            CiRole(
                "service_account",
                names.submission_service_account,
                "roles/iam.serviceAccountUser",
                "deploy the submission service, which runs as this account",
            ),
        ]
        if service == "cloud-functions":
            applies.append(
                CiRole(
                    "service_account",
                    names.build_service_account,
                    "roles/iam.serviceAccountUser",
                    "deploy the function, which is built as this account",
                )
            )
        if config.scheduler == "cloud-scheduler":
            applies.append(
                on_project("roles/cloudscheduler.admin", "keep the schedules' Cloud Scheduler jobs")
            )
    applies.append(
        CiRole("state_bucket", state, STATE_OBJECT_ADMIN, "read and write the Terraform state")
    )
    plans = [
        on_project(
            "roles/viewer",
            "terraform plan refreshes every managed resource; no narrower predefined role reads "
            "them all (buckets, repositories, accounts, secrets' metadata, pools, triggers)",
        ),
        on_project(
            "roles/iam.securityReviewer",
            "read the IAM policies of the project and its resources, which roles/viewer does "
            "not include",
        ),
    ]
    if cloud_build:
        plans.append(on_project("roles/logging.logWriter", "the infra-plan builds run as it"))
    plans.append(
        CiRole(
            "state_bucket",
            state,
            STATE_OBJECT_VIEWER,
            "read the Terraform state (plans run with -lock=false: no lock is written)",
        )
    )
    provisioner_principals, planner_principals = _principals(config)
    admitted = ADMITTED[ci.system]
    where = {"repository": config.ci.repository, "job": config.ci.jenkins_job_url}
    return (
        CiAccount(
            kind="provisioner",
            account_id=names.provisioner_service_account.split("@", 1)[0],
            email=names.provisioner_service_account,
            display_name="CI provisioner",
            description="Applies infra/terraform from the main branch (CI).",
            why="CI applies infra/terraform as it, from the main branch only",
            roles=tuple(applies),
            principals=provisioner_principals,
            admitted=admitted[0].format(**where),
        ),
        CiAccount(
            kind="planner",
            account_id=names.planner_service_account.split("@", 1)[0],
            email=names.planner_service_account,
            display_name="CI planner",
            description="Plans infra/terraform for pull requests, read-only (CI).",
            why="CI runs terraform plan as it for pull requests: reads, never changes",
            roles=tuple(plans),
            principals=planner_principals,
            admitted=admitted[1].format(**where),
        ),
    )


def with_ci_apis(apis: tuple[str, ...], config: ProjectConfig) -> tuple[str, ...]:
    """``apis`` and those the CI system needs: STS and IAM credentials for federation, Secret
    Manager for Cloud Build's tokens."""
    system = config.ci.system
    extra: tuple[str, ...] = ()
    if system in WIF_SYSTEMS:
        extra = WIF_APIS
    elif system == "cloud-build":
        extra = (SECRET_API,)
    return (*apis, *(api for api in extra if api not in apis))


def extend(infra: Infrastructure, config: ProjectConfig) -> Infrastructure:
    """``infra`` with the CI resources of ``config`` and the bindings they need."""
    ci = plan_ci(config)
    if ci is None:
        return infra
    ci = dataclasses.replace(ci, accounts=provisioning_accounts(config, infra, ci))
    deployer = f"serviceAccount:{ci.deployer}"
    bindings = list(infra.bindings)
    if ci.connection is not None:
        bindings.append(
            Binding(
                "project",
                infra.project_id,
                "roles/logging.logWriter",
                deployer,
                "Cloud Build triggers run builds as it: write their logs",
            )
        )
    if ci.agent_member is not None:
        bindings.append(
            Binding(
                "service_account",
                ci.deployer,
                WORKLOAD_IDENTITY_USER,
                ci.agent_member,
                "Jenkins agents on GKE run as the CI deployer (Workload Identity for GKE)",
            )
        )
    return dataclasses.replace(infra, ci=ci, bindings=tuple(bindings))


def pool_name(project_number: str, pool: IdentityPool) -> str:
    return f"projects/{project_number}/locations/global/workloadIdentityPools/{pool.id}"


def member(project_number: str, pool: IdentityPool, provider: OidcProvider) -> str:
    """The principalSet the deployer account trusts: the provider's identities."""
    return (
        f"principalSet://iam.googleapis.com/{pool_name(project_number, pool)}/{provider.principal}"
    )


def service_agent(project_number: str) -> str:
    return f"serviceAccount:{CLOUD_BUILD_AGENT.format(number=project_number)}"


# --- Terraform ----------------------------------------------------------------------------


def _provisioning_tfvars(ci: CiResources | None) -> dict[str, Any] | None:
    if ci is None or not ci.accounts:
        return None

    def roles(scope: str) -> list[dict[str, str]]:
        return [
            {"role": r.role, "member": a.member}
            for a in ci.accounts
            for r in a.roles
            if r.scope == scope
        ]

    return {
        "state_bucket": next(
            r.resource for a in ci.accounts for r in a.roles if r.scope == "state_bucket"
        ),
        "accounts": {
            a.account_id: {"display_name": a.display_name, "description": a.description}
            for a in ci.accounts
        },
        "project_roles": roles("project"),
        "state_bucket_roles": roles("state_bucket"),
        "service_account_roles": [
            {"service_account": r.resource, "role": r.role, "member": a.member}
            for a in ci.accounts
            for r in a.roles
            if r.scope == "service_account"
        ],
        "workload_identity": [
            {"service_account": a.email, "principal": p} for a in ci.accounts for p in a.principals
        ],
    }


def tfvars(infra: Infrastructure) -> dict[str, Any]:
    """The CI variables of infra/terraform (ci_pool, cloud_build, ci_provisioning); null when
    unused."""
    ci = infra.ci
    pool = ci.pool if ci else None
    connection = ci.connection if ci else None
    return {
        "ci_pool": None
        if ci is None or pool is None
        else {
            "id": pool.id,
            "display_name": pool.display_name,
            "description": pool.description,
            "service_account": ci.deployer,
            "providers": {
                p.id: {
                    "display_name": p.display_name,
                    "issuer_uri": p.issuer_uri,
                    "attribute_mapping": dict(p.attribute_mapping),
                    "attribute_condition": p.attribute_condition,
                    "allowed_audiences": list(p.allowed_audiences),
                    "principal": p.principal,
                }
                for p in pool.providers
            },
        },
        "cloud_build": None
        if ci is None or connection is None
        else {
            "connection": connection.name,
            "host": connection.host,
            "host_uri": connection.host_uri,
            "app_installation_id": connection.app_installation_id,
            "workspace": connection.workspace,
            "secrets": dict(connection.secrets),
            "repository": connection.repository,
            "remote_uri": connection.remote_uri,
            "triggers": {
                t.name: {
                    "description": t.description,
                    "filename": t.filename,
                    "approval_required": t.approval_required,
                    "included_files": list(t.included_files),
                    "pull_request_branch": t.pull_request_branch,
                    "push_branch": t.push_branch,
                    "push_tag": t.push_tag,
                    "service_account": t.service_account,
                }
                for t in ci.triggers
            },
        },
        "ci_provisioning": _provisioning_tfvars(ci),
    }


# --- gcloud -------------------------------------------------------------------------------


def _with_number(step: CommandStep, responses: Responses) -> CommandStep:
    number = str(responses[NUMBER_STEP]).strip()
    return dataclasses.replace(step, command=tuple(a.replace(NUMBER, number) for a in step.command))


def _number_step(project: str) -> CommandStep:
    return CommandStep(
        NUMBER_STEP,
        _gcloud("projects", "describe", project, "--format=value(projectNumber)"),
        extract=str.strip,
    )


def _provider_flags(provider: OidcProvider) -> tuple[str, ...]:
    mapping = ",".join(f"{k}={v}" for k, v in provider.attribute_mapping.items())
    flags = [
        f"--display-name={provider.display_name}",
        f"--issuer-uri={provider.issuer_uri}",
        f"--attribute-mapping={mapping}",
        f"--attribute-condition={provider.attribute_condition}",
    ]
    if provider.allowed_audiences:
        flags.append(f"--allowed-audiences={','.join(provider.allowed_audiences)}")
    return tuple(flags)


def _connection_command(connection: BuildConnection, project: str, region: str) -> tuple[str, ...]:
    def version(use: str) -> str:
        return f"projects/{project}/secrets/{connection.secrets[use]}/versions/latest"

    base = ("builds", "connections", "create")
    where = (connection.name, f"--region={region}", f"--project={project}")
    if connection.host == "github":
        return _gcloud(
            *base, "github", *where,
            f"--authorizer-token-secret-version={version('authorizer')}",
            f"--app-installation-id={connection.app_installation_id}",
        )  # fmt: skip
    tokens = (
        f"--authorizer-token-secret-version={version('authorizer')}",
        f"--read-authorizer-token-secret-version={version('read_authorizer')}",
        f"--webhook-secret-secret-version={version('webhook')}",
    )
    if connection.host == "gitlab":
        return _gcloud(*base, "gitlab", *where, *tokens, f"--host-uri={connection.host_uri}")
    return _gcloud(*base, "bitbucket-cloud", *where, *tokens, f"--workspace={connection.workspace}")


def _trigger_command(
    trigger: BuildTrigger, connection: BuildConnection, deployer: str, project: str, region: str
) -> tuple[str, ...]:
    repository = (
        f"projects/{project}/locations/{region}/connections/{connection.name}/repositories/"
        f"{connection.repository}"
    )
    kind = {"github": "github", "gitlab": "gitlab", "bitbucket": "bitbucket-cloud"}
    if trigger.pull_request_branch is not None:
        event = (
            f"--pull-request-pattern={trigger.pull_request_branch}",
            f"--comment-control={COMMENT_CONTROL}",
        )
    elif trigger.push_branch is not None:
        event = (f"--branch-pattern={trigger.push_branch}",)
    else:
        event = (f"--tag-pattern={trigger.push_tag}",)
    files = (
        (f"--included-files={','.join(trigger.included_files)}",) if trigger.included_files else ()
    )
    return _gcloud(
        "builds", "triggers", "create", kind[connection.host],
        f"--name={trigger.name}", f"--region={region}", f"--project={project}",
        f"--repository={repository}", *event,
        f"--build-config={trigger.filename}",
        f"--service-account=projects/{project}/serviceAccounts/{deployer}",
        f"--description={trigger.description}",
        *files,
        "--require-approval" if trigger.approval_required else "--no-require-approval",
    )  # fmt: skip


def plan_gcloud(infra: Infrastructure) -> list[Step]:
    """The gcloud commands that make ``infra.ci`` (after the accounts exist); each create runs
    only when its describe fails; a provider's settings are updated on every run."""
    ci = infra.ci
    if ci is None:
        return []
    project, region = infra.project_id, infra.region
    in_project = f"--project={project}"
    steps: list[Step] = []
    if ci.pool is not None or ci.connection is not None:
        steps.append(_number_step(project))
    if ci.pool is not None:
        pool = ci.pool
        at = ("--location=global", in_project)
        steps.append(
            CommandStep(
                f"create workload identity pool {pool.id}",
                _gcloud(
                    "iam",
                    "workload-identity-pools",
                    "create",
                    pool.id,
                    *at,
                    f"--display-name={pool.display_name}",
                    f"--description={pool.description}",
                ),
                unless=_gcloud("iam", "workload-identity-pools", "describe", pool.id, *at),
            )
        )
        for provider in pool.providers:
            group = ("iam", "workload-identity-pools", "providers")
            where = (provider.id, f"--workload-identity-pool={pool.id}", *at)
            steps.append(
                CommandStep(
                    f"create OIDC provider {provider.id} ({provider.issuer_uri})",
                    _gcloud(*group, "create-oidc", *where, *_provider_flags(provider)),
                    unless=_gcloud(*group, "describe", *where),
                )
            )
            steps.append(
                CommandStep(
                    f"set issuer, mapping and condition of provider {provider.id}",
                    _gcloud(*group, "update-oidc", *where, *_provider_flags(provider)),
                )
            )
            steps.append(
                CommandStep(
                    f"let {provider.display_name} act as {ci.deployer}",
                    _gcloud(
                        "iam",
                        "service-accounts",
                        "add-iam-policy-binding",
                        ci.deployer,
                        in_project,
                        f"--member={member(NUMBER, pool, provider)}",
                        f"--role={WORKLOAD_IDENTITY_USER}",
                    ),
                    retry_delays=(2.0, 5.0, 10.0, 20.0),
                    resolve=_with_number,
                )
            )
    if ci.connection is not None:
        connection = ci.connection
        for secret in connection.secrets.values():
            steps.append(
                CommandStep(
                    f"let the Cloud Build service agent read secret {secret}",
                    _gcloud(
                        "secrets",
                        "add-iam-policy-binding",
                        secret,
                        in_project,
                        f"--member={service_agent(NUMBER)}",
                        f"--role={SECRET_ACCESSOR}",
                    ),
                    retry_delays=(2.0, 5.0, 10.0, 20.0),
                    resolve=_with_number,
                )
            )
        at = (f"--region={region}", in_project)
        steps.append(
            CommandStep(
                f"create Cloud Build connection {connection.name} ({connection.host})",
                _connection_command(connection, project, region),
                unless=_gcloud("builds", "connections", "describe", connection.name, *at),
            )
        )
        linked = (connection.repository, f"--connection={connection.name}", *at)
        steps.append(
            CommandStep(
                f"link repository {connection.remote_uri}",
                _gcloud(
                    "builds",
                    "repositories",
                    "create",
                    *linked,
                    f"--remote-uri={connection.remote_uri}",
                ),
                unless=_gcloud("builds", "repositories", "describe", *linked),
            )
        )
        for trigger in ci.triggers:
            steps.append(
                CommandStep(
                    f"create Cloud Build trigger {trigger.name}",
                    _trigger_command(trigger, connection, trigger.service_account, project, region),
                    unless=_gcloud("builds", "triggers", "describe", trigger.name, *at),
                )
            )
    steps.append(
        LocalStep(
            "show the CI settings",
            "print what the CI system needs (provider name, service account, triggers)",
            lambda responses: _print(ci_summary(infra, str(responses.get(NUMBER_STEP, NUMBER)))),
        )
    )
    return steps


def _print(text: str) -> str:
    print(text)
    return text


def ci_summary(infra: Infrastructure, project_number: str) -> str:
    """What the CI system needs to know of this environment, one line each."""
    ci = infra.ci
    if ci is None:
        return ""
    env = infra.environment
    lines = [f"CI ({ci.system}) of environment {env}:"]
    if ci.pool is not None:
        for provider in ci.pool.providers:
            lines.append(
                f"  workload identity provider: {pool_name(project_number, ci.pool)}/providers/"
                f"{provider.id}"
            )
    lines.append(f"  service account: {ci.deployer}")
    lines += _account_lines(ci, infra.environment)
    if ci.pending:
        lines.append(f"  {ci.pending}")
    if ci.system == "jenkins" and ci.pool is None:
        lines.append(
            "  Jenkins agents run as the CI deployer: attach it to the agent VMs, or run the "
            "agents on GKE as ci.jenkins_agent_member (no OpenID Connect provider: "
            "ci.jenkins_issuer is not set)"
        )
    if ci.connection is not None:
        for trigger in ci.triggers:
            lines.append(f"  Cloud Build trigger: {trigger.name} ({trigger.filename})")
    return "\n".join(lines)


# The CI variables of the provisioner and the planner (GitHub Actions; the other systems name
# the accounts in their CI files or triggers).
ACCOUNT_VARIABLES = {
    "provisioner": "GCP_PROVISIONER_SERVICE_ACCOUNT",
    "planner": "GCP_PLANNER_SERVICE_ACCOUNT",
}


def _account_lines(ci: CiResources, env: str) -> list[str]:
    lines = []
    for account in ci.accounts:
        if ci.pool is None:  # Cloud Build: the trigger names it
            where = ""
        elif ci.system == "jenkins":
            where = f" (Jenkins credential gcp-{account.kind}-service-account-{env})"
        else:
            where = f" (CI variable {ACCOUNT_VARIABLES[account.kind]})"
        lines.append(f"  {account.kind} service account: {account.email}{where}")
    return lines


def terraform_notes(infra: Infrastructure) -> list[Step]:
    """After terraform apply: where the CI settings are, and what Cloud Build still needs."""
    ci = infra.ci
    if ci is None:
        return []
    lines = [f"CI ({ci.system}) of environment {infra.environment}: the settings CI needs are in"]
    lines.append("  terraform -chdir=infra/terraform output (ci_workload_identity_providers,")
    lines.append("  service_account_emails, cloud_build_triggers, cloud_build_connection_action)")
    lines += _account_lines(ci, infra.environment)
    if ci.pending:
        lines.append(f"  {ci.pending}")
    text = "\n".join(lines)
    return [
        LocalStep("show the CI settings", "print where the CI settings are", lambda _: _print(text))
    ]


def plan_gcloud_teardown(infra: Infrastructure) -> list[Step]:
    """Delete the triggers, the repository link, the connection and the pool (its providers go
    with it; Google keeps a deleted pool 30 days, its id reserved). The token secrets are the
    team's: they stay, and so does the Cloud Build service agent's access to them."""
    ci = infra.ci
    if ci is None:
        return []
    project, region = infra.project_id, infra.region
    in_project = f"--project={project}"
    steps: list[Step] = []
    if ci.connection is not None:
        connection = ci.connection
        at = (f"--region={region}", in_project)
        for trigger in reversed(ci.triggers):
            steps.append(
                delete_if_found(
                    f"delete Cloud Build trigger {trigger.name}",
                    ("builds", "triggers"),
                    trigger.name,
                    *at,
                )
            )
        steps.append(
            delete_if_found(
                f"unlink repository {connection.repository}",
                ("builds", "repositories"),
                connection.repository,
                f"--connection={connection.name}",
                *at,
            )
        )
        steps.append(
            delete_if_found(
                f"delete Cloud Build connection {connection.name}",
                ("builds", "connections"),
                connection.name,
                *at,
            )
        )
    if ci.pool is not None:
        at = ("--location=global", in_project)
        steps.append(
            delete_if_found(
                f"delete workload identity pool {ci.pool.id} and its providers",
                ("iam", "workload-identity-pools"),
                ci.pool.id,
                *at,
            )
        )
    return steps


# --- documentation ------------------------------------------------------------------------


def identity_rows(infra: Infrastructure) -> list[str]:
    """Rows of the identities table for the CI identities that are no service account of the
    plan: the federated CI workloads, Jenkins agents, the Cloud Build service agent."""
    ci = infra.ci
    if ci is None:
        return []
    rows: list[str] = []
    deployer = f"service account `{ci.deployer}`"
    agent = ci.agent_member
    if ci.pool is not None:
        for provider in ci.pool.providers:
            who = member("PROJECT_NUMBER", ci.pool, provider)
            rows.append(f"| `{who}` | | | {provider.why} |")
            rows.append(
                f"| | `{WORKLOAD_IDENTITY_USER}` | {deployer} | deploy as the CI deployer, "
                f"keyless: `{provider.attribute_condition}` |"
            )
    for b in infra.bindings:
        if b.member == agent:
            rows.append(
                f"| `{b.member}` | | | the Kubernetes service account of the Jenkins agents |"
            )
            rows.append(f"| | `{b.role}` | {deployer} | {b.why} |")
    if ci.connection is not None:
        rows.append(
            f"| `{CLOUD_BUILD_AGENT.format(number='PROJECT_NUMBER')}` | | | Cloud Build's service "
            f"agent: connects to {ci.connection.host} |"
        )
        for secret in ci.connection.secrets.values():
            rows.append(
                f"| | `{SECRET_ACCESSOR}` | secret `{secret}` | read the {ci.connection.host} "
                "token the team stored |"
            )
    return rows + provisioning_rows(infra)


def provisioning_rows(infra: Infrastructure) -> list[str]:
    """Rows of the identities table for the CI provisioner and planner: roles, and the
    principalSets that may act as each."""
    ci = infra.ci
    if ci is None:
        return []
    rows: list[str] = []
    for account in ci.accounts:
        rows.append(f"| `{account.account_id}` | | | {account.why}: {account.admitted} |")
        for r in account.roles:
            rows.append(f"| | `{r.role}` | {r.scope.replace('_', ' ')} `{r.resource}` | {r.why} |")
        if ci.pool is not None:
            for principal in account.principals:
                who = f"principalSet://iam.googleapis.com/{pool_name('PROJECT_NUMBER', ci.pool)}"
                rows.append(
                    f"| `{who}/{principal}` | `{WORKLOAD_IDENTITY_USER}` | service account "
                    f"`{account.email}` | act as the CI {account.kind}, keyless |"
                )

    return rows
