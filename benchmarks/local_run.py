"""Wall time of the local training pipeline vs calling its component functions directly.

    python3 dev.py demo               # once: renders and installs build/demo
    .venv/bin/python benchmarks/local_run.py [--project build/demo] [--repeat 3]

The pipeline run goes through kfp.local (one subprocess per task, as `invoke run --local`
does); the direct run calls the same component functions in pipeline order in one fresh
Python process (imports paid once), with artifacts in a temporary folder. The warm figure,
with imports already done, is printed for reference.
Targets on a 2-core machine: training run under 15 s, ratio under 3. The figures are printed,
not asserted.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def direct(project: Path, workdir: Path) -> None:
    """Call the training components' functions in pipeline order, in this one process."""
    from kfp import dsl

    from vertexkit.project.config import load_config

    package = next((project / "components").glob("*/components.py")).parent.name
    components = importlib.import_module(f"{package}.components")

    def artifact(kind: type, label: str) -> dsl.Artifact:
        return kind(name=label, uri=str(workdir / label), metadata={})

    dataset, train, test = (artifact(dsl.Dataset, n) for n in ("dataset", "train", "test"))
    model, metrics = artifact(dsl.Model, "model"), artifact(dsl.Metrics, "metrics")
    components.load_data.python_func(source_uri="data/train.csv", dataset=dataset)
    components.validate_data.python_func(
        dataset=dataset,
        require_target=True,
        statistics=artifact(dsl.Artifact, "statistics"),
        summary=artifact(dsl.Metrics, "summary"),
    )
    components.split_data.python_func(
        dataset=dataset, test_fraction=0.2, seed=42, train=train, test=test
    )
    components.train_model.python_func(
        train=train, n_estimators=200, max_depth=8, seed=42, model=model
    )
    components.evaluate_model.python_func(
        model=model,
        test=test,
        positive_class="malignant",
        metrics=metrics,
        classification_metrics=artifact(dsl.ClassificationMetrics, "cm"),
    )
    components.register_model.python_func(
        model=model,
        metrics=metrics,
        model_name=load_config(project).parameters["model_name"],
        model_registry=str(workdir / "registry"),
        champion_metric="roc_auc",
        metric_direction="maximize",
        serving_image="",
    )


def measure(project: Path, repeat: int) -> None:
    """Runs inside the project's environment: both paths, each from a cold start."""
    import io

    from vertexkit.local.runner import run_local

    pipeline_times, direct_times, warm_times = [], [], []
    for _ in range(repeat):
        with tempfile.TemporaryDirectory() as tmp:
            os.environ["VERTEXKIT__LOCAL__OUTPUT_DIR"] = str(Path(tmp) / "local")
            run = run_local(project, "training", {}, console=io.StringIO())
            pipeline_times.append(run.seconds)
            # A fresh interpreter, so imports count once, as they would for a script.
            command = [sys.executable, __file__, "--direct", "--project", str(project)]
            started = time.perf_counter()
            subprocess.run([*command, "--workdir", tmp], check=True, stdout=subprocess.DEVNULL)
            direct_times.append(time.perf_counter() - started)
            started = time.perf_counter()
            (Path(tmp) / "warm").mkdir()
            with contextlib.redirect_stdout(io.StringIO()):
                direct(project, Path(tmp) / "warm")
            warm_times.append(time.perf_counter() - started)

    best_pipeline, best_direct = min(pipeline_times), min(direct_times)
    print(f"project: {project} ({os.cpu_count()} cores), best of {repeat}")
    ratio = best_pipeline / best_direct
    print(f"local training pipeline (kfp.local, 6 tasks): {best_pipeline:6.2f} s (target < 15 s)")
    print(f"same functions, one fresh process:            {best_direct:6.2f} s")
    print(f"ratio:                                        {ratio:6.2f}   (target < 3)")
    print(f"same functions, warm process (imports done):  {min(warm_times):6.2f} s")
    runs = zip(pipeline_times, direct_times, strict=True)
    print("all runs (pipeline / fresh process): " + ", ".join(f"{p:.2f}/{d:.2f}" for p, d in runs))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", type=Path, default=ROOT / "build" / "demo")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--direct", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    project = args.project.resolve()
    if args.direct:
        os.chdir(project)
        direct(project, args.workdir)
        return 0
    if args.inside:
        os.chdir(project)
        measure(project, args.repeat)
        return 0
    python = project / ".venv" / "bin" / "python"
    if not python.exists():
        print(f"{python} not found: run `python3 dev.py demo` first (or pass --project)")
        return 2
    command = [str(python), __file__, "--inside", "--project", str(project)]
    return subprocess.run([*command, "--repeat", str(args.repeat)]).returncode


if __name__ == "__main__":
    sys.exit(main())
