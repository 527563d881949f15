"""The generated CI files: every allowed ci x source_repo_host x provisioning combination renders
files that their CI system's published schema accepts (check-jsonschema's vendored schemas),
GitHub workflows pass zizmor, the Jenkinsfile has the stages it should, and every `invoke` call
names a task and options that the generated project has."""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

import jsonschema
import pytest
from ruamel.yaml import YAML

from tests.template_support import render, text_files

CI_SYSTEMS = ["cloud-build", "github-actions", "gitlab-ci", "bitbucket-pipelines", "jenkins"]
HOSTS = {
    "cloud-build": ["github", "gitlab", "bitbucket"],
    "github-actions": ["github"],
    "gitlab-ci": ["gitlab"],
    "bitbucket-pipelines": ["bitbucket"],
    "jenkins": ["github", "gitlab", "bitbucket"],
}
PROVISIONING = ["terraform", "gcloud", "none"]
ALL_ENVIRONMENTS = ["dev", "staging", "prod"]
COMBINATIONS = [
    (ci, host, tool) for ci in CI_SYSTEMS for host in HOSTS[ci] for tool in PROVISIONING
] + [("none", None, tool) for tool in PROVISIONING]

SCHEMAS = {
    "cloud-build": "cloudbuild",
    "github-actions": "github-workflows",
    "gitlab-ci": "gitlab-ci",
    "bitbucket-pipelines": "bitbucket-pipelines",
}
LEFTOVER = re.compile(r"\{\{|\}\}|\{%|%\}|\{#|#\}")
GITHUB_EXPRESSION = re.compile(r"\$\{\{ [^{}]+ \}\}")
PINNED_ACTION = re.compile(r"^[\w.-]+/[\w.-]+@[0-9a-f]{40} # v\d+\.\d+\.\d+$")


def ci_files(project: Path) -> list[Path]:
    """Every CI file of any CI system in ``project``."""
    found = [
        *sorted((project / "cloudbuild").glob("*.yaml")),
        *sorted((project / ".github" / "workflows").glob("*.yml")),
        *[project / name for name in (".gitlab-ci.yml", "bitbucket-pipelines.yml", "Jenkinsfile")],
    ]
    return [path for path in found if path.is_file()]


def expected_files(ci: str, tool: str, envs: list[str]) -> set[str]:
    further = envs[1:]
    files = {
        "cloud-build": {
            "cloudbuild/pull-request.yaml",
            "cloudbuild/main.yaml",
            *[f"cloudbuild/promote-{env}.yaml" for env in further],
            *(
                ["cloudbuild/infra-plan.yaml", "cloudbuild/infra-apply.yaml"]
                if tool == "terraform"
                else []
            ),
        },
        "github-actions": {
            ".github/workflows/pull-request.yml",
            ".github/workflows/main.yml",
            *([".github/workflows/release.yml"] if further else []),
            *([".github/workflows/infra-plan.yml"] if tool == "terraform" else []),
        },
        "gitlab-ci": {".gitlab-ci.yml"},
        "bitbucket-pipelines": {"bitbucket-pipelines.yml"},
        "jenkins": {"Jenkinsfile"},
        "none": set(),
    }
    return files[ci]


_RENDERS: dict[tuple, Path] = {}


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory):
    """Render once per answers within this module (without the initial-commit task)."""

    def get(ci: str, host: str | None, tool: str, envs: tuple[str, ...] = tuple(ALL_ENVIRONMENTS)):
        key = (ci, host, tool, envs)
        if key not in _RENDERS:
            answers = {
                # Odd but valid: YAML-special words in the name, which CI files' comments show.
                "project_name": "On: [yes] # null",
                "project_slug": "demo-project",
                "ci": ci,
                "source_repo_host": host,
                "provisioning": tool,
                "environments": list(envs),
                "package_name": "demo_pkg",
                "source_repo": {"gitlab": "acme/ml/demo"}.get(host or "", "acme/demo"),
            }
            if ci == "none":
                answers = {k: v for k, v in answers.items() if k not in {"source_repo"}}
            dest = tmp_path_factory.mktemp("ci") / "project"
            _RENDERS[key] = render(dest, answers, skip_tasks=True)
        return _RENDERS[key]

    return get


def _schema(name: str) -> jsonschema.protocols.Validator:
    vendor = resources.files("check_jsonschema.builtin_schemas.vendor")
    schema = json.loads((vendor / f"{name}.json").read_text(encoding="utf-8"))
    return jsonschema.validators.validator_for(schema)(schema)


def load_yaml(text: str) -> object:
    """YAML 1.2, as CI systems read it (PyYAML's YAML 1.1 reads GitHub's `on:` as true)."""
    return YAML(typ="safe", pure=True).load(text)


def _schema_errors(validator: jsonschema.protocols.Validator, document: object) -> list[str]:
    return [f"{e.json_path}: {e.message[:300]}" for e in validator.iter_errors(document)]


@pytest.mark.parametrize(("ci", "host", "tool"), COMBINATIONS, ids=lambda v: str(v))
def test_ci_files(rendered, ci: str, host: str | None, tool: str) -> None:
    """One render per combination, shared by both checks (rendering is what costs)."""
    project = rendered(ci, host, tool)
    check_ci_files_are_valid(project, ci, tool)
    check_every_invoke_call_exists(project, ci, tool)
    # The README, config and ci/ speak of the chosen CI system: no template syntax left anywhere.
    for path in text_files(project):
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"[ \t]+$", text, re.MULTILINE), f"{path}: trailing whitespace"
        if ".github" in path.parts:
            text = GITHUB_EXPRESSION.sub("", text)
        assert not LEFTOVER.search(text), f"template syntax left in {path.relative_to(project)}"


def check_ci_files_are_valid(project: Path, ci: str, tool: str) -> None:
    present = {str(path.relative_to(project)) for path in ci_files(project)}
    assert present == expected_files(ci, tool, ALL_ENVIRONMENTS)
    assert (project / "ci" / "google_credentials.py").exists() == (
        ci in {"gitlab-ci", "bitbucket-pipelines", "jenkins"}
    )
    for path in ci_files(project):
        text = path.read_text(encoding="utf-8")
        relative = path.relative_to(project)
        assert not LEFTOVER.search(GITHUB_EXPRESSION.sub("", text)), f"{relative}: template syntax"
        assert text.endswith("\n") and not text.endswith("\n\n"), f"{relative}: end of file"
        assert not re.search(r"[ \t]+$", text, re.MULTILINE), f"{relative}: trailing whitespace"
        assert "uv sync --frozen" in text or "sync, --frozen" in text, f"{relative}: not locked"
        if path.name == "Jenkinsfile":
            check_jenkinsfile(text, tool)
            continue
        errors = _schema_errors(_schema(SCHEMAS[ci]), load_yaml(text))
        assert errors == [], f"{relative}: {errors}"
    if ci == "github-actions":
        check_github_workflows(project)
    # Caches kept in the checkout are ignored by git, so ruff (which honours .gitignore) and
    # pre-commit never read the third-party code in them.
    ignored = (project / ".gitignore").read_text().splitlines()
    for path in ci_files(project):
        for folder in re.findall(r"(?:UV_CACHE_DIR|PRE_COMMIT_HOME)[=:] ?(\S+)", path.read_text()):
            assert Path(folder).name + "/" in ignored, f"{path.name}: {folder} is not ignored"


def test_schema_check_can_fail(rendered) -> None:
    """The schemas do reject a broken file of each kind (so passing them means something)."""
    broken = {
        "cloud-build": ("cloudbuild/main.yaml", lambda d: d["steps"][0].update(args="sync")),
        "github-actions": (".github/workflows/main.yml", lambda d: d.pop("jobs")),
        "gitlab-ci": (".gitlab-ci.yml", lambda d: d["checks"].update(when="sometimes")),
        "bitbucket-pipelines": ("bitbucket-pipelines.yml", lambda d: d.update(pipelines=[])),
    }
    for ci, (name, damage) in broken.items():
        document = load_yaml((rendered(ci, HOSTS[ci][-1], "gcloud") / name).read_text())
        validator = _schema(SCHEMAS[ci])
        assert _schema_errors(validator, document) == []
        damage(document)
        assert _schema_errors(validator, document), f"{ci}: the damaged {name} passed"


def check_github_workflows(project: Path) -> None:
    workflows = project / ".github" / "workflows"
    audit = subprocess.run(
        [str(Path(sys.executable).parent / "zizmor"), "--offline", "--no-progress", str(workflows)],
        capture_output=True,
        text=True,
    )
    assert audit.returncode == 0, audit.stdout + audit.stderr
    for path in sorted(workflows.glob("*.yml")):
        workflow = load_yaml(path.read_text())
        assert workflow.get("permissions") in ({}, {"contents": "read"}), path.name
        for job in workflow["jobs"].values():
            granted = job.get("permissions", workflow["permissions"])
            assert set(granted.values()) <= {"read", "write"}
            assert {k for k, v in granted.items() if v == "write"} <= {"id-token"}, path.name
            for step in job["steps"]:
                if "uses" in step:
                    line = next(
                        line.strip().removeprefix("- uses: ")
                        for line in path.read_text().splitlines()
                        if step["uses"] in line
                    )
                    assert PINNED_ACTION.match(line), f"{path.name}: not pinned: {line}"
                    if "google-github-actions/auth" in step["uses"]:
                        assert granted.get("id-token") == "write", path.name
                        assert "credentials_json" not in step.get("with", {})


# --- the Jenkinsfile: a small parser of the declarative pipeline's blocks --------------------


def _blocks(text: str) -> list[tuple[str, str]]:
    """The top-level ``header { body }`` blocks of ``text``, strings and comments skipped."""
    blocks, depth, start, header_start = [], 0, 0, 0
    i = 0
    while i < len(text):
        char = text[i]
        if text.startswith("//", i):
            i = text.index("\n", i) if "\n" in text[i:] else len(text)
            continue
        if char in "'\"":
            end = i + 1
            while text[end] != char:
                end += 2 if text[end] == "\\" else 1
            i = end + 1
            continue
        if char == "{":
            if depth == 0:
                start = i
            depth += 1
        elif char == "}":
            depth -= 1
            assert depth >= 0, "unbalanced braces"
            if depth == 0:
                header = text[header_start:start].strip().splitlines()[-1].strip()
                blocks.append((header, text[start + 1 : i]))
                header_start = i + 1
        elif depth == 0 and char == "\n":
            header_start = i + 1 if not text[header_start:i].strip() else header_start
        i += 1
    assert depth == 0, "unbalanced braces"
    return blocks


def _block(text: str, header: str) -> str:
    found = [body for head, body in _blocks(text) if head == header]
    assert len(found) == 1, f"expected one {header} block, found {len(found)}"
    return found[0]


def jenkins_stages(text: str) -> dict[str, str]:
    """The stages of the declarative pipeline, by name, in order."""
    stages = _block(_block(text, "pipeline"), "stages")
    named = {}
    for header, body in _blocks(stages):
        match = re.fullmatch(r"stage\('([^']+)'\)", header)
        assert match, f"not a stage: {header}"
        named[match[1]] = body
    return named


def check_jenkinsfile(text: str, tool: str, envs: list[str] = ALL_ENVIRONMENTS) -> None:
    stages = jenkins_stages(text)
    expected = ["Install", "Checks"]
    expected += ["Infrastructure plan"] if tool == "terraform" else []
    expected += ["Template update"]
    expected += [f"Provision {envs[0]}"] if tool == "terraform" else []
    expected += [f"Deploy to {envs[0]}"]
    expected += [f"Promote to {env}" for env in envs[1:]]
    assert list(stages) == expected
    if tool == "terraform":
        # Provisioning runs as the CI provisioner, from main only; the plan as the planner.
        provision = stages[f"Provision {envs[0]}"]
        assert "branch 'main'" in _block(provision, "when")
        assert f"gcp-provisioner-service-account-{envs[0]}" in provision
        assert f"invoke provision --env {envs[0]} --yes" in _block(provision, "steps")
        plan = stages["Infrastructure plan"]
        assert f"gcp-planner-service-account-{envs[0]}" in plan
        assert f"invoke provision --env {envs[0]} --plan" in _block(plan, "steps")
        assert "invoke provision" not in stages[f"Deploy to {envs[0]}"]
    assert "changeRequest()" in _block(stages["Checks"], "when")
    assert "branch 'main'" in _block(stages[f"Deploy to {envs[0]}"], "when")
    assert "catchError" in _block(stages["Template update"], "steps")
    for env in envs[1:]:
        body = stages[f"Promote to {env}"]
        heads = [head for head, _ in _blocks(body)]
        # The approval comes first: `input` before the steps that promote.
        assert heads == ["when", "input", "steps"], heads
        assert "beforeInput true" in _block(body, "when")
        assert "tag pattern:" in _block(body, "when")
        assert f"invoke promote --from {envs[0]} --to {env} --yes" in _block(body, "steps")
    for name, body in stages.items():
        if "invoke" in body and name.startswith(("Deploy", "Promote", "Provision")):
            assert "withGoogleCloud" in body, f"stage {name} has no Google credentials"


# --- every invoke call names a task and options that exist -----------------------------------


def commands(path: Path) -> list[str]:
    """The shell commands of a CI file."""
    text = path.read_text(encoding="utf-8")
    if path.name == "Jenkinsfile":
        found = re.findall(r"\bsh '([^']*)'", text)
        code = [line for line in text.splitlines() if not line.strip().startswith("//")]
        # Every line of code that calls invoke is an `sh '...'` step that was read.
        assert sum("invoke " in line for line in code) == sum("invoke " in c for c in found)
        return found
    document = load_yaml(text)
    if path.parent.name == "cloudbuild":
        return [
            shlex.join([step.get("entrypoint", ""), *step.get("args", [])])
            for step in document["steps"]
        ]
    return [line for value in _strings(document) for line in value.splitlines()]


def _strings(node: object) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from _strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from _strings(value)


def invoke_calls(command: str) -> list[tuple[str, list[str], dict[str, str]]]:
    """Each ``invoke TASK --option [value]`` in a command: task, options, option values."""
    words = shlex.split(command)
    calls = []
    for i, word in enumerate(words):
        if word != "invoke" or i + 1 >= len(words):
            continue
        task, options, values = words[i + 1], [], {}
        for j in range(i + 2, len(words)):
            if words[j] in {"&&", "||", ";", "|"}:
                break
            if words[j].startswith("-"):
                options.append(words[j])
                if j + 1 < len(words) and not words[j + 1].startswith("-"):
                    values[words[j]] = words[j + 1]
        calls.append((task, options, values))
    return calls


def _project_collection(project: Path):
    """The invoke collection of the generated project's own tasks.py."""
    spec = importlib.util.spec_from_file_location("generated_tasks", project / "tasks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return task_flags(module.ns)


def task_flags(collection) -> dict[str, set[str]]:
    """Each task's flags (``--env``, ``-e``). ``Task.get_arguments`` consumes the task's help
    texts, which the docs build reads too, so it runs on a copy (as docs/hooks.py does)."""
    flags = {}
    for name in collection.task_names:
        task = copy.copy(collection[name])
        task.help = dict(task.help)
        names = [n for argument in task.get_arguments() for n in argument.names]
        flags[name] = {f"--{n}" if len(n) > 1 else f"-{n}" for n in names}
    return flags


def check_every_invoke_call_exists(project: Path, ci: str, tool: str) -> None:
    tasks = _project_collection(project)
    called: dict[str, set[str]] = {}
    for path in ci_files(project):
        relative = path.relative_to(project)
        for command in commands(path):
            for task, options, values in invoke_calls(command):
                called.setdefault(task, set()).update(options)
                known = tasks.get(task)
                assert known is not None, f"{relative}: `invoke {task}` does not exist"
                unknown = set(options) - known
                assert not unknown, f"{relative}: `invoke {task}` has no {sorted(unknown)}"
                for option in ("--env", "--from", "--to"):
                    if option in values:
                        assert values[option] in ALL_ENVIRONMENTS, f"{relative}: {command}"
    if ci == "none":
        assert called == {}
        return
    # Each CI system runs the whole flow: checks, the deploy of main, the promotions.
    assert {"lint", "test", "compile", "run", "build", "publish", "promote"} <= set(called)
    assert ("provision" in called) == (tool == "terraform")
    assert "--local" in called["run"] and "--wait" in called["run"]


def test_invoke_calls_are_read_from_commands() -> None:
    assert invoke_calls("uv run --no-sync invoke run --env dev --pipeline training --wait") == [
        ("run", ["--env", "--pipeline", "--wait"], {"--env": "dev", "--pipeline": "training"})
    ]
    assert invoke_calls("uv sync --frozen && uv run invoke lint && invoke test -x") == [
        ("lint", [], {}),
        ("test", ["-x"], {}),
    ]


# --- environments: main deploys to the first, tags promote to the others -----------------------


@pytest.mark.parametrize("envs", [("prod",), ("staging", "prod")], ids=str)
@pytest.mark.parametrize("ci", CI_SYSTEMS)
def test_flow_follows_the_environments(rendered, ci: str, envs: tuple[str, ...]) -> None:
    project = rendered(ci, HOSTS[ci][0], "terraform", envs)
    present = {str(path.relative_to(project)) for path in ci_files(project)}
    assert present == expected_files(ci, "terraform", list(envs))
    calls = [
        call
        for path in ci_files(project)
        for command in commands(path)
        for call in invoke_calls(command)
    ]
    assert {values.get("--env") for task, _, values in calls if task == "build"} == {envs[0]}
    promoted = {
        (values["--from"], values["--to"]) for task, _, values in calls if task == "promote"
    }
    assert promoted == {(envs[0], env) for env in envs[1:]}
    for path in ci_files(project):
        if path.name == "Jenkinsfile":
            check_jenkinsfile(path.read_text(), "terraform", list(envs))
        else:
            document = load_yaml(path.read_text())
            assert _schema_errors(_schema(SCHEMAS[ci]), document) == [], path.name


# --- the credential configuration of GitLab, Bitbucket and Jenkins jobs ------------------------

PROVIDER = "projects/123456789012/locations/global/workloadIdentityPools/ci/providers/gitlab"
ACCOUNT = "demo-deployer@acme-ml-dev.iam.gserviceaccount.com"


def _credentials_script(project: Path, tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    out = tmp_path / "build" / "ci" / "google-credentials.json"
    environ = {k: v for k, v in os.environ.items() if not k.startswith("GCP_")}
    return subprocess.run(
        [sys.executable, "ci/google_credentials.py", "--token-env", "CI_TOKEN", "--out", str(out)],
        cwd=project,
        env={**environ, **env},
        capture_output=True,
        text=True,
    )


def test_credential_configuration_is_what_google_auth_reads(rendered, tmp_path: Path) -> None:
    from google.auth import identity_pool

    project = rendered("gitlab-ci", "gitlab", "gcloud")
    done = _credentials_script(
        project,
        tmp_path,
        GCP_WORKLOAD_IDENTITY_PROVIDER=PROVIDER,
        GCP_SERVICE_ACCOUNT=ACCOUNT,
        CI_TOKEN="header.payload.signature",
    )
    assert done.returncode == 0, done.stderr
    out = tmp_path / "build" / "ci" / "google-credentials.json"
    token_file = out.with_name("google-credentials-id-token")
    assert token_file.read_text() == "header.payload.signature"
    assert (out.stat().st_mode & 0o777, token_file.stat().st_mode & 0o777) == (0o600, 0o600)
    credentials = identity_pool.Credentials.from_file(str(out))
    assert credentials.service_account_email == ACCOUNT
    assert json.loads(out.read_text())["audience"] == f"//iam.googleapis.com/{PROVIDER}"
    # google-auth reads the subject token from the file, as it will at each refresh.
    assert credentials.retrieve_subject_token(None) == "header.payload.signature"


@pytest.mark.parametrize(
    ("env", "fragment"),
    [
        (
            {"GCP_SERVICE_ACCOUNT": ACCOUNT, "CI_TOKEN": "t"},
            "GCP_WORKLOAD_IDENTITY_PROVIDER is not",
        ),
        (
            {"GCP_WORKLOAD_IDENTITY_PROVIDER": "projects/acme/pools/x", "CI_TOKEN": "t"},
            "GCP_WORKLOAD_IDENTITY_PROVIDER='projects/acme/pools/x' is not of the form",
        ),
        ({"GCP_WORKLOAD_IDENTITY_PROVIDER": PROVIDER, "CI_TOKEN": "t"}, "GCP_SERVICE_ACCOUNT is"),
        (
            {"GCP_WORKLOAD_IDENTITY_PROVIDER": PROVIDER, "GCP_SERVICE_ACCOUNT": ACCOUNT},
            "CI_TOKEN holds no ID token",
        ),
    ],
)
def test_credential_script_names_what_is_missing(
    rendered, tmp_path: Path, env: dict, fragment: str
) -> None:
    done = _credentials_script(rendered("jenkins", "github", "gcloud"), tmp_path, **env)
    assert done.returncode != 0
    assert fragment in done.stderr, done.stderr
    assert not (tmp_path / "build").exists(), "a failed run left files behind"


def test_credential_script_is_ruff_clean(rendered) -> None:
    project = rendered("bitbucket-pipelines", "bitbucket", "gcloud")
    for command in (["check", "--no-cache", "ci"], ["format", "--check", "--no-cache", "ci"]):
        result = subprocess.run(
            [sys.executable, "-m", "ruff", *command], cwd=project, capture_output=True, text=True
        )
        assert result.returncode == 0, result.stdout + result.stderr


# --- the generated README speaks of the chosen CI system only ------------------------------------

README_MARKERS = {
    "cloud-build": "Cloud Build",
    "github-actions": "GitHub Actions",
    "gitlab-ci": "GitLab CI/CD",
    "bitbucket-pipelines": "Bitbucket Pipelines",
    "jenkins": "Jenkins",
}


@pytest.mark.parametrize("ci", [*CI_SYSTEMS, "none"])
def test_readme_shows_the_chosen_ci_only(rendered, ci: str) -> None:
    project = rendered(ci, HOSTS.get(ci, [None])[0], "terraform")
    readme = (project / "README.md").read_text()
    if ci == "none":
        assert "## CI/CD" not in readme
        return
    section = readme[readme.index("## CI/CD") :]
    section = section[: section.index("\n## ", 1)]
    assert f"runs on {README_MARKERS[ci]}" in section
    assert "```mermaid" in section and "approval" in section
    for other, marker in README_MARKERS.items():
        if other != ci:
            assert f"runs on {marker}" not in section


# --- config/base.yaml's ci: section is held to the same rules ------------------------------------


@pytest.mark.parametrize(
    ("section", "field", "fragment"),
    [
        (
            {"system": "github-actions", "repository_host": "gitlab", "repository": "a/b"},
            "ci.repository_host",
            "github-actions runs only on github repositories",
        ),
        (
            {"system": "jenkins", "repository_host": "github", "repository": "https://x.com/a/b"},
            "ci.repository",
            "is a URL",
        ),
        ({"system": "jenkins", "repository": "a/b"}, "ci.repository", "set repository_host too"),
        (
            {"system": "gitlab-ci", "repository_host": "gitlab", "gitlab_url": "http://gl.io"},
            "ci.gitlab_url",
            "is not an https URL",
        ),
        ({"system": "travis"}, "ci.system", "cloud-build"),
    ],
)
def test_config_refuses_a_wrong_ci_section(
    rendered, tmp_path: Path, section: dict, field: str, fragment: str
) -> None:
    from vertexkit.project.config import ConfigError, load_config

    project = tmp_path / "project"
    shutil.copytree(rendered("jenkins", "github", "none"), project)
    base = project / "config" / "base.yaml"
    text = base.read_text()
    start = text.index("\nci:\n") + 1
    end = text.index("\n\n", start)
    base.write_text(text[:start] + "ci: " + json.dumps(section) + text[end:])
    with pytest.raises(ConfigError) as failure:
        load_config(project)
    message = str(failure.value)
    assert "base.yaml" in message and field in message and fragment in message, message
