"""The documentation site builds without warnings (links, nav and markup checked by mkdocs)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.template_support import ROOT


def test_docs_build_strictly(tmp_path: Path) -> None:
    pytest.importorskip("mkdocs", reason="the docs extra is not installed (pip install -e .[docs])")
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "deploy" / "index.html").is_file()
