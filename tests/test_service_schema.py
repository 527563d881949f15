"""Property-based tests of the submission service from its own OpenAPI schema (schemathesis).

Every operation gets requests generated from the schema, valid ones and (negative mode) ones
that break it, sent in-process to the ASGI app with the dry-run backend: no answer may be a
5xx, and every answer must match the schema (status code, content type, body). Each
operation's request count is checked when its test ends; together they are over 500.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from tests.service_support import make_project
from vertexkit.service.server import asgi, create_service

sent: Counter[str] = Counter()
answered: dict[str, Counter[int]] = {}


def counting(app: Any) -> Any:
    """Counts the requests of each operation and the statuses it answered."""

    async def wrapper(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        path = scope["path"]
        if path.startswith("/pipelines/") and path.endswith("/runs"):
            operation = "POST /pipelines/{name}/runs"
        elif path.startswith("/runs/"):
            operation = "GET /runs/{run_id}"
        else:
            operation = f"{scope['method']} {path}"
        sent[operation] += 1

        async def recording(message: Any) -> None:
            if message["type"] == "http.response.start":
                answered.setdefault(operation, Counter())[message["status"]] += 1
            await send(message)

        await app(scope, receive, recording)

    return wrapper


@pytest.fixture(scope="module")
def api_schema(tmp_path_factory: pytest.TempPathFactory) -> Any:
    root = make_project(tmp_path_factory.mktemp("schema") / "project")
    app = counting(asgi(create_service(root, "dev", backend="dry-run")))
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    return schema


OPERATIONS = [
    ("POST", "/pipelines/{name}/runs", 200),
    ("POST", "/pubsub/push", 200),
    ("GET", "/runs/{run_id}", 150),
    ("GET", "/pipelines", 1),
    ("GET", "/healthz", 1),
    ("GET", "/openapi.json", 1),
    ("GET", "/docs", 1),
]
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@pytest.mark.parametrize(("method", "path", "minimum"), OPERATIONS)
def test_every_answer_matches_the_schema_and_none_is_a_5xx(
    api_schema: Any, method: str, path: str, minimum: int
) -> None:
    operation = api_schema[path][method]
    cases = st.one_of(
        operation.as_strategy(generation_mode=GenerationMode.POSITIVE),
        operation.as_strategy(generation_mode=GenerationMode.NEGATIVE),
    )
    before = sum(sent.values())

    @given(case=cases)
    @settings(
        max_examples=minimum + minimum // 4,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    def property(case: Any) -> None:
        case.call_and_validate(checks=CHECKS)

    property()
    assert sum(sent.values()) - before >= minimum, dict(sent)
    # The generated requests reach past the first checks: runs are started (dry run) and
    # refused for their parameters, not only for a wrong name or body.
    if path == "/pipelines/{name}/runs":
        assert {200, 400, 404, 422} <= set(answered[f"{method} {path}"]), answered


def test_the_operations_tested_are_every_operation_of_the_schema(api_schema: Any) -> None:
    served = {(op.ok().method.upper(), op.ok().path) for op in api_schema.get_all_operations()}
    # schemathesis leaves out the operation that serves the schema itself; it is tested above.
    assert served | {("GET", "/openapi.json")} == {(method, path) for method, path, _ in OPERATIONS}
    assert sum(minimum for *_, minimum in OPERATIONS) >= 500
