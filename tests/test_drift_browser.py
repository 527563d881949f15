"""The drift report in a real browser: headless Chromium (Debian's `chromium` package) renders
the page that the prediction pipeline's drift step writes, and its DOM shows the verdict and one
drawn plot per feature. Skipped, saying why, where no Chromium is installed."""

from __future__ import annotations

import io
import json
import re
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from tests.template_support import ROOT
from vertexkit.gcp.monitoring import monitor_drift
from vertexkit.local.drift import reference_statistics

DATA = ROOT / "template" / "data"
BROWSER = next(
    (shutil.which(name) for name in ("chromium", "chromium-browser") if shutil.which(name)), None
)
pytestmark = pytest.mark.skipif(
    BROWSER is None,
    reason="no Chromium on PATH (Debian/Ubuntu: apt-get install chromium) to open the report in",
)
MONITORING = json.dumps(
    {
        "environment": "local",
        "config": {
            "name": "demo",
            "naming_prefix": "demo",
            "gcp": {"project_id": "acme-ml-dev", "region": "europe-west4"},
        },
    }
)


def chromium(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BROWSER), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         f"--user-data-dir={cwd / 'profile'}", *args],
        cwd=cwd, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_the_report_shows_the_verdict_and_one_plot_per_feature(tmp_path: Path) -> None:
    train = pd.read_csv(DATA / "train.csv").drop(columns=["diagnosis"])
    (tmp_path / "statistics.json").write_text(json.dumps(reference_statistics(train)))
    report = tmp_path / "report.html"
    check = monitor_drift(
        pd.read_csv(DATA / "score_drifted.csv"),
        tmp_path / "statistics.json",
        MONITORING,
        model_name="demo-model",
        model_registry=str(tmp_path / "registry"),
        report_path=report,
        out=io.StringIO(),
    )
    assert check.breached

    dumped = chromium("--dump-dom", report.as_uri(), cwd=tmp_path)
    assert dumped.returncode == 0, dumped.stderr[-2000:]
    dom = dumped.stdout
    features = re.findall(r'<figure class="feature( breached)?" data-feature="(\w+)">', dom)
    assert sorted(name for _, name in features) == sorted(train.columns)  # one plot each
    assert {name for state, name in features if state} == {"mean_texture", "worst_texture"}
    # Each figure holds a drawn SVG: the browser parsed the inline plots, bars and all.
    for figure in re.findall(r'<figure class="feature.*?</figure>', dom, re.S):
        assert figure.count("<svg") == 1 and "<path" in figure
    verdict = re.search(r'<p class="verdict breach" id="verdict">(.*?)</p>', dom)
    assert verdict and verdict.group(1).startswith("Drift: 2 of 30 features breach")

    shot = tmp_path / "report.png"
    taken = chromium(
        f"--screenshot={shot}", "--window-size=1280,2000", report.as_uri(), cwd=tmp_path
    )
    assert taken.returncode == 0, taken.stderr[-2000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
