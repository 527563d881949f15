"""Tasks of this project: `invoke --list` shows them, `invoke --help TASK` explains one.

The standard tasks come from vertexkit, so upgrading it delivers their fixes. Add the team's
own tasks below and register them with `ns.add_task(...)`.
"""

from vertexkit.tasks import namespace

ns = namespace()
