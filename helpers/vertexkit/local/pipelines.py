"""Discover the project's pipelines and compile them to ``build/pipelines/<name>.yaml``."""

from __future__ import annotations

import hashlib
import importlib.util
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from google.protobuf import json_format
from kfp import compiler
from kfp.dsl.graph_component import GraphComponent

from vertexkit.local import sizing as resources
from vertexkit.project import params
from vertexkit.project.config import ProjectConfig

PIPELINES_DIR = "pipelines"
OUTPUT_DIR = Path("build") / "pipelines"


class PipelineError(ValueError):
    """A pipeline cannot be found, imported or compiled."""


def require(name: str, available: Mapping[str, object]) -> None:
    """Fail naming the available pipelines when ``name`` is not one of them."""
    if name not in available:
        raise PipelineError(
            f"no pipeline named {name!r} in {PIPELINES_DIR}/ "
            f"(available: {', '.join(available) or 'none'})"
        )


def discover(project_dir: str | Path) -> dict[str, Path]:
    """Pipeline files by name: every ``pipelines/<name>.py`` not starting with an underscore."""
    folder = Path(project_dir) / PIPELINES_DIR
    return {p.stem: p for p in sorted(folder.glob("*.py")) if not p.name.startswith("_")}


def load_pipeline(project_dir: str | Path, name: str) -> GraphComponent:
    """Import ``pipelines/<name>.py`` and return the one ``@dsl.pipeline`` it defines."""
    files = discover(project_dir)
    require(name, files)
    path = files[name]
    digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:12]
    module_name = f"_vertexkit_pipeline_{digest}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[module_name]
        raise PipelineError(
            f"{PIPELINES_DIR}/{path.name}: import failed: {type(exc).__name__}: {exc}"
        ) from exc
    found = [obj for obj in vars(module).values() if isinstance(obj, GraphComponent)]
    # Pipelines imported from elsewhere (e.g. used as sub-pipelines) do not count.
    own = [p for p in found if getattr(p.pipeline_func, "__module__", None) == module_name]
    if len(own) != 1:
        names = ", ".join(p.name for p in own) or "none"
        raise PipelineError(
            f"{PIPELINES_DIR}/{path.name}: expected exactly one @dsl.pipeline function, "
            f"found {len(own)} ({names})"
        )
    return own[0]


def load_pipelines(project_dir: str | Path) -> dict[str, GraphComponent]:
    """Every pipeline of the project, by name."""
    return {name: load_pipeline(project_dir, name) for name in discover(project_dir)}


def load_sized_pipelines(
    project_dir: str | Path, config: ProjectConfig
) -> dict[str, GraphComponent]:
    """Every pipeline, built with the config's component resources, and checked against it.

    Components that pipelines wrap with ``vertexkit.local.sizing.sized`` and that ``components:``
    names become Vertex AI custom jobs. For compiling only: local runs use :func:`load_pipelines`.
    """
    with resources.active(
        config.components, service_account=config.names.pipeline_service_account
    ) as sizing:
        pipelines = load_pipelines(project_dir)
    check_config_pipelines(config, pipelines)
    try:
        resources.check_components(
            config.components,
            sizing.found,
            used=resources.components_in(pipelines.values()),
            source_of=config.source_of,
        )
    except resources.ResourcesError as exc:
        raise PipelineError(str(exc)) from None
    return pipelines


def pipeline_spec(pipeline: GraphComponent) -> dict[str, Any]:
    """The pipeline's IR as a dict (what the compiled YAML holds)."""
    return json_format.MessageToDict(pipeline.pipeline_spec)


def configured_parameters(
    config: ProjectConfig, name: str, pipeline: GraphComponent, overrides: dict[str, str] | None
) -> dict[str, Any]:
    """Parameter values from config and ``--param`` overrides, checked against the input
    definitions of the compiled pipeline (the IR the compiler writes)."""
    specs = params.parameter_specs(pipeline_spec(pipeline))
    configured = config.pipeline_parameters(name, set(specs))
    sources = {
        key: f"{config.source_of('pipelines', name, 'parameters', key)}: "
        f"pipelines.{name}.parameters.{key}"
        if key in config.pipeline(name).parameters
        else f"{config.source_of('parameters', key)}: parameters.{key}"
        for key in configured
    }
    return params.resolve(specs, configured, overrides or {}, pipeline=name, config_source=sources)


def check_config_pipelines(config: ProjectConfig, pipelines: dict[str, GraphComponent]) -> None:
    """Fail when the config names a pipeline that has no file, or a parameter nobody declares."""
    for name in config.pipelines:
        if name not in pipelines:
            raise PipelineError(
                f"{config.source_of('pipelines', name)}: pipelines.{name}: no file "
                f"{PIPELINES_DIR}/{name}.py for this entry "
                f"(pipeline files: {', '.join(pipelines) or 'none'})"
            )
    declared: set[str] = set()
    for pipeline in pipelines.values():
        declared.update(params.parameter_specs(pipeline_spec(pipeline)))
    for key in config.parameters:
        if key not in declared:
            raise PipelineError(
                f"{config.source_of('parameters', key)}: parameters.{key}: no pipeline "
                "declares this parameter"
            )


def for_environment(spec: dict[str, Any], *, image: str | None, enable_caching: bool) -> None:
    """Bind a compiled pipeline to an environment, in place.

    ``image`` replaces every executor image without a registry host: those name the project's
    base image by its local tag, which only the pushed image (pinned by digest) can stand for.
    Images of other components (google-cloud-pipeline-components, say) stay as they are.
    ``enable_caching`` sets Vertex AI's execution cache on every task.
    """
    if image:
        for executor in spec.get("deploymentSpec", {}).get("executors", {}).values():
            container = executor.get("container")
            if container and "/" not in container.get("image", "/"):
                container["image"] = image
        resources.bind_worker_images(spec, image)
    dags = [spec.get("root", {}).get("dag", {})]
    dags += [c["dag"] for c in spec.get("components", {}).values() if "dag" in c]
    for dag in dags:
        for task in dag.get("tasks", {}).values():
            task["cachingOptions"] = {"enableCache": enable_caching}


def compile_pipelines(
    project_dir: str | Path,
    config: ProjectConfig,
    names: list[str] | None = None,
    output_dir: str | Path | None = None,
    *,
    image: str | None = None,
) -> list[Path]:
    """Compile the named pipelines (all by default) with their configured parameter values.

    For an environment (``config.environment`` other than ``local``) the output is bound to it
    with :func:`for_environment`: the pushed ``image`` and the pipeline's caching setting.
    """
    project_dir = Path(project_dir)
    out = Path(output_dir) if output_dir else project_dir / OUTPUT_DIR
    pipelines = load_sized_pipelines(project_dir, config)
    names = names or list(pipelines)
    for name in names:
        require(name, pipelines)
    # Check every pipeline's parameters before writing anything.
    values = {name: configured_parameters(config, name, pipelines[name], None) for name in names}
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name in names:
        target = out / f"{name}.yaml"
        compiler.Compiler().compile(
            pipeline_func=pipelines[name],
            package_path=str(target),
            pipeline_parameters=values[name],
        )
        if config.environment != "local":
            _rewrite(target, image, config.pipeline(name).enable_caching)
        written.append(target)
    return written


def _rewrite(path: Path, image: str | None, enable_caching: bool) -> None:
    text = path.read_text(encoding="utf-8")
    header = "".join(line for line in text.splitlines(keepends=True) if line.startswith("#"))
    spec = yaml.safe_load(text)
    for_environment(spec, image=image, enable_caching=enable_caching)
    body = yaml.safe_dump(spec, sort_keys=True, default_flow_style=False, width=100)
    path.write_text(header + body, encoding="utf-8")
