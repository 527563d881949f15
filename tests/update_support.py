"""Template repositories with several releases, and projects rendered from them, for the tests
of `copier update` (tests/test_updates.py) and benchmarks/update.py.

The first release is this checkout's working tree, committed and tagged ``v<version>`` in a
temporary git repository; :func:`next_release` commits and tags a later one that changes files
of every kind (a component, a pipeline, config, the Dockerfile, Terraform, the README, tasks.py,
pyproject through the vertexkit pin) and renames one file with a migration.
"""

from __future__ import annotations

import re
import subprocess
import warnings
from pathlib import Path
from typing import Any

import vertexkit
from tests.template_support import BASE_ANSWERS, GIT, commit_new_project, release_repo

FIRST = f"v{vertexkit.__version__}"
PACKAGE = "template/components/{{package_name}}"
TERRAFORM = "template/{% if provisioning == 'terraform' %}infra{% endif %}/terraform"
# The file the next release renames (content unchanged), and its migration.
RENAMED = ("tests/test_pipelines.py", "tests/test_pipeline_runs.py")
MIGRATION = """_migrations:
  - version: {tag}
    command:
      - "{{{{ _copier_python }}}}"
      - "{{{{ _copier_conf.src_path / 'copier_migrations' / 'rename.py' }}}}"
      - "{old}"
      - "{new}"
"""
# What each kind of template change writes, so that the tests can look for it.
MARK = "vertexkit {version}"
README_LINE = "`copier update` brings in later template versions and keeps your edits."


def git(cwd: Path, *args: str) -> str:
    result = subprocess.run([*GIT, *args], cwd=cwd, capture_output=True, text=True)
    assert result.returncode == 0, f"git {' '.join(args)}: {result.stderr}"
    return result.stdout


def bump(version: str) -> str:
    major, minor, patch = (int(part) for part in version.split("."))
    return f"{major}.{minor}.{patch + 1}"


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{path}: {old!r} not found"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def _append(path: Path, text: str) -> None:
    path.write_text(path.read_text(encoding="utf-8").rstrip("\n") + "\n" + text, encoding="utf-8")


def set_version(repo: Path, version: str) -> None:
    """The release's version where a release sets it: the package, copier.yml, CHANGELOG."""
    current = vertexkit_version(repo)
    _edit(repo / "helpers/vertexkit/__init__.py", f'"{current}"', f'"{version}"')
    _edit(repo / "copier.yml", f'default: "{current}"', f'default: "{version}"')
    _edit(repo / "CHANGELOG.md", "\n## ", f"\n## {version} (2026-12-01)\n\nA test release.\n\n## ")


def vertexkit_version(repo: Path) -> str:
    text = (repo / "helpers/vertexkit/__init__.py").read_text()
    return re.search(r'__version__ = "([^"]+)"', text).group(1)  # type: ignore[union-attr]


def first_release(dest: Path) -> Path:
    return release_repo(dest, tag=FIRST)


def next_release(repo: Path, *, full: bool = True) -> str:
    """Commit and tag the next release; returns its tag. Every change carries MARK. ``full``:
    files of every kind change and one is renamed with a migration; else only the version and
    the Dockerfile."""
    version = bump(vertexkit_version(repo))
    mark = MARK.format(version=version)
    t = repo / "template"
    set_version(repo, version)
    _append(t / "components/Dockerfile.jinja", f"# Changed in {mark}.\n")
    if full:
        _change_every_kind(repo, mark)
    tag = f"v{version}"
    if full:
        old, new = RENAMED
        git(repo, "mv", f"template/{old}", f"template/{new}")
        _edit(repo / "copier.yml", "_migrations: []\n", MIGRATION.format(tag=tag, old=old, new=new))
    git(repo, "add", "--all")
    git(repo, "commit", "-qm", f"Release {version}")
    git(repo, "tag", tag)
    return tag


def _change_every_kind(repo: Path, mark: str) -> None:
    t = repo / "template"
    _append(
        t / PACKAGE.removeprefix("template/") / "model.py.jinja",
        f"\n\ndef feature_columns(frame: pd.DataFrame, target: str) -> list[str]:\n"
        f'    """The columns a model trains on ({mark})."""\n'
        f"    return [column for column in frame.columns if column != target]\n",
    )
    _edit(
        t / "pipelines/training.py.jinja",
        "then register the model.",
        f"then register the model ({mark}).",
    )
    _edit(
        t / "config/base.yaml.jinja",
        "prints the merged settings of an environment.\n",
        f"prints the merged settings of an environment.\n# Changed in {mark}.\n",
    )
    _append(repo / TERRAFORM / "outputs.tf", f"# Changed in {mark}.\n")
    _edit(
        t / "README.md.jinja",
        README_LINE,
        README_LINE.replace("keeps your", f"keeps ({mark}) your"),
    )
    _edit(t / "tasks.py", "Tasks of this project:", f"Tasks of this project ({mark}):")
    _append(
        t / "tests/test_model.py.jinja", f'\n\ndef test_release() -> None:\n    assert "{mark}"\n'
    )
    _append(t / "data/README.md", f"\nChanged in {mark}.\n")


def render_at(repo: Path, dest: Path, tag: str, answers: dict[str, Any] | None = None) -> Path:
    """Render release ``tag`` of ``repo`` into ``dest`` and commit it, as a team does."""
    from copier import run_copy

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run_copy(
            str(repo),
            dest,
            data={**BASE_ANSWERS, **(answers or {})},
            vcs_ref=tag,
            defaults=True,
            quiet=True,
        )
    return commit_new_project(dest)


def tree(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` but git's, by relative path."""
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and ".git" not in p.relative_to(root).parts
    }
