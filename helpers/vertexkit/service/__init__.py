"""The submission service: a small private REST service that starts runs of the project's
published pipelines, called directly or through Pub/Sub push (see docs/service.md).

A face of the package, like ``vertexkit.tasks``: one framework-free core
(:class:`vertexkit.service.app.Service`) with thin adapters for ASGI (Cloud Run, ``invoke
serve``) and Flask (Cloud Functions) in :mod:`vertexkit.service.server`. It sends requests
through the orchestrator interface with REST and google-auth only: neither kfp nor the Vertex AI
SDK is imported to serve. Generated projects import the two names below.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vertexkit import lazy_exports

if TYPE_CHECKING:
    from vertexkit.service.server import flask_response, from_environment

_DEFINED_IN = {
    "flask_response": "vertexkit.service.server",
    "from_environment": "vertexkit.service.server",
}
__all__ = ["flask_response", "from_environment"]
__getattr__, __dir__ = lazy_exports(__name__, _DEFINED_IN)
