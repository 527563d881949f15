"""Orchestrators: where compiled pipelines run, behind one interface.

``for_config(config)`` returns the configured one (the config's ``orchestrator``). To add an
orchestrator, implement :class:`Orchestrator` in a module of this package and register it in
``ORCHESTRATORS`` (see docs/contributing.md).
"""

from __future__ import annotations

from vertexkit.orchestrators.base import Orchestrator, Run, RunState, ScheduleUnsupported
from vertexkit.orchestrators.kfp import KubeflowPipelines
from vertexkit.orchestrators.vertex import VertexPipelines
from vertexkit.project.config import ProjectConfig

ORCHESTRATORS: dict[str, type[Orchestrator]] = {
    VertexPipelines.name: VertexPipelines,
    KubeflowPipelines.name: KubeflowPipelines,
}

__all__ = [
    "ORCHESTRATORS",
    "KubeflowPipelines",
    "Orchestrator",
    "Run",
    "RunState",
    "ScheduleUnsupported",
    "VertexPipelines",
    "for_config",
]


def for_config(config: ProjectConfig) -> Orchestrator:
    """The orchestrator the config names, for the config's environment."""
    try:
        kind = ORCHESTRATORS[config.orchestrator]
    except KeyError:
        raise ValueError(
            f"unknown orchestrator {config.orchestrator!r} (valid: {', '.join(ORCHESTRATORS)})"
        ) from None
    return kind(config)
