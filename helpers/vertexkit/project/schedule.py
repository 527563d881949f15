"""The rules of schedules: five-field cron expressions and IANA time zone names.

Shared by the configuration (``pipelines.<name>.schedule``) and, as Jinja, by the
``schedule_cron`` and ``schedule_timezone`` questions in copier.yml; tests/test_scheduling.py
checks that both accept and refuse the same values. The cron dialect is the unix one that Vertex
AI schedules and Cloud Scheduler share: lists, ranges, steps (``*/n``, ``a-b/n``) and the names
JAN-DEC and SUN-SAT; no seconds field and none of Quartz's ``? L W #``.
"""

from __future__ import annotations

import difflib
import re
from functools import lru_cache
from importlib import resources

import yaml

MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
DAYS = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")
# name, lowest, highest, the names of the values from the lowest on
CRON_FIELDS: tuple[tuple[str, int, int, tuple[str, ...]], ...] = (
    ("minute", 0, 59, ()),
    ("hour", 0, 23, ()),
    ("day of month", 1, 31, ()),
    ("month", 1, 12, MONTHS),
    ("day of week", 0, 7, DAYS),  # 0 and 7 are Sunday
)
CRON_EXAMPLE = "'0 6 * * MON' (06:00 every Monday)"
_NUMBER = re.compile(r"^[0-9]+$")


def cron_problem(cron: str) -> str | None:
    """What is wrong with ``cron`` as a five-field unix cron expression, or None."""
    fields = cron.split()
    if len(fields) != 5:
        return (
            f"{cron!r} has {len(fields)} field{'' if len(fields) == 1 else 's'}; a cron has five: "
            f"minute hour day-of-month month day-of-week, e.g. {CRON_EXAMPLE}"
        )
    for text, (name, low, high, names) in zip(fields, CRON_FIELDS, strict=True):
        for item in text.split(","):
            if problem := _item_problem(item, low, high, names):
                return f"{name} {text!r}: {problem}"
    return None


def _value(text: str, low: int, high: int, names: tuple[str, ...]) -> tuple[int | None, str]:
    if _NUMBER.match(text):
        value = int(text)
        if low <= value <= high:
            return value, ""
        return None, f"{text} is out of range {low}-{high}"
    if text.upper() in names:
        return names.index(text.upper()) + low, ""
    kinds = f"a number {low}-{high}" + (f" or a name {names[0]}-{names[-1]}" if names else "")
    return None, f"{text!r} is not {kinds}"


def _item_problem(item: str, low: int, high: int, names: tuple[str, ...]) -> str:
    if not item:
        return "an empty list item (two commas, or one at an end)"
    base, *steps = item.split("/")
    if len(steps) > 1:
        return f"{item!r} has more than one step"
    if steps and not (_NUMBER.match(steps[0]) and 1 <= int(steps[0]) <= high):
        return f"the step of {item!r} is not a whole number from 1 to {high}"
    if base == "*":
        return ""
    bounds = base.split("-")
    if len(bounds) > 2:
        return f"{base!r} is not a value or a range a-b"
    values = []
    for bound in bounds:
        value, problem = _value(bound, low, high, names)
        if problem:
            return problem
        values.append(value)
    if len(values) == 2 and values[0] > values[1]:
        return f"the range {base!r} runs backwards"
    if steps and len(values) == 1:
        return f"a step goes with * or a range: write */{steps[0]} or {base}-{high}/{steps[0]}"
    return ""


@lru_cache(maxsize=1)
def time_zones() -> frozenset[str]:
    """The IANA names schedules accept (``timezones.yaml``, built from zoneinfo)."""
    text = resources.files("vertexkit").joinpath("timezones.yaml").read_text("utf-8")
    return frozenset(yaml.safe_load(text)["zones"])


def timezone_problem(name: str) -> str | None:
    """What is wrong with ``name`` as a schedule's time zone, or None."""
    zones = time_zones()
    if name in zones:
        return None
    close = difflib.get_close_matches(name, sorted(zones), n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return (
        f"{name!r} is not an IANA time zone name: {hint}give an Area/Location name such as "
        "'Europe/Paris' or 'America/New_York', or 'UTC'"
    )
