"""The documentation site builds without warnings (links, nav and markup checked by mkdocs),
and its reference pages say what the sources say: copier.yml, the invoke collection, the
config models. The pages are generated at build time (docs/hooks.py); these tests read the
built HTML and compare it with the sources, read here independently of the hook."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import types
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import pytest
import yaml
from pydantic import BaseModel

from tests.template_support import ROOT


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("mkdocs", reason="the docs extra is not installed (pip install -e .[docs])")
    folder = tmp_path_factory.mktemp("site")
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(folder)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return folder


def test_docs_build_strictly(site: Path) -> None:
    assert (site / "deploy" / "index.html").is_file()
    for page in ("questions", "tasks", "configuration"):
        assert (site / "reference" / page / "index.html").is_file()
    # Generated at build time, never committed.
    assert not (ROOT / "docs" / "reference").exists()


def norm(value: Any) -> str:
    return " ".join(str(value).split())


class Section:
    def __init__(self) -> None:
        self.text: list[str] = []
        self.rows: list[list[str]] = []
        self.terms: dict[str, str] = {}


class Page(HTMLParser):
    """The article of a built page, cut into sections at each h2 (keyed by its id)."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.sections: dict[str, Section] = {"": Section()}
        self.current = self.sections[""]
        self.in_article = False
        self.cell: list[str] | None = None
        self.term: list[str] | None = None
        self.definition: list[str] | None = None
        self.last_term = ""
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "article":
            self.in_article = True
        if not self.in_article:
            return
        if tag == "h2":
            self.current = self.sections.setdefault(dict(attrs).get("id") or "", Section())
        elif tag == "tr":
            self.current.rows.append([])
        elif tag in ("td", "th"):
            self.cell = []
        elif tag == "dt":
            self.term = []
        elif tag == "dd":
            self.definition = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "article":
            self.in_article = False
        elif tag in ("td", "th") and self.cell is not None:
            self.current.rows[-1].append(norm("".join(self.cell)))
            self.cell = None
        elif tag == "dt" and self.term is not None:
            self.last_term = norm("".join(self.term))
            self.term = None
        elif tag == "dd" and self.definition is not None:
            self.current.terms[self.last_term] = norm("".join(self.definition))
            self.definition = None

    def handle_data(self, data: str) -> None:
        if not self.in_article:
            return
        self.current.text.append(data)
        for part in (self.cell, self.term, self.definition):
            if part is not None:
                part.append(data)

    def section(self, key: str) -> Section:
        assert key in self.sections, f"no section #{key} (found: {sorted(self.sections)})"
        return self.sections[key]


def read(site: Path, page: str) -> Page:
    return Page((site / "reference" / page / "index.html").read_text(encoding="utf-8"))


def test_every_copier_question_is_documented_as_copier_yml_says(site: Path) -> None:
    page = read(site, "questions")
    data = yaml.safe_load((ROOT / "copier.yml").read_text(encoding="utf-8"))
    names = [key for key in data if not key.startswith("_")]
    assert {"project_name", "gcp_region", "environments", "kfp_host"} <= set(names)
    assert set(page.sections) - {""} == set(names)
    for name in names:
        question, section = data[name], page.section(name)
        text = norm("".join(section.text))
        terms = section.terms
        assert terms["Type"] == question.get("type", "yaml"), name
        if question.get("help"):
            assert norm(question["help"]) in text, name
        default = question.get("default")
        if default is None:
            assert terms["Default"] == "none: an answer is required", name
        elif default == "":
            assert terms["Default"] == "empty (the answer may be left empty)", name
        elif isinstance(default, str) and "\n" in default.strip():
            assert all(norm(line) in text for line in default.splitlines()), name
        else:
            assert terms["Default"] == (
                default if isinstance(default, str) else json.dumps(default)
            )
        given = question.get("choices")
        if given:
            expected = (
                [f"{value} ({label})" for label, value in given.items()]
                if isinstance(given, dict)
                else [str(value) for value in given]
            )
            # Labels may hold ", " themselves: the listing is the choices joined, in order.
            assert terms["Choices"] == ", ".join(expected), name
        else:
            assert "Choices" not in terms, name
        when = question.get("when", True)
        expected = {True: "always", False: "never: computed from the other answers"}
        assert terms["Asked"] == expected.get(when, f"when {norm(when)}"), name
        if question.get("validator"):
            assert norm(question["validator"]) in text, name
        else:
            assert terms["Validation"] == "none", name


def task_arguments(task: Any) -> list[Any]:
    """``get_arguments`` of a copy: invoke's consumes the task's help texts."""
    clone = copy.copy(task)
    clone.help = dict(task.help)
    return clone.get_arguments()


def test_every_task_and_option_is_documented_as_the_collection_says(site: Path) -> None:
    from vertexkit.tasks import namespace

    page = read(site, "tasks")
    collection = namespace()
    assert set(page.sections) - {""} == set(collection.task_names)
    for name in collection.task_names:
        task = collection[name]
        section = page.section(name)
        text = norm("".join(section.text))
        assert norm((task.__doc__ or "").strip().splitlines()[0]).replace("``", "") in text
        rows = [row for row in section.rows if row != ["Flags", "Default", "Help"]]
        arguments = task_arguments(task)
        assert len(rows) == len(arguments), (name, rows)
        documented = {frozenset(row[0].split(", ")): row for row in rows}
        for argument in arguments:
            flags = frozenset(f"-{n}" if len(n) == 1 else f"--{n}" for n in argument.names)
            assert flags in documented, (name, sorted(flags), list(documented))
            _, default, help_text = documented[flags]
            unset = argument.default is None or argument.default == []
            assert default == ("" if unset else json.dumps(argument.default)), (name, flags)
            assert help_text == norm(argument.help or ""), (name, flags)


def _models(annotation: Any) -> list[type[BaseModel]]:
    """Models anywhere inside an annotation (Optional, Annotated, dict values...)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [model for arg in get_args(annotation) for model in _models(arg)]


def _fields(model: type[BaseModel], prefix: str = "") -> dict[str, Any]:
    found = {}
    for name, field in model.model_fields.items():
        found[prefix + name] = field
        for nested in _models(field.annotation):
            keyed = get_origin(field.annotation) is dict
            found.update(
                _fields(nested, f"{prefix}{name}.<name>." if keyed else f"{prefix}{name}.")
            )
    return found


def _literals(annotation: Any) -> list[Any]:
    if get_origin(annotation) is Literal:
        return list(get_args(annotation))
    if get_origin(annotation) in (Union, types.UnionType):
        return [value for arg in get_args(annotation) for value in _literals(arg)]
    return []


def test_every_config_field_is_documented_as_the_models_say(site: Path) -> None:
    from vertexkit.project.config import ProjectConfig

    page = read(site, "configuration")
    rows = {
        row[0]: row
        for section in page.sections.values()
        for row in section.rows
        if row and row[0] != "Setting"
    }
    fields = _fields(ProjectConfig)
    assert {"gcp.region", "pipelines.<name>.enable_caching", "kfp.host"} <= set(fields)
    assert set(rows) == set(fields)
    for path, field in fields.items():
        _, type_text, default, description = rows[path]
        assert field.description, f"{path}: the config field has no description"
        assert description == norm(field.description), path
        if field.is_required():
            assert default == "required", path
        else:
            value = field.default_factory() if field.default_factory else field.default
            if isinstance(value, BaseModel):
                value = value.model_dump(mode="json")
            assert default == json.dumps(value), path
        assert type_text, path
        for literal in _literals(field.annotation):
            assert str(literal) in type_text, path
        for nested in _models(field.annotation):
            assert nested.__name__ in type_text, path
