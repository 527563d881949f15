"""CI provisioning (issue 9): the CI provisioner applies infra/terraform from the main branch
only, the CI planner runs `terraform plan -lock=false` for pull requests, read-only; and
`invoke provision --plan`.

Who may act as which account is proved on sample tokens of each CI system: the provider's
attribute condition (the small CEL evaluator of tests/test_ci_identity.py) and the principalSet
each account trusts, whose attribute is computed from the token by the provider's mapping (a
path, or a concatenation of paths and strings). `invoke provision --plan` runs through the real
invoke CLI with a fake terraform on PATH and the recording server as Cloud Storage.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import hcl2
import pytest

from tests.recording_server import RecordingServer
from tests.test_ci_identity import (
    CLOUD_BUILD,
    DEPLOYER,
    JENKINS,
    PLANNER,
    PROVISIONER,
    REPO_UUID,
    SYSTEMS,
    TEMPLATE_TF,
    WORKSPACE_UUID,
    _gcloud_project,
    admits,
    cloud_build,
    configs,
    write_project,
)
from tests.test_provision import FAKE_TERRAFORM, STATE, calls, fake_tool, run_invoke, use_tool
from vertexkit.gcp import ci_identity, provision
from vertexkit.project.config import load_config
from vertexkit.project.naming import MAX_PREFIX_LENGTH, SERVICE_ACCOUNT_MAX

# --- which token may act as which account -------------------------------------------------

PART = re.compile(r"\s*(?:(?P<string>'(?:[^'\\]|\\.)*')|(?P<path>assertion\.[A-Za-z_]\w*))\s*")


def mapped(expression: str, claims: dict[str, Any]) -> str | None:
    """An attribute mapping of the subset vertexkit writes: ``assertion.x`` or ``a + 'b' + c``;
    None when a claim is missing."""
    value = ""
    for part in expression.split(" + "):
        match = PART.fullmatch(part)
        assert match, f"not in the subset: {part!r}"
        if match["string"]:
            value += match["string"][1:-1]
        else:
            claim = match["path"].split(".", 1)[1]
            if claim not in claims:
                return None
            value += str(claims[claim])
    return value


def may_act_as(provider: dict[str, Any], principals: list[str], claims: dict[str, Any]) -> bool:
    """Whether a token passes the provider and falls in one of the trusted principalSets."""
    if not admits(provider, claims):
        return False
    for principal in principals:
        if principal == "*":
            return True
        attribute, value = principal.split("/", 1)
        expression = provider["attribute_mapping"].get(attribute)
        assert expression is not None, f"{principal} names an attribute the provider never maps"
        if mapped(expression, claims) == value:
            return True
    return False


def test_the_mapping_evaluator_reads_what_it_is_given() -> None:
    claims = {"ref_type": "branch", "ref_protected": "true", "ref": "main"}
    assert mapped(ci_identity.GITLAB_REF_SCOPE, claims) == "branch/true/main"
    assert mapped("assertion.ref", claims) == "main"
    assert mapped("assertion.event_name", claims) is None
    with pytest.raises(AssertionError):
        mapped("assertion.ref.lowerAscii()", claims)


def _github(repository: str, ref: str, event: str) -> dict[str, str]:
    return {
        "sub": f"repo:{repository}:ref:{ref}",
        "repository": repository,
        "ref": ref,
        "ref_type": "branch",
        "event_name": event,
    }


def _gitlab(path: str, ref: str, protected: str, source: str) -> dict[str, str]:
    return {
        "sub": f"project_path:{path}:ref_type:branch:ref:{ref}",
        "project_path": path,
        "ref": ref,
        "ref_type": "branch",
        "ref_protected": protected,
        "pipeline_source": source,
    }


def _bitbucket(repository: str, branch: str) -> dict[str, str]:
    return {
        "sub": "{" + repository + "}:{step}",
        "repositoryUuid": "{" + repository + "}",
        "workspaceUuid": "{" + WORKSPACE_UUID + "}",
        "branchName": branch,
    }


OTHER = "00000000-0000-0000-0000-000000000000"
# (sample, claims, may act as the provisioner, may act as the planner), in dev.
TOKENS: dict[str, list[tuple[str, dict[str, str], bool, bool]]] = {
    "github-actions": [
        ("push to main", _github("acme/ml-project", "refs/heads/main", "push"), True, False),
        (
            "pull request",
            _github("acme/ml-project", "refs/pull/7/merge", "pull_request"),
            False,
            True,
        ),
        ("feature branch", _github("acme/ml-project", "refs/heads/feature", "push"), False, False),
        ("another repository's main", _github("evil/ml", "refs/heads/main", "push"), False, False),
        (
            "another repository's PR",
            _github("evil/ml", "refs/pull/1/merge", "pull_request"),
            False,
            False,
        ),
    ],
    "gitlab-ci": [
        ("protected main", _gitlab("acme/ml/project", "main", "true", "push"), True, False),
        (
            "merge request",
            _gitlab("acme/ml/project", "feature", "false", "merge_request_event"),
            False,
            True,
        ),
        ("unprotected main", _gitlab("acme/ml/project", "main", "false", "push"), False, False),
        ("feature branch", _gitlab("acme/ml/project", "feature", "false", "push"), False, False),
        ("another project", _gitlab("acme/ml/other", "main", "true", "push"), False, False),
    ],
    "bitbucket-pipelines": [
        ("main", _bitbucket(REPO_UUID, "main"), True, True),
        ("a pull request's branch", _bitbucket(REPO_UUID, "feature"), False, True),
        ("another repository's main", _bitbucket(OTHER, "main"), False, False),
    ],
    "jenkins": [
        ("main job", {"sub": f"{JENKINS}/job/acme-ml/job/main/"}, True, True),
        ("pull request job", {"sub": f"{JENKINS}/job/acme-ml/job/PR-7/"}, False, True),
        ("branch named main-x", {"sub": f"{JENKINS}/job/acme-ml/job/main-x/"}, False, True),
        ("another job's main", {"sub": f"{JENKINS}/job/other/job/main/"}, False, False),
    ],
}


@pytest.mark.parametrize("system", list(TOKENS))
def test_only_main_may_provision_pull_requests_may_plan(tmp_path: Path, system: str) -> None:
    infra = provision.plan_infrastructure(configs(tmp_path, system)["dev"])
    data = provision.tfvars(infra)
    [provider] = data["ci_pool"]["providers"].values()
    trusted: dict[str, list[str]] = {PROVISIONER: [], PLANNER: []}
    for w in data["ci_provisioning"]["workload_identity"]:
        trusted[w["service_account"]].append(w["principal"])
    for sample, claims, provisioner, planner in TOKENS[system]:
        assert may_act_as(provider, trusted[PROVISIONER], claims) == provisioner, sample
        assert may_act_as(provider, trusted[PLANNER], claims) == planner, sample
    # The deployer's trust is unchanged: every admitted token of the repository.
    assert provider["principal"] in {"*", f"attribute.repository/{SYSTEMS[system]['repository']}"}


# --- the plan -----------------------------------------------------------------------------

PROVISIONER_ROLES = {
    "roles/serviceusage.serviceUsageAdmin",
    "roles/storage.admin",
    "roles/artifactregistry.admin",
    "roles/iam.serviceAccountAdmin",
    "roles/resourcemanager.projectIamAdmin",
    # the drift alert's log-based metric and policy (monitoring.tf), in every environment
    "roles/logging.configWriter",
    "roles/monitoring.alertPolicyEditor",
}
PLANNER_ROLES = {
    ("project", "acme-ml-dev", "roles/viewer"),
    ("project", "acme-ml-dev", "roles/iam.securityReviewer"),
    ("state_bucket", STATE, "roles/storage.objectViewer"),
}


def _roles(account: Any) -> set[tuple[str, str, str]]:
    return {(r.scope, r.resource, r.role) for r in account.roles}


@pytest.mark.parametrize("system", list(SYSTEMS))
def test_external_ci_gets_a_provisioner_and_a_planner_in_dev_only(
    tmp_path: Path, system: str
) -> None:
    by_env = configs(tmp_path, system)
    infra = provision.plan_infrastructure(by_env["dev"])
    assert infra.ci is not None
    provisioner, planner = infra.ci.accounts
    assert (provisioner.kind, provisioner.email) == ("provisioner", PROVISIONER)
    assert (planner.kind, planner.email) == ("planner", PLANNER)
    assert _roles(provisioner) == {
        *(("project", "acme-ml-dev", role) for role in PROVISIONER_ROLES),
        ("project", "acme-ml-dev", "roles/iam.workloadIdentityPoolAdmin"),
        ("state_bucket", STATE, "roles/storage.objectAdmin"),
    }
    assert _roles(planner) == PLANNER_ROLES
    assert all(r.why for a in infra.ci.accounts for r in a.roles)
    # Neither is one of the stack's accounts: the deployer keeps its deploy roles only.
    assert {a.email for a in infra.service_accounts}.isdisjoint({PROVISIONER, PLANNER})
    assert not any(b.member.endswith((PROVISIONER, PLANNER)) for b in infra.bindings)
    # The release-tag environments deploy by promotion: no provisioner or planner there.
    prod = provision.plan_infrastructure(by_env["prod"])
    assert prod.ci is not None and prod.ci.accounts == ()
    assert provision.tfvars(prod)["ci_provisioning"] is None


def test_secrets_add_secret_manager_to_the_provisioner(tmp_path: Path) -> None:
    config = configs(tmp_path, "github-actions")["dev"].model_copy(update={"secrets": ["DB"]})
    provisioner, planner = provision.plan_infrastructure(config).ci.accounts  # type: ignore[union-attr]
    assert ("project", "acme-ml-dev", "roles/secretmanager.admin") in _roles(provisioner)
    assert _roles(planner) == PLANNER_ROLES


@pytest.mark.parametrize(
    ("kind", "scheduler", "extra"),
    [
        ("cloud-run", "cloud-scheduler", {"roles/run.admin", "roles/cloudscheduler.admin"}),
        ("cloud-functions", "vertex", {"roles/cloudfunctions.admin"}),
    ],
)
def test_the_submission_service_adds_what_applying_it_needs(
    tmp_path: Path, kind: str, scheduler: str, extra: set[str]
) -> None:
    dev = configs(tmp_path, "github-actions")["dev"]
    service = dev.service.model_copy(update={"kind": kind})
    config = dev.model_copy(update={"service": service, "scheduler": scheduler})
    provisioner, planner = provision.plan_infrastructure(config).ci.accounts  # type: ignore[union-attr]
    project_roles = {role for scope, _, role in _roles(provisioner) if scope == "project"}
    assert project_roles - PROVISIONER_ROLES == {
        "roles/iam.workloadIdentityPoolAdmin",
        "roles/pubsub.admin",
        *extra,
    }
    acts_as = {r for scope, r, role in _roles(provisioner) if scope == "service_account"}
    expected = {"demo-submit@acme-ml-dev.iam.gserviceaccount.com"}
    if kind == "cloud-functions":
        expected.add("demo-builder@acme-ml-dev.iam.gserviceaccount.com")
    assert acts_as == expected
    assert _roles(planner) == PLANNER_ROLES


@pytest.mark.parametrize("host", list(CLOUD_BUILD))
def test_cloud_build_triggers_run_as_the_provisioner_and_planner(tmp_path: Path, host: str) -> None:
    infra = provision.plan_infrastructure(cloud_build(tmp_path, host)["dev"])
    assert infra.ci is not None and infra.ci.pool is None
    provisioner, planner = infra.ci.accounts
    assert provisioner.principals == planner.principals == ()  # no federation
    assert _roles(provisioner) == {
        *(("project", "acme-ml-dev", role) for role in PROVISIONER_ROLES),
        ("project", "acme-ml-dev", "roles/secretmanager.admin"),  # the connection's tokens
        ("project", "acme-ml-dev", "roles/cloudbuild.connectionAdmin"),
        ("project", "acme-ml-dev", "roles/cloudbuild.builds.editor"),
        ("project", "acme-ml-dev", "roles/logging.logWriter"),
        ("service_account", DEPLOYER, "roles/iam.serviceAccountUser"),
        ("service_account", PLANNER, "roles/iam.serviceAccountUser"),
        ("service_account", PROVISIONER, "roles/iam.serviceAccountUser"),
        ("state_bucket", STATE, "roles/storage.objectAdmin"),
    }
    assert _roles(planner) == {
        *PLANNER_ROLES,
        ("project", "acme-ml-dev", "roles/logging.logWriter"),
    }
    by_account = {t.service_account: t.name for t in infra.ci.triggers}
    assert by_account[PROVISIONER] == "demo-dev-infra-apply"
    assert by_account[PLANNER] == "demo-dev-infra-plan"


def test_gcloud_projects_and_jenkins_on_google_cloud_get_neither(tmp_path: Path) -> None:
    """CI never provisions a gcloud project; Jenkins agents without federation run as the
    deployer."""
    root = write_project(
        tmp_path / "gcloud", {"system": "github-actions", **SYSTEMS["github-actions"]}
    )
    base = json.loads((root / "config" / "base.yaml").read_text())
    base["provisioning"] = {"tool": "gcloud"}
    (root / "config" / "base.yaml").write_text(json.dumps(base))
    infra = provision.plan_infrastructure(load_config(root, "dev"))
    assert infra.ci is not None and infra.ci.pool is not None and infra.ci.accounts == ()
    steps = provision.plan_gcloud(infra, root)
    assert not any(PROVISIONER in str(s) or PLANNER in str(s) for s in steps)
    agents = write_project(
        tmp_path / "agents",
        {
            "system": "jenkins",
            "jenkins_agent_member": "serviceAccount:infra-1234.svc.id.goog[jenkins/agent]",
        },
    )
    infra = provision.plan_infrastructure(load_config(agents, "dev"))
    assert infra.ci is not None and infra.ci.accounts == ()


def test_the_longest_prefix_fits_the_account_ids(tmp_path: Path) -> None:
    config = configs(tmp_path, "github-actions")["dev"].model_copy(
        update={"naming_prefix": "p" * MAX_PREFIX_LENGTH}
    )
    for account in provision.plan_infrastructure(config).ci.accounts:  # type: ignore[union-attr]
        assert 6 <= len(account.account_id) <= SERVICE_ACCOUNT_MAX, account.account_id


def test_the_identities_table_lists_both_and_who_may_use_them(tmp_path: Path) -> None:
    infra = provision.plan_infrastructure(configs(tmp_path, "github-actions")["dev"])
    table = provision.identities_table(infra)
    assert (
        "| `demo-provision` | | | CI applies infra/terraform as it, from the main branch only:"
        in table
    )
    trust = "` | `roles/iam.workloadIdentityUser` | service account `demo-"
    assert f"attribute.ref/refs/heads/main{trust}provision@" in table
    assert f"attribute.event_name/pull_request{trust}planner@" in table
    summary = ci_identity.ci_summary(infra, "123")
    assert (
        f"provisioner service account: {PROVISIONER} (CI variable GCP_PROVISIONER_SERVICE_ACCOUNT)"
        in summary
    )
    assert (
        f"planner service account: {PLANNER} (CI variable GCP_PLANNER_SERVICE_ACCOUNT)" in summary
    )


# --- Terraform ----------------------------------------------------------------------------


def test_terraform_takes_roles_members_and_principals_from_the_variables() -> None:
    with (TEMPLATE_TF / "ci_provisioning.tf").open(encoding="utf-8") as handle:
        parsed = hcl2.load(handle)
    resources = {
        f"{kind}.{label}".replace('"', ""): block
        for entry in parsed["resource"]
        for kind, body in entry.items()
        for label, block in body.items()
    }
    assert set(resources) == {
        "google_service_account.ci_provisioning",
        "google_project_iam_member.ci_provisioning",
        "google_storage_bucket_iam_member.ci_state",
        "google_service_account_iam_member.ci_provisioning",
        "google_service_account_iam_member.ci_provisioning_federation",
    }
    for address in (
        "google_project_iam_member.ci_provisioning",
        "google_storage_bucket_iam_member.ci_state",
        "google_service_account_iam_member.ci_provisioning",
    ):
        block = resources[address]
        assert (block["role"], block["member"]) == ("${each.value.role}", "${each.value.member}")
    federation = resources["google_service_account_iam_member.ci_provisioning_federation"]
    assert federation["member"].strip('"') == (
        "principalSet://iam.googleapis.com/${google_iam_workload_identity_pool.ci[0].name}/"
        "${each.value.principal}"
    )


# --- invoke provision --plan --------------------------------------------------------------


@pytest.fixture
def tools(tmp_path: Path) -> Path:
    """A folder with a fake terraform, and nothing else."""
    fake_tool(tmp_path / "bin", "terraform", FAKE_TERRAFORM)
    return tmp_path / "bin"


@pytest.fixture
def planned(project: Path) -> Path:
    use_tool(project, "terraform", "[DB_PASSWORD]")
    (project / "infra" / "terraform").mkdir(parents=True)
    return project


def test_plan_runs_init_and_plan_without_lock_and_creates_nothing(
    planned: Path, tmp_path: Path, tools: Path, recording_server: RecordingServer
) -> None:
    recording_server.route("GET", f"/storage/v1/b/{STATE}", (200, {"name": STATE}))
    storage = {"VERTEXKIT_ENDPOINT_STORAGE": recording_server.url}
    result = run_invoke(
        planned, tmp_path, tools, "provision", "--env", "dev", "--plan", extra=storage
    )
    assert result.returncode == 0, result.stderr
    # Only the state bucket's lookup: nothing created.
    assert [(r.method, r.path) for r in recording_server.requests] == [
        ("GET", f"/storage/v1/b/{STATE}")
    ]
    tfvars_path = (planned / "build" / "terraform" / "dev.tfvars.json").resolve()
    init, plan = calls(tmp_path)  # no apply, no confirmation needed without a terminal
    assert init["argv"] == [
        "terraform", "-chdir=infra/terraform", "init", "-input=false", "-reconfigure",
        f"-backend-config=bucket={STATE}", "-backend-config=prefix=dev",
    ]  # fmt: skip
    assert plan["argv"] == [
        "terraform", "-chdir=infra/terraform", "plan", "-input=false", "-lock=false",
        f"-var-file={tfvars_path}",
    ]  # fmt: skip
    assert plan["var_file"] == provision.tfvars(
        provision.plan_infrastructure(load_config(planned, "dev", environ={}))
    )
    assert not provision.plan_file(planned, "dev").exists()  # no saved plan to apply
    assert "Plan: 20 to add" in result.stdout
    assert "planned environment dev: nothing was changed" in result.stdout


def test_a_failing_plan_fails_the_task(
    planned: Path, tmp_path: Path, tools: Path, recording_server: RecordingServer
) -> None:
    recording_server.route("GET", f"/storage/v1/b/{STATE}", (200, {"name": STATE}))
    extra = {"VERTEXKIT_ENDPOINT_STORAGE": recording_server.url, "FAKE_PLAN_FAILS": "1"}
    result = run_invoke(
        planned, tmp_path, tools, "provision", "--env", "dev", "--plan", extra=extra
    )
    assert result.returncode != 0
    assert "planned environment" not in result.stdout


def test_plan_without_a_state_bucket_creates_none_and_says_what_to_do(
    planned: Path, tmp_path: Path, tools: Path, recording_server: RecordingServer
) -> None:
    storage = {"VERTEXKIT_ENDPOINT_STORAGE": recording_server.url}  # every lookup: 404
    result = run_invoke(
        planned, tmp_path, tools, "provision", "--env", "dev", "--plan", extra=storage
    )
    assert result.returncode == 1
    assert f"state bucket {STATE} not found" in result.stderr
    assert "run `invoke provision --env dev` once" in result.stderr
    assert [r.method for r in recording_server.requests] == ["GET"]
    assert calls(tmp_path) == []


def test_plan_dry_run_shows_the_steps_and_sends_nothing(
    planned: Path, tmp_path: Path, tools: Path, recording_server: RecordingServer
) -> None:
    storage = {"VERTEXKIT_ENDPOINT_STORAGE": recording_server.url}
    result = run_invoke(
        planned, tmp_path, tools, "provision", "--env", "dev", "--plan", "--dry-run", "--json",
        extra=storage,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    steps = json.loads(result.stdout)
    assert [s["step"] for s in steps] == [
        f"check state bucket {STATE}",
        "write tfvars",
        "terraform init",
        "terraform plan",
    ]
    assert "-lock=false" in steps[-1]["command"]
    assert recording_server.requests == [] and calls(tmp_path) == []


@pytest.mark.parametrize("tool", ["gcloud", "none"])
def test_plan_needs_terraform_and_says_so(
    project: Path, tmp_path: Path, tools: Path, tool: str
) -> None:
    use_tool(project, tool)
    result = run_invoke(project, tmp_path, tools, "provision", "--env", "dev", "--plan")
    assert result.returncode == 1
    assert f"--plan runs terraform plan, but provisioning.tool is {tool} in config/base.yaml" in (
        result.stderr
    )
    assert calls(tmp_path) == []


# --- the CI files' credentials --------------------------------------------------------------

CREDENTIALS_SCRIPT = (
    Path(__file__).parent.parent
    / "template"
    / "{% if ci in ['gitlab-ci', 'bitbucket-pipelines', 'jenkins'] %}ci{% endif %}"
    / "google_credentials.py"
)


def test_the_credential_configuration_acts_as_the_account_the_job_names(tmp_path: Path) -> None:
    """GitLab, Bitbucket and Jenkins jobs name the provisioner's or planner's variable."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("GCP_")}
    environ.update(
        GCP_WORKLOAD_IDENTITY_PROVIDER=(
            "projects/123456789012/locations/global/workloadIdentityPools/demo-ci/providers/gitlab"
        ),
        GCP_SERVICE_ACCOUNT=DEPLOYER,
        GCP_PLANNER_SERVICE_ACCOUNT=PLANNER,
        CI_TOKEN="header.payload.signature",
    )
    out = tmp_path / "credentials.json"

    def write(*extra: str) -> subprocess.CompletedProcess:
        command = [sys.executable, str(CREDENTIALS_SCRIPT), "--token-env", "CI_TOKEN"]
        return subprocess.run(
            [*command, "--out", str(out), *extra],
            env=environ,
            capture_output=True,
            text=True,
        )

    def acting_as() -> str:
        url = json.loads(out.read_text())["service_account_impersonation_url"]
        return url.rsplit("/", 1)[1].removesuffix(":generateAccessToken")

    assert write().returncode == 0 and acting_as() == DEPLOYER
    done = write("--service-account-env", "GCP_PLANNER_SERVICE_ACCOUNT")
    assert done.returncode == 0, done.stderr
    assert acting_as() == PLANNER
    missing = write("--service-account-env", "GCP_PROVISIONER_SERVICE_ACCOUNT")
    assert missing.returncode != 0
    assert "GCP_PROVISIONER_SERVICE_ACCOUNT is not set" in missing.stderr


# --- documentation ------------------------------------------------------------------------


def provisioning_docs_rows(tmp_path: Path) -> str:
    rows = ["| identity | role | on | why |", "| --- | --- | --- | --- |"]
    cases = {
        "github-actions": configs(tmp_path / "wif", "github-actions")["dev"],
        "cloud-build": cloud_build(tmp_path / "cb", "github")["dev"],
    }
    for config in cases.values():
        rows += ci_identity.provisioning_rows(provision.plan_infrastructure(config))
    return "\n".join(rows)


def test_docs_provisioning_identities_are_the_plan(tmp_path: Path) -> None:
    """docs/ci-identity.md shows the provisioner's and planner's roles as the plan grants them:
    regenerate the table between its markers with VERTEXKIT_UPDATE_DOCS=1."""
    page_path = Path(__file__).parent.parent / "docs" / "ci-identity.md"
    page = page_path.read_text()
    start = page.index("\n", page.index("<!-- ci provisioning identities:")) + 1
    end = page.index("<!-- end of ci provisioning identities -->")
    expected = provisioning_docs_rows(tmp_path)
    if os.environ.get("VERTEXKIT_UPDATE_DOCS"):
        page_path.write_text(page[:start] + expected + "\n" + page[end:])
        return
    assert page[start:end].strip() == expected


def test_provision_prints_where_each_ci_system_names_the_accounts(tmp_path: Path) -> None:
    for system, where in {
        "gitlab-ci": "(CI variable GCP_PROVISIONER_SERVICE_ACCOUNT)",
        "jenkins": "(Jenkins credential gcp-provisioner-service-account-dev)",
    }.items():
        infra = provision.plan_infrastructure(configs(tmp_path, system)["dev"])
        assert f"provisioner service account: {PROVISIONER} {where}" in ci_identity.ci_summary(
            infra, "123"
        )
    infra = provision.plan_infrastructure(cloud_build(tmp_path, "gitlab")["dev"])
    [notes] = ci_identity.terraform_notes(infra)
    shown = notes.apply({})  # a LocalStep: prints and returns its text
    assert f"planner service account: {PLANNER}\n" in shown + "\n"


def test_gcloud_provisioning_of_dev_makes_no_provisioner_or_planner(tmp_path: Path) -> None:
    """Through the fake gcloud: dev gets its pool and the deployer's trust, nothing more."""
    project, tools = _gcloud_project(
        tmp_path, {"system": "github-actions", **SYSTEMS["github-actions"]}
    )
    result = run_invoke(project, tmp_path, tools, "provision", "--env", "dev")
    assert result.returncode == 0, result.stderr
    made = calls(tmp_path)
    assert [c for c in made if c[1:4] == ["iam", "workload-identity-pools", "create"]]
    created = [c[4] for c in made if c[1:4] == ["iam", "service-accounts", "create"]]
    assert created == ["demo-pipelines", "demo-deployer", "demo-builder"]
    assert not [c for c in made if any("provision@" in a or "planner@" in a for a in c)]
    assert "provisioner service account" not in result.stdout
