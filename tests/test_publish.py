"""Publishing templates: what a dry run shows is what the KFP registry receives."""

from __future__ import annotations

import email.policy
import hashlib
import importlib.util
import io
import json
import os
import re
import subprocess
from email.parser import BytesParser
from pathlib import Path

import pytest
import yaml
from kfp import compiler

from tests.recording_server import Recorded, RecordingServer
from vertexkit.orchestrators import vertex_templates as publish
from vertexkit.project import release
from vertexkit.project.config import ProjectConfig, load_config
from vertexkit.steps import CloudError, execute

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(autouse=True)
def _no_auth(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VERTEXKIT_NO_AUTH", "1")


@pytest.fixture
def config() -> ProjectConfig:
    return load_config(FIXTURES / "project", "dev", environ={})


@pytest.fixture
def templates(tmp_path: Path) -> dict[str, Path]:
    """Two real compiled templates, named ``first`` and ``second`` in their pipelineInfo."""
    spec = importlib.util.spec_from_file_location("_publish_two", FIXTURES / "pipelines/two.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    paths = {}
    for name in ("first", "second"):
        paths[name] = tmp_path / f"{name}.yaml"
        compiler.Compiler().compile(getattr(module, name), str(paths[name]))
    return paths


def form_fields(request: Recorded) -> dict[str, tuple[str | None, bytes]]:
    """The multipart/form-data parts of a recorded request: name -> (filename, content)."""
    head = f"Content-Type: {request.headers['content-type']}\r\n\r\n".encode()
    message = BytesParser(policy=email.policy.HTTP).parsebytes(head + request.body)
    assert message.is_multipart(), request.headers["content-type"]
    return {
        part.get_param("name", header="content-disposition"): (
            part.get_filename(),
            part.get_payload(decode=True),
        )
        for part in message.iter_parts()
    }


def registry_answer(request: Recorded) -> tuple[int, str]:
    """Answer like Artifact Registry: ``<pipelineInfo.name>/sha256:<digest of the upload>``."""
    _, content = form_fields(request)["content"]
    name = yaml.safe_load(content)["pipelineInfo"]["name"]
    return 200, f"{name}/sha256:{hashlib.sha256(content).hexdigest()}"


def test_dry_run_json_equals_what_the_registry_receives(
    config: ProjectConfig,
    templates: dict[str, Path],
    recording_server: RecordingServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("VERTEXKIT_ENDPOINT_KFP_REGISTRY", recording_server.url)
    recording_server.route("POST", "/acme-ml-dev/demo-pipelines", registry_answer)
    tags = release.release_tags("0123456789ab", "v1.2.0")
    steps = publish.plan_publish(config, templates, tags)

    shown = io.StringIO()
    execute(steps, dry_run=True, as_json=True, out=shown)
    planned = json.loads(shown.getvalue())
    assert recording_server.requests == []
    assert [p["step"] for p in planned] == ["publish first", "publish second"]
    assert planned[0]["form"] == {"tags": "0123456789ab,v1.2.0,latest"}

    responses = execute(steps, out=io.StringIO())
    assert len(recording_server.requests) == 2
    for plan, sent in zip(planned, recording_server.requests, strict=True):
        assert (sent.method, recording_server.url + sent.path) == (plan["method"], plan["url"])
        fields = form_fields(sent)
        assert set(fields) == {"tags", "content"}
        assert fields["tags"] == (None, plan["form"]["tags"].encode())
        filename, content = fields["content"]
        assert filename == os.path.basename(plan["upload"])
        assert content == Path(plan["upload"]).read_bytes()

    digest = hashlib.sha256(templates["second"].read_bytes()).hexdigest()
    assert publish.parse_upload_answer(responses["publish second"]) == (
        "second",
        f"sha256:{digest}",
    )


def test_publish_url_and_template_uri(config: ProjectConfig, templates: dict[str, Path]) -> None:
    [step] = publish.plan_publish(config, {"first": templates["first"]}, ["latest"])
    assert step.url == "https://europe-west4-kfp.pkg.dev/acme-ml-dev/demo-pipelines"
    assert publish.package_name(templates["first"]) == "first"
    assert publish.template_uri(config, "first", "v1.2.0") == (
        "https://europe-west4-kfp.pkg.dev/acme-ml-dev/demo-pipelines/first/v1.2.0"
    )
    version = "sha256:" + "ab" * 32
    assert publish.template_uri(config, "first", version).endswith(f"/first/{version}")


def test_template_uri_ignores_redirected_upload_endpoint(
    config: ProjectConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VERTEXKIT_ENDPOINT_KFP_REGISTRY", "http://127.0.0.1:1")
    assert publish.repository_url(config) == "http://127.0.0.1:1/acme-ml-dev/demo-pipelines"
    assert publish.template_uri(config, "first", "latest").startswith(
        "https://europe-west4-kfp.pkg.dev/"
    )


def test_release_tags() -> None:
    assert release.release_tags("0123456789ab", None) == ["0123456789ab", "latest"]
    assert release.release_tags("0123456789ab", "1.0.0") == ["0123456789ab", "1.0.0", "latest"]
    assert release.release_tags("0123456789ab", "latest") == ["0123456789ab", "latest"]


@pytest.mark.parametrize(
    "bad", ["release/1.0", "1.0.0+local", "sha256:abc", "a,b", "-x", ".x", "x" * 129, "v 1"]
)
def test_bad_tags_are_rejected_by_name(bad: str) -> None:
    with pytest.raises(ValueError, match=re.escape(f"invalid template tag {bad!r}")):
        release.release_tags("0123456789ab", bad)
    with pytest.raises(ValueError, match=re.escape(f"invalid template tag {bad!r}")):
        release.release_tags(bad, None)


def test_empty_tag_is_rejected() -> None:
    with pytest.raises(ValueError, match="invalid template tag ''"):
        release.validate_tag("")


def test_bad_tags_are_rejected_when_planning(
    config: ProjectConfig, templates: dict[str, Path]
) -> None:
    with pytest.raises(ValueError, match="invalid template tag 'a,b'"):
        publish.plan_publish(config, templates, ["a,b"])
    with pytest.raises(ValueError, match="invalid template tag"):
        publish.template_uri(config, "first", "sha256:short")


def test_missing_template_says_compile_first(config: ProjectConfig, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"no compiled template for 'training'.*compile it first"):
        publish.plan_publish(config, {"training": tmp_path / "training.yaml"}, ["latest"])


def test_package_name_needs_a_compiled_pipeline(tmp_path: Path) -> None:
    path = tmp_path / "notes.yaml"
    path.write_text("just: notes\n")
    with pytest.raises(ValueError, match=r"notes.yaml: not a compiled pipeline"):
        publish.package_name(path)
    with pytest.raises(ValueError, match="cannot read the compiled pipeline"):
        publish.package_name(tmp_path / "absent.yaml")


def test_parse_upload_answer_rejects_garbage() -> None:
    with pytest.raises(CloudError, match="unexpected answer"):
        publish.parse_upload_answer({"name": "x"})


# Git helpers, on real repositories.


@pytest.fixture
def git_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Isolate git from the user's configuration; name a committer."""
    empty = tmp_path / "gitconfig"
    empty.write_text("")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(empty))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    for key, value in {"NAME": "Test", "EMAIL": "test@example.com"}.items():
        monkeypatch.setenv(f"GIT_AUTHOR_{key}", value)
        monkeypatch.setenv(f"GIT_COMMITTER_{key}", value)


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, check=True, capture_output=True, text=True
    ).stdout.strip()


@pytest.fixture
def repo(tmp_path: Path, git_env: None) -> Path:
    path = tmp_path / "project"
    path.mkdir()
    git(path, "init", "-q")
    (path / "README.md").write_text("hello\n")
    git(path, "add", "README.md")
    git(path, "commit", "-q", "-m", "first")
    return path


def test_git_commit_and_no_tag(repo: Path) -> None:
    commit = release.git_commit(repo)
    assert len(commit) == 12
    assert git(repo, "rev-parse", "HEAD").startswith(commit)
    assert release.version_tag(repo) is None


def test_version_tag_when_head_is_tagged(repo: Path) -> None:
    git(repo, "tag", "-a", "v1.2.0", "-m", "release")
    assert release.version_tag(repo) == "v1.2.0"
    assert release.release_tags(release.git_commit(repo), release.version_tag(repo))[1:] == [
        "v1.2.0",
        "latest",
    ]
    (repo / "README.md").write_text("changed\n")
    git(repo, "commit", "-q", "-am", "after the release")
    assert release.version_tag(repo) is None  # tags on older commits do not count


def test_lightweight_tag_counts(repo: Path) -> None:
    git(repo, "tag", "1.0.0")
    assert release.version_tag(repo) == "1.0.0"


def test_not_a_git_repository(tmp_path: Path, git_env: None) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    with pytest.raises(release.GitError, match=f"{plain} is not a git repository"):
        release.git_commit(plain)
    with pytest.raises(release.GitError, match="is not a git repository"):
        release.version_tag(plain)


def test_repository_without_commit(tmp_path: Path, git_env: None) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    git(empty, "init", "-q")
    with pytest.raises(release.GitError, match=f"{empty}: cannot read the HEAD commit"):
        release.git_commit(empty)
