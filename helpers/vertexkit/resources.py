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
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    ValidationInfo,
    field_validator,
)

if TYPE_CHECKING:  # kfp is imported where components are handled: config imports this module
    from kfp.dsl.base_component import BaseComponent

# Vertex AI's AcceleratorType enum (google.cloud.aiplatform.v1.AcceleratorType), without
# ACCELERATOR_TYPE_UNSPECIFIED and NVIDIA_TESLA_K80 (end of support). Which ones a region and a
# machine type offer is Vertex AI's to say: see
# https://cloud.google.com/vertex-ai/docs/training/configure-compute
ACCELERATOR_TYPES = (
    "NVIDIA_TESLA_P100",
    "NVIDIA_TESLA_V100",
    "NVIDIA_TESLA_P4",
    "NVIDIA_TESLA_T4",
    "NVIDIA_TESLA_A100",
    "NVIDIA_A100_80GB",
    "NVIDIA_L4",
    "NVIDIA_H100_80GB",
    "NVIDIA_H100_MEGA_80GB",
    "NVIDIA_H200_141GB",
    "NVIDIA_B200",
    "NVIDIA_GB200",
    "NVIDIA_RTX_PRO_6000",
    "TPU_V2",
    "TPU_V3",
    "TPU_V4_POD",
    "TPU_V5_LITEPOD",
)

# Resolved by Vertex AI at run time to the PipelineJob's service account (the same value as
# google_cloud_pipeline_components._placeholders.SERVICE_ACCOUNT_PLACEHOLDER).
PIPELINE_SERVICE_ACCOUNT = "{{$.pipeline_service_account}}"

MACHINE_TYPE_RE = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")
COMPONENT_NAME_RE = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")


class ResourcesError(ValueError):
    """A sized component or the ``components`` configuration cannot be used."""


def kfp_name(name: str) -> str:
    """The name kfp gives a component made from a function called ``name`` (train_model ->
    train-model); the same rule as ``kfp.dsl.utils.maybe_rename_for_k8s``."""
    return re.sub("-+", "-", re.sub("[^-0-9a-z]+", "-", name.lower())).strip("-")


def _component_name(value: str) -> str:
    if not COMPONENT_NAME_RE.match(value):
        raise ValueError(
            f"{value!r} is not a component name as kfp writes it: use {kfp_name(value)!r} "
            "(the component function's name, with '-' for '_')"
        )
    return value


# Keys of the ``components`` mapping of the config.
ComponentName = Annotated[str, AfterValidator(_component_name)]


def _closest_accelerator(value: str) -> str | None:
    """The accelerator type ``value`` most likely meant: the one name holding all its parts
    (NVIDIA_T4 -> NVIDIA_TESLA_T4), else the closest spelling."""
    parts = set(re.split(r"[^A-Z0-9]+", value.upper())) - {""}
    holding = [name for name in ACCELERATOR_TYPES if parts <= set(name.split("_"))]
    if len(holding) == 1:
        return holding[0]
    close = difflib.get_close_matches(value.upper(), ACCELERATOR_TYPES, n=1)
    return close[0] if close else None


class ComponentResources(BaseModel):
    """The machines one component runs on when it runs as a Vertex AI custom training job."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    machine_type: str = Field(
        default="n1-standard-4",
        description="Compute Engine machine type, e.g. n1-highmem-8, g2-standard-8, a2-highgpu-1g.",
    )
    accelerator_type: str | None = Field(
        default=None, description="Vertex AI accelerator type, e.g. NVIDIA_TESLA_T4, NVIDIA_L4."
    )
    accelerator_count: StrictInt = Field(
        default=0,
        ge=0,
        validate_default=True,
        description="Accelerators per replica: at least 1 with accelerator_type, else 0.",
    )
    replica_count: StrictInt = Field(
        default=1,
        ge=1,
        description="Machines in the job: one chief, the others in a second, identical pool.",
    )
    boot_disk_size_gb: StrictInt | None = Field(
        default=None, ge=1, description="Boot disk of each replica (Vertex AI's default: 100)."
    )

    @field_validator("machine_type")
    @classmethod
    def _machine_type(cls, value: str) -> str:
        if not MACHINE_TYPE_RE.match(value):
            raise ValueError(
                f"{value!r} is not a machine type: lowercase letters, digits and hyphens, "
                "e.g. n1-standard-4"
            )
        return value

    @field_validator("accelerator_type")
    @classmethod
    def _accelerator_type(cls, value: str | None) -> str | None:
        if value is not None and value not in ACCELERATOR_TYPES:
            close = _closest_accelerator(value)
            hint = f"; did you mean {close!r}?" if close else ""
            raise ValueError(
                f"{value!r} is not a Vertex AI accelerator type{hint} "
                f"(valid: {', '.join(ACCELERATOR_TYPES)})"
            )
        return value

    @field_validator("accelerator_count")
    @classmethod
    def _accelerator_count(cls, value: int, info: ValidationInfo) -> int:
        if "accelerator_type" not in info.data:
            return value  # accelerator_type itself is invalid and reported
        accelerator = info.data["accelerator_type"]
        if accelerator and value < 1:
            raise ValueError(
                f"accelerator_type {accelerator} needs accelerator_count of at least 1"
            )
        if not accelerator and value > 0:
            raise ValueError(
                f"accelerator_count {value} needs an accelerator_type "
                "(e.g. NVIDIA_TESLA_T4); without accelerators leave it 0"
            )
        return value

    def wrapper_arguments(self) -> dict[str, Any]:
        """Keyword arguments of gcpc's ``create_custom_training_job_from_component``."""
        arguments: dict[str, Any] = {
            "machine_type": self.machine_type,
            "replica_count": self.replica_count,
        }
        if self.accelerator_type:
            arguments["accelerator_type"] = self.accelerator_type
            arguments["accelerator_count"] = self.accelerator_count
        if self.boot_disk_size_gb is not None:
            arguments["boot_disk_size_gb"] = self.boot_disk_size_gb
        return arguments


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
            _component_name(name)
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
