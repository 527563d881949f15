"""What the prediction pipeline's drift step costs, next to reading the scored data.

    .venv/bin/python benchmarks/drift.py [--rows 10000 100000 1000000] [--repeat 3]

For each size it writes a CSV of that many rows of 30 features (25 numeric, 5 categorical; the
second half of the numeric ones shifted, so that drift is found and the report has breaches),
then times, best of ``--repeat``:

* ``read``: ``pandas.read_csv`` of the file, what the drift step's component does first;
* ``drift``: :func:`vertexkit.local.drift.compare` of the data with reference statistics of a
  10,000-row training sample: the drift step's work that grows with the rows;
* ``reference``: :func:`vertexkit.local.drift.reference_statistics` of the same rows, what
  training does once per model;

and once the HTML report (:func:`vertexkit.local.drift_report.render_html`), whose cost does not
depend on the rows (it plots bin shares). Targets: ``drift`` under 2x ``read``, and linear in the
rows (the seconds per million rows stay flat). Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from vertexkit.local.drift import compare, reference_statistics
from vertexkit.local.drift_report import render_html

NUMERIC, CATEGORICAL = 25, 5


def frame(rows: int, *, shifted: bool, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    data: dict[str, Any] = {}
    for i in range(NUMERIC):
        shift = 2.0 + i / 5 if shifted and i >= NUMERIC // 2 else 0.0
        data[f"n{i:02d}"] = np.round(rng.normal(10.0 + i + shift, 1.0 + i / 10, rows), 4)
    for i in range(CATEGORICAL):
        weights = np.array([5, 3, 2, 1, 1], dtype=float)
        if shifted and i == 0:
            weights = weights[::-1]
        data[f"c{i}"] = rng.choice(list("abcde"), size=rows, p=weights / weights.sum())
    return pd.DataFrame(data)


def best(action: Callable[[], Any], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    reference = reference_statistics(frame(10_000, shifted=False, seed=1))
    print(f"{'rows':>10} {'read s':>8} {'drift s':>8} {'ratio':>6} {'drift s/M':>10} "
          f"{'reference s':>11}")  # fmt: skip
    result = None
    with tempfile.TemporaryDirectory() as tmp:
        for rows in args.rows:
            path = Path(tmp) / f"score-{rows}.csv"
            frame(rows, shifted=True, seed=2).to_csv(path, index=False)
            read = best(lambda path=path: pd.read_csv(path), args.repeat)
            scored = pd.read_csv(path)
            drift = best(lambda scored=scored: compare(scored, reference), args.repeat)
            profile = best(lambda scored=scored: reference_statistics(scored), args.repeat)
            result = compare(scored, reference)
            print(
                f"{rows:>10} {read:>8.3f} {drift:>8.3f} {drift / read:>6.2f} "
                f"{drift / rows * 1e6:>10.3f} {profile:>11.3f}"
            )
    assert result is not None
    report = best(lambda: render_html(result), 1)
    print(
        f"report: {report:.2f} s for {len(result.features)} plots, whatever the rows "
        f"({len(result.breaches)} features breached)"
    )


if __name__ == "__main__":
    main()
