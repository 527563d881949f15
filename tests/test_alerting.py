"""Drift alerting: the planned metric and policy, gcloud through a fake `gcloud` on PATH, the
Terraform files parsed with hcl2, and the log filter against the line the drift step prints."""

from __future__ import annotations

import io
import json
from pathlib import Path

import hcl2
import pandas as pd
import pytest

from tests.test_provision import calls, config_with, run_invoke, tools, use_tool  # noqa: F401
from vertexkit.gcp import alerting, provision
from vertexkit.gcp.monitoring import breach_log_line
from vertexkit.local.drift import compare, reference_statistics
from vertexkit.project.config import ConfigError
from vertexkit.steps import execute

TERRAFORM = (
    Path(__file__).parent.parent
    / "template"
    / "{% if provisioning == 'terraform' %}infra{% endif %}"
    / "terraform"
)
POLICY = "demo dev: data drift in batch predictions"


def test_the_plan_names_metric_policy_and_channels() -> None:
    channels = "['123', projects/other-project/notificationChannels/9]"
    config = config_with(monitoring__alert_notification_channels=channels)
    alert = provision.plan_infrastructure(config).drift_alerting
    assert alert is not None
    assert alert.metric == "demo-dev-drift-breaches"
    assert alert.policy_display_name == POLICY
    assert alert.notification_channels == (
        "projects/acme-ml-dev/notificationChannels/123",
        "projects/other-project/notificationChannels/9",
    )
    assert "monitoring.googleapis.com" in provision.plan_infrastructure(config).apis
    assert "retrain_on_drift` is off" in alert.documentation


def test_a_bad_channel_names_the_field() -> None:
    with pytest.raises(ConfigError) as error:
        config_with(monitoring__alert_notification_channels="['my channel']")
    assert "monitoring.alert_notification_channels.0" in str(error.value)
    assert "notificationChannels/ID" in str(error.value)


def test_the_log_filter_matches_the_breach_line_and_only_its_environment() -> None:
    reference = reference_statistics(pd.DataFrame({"x": [1.0, 2.0, 3.0]}))
    result = compare(pd.DataFrame({"x": [9.0, 9.0]}), reference)
    line = breach_log_line(result, {"project": "demo", "environment": "dev", "run": "r"})
    record = json.loads(line)
    dev, prod = alerting.log_filter("demo", "dev"), alerting.log_filter("demo", "prod")
    # Structured: every jsonPayload.KEY="VALUE" term holds in the parsed line.
    for key, value in [("event", "vertexkit.drift.breach"), ("project", "demo")]:
        assert f'jsonPayload.{key}="{value}"' in dev and record[key] == value
    assert 'jsonPayload.environment="dev"' in dev and record["environment"] == "dev"

    # As text: every textPayload:"..." substring is in the line for dev, not all for prod.
    def substrings(query: str) -> list[str]:
        text = query.split(") OR (", 1)[1]
        return [json.loads(term.split(":", 1)[1]) for term in text.rstrip(")").split(" AND ")]

    assert all(s in line for s in substrings(dev))
    assert not all(s in line for s in substrings(prod))


def test_gcloud_creates_then_replaces_the_policy_and_deletes_both(
    project: Path,
    tmp_path: Path,
    tools: Path,  # noqa: F811
) -> None:
    use_tool(project, "gcloud")
    with (project / "config" / "dev.yaml").open("a") as overlay:
        overlay.write("monitoring:\n  alert_notification_channels: ['42']\n")
    assert run_invoke(project, tmp_path, tools, "provision", "--env", "dev").returncode == 0
    first = calls(tmp_path)
    [metric] = [c for c in first if c[1:4] == ["logging", "metrics", "create"]]
    assert metric[4] == "demo-dev-drift-breaches"
    log_filter = next(a for a in metric if a.startswith("--log-filter=")).split("=", 1)[1]
    assert log_filter == alerting.log_filter("demo", "dev")
    [create] = [c for c in first if c[1:4] == ["monitoring", "policies", "create"]]
    written = Path(next(a for a in create if a.startswith("--policy-from-file=")).split("=")[1])
    policy = json.loads(written.read_text())
    assert policy["displayName"] == POLICY
    assert policy["notificationChannels"] == ["projects/acme-ml-dev/notificationChannels/42"]
    condition = policy["conditions"][0]["conditionThreshold"]
    assert (
        condition["filter"] == 'metric.type="logging.googleapis.com/user/demo-dev-drift-breaches"'
    )
    assert (condition["comparison"], condition["thresholdValue"]) == ("COMPARISON_GT", 0)
    # The metric exists before the policy that names it.
    assert first.index(metric) < first.index(create)

    (tmp_path / "calls.jsonl").unlink()
    assert run_invoke(project, tmp_path, tools, "provision", "--env", "dev").returncode == 0
    second = calls(tmp_path)
    assert not [c for c in second if "create" in c]
    [update] = [c for c in second if c[1:4] == ["monitoring", "policies", "update"]]
    assert update[4].startswith("projects/p/alertPolicies/") and "--project=acme-ml-dev" in update

    (tmp_path / "calls.jsonl").unlink()
    gone = run_invoke(project, tmp_path, tools, "deprovision", "--env", "dev", "--yes")
    assert gone.returncode == 0, gone.stderr
    deletes = [c[1:5] for c in calls(tmp_path) if "delete" in c]
    assert deletes[:2] == [
        ["monitoring", "policies", "delete", update[4]],
        ["logging", "metrics", "delete", "demo-dev-drift-breaches"],
    ]


def test_gcloud_dry_run_shows_the_lookup_and_sends_nothing(tmp_path: Path) -> None:
    infra = provision.plan_infrastructure(config_with())
    shown = io.StringIO()
    execute(alerting.plan_gcloud(infra, tmp_path), dry_run=True, out=shown)
    text = shown.getvalue()
    assert (
        "gcloud logging metrics describe demo-dev-drift-breaches --project=acme-ml-dev ||" in text
    )
    assert f'--filter=displayName="{POLICY}"' in text.replace("'", "")
    assert "gcloud monitoring policies update '<from find drift alert policy: policy name>'" in text
    assert not (tmp_path / "build").exists(), "a dry run writes no policy file"


def test_terraform_declares_what_the_plan_holds() -> None:
    resources = hcl2.load((TERRAFORM / "monitoring.tf").open())["resource"]
    kinds = {kind: body for block in resources for kind, body in block.items()}
    metric = kinds['"google_logging_metric"']['"drift_breaches"']
    assert metric["filter"] == "${var.drift_alert.log_filter}"
    descriptor = metric["metric_descriptor"][0]
    assert (descriptor["metric_kind"], descriptor["value_type"]) == ('"DELTA"', '"INT64"')
    policy = kinds['"google_monitoring_alert_policy"']['"drift"']
    assert policy["notification_channels"] == "${var.drift_alert.notification_channels}"
    threshold = policy["conditions"][0]["condition_threshold"][0]
    assert threshold["comparison"] == '"COMPARISON_GT"'
    variables = {
        name: body
        for block in hcl2.load((TERRAFORM / "variables.tf").open())["variable"]
        for name, body in block.items()
    }
    declared = variables['"drift_alert"']["type"]
    written = provision.tfvars(provision.plan_infrastructure(config_with()))["drift_alert"]
    for key in written:
        assert key in declared, key
