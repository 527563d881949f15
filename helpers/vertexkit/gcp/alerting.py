"""Alerting on drift: a log-based metric that counts breach log lines, and an alert policy on it.

The prediction pipeline's drift step prints one line per breach,
``{"event": "vertexkit.drift.breach", "project": ..., "environment": ..., ...}``
(:mod:`vertexkit.gcp.monitoring`). Per environment, ``invoke provision`` creates:

* the log-based counter metric ``<naming_prefix>-<environment>-drift-breaches`` over those
  lines (as structured ``jsonPayload`` or as ``textPayload``, however the runner's logs are
  ingested);
* the alert policy "<project> <environment>: data drift in batch predictions", which opens an
  incident when the metric counts a breach and notifies ``monitoring.alert_notification_channels``.

Both tools create the same two resources: Terraform (``monitoring.tf``, from :func:`tfvars`) and
gcloud (:func:`plan_gcloud`: ``gcloud logging metrics create`` unless it exists, then the policy
created or, when one of that display name exists, replaced with ``gcloud monitoring policies``).
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from vertexkit.gcp.infrastructure import DriftAlerting, Infrastructure
from vertexkit.project.config import ProjectConfig
from vertexkit.steps import SKIPPED, CommandStep, LocalStep, Responses, Step, placeholder

BREACH_EVENT = "vertexkit.drift.breach"  # the event of vertexkit.gcp.monitoring's log line
APIS: tuple[str, ...] = ("logging.googleapis.com", "monitoring.googleapis.com")
ALIGNMENT = "300s"  # breaches are counted per five minutes
AUTO_CLOSE = "86400s"  # an incident without new breaches closes after a day
_FIND = "find drift alert policy"


def _quoted(text: str) -> str:
    """A string literal of the Logging query language."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def log_filter(project: str, environment: str) -> str:
    """The breach lines of one project and environment, structured or as plain text."""
    structured = (
        f"jsonPayload.event={_quoted(BREACH_EVENT)} AND "
        f"jsonPayload.project={_quoted(project)} AND "
        f"jsonPayload.environment={_quoted(environment)}"
    )
    text = (
        f"textPayload:{_quoted(BREACH_EVENT)} AND "
        f"textPayload:{_quoted(json.dumps({'environment': environment})[1:-1])} AND "
        f"textPayload:{_quoted(json.dumps({'project': project})[1:-1])}"
    )
    return f"({structured}) OR ({text})"


def channel_name(project_id: str, channel: str) -> str:
    """A notification channel's full name from its id or full name."""
    return (
        channel
        if channel.startswith("projects/")
        else (f"projects/{project_id}/notificationChannels/{channel}")
    )


def plan_alerting(config: ProjectConfig) -> DriftAlerting:
    """The environment's drift metric and alert policy (pure)."""
    env, project = config.environment, config.name
    metric = f"{config.naming_prefix}-{env}-drift-breaches"
    documentation = (
        f"The prediction pipeline of **{project}** found data drift in environment **{env}**: "
        "scored data differ from the champion model's training data beyond the thresholds of "
        "`monitoring:` in config/.\n\n"
        "- The run's `drift_report` output (an HTML artifact in the Vertex AI console) plots "
        "every feature against the training data and names the breaches.\n"
        f"- The breach log lines: `{BREACH_EVENT}` in Logs Explorer.\n"
        + (
            "- `monitoring.retrain_on_drift` is on: the training pipeline was submitted, at most "
            f"once per {config.monitoring.retrain_cooldown_hours:g} hours."
            if config.monitoring.retrain_on_drift
            else "- `monitoring.retrain_on_drift` is off: retrain when the drift is real."
        )
    )
    return DriftAlerting(
        metric=metric,
        metric_description=f"Drift breaches found by {project}'s prediction runs in {env}.",
        log_filter=log_filter(project, env),
        policy_display_name=f"{project} {env}: data drift in batch predictions",
        documentation=documentation,
        notification_channels=tuple(
            channel_name(config.gcp.project_id, c)
            for c in config.monitoring.alert_notification_channels
        ),
        why="alerts on drift found by prediction runs (docs: monitoring)",
    )


def policy(infra: Infrastructure) -> dict[str, Any]:
    """The alert policy as the Monitoring API (and ``--policy-from-file``) takes it."""
    alert = _required(infra)
    return {
        "displayName": alert.policy_display_name,
        "combiner": "OR",
        "conditions": [
            {
                "displayName": "drift breaches logged",
                "conditionThreshold": {
                    "filter": (f'metric.type="logging.googleapis.com/user/{alert.metric}"'),
                    "comparison": "COMPARISON_GT",
                    "thresholdValue": 0,
                    "duration": "0s",
                    "aggregations": [
                        {
                            "alignmentPeriod": ALIGNMENT,
                            "perSeriesAligner": "ALIGN_SUM",
                            "crossSeriesReducer": "REDUCE_SUM",
                        }
                    ],
                },
            }
        ],
        "notificationChannels": list(alert.notification_channels),
        "alertStrategy": {"autoClose": AUTO_CLOSE},
        "severity": "WARNING",
        "documentation": {
            "content": alert.documentation,
            "mimeType": "text/markdown",
            "subject": alert.policy_display_name,
        },
        "userLabels": dict(infra.labels),
    }


def tfvars(infra: Infrastructure) -> dict[str, Any]:
    """The ``drift_alert`` Terraform variable (variables.tf, monitoring.tf)."""
    alert = _required(infra)
    return {
        "drift_alert": {
            "metric": alert.metric,
            "metric_description": alert.metric_description,
            "log_filter": alert.log_filter,
            "policy_display_name": alert.policy_display_name,
            "documentation": alert.documentation,
            "notification_channels": list(alert.notification_channels),
            "alignment_period": ALIGNMENT,
            "auto_close": AUTO_CLOSE,
        }
    }


def policy_file(project_dir: Path, infra: Infrastructure) -> Path:
    return project_dir / "build" / "provision" / infra.environment / "drift-alert-policy.json"


def _find(infra: Infrastructure) -> CommandStep:
    alert = _required(infra)
    return CommandStep(
        _FIND,
        (
            "gcloud", "monitoring", "policies", "list", f"--project={infra.project_id}",
            f"--filter=displayName={_quoted(alert.policy_display_name)}", "--format=value(name)",
        ),
        extract=lambda output: output.split(),
    )  # fmt: skip


def plan_gcloud(infra: Infrastructure, project_dir: Path) -> list[Step]:
    """Create the metric unless it exists; create the policy, or replace the one found."""
    alert, project = _required(infra), f"--project={infra.project_id}"
    path = policy_file(project_dir, infra)

    def write(_: Responses) -> str:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(policy(infra), indent=2) + "\n", encoding="utf-8")
        return str(path)

    found = placeholder(_FIND, "policy name")

    def create_or_replace(step: CommandStep, responses: Responses) -> CommandStep:
        names = responses.get(_FIND) or []
        if not names:
            command = ("gcloud", "monitoring", "policies", "create", *step.command[5:])
            return replace(step, step=f"create alert policy {alert.policy_display_name!r}",
                           command=command)  # fmt: skip
        return replace(step, command=(*step.command[:4], names[0], *step.command[5:]))

    return [
        CommandStep(
            f"create log-based metric {alert.metric}",
            (
                "gcloud",
                "logging",
                "metrics",
                "create",
                alert.metric,
                project,
                f"--description={alert.metric_description}",
                f"--log-filter={alert.log_filter}",
            ),
            unless=("gcloud", "logging", "metrics", "describe", alert.metric, project),
        ),
        LocalStep(
            "write drift alert policy",
            f"write {path.relative_to(project_dir)}: the alert policy on {alert.metric}",
            write,
        ),
        _find(infra),
        CommandStep(
            f"create or replace alert policy {alert.policy_display_name!r}",
            (
                "gcloud",
                "monitoring",
                "policies",
                "update",
                found,
                f"--policy-from-file={path}",
                project,
            ),
            resolve=create_or_replace,
        ),
    ]


def plan_gcloud_teardown(infra: Infrastructure) -> list[Step]:
    """Delete the alert policy (when one of its display name exists), then the metric."""
    alert, project = _required(infra), f"--project={infra.project_id}"

    def found_one(step: CommandStep, responses: Responses) -> CommandStep | str:
        names = responses.get(_FIND) or []
        if not names:
            return SKIPPED
        return replace(step, command=(*step.command[:4], names[0], *step.command[5:]))

    return [
        _find(infra),
        CommandStep(
            f"delete alert policy {alert.policy_display_name!r}",
            (
                "gcloud",
                "monitoring",
                "policies",
                "delete",
                placeholder(_FIND, "policy name"),
                project,
                "--quiet",
            ),
            resolve=found_one,
        ),
        CommandStep(
            f"delete log-based metric {alert.metric}",
            ("gcloud", "logging", "metrics", "delete", alert.metric, project, "--quiet"),
            only_if=("gcloud", "logging", "metrics", "describe", alert.metric, project),
        ),
    ]


def _required(infra: Infrastructure) -> DriftAlerting:
    if infra.drift_alerting is None:
        raise ValueError("the infrastructure has no drift alerting planned")
    return infra.drift_alerting
