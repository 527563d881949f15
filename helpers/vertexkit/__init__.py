"""vertexkit: the shared helpers behind every project rendered from the vertexkit template.

The package is layered in folders, bottom up: ``project`` (config, naming, parameters),
``steps`` (cloud work as data), ``local`` (compile, local runs, tables, the local registry),
``orchestrators`` (Vertex AI Pipelines, Kubeflow Pipelines), ``gcp`` (Google Cloud services),
and the faces on top (``tasks``, ``service``). Generated projects import only
:data:`PUBLIC_API`, which is stable across minor versions; see docs/api.md.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

__version__ = "0.2.0"

# What generated projects import: module -> names. Kept small, documented and stable.
PUBLIC_API: dict[str, tuple[str, ...]] = {
    "vertexkit.tasks": ("namespace",),
    "vertexkit.project": ("ConfigError", "ParameterError", "ProjectConfig", "load_config"),
    "vertexkit.local": (
        "DataValidationError",
        "LocalModelRegistry",
        "LocalRunError",
        "TableSchema",
        "check_table",
        "compile_pipelines",
        "discover",
        "load_schema",
        "read_table",
        "reference_statistics",
        "run_local",
        "sized",
        "table_statistics",
        "write_table",
    ),
    "vertexkit.gcp": ("get_secret", "monitor_drift", "open_registry"),
    "vertexkit.service": ("flask_response", "from_environment"),
}


def lazy_exports(
    package: str, exports: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for a package that re-exports names of its modules on
    first use (PEP 562), so that ``from vertexkit.local import read_table`` imports the table
    helpers and not the compiler. ``exports`` maps each name to the module that defines it."""

    def __getattr__(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(exports[name]), name)

    def __dir__() -> list[str]:
        return sorted(exports)

    return __getattr__, __dir__
