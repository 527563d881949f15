"""Shared fixtures: the project root and an isolated output directory for local runs."""

from pathlib import Path

import pytest

PROJECT_DIR = Path(__file__).resolve().parent.parent


@pytest.fixture
def project_dir() -> Path:
    return PROJECT_DIR


@pytest.fixture
def local_outputs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Send local runs' outputs to a temporary directory instead of build/local."""
    monkeypatch.setenv("VERTEXKIT__LOCAL__OUTPUT_DIR", str(tmp_path / "local"))
    return tmp_path
