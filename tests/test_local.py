"""Tests for vertexkit.local.runner: real runs of a tiny pipeline on the KFP SubprocessRunner."""

from __future__ import annotations

import io
import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.metadata import distributions, version
from pathlib import Path

import pytest
from kfp import dsl

from tests.fixture_project import copy_project
from vertexkit.local.pipelines import PipelineError, load_pipeline, pipeline_spec
from vertexkit.local.runner import (
    LocalRun,
    LocalRunError,
    TaskPlan,
    planned_tasks,
    run_local,
    summary,
)
from vertexkit.project.config import ConfigError
from vertexkit.project.params import ParameterError

FIXTURES = Path(__file__).parent / "fixtures"
RUN_DIR_RE = re.compile(r"^demo-training-\d{4}(-\d{2}){5}-\d{6}$")
STEP_RE = re.compile(r"^\s+\[(\d+)/(\d+)\] (\S+)\s+(\S+)\s+[\d.]+s$")


def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Variables of the developer's shell must not change the fixture project's config."""
    for name in list(os.environ):
        if name.startswith("VERTEXKIT__"):
            monkeypatch.delenv(name)


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    clean_environment(monkeypatch)


@dataclass
class Finished:
    project: Path
    run: LocalRun
    console: str


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Finished]:
    """One successful run of the fixture pipeline, shared by the tests that only inspect it."""
    project = copy_project(tmp_path_factory.mktemp("finished") / "project")
    console = io.StringIO()
    with pytest.MonkeyPatch.context() as monkeypatch:
        clean_environment(monkeypatch)
        run = run_local(project, "training", console=console)
    yield Finished(project, run, console.getvalue())


# --------------------------------------------------------------------------- a successful run


def test_every_task_succeeds(finished: Finished) -> None:
    run = finished.run
    assert run.pipeline == "training"
    assert [(t.name, t.status) for t in run.tasks] == [
        ("make-data", "SUCCESS"),
        ("describe", "SUCCESS"),
    ]
    assert all(t.seconds >= 0 for t in run.tasks)
    assert run.seconds >= sum(t.seconds for t in run.tasks) * 0.5


def test_outputs_hold_metrics_dataset_and_value(finished: Finished) -> None:
    outputs = finished.run.outputs
    assert set(outputs) == {"metrics", "dataset", "description"}
    assert isinstance(outputs["metrics"], dsl.Metrics)
    assert outputs["metrics"].metadata == {"rows": 3, "accuracy": 0.875}
    assert isinstance(outputs["dataset"], dsl.Dataset)
    assert Path(outputs["dataset"].path).read_text() == "0\n1\n2"
    # label and ratio come from config/base.yaml; ratio (1 in YAML) reached the task as a float.
    assert outputs["description"] == "rows:3:1.0"


def test_run_dir_is_the_run_folder(finished: Finished) -> None:
    run_dir = finished.run.run_dir
    assert run_dir is not None
    assert run_dir.parent == finished.project / "build" / "local"
    assert RUN_DIR_RE.match(run_dir.name), run_dir.name
    assert {p.name for p in run_dir.iterdir()} == {"make-data", "describe"}
    assert Path(finished.run.outputs["dataset"].path).is_relative_to(run_dir)


def test_log_file_holds_the_runner_output(finished: Finished) -> None:
    log = finished.run.log_path
    assert log.parent == finished.project / "build" / "local" / "logs"
    assert re.fullmatch(r"training-\d{8}-\d{6}-\d{6}\.log", log.name), log.name
    text = log.read_text()
    assert "Running pipeline:" in text
    assert "Executing task" in text and "make-data" in text and "describe" in text
    assert "Got executor_input" in text  # the verbose part, kept out of the console
    assert "finished with status" in text


def test_console_shows_one_line_per_task(finished: Finished) -> None:
    lines = finished.console.splitlines()
    assert lines[0] == "Running pipeline 'training' locally (2 tasks)"
    assert lines[1] == "  parameters: shared_param=1, n=3, label='rows', ratio=1.0"
    steps = [STEP_RE.match(line) for line in lines if re.search(r"\[\d+/\d+\]", line)]
    assert all(steps), lines
    assert [m.groups() for m in steps] == [
        ("1", "2", "make-data", "ok"),
        ("2", "2", "describe", "ok"),
    ]
    assert "executor_input" not in finished.console
    assert "Executing task" not in finished.console


def test_summary_shows_metrics_values_and_relative_paths(finished: Finished) -> None:
    run = finished.run
    text = summary(run, finished.project)
    lines = text.splitlines()
    assert lines[0] == f"Pipeline 'training' succeeded in {run.seconds:.1f}s"
    run_dir = f"build/local/{run.run_dir.name}"
    assert lines[1:] == [
        "  metrics:",
        "    accuracy           0.8750",
        "    rows               3",
        "  description: rows:3:1.0",
        f"  dataset: {run_dir}/make-data/dataset (format=text)",
        f"  outputs: {run_dir}",
        f"  log: build/local/logs/{run.log_path.name}",
    ]
    assert str(finished.project) not in text


def test_verbose_streams_the_full_log(project: Path) -> None:
    console = io.StringIO()
    run = run_local(project, "training", verbose=True, console=console)
    shown = console.getvalue()
    assert "Executing task" in shown and "Got executor_input" in shown
    assert not re.search(r"\[\d+/2\]", shown)  # no progress lines in verbose mode
    assert [t.status for t in run.tasks] == ["SUCCESS", "SUCCESS"]
    assert run.log_path.read_text().count("Executing task") == 2


# --------------------------------------------------------------------------- parameters


def test_param_overrides_and_environment(project: Path) -> None:
    console = io.StringIO()
    run = run_local(
        project, "training", {"label": "lines", "ratio": "2.5"}, env="dev", console=console
    )
    # n=5 comes from config/dev.yaml, label and ratio from the overrides.
    assert run.outputs["description"] == "lines:5:2.5"
    assert run.outputs["metrics"].metadata["rows"] == 5
    assert "  parameters: shared_param=1, n=5, label='lines', ratio=2.5" in console.getvalue()


def test_wrong_type_override_is_rejected_before_running(project: Path) -> None:
    console = io.StringIO()
    with pytest.raises(ParameterError) as caught:
        run_local(project, "training", {"n": "four"}, console=console)
    assert str(caught.value) == "--param n=four: parameter 'n' expects int, got 'four'"
    assert not (project / "build").exists()  # no run folder, no log
    assert console.getvalue() == ""


def test_unknown_override_is_rejected_before_running(project: Path) -> None:
    with pytest.raises(ParameterError, match="has no parameter 'epochs'; its parameters: "):
        run_local(project, "training", {"epochs": "3"}, console=io.StringIO())
    assert not (project / "build").exists()


def test_unknown_pipeline(project: Path) -> None:
    with pytest.raises(PipelineError, match=r"no pipeline named 'scoring'.*available: training"):
        run_local(project, "scoring", console=io.StringIO())
    assert not (project / "build").exists()


def test_invalid_config_stops_the_run(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VERTEXKIT__GCP__REGION", "nowhere")
    with pytest.raises(ConfigError, match="environment variable VERTEXKIT__GCP__REGION"):
        run_local(project, "training", console=io.StringIO())
    assert not (project / "build").exists()


def test_output_dir_outside_the_project(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    elsewhere = tmp_path / "elsewhere"
    monkeypatch.setenv("VERTEXKIT__LOCAL__OUTPUT_DIR", str(elsewhere))
    run = run_local(project, "training", {"n": "1"}, console=io.StringIO())
    assert run.run_dir is not None and run.run_dir.parent == elsewhere
    assert run.log_path.parent == elsewhere / "logs"
    assert not (project / "build").exists()
    # Paths outside the project are shown in full.
    assert f"  log: {run.log_path}" in summary(run, project).splitlines()


# --------------------------------------------------------------------------- failures


def test_failing_component_names_task_and_error(project: Path) -> None:
    shutil.copy(FIXTURES / "pipelines" / "failing.py", project / "pipelines" / "failing.py")
    console = io.StringIO()
    with pytest.raises(LocalRunError) as caught:
        run_local(project, "failing", {"n": "1"}, console=console)
    message = str(caught.value)
    assert message.startswith("pipeline 'failing' failed at task 'explode'; its output ends with:")
    assert "checking columns of 2 rows" in message  # the component's own print
    assert "ValueError: boom: column x" in message
    # The executor's input dump and bookkeeping stay in the log file.
    assert "executor_input" not in message
    assert "parameterValues" not in message
    assert "[KFP Executor" not in message
    log_line = message.splitlines()[-1]
    assert re.fullmatch(r"  full log: build/local/logs/failing-\d{8}-\d{6}-\d{6}\.log", log_line)
    log = project / log_line.removeprefix("  full log: ")
    assert "Got executor_input" in log.read_text()
    assert "boom: column x" in log.read_text()
    shown = console.getvalue().splitlines()
    assert shown[:2] == ["Running pipeline 'failing' locally (2 tasks)", "  parameters: n=1"]
    steps = [STEP_RE.match(line) for line in shown[2:]]
    assert all(steps), shown
    assert [m.groups() for m in steps] == [
        ("1", "2", "first", "ok"),
        ("2", "2", "explode", "FAILURE"),
    ]


# --------------------------------------------------------------------------- working directory


def test_tasks_run_in_the_project_directory(project: Path) -> None:
    shutil.copy(FIXTURES / "pipelines" / "registry.py", project / "pipelines" / "registry.py")
    run = run_local(project, "registry", {"registry": "models/registry"}, console=io.StringIO())
    assert (project / "models" / "registry" / "model-v1.txt").read_text() == "v1"
    assert run.outputs == {"Output": "models/registry"}
    assert run.run_dir is not None and run.run_dir.name.startswith("demo-20")


def test_run_dir_ignores_other_folders_the_run_created(project: Path) -> None:
    shutil.copy(FIXTURES / "pipelines" / "registry.py", project / "pipelines" / "registry.py")
    run = run_local(project, "registry", console=io.StringIO())
    assert (project / "build" / "local" / "demo-registry" / "model-v1.txt").exists()
    assert run.run_dir is not None
    assert re.fullmatch(r"demo-\d{4}(-\d{2}){5}-\d{6}", run.run_dir.name), run.run_dir.name


def test_two_runs_in_quick_succession_keep_both_logs(project: Path) -> None:
    first = run_local(project, "training", {"label": "first"}, console=io.StringIO())
    second = run_local(project, "training", {"label": "second"}, console=io.StringIO())
    assert first.log_path != second.log_path
    assert "first" in first.log_path.read_text()
    assert "second" not in first.log_path.read_text()


def test_config_typo_fails_a_local_run_before_it_starts(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VERTEXKIT__PARAMETERS__SHARED_PARAM_TYPO", "1")
    with pytest.raises(PipelineError, match=r"parameters\.shared_param_typo: no pipeline declares"):
        run_local(project, "training", console=io.StringIO())
    assert not (project / "build").exists()


# --------------------------------------------------------------------------- pipelines teams bring


def add(project: Path, *names: str) -> None:
    for name in names:
        shutil.copy(FIXTURES / "pipelines" / f"{name}.py", project / "pipelines" / f"{name}.py")


def steps_of(console: str) -> list[tuple[str, ...]]:
    lines = [line for line in console.splitlines() if re.search(r"^\s+\[\d+", line)]
    matches = [re.match(r"^\s+\[(\d+)(?:/(\d+))?\] (\S+)\s+(\S+)\s+[\d.]+s$", x) for x in lines]
    assert all(matches), lines
    return [m.groups() for m in matches if m]


def test_a_broken_file_does_not_stop_another_pipeline_s_run(project: Path) -> None:
    add(project, "broken", "none")
    (project / "pipelines" / "typo.py").write_text("def pipeline(:\n")
    run = run_local(project, "training", console=io.StringIO())
    assert [t.status for t in run.tasks] == ["SUCCESS", "SUCCESS"]
    with pytest.raises(PipelineError, match=r"^pipelines/broken\.py: import failed"):
        run_local(project, "broken", console=io.StringIO())


def test_nested_pipeline_runs(project: Path) -> None:
    add(project, "nested", "_steps")
    console = io.StringIO()
    run = run_local(project, "nested", {"x": "2"}, console=console)
    assert run.outputs == {"Output": 31}  # (2 + 1) * 10, then + 1
    assert console.getvalue().splitlines()[0] == "Running pipeline 'nested' locally (3 tasks)"
    assert [s[:2] for s in steps_of(console.getvalue())] == [("1", "3"), ("2", "3"), ("3", "3")]


def test_control_flow_counts_every_task_and_iteration(project: Path) -> None:
    add(project, "control")
    console = io.StringIO()
    run = run_local(project, "control", console=console)
    shown = console.getvalue()
    # exit task + flip + one of the If/Else branches + 3 loop iterations
    assert shown.splitlines()[0] == "Running pipeline 'control' locally (6 tasks)"
    steps = steps_of(shown)
    assert [(n, total) for n, total, _, _ in steps] == [(str(i), "6") for i in range(1, 7)]
    assert sorted(name for _, _, name, _ in steps) == [
        "announce",
        "announce-2",
        "flip",
        "square",
        "square",
        "square",
    ]
    assert len(run.tasks) == 6 and all(t.status == "SUCCESS" for t in run.tasks)


def test_required_parameters_are_checked_at_run_time(project: Path) -> None:
    add(project, "required")
    with pytest.raises(ParameterError, match=r"missing required parameter\(s\): rows \(int\)"):
        run_local(project, "required", {"trials": "[1]"}, console=io.StringIO())
    with pytest.raises(ParameterError, match=r"expects list\[int\], got item \[0\] float 1.5"):
        run_local(project, "required", {"rows": "1", "trials": "[1.5]"}, console=io.StringIO())
    assert not (project / "build").exists()
    run = run_local(project, "required", {"rows": "2", "trials": "[1, 2]"}, console=io.StringIO())
    assert run.outputs == {"Output": 6.0}


def test_failure_inside_an_exit_handler_names_the_failed_task(project: Path) -> None:
    add(project, "exit_fail")
    console = io.StringIO()
    with pytest.raises(LocalRunError) as caught:
        run_local(project, "exit_fail", console=console)
    message = str(caught.value)
    assert message.startswith("pipeline 'exit_fail' failed at task 'train'; its output ends with:")
    assert "training on 3 rows" in message and "RuntimeError: out of memory" in message
    assert "cleaning up" not in message
    assert steps_of(console.getvalue()) == [
        ("1", "2", "train", "FAILURE"),
        ("2", "2", "cleanup", "ok"),
    ]


def test_packages_the_environment_lacks_are_refused_before_the_run(project: Path) -> None:
    add(project, "packages")
    console = io.StringIO()
    with pytest.raises(LocalRunError) as caught:
        run_local(project, "packages", console=console)
    message = str(caught.value)
    assert message.splitlines()[:2] == [
        "pipelines/packages.py cannot run locally: its components install packages when they "
        "start (packages_to_install), into the project's own environment, and these are not "
        "in it:",
        "  component 'exotic': vertexkit-no-such-package==1.0 (not installed), "
        f"PyYAML<1 (installed: {version('PyYAML')})",
    ]
    assert "pyproject.toml" in message and "components/Dockerfile" in message
    assert "dump" not in message  # its requirements are met
    assert console.getvalue() == ""
    assert not (project / "build").exists()


def test_packages_the_environment_has_are_not_installed_again(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    add(project, "installs_ok")
    # Any pip run in a task would fail on this missing constraints file: none may run.
    monkeypatch.setenv("PIP_CONSTRAINT", str(tmp_path / "absent-constraints.txt"))
    before = {d.metadata["Name"]: d.version for d in distributions()}
    run = run_local(project, "installs_ok", {"value": "4"}, console=io.StringIO())
    assert run.outputs == {"Output": "value: 4"}
    assert {d.metadata["Name"]: d.version for d in distributions()} == before


def test_planned_tasks_with_run_time_loops_and_plain_conditions(project: Path) -> None:
    add(project, "dynamic")
    dynamic = load_pipeline(project, "dynamic")
    plan = planned_tasks(pipeline_spec(dynamic))
    assert plan == TaskPlan(1, 2, 1)
    assert plan.exact is None
    assert plan.describe() == (
        "1 to 2 tasks; conditions decide which; plus the iterations of 1 loop over run-time values"
    )


def test_run_with_run_time_loop_counts_without_a_total(project: Path) -> None:
    add(project, "dynamic")
    console = io.StringIO()
    run = run_local(project, "dynamic", console=console)
    shown = console.getvalue()
    assert shown.splitlines()[0] == (
        "Running pipeline 'dynamic' locally (1 to 2 tasks; conditions decide which; plus the "
        "iterations of 1 loop over run-time values)"
    )
    assert [(n, total) for n, total, _, _ in steps_of(shown)] == [
        ("1", None),
        ("2", None),
        ("3", None),
        ("4", None),
    ]
    assert len(run.tasks) == 4
