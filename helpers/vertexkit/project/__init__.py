"""The project model: configuration, naming rules, pipeline parameters, release information."""

from __future__ import annotations

from typing import TYPE_CHECKING

from vertexkit import lazy_exports

if TYPE_CHECKING:
    from vertexkit.project.config import ConfigError, ProjectConfig, load_config

__all__ = ["ConfigError", "ProjectConfig", "load_config"]
__getattr__, __dir__ = lazy_exports(__name__, dict.fromkeys(__all__, "vertexkit.project.config"))
