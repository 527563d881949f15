"""Pipeline parameters: typed from the compiled pipeline's input definitions, checked before use."""

from __future__ import annotations

import json
import math
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import UnionType
from typing import Any, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, model_validator

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
    # The pipeline function's annotation (list[int], dict[str, float] ...) when it says more
    # than the IR type: item types are checked against it.
    annotation: Any = None

    @property
    def type_name(self) -> str:
        if self.annotation is not None:
            return _annotation_name(self.annotation)
        return _TYPE_NAMES.get(self.type, self.type.lower())


def annotations(function: Callable[..., Any] | None) -> dict[str, Any]:
    """Parameter annotations of a pipeline function that declare item types (``list[int]``,
    ``Dict[str, float]``); others say no more than the IR and are left out."""
    if function is None:
        return {}
    try:
        hints = typing.get_type_hints(function)
    except Exception:  # unresolvable string annotations: the IR types still apply
        return {}
    return {
        name: hint
        for name, hint in hints.items()
        if name != "return" and get_origin(hint) in (list, dict) and get_args(hint)
    }


def parameter_specs(
    pipeline_spec: Mapping[str, Any], annotations: Mapping[str, Any] | None = None
) -> dict[str, ParameterSpec]:
    """The pipeline's parameters, read from the IR (``root.inputDefinitions.parameters``).

    ``annotations`` (see :func:`annotations`) adds the item types the IR does not keep.
    """
    params = pipeline_spec.get("root", {}).get("inputDefinitions", {}).get("parameters", {})
    annotations = annotations or {}
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
            annotation=annotations.get(name)
            if spec["parameterType"] in ("LIST", "STRUCT")
            else None,
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
    if spec.annotation is not None and (problem := _item_problem(spec.annotation, value, "")):
        raise ParameterError(
            f"{source}: parameter {spec.name!r} expects {spec.type_name}, got {problem}"
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
    require_all: bool = True,
) -> dict[str, Any]:
    """Merge configured values and command-line overrides, checking every name and type.

    ``config_source`` maps a configured parameter to the file that set it, for messages.
    Parameters left out keep the pipeline's defaults; a required one without a value fails,
    unless ``require_all`` is false (compiling: the run supplies them).
    """
    values: dict[str, Any] = {}
    for name, value in configured.items():
        source = config_source.get(name, "config")
        spec = _spec(specs, name, pipeline, source)
        values[name] = check_value(spec, value, source)
    for name, text in overrides.items():
        source = f"--param {name}={text}"
        values[name] = parse_value(_spec(specs, name, pipeline, source), text, source)
    missing = sorted(
        (s for s in specs.values() if not s.optional and s.name not in values),
        key=lambda s: s.name,
    )
    if missing and require_all:
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
    valid = ", ".join(f"{s.name} ({s.type_name})" for _, s in sorted(specs.items())) or "none"
    raise ParameterError(
        f"{source}: pipeline {pipeline!r} has no parameter {name!r}; its parameters: {valid}"
    )


def _annotation_name(annotation: Any) -> str:
    if annotation is Any:
        return "Any"
    origin, args = get_origin(annotation), get_args(annotation)
    if origin in (Union, UnionType):
        return " | ".join("None" if a is type(None) else _annotation_name(a) for a in args)
    if origin is not None:
        inner = ", ".join(_annotation_name(a) for a in args)
        return f"{getattr(origin, '__name__', str(origin))}[{inner}]" if args else origin.__name__
    return getattr(annotation, "__name__", str(annotation))


def _item_problem(annotation: Any, value: Any, where: str) -> str | None:
    """What in ``value`` does not match ``annotation`` (``item [0] float 1.5``), or None.

    Only builtin scalars, lists, dicts and unions are checked; anything else is accepted.
    """
    shown = f"item {where} " if where else ""
    origin, args = get_origin(annotation), get_args(annotation)
    if annotation is Any:
        return None
    if origin in (Union, UnionType):
        if any(_item_problem(member, value, where) is None for member in args):
            return None
        return f"{shown}{type(value).__name__} {value!r}"
    scalar = {
        bool: isinstance(value, bool),
        int: isinstance(value, int) and not isinstance(value, bool),
        float: isinstance(value, int | float) and not isinstance(value, bool),
        str: isinstance(value, str),
        type(None): value is None,
    }
    if annotation in scalar:
        ok = scalar[annotation]
        if ok and annotation is float and not math.isfinite(value):
            ok = False
        return None if ok else f"{shown}{type(value).__name__} {value!r}"
    if annotation is list or origin is list:
        if not isinstance(value, list):
            return f"{shown}{type(value).__name__} {value!r}"
        for index, item in enumerate(value):
            if args and (problem := _item_problem(args[0], item, f"{where}[{index}]")):
                return problem
        return None
    if annotation is dict or origin is dict:
        if not isinstance(value, dict):
            return f"{shown}{type(value).__name__} {value!r}"
        for key, item in value.items():
            if len(args) == 2:
                if problem := _item_problem(args[0], key, f"{where} key {key!r}"):
                    return problem
                if problem := _item_problem(args[1], item, f"{where}[{key!r}]"):
                    return problem
        return None
    return None


Bound = StrictInt | StrictFloat


class ParameterRule(BaseModel):
    """Values a pipeline parameter accepts, checked before a run or a compile uses them:
    bounds (``ge``/``gt``, ``le``/``lt``) for int and float parameters, or ``choices``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    ge: Bound | None = Field(default=None, description="at least this")
    gt: Bound | None = Field(default=None, description="above this")
    le: Bound | None = Field(default=None, description="at most this")
    lt: Bound | None = Field(default=None, description="below this")
    choices: list[Any] | None = Field(
        default=None, min_length=1, description="the only values allowed"
    )

    @model_validator(mode="after")
    def _consistent(self) -> ParameterRule:
        if self.ge is not None and self.gt is not None:
            raise ValueError("give ge or gt, not both")
        if self.le is not None and self.lt is not None:
            raise ValueError("give le or lt, not both")
        if not self.bounded and self.choices is None:
            raise ValueError("give bounds (ge, gt, le, lt) or choices")
        lower = self.ge if self.ge is not None else self.gt
        upper = self.le if self.le is not None else self.lt
        if lower is not None and upper is not None:
            empty = lower > upper or (
                lower == upper and (self.gt is not None or self.lt is not None)
            )
            if empty:
                raise ValueError(f"no value satisfies {self.describe()}")
        return self

    @property
    def bounded(self) -> bool:
        return any(v is not None for v in (self.ge, self.gt, self.le, self.lt))

    def describe(self) -> str:
        parts = [
            f"{sign} {bound}"
            for sign, bound in ((">=", self.ge), (">", self.gt), ("<=", self.le), ("<", self.lt))
            if bound is not None
        ]
        if self.choices is not None:
            parts.append(f"one of {self.choices}")
        return " and ".join(parts)

    def allows(self, value: Any) -> bool:
        if self.choices is not None and value not in self.choices:
            return False
        checks = (
            (self.ge, lambda b: value >= b),
            (self.gt, lambda b: value > b),
            (self.le, lambda b: value <= b),
            (self.lt, lambda b: value < b),
        )
        return all(bound is None or check(bound) for bound, check in checks)


def check_rules(
    specs: Mapping[str, ParameterSpec],
    rules: Mapping[str, ParameterRule],
    values: Mapping[str, Any],
    *,
    pipeline: str,
    rules_source: str = "",
    value_source: Mapping[str, str] | None = None,
) -> None:
    """Fail listing (by name) every rule that names no parameter or does not fit its type, and
    every value (given, else the pipeline's default) that a rule refuses.

    ``rules_source`` prefixes where the rules are (``config/base.yaml: ``); ``value_source``
    says where each given value came from.
    """
    value_source = value_source or {}
    problems = []
    for name in sorted(rules):
        rule, where = rules[name], f"{rules_source}pipelines.{pipeline}.parameter_rules.{name}"
        if name not in specs:
            valid = ", ".join(sorted(specs)) or "none"
            problems.append(
                f"{where}: pipeline {pipeline!r} has no parameter {name!r} (its parameters: "
                f"{valid})"
            )
            continue
        spec = specs[name]
        if rule.bounded and spec.type not in ("NUMBER_INTEGER", "NUMBER_DOUBLE"):
            problems.append(
                f"{where}: bounds apply to int and float parameters, and {name!r} is "
                f"{spec.type_name}; use choices"
            )
            continue
        if name in values:
            value, source = values[name], value_source.get(name, "config")
        elif spec.default is not None:
            value, source = spec.default, f"the default of pipeline {pipeline!r}"
        else:
            continue  # required and not given: a run supplies it and is checked then
        if not rule.allows(value):
            problems.append(
                f"{source}: parameter {name!r} is {value!r}, but must be {rule.describe()} "
                f"({where})"
            )
    if len(problems) == 1:
        raise ParameterError(problems[0])
    if problems:
        header = f"pipeline {pipeline!r}: {len(problems)} parameter rules refuse their values:"
        raise ParameterError("\n".join([header, *(f"  {line}" for line in problems)]))
