"""Local work: discover and compile pipelines, run them on kfp.local, size components, read and
check tables, measure drift, and the local model registry."""

from __future__ import annotations

from typing import TYPE_CHECKING

from vertexkit import lazy_exports

if TYPE_CHECKING:
    from vertexkit.local.data import (
        DataValidationError,
        TableSchema,
        check_table,
        load_schema,
        read_table,
        table_statistics,
        write_table,
    )
    from vertexkit.local.drift import reference_statistics
    from vertexkit.local.pipelines import compile_pipelines, discover
    from vertexkit.local.registry import LocalModelRegistry
    from vertexkit.local.runner import LocalRunError, run_local
    from vertexkit.local.sizing import sized

_DEFINED_IN = {
    "DataValidationError": "vertexkit.local.data",
    "TableSchema": "vertexkit.local.data",
    "check_table": "vertexkit.local.data",
    "load_schema": "vertexkit.local.data",
    "read_table": "vertexkit.local.data",
    "table_statistics": "vertexkit.local.data",
    "write_table": "vertexkit.local.data",
    "reference_statistics": "vertexkit.local.drift",
    "compile_pipelines": "vertexkit.local.pipelines",
    "discover": "vertexkit.local.pipelines",
    "LocalModelRegistry": "vertexkit.local.registry",
    "LocalRunError": "vertexkit.local.runner",
    "run_local": "vertexkit.local.runner",
    "sized": "vertexkit.local.sizing",
}
__all__ = [
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
]
__getattr__, __dir__ = lazy_exports(__name__, _DEFINED_IN)
