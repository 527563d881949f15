"""Keyless CI (issue 9, identity side): the Workload Identity Federation pool and provider of each
external CI system and the Cloud Build connection and triggers, as both provisioning tools create
them.

The providers' attribute conditions are evaluated here, by a small evaluator of the CEL subset
vertexkit writes (conjunctions of ``==`` and ``startsWith`` on token claims), against sample
tokens of each CI system: the test fails if a condition admits another repository, or a branch
where only release tags may deploy. gcloud runs as a fake executable on PATH through the real
invoke CLI; Terraform checks each system's tfvars against variables.tf (offline plan). checkov
judges the resources (the same files for every system) in tests/test_infra.py, which asserts
that it looked at the provider.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import hcl2
import pytest

from tests.test_infra import (
    TEMPLATE_TF,
    _plan_variables,
    _unquote,
)
from tests.test_provision import FAKE_ALERT_POLICIES, calls, fake_tool, run_invoke
from vertexkit.gcp import ci_identity, provision
from vertexkit.project.config import ConfigError, load_config
from vertexkit.steps import execute

REPOSITORY = {
    "github": "acme/ml-project",
    "gitlab": "acme/ml/project",
    "bitbucket": "acme/ml-project",
}
WORKSPACE_UUID = "11111111-2222-3333-4444-555555555555"
REPO_UUID = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
DEPLOYMENT_UUID = "99999999-8888-7777-6666-555555555555"
JENKINS = "https://jenkins.example.com"
DEPLOYER = "demo-deployer@acme-ml-dev.iam.gserviceaccount.com"
PROVISIONER = "demo-provision@acme-ml-dev.iam.gserviceaccount.com"
PLANNER = "demo-planner@acme-ml-dev.iam.gserviceaccount.com"
NUMBER = "123456789012"
AGENT = "serviceAccount:infra-1234.svc.id.goog[jenkins/agent]"

# The settings of each CI system, as config/base.yaml's ci section (and config/prod.yaml's).
SYSTEMS: dict[str, dict[str, Any]] = {
    "github-actions": {"repository_host": "github", "repository": REPOSITORY["github"]},
    "gitlab-ci": {
        "repository_host": "gitlab",
        "repository": REPOSITORY["gitlab"],
        "gitlab_url": "https://gitlab.acme.com/",
    },
    "bitbucket-pipelines": {
        "repository_host": "bitbucket",
        "repository": REPOSITORY["bitbucket"],
        "bitbucket_workspace_uuid": "{" + WORKSPACE_UUID.upper() + "}",
        "bitbucket_repository_uuid": REPO_UUID,
    },
    "jenkins": {
        "repository_host": "github",
        "repository": REPOSITORY["github"],
        "jenkins_issuer": f"{JENKINS}/oidc",
        "jenkins_job_url": f"{JENKINS}/job/acme-ml",
    },
}
PROD = {"bitbucket-pipelines": {"bitbucket_deployment_environment_uuid": DEPLOYMENT_UUID}}
ISSUERS = {
    "github-actions": "https://token.actions.githubusercontent.com",
    "gitlab-ci": "https://gitlab.acme.com",
    "bitbucket-pipelines": (
        "https://api.bitbucket.org/2.0/workspaces/acme/pipelines-config/identity/oidc"
    ),
    "jenkins": f"{JENKINS}/oidc",
}


def write_project(root: Path, ci: dict[str, Any], prod: dict[str, Any] | None = None) -> Path:
    (root / "config").mkdir(parents=True)
    base = {
        "name": "demo",
        "naming_prefix": "demo",
        "gcp": {"project_id": "acme-ml-dev", "region": "europe-west4"},
        "ci": ci,
    }
    (root / "config" / "base.yaml").write_text(json.dumps(base))
    (root / "config" / "dev.yaml").write_text("{}\n")
    (root / "config" / "prod.yaml").write_text(json.dumps({"ci": prod or {}}))
    (root / "tasks.py").write_text("from vertexkit.tasks import namespace\n\nns = namespace()\n")
    return root


def configs(tmp_path: Path, system: str, **extra: Any) -> dict[str, Any]:
    """The dev and prod configs of a project whose CI is ``system``."""
    root = write_project(
        tmp_path / system, {"system": system, **SYSTEMS.get(system, {}), **extra}, PROD.get(system)
    )
    return {env: load_config(root, env) for env in ("dev", "prod")}


# --- a tiny evaluator of the CEL that vertexkit writes ------------------------------------

TOKEN = re.compile(
    r"\s*(?:(?P<string>'(?:[^'\\]|\\.)*')|(?P<op>==|&&|\(|\))|(?P<path>[A-Za-z_][\w.]*))"
)


class Refused(Exception):
    """The expression cannot be evaluated on the token (Google refuses such a token)."""


def _tokens(expression: str) -> list[tuple[str, str]]:
    found, position = [], 0
    while position < len(expression.rstrip()):
        match = TOKEN.match(expression, position)
        assert match, f"not in the subset: {expression[position:]!r}"
        kind = match.lastgroup
        assert kind is not None
        found.append((kind, match.group(kind)))
        position = match.end()
    return found


def _string(token: tuple[str, str]) -> str:
    assert token[0] == "string", token
    return re.sub(r"\\(.)", r"\1", token[1][1:-1])


def _claim(path: str, claims: dict[str, Any]) -> Any:
    head, *rest = path.split(".")
    assert head == "assertion", f"only assertion.<claim> is written: {path}"
    assert len(rest) == 1, path
    if rest[0] not in claims:
        raise Refused(f"no claim {rest[0]}")
    return claims[rest[0]]


def evaluate(expression: str, claims: dict[str, Any]) -> Any:
    """Conjunctions of ``assertion.x == 'v'`` and ``assertion.x.startsWith('v')``, or a bare
    ``assertion.x`` (a mapping)."""
    tokens = _tokens(expression)
    result: Any = True
    index = 0
    while index < len(tokens):
        kind, text = tokens[index]
        assert kind == "path", tokens[index]
        if text.endswith(".startsWith"):
            assert tokens[index + 1] == ("op", "(") and tokens[index + 3] == ("op", ")")
            value = _claim(text.removesuffix(".startsWith"), claims)
            term: Any = isinstance(value, str) and value.startswith(_string(tokens[index + 2]))
            index += 4
        elif index + 1 < len(tokens) and tokens[index + 1] == ("op", "=="):
            term = _claim(text, claims) == _string(tokens[index + 2])
            index += 3
        else:
            assert len(tokens) == 1, "a bare path is a mapping, never part of a condition"
            return _claim(text, claims)
        result = result and term
        if index < len(tokens):
            assert tokens[index] == ("op", "&&"), tokens[index]
            index += 1
    return result


def admits(provider: dict[str, Any], claims: dict[str, Any]) -> bool:
    try:
        return bool(evaluate(provider["attribute_condition"], claims))
    except Refused:
        return False


def test_the_evaluator_reads_what_it_is_given() -> None:
    claims = {"repository": "a/b", "ref": "refs/tags/v1"}
    assert evaluate("assertion.repository == 'a/b'", claims) is True
    assert evaluate("assertion.repository == 'a/c'", claims) is False
    assert evaluate(
        "assertion.repository == 'a/b' && assertion.ref.startsWith('refs/tags/v')", claims
    )
    assert not evaluate("assertion.ref.startsWith('refs/heads/')", claims)
    assert evaluate("assertion.repository", claims) == "a/b"
    with pytest.raises(Refused):
        evaluate("assertion.environment == 'prod'", claims)
    with pytest.raises(AssertionError):
        evaluate("assertion.repository != 'a/b'", claims)  # not the subset: never written


# --- sample tokens: (claims, admitted in dev, admitted in prod) --------------------------


def _github(repository: str, ref: str, **more: str) -> dict[str, str]:
    kind = "tag" if ref.startswith("refs/tags/") else "branch"
    sub = f"repo:{repository}:ref:{ref}"
    return {"sub": sub, "repository": repository, "ref": ref, "ref_type": kind, **more}


def _gitlab(path: str, ref: str, kind: str, protected: str) -> dict[str, str]:
    sub = f"project_path:{path}:ref_type:{kind}:ref:{ref}"
    return {
        "sub": sub,
        "project_path": path,
        "ref": ref,
        "ref_type": kind,
        "ref_protected": protected,
    }


def _bitbucket(repository: str, deployment: str | None = None) -> dict[str, str]:
    claims = {
        "sub": "{" + repository + "}:{step}",
        "repositoryUuid": "{" + repository + "}",
        "workspaceUuid": "{" + WORKSPACE_UUID + "}",
        "branchName": "main",
    }
    if deployment:
        claims["deploymentEnvironmentUuid"] = "{" + deployment + "}"
    return claims


OTHER_UUID = "00000000-0000-0000-0000-000000000000"
SAMPLES: dict[str, list[tuple[str, dict[str, str], bool, bool]]] = {
    "github-actions": [
        ("main branch", _github("acme/ml-project", "refs/heads/main"), True, False),
        ("release tag", _github("acme/ml-project", "refs/tags/v1.2.3"), True, True),
        ("pull request", _github("acme/ml-project", "refs/pull/7/merge"), True, False),
        ("branch named like a tag", _github("acme/ml-project", "refs/heads/v1.2.3"), True, False),
        ("another repository", _github("evil/ml-project", "refs/tags/v1.2.3"), False, False),
        ("a longer name", _github("acme/ml-project-fork", "refs/tags/v1.2.3"), False, False),
        ("a tag not v*", _github("acme/ml-project", "refs/tags/nightly"), True, False),
    ],
    "gitlab-ci": [
        ("main branch", _gitlab("acme/ml/project", "main", "branch", "true"), True, False),
        ("protected tag", _gitlab("acme/ml/project", "v1.2.3", "tag", "true"), True, True),
        ("unprotected tag", _gitlab("acme/ml/project", "v1.2.3", "tag", "false"), True, False),
        ("protected branch v*", _gitlab("acme/ml/project", "v1", "branch", "true"), True, False),
        ("another project", _gitlab("acme/ml/other", "v1.2.3", "tag", "true"), False, False),
        ("a parent group", _gitlab("acme/ml", "v1.2.3", "tag", "true"), False, False),
    ],
    "bitbucket-pipelines": [
        ("a step", _bitbucket(REPO_UUID), True, False),
        ("the prod deployment", _bitbucket(REPO_UUID, DEPLOYMENT_UUID), True, True),
        ("another deployment", _bitbucket(REPO_UUID, OTHER_UUID), True, False),
        ("another repository", _bitbucket(OTHER_UUID, DEPLOYMENT_UUID), False, False),
    ],
    "jenkins": [
        ("main branch job", {"sub": f"{JENKINS}/job/acme-ml/job/main/"}, True, False),
        ("tag job", {"sub": f"{JENKINS}/job/acme-ml/job/v1.2.3/"}, True, True),
        ("another job", {"sub": f"{JENKINS}/job/other/job/v1.2.3/"}, False, False),
        ("a job named alike", {"sub": f"{JENKINS}/job/acme-ml-x/job/v1.2.3/"}, False, False),
    ],
}


@pytest.mark.parametrize("system", list(SAMPLES))
def test_conditions_admit_only_this_repository_and_release_tags_in_prod(
    tmp_path: Path, system: str
) -> None:
    for env, config in configs(tmp_path, system).items():
        infra = provision.plan_infrastructure(config)
        pool = provision.tfvars(infra)["ci_pool"]
        [(name, provider)] = pool["providers"].items()
        assert provider["issuer_uri"] == ISSUERS[system]
        assert "google.subject" in provider["attribute_mapping"]
        for sample, claims, in_dev, in_prod in SAMPLES[system]:
            expected = in_dev if env == "dev" else in_prod
            assert admits(provider, claims) == expected, (env, sample, provider)
            # Every admitted token maps to the identities the deployer trusts.
            if expected and provider["principal"] != "*":
                attribute, value = provider["principal"].split("/", 1)
                assert evaluate(provider["attribute_mapping"][attribute], claims) == value
        assert name == system.split("-")[0]


def test_each_system_maps_and_conditions_exactly(tmp_path: Path) -> None:
    """The exact strings, so that a change to them is a decision."""
    prod = {system: configs(tmp_path / "x", system)["prod"] for system in SYSTEMS}
    written = {
        system: provision.tfvars(provision.plan_infrastructure(config))["ci_pool"]
        for system, config in prod.items()
    }
    github = written["github-actions"]["providers"]["github"]
    assert github["attribute_condition"] == (
        "assertion.repository == 'acme/ml-project' && assertion.ref_type == 'tag' "
        "&& assertion.ref.startsWith('refs/tags/v')"
    )
    assert github["attribute_mapping"] == {
        "google.subject": "assertion.sub",
        "attribute.repository": "assertion.repository",
        "attribute.ref": "assertion.ref",
    }
    assert github["principal"] == "attribute.repository/acme/ml-project"
    assert github["allowed_audiences"] == []
    gitlab = written["gitlab-ci"]["providers"]["gitlab"]
    assert gitlab["attribute_condition"] == (
        "assertion.project_path == 'acme/ml/project' && assertion.ref_type == 'tag' "
        "&& assertion.ref_protected == 'true' && assertion.ref.startsWith('v')"
    )
    assert gitlab["attribute_mapping"]["attribute.repository"] == "assertion.project_path"
    bitbucket = written["bitbucket-pipelines"]["providers"]["bitbucket"]
    assert bitbucket["allowed_audiences"] == [f"ari:cloud:bitbucket::workspace/{WORKSPACE_UUID}"]
    assert bitbucket["attribute_condition"] == (
        f"assertion.repositoryUuid == '{{{REPO_UUID}}}' "
        f"&& assertion.deploymentEnvironmentUuid == '{{{DEPLOYMENT_UUID}}}'"
    )
    jenkins = written["jenkins"]["providers"]["jenkins"]
    assert jenkins["attribute_condition"] == (
        f"assertion.sub.startsWith('{JENKINS}/job/acme-ml/job/v')"
    )
    for pool in written.values():
        assert pool["id"] == "demo-ci" and pool["service_account"] == DEPLOYER


def test_the_deployer_trusts_the_pool_on_the_account_only(tmp_path: Path) -> None:
    config = configs(tmp_path, "github-actions")["dev"]
    infra = provision.plan_infrastructure(config)
    shown = io.StringIO()
    execute(provision.plan_gcloud(infra, tmp_path), dry_run=True, as_json=True, out=shown)
    steps = json.loads(shown.getvalue())
    [grant] = [s for s in steps if "--role=roles/iam.workloadIdentityUser" in s.get("command", [])]
    assert grant["command"][1:5] == ["iam", "service-accounts", "add-iam-policy-binding", DEPLOYER]
    [member] = [a.split("=", 1)[1] for a in grant["command"] if a.startswith("--member=")]
    assert member == (
        "principalSet://iam.googleapis.com/projects/<from look up the project number: project "
        "number>/locations/global/workloadIdentityPools/demo-ci/attribute.repository/acme/ml-project"
    )
    # No project-level grant to any external identity.
    for step in steps:
        command = step.get("command", [])
        if command[1:3] == ["projects", "add-iam-policy-binding"]:
            assert not any("principal" in a for a in command), command
    assert "sts.googleapis.com" in infra.apis and "iamcredentials.googleapis.com" in infra.apis
    table = provision.identities_table(infra)
    assert "workloadIdentityPools/demo-ci/attribute.repository/acme/ml-project`" in table
    assert "`roles/iam.workloadIdentityUser` | service account `" + DEPLOYER in table


@pytest.mark.parametrize(
    ("system", "extra", "prod", "field"),
    [
        ("github-actions", {"repository": None}, None, "ci.repository is not set"),
        (
            "gitlab-ci",
            {"repository_host": None, "repository": None},
            None,
            "ci.repository_host is not set",
        ),
        (
            "bitbucket-pipelines",
            {"bitbucket_workspace_uuid": None},
            None,
            "bitbucket_workspace_uuid",
        ),
        ("bitbucket-pipelines", {"bitbucket_repository_uuid": None}, None, "repository_uuid"),
        (
            "bitbucket-pipelines",
            {},
            {},
            "config/prod.yaml: ci.bitbucket_deployment_environment_uuid",
        ),
        ("jenkins", {"jenkins_job_url": None}, None, "ci.jenkins_job_url is not set"),
    ],
)
def test_a_missing_setting_stops_provisioning_naming_it(
    tmp_path: Path, system: str, extra: dict, prod: dict | None, field: str
) -> None:
    settings = {"system": system, **SYSTEMS.get(system, {}), **extra}
    ci = {k: v for k, v in settings.items() if v is not None}
    root = write_project(tmp_path, ci, PROD.get(system) if prod is None else prod)
    with pytest.raises(ConfigError, match=re.escape(field)):
        for env in ("dev", "prod"):
            provision.plan_infrastructure(load_config(root, env))


@pytest.mark.parametrize(
    ("ci", "message"),
    [
        (
            {"system": "github-actions", "repository_host": "gitlab", "repository": "a/b"},
            "ci.repository_host: github-actions runs only on github repositories",
        ),
        (
            {"system": "cloud-build", "repository_host": "github", "repository": "just-a-name"},
            "ci.repository: 'just-a-name' is not a github repository path",
        ),
        ({"system": "jenkins", "jenkins_issuer": "http://jenkins/oidc"}, "ci.jenkins_issuer"),
        (
            {"system": "bitbucket-pipelines", "bitbucket_workspace_uuid": "ws"},
            "bitbucket_workspace_uuid",
        ),
        ({"system": "circleci"}, "ci.system: Input should be 'cloud-build'"),
    ],
)
def test_bad_ci_settings_name_the_file_and_field(tmp_path: Path, ci: dict, message: str) -> None:
    root = write_project(tmp_path, ci)
    with pytest.raises(ConfigError) as failure:
        load_config(root, "dev")
    assert "config/base.yaml: ci" in str(failure.value)
    assert message in str(failure.value)


def test_a_pool_id_google_reserves_is_refused(tmp_path: Path) -> None:
    root = write_project(tmp_path, {"system": "github-actions", **SYSTEMS["github-actions"]})
    base = json.loads((root / "config" / "base.yaml").read_text())
    (root / "config" / "base.yaml").write_text(json.dumps({**base, "naming_prefix": "gcp"}))
    with pytest.raises(ConfigError, match="naming_prefix: workload identity pool 'gcp-ci'"):
        provision.plan_infrastructure(load_config(root, "dev"))


def test_jenkins_agents_on_google_cloud_need_no_pool(tmp_path: Path) -> None:
    agent = AGENT
    config = configs(
        tmp_path, "jenkins", jenkins_issuer=None, jenkins_job_url=None, jenkins_agent_member=agent
    )["prod"]
    ci = {k: v for k, v in config.ci.model_dump().items() if v is not None}
    assert "jenkins_issuer" not in ci
    infra = provision.plan_infrastructure(config)
    assert infra.ci is not None and infra.ci.pool is None
    assert provision.tfvars(infra)["ci_pool"] is None
    grants = {(b.scope, b.resource, b.role, b.member) for b in infra.bindings}
    assert ("service_account", DEPLOYER, "roles/iam.workloadIdentityUser", agent) in grants
    assert next(b for b in infra.bindings if b.member == agent).scope == "service_account"
    assert f"| `{agent}` |" in provision.identities_table(infra)


def test_jenkins_agents_running_as_the_deployer_need_nothing_provisioned(tmp_path: Path) -> None:
    config = configs(tmp_path, "jenkins", jenkins_issuer=None, jenkins_job_url=None)["dev"]
    infra = provision.plan_infrastructure(config)
    assert infra.ci is not None and infra.ci.pool is None and infra.ci.agent_member is None
    assert (
        infra.bindings
        == provision.plan_infrastructure(configs(tmp_path / "none", "none")["dev"]).bindings
    )
    summary = ci_identity.ci_summary(infra, NUMBER)
    assert "attach it to the agent VMs" in summary and "ci.jenkins_issuer is not set" in summary


# --- Cloud Build --------------------------------------------------------------------------


def test_cloud_build_on_github_waits_for_the_app_and_provisions_the_rest(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without the GitHub App's installation id (the one manual step), provisioning creates
    everything else and says what to do for the connection and triggers."""
    config = configs(tmp_path, "cloud-build", repository_host="github", repository="a/b")["dev"]
    infra = provision.plan_infrastructure(config)
    assert infra.ci is not None and infra.ci.connection is None and not infra.ci.triggers
    assert provision.tfvars(infra)["cloud_build"] is None
    notes = ci_identity.ci_summary(infra, NUMBER)
    assert "set ci.github_app_installation_id in config/base.yaml" in notes
    [note] = ci_identity.terraform_notes(infra)
    execute([note], out=io.StringIO())
    assert "github.com/settings/installations/<id>" in capsys.readouterr().out
    # Nor does a repository not yet named (the default answers) stop the rest.
    config = configs(tmp_path / "unnamed", "cloud-build")["prod"]
    assert config.ci.repository is None
    infra = provision.plan_infrastructure(config)
    assert infra.ci is not None and infra.ci.connection is None
    assert "set ci.repository_host and ci.repository" in ci_identity.ci_summary(infra, NUMBER)


CLOUD_BUILD = {
    "github": {"github_app_installation_id": 4242},
    "gitlab": {"gitlab_url": "https://gitlab.acme.com"},
    "bitbucket": {},
}


def cloud_build(tmp_path: Path, host: str) -> dict[str, Any]:
    return configs(
        tmp_path / host,
        "cloud-build",
        repository_host=host,
        repository=REPOSITORY[host],
        **CLOUD_BUILD[host],
    )


@pytest.mark.parametrize("host", list(CLOUD_BUILD))
def test_cloud_build_triggers_run_as_their_accounts_and_promotions_wait(
    tmp_path: Path, host: str
) -> None:
    for env, config in cloud_build(tmp_path, host).items():
        infra = provision.plan_infrastructure(config)
        data = provision.tfvars(infra)
        assert data["ci_pool"] is None
        build = data["cloud_build"]
        assert build["host"] == host
        assert build["connection"] == f"demo-{host}"
        assert build["remote_uri"].endswith(f"/{REPOSITORY[host]}.git")
        triggers = build["triggers"]
        if env == "dev":
            # Infra changes are planned as the planner and applied as the provisioner; the
            # rest runs as the deployer.
            assert {name: t["service_account"] for name, t in triggers.items()} == {
                "demo-dev-pull-request": DEPLOYER,
                "demo-dev-main": DEPLOYER,
                "demo-dev-infra-plan": PLANNER,
                "demo-dev-infra-apply": PROVISIONER,
            }
            plan, apply = triggers["demo-dev-infra-plan"], triggers["demo-dev-infra-apply"]
            assert plan["included_files"] == apply["included_files"] == ["infra/**", "config/**"]
            assert plan["filename"] == "cloudbuild/infra-plan.yaml"
            assert plan["pull_request_branch"] == "^main$" and plan["push_branch"] is None
            assert apply["filename"] == "cloudbuild/infra-apply.yaml"
            assert apply["push_branch"] == "^main$" and apply["pull_request_branch"] is None
            assert triggers["demo-dev-main"]["push_branch"] == "^main$"
            assert triggers["demo-dev-main"]["filename"] == "cloudbuild/main.yaml"
            assert triggers["demo-dev-pull-request"]["pull_request_branch"] == "^main$"
            assert not any(t["approval_required"] for t in triggers.values())
        else:
            [(name, release)] = triggers.items()
            assert name == "demo-prod-release" and release["service_account"] == DEPLOYER
            assert release["approval_required"] is True
            assert release["filename"] == "cloudbuild/promote-prod.yaml"
            assert re.match(release["push_tag"], "v1.2.3") and not re.match(
                release["push_tag"], "v1.2.3-rc"
            )
        # Builds running as the deployer write their logs; tokens stay in secrets, by name.
        assert {"role": "roles/logging.logWriter", "member": f"serviceAccount:{DEPLOYER}"} in data[
            "project_roles"
        ]
        assert all(s.startswith("demo-cloudbuild-") for s in build["secrets"].values())
        assert "secretmanager.googleapis.com" in data["apis"]
        assert "sts.googleapis.com" not in data["apis"]
        table = provision.identities_table(infra)
        assert (
            "gcp-sa-cloudbuild.iam.gserviceaccount.com` | | | Cloud Build's service agent" in table
        )


# --- gcloud through the real invoke CLI ---------------------------------------------------

FAKE_GCLOUD = (
    """
import json, os, sys
args = sys.argv[1:]
with open(os.environ["FAKE_LOG"], "a") as log:
    log.write(json.dumps(["gcloud", *args]) + "\\n")
if args[:2] == ["projects", "describe"]:
    print("NUMBER")
    sys.exit(0)
state_file = os.environ["FAKE_STATE"]
state = set(json.load(open(state_file))) if os.path.exists(state_file) else set()
"""
    + FAKE_ALERT_POLICIES
    + """
verbs = {"describe": "describe", "create": "create", "create-oidc": "create", "delete": "delete"}
verb = next((a for a in args if a in verbs), None)
if verb is None:
    sys.exit(0)
index = args.index(verb)
group = args[:index]
if group[:2] == ["builds", "triggers"] and verb == "create":
    name = next(a.split("=", 1)[1] for a in args if a.startswith("--name="))
else:
    name = args[index + 1]
if group[:2] == ["iam", "service-accounts"]:
    name = name.split("@")[0]
key = " ".join(group) + ":" + name
if verbs[verb] == "describe":
    if key in state:
        print(json.dumps({"name": name}))
        sys.exit(0)
    sys.stderr.write(f"ERROR: NOT_FOUND: {name}\\n")
    sys.exit(1)
if verbs[verb] == "create":
    if key in state:
        sys.stderr.write(f"ERROR: ALREADY_EXISTS: {name}\\n")
        sys.exit(1)
    state.add(key)
else:
    state.discard(key)
json.dump(sorted(state), open(state_file, "w"))
"""
).replace("NUMBER", NUMBER)


def _gcloud_project(tmp_path: Path, ci: dict[str, Any]) -> tuple[Path, Path]:
    project = write_project(tmp_path / "project", ci)
    with (project / "config" / "base.yaml").open() as handle:
        base = json.load(handle)
    base["provisioning"] = {"tool": "gcloud"}
    (project / "config" / "base.yaml").write_text(json.dumps(base))
    bin_dir = tmp_path / "bin"
    fake_tool(bin_dir, "gcloud", FAKE_GCLOUD)
    return project, bin_dir


@pytest.mark.slow
def test_gcloud_provisions_the_pool_then_nothing_new_then_deletes_it(tmp_path: Path) -> None:
    project, tools = _gcloud_project(tmp_path, {"system": "gitlab-ci", **SYSTEMS["gitlab-ci"]})
    result = run_invoke(project, tmp_path, tools, "provision", "--env", "prod")
    assert result.returncode == 0, result.stderr
    first = calls(tmp_path)
    [pool] = [c for c in first if c[1:4] == ["iam", "workload-identity-pools", "create"]]
    assert pool[4] == "demo-ci"
    [create] = [c for c in first if "create-oidc" in c]
    [update] = [c for c in first if "update-oidc" in c]
    for command in (create, update):
        flags = dict(a[2:].split("=", 1) for a in command if a.startswith("--"))
        assert flags["issuer-uri"] == "https://gitlab.acme.com"
        assert flags["workload-identity-pool"] == "demo-ci"
        assert "ref_protected == 'true'" in flags["attribute-condition"]
    [grant] = [c for c in first if "--role=roles/iam.workloadIdentityUser" in c]
    assert (
        f"--member=principalSet://iam.googleapis.com/projects/{NUMBER}/locations/global/"
        "workloadIdentityPools/demo-ci/attribute.repository/acme/ml/project"
    ) in grant
    assert first.index(pool) < first.index(create) < first.index(grant)
    # The pool comes after the deployer account it trusts.
    account = next(c for c in first if c[1:4] == ["iam", "service-accounts", "create"])
    assert first.index(account) < first.index(grant)
    assert (
        f"workload identity provider: projects/{NUMBER}/locations/global/workloadIdentityPools/"
        "demo-ci/providers/gitlab" in result.stdout
    )
    assert f"service account: {DEPLOYER}" in result.stdout

    (tmp_path / "calls.jsonl").unlink()
    again = run_invoke(project, tmp_path, tools, "provision", "--env", "prod")
    assert again.returncode == 0, again.stderr
    assert [c for c in calls(tmp_path) if "create" in c or "create-oidc" in c] == []
    assert [c for c in calls(tmp_path) if "update-oidc" in c], "the condition is kept in step"

    (tmp_path / "calls.jsonl").unlink()
    gone = run_invoke(project, tmp_path, tools, "deprovision", "--env", "prod", "--yes")
    assert gone.returncode == 0, gone.stderr
    deletes = [c for c in calls(tmp_path) if "delete" in c]
    assert deletes[0][:5] == ["gcloud", "iam", "workload-identity-pools", "delete", "demo-ci"]


@pytest.mark.parametrize("host", list(CLOUD_BUILD))
def test_gcloud_and_terraform_make_the_same_ci_resources(tmp_path: Path, host: str) -> None:
    systems = {f"cloud-build-{host}": cloud_build(tmp_path, host)}
    if host == "github":
        systems.update({system: configs(tmp_path / "wif", system) for system in SYSTEMS})
    for name, by_env in systems.items():
        for env, config in by_env.items():
            infra = provision.plan_infrastructure(config)
            shown = io.StringIO()
            execute(provision.plan_gcloud(infra, tmp_path), dry_run=True, as_json=True, out=shown)
            commands = [s["command"] for s in json.loads(shown.getvalue()) if "command" in s]
            data = provision.tfvars(infra)
            _same(commands, data, (name, env))


def _flags(command: list[str]) -> dict[str, str]:
    return dict(a[2:].split("=", 1) for a in command if a.startswith("--") and "=" in a)


def _same(commands: list[list[str]], data: dict[str, Any], where: tuple[str, str]) -> None:
    pool = data["ci_pool"]
    providers = [c for c in commands if "create-oidc" in c]
    if pool is None:
        assert not providers, where
    else:
        assert len(providers) == len(pool["providers"]), where
        for command in providers:
            flags = _flags(command)
            expected = pool["providers"][command[command.index("create-oidc") + 1]]
            mapping = dict(pair.split("=", 1) for pair in flags["attribute-mapping"].split(","))
            assert mapping == expected["attribute_mapping"], where
            assert flags["attribute-condition"] == expected["attribute_condition"], where
            assert flags["issuer-uri"] == expected["issuer_uri"], where
            audiences = flags.get("allowed-audiences")
            assert (audiences.split(",") if audiences else []) == expected["allowed_audiences"]
    build = data["cloud_build"]
    triggers = [c for c in commands if c[1:4] == ["builds", "triggers", "create"]]
    if build is None:
        assert not triggers, where
        return
    assert {_flags(c)["name"] for c in triggers} == set(build["triggers"]), where
    for command in triggers:
        flags = _flags(command)
        expected = build["triggers"][flags["name"]]
        assert flags["build-config"] == expected["filename"]
        assert flags["service-account"].endswith("/serviceAccounts/" + expected["service_account"])
        assert ("--require-approval" in command) == expected["approval_required"], where
        event = {
            "pull-request-pattern": expected["pull_request_branch"],
            "branch-pattern": expected["push_branch"],
            "tag-pattern": expected["push_tag"],
        }
        assert {k: flags.get(k) for k in event} == event, where
        files = flags.get("included-files")
        assert (files.split(",") if files else []) == expected["included_files"], where
    [connection] = [c for c in commands if c[1:4] == ["builds", "connections", "create"]]
    versions = {a.split("=", 1)[1] for a in connection if "secret-version=" in a}
    assert versions == {
        f"projects/acme-ml-dev/secrets/{s}/versions/latest" for s in build["secrets"].values()
    }, where
    granted = {c[3] for c in commands if c[1:3] == ["secrets", "add-iam-policy-binding"]}
    assert granted == set(build["secrets"].values()), where


# --- Terraform ----------------------------------------------------------------------------


def _tf(name: str) -> dict[str, Any]:
    with (TEMPLATE_TF / name).open(encoding="utf-8") as handle:
        parsed = hcl2.load(handle)
    return {
        f"{_unquote(kind)}.{_unquote(label)}": block
        for entry in parsed.get("resource", [])
        for kind, body in entry.items()
        for label, block in body.items()
    }


def test_terraform_resources_take_every_value_from_the_variables() -> None:
    pool = _tf("ci_identity.tf")
    provider = pool["google_iam_workload_identity_pool_provider.ci"]
    assert provider["attribute_condition"] == "${each.value.attribute_condition}"
    assert provider["attribute_mapping"] == "${each.value.attribute_mapping}"
    assert provider["oidc"][0]["issuer_uri"] == "${each.value.issuer_uri}"
    binding = pool["google_service_account_iam_member.ci_workload_identity"]
    assert _unquote(binding["role"]) == "roles/iam.workloadIdentityUser"
    assert _unquote(binding["member"]) == (
        "principalSet://iam.googleapis.com/${google_iam_workload_identity_pool.ci[0].name}/"
        "${each.value.principal}"
    )
    assert "var.ci_pool.service_account" in binding["service_account_id"]
    build = _tf("cloudbuild.tf")
    trigger = build["google_cloudbuild_trigger.ci"]
    assert _unquote(trigger["service_account"]) == (
        "projects/${var.project_id}/serviceAccounts/${each.value.service_account}"
    )
    [approval] = trigger["approval_config"]
    assert approval["approval_required"] == "${each.value.approval_required}"
    assert "include_build_logs" not in trigger  # logs stay in Cloud Logging
    tokens = build["google_secret_manager_secret_iam_member.cloud_build_tokens"]
    assert _unquote(tokens["role"]) == "roles/secretmanager.secretAccessor"
    text = (TEMPLATE_TF / "cloudbuild.tf").read_text()
    assert "secret_data" not in text and "google_secret_manager_secret_version" not in text


def _every_ci_tfvars(tmp_path: Path) -> dict[str, dict[str, Any]]:
    written = {}
    for system in SYSTEMS:
        for env, config in configs(tmp_path / "wif", system).items():
            written[f"{system}-{env}"] = provision.tfvars(provision.plan_infrastructure(config))
    for host in CLOUD_BUILD:
        for env, config in cloud_build(tmp_path / "cb", host).items():
            written[f"cloud-build-{host}-{env}"] = provision.tfvars(
                provision.plan_infrastructure(config)
            )
    return written


def test_terraform_takes_the_ci_tfvars_of_every_system(tmp_path: Path) -> None:
    every = _every_ci_tfvars(tmp_path)
    variables_dir = tmp_path / "module"
    variables_dir.mkdir()
    shutil.copy(TEMPLATE_TF / "variables.tf", variables_dir)
    shutil.copy(TEMPLATE_TF / "ci_provisioning_variables.tf", variables_dir)  # ci_provisioning
    for name, data in every.items():
        assert _plan_variables(variables_dir, tmp_path / "plan", data) == (0, []), name
    # Terraform refuses a provider without condition and a release trigger without approval.
    data = every["github-actions-prod"]
    data["ci_pool"]["providers"]["github"]["attribute_condition"] = " "
    retcode, problems = _plan_variables(variables_dir, tmp_path / "plan", data)
    assert retcode != 0 and any("attribute_condition" in p for p in problems), problems
    data = every["cloud-build-gitlab-prod"]
    data["cloud_build"]["triggers"]["demo-prod-release"]["approval_required"] = False
    retcode, problems = _plan_variables(variables_dir, tmp_path / "plan", data)
    assert retcode != 0 and any("requires approval" in p for p in problems), problems


# --- documentation ------------------------------------------------------------------------

DOCS_CASES = [
    ("github-actions", {"repository_host": "github", "repository": "acme/ml-project"}),
    ("gitlab-ci", {"repository_host": "gitlab", "repository": "acme/ml-project"}),
    ("jenkins", {"jenkins_agent_member": AGENT}),
    (
        "cloud-build",
        {
            "repository_host": "github",
            "repository": "acme/ml-project",
            "github_app_installation_id": 4242,
        },
    ),
]


def docs_rows(tmp_path: Path) -> str:
    rows = ["| identity | role | on | why |", "| --- | --- | --- | --- |"]
    for system, ci in DOCS_CASES:
        root = write_project(tmp_path / system, {"system": system, **ci})
        infra = provision.plan_infrastructure(load_config(root, "prod"))
        rows += ci_identity.identity_rows(infra)
    return "\n".join(rows)


def test_docs_ci_identities_are_the_plan(tmp_path: Path) -> None:
    """docs/ci-identity.md shows the CI identities the plan grants: regenerate the table
    between its markers with docs_rows (python -c, or VERTEXKIT_UPDATE_DOCS=1)."""
    page_path = Path(__file__).parent.parent / "docs" / "ci-identity.md"
    page = page_path.read_text()
    start = page.index("\n", page.index("<!-- ci identities:")) + 1
    end = page.index("<!-- end of ci identities -->")
    expected = docs_rows(tmp_path)
    if os.environ.get("VERTEXKIT_UPDATE_DOCS"):
        page_path.write_text(page[:start] + expected + "\n" + page[end:])
        return
    assert page[start:end].strip() == expected
    for api in ("sts.googleapis.com", "iamcredentials.googleapis.com"):
        assert f"`{api}`" in page
    for condition in (
        "assertion.ref.startsWith('refs/tags/v')",
        "assertion.ref_protected == 'true'",
    ):
        assert condition in page
