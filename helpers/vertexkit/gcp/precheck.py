"""Before a deploy: does everything exist, and may the caller use it?

Each check is a read-only request (an ``HttpStep``, so ``--dry-run`` lists them) plus how to
read the answer and the command that fixes a problem. A 404 means missing, a 403 means the
check itself was denied; neither stops the other checks.

Permissions are tested where they are granted: project-level ones on the project, the others on
the bucket, the repositories and the service account, so that roles granted on a resource (least
privilege) count and project-level grants count too (resources inherit them).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

from vertexkit.gcp import provision, secrets
from vertexkit.project import naming
from vertexkit.project.config import ProjectConfig
from vertexkit.steps import CloudError, CredentialsError, HttpStep, Sender, endpoint

Status = Literal["OK", "MISSING", "DENIED", "ERROR"]

# The APIs checked: provisioning's list, one source (Secret Manager only with secrets).
APIS = provision.APIS
# The least-privileged predefined role that grants each permission a deploy needs.
ROLES = {
    "aiplatform.pipelineJobs.create": "roles/aiplatform.user",
    "aiplatform.pipelineJobs.get": "roles/aiplatform.user",
    "cloudbuild.builds.create": "roles/cloudbuild.builds.editor",
    "cloudbuild.builds.get": "roles/cloudbuild.builds.editor",
    "storage.objects.create": "roles/storage.objectCreator",
    "artifactregistry.repositories.uploadArtifacts": "roles/artifactregistry.writer",
    "iam.serviceAccounts.actAs": "roles/iam.serviceAccountUser",
}
PROJECT_PERMISSIONS = (
    "aiplatform.pipelineJobs.create",
    "aiplatform.pipelineJobs.get",
    "cloudbuild.builds.create",
    "cloudbuild.builds.get",
)


class Verdict(NamedTuple):
    status: Status
    detail: str = ""
    fix: str | None = None  # None: the check's own fix


@dataclass(frozen=True)
class Check:
    """One read-only request, how to read its 200 answer, and what fixes a problem."""

    name: str
    request: HttpStep
    fix: str  # when the resource is missing (404) or wrong
    interpret: Callable[[Any], Verdict]
    denied_fix: str = ""  # when the check itself is denied (403)


@dataclass(frozen=True)
class Result:
    check: str
    status: Status
    detail: str = ""
    fix: str = ""


def _exists(answer: Any) -> Verdict:
    return Verdict("OK")


def _enabled(answer: Any) -> Verdict:
    state = (answer or {}).get("state", "unknown")
    return Verdict("OK") if state == "ENABLED" else Verdict("MISSING", f"state {state}")


def _format(expected: str, config_key: str) -> Callable[[Any], Verdict]:
    def interpret(answer: Any) -> Verdict:
        found = (answer or {}).get("format", "unknown")
        if found == expected:
            return Verdict("OK")
        fix = f"name a {expected} repository in resources.{config_key} of the environment config"
        return Verdict("ERROR", f"format {found}, expected {expected}", fix)

    return interpret


def _granted(requested: Sequence[str], scope: str) -> Callable[[Any], Verdict]:
    def interpret(answer: Any) -> Verdict:
        granted = set((answer or {}).get("permissions") or [])
        missing = [p for p in requested if p not in granted]
        if not missing:
            return Verdict("OK")
        roles = ", ".join(dict.fromkeys(ROLES[p] for p in missing))
        return Verdict("MISSING", "missing " + ", ".join(missing), f"request {roles} on {scope}")

    return interpret


def _read(name: str, url: str, fix: str, interpret: Callable[[Any], Verdict], reader: str) -> Check:
    step = HttpStep(f"check {name}", "GET", url)
    return Check(name, step, fix, interpret, f"request {reader}")


def _test(scope: str, url: str, permissions: Sequence[str], fix: str, reader: str) -> Check:
    body = {"permissions": list(permissions)}
    step = HttpStep(f"check permissions on {scope}", "POST", url, body)
    interpret = _granted(permissions, scope)
    return Check(f"permissions on {scope}", step, fix, interpret, f"request {reader}")


def plan_checks(config: ProjectConfig) -> list[Check]:
    """Every check of ``config``'s environment: APIs, resources, then the caller's permissions."""
    project, region, names = config.gcp.project_id, config.gcp.region, config.names
    bucket, account = names.bucket, names.pipeline_service_account
    # What creates each resource: `invoke provision` when the project provisions, else the
    # gcloud command (the infrastructure is managed elsewhere).
    provision_task = (
        None
        if config.provisioning.tool == "none"
        else f"invoke provision --env {config.environment}"
    )
    make_bucket = provision_task or (
        f"gcloud storage buckets create gs://{bucket} --project {project} --location {region} "
        "--uniform-bucket-level-access"
    )

    def make_repository(repo: str, kind: str) -> str:
        return provision_task or (
            f"gcloud artifacts repositories create {repo} --repository-format {kind.lower()} "
            f"--location {region} --project {project}"
        )

    def make_service_account(email: str) -> str:
        return (
            provision_task
            or f"gcloud iam service-accounts create {email.split('@')[0]} --project {project}"
        )

    make_account = make_service_account(account)

    def url(service: str, path: str) -> str:
        return endpoint(service, region, config.endpoints) + path

    # Roles that let the caller read each resource, for checks that were denied.
    usage_viewer = f"roles/serviceusage.serviceUsageViewer on project {project}"
    bucket_reader = f"roles/storage.legacyBucketReader on bucket {bucket}"
    account_viewer = f"roles/iam.serviceAccountViewer on service account {account}"

    apis = url("serviceusage", f"/v1/projects/{project}/services")
    checks = [
        _read(
            f"API {api}",
            f"{apis}/{api}",
            provision_task or f"gcloud services enable {api} --project {project}",
            _enabled,
            usage_viewer,
        )
        for api in provision.required_apis(config)
    ]
    bucket_url = url("storage", f"/storage/v1/b/{bucket}")
    checks.append(_read(f"bucket {bucket}", bucket_url, make_bucket, _exists, bucket_reader))
    repositories = url(
        "artifactregistry", f"/v1/projects/{project}/locations/{region}/repositories"
    )
    repos = {"DOCKER": names.docker_repository, "KFP": names.kfp_repository}
    for kind, repo in repos.items():
        interpret = _format(kind, f"{kind.lower()}_repository")
        reader = f"roles/artifactregistry.reader on repository {repo}"
        repo_url = f"{repositories}/{repo}"
        fix = make_repository(repo, kind)
        checks.append(_read(f"{kind} repository {repo}", repo_url, fix, interpret, reader))
    account_url = url("iam", f"/v1/projects/{project}/serviceAccounts/{account}")
    name = f"service account {account}"
    checks.append(_read(name, account_url, make_account, _exists, account_viewer))
    # The other identities of the stack: the CI deployer and the Cloud Build account.
    for other in (names.deployer_service_account, names.build_service_account):
        checks.append(
            _read(
                f"service account {other}",
                url("iam", f"/v1/projects/{project}/serviceAccounts/{other}"),
                make_service_account(other),
                _exists,
                f"roles/iam.serviceAccountViewer on service account {other}",
            )
        )

    checks.append(
        _test(
            f"project {project}",
            url("cloudresourcemanager", f"/v1/projects/{project}:testIamPermissions"),
            PROJECT_PERMISSIONS,
            f"check gcp.project_id in config/{config.environment}.yaml",
            f"access to project {project} (e.g. roles/browser)",
        )
    )
    upload = ["artifactregistry.repositories.uploadArtifacts"]
    for kind, repo in repos.items():
        reader = f"roles/artifactregistry.reader on repository {repo}"
        repo_url = f"{repositories}/{repo}:testIamPermissions"
        fix = make_repository(repo, kind)
        checks.append(_test(f"repository {repo}", repo_url, upload, fix, reader))
    act_as = ["iam.serviceAccounts.actAs"]
    scope = f"service account {account}"
    checks.append(
        _test(scope, f"{account_url}:testIamPermissions", act_as, make_account, account_viewer)
    )
    # Cloud Storage tests bucket permissions with a GET and query parameters.
    create, scope = "storage.objects.create", f"bucket {bucket}"
    test_url = f"{bucket_url}/iam/testPermissions?permissions={create}"
    step = HttpStep(f"check permissions on {scope}", "GET", test_url)
    interpret = _granted([create], scope)
    denied = f"request {bucket_reader}"
    checks.append(Check(f"permissions on {scope}", step, make_bucket, interpret, denied))
    # Secrets: each exists and has an enabled latest version (the pipeline service account,
    # not the deployer, reads them at run time).
    checks += plan_access_checks(config, config.secrets, provision_task)
    return checks


def steps(checks: Sequence[Check]) -> list[HttpStep]:
    """The requests of ``checks``, for ``vertexkit.steps.execute(..., dry_run=True)``."""
    return [check.request for check in checks]


def run_checks(checks: Sequence[Check], sender: Sender | None = None) -> list[Result]:
    """Send every check's request and classify its answer; never stops at a failed check."""
    sender = sender or Sender()
    return [_run(check, sender) for check in checks]


def _run(check: Check, sender: Sender) -> Result:
    try:
        answer = sender.send(check.request)
    except CredentialsError:
        raise  # no check can run without credentials: say so once
    except CloudError as exc:
        if exc.status is None:
            return Result(check.name, "ERROR", f"no answer: {exc.detail or exc}")
        if exc.status == 404:
            return Result(check.name, "MISSING", "not found", check.fix)
        if exc.status == 403:
            detail = f"cannot check: permission denied: {exc.detail[:300]}"
            return Result(check.name, "DENIED", detail, check.denied_fix)
        return Result(check.name, "ERROR", f"HTTP {exc.status}: {exc.detail[:300]}")
    if not isinstance(answer, dict | None):
        return Result(check.name, "ERROR", f"unexpected answer: {str(answer)[:200]}")
    verdict = check.interpret(answer)
    fix = "" if verdict.status == "OK" else (verdict.fix or check.fix)
    return Result(check.name, verdict.status, verdict.detail, fix)


def passed(results: Sequence[Result]) -> bool:
    """True when every check is OK."""
    return all(result.status == "OK" for result in results)


def render_table(results: Sequence[Result]) -> str:
    """Aligned columns CHECK, STATUS, DETAIL, FIX and a closing summary line."""
    rows = [("CHECK", "STATUS", "DETAIL", "FIX")]
    rows += [(r.check, r.status, r.detail or "-", r.fix or "-") for r in results]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row[:3], widths, strict=True))
        + f"  {row[3]}"
        for row in rows
    ]
    problems = sum(result.status != "OK" for result in results)
    summary = (
        "precheck passed: ready to deploy"
        if problems == 0
        else f"precheck failed: {problems} of {len(results)} checks need attention"
    )
    return "\n".join([*lines, "", summary])


def plan_access_checks(
    config: ProjectConfig, names: Sequence[str] | None = None, provision_task: str | None = None
) -> list[Check]:
    """Precheck checks for each secret: it exists and its latest version is enabled.

    ``names`` defaults to the config's ``secrets``. The deploy runs as the deployer, not as the
    pipeline service account that reads the secrets at run time, so the checks read metadata
    only (``roles/secretmanager.viewer`` suffices) and say which role the pipeline service
    account needs on each secret.
    """
    if names is None:
        names = getattr(config, "secrets", ())
    project, region = config.gcp.project_id, config.gcp.region
    account = config.names.pipeline_service_account
    checks: list[Check] = []
    for name in dict.fromkeys(names):
        naming.check_secret_name(name)
        url = secrets.secret_url(name, project, endpoints=config.endpoints, region=region)
        grant = (
            f"gcloud secrets add-iam-policy-binding {name} --project {project} "
            f"--member serviceAccount:{account} --role {secrets.ACCESSOR_ROLE}"
        )
        add = (
            f"printf '%s' \"${name}\" | gcloud secrets versions add {name} "
            f"--project {project} --data-file=-"
        )
        needs = f"pipeline service account needs {secrets.ACCESSOR_ROLE} on it (not checked)"
        denied = f"request {secrets.VIEWER_ROLE} on secret {name} (metadata only, not the value)"

        def exists(answer: Any, needs: str = needs) -> Verdict:
            return Verdict("OK", needs)

        def enabled(answer: Any, name: str = name, add: str = add) -> Verdict:
            state = (answer or {}).get("state", "unknown")
            if state == "ENABLED":
                return Verdict("OK")
            fix = f"add a version: {add}"
            if state == "DISABLED":
                version = str((answer or {}).get("name", "")).rsplit("/", 1)[-1] or "VERSION"
                fix = (
                    f"gcloud secrets versions enable {version} --secret {name} --project "
                    f"{project}, or {fix}"
                )
            return Verdict("MISSING", f"latest version is {state}", fix)

        checks.append(
            Check(
                f"secret {name}",
                HttpStep(f"check secret {name}", "GET", url),
                f"{provision_task} (creates it empty and grants access); then {add}"
                if provision_task
                else f"gcloud secrets create {name} --project {project} "
                f"--replication-policy automatic; then {add}; then {grant}",
                exists,
                denied,
            )
        )
        checks.append(
            Check(
                f"latest version of secret {name}",
                HttpStep(f"check latest version of secret {name}", "GET", f"{url}/versions/latest"),
                f"add a version: {add}; then {grant}",
                enabled,
                denied,
            )
        )
    return checks
