"""The drift report: one self-contained HTML page, a plot per feature and the verdict.

Plots are drawn with matplotlib (Agg, no display) as inline SVG: the page needs no script, no
network and no other file, so the Vertex AI console (a KFP ``HTML`` artifact), a browser opening
the local file, and an archive all show the same thing.
"""

from __future__ import annotations

import html
import io
import itertools
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from vertexkit.local.drift import MEASURES, DriftResult, FeatureDrift

_MEASURE_NAMES = {
    "jensen_shannon": "Jensen-Shannon divergence",
    "l_infinity": "L-infinity distance",
}
_MAX_CATEGORIES = 20  # categories drawn per plot; the rest are summed as "(other)"
_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5rem; color: #202124; }
h1 { font-size: 1.4rem; } h2 { font-size: 1.1rem; margin: 0 0 .3rem; }
.verdict { padding: .6rem 1rem; border-radius: 6px; font-weight: 600; }
.breach { background: #fce8e6; color: #a50e0e; } .ok { background: #e6f4ea; color: #137333; }
table { border-collapse: collapse; margin: 1rem 0; font-size: .9rem; }
td, th { border: 1px solid #dadce0; padding: .25rem .5rem; text-align: right; }
td:first-child, th:first-child { text-align: left; }
td.over { background: #fce8e6; font-weight: 600; }
.features { display: flex; flex-wrap: wrap; gap: 1rem; }
figure.feature { margin: 0; padding: .5rem; border: 1px solid #dadce0; border-radius: 6px; }
figure.feature.breached { border-color: #d93025; }
figcaption { font-size: .85rem; margin-top: .3rem; }
"""


def _plot(feature: FeatureDrift) -> str:
    """One feature's reference and current distributions as an inline SVG element."""
    # A bare Figure draws with no GUI backend and leaves pyplot's global state alone.
    import matplotlib
    from matplotlib.figure import Figure

    figure = Figure(figsize=(4.2, 2.8), dpi=72)
    # Fixed margins: a layout engine would draw every figure twice.
    figure.subplots_adjust(left=0.16, right=0.98, top=0.9, bottom=0.36)
    axes = figure.add_subplot()
    ref, cur = feature.reference, feature.current
    if feature.kind == "numeric":
        labels = _bin_labels(ref["edges"])
        ref_shares, cur_shares = ref["shares"], cur["shares"]
    else:
        labels, ref_shares, cur_shares = _top_categories(
            ref["categories"], ref["shares"], cur["shares"]
        )
    positions = list(range(len(labels)))
    width = 0.42
    left = [p - width / 2 for p in positions]
    right = [p + width / 2 for p in positions]
    axes.bar(left, ref_shares, width, label="reference", color="#1a73e8")
    axes.bar(right, cur_shares, width, label="current", color="#e8710a")
    axes.set_ylabel("share of values")
    axes.set_title(feature.name, fontsize=10)
    step = max(1, len(labels) // 8)
    axes.set_xticks(positions[::step], labels[::step], rotation=45, ha="right", fontsize=7)
    axes.legend(fontsize=7, frameon=False)
    buffer = io.StringIO()
    # Text stays text (the page's fonts), not glyph outlines: a quarter of the size.
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": feature.name}):
        figure.savefig(buffer, format="svg", metadata={"Date": None})
    text = buffer.getvalue()
    return text[text.index("<svg") :]  # drop the XML prolog and doctype: inline in HTML


def _bin_labels(edges: list[float]) -> list[str]:
    if not edges:
        return ["< min", "values", "> max"]
    if len(edges) == 1:
        return ["< min", f"{edges[0]:.3g}", "> max"]
    inner = [f"{a:.3g} to {b:.3g}" for a, b in itertools.pairwise(edges)]
    return ["< min", *inner, "> max"]


def _top_categories(
    categories: list[str], ref: list[float], cur: list[float]
) -> tuple[list[str], list[float], list[float]]:
    if len(categories) <= _MAX_CATEGORIES:
        return categories, ref, cur
    keep = _MAX_CATEGORIES - 1
    return (
        [*categories[:keep], "(other)"],
        [*ref[:keep], sum(ref[keep:])],
        [*cur[:keep], sum(cur[keep:])],
    )


def _row(feature: FeatureDrift) -> str:
    cells = [f"<td>{html.escape(feature.name)}</td>", f"<td>{feature.kind}</td>"]
    for measure in MEASURES:
        value, limit = feature.values[measure], feature.thresholds[measure]
        over = ' class="over"' if value > limit else ""
        cells.append(f"<td{over}>{value:.4f} / {limit:g}</td>")
    cells.append(f"<td>{'drift' if feature.breached else 'ok'}</td>")
    return f"<tr>{''.join(cells)}</tr>"


def render_html(result: DriftResult, context: Mapping[str, Any] | None = None) -> str:
    """The report page: verdict, a table of every measure against its threshold, then one
    ``<figure class="feature">`` with a plot per measured feature."""
    context = dict(context or {})
    breaches = result.breaches
    if result.breached:
        names = [f.name for f in breaches] + result.missing_features
        verdict = (
            f'<p class="verdict breach" id="verdict">Drift: {len(names)} of '
            f"{len(result.features) + len(result.missing_features)} features breach their "
            f"thresholds ({html.escape(', '.join(names))})</p>"
        )
    else:
        verdict = (
            f'<p class="verdict ok" id="verdict">No drift: all {len(result.features)} features '
            "are within their thresholds</p>"
        )
    facts = "".join(
        f"<li>{html.escape(str(k))}: {html.escape(str(v))}</li>" for k, v in context.items()
    )
    facts += f"<li>rows scored: {result.rows}; rows in the reference: {result.reference_rows}</li>"
    if result.missing_features:
        facts += (
            "<li>features of the reference missing from the data: "
            f"{html.escape(', '.join(result.missing_features))}</li>"
        )
    header = "".join(
        f"<th>{h}</th>"
        for h in ["feature", "type", *(f"{m} / threshold" for m in MEASURES), "verdict"]
    )
    ordered = sorted(result.features, key=lambda f: not f.breached)  # breaches first
    rows = "".join(_row(f) for f in ordered)
    figures = []
    for feature in ordered:
        state = " breached" if feature.breached else ""
        caption = (
            f"{_MEASURE_NAMES[feature.measure]} {feature.values['distance']:.4f} "
            f"(threshold {feature.thresholds['distance']:g}); "
            f"{'drift: ' + ', '.join(feature.breaches) if feature.breached else 'ok'}"
        )
        figures.append(
            f'<figure class="feature{state}" data-feature="{html.escape(feature.name)}">'
            f"{_plot(feature)}<figcaption>{html.escape(caption)}</figcaption></figure>"
        )
    summary = json.dumps(result.summary(), sort_keys=True).replace("</", "<\\/")
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>Drift report</title><style>{_STYLE}</style></head><body>"
        f"<h1>Drift report</h1>{verdict}<ul>{facts}</ul>"
        f"<table><thead><tr>{header}</tr></thead><tbody>{rows}</tbody></table>"
        f"<div class='features'>{''.join(figures)}</div>"
        f"<script type='application/json' id='drift-summary'>{summary}</script>"
        "</body></html>\n"
    )


def find_local_report(output_root: Path, pipeline_name: str, run: str = "LATEST") -> Path:
    """The HTML artifact of a local run of the pipeline compiled as ``pipeline_name``.

    kfp's local runner writes each run to ``<output_root>/<pipeline name>-<time stamp>/``;
    ``run`` is such a folder's name, or ``LATEST``: the newest of the pipeline's runs that
    wrote an HTML artifact. FileNotFoundError says what is missing.
    """
    if run != "LATEST":
        candidates = [output_root / run]
        if not candidates[0].is_dir():
            raise FileNotFoundError(f"no local run {run!r} in {output_root}")
    else:
        candidates = sorted(
            (p for p in output_root.glob(f"{pipeline_name}-*") if p.is_dir()),
            key=lambda p: p.stat().st_mtime,
            reverse=True,
        )
        if not candidates:
            raise FileNotFoundError(
                f"no local run of {pipeline_name!r} in {output_root}: run it with "
                "`invoke run --local --pipeline NAME` first"
            )
    for folder in candidates:
        reports = sorted(folder.rglob("*.html"))
        if reports:
            return reports[0]
    where = candidates[0] if run != "LATEST" else f"any local run of {pipeline_name!r}"
    raise FileNotFoundError(f"no HTML report in {where}")
