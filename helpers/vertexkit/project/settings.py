"""Settings models of the project config that other layers build on.

``kfp:`` (where a Kubeflow Pipelines API is and how to reach it) and ``components:`` (the
machines of components that run as Vertex AI custom jobs). They live with the project model so
that the config can validate them without importing the layers that use them.
"""

from __future__ import annotations

import difflib
import re
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    ValidationInfo,
    field_validator,
)

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

MACHINE_TYPE_RE = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")
COMPONENT_NAME_RE = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")


HOST_RE = re.compile(
    r"^https?://(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?)(:[0-9]{1,5})?"
    r"(/[^\s?#]*)?$"
)
ENV_VAR_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
NAMESPACE_RE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_HOST_EXAMPLE = "e.g. https://kfp.example.com, or http://localhost:8080 for a port-forward"


def host_problem(value: str) -> str | None:
    """Why ``value`` is not a KFP API host URL, or None. Mirrors copier.yml's ``kfp_host``."""
    if not isinstance(value, str) or not value:
        return f"a KFP host is an http(s) URL, {_HOST_EXAMPLE}"
    authority = value.split("://", 1)[-1].split("/", 1)[0]
    if "@" in authority:
        return (
            "the URL must not hold credentials: put a bearer token in an environment variable "
            "and name that variable in kfp.token_env"
        )
    match = HOST_RE.match(value)
    if not match:
        return f"{value!r} is not an http(s) URL without query or fragment ({_HOST_EXAMPLE})"
    if match.group(3) and not 0 < int(match.group(3)[1:]) < 65536:
        return f"{value!r}: port {match.group(3)[1:]} is out of range"
    return None


def check_host(value: str) -> str:
    if problem := host_problem(value):
        raise ValueError(problem)
    return value.rstrip("/")


class KfpSettings(BaseModel):
    """``kfp:`` in the project config: where the Kubeflow Pipelines API is and how to reach it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = Field(
        description="Base URL of the KFP API (what kfp.Client(host=...) takes), "
        "e.g. https://kfp.example.com, https://kubeflow.example.com/pipeline or "
        "http://localhost:8080 for a port-forward of svc/ml-pipeline-ui."
    )
    namespace: str | None = Field(
        default=None,
        description="Kubernetes namespace of pipelines, experiments and runs on a multi-user "
        "cluster (a Kubeflow profile); leave unset on a single-user KFP.",
    )
    token_env: str | None = Field(
        default=None,
        description="Name of the environment variable that holds a bearer token for the host "
        "(never the token itself); unset sends no Authorization header.",
    )
    experiment: str | None = Field(
        default=None,
        description="Experiment that runs are filed under (default: <name>-<environment>).",
    )

    @field_validator("host")
    @classmethod
    def _host(cls, value: str) -> str:
        return check_host(value)

    @field_validator("namespace")
    @classmethod
    def _namespace(cls, value: str | None) -> str | None:
        if value is not None and not NAMESPACE_RE.match(value):
            raise ValueError(
                f"{value!r} is not a Kubernetes namespace: at most 63 lowercase letters, digits "
                "and hyphens, starting and ending with a letter or digit"
            )
        return value

    @field_validator("token_env")
    @classmethod
    def _token_env(cls, value: str | None) -> str | None:
        if value is not None and not ENV_VAR_RE.match(value):
            raise ValueError(
                f"{value!r} is not an environment variable name (letters, digits and "
                "underscores, not starting with a digit): token_env names the variable that "
                "holds the token, e.g. KFP_TOKEN; never put the token itself in the config"
            )
        return value

    @field_validator("experiment")
    @classmethod
    def _experiment(cls, value: str | None) -> str | None:
        if value is not None and (not value.strip() or "\n" in value or len(value) > 128):
            raise ValueError("an experiment name is one non-empty line of at most 128 characters")
        return value


def kfp_name(name: str) -> str:
    """The name kfp gives a component made from a function called ``name`` (train_model ->
    train-model); the same rule as ``kfp.dsl.utils.maybe_rename_for_k8s``."""
    return re.sub("-+", "-", re.sub("[^-0-9a-z]+", "-", name.lower())).strip("-")


def component_name(value: str) -> str:
    if not COMPONENT_NAME_RE.match(value):
        raise ValueError(
            f"{value!r} is not a component name as kfp writes it: use {kfp_name(value)!r} "
            "(the component function's name, with '-' for '_')"
        )
    return value


# Keys of the ``components`` mapping of the config.
ComponentName = Annotated[str, AfterValidator(component_name)]


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
