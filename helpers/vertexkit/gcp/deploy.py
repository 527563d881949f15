"""The deploy path as plans of steps: build, compile, publish, run (and schedules).

Build is Google Cloud's (Cloud Build or local Docker, pushed to Artifact Registry); publishing,
running and scheduling go through the configured orchestrator, whichever it is.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from vertexkit.gcp import build, service_infra
from vertexkit.local import pipelines as compiling
from vertexkit.orchestrators import for_config
from vertexkit.project.config import ProjectConfig
from vertexkit.project.release import Release
from vertexkit.steps import LocalStep, Step

__all__ = [
    "Release",
    "check_compiled_for",
    "plan_build",
    "plan_compile",
    "plan_deploy",
    "plan_publish",
    "plan_run",
    "plan_schedule",
    "record_compiled",
    "templates",
]


def templates(project_dir: Path, names: list[str]) -> dict[str, Path]:
    return {name: project_dir / compiling.OUTPUT_DIR / f"{name}.yaml" for name in names}


def plan_build(
    project_dir: Path, config: ProjectConfig, release: Release, *, local_docker: bool
) -> list[Step]:
    # Cloud Build runs as the environment's builder account (least privilege), not as Cloud
    # Build's default one; the deployer may act as it.
    steps = build.plan_build(
        config,
        project_dir,
        git_commit=release.commit,
        local_docker=local_docker,
        service_account=config.names.build_service_account,
    )
    env = config.environment
    steps.append(
        LocalStep(
            "record image",
            f"write build/images/{env}.json with the pushed image and its digest",
            lambda responses: build.record_build(project_dir, env, responses),
        )
    )
    return steps


COMPILED_RECORD = compiling.OUTPUT_DIR / "compiled.json"


def plan_compile(project_dir: Path, config: ProjectConfig, names: list[str]) -> LocalStep:
    env = config.environment

    def compile_and_record(_: Any) -> list[Path]:
        image = build.read_image(project_dir, env)
        written = compiling.compile_pipelines(project_dir, config, names, image=image)
        record_compiled(project_dir, env, image, written)
        return written

    return LocalStep(
        "compile",
        f"compile {', '.join(names)} to build/pipelines/ with the image of build/images/{env}.json",
        compile_and_record,
    )


def _read_record(project_dir: Path) -> dict[str, Any]:
    try:
        data = json.loads((project_dir / COMPILED_RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _digest(path: Path) -> str:
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


def record_compiled(
    project_dir: Path, env: str | None, image: str | None, written: list[Path]
) -> None:
    """Note in build/pipelines/compiled.json what each template was compiled for: the
    environment (``local`` without --env), the image and the file's digest."""
    record = _read_record(project_dir)
    for path in written:
        record[path.stem] = {"environment": env or "local", "image": image, "file": _digest(path)}
    target = project_dir / COMPILED_RECORD
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def check_compiled_for(project_dir: Path, env: str, compiled: Mapping[str, Path]) -> None:
    """Refuse templates that ``invoke compile --env ENV`` did not write for ``env`` with the
    image of its latest build (build/pipelines/compiled.json says what each was compiled for).

    Without --env, components keep the base image's local tag, which no cluster can pull, and
    neither the environment's parameter values nor its caching apply. Missing files are left to
    the orchestrator, which names them.
    """
    fix = (
        f"run `invoke build --env {env}` (once per image change), then `invoke compile --env {env}`"
    )
    record = _read_record(project_dir)
    try:
        built: str | None = build.read_image(project_dir, env)
    except build.BuildError:
        built = None
    for name, path in compiled.items():
        if not path.is_file():
            continue
        shown = path.relative_to(project_dir) if path.is_relative_to(project_dir) else path
        entry = record.get(name) if isinstance(record.get(name), dict) else None
        if entry is None or entry.get("file") != _digest(path):
            raise compiling.PipelineError(
                f"{shown} was not written by `invoke compile --env {env}` (or changed since); "
                f"{fix}, then publish again"
            )
        if entry.get("environment") != env:
            raise compiling.PipelineError(
                f"{shown} was compiled "
                + (
                    "without --env"
                    if entry.get("environment") == "local"
                    else f"for {entry.get('environment')!r}"
                )
                + f", not for {env!r} (its image, parameter values and caching); {fix}, then "
                "publish again"
            )
        if built and entry.get("image") != built:
            raise compiling.PipelineError(
                f"{shown} was compiled with {entry.get('image')!r}, not the image last built for "
                f"{env!r} ({built}); run `invoke compile --env {env}`, then publish again"
            )


def plan_publish(
    project_dir: Path,
    config: ProjectConfig,
    release: Release,
    names: list[str],
    *,
    compiled_earlier: bool = True,
) -> list[Step]:
    """Upload the compiled templates to the orchestrator's template store, then (Cloud Run)
    deploy the service image recorded for the environment, which serves those templates.

    Templates compiled earlier must be compiled for this environment (see
    :func:`check_compiled_for`); plans that compile first (deploy) bind them themselves.
    """
    if compiled_earlier:
        check_compiled_for(project_dir, config.environment, templates(project_dir, names))
    return [
        *for_config(config).plan_publish(
            templates(project_dir, names), release, compiled_earlier=compiled_earlier
        ),
        *service_infra.plan_rollout(config, project_dir),
    ]


def plan_run(
    project_dir: Path,
    config: ProjectConfig,
    release: Release,
    pipeline_name: str,
    overrides: Mapping[str, str],
    *,
    published_in_plan: bool = False,
) -> list[Step]:
    """Submit the template of ``pipeline_name`` published from this release's commit."""
    pipeline = compiling.load_pipeline(project_dir, pipeline_name)
    values = compiling.configured_parameters(config, pipeline_name, pipeline, dict(overrides))
    return for_config(config).plan_submit(
        pipeline_name,
        values,
        release,
        template_name=pipeline.name,
        published_in_plan=published_in_plan,
    )


def plan_deploy(
    project_dir: Path,
    config: ProjectConfig,
    release: Release,
    pipeline_name: str,
    overrides: Mapping[str, str],
    *,
    local_docker: bool,
) -> list[Step]:
    """Build, compile, publish every pipeline, then run one; checked before anything runs."""
    pipelines = compiling.load_sized_pipelines(project_dir, config)
    compiling.require(pipeline_name, pipelines)
    names = list(pipelines)
    run = plan_run(project_dir, config, release, pipeline_name, overrides, published_in_plan=True)
    return [
        *plan_build(project_dir, config, release, local_docker=local_docker),
        plan_compile(project_dir, config, names),
        *plan_publish(project_dir, config, release, names, compiled_earlier=False),
        *run,
    ]


def plan_schedule(
    project_dir: Path,
    config: ProjectConfig,
    release: Release,
    pipeline_name: str,
    action: str,
    cron: str | None,
    overrides: Mapping[str, str],
) -> list[Step]:
    """Create or update (by name), pause, resume or delete a pipeline's schedule."""
    orchestrator = for_config(config)
    if action != "create" or not orchestrator.supports_schedules:
        return orchestrator.plan_schedule(pipeline_name, action, release, cron=cron)
    pipeline = compiling.load_pipeline(project_dir, pipeline_name)
    values = compiling.configured_parameters(config, pipeline_name, pipeline, dict(overrides))
    return orchestrator.plan_schedule(
        pipeline_name,
        action,
        release,
        template_name=pipeline.name,
        cron=cron,
        parameters=values,
    )
