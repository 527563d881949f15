"""The pipelines compile, and run end to end on the local runner with the sample data."""

from pathlib import Path

import pytest
import yaml
from vertexkit.local.pipelines import compile_pipelines
from vertexkit.project.config import load_config
from vertexkit.local.runner import LocalRunError, run_local
from vertexkit.local.registry import LocalModelRegistry


def test_every_pipeline_compiles(project_dir: Path, tmp_path: Path) -> None:
    written = compile_pipelines(project_dir, load_config(project_dir), output_dir=tmp_path)
    assert {path.stem for path in written} == {"training", "prediction"}
    for path in written:
        spec = yaml.safe_load(path.read_text())
        assert spec["root"]["dag"]["tasks"], f"{path.name} has no tasks"


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
    assert "[6/6]" in capsys.readouterr().out


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
