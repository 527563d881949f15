"""Cloud work as data: plan (pure), show (dry run), apply.

Every cloud task builds a list of steps with the same code for the dry run and the real run:
``--dry-run`` prints the steps, ``--dry-run --json`` prints them as a JSON array, and the real
run applies exactly those steps, in order, through :func:`execute`. A step may depend on what an
earlier step returned (an image digest, say); until then its fields hold a placeholder
``<from STEP: what>`` and its ``resolve`` callback fills them in from the earlier answers.

Three kinds of step share one shape (``step``, ``to_json``, ``show``, ``apply``): HTTP requests
(:class:`vertexkit.steps.http.HttpStep`), local commands (:class:`CommandStep`) and work done in
this process (:class:`LocalStep`). :func:`vertexkit.steps.execute` shows or applies a plan.
"""

from __future__ import annotations

import shlex
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

Responses = dict[str, Any]


class CloudError(RuntimeError):
    """A step failed; the message names the step and what to do.

    ``status`` is the HTTP status of a refused request (None otherwise); ``detail`` what the
    service itself said; ``google`` whether the request went to Google Cloud with Google
    credentials.
    """

    def __init__(
        self, message: str, status: int | None = None, detail: str = "", *, google: bool = False
    ) -> None:
        super().__init__(message)
        self.status = status
        self.detail = detail
        self.google = google


class CredentialsError(CloudError):
    """No usable credentials for a request."""


class Step(Protocol):
    """What :func:`execute` needs of a step."""

    step: str

    def to_json(self) -> dict[str, Any]: ...

    def show(self) -> str: ...

    def apply(self, responses: Responses, sender: Any) -> Any: ...


SKIPPED = "skipped"  # the answer of a command step whose check decided not to run it


@dataclass(frozen=True)
class CommandStep:
    """One local command, run without a shell; ``extract`` turns its output into the answer.

    Conditional commands, for idempotent plans: ``unless`` is a check command that, when it
    succeeds (exit 0), skips the step (e.g. a describe before a create; shown as
    ``check || command``); ``only_if`` a check that, when it fails, skips the step (e.g. a
    describe before a delete; shown as ``check && command``). A skipped step answers
    :data:`SKIPPED`. ``stream``: the command's output goes to the terminal as it runs (e.g. a
    ``terraform plan`` the user reads before confirming) instead of being captured.
    ``retry_delays``: seconds to wait before each new try of a failed command (e.g. an IAM
    binding on a service account created a moment ago, which Google Cloud may not know yet).
    """

    step: str
    command: tuple[str, ...]
    cwd: str | None = None
    unless: tuple[str, ...] = ()
    only_if: tuple[str, ...] = ()
    stream: bool = False
    retry_delays: tuple[float, ...] = ()
    resolve: Callable[[CommandStep, Responses], CommandStep | str] | None = field(
        default=None, compare=False, repr=False
    )
    extract: Callable[[str], Any] | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.unless and self.only_if:
            raise ValueError(f"{self.step}: give unless or only_if, not both")

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"step": self.step, "command": list(self.command), "cwd": self.cwd}
        if self.unless:
            data["unless"] = list(self.unless)
        if self.only_if:
            data["only_if"] = list(self.only_if)
        return data

    def show(self) -> str:
        where = f"(in {self.cwd}) " if self.cwd else ""
        command = shlex.join(self.command)
        if self.unless:
            command = f"{shlex.join(self.unless)} || {command}"
        elif self.only_if:
            command = f"{shlex.join(self.only_if)} && {command}"
        return f"{where}$ {command}"

    def apply(self, responses: Responses, sender: Any = None) -> Any:
        step = self.resolve(self, responses) if self.resolve else self
        if step is SKIPPED:  # resolve found nothing to do (e.g. nothing to delete)
            return SKIPPED
        if step.unless and command_succeeds(step.unless, step.cwd):
            return SKIPPED
        if step.only_if and not command_succeeds(step.only_if, step.cwd):
            return SKIPPED
        delays = list(step.retry_delays)
        while True:
            try:
                output = run_command(step)
                break
            except CloudError:
                if not delays:
                    raise
                time.sleep(delays.pop(0))
        return self.extract(output) if self.extract else output


@dataclass(frozen=True)
class LocalStep:
    """Work done in this process between cloud steps (compiling, recording a build)."""

    step: str
    description: str
    action: Callable[[Responses], Any] = field(compare=False, repr=False)

    def to_json(self) -> dict[str, Any]:
        return {"step": self.step, "local": self.description}

    def show(self) -> str:
        return self.description

    def apply(self, responses: Responses, sender: Any = None) -> Any:
        return self.action(responses)


def command_succeeds(command: tuple[str, ...], cwd: str | None = None) -> bool:
    """Whether ``command`` exits 0 (its output is discarded); a missing program is a CloudError."""
    try:
        result = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    except OSError as exc:
        raise CloudError(f"cannot run `{command[0]}`: {exc}") from None
    return result.returncode == 0


def run_command(step: CommandStep) -> str:
    """Run the command; its standard output, or a CloudError naming the step."""
    try:
        if step.stream:
            streamed = subprocess.run(step.command, cwd=step.cwd)
            if streamed.returncode != 0:
                raise CloudError(
                    f"{step.step}: `{' '.join(step.command)}` failed with exit code "
                    f"{streamed.returncode} (its output is above)"
                )
            return ""
        result = subprocess.run(step.command, cwd=step.cwd, capture_output=True, text=True)
    except OSError as exc:
        raise CloudError(f"{step.step}: cannot run `{step.command[0]}`: {exc}") from None
    if result.returncode != 0:
        output = (result.stderr or result.stdout).strip()[-2000:]
        raise CloudError(f"{step.step}: `{' '.join(step.command)}` failed: {output}")
    return result.stdout


def placeholder(step: str, what: str) -> str:
    """The text a dry run shows for a value that an earlier step returns."""
    return f"<from {step}: {what}>"


def substitute(value: Any, replacements: Mapping[str, str]) -> Any:
    """Replace placeholders anywhere in a JSON-like value."""
    if isinstance(value, str):
        for old, new in replacements.items():
            value = value.replace(old, new)
        return value
    if isinstance(value, list):
        return [substitute(v, replacements) for v in value]
    if isinstance(value, dict):
        return {k: substitute(v, replacements) for k, v in value.items()}
    return value
