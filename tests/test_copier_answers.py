"""Copier questions: bad answers fail naming the question, and nothing is written."""

from __future__ import annotations

import importlib.metadata
import keyword
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from jinja2 import TemplateError
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

import vertexkit
from tests.template_support import ROOT, render
from vertexkit.project import naming
from vertexkit.project import schedule as schedule_rules
from vertexkit.project.config import environments, load_config

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

COPIER = yaml.safe_load((ROOT / "copier.yml").read_text())

BAD_ANSWERS = [
    ({"gcp_project_id": None}, "gcp_project_id", "required"),
    ({"gcp_project_id": "Acme_ML"}, "gcp_project_id", "not a valid project id"),
    ({"gcp_project_id": "abc"}, "gcp_project_id", "6 to 30 characters"),
    ({"gcp_project_id": "acme-ml-dev-"}, "gcp_project_id", "not ending with a hyphen"),
    ({"gcp_project_id": "1acme-ml"}, "gcp_project_id", "starting with a letter"),
    ({"gcp_project_id": "my-google-ml"}, "gcp_project_id", 'contains "google"'),
    ({"gcp_project_id": "goog-ml-dev"}, "gcp_project_id", 'bucket "goog-ml-dev-<naming'),
    ({"gcp_region": "mars-north1"}, "gcp_region", "mars-north1"),
    ({"environments": []}, "environments", "at least one"),
    ({"environments": ["qa"]}, "environments", "qa"),
    ({"environments": "dev"}, "environments", "--data 'environments=[dev]'"),
    ({"environments": "dev, prod"}, "environments", "is not a list"),
    ({"python_version": "3.9"}, "python_version", "3.9"),
    ({"naming_prefix": "a-prefix-far-too-long-for-gcp"}, "naming_prefix", "at most 20"),
    ({"naming_prefix": "Bad_Prefix"}, "naming_prefix", "lowercase letters"),
    ({"naming_prefix": "ends-"}, "naming_prefix", "not ending with a hyphen"),
    ({"naming_prefix": "on"}, "naming_prefix", "reads as a boolean in YAML; choose a prefix"),
    ({"naming_prefix": "y"}, "naming_prefix", "reads as a boolean in YAML; choose a prefix"),
    ({"naming_prefix": "null"}, "naming_prefix", "reads as null in YAML; choose a prefix"),
    ({"naming_prefix": "ml-google"}, "naming_prefix", "Cloud Storage refuses; choose another"),
    ({"project_name": "   "}, "project_name", "must not be empty"),
    ({"project_name": "42 Models"}, "project_slug", "starting with a letter"),
    ({"project_slug": "my--project"}, "project_slug", "single hyphens"),
    ({"project_slug": "null"}, "project_slug", "reads as null in YAML; choose a name"),
    ({"project_slug": "yes"}, "project_slug", "reads as a boolean in YAML; choose a name"),
    ({"project_slug": "true"}, "project_slug", 'e.g. "true-ml"'),
    ({"project_name": "On"}, "project_slug", '"on" reads as a boolean'),
    ({"package_name": "kfp"}, "package_name", "import name of kfp"),
    ({"package_name": "9lives"}, "package_name", "Python identifier"),
    ({"package_name": "import"}, "package_name", "Python keyword"),
    (
        {"package_name": "class"},
        "package_name",
        "keyword: the package could not be imported; choose",
    ),
    ({"package_name": "os"}, "package_name", "standard-library module: the package would shadow"),
    ({"package_name": "json"}, "package_name", 'choose another name, e.g. "json_lib"'),
    ({"package_name": "typing"}, "package_name", "standard-library module"),
    ({"package_name": "yaml"}, "package_name", "import name of PyYAML, which the project installs"),
    ({"package_name": "joblib"}, "package_name", "import name of joblib"),
    ({"package_name": "sklearn"}, "package_name", "import name of scikit-learn"),
    ({"package_name": "tests"}, "package_name", "would shadow a module the project uses"),
    ({"project_name": "JSON"}, "package_name", '"json" is a standard-library module'),
    ({"author_email": "not-an-email"}, "author_email", "e-mail address"),
    ({"description": "two\nlines"}, "description", "single line"),
    ({"orchestrator": "argo"}, "orchestrator", "argo"),
    ({"provisioning": "pulumi"}, "provisioning", "pulumi"),
    ({"submission_service": "app-engine"}, "submission_service", "app-engine"),
    ({"submission_service": "cloud-functions-1st-gen"}, "submission_service", "not in"),
    ({"orchestrator": "kfp", "kfp_host": "kfp.example.com"}, "kfp_host", "http(s) URL"),
    ({"orchestrator": "kfp", "kfp_host": "https://a:b@kfp.example.com"}, "kfp_host", "credentials"),
    ({"ci": "travis"}, "ci", "travis"),
    ({"ci": "cloud-build", "source_repo_host": "csr"}, "source_repo_host", "csr"),
    # Combinations that cannot work name both questions and what to pick instead.
    (
        {"ci": "github-actions", "source_repo_host": "gitlab"},
        "source_repo_host",
        'ci "github-actions" runs only on github repositories, not on gitlab: pick '
        'source_repo_host "github", or keep "gitlab" and pick ci "gitlab-ci", "cloud-build" or '
        '"jenkins"',
    ),
    (
        {"ci": "github-actions", "source_repo_host": "bitbucket"},
        "source_repo_host",
        'pick source_repo_host "github", or keep "bitbucket" and pick ci "bitbucket-pipelines"',
    ),
    (
        {"ci": "gitlab-ci", "source_repo_host": "github"},
        "source_repo_host",
        'ci "gitlab-ci" runs only on gitlab repositories, not on github: pick source_repo_host '
        '"gitlab", or keep "github" and pick ci "github-actions"',
    ),
    (
        {"ci": "gitlab-ci", "source_repo_host": "bitbucket"},
        "source_repo_host",
        'pick source_repo_host "gitlab"',
    ),
    (
        {"ci": "bitbucket-pipelines", "source_repo_host": "github"},
        "source_repo_host",
        'ci "bitbucket-pipelines" runs only on bitbucket repositories, not on github: pick '
        'source_repo_host "bitbucket"',
    ),
    (
        {"ci": "bitbucket-pipelines", "source_repo_host": "gitlab"},
        "source_repo_host",
        'or keep "gitlab" and pick ci "gitlab-ci", "cloud-build" or "jenkins"',
    ),
    ({"source_repo": "https://github.com/acme/ml"}, "source_repo", "is a URL: give the path only"),
    ({"source_repo": "acme"}, "source_repo", "is not a GitHub repository path: owner/name"),
    ({"source_repo": "acme/.."}, "source_repo", 'no part may be "." or ".."'),
    ({"source_repo": "acme/ml.git"}, "source_repo", 'may not end in ".git"'),
    (
        {"ci": "bitbucket-pipelines", "source_repo": "Acme/ml"},
        "source_repo",
        "is not a Bitbucket repository path: workspace/name in lowercase",
    ),
    (
        {"ci": "gitlab-ci", "source_repo": "acme"},
        "source_repo",
        "is not a GitLab project path: group[/subgroup...]/name",
    ),
    ({"ci": "gitlab-ci", "source_repo": "acme/m__l"}, "source_repo", "two '.', '_' or '-' in a"),
    ({"ci": "gitlab-ci", "gitlab_host": "http://gitlab.example.com"}, "gitlab_host", "https URL"),
    (
        {"ci": "gitlab-ci", "gitlab_host": "https://gitlab.example.com/group"},
        "gitlab_host",
        "without path, query or fragment",
    ),
    (
        {"ci": "gitlab-ci", "gitlab_host": "https://me:token@gitlab.example.com"},
        "gitlab_host",
        "must not hold credentials",
    ),
    ({"submission_service": "lambda"}, "submission_service", "lambda"),
    ({"schedule": "cron"}, "schedule", "cron"),
    (
        {"schedule": "cloud-scheduler", "submission_service": "none"},
        "schedule",
        "submission_service is none: choose submission_service cloud-run or cloud-functions, "
        "or schedule vertex or none",
    ),
    (
        {"schedule": "vertex", "orchestrator": "kfp"},
        "schedule",
        "orchestrator is kfp: choose schedule cloud-scheduler (with a submission_service) or "
        "none, or orchestrator vertex",
    ),
    ({"schedule": "vertex", "schedule_cron": "0 6 * *"}, "schedule_cron", "has 4 fields"),
    (
        {"schedule": "vertex", "schedule_cron": "0 6 * * MONDAY"},
        "schedule_cron",
        'day of week "MONDAY": "MONDAY" is not a number 0-7 or a name SUN-SAT',
    ),
    (
        {"schedule": "cloud-scheduler", "schedule_timezone": "Paris"},
        "schedule_timezone",
        '"Paris" is not an IANA time zone name',
    ),
]


@pytest.mark.parametrize(("answers", "question", "fragment"), BAD_ANSWERS)
def test_bad_answer_names_the_question_and_writes_nothing(
    tmp_path: Path, answers: dict, question: str, fragment: str
) -> None:
    dest = tmp_path / "project"
    # A validator fails with ValueError; the environments check, which has to run before copier
    # parses the answer, with a Jinja error of the same form.
    with pytest.raises((ValueError, TemplateError)) as failure:
        render(dest, answers)
    message = str(failure.value)
    assert question in message, message
    assert fragment in message, message
    assert not dest.exists() or not any(dest.iterdir()), "a failed render left files behind"


def test_defaults_need_only_a_project_id(tmp_path: Path) -> None:
    dest = render(tmp_path / "project")
    answers = yaml.safe_load((dest / ".copier-answers.yml").read_text())
    assert answers["gcp_project_id"] == "acme-ml-dev"
    assert answers["environments"] == ["dev", "prod"]
    assert answers["naming_prefix"] == "ml-pipelines"
    assert (answers["submission_service"], answers["schedule"]) == ("cloud-run", "none")
    assert "schedule_cron" not in answers  # asked only with a schedule
    config = load_config(dest)
    assert config.scheduler == "none" and config.pipeline("training").schedule is None
    readme = (dest / "README.md").read_text()
    assert "invoke schedule" not in readme and "## Schedules" not in readme
    computed = {"vertexkit_version", "vertexkit_location", "vertexkit_revision"}
    assert not computed & set(answers), "computed values must not be stored"


def test_submission_service_choices_match_the_config_model(tmp_path: Path) -> None:
    from vertexkit.project.config import SERVICE_KINDS

    question = COPIER["submission_service"]
    assert sorted(question["choices"].values()) == sorted(SERVICE_KINDS)
    assert question["default"] == "cloud-run"
    # Asked right after python_version (the schedule questions follow it).
    order = [k for k in COPIER if not k.startswith("_")]
    assert order[order.index("python_version") + 1] == "submission_service"
    for kind in ("cloud-functions", "none"):
        dest = render(tmp_path / kind, {"submission_service": kind})
        assert load_config(dest, "dev").service.kind == kind


def test_region_choices_match_vertexkit() -> None:
    assert COPIER["gcp_region"]["choices"] == list(naming.VERTEX_PIPELINES_REGIONS)


def test_template_version_matches_the_package() -> None:
    assert COPIER["vertexkit_version"]["default"] == vertexkit.__version__


def test_every_question_has_help() -> None:
    questions = {k: v for k, v in COPIER.items() if not k.startswith("_")}
    asked = {k: v for k, v in questions.items() if v.get("when") is not False}
    assert {k for k, v in asked.items() if not v.get("help")} == set()


# The copier validators and vertexkit.project.naming must accept and reject the same values.
PROJECT_IDS = [
    "acme-ml-dev",
    "a12345",
    "abcde",
    "a" * 30,
    "a" * 31,
    "acme--ml",
    "acme-ML",
    "x-y-z-1",
    "my-google-ml",
    "google",
    "goog-ml-dev",
    "googly-ml",
    "acme-goog",
    "acme-g00gle",
]
# Every word PyYAML's YAML 1.1 resolver reads as a boolean or null that the rules' characters
# allow, the one-letter booleans of YAML 1.1, and near misses that are strings.
YAML_WORDS = ["yes", "no", "true", "false", "on", "off", "null", "y", "n"]
NEAR_MISSES = ["yess", "nully", "onboard", "offline", "truex", "ny"]
PREFIXES = [
    *["ml", "a", "ml-pipelines", "a" * 20, "a" * 21, "ml--x", "ml-", "9ml", "ml_x"],
    *YAML_WORDS,
    *NEAR_MISSES,
    *["google", "ml-google", "googleml", "goog", "g00gle"],
]
SLUGS = [*YAML_WORDS, *NEAR_MISSES, "ml-pipelines", "a" * 40, "a" * 41, "ab", "a-", "ml--x"]
# One name of each kind in reserved_names.yaml, the suggested replacements, and free names.
PACKAGES = [
    *["import", "class", "os", "json", "typing", "test", "yaml", "joblib", "sklearn", "google"],
    *["kfp", "py", "tests", "vertexkit", "json_lib", "class_lib", "demo_pkg", "match", "type"],
]


@pytest.mark.parametrize("project_id", PROJECT_IDS)
def test_project_id_rule_agrees_with_vertexkit(tmp_path: Path, project_id: str) -> None:
    bucket = f"{project_id}-ml-pipelines-pipelines"  # with the default naming prefix
    assert _copier_accepts(tmp_path, {"gcp_project_id": project_id}) == (
        naming.project_id_problem(project_id) is None and naming.bucket_name_problem(bucket) is None
    )


@pytest.mark.parametrize("prefix", PREFIXES)
def test_prefix_rule_agrees_with_vertexkit(tmp_path: Path, prefix: str) -> None:
    bucket = f"acme-ml-dev-{prefix}-pipelines"
    assert _copier_accepts(tmp_path, {"naming_prefix": prefix}) == (
        naming.prefix_problem(prefix) is None and naming.bucket_name_problem(bucket) is None
    )


@pytest.mark.parametrize("slug", SLUGS)
def test_slug_rule_agrees_with_vertexkit(tmp_path: Path, slug: str) -> None:
    answers = {"project_slug": slug, "package_name": "demo_pkg", "naming_prefix": "demo"}
    assert _copier_accepts(tmp_path, answers) == (naming.project_slug_problem(slug) is None)


@pytest.mark.parametrize("package", PACKAGES)
def test_package_rule_agrees_with_vertexkit(tmp_path: Path, package: str) -> None:
    assert _copier_accepts(tmp_path, {"package_name": package}) == (
        naming.package_name_problem(package) is None
    )


# The repository paths of source_repo and vertexkit.project.naming.repository_problem agree.
REPOSITORIES = [
    *[("github", p) for p in ["Acme-Corp/ML.Pipelines_2", "a" * 39 + "/x", "a" * 40 + "/x"]],
    *[("github", p) for p in ["acme-/ml", "ac--me/ml", "acme/m l", "acme/a/b"]],
    *[("bitbucket", p) for p in ["acme_team/ml.x", "acme/ML"]],
    *[("gitlab", p) for p in ["acme/team/sub/ml", "acme/ml-", "acme//ml", "acme/ml.atom"]],
]


@pytest.mark.parametrize(("host", "path"), REPOSITORIES, ids=str)
def test_repository_rule_agrees_with_vertexkit(tmp_path: Path, host: str, path: str) -> None:
    ci = {"github": "github-actions", "gitlab": "gitlab-ci", "bitbucket": "bitbucket-pipelines"}
    answers = {"ci": ci[host], "source_repo_host": host, "source_repo": path}
    assert _copier_accepts(tmp_path, answers) == (naming.repository_problem(host, path) is None)


@pytest.mark.parametrize(
    "url",
    [
        *["https://gitlab.example.com:8443", "https://git.example.com/", "gitlab.com"],
        *["https://a@gitlab.com", "https://gitlab.com/?a=1"],
    ],
)
def test_gitlab_host_rule_agrees_with_vertexkit(tmp_path: Path, url: str) -> None:
    answers = {"ci": "gitlab-ci", "gitlab_host": url}
    assert _copier_accepts(tmp_path, answers) == (naming.gitlab_url_problem(url) is None)


@pytest.mark.parametrize(
    ("ci", "host"),
    [
        *[("cloud-build", "gitlab"), ("jenkins", "bitbucket"), ("github-actions", "github")],
        ("bitbucket-pipelines", None),
    ],
)
def test_ci_and_repository_reach_the_config(tmp_path: Path, ci: str, host: str | None) -> None:
    path = "acme/ml/demo" if host == "gitlab" else "acme/demo"
    answers = {"ci": ci, "source_repo_host": host, "source_repo": path}
    project = render(tmp_path / "p", answers, skip_tasks=True)
    config = load_config(project, "dev").ci
    expected_host = host or "bitbucket"  # the default follows the CI system
    assert (config.system, config.repository_host, config.repository) == (ci, expected_host, path)
    stored = yaml.safe_load((project / ".copier-answers.yml").read_text())
    assert (stored["ci"], stored["source_repo_host"], stored["source_repo"]) == (
        ci,
        expected_host,
        path,
    )


def test_repository_may_be_left_for_later(tmp_path: Path) -> None:
    """No made-up default: without an answer ci.repository is null, said so in base.yaml."""
    project = render(tmp_path / "p", {"ci": "github-actions"}, skip_tasks=True)
    config = load_config(project, "dev").ci
    assert (config.system, config.repository_host, config.repository) == (
        "github-actions",
        "github",
        None,
    )
    assert (
        "# Set before `invoke provision`: owner/name."
        in (project / "config" / "base.yaml").read_text()
    )


def test_no_ci_asks_no_repository(tmp_path: Path) -> None:
    project = render(tmp_path / "p", {"ci": "none"}, skip_tasks=True)
    ci = load_config(project).ci.model_dump()
    assert (ci.pop("system"), ci.pop("gitlab_url")) == ("none", "https://gitlab.com")
    assert set(ci.values()) == {None}, "no repository, no provisioning setting"
    stored = yaml.safe_load((project / ".copier-answers.yml").read_text())
    assert stored["ci"] == "none" and "source_repo" not in stored


# The schedule_cron and schedule_timezone rules and vertexkit.project.schedule agree.
# One value per branch of the rule.
CRONS = [
    *["0 6 * * MON", "*/15 * * * *", "0 0 1-31/2 jan-DEC 0,7", "60 * * * *", "* * * *"],
    *["5/10 * * * *", "0 0 ? * *", "0 0 * * 5-1", "0 0 1,,2 * *", "*/0 * * * *", "1-2-3 * * * *"],
]
TIME_ZONES = ["UTC", "America/Argentina/Buenos_Aires", "Paris", "EST"]


@pytest.mark.parametrize("cron", CRONS)
def test_cron_rule_agrees_with_vertexkit(tmp_path: Path, cron: str) -> None:
    answers = {"schedule": "vertex", "schedule_cron": cron}
    assert _copier_accepts(tmp_path, answers) == (schedule_rules.cron_problem(cron) is None)


@pytest.mark.parametrize("zone", TIME_ZONES)
def test_time_zone_rule_agrees_with_vertexkit(tmp_path: Path, zone: str) -> None:
    answers = {"schedule": "vertex", "schedule_timezone": zone}
    assert _copier_accepts(tmp_path, answers) == (schedule_rules.timezone_problem(zone) is None)


def test_schedule_answers_become_the_training_schedule(tmp_path: Path) -> None:
    answers = {
        "schedule": "cloud-scheduler",
        "schedule_cron": "30 5 * * MON-FRI",
        "schedule_timezone": "Europe/Paris",
        "submission_service": "cloud-functions",
    }
    project = render(tmp_path / "p", answers)
    config = load_config(project, "dev")
    assert (config.scheduler, config.service.kind) == ("cloud-scheduler", "cloud-functions")
    schedule = config.pipeline("training").schedule
    assert schedule is not None
    assert (schedule.cron, schedule.timezone) == ("30 5 * * MON-FRI", "Europe/Paris")
    readme = (project / "README.md").read_text()
    assert "`30 5 * * MON-FRI` (Europe/Paris)" in readme and "Cloud Scheduler" in readme
    answers = yaml.safe_load((project / ".copier-answers.yml").read_text())
    assert answers["schedule_cron"] == "30 5 * * MON-FRI"


def _copier_accepts(tmp_path: Path, answers: dict) -> bool:
    try:
        render(tmp_path / "p", answers, pretend=True)
    except ValueError:
        return False
    return True


@pytest.mark.parametrize(
    ("value", "reads_as"),
    [
        *[("yes", "a boolean"), ("Off", "a boolean"), ("TRUE", "a boolean"), ("y", "a boolean")],
        *[("null", "null"), ("~", "null"), ("", "null")],
        *[("1.5", "a number"), ("0x1f", "a number"), ("1_000", "a number"), ("-.inf", "a number")],
        *[("2024-01-01", "a date"), ("1e3", None), ("ml-pipelines", None), ("nully", None)],
    ],
)
def test_yaml_reads_as_agrees_with_pyyaml(value: str, reads_as: str | None) -> None:
    assert naming.yaml_reads_as(value) == reads_as
    if value != "y":  # a YAML 1.1 boolean that PyYAML reads as a string
        assert isinstance(yaml.safe_load(value), str) == (reads_as is None)


def test_longest_names_fit_gcp_limits() -> None:
    """Why no bucket-length check exists: the longest valid inputs already fit."""
    longest_bucket = naming.PROJECT_ID_MAX + 1 + naming.MAX_PREFIX_LENGTH
    assert longest_bucket + max(map(len, naming.BUCKET_SUFFIXES)) <= naming.BUCKET_MAX
    assert naming.project_id_problem("a" * naming.PROJECT_ID_MAX) is None
    assert naming.project_id_problem("a" * (naming.PROJECT_ID_MAX + 1)) is not None
    assert naming.prefix_problem("a" * naming.MAX_PREFIX_LENGTH) is None


def test_environments_as_plain_text_on_the_command_line(tmp_path: Path) -> None:
    """`--data environments=dev` used to end in copier's bare "TypeError: Not a YAML list"."""
    command = [sys.executable, "-m", "copier", "copy", "--defaults", "--quiet"]
    command += ["--vcs-ref", "HEAD"] if (ROOT / ".git").exists() else []
    command += ["--data", "gcp_project_id=acme-ml-dev"]
    bad = subprocess.run(
        [*command, "--data", "environments=dev", str(ROOT), str(tmp_path / "bad")],
        capture_output=True,
        text=True,
    )
    assert bad.returncode != 0
    last_line = bad.stderr.strip().splitlines()[-1]
    assert "Validation error for question 'environments'" in last_line, bad.stderr
    assert '"dev" is not a list' in last_line, bad.stderr
    assert "--data 'environments=[dev]'" in last_line, bad.stderr
    assert "TypeError" not in bad.stderr
    assert not (tmp_path / "bad").exists() or not any((tmp_path / "bad").iterdir())

    good = subprocess.run(
        [*command, "--data", "environments=[dev, staging]", str(ROOT), str(tmp_path / "good")],
        capture_output=True,
        text=True,
    )
    assert good.returncode == 0, good.stderr
    assert environments(tmp_path / "good") == ["dev", "staging"]


# Values YAML 1.1 reads as something other than a string. project_name accepts them (it is prose,
# and the generated YAML quotes it); the slug, package name and prefix are given explicitly.
YAML_SPECIAL_NAMES = ["Yes", "null", "on", "~", "1e3", "0x10", "2024-01-01", "a: b", "- x", "# x"]


@pytest.mark.parametrize("name", YAML_SPECIAL_NAMES)
def test_yaml_special_project_name_renders_a_working_project(tmp_path: Path, name: str) -> None:
    answers = {
        "project_name": name,
        "project_slug": "demo-project",
        "package_name": "demo_pkg",
        "environments": ["dev", "staging", "prod"],
    }
    project = render(tmp_path / "project", answers)
    assert (project / "README.md").read_text().startswith(f"# {name}\n")
    assert yaml.safe_load((project / ".copier-answers.yml").read_text())["project_name"] == name
    for path in sorted(project.rglob("*.y*ml")):
        yaml.safe_load(path.read_text())
    for env in [None, "dev", "staging", "prod"]:
        config = load_config(project, env)
        assert (config.name, config.naming_prefix) == ("demo-project", "demo-project")
    imported = subprocess.run(
        [sys.executable, "-c", "import demo_pkg, demo_pkg.data, demo_pkg.components"],
        cwd=project / "components",
        capture_output=True,
        text=True,
    )
    assert imported.returncode == 0, imported.stderr


# --- reserved_names.yaml: the package names copier.yml and vertexkit.project.naming refuse ----

RESERVED = yaml.safe_load((ROOT / "helpers" / "vertexkit" / "reserved_names.yaml").read_text())
PACKAGE_RE = re.compile(r"[a-z][a-z0-9_]*")


def test_reserved_names_file_is_the_one_vertexkit_reads() -> None:
    assert naming.reserved_names() == RESERVED


def test_reserved_names_are_refused_and_the_suggestion_is_not() -> None:
    names = [*RESERVED["keywords"], *RESERVED["stdlib"], *RESERVED["project"]]
    names += list(RESERVED["dependencies"])
    for name in names:
        assert isinstance(name, str) and PACKAGE_RE.fullmatch(name), name
        problem = naming.package_name_problem(name)
        assert problem is not None, name
        suggestion = re.search(r"e\.g\. '(\w+)'", problem)
        assert suggestion and naming.package_name_problem(suggestion[1]) is None, problem


def test_reserved_names_cover_keywords_and_the_standard_library() -> None:
    keywords = {k for k in keyword.kwlist if PACKAGE_RE.fullmatch(k)}
    assert keywords - set(RESERVED["keywords"]) == set()
    stdlib = {m for m in sys.stdlib_module_names if PACKAGE_RE.fullmatch(m)}
    missing = sorted(stdlib - set(RESERVED["stdlib"]))
    assert missing == [], f"add to stdlib in helpers/vertexkit/reserved_names.yaml: {missing}"


def _installed_closure(requirements: list[str]) -> tuple[dict[str, set[str]], set[str]]:
    """Import names of each installed distribution the requirements pull in, and those missing."""
    top_level: dict[str, set[str]] = {}
    for module, dists in importlib.metadata.packages_distributions().items():
        for dist in dists:
            top_level.setdefault(canonicalize_name(dist), set()).add(module)
    found: dict[str, set[str]] = {}
    missing: set[str] = set()
    seen: set[tuple[str, tuple[str, ...]]] = set()
    todo = [Requirement(r) for r in requirements]
    while todo:
        requirement = todo.pop()
        name = canonicalize_name(requirement.name)
        if (name, tuple(sorted(requirement.extras))) in seen:
            continue
        seen.add((name, tuple(sorted(requirement.extras))))
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            missing.add(name)
            continue
        found[name] = top_level.get(name, set())
        extras = [{"extra": e} for e in [*requirement.extras, ""]]
        for line in dist.requires or []:
            needed = Requirement(line)
            if needed.marker is None or any(needed.marker.evaluate(e) for e in extras):
                todo.append(needed)
    return found, missing


def test_reserved_names_cover_what_a_generated_project_installs(tmp_path: Path) -> None:
    """Import names of the project's dependencies, of theirs and of its dev tools.

    Distributions not installed here cannot be followed further: they must be listed by name.
    """
    pyproject = tomllib.loads((render(tmp_path / "project") / "pyproject.toml").read_text())
    declared = pyproject["project"]["dependencies"]
    declared += pyproject["project"]["optional-dependencies"]["dev"]
    found, missing = _installed_closure(declared)
    assert {"kfp", "pandas", "pyyaml", "pydantic", "invoke", "requests", "pytest"} <= set(found)
    reserved = set(RESERVED["dependencies"]) | set(RESERVED["project"])
    unlisted = {
        f"{module} ({dist})"
        for dist, modules in found.items()
        for module in modules
        if PACKAGE_RE.fullmatch(module) and module not in reserved
    }
    assert sorted(unlisted) == [], "add to dependencies in helpers/vertexkit/reserved_names.yaml"
    listed = {canonicalize_name(d) for dists in RESERVED["dependencies"].values() for d in dists}
    assert sorted(missing - listed) == [], "not installed here and not in reserved_names.yaml"
