"""gcloud commands as steps: what the gcloud plans of the provisioning modules share."""

from __future__ import annotations

from collections.abc import Sequence

from vertexkit.steps import CommandStep


def gcloud(*args: str) -> tuple[str, ...]:
    return ("gcloud", *args)


def delete_if_found(step: str, group: Sequence[str], name: str, *flags: str) -> CommandStep:
    """``gcloud GROUP delete NAME FLAGS --quiet``, sent only while ``gcloud GROUP describe NAME
    FLAGS`` finds it, so that a second teardown deletes nothing."""
    return CommandStep(
        step,
        gcloud(*group, "delete", name, *flags, "--quiet"),
        only_if=gcloud(*group, "describe", name, *flags),
    )
