"""Check that this checkout is ready to be tagged as a release (docs/contributing.md, "Releases").

    python scripts/check_release.py vX.Y.Z

The tag is PEP 440 `vX.Y.Z`, and it agrees with the version of the package
(helpers/vertexkit/__init__.py), the one the template pins (copier.yml `vertexkit_version`) and
the newest CHANGELOG.md section, which must be dated: `## X.Y.Z (YYYY-MM-DD)`. Without a tag, it
checks the three agree (the newest section may then be `## Unreleased (X.Y.Z)`). Prints each
problem and exits 1 when there is any.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
RELEASED = re.compile(r"^## (\d+\.\d+\.\d+) \((\d{4}-\d{2}-\d{2})\)$")
UNRELEASED = re.compile(r"^## Unreleased \((\d+\.\d+\.\d+)\)$")
TAG = re.compile(r"^v(\d+\.\d+\.\d+)$")


def versions(root: Path) -> dict[str, str | None]:
    """The version each place states; None where it cannot be read."""
    init = (root / "helpers/vertexkit/__init__.py").read_text(encoding="utf-8")
    package = re.search(r'^__version__ = "([^"]+)"$', init, re.MULTILINE)
    copier = yaml.safe_load((root / "copier.yml").read_text(encoding="utf-8"))
    pinned = copier.get("vertexkit_version", {}).get("default")
    return {
        "helpers/vertexkit/__init__.py": package.group(1) if package else None,
        "copier.yml vertexkit_version": str(pinned) if pinned else None,
        "CHANGELOG.md newest section": newest_section(root)[0],
    }


def newest_section(root: Path) -> tuple[str | None, bool]:
    """The version of CHANGELOG.md's first `## ` section, and whether it is dated (released)."""
    for line in (root / "CHANGELOG.md").read_text(encoding="utf-8").splitlines():
        if line.startswith("## "):
            if match := RELEASED.match(line):
                return match.group(1), True
            if match := UNRELEASED.match(line):
                return match.group(1), False
            return None, False
    return None, False


def problems(root: Path, tag: str | None = None) -> list[str]:
    found = versions(root)
    wrong = [f"{where}: cannot read the version" for where, v in found.items() if v is None]
    if len(set(found.values())) > 1:
        wrong.append(
            "versions disagree: " + ", ".join(f"{where} {v}" for where, v in found.items())
        )
    if tag is not None:
        match = TAG.match(tag)
        if not match:
            wrong.append(f"tag {tag!r} is not vX.Y.Z (PEP 440, e.g. v0.2.0)")
        elif match.group(1) != found["helpers/vertexkit/__init__.py"]:
            wrong.append(
                f"tag {tag} is not the package version {found['helpers/vertexkit/__init__.py']}"
            )
        if not newest_section(root)[1]:
            wrong.append(
                "CHANGELOG.md: the newest section is not dated; rename "
                "'## Unreleased (X.Y.Z)' to '## X.Y.Z (YYYY-MM-DD)'"
            )
    return wrong


if __name__ == "__main__":
    found = problems(ROOT, sys.argv[1] if len(sys.argv) > 1 else None)
    print("\n".join(found) or "ready")
    sys.exit(1 if found else 0)
