"""Every pipeline in pipelines/ compiles; the sample pipelines run end to end on the local
runner with the sample data."""

from pathlib import Path

import pytest
import yaml
from vertexkit.local import (
    LocalModelRegistry,
    LocalRunError,
    compile_pipelines,
    discover,
    run_local,
)
from vertexkit.project import ParameterError, load_config

# Every pipelines/<name>.py: a pipeline added there is tested without editing this file.
PIPELINES = sorted(discover(Path(__file__).resolve().parent.parent))
SAMPLES = pytest.mark.skipif(
    not {"training", "prediction"} <= set(PIPELINES),
    reason="the sample pipelines training and prediction are not in pipelines/",
)


@pytest.mark.parametrize("name", PIPELINES)
def test_pipeline_compiles(project_dir: Path, tmp_path: Path, name: str) -> None:
    # Only this pipeline's file must load; values set in config are checked against its
    # parameters (types, parameter_rules); required ones without a value stay required.
    (written,) = compile_pipelines(project_dir, load_config(project_dir), [name], tmp_path)
    spec = yaml.safe_load(written.read_text())
    assert spec["root"]["dag"]["tasks"], f"{written.name} has no tasks"


@SAMPLES
def test_training_then_prediction_locally(project_dir: Path, local_outputs: Path, capsys) -> None:
    registry = local_outputs / "registry"
    overrides = {"model_registry": str(registry), "n_estimators": "50"}
    trained = run_local(project_dir, "training", overrides)

    assert all(task.status == "SUCCESS" for task in trained.tasks)
    assert trained.outputs["metrics"].metadata["roc_auc"] > 0.9
    model_name = load_config(project_dir).parameters["model_name"]
    champion = LocalModelRegistry(registry, model_name).champion()
    assert champion is not None and champion.version == 1

    predicted = run_local(project_dir, "prediction", {"model_registry": str(registry)})
    predictions = Path(predicted.outputs["predictions"].path)
    assert predictions.suffix == ".csv"
    scored = predictions.read_text().splitlines()
    source = (project_dir / "data" / "score.csv").read_text().splitlines()
    assert len(scored) == len(source)  # one prediction per row, plus the header line
    assert "predicted_class" in scored[0]
    # The sample scoring data does not drift from the training data; the report says so.
    report = predicted.outputs["drift_report"]
    assert report.metadata["breached"] is False
    assert "No drift" in Path(report.path).read_text()
    assert "[6/6]" in capsys.readouterr().out


@SAMPLES
@pytest.mark.parametrize(
    ("override", "shown"),
    [
        ("test_fraction=2.5", "parameter 'test_fraction' is 2.5, but must be > 0 and < 1"),
        ("max_depth=-3", "parameter 'max_depth' is -3, but must be >= 0"),
        ("metric_direction=up", "parameter 'metric_direction' is 'up', but must be one of"),
    ],
)
def test_out_of_range_parameters_stop_the_run_before_it_starts(
    project_dir: Path, local_outputs: Path, override: str, shown: str
) -> None:
    key, _, value = override.partition("=")
    with pytest.raises(ParameterError, match=shown):
        run_local(project_dir, "training", {key: value})
    assert not (local_outputs / "local").exists()


@SAMPLES
def test_schema_violations_stop_the_training_run(project_dir: Path, local_outputs: Path) -> None:
    broken = local_outputs / "broken.csv"
    rows = (project_dir / "data" / "train.csv").read_text().splitlines()
    header = rows[0].split(",")
    first = rows[1].split(",")
    first[header.index("mean_radius")] = "-3.5"
    broken.write_text("\n".join([rows[0], ",".join(first), *rows[2:]]) + "\n")

    registry = local_outputs / "registry"
    with pytest.raises(LocalRunError) as failure:
        run_local(
            project_dir, "training", {"data_uri": str(broken), "model_registry": str(registry)}
        )
    message = str(failure.value)
    assert "failed at task 'validate-data'" in message
    assert "column 'mean_radius'" in message
    assert not registry.exists(), "nothing may be registered from invalid data"
