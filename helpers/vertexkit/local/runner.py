"""Run a pipeline on the embedded KFP local runner, in the project's own environment.

``kfp.local.SubprocessRunner(use_venv=False)`` runs every task as a subprocess of the current
interpreter, so components import the project's installed component package, exactly as they
do in the base image on Vertex AI. The runner's verbose log goes to a file; the console shows
one line per task, the pipeline's outputs (metrics, artifacts) and, on failure, the failing
task's own output.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shlex
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TextIO

from vertexkit.local import pipelines as compiling
from vertexkit.project.config import load_config, shown_parameter

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_START = re.compile(r" - INFO - Executing task '([^']+)'")
_END = re.compile(r" - (?:INFO|ERROR) - Task '([^']+)' finished with status (\w+)")
# kfp's own account of a failed run: the innermost failed task first ("'a' inside 'b'").
_INNER_FAILED = re.compile(r"Inner task failed: '([^']+)'")
_TASK_OUTPUT = "    "  # kfp indents the streamed output of a task by four spaces


class LocalRunError(RuntimeError):
    """A local pipeline run failed; the message names the task and the log file."""


@dataclass
class TaskResult:
    name: str
    status: str
    seconds: float


@dataclass
class LocalRun:
    pipeline: str
    run_dir: Path | None
    log_path: Path
    seconds: float
    tasks: list[TaskResult] = field(default_factory=list)
    outputs: dict[str, Any] = field(default_factory=dict)


class _Progress(io.TextIOBase):
    """Receives the runner's output: writes all of it to the log, reports tasks to the console."""

    def __init__(self, log: TextIO, console: TextIO, total: int | None, verbose: bool) -> None:
        """``total`` is the number of tasks the run executes, None when conditions or loops
        over run-time values decide it (the lines then count without a total)."""
        self.log, self.console, self.total, self.verbose = log, console, total, verbose
        self.tasks: list[TaskResult] = []
        # Tasks started and not finished (loop iterations run in parallel), oldest first:
        # name, start time, output lines.
        self._running: list[tuple[str, float, list[str]]] = []
        self.failed_lines: dict[str, list[str]] = {}
        self.task_lines: list[str] = []  # the output of the task that finished last
        self._pending = ""
        self._lock = threading.Lock()  # parallel iterations write from several threads

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        with self._lock:
            self.log.write(text)
            if self.verbose:
                self.console.write(text)
            self._pending += _ANSI.sub("", text)
            *lines, self._pending = self._pending.split("\n")
            for line in lines:
                self._line(line)
        return len(text)

    def _line(self, line: str) -> None:
        if match := _START.search(line):
            self._running.append((match.group(1), time.perf_counter(), []))
        elif match := _END.search(line):
            name, status = match.groups()
            index = next((i for i, r in enumerate(self._running) if r[0] == name), None)
            _, started, lines = self._running.pop(index) if index is not None else ("", 0.0, [])
            result = TaskResult(name, status, time.perf_counter() - started if started else 0.0)
            self.tasks.append(result)
            self.task_lines = lines
            if status != "SUCCESS":
                self.failed_lines.setdefault(name, lines)
            if not self.verbose:
                mark = "ok" if status == "SUCCESS" else status
                count = len(self.tasks)
                step = f"[{count}/{self.total}]" if self.total is not None else f"[{count}]"
                self.console.write(f"  {step:>7} {name:<28} {mark:<7} {result.seconds:5.1f}s\n")
                self.console.flush()
        elif line.startswith(_TASK_OUTPUT) and self._running:
            self._running[-1][2].append(line[len(_TASK_OUTPUT) :].strip("\r"))

    def failed_task(self, error: BaseException) -> str:
        """The task that failed: as kfp names it (the innermost one), else the first failure."""
        if match := _INNER_FAILED.search(_ANSI.sub("", str(error))):
            return match.group(1)
        failures = [t.name for t in self.tasks if t.status != "SUCCESS"]
        if failures:
            return failures[0]
        return self.tasks[-1].name if self.tasks else "(none)"

    def failure_output(self, limit: int = 40, task: str | None = None) -> list[str]:
        """The failing task's own output, without the executor's bookkeeping."""
        kept, in_input_dump = [], False
        source = self.failed_lines.get(task, self.task_lines) if task else self.task_lines
        indent = min((len(x) - len(x.lstrip()) for x in source if x.strip()), default=0)
        for line in (x[indent:] for x in source):
            if line.startswith("[KFP Executor"):
                in_input_dump = line.rstrip().endswith("Got executor_input:")
                continue
            if in_input_dump:
                in_input_dump = line != "}"
                continue
            kept.append(line)
        while kept and not kept[-1].strip():
            kept.pop()
        return kept[-limit:]


@contextlib.contextmanager
def _working_directory(path: Path) -> Iterator[None]:
    previous = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(previous)


def run_local(
    project_dir: str | Path,
    pipeline_name: str,
    overrides: dict[str, str] | None = None,
    *,
    env: str | None = None,
    verbose: bool = False,
    console: TextIO | None = None,
) -> LocalRun:
    """Run ``pipelines/<pipeline_name>.py`` locally with configured values and overrides.

    Relative paths in parameters resolve against the project directory, which is the
    working directory of every task.
    """
    from kfp import local

    console = console or sys.stdout
    project_dir = Path(project_dir).resolve()
    config = load_config(project_dir, env)
    pipeline = compiling.load_for_run(project_dir, config, pipeline_name)
    arguments = compiling.configured_parameters(config, pipeline_name, pipeline, overrides)
    use_project_environment(pipeline, compiling.discover(project_dir)[pipeline_name])
    run_loops_one_at_a_time(pipeline)
    spec = compiling.pipeline_spec(pipeline)
    plan = planned_tasks(spec)
    total = plan.exact

    output_root = project_dir / config.local.output_dir
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S-%f")
    log_path = output_root / "logs" / f"{pipeline_name}-{stamp}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    shown = ", ".join(shown_parameter(k, v) for k, v in arguments.items())
    console.write(f"Running pipeline {pipeline_name!r} locally ({plan.describe()})\n")
    if shown:
        console.write(f"  parameters: {shown}\n")
    console.flush()

    before = set(output_root.iterdir())
    started = time.perf_counter()
    with log_path.open("w", encoding="utf-8") as log:
        progress = _Progress(log, console, total, verbose)
        local.init(
            runner=local.SubprocessRunner(use_venv=False),
            pipeline_root=str(output_root),
            raise_on_error=True,
        )
        try:
            with _working_directory(project_dir), contextlib.redirect_stdout(progress):
                task = pipeline(**arguments)
        except RuntimeError as exc:
            failed = progress.failed_task(exc)
            details = "\n".join(f"    {line}" for line in progress.failure_output(task=failed))
            raise LocalRunError(
                f"pipeline {pipeline_name!r} failed at task {failed!r}"
                + (f"; its output ends with:\n{details}" if details else f": {exc}")
                + f"\n  full log: {_relative(log_path, project_dir)}"
            ) from None
    seconds = time.perf_counter() - started
    # kfp names each run folder <pipeline name>-YYYY-MM-DD-HH-MM-SS-ffffff.
    run_folder = re.compile(rf"^{re.escape(pipeline.name)}-\d{{4}}(-\d{{2}}){{5}}-\d{{6}}$")
    new_dirs = sorted(
        p for p in set(output_root.iterdir()) - before if p.is_dir() and run_folder.match(p.name)
    )
    return LocalRun(
        pipeline=pipeline_name,
        run_dir=new_dirs[-1] if new_dirs else None,
        log_path=log_path,
        seconds=seconds,
        tasks=progress.tasks,
        outputs=_outputs(task),
    )


@dataclass(frozen=True)
class TaskPlan:
    """How many tasks a run executes: between ``low`` and ``high`` (conditions decide), plus
    the iterations of ``dynamic_loops`` loops over values known only at run time."""

    low: int
    high: int
    dynamic_loops: int = 0

    @property
    def exact(self) -> int | None:
        return self.low if self.low == self.high and not self.dynamic_loops else None

    def describe(self) -> str:
        plural = "s" if self.high != 1 else ""
        if self.exact is not None:
            return f"{self.exact} task{plural}"
        count = f"{self.low} to {self.high}" if self.low != self.high else str(self.high)
        parts = [f"{count} task{plural}"]
        if self.low != self.high:
            parts.append("conditions decide which")
        if self.dynamic_loops:
            loops = "loop" if self.dynamic_loops == 1 else "loops"
            parts.append(
                f"plus the iterations of {self.dynamic_loops} {loops} over run-time values"
            )
        return "; ".join(parts)


def planned_tasks(spec: dict[str, Any]) -> TaskPlan:
    """Count the container tasks a run of the compiled pipeline ``spec`` executes: through
    sub-pipelines, exit handlers, conditions (If/Elif/Else) and loops over constant lists."""
    components = spec.get("components", {})

    def walk(dag: dict[str, Any]) -> TaskPlan:
        low = high = dynamic = 0
        for task in dag.get("tasks", {}).values():
            component = components.get(task.get("componentRef", {}).get("name", ""), {})
            if "dag" not in component:
                inner = TaskPlan(1, 1)
            elif _is_branches(component):
                branches = [
                    walk(components[b["componentRef"]["name"]]["dag"])
                    for b in component["dag"]["tasks"].values()
                ]
                has_else = any(
                    b.get("triggerPolicy", {}).get("condition", "").startswith("!(")
                    for b in component["dag"]["tasks"].values()
                )
                inner = TaskPlan(
                    min(b.low for b in branches) if has_else else 0,
                    max(b.high for b in branches),
                    sum(b.dynamic_loops for b in branches),
                )
            else:
                inner = walk(component["dag"])
            if task.get("triggerPolicy", {}).get("condition"):
                inner = TaskPlan(0, inner.high, inner.dynamic_loops)
            iterator = task.get("parameterIterator") or task.get("artifactIterator")
            if iterator:
                raw = iterator.get("items", {}).get("raw")
                if raw is None:
                    inner = TaskPlan(0, 0, inner.dynamic_loops + 1)
                else:
                    n = len(json.loads(raw))
                    inner = TaskPlan(inner.low * n, inner.high * n, inner.dynamic_loops)
            low, high, dynamic = low + inner.low, high + inner.high, dynamic + inner.dynamic_loops
        return TaskPlan(low, high, dynamic)

    return walk(spec.get("root", {}).get("dag", {}))


def _is_branches(component: dict[str, Any]) -> bool:
    """A dsl.If/Elif/Else group: a DAG whose every task is a condition on a sub-DAG."""
    tasks = component["dag"].get("tasks", {}).values()
    return bool(tasks) and all(t.get("triggerPolicy", {}).get("condition") for t in tasks)


def run_loops_one_at_a_time(pipeline: Any) -> int:
    """Give every ParallelFor of the pipeline a parallelism limit of 1, in place; returns how
    many loops there are.

    kfp's local runner reconfigures the process-wide logger and ``print`` for each task: tasks
    running side by side in threads lose each other's log lines (a finished iteration goes
    unreported) and mix their output. One iteration at a time keeps every line.
    """
    spec = pipeline.pipeline_spec
    dags = [spec.root.dag] + [c.dag for c in spec.components.values() if c.HasField("dag")]
    loops = 0
    for dag in dags:
        for task in dag.tasks.values():
            if task.HasField("parameter_iterator") or task.HasField("artifact_iterator"):
                task.iterator_policy.parallelism_limit = 1
                loops += 1
    return loops


# The script kfp puts before a lightweight component's command to pip-install its packages.
_PIP_INSTALL = re.compile(
    r"python3 -m pip install --quiet --no-warn-script-location (.*?)(?= && |$)"
)
_PIP_OPTIONS_WITH_VALUE = {"--index-url", "--extra-index-url", "--trusted-host", "-i"}


def use_project_environment(pipeline: Any, path: Path) -> None:
    """Make the pipeline's components run in the project's environment, unchanged; in place.

    A component with ``packages_to_install`` (or kfp's own ``install_kfp_package``) would
    pip-install into the environment of the run, which locally is the project's own. When
    the environment already satisfies every requirement, the install step is left out;
    otherwise the run is refused before it starts, naming the components and packages.
    """
    from google.protobuf import json_format

    deployment = json_format.MessageToDict(pipeline.pipeline_spec.deployment_spec)
    problems, changed = [], False
    for label, executor in sorted(deployment.get("executors", {}).items()):
        command = executor.get("container", {}).get("command", [])
        if len(command) < 4 or command[:2] != ["sh", "-c"] or "pip install" not in command[2]:
            continue
        requirements = _pip_requirements(command[2])
        unmet = [f"{req} ({why})" for req, why in requirements if why]
        if unmet:
            name = label.removeprefix("exec-")
            problems.append(f"  component {name!r}: {', '.join(unmet)}")
            continue
        executor["container"]["command"] = command[3:]
        changed = True
    if problems:
        raise LocalRunError(
            f"{compiling.PIPELINES_DIR}/{path.name} cannot run locally: its components install "
            "packages when they start (packages_to_install), into the project's own "
            "environment, and these are not in it:\n"
            + "\n".join(problems)
            + "\n  Add them to the project's dependencies (pyproject.toml; the base image "
            "components/Dockerfile is built from the same lock) and drop packages_to_install, "
            "or install them into this environment if they are only missing here."
        )
    if changed:
        pipeline.pipeline_spec.deployment_spec.Clear()
        pipeline.pipeline_spec.deployment_spec.update(deployment)


def _pip_requirements(script: str) -> list[tuple[str, str]]:
    """Each requirement the install script names, with why the environment does not satisfy
    it ("" when it does)."""
    from importlib import metadata

    from packaging.requirements import InvalidRequirement, Requirement

    found = []
    for match in _PIP_INSTALL.finditer(script):
        words, skip = shlex.split(match.group(1)), False
        for word in words:
            if skip or word.startswith("-"):
                skip = not skip and word in _PIP_OPTIONS_WITH_VALUE
                continue
            try:
                requirement = Requirement(word)
            except InvalidRequirement:
                found.append((word, "not a requirement vertexkit can check"))
                continue
            if requirement.marker and not requirement.marker.evaluate():
                continue
            if requirement.url:
                found.append((word, "installed from a URL"))
                continue
            try:
                version = metadata.version(requirement.name)
            except metadata.PackageNotFoundError:
                found.append((word, "not installed"))
                continue
            ok = requirement.specifier.contains(version, prereleases=True)
            found.append((word, "" if ok else f"installed: {version}"))
    return found


def _outputs(task: Any) -> dict[str, Any]:
    outputs = getattr(task, "outputs", None)
    if isinstance(outputs, dict):
        return dict(outputs)
    return {} if task is None else {"Output": task}


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def _show(value: Any) -> str:
    """Numbers as people read them: KFP stores every number as a float."""
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else f"{value:.4f}"
    return str(value)


def summary(run: LocalRun, project_dir: str | Path) -> str:
    """Human-readable account of a finished run: metrics, then artifacts and values."""
    from kfp import dsl

    root = Path(project_dir).resolve()
    lines = [f"Pipeline {run.pipeline!r} succeeded in {run.seconds:.1f}s"]
    # Metrics first, then values, then where the artifacts are.
    order = {dsl.Metrics: 0, dsl.ClassificationMetrics: 1}
    ranked = sorted(
        run.outputs.items(),
        key=lambda item: order.get(type(item[1]), 3 if isinstance(item[1], dsl.Artifact) else 2),
    )
    for name, value in ranked:
        if isinstance(value, dsl.Metrics):
            lines.append(f"  {name}:")
            for key, metric in sorted(value.metadata.items()):
                lines.append(f"    {key:<18} {_show(metric)}")
        elif isinstance(value, dsl.ClassificationMetrics):
            matrix = value.metadata.get("confusionMatrix")
            if matrix:
                labels = [spec["displayName"] for spec in matrix["annotationSpecs"]]
                lines.append(f"  {name} (confusion matrix, rows = actual {labels}):")
                for label, row in zip(labels, matrix["rows"], strict=False):
                    cells = " ".join(f"{int(cell):>5}" for cell in row["row"])
                    lines.append(f"    {label:<12} {cells}")
        elif isinstance(value, dsl.Artifact):
            details = ", ".join(
                f"{key}={_show(item)}"
                for key, item in value.metadata.items()
                if isinstance(item, str | int | float) and len(str(item)) <= 40
            )
            suffix = f" ({details})" if details else ""
            lines.append(f"  {name}: {_relative(Path(value.path), root)}{suffix}")
        else:
            lines.append(f"  {name}: {value}")
    if run.run_dir:
        lines.append(f"  outputs: {_relative(run.run_dir, root)}")
    lines.append(f"  log: {_relative(run.log_path, root)}")
    return "\n".join(lines)
