"""Build and push the components base image: ``invoke build --env ENV``.

The image is built from the project root after ``pip wheel . --wheel-dir build/wheels``, with
``components/Dockerfile``, on Cloud Build (default) or with the local Docker engine. The plan is
data (``plan_build``): ``execute(steps, dry_run=True)`` shows it, ``execute(steps)``
runs it and ``record_build`` writes ``build/images/<env>.json``, which ``read_image`` reads.

The context goes to Cloud Storage as a raw media upload; the build's long-running operation is
polled by a repeating step until it is done.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import re
import shutil
import sys
import tarfile
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote

from vertexkit.project.config import ProjectConfig
from vertexkit.steps import (
    CloudError,
    CommandStep,
    HttpStep,
    Responses,
    Step,
    endpoint,
    placeholder,
    substitute,
)

DOCKERFILE = "components/Dockerfile"
WHEELS_DIR = "build/wheels"
CONTEXT_FILE = "build/context.tar.gz"
IMAGES_DIR = Path("build") / "images"
DOCKER_BUILDER = "gcr.io/cloud-builders/docker"
OCTET_STREAM = "application/octet-stream"
POLL_SECONDS = 5.0
MAX_POLLS = 360  # 30 minutes: Cloud Build's default timeout (10 min) plus time in the queue

CLEAN, WHEELS, PACK = "remove old wheels", "build wheels", "pack build context"
UPLOAD, START, WAIT = "upload build context", "start cloud build", "wait for cloud build"
DOCKER_BUILD, DOCKER_PUSH, DIGEST = "docker build", "docker push", "read image digest"

_TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")


class BuildError(CloudError):
    """The image cannot be built, or no build was recorded; the message says what to do."""


def image_name(config: ProjectConfig, package: str, commit: str) -> str:
    """``{region}-docker.pkg.dev/{project}/{repository}/{package}-base:{commit}``."""
    if not _TAG_RE.match(commit):
        raise ValueError(f"{commit!r} is not a valid image tag (letters, digits, _ . -; <= 128)")
    gcp = config.gcp
    repository = f"{gcp.region}-docker.pkg.dev/{gcp.project_id}/{config.names.docker_repository}"
    return f"{repository}/{package}-base:{commit}"


def package_name(project_dir: str | Path) -> str:
    """The project's component package: the one ``components/<name>/__init__.py``."""
    found = sorted(p.parent.name for p in Path(project_dir).glob("components/*/__init__.py"))
    if len(found) != 1:
        raise BuildError(f"expected one package in components/, found {found or 'none'}")
    return found[0]


def plan_build(
    config: ProjectConfig,
    project_dir: str | Path,
    *,
    git_commit: str,
    local_docker: bool = False,
    package: str | None = None,
    service_account: str | None = None,
    poll_seconds: float = POLL_SECONDS,
    max_polls: int = MAX_POLLS,
) -> list[Step]:
    """The steps that build and push the base image, tagged with ``git_commit``.

    ``package`` defaults to the one package in ``components/``; ``service_account`` (an email)
    runs Cloud Build as that account instead of the default one.
    """
    root = str(Path(project_dir).resolve())
    image = image_name(config, package or package_name(root), git_commit)
    own = (sys.executable, "-m", "vertexkit.gcp.build")
    steps: list[Step] = [
        CommandStep(CLEAN, (*own, "clean", root), cwd=root),
        CommandStep(
            WHEELS, (sys.executable, "-m", "pip", "wheel", ".", "--wheel-dir", WHEELS_DIR), root
        ),
    ]
    if local_docker:  # BuildKit (needed by RUN --mount) is the default builder since Docker 23.
        return [
            *steps,
            CommandStep(
                DOCKER_BUILD, ("docker", "build", "-f", DOCKERFILE, "-t", image, "."), root
            ),
            CommandStep(DOCKER_PUSH, ("docker", "push", image), root),
            _digest_step(image, root),
        ]
    gcp, bucket = config.gcp, config.names.bucket
    storage = endpoint("storage", gcp.region, config.endpoints)
    cloudbuild = endpoint("cloudbuild", gcp.region, config.endpoints)
    context, obj = str(Path(root) / CONTEXT_FILE), f"builds/{git_commit}/context.tar.gz"
    generation = placeholder(UPLOAD, "generation")
    operation = placeholder(START, "operation name")
    body: dict[str, Any] = {
        "source": {"storageSource": {"bucket": bucket, "object": obj, "generation": generation}},
        "steps": [
            {
                "name": DOCKER_BUILDER,
                "args": ["build", "-f", DOCKERFILE, "-t", image, "."],
                "env": ["DOCKER_BUILDKIT=1"],  # RUN --mount needs BuildKit
            }
        ],
        "images": [image],
        "tags": ["vertexkit", config.environment],
        "options": {"logging": "CLOUD_LOGGING_ONLY"},
    }
    if service_account:
        body["serviceAccount"] = f"projects/{gcp.project_id}/serviceAccounts/{service_account}"

    def fill_generation(step: HttpStep, responses: Responses) -> HttpStep:
        value = str(responses[UPLOAD]["generation"])
        return step.with_body(substitute(step.body, {generation: value}))

    url = f"{storage}/upload/storage/v1/b/{bucket}/o?uploadType=media&name={quote(obj, safe='')}"
    wait = f"{cloudbuild}/v1/{operation}"
    return [
        *steps,
        CommandStep(PACK, (*own, "pack", root, context), cwd=root),
        HttpStep(UPLOAD, "POST", url, upload=context, content_type=OCTET_STREAM),
        HttpStep(
            START,
            "POST",
            f"{cloudbuild}/v1/projects/{gcp.project_id}/locations/{gcp.region}/builds",
            body,
            resolve=fill_generation,
        ),
        HttpStep(
            WAIT,
            "GET",
            wait,
            repeat="until done",
            repeat_until=lambda answer: bool((answer or {}).get("done")),
            poll_seconds=poll_seconds,
            max_polls=max(max_polls, 1),
            resolve=lambda step, responses: replace(
                step, url=wait.replace(operation, responses[START]["name"]), resolve=None
            ),
            extract=lambda operation: _finished(operation, max_polls),
        ),
    ]


def _digest_step(image: str, root: str) -> CommandStep:
    """``docker inspect`` the pushed image; the answer names the image and its digest."""
    return CommandStep(
        DIGEST,
        ("docker", "inspect", "--format", "{{index .RepoDigests 0}}", image),
        root,
        extract=lambda output: {"image": image, "reference": output.strip()},
    )


def _finished(operation: dict[str, Any], polls: int) -> dict[str, Any]:
    """The finished build's operation; fail naming the build and its logs."""
    build = operation.get("metadata", {}).get("build", {})
    if not operation.get("done"):
        raise BuildError(
            f"Cloud Build build {build.get('id', '?')} still running after {polls} checks; "
            f"follow it at {build.get('logUrl', 'the Cloud Build console')}"
        )
    return _succeeded(operation)


def _succeeded(operation: dict[str, Any]) -> dict[str, Any]:
    build = operation.get("response") or operation.get("metadata", {}).get("build", {})
    status = build.get("status", "UNKNOWN")
    if operation.get("error") or status != "SUCCESS":
        detail = (
            build.get("failureInfo", {}).get("detail")
            or build.get("statusDetail")
            or operation.get("error", {}).get("message", "")
        )
        raise BuildError(
            f"Cloud Build build {build.get('id', '?')} ended {status}: {detail}; "
            f"logs: {build.get('logUrl', 'see the Cloud Build console')}"
        )
    return operation


def record_build(project_dir: str | Path, env: str, responses: Responses) -> str:
    """Write ``build/images/<env>.json`` from the applied steps; return ``repo@sha256:...``."""
    if WAIT in responses:
        backend = "cloudbuild"
        images = responses[WAIT]["response"].get("results", {}).get("images") or [{}]
        image, digest = images[0].get("name", ""), images[0].get("digest", "")
        repository = image.rsplit(":", 1)[0]
    elif DIGEST in responses:
        backend, image = "docker", responses[DIGEST]["image"]
        repository, _, digest = responses[DIGEST]["reference"].partition("@")
        if image.rsplit(":", 1)[0] != repository:
            raise BuildError(f"docker reports a digest for {repository!r}, not for {image!r}")
    else:
        raise BuildError(f"no build result among the responses ({', '.join(responses)})")
    if not image or not _DIGEST_RE.match(digest):
        raise BuildError(f"the build reported no image digest (image {image!r}, {digest!r})")
    reference = f"{repository}@{digest}"
    record = {
        "image": image,
        "digest": digest,
        "reference": reference,
        "built_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "backend": backend,
    }
    target = Path(project_dir) / IMAGES_DIR / f"{env}.json"
    _write_atomically(target, lambda f: f.write((json.dumps(record, indent=2) + "\n").encode()))
    return reference


def read_image(project_dir: str | Path, env: str) -> str:
    """The image reference (``repo@sha256:...``) last built for ``env``."""
    path = Path(project_dir) / IMAGES_DIR / f"{env}.json"
    if not path.is_file():
        raise BuildError(
            f"no image built for environment {env!r}: run `invoke build --env {env}` first"
        )
    try:
        return str(json.loads(path.read_text(encoding="utf-8"))["reference"])
    except (ValueError, KeyError, TypeError):
        raise BuildError(
            f"{path}: unreadable build record: run `invoke build --env {env}`"
        ) from None


def context_files(project_dir: str | Path) -> list[str]:
    """What Docker sees of the project (``.dockerignore`` admits only build/wheels)."""
    root = Path(project_dir)
    if not (root / DOCKERFILE).is_file():
        raise BuildError(f"{DOCKERFILE} not found in {root}")
    wheels = sorted(p for p in (root / WHEELS_DIR).rglob("*") if p.is_file())
    if not any(p.suffix == ".whl" for p in wheels):
        raise BuildError(f"no wheels in {WHEELS_DIR}: run `pip wheel . --wheel-dir {WHEELS_DIR}`")
    extra = [name for name in (".dockerignore", DOCKERFILE) if (root / name).is_file()]
    return sorted({p.relative_to(root).as_posix() for p in wheels} | set(extra))


def pack_context(project_dir: str | Path, out: str | Path) -> Path:
    """Write the build context as a reproducible ``tar.gz`` (fixed times and owners)."""
    root, out = Path(project_dir), Path(out)
    files = context_files(root)
    folders = sorted({str(parent) for f in files for parent in Path(f).parents} - {"."})

    def normalise(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
        info.mode = 0o755 if info.isdir() else 0o644
        return info

    def write(raw: IO[bytes]) -> None:
        with (
            gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as zipped,
            tarfile.open(fileobj=zipped, mode="w", format=tarfile.PAX_FORMAT) as tar,
        ):
            for name in [*folders, *files]:
                tar.add(root / name, arcname=name, recursive=False, filter=normalise)

    _write_atomically(out, write)
    return out


def _write_atomically(target: Path, write: Callable[[IO[bytes]], object]) -> None:
    """Write through a temporary file in the same folder, then rename it over ``target``."""
    target.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=target.parent, suffix=".tmp")
    try:
        with os.fdopen(descriptor, "wb") as handle:
            write(handle)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m vertexkit.gcp.build pack PROJECT OUT`` | ``clean PROJECT``: the local steps."""
    parser = argparse.ArgumentParser(prog="python -m vertexkit.gcp.build")
    commands = parser.add_subparsers(dest="command", required=True)
    pack = commands.add_parser("pack", help="pack the Docker build context into a tar.gz")
    pack.add_argument("project_dir")
    pack.add_argument("out")
    clean = commands.add_parser("clean", help=f"remove {WHEELS_DIR} (stale wheels)")
    clean.add_argument("project_dir")
    args = parser.parse_args(argv)
    try:
        if args.command == "pack":
            print(pack_context(args.project_dir, args.out))
        else:
            shutil.rmtree(Path(args.project_dir) / WHEELS_DIR, ignore_errors=True)
    except BuildError as exc:
        sys.exit(f"error: {exc}")


if __name__ == "__main__":
    main()
