"""Publish compiled pipeline templates to the environment's Artifact Registry KFP repository.

The protocol is the one ``kfp.registry.RegistryClient.upload_pipeline`` speaks: a multipart POST
of the YAML (file field ``content``) to ``https://{region}-kfp.pkg.dev/{project}/{repository}``
with a form field ``tags`` (comma-separated). The registry names the package after the
template's ``pipelineInfo.name`` and answers ``<package>/sha256:<digest>`` as plain text.
Vertex AI then runs a template from ``.../{repository}/{package}/{tag or sha256:digest}``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

import yaml

from vertexkit.project.config import ProjectConfig
from vertexkit.project.release import validate_tag
from vertexkit.steps import DEFAULT_ENDPOINTS, CloudError, HttpStep, endpoint

SERVICE = "kfp_registry"
VERSION_PREFIX = "sha256:"
VERSION_RE = re.compile(r"^sha256:[0-9a-f]{64}$")


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
    base = endpoint(SERVICE, config.gcp.region, config.endpoints)
    return f"{base}/{config.gcp.project_id}/{config.names.kfp_repository}"


def plan_publish(
    config: ProjectConfig,
    templates: Mapping[str, Path],
    tags: list[str],
    *,
    compiled_earlier: bool = True,
) -> list[HttpStep]:
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
        HttpStep(f"publish {name}", "POST", url, upload=str(path), form=form)
        for name, path in templates.items()
    ]


def plan_find_tag(config: ProjectConfig, pipeline_package: str, tag: str, advice: str) -> HttpStep:
    """Read tag ``tag`` of a template package (Artifact Registry API); fail with ``advice`` when
    the package or the tag does not exist."""
    validate_tag(tag)
    gcp = config.gcp
    base = endpoint("artifactregistry", gcp.region, config.endpoints)
    repository = (
        f"projects/{gcp.project_id}/locations/{gcp.region}/repositories/"
        f"{config.names.kfp_repository}"
    )
    url = f"{base}/v1/{repository}/packages/{quote(pipeline_package, safe='')}/tags/{tag}"

    def found(answer: Any) -> Any:
        if not isinstance(answer, dict) or not answer.get("version"):
            raise CloudError(
                f"no template {pipeline_package}:{tag} in {repository}: {advice}", status=404
            )
        return answer

    return HttpStep(
        f"find template {pipeline_package}",
        "GET",
        url,
        ok_statuses=(200, 404),
        expect_json=True,
        extract=found,
    )


def parse_upload_answer(answer: Any) -> tuple[str, str]:
    """Package name and version (``sha256:...``) from the registry's ``<package>/<version>``."""
    package, _, version = str(answer or "").strip().partition("/")
    if not package or not version.startswith(VERSION_PREFIX):
        raise CloudError(f"unexpected answer from the KFP registry: {answer!r}")
    return package, version


def template_uri(config: ProjectConfig, pipeline_package: str, tag: str) -> str:
    """The ``PipelineJob.templateUri`` of a published template, by tag or ``sha256:`` version.

    Always the public ``{region}-kfp.pkg.dev`` form: Vertex AI reads the URI itself and only
    recognises Artifact Registry templates there, whatever endpoint this machine uploads to.
    """
    if not VERSION_RE.match(tag):
        validate_tag(tag)
    base = DEFAULT_ENDPOINTS[SERVICE].format(region=config.gcp.region)
    repository = f"{config.gcp.project_id}/{config.names.kfp_repository}"
    return f"{base}/{repository}/{pipeline_package}/{tag}"
