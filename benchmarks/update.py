"""Wall time of template updates: one `copier update`, and `vertexkit fleet update --apply`.

    .venv/bin/python benchmarks/update.py [--projects 20]

Builds a temporary template repository with two releases (this checkout's working tree, and the
next one changing the version and the Dockerfile: tests/update_support.py), renders projects at
the first with default answers, and times

- `copier update` (in-process, as `vertexkit update` runs it) of one project to the second
  release, best of three fresh projects;
- `vertexkit fleet update --apply` over 5, 10 and --projects projects (copies of one render,
  each its own git repository), with the time per project.

Targets: one update under 5 s; the fleet's time per project flat as the fleet grows (linear
cost). The figures are printed, not asserted.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.update_support import FIRST, first_release, next_release, render_at  # noqa: E402
from vertexkit import cli  # noqa: E402
from vertexkit.local import updates  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--projects", type=int, default=20, help="size of the largest fleet")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="vertexkit-bench-") as scratch:
        work = Path(scratch)
        repo = first_release(work / "vertexkit")
        target = next_release(repo, full=False)
        start = time.perf_counter()
        template = render_at(repo, work / "template-project", FIRST)
        print(f"render (copier copy + commit): {time.perf_counter() - start:.1f} s")

        singles = []
        for number in range(3):
            project = Path(shutil.copytree(template, work / f"single-{number}", symlinks=True))
            start = time.perf_counter()
            result = updates.update_project(project, target)
            singles.append(time.perf_counter() - start)
            assert result.outcome == "updated", result
        print(f"one copier update {FIRST} -> {target}: {min(singles):.1f} s (best of 3)")

        for size in sorted({5, 10, args.projects}):
            fleet = [
                Path(shutil.copytree(template, work / f"fleet-{size}-{n}", symlinks=True))
                for n in range(size)
            ]
            start = time.perf_counter()
            with (
                contextlib.redirect_stdout(io.StringIO()),
                contextlib.redirect_stderr(io.StringIO()),
            ):
                code = cli.main(["fleet", "update", *map(str, fleet), "--apply", "--json"])
            elapsed = time.perf_counter() - start
            assert code == 0, f"fleet update of {size} projects exited {code}"
            print(
                f"fleet update --apply, {size:>3} projects: {elapsed:6.1f} s, "
                f"{elapsed / size:.2f} s per project"
            )


if __name__ == "__main__":
    main()
