"""Releases: the package version, the pin the template writes and the changelog agree, and
scripts/check_release.py refuses a tag they do not match (on temporary repositories)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import vertexkit
from scripts.check_release import problems, versions
from tests.template_support import ROOT, release_repo
from tests.update_support import set_version, vertexkit_version


def test_package_template_pin_and_changelog_agree() -> None:
    assert problems(ROOT) == []
    assert set(versions(ROOT).values()) == {vertexkit.__version__}
    pyproject = (ROOT / "template/pyproject.toml.jinja").read_text()
    assert '  "vertexkit=={{ vertexkit_version }}",\n' in pyproject


def _check(repo: Path, tag: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "scripts/check_release.py", tag], cwd=repo, capture_output=True, text=True
    )


@pytest.mark.slow
def test_release_check_on_a_repository(tmp_path: Path) -> None:
    repo = release_repo(tmp_path / "vertexkit")
    version = vertexkit_version(repo)
    # Not yet released: the changelog's section is "Unreleased", which the check names.
    refused = _check(repo, f"v{version}")
    assert refused.returncode == 1 and "newest section is not dated" in refused.stdout
    bad = _check(repo, version)
    assert f"tag '{version}' is not vX.Y.Z" in bad.stdout
    # The release procedure: bump everywhere and date the section; then the tag is right...
    set_version(repo, "0.9.0")
    assert _check(repo, "v0.9.0").stdout == "ready\n"
    # ... and only that one.
    assert "is not the package version 0.9.0" in _check(repo, "v0.9.1").stdout
    (repo / "copier.yml").write_text(
        (repo / "copier.yml").read_text().replace('default: "0.9.0"', 'default: "0.9.1"')
    )
    assert "versions disagree" in _check(repo, "v0.9.0").stdout
