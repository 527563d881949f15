"""Tests for vertexkit.gcp.model_registry: the Vertex AI Model Registry at the HTTP boundary.

A small in-memory fake of the Models API (upload LRO, get by version or alias,
mergeVersionAliases) answers on the recording server; the tests assert the requests sent.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from tests.recording_server import Recorded, RecordingServer
from vertexkit.gcp import model_registry as vertex_models
from vertexkit.gcp.model_registry import VertexModelRegistry, open_registry
from vertexkit.local.registry import LocalModelRegistry
from vertexkit.steps.http import CloudError

PROJECT, REGION, NAME = "my-project", "europe-west4", "churn-model"
IMAGE = "europe-docker.pkg.dev/vertex-ai/prediction/sklearn-cpu.1-5:latest"
LOCATION = f"/v1/projects/{PROJECT}/locations/{REGION}"
MODEL = f"projects/{PROJECT}/locations/{REGION}/models/{NAME}"


class FakeModels:
    """Just enough of projects.locations.models: versions, aliases, upload operations."""

    def __init__(self, server: RecordingServer, polls_before_done: int = 0) -> None:
        self.models: dict[str, dict[str, dict[str, Any]]] = {}  # model id -> version id -> Model
        self.operations: dict[str, dict[str, Any]] = {}
        self.polls_before_done = polls_before_done
        self.fail_upload: dict[str, Any] | None = None
        models = re.escape(LOCATION) + r"/models"
        server.route("POST", models + r":upload", self.upload)
        server.route("GET", models + r"/([^/@:]+)(?:@([^/:]+))?", self.get)
        server.route("POST", models + r"/([^/@:]+)@([^/:]+):mergeVersionAliases", self.merge)
        operations = r"/v1/projects/[^/]+/locations/[^/]+/models/[^/]+/operations/\d+"
        server.route("GET", operations, self.operation)

    def upload(self, request: Recorded) -> tuple[int, Any]:
        body = request.json
        if "parentModel" in body:
            model_id = body["parentModel"].rsplit("/", 1)[1]
            if model_id not in self.models:
                return 404, {"error": {"code": 404, "status": "NOT_FOUND"}}
        else:
            model_id = body["modelId"]
            if model_id in self.models:
                return 409, {"error": {"code": 409, "status": "ALREADY_EXISTS"}}
            self.models[model_id] = {}
        versions = self.models[model_id]
        version_id = str(len(versions) + 1)
        versions[version_id] = {
            **body["model"],
            "name": f"projects/123456/locations/{REGION}/models/{model_id}",
            "versionId": version_id,
            "versionAliases": ["default"] if version_id == "1" else [],
            "versionCreateTime": f"2024-05-0{version_id}T10:00:00.123456789Z",
        }
        model_name = versions[version_id]["name"]  # the API answers with the project number
        name = f"{model_name}/operations/{len(self.operations) + 1}"
        response = {
            "@type": "type.googleapis.com/google.cloud.aiplatform.v1.UploadModelResponse",
            "model": model_name,
            "modelVersionId": version_id,
        }
        self.operations[name] = {"polls": 0, "response": response}
        return 200, {"name": name, "metadata": {"@type": "UploadModelOperationMetadata"}}

    def operation(self, request: Recorded) -> tuple[int, Any]:
        name = request.path.removeprefix("/v1/")
        state = self.operations[name]
        state["polls"] += 1
        if state["polls"] <= self.polls_before_done:
            return 200, {"name": name, "done": False}
        if self.fail_upload:
            return 200, {"name": name, "done": True, "error": self.fail_upload}
        return 200, {"name": name, "done": True, "response": state["response"]}

    def _find(self, model_id: str, ref: str | None) -> dict[str, Any] | None:
        versions = self.models.get(model_id, {})
        if ref is None or not ref.isdigit():
            alias = ref or "default"
            return next((v for v in versions.values() if alias in v["versionAliases"]), None)
        return versions.get(ref)

    def get(self, request: Recorded) -> tuple[int, Any]:
        model_id, ref = re.search(r"/models/([^/@:]+)(?:@([^/:]+))?$", request.path).groups()
        found = self._find(model_id, ref)
        if found is None:
            return 404, {"error": {"code": 404, "message": "not found", "status": "NOT_FOUND"}}
        return 200, found

    def merge(self, request: Recorded) -> tuple[int, Any]:
        model_id, ref = re.search(r"/models/([^/@:]+)@([^/:]+):", request.path).groups()
        target = self._find(model_id, ref)
        if target is None:
            return 404, {"error": {"code": 404, "status": "NOT_FOUND"}}
        for alias in request.json["versionAliases"]:
            if alias.startswith("-"):
                if alias == "-default":
                    return 400, {"error": {"code": 400, "message": "default must stay"}}
                target["versionAliases"].remove(alias[1:])
                continue
            for version in self.models[model_id].values():  # an alias names one version
                if alias in version["versionAliases"]:
                    version["versionAliases"].remove(alias)
            target["versionAliases"].append(alias)
        return 200, target

    def default_version(self, model_id: str = NAME) -> str:
        found = self._find(model_id, None)
        assert found is not None
        return found["versionId"]


@pytest.fixture
def fake(recording_server: RecordingServer, monkeypatch: pytest.MonkeyPatch) -> FakeModels:
    monkeypatch.setenv("VERTEXKIT_ENDPOINT_AIPLATFORM", recording_server.url)
    monkeypatch.setenv("VERTEXKIT_NO_AUTH", "1")
    return FakeModels(recording_server)


@pytest.fixture
def registry(fake: FakeModels) -> VertexModelRegistry:
    return VertexModelRegistry(PROJECT, REGION, NAME, serving_image=IMAGE)


def _calls(server: RecordingServer) -> list[str]:
    """Method and path of each request, without /v1/projects/*/locations/*."""
    return [
        f"{r.method} {re.sub(r'^/v1/projects/[^/]+/locations/[^/]+', '', r.path)}"
        for r in server.requests
    ]


def _register(registry: VertexModelRegistry, run: int, **metrics: float) -> Any:
    metric, direction = ("rmse", "minimize") if "rmse" in metrics else ("accuracy", "maximize")
    return registry.register(
        f"gs://bucket/root/run-{run}/model",
        metrics,
        metric=metric,
        direction=direction,
        source=f"run-{run}",
    )


def test_first_registration_creates_the_model(
    registry: VertexModelRegistry, recording_server: RecordingServer
) -> None:
    result = registry.register(
        "/gcs/bucket/root/run-1/model/",
        {"accuracy": 0.95, "f1": 0.9},
        metric="accuracy",
        direction="maximize",
        source="run-1",
    )

    assert result.version == 1
    assert result.is_champion
    assert (result.previous_champion, result.previous_value, result.value) == (None, None, 0.95)
    assert result.reason == "version 1 is the first version: champion"
    assert result.uri == "gs://bucket/root/run-1/model"
    assert result.path == Path("/gcs/bucket/root/run-1/model")
    assert result.resource_name == f"{MODEL}@1"
    assert _calls(recording_server) == [
        f"GET /models/{NAME}@default",
        "POST /models:upload",
        f"GET /models/{NAME}/operations/1",
    ]
    upload = recording_server.requests[1].json
    assert upload["modelId"] == NAME
    assert "parentModel" not in upload
    model = upload["model"]
    assert model["displayName"] == NAME
    assert model["artifactUri"] == "gs://bucket/root/run-1/model"
    assert model["containerSpec"] == {"imageUri": IMAGE}
    assert "versionAliases" not in model
    assert json.loads(model["versionDescription"]) == {
        "metrics": {"accuracy": 0.95, "f1": 0.9},
        "source": "run-1",
    }
    champion = registry.champion()
    assert champion is not None
    assert (champion.version, champion.is_champion, champion.source) == (1, True, "run-1")
    assert champion.metrics == {"accuracy": 0.95, "f1": 0.9}
    assert champion.created == datetime(2024, 5, 1, 10, 0, 0, 123456, tzinfo=timezone.utc)
    assert champion.uri == "gs://bucket/root/run-1/model"


def test_better_challenger_becomes_default(
    registry: VertexModelRegistry, fake: FakeModels, recording_server: RecordingServer
) -> None:
    _register(registry, 1, accuracy=0.9561)
    recording_server.requests.clear()

    result = _register(registry, 2, accuracy=0.9737)

    assert result.version == 2
    assert result.is_champion
    assert (result.previous_champion, result.previous_value) == (1, 0.9561)
    assert result.reason == "version 2 beats champion version 1 on accuracy: 0.9737 > 0.9561"
    assert _calls(recording_server) == [
        f"GET /models/{NAME}@default",
        "POST /models:upload",
        f"GET /models/{NAME}/operations/2",
        f"GET /models/{NAME}@default",
        f"POST /models/{NAME}@2:mergeVersionAliases",
    ]
    upload = recording_server.requests[1].json
    assert upload["parentModel"] == MODEL
    assert "modelId" not in upload
    assert upload["model"]["artifactUri"] == "gs://bucket/root/run-2/model"
    assert json.loads(upload["model"]["versionDescription"])["metrics"] == {"accuracy": 0.9737}
    assert recording_server.requests[-1].json == {"versionAliases": ["default"]}
    assert fake.default_version() == "2"
    champion = registry.champion()
    assert champion is not None
    assert (champion.version, champion.source) == (2, "run-2")


def test_worse_challenger_is_uploaded_but_default_stays(
    registry: VertexModelRegistry, fake: FakeModels, recording_server: RecordingServer
) -> None:
    _register(registry, 1, accuracy=0.9561)

    result = _register(registry, 2, accuracy=0.95)

    assert result.version == 2
    assert not result.is_champion
    assert result.reason == (
        "version 2 does not beat champion version 1 on accuracy: 0.9500 <= 0.9561; "
        "champion unchanged"
    )
    assert not any("mergeVersionAliases" in call for call in _calls(recording_server))
    assert set(fake.models[NAME]) == {"1", "2"}
    assert fake.default_version() == "1"


def test_tie_keeps_the_champion(
    registry: VertexModelRegistry, fake: FakeModels, recording_server: RecordingServer
) -> None:
    _register(registry, 1, accuracy=0.9)

    result = _register(registry, 2, accuracy=0.9)

    assert not result.is_champion
    assert "0.9000 <= 0.9000; champion unchanged" in result.reason
    assert not any("mergeVersionAliases" in call for call in _calls(recording_server))
    assert fake.default_version() == "1"


def test_minimize(registry: VertexModelRegistry, fake: FakeModels) -> None:
    _register(registry, 1, rmse=0.5)
    worse = _register(registry, 2, rmse=0.6)
    better = _register(registry, 3, rmse=0.4)

    assert not worse.is_champion
    assert "0.6000 >= 0.5000" in worse.reason
    assert better.is_champion
    assert better.reason == "version 3 beats champion version 1 on rmse: 0.4000 < 0.5000"
    assert fake.default_version() == "3"


def test_upload_operation_is_polled_until_done(
    registry: VertexModelRegistry,
    fake: FakeModels,
    recording_server: RecordingServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(vertex_models, "POLL_SECONDS", 0.01)
    fake.polls_before_done = 2

    assert _register(registry, 1, accuracy=0.9).version == 1
    assert _calls(recording_server).count(f"GET /models/{NAME}/operations/1") == 3


def test_failed_upload_operation_names_the_error(
    registry: VertexModelRegistry, fake: FakeModels
) -> None:
    fake.fail_upload = {"code": 3, "message": "artifactUri holds no model.joblib"}

    with pytest.raises(CloudError, match=r"operations/1 failed: artifactUri holds no model"):
        _register(registry, 1, accuracy=0.9)


def test_concurrent_first_upload_becomes_a_version(
    registry: VertexModelRegistry, fake: FakeModels, recording_server: RecordingServer
) -> None:
    """Another run creates the model between our champion lookup and our upload."""
    _register(registry, 1, accuracy=0.8)
    recording_server.requests.clear()
    lookups = iter([(404, {"error": {"code": 404, "status": "NOT_FOUND"}})])
    recording_server.route(
        "GET",
        re.escape(f"{LOCATION}/models/{NAME}@default"),
        lambda request: next(lookups, None) or fake.get(request),
    )

    result = _register(registry, 2, accuracy=0.9)

    assert _calls(recording_server)[:3] == [
        f"GET /models/{NAME}@default",
        "POST /models:upload",
        "POST /models:upload",
    ]
    assert recording_server.requests[1].json["modelId"] == NAME
    assert recording_server.requests[2].json["parentModel"] == MODEL
    assert (result.version, result.is_champion, result.previous_champion) == (2, True, 1)
    assert fake.default_version() == "2"


def test_champion_without_the_metric_fails_before_uploading(
    registry: VertexModelRegistry, fake: FakeModels, recording_server: RecordingServer
) -> None:
    _register(registry, 1, accuracy=0.9)
    recording_server.requests.clear()

    with pytest.raises(ValueError, match=r"champion version 1 has no metric 'rmse'.*accuracy"):
        _register(registry, 2, rmse=0.1)
    assert _calls(recording_server) == [f"GET /models/{NAME}@default"]

    fake.models[NAME]["1"]["versionDescription"] = "edited by hand in the console"
    champion = registry.champion()
    assert champion is not None
    assert (champion.metrics, champion.source) == ({}, "")
    with pytest.raises(ValueError, match=r"champion version 1 has no metric 'accuracy'.*none"):
        _register(registry, 2, accuracy=0.99)


def test_bad_requests_send_nothing(
    registry: VertexModelRegistry, recording_server: RecordingServer
) -> None:
    bad: list[tuple[Any, dict[str, float], str, str, str]] = [
        ("gs://b/m", {"accuracy": 0.9}, "roc_auc", "maximize", r"'roc_auc' is not in the metrics"),
        ("gs://b/m", {"accuracy": 0.9}, "accuracy", "max", r"invalid direction 'max'"),
        ("gs://b/m", {"accuracy": float("inf")}, "accuracy", "maximize", r"must be finite"),
    ]
    for path in ("build/model", "/tmp/model", Path("/tmp/model"), "gs://", "/gcs/", "/gcs"):
        bad.append((path, {"accuracy": 0.9}, "accuracy", "maximize", r"not in Cloud Storage"))
    for path, metrics, metric, direction, message in bad:
        with pytest.raises(ValueError, match=message):
            registry.register(path, metrics, metric=metric, direction=direction)  # type: ignore[arg-type]
    assert recording_server.requests == []


def test_api_errors_name_the_step(
    registry: VertexModelRegistry, recording_server: RecordingServer
) -> None:
    recording_server.route(
        "GET", r".*@default", (403, {"error": {"code": 403, "message": "Permission denied"}})
    )
    with pytest.raises(CloudError, match=r"get the champion: GET .*@default answered 403"):
        registry.champion()


# --------------------------------------------------------------------------- copy_champion_to


@pytest.fixture
def gcs_bucket(gcs_emulator: str) -> Any:
    """A bucket in the emulator, as a storage client object."""
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    client = storage.Client(project="test-project", credentials=AnonymousCredentials())
    return client.create_bucket("models")


def test_copy_champion_to(registry: VertexModelRegistry, gcs_bucket: Any, tmp_path: Path) -> None:
    for run in (1, 2):
        gcs_bucket.blob(f"root/run-{run}/model/model.joblib").upload_from_string(f"m{run}")
        gcs_bucket.blob(f"root/run-{run}/model/assets/vocab.txt").upload_from_string("a\nb\n")
    gcs_bucket.blob("root/run-2/model-other/x").upload_from_string("not this model")
    gcs_bucket.blob("root/run-2/model/empty-dir/").upload_from_string("")
    with pytest.raises(LookupError, match=r"no champion for model 'churn-model'.*training"):
        registry.copy_champion_to(tmp_path / "out")
    for run, accuracy in ((1, 0.8), (2, 0.9)):
        registry.register(
            f"gs://models/root/run-{run}/model",
            {"accuracy": accuracy},
            metric="accuracy",
            direction="maximize",
        )
    dest = tmp_path / "outputs" / "model"

    copied = registry.copy_champion_to(dest)

    assert (copied.version, copied.is_champion) == (2, True)
    assert sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file()) == [
        "assets/vocab.txt",
        "model.joblib",
    ]
    assert (dest / "model.joblib").read_text() == "m2"
    assert (dest / "assets" / "vocab.txt").read_text() == "a\nb\n"


def test_copy_champion_without_files(
    registry: VertexModelRegistry, gcs_bucket: Any, tmp_path: Path
) -> None:
    registry.register(
        "gs://models/nothing-here", {"accuracy": 0.8}, metric="accuracy", direction="maximize"
    )
    with pytest.raises(FileNotFoundError, match=r"no files under gs://models/nothing-here"):
        registry.copy_champion_to(tmp_path / "out")


# --------------------------------------------------------------------------- open_registry


@pytest.mark.parametrize(
    ("uri", "project", "region"),
    [
        ("vertex://my-project/europe-west4", "my-project", "europe-west4"),
        ("vertex://acme-ml-prod-123/us-central1/", "acme-ml-prod-123", "us-central1"),
        ("vertex://proj-1/northamerica-northeast1", "proj-1", "northamerica-northeast1"),
    ],
)
def test_open_vertex_registry(uri: str, project: str, region: str) -> None:
    registry = open_registry(uri, NAME, serving_image=IMAGE)

    assert isinstance(registry, VertexModelRegistry)
    assert (registry.project, registry.region, registry.model_name) == (project, region, NAME)
    assert registry.serving_image == IMAGE


def test_open_local_registry_ignores_vertex_options(tmp_path: Path) -> None:
    registry = open_registry(str(tmp_path / "registry"), NAME, serving_image=IMAGE)

    assert isinstance(registry, LocalModelRegistry)
    assert registry.root == tmp_path / "registry"


@pytest.mark.parametrize(
    "uri",
    [
        "vertex://",
        "vertex://my-project",
        "vertex://my-project/",
        "vertex:///europe-west4",
        "vertex://my-project/europe-west4/extra",
        "vertex://My-Project/europe-west4",
        "vertex://my-project/EUROPE",
        "vertex:my-project/europe-west4",
        "vertex://my-project/europe-west4?x=1",
    ],
)
def test_bad_vertex_uri(uri: str) -> None:
    with pytest.raises(ValueError, match=re.escape(repr(uri)) + r".*vertex://PROJECT/REGION"):
        open_registry(uri, NAME, serving_image=IMAGE)


def test_vertex_registry_checks_its_arguments() -> None:
    with pytest.raises(ValueError, match=r"invalid model name 'Churn'"):
        VertexModelRegistry(PROJECT, REGION, "Churn", serving_image=IMAGE)
    reader = open_registry("vertex://my-project/europe-west4", NAME)  # enough to read
    assert isinstance(reader, VertexModelRegistry)
    with pytest.raises(ValueError, match=r"serving_image is required to register"):
        reader.register("gs://b/m", {"accuracy": 0.9}, metric="accuracy", direction="maximize")
