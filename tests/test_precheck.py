"""Precheck against a recording server that plays a project in various states."""

from __future__ import annotations

import io
import json
import re
import socket
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.recording_server import Recorded, RecordingServer
from vertexkit.gcp import precheck, provision
from vertexkit.project.config import ProjectConfig, load_config
from vertexkit.steps import execute

FIXTURES = Path(__file__).parent / "fixtures"
SERVICES = ("serviceusage", "storage", "artifactregistry", "iam", "cloudresourcemanager")
PROJECT = "/v1/projects/acme-ml-dev"
REPOS = f"{PROJECT}/locations/europe-west4/repositories"
BUCKET = "/storage/v1/b/acme-ml-dev-demo-pipelines"
ACCOUNT = f"{PROJECT}/serviceAccounts/demo-pipelines@acme-ml-dev.iam.gserviceaccount.com"
ACCOUNTS = f"{PROJECT}/serviceAccounts/demo-[a-z]+@acme-ml-dev\\.iam\\.gserviceaccount\\.com"


@pytest.fixture(autouse=True)
def _no_auth(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VERTEXKIT_NO_AUTH", "1")


@pytest.fixture
def config() -> ProjectConfig:
    return load_config(FIXTURES / "project", "dev", environ={})


@pytest.fixture
def unmanaged() -> ProjectConfig:
    """The fixture project with its infrastructure managed elsewhere (provisioning none)."""
    environ = {"VERTEXKIT__PROVISIONING__TOOL": "none"}
    return load_config(FIXTURES / "project", "dev", environ=environ)


def grant_all(request: Recorded) -> tuple[int, dict]:
    return 200, {"permissions": request.json["permissions"]}


@pytest.fixture
def server(recording_server: RecordingServer, monkeypatch: pytest.MonkeyPatch) -> RecordingServer:
    """Every endpoint points at a server playing a project where everything is in place."""
    for service in SERVICES:
        monkeypatch.setenv(f"VERTEXKIT_ENDPOINT_{service.upper()}", recording_server.url)
    route = recording_server.route
    route("GET", f"{PROJECT}/services/[a-z]+\\.googleapis\\.com", (200, {"state": "ENABLED"}))
    route("GET", BUCKET, (200, {"name": "acme-ml-dev-demo-pipelines"}))
    route("GET", f"{REPOS}/demo-images", (200, {"format": "DOCKER"}))
    route("GET", f"{REPOS}/demo-pipelines", (200, {"format": "KFP"}))
    route("GET", ACCOUNTS, (200, {"email": "demo-x@acme-ml-dev.iam.gserviceaccount.com"}))
    route("POST", ".*:testIamPermissions", grant_all)
    route(
        "GET",
        f"{BUCKET}/iam/testPermissions",
        lambda request: (200, {"permissions": request.query["permissions"]}),
    )
    return recording_server


def check(config: ProjectConfig) -> dict[str, precheck.Result]:
    results = precheck.run_checks(precheck.plan_checks(config))
    return {result.check: result for result in results}


def test_everything_in_place_is_ok(config: ProjectConfig, server: RecordingServer) -> None:
    results = check(config)
    assert {r.status for r in results.values()} == {"OK"}
    assert len(results) == 20
    for identity in ("pipelines", "deployer", "builder"):
        account = f"service account demo-{identity}@acme-ml-dev.iam.gserviceaccount.com"
        assert results[account].status == "OK"
    assert precheck.passed(list(results.values()))
    table = precheck.render_table(list(results.values()))
    assert table.endswith("precheck passed: ready to deploy")


def test_dry_run_json_lists_every_request_sent(
    config: ProjectConfig, server: RecordingServer
) -> None:
    checks = precheck.plan_checks(config)
    shown = io.StringIO()
    execute(precheck.steps(checks), dry_run=True, as_json=True, out=shown)
    planned = json.loads(shown.getvalue())
    assert server.requests == []
    precheck.run_checks(checks)
    assert len(planned) == len(server.requests) == len(checks)
    for plan, sent in zip(planned, server.requests, strict=True):
        url = urlsplit(plan["url"])
        assert (sent.method, server.url + sent.path, sent.query, sent.json) == (
            plan["method"],
            f"{url.scheme}://{url.netloc}{url.path}",
            parse_qs(url.query),
            plan["body"],
        )
    apis = [p["url"].rsplit("/", 1)[1] for p in planned if "/services/" in p["url"]]
    assert apis == list(provision.APIS) == list(precheck.APIS)
    assert "cloudscheduler.googleapis.com" not in apis
    assert "secretmanager.googleapis.com" not in apis  # the fixture lists no secrets
    [project] = [p for p in planned if p["url"].endswith("acme-ml-dev:testIamPermissions")]
    assert set(project["body"]["permissions"]) >= {
        "aiplatform.pipelineJobs.create",
        "aiplatform.pipelineJobs.get",
        "cloudbuild.builds.create",
    }


def test_missing_resources_say_how_to_create_them(
    unmanaged: ProjectConfig, server: RecordingServer
) -> None:
    config = unmanaged
    not_found = (404, {"error": {"code": 404, "message": "not found"}})
    server.route("GET", BUCKET, not_found)
    server.route("GET", f"{BUCKET}/iam/testPermissions", not_found)
    server.route("GET", f"{REPOS}/demo-pipelines", not_found)
    server.route(
        "GET", f"{PROJECT}/services/aiplatform.googleapis.com", (200, {"state": "DISABLED"})
    )
    results = check(config)

    api = results["API aiplatform.googleapis.com"]
    assert (api.status, api.detail) == ("MISSING", "state DISABLED")
    assert api.fix == "gcloud services enable aiplatform.googleapis.com --project acme-ml-dev"
    make_bucket = (
        "gcloud storage buckets create gs://acme-ml-dev-demo-pipelines --project acme-ml-dev "
        "--location europe-west4 --uniform-bucket-level-access"
    )
    make_kfp_repository = (
        "gcloud artifacts repositories create demo-pipelines --repository-format kfp "
        "--location europe-west4 --project acme-ml-dev"
    )
    for name, fix in (
        ("bucket acme-ml-dev-demo-pipelines", make_bucket),
        ("KFP repository demo-pipelines", make_kfp_repository),
        ("permissions on bucket acme-ml-dev-demo-pipelines", make_bucket),
    ):
        assert (results[name].status, results[name].fix) == ("MISSING", fix)
    assert results["DOCKER repository demo-images"].status == "OK"
    assert not precheck.passed(list(results.values()))
    table = precheck.render_table(list(results.values()))
    assert table.endswith("precheck failed: 4 of 20 checks need attention")


@pytest.mark.parametrize("tool", ["terraform", "gcloud"])
def test_missing_resources_point_to_provision_when_the_project_provisions(
    server: RecordingServer, tool: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VERTEXKIT_ENDPOINT_SECRETMANAGER", server.url)
    environ = {"VERTEXKIT__PROVISIONING__TOOL": tool, "VERTEXKIT__SECRETS": "[DB_PASSWORD]"}
    config = load_config(FIXTURES / "project", "dev", environ=environ)
    not_found = (404, {"error": {"code": 404, "message": "not found"}})
    server.route("GET", BUCKET, not_found)
    server.route("GET", f"{PROJECT}/serviceAccounts/demo-builder@.*", not_found)
    server.route("GET", f"{PROJECT}/secrets/DB_PASSWORD", not_found)
    server.route("GET", f"{PROJECT}/services/logging.googleapis.com", (200, {"state": "DISABLED"}))
    results = check(config)
    assert "API secretmanager.googleapis.com" in results  # secrets listed: its API is checked
    for name in (
        "bucket acme-ml-dev-demo-pipelines",
        "service account demo-builder@acme-ml-dev.iam.gserviceaccount.com",
        "API logging.googleapis.com",
    ):
        assert (results[name].status, results[name].fix) == (
            "MISSING",
            "invoke provision --env dev",
        ), name
    secret = results["secret DB_PASSWORD"]
    assert secret.status == "MISSING"
    assert secret.fix.startswith("invoke provision --env dev (creates it empty")


def test_denied_check_is_reported_not_raised(
    config: ProjectConfig, server: RecordingServer
) -> None:
    denied = (
        403,
        {"error": {"code": 403, "message": "Permission 'iam.serviceAccounts.get' denied"}},
    )
    server.route("GET", ACCOUNT, denied)
    results = check(config)
    result = results["service account demo-pipelines@acme-ml-dev.iam.gserviceaccount.com"]
    assert result.status == "DENIED"
    assert result.detail == (
        "cannot check: permission denied: Permission 'iam.serviceAccounts.get' denied"
    )
    assert result.fix.startswith("request roles/iam.serviceAccountViewer on service account ")
    assert [r.status for r in results.values()].count("OK") == 19


def test_missing_permissions_are_listed_with_the_roles_to_request(
    config: ProjectConfig, server: RecordingServer
) -> None:
    server.route(
        "POST",
        f"{PROJECT}:testIamPermissions",
        (200, {"permissions": ["aiplatform.pipelineJobs.get", "cloudbuild.builds.get"]}),
    )
    server.route("POST", f"{REPOS}/demo-pipelines:testIamPermissions", (200, {}))
    results = check(config)

    project = results["permissions on project acme-ml-dev"]
    assert project.status == "MISSING"
    assert project.detail == "missing aiplatform.pipelineJobs.create, cloudbuild.builds.create"
    assert project.fix == (
        "request roles/aiplatform.user, roles/cloudbuild.builds.editor on project acme-ml-dev"
    )
    repo = results["permissions on repository demo-pipelines"]
    assert repo.detail == "missing artifactregistry.repositories.uploadArtifacts"
    assert repo.fix == "request roles/artifactregistry.writer on repository demo-pipelines"
    assert results["permissions on repository demo-images"].status == "OK"


def test_least_privilege_roles_only() -> None:
    for role in precheck.ROLES.values():
        assert role.startswith("roles/")
        assert "admin" not in role.lower()
        assert role not in {"roles/owner", "roles/editor", "roles/viewer"}


def test_other_errors_carry_the_status(config: ProjectConfig, server: RecordingServer) -> None:
    server.route(
        "GET", f"{PROJECT}/services/iam.googleapis.com", (500, {"error": {"message": "boom"}})
    )
    server.route("GET", f"{REPOS}/demo-images", (200, {"format": "MAVEN"}))
    server.route("GET", BUCKET, (200, ["unexpected"]))
    results = check(config)
    api = results["API iam.googleapis.com"]
    assert (api.status, api.detail, api.fix) == ("ERROR", "HTTP 500: boom", "")
    assert results["bucket acme-ml-dev-demo-pipelines"].status == "ERROR"  # not an object
    repo = results["DOCKER repository demo-images"]
    assert (repo.status, repo.detail) == ("ERROR", "format MAVEN, expected DOCKER")
    assert "resources.docker_repository" in repo.fix


def test_unreachable_endpoint_is_an_error(
    config: ProjectConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    for service in SERVICES:
        monkeypatch.setenv(f"VERTEXKIT_ENDPOINT_{service.upper()}", f"http://127.0.0.1:{port}")
    results = check(config)
    assert {r.status for r in results.values()} == {"ERROR"}
    assert all(r.detail.startswith("no answer: ") for r in results.values())


def test_table_columns_are_aligned() -> None:
    results = [
        precheck.Result("API iam.googleapis.com", "OK"),
        precheck.Result("bucket b", "MISSING", "not found", "gcloud storage buckets create gs://b"),
        precheck.Result("permissions on project p", "DENIED", "cannot check", "request x"),
    ]
    lines = precheck.render_table(results).splitlines()
    header, rows = lines[0], lines[1:4]
    for column in ("STATUS", "DETAIL", "FIX"):
        start = header.index(column)
        assert all(row[start - 2 : start] == "  " and row[start] != " " for row in rows), column
    assert re.split(r"\s{2,}", rows[0]) == [
        "API iam.googleapis.com",
        "OK",
        "-",
        "-",
    ]
    assert lines[-1] == "precheck failed: 2 of 3 checks need attention"
