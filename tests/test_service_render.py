"""The generated submission service: the files each submission_service answer renders, clean
(ruff, hadolint, only the public API), and the Cloud Functions entry point run by Google's
functions-framework against the real service."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import vertexkit
from tests.service_support import make_project
from tests.template_support import render, text_files
from vertexkit.gcp import service_infra

SERVICE = Path("services") / "submission"
FILES = {
    "cloud-run": {"Dockerfile", "Dockerfile.dockerignore"},
    "cloud-functions": {"main.py", "requirements.txt"},
    "none": set(),
}
LEFTOVER = re.compile(r"\{\{|\}\}|\{%|%\}|\{#|#\}")


def _ruff_clean(project: Path) -> None:
    for command in (["check", "--no-cache", "."], ["format", "--check", "--no-cache", "."]):
        result = subprocess.run(
            [sys.executable, "-m", "ruff", *command], cwd=project, capture_output=True, text=True
        )
        assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("kind", sorted(FILES))
def test_each_answer_renders_its_service_files(tmp_path: Path, kind: str) -> None:
    project = render(tmp_path / "project", {"submission_service": kind})
    found = (
        {p.name for p in (project / SERVICE).glob("*")} if (project / SERVICE).exists() else set()
    )
    assert found == FILES[kind]
    assert (project / "services").exists() == (kind != "none")
    for path in [*(text_files(project / SERVICE) if found else []), project / "README.md"]:
        assert not LEFTOVER.search(path.read_text()), path
    readme = (project / "README.md").read_text()
    assert ("## Submission service" in readme) == (kind != "none")
    assert ("Cloud Run service" in readme) == (kind == "cloud-run")
    assert ("Cloud Functions (2nd gen)" in readme) == (kind == "cloud-functions")
    assert "\n\n## Layout" in readme and "\n\n\n" not in readme
    _ruff_clean(project)


def test_the_function_imports_only_the_public_api(tmp_path: Path) -> None:
    import ast

    project = render(tmp_path / "project", {"submission_service": "cloud-functions"})
    tree = ast.parse((project / SERVICE / "main.py").read_text())
    imported = {
        (node.module, alias.name)
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("vertexkit")
        for alias in node.names
    }
    assert imported == {
        ("vertexkit.service", "flask_response"),
        ("vertexkit.service", "from_environment"),
    }
    assert all(name in vertexkit.PUBLIC_API[module] for module, name in imported)


@pytest.mark.parametrize("python", ["3.10", "3.11", "3.12"])
def test_the_service_dockerfile_is_hadolint_clean(tmp_path: Path, python: str) -> None:
    project = render(tmp_path / "project", {"python_version": python})
    dockerfile = project / SERVICE / "Dockerfile"
    assert f"FROM python:{python}." in dockerfile.read_text()
    result = subprocess.run(
        [str(Path(sys.executable).parent / "hadolint"), str(dockerfile.relative_to(project))],
        cwd=project,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_is_really_checking(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get install curl\n")
    result = subprocess.run(
        [str(Path(sys.executable).parent / "hadolint"), str(bad)], capture_output=True, text=True
    )
    assert result.returncode != 0 and "DL3007" in result.stdout


def test_the_cloud_functions_entry_point_serves_through_functions_framework(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The function's source folder as the deploy stages it: main.py, config/, pipelines/."""
    from functions_framework import create_app

    rendered = render(tmp_path / "rendered", {"submission_service": "cloud-functions"})
    compiled = make_project(tmp_path / "compiled")
    source = tmp_path / "function"
    source.mkdir()
    shutil.copy(rendered / SERVICE / "main.py", source / "main.py")
    shutil.copytree(compiled / "config", source / "config")
    shutil.copytree(compiled / "build" / "pipelines", source / "pipelines")
    for name in ("VERTEXKIT_SERVICE_ROOT", "VERTEXKIT_SERVICE_PIPELINES"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("VERTEXKIT_ENV", "dev")
    monkeypatch.setenv("VERTEXKIT_RELEASE_COMMIT", "abc123def456")
    monkeypatch.setenv("VERTEXKIT_SERVICE_BACKEND", "dry-run")
    client = create_app(
        target=service_infra.FUNCTION_ENTRY_POINT, source=str(source / "main.py")
    ).test_client()
    listed = client.get("/pipelines")
    assert listed.status_code == 200
    assert {p["name"] for p in listed.get_json()["pipelines"]} == {"scoring", "training"}
    run = client.post("/pipelines/scoring/runs", json={"parameters": {"threshold": 0.5}})
    assert run.status_code == 200 and run.get_json()["dry_run"] is True
    [submit] = [s for s in run.get_json()["steps"] if s["step"] == "submit scoring"]
    assert submit["body"]["templateUri"].endswith("/demo-scoring/abc123def456")
    refused = client.post("/pipelines/scoring/runs", data="{", content_type="application/json")
    assert refused.status_code == 400 and json.loads(refused.data)["error"]["status"] == 400
    too_big = client.post(
        "/pipelines/scoring/runs", data="x" * 70000, content_type="application/json"
    )
    assert too_big.status_code == 413


def test_checkov_finds_nothing_in_the_service_dockerfile_and_its_skip_is_needed(
    tmp_path: Path,
) -> None:
    from tests.test_infra import SKIP_COMMENT, _checkov, _results

    project = render(tmp_path / "project")
    for name in ("service", "stripped"):
        (tmp_path / "scan" / name).mkdir(parents=True)
        shutil.copy(project / SERVICE / "Dockerfile", tmp_path / "scan" / name / "Dockerfile")
    stripped = tmp_path / "scan" / "stripped" / "Dockerfile"
    stripped.write_text(SKIP_COMMENT.sub("#", stripped.read_text()))
    reports = _checkov(tmp_path / "scan")
    results = _results(reports, "dockerfile", "service")
    assert results["passed_checks"] and not results["failed_checks"], results["failed_checks"]
    assert {c["check_id"] for c in results["skipped_checks"]} == {"CKV_DOCKER_2"}
    failed = _results(reports, "dockerfile", "stripped")["failed_checks"]
    assert {c["check_id"] for c in failed} == {"CKV_DOCKER_2"}
