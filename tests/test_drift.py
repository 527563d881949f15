"""Drift measures against values computed by hand, on fixtures small enough to check on paper."""

from __future__ import annotations

import json
import re
from math import log2

import numpy as np
import pandas as pd
import pytest

from vertexkit.local.drift import (
    DriftError,
    check_reference,
    compare,
    jensen_shannon,
    l_infinity,
    reference_statistics,
)
from vertexkit.local.drift_report import find_local_report, render_html


def js(p: list[float], q: list[float]) -> float:
    """The definition, written out: (KL(p||m) + KL(q||m)) / 2 with m the mean, base 2."""
    m = [(a + b) / 2 for a, b in zip(p, q, strict=True)]
    kl_p = sum(a * log2(a / c) for a, c in zip(p, m, strict=True) if a)
    kl_q = sum(b * log2(b / c) for b, c in zip(q, m, strict=True) if b)
    return (kl_p + kl_q) / 2


def roundtrip(frame: pd.DataFrame, **kwargs: int) -> dict:
    """Reference statistics as they are stored: JSON."""
    return json.loads(json.dumps(reference_statistics(frame, **kwargs), allow_nan=False))


def test_jensen_shannon_by_hand() -> None:
    assert jensen_shannon([5, 5], [5, 5]) == 0.0
    assert jensen_shannon([1, 0], [0, 1]) == 1.0  # disjoint: the maximum, base 2
    # p = (1/2, 1/2), q = (1, 0), m = (3/4, 1/4):
    # KL(p||m) = 1/2 log2(2/3) + 1/2 log2(2) = 0.207519; KL(q||m) = log2(4/3) = 0.415037
    assert jensen_shannon([2, 2], [3, 0]) == pytest.approx(0.311278, abs=1e-6)
    assert jensen_shannon([0, 0], [0, 0]) == 0.0  # both empty
    assert jensen_shannon([0, 0], [1, 2]) == 1.0  # one empty


def test_l_infinity_by_hand() -> None:
    # p: a 3/4, b 1/4; q: a 1/4, b 1/4, c 1/2 -> max(|1/2|, 0, |1/2|)
    assert l_infinity({"a": 3, "b": 1}, {"a": 1, "b": 1, "c": 2}) == pytest.approx(0.5)
    assert l_infinity({"a": 1, "b": 3}, {"a": 10, "b": 30}) == 0.0
    # empty categories: nothing on both sides is no drift, nothing on one side is the maximum
    assert l_infinity({}, {}) == 0.0
    assert l_infinity({}, {"a": 1}) == 1.0
    assert l_infinity({"a": 0}, {"a": 0, "b": 0}) == 0.0


def test_reference_statistics_of_a_numeric_and_a_categorical_feature() -> None:
    frame = pd.DataFrame({"x": [1.0, 2, 3, 4, 5, 6, 7, 8], "colour": [*"aabbbbc", None]})
    reference = roundtrip(frame, bins=2)
    x, colour = reference["features"]["x"], reference["features"]["colour"]
    assert reference["rows"] == 8
    # quantiles 0, 0.5, 1 of 1..8 are 1, 4.5, 8: four values in each bin
    assert x == {
        "type": "numeric",
        "rows": 8,
        "count": 8,
        "missing": 0,
        "min": 1.0,
        "max": 8.0,
        "mean": 4.5,
        "std": pytest.approx(np.sqrt(5.25)),
        "edges": [1.0, 4.5, 8.0],
        "counts": [4, 4],
    }
    assert colour == {
        "type": "categorical",
        "rows": 8,
        "count": 7,
        "missing": 1,
        "frequencies": {"b": 4, "a": 2, "c": 1},
    }


def test_numeric_drift_on_shared_bins_with_values_beyond_the_range() -> None:
    reference = roundtrip(pd.DataFrame({"x": [1.0, 2, 3, 4, 5, 6, 7, 8]}), bins=2)
    # current: 1, 2, 3 in the first bin, 9 above the maximum.
    # reference shares over (below, bin 1, bin 2, above): 0, 1/2, 1/2, 0; current 0, 3/4, 0, 1/4
    result = compare(pd.DataFrame({"x": [1.0, 2, 3, 9]}), reference)
    (x,) = result.features
    assert x.measure == "jensen_shannon"
    assert x.values["distance"] == pytest.approx(js([0, 0.5, 0.5, 0], [0, 0.75, 0, 0.25]))
    assert x.values["distance"] == pytest.approx(0.393156, abs=1e-6)
    assert x.values["out_of_range_rate"] == 0.25  # 9 > max 8
    assert x.values["missing_rate"] == 0.0
    assert x.breaches == ["distance", "out_of_range_rate"]
    assert x.current["shares"] == [0, 0.75, 0, 0.25]


def test_a_constant_column_has_one_bin_and_everything_else_is_out_of_range() -> None:
    reference = roundtrip(pd.DataFrame({"c": [2.0, 2.0, 2.0, 2.0]}))
    assert reference["features"]["c"]["edges"] == [2.0]
    assert reference["features"]["c"]["counts"] == [4]
    same = compare(pd.DataFrame({"c": [2.0] * 10}), reference).features[0]
    assert same.values == {"distance": 0.0, "missing_rate": 0.0, "out_of_range_rate": 0.0}
    # 1 below, 2 twice, 3 above: reference (0, 1, 0), current (1/4, 1/2, 1/4)
    moved = compare(pd.DataFrame({"c": [1.0, 2.0, 2.0, 3.0]}), reference).features[0]
    assert moved.values["distance"] == pytest.approx(js([0, 1, 0], [0.25, 0.5, 0.25]))
    assert moved.values["out_of_range_rate"] == 0.5


def test_missing_values_count_as_their_increase_over_the_reference() -> None:
    reference = roundtrip(pd.DataFrame({"x": [1.0, None, 3.0, 4.0]}))  # 1 of 4 missing
    same_rate = compare(pd.DataFrame({"x": [None, 3.0, 4.0, 1.0]}), reference).features[0]
    assert same_rate.values["missing_rate"] == 0.0
    more = compare(pd.DataFrame({"x": [None, None, 3.0, 4.0]}), reference).features[0]
    assert more.values["missing_rate"] == pytest.approx(0.25)  # 2/4 - 1/4
    assert "missing_rate" in more.breaches


def test_unseen_categories_are_out_of_range_and_drift() -> None:
    reference = roundtrip(pd.DataFrame({"colour": ["a", "a", "b", "b"]}))
    result = compare(pd.DataFrame({"colour": ["a", "c", "c", None]}), reference)
    (colour,) = result.features
    assert colour.measure == "l_infinity"
    # reference a 1/2, b 1/2; current (3 values) a 1/3, c 2/3 -> max |diff| = 2/3
    assert colour.values["distance"] == pytest.approx(2 / 3)
    assert colour.values["out_of_range_rate"] == pytest.approx(2 / 3)  # c unseen
    assert colour.values["missing_rate"] == pytest.approx(0.25)
    assert colour.current["categories"] == ["a", "b", "c"]


def test_empty_columns_on_either_side() -> None:
    reference = roundtrip(pd.DataFrame({"x": pd.Series([None, None], dtype=float)}))
    assert reference["features"]["x"]["edges"] == []
    nothing = compare(pd.DataFrame({"x": pd.Series([None], dtype=float)}), reference)
    assert nothing.features[0].values["distance"] == 0.0
    something = compare(pd.DataFrame({"x": [1.0]}), reference).features[0]
    assert something.values["distance"] == 1.0
    assert something.values["out_of_range_rate"] == 1.0
    categorical = roundtrip(pd.DataFrame({"c": ["a"]}))
    emptied = compare(pd.DataFrame({"c": pd.Series([None], dtype=object)}), categorical)
    assert emptied.features[0].values["distance"] == 1.0
    assert emptied.features[0].values["missing_rate"] == 1.0


def test_thresholds_default_and_per_feature() -> None:
    reference = roundtrip(pd.DataFrame({"a": ["x", "y"], "b": ["x", "y"]}))
    current = pd.DataFrame({"a": ["x", "x", "x", "y"], "b": ["x", "x", "x", "y"]})  # L-inf 0.25
    loose = compare(current, reference)
    assert not loose.breached
    strict = compare(current, reference, feature_thresholds={"b": {"distance": 0.2}})
    assert [f.name for f in strict.breaches] == ["b"]
    assert strict.features[0].thresholds["distance"] == 0.3
    equal = compare(current, reference, thresholds={"distance": 0.25})
    assert not equal.breached  # a breach is a value above its threshold


def test_features_missing_from_the_data_breach_and_extra_columns_are_listed() -> None:
    reference = roundtrip(pd.DataFrame({"a": [1.0, 2.0], "b": [1.0, 2.0]}))
    result = compare(pd.DataFrame({"a": [1.0, 2.0], "predicted": ["x", "y"]}), reference)
    assert result.breached and result.missing_features == ["b"]
    assert result.new_features == ["predicted"]
    assert result.metrics()["features_breached"] == 1.0
    assert result.summary()["missing_features"] == ["b"]


def test_malformed_reference_statistics_are_refused() -> None:
    with pytest.raises(DriftError, match="no 'features' mapping"):
        check_reference({"rows": 3}, "model/statistics.json")
    with pytest.raises(DriftError, match="format 7, expected 1"):
        check_reference({"format": 7, "features": {}})
    with pytest.raises(DriftError, match="feature 'x' has no type"):
        check_reference({"format": 1, "features": {"x": {"type": "date"}}})


def test_the_report_has_the_verdict_and_one_plot_per_feature() -> None:
    reference = roundtrip(pd.DataFrame({"x": [1.0, 2, 3, 4], "c": list("abab")}))
    result = compare(pd.DataFrame({"x": [9.0, 9, 9, 9], "c": list("abab")}), reference)
    page = render_html(result, {"run": "r-1"})
    assert page.count('<figure class="feature') == 2
    assert page.count("<svg") == 2
    assert 'data-feature="x"' in page and 'figure class="feature breached" data-feature="x"' in page
    assert "Drift: 1 of 2 features breach their thresholds (x)" in page
    # self-contained: nothing loaded from elsewhere
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page), "external resource"
    assert "<link" not in page and "<script src" not in page
    summary = page.split("id='drift-summary'>", 1)[1].split("</script>", 1)[0]
    assert json.loads(summary)["breaches"]["x"]["out_of_range_rate"] == 1.0


def test_find_local_report_takes_the_newest_run_of_the_pipeline(tmp_path) -> None:
    import os

    for name, stamp in [("demo-prediction-1", 100), ("demo-prediction-2", 200)]:
        (tmp_path / name / "check-drift").mkdir(parents=True)
        (tmp_path / name / "check-drift" / "report.html").write_text("<html></html>")
        os.utime(tmp_path / name, (stamp, stamp))
    (tmp_path / "demo-training-3").mkdir()
    latest = find_local_report(tmp_path, "demo-prediction")
    assert latest == tmp_path / "demo-prediction-2" / "check-drift" / "report.html"
    named = find_local_report(tmp_path, "demo-prediction", "demo-prediction-1")
    assert named.parent.parent.name == "demo-prediction-1"
    with pytest.raises(FileNotFoundError, match="no local run of 'demo-scoring'"):
        find_local_report(tmp_path, "demo-scoring")
    with pytest.raises(FileNotFoundError, match="no HTML report in"):
        find_local_report(tmp_path, "demo-training", "demo-training-3")
