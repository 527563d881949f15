"""The drift step's retraining trigger: one training run per breach within the cool-down.

Requests go to a local recording server that plays Vertex AI (pipeline jobs, experiments and,
for the Vertex AI Model Registry, a model whose labels are updated with etags).
"""

from __future__ import annotations

import io
import json
import os
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pandas as pd
import pytest

from tests.fixture_project import copy_project
from tests.recording_server import Recorded, RecordingServer
from vertexkit.gcp.model_registry import RETRAIN_LABEL
from vertexkit.gcp.monitoring import BREACH_EVENT, monitor_drift, trigger_retraining
from vertexkit.local.drift import DriftError, reference_statistics
from vertexkit.project.config import ConfigError, config_from_parameter, load_config

PARENT = "/v1/projects/acme-ml-dev/locations/europe-west4"
JOB = "projects/acme-ml-dev/locations/europe-west4/pipelineJobs/training-1"
T0 = datetime(2026, 12, 1, 8, 0, tzinfo=timezone.utc)
TRAIN = pd.DataFrame({"x": [float(i) for i in range(100)], "colour": ["a", "b"] * 50})
DRIFTED = pd.DataFrame({"x": [float(i) for i in range(80, 180)], "colour": ["a", "b"] * 50})


@pytest.fixture
def vertex(recording_server: RecordingServer, monkeypatch: pytest.MonkeyPatch) -> RecordingServer:
    """Vertex AI Pipelines on the recording server: runs are accepted and start at once."""
    monkeypatch.setenv("VERTEXKIT_ENDPOINT_AIPLATFORM", recording_server.url)
    monkeypatch.setenv("VERTEXKIT_NO_AUTH", "1")
    for name in [n for n in os.environ if n.startswith("VERTEXKIT__")]:
        monkeypatch.delenv(name)
    recording_server.route("POST", f"{PARENT}/metadataStores", (200, {}))
    recording_server.route("POST", f"{PARENT}/metadataStores/default/contexts", (200, {}))
    recording_server.route("POST", f"{PARENT}/pipelineJobs", (200, {"name": JOB}))
    run_context = {"jobDetail": {"pipelineRunContext": {"name": "contexts/run-1"}}}
    recording_server.route("GET", f"/v1/{JOB}", (200, run_context))
    recording_server.route("POST", f"{PARENT}/metadataStores/default/contexts/.*", (200, {}))
    return recording_server


def monitoring_parameter(tmp_path: Path, *, retrain: bool) -> str:
    project = copy_project(tmp_path / "project")
    environ = {"VERTEXKIT__MONITORING__RETRAIN_ON_DRIFT": "true" if retrain else "false"}
    return load_config(project, "dev", environ=environ).monitoring_parameter()


def reference_file(tmp_path: Path) -> Path:
    path = tmp_path / "statistics.json"
    path.write_text(json.dumps(reference_statistics(TRAIN)))
    return path


def submits(server: RecordingServer) -> list[Recorded]:
    return [r for r in server.requests if r.method == "POST" and r.path.endswith("/pipelineJobs")]


def check(tmp_path: Path, frame: pd.DataFrame, monitoring: str, now: datetime, **kwargs) -> tuple:
    out = io.StringIO()
    result = monitor_drift(
        frame,
        reference_file(tmp_path),
        monitoring,
        model_name="demo-model",
        model_registry=kwargs.pop("registry", str(tmp_path / "registry")),
        model_version=1.0,
        run_name="demo-prediction-1",
        report_path=tmp_path / "report.html",
        retrain_template="demo-training",
        now=now,
        out=out,
    )
    return result, out.getvalue()


def test_one_training_run_per_breach_within_the_cool_down(
    tmp_path: Path, vertex: RecordingServer
) -> None:
    monitoring = monitoring_parameter(tmp_path, retrain=True)
    first, log = check(tmp_path, DRIFTED, monitoring, T0)
    assert first.breached and first.retrain_submitted
    (submit,) = submits(vertex)
    job = submit.json
    assert job["templateUri"].endswith("/demo-pipelines/demo-training/latest")
    assert job["labels"]["environment"] == "dev" and job["displayName"] == "training"
    assert first.metrics()["retrain_submitted"] == 1.0
    # The one structured line the log-based metric counts.
    (line,) = [json.loads(x) for x in log.splitlines() if BREACH_EVENT in x]
    assert line["event"] == BREACH_EVENT and line["severity"] == "WARNING"
    assert line["model_version"] == "1" and line["environment"] == "dev"
    assert line["project"] == "demo"  # the alert's log filter selects the project by it
    assert set(line["breaches"]) == {"x"}

    for later in (timedelta(hours=1), timedelta(hours=23, minutes=59)):
        again, log = check(tmp_path, DRIFTED, monitoring, T0 + later)
        assert again.breached and not again.retrain_submitted
        assert "cool-down since 2026-12-01T08:00:00+00:00" in again.retraining
    assert len(submits(vertex)) == 1
    assert "cool-down" in (tmp_path / "report.html").read_text()

    after, _ = check(tmp_path, DRIFTED, monitoring, T0 + timedelta(hours=24))
    assert after.retrain_submitted
    assert len(submits(vertex)) == 2
    marker = json.loads((tmp_path / "registry" / "demo-model" / "retrain.json").read_text())
    assert marker["last_retrain"] == "2026-12-02T08:00:00+00:00"


def test_no_request_when_retraining_is_off_or_nothing_drifted(
    tmp_path: Path, vertex: RecordingServer
) -> None:
    off, log = check(tmp_path, DRIFTED, monitoring_parameter(tmp_path, retrain=False), T0)
    assert off.breached and not off.retrain_submitted
    assert "retraining off for environment 'dev'" in off.retraining
    assert BREACH_EVENT in log  # the breach is still logged, so it still alerts
    quiet, log = check(
        tmp_path / "q", TRAIN, monitoring_parameter(tmp_path / "q", retrain=True), T0
    )
    assert not quiet.breached and BREACH_EVENT not in log
    assert vertex.requests == []
    assert not (tmp_path / "registry").exists()


def test_local_runs_claim_the_cool_down_but_only_print_the_request(
    tmp_path: Path, vertex: RecordingServer
) -> None:
    project = copy_project(tmp_path / "project")
    environ = {"VERTEXKIT__MONITORING__RETRAIN_ON_DRIFT": "true"}
    monitoring = load_config(project, None, environ=environ).monitoring_parameter()
    result, log = check(tmp_path, DRIFTED, monitoring, T0)
    assert not result.retrain_submitted
    assert "not submitted from a local run" in result.retraining
    assert "POST" in log and "/pipelineJobs" in log and "(dry run: not sent)" in log
    assert vertex.requests == []


class ModelWithEtag:
    """The Models API of one model: labels changed only with the current etag (else 409)."""

    def __init__(self, parties: int) -> None:
        self.labels: dict[str, str] = {"team": "ml"}
        self.version = 1
        self.lock = threading.Lock()
        self.barrier = threading.Barrier(parties) if parties > 1 else None

    def get(self, _: Recorded) -> tuple[int, dict]:
        with self.lock:
            answer = {"name": "m", "labels": dict(self.labels), "etag": f"e{self.version}"}
        if self.barrier:  # every claimant reads before any writes: a true race
            self.barrier.wait(timeout=10)
        return 200, answer

    def patch(self, request: Recorded) -> tuple[int, dict]:
        with self.lock:
            if request.json.get("etag") != f"e{self.version}":
                return 409, {"error": {"code": 409, "status": "ABORTED", "message": "etag"}}
            self.labels = request.json["labels"]
            self.version += 1
            return 200, {"labels": self.labels}


def test_concurrent_breaches_start_one_run_with_the_vertex_registry(
    tmp_path: Path, vertex: RecordingServer
) -> None:
    model = ModelWithEtag(parties=2)
    vertex.route("GET", f"{PARENT}/models/demo-model", model.get)
    vertex.route("PATCH", f"{PARENT}/models/demo-model", model.patch)
    config = config_from_parameter(monitoring_parameter(tmp_path, retrain=True))
    outcomes: list[tuple[bool, str]] = []

    def claim() -> None:
        outcomes.append(
            trigger_retraining(
                config,
                model_name="demo-model",
                model_registry="vertex://acme-ml-dev/europe-west4",
                template="demo-training",
                now=T0,
                out=io.StringIO(),
            )
        )

    threads = [threading.Thread(target=claim) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(submitted for submitted, _ in outcomes) == [False, True]
    assert any("a concurrent run claimed it" in text for _, text in outcomes)
    assert len(submits(vertex)) == 1
    patches = [r for r in vertex.requests if r.method == "PATCH"]
    assert [p.query["updateMask"] for p in patches] == [["labels"], ["labels"]]
    assert model.labels == {"team": "ml", RETRAIN_LABEL: str(int(T0.timestamp()))}

    # A later breach within the cool-down reads the label and sends nothing more.
    model.barrier = None
    submitted, text = trigger_retraining(
        config,
        model_name="demo-model",
        model_registry="vertex://acme-ml-dev/europe-west4",
        now=T0 + timedelta(hours=2),
        out=io.StringIO(),
    )
    assert not submitted and "cool-down" in text
    assert len([r for r in vertex.requests if r.method == "PATCH"]) == 2
    assert len(submits(vertex)) == 1


def test_bad_monitoring_parameter_and_missing_reference(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="pipeline parameter monitoring: not the JSON"):
        config_from_parameter("")
    bad = json.dumps({"environment": "dev", "config": {"name": "x"}})
    with pytest.raises(ConfigError, match="naming_prefix: required setting is missing"):
        config_from_parameter(bad)
    monitoring = monitoring_parameter(tmp_path, retrain=False)
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(DriftError, match=r"broken.json: cannot read reference statistics"):
        monitor_drift(
            TRAIN, broken, monitoring, model_name="demo-model", model_registry=str(tmp_path)
        )


def test_a_champion_without_reference_statistics_is_scored_and_said_unchecked(
    tmp_path: Path,
) -> None:
    """A champion registered before training stored statistics (an upgraded project) must not
    fail every prediction run: the run says drift was not checked, and why."""
    out, report = io.StringIO(), tmp_path / "report.html"
    check = monitor_drift(
        TRAIN,
        tmp_path / "absent.json",
        monitoring_parameter(tmp_path, retrain=True),
        model_name="demo-model",
        model_version=3.0,
        model_registry=str(tmp_path),
        report_path=report,
        out=out,
    )
    assert not check.result.breached and not check.retrain_submitted
    assert check.metrics()["features_checked"] == 0
    assert "drift not checked: the champion demo-model 3 has no reference statistics" in (
        out.getvalue()
    )
    assert BREACH_EVENT not in out.getvalue()
    assert "has no reference statistics" in report.read_text()
    assert not (tmp_path / "demo-model" / "retrain.json").exists(), "no retraining claimed"
