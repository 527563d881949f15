"""What a deploy releases: the git commit of the project, and the tags its templates get."""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

LATEST = "latest"
# Conservative: letters, digits, '.', '_' and '-', at most 128 characters, not starting with
# '.' or '-'. That is safe in a URL path segment and in the comma-separated ``tags`` field, and
# cannot be mistaken for a version (kfp rejects tags starting with "sha256:").
TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")


class GitError(RuntimeError):
    """The project directory is not a git repository with a commit."""


def validate_tag(tag: str) -> str:
    """Return ``tag`` if the registry accepts it as a tag, else raise ValueError naming it."""
    if not TAG_RE.match(tag):
        raise ValueError(
            f"invalid template tag {tag!r}: use letters, digits, '.', '_' and '-' (at most 128 "
            "characters, not starting with '.' or '-')"
        )
    return tag


def release_tags(git_commit: str, version_tag: str | None) -> list[str]:
    """Tags of a published template: the commit, the version tag HEAD is on (if any), latest."""
    tags = [git_commit, *([version_tag] if version_tag else []), LATEST]
    return list(dict.fromkeys(validate_tag(tag) for tag in tags))


def _git(project_dir: str | Path, *args: str) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            ["git", *args], cwd=project_dir, capture_output=True, text=True, check=False
        )
    except FileNotFoundError:
        raise GitError("git is not installed: install it to publish templates") from None
    except NotADirectoryError:
        raise GitError(f"{project_dir} is not a directory") from None


def git_commit(project_dir: str | Path) -> str:
    """Short (12 characters) sha of HEAD in ``project_dir``."""
    result = _git(project_dir, "rev-parse", "--short=12", "--verify", "HEAD")
    if result.returncode == 0:
        return result.stdout.strip()
    error = result.stderr.strip()
    if "not a git repository" in error:
        raise GitError(
            f"{project_dir} is not a git repository: templates are tagged with the commit they "
            "were built from (run `git init` and commit first)"
        )
    raise GitError(f"{project_dir}: cannot read the HEAD commit (no commit yet?): {error}")


def version_tag(project_dir: str | Path) -> str | None:
    """The tag HEAD is exactly on (annotated or lightweight), or None."""
    git_commit(project_dir)  # a clear error outside a repository or before the first commit
    result = _git(project_dir, "describe", "--exact-match", "--tags", "HEAD")
    if result.returncode != 0:
        return None
    return result.stdout.strip() or None


def uncommitted_changes(project_dir: str | Path) -> list[str]:
    """Tracked files that differ from HEAD (staged or not); untracked files do not count."""
    git_commit(project_dir)
    result = _git(project_dir, "status", "--porcelain", "--untracked-files=no")
    return [line[3:] for line in result.stdout.splitlines() if line.strip()]


@dataclass(frozen=True)
class Release:
    """What is being deployed: the git commit, and the tags its templates get."""

    commit: str
    tags: list[str]

    @classmethod
    def of(cls, project_dir: Path) -> Release:
        commit = git_commit(project_dir)
        return cls(commit, release_tags(commit, version_tag(project_dir)))
