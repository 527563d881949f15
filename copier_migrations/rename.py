"""Copier migration (stage "after"): carry the team's copy of a file the template renamed.

    python rename.py OLD NEW      (copier runs it in the project, after the update)

A release that renames a template file renames it only (the content changes in another
release), so the project's last committed OLD, edits included, is what NEW must hold:

- OLD committed and NEW written by the update: NEW gets the committed OLD (the team's edits);
- OLD not committed (the team had deleted it): NEW is removed, so the file stays deleted;
- a NEW the team committed itself is left alone.

Offline; needs git, which `copier update` needs too.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def committed(path: str) -> bytes | None:
    result = subprocess.run(["git", "show", f"HEAD:{path}"], capture_output=True)
    return result.stdout if result.returncode == 0 else None


def main(old: str, new: str) -> None:
    if committed(new) is not None or not Path(new).exists():
        return
    team = committed(old)
    if team is None:
        Path(new).unlink()
        print(f"{new}: not added, as {old} was deleted in this project")
    else:
        Path(new).write_bytes(team)
        print(f"{old} is now {new}, with this project's edits")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
