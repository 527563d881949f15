"""The orchestrator interface: what every backend that runs compiled pipelines offers.

Two implementations: Vertex AI Pipelines (:mod:`vertexkit.orchestrators.vertex`) and any
Kubeflow Pipelines cluster (:mod:`vertexkit.orchestrators.kfp`). Everything above this layer (the
deploy plans, the invoke tasks, the submission service) calls this interface and never asks which
backend it has. Plans are lists of steps (:mod:`vertexkit.steps`), so every operation has a dry
run; reading answers back (``submitted``, ``runs``, ``run``) is pure.
"""

from __future__ import annotations

import sys
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal, TextIO

from vertexkit.project.config import ProjectConfig
from vertexkit.project.release import Release
from vertexkit.steps import CloudError, HttpStep, Responses, Sender, Step

RunState = Literal["pending", "running", "succeeded", "failed", "cancelled", "unknown"]
TERMINAL: frozenset[RunState] = frozenset({"succeeded", "failed", "cancelled"})
SCHEDULE_ACTIONS = ("create", "pause", "resume", "delete")


def follow_tasks(
    read: HttpStep,
    *,
    tasks: Callable[[Any], Iterable[tuple[str, str]]],
    finished: Callable[[Any], bool],
    sender: Sender | None = None,
    out: TextIO | None = None,
    poll_seconds: float = 20.0,
    timeout_seconds: float = 24 * 3600,
) -> Any:
    """Send ``read`` until ``finished(answer)``, printing each task's state when it changes;
    the last answer. ``tasks(answer)`` gives (task name, state) pairs."""
    out = out or sys.stdout
    sender = sender or Sender()
    seen: dict[str, str] = {}
    deadline = time.monotonic() + timeout_seconds
    while True:
        answer = sender.send(read) or {}
        for name, state in tasks(answer):
            if seen.get(name) != state:
                seen[name] = state
                out.write(f"  {name:<28} {state}\n")
                out.flush()
        if finished(answer):
            return answer
        if time.monotonic() > deadline:
            raise CloudError(f"{read.step}: gave up after {timeout_seconds:.0f}s: {read.url}")
        time.sleep(poll_seconds)


class ScheduleUnsupported(ValueError):
    """The orchestrator has no schedules that vertexkit can manage."""


@dataclass(frozen=True)
class Run:
    """One pipeline run, as every orchestrator reports it."""

    run_id: str
    state: RunState  # normalised; ``backend_state`` is the orchestrator's own word
    backend_state: str
    display_name: str = ""
    created: str = ""  # ISO 8601, as the orchestrator gave it
    url: str = ""  # where a person sees the run
    name: str = ""  # the orchestrator's resource name (projects/.../pipelineJobs/ID; KFP: the id)

    @property
    def finished(self) -> bool:
        return self.state in TERMINAL

    @property
    def succeeded(self) -> bool:
        return self.state == "succeeded"


class Orchestrator(ABC):
    """Publish templates, submit runs, follow them, list and read them, and schedule them."""

    name: ClassVar[str]  # the config's ``orchestrator`` value
    title: ClassVar[str]  # for people: "Vertex AI Pipelines"
    supports_schedules: ClassVar[bool] = False
    # Whether runs carry labels (``plan_submit(labels=...)``) and can be found by them.
    supports_labels: ClassVar[bool] = False

    def __init__(self, config: ProjectConfig) -> None:
        self.config = config

    # Publishing -------------------------------------------------------------------------------

    @abstractmethod
    def plan_publish(
        self,
        templates: Mapping[str, Path],
        release: Release,
        *,
        compiled_earlier: bool = True,
    ) -> list[Step]:
        """Upload compiled templates (pipeline name -> YAML path) as this release.

        ``compiled_earlier=False`` is for plans that compile first: the files are then checked
        when the upload is sent, not when it is planned.
        """

    def published(self, responses: Responses) -> list[str]:
        """Lines that say where each template now is, from the answers of ``plan_publish``."""
        return []

    @abstractmethod
    def plan_find_published(
        self, pipeline: str, release: Release, *, template_name: str
    ) -> list[Step]:
        """Check that this release published ``pipeline`` (a file in ``pipelines/``; its
        compiled name is ``template_name``); the last step fails, saying how to publish it,
        when it did not."""

    # Runs -------------------------------------------------------------------------------------

    @abstractmethod
    def plan_submit(
        self,
        pipeline: str,
        parameters: Mapping[str, Any],
        release: Release,
        *,
        template_name: str,
        published_in_plan: bool = False,
        labels: Mapping[str, str] | None = None,
        display_name: str | None = None,
    ) -> list[Step]:
        """Submit one run of ``pipeline`` (a file in ``pipelines/``) with typed ``parameters``.

        The template is the one this release published: by an earlier step of the same plan
        (``published_in_plan``) or before. ``template_name`` is the compiled pipeline's own name
        (``pipelineInfo.name``). ``labels`` are added to the run's own labels (only where
        ``supports_labels``); ``display_name`` replaces the default one.
        """

    @abstractmethod
    def submitted(self, responses: Responses) -> Run | None:
        """The run among the answers of a plan that submitted one, if any."""

    @abstractmethod
    def follow(
        self,
        run_id: str,
        *,
        sender: Sender | None = None,
        out: TextIO | None = None,
        poll_seconds: float = 20.0,
    ) -> Run:
        """Print the run's task states as they change until it ends; the final run."""

    @abstractmethod
    def plan_list_runs(self, limit: int = 10) -> list[Step]:
        """The environment's newest runs."""

    @abstractmethod
    def runs(self, responses: Responses) -> list[Run]:
        """The runs that ``plan_list_runs`` read."""

    @abstractmethod
    def render_runs(self, responses: Responses) -> str:
        """The runs that ``plan_list_runs`` read, one line each, for people."""

    def plan_find_runs(self, labels: Mapping[str, str], limit: int = 10) -> list[Step]:
        """The environment's newest runs that carry every one of ``labels`` (read with
        ``runs``); only where ``supports_labels``."""
        raise NotImplementedError(f"{self.title} runs carry no labels")

    @abstractmethod
    def plan_read_run(self, run_id: str) -> list[Step]:
        """One run with its tasks."""

    @abstractmethod
    def run(self, responses: Responses) -> Run:
        """The run that ``plan_read_run`` read."""

    @abstractmethod
    def render_run(self, responses: Responses) -> str:
        """The run that ``plan_read_run`` read, with its tasks, errors and where its logs are."""

    @abstractmethod
    def run_url(self, run_id: str) -> str:
        """Where a person sees the run."""

    # Schedules --------------------------------------------------------------------------------

    def plan_schedule(
        self,
        pipeline: str,
        action: str,
        release: Release,
        *,
        template_name: str = "",
        cron: str | None = None,
        parameters: Mapping[str, Any] | None = None,
    ) -> list[Step]:
        """Create or update (by name), pause, resume or delete a pipeline's schedule."""
        raise ScheduleUnsupported(
            f"vertexkit manages no schedules on {self.title}: create a recurring run in its UI"
        )
