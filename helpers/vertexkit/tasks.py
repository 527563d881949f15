"""The invoke tasks every generated project imports: ``ns = vertexkit.tasks.namespace()``."""

from __future__ import annotations

import sys
from pathlib import Path

import yaml
from invoke import Collection, Context, task
from invoke.exceptions import Exit

from vertexkit import compile as compiling
from vertexkit.config import ConfigError, load_config
from vertexkit.params import ParameterError

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
        "env": "environment whose config supplies parameter values (default: base.yaml)",
    }
)
def compile(c: Context, pipeline: str | None = None, env: str | None = None) -> None:
    """Compile pipelines to build/pipelines/<name>.yaml."""
    root = project_root()
    try:
        config = load_config(root, env)
        written = compiling.compile_pipelines(root, config, [pipeline] if pipeline else None)
    except _USER_ERRORS as exc:
        raise _fail(exc) from None
    for path in written:
        print(f"compiled {path.relative_to(root)}")


@task(
    iterable=["param"],
    help={
        "pipeline": "pipeline to run, the name of a file in pipelines/",
        "local": "run on the embedded KFP local runner (no cloud account needed)",
        "param": "override a parameter, key=value (repeatable); typed from the pipeline",
        "env": "environment whose config supplies parameter values (default: base.yaml)",
        "verbose": "stream the runner's full log instead of one line per task",
    },
)
def run(
    c: Context,
    pipeline: str | None = None,
    local: bool = False,
    param: list[str] | None = None,
    env: str | None = None,
    verbose: bool = False,
) -> None:
    """Run a pipeline: --local runs it here, in this environment."""
    from vertexkit import local as local_runner
    from vertexkit.params import parse_assignments

    root = project_root()
    available = ", ".join(compiling.discover(root)) or "none"
    if not pipeline:
        raise Exit(f"error: name the pipeline with --pipeline (available: {available})", 2)
    if not local:
        raise Exit(
            "error: only local runs are available in this version: add --local "
            "(submitting to Vertex AI arrives with `invoke deploy`)",
            2,
        )
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


def namespace() -> Collection:
    """The collection a project's tasks.py exposes; add the team's own tasks to it."""
    return Collection(compile, run, config, lint, test)
