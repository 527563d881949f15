"""mkdocs hook: the reference pages, generated from the source at every build.

``reference/questions.md`` from copier.yml, ``reference/tasks.md`` from the invoke collection
projects import (``vertexkit.tasks.namespace()``), ``reference/configuration.md`` from the
pydantic models of ``vertexkit.project.config``. Nothing here is committed as Markdown, so the
pages cannot drift from the code; ``tests/test_docs.py`` compares the built site with the sources.
"""

from __future__ import annotations

import copy
import inspect
import json
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

PAGES = {
    "reference/questions.md": "questions_page",
    "reference/tasks.md": "tasks_page",
    "reference/configuration.md": "config_page",
}

# Characters Markdown would read as markup; escaped so every text shows as written.
_MARKUP = "\\`*_{}[]()#+!|<>"


def text(value: str) -> str:
    """``value`` as literal Markdown text on one line."""
    out = []
    for char in " ".join(str(value).split()):
        if char == "&":
            out.append("&amp;")
        elif char == "<":
            out.append("&lt;")
        elif char == ">":
            out.append("&gt;")
        elif char in _MARKUP:
            out.append("\\" + char)
        else:
            out.append(char)
    return "".join(out)


def code(value: str) -> str:
    """``value`` as an inline code span (one line)."""
    fence = "``" if "`" in value else "`"
    pad = " " if value.startswith("`") or value.endswith("`") else ""
    return f"{fence}{pad}{value}{pad}{fence}"


def fenced(value: str, language: str = "text") -> list[str]:
    return [f"```{language}", *value.rstrip("\n").splitlines(), "```"]


def shown(value: Any) -> str:
    """A default as the reference pages show it: text as written, anything else as JSON."""
    return value if isinstance(value, str) else json.dumps(value)


# --- copier questions -----------------------------------------------------------------------


def questions(root: Path) -> dict[str, dict[str, Any]]:
    """The questions of copier.yml, in order (settings such as _subdirectory left out)."""
    data = yaml.safe_load((root / "copier.yml").read_text(encoding="utf-8"))
    return {key: value for key, value in data.items() if not key.startswith("_")}


def asked(question: dict[str, Any]) -> str:
    when = question.get("when", True)
    if when is False:
        return "never: computed from the other answers"
    if when is True:
        return "always"
    return f"when {when}"


def choices(question: dict[str, Any]) -> list[str]:
    """Each choice as ``value`` or ``value (label)``."""
    given = question.get("choices") or []
    if isinstance(given, dict):
        return [f"{value} ({label})" for label, value in given.items()]
    return [str(value) for value in given]


def questions_page(root: Path) -> str:
    lines = [
        "# Copier questions (reference)",
        "",
        "Generated from `copier.yml` when the site is built. [Copier questions](../questions.md) "
        "explains them and their rules; this page lists what `copier.yml` says, question by "
        "question, in the order `copier copy` asks them.",
        "",
    ]
    for name, question in questions(root).items():
        lines += [f"## {name} {{#{name}}}", ""]
        if question.get("help"):
            lines += [text(question["help"]), ""]
        facts: list[tuple[str, str]] = [("Type", code(str(question.get("type", "yaml"))))]
        if question.get("multiselect"):
            facts.append(("Answers", "several of the choices (a list)"))
        default = question.get("default")
        multiline_default = isinstance(default, str) and "\n" in default.strip()
        if default is None:
            facts.append(("Default", "none: an answer is required"))
        elif default == "":
            facts.append(("Default", "empty (the answer may be left empty)"))
        elif multiline_default:
            facts.append(("Default", "computed by the Jinja template below"))
        else:
            facts.append(("Default", code(shown(default))))
        if question.get("choices"):
            facts.append(("Choices", ", ".join(code(choice) for choice in choices(question))))
        facts.append(("Asked", text(asked(question))))
        facts.append(
            ("Validation", "the Jinja template below" if question.get("validator") else "none")
        )
        for term, definition in facts:
            lines += [term, f":   {definition}", ""]
        if multiline_default:
            lines += ['??? note "Default (Jinja)"', ""]
            lines += ["    " + line for line in fenced(default.strip(), "jinja")] + [""]
        if question.get("validator"):
            lines += ['??? note "Validation (Jinja: renders the error, or nothing when valid)"', ""]
            lines += ["    " + line for line in fenced(question["validator"].strip(), "jinja")]
            lines += [""]
    return "\n".join(lines)


# --- invoke tasks ---------------------------------------------------------------------------


def flags(argument: Any) -> list[str]:
    """An option's flags, short first: ``-e``, ``--env``."""
    names = sorted(argument.names, key=lambda name: (len(name) > 1, name))
    return [f"-{name}" if len(name) == 1 else f"--{name}" for name in names]


def arguments(task: Any) -> list[Any]:
    """The task's invoke Arguments. ``Task.get_arguments`` consumes the task's help texts (a
    second call has none), so it runs on a copy."""
    clone = copy.copy(task)
    clone.help = dict(task.help)
    return clone.get_arguments()


def option_default(argument: Any) -> str:
    default = argument.default
    return "" if default is None or default == [] else json.dumps(default)


def tasks_page(root: Path) -> str:
    from vertexkit.tasks import namespace

    collection = namespace()
    lines = [
        "# Tasks (reference)",
        "",
        "Generated from the invoke collection every project imports "
        "(`vertexkit.tasks.namespace()`) when the site is built. In a project, "
        "`invoke --list` lists the tasks and `invoke TASK --help` shows the same options. An "
        "option has the same flags in every task; a value option's help starts with the form "
        "of its value (`ENV`, `NAME`, `KEY=VALUE`).",
        "",
    ]
    for name in collection.task_names:
        task = collection[name]
        lines += [f"## invoke {name} {{#{name}}}", ""]
        doc = inspect.cleandoc(task.__doc__ or "").replace("``", "")
        lines += [text(paragraph) + "\n" for paragraph in doc.split("\n\n") if paragraph.strip()]
        options = arguments(task)
        if not options:
            lines += ["No options.", ""]
            continue
        lines += ["| Flags | Default | Help |", "| --- | --- | --- |"]
        for argument in options:
            cells = [
                ", ".join(code(flag) for flag in flags(argument)),
                code(option_default(argument)) if option_default(argument) else "",
                text(argument.help or ""),
            ]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


# --- configuration --------------------------------------------------------------------------


def _members(annotation: Any) -> tuple[list[Any], bool]:
    """The non-None members of an annotation and whether None is allowed."""
    if get_origin(annotation) in (Union, types.UnionType):
        args = get_args(annotation)
        return [a for a in args if a is not type(None)], type(None) in args
    return [annotation], False


def type_name(annotation: Any) -> str:
    origin = get_origin(annotation)
    if origin is Annotated:
        return type_name(get_args(annotation)[0])
    if origin in (Union, types.UnionType):
        members, optional = _members(annotation)
        return " or ".join(type_name(m) for m in members) + (" or null" if optional else "")
    if origin is Literal:
        return "one of " + ", ".join(str(a) for a in get_args(annotation))
    if origin is dict:
        key, value = get_args(annotation)
        return f"mapping of {type_name(key)} to {type_name(value)}"
    if origin is list:
        return f"list of {type_name(get_args(annotation)[0])}"
    if annotation is Any:
        return "any"
    if isinstance(annotation, type):
        return annotation.__name__
    return str(annotation)


def nested_model(annotation: Any) -> tuple[type[BaseModel], str] | None:
    """The model a field holds (``.``) or maps names to (``.<name>.``), if any."""
    members, _ = _members(annotation)
    if len(members) != 1:
        return None
    member = members[0]
    if get_origin(member) is Annotated:
        member = get_args(member)[0]
    if isinstance(member, type) and issubclass(member, BaseModel):
        return member, "."
    if get_origin(member) is dict:
        value = get_args(member)[1]
        if isinstance(value, type) and issubclass(value, BaseModel):
            return value, ".<name>."
    return None


def field_default(field: FieldInfo) -> str:
    if field.is_required():
        return "required"
    factory = field.default_factory
    value = factory() if factory is not None else field.default  # type: ignore[call-arg]
    if value is PydanticUndefined:
        return "required"
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    return json.dumps(value)


def sections(
    model: type[BaseModel], prefix: str = ""
) -> Iterator[tuple[str, type[BaseModel], list[tuple[str, FieldInfo]]]]:
    """(path prefix, model, its fields with their paths), the model first, then nested ones."""
    rows = [(prefix + name, field) for name, field in model.model_fields.items()]
    yield prefix, model, rows
    for path, field in rows:
        if found := nested_model(field.annotation):
            yield from sections(found[0], path + found[1])


def config_page(root: Path) -> str:
    from vertexkit.project.config import ProjectConfig

    lines = [
        "# Configuration (reference)",
        "",
        "Generated from the pydantic models of `vertexkit.project.config` when the site is "
        "built: every setting of `config/base.yaml` and `config/<env>.yaml`, with its type, "
        "default and description. [Configuration](../configuration.md) explains how the files "
        "and environment variables combine. `<name>` stands for a key you choose (a pipeline "
        "or component name).",
        "",
    ]
    for prefix, model, rows in sections(ProjectConfig):
        title = prefix.rstrip(".") or "top level"
        lines += [f"## {text(title)}", ""]
        doc = inspect.cleandoc(model.__doc__ or "").replace("``", "")
        if doc:
            lines += [text(doc), ""]
        lines += ["| Setting | Type | Default | Description |", "| --- | --- | --- | --- |"]
        for path, field in rows:
            cells = [
                code(path),
                text(type_name(field.annotation)),
                code(field_default(field)),
                text(field.description or ""),
            ]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


# --- the hook -------------------------------------------------------------------------------


def on_files(files: Any, config: Any) -> Any:
    from mkdocs.structure.files import File

    root = Path(config.config_file_path).parent
    for uri, builder in PAGES.items():
        content = globals()[builder](root)
        files.append(File.generated(config, uri, content=content))
    return files
