"""Tasks of the vertexkit repository; `python3 dev.py TASK` runs them in .venv."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

from invoke import Context, task
from invoke.exceptions import Exit

ROOT = Path(__file__).resolve().parent
SUPPORTED_PYTHONS = ("3.10", "3.11", "3.12")
DEMO_ANSWERS = {"gcp_project_id": "acme-ml-dev"}


def shown(path: Path) -> str:
    """``path`` as the user can use it where they stand: relative inside the working
    directory, else absolute."""
    path, here = path.resolve(), Path.cwd().resolve()
    return str(path.relative_to(here)) if path.is_relative_to(here) else str(path)


def render(dest: Path, answers: dict[str, object]) -> None:
    """Render the template from this checkout (its working tree, edits included)."""
    from copier import run_copy

    extra = {"vcs_ref": "HEAD"} if (ROOT / ".git").exists() else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # copier warns that uncommitted edits are included
        run_copy(
            str(ROOT),
            dest,
            data=answers,
            defaults=True,
            overwrite=True,
            quiet=True,
            **extra,
        )


def uv() -> str:
    """uv on PATH (dev.py puts .venv/bin there), else the binary of the uv package."""
    found = shutil.which("uv")
    if found:
        return found
    from uv import find_uv_bin

    return str(find_uv_bin())


@task(help={"dest": "where to render the demo project (default: build/demo)"})
def demo(c: Context, dest: str = "build/demo") -> None:
    """Render a project with default answers and run its pipelines on the local runner."""
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    if version not in SUPPORTED_PYTHONS:
        raise Exit(f"the demo needs Python {', '.join(SUPPORTED_PYTHONS)}; this is {version}", 2)
    target = (ROOT / dest).resolve()
    print(f"==> rendering the template into {shown(target)} (Python {version})")
    render(target, {**DEMO_ANSWERS, "python_version": version})

    # As the project's README says: `uv sync`, then `uv run invoke ...`. vertexkit comes from
    # this checkout, in editable mode (the project's uv source), so edits show up at once.
    env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
    print("==> uv sync (the first time takes a minute)", flush=True)
    subprocess.run([uv(), "sync"], cwd=target, env=env, check=True)
    # Run from here, not from the project (uv run --project keeps the working directory), so
    # that the paths the runs print work from here.
    for pipeline in ("training", "prediction"):
        print(
            f"==> uv run --project {shown(target)} invoke --search-root {shown(target)} "
            f"run --local --pipeline {pipeline}",
            flush=True,
        )
        command = [uv(), "run", "--project", str(target), "invoke", "--search-root", str(target)]
        command += ["run", "--local", "--pipeline", pipeline]
        if subprocess.run(command, env=env).returncode != 0:
            raise Exit(f"the {pipeline} pipeline failed (its output is above)", 1)
    print(f"\nThe demo project is in {shown(target)}; its README explains what is where.")


@task(help={"args": "extra pytest arguments, e.g. '-m \"not slow\"' or '-k render'"})
def test(c: Context, args: str = "") -> None:
    """Run the whole test suite: vertexkit, the render matrix and generated projects."""
    c.run(f"{sys.executable} -m pytest -n 2 {args}".strip(), pty=False)


@task
def lint(c: Context) -> None:
    """Ruff (lint and format check) over the repository."""
    c.run(f"{sys.executable} -m ruff check .", pty=False)
    c.run(f"{sys.executable} -m ruff format --check .", pty=False)


@task
def docs(c: Context) -> None:
    """Build the documentation site into site/ (warnings are errors)."""
    c.run(f"{sys.executable} -m mkdocs build --strict --site-dir site", pty=False)
