"""Provisioning: the plan as data, the tfvars contract, and `invoke provision` / `deprovision`
through the real invoke CLI, with fake `gcloud` and `terraform` executables first on PATH (they
record their arguments and answer like the real tools) and a recording server for the
Terraform state bucket."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.recording_server import RecordingServer
from vertexkit.gcp import precheck, provision
from vertexkit.project.config import ConfigError, ProjectConfig, load_config

FIXTURES = Path(__file__).parent / "fixtures"
RUNNER = "serviceAccount:demo-pipelines@acme-ml-dev.iam.gserviceaccount.com"
DEPLOYER = "serviceAccount:demo-deployer@acme-ml-dev.iam.gserviceaccount.com"
BUILDER = "serviceAccount:demo-builder@acme-ml-dev.iam.gserviceaccount.com"
BUCKET = "acme-ml-dev-demo-pipelines"
STATE = "acme-ml-dev-demo-tfstate"


def config_with(**environ: str) -> ProjectConfig:
    variables = {f"VERTEXKIT__{k.upper()}": v for k, v in environ.items()}
    return load_config(FIXTURES / "project", "dev", environ=variables)


# --- the configuration --------------------------------------------------------------------


def test_provisioning_defaults_keep_existing_configs_valid() -> None:
    config = config_with()
    assert config.provisioning.tool == "terraform"
    assert config.provisioning.temporary_artifact_days == 30
    names = config.names
    assert names.deployer_service_account == "demo-deployer@acme-ml-dev.iam.gserviceaccount.com"
    assert names.build_service_account == "demo-builder@acme-ml-dev.iam.gserviceaccount.com"
    assert names.state_bucket == STATE
    assert config_with(provisioning__state_bucket="my-state").names.state_bucket == "my-state"


@pytest.mark.parametrize(
    ("setting", "value", "message"),
    [
        ("tool", "pulumi", "provisioning.tool: Input should be 'terraform', 'gcloud' or 'none'"),
        ("temporary_artifact_days", "0", "provisioning.temporary_artifact_days: Input should be"),
        ("temporary_artifact_days", "3651", "less than or equal to 3650"),
        ("state_bucket", "Bad_Bucket", "provisioning.state_bucket: 'Bad_Bucket' is not a valid"),
        ("state_bucket", "my-google-state", "contains 'google'"),
        ("stat_bucket", "x", "unknown setting 'stat_bucket'; did you mean 'state_bucket'?"),
    ],
)
def test_bad_provisioning_settings_name_the_field(setting: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError) as failure:
        config_with(**{f"provisioning__{setting}": value})
    assert message in str(failure.value)
    assert f"environment variable VERTEXKIT__PROVISIONING__{setting.upper()}" in str(failure.value)


# --- the plan -----------------------------------------------------------------------------


def test_plan_names_every_resource_from_the_config() -> None:
    infra = provision.plan_infrastructure(config_with(secrets="[DB_PASSWORD, API_TOKEN]"))
    assert (infra.project_id, infra.region, infra.environment) == (
        "acme-ml-dev",
        "europe-west4",
        "dev",
    )
    assert [b.name for b in infra.buckets] == [BUCKET]
    assert infra.buckets[0].location == "EUROPE-WEST4"
    assert [(r.id, r.format) for r in infra.repositories] == [
        ("demo-images", "DOCKER"),
        ("demo-pipelines", "KFP"),
    ]
    assert [a.account_id for a in infra.service_accounts] == [
        "demo-pipelines",
        "demo-deployer",
        "demo-builder",
    ]
    assert [s.name for s in infra.secrets] == ["DB_PASSWORD", "API_TOKEN"]
    assert infra.apis[-1] == "secretmanager.googleapis.com"
    assert infra.state_bucket == STATE
    assert all(piece.why for piece in (*infra.buckets, *infra.service_accounts, *infra.bindings))


def test_plan_follows_the_identities_table() -> None:
    infra = provision.plan_infrastructure(config_with(secrets="[DB_PASSWORD]"))
    granted = {(b.member, b.scope, b.resource, b.role) for b in infra.bindings}
    assert len(granted) == len(infra.bindings), "a binding is listed twice"
    runner_email = RUNNER.split(":")[1]
    builder_email = BUILDER.split(":")[1]
    assert granted == {
        (RUNNER, "project", "acme-ml-dev", "roles/aiplatform.user"),
        (RUNNER, "project", "acme-ml-dev", "roles/logging.logWriter"),
        (RUNNER, "bucket", BUCKET, "roles/storage.objectAdmin"),
        (RUNNER, "repository", "demo-images", "roles/artifactregistry.reader"),
        (RUNNER, "repository", "demo-pipelines", "roles/artifactregistry.reader"),
        (RUNNER, "secret", "DB_PASSWORD", "roles/secretmanager.secretAccessor"),
        # Beyond the spec's table: sized components start custom jobs that run as the runner.
        (RUNNER, "service_account", runner_email, "roles/iam.serviceAccountUser"),
        (DEPLOYER, "project", "acme-ml-dev", "roles/aiplatform.user"),
        (DEPLOYER, "project", "acme-ml-dev", "roles/cloudbuild.builds.editor"),
        (DEPLOYER, "bucket", BUCKET, "roles/storage.objectCreator"),
        (DEPLOYER, "repository", "demo-pipelines", "roles/artifactregistry.writer"),
        (DEPLOYER, "service_account", runner_email, "roles/iam.serviceAccountUser"),
        (DEPLOYER, "service_account", builder_email, "roles/iam.serviceAccountUser"),
        (BUILDER, "project", "acme-ml-dev", "roles/logging.logWriter"),
        (BUILDER, "bucket", BUCKET, "roles/storage.objectViewer"),
        (BUILDER, "repository", "demo-images", "roles/artifactregistry.writer"),
    }


@pytest.mark.parametrize("secrets", ["[]", "[DB_PASSWORD, API_TOKEN]"])
def test_least_privilege(secrets: str) -> None:
    infra = provision.plan_infrastructure(config_with(secrets=secrets))
    members = {account.member for account in infra.service_accounts}
    for binding in infra.bindings:
        assert binding.member in members, binding
        assert binding.member not in {"allUsers", "allAuthenticatedUsers"}
        assert binding.role.startswith("roles/")
        if binding.scope == "project":
            assert binding.role not in {"roles/owner", "roles/editor"}, binding
            assert not binding.role.endswith(("admin", "Admin")), binding
            assert binding.resource == infra.project_id
    # Every binding's resource is one the plan creates (or the project).
    resources = {
        "project": {infra.project_id},
        "bucket": {b.name for b in infra.buckets},
        "repository": {r.id for r in infra.repositories},
        "service_account": {a.email for a in infra.service_accounts},
        "secret": {s.name for s in infra.secrets},
    }
    for binding in infra.bindings:
        assert binding.resource in resources[binding.scope], binding


def test_one_api_list_for_provisioning_and_precheck() -> None:
    assert precheck.APIS is provision.APIS
    assert provision.required_apis(config_with()) == provision.APIS
    assert "secretmanager.googleapis.com" not in provision.APIS
    assert provision.required_apis(config_with(secrets="[DB_PASSWORD]"))[-1] == (
        "secretmanager.googleapis.com"
    )


SPEC_KEYS = {
    "project_id": str,
    "region": str,
    "labels": dict,
    "apis": list,
    "buckets": dict,
    "repositories": dict,
    "service_accounts": dict,
    "secrets": list,
    "project_roles": list,
    "bucket_roles": list,
    "repository_roles": list,
    "service_account_roles": list,
    "secret_roles": list,
    # The CI system's pool or Cloud Build connection (docs/ci-identity.md): null without CI.
    "ci_pool": (dict, type(None)),
    "cloud_build": (dict, type(None)),
    # the submission service (tests/test_service_infra.py): empty without one
    "agent_service_account_roles": list,
    "run_services": dict,
    "functions": dict,
    "pubsub_topics": list,
    "push_subscriptions": dict,
    "pull_subscriptions": dict,
    "scheduler_jobs": dict,
    "run_service_roles": list,
    "topic_roles": list,
    "subscription_roles": list,
    "drift_alert": dict,
    # The CI provisioner and planner (Terraform, with CI): null without CI.
    "ci_provisioning": (dict, type(None)),
}


@pytest.mark.parametrize("secrets", ["[]", "[DB_PASSWORD]"])
def test_tfvars_follow_the_contract(secrets: str) -> None:
    infra = provision.plan_infrastructure(config_with(secrets=secrets))
    data = json.loads(json.dumps(provision.tfvars(infra)))  # JSON round trip: plain types
    assert set(data) == set(SPEC_KEYS)
    for key, kind in SPEC_KEYS.items():
        assert isinstance(data[key], kind), key
    assert data["project_id"] == "acme-ml-dev" and data["region"] == "europe-west4"
    assert data["labels"] == {"managed-by": "vertexkit", "environment": "dev", "project": "demo"}
    assert data["buckets"] == {
        BUCKET: {
            "location": "EUROPE-WEST4",
            "temporary_prefix": "pipeline-root/",
            "temporary_days": 30,
        }
    }
    assert {k: v["format"] for k, v in data["repositories"].items()} == {
        "demo-images": "DOCKER",
        "demo-pipelines": "KFP",
    }
    assert all(isinstance(v["description"], str) for v in data["repositories"].values())
    assert set(data["service_accounts"]) == {"demo-pipelines", "demo-deployer", "demo-builder"}
    for account in data["service_accounts"].values():
        assert set(account) == {"display_name", "description"}
        assert all(isinstance(v, str) and v for v in account.values())
    row_keys = {
        "project_roles": {"role", "member"},
        "bucket_roles": {"bucket", "role", "member"},
        "repository_roles": {"repository", "role", "member"},
        "service_account_roles": {"service_account", "role", "member"},
        "secret_roles": {"secret", "role", "member"},
    }
    members = {
        f"serviceAccount:{a}@acme-ml-dev.iam.gserviceaccount.com" for a in data["service_accounts"]
    }
    for key, keys in row_keys.items():
        for row in data[key]:
            assert set(row) == keys, key
            assert all(isinstance(v, str) for v in row.values())
            assert row["member"] in members
    assert data["secrets"] == ([] if secrets == "[]" else ["DB_PASSWORD"])
    assert len(data["secret_roles"]) == len(data["secrets"])
    assert sum(len(data[key]) for key in row_keys) == len(infra.bindings)


# --- fake tools on PATH -------------------------------------------------------------------

# The drift alert policy in a fake gcloud (after `state` and `state_file` are read): policies
# are named by the server and found by display name. The other fakes of gcloud share it.
FAKE_ALERT_POLICIES = """
if args[:2] == ["monitoring", "policies"]:
    ids = {str(sum(map(ord, k))): k for k in state if k.startswith("policy:")}
    if args[2] == "list":
        wanted = "policy:" + next(a for a in args if a.startswith("--filter=")).split('"')[1]
        print("\\n".join(f"projects/p/alertPolicies/{i}" for i, k in ids.items() if k == wanted))
    elif args[2] == "create":
        path = next(a for a in args if a.startswith("--policy-from-file=")).split("=", 1)[1]
        state.add("policy:" + json.load(open(path))["displayName"])
    elif args[2] == "delete":
        state.discard(ids.get(args[3].rsplit("/", 1)[1]))
    json.dump(sorted(state), open(state_file, "w"))
    sys.exit(0)
"""

FAKE_GCLOUD = (
    """
import json, os, sys
args = sys.argv[1:]
with open(os.environ["FAKE_LOG"], "a") as log:
    log.write(json.dumps(["gcloud", *args]) + "\\n")
state_file = os.environ["FAKE_STATE"]
state = set(json.load(open(state_file))) if os.path.exists(state_file) else set()
"""
    + FAKE_ALERT_POLICIES
    + """verbs = {"describe", "create", "delete", "rm"}
verb = next((a for a in args if a in verbs), None)
if verb is None:
    sys.exit(0)
index = args.index(verb)
if verb == "rm":
    group, name = ["storage", "buckets"], next(a for a in args[index + 1:] if a.startswith("gs://"))
else:
    group, name = args[:index], args[index + 1]
if group[:2] == ["iam", "service-accounts"]:
    name = name.split("@")[0]
key = " ".join(group) + ":" + name
if verb == "describe":
    if key in state:
        print(json.dumps({"name": name}))
        sys.exit(0)
    sys.stderr.write(f"ERROR: (gcloud.{'.'.join(group)}.describe) NOT_FOUND: {name} not found\\n")
    sys.exit(1)
if verb == "create":
    if key in state:
        sys.stderr.write(f"ERROR: ALREADY_EXISTS: {name}\\n")
        sys.exit(1)
    state.add(key)
else:
    state.discard(key)
json.dump(sorted(state), open(state_file, "w"))
"""
)

FAKE_TERRAFORM = """
import json, os, sys
args = sys.argv[1:]
record = {"argv": ["terraform", *args], "cwd": os.getcwd()}
for arg in args:
    if arg.startswith("-var-file="):
        record["var_file"] = json.load(open(arg.split("=", 1)[1]))
with open(os.environ["FAKE_LOG"], "a") as log:
    log.write(json.dumps(record) + "\\n")
if "plan" in args:
    if os.environ.get("FAKE_PLAN_FAILS"):
        sys.stderr.write("Error: googleapi: Error 403: Permission denied\\n")
        sys.exit(1)
    out = next((a.split("=", 1)[1] for a in args if a.startswith("-out=")), None)
    if out:
        open(out, "w").write("saved plan")
    print("Plan: 20 to add, 0 to change, 0 to destroy.")
if "apply" in args and not os.path.exists(args[-1]):
    sys.stderr.write("Error: Failed to load the saved plan\\n")
    sys.exit(1)
"""


def fake_tool(bin_dir: Path, name: str, source: str) -> None:
    bin_dir.mkdir(exist_ok=True)
    path = bin_dir / name
    path.write_text(f"#!{sys.executable}\n" + textwrap.dedent(source))
    path.chmod(0o755)


@pytest.fixture
def tools(tmp_path: Path) -> Path:
    """A folder with fake gcloud and terraform, and nothing else."""
    bin_dir = tmp_path / "bin"
    fake_tool(bin_dir, "gcloud", FAKE_GCLOUD)
    fake_tool(bin_dir, "terraform", FAKE_TERRAFORM)
    return bin_dir


def run_invoke(
    project: Path, tmp_path: Path, path: Path, *args: str, extra: dict | None = None
) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VERTEXKIT")}
    env.update(
        PATH=str(path),
        FAKE_LOG=str(tmp_path / "calls.jsonl"),
        FAKE_STATE=str(tmp_path / "state.json"),
        VERTEXKIT_NO_AUTH="1",
        **(extra or {}),
    )
    return subprocess.run(
        [sys.executable, "-m", "invoke", "--search-root", str(project), *args],
        cwd=project,
        env=env,
        stdin=subprocess.DEVNULL,  # never a terminal: confirmations need --yes
        capture_output=True,
        text=True,
        timeout=120,
    )


def calls(tmp_path: Path) -> list:
    log = tmp_path / "calls.jsonl"
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def use_tool(project: Path, tool: str, secrets: str = "[]") -> None:
    with (project / "config" / "base.yaml").open("a") as base:
        base.write(f"provisioning:\n  tool: {tool}\n  temporary_artifact_days: 7\n")
        base.write(f"secrets: {secrets}\n")


# --- gcloud -------------------------------------------------------------------------------


def test_gcloud_first_run_creates_everything_second_run_nothing(
    project: Path, tmp_path: Path, tools: Path
) -> None:
    use_tool(project, "gcloud", "[DB_PASSWORD]")
    result = run_invoke(project, tmp_path, tools, "provision", "--env", "dev")
    assert result.returncode == 0, result.stderr
    first = calls(tmp_path)
    creates = [c for c in first if "create" in c]
    assert sorted(" ".join(c[1:4]) for c in creates) == sorted(
        [
            "storage buckets create",
            "artifacts repositories create",
            "artifacts repositories create",
            "iam service-accounts create",
            "iam service-accounts create",
            "iam service-accounts create",
            "secrets create DB_PASSWORD",
            "logging metrics create",
            "monitoring policies create",
        ]
    )
    # Each create follows its describe (an alert policy, named by the server: its lookup).
    for create in [c for c in creates if c[1] != "monitoring"]:
        before = first[first.index(create) - 1]
        assert "describe" in before, (before, create)
    [bucket] = [c for c in creates if c[1] == "storage"]
    assert bucket == [
        "gcloud", "storage", "buckets", "create", f"gs://{BUCKET}", "--project=acme-ml-dev",
        "--location=europe-west4", "--uniform-bucket-level-access", "--public-access-prevention",
    ]  # fmt: skip
    [update] = [c for c in first if c[1:4] == ["storage", "buckets", "update"]]
    assert "--versioning" in update
    lifecycle = Path(next(a for a in update if a.startswith("--lifecycle-file=")).split("=", 1)[1])
    assert json.loads(lifecycle.read_text()) == {
        "rule": [
            {
                "action": {"type": "Delete"},
                "condition": {"age": 7, "matchesPrefix": ["pipeline-root/"]},
            }
        ]
    }
    [enable] = [c for c in first if c[1:3] == ["services", "enable"]]
    assert enable[3:] == [*provision.APIS, "secretmanager.googleapis.com", "--project=acme-ml-dev"]
    grants = [c for c in first if "add-iam-policy-binding" in c]
    assert len(grants) == 16  # 15 bindings of the identities table + the secret accessor
    assert [
        "gcloud", "secrets", "add-iam-policy-binding", "DB_PASSWORD", "--project=acme-ml-dev",
        f"--member={RUNNER}", "--role=roles/secretmanager.secretAccessor",
    ] in grants  # fmt: skip
    assert not any("keys" in c for c in first), "no service-account key is ever created"
    assert "[1/" in result.stdout and "provisioned environment dev" in result.stdout

    (tmp_path / "calls.jsonl").unlink()
    again = run_invoke(project, tmp_path, tools, "provision", "--env", "dev")
    assert again.returncode == 0, again.stderr
    second = calls(tmp_path)
    assert [c for c in second if "create" in c] == []
    assert sum("describe" in c for c in second) == 8


def test_gcloud_dry_run_lists_every_command_and_runs_none(
    project: Path, tmp_path: Path, tools: Path
) -> None:
    use_tool(project, "gcloud")
    result = run_invoke(
        project, tmp_path, tools, "provision", "--env", "dev", "--dry-run", "--json"
    )
    assert result.returncode == 0, result.stderr
    assert calls(tmp_path) == []
    steps = json.loads(result.stdout)
    commands = [s for s in steps if "command" in s]
    infra = provision.plan_infrastructure(config_with())
    expected = 1 + 2 * len(infra.buckets) + len(infra.repositories)
    expected += len(infra.service_accounts) + len(infra.bindings)
    expected += 3  # the drift metric, the lookup of its alert policy, the policy
    assert len(commands) == expected
    creates = [s for s in commands if "create" in s["command"]]
    assert creates and all(s["unless"][-2:] != [] and "describe" in s["unless"] for s in creates)
    text = run_invoke(project, tmp_path, tools, "provision", "--env", "dev", "--dry-run")
    assert (
        f"$ gcloud storage buckets describe gs://{BUCKET} --project=acme-ml-dev || "
        f"gcloud storage buckets create gs://{BUCKET}" in text.stdout
    )
    assert calls(tmp_path) == []


def test_gcloud_deprovision_keeps_buckets_without_delete_data(
    project: Path, tmp_path: Path, tools: Path
) -> None:
    use_tool(project, "gcloud")
    assert run_invoke(project, tmp_path, tools, "provision", "--env", "dev").returncode == 0
    (tmp_path / "calls.jsonl").unlink()

    refused = run_invoke(project, tmp_path, tools, "deprovision", "--env", "dev")
    assert refused.returncode == 1
    assert "pass --yes" in refused.stderr
    assert calls(tmp_path) == [], "nothing may run before the confirmation"

    result = run_invoke(project, tmp_path, tools, "deprovision", "--env", "dev", "--yes")
    assert result.returncode == 0, result.stderr
    done = calls(tmp_path)
    deletes = [c for c in done if "delete" in c or "rm" in c]
    assert not any(c[1] == "storage" for c in deletes), "a bucket was deleted"
    assert {c[1] for c in deletes} == {"iam", "artifacts", "monitoring", "logging"}
    deletes = [c for c in deletes if c[1] in ("iam", "artifacts")]
    # Reverse order: service accounts (builder first), then repositories (KFP first).
    order = [c[4] for c in deletes]
    assert order == [
        "demo-builder@acme-ml-dev.iam.gserviceaccount.com",
        "demo-deployer@acme-ml-dev.iam.gserviceaccount.com",
        "demo-pipelines@acme-ml-dev.iam.gserviceaccount.com",
        "demo-pipelines",
        "demo-images",
    ]
    assert f"kept bucket gs://{BUCKET}" in result.stdout
    removed = [c for c in done if "remove-iam-policy-binding" in c]
    assert len(removed) == 5 and all(c[1] == "projects" for c in removed)

    (tmp_path / "calls.jsonl").unlink()
    wiped = run_invoke(
        project, tmp_path, tools, "deprovision", "--env", "dev", "--yes", "--delete-data"
    )
    assert wiped.returncode == 0, wiped.stderr
    # A second teardown skips what the first removed (each only while it exists).
    assert not any("remove-iam-policy-binding" in c for c in calls(tmp_path))
    assert not any("delete" in c for c in calls(tmp_path))
    assert [
        "gcloud",
        "storage",
        "rm",
        "--recursive",
        f"gs://{BUCKET}",
        "--project=acme-ml-dev",
    ] in calls(tmp_path)


# --- Terraform ----------------------------------------------------------------------------


@pytest.fixture
def terraform_project(project: Path) -> Path:
    use_tool(project, "terraform", "[DB_PASSWORD]")
    (project / "infra" / "terraform").mkdir(parents=True)
    return project


def test_terraform_creates_the_state_bucket_then_init_plan_apply(
    terraform_project: Path, tmp_path: Path, tools: Path, recording_server: RecordingServer
) -> None:
    project = terraform_project
    recording_server.route("POST", "/storage/v1/b", (200, {"name": STATE}))
    storage = {"VERTEXKIT_ENDPOINT_STORAGE": recording_server.url}

    refused = run_invoke(project, tmp_path, tools, "provision", "--env", "dev", extra=storage)
    assert refused.returncode == 1
    assert "no terminal to confirm on: pass --yes" in refused.stderr
    assert [c["argv"][2] for c in calls(tmp_path)] == ["init", "plan"], "apply ran unconfirmed"

    (tmp_path / "calls.jsonl").unlink()
    recording_server.requests.clear()
    result = run_invoke(
        project, tmp_path, tools, "provision", "--env", "dev", "--yes", extra=storage
    )
    assert result.returncode == 0, result.stderr
    get, post = recording_server.requests
    assert (get.method, get.path) == ("GET", f"/storage/v1/b/{STATE}")
    assert (post.method, post.path, post.query) == (
        "POST",
        "/storage/v1/b",
        {"project": ["acme-ml-dev"]},
    )
    assert post.json["name"] == STATE
    assert post.json["versioning"] == {"enabled": True}
    assert post.json["iamConfiguration"] == {
        "uniformBucketLevelAccess": {"enabled": True},
        "publicAccessPrevention": "enforced",
    }
    tfvars_path = (project / "build" / "terraform" / "dev.tfvars.json").resolve()
    plan_path = (project / "build" / "terraform" / "dev.tfplan").resolve()
    init, plan, apply = calls(tmp_path)
    assert init["argv"] == [
        "terraform", "-chdir=infra/terraform", "init", "-input=false", "-reconfigure",
        f"-backend-config=bucket={STATE}", "-backend-config=prefix=dev",
    ]  # fmt: skip
    assert plan["argv"] == [
        "terraform", "-chdir=infra/terraform", "plan", "-input=false",
        f"-var-file={tfvars_path}", f"-out={plan_path}",
    ]  # fmt: skip
    assert apply["argv"] == [
        "terraform",
        "-chdir=infra/terraform",
        "apply",
        "-input=false",
        str(plan_path),
    ]
    assert Path(init["cwd"]).resolve() == project.resolve()
    expected = provision.tfvars(
        provision.plan_infrastructure(load_config(project, "dev", environ={}))
    )
    assert plan["var_file"] == expected
    assert plan["var_file"]["secrets"] == ["DB_PASSWORD"]
    assert "Plan: 20 to add" in result.stdout  # terraform's own output is shown

    # Once the state bucket exists, it is not created again.
    recording_server.route("GET", f"/storage/v1/b/{STATE}", (200, {"name": STATE}))
    recording_server.requests.clear()
    again = run_invoke(
        project, tmp_path, tools, "provision", "--env", "dev", "--yes", extra=storage
    )
    assert again.returncode == 0, again.stderr
    assert [r.method for r in recording_server.requests] == ["GET"]


def test_terraform_dry_run_shows_the_state_bucket_and_sends_nothing(
    terraform_project: Path, tmp_path: Path, tools: Path, recording_server: RecordingServer
) -> None:
    storage = {"VERTEXKIT_ENDPOINT_STORAGE": recording_server.url}
    result = run_invoke(
        terraform_project, tmp_path, tools, "provision", "--env", "dev", "--dry-run", "--json",
        extra=storage,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    steps = json.loads(result.stdout)
    assert [s["step"] for s in steps] == [
        f"check state bucket {STATE}",
        f"create state bucket {STATE}",
        "write tfvars",
        "terraform init",
        "terraform plan",
        "confirm",
        "terraform apply",
    ]
    assert "404" in steps[1]["when"]
    assert recording_server.requests == [] and calls(tmp_path) == []
    assert not (terraform_project / "build").exists()


def test_no_terraform_names_the_version_and_where_to_get_it(
    terraform_project: Path, tmp_path: Path
) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    result = run_invoke(terraform_project, tmp_path, empty, "provision", "--env", "dev", "--yes")
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "error: terraform not found on PATH: provisioning with Terraform needs terraform >= 1.5; "
        "install it from https://developer.hashicorp.com/terraform/install (or set "
        "provisioning.tool to gcloud in config/base.yaml)"
    )
    assert "Traceback" not in result.stderr


def test_terraform_deprovision_destroys_with_the_same_var_file(
    terraform_project: Path, tmp_path: Path, tools: Path, recording_server: RecordingServer
) -> None:
    project = terraform_project
    storage = {"VERTEXKIT_ENDPOINT_STORAGE": recording_server.url}
    objects = f"/storage/v1/b/{BUCKET}/o"
    # Without --delete-data a bucket that holds objects (or old versions) stops the teardown
    # before anything is destroyed.
    recording_server.route("GET", objects, (200, {"items": [{"name": "pipeline-root/x"}]}))
    held = run_invoke(
        project, tmp_path, tools, "deprovision", "--env", "dev", "--yes", extra=storage
    )
    assert held.returncode == 1 and f"bucket {BUCKET} holds objects" in held.stderr
    assert calls(tmp_path) == [], "nothing may run when a bucket holds objects"
    listed = [r for r in recording_server.requests if r.path == objects]
    assert listed and listed[0].query == {"versions": ["true"], "maxResults": ["1"]}

    recording_server.route("GET", objects, (200, {"kind": "storage#objects"}))
    refused = run_invoke(project, tmp_path, tools, "deprovision", "--env", "dev", extra=storage)
    assert refused.returncode == 1 and "pass --yes" in refused.stderr
    assert "destroy" not in [c["argv"][2] for c in calls(tmp_path)]

    (tmp_path / "calls.jsonl").unlink()
    kept = run_invoke(
        project, tmp_path, tools, "deprovision", "--env", "dev", "--yes", extra=storage
    )
    assert kept.returncode == 0, kept.stderr
    tfvars_path = (project / "build" / "terraform" / "dev.tfvars.json").resolve()
    destroy = calls(tmp_path)[-1]["argv"]
    assert destroy == [
        "terraform", "-chdir=infra/terraform", "destroy", "-input=false", "-auto-approve",
        f"-var-file={tfvars_path}",
    ]  # fmt: skip
    assert f"kept the Terraform state bucket gs://{STATE}" in kept.stdout

    (tmp_path / "calls.jsonl").unlink()
    wiped = run_invoke(
        project, tmp_path, tools, "deprovision", "--env", "dev", "--yes", "--delete-data",
        extra=storage,
    )  # fmt: skip
    assert wiped.returncode == 0, wiped.stderr
    assert calls(tmp_path)[-1]["argv"][-1] == "-var=force_destroy=true"
    assert f"kept the Terraform state bucket gs://{STATE}" in wiped.stdout
    assert not any(r.method == "DELETE" for r in recording_server.requests)


def test_terraform_without_the_root_module_says_so(
    project: Path, tmp_path: Path, tools: Path
) -> None:
    use_tool(project, "terraform")
    result = run_invoke(project, tmp_path, tools, "provision", "--env", "dev", "--dry-run")
    assert result.returncode == 1
    assert "infra/terraform/ not found" in result.stderr


# --- none ---------------------------------------------------------------------------------


@pytest.mark.parametrize("task", ["provision", "deprovision"])
def test_provisioning_none_refuses_and_points_to_precheck(
    project: Path, tmp_path: Path, tools: Path, task: str
) -> None:
    use_tool(project, "none")
    result = run_invoke(project, tmp_path, tools, task, "--env", "dev", "--yes")
    assert result.returncode == 1
    assert "managed elsewhere" in result.stderr
    assert "`invoke precheck --env dev` lists what must exist" in result.stderr
    assert calls(tmp_path) == []


# --- the documentation --------------------------------------------------------------------


def test_docs_identity_table_is_the_plan() -> None:
    """docs/provisioning.md shows the plan's identities, roles and reasons, generated from the
    code: regenerate the table between its markers with provision.identities_table."""
    page = (Path(__file__).parent.parent / "docs" / "provisioning.md").read_text()
    start = page.index("<!-- identities:")
    start = page.index("\n", start) + 1
    shown = page[start : page.index("<!-- end of identities -->")].strip()
    config = ProjectConfig.model_validate(
        {
            "name": "demo",
            "naming_prefix": "demo",
            "gcp": {"project_id": "acme-ml-dev", "region": "europe-west4"},
            "secrets": ["DB_PASSWORD"],
        }
    )
    infra = provision.plan_infrastructure(config)
    assert shown == provision.identities_table(infra)
    for api in provision.APIS:
        assert f"`{api}`" in page
    assert "`roles/owner`" in page  # named only in the sentence that rules it out
    assert page.count("roles/owner") == 1


# --- conditional and retried command steps ------------------------------------------------


def test_command_step_checks_and_retries(tmp_path: Path) -> None:
    from vertexkit.steps import SKIPPED, CloudError, CommandStep

    counter = tmp_path / "tries"
    flaky = tmp_path / "flaky"
    flaky.write_text(
        f"#!{sys.executable}\n"
        "import pathlib, sys\n"
        f"p = pathlib.Path({str(counter)!r})\n"
        "n = int(p.read_text()) if p.exists() else 0\n"
        "p.write_text(str(n + 1))\n"
        "sys.exit(0 if n >= 1 else 1)\n"
    )
    flaky.chmod(0o755)
    ok, fail = (sys.executable, "-c", "pass"), (sys.executable, "-c", "raise SystemExit(1)")

    assert CommandStep("s", (str(flaky),), unless=ok).apply({}) == SKIPPED
    assert not counter.exists(), "a check that succeeds skips the command"
    assert CommandStep("s", (str(flaky),), only_if=fail).apply({}) == SKIPPED
    assert not counter.exists(), "a check that fails skips the command"
    with pytest.raises(CloudError, match=r"^s: "):
        CommandStep("s", (str(flaky),), unless=fail).apply({})
    assert counter.read_text() == "1"
    counter.unlink()
    assert CommandStep("s", (str(flaky),), retry_delays=(0.0,)).apply({}) == ""
    assert counter.read_text() == "2"

    step = CommandStep(
        "create", ("gcloud", "x", "create", "a b"), unless=("gcloud", "x", "describe")
    )
    assert step.show() == "$ gcloud x describe || gcloud x create 'a b'"
    assert step.to_json()["unless"] == ["gcloud", "x", "describe"]
    gone = CommandStep("delete", ("gcloud", "x", "delete"), only_if=("gcloud", "x", "describe"))
    assert gone.show() == "$ gcloud x describe && gcloud x delete"


def _granted_by_gcloud(steps: list) -> set[tuple[str, str, str, str]]:
    """(scope, resource, role, member) of every add-iam-policy-binding command."""
    scopes = {
        "projects": "project",
        "buckets": "bucket",
        "repositories": "repository",
        "service-accounts": "service_account",
        "secrets": "secret",
    }
    granted = set()
    for step in steps:
        command = step.get("command", [])
        if "add-iam-policy-binding" not in command:
            continue
        verb = command.index("add-iam-policy-binding")
        flags = dict(a[2:].split("=", 1) for a in command if a.startswith("--") and "=" in a)
        resource = command[verb + 1].removeprefix("gs://")
        granted.add((scopes[command[verb - 1]], resource, flags["role"], flags["member"]))
    return granted


def _granted_by_tfvars(data: dict) -> set[tuple[str, str, str, str]]:
    granted = {
        ("project", data["project_id"], r["role"], r["member"]) for r in data["project_roles"]
    }
    for key, scope in (
        ("bucket_roles", "bucket"),
        ("repository_roles", "repository"),
        ("service_account_roles", "service_account"),
        ("secret_roles", "secret"),
    ):
        granted |= {(scope, r[scope], r["role"], r["member"]) for r in data[key]}
    return granted


def test_gcloud_and_terraform_provision_the_same_resources_and_bindings(tmp_path: Path) -> None:
    from vertexkit.steps import execute

    infra = provision.plan_infrastructure(config_with(secrets="[DB_PASSWORD]"))
    shown = io.StringIO()
    execute(provision.plan_gcloud(infra, tmp_path), dry_run=True, as_json=True, out=shown)
    steps = json.loads(shown.getvalue())
    data = provision.tfvars(infra)
    assert _granted_by_gcloud(steps) == _granted_by_tfvars(data)
    created = {
        (s["command"][1], s["command"][s["command"].index("create") + 1])
        for s in steps
        if "create" in s.get("command", [])
    }
    assert created == {
        ("storage", *[f"gs://{b}" for b in data["buckets"]]),
        *{("artifacts", r) for r in data["repositories"]},
        *{("iam", a) for a in data["service_accounts"]},
        *{("secrets", s) for s in data["secrets"]},
        ("logging", data["drift_alert"]["metric"]),
    }
    [enable] = [s for s in steps if s.get("command", [])[1:3] == ["services", "enable"]]
    assert enable["command"][3:-1] == data["apis"]


DEPROVISION = ("deprovision", "--env", "dev")


@pytest.mark.parametrize(("answer", "deleted"), [("n", False), ("y", True)])
def test_deprovision_asks_on_a_terminal(
    project: Path, tmp_path: Path, tools: Path, answer: str, deleted: bool
) -> None:
    use_tool(project, "gcloud")
    assert run_invoke(project, tmp_path, tools, "provision", "--env", "dev").returncode == 0
    (tmp_path / "calls.jsonl").unlink()
    main, terminal = os.openpty()  # stdin is a terminal: the task asks
    try:
        os.write(main, f"{answer}\n".encode())
        env = {k: v for k, v in os.environ.items() if not k.startswith("VERTEXKIT")}
        env.update(
            PATH=str(tools),
            FAKE_LOG=str(tmp_path / "calls.jsonl"),
            FAKE_STATE=str(tmp_path / "state.json"),
        )
        result = subprocess.run(
            [sys.executable, "-m", "invoke", "--search-root", str(project), *DEPROVISION],
            cwd=project,
            env=env,
            stdin=terminal,
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        os.close(main)
        os.close(terminal)
    assert "delete these resources? [y/N]" in result.stdout
    assert (result.returncode == 0) == deleted, result.stderr
    assert any("delete" in c for c in calls(tmp_path)) == deleted
    if not deleted:
        assert "not confirmed, nothing done" in result.stderr
