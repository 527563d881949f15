"""The service's entry points: build it from a project, serve it over ASGI or from Flask.

In a container (Cloud Run) or a function (Cloud Functions) the service is configured by
environment variables:

* ``VERTEXKIT_ENV``: the environment whose config (``config/<env>.yaml``) it serves (required);
* ``VERTEXKIT_RELEASE_COMMIT``: the commit the templates were published from (default: the
  project's git HEAD);
* ``VERTEXKIT_SERVICE_ROOT``: the project folder with ``config/`` (default: the working folder);
* ``VERTEXKIT_SERVICE_PIPELINES``: the compiled pipelines and ``compiled.json`` (default:
  ``<root>/build/pipelines``); where it holds a folder per environment (``<env>/compiled.json``,
  as in the service image, which serves every environment), the one of ``VERTEXKIT_ENV``;
* ``VERTEXKIT_SERVICE_BACKEND``: ``orchestrator`` (default) or ``dry-run``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

from vertexkit.orchestrators import for_config
from vertexkit.project.config import ConfigError, load_config
from vertexkit.project.release import GitError, Release, release_tags
from vertexkit.service.app import Request, Response, Service, too_large
from vertexkit.service.backends import Backend, DryRunBackend, LocalBackend, OrchestratorBackend
from vertexkit.service.catalog import RECORD, CatalogError, load_catalog

BACKENDS = ("orchestrator", "dry-run", "local")
_LOG_FIELDS = ("request_id", "run_id", "pipeline", "parameters", "status", "latency_ms")


class JsonLines(logging.Formatter):
    """One JSON object a line, as Cloud Logging reads them (severity, message, fields)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "severity": record.levelname,
            "message": record.getMessage(),
            "logger": record.name,
        }
        for name in _LOG_FIELDS:
            if getattr(record, name, None) is not None:
                entry[name] = getattr(record, name)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(stream: Any = None) -> None:
    logger = logging.getLogger("vertexkit.service")
    if not any(isinstance(h.formatter, JsonLines) for h in logger.handlers):
        handler = logging.StreamHandler(stream or sys.stdout)
        handler.setFormatter(JsonLines())
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False


def create_service(
    project_dir: str | Path,
    env: str | None,
    *,
    backend: str = "orchestrator",
    pipelines_dir: str | Path | None = None,
    commit: str | None = None,
) -> Service:
    """The service for ``env``'s config and the compiled pipelines in ``pipelines_dir``.

    ``orchestrator`` and ``dry-run`` serve the pipelines compiled for ``env``; ``local`` serves
    those compiled without an environment and runs them here.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r} (valid: {', '.join(BACKENDS)})")
    root = Path(project_dir)
    config = load_config(root, env)
    folder = Path(pipelines_dir) if pipelines_dir else root / "build" / "pipelines"
    if env and (folder / env / RECORD).is_file():
        folder = folder / env  # one folder per environment: the service image's layout
    chosen: Backend
    if backend == "local":
        chosen = LocalBackend(root, env)
        pipelines = load_catalog(folder, None)
    else:
        commit = commit or Release.of(root).commit
        release = Release(commit, release_tags(commit, None))
        orchestrator = for_config(config)
        pipelines = load_catalog(folder, config.environment)
        chosen = (
            OrchestratorBackend(orchestrator, release)
            if backend == "orchestrator"
            else DryRunBackend(orchestrator, release)
        )
    return Service(config, pipelines, chosen)


def from_environment() -> Service:
    """The service as the container and the function configure it (see the module's doc)."""
    env = os.environ.get("VERTEXKIT_ENV")
    if not env:
        raise SystemExit("VERTEXKIT_ENV is not set: name the environment the service serves")
    root = Path(os.environ.get("VERTEXKIT_SERVICE_ROOT") or ".")
    configure_logging()
    try:
        return create_service(
            root,
            env,
            backend=os.environ.get("VERTEXKIT_SERVICE_BACKEND") or "orchestrator",
            pipelines_dir=os.environ.get("VERTEXKIT_SERVICE_PIPELINES") or None,
            commit=os.environ.get("VERTEXKIT_RELEASE_COMMIT") or None,
        )
    except GitError as exc:
        raise SystemExit(
            f"VERTEXKIT_RELEASE_COMMIT is not set and {exc}: set it to the commit the templates "
            "were published from"
        ) from None
    except (ConfigError, CatalogError, ValueError) as exc:
        raise SystemExit(f"the submission service cannot start: {exc}") from None


# ASGI ----------------------------------------------------------------------------------------

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


def asgi(service: Service) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    """An ASGI application around ``service`` (uvicorn: Cloud Run and ``invoke serve``).

    The body is read up to ``service.max_body_bytes`` and no further; the handler runs in a
    worker thread, as it may wait for the orchestrator.
    """

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["type"] != "http":
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        response = await _read_and_handle(service, scope, headers, receive)
        await send(
            {
                "type": "http.response.start",
                "status": response.status,
                "headers": _headers(response),
            }
        )
        await send({"type": "http.response.body", "body": response.encoded()})

    return app


async def _read_and_handle(
    service: Service, scope: Scope, headers: dict[str, str], receive: Receive
) -> Response:
    limit = service.max_body_bytes
    declared = headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        return too_large(limit).response()
    chunks, size = [], 0
    more = True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return too_large(limit).response()
        chunks.append(chunk)
        more = message.get("more_body", False)
    request = Request(scope["method"], scope["path"], headers, b"".join(chunks))
    return await asyncio.to_thread(service.handle, request)


def _headers(response: Response) -> list[tuple[bytes, bytes]]:
    content_type = response.content_type
    if content_type.startswith("text/"):
        content_type += "; charset=utf-8"
    pairs = [("content-type", content_type), *response.headers.items()]
    return [(k.encode("latin-1"), v.encode("latin-1")) for k, v in pairs]


# Flask (Cloud Functions 2nd gen, functions-framework) -----------------------------------------


def flask_response(service: Service, request: Any) -> tuple[bytes, int, dict[str, str]]:
    """Handle a Flask request (what functions-framework passes to an HTTP function)."""
    limit = service.max_body_bytes
    if (request.content_length or 0) > limit:
        response = too_large(limit).response()
    else:
        body = request.stream.read(limit + 1)
        if len(body) > limit:
            response = too_large(limit).response()
        else:
            headers = {k.lower(): v for k, v in request.headers.items()}
            response = service.handle(Request(request.method, request.path, headers, body))
    return response.encoded(), response.status, dict(_text_headers(response))


def _text_headers(response: Response) -> list[tuple[str, str]]:
    return [(k.decode("latin-1"), v.decode("latin-1")) for k, v in _headers(response)]


def main() -> None:
    """Serve :func:`from_environment` with uvicorn on ``$PORT`` (Cloud Run's port, 8080)."""
    import uvicorn

    service = from_environment()
    port = int(os.environ.get("PORT") or 8080)
    uvicorn.run(asgi(service), host="0.0.0.0", port=port, log_level="warning", access_log=False)
