"""The project model: configuration, naming rules, pipeline parameters, release information."""

from __future__ import annotations

from typing import TYPE_CHECKING

from vertexkit import lazy_exports

if TYPE_CHECKING:
    from vertexkit.project.config import ConfigError, ProjectConfig, load_config
    from vertexkit.project.params import ParameterError

_DEFINED_IN = {
    "ConfigError": "vertexkit.project.config",
    "ProjectConfig": "vertexkit.project.config",
    "load_config": "vertexkit.project.config",
    "ParameterError": "vertexkit.project.params",
}
__all__ = ["ConfigError", "ParameterError", "ProjectConfig", "load_config"]
__getattr__, __dir__ = lazy_exports(__name__, _DEFINED_IN)
