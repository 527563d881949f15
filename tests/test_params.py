"""Tests for vertexkit.project.params: specs from a real compiled pipeline, typed checks."""

# No `from __future__ import annotations`: KFP reads the component annotations at runtime.

import math
from typing import Any

import pytest
from kfp import dsl

from vertexkit.local.pipelines import pipeline_spec
from vertexkit.project.params import (
    ParameterError,
    ParameterRule,
    ParameterSpec,
    annotations,
    check_rules,
    check_value,
    parameter_specs,
    parse_assignments,
    parse_value,
    resolve,
)


@dsl.component(base_image="python:3.11", install_kfp_package=False)
def echo(
    text: str, count: int, required: int, ratio: float, flag: bool, items: list, options: dict
) -> str:
    return f"{text} {count} {required} {ratio} {flag} {items} {options}"


@dsl.pipeline(name="every-type")
def every_type(
    required_count: int,
    text: str = "hello",
    count: int = 2,
    ratio: float = 0.25,
    flag: bool = True,
    items: list = [1, 2],  # noqa: B006 - KFP reads the default from the signature
    options: dict = {"k": "v"},  # noqa: B006
) -> str:
    return echo(
        text=text,
        count=count,
        required=required_count,
        ratio=ratio,
        flag=flag,
        items=items,
        options=options,
    ).output


@pytest.fixture(scope="module")
def specs() -> dict[str, ParameterSpec]:
    return parameter_specs(pipeline_spec(every_type))


def spec(kind: str, name: str = "p") -> ParameterSpec:
    return ParameterSpec(name=name, type=kind)


# --------------------------------------------------------------------------- parameter_specs


def test_specs_from_a_real_pipeline(specs: dict[str, ParameterSpec]) -> None:
    assert set(specs) == {"required_count", "text", "count", "ratio", "flag", "items", "options"}
    assert {name: s.type for name, s in specs.items()} == {
        "required_count": "NUMBER_INTEGER",
        "text": "STRING",
        "count": "NUMBER_INTEGER",
        "ratio": "NUMBER_DOUBLE",
        "flag": "BOOLEAN",
        "items": "LIST",
        "options": "STRUCT",
    }
    assert {name: s.type_name for name, s in specs.items()} == {
        "required_count": "int",
        "text": "str",
        "count": "int",
        "ratio": "float",
        "flag": "bool",
        "items": "list",
        "options": "dict",
    }
    assert specs["required_count"].optional is False
    assert specs["required_count"].default is None
    assert all(s.optional for name, s in specs.items() if name != "required_count")
    assert specs["text"].default == "hello"
    assert specs["ratio"].default == 0.25
    assert specs["flag"].default is True
    assert specs["options"].default == {"k": "v"}
    assert specs["count"].default == 2
    assert specs["items"].default == [1, 2]


def test_integer_defaults_keep_their_type(specs: dict[str, ParameterSpec]) -> None:
    assert type(specs["count"].default) is int
    assert check_value(specs["count"], specs["count"].default, "default") == 2


def test_specs_of_a_pipeline_without_parameters() -> None:
    assert parameter_specs({}) == {}
    assert parameter_specs({"root": {"dag": {}}}) == {}


def test_optional_falls_back_to_having_a_default() -> None:
    raw = {
        "root": {
            "inputDefinitions": {
                "parameters": {
                    "a": {"parameterType": "STRING", "defaultValue": "x"},
                    "b": {"parameterType": "STRING"},
                }
            }
        }
    }
    specs = parameter_specs(raw)
    assert specs["a"].optional is True
    assert specs["b"].optional is False


def test_unknown_ir_type_name_is_lowercased() -> None:
    assert ParameterSpec("t", "TASK_FINAL_STATUS").type_name == "task_final_status"


# --------------------------------------------------------------------------- check_value


@pytest.mark.parametrize(
    ("kind", "value", "expected"),
    [
        ("STRING", "text", "text"),
        ("STRING", "", ""),
        ("NUMBER_INTEGER", 3, 3),
        ("NUMBER_INTEGER", -1, -1),
        ("NUMBER_DOUBLE", 0.5, 0.5),
        ("BOOLEAN", True, True),
        ("BOOLEAN", False, False),
        ("LIST", [1, "a"], [1, "a"]),
        ("LIST", [], []),
        ("STRUCT", {"a": [1]}, {"a": [1]}),
    ],
)
def test_check_value_accepts_matching_types(kind: str, value: Any, expected: Any) -> None:
    result = check_value(spec(kind), value, "config/base.yaml")
    assert result == expected
    assert type(result) is type(expected)


def test_check_value_widens_int_to_float() -> None:
    result = check_value(spec("NUMBER_DOUBLE"), 3, "src")
    assert result == 3.0 and type(result) is float


@pytest.mark.parametrize(
    ("kind", "value", "shown"),
    [
        ("STRING", 3, "int 3"),
        ("STRING", None, "NoneType None"),
        ("NUMBER_INTEGER", 3.0, "float 3.0"),
        ("NUMBER_INTEGER", True, "bool True"),  # bool is an int in Python, not here
        ("NUMBER_INTEGER", "3", "str '3'"),
        ("NUMBER_DOUBLE", True, "bool True"),
        ("NUMBER_DOUBLE", "0.5", "str '0.5'"),
        ("BOOLEAN", 1, "int 1"),
        ("BOOLEAN", "true", "str 'true'"),
        ("LIST", (1, 2), "tuple (1, 2)"),
        ("LIST", {"a": 1}, "dict {'a': 1}"),
        ("STRUCT", [1], "list [1]"),
    ],
)
def test_check_value_rejects_other_types(kind: str, value: Any, shown: str) -> None:
    s = ParameterSpec("seed", kind)
    with pytest.raises(ParameterError) as caught:
        check_value(s, value, "config/dev.yaml: pipelines.training.parameters.seed")
    assert str(caught.value) == (
        f"config/dev.yaml: pipelines.training.parameters.seed: parameter 'seed' expects "
        f"{s.type_name}, got {shown}"
    )


# --------------------------------------------------------------------------- parse_value


@pytest.mark.parametrize(
    ("kind", "text", "expected"),
    [
        ("STRING", "hello world", "hello world"),
        ("STRING", "3", "3"),  # a string parameter keeps digits as text
        ("STRING", "", ""),
        ("NUMBER_INTEGER", "42", 42),
        ("NUMBER_INTEGER", "-7", -7),
        ("NUMBER_INTEGER", " 5 ", 5),
        ("NUMBER_DOUBLE", "0.25", 0.25),
        ("NUMBER_DOUBLE", "3", 3.0),
        ("NUMBER_DOUBLE", "1e-3", 0.001),
        ("BOOLEAN", "true", True),
        ("BOOLEAN", "True", True),
        ("BOOLEAN", " YES ", True),
        ("BOOLEAN", "1", True),
        ("BOOLEAN", "false", False),
        ("BOOLEAN", "No", False),
        ("BOOLEAN", "0", False),
        ("LIST", '[1, 2.5, "a"]', [1, 2.5, "a"]),
        ("LIST", "[]", []),
        ("STRUCT", '{"a": {"b": [true]}}', {"a": {"b": [True]}}),
    ],
)
def test_parse_value(kind: str, text: str, expected: Any) -> None:
    result = parse_value(spec(kind), text, "--param")
    assert result == expected
    assert type(result) is type(expected)


@pytest.mark.parametrize(
    ("kind", "text"),
    [
        ("NUMBER_INTEGER", "3.0"),
        ("NUMBER_INTEGER", "three"),
        ("NUMBER_INTEGER", ""),
        ("NUMBER_INTEGER", "true"),
        ("NUMBER_DOUBLE", "half"),
        ("NUMBER_DOUBLE", ""),
        ("BOOLEAN", "maybe"),
        ("BOOLEAN", "2"),
        ("BOOLEAN", ""),
        ("LIST", "1, 2"),
        ("LIST", "[1, 2"),
        ("STRUCT", "a=1"),
        ("STRUCT", "{'a': 1}"),  # Python, not JSON
    ],
)
def test_parse_value_rejects_unparsable_text(kind: str, text: str) -> None:
    s = ParameterSpec("seed", kind)
    with pytest.raises(ParameterError) as caught:
        parse_value(s, text, "--param")
    assert str(caught.value) == f"--param: parameter 'seed' expects {s.type_name}, got {text!r}"


@pytest.mark.parametrize(
    ("kind", "text", "shown"),
    [
        ("LIST", '{"a": 1}', "dict {'a': 1}"),
        ("LIST", "3", "int 3"),
        ("STRUCT", "[1, 2]", "list [1, 2]"),
        ("STRUCT", '"text"', "str 'text'"),
    ],
)
def test_parse_value_rejects_valid_json_of_the_wrong_shape(
    kind: str, text: str, shown: str
) -> None:
    s = ParameterSpec("opts", kind)
    with pytest.raises(ParameterError) as caught:
        parse_value(s, text, "--param")
    assert str(caught.value) == f"--param: parameter 'opts' expects {s.type_name}, got {shown}"


@pytest.mark.parametrize("text", ["inf", "-inf", "nan"])
def test_parse_value_rejects_non_finite_floats(text: str) -> None:
    with pytest.raises(ParameterError, match="expects a finite float"):
        parse_value(spec("NUMBER_DOUBLE"), text, "--param")


def test_check_value_rejects_non_finite_floats() -> None:
    with pytest.raises(ParameterError, match="expects a finite float"):
        check_value(spec("NUMBER_DOUBLE"), math.inf, "config/base.yaml: parameters.p")


# --------------------------------------------------------------------------- parse_assignments


def test_parse_assignments() -> None:
    assert parse_assignments(["n=3", " label =a b", "expr=x=y", "empty="]) == {
        "n": "3",
        "label": "a b",  # the key is stripped, the value kept verbatim
        "expr": "x=y",  # split at the first '='
        "empty": "",
    }
    assert parse_assignments(()) == {}


def test_parse_assignments_later_value_wins() -> None:
    assert parse_assignments(["n=1", "n=2"]) == {"n": "2"}


@pytest.mark.parametrize("item", ["n", "=3", " =3", ""])
def test_parse_assignments_rejects_malformed_items(item: str) -> None:
    with pytest.raises(ParameterError) as caught:
        parse_assignments(["ok=1", item])
    assert str(caught.value) == f"--param {item!r}: expected key=value"


# --------------------------------------------------------------------------- resolve


def test_resolve_merges_config_and_overrides(specs: dict[str, ParameterSpec]) -> None:
    values = resolve(
        specs,
        {"required_count": 3, "ratio": 1, "text": "from config"},
        {"text": "from cli", "flag": "no", "items": "[3]"},
        pipeline="every-type",
        config_source={},
    )
    assert values == {
        "required_count": 3,
        "ratio": 1.0,
        "text": "from cli",  # the override wins over config
        "flag": False,
        "items": [3],
    }
    assert type(values["ratio"]) is float
    # Parameters set nowhere are left out: the pipeline's defaults apply.
    assert "count" not in values and "options" not in values


def test_resolve_override_alone_satisfies_a_required_parameter(
    specs: dict[str, ParameterSpec],
) -> None:
    values = resolve(specs, {}, {"required_count": "9"}, pipeline="p", config_source={})
    assert values == {"required_count": 9}


def test_resolve_unknown_configured_parameter_lists_valid_ones(
    specs: dict[str, ParameterSpec],
) -> None:
    source = "config/dev.yaml: pipelines.every_type.parameters.cuont"
    with pytest.raises(ParameterError) as caught:
        resolve(
            specs,
            {"required_count": 1, "cuont": 3},
            {},
            pipeline="every_type",
            config_source={"cuont": source},
        )
    message = str(caught.value)
    assert message.startswith(f"{source}: pipeline 'every_type' has no parameter 'cuont'; ")
    for shown in (
        "required_count (int)",
        "text (str)",
        "count (int)",
        "ratio (float)",
        "flag (bool)",
        "items (list)",
        "options (dict)",
    ):
        assert shown in message


def test_resolve_unknown_override(specs: dict[str, ParameterSpec]) -> None:
    with pytest.raises(ParameterError) as caught:
        resolve(specs, {"required_count": 1}, {"nope": "1"}, pipeline="p", config_source={})
    assert str(caught.value).startswith("--param nope=1: pipeline 'p' has no parameter 'nope'; ")
    assert "count (int)" in str(caught.value)


def test_resolve_unknown_parameter_of_a_pipeline_without_parameters() -> None:
    with pytest.raises(ParameterError) as caught:
        resolve({}, {}, {"x": "1"}, pipeline="bare", config_source={})
    assert (
        str(caught.value)
        == "--param x=1: pipeline 'bare' has no parameter 'x'; its parameters: none"
    )


def test_resolve_wrong_type_names_the_config_source(specs: dict[str, ParameterSpec]) -> None:
    source = "config/base.yaml: parameters.flag"
    with pytest.raises(ParameterError) as caught:
        resolve(
            specs,
            {"required_count": 1, "flag": "yes"},
            {},
            pipeline="p",
            config_source={"flag": source},
        )
    assert str(caught.value) == f"{source}: parameter 'flag' expects bool, got str 'yes'"


def test_resolve_wrong_type_without_a_known_source(specs: dict[str, ParameterSpec]) -> None:
    with pytest.raises(ParameterError, match=r"^config: parameter 'count' expects int"):
        resolve(specs, {"required_count": 1, "count": 1.5}, {}, pipeline="p", config_source={})


def test_resolve_wrong_type_override_names_param(specs: dict[str, ParameterSpec]) -> None:
    with pytest.raises(ParameterError) as caught:
        resolve(specs, {"required_count": 1}, {"count": "2.5"}, pipeline="p", config_source={})
    assert str(caught.value) == "--param count=2.5: parameter 'count' expects int, got '2.5'"


def test_resolve_checks_config_values_even_when_overridden(
    specs: dict[str, ParameterSpec],
) -> None:
    # Config values are checked even when an override replaces them: a bad file fails loudly.
    with pytest.raises(ParameterError, match="parameter 'count' expects int"):
        resolve(
            specs,
            {"required_count": 1, "count": "x"},
            {"count": "2"},
            pipeline="p",
            config_source={"count": "config/base.yaml: parameters.count"},
        )


def test_resolve_missing_required_parameter(specs: dict[str, ParameterSpec]) -> None:
    with pytest.raises(ParameterError) as caught:
        resolve(specs, {"text": "x"}, {}, pipeline="every-type", config_source={})
    assert str(caught.value) == (
        "pipeline 'every-type': missing required parameter(s): required_count (int); "
        "set them in config or with --param key=value"
    )


# --------------------------------------------------------------------------- item types


@pytest.mark.parametrize(
    ("annotation", "value", "problem"),
    [
        (list[int], [1, 2], None),
        (list[int], [1.5], "item [0] float 1.5"),
        (list[int], [1, True], "item [1] bool True"),
        (list[float], [1, 2.5], None),
        (list[str], ["a", 3], "item [1] int 3"),
        (dict[str, int], {"a": 1}, None),
        (dict[str, int], {"a": "1"}, "item ['a'] str '1'"),
        (list[list[int]], [[1], [2, "x"]], "item [1][1] str 'x'"),
        (list[int | None], [1, None], None),
        (list[Any], [1, "a"], None),
    ],
)
def test_item_types_are_checked(annotation: Any, value: Any, problem: str | None) -> None:
    spec = ParameterSpec("trials", "LIST" if isinstance(value, list) else "STRUCT", None, False)
    spec = ParameterSpec(spec.name, spec.type, annotation=annotation)
    if problem is None:
        assert check_value(spec, value, "src") == value
    else:
        with pytest.raises(ParameterError) as caught:
            check_value(spec, value, "src")
        assert str(caught.value) == (
            f"src: parameter 'trials' expects {spec.type_name}, got {problem}"
        )


@dsl.pipeline(name="typed")
def required_pipeline(trials: list[int], weights: dict[str, float]) -> str:
    return echo(
        text="", count=1, required=1, ratio=0.5, flag=True, items=trials, options=weights
    ).output


def test_annotations_of_a_real_pipeline_function() -> None:
    def pipeline(a: list[int], b: dict[str, float], c: list, d: int) -> None: ...

    assert annotations(pipeline) == {"a": list[int], "b": dict[str, float]}
    assert annotations(required_pipeline.pipeline_func)["trials"] == list[int]
    assert annotations(None) == {}


def test_unknown_and_required_names_are_listed_in_name_order() -> None:
    specs = {n: ParameterSpec(n, "STRING") for n in ("zeta", "alpha", "mid")}
    with pytest.raises(ParameterError) as caught:
        resolve(specs, {}, {}, pipeline="p", config_source={})
    assert "alpha (str), mid (str), zeta (str);" in str(caught.value)
    with pytest.raises(ParameterError) as caught:
        resolve(specs, {}, {"x": "1"}, pipeline="p", config_source={})
    assert str(caught.value).endswith("its parameters: alpha (str), mid (str), zeta (str)")


def test_rules_skip_parameters_without_a_value_or_default() -> None:
    specs = {
        "n": ParameterSpec("n", "NUMBER_INTEGER"),  # required, not given
        "k": ParameterSpec("k", "NUMBER_INTEGER", optional=True),  # optional, no default
        "r": ParameterSpec("r", "NUMBER_DOUBLE", default=2.0, optional=True),
    }
    rules = {name: ParameterRule(ge=0, le=1) for name in specs}
    with pytest.raises(ParameterError) as caught:
        check_rules(specs, rules, {}, pipeline="p")
    assert str(caught.value) == (
        "the default of pipeline 'p': parameter 'r' is 2.0, but must be >= 0 and <= 1 "
        "(pipelines.p.parameter_rules.r)"
    )
    check_rules(specs, rules, {"r": 0.5, "n": 1}, pipeline="p")
