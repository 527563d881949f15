"""`copier update` of generated projects between releases of the template, as teams live it.

A temporary template repository holds three releases: this checkout (v<version>), the next one
changing files of every kind and renaming one with a migration, and a third changing little
(tests/update_support.py). Projects are rendered at the first, committed, edited by "the team",
and updated: the team's edits survive, the template's changes arrive, overlapping edits become
conflicts that git, the project's pre-commit hook and `vertexkit update` report.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import tomllib
import yaml
from pre_commit_hooks import check_merge_conflict

from tests.template_support import BASE_ANSWERS, commit_new_project, find_python
from tests.update_support import (
    FIRST,
    MARK,
    RENAMED,
    first_release,
    git,
    next_release,
    render_at,
    tree,
)
from vertexkit import cli
from vertexkit.local import updates

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def releases(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """The template repository and its tags, oldest first."""
    repo = first_release(tmp_path_factory.mktemp("template") / "vertexkit")
    return repo, [FIRST, next_release(repo), next_release(repo, full=False)]


def _answers(project: Path) -> dict[str, Any]:
    return yaml.safe_load((project / ".copier-answers.yml").read_text())


def _read(project: Path, name: str) -> str:
    return (project / name).read_text(encoding="utf-8")


def _write(project: Path, name: str, text: str) -> None:
    (project / name).parent.mkdir(parents=True, exist_ok=True)
    (project / name).write_text(text, encoding="utf-8")


def _replace(project: Path, name: str, old: str, new: str) -> None:
    text = _read(project, name)
    assert old in text, f"{name}: {old!r}"
    _write(project, name, text.replace(old, new, 1))


def team_edits(project: Path, *, overlap: bool) -> dict[str, list[str]]:
    """Edits of every kind a team makes, committed; returns, per file, text that must survive.

    With ``overlap``, the team also rewrites the README line the next release changes.
    """
    package = _answers(project)["package_name"]
    terraform = (project / "infra/terraform").is_dir()
    model = f"components/{package}/model.py"
    # 1. a component: a helper of the team's, near the top of the module
    _replace(
        project,
        model,
        'MODEL_FILE = "model.joblib"',
        'MODEL_FILE = "model.joblib"\nTEAM_THRESHOLD = 0.7  # the team\'s decision threshold',
    )
    # 2. a pipeline: a note at its end
    _write(
        project,
        "pipelines/training.py",
        _read(project, "pipelines/training.py") + "\n# Team: retrain weekly.\n",
    )
    # 3. config values: the base and an environment
    _replace(project, "config/base.yaml", "-classifier", "-team-classifier")
    env = sorted(p.name for p in (project / "config").glob("*.yaml") if p.name != "base.yaml")[0]
    _write(project, f"config/{env}", _read(project, f"config/{env}") + "# Team: reviewed.\n")
    # 4. pyproject: a dependency and a development tool of the team's
    ours = "  # The project's own dependencies: add yours here.\n"
    _replace(project, "pyproject.toml", ours, ours + '  "pyyaml>=6",\n')
    dev = "  # The project's own development tools: add yours here.\n"
    _replace(project, "pyproject.toml", dev, dev + '  "packaging>=23",\n')
    # 5. the README: a section of the team's
    _write(project, "README.md", _read(project, "README.md") + "\n## Team notes\n\nAsk Ana.\n")
    # 6. tasks.py: a task of the team's
    _replace(
        project, "tasks.py", "from vertexkit.tasks", "from invoke import task\nfrom vertexkit.tasks"
    )
    _write(
        project,
        "tasks.py",
        _read(project, "tasks.py")
        + '\n\n@task\ndef hello(c):\n    """Say hello (the team\'s task)."""\n'
        '    print("hello")\n\n\nns.add_task(hello)\n',
    )
    # 7. a test added to the file the next release renames
    old, _ = RENAMED
    _write(
        project,
        old,
        _read(project, old)
        + "\n\ndef test_team_pipelines() -> None:\n    assert 'training' in PIPELINES\n",
    )
    # 8. the team's notes on its data (written once by the template)
    _write(project, "data/README.md", "# Our data\n\nFrom the warehouse.\n")
    # 9. a deleted file, which the next release changes
    (project / "tests/test_model.py").unlink()
    # 10. new files: a module, its test, data, Terraform, docs
    _write(
        project,
        f"components/{package}/features.py",
        'def double(x: int) -> int:\n    """Twice x."""\n    return 2 * x\n',
    )
    _write(
        project,
        "tests/test_features.py",
        f"from {package}.features import double\n\n\n"
        "def test_double() -> None:\n    assert double(2) == 4\n",
    )
    _write(project, "data/extra.csv", "a,b\n1,2\n")
    _write(project, "docs/notes.md", "# Notes\n")
    if terraform:
        _write(
            project,
            "infra/terraform/team.tf",
            '# Team: our own resources.\nlocals {\n  team = "ml"\n}\n',
        )
    expected = {
        model: ["TEAM_THRESHOLD = 0.7"],
        "pipelines/training.py": ["# Team: retrain weekly."],
        "config/base.yaml": ["-team-classifier"],
        f"config/{env}": ["# Team: reviewed."],
        "pyproject.toml": ['"pyyaml>=6"', '"packaging>=23"'],
        "README.md": ["## Team notes\n\nAsk Ana."],
        "tasks.py": ["from invoke import task", "ns.add_task(hello)"],
        RENAMED[1]: ["def test_team_pipelines"],
        "data/README.md": ["# Our data\n\nFrom the warehouse.\n"],
        f"components/{package}/features.py": ["def double"],
        "tests/test_features.py": ["def test_double"],
        "data/extra.csv": ["a,b"],
        "docs/notes.md": ["# Notes"],
    }
    if terraform:
        expected["infra/terraform/team.tf"] = ['team = "ml"']
    if overlap:
        line = "`copier update` brings in later template versions and keeps your edits."
        _replace(project, "README.md", line, "`copier update` is run by Ana every month.")
    git(project, "add", "--all")
    git(project, "commit", "-qm", "Team edits")
    return expected


def template_changes(project: Path, tag: str) -> dict[str, list[str]]:
    """Per file, what the release ``tag`` (made by next_release) writes in it."""
    mark = MARK.format(version=tag[1:])
    package = _answers(project)["package_name"]
    changes = {
        f"components/{package}/model.py": [f"The columns a model trains on ({mark})"],
        "pipelines/training.py": [f"then register the model ({mark})"],
        "config/base.yaml": [f"# Changed in {mark}."],
        "components/Dockerfile": [f"# Changed in {mark}."],
        "tasks.py": [f"Tasks of this project ({mark})"],
        "pyproject.toml": [f'"vertexkit=={tag[1:]}"'],
    }
    if (project / "infra/terraform").is_dir():
        changes["infra/terraform/outputs.tf"] = [f"# Changed in {mark}."]
    return changes


ANSWER_SETS = {
    "defaults": {},
    "gcloud-staging-kfp": {
        "provisioning": "gcloud",
        "environments": ["staging"],
        "orchestrator": "kfp",
        "project_name": "Fraud Scoring",
        "package_name": "fraud_lib",
    },
    "none-all-envs-py312": {
        "provisioning": "none",
        "environments": ["dev", "staging", "prod"],
        "python_version": "3.12",
    },
}


@pytest.mark.parametrize("answers", ANSWER_SETS)
def test_update_keeps_team_edits_brings_template_changes_and_reports_conflicts(
    releases: tuple[Path, list[str]],
    tmp_path: Path,
    answers: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    repo, tags = releases
    project = render_at(repo, tmp_path / "project", tags[0], ANSWER_SETS[answers])
    survive = team_edits(project, overlap=True)

    # The update, through the console script; the release renames a file: --trust runs its
    # migration (without, copier refuses and nothing changes: test_updates_without_trust).
    code = cli.main(["update", str(project), "--to", tags[1], "--trust"])
    out = capsys.readouterr().out
    assert code == 1
    assert f"{tags[0]} -> {tags[1]}" in out
    readme_line = next(
        number
        for number, line in enumerate(_read(project, "README.md").splitlines(), start=1)
        if line == updates.CONFLICT_START
    )
    assert "1 conflict(s) to resolve" in out
    assert f"  README.md:{readme_line}: conflict markers" in out

    for name, fragments in survive.items():
        for fragment in fragments:
            assert fragment in _read(project, name), f"team edit lost in {name}: {fragment!r}"
    for name, fragments in template_changes(project, tags[1]).items():
        for fragment in fragments:
            assert fragment in _read(project, name), f"template change missing in {name}"
    assert not (project / "tests/test_model.py").exists()  # deleted by the team: stays deleted
    assert not (project / RENAMED[0]).exists()  # renamed, the team's test with it (above)
    assert f"Changed in {MARK.format(version=tags[1][1:])}" not in _read(project, "data/README.md")
    # The pin moved next to the team's dependency without conflict: valid TOML.
    pyproject = tomllib.loads(_read(project, "pyproject.toml"))
    assert pyproject["project"]["dependencies"][:2] == [f"vertexkit=={tags[1][1:]}", "pyyaml>=6"]
    assert "packaging>=23" in pyproject["project"]["optional-dependencies"]["dev"]
    assert _answers(project)["_commit"] == tags[1]

    # The overlapping edit is an inline conflict, which each check finds, and only there.
    readme = _read(project, "README.md")
    assert "`copier update` is run by Ana every month." in readme
    assert "keeps (vertexkit" in readme
    assert [str(c) for c in updates.find_conflicts(project)] == [
        f"README.md:{readme_line}: conflict markers (<<<<<<< before updating ... >>>>>>> "
        "after updating)"
    ]
    diff_check = subprocess.run(
        ["git", "diff", "--check"], cwd=project, capture_output=True, text=True
    )
    assert diff_check.returncode != 0 and "README.md" in diff_check.stdout
    assert "UU README.md" in git(project, "status", "--short")
    monkeypatch.chdir(project)  # the hook asks git where it is
    files = [name for name in git(project, "ls-files").splitlines() if (project / name).is_file()]
    assert check_merge_conflict.main(["--assume-in-merge", *files]) == 1
    assert f"README.md:{readme_line}: Merge conflict string" in capsys.readouterr().out
    # Resolved (markers removed), every check passes.
    resolved = [
        line
        for line in readme.splitlines(keepends=True)
        if not line.startswith(("<<<<<<<", "=======", ">>>>>>>"))
    ]
    _write(project, "README.md", "".join(resolved))
    git(project, "add", "README.md")
    assert updates.find_conflicts(project) == []
    assert check_merge_conflict.main(["--assume-in-merge", *files]) == 0
    hook = yaml.safe_load(_read(project, ".pre-commit-config.yaml"))
    (check,) = [h for r in hook["repos"] for h in r["hooks"] if h["id"] == "check-merge-conflict"]
    assert check["args"] == ["--assume-in-merge"]


def test_pristine_update_equals_a_fresh_copy(
    releases: tuple[Path, list[str]], tmp_path: Path
) -> None:
    repo, tags = releases
    project = render_at(repo, tmp_path / "updated", tags[0])
    result = updates.update_project(project, tags[1], trust=True)
    assert result.outcome == "updated" and not result.conflicts
    fresh = render_at(repo, tmp_path / "fresh", tags[1])
    updated, expected = tree(project), tree(fresh)
    answers = ".copier-answers.yml"
    old, new = yaml.safe_load(updated.pop(answers)), yaml.safe_load(expected.pop(answers))
    assert old.pop("_commit") == new.pop("_commit") == tags[1]
    assert old == new
    assert sorted(updated) == sorted(expected)
    # Files the team owns once written (copier.yml _skip_if_exists) keep the first version.
    kept = yaml.safe_load((repo / "copier.yml").read_text())["_skip_if_exists"]
    assert kept == ["data/README.md"]
    differ = [name for name in expected if updated[name] != expected[name]]
    assert differ == kept
    assert (
        updated["data/README.md"]
        == git(repo, "show", f"{tags[0]}:template/data/README.md").encode()
    )


def test_updates_without_trust(releases: tuple[Path, list[str]], tmp_path: Path) -> None:
    """As Renovate runs them: a release without migrations updates; one with a migration is
    refused with a message that names the feature, and the project is left as it was."""
    repo, tags = releases
    project = render_at(repo, tmp_path / "project", tags[0])
    head = git(project, "rev-parse", "HEAD")
    with pytest.raises(updates.UpdateError, match=r"migrations.*--trust"):
        updates.update_project(project, tags[1])
    assert git(project, "status", "--porcelain") == "" and git(project, "rev-parse", "HEAD") == head

    later = render_at(repo, tmp_path / "later", tags[1])
    result = updates.update_project(later, tags[2])
    assert result.outcome == "updated"
    # The release changed the Dockerfile and the version (the pin, the README's mention).
    changed = [".copier-answers.yml", "README.md", "components/Dockerfile", "pyproject.toml"]
    assert result.changed == changed
    assert _answers(later)["_commit"] == tags[2]


# Changing an answer during an update: (question, old answer, new answer), one line each; the
# test finds the files each answer renders. Every question with files of its own belongs here
# (ci and submission_service too, with two of their choices).
ANSWER_CHANGES = [
    ("provisioning", "terraform", "gcloud"),
    ("environments", ["dev", "prod"], ["dev", "staging"]),
    ("ci", "github-actions", "cloud-build"),
    ("submission_service", "cloud-run", "cloud-functions"),
]


@pytest.mark.parametrize(("question", "old", "new"), ANSWER_CHANGES, ids=str)
def test_changing_an_answer_removes_the_old_files_and_adds_the_new(
    releases: tuple[Path, list[str]], tmp_path: Path, question: str, old: Any, new: Any
) -> None:
    repo, tags = releases
    project = render_at(repo, tmp_path / "project", tags[1], {question: old})
    before = set(tree(project))
    from copier import run_update

    run_update(
        project, data={question: new}, vcs_ref=tags[1], defaults=True, overwrite=True, quiet=True
    )
    fresh = tree(render_at(repo, tmp_path / "fresh", tags[1], {question: new}))
    after = tree(project)
    assert _answers(project)[question] == new
    assert sorted(after) == sorted(fresh), "the files of a fresh copy with the new answer"
    assert sorted(before - set(after)) and all(name not in fresh for name in before - set(after))
    assert [name for name in fresh if after[name] != fresh[name]] == []


def test_updated_project_installs_compiles_and_passes_its_tests(
    releases: tuple[Path, list[str]], tmp_path: Path
) -> None:
    python = find_python("3.11")
    if python is None:
        pytest.skip("no Python 3.11 interpreter on this machine")
    repo, tags = releases
    project = render_at(repo, tmp_path / "project", tags[0])
    team_edits(project, overlap=False)
    result = updates.update_project(project, tags[2], trust=True)
    assert result.outcome == "updated", result.conflicts
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VERTEXKIT", "GOOGLE"))}
    env.update(UV_PYTHON_DOWNLOADS="never")
    env.pop("VIRTUAL_ENV", None)

    def run(*args: str) -> str:
        done = subprocess.run(args, cwd=project, env=env, capture_output=True, text=True)
        assert done.returncode == 0, f"{args}: {done.stdout[-3000:]}{done.stderr[-3000:]}"
        return done.stdout

    run(sys.executable, "-m", "uv", "sync", "--offline", "--python", python)
    run(
        ".venv/bin/python", "-m", "compileall", "-q", "components", "pipelines", "tests", "tasks.py"
    )
    assert "hello" in run(".venv/bin/invoke", "--list")
    tests = run(".venv/bin/python", "-m", "pytest", "-v", "-p", "no:cacheprovider")
    assert "failed" not in tests
    # The team's tests run too, the one in the renamed file among them.
    for test in ("test_pipeline_runs.py::test_team_pipelines", "test_features.py::test_double"):
        assert f"{test} PASSED" in tests

    # The README's update command, in the project's environment: nothing newer to bring in.
    git(project, "add", "--all")
    git(project, "commit", "-qm", "Update")
    readme = _read(project, "README.md")
    command = "uv run --with copier==9.19.1 python -m vertexkit.cli update"
    assert f"`{command}`" in readme
    again = run(sys.executable, "-m", "uv", "run", "--offline", *command.split()[2:])
    assert f"{tags[2]} -> {tags[2]}: 0 file(s) changed" in again and "No conflicts" in again


def test_answers_file_writes_a_github_shorthand_as_a_url_for_renovate(
    releases: tuple[Path, list[str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rendered from gh:ORG/vertexkit (git redirected to the local repository): the answers
    file holds https://github.com/ORG/vertexkit, which copier and Renovate both read."""
    repo, tags = releases
    config = tmp_path / "gitconfig"
    for url in ("https://github.com/ORG/vertexkit", "https://github.com/ORG/vertexkit.git"):
        subprocess.run(
            ["git", "config", "--file", str(config), "--add", f"url.{repo}.insteadOf", url],
            check=True,
        )
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(config))
    from copier import run_copy
    from plumbum import local  # copier runs git through plumbum, with its copy of the environment

    project = tmp_path / "project"
    with local.env(GIT_CONFIG_GLOBAL=str(config)):
        run_copy("gh:ORG/vertexkit", project, data=BASE_ANSWERS, vcs_ref=tags[1], defaults=True)
        answers = _answers(project)
        assert answers["_src_path"] == "https://github.com/ORG/vertexkit"
        assert answers["_commit"] == tags[1]
        renovate = json.loads(_read(project, "renovate.json"))
        assert renovate["copier"]["enabled"] is True
        commit_new_project(project)
        status = updates.project_status(project)
        assert (status.version, status.newest, status.behind, status.error) == (
            tags[1],
            tags[2],
            1,
            "",
        )
        assert updates.update_project(project).outcome == "updated"  # the URL, without --trust
        assert _answers(project)["_commit"] == tags[2]


def test_fleet_update_dry_run_then_apply(
    releases: tuple[Path, list[str]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Four projects: one whose template is gone (fails first, the others go on), one clean,
    one whose edit overlaps the release, one with uncommitted work."""
    repo, tags = releases
    # One render, copied (a git repository is self-contained): the same project four times.
    first = render_at(repo, tmp_path / "first", tags[1])
    broken, clean, conflicted, dirty = (
        Path(shutil.copytree(first, tmp_path / name, symlinks=True))
        for name in ("broken", "clean", "conflicted", "dirty")
    )
    answers = _read(broken, ".copier-answers.yml").replace(str(repo), str(tmp_path / "gone"))
    _write(broken, ".copier-answers.yml", answers)
    git(broken, "commit", "-qam", "Template moved")
    remote = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", str(remote))
    git(clean, "remote", "add", "origin", str(remote))
    git(clean, "push", "-q", "origin", "HEAD")
    _write(
        conflicted,
        "components/Dockerfile",
        _read(conflicted, "components/Dockerfile") + "# Ours.\n",
    )
    git(conflicted, "commit", "-qam", "Our Dockerfile line")
    _write(dirty, "README.md", _read(dirty, "README.md") + "Work in progress.\n")
    projects = [broken, clean, conflicted, dirty]
    heads = {p: git(p, "rev-parse", "HEAD") for p in projects}

    # The dry run changes nothing and says what would change.
    code = cli.main(["fleet", "update", *map(str, projects)])
    captured = capsys.readouterr()
    assert code == 1
    assert f"[1/4] {broken}: failed" in captured.err and f"[4/4] {dirty}: skipped" in captured.err
    assert f"{clean} would change 4 file(s):\n  .copier-answers.yml\n  README.md\n" in captured.out
    assert "  conflict: components/Dockerfile:" in captured.out
    for project in projects:
        assert git(project, "rev-parse", "HEAD") == heads[project]
        assert git(project, "branch", "--list", "template-update/*") == ""
    assert git(dirty, "status", "--porcelain") == " M README.md\n"

    code = cli.main(["fleet", "update", *map(str, projects), "--apply", "--json"])
    captured = capsys.readouterr()
    assert code == 1
    results = {r["path"]: r for r in json.loads(captured.out)}
    assert [results[str(p)]["outcome"] for p in projects] == [
        "failed",
        "updated",
        "conflicted",
        "skipped",
    ]
    assert str(tmp_path / "gone") in results[str(broken)]["message"]
    branch = f"template-update/{tags[2]}"
    assert results[str(clean)]["branch"] == branch
    assert git(clean, "rev-parse", "--abbrev-ref", "HEAD").strip() == branch
    assert git(clean, "log", "-1", "--format=%s").strip() == f"Update template to {tags[2]}"
    assert git(clean, "status", "--porcelain") == ""
    assert _answers(clean)["_commit"] == tags[2]
    assert git(remote, "branch", "--list", "template-update/*") == ""  # never pushed
    assert results[str(conflicted)]["conflicts"][0].startswith("components/Dockerfile:")
    assert git(conflicted, "rev-parse", "--abbrev-ref", "HEAD").strip() == branch
    for project in (broken, dirty):  # untouched
        assert git(project, "rev-parse", "HEAD") == heads[project]
        assert git(project, "branch", "--list", "template-update/*") == ""
    assert git(dirty, "status", "--porcelain") == " M README.md\n"
    assert git(broken, "status", "--porcelain") == ""

    # The table form, and a fleet now up to date.
    assert cli.main(["fleet", "update", str(clean), "--apply"]) == 0
    table = capsys.readouterr().out
    assert f"{clean}  unchanged" in table and "up to date" in table
