"""Wall time of setting up a freshly rendered project: `uv sync` against pip.

    .venv/bin/python benchmarks/setup_time.py [--python 3.11]

Renders this working tree with default answers into a temporary folder, then times each way the
project's README sets it up, into a new virtual environment, with the tool's package cache
already warm (each runs once untimed to warm it):

- uv: `uv sync`, with the uv.lock the first run wrote (as after cloning the team's repository);
  `uv sync` without uv.lock (resolving too) is printed for reference;
- pip: `python -m venv .venv`, then the README's `pip install -e <vertexkit> -e ".[dev]"`.

Target: uv under a quarter of pip. The figures are printed, not asserted.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.template_support import find_python, render  # noqa: E402


def timed(command: list[str], cwd: Path, env: dict[str, str]) -> float:
    start = time.perf_counter()
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(f"{' '.join(command)} failed:\n{result.stdout[-3000:]}{result.stderr[-3000:]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", default="3.11", help="python_version answer (default 3.11)")
    args = parser.parse_args()
    python = find_python(args.python)
    if python is None:
        sys.exit(f"no Python {args.python} interpreter on this machine")
    uv = shutil.which("uv") or sys.exit("uv is not on PATH")
    env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
    env.update(UV_PYTHON_DOWNLOADS="never", PIP_DISABLE_PIP_VERSION_CHECK="1")

    with tempfile.TemporaryDirectory() as folder:
        project = render(Path(folder) / "project", {"python_version": args.python})
        venv = project / ".venv"
        readme = (project / "README.md").read_text()
        [pip_install] = re.findall(r'^pip install .* -e "\.\[dev\]"$', readme, re.MULTILINE)

        def uv_sync(keep_lock: bool) -> float:
            shutil.rmtree(venv, ignore_errors=True)
            if not keep_lock:
                (project / "uv.lock").unlink(missing_ok=True)
            return timed([uv, "sync", "--python", python], project, env)

        def pip_setup() -> tuple[float, float]:
            shutil.rmtree(venv, ignore_errors=True)
            create = timed([python, "-m", "venv", str(venv)], project, env)
            with_venv = {**env, "PATH": f"{venv / 'bin'}{os.pathsep}{env['PATH']}"}
            install = timed(["bash", "-c", f"{pip_install} --quiet"], project, with_venv)
            return create, install

        uv_sync(keep_lock=False)  # warms uv's cache and writes uv.lock
        locked = uv_sync(keep_lock=True)
        resolving = uv_sync(keep_lock=False)
        pip_setup()  # warms pip's cache
        create, install = pip_setup()

    pip_total = create + install
    print(f"project rendered with python_version={args.python}; caches warm; new .venv each")
    print(f"  uv sync (uv.lock present)       {locked:7.1f} s")
    print(f"  uv sync (no uv.lock: resolves)  {resolving:7.1f} s")
    print(f"  pip: python -m venv             {create:7.1f} s")
    print(f"  pip: pip install -e ... .[dev]  {install:7.1f} s")
    print(f"  pip total                       {pip_total:7.1f} s")
    print(f"ratio uv/pip: {locked / pip_total:.3f} with uv.lock (target: under 0.25), ", end="")
    print(f"{resolving / pip_total:.3f} without")


if __name__ == "__main__":
    main()
