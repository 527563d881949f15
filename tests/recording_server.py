"""A local HTTP server that records every request and answers from a route table.

Tests point vertexkit's endpoints at it (VERTEXKIT_ENDPOINT_<SERVICE>=server.url) and then
assert on the recorded requests: the network boundary, never vertexkit's own code.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


Answer = tuple[int, Any]  # status and JSON body (None for an empty body)
Handler = Callable[[Recorded], Answer]


@dataclass
class RecordingServer:
    url: str = ""
    requests: list[Recorded] = field(default_factory=list)
    routes: list[tuple[str, re.Pattern[str], Answer | Handler]] = field(default_factory=list)

    def route(self, method: str, path_regex: str, answer: Answer | Handler) -> None:
        """Answer requests whose method and path (no query) match; later routes win."""
        self.routes.insert(0, (method, re.compile(path_regex), answer))

    def answer(self, request: Recorded) -> Answer:
        for method, pattern, answer in self.routes:
            if method == request.method and pattern.fullmatch(request.path):
                return answer(request) if callable(answer) else answer
        return 404, {"error": {"code": 404, "message": f"no route for {request.path}"}}


@pytest.fixture
def recording_server() -> Iterator[RecordingServer]:
    server = RecordingServer()

    class Handler(BaseHTTPRequestHandler):
        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            parts = urlsplit(self.path)
            request = Recorded(
                method=self.command,
                path=parts.path,
                query=parse_qs(parts.query),
                headers={k.lower(): v for k, v in self.headers.items()},
                body=self.rfile.read(length) if length else b"",
            )
            server.requests.append(request)
            status, body = server.answer(request)
            payload = b"" if body is None else json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

        def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(
        target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        yield server
    finally:
        httpd.shutdown()
        httpd.server_close()
