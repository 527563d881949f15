"""The invoke tasks every generated project imports: ``ns = vertexkit.tasks.namespace()``."""

from __future__ import annotations

import inspect
import os
import re
import sys
from pathlib import Path
from typing import Any

import yaml
from invoke import Collection, Context, Task
from invoke import task as invoke_task
from invoke.exceptions import Exit

from vertexkit.gcp import deploy as plans
from vertexkit.local import pipelines as compiling
from vertexkit.orchestrators import for_config
from vertexkit.project.config import ConfigError, environments, load_config, shown_parameter
from vertexkit.project.params import ParameterError
from vertexkit.steps import CloudError, execute

# Errors that come from bad input: shown as one clear message, without a traceback.
_USER_ERRORS = (ConfigError, ParameterError, compiling.PipelineError)


# One short flag per option, the same in every task: invoke would otherwise pick a free letter
# per task (-a was --param in one task and --pause in another). Options not listed are long only.
SHORT_FLAGS = {
    "env": "e",
    "pipeline": "p",
    "param": "P",
    "local": "l",
    "verbose": "v",
    "wait": "w",
    "dry_run": "d",
    "json": "j",
    "cron": "c",
    "run": "r",
}


class VertexkitTask(Task):
    """An invoke task whose short flags come from :data:`SHORT_FLAGS`, never guessed."""

    def arg_opts(self, name: str, default: Any, taken_names: set[str]) -> dict[str, Any]:
        opts = super().arg_opts(name, default, taken_names)
        if name in SHORT_FLAGS:
            opts["names"] = [*opts["names"], SHORT_FLAGS[name]]
        return opts


def task(*args: Any, **kwargs: Any) -> Any:
    """``invoke.task`` with the project's short flags (use it for the team's own tasks too)."""
    kwargs.setdefault("klass", VertexkitTask)
    kwargs.setdefault("auto_shortflags", False)
    return invoke_task(*args, **kwargs)


def project_root(start: Path | None = None, c: Context | None = None) -> Path:
    """The nearest directory at or above ``start`` (default: the working directory) that holds
    ``config/base.yaml``; else, given the task's context, the project whose tasks.py invoke
    loaded (``invoke --search-root PROJECT ...`` run from another folder)."""
    here = (start or Path.cwd()).resolve()
    # invoke records the folder of the tasks.py it loaded as the prefix of project config files.
    prefix = getattr(c.config, "_project_prefix", None) if c is not None else None
    loaded = [Path(prefix).resolve()] if isinstance(prefix, str) else []
    for folder in (here, *here.parents, *loaded):
        if (folder / "config" / "base.yaml").is_file():
            return folder
    raise Exit(f"no config/base.yaml in {here} or above: run this inside a vertexkit project", 2)


def shown_path(path: Path | str) -> str:
    """``path`` as the user can use it where they stand: relative to the working directory
    when inside it, else absolute."""
    path, here = Path(path).resolve(), Path.cwd().resolve()
    return str(path.relative_to(here)) if path.is_relative_to(here) else str(path)


def _fail(exc: Exception) -> Exit:
    return Exit(f"error: {exc}", 1)


def _required_env(root: Path, env: str | None) -> str:
    """The --env value, or a usage error naming the environments of config/."""
    if env:
        return env
    known = ", ".join(environments(root)) or "none: add config/<env>.yaml"
    raise Exit(f"error: --env ENV is required (environments in config/: {known})", 2)


def _required(value: str | None, option: str, hint: str) -> str:
    if value:
        return value
    raise Exit(f"error: {option} is required ({hint})", 2)


def _pipelines_hint(root: Path) -> str:
    return f"pipelines: {', '.join(compiling.discover(root)) or 'none in pipelines/'}"


@task(
    help={
        "pipeline": "NAME: compile only this pipeline (default: every file in pipelines/)",
        "env": "ENV: environment to compile for: its parameter values, caching and the image "
        "`invoke build --env ENV` pushed (default: base.yaml alone, for local use)",
    }
)
def compile(c: Context, pipeline: str | None = None, env: str | None = None) -> None:
    """Compile pipelines to build/pipelines/<name>.yaml."""
    from vertexkit.gcp import build

    root = project_root(c=c)
    try:
        config = load_config(root, env)
        image = build.read_image(root, env) if env else None
        names = [pipeline] if pipeline else None
        written = compiling.compile_pipelines(root, config, names, image=image)
        plans.record_compiled(root, env, image, written)
    except (*_USER_ERRORS, CloudError) as exc:
        raise _fail(exc) from None
    for path in written:
        print(f"compiled {shown_path(path)}")


@task(
    iterable=["param"],
    help={
        "pipeline": "NAME: pipeline to run, the name of a file in pipelines/ (required)",
        "local": "run on the embedded KFP local runner (no cloud account needed)",
        "param": "KEY=VALUE: override a parameter (repeatable); typed from the pipeline",
        "env": "ENV: environment: its config and, without --local, where the run is submitted",
        "verbose": "stream the runner's full log instead of one line per task",
        "wait": "follow the submitted run's task states until it ends; fail if it fails",
        "dry_run": "print the request instead of sending it",
        "json": "with --dry-run: print the steps as a JSON array",
    },
)
def run(
    c: Context,
    pipeline: str | None = None,
    local: bool = False,
    param: list[str] | None = None,
    env: str | None = None,
    verbose: bool = False,
    wait: bool = False,
    dry_run: bool = False,
    json: bool = False,
) -> None:
    """Run a pipeline: --local runs it here; --env ENV submits it to Vertex AI Pipelines."""
    from vertexkit.local import runner as local_runner
    from vertexkit.project.params import parse_assignments

    root = project_root(c=c)
    available = ", ".join(compiling.discover(root)) or "none"
    if not pipeline:
        raise Exit(f"error: name the pipeline with --pipeline NAME (available: {available})", 2)
    if not local:
        if not env:
            raise Exit("error: add --local to run here, or --env ENV to submit to Vertex AI", 2)
        steps = _cloud(
            lambda config, release: plans.plan_run(
                root, config, release, pipeline, parse_assignments(param or [])
            ),
            root,
            env,
        )
        _apply(steps, dry_run, json, env, root=root, follow=wait)
        return
    try:
        overrides = parse_assignments(param or [])
        result = local_runner.run_local(root, pipeline, overrides, env=env, verbose=verbose)
    except _USER_ERRORS as exc:
        raise _fail(exc) from None
    except local_runner.LocalRunError as exc:
        message = _FULL_LOG.sub(lambda m: m[1] + shown_path(root / m[2]), str(exc))
        raise Exit(f"error: {_explain_credentials(message)}", 1) from None
    # Paths as seen from where the user stands (the summary makes them relative to its root).
    first, *rest = local_runner.summary(result, Path.cwd()).split("\n")
    try:
        used = _parameters_used(root, pipeline, env, overrides)
    except _USER_ERRORS:  # the run got past these checks: only a pipeline edited meanwhile
        used = ""
    print("\n".join([first, *([f"  parameters: {used}"] if used else []), *rest]))


def _parameters_used(root: Path, name: str, env: str | None, overrides: dict[str, str]) -> str:
    """Every parameter of the pipeline with the value the run got: configured, given with
    --param, or the pipeline's default (marked so)."""
    from vertexkit.project.params import parameter_specs

    pipeline = compiling.load_pipeline(root, name)
    given = compiling.configured_parameters(load_config(root, env), name, pipeline, overrides)
    specs = parameter_specs(compiling.pipeline_spec(pipeline))
    # In the order of the pipeline function's signature (the IR's order varies).
    signature = list(inspect.signature(pipeline.pipeline_func).parameters)
    shown = []
    for key in sorted(specs, key=lambda k: (signature.index(k) if k in signature else 1_000, k)):
        spec = specs[key]
        if key in given:
            shown.append(shown_parameter(key, given[key]))
        elif spec.optional:
            shown.append(f"{key}={spec.default!r} (default)")
    return ", ".join(shown)


# The runner's failure message names the log relative to the project.
_FULL_LOG = re.compile(r"^(\s*full log: )(.+)$", re.M)

# How google-auth says that it found no usable credentials, in a task's traceback.
_NO_CREDENTIALS = re.compile(
    r"^\s*google\.auth\.exceptions\.(DefaultCredentialsError|RefreshError): ?(.*)$", re.M
)


def _explain_credentials(message: str) -> str:
    """A failed local run whose task found no Google credentials: say so and how to get them.

    The runner's message shows the failing task's output; when that is google-auth's
    traceback, the traceback gives way to what is missing and the command that provides it.
    """
    found = _NO_CREDENTIALS.search(message)
    if not found:
        return message
    kind, detail = found.groups()
    head = message.split(";", 1)[0].split("\n", 1)[0]
    log = [line.strip() for line in message.splitlines() if line.strip().startswith("full log:")]
    lines = [f"{head}: the task needs Google Cloud credentials and found none ({kind}: {detail})"]
    named = os.environ.get("GOOGLE_APPLICATION_CREDENTIALS")
    if named and not Path(named).is_file():
        lines.append(
            f"GOOGLE_APPLICATION_CREDENTIALS names {named}, which does not exist: "
            "unset it or point it at a credentials file"
        )
    lines.append(
        "get Application Default Credentials with `gcloud auth application-default login` "
        "(in CI: Workload Identity Federation), then run again"
    )
    return "\n  ".join(lines + log)


@task(help={"env": "ENV: environment to show (default: base.yaml alone, as local runs use it)"})
def config(c: Context, env: str | None = None) -> None:
    """Validate the configuration and print it as the tasks see it."""
    root = project_root(c=c)
    try:
        loaded = load_config(root, env)
    except ConfigError as exc:
        raise _fail(exc) from None
    print(f"# environment: {loaded.environment}")
    print(yaml.safe_dump(loaded.model_dump(mode="json"), sort_keys=False), end="")
    # The resource names the tasks use, derived where resources.* leaves them unset.
    print("# names (resources.* or derived from gcp.project_id and naming_prefix):")
    for key, value in loaded.names.model_dump().items():
        print(f"#   {key}: {value}")


@task
def lint(c: Context) -> None:
    """Run ruff (lint and format check) and the pre-commit hooks."""
    root = project_root(c=c)
    with c.cd(str(root)):
        c.run(f"{sys.executable} -m ruff check .", pty=False)
        c.run(f"{sys.executable} -m ruff format --check .", pty=False)
        if (root / ".git").exists():
            c.run(f"{sys.executable} -m pre_commit run --all-files", pty=False)
        else:
            print("pre-commit skipped: not a git repository (run `git init` to enable it)")


@task(help={"args": "ARGS: extra arguments for pytest, e.g. '-k training -x'"})
def test(c: Context, args: str = "") -> None:
    """Run the project's tests."""
    with c.cd(str(project_root(c=c))):
        c.run(f"{sys.executable} -m pytest {args}".strip(), pty=False)


def _cloud(plan: Any, root: Path, env: str, *, release: bool = True) -> list[Any]:
    """Load the environment's config (and, for steps that use it, the release); then plan.

    User errors, a missing git commit among them, become one-line messages.
    """
    from vertexkit.project.release import GitError, Release

    try:
        loaded = load_config(root, env)
        return plan(loaded, Release.of(root) if release else None)
    except (*_USER_ERRORS, ValueError, CloudError, GitError) as exc:
        raise _fail(exc) from None


def _apply(
    steps: list[Any], dry_run: bool, as_json: bool, env: str, *, root: Path, follow: bool = False
) -> Any:
    """Show (dry run) or send the steps; with ``follow``, wait for the submitted run."""
    if as_json and not dry_run:
        raise Exit("error: --json goes with --dry-run", 2)
    try:
        responses = execute(steps, dry_run=dry_run, as_json=as_json)
        if dry_run:
            return responses
        orchestrator = for_config(load_config(root, env))
        run = orchestrator.submitted(responses)
        if run:
            print(f"submitted {run.run_id}: {run.url}")
            if follow:
                final = orchestrator.follow(run.run_id)
                if not final.succeeded:
                    raise Exit(f"error: run {run.run_id} ended {final.backend_state}", 1)
                print(f"run {run.run_id} succeeded")
        return responses
    except CloudError as exc:
        if exc.status == 404 and exc.google:
            raise Exit(f"error: {exc}\n  {_missing_hint(env)}", 1) from None
        raise _fail(exc) from None
    except (*_USER_ERRORS, ValueError) as exc:
        raise _fail(exc) from None


def _missing_hint(env: str) -> str:
    """What to do about a missing resource: provision it, or (none) create it as precheck says."""
    from vertexkit.gcp.provision import missing_resource_hint

    try:
        config = load_config(project_root(), env)
    except (ConfigError, Exit):
        config = None
    return missing_resource_hint(config, env)


_CLOUD_HELP = {
    "env": "ENV: the environment, a config/ENV.yaml (required)",
    "dry_run": "print the commands and requests instead of running them",
    "json": "with --dry-run: print the steps as a JSON array",
}


@task(help={**_CLOUD_HELP, "local_docker": "build with the local Docker engine, not Cloud Build"})
def build(
    c: Context,
    env: str | None = None,
    local_docker: bool = False,
    dry_run: bool = False,
    json: bool = False,
) -> None:
    """Build and push the components base image; its digest is recorded for compile."""
    root = project_root(c=c)
    env = _required_env(root, env)
    steps = _cloud(
        lambda config, release: plans.plan_build(root, config, release, local_docker=local_docker),
        root,
        env,
    )
    _apply(steps, dry_run, json, env, root=root)


@task(help=_CLOUD_HELP)
def publish(c: Context, env: str | None = None, dry_run: bool = False, json: bool = False) -> None:
    """Upload the compiled templates to the environment's template store, then (Cloud Run) deploy
    the recorded submission service image."""
    root = project_root(c=c)
    env = _required_env(root, env)
    names = list(compiling.discover(root))
    steps = _cloud(
        lambda config, release: plans.plan_publish(root, config, release, names), root, env
    )
    responses = _apply(steps, dry_run, json, env, root=root)
    if not dry_run:
        for line in for_config(load_config(root, env)).published(responses):
            print(line)


@task(
    iterable=["param"],
    help={
        **_CLOUD_HELP,
        "pipeline": "NAME: pipeline to run after publishing (default: training)",
        "param": "KEY=VALUE: override a parameter of that run (repeatable)",
        "local_docker": "build with the local Docker engine, not Cloud Build",
        "wait": "follow the run until it ends; fail if it fails",
    },
)
def deploy(
    c: Context,
    env: str | None = None,
    pipeline: str = "training",
    param: list[str] | None = None,
    local_docker: bool = False,
    wait: bool = False,
    dry_run: bool = False,
    json: bool = False,
) -> None:
    """Build, compile, publish and run, in that order; stops at the first failure."""
    from vertexkit.project.params import parse_assignments

    root = project_root(c=c)
    env = _required_env(root, env)
    steps = _cloud(
        lambda config, release: plans.plan_deploy(
            root,
            config,
            release,
            pipeline,
            parse_assignments(param or []),
            local_docker=local_docker,
        ),
        root,
        env,
    )
    _apply(steps, dry_run, json, env, root=root, follow=wait)


@task(
    iterable=["param"],
    help={
        **_CLOUD_HELP,
        "pipeline": "NAME: only this pipeline's schedule (default: every pipeline with a "
        "schedule in config)",
        "cron": "CRON: with --pipeline: this cron instead of the configured one, e.g. "
        "'0 6 * * MON' or 'TZ=Europe/Paris 0 6 * * 1'",
        "pause": "pause the schedules",
        "resume": "resume the schedules",
        "delete": "delete the schedules",
        "param": "KEY=VALUE: with --pipeline: parameter of the scheduled runs (repeatable)",
    },
)
def schedule(
    c: Context,
    env: str | None = None,
    pipeline: str | None = None,
    cron: str | None = None,
    pause: bool = False,
    resume: bool = False,
    delete: bool = False,
    param: list[str] | None = None,
    dry_run: bool = False,
    json: bool = False,
) -> None:
    """Apply the configured schedules (pipelines.<name>.schedule) with the configured scheduler:
    Vertex AI schedules or Cloud Scheduler jobs; or pause, resume or delete them."""
    from vertexkit.gcp import scheduling
    from vertexkit.project.params import parse_assignments

    chosen = [name for name, on in (("pause", pause), ("resume", resume), ("delete", delete)) if on]
    if len(chosen) > 1 or (chosen and cron):
        raise Exit("error: give --cron, or one of --pause, --resume, --delete", 2)
    action = chosen[0] if chosen else "create"
    root = project_root(c=c)
    env = _required_env(root, env)
    if pipeline is not None:
        try:
            compiling.require(pipeline, compiling.discover(root))
        except compiling.PipelineError as exc:
            raise _fail(exc) from None
    steps = _cloud(
        lambda config, release: scheduling.plan_schedules(
            root, config, release, pipeline, action, cron, parse_assignments(param or [])
        ),
        root,
        env,
        release=False,  # read by the plan when a Vertex AI schedule needs it
    )
    _apply(steps, dry_run, json, env, root=root)


@task(help=_CLOUD_HELP)
def status(c: Context, env: str | None = None, dry_run: bool = False, json: bool = False) -> None:
    """Recent pipeline runs with their state and console links."""
    root = project_root(c=c)
    env = _required_env(root, env)
    steps = _cloud(lambda config, _: for_config(config).plan_list_runs(), root, env, release=False)
    responses = _apply(steps, dry_run, json, env, root=root)
    if not dry_run:
        print(for_config(load_config(root, env)).render_runs(responses))


@task(
    help={**_CLOUD_HELP, "run": "RUN: the run id, as `invoke status --env ENV` lists it (required)"}
)
def logs(
    c: Context,
    env: str | None = None,
    run: str | None = None,
    dry_run: bool = False,
    json: bool = False,
) -> None:
    """Task states and errors of one run, and where its full logs are."""
    root = project_root(c=c)
    env = _required_env(root, env)
    run_id = _required(run, "--run RUN", f"the run ids: `invoke status --env {env}`")
    steps = _cloud(
        lambda config, _: for_config(config).plan_read_run(run_id), root, env, release=False
    )
    responses = _apply(steps, dry_run, json, env, root=root)
    if not dry_run:
        print(for_config(load_config(root, env)).render_run(responses))


@task(help=_CLOUD_HELP)
def precheck(c: Context, env: str | None = None, dry_run: bool = False, json: bool = False) -> None:
    """Check APIs, buckets, repositories, service accounts and your permissions."""
    from vertexkit.gcp import precheck as checking

    root = project_root(c=c)
    env = _required_env(root, env)
    try:
        config = load_config(root, env)
        checks = checking.plan_checks(config)
        if dry_run:
            execute(checking.steps(checks), dry_run=True, as_json=json)
            return
        results = checking.run_checks(checks)
    except (*_USER_ERRORS, CloudError) as exc:
        raise _fail(exc) from None
    print(checking.render_table(results))
    if not checking.passed(results):
        raise Exit("error: some checks failed; run the fix commands above", 1)


@task(
    help={
        "from": "ENV: the environment that ran the release (required; e.g. dev)",
        "to": "ENV: the environment to release it to (required; e.g. prod)",
        "dry_run": _CLOUD_HELP["dry_run"],
        "json": _CLOUD_HELP["json"],
        "yes": "promote without asking (needed without a terminal, e.g. in CI)",
    }
)
def promote(
    c: Context,
    from_: str | None = None,
    to: str | None = None,
    dry_run: bool = False,
    json: bool = False,
    yes: bool = False,
) -> None:
    """Release the commit HEAD is on to another environment: the image the source built from it
    (copied by digest, never rebuilt) and its templates, compiled for the target and published
    with the same tags."""
    from vertexkit.gcp import promote as promoting
    from vertexkit.gcp import scheduling, service_infra
    from vertexkit.project.release import GitError, Release, uncommitted_changes

    root = project_root(c=c)
    source = _required(from_, "--from ENV", f"environments: {', '.join(environments(root))}")
    target = _required(to, "--to ENV", f"environments: {', '.join(environments(root))}")
    try:
        changed = uncommitted_changes(root)
        if changed:
            raise promoting.PromotionError(
                "uncommitted changes in "
                + ", ".join(changed[:5])
                + (" ..." if len(changed) > 5 else "")
                + ": promotion compiles the commit as it was released; commit or stash them"
            )
        release, target_config = Release.of(root), load_config(root, target)
        steps = promoting.plan_promote(
            root, load_config(root, source), target_config, release, yes=yes
        )
        # The target's schedules then run the promoted templates.
        if target_config.scheduler != "none" and service_infra.scheduled_pipelines(target_config):
            steps += scheduling.plan_schedules(
                root, target_config, release, None, "create", None, overrides={}
            )
    except (*_USER_ERRORS, ValueError, CloudError, GitError) as exc:
        raise _fail(exc) from None
    responses = _apply(steps, dry_run, json, target, root=root)
    if not dry_run:
        for line in for_config(target_config).published(responses):
            print(line)
        print(f"promoted {release.commit} from {source} to {target}")


@task(
    help={
        **_CLOUD_HELP,
        "yes": "apply without asking (needed without a terminal)",
        "service_image": "REPO@sha256:DIGEST: the submission service's image (default: the one "
        "`invoke build --env ENV` recorded)",
        "plan": "terraform plan only (-lock=false): show what apply would change, create nothing",
    }
)
def provision(
    c: Context,
    env: str | None = None,
    dry_run: bool = False,
    json: bool = False,
    yes: bool = False,
    service_image: str | None = None,
    plan: bool = False,
) -> None:
    """Create the environment's APIs, bucket, repositories, service accounts, secrets and roles
    with the configured tool (provisioning.tool: terraform or gcloud); safe to run again.
    --plan (terraform): what apply would change, nothing created."""
    from vertexkit.gcp import provision as provisioning
    from vertexkit.gcp import service_infra

    root = project_root(c=c)
    env = _required_env(root, env)
    try:
        config = load_config(root, env)
        if service_image:
            service_infra.check_image(service_image)
        steps = provisioning.plan_provision(
            config, root, yes=yes, service_image=service_image, plan=plan
        )
        if not dry_run:
            provisioning.require_tool(config)
    except (*_USER_ERRORS, provisioning.ProvisioningError) as exc:
        raise _fail(exc) from None
    _apply(steps, dry_run, json, env, root=root)
    if not dry_run:
        if plan:
            print(f"planned environment {env}: nothing was changed")
        else:
            print(f"provisioned environment {env}: `invoke precheck --env {env}` checks it")


@task(
    help={
        "env": _CLOUD_HELP["env"],
        "dry_run": _CLOUD_HELP["dry_run"],
        "yes": "delete without asking (needed without a terminal)",
        "delete_data": "also delete the buckets and every object in them (never the state bucket)",
    }
)
def deprovision(
    c: Context,
    env: str | None = None,
    dry_run: bool = False,
    yes: bool = False,
    delete_data: bool = False,
) -> None:
    """Delete what `invoke provision` created, after a confirmation; buckets holding data are
    kept unless --delete-data; the Terraform state bucket is always kept."""
    from vertexkit.gcp import provision as provisioning

    root = project_root(c=c)
    env = _required_env(root, env)
    try:
        config = load_config(root, env)
        steps, kept = provisioning.plan_deprovision(config, root, yes=yes, delete_data=delete_data)
        if not dry_run:
            provisioning.require_tool(config)
    except (*_USER_ERRORS, provisioning.ProvisioningError) as exc:
        raise _fail(exc) from None
    _apply(steps, dry_run, False, env, root=root)
    for line in kept:
        print(line)


@task(
    help={
        "port": "N: port to listen on at 127.0.0.1 (default 8080)",
        "backend": "dry-run (answer with the requests a run would send; the default) or local "
        "(run submitted runs here on the local runner, one at a time)",
        "env": "ENV: the environment's config (default: base.yaml alone, as local runs use it)",
    }
)
def serve(c: Context, port: int = 8080, backend: str = "dry-run", env: str | None = None) -> None:
    """Serve the submission service here (no cloud account needed): POST /pipelines/NAME/runs."""
    from vertexkit.project.release import GitError, git_commit
    from vertexkit.service import catalog, server

    root = project_root(c=c)
    if backend not in ("dry-run", "local"):
        raise Exit(f"error: --backend {backend!r}: choose dry-run or local", 2)
    if not 0 < port < 65536:
        raise Exit(f"error: --port {port}: choose a port from 1 to 65535", 2)
    folder = root / "build" / "serve" / (env or "local")
    try:
        loaded = load_config(root, env)
        written = compiling.compile_pipelines(root, loaded, output_dir=folder)
        catalog.write_record(folder, loaded.environment, written)
        try:
            commit = git_commit(root)
        except GitError:
            commit = "uncommitted"  # dry runs only show the template tag it would use
        service = server.create_service(
            root, env, backend=backend, pipelines_dir=folder, commit=commit
        )
    except (*_USER_ERRORS, catalog.CatalogError) as exc:
        raise _fail(exc) from None
    import uvicorn

    url = f"http://127.0.0.1:{port}"
    name = next(iter(service.pipelines), "training")
    print(f"serving {len(service.pipelines)} pipeline(s) at {url} ({backend} backend)")
    print(f"  docs:   {url}/docs")
    print(f"  try:    curl -s {url}/pipelines")
    print(
        f"          curl -s -X POST {url}/pipelines/{name}/runs "
        "-H 'Content-Type: application/json' -d '{\"parameters\": {}}'"
    )
    if backend == "local":
        print(f"          curl -s {url}/runs/RUN_ID   (the run_id the POST answered)")
    print("  stop:   Ctrl+C", flush=True)
    server.configure_logging()
    uvicorn.run(server.asgi(service), host="127.0.0.1", port=port, log_level="warning")


@task(
    help={
        "pipeline": "NAME: the pipeline whose local run to look at (default: prediction)",
        "run": "RUN: a run folder under local.output_dir, or LATEST (default): the newest run",
        "open": "also open the report in the web browser",
    }
)
def report(
    c: Context, pipeline: str = "prediction", run: str = "LATEST", open: bool = False
) -> None:
    """Print where a local run's HTML report is (prediction: the drift report)."""
    import webbrowser

    from vertexkit.local.drift_report import find_local_report

    root = project_root(c=c)
    try:
        config = load_config(root)
        name = compiling.load_pipeline(root, pipeline).name
        found = find_local_report(root / config.local.output_dir, name, run)
    except (*_USER_ERRORS, FileNotFoundError) as exc:
        raise _fail(exc) from None
    print(shown_path(found))
    if open and not webbrowser.open(found.resolve().as_uri()):
        raise Exit(f"error: no web browser to open {shown_path(found)}", 1)


def namespace() -> Collection:
    """The collection a project's tasks.py exposes; add the team's own tasks to it."""
    return Collection(
        compile,
        run,
        config,
        lint,
        test,
        build,
        publish,
        deploy,
        schedule,
        status,
        logs,
        precheck,
        promote,
        provision,
        deprovision,
        serve,
        report,
    )
