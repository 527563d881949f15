"""Tests for vertexkit.local.registry: the local registry, champion/challenger selection."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import pytest

from vertexkit.local.registry import LocalModelRegistry


def _model_dir(tmp_path: Path, name: str) -> Path:
    """A fake model artifact directory with a nested file."""
    model = tmp_path / "artifacts" / name
    (model / "assets").mkdir(parents=True)
    (model / "model.pkl").write_bytes(name.encode())
    (model / "assets" / "vocab.txt").write_text("a\nb\n")
    return model


@pytest.fixture
def registry(tmp_path: Path) -> LocalModelRegistry:
    return LocalModelRegistry(tmp_path / "registry", "churn-model")


def test_first_registration_becomes_champion(tmp_path: Path, registry: LocalModelRegistry) -> None:
    result = registry.register(
        _model_dir(tmp_path, "m1"), {"accuracy": 0.95}, metric="accuracy", direction="maximize"
    )

    assert result.version == 1
    assert result.is_champion
    assert result.previous_champion is None
    assert result.previous_value is None
    assert result.reason == "version 1 is the first version: champion"
    version_dir = tmp_path / "registry" / "churn-model" / "versions" / "1"
    assert result.path == version_dir
    assert (version_dir / "model.pkl").read_bytes() == b"m1"
    assert (version_dir / "assets" / "vocab.txt").read_text() == "a\nb\n"
    registration = json.loads((version_dir / "registration.json").read_text())
    assert registration["version"] == 1
    assert registration["metrics"] == {"accuracy": 0.95}
    assert registration["champion_at_registration"] is True
    champion = json.loads((tmp_path / "registry" / "churn-model" / "champion.json").read_text())
    assert champion["version"] == 1
    assert champion["metric"] == "accuracy"
    assert champion["value"] == 0.95
    assert registry.champion_path() == version_dir


def test_better_version_becomes_champion(tmp_path: Path, registry: LocalModelRegistry) -> None:
    registry.register(
        _model_dir(tmp_path, "m1"), {"accuracy": 0.9561}, metric="accuracy", direction="maximize"
    )
    result = registry.register(
        _model_dir(tmp_path, "m2"),
        {"accuracy": 0.9737, "f1": 0.97},
        metric="accuracy",
        direction="maximize",
        source="run-2",
    )

    assert result.version == 2
    assert result.is_champion
    assert result.previous_champion == 1
    assert result.previous_value == 0.9561
    assert result.value == 0.9737
    assert result.reason == "version 2 beats champion version 1 on accuracy: 0.9737 > 0.9561"
    champion = registry.champion()
    assert champion is not None
    assert champion.version == 2
    assert champion.source == "run-2"
    assert champion.metrics == {"accuracy": 0.9737, "f1": 0.97}
    assert [(v.version, v.is_champion) for v in registry.versions()] == [(1, False), (2, True)]


def test_worse_version_stays_challenger(tmp_path: Path, registry: LocalModelRegistry) -> None:
    registry.register(
        _model_dir(tmp_path, "m1"), {"accuracy": 0.9561}, metric="accuracy", direction="maximize"
    )
    result = registry.register(
        _model_dir(tmp_path, "m2"), {"accuracy": 0.95}, metric="accuracy", direction="maximize"
    )

    assert result.version == 2
    assert not result.is_champion
    assert result.reason == (
        "version 2 does not beat champion version 1 on accuracy: 0.9500 <= 0.9561; "
        "champion unchanged"
    )
    assert registry.champion_path().name == "1"
    challenger = registry.get(2)
    assert not challenger.is_champion
    assert (challenger.path / "model.pkl").read_bytes() == b"m2"
    registration = json.loads((challenger.path / "registration.json").read_text())
    assert registration["champion_at_registration"] is False


def test_tie_keeps_champion(tmp_path: Path, registry: LocalModelRegistry) -> None:
    registry.register(
        _model_dir(tmp_path, "m1"), {"accuracy": 0.9}, metric="accuracy", direction="maximize"
    )
    result = registry.register(
        _model_dir(tmp_path, "m2"), {"accuracy": 0.9}, metric="accuracy", direction="maximize"
    )

    assert not result.is_champion
    assert "0.9000 <= 0.9000; champion unchanged" in result.reason
    assert registry.champion_path().name == "1"


def test_minimize_direction(tmp_path: Path, registry: LocalModelRegistry) -> None:
    registry.register(
        _model_dir(tmp_path, "m1"), {"rmse": 0.5}, metric="rmse", direction="minimize"
    )
    worse = registry.register(
        _model_dir(tmp_path, "m2"), {"rmse": 0.6}, metric="rmse", direction="minimize"
    )
    better = registry.register(
        _model_dir(tmp_path, "m3"), {"rmse": 0.4}, metric="rmse", direction="minimize"
    )

    assert not worse.is_champion
    assert "0.6000 >= 0.5000" in worse.reason
    assert better.is_champion
    assert better.reason == "version 3 beats champion version 1 on rmse: 0.4000 < 0.5000"
    assert registry.champion_path().name == "3"


def test_close_values_are_shown_with_enough_digits(
    tmp_path: Path, registry: LocalModelRegistry
) -> None:
    registry.register(
        _model_dir(tmp_path, "m1"), {"auc": 0.91231}, metric="auc", direction="maximize"
    )
    result = registry.register(
        _model_dir(tmp_path, "m2"), {"auc": 0.91234}, metric="auc", direction="maximize"
    )

    assert result.reason.endswith("on auc: 0.91234 > 0.91231")


def test_single_file_model(tmp_path: Path, registry: LocalModelRegistry) -> None:
    model_file = tmp_path / "model.joblib"
    model_file.write_bytes(b"weights")

    result = registry.register(
        model_file, {"accuracy": 0.8}, metric="accuracy", direction="maximize"
    )

    assert (result.path / "model.joblib").read_bytes() == b"weights"


def test_missing_metric_names_metric_and_available(
    tmp_path: Path, registry: LocalModelRegistry
) -> None:
    with pytest.raises(ValueError, match=r"'roc_auc'.*accuracy, f1"):
        registry.register(
            _model_dir(tmp_path, "m1"),
            {"f1": 0.9, "accuracy": 0.9},
            metric="roc_auc",
            direction="maximize",
        )
    assert registry.versions() == []


def test_invalid_direction_rejected(tmp_path: Path, registry: LocalModelRegistry) -> None:
    with pytest.raises(ValueError, match="direction 'max'"):
        registry.register(
            _model_dir(tmp_path, "m1"),
            {"accuracy": 0.9},
            metric="accuracy",
            direction="max",  # type: ignore[arg-type]
        )


def test_non_finite_metric_rejected(tmp_path: Path, registry: LocalModelRegistry) -> None:
    with pytest.raises(ValueError, match="'loss' must be finite"):
        registry.register(
            _model_dir(tmp_path, "m1"),
            {"accuracy": 0.9, "loss": float("nan")},
            metric="accuracy",
            direction="maximize",
        )


@pytest.mark.parametrize(
    "name",
    ["", "Churn", "1model", "-model", "_model", "my model", "model.v2", "modèle", "a" * 64],
)
def test_bad_model_names_rejected(tmp_path: Path, name: str) -> None:
    with pytest.raises(ValueError, match=r"invalid model name .*starting with a letter"):
        LocalModelRegistry(tmp_path, name)


@pytest.mark.parametrize("name", ["m", "churn-model", "churn_model_v2", "a" * 63])
def test_good_model_names_accepted(tmp_path: Path, name: str) -> None:
    assert LocalModelRegistry(tmp_path, name).model_name == name


def test_unknown_version_lists_existing(tmp_path: Path, registry: LocalModelRegistry) -> None:
    for name in ("m1", "m2"):
        registry.register(
            _model_dir(tmp_path, name), {"accuracy": 0.9}, metric="accuracy", direction="maximize"
        )

    with pytest.raises(LookupError, match=r"'churn-model'.*no version 7.*existing versions: 1, 2"):
        registry.get(7)


def test_no_champion(registry: LocalModelRegistry) -> None:
    assert registry.champion() is None
    assert registry.versions() == []
    with pytest.raises(
        LookupError,
        match=r"no champion for model 'churn-model' in .*registry: run the training pipeline first",
    ):
        registry.champion_path()
    with pytest.raises(LookupError, match="no champion"):
        registry.copy_champion_to(registry.root / "out")


def test_copy_champion_to(tmp_path: Path, registry: LocalModelRegistry) -> None:
    registry.register(
        _model_dir(tmp_path, "m1"), {"accuracy": 0.8}, metric="accuracy", direction="maximize"
    )
    registry.register(
        _model_dir(tmp_path, "m2"), {"accuracy": 0.9}, metric="accuracy", direction="maximize"
    )
    dest = tmp_path / "kfp" / "outputs" / "model"

    copied = registry.copy_champion_to(dest)

    assert copied.version == 2
    assert copied.is_champion
    assert sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*")) == [
        "assets",
        "assets/vocab.txt",
        "model.pkl",
    ]
    assert (dest / "model.pkl").read_bytes() == b"m2"


def _register_in_subprocess(
    root: str, model_dir: str, accuracies: list[float], start: multiprocessing.synchronize.Event
) -> None:
    registry = LocalModelRegistry(root, "concurrent")
    start.wait()
    for accuracy in accuracies:
        registry.register(
            model_dir, {"accuracy": accuracy}, metric="accuracy", direction="maximize"
        )


def test_concurrent_registrations(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Event()
    model_dir = _model_dir(tmp_path, "shared")
    root = tmp_path / "registry"
    per_process = [[0.1 * p + 0.01 * i for i in range(3)] for p in range(1, 5)]
    processes = [
        ctx.Process(
            target=_register_in_subprocess, args=(str(root), str(model_dir), accuracies, start)
        )
        for accuracies in per_process
    ]
    for process in processes:
        process.start()
    start.set()
    for process in processes:
        process.join(timeout=30)
    assert [p.exitcode for p in processes] == [0, 0, 0, 0]

    registry = LocalModelRegistry(root, "concurrent")
    versions = registry.versions()
    assert [v.version for v in versions] == list(range(1, 13))
    registered = sorted(v.metrics["accuracy"] for v in versions)
    assert registered == sorted(a for accuracies in per_process for a in accuracies)
    assert sum(v.is_champion for v in versions) == 1
    champion_file = json.loads((root / "concurrent" / "champion.json").read_text())
    best = max(versions, key=lambda v: v.metrics["accuracy"])
    assert champion_file["version"] == best.version
    assert champion_file["value"] == best.metrics["accuracy"]
    assert sorted(p.name for p in (root / "concurrent").iterdir()) == [
        ".lock",
        "champion.json",
        "versions",
    ]
