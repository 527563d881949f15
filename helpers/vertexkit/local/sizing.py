"""Per-component machine specs: chosen components run as Vertex AI custom training jobs.

A pipeline marks each component that may need more than the default machine with
:func:`sized`, where it calls it::

    trained = sized(train_model)(train=split.outputs["train"], ...)

``sized`` hands the component back unchanged, so local runs (``kfp.local``) execute the plain
component. Only while :func:`active` is in effect, and only for a component named in its
mapping, does it return google-cloud-pipeline-components' custom-job wrapper of the component
(``create_custom_training_job_from_component``) with that component's machine, accelerators,
replicas and boot disk. Pipelines are built when their module is imported, so compile imports
them inside ``active``::

    with resources.active(config.components) as sizing:
        pipelines = load_pipelines(project_dir)
    resources.check_components(config.components, sizing.found, ...)

The wrapper copies the component's image into its worker pool spec, which the compiled
pipeline keeps as the default of the ``worker_pool_specs`` input; :func:`bind_worker_images`
points those at the pushed image, as compile does for the executors' images.
"""

from __future__ import annotations

import contextlib
import contextvars
import difflib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from vertexkit.project.settings import ComponentResources, component_name, kfp_name

if TYPE_CHECKING:  # kfp is imported where components are handled: config imports this module
    from kfp.dsl.base_component import BaseComponent

# Resolved by Vertex AI at run time to the PipelineJob's service account (the same value as
# google_cloud_pipeline_components._placeholders.SERVICE_ACCOUNT_PLACEHOLDER).
PIPELINE_SERVICE_ACCOUNT = "{{$.pipeline_service_account}}"


class ResourcesError(ValueError):
    """A sized component or the ``components`` configuration cannot be used."""


@dataclass
class Sizing:
    """What :func:`active` applies, and what :func:`sized` saw while it was in effect."""

    resources: Mapping[str, ComponentResources]
    service_account: str = PIPELINE_SERVICE_ACCOUNT
    default: ComponentResources | None = None  # for sized components not in ``resources``
    found: set[str] = field(default_factory=set)  # every component given to sized()
    applied: set[str] = field(default_factory=set)  # those that became custom jobs


_ACTIVE: contextvars.ContextVar[Sizing | None] = contextvars.ContextVar(
    "vertexkit_resources", default=None
)


@contextlib.contextmanager
def active(
    resources: Mapping[str, ComponentResources | Mapping[str, Any]],
    *,
    service_account: str = PIPELINE_SERVICE_ACCOUNT,
    default: ComponentResources | None = None,
) -> Iterator[Sizing]:
    """Make :func:`sized` wrap the components named in ``resources`` as custom jobs.

    Import (or build) the pipelines inside the ``with`` block. ``service_account`` is the
    identity the custom jobs run as; by default the pipeline run's own service account.
    With ``default``, every sized component becomes a custom job (unnamed ones with these
    resources): a project's tests use it to check that its pipelines build in that form too.
    """
    checked = {}
    for name, spec in resources.items():
        try:
            component_name(name)
        except ValueError as exc:
            raise ResourcesError(f"components.{name}: {exc}") from None
        if not isinstance(spec, ComponentResources):
            spec = ComponentResources.model_validate(spec)
        checked[name] = spec
    sizing = Sizing(checked, service_account, default)
    token = _ACTIVE.set(sizing)
    try:
        yield sizing
    finally:
        _ACTIVE.reset(token)


def reserved_names() -> set[str]:
    """Input and output names of the custom-job wrapper, which a sized component cannot use:
    the wrapper merges the component's inputs and outputs into its own."""
    from google_cloud_pipeline_components.v1.custom_job import component as custom_job

    spec = custom_job.custom_training_job.component_spec
    return set(spec.inputs or {}) | set(spec.outputs or {})


def sized(component: BaseComponent) -> BaseComponent:
    """``component``, or its custom-job form when the active resources name it.

    Call it in the pipeline where the component is used: ``sized(train_model)(...)``.
    """
    from kfp.dsl.base_component import BaseComponent

    implementation = getattr(getattr(component, "component_spec", None), "implementation", None)
    if (
        not isinstance(component, BaseComponent)
        or getattr(implementation, "container", None) is None
    ):
        raise ResourcesError(
            "sized() takes a component made with @dsl.component or @dsl.container_component, "
            f"got {type(component).__name__}"
        )
    name = component.name
    spec = component.component_spec
    clashes = reserved_names() & (set(spec.inputs or {}) | set(spec.outputs or {}))
    if clashes:
        raise ResourcesError(
            f"component {name!r} cannot run as a custom job: rename its input(s) or output(s) "
            f"{', '.join(sorted(clashes))}, which the custom-job wrapper uses itself"
        )
    sizing = _ACTIVE.get()
    if sizing is None:
        return component
    sizing.found.add(name)
    resources = sizing.resources.get(name, sizing.default)
    if resources is None:
        return component
    from google_cloud_pipeline_components.v1.custom_job import (
        create_custom_training_job_from_component,
    )

    sizing.applied.add(name)
    return create_custom_training_job_from_component(
        component,
        display_name=name,
        service_account=sizing.service_account,
        **resources.wrapper_arguments(),
    )


def components_in(pipelines: Iterable[BaseComponent]) -> set[str]:
    """Names of the components the pipelines' tasks use (sized or not)."""
    names = set()
    for pipeline in pipelines:
        for key in pipeline.pipeline_spec.components:
            names.add(key.removeprefix("comp-"))
    return names


def check_components(
    configured: Mapping[str, object],
    found: Iterable[str],
    *,
    used: Iterable[str] = (),
    source_of: Callable[..., str] | None = None,
) -> None:
    """Fail naming every configured component that no pipeline sizes.

    ``found`` is :attr:`Sizing.found` after the pipelines were imported inside :func:`active`;
    ``used`` (see :func:`components_in`) tells a component that is used but not sized from a
    misspelt name; ``source_of`` (``ProjectConfig.source_of``) names the file of each entry.
    """
    found, used = set(found), set(used)
    listed = ", ".join(sorted(found)) or "none"
    problems = []
    for key in configured:
        if key in found:
            continue
        where = f"{source_of('components', key)}: " if source_of else ""
        if key in used:
            reason = (
                f"component {key!r} is not wrapped with sized() in any pipeline: write "
                f"sized({key.replace('-', '_')})(...) where the pipeline calls it"
            )
        else:
            close = difflib.get_close_matches(kfp_name(key), sorted(found), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            reason = f"no pipeline has a sized component named {key!r}{hint}"
        problems.append(f"{where}components.{key}: {reason} (sized components: {listed})")
    if problems:
        raise ResourcesError("\n".join(problems))


def bind_worker_images(spec: dict[str, Any], image: str) -> int:
    """Point custom-job worker pools at ``image``, in a compiled pipeline (dict), in place.

    Like compile's executor images, only the project's base image placeholder changes: an image
    without a registry host whose name is ``image``'s (``sized-base:python3.11`` for
    ``.../sized-base@sha256:...``). Returns the number of worker pools changed.
    """
    pushed_name = image.rsplit("/", 1)[-1].split("@", 1)[0].split(":", 1)[0]
    changed = 0
    for component in spec.get("components", {}).values():
        parameters = component.get("inputDefinitions", {}).get("parameters", {})
        pools = parameters.get("worker_pool_specs", {}).get("defaultValue")
        for pool in pools if isinstance(pools, list) else []:
            container = pool.get("container_spec") if isinstance(pool, dict) else None
            local = container.get("image_uri", "/") if isinstance(container, dict) else "/"
            if "/" not in local and local.split("@", 1)[0].split(":", 1)[0] == pushed_name:
                container["image_uri"] = image
                changed += 1
    return changed
