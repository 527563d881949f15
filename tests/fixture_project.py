"""The tiny vertexkit project in tests/fixtures/project, copied fresh for each test."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"


def copy_project(root: Path) -> Path:
    shutil.copytree(FIXTURES / "project", root)
    return root


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of the fixture project (modules with another kind of project override this)."""
    return copy_project(tmp_path / "project")
