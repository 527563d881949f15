"""One conformance suite run against every orchestrator behind the Orchestrator interface.

Each orchestrator talks to a fake of its API (tests/fake_backends.py) on a local recording
server: publish, submit, follow, list and read runs, schedules, dry runs. What the suite checks
is the interface's answers, the same for both; what each sends is checked in
test_vertex/test_kfp_backend/test_publish.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import yaml

from tests.fake_backends import FakeKfp, FakeVertex
from tests.fixture_project import copy_project
from tests.recording_server import RecordingServer
from vertexkit.local.pipelines import compile_pipelines
from vertexkit.orchestrators import (
    ORCHESTRATORS,
    KubeflowPipelines,
    Orchestrator,
    ScheduleUnsupported,
    VertexPipelines,
    for_config,
)
from vertexkit.project.config import load_config
from vertexkit.project.release import Release
from vertexkit.steps import CloudError, execute

RELEASE = Release("abc123def456", ["abc123def456", "v1.0.0", "latest"])
PARAMETERS = {"n": 5, "shared_param": 1, "label": "rows", "ratio": 1.0}


@pytest.fixture(params=sorted(ORCHESTRATORS))
def kind(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def project(tmp_path: Path, kind: str, recording_server: RecordingServer) -> Path:
    root = copy_project(tmp_path / "project")
    if kind == "kfp":
        base = root / "config" / "base.yaml"
        base.write_text(
            base.read_text() + f"orchestrator: kfp\nkfp:\n  host: {recording_server.url}\n"
        )
    return root


@pytest.fixture
def orchestrator(
    project: Path, kind: str, recording_server: RecordingServer, monkeypatch: pytest.MonkeyPatch
) -> Orchestrator:
    monkeypatch.setenv("VERTEXKIT_NO_AUTH", "1")
    for service in ("AIPLATFORM", "ARTIFACTREGISTRY", "KFP_REGISTRY"):
        monkeypatch.setenv(f"VERTEXKIT_ENDPOINT_{service}", recording_server.url)
    config = load_config(project, "dev")
    if kind == "kfp":
        FakeKfp(recording_server)
    else:
        FakeVertex(recording_server, config.gcp.project_id, config.gcp.region)
    return for_config(config)


@pytest.fixture
def template(project: Path) -> Path:
    [path] = compile_pipelines(project, load_config(project), ["training"])
    return path


def _template_name(template: Path) -> str:
    return yaml.safe_load(template.read_text())["pipelineInfo"]["name"]


def _apply(steps: list) -> dict:
    return execute(steps, out=io.StringIO())


def test_for_config_returns_the_configured_orchestrator(kind: str, orchestrator: Orchestrator):
    expected = {"vertex": VertexPipelines, "kfp": KubeflowPipelines}[kind]
    assert type(orchestrator) is expected
    assert orchestrator.name == kind


def test_publish_submit_and_follow_a_run(orchestrator: Orchestrator, template: Path) -> None:
    published = orchestrator.published(
        _apply(orchestrator.plan_publish({"training": template}, RELEASE))
    )
    assert len(published) == 1 and "training" in published[0]

    steps = orchestrator.plan_submit(
        "training", PARAMETERS, RELEASE, template_name=_template_name(template)
    )
    run = orchestrator.submitted(_apply(steps))
    assert run is not None
    assert run.state == "pending" and not run.finished
    assert run.run_id and run.run_id in run.url == orchestrator.run_url(run.run_id)

    shown = io.StringIO()
    final = orchestrator.follow(run.run_id, out=shown, poll_seconds=0)
    assert (final.run_id, final.state, final.succeeded) == (run.run_id, "succeeded", True)
    assert "train" in shown.getvalue()


def test_deploy_submits_the_version_published_in_the_same_plan(
    orchestrator: Orchestrator, template: Path
) -> None:
    steps = [
        *orchestrator.plan_publish({"training": template}, RELEASE),
        *orchestrator.plan_submit(
            "training",
            PARAMETERS,
            RELEASE,
            template_name=_template_name(template),
            published_in_plan=True,
        ),
    ]
    run = orchestrator.submitted(_apply(steps))
    assert run is not None and run.state == "pending"


def test_latest_submits_the_newest_published_template(
    orchestrator: Orchestrator, template: Path
) -> None:
    """The retraining trigger runs ``latest``: the newest template, whatever its commit."""
    name = _template_name(template)
    _apply(orchestrator.plan_publish({"training": template}, RELEASE))
    latest = Release("latest", ["latest"])
    steps = orchestrator.plan_submit("training", PARAMETERS, latest, template_name=name)
    run = orchestrator.submitted(_apply(steps))
    assert run is not None and run.state == "pending"
    found = _apply(orchestrator.plan_find_published("training", latest, template_name=name))
    assert found, "latest is found once anything is published"


def test_find_published_finds_this_release_and_refuses_another(
    orchestrator: Orchestrator, template: Path
) -> None:
    name = _template_name(template)
    _apply(orchestrator.plan_publish({"training": template}, RELEASE))
    found = _apply(orchestrator.plan_find_published("training", RELEASE, template_name=name))
    assert found, "the published release is found"
    other = Release("0123456789ab", ["0123456789ab", "latest"])
    with pytest.raises(
        CloudError, match=r"0123456789ab.*publish it first: invoke publish --env dev"
    ):
        _apply(orchestrator.plan_find_published("training", other, template_name=name))


def test_list_and_read_runs(orchestrator: Orchestrator, template: Path) -> None:
    _apply(orchestrator.plan_publish({"training": template}, RELEASE))
    name = _template_name(template)
    good = orchestrator.submitted(
        _apply(orchestrator.plan_submit("training", PARAMETERS, RELEASE, template_name=name))
    )
    assert good is not None
    orchestrator.follow(good.run_id, out=io.StringIO(), poll_seconds=0)

    responses = _apply(orchestrator.plan_list_runs())
    runs = orchestrator.runs(responses)
    assert [(r.run_id, r.state) for r in runs] == [(good.run_id, "succeeded")]
    assert good.run_id in orchestrator.render_runs(responses)

    responses = _apply(orchestrator.plan_read_run(good.run_id))
    assert orchestrator.run(responses).state == "succeeded"
    assert "train" in orchestrator.render_run(responses)


def test_a_failed_run_reads_as_failed_with_its_error(
    orchestrator: Orchestrator, template: Path
) -> None:
    _apply(orchestrator.plan_publish({"training": template}, RELEASE))
    failing = {**PARAMETERS, "label": "fail"}  # the fakes fail such runs
    steps = orchestrator.plan_submit(
        "training", failing, RELEASE, template_name=_template_name(template)
    )
    run = orchestrator.submitted(_apply(steps))
    assert run is not None
    final = orchestrator.follow(run.run_id, out=io.StringIO(), poll_seconds=0)
    assert (final.state, final.succeeded, final.finished) == ("failed", False, True)
    shown = orchestrator.render_run(_apply(orchestrator.plan_read_run(run.run_id)))
    assert "train: exit code 1" in shown


def test_dry_runs_send_nothing(
    orchestrator: Orchestrator, template: Path, recording_server: RecordingServer
) -> None:
    plans = [
        orchestrator.plan_publish({"training": template}, RELEASE),
        orchestrator.plan_submit(
            "training", PARAMETERS, RELEASE, template_name=_template_name(template)
        ),
        orchestrator.plan_list_runs(),
        orchestrator.plan_read_run("run-1"),
    ]
    for steps in plans:
        shown = io.StringIO()
        assert execute(steps, dry_run=True, as_json=True, out=shown) == {}
        assert shown.getvalue().strip().startswith("[")
    assert recording_server.requests == []


def test_schedules_where_the_orchestrator_has_them(orchestrator: Orchestrator) -> None:
    if orchestrator.supports_schedules:
        steps = orchestrator.plan_schedule(
            "training", "create", RELEASE, template_name="demo-training", cron="0 6 * * 1"
        )
        assert [s.step for s in steps] == ["find schedule", "create schedule"]
        with pytest.raises(ValueError, match="--cron is required"):
            orchestrator.plan_schedule("training", "create", RELEASE)
    else:
        with pytest.raises(ScheduleUnsupported, match="recurring run"):
            orchestrator.plan_schedule("training", "create", RELEASE, cron="0 6 * * 1")
