"""Google Cloud services: image builds, the model registry, secrets, precheck, the deploy plans,
drift monitoring and its alerting."""

from __future__ import annotations

from typing import TYPE_CHECKING

from vertexkit import lazy_exports

if TYPE_CHECKING:
    from vertexkit.gcp.model_registry import open_registry
    from vertexkit.gcp.monitoring import monitor_drift
    from vertexkit.gcp.secrets import get_secret

_DEFINED_IN = {
    "get_secret": "vertexkit.gcp.secrets",
    "monitor_drift": "vertexkit.gcp.monitoring",
    "open_registry": "vertexkit.gcp.model_registry",
}
__all__ = [
    "get_secret",
    "monitor_drift",
    "open_registry",
]
__getattr__, __dir__ = lazy_exports(__name__, _DEFINED_IN)
