"""Build and push the components base image: ``invoke build --env ENV``.

The image is built from the project root with ``components/Dockerfile``, on Cloud Build (default)
or with the local Docker engine, from wheels of exactly the versions in ``uv.lock``: ``uv export``
lists them with their hashes, ``python -m vertexkit.gcp.build wheels`` downloads (hash-checked) or
builds them into ``build/wheels`` with the project's own wheel, and lists what the image installs.
The plan is data (``plan_build``): ``execute(steps, dry_run=True)`` shows it,
``execute(steps)`` runs it and ``record_build`` writes ``build/images/<env>.json``, which
``read_image`` reads.

The context goes to Cloud Storage as a raw media upload; the build's long-running operation is
polled by a repeating step until it is done.

With ``service.kind: cloud-run`` the same plan also builds the submission service's image
(``services/submission/Dockerfile``, from the same wheels) beside the base image: first the
pipelines are compiled for every environment in ``config/`` into
``build/service/pipelines/<env>/`` (the parameters the service checks requests against; the image
binding does not change them), then both images are built and pushed, and
``build/images/<env>.json`` records the service image under ``service``. The service image is the
same for every environment (``VERTEXKIT_ENV``, set where it is deployed, picks its pipelines), so
``invoke promote`` copies it by digest like the base image.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote

from vertexkit.project.config import ProjectConfig, environments, load_config
from vertexkit.steps import (
    CloudError,
    CommandStep,
    HttpStep,
    LocalStep,
    Responses,
    Step,
    endpoint,
    placeholder,
    substitute,
)

DOCKERFILE = "components/Dockerfile"
SERVICE_DOCKERFILE = "services/submission/Dockerfile"
# BuildKit reads <Dockerfile>.dockerignore beside a Dockerfile before the root .dockerignore.
SERVICE_DOCKERIGNORE = f"{SERVICE_DOCKERFILE}.dockerignore"
SERVICE_PIPELINES = "build/service/pipelines"
UV_LOCK = "uv.lock"
WHEELS_DIR = "build/wheels"
LOCKED_REQUIREMENTS = "build/locked-requirements.txt"  # `uv export` of uv.lock, with hashes
IMAGE_REQUIREMENTS = f"{WHEELS_DIR}/requirements.txt"  # what the image installs
EXPORT_ARGS = (
    "export",
    "--locked",
    "--no-dev",
    "--no-emit-project",
    "--no-editable",
    "--format",
    "requirements-txt",
    "--quiet",
    "--output-file",
    LOCKED_REQUIREMENTS,
)
CONTEXT_FILE = "build/context.tar.gz"
IMAGES_DIR = Path("build") / "images"
DOCKER_BUILDER = "gcr.io/cloud-builders/docker"
OCTET_STREAM = "application/octet-stream"
POLL_SECONDS = 5.0
MAX_POLLS = 360  # 30 minutes: Cloud Build's default timeout (10 min) plus time in the queue

CLEAN, EXPORT = "remove old wheels", "export locked requirements"
WHEELS, PACK = "build wheels", "pack build context"
UPLOAD, START, WAIT = "upload build context", "start cloud build", "wait for cloud build"
DOCKER_BUILD, DOCKER_PUSH, DIGEST = "docker build", "docker push", "read image digest"
SERVICE_COMPILE = "compile pipelines for the service"
SERVICE_BUILD, SERVICE_PUSH = "docker build service", "docker push service"
SERVICE_DIGEST = "read service image digest"

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


def service_image_name(config: ProjectConfig, commit: str) -> str:
    """``{region}-docker.pkg.dev/{project}/{repository}/{naming_prefix}-submit:{commit}``."""
    base = image_name(config, "x", commit).rsplit("/", 1)[0]
    return f"{base}/{config.naming_prefix}-submit:{commit}"


def builds_service(config: ProjectConfig) -> bool:
    """Whether ``invoke build`` builds the submission service's image too (Cloud Run)."""
    return config.service.kind == "cloud-run"


def _service_build_args(commit: str) -> tuple[str, ...]:
    # The image bakes the commit (VERTEXKIT_RELEASE_COMMIT), not an environment: the deploy sets
    # VERTEXKIT_ENV, so one image serves every environment and promotion copies it.
    return ("--build-arg", f"GIT_COMMIT={commit}")


def compile_for_service(project_dir: str | Path, config: ProjectConfig) -> list[Path]:
    """Compile every pipeline for every environment in ``config/`` into
    ``build/service/pipelines/<env>/``, each with the record (``compiled.json``) the service
    reads; ``config`` is the build's environment (its overlay and variables as given)."""
    folder = Path(project_dir) / SERVICE_PIPELINES
    shutil.rmtree(folder, ignore_errors=True)
    written = []
    for env in environments(project_dir):
        each = config if env == config.environment else load_config(project_dir, env)
        written += compile_service_pipelines(project_dir, each, folder / env)
    return written


def compile_service_pipelines(
    project_dir: str | Path, config: ProjectConfig, folder: str | Path
) -> list[Path]:
    """Compile every pipeline for ``config``'s environment into ``folder`` with the record
    (``compiled.json``) the service reads."""
    from vertexkit.local import pipelines as compiling

    folder = Path(folder)
    shutil.rmtree(folder, ignore_errors=True)
    written = compiling.compile_pipelines(project_dir, config, output_dir=folder)
    record = {
        path.stem: {"environment": config.environment, "file": _file_digest(path)}
        for path in written
    }
    (folder / "compiled.json").write_text(
        json.dumps(record, indent=2, sort_keys=True) + "\n", encoding="utf-8"
    )
    return written


def _file_digest(path: Path) -> str:
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


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
    require_lock(root)
    own = (sys.executable, "-m", "vertexkit.gcp.build")
    steps: list[Step] = [
        CommandStep(CLEAN, (*own, "clean", root), cwd=root),
        CommandStep(EXPORT, (uv_executable(), *EXPORT_ARGS), root),
        CommandStep(WHEELS, (*own, "wheels", root), root),
    ]
    service = service_image_name(config, git_commit) if builds_service(config) else None
    if service:
        steps.append(
            LocalStep(
                SERVICE_COMPILE,
                f"compile every pipeline for each environment into {SERVICE_PIPELINES}/ENV "
                "(what the service checks parameters against)",
                lambda _: compile_for_service(root, config),
            )
        )
    service_args = ("-f", SERVICE_DOCKERFILE, *_service_build_args(git_commit))
    if local_docker:  # BuildKit (needed by RUN --mount) is the default builder since Docker 23.
        steps += [
            CommandStep(
                DOCKER_BUILD, ("docker", "build", "-f", DOCKERFILE, "-t", image, "."), root
            ),
            CommandStep(DOCKER_PUSH, ("docker", "push", image), root),
            _digest_step(image, root),
        ]
        if service:
            steps += [
                CommandStep(
                    SERVICE_BUILD, ("docker", "build", *service_args, "-t", service, "."), root
                ),
                CommandStep(SERVICE_PUSH, ("docker", "push", service), root),
                _digest_step(service, root, SERVICE_DIGEST),
            ]
        return steps
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
            },
            *(
                [
                    {
                        "name": DOCKER_BUILDER,
                        "args": ["build", *service_args, "-t", service, "."],
                        "env": ["DOCKER_BUILDKIT=1"],
                    }
                ]
                if service
                else []
            ),
        ],
        "images": [image, *([service] if service else [])],
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
        CommandStep(
            PACK, (*own, "pack", root, context, *(["--service"] if service else [])), cwd=root
        ),
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


def require_lock(project_dir: str | Path) -> None:
    """The image is built from ``uv.lock``: without one, fail early saying how to make it."""
    if not (Path(project_dir) / UV_LOCK).is_file():
        raise BuildError(
            f"{UV_LOCK} not found in {project_dir}: the base image installs exactly the locked "
            "versions; run `uv lock` (or `uv sync`) and commit uv.lock"
        )


def uv_executable() -> str:
    """``uv`` on PATH, else the binary of the ``uv`` package in this environment."""
    if shutil.which("uv"):
        return "uv"
    try:
        from uv import find_uv_bin

        return str(find_uv_bin())
    except (ImportError, FileNotFoundError):
        raise BuildError(
            "uv not found: the base image is built from uv.lock with `uv export`; install uv "
            "(`pip install uv`, or see https://docs.astral.sh/uv/)"
        ) from None


def split_requirements(text: str) -> tuple[list[str], list[str]]:
    """Split ``uv export`` output into hashed lines (registry files) and direct references.

    Direct references (a git URL, a local path) have no hashes to check; pip builds them.
    """
    hashed, direct = [], []
    for raw in text.replace("\\\n", " ").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("-"):
            raise BuildError(f"unexpected option in the exported requirements: {line!r}")
        (hashed if "--hash=" in line else direct).append(line)
    return hashed, direct


def build_wheels(project_dir: str | Path, python: str = sys.executable) -> Path:
    """Fill ``build/wheels`` from the exported lock; return the image's requirements file.

    Registry packages are downloaded (or built from their sdist) only if their file matches a
    hash in ``uv.lock``; direct references and the project itself are built without their
    dependencies, which the lock lists. The image installs these files and nothing else:
    ``requirements.txt`` pins each to its version and the hash of the file here.
    """
    root = Path(project_dir).resolve()
    exported = root / LOCKED_REQUIREMENTS
    if not exported.is_file():
        raise BuildError(
            f"{LOCKED_REQUIREMENTS} not found: run `uv {shlex.join(EXPORT_ARGS)}` first"
        )
    hashed, direct = split_requirements(exported.read_text(encoding="utf-8"))
    wheels = root / WHEELS_DIR
    pip = [python, "-m", "pip", "--disable-pip-version-check", "wheel", "--no-deps"]
    pip += ["--wheel-dir", str(wheels)]
    with tempfile.TemporaryDirectory() as folder:
        if hashed:
            listed = Path(folder) / "hashed.txt"
            listed.write_text("\n".join(hashed) + "\n", encoding="utf-8")
            _pip([*pip, "--require-hashes", "--requirement", str(listed)], root)
        _pip([*pip, *direct, "."], root)
    lines = []
    for wheel in sorted(wheels.glob("*.whl")):
        name, version = wheel.name.split("-")[:2]
        digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
        lines.append(f"{re.sub(r'[-_.]+', '-', name).lower()}=={version} --hash=sha256:{digest}")
    target = root / IMAGE_REQUIREMENTS
    header = "# The wheels the base image installs (`vertexkit.gcp.build wheels`, from uv.lock).\n"
    target.write_text(header + "\n".join(lines) + "\n", encoding="utf-8")
    return target


def _pip(command: list[str], cwd: Path) -> None:
    print(f"$ {shlex.join(command)}", flush=True)
    if subprocess.run(command, cwd=cwd).returncode != 0:
        raise BuildError(f"`{shlex.join(command)}` failed (its output is above)")


def _digest_step(image: str, root: str, name: str = DIGEST) -> CommandStep:
    """``docker inspect`` the pushed image; the answer names the image and its digest."""
    return CommandStep(
        name,
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
    record: dict[str, Any] = {
        "image": image,
        "digest": digest,
        "reference": reference,
        "built_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "backend": backend,
    }
    if service := _service_result(responses):
        record["service"] = service
    target = Path(project_dir) / IMAGES_DIR / f"{env}.json"
    _write_atomically(target, lambda f: f.write((json.dumps(record, indent=2) + "\n").encode()))
    return reference


def _service_result(responses: Responses) -> dict[str, str] | None:
    """The service image and its digest among the build's answers, if one was built."""
    if SERVICE_DIGEST in responses:
        image = responses[SERVICE_DIGEST]["image"]
        repository, _, digest = responses[SERVICE_DIGEST]["reference"].partition("@")
    elif WAIT in responses:
        images = responses[WAIT]["response"].get("results", {}).get("images") or []
        if len(images) < 2:
            return None
        image, digest = images[1].get("name", ""), images[1].get("digest", "")
        repository = image.rsplit(":", 1)[0]
    else:
        return None
    if not _DIGEST_RE.match(digest) or image.rsplit(":", 1)[0] != repository:
        raise BuildError(f"the build reported no digest for the service image {image!r}")
    return {"image": image, "digest": digest, "reference": f"{repository}@{digest}"}


def read_service_image(project_dir: str | Path, env: str) -> str:
    """The submission service's image reference (``repo@sha256:...``) last built for ``env``."""
    path = Path(project_dir) / IMAGES_DIR / f"{env}.json"
    try:
        return str(json.loads(path.read_text(encoding="utf-8"))["service"]["reference"])
    except (OSError, ValueError, KeyError, TypeError):
        raise BuildError(
            f"no service image built for environment {env!r}: with service.kind cloud-run, "
            f"run `invoke build --env {env}`"
        ) from None


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


def context_files(project_dir: str | Path, *, service: bool = False) -> list[str]:
    """What Docker sees of the project (``.dockerignore`` admits only build/wheels; with
    ``service``, also what the service's Dockerfile copies: config/ and its pipelines)."""
    root = Path(project_dir)
    if not (root / DOCKERFILE).is_file():
        raise BuildError(f"{DOCKERFILE} not found in {root}")
    wheels = sorted(p for p in (root / WHEELS_DIR).rglob("*") if p.is_file())
    if not any(p.suffix == ".whl" for p in wheels) or not (root / IMAGE_REQUIREMENTS).is_file():
        raise BuildError(
            f"no wheels or no {IMAGE_REQUIREMENTS} in {WHEELS_DIR}: run "
            f"`uv {shlex.join(EXPORT_ARGS)}`, then `python -m vertexkit.gcp.build wheels .`"
        )
    extra = [name for name in (".dockerignore", DOCKERFILE) if (root / name).is_file()]
    files = {p.relative_to(root).as_posix() for p in wheels} | set(extra)
    if service:
        for required in (SERVICE_DOCKERFILE, SERVICE_DOCKERIGNORE):
            if not (root / required).is_file():
                raise BuildError(f"{required} not found in {root}: the service image needs it")
        if not list((root / SERVICE_PIPELINES).glob("*/compiled.json")):
            raise BuildError(
                f"{SERVICE_PIPELINES}/ENV/compiled.json not found in {root}: the service image "
                "needs the pipelines compiled for each environment"
            )
        for folder in ("config", SERVICE_PIPELINES):
            files |= {
                p.relative_to(root).as_posix()
                for p in (root / folder).rglob("*")
                if p.is_file() and "__pycache__" not in p.parts
            }
        files |= {SERVICE_DOCKERFILE, SERVICE_DOCKERIGNORE}
    return sorted(files)


def pack_context(project_dir: str | Path, out: str | Path, *, service: bool = False) -> Path:
    """Write the build context as a reproducible ``tar.gz`` (fixed times and owners)."""
    root, out = Path(project_dir), Path(out)
    files = context_files(root, service=service)
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
    """``python -m vertexkit.gcp.build`` ``pack PROJECT OUT`` | ``wheels PROJECT`` |
    ``clean PROJECT``: the local steps of a build."""
    parser = argparse.ArgumentParser(prog="python -m vertexkit.gcp.build")
    commands = parser.add_subparsers(dest="command", required=True)
    pack = commands.add_parser("pack", help="pack the Docker build context into a tar.gz")
    pack.add_argument("project_dir")
    pack.add_argument("out")
    pack.add_argument("--service", action="store_true", help="with the service image's files")
    wheels = commands.add_parser("wheels", help=f"fill {WHEELS_DIR} from {LOCKED_REQUIREMENTS}")
    wheels.add_argument("project_dir")
    clean = commands.add_parser("clean", help=f"remove {WHEELS_DIR} (stale wheels)")
    clean.add_argument("project_dir")
    args = parser.parse_args(argv)
    try:
        if args.command == "pack":
            print(pack_context(args.project_dir, args.out, service=args.service))
        elif args.command == "wheels":
            print(build_wheels(args.project_dir))
        else:
            shutil.rmtree(Path(args.project_dir) / WHEELS_DIR, ignore_errors=True)
    except BuildError as exc:
        sys.exit(f"error: {exc}")


if __name__ == "__main__":
    main()
