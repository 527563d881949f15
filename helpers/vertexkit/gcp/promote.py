"""Promotion: what one environment ran, released to the next, without rebuilding anything.

``invoke promote --from dev --to prod`` plans, for the release being promoted (the commit HEAD is
on, or ``--version``):

1. check that the source environment published a template of every pipeline from that commit
   (through its orchestrator: the template that it ran);
2. read the digest of the base image the source built from that commit (the Artifact Registry
   tag ``<commit>`` of ``<package>-base``) and, with a Cloud Run submission service, of the
   service image (``<naming_prefix>-submit``, one image for every environment);
3. copy those images, by digest, into the target's Docker repository with ``gcrane`` on Cloud
   Build (one build, a step per image), as the target's builder account (skipped when both use
   the same repository). The digests do not change: the target runs the very bytes the source ran;
4. record them as the target's images (``build/images/<target>.json``, the service image under
   ``service`` as ``invoke build`` writes it) and compile every pipeline from the same commit for
   the target (its parameter values, caching and machines), with the base image by digest;
5. publish the templates to the target, tagged with the same commit and version tag.

``invoke promote`` then updates the target's schedules, as ``invoke schedule`` does. A Cloud Run
submission service gets the promoted image after publishing; a Cloud Function after
``invoke provision --env <target>`` (docs/service.md).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote

from vertexkit.gcp import build
from vertexkit.gcp.deploy import plan_compile, plan_publish
from vertexkit.gcp.provision import confirmation
from vertexkit.local import pipelines as compiling
from vertexkit.orchestrators import for_config
from vertexkit.project.config import ProjectConfig
from vertexkit.project.release import Release, validate_tag
from vertexkit.steps import (
    CloudError,
    HttpStep,
    LocalStep,
    Responses,
    Step,
    endpoint,
    placeholder,
    substitute,
)

# gcrane keeps the manifest and so the digest (Artifact Registry's documented way to copy
# images between repositories); a released version, not :latest.
GCRANE_IMAGE = "gcr.io/go-containerregistry/gcrane:v0.21.9"
POLL_SECONDS = 10.0
MAX_POLLS = 360  # an hour


class PromotionError(ValueError):
    """The promotion cannot be planned as asked; the message says why and what to do."""


def _image_tag_url(config: ProjectConfig, image: str) -> str:
    """The Artifact Registry tag of ``image`` (``.../<package>:<tag>`` in ``config``'s Docker
    repository)."""
    gcp = config.gcp
    base = endpoint("artifactregistry", gcp.region, config.endpoints)
    repository = (
        f"projects/{gcp.project_id}/locations/{gcp.region}/repositories/"
        f"{config.names.docker_repository}"
    )
    package, _, tag = image.rsplit("/", 1)[1].partition(":")
    return f"{base}/v1/{repository}/packages/{quote(package, safe='')}/tags/{tag}"


def _digest_of(answer: Any, image: str) -> str:
    """``sha256:...`` from an Artifact Registry tag (``version`` ends ``/versions/sha256:...``)."""
    version = str(answer.get("version", "")) if isinstance(answer, dict) else ""
    digest = version.rsplit("/", 1)[-1]
    if not digest.startswith("sha256:") or len(digest) != 71:
        raise CloudError(f"Artifact Registry gave no digest for {image} (answer {answer!r})")
    return digest


def plan_promote(
    project_dir: Path,
    source: ProjectConfig,
    target: ProjectConfig,
    release: Release,
    *,
    yes: bool,
    poll_seconds: float = POLL_SECONDS,
) -> list[Step]:
    """The steps that promote ``release`` from ``source``'s environment to ``target``'s."""
    if source.environment == target.environment:
        raise PromotionError(
            f"--from and --to are both {source.environment!r}: promote to another environment"
        )
    package = build.package_name(project_dir)
    pipelines = compiling.load_sized_pipelines(project_dir, target)
    names = list(pipelines)
    commit = validate_tag(release.commit)
    # (source image, target image, the step that finds the source's digest), base image first.
    images = [
        (
            build.image_name(source, package, commit),
            build.image_name(target, package, commit),
            f"find image in {source.environment}",
        )
    ]
    if build.builds_service(target):
        images.append(
            (
                build.service_image_name(source, commit),
                build.service_image_name(target, commit),
                f"find service image in {source.environment}",
            )
        )
    target_image = images[0][1]
    what = f"promote {commit} from {source.environment} to {target.environment}"

    steps: list[Step] = [
        confirmation(
            f"publish commit {commit} in {target.environment} ({target.gcp.project_id})?",
            yes,
            what=what,
        )
    ]
    orchestrator = for_config(source)
    for name, pipeline in pipelines.items():
        steps += orchestrator.plan_find_published(name, release, template_name=pipeline.name)
    for source_image, _, find_image in images:
        steps.append(
            HttpStep(
                find_image,
                "GET",
                _image_tag_url(source, source_image),
                ok_statuses=(200, 404),
                expect_json=True,
                extract=lambda answer, image=source_image: _digest_of_built(
                    answer, image, source.environment
                ),
            )
        )
    copies = [
        (source_image.rsplit(":", 1)[0], copy, find)
        for source_image, copy, find in images
        if source_image.rsplit(":", 1)[0] != copy.rsplit(":", 1)[0]
    ]
    if copies:
        steps += _plan_copy(copies, target, poll_seconds)
    shown = ", ".join(
        f"{image.rsplit(':', 1)[0]}@{placeholder(find, 'digest')}" for _, image, find in images
    )
    service = images[1] if len(images) > 1 else None
    steps.append(
        LocalStep(
            "record image",
            f"write build/images/{target.environment}.json: {shown}, promoted from "
            f"{source.environment}",
            lambda responses: record_promoted(
                project_dir,
                target.environment,
                image=target_image,
                digest=str(responses[images[0][2]]["digest"]),
                source=source.environment,
                service=(service[1], str(responses[service[2]]["digest"])) if service else None,
            ),
        )
    )
    steps.append(plan_compile(project_dir, target, names))
    steps += plan_publish(project_dir, target, release, names, compiled_earlier=False)
    return steps


def _digest_of_built(answer: Any, image: str, env: str) -> dict[str, str]:
    if not isinstance(answer, dict) or "error" in answer or not answer.get("version"):
        raise CloudError(
            f"no image {image} in {env}: the commit was not built there; run the main branch's "
            f"pipeline (or `invoke deploy --env {env}`) on this commit first, or promote a "
            "commit that was",
            status=404,
        )
    return {"digest": _digest_of(answer, image)}


def _plan_copy(
    copies: list[tuple[str, str, str]], target: ProjectConfig, poll_seconds: float
) -> list[Step]:
    """Cloud Build in the target's project copies each image by digest with gcrane: ``copies``
    holds (source repository, target image, the step that found the source's digest)."""
    gcp = target.gcp
    cloudbuild = endpoint("cloudbuild", gcp.region, target.endpoints)
    body: dict[str, Any] = {
        "steps": [
            {
                "name": GCRANE_IMAGE,
                "args": ["cp", f"{repository}@{placeholder(find, 'digest')}", image],
            }
            for repository, image, find in copies
        ],
        "tags": ["vertexkit", "promote", target.environment],
        "options": {"logging": "CLOUD_LOGGING_ONLY"},
        "serviceAccount": (
            f"projects/{gcp.project_id}/serviceAccounts/{target.names.build_service_account}"
        ),
    }
    start, wait = "start image copy", "wait for image copy"
    operation = placeholder(start, "operation name")
    wait_url = f"{cloudbuild}/v1/{operation}"

    def with_digest(step: HttpStep, responses: Responses) -> HttpStep:
        values = {
            placeholder(find, "digest"): str(responses[find]["digest"]) for _, _, find in copies
        }
        return replace(step.with_body(substitute(step.body, values)), resolve=None)

    return [
        HttpStep(
            start,
            "POST",
            f"{cloudbuild}/v1/projects/{gcp.project_id}/locations/{gcp.region}/builds",
            body,
            resolve=with_digest,
        ),
        HttpStep(
            wait,
            "GET",
            wait_url,
            repeat="until done",
            repeat_until=lambda answer: bool((answer or {}).get("done")),
            poll_seconds=poll_seconds,
            max_polls=MAX_POLLS,
            resolve=lambda step, responses: replace(
                step, url=wait_url.replace(operation, responses[start]["name"]), resolve=None
            ),
            extract=_copied,
        ),
    ]


def _copied(operation: Mapping[str, Any]) -> Mapping[str, Any]:
    build_info = operation.get("response") or operation.get("metadata", {}).get("build", {})
    status = build_info.get("status", "UNKNOWN")
    if not operation.get("done") or operation.get("error") or status != "SUCCESS":
        detail = build_info.get("statusDetail") or operation.get("error", {}).get("message", "")
        raise CloudError(
            f"copying the image ended {status}: {detail}; logs: "
            f"{build_info.get('logUrl', 'see the Cloud Build console')}"
        )
    return operation


def record_promoted(
    project_dir: Path,
    env: str,
    *,
    image: str,
    digest: str,
    source: str,
    service: tuple[str, str] | None = None,
) -> str:
    """Write ``build/images/<env>.json`` for a promoted image (and ``service``: the service
    image and its digest), as a build would."""
    repository = image.rsplit(":", 1)[0]
    reference = f"{repository}@{digest}"
    record: dict[str, Any] = {
        "image": image,
        "digest": digest,
        "reference": reference,
        "built_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "backend": f"promoted from {source}",
    }
    if service:
        service_image, service_digest = service
        record["service"] = {
            "image": service_image,
            "digest": service_digest,
            "reference": f"{service_image.rsplit(':', 1)[0]}@{service_digest}",
        }
    target = Path(project_dir) / build.IMAGES_DIR / f"{env}.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return reference
