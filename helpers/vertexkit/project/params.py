"""Pipeline parameters: typed from the compiled pipeline's input definitions, checked before use."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# KFP v2 IR parameter types and the Python types that satisfy them.
_TYPE_NAMES = {
    "STRING": "str",
    "NUMBER_INTEGER": "int",
    "NUMBER_DOUBLE": "float",
    "BOOLEAN": "bool",
    "LIST": "list",
    "STRUCT": "dict",
}

_BOOLEANS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


class ParameterError(ValueError):
    """A pipeline parameter is unknown, missing or of the wrong type."""


@dataclass(frozen=True)
class ParameterSpec:
    name: str
    type: str  # one of the IR types above
    default: Any = None
    optional: bool = False

    @property
    def type_name(self) -> str:
        return _TYPE_NAMES.get(self.type, self.type.lower())


def parameter_specs(pipeline_spec: Mapping[str, Any]) -> dict[str, ParameterSpec]:
    """The pipeline's parameters, read from the IR (``root.inputDefinitions.parameters``)."""
    params = pipeline_spec.get("root", {}).get("inputDefinitions", {}).get("parameters", {})
    specs = {}
    for name, spec in params.items():
        default = spec.get("defaultValue")
        # The IR stores every number as a double: give integer defaults their type back.
        if spec["parameterType"] == "NUMBER_INTEGER" and isinstance(default, float):
            default = int(default)
        specs[name] = ParameterSpec(
            name=name,
            type=spec["parameterType"],
            default=default,
            optional=spec.get("isOptional", "defaultValue" in spec),
        )
    return specs


def check_value(spec: ParameterSpec, value: Any, source: str) -> Any:
    """Return ``value`` as the parameter's type, or raise ParameterError naming both."""
    kind = spec.type
    ok = (
        (kind == "STRING" and isinstance(value, str))
        or (kind == "BOOLEAN" and isinstance(value, bool))
        or (kind == "NUMBER_INTEGER" and isinstance(value, int) and not isinstance(value, bool))
        or (
            kind == "NUMBER_DOUBLE"
            and isinstance(value, int | float)
            and not isinstance(value, bool)
        )
        or (kind == "LIST" and isinstance(value, list))
        or (kind == "STRUCT" and isinstance(value, dict))
    )
    if not ok:
        raise ParameterError(
            f"{source}: parameter {spec.name!r} expects {spec.type_name}, "
            f"got {type(value).__name__} {value!r}"
        )
    if kind == "NUMBER_DOUBLE":
        if not math.isfinite(value):
            raise ParameterError(
                f"{source}: parameter {spec.name!r} expects a finite float, got {value!r}"
            )
        return float(value)
    return value


def parse_value(spec: ParameterSpec, text: str, source: str) -> Any:
    """Parse a command-line string (``key=value``) as the parameter's type."""
    kind = spec.type
    if kind == "STRING":
        return text
    try:
        if kind == "BOOLEAN":
            value = _BOOLEANS[text.strip().lower()]
        elif kind == "NUMBER_INTEGER":
            value = int(text)
        elif kind == "NUMBER_DOUBLE":
            value = float(text)
        else:
            value = json.loads(text)
    except (KeyError, ValueError):
        raise ParameterError(
            f"{source}: parameter {spec.name!r} expects {spec.type_name}, got {text!r}"
        ) from None
    return check_value(spec, value, source)


def parse_assignments(items: list[str] | tuple[str, ...]) -> dict[str, str]:
    """Split ``["key=value", ...]`` from the command line, rejecting malformed items."""
    result: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ParameterError(f"--param {item!r}: expected key=value")
        result[key.strip()] = value
    return result


def resolve(
    specs: Mapping[str, ParameterSpec],
    configured: Mapping[str, Any],
    overrides: Mapping[str, str],
    *,
    pipeline: str,
    config_source: Mapping[str, str],
) -> dict[str, Any]:
    """Merge configured values and command-line overrides, checking every name and type.

    ``config_source`` maps a configured parameter to the file that set it, for messages.
    Parameters left out keep the pipeline's defaults; a required one without a value fails.
    """
    values: dict[str, Any] = {}
    for name, value in configured.items():
        source = config_source.get(name, "config")
        spec = _spec(specs, name, pipeline, source)
        values[name] = check_value(spec, value, source)
    for name, text in overrides.items():
        source = f"--param {name}={text}"
        values[name] = parse_value(_spec(specs, name, pipeline, source), text, source)
    missing = [s for s in specs.values() if not s.optional and s.name not in values]
    if missing:
        listed = ", ".join(f"{s.name} ({s.type_name})" for s in missing)
        raise ParameterError(
            f"pipeline {pipeline!r}: missing required parameter(s): {listed}; "
            "set them in config or with --param key=value"
        )
    return values


def _spec(
    specs: Mapping[str, ParameterSpec], name: str, pipeline: str, source: str
) -> ParameterSpec:
    if name in specs:
        return specs[name]
    valid = ", ".join(f"{s.name} ({s.type_name})" for s in specs.values()) or "none"
    raise ParameterError(
        f"{source}: pipeline {pipeline!r} has no parameter {name!r}; its parameters: {valid}"
    )
