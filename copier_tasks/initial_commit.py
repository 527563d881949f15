"""Copier task, on `copier copy` only: make the new project a git repository with one commit.

    python initial_commit.py MESSAGE AUTHOR_NAME AUTHOR_EMAIL     (run in the new project)

Deploys need a commit (images and templates are tagged with it), and `copier update` needs a
clean git tree. The project is left alone when it is already inside a git repository. Without a
git identity (user.name, user.email) the new repository gets a local one from the author
answers. Uses no network, and never fails the copy: when git cannot commit, it prints the two
commands to run instead.
"""

from __future__ import annotations

import shutil
import subprocess
import sys


def git(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *args], capture_output=True, text=True)


def main(message: str, name: str, email: str) -> None:
    todo = f'git init && git add --all && git commit -m "{message}"'
    if shutil.which("git") is None:
        print(f"git not found: once it is installed, run in the project:\n  {todo}")
        return
    if git("rev-parse", "--is-inside-work-tree").returncode == 0:
        top = git("rev-parse", "--show-toplevel").stdout.strip()
        print(f"already inside the git repository {top}: left for you to commit there")
        return
    steps = [("init", "--quiet")]
    for key, value in (("user.name", name), ("user.email", email)):
        if not git("config", key).stdout.strip():  # no identity: a local one from the answers
            steps.append(("config", key, value))
    steps += [("add", "--all"), ("commit", "--quiet", "--message", message)]
    for step in steps:
        result = git(*step)
        if result.returncode != 0:
            print(f"`git {step[0]}` failed: {result.stderr.strip()}\nrun in the project:\n  {todo}")
            return
    print(f'git repository created with one commit: "{message}"')


if __name__ == "__main__":
    main(*sys.argv[1:4])
