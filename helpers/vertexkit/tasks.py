"""The invoke tasks every generated project imports: ``ns = vertexkit.tasks.namespace()``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml
from invoke import Collection, Context, task
from invoke.exceptions import Exit

from vertexkit.gcp import deploy as plans
from vertexkit.local import pipelines as compiling
from vertexkit.orchestrators import for_config
from vertexkit.project.config import ConfigError, load_config
from vertexkit.project.params import ParameterError
from vertexkit.steps import CloudError, execute

# Errors that come from bad input: shown as one clear message, without a traceback.
_USER_ERRORS = (ConfigError, ParameterError, compiling.PipelineError)


def project_root(start: Path | None = None) -> Path:
    """The nearest directory at or above ``start`` that holds ``config/base.yaml``."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "config" / "base.yaml").is_file():
            return folder
    raise Exit(f"no config/base.yaml in {here} or above: run this inside a vertexkit project", 2)


def _fail(exc: Exception) -> Exit:
    return Exit(f"error: {exc}", 1)


@task(
    help={
        "pipeline": "compile only this pipeline (default: every file in pipelines/)",
        "env": "environment to compile for: its parameter values, caching and built image",
    }
)
def compile(c: Context, pipeline: str | None = None, env: str | None = None) -> None:
    """Compile pipelines to build/pipelines/<name>.yaml."""
    from vertexkit.gcp import build

    root = project_root()
    try:
        config = load_config(root, env)
        image = build.read_image(root, env) if env else None
        names = [pipeline] if pipeline else None
        written = compiling.compile_pipelines(root, config, names, image=image)
    except (*_USER_ERRORS, CloudError) as exc:
        raise _fail(exc) from None
    for path in written:
        print(f"compiled {path.relative_to(root)}")


@task(
    iterable=["param"],
    help={
        "pipeline": "pipeline to run, the name of a file in pipelines/",
        "local": "run on the embedded KFP local runner (no cloud account needed)",
        "param": "override a parameter, key=value (repeatable); typed from the pipeline",
        "env": "environment: its config and, without --local, where the run is submitted",
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

    root = project_root()
    available = ", ".join(compiling.discover(root)) or "none"
    if not pipeline:
        raise Exit(f"error: name the pipeline with --pipeline (available: {available})", 2)
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
        _apply(steps, dry_run, json, env, follow=wait)
        return
    try:
        overrides = parse_assignments(param or [])
        result = local_runner.run_local(root, pipeline, overrides, env=env, verbose=verbose)
    except _USER_ERRORS as exc:
        raise _fail(exc) from None
    except local_runner.LocalRunError as exc:
        raise _fail(exc) from None
    print(local_runner.summary(result, root))


@task(help={"env": "environment to show (default: base.yaml alone, as local runs use it)"})
def config(c: Context, env: str | None = None) -> None:
    """Validate the configuration and print it as the tasks see it."""
    root = project_root()
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
    root = project_root()
    with c.cd(str(root)):
        c.run(f"{sys.executable} -m ruff check .", pty=False)
        c.run(f"{sys.executable} -m ruff format --check .", pty=False)
        if (root / ".git").exists():
            c.run(f"{sys.executable} -m pre_commit run --all-files", pty=False)
        else:
            print("pre-commit skipped: not a git repository (run `git init` to enable it)")


@task(help={"args": "extra arguments for pytest, e.g. '-k training -x'"})
def test(c: Context, args: str = "") -> None:
    """Run the project's tests."""
    with c.cd(str(project_root())):
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
    steps: list[Any], dry_run: bool, as_json: bool, env: str, *, follow: bool = False
) -> Any:
    """Show (dry run) or send the steps; with ``follow``, wait for the submitted run."""
    if as_json and not dry_run:
        raise Exit("error: --json goes with --dry-run", 2)
    try:
        responses = execute(steps, dry_run=dry_run, as_json=as_json)
        if dry_run:
            return responses
        orchestrator = for_config(load_config(project_root(), env))
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
    try:
        tool = load_config(project_root(), env).provisioning.tool
    except (ConfigError, Exit):
        tool = "none"
    if tool == "none":
        return (
            f"`invoke precheck --env {env}` lists what is missing in the environment and the "
            "command that creates it"
        )
    return (
        f"`invoke precheck --env {env}` lists what is missing in the environment; "
        f"`invoke provision --env {env}` creates it"
    )


_CLOUD_HELP = {
    "env": "environment (a config/<env>.yaml)",
    "dry_run": "print the commands and requests instead of running them",
    "json": "with --dry-run: print the steps as a JSON array",
}


@task(help={**_CLOUD_HELP, "local_docker": "build with the local Docker engine, not Cloud Build"})
def build(
    c: Context, env: str, local_docker: bool = False, dry_run: bool = False, json: bool = False
) -> None:
    """Build and push the components base image; its digest is recorded for compile."""
    root = project_root()
    steps = _cloud(
        lambda config, release: plans.plan_build(root, config, release, local_docker=local_docker),
        root,
        env,
    )
    _apply(steps, dry_run, json, env)


@task(help=_CLOUD_HELP)
def publish(c: Context, env: str, dry_run: bool = False, json: bool = False) -> None:
    """Upload the compiled templates to the environment's Artifact Registry repository."""
    root = project_root()
    names = list(compiling.discover(root))
    steps = _cloud(
        lambda config, release: plans.plan_publish(root, config, release, names), root, env
    )
    responses = _apply(steps, dry_run, json, env)
    if not dry_run:
        for line in for_config(load_config(root, env)).published(responses):
            print(line)


@task(
    iterable=["param"],
    help={
        **_CLOUD_HELP,
        "pipeline": "pipeline to run after publishing (default: training)",
        "param": "override a parameter of that run, key=value (repeatable)",
        "local_docker": "build with the local Docker engine, not Cloud Build",
        "wait": "follow the run until it ends; fail if it fails",
    },
)
def deploy(
    c: Context,
    env: str,
    pipeline: str = "training",
    param: list[str] | None = None,
    local_docker: bool = False,
    wait: bool = False,
    dry_run: bool = False,
    json: bool = False,
) -> None:
    """Build, compile, publish and run, in that order; stops at the first failure."""
    from vertexkit.project.params import parse_assignments

    root = project_root()
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
    _apply(steps, dry_run, json, env, follow=wait)


@task(
    iterable=["param"],
    help={
        **_CLOUD_HELP,
        "pipeline": "the scheduled pipeline",
        "cron": "when to run, e.g. 'TZ=Europe/Paris 0 6 * * 1' (create or update)",
        "pause": "pause the schedule",
        "resume": "resume the schedule",
        "delete": "delete the schedule",
        "param": "parameter of the scheduled runs, key=value (repeatable)",
    },
)
def schedule(
    c: Context,
    env: str,
    pipeline: str,
    cron: str | None = None,
    pause: bool = False,
    resume: bool = False,
    delete: bool = False,
    param: list[str] | None = None,
    dry_run: bool = False,
    json: bool = False,
) -> None:
    """Create or update (by name), pause, resume or delete a pipeline's Vertex AI schedule."""
    from vertexkit.project.params import parse_assignments

    chosen = [name for name, on in (("pause", pause), ("resume", resume), ("delete", delete)) if on]
    if len(chosen) > 1 or (chosen and cron):
        raise Exit("error: give --cron, or one of --pause, --resume, --delete", 2)
    action = chosen[0] if chosen else "create"
    root = project_root()
    steps = _cloud(
        lambda config, release: plans.plan_schedule(
            root, config, release, pipeline, action, cron, parse_assignments(param or [])
        ),
        root,
        env,
    )
    _apply(steps, dry_run, json, env)


@task(help=_CLOUD_HELP)
def status(c: Context, env: str, dry_run: bool = False, json: bool = False) -> None:
    """Recent pipeline runs with their state and console links."""
    root = project_root()
    steps = _cloud(lambda config, _: for_config(config).plan_list_runs(), root, env, release=False)
    responses = _apply(steps, dry_run, json, env)
    if not dry_run:
        print(for_config(load_config(root, env)).render_runs(responses))


@task(help={**_CLOUD_HELP, "run": "the run id (see `invoke status`)"})
def logs(c: Context, env: str, run: str, dry_run: bool = False, json: bool = False) -> None:
    """Task states and errors of one run, and where its full logs are."""
    root = project_root()
    steps = _cloud(
        lambda config, _: for_config(config).plan_read_run(run), root, env, release=False
    )
    responses = _apply(steps, dry_run, json, env)
    if not dry_run:
        print(for_config(load_config(root, env)).render_run(responses))


@task(help=_CLOUD_HELP)
def precheck(c: Context, env: str, dry_run: bool = False, json: bool = False) -> None:
    """Check APIs, buckets, repositories, service accounts and your permissions."""
    from vertexkit.gcp import precheck as checking

    root = project_root()
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
        provision,
        deprovision,
    )


@task(
    help={
        **_CLOUD_HELP,
        "yes": "apply without asking for confirmation (needed without a terminal, e.g. in CI)",
    }
)
def provision(
    c: Context, env: str, dry_run: bool = False, json: bool = False, yes: bool = False
) -> None:
    """Create the environment's APIs, bucket, repositories, service accounts, secrets and roles
    with the configured tool (provisioning.tool: terraform or gcloud); safe to run again."""
    from vertexkit.gcp import provision as provisioning

    root = project_root()
    try:
        config = load_config(root, env)
        steps = provisioning.plan_provision(config, root, yes=yes)
    except (*_USER_ERRORS, provisioning.ProvisioningError) as exc:
        raise _fail(exc) from None
    tool = config.provisioning.tool
    if not dry_run and tool == "terraform" and (missing := provisioning.terraform_missing()):
        raise Exit(f"error: {missing}", 1)
    _apply(steps, dry_run, json, env)
    if not dry_run:
        print(f"provisioned environment {env}: `invoke precheck --env {env}` checks it")


@task(
    help={
        "env": "environment (a config/<env>.yaml)",
        "dry_run": "print the commands and requests instead of running them",
        "yes": "delete without asking for confirmation (needed without a terminal)",
        "delete_data": "also delete the buckets and every object in them (never the state bucket)",
    }
)
def deprovision(
    c: Context, env: str, dry_run: bool = False, yes: bool = False, delete_data: bool = False
) -> None:
    """Delete what `invoke provision` created, after a confirmation; buckets holding data are
    kept unless --delete-data; the Terraform state bucket is always kept."""
    from vertexkit.gcp import provision as provisioning

    root = project_root()
    try:
        config = load_config(root, env)
        steps, kept = provisioning.plan_deprovision(config, root, yes=yes, delete_data=delete_data)
    except (*_USER_ERRORS, provisioning.ProvisioningError) as exc:
        raise _fail(exc) from None
    tool = config.provisioning.tool
    if not dry_run and tool == "terraform" and (missing := provisioning.terraform_missing()):
        raise Exit(f"error: {missing}", 1)
    _apply(steps, dry_run, False, env)
    for line in kept:
        print(line)
