"""gcp-storage-emulator, in memory, for tests that read or write Cloud Storage."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
import requests

PROJECT = "test-project"


@pytest.fixture
def gcs_emulator(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Start the emulator, point the storage client and vertexkit at it, yield its URL."""
    from gcp_storage_emulator.server import create_server

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = create_server("127.0.0.1", port, in_memory=True)
    server.start()
    url = f"http://127.0.0.1:{port}"
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", url)
    monkeypatch.setenv("VERTEXKIT_ENDPOINT_STORAGE", url)
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", PROJECT)
    try:
        yield url
    finally:
        server.stop()


def create_bucket(emulator_url: str, name: str) -> None:
    response = requests.post(f"{emulator_url}/storage/v1/b?project={PROJECT}", json={"name": name})
    response.raise_for_status()
