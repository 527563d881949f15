"""A project with compiled pipelines for the submission service's tests, and a real server.

The service reads what ``invoke compile --env dev`` writes (build/pipelines/*.yaml and
compiled.json); here it is written by the same functions, in-process.
"""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.fixture_project import copy_project

GIT_ENV = {
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@example.com",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@example.com",
}

# A second pipeline with parameters of every kind and a required one without a configured value.
SCORING = '''"""Scoring: parameters of every type, one of them required."""

from kfp import dsl


@dsl.component(base_image="python:3.11", install_kfp_package=False)
def score(threshold: float, tags: list, options: dict, mode: str, dry: bool, rounds: int) -> str:
    return f"{threshold}:{tags}:{options}:{mode}:{dry}:{rounds}"


@dsl.pipeline(name="demo-scoring")
def scoring(
    threshold: float,
    tags: list = [],
    options: dict = {},
    mode: str = "fast",
    dry: bool = False,
    rounds: int = 1,
):
    score(threshold=threshold, tags=tags, options=options, mode=mode, dry=dry, rounds=rounds)
'''

RULES = """
  scoring:
    parameter_rules:
      rounds: {ge: 1, le: 10}
"""


def make_project(root: Path, *, kfp_host: str | None = None, extra_config: str = "") -> Path:
    """The fixture project with a scoring pipeline, committed, compiled for dev and locally."""
    from vertexkit.gcp.deploy import record_compiled
    from vertexkit.local import compile_pipelines
    from vertexkit.project.config import load_config

    copy_project(root)
    (root / "pipelines" / "scoring.py").write_text(SCORING)
    base = root / "config" / "base.yaml"
    text = base.read_text().replace("pipelines:\n", "pipelines:" + RULES, 1)
    if kfp_host:
        text += f"orchestrator: kfp\nkfp:\n  host: {kfp_host}\n"
    base.write_text(text + extra_config)
    env = {**os.environ, **GIT_ENV}
    for command in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-qm", "first"]):
        subprocess.run(["git", *command], cwd=root, check=True, env=env)
    written = compile_pipelines(root, load_config(root, "dev"))
    record_compiled(root, "dev", None, written)
    return root


def commit_of(root: Path) -> str:
    return subprocess.run(
        ["git", "rev-parse", "--short=12", "HEAD"], cwd=root, capture_output=True, text=True
    ).stdout.strip()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def serving(app: Any, host: str = "127.0.0.1") -> Iterator[str]:
    """Serve an ASGI app with uvicorn in a thread; yields its base URL."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
