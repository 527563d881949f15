"""Discover the project's pipelines and compile them to ``build/pipelines/<name>.yaml``."""

from __future__ import annotations

import hashlib
import importlib.util
import re
import sys
from collections.abc import Collection, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml
from google.protobuf import json_format
from kfp import compiler
from kfp.dsl.graph_component import GraphComponent
from kfp.dsl.utils import sanitize_component_name

from vertexkit.local import sizing as resources
from vertexkit.project import params
from vertexkit.project.config import ProjectConfig

PIPELINES_DIR = "pipelines"
OUTPUT_DIR = Path("build") / "pipelines"
# A module-level name that says which pipeline a file runs, when that is ambiguous.
CHOICE_NAME = "PIPELINE"


class PipelineError(ValueError):
    """A pipeline cannot be found, imported or compiled."""


class IncompleteCompileError(PipelineError):
    """Some pipeline files could not be loaded; every other pipeline was compiled."""

    def __init__(self, written: list[Path], broken: Mapping[str, PipelineError], root: Path):
        self.written = written
        self.broken = dict(broken)
        shown = [_relative(path, root) for path in written]
        lines = [
            f"{len(broken)} of {len(broken) + len(written)} pipeline files could not be compiled:",
            *(f"  {error}" for error in broken.values()),
            f"compiled: {', '.join(shown) or 'none'}",
        ]
        super().__init__("\n".join(lines))


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


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
    """Import ``pipelines/<name>.py`` and return its pipeline (see :func:`choose_pipeline`)."""
    files = discover(project_dir)
    require(name, files)
    path = files[name]
    return choose_pipeline(_import_pipeline_file(path), path)


def choose_pipeline(module: ModuleType, path: Path) -> GraphComponent:
    """The pipeline of an imported pipeline file.

    A module-level ``PIPELINE = <pipeline function>`` names it. Otherwise it is the file's one
    ``@dsl.pipeline`` function that no other pipeline of the file calls: helper pipelines the
    main one uses as components (nested pipelines) do not count, and neither do pipelines
    imported from elsewhere.
    """
    where = f"{PIPELINES_DIR}/{path.name}"
    if CHOICE_NAME in vars(module):
        chosen = vars(module)[CHOICE_NAME]
        if not isinstance(chosen, GraphComponent):
            raise PipelineError(
                f"{where}: {CHOICE_NAME} must be a @dsl.pipeline function, "
                f"got {type(chosen).__name__}"
            )
        return chosen
    found = [obj for obj in vars(module).values() if isinstance(obj, GraphComponent)]
    own = [p for p in found if getattr(p.pipeline_func, "__module__", None) == module.__name__]
    if not own:
        raise PipelineError(
            f"{where}: no @dsl.pipeline function in this file; every pipelines/<name>.py "
            f"defines one (put helper modules in {PIPELINES_DIR}/_<name>.py)"
        )
    called = {id(p) for p in own if any(_calls(other, p) for other in own if other is not p)}
    main = [p for p in own if id(p) not in called]
    if len(main) == 1:
        return main[0]
    candidates = main or own
    names = ", ".join(sorted(p.pipeline_func.__name__ for p in candidates))
    example = sorted(p.pipeline_func.__name__ for p in candidates)[0]
    raise PipelineError(
        f"{where}: {len(candidates)} @dsl.pipeline functions that no other pipeline in the file "
        f"calls ({names}): say which one this file runs with a module-level "
        f"{CHOICE_NAME} = <function>, e.g. {CHOICE_NAME} = {example}"
    )


def _calls(pipeline: GraphComponent, other: GraphComponent) -> bool:
    """Whether ``pipeline`` uses ``other`` as a sub-pipeline (a DAG component of its spec)."""
    key = sanitize_component_name(other.component_spec.name)
    pattern = re.compile(rf"^{re.escape(key)}(-\d+)?$")
    return any(
        pattern.match(name) and component.WhichOneof("implementation") == "dag"
        for name, component in pipeline.pipeline_spec.components.items()
    )


def _import_pipeline_file(path: Path) -> ModuleType:
    """Import a pipeline file as a module of a package made of its folder (fresh each time).

    The file's helper modules import relatively (``from ._shared import prepare``) or, while
    the file is imported, by their own name (``import _shared``): the folder is then first on
    ``sys.path``. Helper modules are forgotten afterwards, so that every load sees their
    current code and two projects in one process never share them.
    """
    folder = path.parent.resolve()
    package = f"_vertexkit_pipelines_{hashlib.sha1(str(folder).encode()).hexdigest()[:12]}"
    if package not in sys.modules:
        holder = ModuleType(package)
        holder.__path__ = [str(folder)]
        sys.modules[package] = holder
    module_name = f"{package}.{path.stem}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    before = set(sys.modules)
    sys.path.insert(0, str(folder))
    try:
        spec.loader.exec_module(module)
    except (Exception, SystemExit) as exc:
        del sys.modules[module_name]
        raise PipelineError(
            f"{PIPELINES_DIR}/{path.name}: import failed: {type(exc).__name__}: {exc}"
        ) from exc
    finally:
        sys.path.remove(str(folder))
        # Helper modules are imported afresh for every file, by either name.
        for name in set(sys.modules) - before:
            loaded = getattr(sys.modules[name], "__file__", None)
            if name.startswith(f"{package}.") or (
                loaded and Path(loaded).resolve().is_relative_to(folder)
            ):
                del sys.modules[name]
    return module


def load_pipelines(project_dir: str | Path) -> dict[str, GraphComponent]:
    """Every pipeline of the project, by name."""
    return {name: load_pipeline(project_dir, name) for name in discover(project_dir)}


def load_available(
    project_dir: str | Path,
) -> tuple[dict[str, GraphComponent], dict[str, PipelineError]]:
    """Every pipeline whose file loads, and the error of each file that does not, by name."""
    pipelines: dict[str, GraphComponent] = {}
    broken: dict[str, PipelineError] = {}
    for name in discover(project_dir):
        try:
            pipelines[name] = load_pipeline(project_dir, name)
        except PipelineError as exc:
            broken[name] = exc
    return pipelines, broken


def load_for_run(project_dir: str | Path, config: ProjectConfig, name: str) -> GraphComponent:
    """The pipeline ``name``, checked against the config; other files may be broken."""
    require(name, discover(project_dir))
    pipelines, broken = load_available(project_dir)
    if name in broken:
        raise broken[name]
    check_config_pipelines(config, pipelines, broken=broken)
    return pipelines[name]


def load_sized_pipelines(
    project_dir: str | Path, config: ProjectConfig
) -> dict[str, GraphComponent]:
    """Every pipeline, built with the config's component resources, and checked against it.

    Components that pipelines wrap with ``vertexkit.local.sized`` and that ``components:``
    names become Vertex AI custom jobs. For compiling only: local runs use :func:`load_for_run`.
    The first file that cannot be loaded fails; :func:`load_sized_available` reports them all.
    """
    pipelines, broken = load_sized_available(project_dir, config)
    if broken:
        raise next(iter(broken.values()))
    return pipelines


def load_sized_available(
    project_dir: str | Path, config: ProjectConfig
) -> tuple[dict[str, GraphComponent], dict[str, PipelineError]]:
    """Like :func:`load_sized_pipelines`, but a file that cannot be loaded is returned with its
    error (second mapping) instead of failing; the others are built and checked."""
    with resources.active(
        config.components, service_account=config.names.pipeline_service_account
    ) as sizing:
        pipelines, broken = load_available(project_dir)
    check_config_pipelines(config, pipelines, broken=broken)
    if broken:
        return pipelines, broken  # a broken file may be the one that sizes a component
    try:
        resources.check_components(
            config.components,
            sizing.found,
            used=resources.components_in(pipelines.values()),
            source_of=config.source_of,
        )
    except resources.ResourcesError as exc:
        raise PipelineError(str(exc)) from None
    return pipelines, broken


def pipeline_spec(pipeline: GraphComponent) -> dict[str, Any]:
    """The pipeline's IR as a dict (what the compiled YAML holds)."""
    return json_format.MessageToDict(pipeline.pipeline_spec)


def configured_parameters(
    config: ProjectConfig,
    name: str,
    pipeline: GraphComponent,
    overrides: dict[str, str] | None,
    *,
    require_all: bool = True,
) -> dict[str, Any]:
    """Parameter values from config and ``--param`` overrides, checked against the input
    definitions of the compiled pipeline (the IR the compiler writes), the item types of the
    pipeline function's annotations and the pipeline's ``parameter_rules`` in config.

    ``require_all=False`` (compiling) lets required parameters without a value pass: a run
    supplies them.
    """
    specs = params.parameter_specs(
        pipeline_spec(pipeline), annotations=params.annotations(pipeline.pipeline_func)
    )
    configured = config.pipeline_parameters(name, set(specs))
    sources = {
        key: f"{config.source_of('pipelines', name, 'parameters', key)}: "
        f"pipelines.{name}.parameters.{key}"
        if key in config.pipeline(name).parameters
        else f"{config.source_of('parameters', key)}: parameters.{key}"
        for key in configured
    }
    values = params.resolve(
        specs,
        configured,
        overrides or {},
        pipeline=name,
        config_source=sources,
        require_all=require_all,
    )
    value_source = {**sources, **{k: f"--param {k}={v}" for k, v in (overrides or {}).items()}}
    params.check_rules(
        specs,
        config.pipeline(name).parameter_rules,
        values,
        pipeline=name,
        rules_source=f"{config.source_of('pipelines', name, 'parameter_rules')}: ",
        value_source=value_source,
    )
    return values


def check_config_pipelines(
    config: ProjectConfig,
    pipelines: dict[str, GraphComponent],
    *,
    broken: Collection[str] = (),
) -> None:
    """Fail when the config names a pipeline that has no file, or a parameter nobody declares.

    ``broken`` names files that exist but could not be loaded: they may declare parameters,
    so the check of shared parameters is left out while any is broken.
    """
    for name in config.pipelines:
        if name not in pipelines and name not in broken:
            raise PipelineError(
                f"{config.source_of('pipelines', name)}: pipelines.{name}: no file "
                f"{PIPELINES_DIR}/{name}.py for this entry "
                f"(pipeline files: {', '.join(pipelines) or 'none'})"
            )
    if broken:
        return
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

    ``image`` replaces the project's base image placeholder: an image without a registry host
    whose name is the pushed image's (``ml_pipelines-base:python3.11`` for
    ``.../ml_pipelines-base@sha256:...``), the local tag that only the pushed image (pinned by
    digest) can stand for. Other images, a component's own ``python:3.11`` or
    google-cloud-pipeline-components' launcher, stay as they are.
    ``enable_caching`` sets Vertex AI's execution cache on every task.
    """
    if image:
        for executor in spec.get("deploymentSpec", {}).get("executors", {}).values():
            container = executor.get("container")
            if container and is_base_placeholder(container.get("image", ""), image):
                container["image"] = image
        resources.bind_worker_images(spec, image)
    dags = [spec.get("root", {}).get("dag", {})]
    dags += [c["dag"] for c in spec.get("components", {}).values() if "dag" in c]
    for dag in dags:
        for task in dag.get("tasks", {}).values():
            task["cachingOptions"] = {"enableCache": enable_caching}


def image_name(image: str) -> str:
    """An image reference's name without registry, tag or digest (``a/b/c-base@sha256:..`` ->
    ``c-base``)."""
    last = image.rsplit("/", 1)[-1]
    return last.split("@", 1)[0].split(":", 1)[0]


def is_base_placeholder(candidate: str, pushed: str) -> bool:
    """Whether ``candidate`` is the local tag of the base image that ``pushed`` was built as."""
    return bool(candidate) and "/" not in candidate and image_name(candidate) == image_name(pushed)


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
    Only the named files must load. Compiling all of them, each file that cannot be loaded is
    reported by :class:`IncompleteCompileError` after every other pipeline was written.
    Required parameters without a configured value stay required: a run supplies them.
    """
    project_dir = Path(project_dir)
    out = Path(output_dir) if output_dir else project_dir / OUTPUT_DIR
    pipelines, broken = load_sized_available(project_dir, config)
    for name in names or []:
        if name in broken:
            raise broken[name]
        require(name, pipelines)
    everything = not names
    names = names or list(pipelines)
    # Check every pipeline's parameters before writing anything.
    values = {
        name: configured_parameters(config, name, pipelines[name], None, require_all=False)
        for name in names
    }
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
    if everything and broken:
        raise IncompleteCompileError(written, broken, project_dir)
    return written


def _rewrite(path: Path, image: str | None, enable_caching: bool) -> None:
    text = path.read_text(encoding="utf-8")
    header = "".join(line for line in text.splitlines(keepends=True) if line.startswith("#"))
    spec = yaml.safe_load(text)
    for_environment(spec, image=image, enable_caching=enable_caching)
    body = yaml.safe_dump(spec, sort_keys=True, default_flow_style=False, width=100)
    path.write_text(header + body, encoding="utf-8")
