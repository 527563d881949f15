"""Dry runs of every cloud task, for both orchestrators, against golden files.

The golden files were written by the code before the orchestrator interface and the single
HTTP step type existed; the refactor had to leave every step, URL and body as it was. Write
them anew (after a deliberate change) with ``VERTEXKIT_UPDATE_GOLDEN=1``.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from uv import find_uv_bin

from tests.fixture_project import copy_project

UV = find_uv_bin()  # the uv package's binary: on PATH in the dry runs, so they show plain "uv"

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("VERTEXKIT_UPDATE_GOLDEN") == "1"
KFP_CONFIG = """
orchestrator: kfp
kfp:
  host: https://kfp.example.com
  namespace: team-a
  token_env: KFP_TOKEN
"""
# Fixed identity and dates: the same commit (shown as <commit>) on every machine.
GIT_ENV = {
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@example.com",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@example.com",
    "GIT_AUTHOR_DATE": "2026-01-01T00:00:00Z",
    "GIT_COMMITTER_DATE": "2026-01-01T00:00:00Z",
}
TASKS = {
    "deploy": ["deploy", "--env", "dev"],
    "build": ["build", "--env", "dev"],
    # With a Cloud Run submission service, the service image is built beside the base image.
    "build-with-service": ["build", "--env", "dev"],
    "run": ["run", "--env", "dev", "--pipeline", "training", "--param", "n=7"],
    "status": ["status", "--env", "dev"],
    "logs": ["logs", "--env", "dev", "--run", "run-123"],
    "schedule": ["schedule", "--env", "dev", "--pipeline", "training", "--cron", "0 6 * * 1"],
    "schedule-pause": ["schedule", "--env", "dev", "--pipeline", "training", "--pause"],
}
WITH_SERVICE = {"VERTEXKIT__SERVICE__KIND": "cloud-run"}
# Timestamps in run ids and KFP version names change with every call.
STAMP = re.compile(r"(?<![0-9])20[0-9]{12}(?![0-9])")


def _project(tmp_path: Path, orchestrator: str) -> Path:
    root = copy_project(tmp_path / "project")
    base = root / "config" / "base.yaml"
    if orchestrator == "kfp":
        base.write_text(base.read_text() + KFP_CONFIG)
    else:
        base.write_text(base.read_text() + "scheduler: vertex\n")
    (root / "pyproject.toml").write_text(
        '[project]\nname = "demo"\nversion = "0.1.0"\nrequires-python = ">=3.10"\n'
    )
    # The base image is built from uv.lock; a project without dependencies locks offline.
    subprocess.run([UV, "lock", "--offline", "--quiet"], cwd=root, check=True)
    (root / "components" / "tiny").mkdir(parents=True)
    (root / "components" / "tiny" / "__init__.py").write_text("")
    (root / "components" / "Dockerfile").write_text("FROM python:3.11-slim\n")
    env = {**os.environ, **GIT_ENV}
    for command in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-qm", "first"]):
        subprocess.run(["git", *command], cwd=root, check=True, env=env)
    return root


def _dry_run(root: Path, args: list[str], extra: dict[str, str] | None = None) -> list[dict]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VERTEXKIT")}
    env.update(extra or {})
    result = subprocess.run(
        [sys.executable, "-m", "invoke", *args, "--dry-run", "--json"],
        cwd=root,
        env={
            **env,
            "KFP_TOKEN": "not-used-by-dry-runs",
            "PATH": f"{os.path.dirname(UV)}{os.pathsep}{env['PATH']}",
        },
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    commit = subprocess.run(
        ["git", "rev-parse", "--short=12", "HEAD"], cwd=root, capture_output=True, text=True
    ).stdout.strip()
    text = result.stdout.replace(str(root), "<project>").replace(sys.executable, "<python>")
    text = text.replace(commit, "<commit>")
    return json.loads(STAMP.sub("<timestamp>", text))


@pytest.mark.parametrize("orchestrator", ["vertex", "kfp"])
def test_dry_runs_match_the_golden_files(tmp_path: Path, orchestrator: str) -> None:
    root = _project(tmp_path, orchestrator)
    shown = {}
    for name, args in TASKS.items():
        if orchestrator == "kfp" and name.startswith("schedule"):
            continue  # Kubeflow Pipelines has no schedules through vertexkit (tested elsewhere)
        shown[name] = _dry_run(root, args, WITH_SERVICE if "with-service" in name else None)
    golden = GOLDEN / f"dry_runs_{orchestrator}.json"
    if UPDATE:
        golden.write_text(json.dumps(shown, indent=2, sort_keys=True) + "\n")
    expected = json.loads(golden.read_text())
    for name in expected:
        assert shown[name] == expected[name], f"invoke {' '.join(TASKS[name])} --dry-run --json"
    assert shown.keys() == expected.keys()
