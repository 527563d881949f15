"""The submission service's infrastructure (issue 10): its identities and roles in the plan, the
gcloud commands through a fake gcloud on PATH, the Terraform variables vertexkit writes (checked
by Terraform itself), and the identities in docs/provisioning.md."""

from __future__ import annotations

import json
import re
import shutil
import zipfile
from pathlib import Path

import pytest

from tests.recording_server import RecordingServer
from tests.service_support import commit_of
from tests.template_support import ROOT
from tests.test_infra import TEMPLATE_TF, _plan_variables
from tests.test_provision import (
    FAKE_ALERT_POLICIES,
    FAKE_TERRAFORM,
    calls,
    fake_tool,
    run_invoke,
    use_tool,
)
from vertexkit.gcp import provision, service_infra
from vertexkit.project.config import ProjectConfig, load_config

PROJECT = "acme-ml-dev"
DIGEST = "sha256:" + "ab" * 32
IMAGE = f"europe-west4-docker.pkg.dev/{PROJECT}/demo-images/submission@{DIGEST}"
NUMBER = "123456789012"


def account(name: str) -> str:
    return f"serviceAccount:demo-{name}@{PROJECT}.iam.gserviceaccount.com"


SUBMIT, PUSH, DEPLOYER = account("submit"), account("push"), account("deployer")
PUBSUB_AGENT = "serviceAccount:service-{project_number}@gcp-sa-pubsub.iam.gserviceaccount.com"
SCHEDULER_AGENT = (
    "serviceAccount:service-{project_number}@gcp-sa-cloudscheduler.iam.gserviceaccount.com"
)


def config(**overrides: object) -> ProjectConfig:
    data = {
        "name": "demo",
        "naming_prefix": "demo",
        "gcp": {"project_id": PROJECT, "region": "europe-west4"},
        "service": {"kind": "cloud-run"},
        "scheduler": "cloud-scheduler",
        "pipelines": {"training": {"schedule": {"cron": "0 6 * * MON", "timezone": "UTC"}}},
        **overrides,
    }
    return ProjectConfig.model_validate(data)


# --- the plan -----------------------------------------------------------------------------


def test_no_service_adds_nothing() -> None:
    infra = provision.plan_infrastructure(config(service={"kind": "none"}, scheduler="none"))
    assert [a.account_id for a in infra.service_accounts] == [
        "demo-pipelines",
        "demo-deployer",
        "demo-builder",
    ]
    assert infra.submission is None and not infra.topics and not infra.scheduler_jobs
    assert infra.apis == provision.APIS


def test_the_services_identities_and_roles() -> None:
    infra = provision.plan_infrastructure(config())
    base = provision.plan_infrastructure(config(service={"kind": "none"}, scheduler="none"))
    added = {(b.member, b.scope, b.resource, b.role) for b in infra.bindings} - {
        (b.member, b.scope, b.resource, b.role) for b in base.bindings
    }
    runner = f"demo-pipelines@{PROJECT}.iam.gserviceaccount.com"
    assert added == {
        (SUBMIT, "project", PROJECT, "roles/aiplatform.user"),
        (SUBMIT, "service_account", runner, "roles/iam.serviceAccountUser"),
        (SUBMIT, "repository", "demo-pipelines", "roles/artifactregistry.reader"),
        (PUSH, "run_service", "demo-submit", "roles/run.invoker"),
        (DEPLOYER, "run_service", "demo-submit", "roles/run.invoker"),
        # The deployer rolls out new images of this service only, running as its account.
        (DEPLOYER, "run_service", "demo-submit", "roles/run.developer"),
        (DEPLOYER, "service_account", SUBMIT.split(":")[1], "roles/iam.serviceAccountUser"),
        (
            PUBSUB_AGENT,
            "service_account",
            PUSH.split(":")[1],
            "roles/iam.serviceAccountTokenCreator",
        ),
        (PUBSUB_AGENT, "topic", "demo-runs-dead-letter", "roles/pubsub.publisher"),
        (PUBSUB_AGENT, "subscription", "demo-runs-push", "roles/pubsub.subscriber"),
        (SCHEDULER_AGENT, "topic", "demo-runs", "roles/pubsub.publisher"),
    }
    [aiplatform] = [b for b in infra.bindings if b.member == SUBMIT and b.scope == "project"]
    assert "project only" in aiplatform.why  # no narrower resource exists: said so
    for b in infra.bindings:
        assert b.member not in {"allUsers", "allAuthenticatedUsers"}
        if b.scope == "project":
            assert b.role not in {"roles/owner", "roles/editor"}, b
            assert "admin" not in b.role.lower(), b
    assert not [role for *_, role in added if "admin" in role.lower()]
    invokers = {b.member for b in infra.bindings if b.role == "roles/run.invoker"}
    assert invokers == {PUSH, DEPLOYER}
    assert [a.account_id for a in infra.service_accounts][-2:] == ["demo-submit", "demo-push"]
    assert infra.apis[-3:] == (
        "run.googleapis.com",
        "pubsub.googleapis.com",
        "cloudscheduler.googleapis.com",
    )
    [push, dead] = infra.subscriptions
    assert (push.topic, push.dead_letter_topic, push.push_path) == (
        "demo-runs",
        "demo-runs-dead-letter",
        "/pubsub/push",
    )
    assert push.push_service_account == PUSH.split(":")[1]
    assert (dead.topic, dead.push_path) == ("demo-runs-dead-letter", "")
    [job] = infra.scheduler_jobs
    assert (job.name, job.schedule, job.time_zone, job.topic) == (
        "demo-training-local",
        "0 6 * * MON",
        "UTC",
        "demo-runs",
    )
    assert infra.submission is not None
    environment = infra.submission.environment
    assert environment["VERTEXKIT__SERVICE__PUSH_SERVICE_ACCOUNT"] == PUSH.split(":")[1]
    assert environment["VERTEXKIT__SERVICE__PUSH_AUDIENCE"] == push.audience


def test_cloud_functions_without_schedules() -> None:
    infra = provision.plan_infrastructure(
        config(service={"kind": "cloud-functions"}, scheduler="vertex")
    )
    assert "cloudfunctions.googleapis.com" in infra.apis
    assert "cloudscheduler.googleapis.com" not in infra.apis
    assert not infra.scheduler_jobs
    assert not [b for b in infra.bindings if b.member == SCHEDULER_AGENT]
    builder = f"demo-builder@{PROJECT}.iam.gserviceaccount.com"
    assert (DEPLOYER, "service_account", builder, "roles/iam.serviceAccountUser") in {
        (b.member, b.scope, b.resource, b.role) for b in infra.bindings
    }
    assert infra.submission is not None
    assert (infra.submission.build_service_account, infra.submission.docker_repository) == (
        builder,
        "demo-images",
    )


def test_before_the_first_build_the_service_waits_and_says_so(tmp_path: Path) -> None:
    full = provision.plan_infrastructure(config())
    infra = service_infra.for_deploy(full, tmp_path)
    assert infra.submission is None and not infra.scheduler_jobs
    assert [s.name for s in infra.subscriptions] == ["demo-runs-dead-letter"]
    assert not [
        b for b in infra.bindings if b.scope == "run_service" or b.member == SCHEDULER_AGENT
    ]
    assert [t.name for t in infra.topics] == ["demo-runs", "demo-runs-dead-letter"]
    [note] = infra.notes
    assert "no image digest" in note and "invoke build --env local" in note
    # The build record (or --service-image) deploys it, by digest.
    _record(tmp_path, "local")
    deployed = service_infra.for_deploy(full, tmp_path)
    assert deployed.submission is not None and deployed.submission.image == IMAGE
    assert deployed.scheduler_jobs == full.scheduler_jobs and not deployed.notes
    other = IMAGE.replace("ab" * 32, "cd" * 32)
    given = service_infra.for_deploy(full, tmp_path, other)
    assert given.submission is not None and given.submission.image == other
    with pytest.raises(ValueError, match="not an image by digest"):
        service_infra.check_image("europe-west4-docker.pkg.dev/p/r/submission:latest")


def _record(project: Path, env: str) -> None:
    """``build/images/<env>.json`` as `invoke build` writes it with a Cloud Run service."""
    record = project / "build" / "images" / f"{env}.json"
    record.parent.mkdir(parents=True, exist_ok=True)
    base = IMAGE.replace("submission@", "demo-base@")
    record.write_text(json.dumps({"reference": base, "service": {"reference": IMAGE}}))


# --- gcloud -------------------------------------------------------------------------------

# Like tests/test_provision.py's fake, plus what the service's commands need: the project
# number, `scheduler jobs create pubsub NAME`, `run deploy` (create or update), and the drift
# alert policy.
FAKE_GCLOUD = (
    f"""
import json, os, sys
args = sys.argv[1:]
with open(os.environ["FAKE_LOG"], "a") as log:
    log.write(json.dumps(["gcloud", *args]) + "\\n")
if args[:2] == ["projects", "describe"]:
    print("{NUMBER}")
    sys.exit(0)
state_file = os.environ["FAKE_STATE"]
state = set(json.load(open(state_file))) if os.path.exists(state_file) else set()
"""
    + FAKE_ALERT_POLICIES
    + """
verb = next((a for a in args if a in {"describe", "create", "delete", "deploy"}), None)
if verb is None:
    sys.exit(0)
index = args.index(verb)
group, name = args[:index], args[index + 1]
if name == "pubsub":
    name = args[index + 2]
if group[:2] == ["iam", "service-accounts"]:
    name = name.split("@")[0]
key = ("run" if group[0] == "run" else " ".join(group)) + ":" + name
if verb == "describe":
    sys.exit(0 if key in state else 1)
if verb == "deploy":  # creates or updates
    state.add(key)
elif verb == "create":
    if key in state:
        sys.exit(1)
    state.add(key)
else:
    state.discard(key)
json.dump(sorted(state), open(state_file, "w"))
"""
)


@pytest.fixture
def tools(tmp_path: Path) -> Path:
    bin_dir = tmp_path / "bin"
    fake_tool(bin_dir, "gcloud", FAKE_GCLOUD)
    return bin_dir


def _with_service(project: Path, tool: str, kind: str = "cloud-run") -> None:
    use_tool(project, tool)
    with (project / "config" / "base.yaml").open("a") as base:
        base.write(f"service: {{kind: {kind}}}\nscheduler: cloud-scheduler\n")
    with (project / "config" / "dev.yaml").open("a") as dev:
        dev.write("    schedule: {cron: '0 6 * * MON'}\n")  # training's
        dev.write("  prediction:\n    schedule: {cron: '0 2 * * *', timezone: Europe/Paris}\n")


def test_gcloud_creates_the_service_route_and_jobs_once(
    project: Path, tmp_path: Path, tools: Path
) -> None:
    _with_service(project, "gcloud")
    result = run_invoke(project, tmp_path, tools, "provision", "--env", "dev", "--yes")
    assert result.returncode == 0, result.stderr
    assert "no image digest for environment dev" in result.stdout  # said, not hidden
    assert not [c for c in calls(tmp_path) if c[1:3] == ["run", "deploy"]]
    (tmp_path / "calls.jsonl").unlink()

    result = run_invoke(
        project, tmp_path, tools, "provision", "--env", "dev", "--service-image", IMAGE
    )
    assert result.returncode == 0, result.stderr
    first = calls(tmp_path)
    [deploy] = [c for c in first if c[1:3] == ["run", "deploy"]]
    assert f"--image={IMAGE}" in deploy and "--no-allow-unauthenticated" in deploy
    assert f"--service-account={SUBMIT.split(':')[1]}" in deploy
    url = f"https://demo-submit-{NUMBER}.europe-west4.run.app"
    assert "--set-env-vars=VERTEXKIT_ENV=dev,VERTEXKIT__SERVICE__PUSH_SERVICE_ACCOUNT=" in " ".join(
        deploy
    )
    assert any(a.endswith(f"VERTEXKIT__SERVICE__PUSH_AUDIENCE={url}") for a in deploy)
    creates = [c for c in first if "create" in c]
    # The topics were created by the first run; the subscription and jobs wait for the service.
    assert sorted(" ".join(c[1:5]) for c in creates) == [
        "pubsub subscriptions create demo-runs-push",
        "scheduler jobs create pubsub",
        "scheduler jobs create pubsub",
    ]
    [subscription] = [c for c in creates if "demo-runs-push" in c]
    assert f"--push-endpoint={url}/pubsub/push" in subscription
    assert f"--push-auth-service-account={PUSH.split(':')[1]}" in subscription
    assert "--dead-letter-topic=demo-runs-dead-letter" in subscription
    jobs = {c[5]: c for c in creates if c[1] == "scheduler"}
    assert set(jobs) == {"demo-training-dev", "demo-prediction-dev"}
    prediction = jobs["demo-prediction-dev"]
    assert "--time-zone=Europe/Paris" in prediction and "--topic=demo-runs" in prediction
    body = next(a for a in prediction if a.startswith("--message-body="))
    assert json.loads(body.split("=", 1)[1]) == {"pipeline": "prediction", "parameters": {}}
    grants = [c for c in first if "add-iam-policy-binding" in c]
    agent = f"--member=serviceAccount:service-{NUMBER}@gcp-sa-pubsub.iam.gserviceaccount.com"
    assert [
        "gcloud", "pubsub", "topics", "add-iam-policy-binding", "demo-runs-dead-letter",
        "--project=acme-ml-dev", agent, "--role=roles/pubsub.publisher",
    ] in grants  # fmt: skip
    invoker = [c for c in grants if "--role=roles/run.invoker" in c]
    assert sorted(c[-2] for c in invoker) == [f"--member={DEPLOYER}", f"--member={PUSH}"]
    assert all("{project_number}" not in " ".join(c) for c in first)
    # Bindings on the service come after it exists.
    assert first.index(deploy) < min(first.index(c) for c in invoker)

    (tmp_path / "calls.jsonl").unlink()
    again = run_invoke(
        project, tmp_path, tools, "provision", "--env", "dev", "--service-image", IMAGE
    )
    assert again.returncode == 0, again.stderr
    assert [c for c in calls(tmp_path) if "create" in c] == []


def test_gcloud_deprovision_deletes_jobs_route_and_service_before_the_accounts(
    project: Path, tmp_path: Path, tools: Path
) -> None:
    _with_service(project, "gcloud")
    _record(project, "dev")
    assert run_invoke(project, tmp_path, tools, "provision", "--env", "dev").returncode == 0
    (tmp_path / "calls.jsonl").unlink()
    result = run_invoke(project, tmp_path, tools, "deprovision", "--env", "dev", "--yes")
    assert result.returncode == 0, result.stderr
    deletes = [" ".join(c[1:4]) for c in calls(tmp_path) if "delete" in c]
    assert deletes.index("run services delete") < deletes.index("iam service-accounts delete")
    assert deletes[:7] == [
        "scheduler jobs delete",
        "scheduler jobs delete",
        "pubsub subscriptions delete",
        "pubsub subscriptions delete",
        "pubsub topics delete",
        "pubsub topics delete",
        "run services delete",
    ]


# --- Terraform ----------------------------------------------------------------------------


def test_terraform_takes_the_services_variables(tmp_path: Path) -> None:
    full = provision.plan_infrastructure(config())
    written = provision.tfvars(service_infra.for_deploy(full, tmp_path, IMAGE))
    assert written["run_services"]["demo-submit"]["image"] == IMAGE
    assert set(written["scheduler_jobs"]) == {"demo-training-local"}
    assert [b["member"] for b in written["agent_service_account_roles"]] == [PUBSUB_AGENT]
    assert all("{project_number}" not in b["member"] for b in written["service_account_roles"])
    assert _plan_variables(TEMPLATE_TF, tmp_path / "tf", written) == (0, [])
    # What the rules refuse: a public invoker, an image by tag.
    public = {
        **written,
        "run_service_roles": [
            {"service": "demo-submit", "role": "roles/run.invoker", "member": "allUsers"}
        ],
    }
    retcode, problems = _plan_variables(TEMPLATE_TF, tmp_path / "tf", public)
    assert retcode != 0 and any("the service is private" in p for p in problems), problems
    tagged = json.loads(json.dumps(written))
    tagged["run_services"]["demo-submit"]["image"] = IMAGE.split("@")[0] + ":latest"
    retcode, problems = _plan_variables(TEMPLATE_TF, tmp_path / "tf", tagged)
    assert retcode != 0 and any("referenced by digest" in p for p in problems), problems


def test_terraform_zips_the_staged_function_source(tmp_path: Path) -> None:
    from tests.test_service_integration import function_project

    project = function_project(tmp_path / "project")
    (project / ".python-version").write_text("3.12\n")
    dev = load_config(project, "dev")
    dev = dev.model_copy(
        update={"service": dev.service.model_copy(update={"kind": "cloud-functions"})}
    )
    infra = service_infra.for_deploy(provision.plan_infrastructure(dev), project)
    steps = service_infra.plan_terraform_extras(infra, project)
    assert [s.step for s in steps] == [
        "stage the submission service's source",
        "zip the submission service's source",
    ]
    for step in steps:
        step.apply({})
    [function] = provision.tfvars(infra)["functions"].values()
    assert function["runtime"] == "python312" and function["entry_point"] == "submit"
    assert re.fullmatch(r"functions/demo-submit-[0-9a-f]{16}\.zip", function["source_object"])
    staged = project / "build" / "service" / "function" / "dev"
    with zipfile.ZipFile(function["source_path"]) as archive:
        assert sorted(archive.namelist()) == sorted(
            p.relative_to(staged).as_posix() for p in staged.rglob("*") if p.is_file()
        )
        assert {"main.py", "requirements.txt", "config/dev.yaml", "pipelines/compiled.json"} <= set(
            archive.namelist()
        )
    # The object name follows the inputs: a change is a new object and a new build.
    pipeline = project / "pipelines" / "training.py"
    pipeline.write_text(pipeline.read_text() + "\n# changed\n")
    changed = service_infra.for_deploy(provision.plan_infrastructure(dev), project)
    assert changed.submission is not None
    assert changed.submission.source_object != function["source_object"]


# --- the documentation --------------------------------------------------------------------


def test_docs_show_the_services_identities() -> None:
    page = (ROOT / "docs" / "provisioning.md").read_text()
    start = page.index("<!-- submission identities:")
    start = page.index("\n", start) + 1
    shown = page[start : page.index("<!-- end of submission identities -->")].strip()
    infra = provision.plan_infrastructure(config())
    assert shown == service_infra.identities_table(infra)
    full = provision.identities_table(infra)
    for row in shown.splitlines()[2:]:
        if "as above" not in row:
            assert row in full, row


def test_invoke_provision_with_terraform_zips_then_writes_the_variables(
    tmp_path: Path, recording_server: RecordingServer
) -> None:
    """Through the CLI with a fake terraform: the function's source is zipped before `terraform
    plan` reads the variables, which name it; the notes of what waits are shown."""
    from tests.test_service_integration import function_project

    project = function_project(tmp_path / "function")
    bin_dir = tmp_path / "bin"
    fake_tool(bin_dir, "terraform", FAKE_TERRAFORM)
    (bin_dir / "git").symlink_to(shutil.which("git") or "git")  # the function's commit
    _with_service(project, "terraform", kind="cloud-functions")
    training = (project / "pipelines" / "training.py").read_text()
    (project / "pipelines" / "prediction.py").write_text(
        training.replace('"demo-training"', '"demo-prediction"').replace(
            "def training(", "def prediction("
        )
    )
    (project / "infra" / "terraform").mkdir(parents=True)
    recording_server.route("GET", "/storage/v1/b/.*", (200, {"name": "state"}))
    storage = {"VERTEXKIT_ENDPOINT_STORAGE": recording_server.url}
    result = run_invoke(
        project, tmp_path, bin_dir, "provision", "--env", "dev", "--yes", extra=storage
    )
    assert result.returncode == 0, result.stderr
    [plan] = [c for c in calls(tmp_path) if c["argv"][2] == "plan"]
    [function] = plan["var_file"]["functions"].values()
    with zipfile.ZipFile(function["source_path"]) as archive:
        assert "main.py" in archive.namelist() and "vertexkit/service/app.py" in archive.namelist()
    assert function["environment"]["VERTEXKIT_RELEASE_COMMIT"] == commit_of(project)
    assert function["service_account"] == SUBMIT.split(":")[1]
    assert set(plan["var_file"]["scheduler_jobs"]) == {"demo-training-dev", "demo-prediction-dev"}
    assert "cloudfunctions.googleapis.com" in plan["var_file"]["apis"]
