"""Rendering helpers shared by the template tests."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BASE_ANSWERS: dict[str, Any] = {"gcp_project_id": "acme-ml-dev"}


def render(dest: Path, answers: dict[str, Any] | None = None, **options: Any) -> Path:
    """Render the template from this checkout's working tree into ``dest``.

    An answer of None leaves the question unanswered (copier then uses its default, if any).
    """
    from copier import run_copy

    if (ROOT / ".git").exists():
        options.setdefault("vcs_ref", "HEAD")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # uncommitted template edits are included on purpose
        run_copy(
            str(ROOT),
            dest,
            data={k: v for k, v in {**BASE_ANSWERS, **(answers or {})}.items() if v is not None},
            defaults=True,
            unsafe=True,
            quiet=True,
            **options,
        )
    return dest


def text_files(root: Path) -> list[Path]:
    return [
        p
        for p in sorted(root.rglob("*"))
        if p.is_file() and ".git" not in p.parts and p.suffix not in {".csv", ".joblib"}
    ]


def find_python(version: str) -> str | None:
    """An interpreter of ``version`` (e.g. "3.10") on this machine, or None."""
    candidates = [shutil.which(f"python{version}")]
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    candidates += [str(p / "bin" / "python") for p in sorted(pyenv.glob(f"{version}.*"))]
    if f"{sys.version_info.major}.{sys.version_info.minor}" == version:
        candidates.insert(0, sys.executable)
    for candidate in filter(None, candidates):
        probe = subprocess.run(
            [candidate, "-c", "import sys, venv; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
        )
        if probe.returncode == 0 and probe.stdout.strip() == version:
            return candidate
    return None


def forget_cached_vertexkit(python: str) -> None:
    """Drop wheels of vertexkit that pip cached from an earlier checkout.

    pip caches the wheel it builds from a `file://` directory whose name looks like
    "name-version" (e.g. ci-clone), keyed by the URL alone: a later install from the same path
    would get the old code.
    """
    subprocess.run([python, "-m", "pip", "cache", "remove", "vertexkit"], capture_output=True)
