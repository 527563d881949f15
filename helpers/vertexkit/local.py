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
import os
import re
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TextIO

from vertexkit import compile as compiling
from vertexkit.config import load_config

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_START = re.compile(r" - INFO - Executing task '([^']+)'")
_END = re.compile(r" - (?:INFO|ERROR) - Task '([^']+)' finished with status (\w+)")
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

    def __init__(self, log: TextIO, console: TextIO, total: int, verbose: bool) -> None:
        self.log, self.console, self.total, self.verbose = log, console, total, verbose
        self.tasks: list[TaskResult] = []
        self.task_lines: list[str] = []
        self._pending = ""
        self._started = 0.0

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
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
            self._started = time.perf_counter()
            self.task_lines = []
        elif match := _END.search(line):
            name, status = match.groups()
            result = TaskResult(name, status, time.perf_counter() - self._started)
            self.tasks.append(result)
            if not self.verbose:
                mark = "ok" if status == "SUCCESS" else status
                step = f"[{len(self.tasks)}/{self.total}]"
                self.console.write(f"  {step:>7} {name:<28} {mark:<7} {result.seconds:5.1f}s\n")
                self.console.flush()
        elif line.startswith(_TASK_OUTPUT):
            self.task_lines.append(line[len(_TASK_OUTPUT) :])

    def failure_output(self, limit: int = 40) -> list[str]:
        """The failing task's own output, without the executor's bookkeeping."""
        kept, in_input_dump = [], False
        for line in self.task_lines:
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
    spec = compiling.pipeline_spec(pipeline)
    total = len(spec.get("root", {}).get("dag", {}).get("tasks", {}))

    output_root = project_dir / config.local.output_dir
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S-%f")
    log_path = output_root / "logs" / f"{pipeline_name}-{stamp}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    shown = ", ".join(f"{k}={v!r}" for k, v in arguments.items())
    console.write(f"Running pipeline {pipeline_name!r} locally ({total} tasks)\n")
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
            failed = progress.tasks[-1].name if progress.tasks else "(none)"
            details = "\n".join(f"    {line}" for line in progress.failure_output())
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
