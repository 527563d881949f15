"""Drift checks of batch predictions: measure, report, log the breach, retrain at most once.

:func:`monitor_drift` is what the prediction pipeline's drift step calls. It compares the scored
data with the champion's reference statistics (:mod:`vertexkit.local.drift`), writes the HTML
report (:mod:`vertexkit.local.drift_report`) and, on a breach:

* prints one structured log line, ``{"event": "vertexkit.drift.breach", ...}``, which the
  log-based metric that ``invoke provision`` creates counts and its alert policy watches
  (:mod:`vertexkit.gcp.alerting`);
* when the environment's ``monitoring.retrain_on_drift`` is on, claims the retraining in the
  model registry (a cool-down of ``retrain_cooldown_hours``, recorded with the model, so every
  run sees it and two concurrent breaches start one run) and submits the training pipeline
  through the environment's orchestrator. The template submitted is the training pipeline last
  published to the environment (tag ``latest``), with its configured parameter values.

Runs of ``base.yaml`` alone (environment ``local``) never submit: they claim the cool-down in the
local registry and print the request they would send.
"""

from __future__ import annotations

import html
import json
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, TextIO

import pandas as pd

from vertexkit.gcp.model_registry import open_registry
from vertexkit.local.drift import DriftError, DriftResult, check_reference, compare
from vertexkit.local.drift_report import render_html
from vertexkit.orchestrators import for_config
from vertexkit.project.config import ProjectConfig, config_from_parameter
from vertexkit.project.release import LATEST, Release
from vertexkit.steps import CloudError, Sender, execute

BREACH_EVENT = "vertexkit.drift.breach"


@dataclass(frozen=True)
class DriftCheck:
    """The outcome of :func:`monitor_drift`."""

    result: DriftResult
    html: str
    retraining: str  # what happened about retraining, one line for people
    retrain_submitted: bool = False

    @property
    def breached(self) -> bool:
        return self.result.breached

    def metrics(self) -> dict[str, float]:
        """The drift metrics and whether a retraining was submitted (0 or 1)."""
        return {**self.result.metrics(), "retrain_submitted": float(self.retrain_submitted)}


def load_reference(path: str | Path) -> dict[str, Any]:
    """Reference statistics stored with a model version; DriftError says what is wrong."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DriftError(
            f"no reference statistics at {path}: the champion was registered before training "
            "stored them; run the training pipeline to register a model that has them"
        ) from None
    except (OSError, ValueError) as exc:
        raise DriftError(f"{path}: cannot read reference statistics: {exc}") from None
    return check_reference(data, str(path))


def breach_log_line(result: DriftResult, context: Mapping[str, Any]) -> str:
    """The one JSON line a breach prints; Cloud Logging keeps it as the entry's payload."""
    record = {
        "event": BREACH_EVENT,
        "severity": "WARNING",
        "message": f"data drift in {len(result.breaches) + len(result.missing_features)} "
        f"features: {', '.join([f.name for f in result.breaches] + result.missing_features)}",
        **context,
        **result.summary(),
    }
    return json.dumps(record, sort_keys=True, allow_nan=False)


def trigger_retraining(
    config: ProjectConfig,
    *,
    model_name: str,
    model_registry: str,
    pipeline: str = "training",
    template: str = "",
    reason: str = "",
    sender: Sender | None = None,
    now: datetime | None = None,
    out: TextIO | None = None,
) -> tuple[bool, str]:
    """Claim the cool-down in the model registry, then submit ``pipeline`` (whose compiled name
    is ``template``) through the environment's orchestrator. Returns (submitted, what happened).

    A claim that is refused (within the cool-down, or taken by a concurrent run) submits
    nothing. For environment ``local`` the request is printed, not sent.
    """
    out = out or sys.stdout
    now = now or datetime.now(timezone.utc)
    cooldown = timedelta(hours=config.monitoring.retrain_cooldown_hours)
    registry = open_registry(model_registry, model_name, sender=sender)
    claimed, last = registry.claim_retrain(cooldown, now, reason=reason)
    if not claimed:
        if last is None:
            return False, "retraining not submitted: a concurrent run claimed it"
        until = (last + cooldown).isoformat(timespec="seconds")
        return False, (
            f"retraining not submitted: cool-down since {last.isoformat(timespec='seconds')} "
            f"(monitoring.retrain_cooldown_hours={config.monitoring.retrain_cooldown_hours:g}) "
            f"until {until}"
        )
    orchestrator = for_config(config)
    steps = orchestrator.plan_submit(
        pipeline, {}, Release(LATEST, [LATEST]), template_name=template or pipeline
    )
    if config.environment == "local":
        out.write(
            f"retraining claimed; local runs submit nothing. With --env ENV this run would "
            f"send to {orchestrator.title}:\n"
        )
        execute(steps, dry_run=True, out=out)
        return False, (
            f"retraining claimed (cool-down {config.monitoring.retrain_cooldown_hours:g} h); "
            f"not submitted from a local run: retrain with `invoke run --local --pipeline "
            f"{pipeline}`"
        )
    responses = execute(steps, sender=sender, out=out)
    run = orchestrator.submitted(responses)
    where = f"{run.run_id} ({run.url})" if run else "(no run in the answers)"
    return True, f"retraining submitted to {orchestrator.title}: {where}"


def monitor_drift(
    frame: pd.DataFrame,
    reference_path: str | Path,
    monitoring: str,
    *,
    model_name: str,
    model_registry: str,
    model_version: str | float = "",
    run_name: str = "",
    report_path: str | Path | None = None,
    retrain_pipeline: str = "training",
    retrain_template: str = "",
    sender: Sender | None = None,
    now: datetime | None = None,
    out: TextIO | None = None,
) -> DriftCheck:
    """Compare ``frame`` with the reference at ``reference_path`` using the environment's
    ``monitoring`` pipeline parameter; report, log and, on a breach, maybe retrain.

    ``report_path``: where the HTML report is written (the KFP HTML artifact's path).
    """
    out = out or sys.stdout
    config = config_from_parameter(monitoring)
    settings = config.monitoring
    if not Path(reference_path).exists():
        return _not_checked(frame, model_name, model_version, report_path, out)
    result = compare(
        frame,
        load_reference(reference_path),
        thresholds=settings.thresholds.model_dump(),
        feature_thresholds={
            name: limits.model_dump(exclude_none=True) for name, limits in settings.features.items()
        },
    )
    context = {
        "project": config.name,
        "environment": config.environment,
        "model": model_name,
        # KFP metadata numbers are floats: version 1 arrives as 1.0.
        "model_version": str(
            int(model_version)
            if isinstance(model_version, float) and model_version.is_integer()
            else model_version
        ),
        "run": run_name,
    }
    submitted, retraining = False, "no drift: nothing to retrain"
    if result.breached:
        out.write(breach_log_line(result, context) + "\n")
        out.flush()
        if settings.retrain_on_drift:
            try:
                submitted, retraining = trigger_retraining(
                    config,
                    model_name=model_name,
                    model_registry=model_registry,
                    pipeline=retrain_pipeline,
                    template=retrain_template,
                    reason=f"drift found by {run_name or 'a prediction run'}",
                    sender=sender,
                    now=now,
                    out=out,
                )
            except (CloudError, ValueError, LookupError) as exc:
                # The breach is reported and alerted either way; a failed submission must not
                # hide it. The claim stays, so a broken submission is not retried every run.
                retraining = f"retraining failed: {exc}"
        else:
            retraining = (
                f"retraining off for environment {config.environment!r} "
                "(monitoring.retrain_on_drift)"
            )
    out.write(f"drift: {'BREACH' if result.breached else 'none'}; {retraining}\n")
    page = render_html(result, {**context, "retraining": retraining})
    if report_path is not None:
        Path(report_path).write_text(page, encoding="utf-8")
    return DriftCheck(result, page, retraining, submitted)


def _not_checked(
    frame: pd.DataFrame,
    model_name: str,
    model_version: str | float,
    report_path: str | Path | None,
    out: TextIO,
) -> DriftCheck:
    """The champion has no reference statistics (registered by a vertexkit before 0.2.0): say
    so in the log and the report, and score as usual; nothing is compared or retrained."""
    version = (
        int(model_version)
        if isinstance(model_version, float) and model_version.is_integer()
        else model_version
    )
    reason = (
        f"drift not checked: the champion {model_name} {version} has no reference statistics "
        "(registered before training stored them); it is checked once a model trained with "
        "this version becomes the champion"
    )
    out.write(reason + "\n")
    page = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Drift report</title>'
        f'</head><body><h1>Drift report</h1><p class="verdict" id="verdict">'
        f"{html.escape(reason[0].upper() + reason[1:])}.</p></body></html>\n"
    )
    if report_path is not None:
        Path(report_path).write_text(page, encoding="utf-8")
    result = DriftResult(features=[], rows=len(frame), reference_rows=0)
    return DriftCheck(result, page, "not checked: no reference statistics", False)
