"""The generated README's task table: every task of the collection, each in one row."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest

from tests.template_support import render


@pytest.mark.parametrize("orchestrator", ["vertex", "kfp"])
def test_readme_lists_each_task_once(tmp_path: Path, orchestrator: str) -> None:
    from vertexkit.tasks import namespace

    project = render(tmp_path / "p", {"orchestrator": orchestrator})
    readme = (project / "README.md").read_text(encoding="utf-8")
    table = readme.split("## Tasks", 1)[1].split("\n\n", 2)[1]
    rows = [line for line in table.splitlines() if line.startswith("| `invoke")]
    counts: Counter[str] = Counter()
    for row in rows:
        first_cell = row.split(" | ")[0]
        counts.update(set(re.findall(r"`invoke ([a-z-]+)", first_cell)))
    # `invoke schedule` is listed only with a schedule (copier's default is none).
    expected = set(namespace().task_names) - {"schedule"}
    assert set(counts) == expected
    # run has a row for local runs and one for cloud runs; every other task has one row.
    assert {name: n for name, n in counts.items() if n != 1} == {"run": 2}, rows
