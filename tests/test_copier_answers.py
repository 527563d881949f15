"""Copier questions: bad answers fail naming the question, and nothing is written."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

import vertexkit
from tests.template_support import ROOT, render
from vertexkit import naming

COPIER = yaml.safe_load((ROOT / "copier.yml").read_text())

BAD_ANSWERS = [
    ({"gcp_project_id": None}, "gcp_project_id", "required"),
    ({"gcp_project_id": "Acme_ML"}, "gcp_project_id", "not a valid project id"),
    ({"gcp_project_id": "abc"}, "gcp_project_id", "6 to 30 characters"),
    ({"gcp_project_id": "acme-ml-dev-"}, "gcp_project_id", "not ending with a hyphen"),
    ({"gcp_project_id": "1acme-ml"}, "gcp_project_id", "starting with a letter"),
    ({"gcp_region": "mars-north1"}, "gcp_region", "mars-north1"),
    ({"environments": []}, "environments", "at least one"),
    ({"environments": ["qa"]}, "environments", "qa"),
    ({"python_version": "3.9"}, "python_version", "3.9"),
    ({"naming_prefix": "a-prefix-far-too-long-for-gcp"}, "naming_prefix", "at most 20"),
    ({"naming_prefix": "Bad_Prefix"}, "naming_prefix", "lowercase letters"),
    ({"naming_prefix": "ends-"}, "naming_prefix", "not ending with a hyphen"),
    ({"project_name": "   "}, "project_name", "must not be empty"),
    ({"project_name": "42 Models"}, "project_slug", "starting with a letter"),
    ({"project_slug": "my--project"}, "project_slug", "single hyphens"),
    ({"package_name": "kfp"}, "package_name", "shadow"),
    ({"package_name": "9lives"}, "package_name", "Python identifier"),
    ({"author_email": "not-an-email"}, "author_email", "e-mail address"),
    ({"description": "two\nlines"}, "description", "single line"),
    ({"orchestrator": "argo"}, "orchestrator", "argo"),
    ({"orchestrator": "kfp", "kfp_host": "kfp.example.com"}, "kfp_host", "http(s) URL"),
    ({"orchestrator": "kfp", "kfp_host": "https://a:b@kfp.example.com"}, "kfp_host", "credentials"),
]


@pytest.mark.parametrize(("answers", "question", "fragment"), BAD_ANSWERS)
def test_bad_answer_names_the_question_and_writes_nothing(
    tmp_path: Path, answers: dict, question: str, fragment: str
) -> None:
    dest = tmp_path / "project"
    with pytest.raises(ValueError) as failure:
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
    computed = {"vertexkit_version", "vertexkit_location", "vertexkit_revision"}
    assert not computed & set(answers), "computed values must not be stored"


def test_region_choices_match_vertexkit() -> None:
    assert COPIER["gcp_region"]["choices"] == list(naming.VERTEX_PIPELINES_REGIONS)


def test_template_version_matches_the_package() -> None:
    assert COPIER["vertexkit_version"]["default"] == vertexkit.__version__


def test_every_question_has_help() -> None:
    questions = {k: v for k, v in COPIER.items() if not k.startswith("_")}
    asked = {k: v for k, v in questions.items() if v.get("when") is not False}
    assert {k for k, v in asked.items() if not v.get("help")} == set()


# The copier validators and vertexkit.naming must accept and reject the same values.
PROJECT_IDS = [
    "acme-ml-dev",
    "a12345",
    "abcde",
    "a" * 30,
    "a" * 31,
    "acme--ml",
    "acme-ML",
    "x-y-z-1",
]
PREFIXES = ["ml", "a", "ml-pipelines", "a" * 20, "a" * 21, "ml--x", "ml-", "9ml", "ml_x"]


@pytest.mark.parametrize("project_id", PROJECT_IDS)
def test_project_id_rule_agrees_with_vertexkit(tmp_path: Path, project_id: str) -> None:
    assert _copier_accepts(tmp_path, {"gcp_project_id": project_id}) == (
        naming.project_id_problem(project_id) is None
    )


@pytest.mark.parametrize("prefix", PREFIXES)
def test_prefix_rule_agrees_with_vertexkit(tmp_path: Path, prefix: str) -> None:
    assert _copier_accepts(tmp_path, {"naming_prefix": prefix}) == (
        naming.prefix_problem(prefix) is None
    )


def _copier_accepts(tmp_path: Path, answers: dict) -> bool:
    try:
        render(tmp_path / "p", answers, pretend=True)
    except ValueError:
        return False
    return True


def test_longest_names_fit_gcp_limits() -> None:
    """Why no bucket-length check exists: the longest valid inputs already fit."""
    longest_bucket = naming.PROJECT_ID_MAX + 1 + naming.MAX_PREFIX_LENGTH
    assert longest_bucket + max(map(len, naming.BUCKET_SUFFIXES)) <= naming.BUCKET_MAX
    assert naming.project_id_problem("a" * naming.PROJECT_ID_MAX) is None
    assert naming.project_id_problem("a" * (naming.PROJECT_ID_MAX + 1)) is not None
    assert naming.prefix_problem("a" * naming.MAX_PREFIX_LENGTH) is None
