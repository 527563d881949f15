"""The pipelines the service may run: compiled templates and their typed parameters.

The service reads compiled pipeline YAML (``<name>.yaml``, the IR ``invoke compile --env ENV``
writes) and the compile record beside it (``compiled.json``), never the pipeline's Python: kfp
stays out of the service. A pipeline is runnable when the record says its file was compiled for
the service's environment and the file is unchanged since (the same rule ``invoke publish``
applies before uploading, so what the service lists is what was published).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from vertexkit.project import params
from vertexkit.project.config import ProjectConfig

RECORD = "compiled.json"


@dataclass(frozen=True)
class Pipeline:
    """One runnable pipeline: its file name, its compiled name and its parameters."""

    name: str  # the file in pipelines/ (what callers name)
    template_name: str  # pipelineInfo.name: the published package
    specs: Mapping[str, params.ParameterSpec]

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "template": self.template_name,
            "parameters": [
                {
                    "name": spec.name,
                    "type": spec.type_name,
                    "required": not spec.optional,
                    "default": spec.default,
                }
                for spec in sorted(self.specs.values(), key=lambda s: s.name)
            ],
        }


class CatalogError(ValueError):
    """The folder of compiled pipelines cannot be read."""


def _digest(path: Path) -> str:
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


def write_record(folder: str | Path, environment: str, written: list[Path]) -> None:
    """Note in ``folder``'s compile record that ``written`` were compiled for ``environment``
    (what ``invoke compile`` records in build/pipelines; ``invoke serve`` compiles elsewhere)."""
    path = Path(folder) / RECORD
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        record = {}
    for file in written:
        record[file.stem] = {"environment": environment, "file": _digest(file)}
    path.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def load_catalog(folder: str | Path, environment: str | None) -> dict[str, Pipeline]:
    """The runnable pipelines in ``folder``, by name.

    ``environment``: only templates the record says were compiled for it (and unchanged since);
    None accepts every file in the record (local runs, dry runs).
    """
    folder = Path(folder)
    try:
        record = json.loads((folder / RECORD).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CatalogError(
            f"{folder / RECORD} not found: run `invoke compile --env ENV` first"
        ) from None
    except (OSError, ValueError) as exc:
        raise CatalogError(f"{folder / RECORD}: cannot read the compile record: {exc}") from None
    if not isinstance(record, dict):
        raise CatalogError(f"{folder / RECORD}: not a compile record")
    pipelines = {}
    for name, entry in sorted(record.items()):
        path = folder / f"{name}.yaml"
        if not isinstance(entry, dict) or not path.is_file():
            continue
        if environment is not None and (
            entry.get("environment") != environment or entry.get("file") != _digest(path)
        ):
            continue
        try:
            spec = yaml.safe_load(path.read_text(encoding="utf-8"))
            template = spec["pipelineInfo"]["name"]
            specs = params.parameter_specs(spec)
        except (OSError, yaml.YAMLError, KeyError, TypeError) as exc:
            raise CatalogError(f"{path}: not a compiled pipeline: {exc}") from None
        pipelines[name] = Pipeline(name=name, template_name=template, specs=specs)
    return pipelines


def check_parameters(
    config: ProjectConfig, pipeline: Pipeline, given: Mapping[str, Any]
) -> tuple[dict[str, Any], list[dict[str, str]]]:
    """The values a run of ``pipeline`` gets (configured ones, then ``given``), and every
    problem with ``given``: unknown names, wrong types, missing required parameters, values the
    pipeline's ``parameter_rules`` refuse. Each problem names its field."""
    specs = pipeline.specs
    problems: list[dict[str, str]] = []
    values: dict[str, Any] = {}
    configured = config.pipeline_parameters(pipeline.name, set(specs))
    for name, value in configured.items():
        values[name] = params.check_value(specs[name], value, f"config: parameters.{name}")
    for name, value in given.items():
        field = f"parameters.{name}"
        if name not in specs:
            valid = ", ".join(f"{s.name} ({s.type_name})" for _, s in sorted(specs.items()))
            problems.append(
                {
                    "field": field,
                    "message": f"pipeline {pipeline.name!r} has no parameter {name!r}; its "
                    f"parameters: {valid or 'none'}",
                }
            )
            continue
        try:
            values[name] = params.check_value(specs[name], value, field)
        except params.ParameterError as exc:
            problems.append({"field": field, "message": str(exc)})
    for spec in sorted(specs.values(), key=lambda s: s.name):
        if not spec.optional and spec.name not in values and spec.name not in given:
            problems.append(
                {
                    "field": f"parameters.{spec.name}",
                    "message": f"required parameter {spec.name!r} ({spec.type_name}) is missing",
                }
            )
    if problems:
        return values, problems
    try:
        params.check_rules(
            specs,
            config.pipeline(pipeline.name).parameter_rules,
            values,
            pipeline=pipeline.name,
            value_source={name: f"parameters.{name}" for name in given},
        )
    except params.ParameterError as exc:
        lines = str(exc).splitlines()
        for line in lines[1:] if len(lines) > 1 else lines:
            line = line.strip()
            name = line.split("parameter ", 1)[-1].split("'")[1] if "'" in line else ""
            problems.append(
                {"field": f"parameters.{name}" if name else "parameters", "message": line}
            )
    return values, problems
