"""Template updates of generated projects: their version, the template's releases, `copier update`
with a report of its conflicts, and the same over many projects (the fleet).

Copier runs in-process (it is imported on first use: ``pip install vertexkit[update]``, or the
generated project's dev extra). Everything here is local: git and the template's repository,
which ``git ls-remote`` reads whether it is a URL or a path.
"""

from __future__ import annotations

import subprocess
import tempfile
import warnings
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml
from packaging.version import InvalidVersion, Version

ANSWERS_FILE = ".copier-answers.yml"
# What copier writes around an inline conflict (`--conflict inline`, its default).
CONFLICT_START = "<<<<<<< before updating"
CONFLICT_END = ">>>>>>> after updating"
BRANCH_PREFIX = "template-update/"


class UpdateError(Exception):
    """A project or template that cannot be read or updated; the message says which and why."""


@dataclass(frozen=True)
class Conflict:
    """One place an update left for the team to resolve."""

    path: str
    line: int  # 0 for a whole file (a .rej file, an unmerged index entry)
    kind: str  # "markers", "rejected" or "unmerged"

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line else self.path
        what = {
            "markers": "conflict markers (<<<<<<< before updating ... >>>>>>> after updating)",
            "rejected": "hunks copier could not apply (the .rej file)",
            "unmerged": "unmerged in the git index",
        }[self.kind]
        return f"{where}: {what}"


@dataclass
class ProjectStatus:
    """Where one project stands against its template's releases."""

    path: str
    template: str = ""  # the answers file's _src_path
    version: str = ""  # the answers file's _commit (a tag, or tag-N-gHASH)
    newest: str = ""  # the newest release tag of the template
    behind: int | None = None  # how many releases newer than `version`
    dirty: bool = False
    error: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class UpdateResult:
    """What updating one project did (or, in a dry run, would do)."""

    path: str
    outcome: str  # "updated", "conflicted", "unchanged", "skipped", "failed"
    from_version: str = ""
    to_version: str = ""
    branch: str = ""
    changed: list[str] = field(default_factory=list)
    conflicts: list[Conflict] = field(default_factory=list)
    message: str = ""

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["conflicts"] = [str(c) for c in self.conflicts]
        return data


def _git(cwd: Path, *args: str, check: bool = True) -> str:
    result = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise UpdateError(f"`git {' '.join(args)}` failed in {cwd}: {result.stderr.strip()}")
    return result.stdout


def read_answers(project: Path) -> dict[str, Any]:
    """The project's ``.copier-answers.yml``; UpdateError when missing or without a template."""
    path = project / ANSWERS_FILE
    if not path.is_file():
        raise UpdateError(f"{path}: not found; is {project} a project rendered by copier?")
    try:
        answers = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as error:
        raise UpdateError(f"{path}: not valid YAML ({error})") from error
    if not isinstance(answers, dict) or not answers.get("_src_path"):
        raise UpdateError(f"{path}: no _src_path (where the template comes from)")
    return answers


def release_version(tag: str) -> Version | None:
    """The PEP 440 version of a release tag ``vX.Y.Z`` (or of ``vX.Y.Z-N-gHASH``, a commit N
    past it, as copier writes ``_commit``); None for anything else."""
    name = tag.removeprefix("v").split("-", 1)[0]
    try:
        return Version(name) if tag.startswith("v") else None
    except InvalidVersion:
        return None


def _git_source(src: str) -> str:
    """What git reads for a copier source: gh:/gl: shorthands as URLs, git+ prefix dropped."""
    for short, url in (("gh:", "https://github.com/"), ("gl:", "https://gitlab.com/")):
        if src.startswith(short):
            return url + src[len(short) :]
    return src.removeprefix("git+")


def release_tags(src: str) -> list[str]:
    """The template's release tags (``vX.Y.Z``, PEP 440), oldest first, read with ``git
    ls-remote`` from a URL or a local repository; pre-releases are left out."""
    result = subprocess.run(
        ["git", "ls-remote", "--tags", _git_source(src)], capture_output=True, text=True
    )
    if result.returncode != 0:
        raise UpdateError(f"cannot read the tags of {src}: {result.stderr.strip()}")
    tags = {
        line.split("refs/tags/", 1)[1].removesuffix("^{}")
        for line in result.stdout.splitlines()
        if "refs/tags/" in line
    }
    versions = {tag: release_version(tag) for tag in tags}
    releases = [t for t, v in versions.items() if v is not None and not v.is_prerelease]
    return sorted(releases, key=lambda t: versions[t])  # type: ignore[arg-type,return-value]


def is_dirty(project: Path) -> bool:
    return bool(_git(project, "status", "--porcelain").strip())


def project_status(project: Path, tags: dict[str, list[str]] | None = None) -> ProjectStatus:
    """The project's template version, how many releases behind the newest it is, and whether
    its git tree is dirty. ``tags`` caches the tags per template source across projects."""
    status = ProjectStatus(path=str(project))
    try:
        answers = read_answers(project)
        status.template = str(answers["_src_path"])
        status.version = str(answers.get("_commit", ""))
        status.dirty = is_dirty(project)
        cache = tags if tags is not None else {}
        if status.template not in cache:
            cache[status.template] = release_tags(status.template)
        releases = cache[status.template]
        status.newest = releases[-1] if releases else ""
        current = release_version(status.version)
        if current is not None:  # vX.Y.Z-N-gHASH counts as vX.Y.Z: past it, before the next
            status.behind = sum(
                1 for tag in releases if (release_version(tag) or current) > current
            )
    except UpdateError as error:
        status.error = str(error)
    return status


def find_conflicts(project: Path) -> list[Conflict]:
    """Every place an update left unresolved: inline conflict markers in files (copier's
    ``<<<<<<< before updating``), ``.rej`` files, and unmerged git index entries."""
    conflicts: list[Conflict] = []
    listed = _git(project, "ls-files", "-z", "--cached", "--others", "--exclude-standard")
    for name in sorted(set(filter(None, listed.split("\0")))):
        path = project / name
        if not path.is_file():
            continue
        if name.endswith(".rej"):
            conflicts.append(Conflict(name, 0, "rejected"))
            continue
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (UnicodeDecodeError, OSError):
            continue
        conflicts += [
            Conflict(name, number, "markers")
            for number, line in enumerate(lines, start=1)
            if line.rstrip() == CONFLICT_START
        ]
    marked = {c.path for c in conflicts}
    unmerged = {line.split("\t", 1)[1] for line in _git(project, "ls-files", "-u").splitlines()}
    conflicts += [Conflict(name, 0, "unmerged") for name in sorted(unmerged - marked)]
    return conflicts


def _copier_update(project: Path, to: str | None, trust: bool, data: dict[str, Any]) -> None:
    try:
        from copier import run_update
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise UpdateError(
            "copier is not installed: install vertexkit[update], or `uv tool install copier`"
        ) from error
    from copier.errors import UnsafeTemplateError, UserMessageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # replayed answers of old versions warn
            run_update(
                project,
                data=data,
                vcs_ref=to,
                defaults=True,
                overwrite=True,
                unsafe=trust,
                quiet=True,
                conflict="inline",
            )
    except UnsafeTemplateError as error:
        raise UpdateError(
            f"{error} The release notes (CHANGELOG.md) say which releases ship migrations; "
            "rerun with --trust to run them."
        ) from error
    except UserMessageError as error:
        raise UpdateError(str(error)) from error


def update_project(
    project: Path,
    to: str | None = None,
    *,
    trust: bool = False,
    data: dict[str, Any] | None = None,
) -> UpdateResult:
    """``copier update`` in place (conflicts inline), then the conflicts it left: the result is
    "conflicted" when there are any, else "updated" or "unchanged". Nothing is committed."""
    project = project.resolve()
    answers = read_answers(project)
    result = UpdateResult(path=str(project), outcome="", from_version=str(answers.get("_commit")))
    if is_dirty(project):
        raise UpdateError(f"{project}: uncommitted changes; commit or stash them first")
    _copier_update(project, to, trust, data or {})
    result.to_version = str(read_answers(project).get("_commit"))
    result.changed = _changed_files(project)
    result.conflicts = find_conflicts(project)
    result.outcome = (
        "conflicted" if result.conflicts else "updated" if result.changed else "unchanged"
    )
    return result


def _changed_files(project: Path) -> list[str]:
    """Every path the update touched: modified, added, deleted, renamed or unmerged."""
    entries = _git(project, "status", "--porcelain", "-z", "--untracked-files=all").split("\0")
    changed: list[str] = []
    skip_next = False
    for entry in filter(None, entries):
        if skip_next:  # the origin of a rename
            skip_next = False
            continue
        changed.append(entry[3:])
        skip_next = entry[0] in "RC"
    return sorted(changed)


def preview_update(project: Path, to: str | None = None, *, trust: bool = False) -> UpdateResult:
    """A dry run: the update in a throw-away clone of the project's HEAD, reporting the files it
    would change and the conflicts it would leave. The project itself is not touched."""
    project = project.resolve()
    with tempfile.TemporaryDirectory(prefix="vertexkit-preview-") as scratch:
        clone = Path(scratch) / project.name
        _git(project, "clone", "--quiet", "--local", "--no-hardlinks", str(project), str(clone))
        for key in ("user.name", "user.email"):  # copier commits in its temporary copies
            if not _git(clone, "config", key, check=False).strip():
                _git(clone, "config", key, "vertexkit")
        result = update_project(clone, to, trust=trust)
    result.path = str(project)
    return result


def _run_one(project: Path, to: str | None, apply: bool, trust: bool) -> UpdateResult:
    answers = read_answers(project)
    current = str(answers.get("_commit", ""))
    target = to or (release_tags(str(answers["_src_path"])) or [""])[-1]
    if not target:
        raise UpdateError(f"{answers['_src_path']}: no release tag (vX.Y.Z) to update to")
    if is_dirty(project):
        return UpdateResult(
            str(project), "skipped", current, target, message="uncommitted changes: not touched"
        )
    if current == target:
        return UpdateResult(str(project), "unchanged", current, target, message="up to date")
    if not apply:
        return preview_update(project, target, trust=trust)
    branch = BRANCH_PREFIX + target
    start = _git(project, "rev-parse", "--abbrev-ref", "HEAD").strip()
    _git(project, "switch", "--quiet", "--create", branch)
    try:
        result = update_project(project, target, trust=trust)
    except Exception:
        # Back to where the project was: nothing of the failed update stays.
        _git(project, "reset", "--quiet", "--hard", check=False)
        _git(project, "clean", "--quiet", "-fd", check=False)
        _git(project, "switch", "--quiet", start, check=False)
        _git(project, "branch", "--quiet", "-D", branch, check=False)
        raise
    result.branch = branch
    if result.outcome == "updated":
        _git(project, "add", "--all")
        _git(project, "commit", "--quiet", "--no-verify", "-m", f"Update template to {target}")
        result.message = f"committed on {branch}"
    elif result.outcome == "conflicted":
        result.message = f"resolve on {branch}, then commit"
    return result


def update_fleet(
    projects: Iterable[Path],
    to: str | None = None,
    *,
    apply: bool = False,
    trust: bool = False,
    progress: Callable[[int, int, UpdateResult], None] | None = None,
) -> list[UpdateResult]:
    """Update (or with ``apply=False`` preview) each project in turn. A dirty project is skipped;
    with ``apply`` each clean one is updated on a new branch ``template-update/<tag>`` and
    committed there when it has no conflicts. Nothing is pushed. One project's failure is
    recorded as "failed" and the others go on."""
    paths = [Path(p) for p in projects]
    results: list[UpdateResult] = []
    for number, project in enumerate(paths, start=1):
        try:
            result = _run_one(project.resolve(), to, apply, trust)
        except Exception as error:  # one project's failure never stops the fleet
            result = UpdateResult(str(project), "failed", message=str(error) or repr(error))
        results.append(result)
        if progress is not None:
            progress(number, len(paths), result)
    return results
