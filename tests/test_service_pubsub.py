"""A real push from the Pub/Sub emulator to the running service, which submits the run to a
recording server playing Vertex AI: one message, one run.

Skipped, saying why, where the emulator (gcloud's pubsub-emulator component) or Java is missing.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.fake_backends import FakeVertex
from tests.recording_server import RecordingServer
from tests.service_support import free_port, make_project, serving
from vertexkit.service.server import asgi, create_service

PROJECT = "emulated-project"


def _emulator() -> Path | None:
    gcloud = shutil.which("gcloud")
    roots = [Path("/usr/lib/google-cloud-sdk")]
    if gcloud:
        roots.insert(0, Path(os.path.realpath(gcloud)).parent.parent)
    for root in roots:
        binary = root / "platform" / "pubsub-emulator" / "bin" / "cloud-pubsub-emulator"
        if binary.is_file():
            return binary
    return None


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[str]:
    binary = _emulator()
    if binary is None:
        pytest.skip(
            "the Pub/Sub emulator is not installed (gcloud components install pubsub-emulator)"
        )
    if shutil.which("java") is None:
        pytest.skip("the Pub/Sub emulator needs Java, and java is not on PATH")
    port = free_port()
    log = (tmp_path / "emulator.log").open("w")
    process = subprocess.Popen(
        [str(binary), "--host=127.0.0.1", f"--port={port}"],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                requests.get(f"{url}/v1/projects/{PROJECT}/topics", timeout=1)
                break
            except (requests.ConnectionError, requests.Timeout):
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(
                        f"the emulator did not start: {(tmp_path / 'emulator.log').read_text()}"
                    )
                time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


def test_a_push_from_the_emulator_starts_exactly_one_run(
    tmp_path: Path,
    emulator: str,
    recording_server: RecordingServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    root = make_project(tmp_path / "project")
    monkeypatch.setenv("VERTEXKIT_NO_AUTH", "1")
    monkeypatch.setenv("VERTEXKIT_ENDPOINT_AIPLATFORM", recording_server.url)
    fake = FakeVertex(recording_server, "acme-ml-dev", "europe-west4")
    service = create_service(root, "dev")
    with serving(asgi(service)) as url:
        topic = f"projects/{PROJECT}/topics/submit"
        subscription = f"projects/{PROJECT}/subscriptions/submit-push"
        assert requests.put(f"{emulator}/v1/{topic}", json={}, timeout=10).ok
        created = requests.put(
            f"{emulator}/v1/{subscription}",
            json={"topic": topic, "pushConfig": {"pushEndpoint": f"{url}/pubsub/push"}},
            timeout=10,
        )
        assert created.ok, created.text
        payload = {"pipeline": "scoring", "parameters": {"threshold": 0.125}, "labels": {"by": "t"}}
        data = base64.b64encode(json.dumps(payload).encode()).decode()
        published = requests.post(
            f"{emulator}/v1/{topic}:publish", json={"messages": [{"data": data}]}, timeout=10
        )
        assert published.ok, published.text
        deadline = time.monotonic() + 20
        while not fake.jobs and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(2)  # a redelivery, had the push not been acknowledged, would come now
    assert len(fake.jobs) == 1, fake.jobs
    [job] = fake.jobs
    assert job["runtimeConfig"]["parameterValues"] == {"threshold": 0.125}
    assert job["labels"]["by"] == "t" and job["labels"]["idempotency-key"].startswith("k")
    [submitted] = [
        r
        for r in recording_server.requests
        if r.method == "POST" and r.path.endswith("/pipelineJobs")
    ]
    assert submitted.json["templateUri"].endswith("/demo-scoring/" + service.backend.release.commit)
