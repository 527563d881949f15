"""The deploy path as plans of steps: build, compile, publish, run (and schedules)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from vertexkit.gcp import build
from vertexkit.local import pipelines as compiling
from vertexkit.orchestrators import kfp as kfp_backend
from vertexkit.orchestrators import vertex
from vertexkit.orchestrators import vertex_templates as publish
from vertexkit.project.config import ProjectConfig
from vertexkit.steps import http as rest


@dataclass(frozen=True)
class Release:
    """What is being deployed: the git commit, and the tags its templates get."""

    commit: str
    tags: list[str]

    @classmethod
    def of(cls, project_dir: Path) -> Release:
        commit = publish.git_commit(project_dir)
        return cls(commit, publish.release_tags(commit, publish.version_tag(project_dir)))


def templates(project_dir: Path, names: list[str]) -> dict[str, Path]:
    return {name: project_dir / compiling.OUTPUT_DIR / f"{name}.yaml" for name in names}


def plan_build(
    project_dir: Path, config: ProjectConfig, release: Release, *, local_docker: bool
) -> list[rest.Step]:
    steps = build.plan_build(
        config, project_dir, git_commit=release.commit, local_docker=local_docker
    )
    env = config.environment
    steps.append(
        rest.LocalStep(
            "record image",
            f"write build/images/{env}.json with the pushed image and its digest",
            lambda responses: build.record_build(project_dir, env, responses),
        )
    )
    return steps


def plan_compile(project_dir: Path, config: ProjectConfig, names: list[str]) -> rest.LocalStep:
    env = config.environment
    return rest.LocalStep(
        "compile",
        f"compile {', '.join(names)} to build/pipelines/ with the image of build/images/{env}.json",
        lambda _: compiling.compile_pipelines(
            project_dir, config, names, image=build.read_image(project_dir, env)
        ),
    )


def plan_publish(
    project_dir: Path,
    config: ProjectConfig,
    release: Release,
    names: list[str],
    *,
    compiled_earlier: bool = True,
    now: datetime | None = None,
) -> list[rest.Step]:
    """Upload the compiled templates: to Artifact Registry, or to the KFP cluster."""
    paths = templates(project_dir, names)
    if config.orchestrator == "kfp":
        assert config.kfp  # the config requires it for orchestrator kfp
        return kfp_backend.plan_publish(
            config.kfp,
            paths,
            kfp_backend.version_name(release.commit, now or datetime.now(timezone.utc)),
            project=config.name,
            environment=config.environment,
            description=f"commit {release.commit} (tags: {', '.join(release.tags)})",
            compiled_earlier=compiled_earlier,
        )
    return list(
        publish.plan_publish(config, paths, release.tags, compiled_earlier=compiled_earlier)
    )


def published(config: ProjectConfig, responses: rest.Responses) -> list[str]:
    """Where each published template now is, pinned to the version the registry gave it."""
    if config.orchestrator == "kfp":
        return []  # kfp_backend's steps name the uploaded versions themselves
    lines = []
    for step, answer in responses.items():
        if step.startswith("publish "):
            package, version = publish.parse_upload_answer(answer)
            lines.append(f"published {publish.template_uri(config, package, version)}")
    return lines


def plan_run(
    project_dir: Path,
    config: ProjectConfig,
    release: Release,
    pipeline_name: str,
    overrides: dict[str, str],
    *,
    published_in_plan: bool = False,
) -> list[rest.Step]:
    """Submit the template of ``pipeline_name`` published from this release's commit."""
    pipeline = compiling.load_pipeline(project_dir, pipeline_name)
    values = compiling.configured_parameters(config, pipeline_name, pipeline, overrides)
    if config.orchestrator == "kfp":
        assert config.kfp
        return kfp_backend.plan_submit(
            config.kfp,
            pipeline_name,
            project=config.name,
            environment=config.environment,
            parameters=values,
            commit=None if published_in_plan else release.commit,
        )
    uri = publish.template_uri(config, pipeline.name, release.commit)
    submit = vertex.plan_run(
        config,
        pipeline_name,
        template_uri=uri,
        parameter_values=values,
        git_commit=release.commit,
    )
    return [
        *vertex.plan_experiment(config),
        submit,
        vertex.plan_link_experiment(config, submit.step),
    ]


def plan_deploy(
    project_dir: Path,
    config: ProjectConfig,
    release: Release,
    pipeline_name: str,
    overrides: dict[str, str],
    *,
    local_docker: bool,
) -> list[rest.Step]:
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
    overrides: dict[str, str],
) -> list[rest.Step]:
    """Create or update (by name), pause, resume or delete a pipeline's schedule."""
    if config.orchestrator == "kfp":
        raise ValueError(
            "schedules are for Vertex AI Pipelines; on Kubeflow Pipelines create a recurring "
            "run in the KFP UI"
        )
    lookup = vertex.plan_schedule_lookup(config, pipeline_name)
    if action != "create":
        return [lookup, vertex.plan_schedule_action(config, pipeline_name, action)]
    if not cron:
        raise ValueError("--cron is required to create or update a schedule")
    pipeline = compiling.load_pipeline(project_dir, pipeline_name)
    values = compiling.configured_parameters(config, pipeline_name, pipeline, overrides)
    job: dict[str, Any] = vertex.pipeline_job(
        config,
        display_name=pipeline_name,
        template_uri=publish.template_uri(config, pipeline.name, release.commit),
        parameter_values=values,
        git_commit=release.commit,
    )
    return [lookup, vertex.plan_schedule_upsert(config, pipeline_name, cron, job)]


def plan_status(config: ProjectConfig) -> list[rest.Step]:
    if config.orchestrator == "kfp":
        assert config.kfp
        name = kfp_backend.experiment_name(config.kfp, config.name, config.environment)
        return kfp_backend.plan_status(config.kfp, name)
    return [vertex.plan_status(config)]


def render_status(config: ProjectConfig, responses: rest.Responses) -> str:
    if config.orchestrator == "kfp":
        assert config.kfp
        name = kfp_backend.experiment_name(config.kfp, config.name, config.environment)
        return kfp_backend.render_status(config.kfp, responses.get("list runs"), name)
    return vertex.render_status(config, responses.get("list runs"))


def plan_logs(config: ProjectConfig, run_id: str) -> list[rest.Step]:
    if config.orchestrator == "kfp":
        assert config.kfp
        return [kfp_backend.plan_read_run(config.kfp, run_id)]
    return [vertex.plan_job(config, run_id)]


def render_logs(config: ProjectConfig, responses: rest.Responses) -> str:
    if config.orchestrator == "kfp":
        assert config.kfp
        return kfp_backend.render_logs(config.kfp, responses["read run"])
    return vertex.render_logs(config, responses["read run"])


@dataclass(frozen=True)
class Submitted:
    """A run that the steps submitted: where to see it, and how to follow it to the end."""

    run_id: str
    url: str
    wait: Callable[[], tuple[bool, str]]  # follows the run; (succeeded, final state)


def submitted(config: ProjectConfig, responses: rest.Responses) -> Submitted | None:
    """The run among the responses of a run or deploy, if any."""
    if config.orchestrator == "kfp":
        assert config.kfp
        settings = config.kfp
        if not (answer := kfp_backend.submitted_run(responses)):
            return None
        run_id = answer["run_id"]

        def follow_kfp() -> tuple[bool, str]:
            state = kfp_backend.wait(settings, run_id).get("state", "")
            return state == "SUCCEEDED", state

        return Submitted(run_id, kfp_backend.run_url(settings, run_id), follow_kfp)
    for answer in responses.values():
        if isinstance(answer, dict) and "/pipelineJobs/" in answer.get("name", ""):
            name = answer["name"]

            def follow_vertex(name: str = name) -> tuple[bool, str]:
                state = vertex.wait(config, name, rest.session()).get("state", "")
                return state == "PIPELINE_STATE_SUCCEEDED", state

            run_id = name.rsplit("/", 1)[-1]
            return Submitted(run_id, vertex.console_url(config, run_id), follow_vertex)
    return None
