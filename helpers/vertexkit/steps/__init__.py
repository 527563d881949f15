"""Steps: cloud work as data, shown by dry runs and applied by one runner and one sender.

Plan (pure: a list of steps) -> show (``execute(steps, dry_run=True)``, ``as_json=True``)
-> apply (``execute(steps)``). See :mod:`vertexkit.steps.base` and :mod:`vertexkit.steps.http`.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import TextIO

from vertexkit.steps.base import (
    SKIPPED,
    CloudError,
    CommandStep,
    CredentialsError,
    LocalStep,
    Responses,
    Step,
    placeholder,
    run_command,
    substitute,
)
from vertexkit.steps.http import DEFAULT_ENDPOINTS, Found, HttpStep, Sender, endpoint

__all__ = [
    "DEFAULT_ENDPOINTS",
    "SKIPPED",
    "CloudError",
    "CommandStep",
    "CredentialsError",
    "Found",
    "HttpStep",
    "LocalStep",
    "Responses",
    "Sender",
    "Step",
    "endpoint",
    "execute",
    "placeholder",
    "run_command",
    "substitute",
]


def execute(
    steps: Sequence[Step],
    *,
    dry_run: bool = False,
    as_json: bool = False,
    sender: Sender | None = None,
    out: TextIO | None = None,
) -> Responses:
    """Show (dry run) or apply ``steps`` in order; returns each step's answer by step name.

    HTTP steps go through ``sender`` (default: a new :class:`Sender`, which looks for
    credentials only when the first request needs them).
    """
    out = out or sys.stdout
    if dry_run:
        if as_json:
            out.write(json.dumps([s.to_json() for s in steps], indent=2) + "\n")
        else:
            for number, step in enumerate(steps, 1):
                out.write(f"[{number}/{len(steps)}] {step.step} (dry run: not sent)\n")
                out.write("  " + step.show().replace("\n", "\n  ") + "\n")
        return {}
    sender = sender or Sender()
    responses: Responses = {}
    for number, step in enumerate(steps, 1):
        out.write(f"[{number}/{len(steps)}] {step.step}\n")
        out.flush()
        responses[step.step] = step.apply(responses, sender)
    return responses
