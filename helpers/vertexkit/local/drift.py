"""Data drift: the reference statistics of training data, and how far scored data is from them.

The measures are those of Vertex AI Model Monitoring:

* numeric features: the Jensen-Shannon divergence (base 2, so between 0 and 1) between the
  reference's histogram and the current data's histogram on the same bins. The bins are the
  reference's quantiles (``BINS`` equal-frequency bins, ties merged), plus one bin below the
  reference's minimum and one above its maximum, which the reference leaves empty: values the
  training data never saw count as drift;
* categorical features: the L-infinity distance, the largest difference between the share of
  any one category in the reference and in the current data (categories unseen in training
  included);

and for every feature the missing-value rate (its increase over the reference's counts as a
breach) and the out-of-range rate: the share of non-missing current values outside the
reference's [min, max] (numeric) or in a category the reference never saw (categorical).

A distribution with no values at all (an empty or fully missing column) is at distance 0 from
another empty one and at the maximal distance, 1, from any non-empty one.

Pure functions of pandas/numpy data: no I/O, no cloud. :mod:`vertexkit.local.drift_report`
draws the report; :mod:`vertexkit.gcp.monitoring` runs the check in a pipeline.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

FORMAT_VERSION = 1
BINS = 20  # equal-frequency bins of a numeric feature's reference histogram
MEASURES = ("distance", "missing_rate", "out_of_range_rate")
DEFAULT_THRESHOLDS: dict[str, float] = {
    "distance": 0.3,
    "missing_rate": 0.05,
    "out_of_range_rate": 0.05,
}


class DriftError(ValueError):
    """Reference statistics are missing or malformed, or the data cannot be compared."""


# --------------------------------------------------------------------------- reference


def _is_numeric(series: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)


def _float(value: Any) -> float:
    return float(value)


def feature_statistics(series: pd.Series, *, bins: int = BINS) -> dict[str, Any]:
    """One feature's reference: type, counts, range and histogram (numeric) or frequencies."""
    rows = len(series)
    values = series.dropna()
    stats: dict[str, Any] = {"rows": rows, "count": len(values), "missing": rows - len(values)}
    if _is_numeric(series):
        numbers = values.to_numpy(dtype=float)
        numbers = numbers[np.isfinite(numbers)]
        stats["type"] = "numeric"
        if len(numbers):
            edges = np.unique(np.quantile(numbers, np.linspace(0.0, 1.0, bins + 1)))
            counts = _histogram(numbers, edges)
            stats.update(
                min=_float(numbers.min()),
                max=_float(numbers.max()),
                mean=_float(numbers.mean()),
                std=_float(numbers.std()),
                edges=[_float(e) for e in edges],
                counts=[int(c) for c in counts[1:-1]],
            )
        else:
            stats.update(min=None, max=None, mean=None, std=None, edges=[], counts=[])
    else:
        frequencies = _category_counts(values)
        stats["type"] = "categorical"
        stats["frequencies"] = dict(sorted(frequencies.items(), key=lambda kv: (-kv[1], kv[0])))
    return {"type": stats.pop("type"), **stats}


def reference_statistics(frame: pd.DataFrame, *, bins: int = BINS) -> dict[str, Any]:
    """The statistics that drift is measured against, as JSON-ready data (no NaN).

    Per feature (every column of ``frame``: pass the features, not the label): type
    (numeric/categorical), row, value and missing counts; for numeric features min, max, mean,
    standard deviation, the edges of ``bins`` equal-frequency bins (the reference's quantiles,
    duplicates merged) and the count in each bin; for categorical ones the count of each
    category.
    """
    if bins < 1:
        raise ValueError(f"bins must be at least 1, got {bins}")
    return {
        "format": FORMAT_VERSION,
        "rows": len(frame),
        "features": {str(name): feature_statistics(frame[name], bins=bins) for name in frame},
    }


def check_reference(reference: Any, source: str = "reference statistics") -> dict[str, Any]:
    """``reference`` if :func:`reference_statistics` wrote it; else DriftError naming ``source``."""
    if not isinstance(reference, Mapping) or not isinstance(reference.get("features"), Mapping):
        raise DriftError(f"{source}: not drift reference statistics (no 'features' mapping)")
    if reference.get("format") != FORMAT_VERSION:
        raise DriftError(
            f"{source}: format {reference.get('format')!r}, expected {FORMAT_VERSION}: "
            "retrain the model with this vertexkit version to refresh it"
        )
    for name, stats in reference["features"].items():
        kind = stats.get("type") if isinstance(stats, Mapping) else None
        if kind not in ("numeric", "categorical"):
            raise DriftError(f"{source}: feature {name!r} has no type numeric or categorical")
    return dict(reference)


# --------------------------------------------------------------------------- measures


def _histogram(values: np.ndarray, edges: np.ndarray | list[float]) -> np.ndarray:
    """Counts: [below edges[0], one per bin between consecutive edges, above edges[-1]].

    Bins are closed on the left, the last one on both sides; with a single edge (a constant
    reference) the one bin holds exactly that value. Counted with one vectorised comparison
    per edge, which is several times faster than a binary search per value.
    """
    edges = np.asarray(edges, dtype=float)
    below = np.count_nonzero(values < edges[0])
    above = np.count_nonzero(values > edges[-1])
    # From the count of values at or above each inner edge, the bins are differences.
    at_least = [np.count_nonzero(values >= edge) for edge in edges[1:-1]]
    inside = -np.diff(np.array([len(values) - below, *at_least, above], dtype=np.int64))
    return np.concatenate([[below], inside, [above]]).astype(np.int64)


def _shares(counts: np.ndarray) -> np.ndarray | None:
    total = counts.sum()
    return counts / total if total else None


def jensen_shannon(p_counts: Any, q_counts: Any) -> float:
    """Jensen-Shannon divergence (base 2: 0 identical, 1 disjoint) of two count vectors."""
    p, q = _shares(np.asarray(p_counts, float)), _shares(np.asarray(q_counts, float))
    if p is None or q is None:
        return 0.0 if p is None and q is None else 1.0
    m = (p + q) / 2

    def kl(a: np.ndarray) -> float:
        mask = a > 0
        return float(np.sum(a[mask] * np.log2(a[mask] / m[mask])))

    return min(max((kl(p) + kl(q)) / 2, 0.0), 1.0)


def l_infinity(p_counts: Mapping[str, int], q_counts: Mapping[str, int]) -> float:
    """The largest difference of any category's share between two count mappings."""
    p_total, q_total = sum(p_counts.values()), sum(q_counts.values())
    if not p_total or not q_total:
        return 0.0 if not p_total and not q_total else 1.0
    categories = set(p_counts) | set(q_counts)
    return max(abs(p_counts.get(c, 0) / p_total - q_counts.get(c, 0) / q_total) for c in categories)


@dataclass(frozen=True)
class FeatureDrift:
    """How one feature of the current data compares with the reference."""

    name: str
    kind: str  # numeric or categorical
    measure: str  # jensen_shannon or l_infinity
    values: dict[str, float]  # distance, missing_rate, out_of_range_rate
    thresholds: dict[str, float]
    reference: dict[str, Any]  # what the report plots: bins/categories and both shares
    current: dict[str, Any]

    @property
    def breaches(self) -> list[str]:
        """The measures above their thresholds, in ``MEASURES`` order."""
        return [m for m in MEASURES if self.values[m] > self.thresholds[m]]

    @property
    def breached(self) -> bool:
        return bool(self.breaches)


@dataclass(frozen=True)
class DriftResult:
    """Every feature's drift, and what is missing on either side."""

    features: list[FeatureDrift]
    rows: int
    reference_rows: int
    missing_features: list[str] = field(default_factory=list)  # in the reference, not the data
    new_features: list[str] = field(default_factory=list)  # in the data, not the reference

    @property
    def breaches(self) -> list[FeatureDrift]:
        return [f for f in self.features if f.breached]

    @property
    def breached(self) -> bool:
        return bool(self.breaches or self.missing_features)

    def metrics(self) -> dict[str, float]:
        """Flat metrics for a KFP Metrics artifact: counts, then one value per feature/measure."""
        values: dict[str, float] = {
            "drift_breached": float(self.breached),
            "features_breached": float(len(self.breaches) + len(self.missing_features)),
            "features_checked": float(len(self.features)),
            "rows": float(self.rows),
        }
        for feature in self.features:
            for measure in MEASURES:
                values[f"{feature.name}.{measure}"] = round(feature.values[measure], 6)
        return values

    def summary(self) -> dict[str, Any]:
        """A JSON-ready account of the breaches (for the log line and the report)."""
        return {
            "breached": self.breached,
            "rows": self.rows,
            "features_checked": len(self.features),
            "breaches": {
                f.name: {m: round(f.values[m], 6) for m in f.breaches} for f in self.breaches
            },
            "missing_features": self.missing_features,
        }


def _thresholds(
    name: str, default: Mapping[str, float], per_feature: Mapping[str, Mapping[str, float]]
) -> dict[str, float]:
    merged = {**DEFAULT_THRESHOLDS, **default, **per_feature.get(name, {})}
    return {m: float(merged[m]) for m in MEASURES}


def _numeric_drift(series: pd.Series, ref: Mapping[str, Any]) -> tuple[int, dict, dict, dict]:
    values = pd.to_numeric(series, errors="coerce").to_numpy(dtype=float)
    present = values[~np.isnan(values)]
    missing = len(values) - len(present)
    edges = ref.get("edges") or []
    ref_counts = np.array([0, *ref.get("counts", []), 0], dtype=float)
    if not edges:  # the reference had no values
        distance = 0.0 if not len(present) else 1.0
        cur_counts = np.array([0, len(present), 0], dtype=float)
        out_of_range = 1.0 if len(present) else 0.0
        ref_counts = np.zeros(3)
    else:
        cur_counts = _histogram(present, edges).astype(float)
        distance = jensen_shannon(ref_counts, cur_counts)
        out_of_range = (cur_counts[0] + cur_counts[-1]) / len(present) if len(present) else 0.0
    plotted = {"edges": list(edges)}
    return (
        missing,
        {"distance": distance, "out_of_range_rate": float(out_of_range)},
        {**plotted, "shares": _list_shares(ref_counts)},
        {**plotted, "shares": _list_shares(cur_counts)},
    )


def _list_shares(counts: np.ndarray) -> list[float]:
    shares = _shares(counts)
    return [0.0] * len(counts) if shares is None else [float(s) for s in shares]


def _category_counts(series: pd.Series) -> dict[str, int]:
    """Counts of the non-missing values by their text (1 and "1" are one category)."""
    counts: dict[str, int] = {}
    for key, count in series.value_counts(dropna=True).items():
        counts[str(key)] = counts.get(str(key), 0) + int(count)
    return counts


def _categorical_drift(series: pd.Series, ref: Mapping[str, Any]) -> tuple[int, dict, dict, dict]:
    ref_counts = {str(k): int(v) for k, v in (ref.get("frequencies") or {}).items()}
    cur_counts = _category_counts(series)
    present = sum(cur_counts.values())
    unseen = sum(v for k, v in cur_counts.items() if k not in ref_counts)
    categories = sorted(set(ref_counts) | set(cur_counts), key=lambda c: (-ref_counts.get(c, 0), c))
    ref_total, cur_total = sum(ref_counts.values()) or 1, present or 1
    ref_shares = [ref_counts.get(c, 0) / ref_total for c in categories]
    cur_shares = [cur_counts.get(c, 0) / cur_total for c in categories]
    return (
        len(series) - present,
        {
            "distance": l_infinity(ref_counts, cur_counts),
            "out_of_range_rate": unseen / present if present else 0.0,
        },
        {"categories": categories, "shares": ref_shares},
        {"categories": categories, "shares": cur_shares},
    )


def compare(
    frame: pd.DataFrame,
    reference: Mapping[str, Any],
    *,
    thresholds: Mapping[str, float] | None = None,
    feature_thresholds: Mapping[str, Mapping[str, float]] | None = None,
) -> DriftResult:
    """Measure each reference feature's drift in ``frame`` (extra columns, such as predictions,
    are listed as new features and not measured; a reference feature missing from ``frame`` is
    a breach)."""
    reference = check_reference(reference)
    default, per_feature = thresholds or {}, feature_thresholds or {}
    rows = len(frame)
    results = []
    for name, ref in reference["features"].items():
        if name not in frame.columns:
            continue
        ref_rows = ref.get("rows") or 0
        ref_missing_rate = (ref.get("missing", 0) / ref_rows) if ref_rows else 0.0
        if ref["type"] == "numeric":
            missing, measured, ref_plot, cur_plot = _numeric_drift(frame[name], ref)
            measure = "jensen_shannon"
        else:
            missing, measured, ref_plot, cur_plot = _categorical_drift(frame[name], ref)
            measure = "l_infinity"
        missing_rate = missing / rows if rows else 0.0
        values = {
            "distance": float(measured["distance"]),
            # The increase over the reference's own rate: training data with gaps is no drift.
            "missing_rate": max(missing_rate - ref_missing_rate, 0.0),
            "out_of_range_rate": float(measured["out_of_range_rate"]),
        }
        results.append(
            FeatureDrift(
                name=name,
                kind=ref["type"],
                measure=measure,
                values={k: (v if math.isfinite(v) else 1.0) for k, v in values.items()},
                thresholds=_thresholds(name, default, per_feature),
                reference={**ref_plot, "missing_rate": ref_missing_rate},
                current={**cur_plot, "missing_rate": missing_rate},
            )
        )
    known = set(reference["features"])
    return DriftResult(
        features=results,
        rows=rows,
        reference_rows=int(reference.get("rows") or 0),
        missing_features=[n for n in reference["features"] if n not in frame.columns],
        new_features=[str(c) for c in frame.columns if c not in known],
    )
