"""The ``vertexkit`` console script: template updates of one project or of many.

    vertexkit update [PATH] [--to vX.Y.Z] [--trust]
    vertexkit fleet status PATH... [--json]
    vertexkit fleet update PATH... [--to vX.Y.Z] [--apply] [--trust] [--json]

Thin: it parses, calls vertexkit.local.updates and prints. Exit codes: 0 fine, 1 conflicts or a
failed project, 2 bad arguments.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from vertexkit.local import updates


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    lines = [header, ["-" * w for w in widths], *rows]
    return "\n".join(
        "  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in lines
    )


def _print_conflicts(result: updates.UpdateResult) -> None:
    print(f"{len(result.conflicts)} conflict(s) to resolve in {result.path}:")
    for conflict in result.conflicts:
        print(f"  {conflict}")
    print(
        "Edit each file to keep the right lines and remove the markers (delete any .rej file "
        "after applying it by hand), then `git add` and commit. docs/updating.md explains how."
    )


def cmd_update(args: argparse.Namespace) -> int:
    try:
        result = updates.update_project(Path(args.path), args.to, trust=args.trust)
    except Exception as error:  # copier's and git's errors too: one line, no traceback
        print(f"vertexkit update: {error}", file=sys.stderr)
        return 1
    print(f"{result.from_version} -> {result.to_version}: {len(result.changed)} file(s) changed")
    for name in result.changed:
        print(f"  {name}")
    if result.conflicts:
        _print_conflicts(result)
        return 1
    print("No conflicts. Review with `git diff`, run `uv sync`, then commit.")
    return 0


def cmd_fleet_status(args: argparse.Namespace) -> int:
    tags: dict[str, list[str]] = {}
    statuses = [updates.project_status(Path(p), tags) for p in args.paths]
    if args.json:
        print(json.dumps([s.to_dict() for s in statuses], indent=2))
    else:
        rows = [
            [
                s.path,
                s.version or "-",
                s.newest or "-",
                "-" if s.behind is None else str(s.behind),
                "error" if s.error else "dirty" if s.dirty else "clean",
                s.error,
            ]
            for s in statuses
        ]
        print(_table(rows, ["project", "version", "newest", "behind", "tree", "error"]))
    return 1 if any(s.error for s in statuses) else 0


def cmd_fleet_update(args: argparse.Namespace) -> int:
    def progress(number: int, total: int, result: updates.UpdateResult) -> None:
        detail = f" ({result.message})" if result.message else ""
        print(f"[{number}/{total}] {result.path}: {result.outcome}{detail}", file=sys.stderr)

    paths = [Path(p) for p in args.paths]
    results = updates.update_fleet(
        paths, args.to, apply=args.apply, trust=args.trust, progress=progress
    )
    if args.json:
        print(json.dumps([r.to_dict() for r in results], indent=2))
    else:
        if not args.apply:
            print("Dry run: nothing was changed; --apply updates each clean project on a branch.")
            for result in results:
                if result.changed or result.conflicts:
                    print(f"\n{result.path} would change {len(result.changed)} file(s):")
                    print("\n".join(f"  {name}" for name in result.changed))
                    print("\n".join(f"  conflict: {c}" for c in result.conflicts))
            print()
        rows = [
            [
                r.path,
                r.outcome if args.apply else f"{r.outcome} (dry run)",
                r.from_version or "-",
                r.to_version or "-",
                r.branch or "-",
                str(len(r.conflicts)),
                r.message,
            ]
            for r in results
        ]
        header = ["project", "outcome", "from", "to", "branch", "conflicts", "note"]
        print(_table(rows, header))
    return 1 if any(r.outcome in {"failed", "conflicted"} for r in results) else 0


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="vertexkit", description="Template updates of vertexkit projects."
    )
    commands = top.add_subparsers(dest="command", required=True)

    update = commands.add_parser(
        "update",
        help="copier update of one project, in place, listing the conflicts it leaves",
        description="Run `copier update --conflict inline --defaults` in a clean project and "
        "list every conflict it leaves (markers, .rej files); exit 1 when there are any.",
    )
    update.add_argument("path", nargs="?", default=".", help="the project (default: .)")
    update.add_argument("--to", metavar="vX.Y.Z", help="release to update to (default: newest)")
    update.add_argument(
        "--trust", action="store_true", help="run the template's migrations (copier --trust)"
    )
    update.set_defaults(run=cmd_update)

    fleet = commands.add_parser("fleet", help="status and updates of many projects")
    fleet_commands = fleet.add_subparsers(dest="fleet_command", required=True)
    status = fleet_commands.add_parser(
        "status",
        help="template version, releases behind, dirty or clean",
        description="Each project's template version (.copier-answers.yml _commit), how many "
        "releases of its template it is behind, and whether its git tree is dirty.",
    )
    status.add_argument("paths", nargs="+", metavar="PATH")
    status.add_argument("--json", action="store_true", help="print JSON instead of a table")
    status.set_defaults(run=cmd_fleet_status)

    fleet_update = fleet_commands.add_parser(
        "update",
        help="dry run (default) or --apply: update each clean project on a new branch",
        description="Without --apply, report what updating each project would change (in a "
        "throw-away clone). With --apply, update each clean project on a new branch "
        "template-update/<tag> and commit there when there is no conflict; dirty projects are "
        "skipped, nothing is pushed. Exit 1 when any project failed or has conflicts.",
    )
    fleet_update.add_argument("paths", nargs="+", metavar="PATH")
    fleet_update.add_argument("--to", metavar="vX.Y.Z", help="release (default: each newest)")
    fleet_update.add_argument("--apply", action="store_true", help="update, not a dry run")
    fleet_update.add_argument(
        "--trust", action="store_true", help="run the template's migrations (copier --trust)"
    )
    fleet_update.add_argument("--json", action="store_true", help="print JSON instead of a table")
    fleet_update.set_defaults(run=cmd_fleet_update)
    return top


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return int(args.run(args))


if __name__ == "__main__":
    raise SystemExit(main())
