"""The submission service's infrastructure: identities, the service, Pub/Sub, Cloud Scheduler.

:func:`with_submission` adds to an environment's :class:`Infrastructure` what the submission
service (``service.kind``: cloud-run or cloud-functions) and Cloud Scheduler schedules
(``scheduler: cloud-scheduler``) need, each piece with why; :func:`for_deploy` then leaves out
what cannot be deployed yet (a Cloud Run service before its image is built), saying so. Both
provisioning tools create the result: :func:`tfvars` feeds ``infra/terraform/service.tf``,
``pubsub.tf`` and ``scheduler.tf``; :func:`plan_gcloud` and :func:`plan_gcloud_teardown` are the
gcloud commands.

The flow of a scheduled run: a Cloud Scheduler job publishes ``{"pipeline": NAME, "parameters":
{...}}`` to the topic ``<prefix>-runs``; the push subscription ``<prefix>-runs-push`` delivers it
to ``<service URL>/pubsub/push`` with an OIDC token of the push account ``<prefix>-push``, which
alone (with the CI deployer) may invoke the private service; a message that fails
``max_delivery_attempts`` times goes to ``<prefix>-runs-dead-letter``, kept by a pull
subscription of the same name for inspection.

Google's service agents are named by the project number, which the plan does not know:
members and URLs hold :data:`PROJECT_NUMBER`, which Terraform replaces from ``data.google_project``
and the gcloud plan from ``gcloud projects describe``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import shutil
import subprocess
import zipfile
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import vertexkit
from vertexkit import __version__
from vertexkit.gcp import build
from vertexkit.gcp.gcloud import delete_if_found
from vertexkit.gcp.gcloud import gcloud as _gcloud
from vertexkit.gcp.infrastructure import (
    Binding,
    Infrastructure,
    SchedulerJob,
    Scope,
    ServiceAccount,
    SubmissionService,
    Subscription,
    Topic,
)
from vertexkit.project.config import ProjectConfig, load_config
from vertexkit.project.release import GitError, git_commit
from vertexkit.steps import (
    CloudError,
    CommandStep,
    Found,
    HttpStep,
    LocalStep,
    Responses,
    Step,
    endpoint,
    placeholder,
    substitute,
)

RUN_API = "run.googleapis.com"
PUBSUB_API = "pubsub.googleapis.com"
SCHEDULER_API = "cloudscheduler.googleapis.com"
FUNCTIONS_API = "cloudfunctions.googleapis.com"

PROJECT_NUMBER = "{project_number}"
PUBSUB_AGENT = f"serviceAccount:service-{PROJECT_NUMBER}@gcp-sa-pubsub.iam.gserviceaccount.com"
SCHEDULER_AGENT = (
    f"serviceAccount:service-{PROJECT_NUMBER}@gcp-sa-cloudscheduler.iam.gserviceaccount.com"
)
PUSH_PATH = "/pubsub/push"
SOURCE_DIR = "services/submission"  # main.py and requirements.txt of the Cloud Function
# The Cloud Functions entry point: the function `submit` in services/submission/main.py.
FUNCTION_ENTRY_POINT = "submit"
# What the function is deployed from: main.py, requirements.txt, vertexkit, config/ and the
# pipelines compiled for the environment (:func:`stage_function_source`).
STAGED_SOURCE = "build/service/function/{env}"
SOURCE_PREFIX = "functions/"  # in the environment's bucket, outside the temporary pipeline root
MAX_DELIVERY_ATTEMPTS = 5
# Cloud Scheduler retries a publish that failed; Pub/Sub then retries the push.
JOB_RETRY = {"retryCount": 3, "minBackoffDuration": "10s", "maxBackoffDuration": "300s"}


# --- names --------------------------------------------------------------------------------


def service_name(config: ProjectConfig) -> str:
    """The Cloud Run service (or 2nd gen function) of the submission service."""
    return f"{config.naming_prefix}-submit"


def push_account_email(config: ProjectConfig) -> str:
    """The identity Pub/Sub push requests carry (the OIDC token's e-mail)."""
    return f"{config.naming_prefix}-push@{config.gcp.project_id}.iam.gserviceaccount.com"


def topic_name(config: ProjectConfig) -> str:
    return f"{config.naming_prefix}-runs"


def dead_letter_topic_name(config: ProjectConfig) -> str:
    return f"{config.naming_prefix}-runs-dead-letter"


def push_subscription_name(config: ProjectConfig) -> str:
    return f"{config.naming_prefix}-runs-push"


def topic_path(config: ProjectConfig, name: str) -> str:
    return f"projects/{config.gcp.project_id}/topics/{name}"


def service_url(config: ProjectConfig) -> str:
    """The service's deterministic Cloud Run URL (2nd gen functions are Cloud Run services)."""
    return f"https://{service_name(config)}-{PROJECT_NUMBER}.{config.gcp.region}.run.app"


def job_name(config: ProjectConfig, pipeline: str) -> str:
    """A pipeline's Cloud Scheduler job id, per environment like Vertex AI schedules."""
    return f"{config.naming_prefix}-{pipeline}-{config.environment}"


def job_message(pipeline: str, parameters: Mapping[str, Any]) -> str:
    """The base64 JSON message a job publishes: the same bytes from every tool."""
    text = json.dumps(
        {"pipeline": pipeline, "parameters": dict(parameters)},
        sort_keys=True,
        separators=(",", ":"),
    )
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


def job_description(config: ProjectConfig, pipeline: str) -> str:
    return (
        f"Runs pipeline {pipeline} of {config.name} in {config.environment} through "
        f"{topic_name(config)} (vertexkit; config pipelines.{pipeline}.schedule)"
    )


# --- the plan -----------------------------------------------------------------------------


def _account(email: str, display_name: str, description: str, why: str) -> ServiceAccount:
    return ServiceAccount(email.split("@", 1)[0], email, display_name, description, why)


def scheduled_pipelines(config: ProjectConfig) -> list[str]:
    """The pipelines with a schedule in ``config``, in config order."""
    return [name for name, pipeline in config.pipelines.items() if pipeline.schedule]


def with_submission(infra: Infrastructure, config: ProjectConfig) -> Infrastructure:
    """``infra`` with the submission service's pieces (none when ``service.kind`` is none)."""
    kind = config.service.kind
    if kind == "none":
        return infra
    names, project = config.names, config.gcp.project_id
    submitter = _account(
        names.submission_service_account,
        "Submission service",
        "The identity the submission service runs as.",
        "the submission service runs as it: submits runs of the published templates",
    )
    pusher = _account(
        push_account_email(config),
        "Pub/Sub push",
        "The identity Pub/Sub push requests to the submission service carry.",
        "Pub/Sub pushes run requests to the service with an OIDC token of it",
    )
    name, url = service_name(config), service_url(config)
    environment = {
        "VERTEXKIT_ENV": config.environment,
        "VERTEXKIT__SERVICE__PUSH_SERVICE_ACCOUNT": pusher.email,
        "VERTEXKIT__SERVICE__PUSH_AUDIENCE": url,
    }
    bucket = infra.buckets[0].name if infra.buckets else ""
    service = SubmissionService(
        kind=kind,
        name=name,
        service_account=submitter.email,
        environment=environment,
        audience=url,
        why="starts this project's published pipelines on request (HTTP or Pub/Sub push)",
        source_dir=SOURCE_DIR if kind == "cloud-functions" else "",
        source_bucket=bucket if kind == "cloud-functions" else "",
        entry_point=FUNCTION_ENTRY_POINT if kind == "cloud-functions" else "",
        build_service_account=names.build_service_account if kind == "cloud-functions" else "",
        docker_repository=names.docker_repository if kind == "cloud-functions" else "",
    )
    runs, dead = topic_name(config), dead_letter_topic_name(config)
    topics = (
        Topic(runs, "run requests: Cloud Scheduler jobs and other systems publish here"),
        Topic(dead, "run requests the service refused or failed on, after the last retry"),
    )
    push = Subscription(
        name=push_subscription_name(config),
        topic=runs,
        why="delivers each run request to the service, retried with backoff",
        push_path=PUSH_PATH,
        push_service_account=pusher.email,
        audience=url,
        dead_letter_topic=dead,
        max_delivery_attempts=MAX_DELIVERY_ATTEMPTS,
    )
    # Messages published to a topic without subscriptions are lost: this one keeps them.
    keep = Subscription(name=dead, topic=dead, why="keeps dead letters 7 days for inspection")
    jobs: tuple[SchedulerJob, ...] = ()
    if config.scheduler == "cloud-scheduler":
        jobs = tuple(
            SchedulerJob(
                name=job_name(config, pipeline),
                pipeline=pipeline,
                schedule=schedule.cron,
                time_zone=schedule.timezone,
                topic=runs,
                data=job_message(pipeline, schedule.parameters),
                description=job_description(config, pipeline),
                why=f"publishes a run request of {pipeline} at `{schedule.cron}` "
                f"({schedule.timezone})",
            )
            for pipeline in scheduled_pipelines(config)
            if (schedule := config.pipelines[pipeline].schedule)
        )

    def grant(scope: Scope, resource: str, role: str, member: str, why: str) -> Binding:
        return Binding(scope, resource, role, member, why)

    runner, kfp = names.pipeline_service_account, names.kfp_repository
    bindings = [
        grant(
            "project",
            project,
            "roles/aiplatform.user",
            submitter.member,
            "create and read pipeline jobs (Vertex AI grants roles on the project only)",
        ),
        grant(
            "service_account",
            runner,
            "roles/iam.serviceAccountUser",
            submitter.member,
            "submit runs that run as the pipeline runner",
        ),
        grant(
            "repository",
            kfp,
            "roles/artifactregistry.reader",
            submitter.member,
            "read the published templates and their parameters",
        ),
        grant(
            "run_service",
            name,
            "roles/run.invoker",
            pusher.member,
            "deliver Pub/Sub push requests to the private service",
        ),
        grant(
            "run_service",
            name,
            "roles/run.invoker",
            f"serviceAccount:{names.deployer_service_account}",
            "CI calls the service (e.g. to start a run after a deploy)",
        ),
        grant(
            "service_account",
            pusher.email,
            "roles/iam.serviceAccountTokenCreator",
            PUBSUB_AGENT,
            "Pub/Sub's service agent mints the push requests' OIDC tokens as the push account",
        ),
        grant(
            "topic",
            dead,
            "roles/pubsub.publisher",
            PUBSUB_AGENT,
            "Pub/Sub's service agent forwards undeliverable messages to the dead-letter topic",
        ),
        grant(
            "subscription",
            push.name,
            "roles/pubsub.subscriber",
            PUBSUB_AGENT,
            "Pub/Sub's service agent acknowledges the messages it dead-letters",
        ),
    ]
    if jobs:
        bindings.append(
            grant(
                "topic",
                runs,
                "roles/pubsub.publisher",
                SCHEDULER_AGENT,
                "Cloud Scheduler's service agent publishes the jobs' messages (explicit on the "
                "topic, so that it holds where the agent's default project role was removed)",
            )
        )
    if kind == "cloud-run":
        deployer = f"serviceAccount:{names.deployer_service_account}"
        bindings += [
            grant(
                "run_service",
                name,
                "roles/run.developer",
                deployer,
                "deploy each new service image (`invoke publish`, `invoke promote`) to this "
                "service only",
            ),
            grant(
                "service_account",
                submitter.email,
                "roles/iam.serviceAccountUser",
                deployer,
                "deploy revisions that run as the submission service's account",
            ),
        ]
    if kind == "cloud-functions":
        bindings.append(
            grant(
                "service_account",
                names.build_service_account,
                "roles/iam.serviceAccountUser",
                f"serviceAccount:{names.deployer_service_account}",
                "deploy the function, whose build runs as the builder",
            )
        )
    apis = [RUN_API, PUBSUB_API]
    if jobs:
        apis.append(SCHEDULER_API)
    if kind == "cloud-functions":
        apis.append(FUNCTIONS_API)
    return replace(
        infra,
        apis=(*infra.apis, *(api for api in apis if api not in infra.apis)),
        service_accounts=(*infra.service_accounts, submitter, pusher),
        bindings=(*infra.bindings, *_unique(bindings, infra.bindings)),
        submission=service,
        topics=topics,
        subscriptions=(push, keep),
        scheduler_jobs=jobs,
    )


def _unique(new: list[Binding], existing: tuple[Binding, ...]) -> list[Binding]:
    seen = {(b.scope, b.resource, b.role, b.member) for b in existing}
    return [b for b in new if (b.scope, b.resource, b.role, b.member) not in seen]


def recorded_service_image(project_dir: Path, env: str) -> str | None:
    """The service image ``invoke build --env ENV`` (or ``invoke promote --to ENV``) recorded
    in ``build/images/<env>.json`` under ``service`` (``repo@sha256:...``), or None."""
    try:
        reference = build.read_service_image(project_dir, env)
    except build.BuildError:
        return None
    return reference if "@sha256:" in reference else None


def check_image(image: str) -> str:
    """An image given on the command line must be pinned by digest."""
    repository, _, digest = image.partition("@sha256:")
    if not repository or len(digest) != 64 or not all(c in "0123456789abcdef" for c in digest):
        raise ValueError(
            f"--service-image {image!r} is not an image by digest: give "
            "REGION-docker.pkg.dev/PROJECT/REPOSITORY/IMAGE@sha256:<64 hex digits>"
        )
    return image


def staged_source(project_dir: Path, env: str) -> Path:
    """The folder the Cloud Function of ``env`` is deployed from."""
    return project_dir / STAGED_SOURCE.format(env=env)


def source_inputs(project_dir: Path) -> list[Path]:
    """What the staged source is made of, in the project: the function's files, config/,
    uv.lock, and the pipelines and components compiled into it (caches left out)."""
    files = [project_dir / "uv.lock"]
    for folder in (SOURCE_DIR, "config", "pipelines", "components"):
        files += (project_dir / folder).rglob("*")
    return sorted(
        p
        for p in files
        if p.is_file() and "__pycache__" not in p.parts and p.suffix not in {".pyc", ".pyo"}
    )


def _source_digest(project_dir: Path, commit: str) -> str:
    """A digest of the staged source's inputs, the commit and vertexkit's version: the source
    object's name changes (a new build) exactly when the function would."""
    digest = hashlib.sha256(f"{commit}\0{__version__}\0".encode())
    for path in source_inputs(project_dir):
        digest.update(path.relative_to(project_dir).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()[:16]


def function_requirements(project_dir: Path) -> str:
    """The staged requirements.txt: the versions in uv.lock (``uv export --frozen``, without
    the project and vertexkit, which is packaged beside main.py), then what
    ``services/submission/requirements.txt`` adds (functions-framework)."""
    exported = subprocess.run(
        [
            build.uv_executable(),
            "export",
            "--frozen",
            "--no-dev",
            "--no-hashes",
            "--no-emit-project",
            "--no-emit-package",
            "vertexkit",
            "--format",
            "requirements-txt",
            "--quiet",
        ],
        cwd=project_dir,
        capture_output=True,
        text=True,
    )
    if exported.returncode != 0:
        raise build.BuildError(
            f"`uv export --frozen` failed in {project_dir}: {exported.stderr.strip()}"
        )
    locked = [
        line
        for line in exported.stdout.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    names = {re.split(r"[=<>!~ @;\[]", line.strip(), maxsplit=1)[0].lower() for line in locked}
    added = [
        line.strip()
        for line in (project_dir / SOURCE_DIR / "requirements.txt")
        .read_text(encoding="utf-8")
        .splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    own = [
        line
        for line in added
        if re.split(r"[=<>!~ @;\[]", line, maxsplit=1)[0].lower() not in names | {"vertexkit"}
    ]
    header = (
        "# Staged by `invoke provision` from uv.lock and services/submission/requirements.txt;\n"
        f"# vertexkit {__version__} is the folder vertexkit/ beside main.py.\n"
    )
    return header + "\n".join([*locked, *own]) + "\n"


def locked_version(project_dir: Path, package: str) -> str | None:
    """The version of ``package`` in the project's ``uv.lock`` (None: not there)."""
    try:
        text = (project_dir / "uv.lock").read_text(encoding="utf-8")
    except OSError:
        return None
    found = re.search(
        rf'^\[\[package\]\]\nname = "{re.escape(package)}"\nversion = "([^"]+)"', text, re.M
    )
    return found.group(1) if found else None


def stage_function_source(project_dir: Path, env: str) -> Path:
    """Write the Cloud Function's source for ``env`` into ``build/service/function/<env>/``:
    ``main.py``, ``requirements.txt`` (:func:`function_requirements`), ``vertexkit/`` (this
    vertexkit, packaged beside main.py as Google documents for local packages), ``config/`` and
    ``pipelines/`` compiled for ``env`` with their ``compiled.json``. Return the folder."""
    config = load_config(project_dir, env)
    locked = locked_version(project_dir, "vertexkit")
    if locked is not None and locked != __version__:
        raise build.BuildError(
            f"uv.lock locks vertexkit {locked}, but this is vertexkit {__version__}: the function "
            "gets the vertexkit that runs this task; run it with `uv run` after `uv sync`"
        )
    folder = staged_source(project_dir, env)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    source = project_dir / SOURCE_DIR
    shutil.copy2(source / "main.py", folder / "main.py")
    (folder / "requirements.txt").write_text(function_requirements(project_dir), encoding="utf-8")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.pyo")
    shutil.copytree(Path(vertexkit.__file__).parent, folder / "vertexkit", ignore=ignore)
    shutil.copytree(project_dir / "config", folder / "config", ignore=ignore)
    build.compile_service_pipelines(project_dir, config, folder / "pipelines")
    return folder


def staged_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file())


def write_source_archive(folder: Path, target: Path) -> str:
    """Zip the staged source reproducibly (fixed times and order); return the path."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in staged_files(folder):
            info = zipfile.ZipInfo(path.relative_to(folder).as_posix(), (1980, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            archive.writestr(info, path.read_bytes(), zipfile.ZIP_DEFLATED)
    return str(target)


def source_archive(project_dir: Path, env: str) -> Path:
    return project_dir / "build" / "provision" / env / "submission-source.zip"


def _runtime(project_dir: Path) -> str:
    """The Cloud Functions runtime of the project's Python (``.python-version``)."""
    try:
        version = (project_dir / ".python-version").read_text(encoding="utf-8").split()[0]
    except (OSError, IndexError):
        version = "3.11"
    major, minor = [*version.split("."), "11"][:2]
    return f"python{major}{minor}"


def for_deploy(
    infra: Infrastructure, project_dir: Path, image: str | None = None, *, lookup: bool = False
) -> Infrastructure:
    """``infra`` as provisioning can make it now: with the service's image (``image``, else the
    build record) or source; without a Cloud Run service, its push subscription, invoker roles
    and jobs while no image is known (a note says so). With ``lookup`` (Terraform), a Cloud Run
    service without a known image stays, its image None: :func:`plan_find_deployed` reads the
    one it runs when the steps run, and :func:`at_apply` decides."""
    service = infra.submission
    if service is None:
        return infra
    if service.kind == "cloud-functions":
        missing = [
            name
            for name in (f"{SOURCE_DIR}/main.py", f"{SOURCE_DIR}/requirements.txt", "uv.lock")
            if not (project_dir / name).is_file()
        ]
        if missing:
            return _without_service(
                infra,
                f"submission service not deployed: {' and '.join(missing)} not found in the "
                "project (the function's source is staged from them)",
            )
        try:
            commit = git_commit(project_dir)
        except GitError as exc:
            return _without_service(
                infra,
                f"submission service not deployed: the function serves the templates published "
                f"from a commit, and {exc}",
            )
        digest = _source_digest(project_dir, commit)
        return replace(
            infra,
            submission=replace(
                service,
                # The function has no git: it is told the commit its templates come from.
                environment={**service.environment, "VERTEXKIT_RELEASE_COMMIT": commit},
                runtime=_runtime(project_dir),
                source_dir=STAGED_SOURCE.format(env=infra.environment),
                source_archive=str(source_archive(project_dir, infra.environment).resolve()),
                source_object=f"{SOURCE_PREFIX}{service.name}-{digest}.zip",
            ),
        )
    image = image or recorded_service_image(project_dir, infra.environment)
    if image is None and lookup:
        return replace(
            infra,
            notes=(
                *infra.notes,
                f"no service image recorded for {infra.environment}: the Cloud Run service keeps "
                "the image it runs (read when the variables are written)",
            ),
        )
    if image is None:
        return _without_service(infra, _no_image_note(infra.environment))
    return replace(infra, submission=replace(service, image=image))


def _no_image_note(env: str) -> str:
    return (
        f"submission service not deployed: no image digest for environment {env} (no `service` "
        f"in build/images/{env}.json, and no service deployed). Its account, Pub/Sub topics and "
        f"roles are provisioned now; run `invoke build --env {env}` (or pass --service-image "
        f"REPO@sha256:...), then `invoke provision --env {env}` again to deploy the service, its "
        "push subscription and the Cloud Scheduler jobs"
    )


def _without_service(infra: Infrastructure, note: str) -> Infrastructure:
    assert infra.submission is not None
    name = infra.submission.name
    pushing = {s.name for s in infra.subscriptions if s.push_path}
    return replace(
        infra,
        submission=None,
        subscriptions=tuple(s for s in infra.subscriptions if s.name not in pushing),
        scheduler_jobs=(),
        bindings=tuple(
            b
            for b in infra.bindings
            if not (b.scope == "run_service" and b.resource == name)
            and not (b.scope == "subscription" and b.resource in pushing)
            and b.member != SCHEDULER_AGENT
        ),
        notes=(*infra.notes, note),
    )


def identities_rows(infra: Infrastructure) -> list[str]:
    """Rows of the identities table for Google's service agents, which the plan grants roles to
    but does not create."""
    accounts = {a.member for a in infra.service_accounts}
    agents = [m for m in dict.fromkeys(b.member for b in infra.bindings) if m not in accounts]
    rows = []
    for member in agents:
        email = member.split(":", 1)[1]
        rows.append(f"| `{email}` | | | a Google service agent (not created here) |")
        for b in infra.bindings:
            if b.member == member:
                where = b.scope.replace("_", " ")
                rows.append(f"| | `{b.role}` | {where} `{b.resource}` | {b.why} |")
    return rows


def identities_table(infra: Infrastructure) -> str:
    """The submission service's identities and the roles that concern it, in the format of
    :func:`vertexkit.gcp.provision.identities_table` (docs/provisioning.md shows both)."""
    service = infra.submission
    if service is None:
        return ""
    ours = {service.service_account} | {s.push_service_account for s in infra.subscriptions}

    def concerns(b: Binding) -> bool:
        return (
            b.member.split(":", 1)[1] in ours
            or b.scope in ("run_service", "topic", "subscription")
            or PROJECT_NUMBER in b.member
            or (
                b.scope == "service_account"
                and b.resource in (service.build_service_account, service.service_account)
            )
        )

    accounts = {a.member: a for a in infra.service_accounts}
    rows = ["| identity | role | on | why |", "| --- | --- | --- | --- |"]
    for member in dict.fromkeys(b.member for b in infra.bindings if concerns(b)):
        account = accounts.get(member)
        if account is None:
            why = "a Google service agent (not created here)"
            rows.append(f"| `{member.split(':', 1)[1]}` | | | {why} |")
        else:
            why = account.why if account.email in ours else f"{account.display_name}, as above"
            rows.append(f"| `{account.account_id}` | | | {why} |")
        for b in infra.bindings:
            if b.member == member and concerns(b):
                where = b.scope.replace("_", " ")
                rows.append(f"| | `{b.role}` | {where} `{b.resource}` | {b.why} |")
    return "\n".join(rows)


# --- Terraform ----------------------------------------------------------------------------


def tfvars(infra: Infrastructure) -> dict[str, Any]:
    """The submission service's Terraform variables (``service.tf``, ``pubsub.tf``,
    ``scheduler.tf``): every key present, empty without a service."""
    service = infra.submission
    run_services: dict[str, Any] = {}
    functions: dict[str, Any] = {}
    if service is not None and service.kind == "cloud-run" and service.image:
        run_services[service.name] = {
            "image": service.image,
            "service_account": service.service_account,
            "environment": dict(service.environment),
        }
    if service is not None and service.kind == "cloud-functions" and service.source_object:
        functions[service.name] = {
            "runtime": service.runtime,
            "entry_point": service.entry_point,
            "source_bucket": service.source_bucket,
            "source_object": service.source_object,
            "source_path": service.source_archive,
            "service_account": service.service_account,
            "build_service_account": service.build_service_account,
            "docker_repository": service.docker_repository,
            "environment": dict(service.environment),
        }

    def roles(scope: Scope, key: str) -> list[dict[str, str]]:
        return [
            {key: b.resource, "role": b.role, "member": b.member} for b in infra.bindings_on(scope)
        ]

    url = service.audience if service else ""
    # Roles on service accounts for Google's service agents hold the project number, which
    # Terraform fills in (service.tf): they leave provision's service_account_roles for
    # agent_service_account_roles (this dict is merged last into provision.tfvars).
    on_accounts = roles("service_account", "service_account")
    return {
        "service_account_roles": [b for b in on_accounts if PROJECT_NUMBER not in b["member"]],
        "agent_service_account_roles": [b for b in on_accounts if PROJECT_NUMBER in b["member"]],
        "run_services": run_services,
        "functions": functions,
        "pubsub_topics": [t.name for t in infra.topics],
        "push_subscriptions": {
            s.name: {
                "topic": s.topic,
                "push_endpoint": url + s.push_path,
                "service_account": s.push_service_account,
                "audience": s.audience,
                "dead_letter_topic": s.dead_letter_topic,
                "max_delivery_attempts": s.max_delivery_attempts,
                "minimum_backoff": s.minimum_backoff,
                "maximum_backoff": s.maximum_backoff,
                "ack_deadline_seconds": s.ack_deadline_seconds,
            }
            for s in infra.subscriptions
            if s.push_path
        },
        "pull_subscriptions": {
            s.name: {"topic": s.topic, "message_retention": s.message_retention}
            for s in infra.subscriptions
            if not s.push_path
        },
        "scheduler_jobs": {
            j.name: {
                "schedule": j.schedule,
                "time_zone": j.time_zone,
                "topic": j.topic,
                "data": j.data,
                "description": j.description,
                "retry_count": JOB_RETRY["retryCount"],
                "min_backoff": JOB_RETRY["minBackoffDuration"],
                "max_backoff": JOB_RETRY["maxBackoffDuration"],
            }
            for j in infra.scheduler_jobs
        },
        "run_service_roles": roles("run_service", "service"),
        "topic_roles": roles("topic", "topic"),
        "subscription_roles": roles("subscription", "subscription"),
    }


def plan_terraform_extras(infra: Infrastructure, project_dir: Path) -> list[Step]:
    """Before ``terraform plan``: zip the function's source (cloud-functions), and show notes."""
    steps: list[Step] = [_note(note) for note in infra.notes]
    service = infra.submission
    if service is not None and service.kind == "cloud-functions":
        archive = source_archive(project_dir, infra.environment)
        steps.append(_stage_step(project_dir, infra.environment))
        steps.append(
            LocalStep(
                "zip the submission service's source",
                f"zip {service.source_dir}/ into {archive.relative_to(project_dir)} (uploaded "
                f"by Terraform as gs://{service.source_bucket}/{service.source_object})",
                lambda _: write_source_archive(
                    staged_source(project_dir, infra.environment), archive
                ),
            )
        )
    return steps


def _stage_step(project_dir: Path, env: str) -> LocalStep:
    return LocalStep(
        "stage the submission service's source",
        f"write {STAGED_SOURCE.format(env=env)}/: main.py, requirements.txt (from uv.lock), "
        f"vertexkit/, config/ and pipelines/ compiled for {env}",
        lambda _: str(stage_function_source(project_dir, env)),
    )


def _note(note: str) -> LocalStep:
    def show(_: Any) -> str:
        print(f"  note: {note}")
        return note

    return LocalStep("note", note, show)


# --- gcloud -------------------------------------------------------------------------------

NUMBER_STEP = "find the project number"
NUMBER = placeholder(NUMBER_STEP, "projectNumber")


def _numbered(step: CommandStep) -> CommandStep:
    """``step`` with the project number filled in from the earlier lookup when it is sent."""
    if not any(NUMBER in part for part in step.command):
        return step

    def fill(command: CommandStep, responses: Mapping[str, Any]) -> CommandStep:
        number = str(responses.get(NUMBER_STEP, "")).strip()
        return replace(
            command,
            command=tuple(substitute(list(command.command), {NUMBER: number})),
            resolve=None,
        )

    return replace(step, resolve=fill)


def _show(text: str) -> str:
    return text.replace(PROJECT_NUMBER, NUMBER)


def binding_command(b: Binding, infra: Infrastructure, verb: str) -> tuple[str, ...] | None:
    """The gcloud command of a binding on the service's resources (None: not one of them)."""
    project, region = f"--project={infra.project_id}", f"--region={infra.region}"
    who = (f"--member={_show(b.member)}", f"--role={b.role}")
    if b.scope == "run_service":
        return _gcloud(
            "run", "services", f"{verb}-iam-policy-binding", b.resource, region, project, *who
        )
    if b.scope == "topic":
        return _gcloud("pubsub", "topics", f"{verb}-iam-policy-binding", b.resource, project, *who)
    if b.scope == "subscription":
        return _gcloud(
            "pubsub", "subscriptions", f"{verb}-iam-policy-binding", b.resource, project, *who
        )
    if PROJECT_NUMBER in b.member and b.scope == "service_account":
        return _gcloud(
            "iam", "service-accounts", f"{verb}-iam-policy-binding", b.resource, project, *who
        )
    return None


def provision_bindings(infra: Infrastructure) -> list[Binding]:
    """The bindings :func:`vertexkit.gcp.provision.plan_gcloud` grants: all but those on the
    service's resources and to service agents, which :func:`plan_gcloud` grants after creating
    them."""
    return [b for b in infra.bindings if binding_command(b, infra, "add") is None]


def plan_gcloud(infra: Infrastructure, project_dir: Path, retry: tuple[float, ...]) -> list[Step]:
    """The gcloud commands of the service, Pub/Sub and jobs (after the accounts and bindings
    of :func:`vertexkit.gcp.provision.plan_gcloud`); each create runs only when its describe
    fails, deploys and updates always (they are idempotent)."""
    if infra.submission is None and not infra.topics:
        return [_note(note) for note in infra.notes]
    project, region = f"--project={infra.project_id}", f"--region={infra.region}"
    location = f"--location={infra.region}"
    steps: list[Step] = [_note(note) for note in infra.notes]
    steps.append(
        CommandStep(
            NUMBER_STEP,
            _gcloud("projects", "describe", infra.project_id, "--format=value(projectNumber)"),
            extract=lambda output: output.strip(),
        )
    )
    service = infra.submission
    if service is not None:
        env = ",".join(f"{k}={_show(v)}" for k, v in service.environment.items())
        if service.kind == "cloud-run":
            assert service.image
            steps.append(
                CommandStep(
                    f"deploy Cloud Run service {service.name}",
                    _gcloud(
                        "run",
                        "deploy",
                        service.name,
                        f"--image={service.image}",
                        region,
                        project,
                        f"--service-account={service.service_account}",
                        "--no-allow-unauthenticated",
                        "--ingress=all",
                        f"--set-env-vars={env}",
                        f"--labels={_labels(infra)}",
                        "--quiet",
                    ),
                )
            )
        else:
            steps.append(_stage_step(project_dir, infra.environment))
            steps.append(
                CommandStep(
                    f"deploy Cloud Function {service.name} (2nd gen)",
                    _gcloud(
                        "functions",
                        "deploy",
                        service.name,
                        "--gen2",
                        region,
                        project,
                        f"--runtime={service.runtime}",
                        f"--source={project_dir / service.source_dir}",
                        f"--entry-point={service.entry_point}",
                        "--trigger-http",
                        "--no-allow-unauthenticated",
                        "--ingress-settings=all",
                        f"--service-account={service.service_account}",
                        "--build-service-account=projects/"
                        f"{infra.project_id}/serviceAccounts/{service.build_service_account}",
                        f"--docker-repository=projects/{infra.project_id}/locations/"
                        f"{infra.region}/repositories/{service.docker_repository}",
                        f"--set-env-vars={env}",
                        f"--update-labels={_labels(infra)}",
                        "--quiet",
                    ),
                )
            )
    for topic in infra.topics:
        steps.append(
            CommandStep(
                f"create Pub/Sub topic {topic.name}",
                _gcloud(
                    "pubsub", "topics", "create", topic.name, project, f"--labels={_labels(infra)}"
                ),
                unless=_gcloud("pubsub", "topics", "describe", topic.name, project),
            )
        )
    url = _show(service.audience) if service else ""
    for sub in infra.subscriptions:
        if sub.push_path:
            options = (
                f"--push-endpoint={url}{sub.push_path}",
                f"--push-auth-service-account={sub.push_service_account}",
                f"--push-auth-token-audience={_show(sub.audience)}",
                f"--dead-letter-topic={sub.dead_letter_topic}",
                f"--max-delivery-attempts={sub.max_delivery_attempts}",
                f"--min-retry-delay={sub.minimum_backoff}",
                f"--max-retry-delay={sub.maximum_backoff}",
                f"--ack-deadline={sub.ack_deadline_seconds}",
            )
        else:
            options = (
                f"--message-retention-duration={sub.message_retention}",
                "--expiration-period=never",
            )
        steps.append(
            CommandStep(
                f"create Pub/Sub subscription {sub.name}",
                _gcloud(
                    "pubsub",
                    "subscriptions",
                    "create",
                    sub.name,
                    f"--topic={sub.topic}",
                    project,
                    *options,
                ),
                unless=_gcloud("pubsub", "subscriptions", "describe", sub.name, project),
            )
        )
        steps.append(
            CommandStep(
                f"update Pub/Sub subscription {sub.name}",
                _gcloud("pubsub", "subscriptions", "update", sub.name, project, *options),
            )
        )
    for b in infra.bindings:
        command = binding_command(b, infra, "add")
        if command is None:
            continue
        steps.append(
            CommandStep(
                f"grant {b.role} on {b.scope.replace('_', ' ')} {b.resource} to "
                f"{_show(b.member).split(':', 1)[1]}",
                command,
                retry_delays=retry,
            )
        )
    for job in infra.scheduler_jobs:
        message = base64.b64decode(job.data).decode("utf-8")
        options = (
            location,
            project,
            f"--schedule={job.schedule}",
            f"--time-zone={job.time_zone}",
            f"--topic={job.topic}",
            f"--message-body={message}",
            f"--description={job.description}",
            f"--max-retry-attempts={JOB_RETRY['retryCount']}",
            f"--min-backoff={JOB_RETRY['minBackoffDuration']}",
            f"--max-backoff={JOB_RETRY['maxBackoffDuration']}",
        )
        steps.append(
            CommandStep(
                f"create Cloud Scheduler job {job.name}",
                _gcloud("scheduler", "jobs", "create", "pubsub", job.name, *options),
                unless=_gcloud("scheduler", "jobs", "describe", job.name, location, project),
            )
        )
        steps.append(
            CommandStep(
                f"update Cloud Scheduler job {job.name}",
                _gcloud("scheduler", "jobs", "update", "pubsub", job.name, *options),
            )
        )
    return [_numbered(s) if isinstance(s, CommandStep) else s for s in steps]


def _labels(infra: Infrastructure) -> str:
    return ",".join(f"{k}={v}" for k, v in infra.labels.items())


def plan_gcloud_teardown(infra: Infrastructure) -> list[Step]:
    """Delete the jobs, subscriptions, topics and the service (before the accounts go)."""
    project, region = f"--project={infra.project_id}", f"--region={infra.region}"
    location = f"--location={infra.region}"
    steps: list[Step] = []
    for job in reversed(infra.scheduler_jobs):
        steps.append(
            delete_if_found(
                f"delete Cloud Scheduler job {job.name}",
                ("scheduler", "jobs"),
                job.name,
                location,
                project,
            )
        )
    for sub in reversed(infra.subscriptions):
        steps.append(
            delete_if_found(
                f"delete Pub/Sub subscription {sub.name}",
                ("pubsub", "subscriptions"),
                sub.name,
                project,
            )
        )
    for topic in reversed(infra.topics):
        steps.append(
            delete_if_found(
                f"delete Pub/Sub topic {topic.name}", ("pubsub", "topics"), topic.name, project
            )
        )
    service = infra.submission
    if service is not None and service.kind == "cloud-run":
        steps.append(
            delete_if_found(
                f"delete Cloud Run service {service.name}",
                ("run", "services"),
                service.name,
                region,
                project,
            )
        )
    elif service is not None:
        steps.append(
            delete_if_found(
                f"delete Cloud Function {service.name}",
                ("functions",),
                service.name,
                "--gen2",
                region,
                project,
            )
        )
    return steps


# --- rolling out a new service image (Cloud Run) ---------------------------------------------

FIND_DEPLOYED = "find the deployed service image"
READ_SERVICE = "read the Cloud Run service"
ROLL_OUT = "deploy the service image"
WAIT_ROLL_OUT = "wait for the service's new revision"
ROLLOUT_POLLS = 120  # ten minutes at five seconds


def _run_service_url(
    project: str, region: str, name: str, endpoints: Mapping[str, str] | None
) -> str:
    base = endpoint("run", region, endpoints)
    return f"{base}/v2/projects/{project}/locations/{region}/services/{name}"


def _deployed_image(answer: Any) -> str | None:
    """The image of a Cloud Run service's (v2) first container, if it is pinned by digest."""
    try:
        image = answer["template"]["containers"][0]["image"]
    except (KeyError, IndexError, TypeError):
        return None
    return image if isinstance(image, str) and "@sha256:" in image else None


def plan_find_deployed(infra: Infrastructure, endpoints: Mapping[str, str] | None) -> list[Step]:
    """Terraform without a recorded image (a fresh CI checkout): read the image the Cloud Run
    service runs, so that the variables keep the service (whose image Terraform ignores once
    it exists) instead of removing it; :func:`at_apply` uses the answer."""
    service = infra.submission
    if service is None or service.kind != "cloud-run" or service.image:
        return []
    return [
        HttpStep(
            FIND_DEPLOYED,
            "GET",
            _run_service_url(infra.project_id, infra.region, service.name, endpoints),
            ok_statuses=(200, 404),
            expect_json=True,
            extract=lambda answer: {"image": _deployed_image(answer)},
        )
    ]


def at_apply(infra: Infrastructure, responses: Mapping[str, Any]) -> Infrastructure:
    """``infra`` with the Cloud Run service's image found by :func:`plan_find_deployed`; without
    one (no service yet), without the service and what needs it, saying so."""
    service = infra.submission
    if service is None or service.kind != "cloud-run" or service.image:
        return infra
    image = (responses.get(FIND_DEPLOYED) or {}).get("image")
    if image:
        return replace(infra, submission=replace(service, image=image))
    return _without_service(infra, _no_image_note(infra.environment))


def plan_rollout(config: ProjectConfig, project_dir: Path) -> list[Step]:
    """Deploy the service image recorded for ``config``'s environment (``invoke build`` or
    ``invoke promote`` wrote it; read when the step runs) to its Cloud Run service through the
    Cloud Run Admin API v2: read the service, replace its container's image in the revision
    template (everything else as it is), wait for the new revision. Skipped, saying why, when
    nothing was built, the service does not exist yet (``invoke provision`` creates it) or
    already runs that image. The CI deployer may do it: ``roles/run.developer`` on this service
    and ``roles/iam.serviceAccountUser`` on the account it runs as, nothing more."""
    if config.service.kind != "cloud-run":
        return []
    gcp, env = config.gcp, config.environment
    name = service_name(config)
    url = _run_service_url(gcp.project_id, gcp.region, name, config.endpoints)
    base = endpoint("run", gcp.region, config.endpoints)
    operation = placeholder(ROLL_OUT, "operation name")

    def patch(step: HttpStep, responses: Responses) -> HttpStep | Found:
        image = recorded_service_image(project_dir, env)
        current = responses.get(READ_SERVICE) or {}
        if image is None:
            return Found({"skipped": f"no service image recorded for {env}"})
        if "template" not in current:
            return Found(
                {"skipped": f"Cloud Run service {name} not found: `invoke provision --env {env}`"}
            )
        if _deployed_image(current) == image:
            return Found({"skipped": f"{name} already runs {image}"})
        template = json.loads(json.dumps(current["template"]))
        template.pop("revision", None)  # a new revision gets a new name
        template["containers"][0]["image"] = image
        return replace(step, body={"template": template}, resolve=None)

    def wait(step: HttpStep, responses: Responses) -> HttpStep | Found:
        started = responses.get(ROLL_OUT) or {}
        if "skipped" in started or not started.get("name"):
            return Found(started)
        return replace(step, url=step.url.replace(operation, started["name"]), resolve=None)

    return [
        HttpStep(
            READ_SERVICE,
            "GET",
            url,
            ok_statuses=(200, 404),
            expect_json=True,
            auth_hint=f"deploying the service image needs roles/run.developer on {name} (the CI "
            f"deployer has it once `invoke provision --env {env}` ran with this vertexkit)",
        ),
        HttpStep(
            ROLL_OUT,
            "PATCH",
            f"{url}?updateMask=template",
            {"template": f"<the service's template, with the image of build/images/{env}.json>"},
            expect_json=True,
            resolve=patch,
        ),
        HttpStep(
            WAIT_ROLL_OUT,
            "GET",
            f"{base}/v2/{operation}",
            expect_json=True,
            repeat="until done",
            repeat_until=lambda answer: bool((answer or {}).get("done")),
            max_polls=ROLLOUT_POLLS,
            resolve=wait,
            extract=_rolled_out,
        ),
    ]


def _rolled_out(operation: Any) -> Any:
    if isinstance(operation, dict) and operation.get("error"):
        raise CloudError(
            f"the service's new revision failed: {operation['error'].get('message', operation)}"
        )
    if isinstance(operation, dict) and "name" in operation and not operation.get("done"):
        raise CloudError(f"the service's new revision is not ready yet: {operation['name']}")
    return operation
