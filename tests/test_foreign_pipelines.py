"""A generated project takes the pipelines a team already has, dropped into pipelines/ as they are.

Nested pipelines with a helper module, control flow (exit handler, If/Else, a loop), required
and typed parameters, a failing task inside an exit handler and a file that does not import:
`invoke compile`, `invoke run --local` and the project's own tests handle each of them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.template_support import find_python, forget_cached_vertexkit, render

FIXTURES = Path(__file__).parent / "fixtures" / "pipelines"
FOREIGN = ["nested", "_steps", "control", "required", "exit_fail", "broken"]


def _run(args: list[str], cwd: Path, timeout: int = 900) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VERTEXKIT", "GOOGLE"))}
    env["PATH"] = f"{cwd / '.venv' / 'bin'}{os.pathsep}{env['PATH']}"
    env.pop("VIRTUAL_ENV", None)
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def _ok(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert result.returncode == 0, (
        f"{' '.join(result.args)} failed ({result.returncode}):\n{result.stdout[-4000:]}\n"
        f"{result.stderr[-4000:]}"
    )
    return result


def _install(project: Path, python: str) -> None:
    """The project's environment: with uv when it is on PATH (fast), else venv and pip."""
    uv = shutil.which("uv")
    if uv:
        _ok(_run([uv, "venv", "--quiet", "-p", python, ".venv"], project))
        _ok(_run([uv, "pip", "install", "--quiet", "-p", ".venv", "-e", ".[dev]"], project))
    else:
        _ok(_run([python, "-m", "venv", ".venv"], project))
        forget_cached_vertexkit(str(project / ".venv" / "bin" / "python"))
        _ok(_run([".venv/bin/python", "-m", "pip", "install", "-q", "-e", ".[dev]"], project))


@pytest.mark.slow
def test_generated_project_takes_foreign_pipelines(tmp_path: Path) -> None:
    python = find_python("3.11")
    if python is None:
        pytest.skip("no Python 3.11 interpreter on this machine")
    project = render(tmp_path / "project", {"python_version": "3.11"})
    _install(project, python)
    for name in FOREIGN:
        shutil.copy(FIXTURES / f"{name}.py", project / "pipelines" / f"{name}.py")
    invoke = [".venv/bin/invoke"]

    # Compiling everything reports the broken file and still writes every other pipeline.
    compiled = _run([*invoke, "compile"], project)
    assert compiled.returncode == 1
    assert "1 of 7 pipeline files could not be compiled" in compiled.stderr
    assert "pipelines/broken.py: import failed: ModuleNotFoundError" in compiled.stderr
    written = sorted(p.stem for p in (project / "build" / "pipelines").glob("*.yaml"))
    assert written == ["control", "exit_fail", "nested", "prediction", "required", "training"]
    # One pipeline needs only its own file.
    _ok(_run([*invoke, "compile", "--pipeline", "training"], project))

    control = _ok(_run([*invoke, "run", "--local", "--pipeline", "control"], project))
    assert "locally (6 tasks)" in control.stdout and "[6/6]" in control.stdout
    assert "[7/" not in control.stdout
    nested = _ok(_run([*invoke, "run", "--local", "--pipeline", "nested"], project))
    assert "Output: 21" in nested.stdout

    missing = _run([*invoke, "run", "--local", "--pipeline", "required"], project)
    assert missing.returncode == 1
    assert "missing required parameter(s): rows (int), trials (list[int])" in missing.stderr
    wrong = ["--param", "rows=2", "--param", "trials=[1.5]"]
    refused = _run([*invoke, "run", "--local", "--pipeline", "required", *wrong], project)
    assert "expects list[int], got item [0] float 1.5" in refused.stderr
    right = ["--param", "rows=2", "--param", "trials=[1, 2]"]
    required = _ok(_run([*invoke, "run", "--local", "--pipeline", "required", *right], project))
    assert "Output: 6.0" in required.stdout

    failed = _run([*invoke, "run", "--local", "--pipeline", "exit_fail"], project)
    assert failed.returncode == 1
    assert "failed at task 'train'" in failed.stderr and "out of memory" in failed.stderr

    out_of_range = ["--param", "max_depth=-3"]
    stopped = _run([*invoke, "run", "--local", "--pipeline", "training", *out_of_range], project)
    assert stopped.returncode == 1
    assert "parameter 'max_depth' is -3, but must be >= 0" in stopped.stderr

    # The project's own tests compile every pipeline found: only the broken file fails.
    tests = _run([".venv/bin/python", "-m", "pytest", "-q", "-p", "no:cacheprovider"], project)
    assert tests.returncode == 1, tests.stdout[-4000:]
    failures = [line for line in tests.stdout.splitlines() if line.startswith("FAILED")]
    assert len(failures) == 1 and "test_pipeline_compiles[broken]" in failures[0], failures
    for name in ("control", "nested", "required", "exit_fail", "training", "prediction"):
        assert f"test_pipeline_compiles[{name}]" not in tests.stdout  # passed, not listed
    (project / "pipelines" / "broken.py").unlink()
    rerun = ["-k", "test_pipeline_compiles", "-p", "no:cacheprovider"]
    _ok(_run([".venv/bin/python", "-m", "pytest", "-q", *rerun], project))
