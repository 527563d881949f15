#!/usr/bin/env python3
"""Set up this repository's virtual environment, then run one of its invoke tasks in it.

    python3 dev.py demo     render build/demo with default answers and run its pipelines locally
    python3 dev.py test     run the whole test suite (what .ci/run runs)
    python3 dev.py lint     ruff over the repository
    python3 dev.py docs     build the documentation site into site/

The first call creates .venv and installs this repository with its dev extras, with uv: the one
on PATH, or else one installed from PyPI into .venv first. Later calls reinstall only when
pyproject.toml changed. Needs Python 3.10 to 3.12 and git, nothing else.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
STAMP = VENV / ".vertexkit-installed"
EXTRAS = ".[dev,docs]"


def _fingerprint() -> str:
    text = (ROOT / "pyproject.toml").read_bytes() + EXTRAS.encode() + sys.version.encode()
    return hashlib.sha256(text).hexdigest()


def ensure_venv() -> None:
    if sys.version_info < (3, 10):  # noqa: UP036 - dev.py may be started by an older python3
        sys.exit(f"dev.py needs Python 3.10 or newer; this is {sys.version.split()[0]}")
    if STAMP.is_file() and STAMP.read_text() == _fingerprint():
        return
    uv = shutil.which("uv")
    if not (BIN / "python").exists():
        print(f"creating {VENV.relative_to(ROOT)} with {sys.executable}", flush=True)
        if uv:
            subprocess.run([uv, "venv", "-q", "--python", sys.executable, str(VENV)], check=True)
        else:
            venv.EnvBuilder(with_pip=True).create(VENV)
    if not uv:
        uv = str(BIN / "uv")
        if not Path(uv).exists():
            print("uv is not on PATH: installing it from PyPI into .venv first", flush=True)
            pip = [str(BIN / "python"), "-m", "pip", "--disable-pip-version-check"]
            subprocess.run([*pip, "install", "--quiet", "uv"], check=True)
    print(f"installing vertexkit and its development tools ({EXTRAS}) with uv", flush=True)
    install = [uv, "pip", "install", "--quiet", "--python", str(BIN / "python")]
    subprocess.run([*install, "--editable", EXTRAS], cwd=ROOT, check=True)
    STAMP.write_text(_fingerprint())


def main(argv: list[str]) -> int:
    if not argv or argv[0] in {"-h", "--help"}:
        print(__doc__)
        return 0 if argv else 2
    ensure_venv()
    command = [str(BIN / "invoke"), "--search-root", str(ROOT), *argv]
    env = {**os.environ, "VIRTUAL_ENV": str(VENV), "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run(command, cwd=ROOT, env=env).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
