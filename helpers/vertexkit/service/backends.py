"""Where the service's runs go: the configured orchestrator, a dry run, or the local runner.

* :class:`OrchestratorBackend` sends the orchestrator's plans (``plan_submit``,
  ``plan_find_runs``, ``plan_read_run``) with :class:`vertexkit.steps.Sender`: REST and
  google-auth only. Steps after the one that created the run (Vertex AI: adding it to the
  environment's experiment, which waits for the run to start) go on in a background thread, so
  the caller gets its answer as soon as the run exists.
* :class:`DryRunBackend` answers with the steps it would send.
* :class:`LocalBackend` runs submitted runs on the local runner, one at a time, in a
  background worker (``invoke serve --backend local``).
"""

from __future__ import annotations

import io
import itertools
import json
import logging
import queue
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

from vertexkit.orchestrators import Orchestrator, Run
from vertexkit.project.release import Release
from vertexkit.steps import CloudError, Responses, Sender

log = logging.getLogger("vertexkit.service")


@dataclass(frozen=True)
class Submission:
    """A checked request to run a pipeline."""

    pipeline: str
    template_name: str
    parameters: Mapping[str, Any]  # typed values, configured ones included
    given: Mapping[str, Any]  # what the caller gave (the local runner applies config itself)
    labels: Mapping[str, str] = field(default_factory=dict)
    display_name: str | None = None
    key_label: str | None = None  # the hashed idempotency key, as a label value


class NotFound(LookupError):
    """No such run."""


class Backend(Protocol):
    name: str

    def submit(self, submission: Submission) -> dict[str, Any]:
        """The started run (``run_id``, ``name``, ``url``, ``state``) or, in a dry run, the
        steps (``dry_run``, ``steps``)."""

    def find(self, key_label: str) -> dict[str, Any] | None:
        """The run started earlier with this idempotency key, where runs can be found by it."""

    def read(self, run_id: str) -> dict[str, Any]:
        """One run; NotFound when there is none."""


IDEMPOTENCY_LABEL = "idempotency-key"


def run_body(run: Run, pipeline: str | None = None) -> dict[str, Any]:
    body = {
        "run_id": run.run_id,
        "name": run.name or run.run_id,
        "url": run.url,
        "state": run.state,
        "backend_state": run.backend_state,
        "display_name": run.display_name,
        "created": run.created,
    }
    if pipeline:
        body["pipeline"] = pipeline
    return body


class OrchestratorBackend:
    """Runs on the configured orchestrator (Vertex AI Pipelines or Kubeflow Pipelines)."""

    name = "orchestrator"

    def __init__(
        self, orchestrator: Orchestrator, release: Release, sender: Sender | None = None
    ) -> None:
        self.orchestrator = orchestrator
        self.release = release
        self.sender = sender or Sender()

    def _labels(self, submission: Submission) -> dict[str, str] | None:
        if not self.orchestrator.supports_labels:
            return None
        labels = dict(submission.labels)
        if submission.key_label:
            labels[IDEMPOTENCY_LABEL] = submission.key_label
        return labels

    def submit(self, submission: Submission) -> dict[str, Any]:
        steps = self.orchestrator.plan_submit(
            submission.pipeline,
            submission.parameters,
            self.release,
            template_name=submission.template_name,
            labels=self._labels(submission),
            display_name=submission.display_name,
        )
        responses: Responses = {}
        for index, step in enumerate(steps):
            responses[step.step] = step.apply(responses, self.sender)
            run = self.orchestrator.submitted(responses)
            if run is not None:
                rest = steps[index + 1 :]
                if rest:
                    threading.Thread(
                        target=self._finish, args=(rest, dict(responses), run), daemon=True
                    ).start()
                return run_body(run, submission.pipeline)
        raise CloudError(f"{self.orchestrator.title} answered no run for {submission.pipeline}")

    def _finish(self, steps: list[Any], responses: Responses, run: Run) -> None:
        try:
            for step in steps:
                responses[step.step] = step.apply(responses, self.sender)
        except Exception as exc:  # the run exists; report the step that failed
            log.warning(
                "after submitting: %s failed: %s", step.step, exc, extra={"run_id": run.run_id}
            )

    def find(self, key_label: str) -> dict[str, Any] | None:
        if not self.orchestrator.supports_labels:
            return None
        responses: Responses = {}
        for step in self.orchestrator.plan_find_runs({IDEMPOTENCY_LABEL: key_label}, limit=1):
            responses[step.step] = step.apply(responses, self.sender)
        runs = self.orchestrator.runs(responses)
        return run_body(runs[0]) if runs else None

    def read(self, run_id: str) -> dict[str, Any]:
        responses: Responses = {}
        try:
            for step in self.orchestrator.plan_read_run(run_id):
                responses[step.step] = step.apply(responses, self.sender)
        except CloudError as exc:
            if exc.status == 404:
                raise NotFound(run_id) from None
            raise
        return run_body(self.orchestrator.run(responses))


class DryRunBackend:
    """Sends nothing: answers with the steps the orchestrator backend would send."""

    name = "dry-run"

    def __init__(self, orchestrator: Orchestrator, release: Release) -> None:
        self.real = OrchestratorBackend(orchestrator, release)

    def submit(self, submission: Submission) -> dict[str, Any]:
        orchestrator = self.real.orchestrator
        steps = orchestrator.plan_submit(
            submission.pipeline,
            submission.parameters,
            self.real.release,
            template_name=submission.template_name,
            labels=self.real._labels(submission),
            display_name=submission.display_name,
        )
        return {"dry_run": True, "steps": [step.to_json() for step in steps]}

    def find(self, key_label: str) -> dict[str, Any] | None:
        return None

    def read(self, run_id: str) -> dict[str, Any]:
        steps = self.real.orchestrator.plan_read_run(run_id)
        return {"dry_run": True, "steps": [step.to_json() for step in steps]}


@dataclass
class _LocalRun:
    run_id: str
    pipeline: str
    overrides: dict[str, str]
    display_name: str
    created: str
    state: str = "pending"
    detail: str = ""


class LocalBackend:
    """Runs on the local runner (``vertexkit.local.run_local``), one run at a time."""

    name = "local"

    def __init__(self, project_dir: Path, env: str | None) -> None:
        self.project_dir = project_dir
        self.env = env
        self.runs: dict[str, _LocalRun] = {}
        self.queue: queue.Queue[_LocalRun] = queue.Queue()
        self.counter = itertools.count(1)
        self.lock = threading.Lock()
        self.worker = threading.Thread(target=self._work, name="local-runs", daemon=True)
        self.worker.start()

    def submit(self, submission: Submission) -> dict[str, Any]:
        now = datetime.now(timezone.utc)
        with self.lock:
            run_id = f"local-{submission.pipeline}-{now:%Y%m%d%H%M%S}-{next(self.counter)}"
            run = _LocalRun(
                run_id=run_id,
                pipeline=submission.pipeline,
                # The runner applies config itself and types strings from the pipeline.
                overrides={
                    key: value if isinstance(value, str) else json.dumps(value)
                    for key, value in submission.given.items()
                },
                display_name=submission.display_name or submission.pipeline,
                created=now.isoformat(timespec="seconds"),
            )
            self.runs[run_id] = run
        self.queue.put(run)
        return self._body(run)

    def find(self, key_label: str) -> dict[str, Any] | None:
        return None

    def read(self, run_id: str) -> dict[str, Any]:
        with self.lock:
            run = self.runs.get(run_id)
            if run is None:
                raise NotFound(run_id)
            return self._body(run)

    def _body(self, run: _LocalRun) -> dict[str, Any]:
        body = run_body(
            Run(
                run_id=run.run_id,
                state=run.state,  # type: ignore[arg-type]
                backend_state=run.state,
                display_name=run.display_name,
                created=run.created,
                url="",
                name=run.run_id,
            ),
            run.pipeline,
        )
        if run.detail:
            body["detail"] = run.detail
        return body

    def _work(self) -> None:
        from vertexkit.local.runner import LocalRunError, run_local

        while True:
            run = self.queue.get()
            with self.lock:
                self.runs[run.run_id] = replace(run, state="running")
            console = io.StringIO()
            try:
                result = run_local(
                    self.project_dir, run.pipeline, run.overrides, env=self.env, console=console
                )
                state, detail = "succeeded", f"outputs in {result.run_dir or result.log_path}"
            except (LocalRunError, ValueError) as exc:
                state, detail = "failed", str(exc)
            except Exception as exc:  # keep the worker alive; report the run as failed
                state, detail = "failed", f"{type(exc).__name__}: {exc}"
            with self.lock:
                self.runs[run.run_id] = replace(run, state=state, detail=detail)
            log.info("local run %s %s", run.run_id, state, extra={"run_id": run.run_id})
