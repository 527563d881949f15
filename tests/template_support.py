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
            quiet=True,
            **options,
        )
    return dest if options.get("pretend") else commit_new_project(dest)


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


GIT = ["git", "-c", "user.name=test", "-c", "user.email=test@example.com"]


def release_repo(dest: Path, *, tag: str | None = None) -> Path:
    """A git repository of this checkout's files (edits included), committed and tagged ``tag``.

    As the template's repository looks in the field, where projects are rendered from a tag.
    """
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\0")
    for name in filter(None, files):
        if (ROOT / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, dest / name)
    for command in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "release"]):
        subprocess.run([*GIT, *command], cwd=dest, check=True)
    if tag:
        subprocess.run([*GIT, "tag", tag], cwd=dest, check=True)
    return dest


def render_from_git(repo: Path, dest: Path, answers: dict[str, Any] | None = None) -> Path:
    """Render from ``git+file://`` as from a remote URL: copier picks the newest tag."""
    from copier import run_copy

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run_copy(
            f"git+file://{repo}",
            dest,
            data={**BASE_ANSWERS, **(answers or {})},
            defaults=True,
            quiet=True,
        )
    return commit_new_project(dest)


def commit_new_project(dest: Path) -> Path:
    """What the README's first step does: a new project outside any git repository becomes
    one, with one commit (deploys and `copier update` need it)."""
    inside = subprocess.run(
        ["git", "rev-parse", "--is-inside-work-tree"], cwd=dest, capture_output=True
    )
    if inside.returncode != 0:
        for command in (["init", "-q"], ["add", "--all"], ["commit", "-qm", "Render"]):
            subprocess.run([*GIT, *command], cwd=dest, check=True)
    return dest
