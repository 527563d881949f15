"""Provisioning: what an environment needs in Google Cloud, as data, and how each tool makes it.

:func:`plan_infrastructure` computes, from one environment's validated config, every API,
bucket, repository, service account, secret and role binding the stack needs, each with why
(pure data). Both tools provision exactly that plan:

* ``gcloud``: :func:`plan_gcloud` turns it into commands, each one described before it creates
  (``describe || create``), so that a second run creates nothing;
* ``terraform``: :func:`tfvars` writes it to ``build/terraform/<env>.tfvars.json`` for the
  root module in ``infra/terraform/`` (which holds no naming or role logic), and
  :func:`plan_terraform` creates the state bucket, then runs init, plan and, once confirmed,
  apply.

``none``: the infrastructure is managed elsewhere; ``invoke precheck`` lists what must exist.
"""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from vertexkit.gcp import alerting, ci_identity, service_infra
from vertexkit.gcp.gcloud import delete_if_found
from vertexkit.gcp.gcloud import gcloud as _gcloud
from vertexkit.gcp.infrastructure import (
    Binding,
    Bucket,
    Infrastructure,
    Repository,
    Scope,
    Secret,
    ServiceAccount,
)
from vertexkit.project.config import ProjectConfig
from vertexkit.steps import CloudError, CommandStep, Found, HttpStep, LocalStep, Step, endpoint

# The APIs the stack needs, and no more; precheck checks the same list.
APIS: tuple[str, ...] = (
    "aiplatform.googleapis.com",
    "artifactregistry.googleapis.com",
    "cloudbuild.googleapis.com",
    "cloudresourcemanager.googleapis.com",
    "iam.googleapis.com",
    "logging.googleapis.com",
    "serviceusage.googleapis.com",
    "storage.googleapis.com",
    "monitoring.googleapis.com",  # the drift alert policy (gcp.alerting)
)
SECRET_API = "secretmanager.googleapis.com"  # only when config.secrets is not empty

TEMPORARY_PREFIX = "pipeline-root/"
TERRAFORM_DIR = "infra/terraform"
TERRAFORM_VERSION = ">= 1.5"
TERRAFORM_INSTALL = "https://developer.hashicorp.com/terraform/install"
TFVARS_DIR = "build/terraform"
# A service account created a moment ago may not be known to IAM yet: bindings naming it retry.
IAM_RETRY_DELAYS = (2.0, 5.0, 10.0, 20.0)


def required_apis(config: ProjectConfig) -> tuple[str, ...]:
    """The APIs of ``config``'s environment: :data:`APIS`, plus Secret Manager with secrets."""
    apis = (*APIS, SECRET_API) if config.secrets else APIS
    return ci_identity.with_ci_apis(apis, config)


def _account(email: str, display_name: str, description: str, why: str) -> ServiceAccount:
    return ServiceAccount(email.split("@", 1)[0], email, display_name, description, why)


def plan_infrastructure(config: ProjectConfig) -> Infrastructure:
    """The infrastructure of ``config``'s environment (pure: no request is sent)."""
    names, project, region = config.names, config.gcp.project_id, config.gcp.region
    runner = _account(
        names.pipeline_service_account,
        "Pipeline runner",
        "The identity Vertex AI pipeline jobs run as.",
        "pipeline jobs run as it: reads data and images, writes artifacts, reads secrets",
    )
    deployer = _account(
        names.deployer_service_account,
        "CI deployer",
        "Builds the image, publishes templates and submits runs (CI).",
        "CI deploys as it: starts builds, publishes templates, submits runs as the runner",
    )
    builder = _account(
        names.build_service_account,
        "Image builder",
        "The identity Cloud Build runs invoke build's builds as.",
        "Cloud Build runs `invoke build` as it: reads the build context, pushes the image",
    )
    bucket = Bucket(
        names.bucket,
        region.upper(),
        TEMPORARY_PREFIX,
        config.provisioning.temporary_artifact_days,
        "pipeline root (artifacts of every run), build contexts and data",
    )
    docker = Repository(
        names.docker_repository,
        "DOCKER",
        "Base image of the pipeline components",
        "the components' base image",
    )
    kfp = Repository(
        names.kfp_repository,
        "KFP",
        "Compiled pipeline templates",
        "pipeline templates published by `invoke publish`",
    )
    secrets = tuple(
        Secret(name, "named in config `secrets`; created empty, its value is never written here")
        for name in config.secrets
    )

    def grant(scope: Scope, resource: str, role: str, who: ServiceAccount, why: str) -> Binding:
        return Binding(scope, resource, role, who.member, why)

    bindings = [
        # Project level only where Google offers nothing narrower.
        grant("project", project, "roles/aiplatform.user", runner, "run pipeline jobs' tasks"),
        grant("project", project, "roles/logging.logWriter", runner, "write the jobs' logs"),
        grant("project", project, "roles/aiplatform.user", deployer, "submit and follow runs"),
        grant(
            "project",
            project,
            "roles/cloudbuild.builds.editor",
            deployer,
            "start the image build and follow it",
        ),
        grant("project", project, "roles/logging.logWriter", builder, "write the build's logs"),
        grant(
            "bucket",
            bucket.name,
            "roles/storage.objectAdmin",
            runner,
            "read inputs and write run artifacts under the pipeline root",
        ),
        grant(
            "bucket",
            bucket.name,
            "roles/storage.objectCreator",
            deployer,
            "upload the build context",
        ),
        grant(
            "bucket", bucket.name, "roles/storage.objectViewer", builder, "read the build context"
        ),
        grant(
            "repository",
            docker.id,
            "roles/artifactregistry.reader",
            runner,
            "pull the components' image",
        ),
        grant("repository", kfp.id, "roles/artifactregistry.reader", runner, "read the templates"),
        grant("repository", docker.id, "roles/artifactregistry.writer", builder, "push the image"),
        grant(
            "repository",
            kfp.id,
            "roles/artifactregistry.writer",
            deployer,
            "publish pipeline templates",
        ),
        grant(
            "service_account",
            runner.email,
            "roles/iam.serviceAccountUser",
            deployer,
            "submit runs that run as the pipeline runner",
        ),
        grant(
            "service_account",
            runner.email,
            "roles/iam.serviceAccountUser",
            runner,
            "start the custom jobs of sized components, which run as the runner too",
        ),
        grant(
            "service_account",
            builder.email,
            "roles/iam.serviceAccountUser",
            deployer,
            "start builds that run as the builder",
        ),
    ]
    bindings += [
        grant(
            "secret",
            secret.name,
            "roles/secretmanager.secretAccessor",
            runner,
            "components read the secret's value at run time",
        )
        for secret in secrets
    ]
    infra = Infrastructure(
        environment=config.environment,
        project_id=project,
        region=region,
        labels={
            "managed-by": "vertexkit",
            "environment": config.environment,
            "project": config.name,
        },
        apis=required_apis(config),
        buckets=(bucket,),
        repositories=(docker, kfp),
        service_accounts=(runner, deployer, builder),
        secrets=secrets,
        bindings=tuple(bindings),
        state_bucket=names.state_bucket,
        drift_alerting=alerting.plan_alerting(config),
    )
    return service_infra.with_submission(ci_identity.extend(infra, config), config)


def tfvars(infra: Infrastructure) -> dict[str, Any]:
    """The Terraform variables of ``infra``: the shared contract's JSON, every key present."""

    def roles(scope: Scope, key: str) -> list[dict[str, str]]:
        return [
            {key: b.resource, "role": b.role, "member": b.member} for b in infra.bindings_on(scope)
        ]

    return {
        "project_id": infra.project_id,
        "region": infra.region,
        "labels": dict(infra.labels),
        "apis": list(infra.apis),
        "buckets": {
            b.name: {
                "location": b.location,
                "temporary_prefix": b.temporary_prefix,
                "temporary_days": b.temporary_days,
            }
            for b in infra.buckets
        },
        "repositories": {
            r.id: {"format": r.format, "description": r.description} for r in infra.repositories
        },
        "service_accounts": {
            a.account_id: {"display_name": a.display_name, "description": a.description}
            for a in infra.service_accounts
        },
        "secrets": [s.name for s in infra.secrets],
        "project_roles": [
            {"role": b.role, "member": b.member} for b in infra.bindings_on("project")
        ],
        "bucket_roles": roles("bucket", "bucket"),
        "repository_roles": roles("repository", "repository"),
        "service_account_roles": roles("service_account", "service_account"),
        "secret_roles": roles("secret", "secret"),
        **ci_identity.tfvars(infra),
        **service_infra.tfvars(infra),
        **alerting.tfvars(infra),
    }


def lifecycle(bucket: Bucket) -> dict[str, Any]:
    """The bucket's lifecycle configuration: delete temporary artifacts after their days."""
    return {
        "rule": [
            {
                "action": {"type": "Delete"},
                "condition": {
                    "age": bucket.temporary_days,
                    "matchesPrefix": [bucket.temporary_prefix],
                },
            }
        ]
    }


class NotConfirmed(CloudError):
    """The user did not confirm (or could not be asked)."""


def confirmation(question: str, yes: bool, *, what: str) -> LocalStep:
    """A step that asks ``question`` on a terminal; ``yes`` skips it; no terminal: stop."""

    def ask(_: Any) -> bool:
        if yes:
            return True
        if not sys.stdin.isatty():
            raise NotConfirmed(
                f"{what}: nothing done, as there is no terminal to confirm on: pass --yes to "
                "go ahead without asking"
            )
        answer = input(f"{question} [y/N] ").strip().lower()
        if answer not in {"y", "yes"}:
            raise NotConfirmed(f"{what}: not confirmed, nothing done")
        return True

    return LocalStep("confirm", f"ask `{question} [y/N]` (--yes: skipped)", ask)


def identities_table(infra: Infrastructure) -> str:
    """A Markdown table of every identity, its roles, where and why (docs/provisioning.md)."""
    rows = ["| identity | role | on | why |", "| --- | --- | --- | --- |"]
    for account in infra.service_accounts:
        rows.append(f"| `{account.account_id}` | | | {account.why} |")
        for b in infra.bindings:
            if b.member == account.member:
                where = b.scope.replace("_", " ")
                rows.append(f"| | `{b.role}` | {where} `{b.resource}` | {b.why} |")
    rows += ci_identity.identity_rows(infra)
    rows += service_infra.identities_rows(infra)
    return "\n".join(rows)


# --- gcloud -------------------------------------------------------------------------------


def _binding_command(b: Binding, infra: Infrastructure, verb: str) -> tuple[str, ...]:
    project, region = f"--project={infra.project_id}", f"--location={infra.region}"
    who = (f"--member={b.member}", f"--role={b.role}")
    if b.scope == "project":
        return _gcloud("projects", f"{verb}-iam-policy-binding", b.resource, *who)
    if b.scope == "bucket":
        return _gcloud(
            "storage", "buckets", f"{verb}-iam-policy-binding", f"gs://{b.resource}", *who
        )
    if b.scope == "repository":
        return _gcloud(
            "artifacts", "repositories", f"{verb}-iam-policy-binding", b.resource, region, project,
            *who,
        )  # fmt: skip
    if b.scope == "service_account":
        return _gcloud(
            "iam", "service-accounts", f"{verb}-iam-policy-binding", b.resource, project, *who
        )
    return _gcloud("secrets", f"{verb}-iam-policy-binding", b.resource, project, *who)


def lifecycle_file(project_dir: Path, infra: Infrastructure, bucket: Bucket) -> Path:
    return project_dir / "build" / "provision" / infra.environment / f"{bucket.name}.lifecycle.json"


def plan_gcloud(infra: Infrastructure, project_dir: Path) -> list[Step]:
    """The gcloud commands that make ``infra``; each create runs only when its describe fails."""
    project, location = f"--project={infra.project_id}", f"--location={infra.region}"
    steps: list[Step] = [
        CommandStep("enable APIs", _gcloud("services", "enable", *infra.apis, project))
    ]
    for bucket in infra.buckets:
        url, rules = f"gs://{bucket.name}", lifecycle_file(project_dir, infra, bucket)
        steps.append(
            LocalStep(
                f"write lifecycle of {bucket.name}",
                f"write {rules.relative_to(project_dir)}: delete objects under "
                f"{bucket.temporary_prefix} older than {bucket.temporary_days} days",
                lambda _, rules=rules, bucket=bucket: _write_json(rules, lifecycle(bucket)),
            )
        )
        steps.append(
            CommandStep(
                f"create bucket {bucket.name}",
                _gcloud(
                    "storage",
                    "buckets",
                    "create",
                    url,
                    project,
                    location,
                    "--uniform-bucket-level-access",
                    "--public-access-prevention",
                ),
                unless=_gcloud("storage", "buckets", "describe", url, project),
            )
        )
        steps.append(
            CommandStep(
                f"versioning and lifecycle of {bucket.name}",
                _gcloud(
                    "storage",
                    "buckets",
                    "update",
                    url,
                    project,
                    "--versioning",
                    f"--lifecycle-file={rules}",
                ),
            )
        )
    for repo in infra.repositories:
        steps.append(
            CommandStep(
                f"create {repo.format} repository {repo.id}",
                _gcloud(
                    "artifacts",
                    "repositories",
                    "create",
                    repo.id,
                    f"--repository-format={repo.format.lower()}",
                    location,
                    project,
                    f"--description={repo.description}",
                ),
                unless=_gcloud("artifacts", "repositories", "describe", repo.id, location, project),
            )
        )
    for account in infra.service_accounts:
        steps.append(
            CommandStep(
                f"create service account {account.account_id}",
                _gcloud(
                    "iam",
                    "service-accounts",
                    "create",
                    account.account_id,
                    project,
                    f"--display-name={account.display_name}",
                    f"--description={account.description}",
                ),
                unless=_gcloud("iam", "service-accounts", "describe", account.email, project),
            )
        )
    for secret in infra.secrets:
        steps.append(
            CommandStep(
                f"create secret {secret.name}",
                _gcloud(
                    "secrets", "create", secret.name, project, "--replication-policy=automatic"
                ),
                unless=_gcloud("secrets", "describe", secret.name, project),
            )
        )
    for b in service_infra.provision_bindings(infra):
        steps.append(
            CommandStep(
                f"grant {b.role} on {b.scope.replace('_', ' ')} {b.resource} to "
                f"{b.member.split(':', 1)[1]}",
                _binding_command(b, infra, "add"),
                retry_delays=IAM_RETRY_DELAYS,
            )
        )
    steps += ci_identity.plan_gcloud(infra)
    steps += service_infra.plan_gcloud(infra, project_dir, IAM_RETRY_DELAYS)
    steps += alerting.plan_gcloud(infra, project_dir)
    return steps


def plan_gcloud_teardown(
    infra: Infrastructure, *, yes: bool, delete_data: bool
) -> tuple[list[Step], list[str]]:
    """Delete ``infra`` in reverse order; buckets only with ``delete_data``.

    Returns the steps and what is kept (one line each). APIs stay enabled. Bindings on a
    deleted resource go with it; project-level ones are removed first.
    """
    project, location = f"--project={infra.project_id}", f"--location={infra.region}"
    steps: list[Step] = [confirmation("delete these resources?", yes, what="deprovision")]
    steps += ci_identity.plan_gcloud_teardown(infra)
    steps += service_infra.plan_gcloud_teardown(infra)
    steps += alerting.plan_gcloud_teardown(infra)
    for b in reversed(infra.bindings_on("project")):
        email = b.member.split(":", 1)[1]
        steps.append(
            CommandStep(
                f"remove {b.role} on project from {email}",
                _binding_command(b, infra, "remove"),
                # Only while the account exists: a second teardown skips what the first removed.
                only_if=_gcloud("iam", "service-accounts", "describe", email, project),
            )
        )
    for secret in reversed(infra.secrets):
        steps.append(
            delete_if_found(f"delete secret {secret.name}", ("secrets",), secret.name, project)
        )
    for account in reversed(infra.service_accounts):
        steps.append(
            delete_if_found(
                f"delete service account {account.account_id}",
                ("iam", "service-accounts"),
                account.email,
                project,
            )
        )
    for repo in reversed(infra.repositories):
        steps.append(
            delete_if_found(
                f"delete {repo.format} repository {repo.id}",
                ("artifacts", "repositories"),
                repo.id,
                location,
                project,
            )
        )
    kept: list[str] = []
    for bucket in reversed(infra.buckets):
        url = f"gs://{bucket.name}"
        if delete_data:
            steps.append(
                CommandStep(
                    f"delete bucket {bucket.name} and every object in it",
                    _gcloud("storage", "rm", "--recursive", url, project),
                    only_if=_gcloud("storage", "buckets", "describe", url, project),
                )
            )
        else:
            kept.append(f"kept bucket {url} and its data (pass --delete-data to delete it)")
    return steps, kept


# --- Terraform ----------------------------------------------------------------------------


def tfvars_file(project_dir: Path, env: str) -> Path:
    return (project_dir / TFVARS_DIR / f"{env}.tfvars.json").resolve()


def plan_file(project_dir: Path, env: str) -> Path:
    return (project_dir / TFVARS_DIR / f"{env}.tfplan").resolve()


def terraform_missing() -> str | None:
    """Why Terraform cannot run here (it is not on PATH), or None."""
    if shutil.which("terraform"):
        return None
    return (
        f"terraform not found on PATH: provisioning with Terraform needs terraform "
        f"{TERRAFORM_VERSION}; install it from {TERRAFORM_INSTALL} (or set provisioning.tool "
        "to gcloud in config/base.yaml)"
    )


def missing_resource_hint(config: ProjectConfig | None, env: str) -> str:
    """What to do when a resource of the environment is missing (a 404 during a deploy)."""
    if config is None or config.provisioning.tool == "none":
        return (
            f"`invoke precheck --env {env}` lists what is missing in the environment and the "
            "command that creates it"
        )
    return (
        f"`invoke precheck --env {env}` lists what is missing in the environment; "
        f"`invoke provision --env {env}` creates it"
    )


def require_tool(config: ProjectConfig) -> None:
    """Before applying: the configured tool is installed, or a ProvisioningError says how to
    get it. (Dry runs need neither tool.)"""
    tool = config.provisioning.tool
    if tool == "terraform" and (missing := terraform_missing()):
        raise ProvisioningError(missing)
    if tool == "gcloud" and not shutil.which("gcloud"):
        raise ProvisioningError(
            "gcloud not found on PATH: provisioning.tool gcloud runs the Google Cloud CLI; "
            "install it from https://cloud.google.com/sdk/docs/install (or set "
            "provisioning.tool to terraform in config/base.yaml)"
        )


def state_bucket_body(infra: Infrastructure) -> dict[str, Any]:
    """The Cloud Storage JSON API body of the state bucket: versioned, private, uniform."""
    return {
        "name": infra.state_bucket,
        "location": infra.region.upper(),
        "versioning": {"enabled": True},
        "iamConfiguration": {
            "uniformBucketLevelAccess": {"enabled": True},
            "publicAccessPrevention": "enforced",
        },
        "labels": dict(infra.labels),
    }


def plan_state_bucket(infra: Infrastructure, endpoints: Mapping[str, str]) -> list[Step]:
    """Look the state bucket up; create it only when the lookup answered 404."""
    storage = endpoint("storage", infra.region, endpoints)
    check = f"check state bucket {infra.state_bucket}"

    def missing(answer: Any) -> bool:
        return isinstance(answer, dict) and answer.get("error", {}).get("code") == 404

    def create_if_missing(step: HttpStep, responses: Mapping[str, Any]) -> HttpStep | Found:
        return step if responses.get(check) else Found("exists")

    return [
        HttpStep(
            check,
            "GET",
            f"{storage}/storage/v1/b/{infra.state_bucket}",
            ok_statuses=(200, 404),
            extract=missing,
        ),
        HttpStep(
            f"create state bucket {infra.state_bucket}",
            "POST",
            f"{storage}/storage/v1/b?project={infra.project_id}",
            state_bucket_body(infra),
            when="only if the check found no such bucket (404)",
            resolve=create_if_missing,
        ),
    ]


def _terraform(*args: str) -> tuple[str, ...]:
    return ("terraform", f"-chdir={TERRAFORM_DIR}", *args)


def _init(infra: Infrastructure, cwd: str) -> CommandStep:
    return CommandStep(
        "terraform init",
        _terraform(
            "init",
            "-input=false",
            "-reconfigure",
            f"-backend-config=bucket={infra.state_bucket}",
            f"-backend-config=prefix={infra.environment}",
        ),
        cwd=cwd,
        stream=True,
    )


def _write_tfvars(infra: Infrastructure, project_dir: Path) -> LocalStep:
    path = tfvars_file(project_dir, infra.environment)
    return LocalStep(
        "write tfvars",
        f"write {TFVARS_DIR}/{infra.environment}.tfvars.json from config/{infra.environment}.yaml",
        lambda responses: _write_json(path, tfvars(service_infra.at_apply(infra, responses))),
    )


def plan_terraform(
    infra: Infrastructure, project_dir: Path, endpoints: Mapping[str, str], *, yes: bool
) -> list[Step]:
    """State bucket, tfvars, init, plan, confirmation, apply of the saved plan."""
    cwd, env = str(project_dir), infra.environment
    saved = plan_file(project_dir, env)
    return [
        *plan_state_bucket(infra, endpoints),
        *service_infra.plan_terraform_extras(infra, project_dir),
        *service_infra.plan_find_deployed(infra, endpoints),
        _write_tfvars(infra, project_dir),
        _init(infra, cwd),
        CommandStep(
            "terraform plan",
            _terraform(
                "plan",
                "-input=false",
                f"-var-file={tfvars_file(project_dir, env)}",
                f"-out={saved}",
            ),
            cwd=cwd,
            stream=True,
        ),
        confirmation("apply?", yes, what="provision"),
        CommandStep(
            "terraform apply", _terraform("apply", "-input=false", str(saved)), cwd=cwd, stream=True
        ),
        *ci_identity.terraform_notes(infra),
    ]


def plan_terraform_plan(
    infra: Infrastructure, project_dir: Path, endpoints: Mapping[str, str]
) -> list[Step]:
    """``invoke provision --plan``: what apply would change, creating nothing. The state bucket
    is only checked; init reads the backend; plan runs with -lock=false (no lock object is
    written, so a read-only identity such as the CI planner can run it), saves no plan and
    applies nothing."""
    cwd, env = str(project_dir), infra.environment
    storage = endpoint("storage", infra.region, endpoints)

    def exists(answer: Any) -> bool:
        if isinstance(answer, dict) and answer.get("error", {}).get("code") == 404:
            raise ProvisioningError(
                f"state bucket {infra.state_bucket} not found: nothing is provisioned in "
                f"environment {env} yet; run `invoke provision --env {env}` once (a plan "
                "creates nothing)"
            )
        return True

    return [
        HttpStep(
            f"check state bucket {infra.state_bucket}",
            "GET",
            f"{storage}/storage/v1/b/{infra.state_bucket}",
            ok_statuses=(200, 404),
            extract=exists,
        ),
        _write_tfvars(infra, project_dir),
        _init(infra, cwd),
        CommandStep(
            "terraform plan",
            _terraform(
                "plan",
                "-input=false",
                "-lock=false",
                f"-var-file={tfvars_file(project_dir, env)}",
            ),
            cwd=cwd,
            stream=True,
        ),
    ]


def plan_empty_buckets(infra: Infrastructure, endpoints: Mapping[str, str]) -> list[Step]:
    """Before a destroy without --delete-data: every bucket is empty (object versions too), or
    nothing is destroyed. (Terraform would refuse such a bucket only after deleting the rest.)"""
    storage = endpoint("storage", infra.region, endpoints)

    def refuse_objects(answer: Any, bucket: str) -> bool:
        if isinstance(answer, dict) and answer.get("items"):
            raise ProvisioningError(
                f"bucket {bucket} holds objects: nothing was deleted. Pass --delete-data to "
                "delete the buckets with everything in them, or empty them first"
            )
        return True

    return [
        HttpStep(
            f"check bucket {bucket.name} is empty",
            "GET",
            f"{storage}/storage/v1/b/{bucket.name}/o?versions=true&maxResults=1",
            ok_statuses=(200, 404),  # 404: the bucket is gone already
            extract=lambda answer, name=bucket.name: refuse_objects(answer, name),
        )
        for bucket in infra.buckets
    ]


def plan_terraform_teardown(
    infra: Infrastructure,
    project_dir: Path,
    endpoints: Mapping[str, str],
    *,
    yes: bool,
    delete_data: bool,
) -> tuple[list[Step], list[str]]:
    """(Without ``delete_data``: the buckets are empty), tfvars, init, confirmation, destroy;
    ``force_destroy`` only with ``delete_data``."""
    cwd, env = str(project_dir), infra.environment
    destroy = [
        "destroy",
        "-input=false",
        "-auto-approve",
        f"-var-file={tfvars_file(project_dir, env)}",
    ]
    if delete_data:
        destroy.append("-var=force_destroy=true")
    steps: list[Step] = [
        *([] if delete_data else plan_empty_buckets(infra, endpoints)),
        _write_tfvars(infra, project_dir),
        _init(infra, cwd),
        confirmation("destroy the environment's resources?", yes, what="deprovision"),
        CommandStep("terraform destroy", _terraform(*destroy), cwd=cwd, stream=True),
    ]
    kept = [
        f"kept the Terraform state bucket gs://{infra.state_bucket} (delete it yourself once "
        f"nothing uses it: gcloud storage rm --recursive gs://{infra.state_bucket})"
    ]
    return steps, kept


# --- both ---------------------------------------------------------------------------------


def managed_elsewhere(env: str) -> str:
    return (
        "provisioning.tool is none: this environment's infrastructure is managed elsewhere. "
        f"`invoke precheck --env {env}` lists what must exist and the command that creates each "
        "missing piece"
    )


def plan_provision(
    config: ProjectConfig,
    project_dir: Path,
    *,
    yes: bool,
    service_image: str | None = None,
    plan: bool = False,
) -> list[Step]:
    """The provisioning steps of ``config``'s environment with its configured tool (``plan``:
    Terraform's plan only, see :func:`plan_terraform_plan`)."""
    tool = config.provisioning.tool
    infra = service_infra.for_deploy(
        plan_infrastructure(config), project_dir, service_image, lookup=tool == "terraform"
    )
    if plan and tool != "terraform":
        raise ProvisioningError(
            f"--plan runs terraform plan, but provisioning.tool is {tool} in "
            f"{config.source_of('provisioning', 'tool')}: only provisioning.tool terraform has a "
            "plan; `invoke provision --dry-run` shows what would run"
        )
    if tool == "none":
        raise ProvisioningError(managed_elsewhere(config.environment))
    if tool == "gcloud":
        return plan_gcloud(infra, project_dir)
    _require_root_module(project_dir)
    if plan:
        return plan_terraform_plan(infra, project_dir, config.endpoints)
    return plan_terraform(infra, project_dir, config.endpoints, yes=yes)


def plan_deprovision(
    config: ProjectConfig, project_dir: Path, *, yes: bool, delete_data: bool
) -> tuple[list[Step], list[str]]:
    """The teardown steps and what they keep, with the configured tool."""
    infra = plan_infrastructure(config)
    tool = config.provisioning.tool
    if tool == "none":
        raise ProvisioningError(managed_elsewhere(config.environment))
    if tool == "gcloud":
        return plan_gcloud_teardown(infra, yes=yes, delete_data=delete_data)
    _require_root_module(project_dir)
    return plan_terraform_teardown(
        infra, project_dir, config.endpoints, yes=yes, delete_data=delete_data
    )


class ProvisioningError(ValueError):
    """Provisioning cannot run as configured; the message says why and what to do."""


def _require_root_module(project_dir: Path) -> None:
    if not (project_dir / TERRAFORM_DIR).is_dir():
        raise ProvisioningError(
            f"{TERRAFORM_DIR}/ not found in {project_dir}: provisioning.tool is terraform, which "
            "runs the root module there (render the project with provisioning=terraform, or set "
            "provisioning.tool to gcloud)"
        )


def _write_json(path: Path, data: Any) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    return str(path)
