"""Tests for vertexkit.local.pipelines: discovery, import errors, config checks, YAML."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from vertexkit.local.pipelines import (
    PipelineError,
    compile_pipelines,
    configured_parameters,
    discover,
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
        "pipelines/none.py: expected exactly one @dsl.pipeline function, found 0 (none)"
    )


def test_load_pipeline_file_with_two_pipelines(project: Path) -> None:
    add_pipeline(project, "two")
    with pytest.raises(PipelineError) as caught:
        load_pipeline(project, "two")
    assert str(caught.value) == (
        "pipelines/two.py: expected exactly one @dsl.pipeline function, found 2 (first, second)"
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
    with pytest.raises(ParameterError) as caught:
        compile_pipelines(project, load_config(project, environ={}))
    assert str(caught.value) == (
        "pipeline 'training': missing required parameter(s): n (int); "
        "set them in config or with --param key=value"
    )


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


def test_compile_one_broken_file_blocks_the_others(project: Path) -> None:
    add_pipeline(project, "broken")
    with pytest.raises(PipelineError, match=r"^pipelines/broken\.py: import failed"):
        compile_pipelines(project, load_config(project, environ={}), ["training"])
    assert not (project / "build").exists()


def test_compile_non_finite_float_is_a_parameter_error(project: Path) -> None:
    config = load_config(
        project, environ={"VERTEXKIT__PIPELINES__TRAINING__PARAMETERS__RATIO": ".inf"}
    )
    with pytest.raises(ParameterError, match="ratio"):
        compile_pipelines(project, config)
