"""`vertexkit fleet status` and conflict detection on small git repositories (fast; the fleet's
updates are tested on real renders in tests/test_updates.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.update_support import git
from vertexkit import cli
from vertexkit.local import updates


@pytest.fixture
def template(tmp_path: Path) -> Path:
    repo = tmp_path / "template"
    repo.mkdir()
    git(repo, "init", "-q")
    for tag in ("v0.1.0", "v0.2.0", "v0.2.1", "v0.10.0", "v0.11.0rc1", "latest"):
        git(repo, "commit", "-q", "--allow-empty", "-m", tag)
        git(repo, "tag", "-a" if tag == "v0.10.0" else "--no-sign", tag, "-m", tag)
    return repo


def _project(path: Path, src: str, commit: str, *, dirty: bool = False) -> Path:
    path.mkdir()
    git(path, "init", "-q")
    (path / ".copier-answers.yml").write_text(f"_commit: {commit}\n_src_path: {src}\n")
    git(path, "add", "--all")
    git(path, "commit", "-qm", "Render")
    if dirty:
        (path / "notes.txt").write_text("work in progress\n")
    return path


def test_release_tags_are_pep440_newest_last(template: Path) -> None:
    # Annotated and lightweight tags; a pre-release and a tag that is no version left out.
    assert updates.release_tags(str(template)) == ["v0.1.0", "v0.2.0", "v0.2.1", "v0.10.0"]


def test_fleet_status_table_and_json(
    template: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old = _project(tmp_path / "old", str(template), "v0.2.0")
    past = _project(tmp_path / "past", str(template), "v0.2.1-3-g0123abc", dirty=True)
    newest = _project(tmp_path / "newest", str(template), "v0.10.0")
    stray = tmp_path / "stray"
    stray.mkdir()
    paths = [str(p) for p in (old, past, newest, stray)]

    assert cli.main(["fleet", "status", *paths]) == 1  # one is not a project
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["project", "version", "newest", "behind", "tree", "error"]
    assert lines[2].split() == [str(old), "v0.2.0", "v0.10.0", "2", "clean"]
    assert lines[3].split() == [str(past), "v0.2.1-3-g0123abc", "v0.10.0", "1", "dirty"]
    assert lines[4].split() == [str(newest), "v0.10.0", "v0.10.0", "0", "clean"]
    assert lines[5].split()[:5] == [str(stray), "-", "-", "-", "error"]
    assert f"{stray / '.copier-answers.yml'}: not found" in lines[5]

    assert cli.main(["fleet", "status", "--json", str(old), str(past)]) == 0
    statuses = json.loads(capsys.readouterr().out)
    assert statuses[1] == {
        "path": str(past),
        "template": str(template),
        "version": "v0.2.1-3-g0123abc",
        "newest": "v0.10.0",
        "behind": 1,
        "dirty": True,
        "error": "",
    }


def test_status_names_a_template_it_cannot_read(tmp_path: Path) -> None:
    project = _project(tmp_path / "p", str(tmp_path / "nowhere"), "v0.2.0")
    status = updates.project_status(project)
    assert status.error.startswith(f"cannot read the tags of {tmp_path / 'nowhere'}")


def test_find_conflicts_reports_markers_rejections_and_unmerged_entries(tmp_path: Path) -> None:
    project = _project(tmp_path / "p", "gh:ORG/vertexkit", "v0.2.0")
    (project / "README.md").write_text(
        "# P\n<<<<<<< before updating\nours\n=======\ntheirs\n>>>>>>> after updating\n"
    )
    (project / "tasks.py.rej").write_text("@@ -1 +1 @@\n")
    (project / "clean.py").write_text("x = 1\n")
    found = [str(c) for c in updates.find_conflicts(project)]
    assert found == [
        "README.md:2: conflict markers (<<<<<<< before updating ... >>>>>>> after updating)",
        "tasks.py.rej: hunks copier could not apply (the .rej file)",
    ]


def test_update_refuses_a_dirty_project(tmp_path: Path) -> None:
    project = _project(tmp_path / "p", "gh:ORG/vertexkit", "v0.2.0", dirty=True)
    assert cli.main(["update", str(project)]) == 1


def test_cli_rejects_bad_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["fleet", "status"])
    assert exit_info.value.code == 2
    assert "PATH" in capsys.readouterr().err
