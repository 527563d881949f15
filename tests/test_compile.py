"""Tests for vertexkit.local.pipelines: discovery, import errors, config checks, YAML."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest
import yaml

from tests.fixture_project import copy_project
from vertexkit.local.pipelines import (
    IncompleteCompileError,
    PipelineError,
    compile_pipelines,
    configured_parameters,
    discover,
    for_environment,
    load_pipeline,
    pipeline_spec,
)
from vertexkit.project.config import load_config
from vertexkit.project.params import ParameterError

FIXTURES = Path(__file__).parent / "fixtures"


def add_pipeline(project: Path, name: str, as_name: str | None = None) -> Path:
    target = project / "pipelines" / f"{as_name or name}.py"
    shutil.copy(FIXTURES / "pipelines" / f"{name}.py", target)
    return target


def compiled_inputs(path: Path) -> dict:
    spec = yaml.safe_load(path.read_text(encoding="utf-8"))
    return spec["root"]["inputDefinitions"]["parameters"]


# --------------------------------------------------------------------------- discover / load


def test_discover_ignores_private_and_non_python_files(project: Path) -> None:
    add_pipeline(project, "failing")
    (project / "pipelines" / "_shared.py").write_text("raise RuntimeError('never imported')\n")
    (project / "pipelines" / "__init__.py").write_text("")
    (project / "pipelines" / "notes.md").write_text("# notes\n")
    found = discover(project)
    assert list(found) == ["failing", "training"]
    assert found["training"] == project / "pipelines" / "training.py"


def test_discover_without_pipelines_folder(tmp_path: Path) -> None:
    assert discover(tmp_path) == {}


def test_load_pipeline_returns_the_pipeline(project: Path) -> None:
    pipeline = load_pipeline(project, "training")
    assert pipeline.name == "demo-training"
    spec = pipeline_spec(pipeline)
    assert spec["pipelineInfo"]["name"] == "demo-training"
    assert set(spec["root"]["dag"]["tasks"]) == {"make-data", "describe"}


def test_load_pipeline_missing_name_lists_available(project: Path) -> None:
    add_pipeline(project, "failing")
    with pytest.raises(PipelineError) as caught:
        load_pipeline(project, "trainig")
    assert str(caught.value) == (
        "no pipeline named 'trainig' in pipelines/ (available: failing, training)"
    )


def test_load_pipeline_private_file_is_not_a_pipeline(project: Path) -> None:
    add_pipeline(project, "failing", as_name="_failing")
    with pytest.raises(
        PipelineError, match=r"no pipeline named '_failing'.*\(available: training\)"
    ):
        load_pipeline(project, "_failing")


def test_load_pipeline_in_empty_project(tmp_path: Path) -> None:
    with pytest.raises(PipelineError, match=r"\(available: none\)"):
        load_pipeline(tmp_path, "training")


def test_load_pipeline_import_error_names_the_file(project: Path) -> None:
    add_pipeline(project, "broken")
    with pytest.raises(PipelineError) as caught:
        load_pipeline(project, "broken")
    assert str(caught.value) == (
        "pipelines/broken.py: import failed: ModuleNotFoundError: "
        "No module named 'vertexkit_no_such_module'"
    )


def test_load_pipeline_syntax_error_names_the_file(project: Path) -> None:
    (project / "pipelines" / "typo.py").write_text("def pipeline(:\n")
    with pytest.raises(PipelineError, match=r"^pipelines/typo\.py: import failed: SyntaxError"):
        load_pipeline(project, "typo")


def test_load_pipeline_file_without_a_pipeline(project: Path) -> None:
    add_pipeline(project, "none")
    with pytest.raises(PipelineError) as caught:
        load_pipeline(project, "none")
    assert str(caught.value) == (
        "pipelines/none.py: no @dsl.pipeline function in this file; every pipelines/<name>.py "
        "defines one (put helper modules in pipelines/_<name>.py)"
    )


def test_load_pipeline_file_with_two_pipelines(project: Path) -> None:
    add_pipeline(project, "two")
    with pytest.raises(PipelineError) as caught:
        load_pipeline(project, "two")
    assert str(caught.value) == (
        "pipelines/two.py: 2 @dsl.pipeline functions that no other pipeline in the file calls "
        "(first, second): say which one this file runs with a module-level "
        "PIPELINE = <function>, e.g. PIPELINE = first"
    )


def test_load_pipeline_with_sub_pipelines_returns_the_one_nobody_calls(project: Path) -> None:
    add_pipeline(project, "nested")
    add_pipeline(project, "_steps")
    pipeline = load_pipeline(project, "nested")
    assert pipeline.name == "demo-nested"
    spec = pipeline_spec(pipeline)
    assert set(spec["root"]["dag"]["tasks"]) == {"scaled", "shared-step"}
    assert "dag" in spec["components"]["comp-scaled"]
    # The helper module was imported (by name and relatively) for the file, then forgotten.
    assert "_steps" not in sys.modules
    assert not [name for name in sys.modules if name.endswith("._steps")]
    assert list(discover(project)) == ["nested", "training"]


def test_helper_modules_of_two_projects_stay_apart(project: Path, tmp_path: Path) -> None:
    other = copy_project(tmp_path / "other")
    for root, scale in ((project, 10), (other, 100)):
        add_pipeline(root, "nested")
        helper = add_pipeline(root, "_steps")
        helper.write_text(helper.read_text().replace("SCALE = 10", f"SCALE = {scale}"))
    first, second = (pipeline_spec(load_pipeline(p, "nested")) for p in (project, other))
    assert first != second  # each file used its own project's _steps.SCALE


def test_module_level_pipeline_name_chooses(project: Path) -> None:
    add_pipeline(project, "chosen")
    assert load_pipeline(project, "chosen").name == "demo-chosen"


def test_module_level_pipeline_name_must_be_a_pipeline(project: Path) -> None:
    target = add_pipeline(project, "chosen")
    target.write_text(target.read_text().replace("PIPELINE = main", "PIPELINE = 'main'"))
    with pytest.raises(PipelineError) as caught:
        load_pipeline(project, "chosen")
    assert str(caught.value) == (
        "pipelines/chosen.py: PIPELINE must be a @dsl.pipeline function, got str"
    )


# --------------------------------------------------------------------------- configured_parameters


def test_configured_parameters_from_config_and_overrides(project: Path) -> None:
    config = load_config(project, "dev", environ={})
    pipeline = load_pipeline(project, "training")
    values = configured_parameters(config, "training", pipeline, {"label": "lines"})
    assert values == {"shared_param": 1, "n": 5, "label": "lines", "ratio": 1.0}


def test_configured_parameters_wrong_type_names_file_and_field(project: Path) -> None:
    (project / "config" / "dev.yaml").write_text(
        "pipelines:\n  training:\n    parameters:\n      n: many\n"
    )
    config = load_config(project, "dev", environ={})
    with pytest.raises(ParameterError) as caught:
        configured_parameters(config, "training", load_pipeline(project, "training"), None)
    assert str(caught.value) == (
        "config/dev.yaml: pipelines.training.parameters.n: parameter 'n' expects int, "
        "got str 'many'"
    )


def test_configured_parameters_shared_value_names_its_source(project: Path) -> None:
    config = load_config(project, environ={"VERTEXKIT__PARAMETERS__SHARED_PARAM": "high"})
    with pytest.raises(ParameterError) as caught:
        configured_parameters(config, "training", load_pipeline(project, "training"), None)
    assert str(caught.value) == (
        "environment variable VERTEXKIT__PARAMETERS__SHARED_PARAM: parameters.shared_param: "
        "parameter 'shared_param' expects int, got str 'high'"
    )


def test_configured_parameters_unknown_pipeline_parameter(project: Path) -> None:
    (project / "config" / "dev.yaml").write_text(
        "pipelines:\n  training:\n    parameters:\n      epochs: 3\n"
    )
    config = load_config(project, "dev", environ={})
    with pytest.raises(ParameterError) as caught:
        configured_parameters(config, "training", load_pipeline(project, "training"), None)
    message = str(caught.value)
    assert message.startswith(
        "config/dev.yaml: pipelines.training.parameters.epochs: pipeline 'training' has no "
        "parameter 'epochs'; its parameters: "
    )
    assert "n (int)" in message and "ratio (float)" in message and "label (str)" in message


# --------------------------------------------------------------------------- compile_pipelines


def test_compile_writes_configured_defaults(project: Path) -> None:
    written = compile_pipelines(project, load_config(project, environ={}))
    assert written == [project / "build" / "pipelines" / "training.yaml"]
    inputs = compiled_inputs(written[0])
    assert {name: spec["defaultValue"] for name, spec in inputs.items()} == {
        "n": 3,
        "shared_param": 1,
        "label": "rows",
        "ratio": 1.0,
    }
    assert inputs["n"]["parameterType"] == "NUMBER_INTEGER"
    spec = yaml.safe_load(written[0].read_text())
    assert spec["pipelineInfo"]["name"] == "demo-training"
    assert set(spec["root"]["dag"]["tasks"]) == {"make-data", "describe"}


def test_compile_with_overlay_uses_its_values(project: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    written = compile_pipelines(
        project, load_config(project, "dev", environ={}), ["training"], output_dir=out
    )
    assert written == [out / "training.yaml"]
    assert compiled_inputs(written[0])["n"]["defaultValue"] == 5
    assert not (project / "build").exists()  # output_dir was honoured


def test_compile_unconfigured_parameters_keep_pipeline_defaults(project: Path) -> None:
    (project / "config" / "base.yaml").write_text(
        (project / "config" / "base.yaml")
        .read_text()
        .replace("      label: rows\n", "")
        .replace("      ratio: 1\n", "")
    )
    (written,) = compile_pipelines(project, load_config(project, environ={}))
    inputs = compiled_inputs(written)
    assert inputs["label"]["defaultValue"] == "default"
    assert inputs["ratio"]["defaultValue"] == 0.5


def test_compile_is_deterministic(project: Path, tmp_path: Path) -> None:
    add_pipeline(project, "failing")
    config = load_config(project, environ={})
    first = {p.name: p.read_bytes() for p in compile_pipelines(project, config)}
    second = {
        p.name: p.read_bytes()
        for p in compile_pipelines(project, config, output_dir=tmp_path / "again")
    }
    assert set(first) == {"failing.yaml", "training.yaml"}
    assert first == second


def test_compile_required_parameter_without_value(project: Path) -> None:
    (project / "config" / "base.yaml").write_text(
        (project / "config" / "base.yaml").read_text().replace("      n: 3\n", "")
    )
    (written,) = compile_pipelines(project, load_config(project, environ={}))
    # Still required in the compiled pipeline: the run supplies the value.
    assert compiled_inputs(written)["n"] == {"parameterType": "NUMBER_INTEGER"}


def test_compile_pipeline_with_required_and_typed_parameters(project: Path) -> None:
    add_pipeline(project, "required")
    written = compile_pipelines(project, load_config(project, environ={}), ["required"])
    inputs = compiled_inputs(written[0])
    assert "defaultValue" not in inputs["rows"] and "defaultValue" not in inputs["trials"]
    assert inputs["weights"]["defaultValue"] == {"a": 1.0}


def test_compile_config_names_a_pipeline_without_a_file(project: Path) -> None:
    (project / "config" / "dev.yaml").write_text("pipelines:\n  scoring:\n    parameters: {}\n")
    config = load_config(project, "dev", environ={})
    with pytest.raises(PipelineError) as caught:
        compile_pipelines(project, config)
    assert str(caught.value) == (
        "config/dev.yaml: pipelines.scoring: no file pipelines/scoring.py for this entry "
        "(pipeline files: training)"
    )
    assert not (project / "build").exists()


def test_compile_shared_parameter_nobody_declares(project: Path) -> None:
    config = load_config(project, environ={"VERTEXKIT__PARAMETERS__SEED": "7"})
    with pytest.raises(PipelineError) as caught:
        compile_pipelines(project, config)
    assert str(caught.value) == (
        "environment variable VERTEXKIT__PARAMETERS__SEED: parameters.seed: "
        "no pipeline declares this parameter"
    )


def test_compile_shared_parameter_declared_by_one_pipeline_is_enough(project: Path) -> None:
    add_pipeline(project, "failing")  # declares n but not shared_param
    written = compile_pipelines(project, load_config(project, environ={}))
    assert [p.name for p in written] == ["failing.yaml", "training.yaml"]
    assert "shared_param" not in compiled_inputs(written[0])
    assert compiled_inputs(written[0])["n"]["defaultValue"] == 1  # its own default


def test_compile_unknown_name_fails_and_writes_nothing(project: Path) -> None:
    with pytest.raises(PipelineError) as caught:
        compile_pipelines(project, load_config(project, environ={}), ["nope"])
    assert str(caught.value) == "no pipeline named 'nope' in pipelines/ (available: training)"
    assert not (project / "build").exists()


def test_compile_one_pipeline_ignores_other_broken_files(project: Path) -> None:
    add_pipeline(project, "broken")
    add_pipeline(project, "none")
    (project / "pipelines" / "typo.py").write_text("def pipeline(:\n")
    written = compile_pipelines(project, load_config(project, environ={}), ["training"])
    assert written == [project / "build" / "pipelines" / "training.yaml"]


def test_compile_the_broken_file_by_name_fails_with_its_error(project: Path) -> None:
    add_pipeline(project, "broken")
    with pytest.raises(PipelineError, match=r"^pipelines/broken\.py: import failed"):
        compile_pipelines(project, load_config(project, environ={}), ["broken"])
    assert not (project / "build").exists()


def test_compile_all_reports_each_broken_file_and_compiles_the_rest(project: Path) -> None:
    add_pipeline(project, "broken")
    add_pipeline(project, "none")
    add_pipeline(project, "nested")
    add_pipeline(project, "_steps")
    with pytest.raises(IncompleteCompileError) as caught:
        compile_pipelines(project, load_config(project, environ={}))
    assert str(caught.value).splitlines() == [
        "2 of 4 pipeline files could not be compiled:",
        "  pipelines/broken.py: import failed: ModuleNotFoundError: "
        "No module named 'vertexkit_no_such_module'",
        "  pipelines/none.py: no @dsl.pipeline function in this file; every "
        "pipelines/<name>.py defines one (put helper modules in pipelines/_<name>.py)",
        "compiled: build/pipelines/nested.yaml, build/pipelines/training.yaml",
    ]
    assert sorted(p.name for p in (project / "build" / "pipelines").iterdir()) == [
        "nested.yaml",
        "training.yaml",
    ]
    assert set(caught.value.broken) == {"broken", "none"}


def test_config_entry_of_a_broken_file_is_not_a_missing_file(project: Path) -> None:
    add_pipeline(project, "broken")
    (project / "config" / "dev.yaml").write_text("pipelines:\n  broken:\n    parameters: {x: 1}\n")
    config = load_config(project, "dev", environ={})
    written = compile_pipelines(project, config, ["training"])
    assert [p.name for p in written] == ["training.yaml"]


def test_compile_non_finite_float_is_a_parameter_error(project: Path) -> None:
    config = load_config(
        project, environ={"VERTEXKIT__PIPELINES__TRAINING__PARAMETERS__RATIO": ".inf"}
    )
    with pytest.raises(ParameterError, match="ratio"):
        compile_pipelines(project, config)


def test_compile_for_an_environment_replaces_only_the_base_image(project: Path) -> None:
    pushed = "europe-west4-docker.pkg.dev/acme-ml-dev/demo-images/tiny-base@sha256:" + "b" * 64
    config = load_config(project, "dev", environ={})
    (written,) = compile_pipelines(project, config, image=pushed)
    spec = yaml.safe_load(written.read_text())
    images = {
        name: executor["container"]["image"]
        for name, executor in spec["deploymentSpec"]["executors"].items()
    }
    assert images == {"exec-make-data": "python:3.11", "exec-describe": pushed}


def test_for_environment_keeps_other_images(project: Path) -> None:
    spec = {
        "deploymentSpec": {
            "executors": {
                "exec-a": {"container": {"image": "python:3.11"}},
                "exec-b": {"container": {"image": "tiny-base:python3.11"}},
                "exec-c": {"container": {"image": "tiny-base"}},
                "exec-d": {"container": {"image": "gcr.io/x/tiny-base:1"}},
                "exec-e": {"container": {"image": "tiny-base-extra:1"}},
            }
        }
    }
    for_environment(spec, image="r.example/p/tiny-base:abc", enable_caching=False)
    assert {k: v["container"]["image"] for k, v in spec["deploymentSpec"]["executors"].items()} == {
        "exec-a": "python:3.11",
        "exec-b": "r.example/p/tiny-base:abc",
        "exec-c": "r.example/p/tiny-base:abc",
        "exec-d": "gcr.io/x/tiny-base:1",
        "exec-e": "tiny-base-extra:1",
    }


# --------------------------------------------------------------------------- parameter types


def test_list_items_of_the_declared_type(project: Path) -> None:
    add_pipeline(project, "required")
    config = load_config(project, environ={})
    pipeline = load_pipeline(project, "required")
    values = configured_parameters(
        config, "required", pipeline, {"rows": "2", "trials": "[1, 2]", "weights": '{"b": 2}'}
    )
    assert values == {"rows": 2, "trials": [1, 2], "weights": {"b": 2}}
    with pytest.raises(ParameterError) as caught:
        configured_parameters(config, "required", pipeline, {"rows": "2", "trials": "[1.5]"})
    assert str(caught.value) == (
        "--param trials=[1.5]: parameter 'trials' expects list[int], got item [0] float 1.5"
    )
    with pytest.raises(ParameterError) as caught:
        configured_parameters(
            config, "required", pipeline, {"rows": "2", "trials": "[1]", "weights": '{"b": "x"}'}
        )
    assert str(caught.value) == (
        '--param weights={"b": "x"}: parameter \'weights\' expects dict[str, float], '
        "got item ['b'] str 'x'"
    )


def test_required_parameters_listed_in_name_order(project: Path) -> None:
    add_pipeline(project, "required")
    config = load_config(project, environ={})
    with pytest.raises(ParameterError) as caught:
        configured_parameters(config, "required", load_pipeline(project, "required"), None)
    assert str(caught.value) == (
        "pipeline 'required': missing required parameter(s): rows (int), trials (list[int]); "
        "set them in config or with --param key=value"
    )


def test_configured_list_with_wrong_items_names_the_file(project: Path) -> None:
    add_pipeline(project, "required")
    (project / "config" / "dev.yaml").write_text(
        "pipelines:\n  required:\n    parameters:\n      rows: 1\n      trials: [1, '2']\n"
    )
    config = load_config(project, "dev", environ={})
    with pytest.raises(ParameterError) as caught:
        compile_pipelines(project, config, ["required"])
    assert str(caught.value) == (
        "config/dev.yaml: pipelines.required.parameters.trials: parameter 'trials' expects "
        "list[int], got item [1] str '2'"
    )


# --------------------------------------------------------------------------- parameter rules

RULES = """\
pipelines:
  training:
    parameter_rules:
      n: {ge: 1, le: 10}
      ratio: {gt: 0, lt: 1.5}
      label: {choices: [rows, lines]}
"""


def with_rules(project: Path, rules: str = RULES) -> None:
    (project / "config" / "dev.yaml").write_text(rules)


def test_rules_refuse_values_before_anything_runs(project: Path) -> None:
    with_rules(project)
    config = load_config(project, "dev", environ={})
    pipeline = load_pipeline(project, "training")
    assert configured_parameters(config, "training", pipeline, {"n": "10"})["n"] == 10
    with pytest.raises(ParameterError) as caught:
        configured_parameters(config, "training", pipeline, {"n": "-3", "label": "cols"})
    assert str(caught.value).splitlines() == [
        "pipeline 'training': 2 parameter rules refuse their values:",
        "  --param label=cols: parameter 'label' is 'cols', but must be one of ['rows', 'lines'] "
        "(config/dev.yaml: pipelines.training.parameter_rules.label)",
        "  --param n=-3: parameter 'n' is -3, but must be >= 1 and <= 10 "
        "(config/dev.yaml: pipelines.training.parameter_rules.n)",
    ]


def test_rules_check_configured_values_when_compiling(project: Path) -> None:
    with_rules(project, RULES.replace("lt: 1.5", "lt: 1"))  # base.yaml sets ratio: 1
    with pytest.raises(ParameterError) as caught:
        compile_pipelines(project, load_config(project, "dev", environ={}))
    assert str(caught.value) == (
        "config/base.yaml: pipelines.training.parameters.ratio: parameter 'ratio' is 1.0, but "
        "must be > 0 and < 1 (config/dev.yaml: pipelines.training.parameter_rules.ratio)"
    )
    assert not (project / "build").exists()


def test_rule_for_an_unknown_parameter(project: Path) -> None:
    with_rules(project, "pipelines:\n  training:\n    parameter_rules:\n      depth: {ge: 0}\n")
    with pytest.raises(ParameterError) as caught:
        compile_pipelines(project, load_config(project, "dev", environ={}))
    assert str(caught.value) == (
        "config/dev.yaml: pipelines.training.parameter_rules.depth: pipeline 'training' has no "
        "parameter 'depth' (its parameters: label, n, ratio, shared_param)"
    )


def test_bounds_on_a_string_parameter(project: Path) -> None:
    with_rules(project, "pipelines:\n  training:\n    parameter_rules:\n      label: {ge: 0}\n")
    with pytest.raises(ParameterError, match="bounds apply to int and float parameters"):
        compile_pipelines(project, load_config(project, "dev", environ={}))
