"""Publish compiled pipeline templates to the environment's Artifact Registry KFP repository.

The protocol is the one ``kfp.registry.RegistryClient.upload_pipeline`` speaks: a multipart POST
of the YAML (file field ``content``) to ``https://{region}-kfp.pkg.dev/{project}/{repository}``
with a form field ``tags`` (comma-separated). The registry names the package after the
template's ``pipelineInfo.name`` and answers ``<package>/sha256:<digest>`` as plain text.
Vertex AI then runs a template from ``.../{repository}/{package}/{tag or sha256:digest}``.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from vertexkit.project.config import ProjectConfig
from vertexkit.steps import http as rest

SERVICE = "kfp_registry"
LATEST = "latest"
VERSION_PREFIX = "sha256:"
# Conservative: letters, digits, '.', '_' and '-', at most 128 characters, not starting with
# '.' or '-'. That is safe in a URL path segment and in the comma-separated ``tags`` field, and
# cannot be mistaken for a version (kfp rejects tags starting with "sha256:").
TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")
VERSION_RE = re.compile(r"^sha256:[0-9a-f]{64}$")


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


def package_name(template_path: str | Path) -> str:
    """The registry package of a compiled template: its ``pipelineInfo.name``."""
    path = Path(template_path)
    try:
        spec = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ValueError(f"{path}: cannot read the compiled pipeline: {exc}") from None
    name = (spec.get("pipelineInfo") or {}).get("name") if isinstance(spec, dict) else None
    if not isinstance(name, str) or not name:
        raise ValueError(f"{path}: not a compiled pipeline (no pipelineInfo.name)")
    return name


def repository_url(config: ProjectConfig) -> str:
    """Where templates are uploaded (redirectable with VERTEXKIT_ENDPOINT_KFP_REGISTRY)."""
    base = rest.endpoint(SERVICE, config.gcp.region, config.endpoints)
    return f"{base}/{config.gcp.project_id}/{config.names.kfp_repository}"


def plan_publish(
    config: ProjectConfig,
    templates: Mapping[str, Path],
    tags: list[str],
    *,
    compiled_earlier: bool = True,
) -> list[rest.HttpStep]:
    """One upload step per compiled template (``templates``: pipeline name -> YAML path).

    ``compiled_earlier=False`` is for plans that compile first (deploy): the files are then
    checked when the upload is sent, not when it is planned.
    """
    form = {"tags": ",".join(validate_tag(tag) for tag in tags)}
    url = repository_url(config)
    for name, path in templates.items():
        if compiled_earlier and not Path(path).is_file():
            raise ValueError(f"no compiled template for {name!r} at {path}: compile it first")
    return [
        rest.HttpStep(f"publish {name}", "POST", url, upload=str(path), form=form)
        for name, path in templates.items()
    ]


def parse_upload_answer(answer: Any) -> tuple[str, str]:
    """Package name and version (``sha256:...``) from the registry's ``<package>/<version>``."""
    package, _, version = str(answer or "").strip().partition("/")
    if not package or not version.startswith(VERSION_PREFIX):
        raise rest.CloudError(f"unexpected answer from the KFP registry: {answer!r}")
    return package, version


def template_uri(config: ProjectConfig, pipeline_package: str, tag: str) -> str:
    """The ``PipelineJob.templateUri`` of a published template, by tag or ``sha256:`` version.

    Always the public ``{region}-kfp.pkg.dev`` form: Vertex AI reads the URI itself and only
    recognises Artifact Registry templates there, whatever endpoint this machine uploads to.
    """
    if not VERSION_RE.match(tag):
        validate_tag(tag)
    base = rest.DEFAULT_ENDPOINTS[SERVICE].format(region=config.gcp.region)
    repository = f"{config.gcp.project_id}/{config.names.kfp_repository}"
    return f"{base}/{repository}/{pipeline_package}/{tag}"


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
