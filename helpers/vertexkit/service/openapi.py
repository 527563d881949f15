"""The submission service's OpenAPI 3.0 schema, written by hand, and its docs page."""

from __future__ import annotations

import html
from collections.abc import Mapping
from typing import Any

import vertexkit
from vertexkit.project.config import ProjectConfig

_ERROR = {"$ref": "#/components/schemas/Error"}
_JSON = "application/json"


def _answer(description: str, schema: Mapping[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {_JSON: {"schema": dict(schema)}}}


def _errors(*statuses: int) -> dict[str, Any]:
    reasons = {
        400: "Malformed request: invalid JSON, bad base64, not a push envelope",
        401: "Missing or invalid OIDC token (push authentication configured)",
        403: "The OIDC token is not the configured push service account's",
        404: "No such pipeline, run or endpoint",
        413: "The body is larger than service.max_body_bytes",
        415: "The body is not application/json",
        422: "The body is JSON but refused: each problem names its field",
        502: "The orchestrator refused or failed the request",
    }
    return {str(status): _answer(reasons[status], _ERROR) for status in statuses}


def openapi_schema(config: ProjectConfig, pipelines: Mapping[str, Any]) -> dict[str, Any]:
    """The schema of the service for ``config``; its runnable pipelines are the enum of the
    path's ``name`` (another name answers 404 naming them)."""
    run_request = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "parameters": {
                "type": "object",
                "description": "Values of the pipeline's parameters, by name (GET /pipelines "
                "lists them with their types); configured values apply to the others.",
            },
            "labels": {
                "type": "object",
                "additionalProperties": {"type": "string"},
                "description": "Labels added to the run (Vertex AI only): lowercase keys and "
                "values of letters, digits, '_' and '-'.",
            },
            "display_name": {"type": "string", "minLength": 1, "maxLength": 128},
        },
    }
    run = {
        "type": "object",
        "required": ["run_id", "name", "url", "state", "replayed"],
        "properties": {
            "run_id": {"type": "string"},
            "name": {"type": "string", "description": "The orchestrator's resource name"},
            "url": {"type": "string", "description": "Where a person sees the run"},
            "state": {
                "type": "string",
                "enum": ["pending", "running", "succeeded", "failed", "cancelled", "unknown"],
            },
            "backend_state": {"type": "string"},
            "display_name": {"type": "string"},
            "created": {"type": "string"},
            "pipeline": {"type": "string"},
            "detail": {"type": "string"},
            "replayed": {
                "type": "boolean",
                "description": "True when the idempotency key named a run started earlier",
            },
        },
    }
    run_state = {
        "type": "object",
        "required": ["run_id", "name", "state"],
        "properties": {k: v for k, v in run["properties"].items() if k != "replayed"},
    }
    dry_run = {
        "type": "object",
        "required": ["dry_run", "steps"],
        "properties": {
            "dry_run": {"type": "boolean", "enum": [True]},
            "steps": {"type": "array", "items": {"type": "object"}},
            "replayed": {"type": "boolean"},
        },
    }
    error = {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["status", "message"],
                "properties": {
                    "status": {"type": "integer"},
                    "message": {"type": "string"},
                    "problems": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["field", "message"],
                            "properties": {
                                "field": {"type": "string"},
                                "message": {"type": "string"},
                            },
                        },
                    },
                },
            }
        },
    }
    parameter = {
        "type": "object",
        "required": ["name", "type", "required", "default"],
        "properties": {
            "name": {"type": "string"},
            "type": {"type": "string"},
            "required": {"type": "boolean"},
            "default": {"nullable": True},
        },
    }
    pipeline = {
        "type": "object",
        "required": ["name", "template", "parameters"],
        "properties": {
            "name": {"type": "string"},
            "template": {"type": "string"},
            "parameters": {"type": "array", "items": {"$ref": "#/components/schemas/Parameter"}},
        },
    }
    push = {
        "type": "object",
        "required": ["message"],
        "properties": {
            "message": {
                "type": "object",
                "required": ["data", "messageId"],
                "properties": {
                    "data": {
                        "type": "string",
                        "description": "base64 of JSON {pipeline, parameters, labels?, "
                        "display_name?}",
                    },
                    "messageId": {"type": "string"},
                    "attributes": {"type": "object", "additionalProperties": {"type": "string"}},
                    "publishTime": {"type": "string"},
                },
            },
            "subscription": {"type": "string"},
        },
    }
    submitted = {
        "oneOf": [{"$ref": "#/components/schemas/Run"}, {"$ref": "#/components/schemas/DryRun"}]
    }
    names = ", ".join(pipelines) or "none"
    return {
        "openapi": "3.0.3",
        "info": {
            "title": f"{config.name} submission service",
            "version": vertexkit.__version__,
            "description": "Starts runs of this project's published pipelines in environment "
            f"{config.environment!r} ({config.orchestrator}). Runnable pipelines: {names}.",
        },
        "paths": {
            "/healthz": {
                "get": {
                    "summary": "Liveness",
                    "operationId": "healthz",
                    "responses": {
                        "200": _answer(
                            "Serving",
                            {
                                "type": "object",
                                "required": ["status"],
                                "properties": {"status": {"type": "string"}},
                            },
                        )
                    },
                }
            },
            "/pipelines": {
                "get": {
                    "summary": "The runnable pipelines and their parameters",
                    "operationId": "listPipelines",
                    "responses": {
                        "200": _answer(
                            "The pipelines",
                            {
                                "type": "object",
                                "required": ["pipelines"],
                                "properties": {
                                    "pipelines": {
                                        "type": "array",
                                        "items": {"$ref": "#/components/schemas/Pipeline"},
                                    }
                                },
                            },
                        )
                    },
                }
            },
            "/pipelines/{name}/runs": {
                "post": {
                    "summary": "Start a run of a published pipeline",
                    "operationId": "startRun",
                    "parameters": [
                        {
                            "name": "name",
                            "in": "path",
                            "required": True,
                            "schema": {
                                "type": "string",
                                **({"enum": list(pipelines)} if pipelines else {}),
                            },
                            "description": f"The pipeline (runnable: {names})",
                        },
                        {
                            "name": "Idempotency-Key",
                            "in": "header",
                            "required": False,
                            "schema": {"type": "string"},
                            "description": "Repeating a key returns the run it started",
                        },
                    ],
                    "requestBody": {
                        "required": True,
                        "content": {_JSON: {"schema": {"$ref": "#/components/schemas/RunRequest"}}},
                    },
                    "responses": {
                        "201": _answer("The run started", {"$ref": "#/components/schemas/Run"}),
                        "200": _answer(
                            "The run this idempotency key started earlier, or (dry-run "
                            "backend) the requests that would be sent",
                            submitted,
                        ),
                        **_errors(400, 404, 413, 415, 422, 502),
                    },
                }
            },
            "/runs/{run_id}": {
                "get": {
                    "summary": "A run's state",
                    "operationId": "readRun",
                    "parameters": [
                        {
                            "name": "run_id",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string"},
                        }
                    ],
                    "responses": {
                        "200": _answer(
                            "The run (dry-run backend: the request that would read it)",
                            {
                                "oneOf": [
                                    {"$ref": "#/components/schemas/RunState"},
                                    {"$ref": "#/components/schemas/DryRun"},
                                ]
                            },
                        ),
                        **_errors(404, 502),
                    },
                }
            },
            "/pubsub/push": {
                "post": {
                    "summary": "A Pub/Sub push delivery (the message id is the idempotency key)",
                    "operationId": "pubsubPush",
                    "requestBody": {
                        "required": True,
                        "content": {
                            _JSON: {"schema": {"$ref": "#/components/schemas/PushEnvelope"}}
                        },
                    },
                    "responses": {
                        "201": _answer("The run started", {"$ref": "#/components/schemas/Run"}),
                        "200": _answer("Already started, or a dry run", submitted),
                        **_errors(400, 401, 403, 404, 413, 415, 422, 502),
                    },
                }
            },
            "/openapi.json": {
                "get": {
                    "summary": "This schema",
                    "operationId": "openapi",
                    "responses": {"200": _answer("The schema", {"type": "object"})},
                }
            },
            "/docs": {
                "get": {
                    "summary": "This schema as a page",
                    "operationId": "docs",
                    "responses": {
                        "200": {
                            "description": "HTML",
                            "content": {"text/html": {"schema": {"type": "string"}}},
                        }
                    },
                }
            },
        },
        "components": {
            "schemas": {
                "RunRequest": run_request,
                "Run": run,
                "RunState": run_state,
                "DryRun": dry_run,
                "Error": error,
                "Parameter": parameter,
                "Pipeline": pipeline,
                "PushEnvelope": push,
            }
        },
    }


def docs_page(schema: Mapping[str, Any]) -> str:
    """A self-contained page (no scripts from elsewhere) listing the endpoints."""
    rows = []
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            answers = ", ".join(sorted(operation["responses"]))
            rows.append(
                f"<tr><td><code>{method.upper()} {html.escape(path)}</code></td>"
                f"<td>{html.escape(operation['summary'])}</td><td>{answers}</td></tr>"
            )
    info = schema["info"]
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(info['title'])}</title></head><body>"
        f"<h1>{html.escape(info['title'])}</h1><p>{html.escape(info['description'])}</p>"
        "<table><tr><th>Endpoint</th><th>What</th><th>Answers</th></tr>"
        + "".join(rows)
        + "</table><p>The full schema: <a href='openapi.json'>openapi.json</a>.</p>"
        "</body></html>"
    )
