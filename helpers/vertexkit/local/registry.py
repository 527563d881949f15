"""A local, directory-backed model registry with champion/challenger selection.

Layout under ``root``::

    <root>/<model_name>/
        versions/<n>/                      the model files
        versions/<n>/registration.json     metrics, creation time, source, champion flag
        champion.json                      the current champion version and its metric value
        retrain.json                       when drift last triggered a retraining (cool-down)

Every registration is stored; it becomes champion only when there is no champion yet or it
is strictly better on the chosen metric. Registrations from concurrent processes are safe:
version numbers are claimed with an exclusive ``os.mkdir`` and the champion decision is
serialised with an advisory file lock. The lock (``fcntl``) and the atomic replacement of the
reserved version directory rely on POSIX semantics (Linux, macOS).
"""

from __future__ import annotations

import fcntl
import json
import math
import numbers
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Literal

Direction = Literal["maximize", "minimize"]

_NAME_RULE = (
    "1-63 characters: lowercase letters, digits, hyphens and underscores, starting with a letter"
)
_NAME_RE = re.compile(r"[a-z][a-z0-9_-]{0,62}")
_DIRECTIONS = ("maximize", "minimize")
_REGISTRATION_FILE = "registration.json"
_CHAMPION_FILE = "champion.json"
_RETRAIN_FILE = "retrain.json"


@dataclass(frozen=True)
class ModelVersion:
    """One stored version of a model."""

    version: int
    path: Path
    metrics: dict[str, float]
    created: datetime
    source: str
    is_champion: bool


@dataclass(frozen=True)
class Registration:
    """The outcome of :meth:`LocalModelRegistry.register`."""

    version: int
    path: Path
    is_champion: bool
    previous_champion: int | None
    previous_value: float | None
    value: float
    reason: str


class LocalModelRegistry:
    """Versions of one model in a local directory, with a single champion."""

    def __init__(self, root: str | Path, model_name: str) -> None:
        if not isinstance(model_name, str) or not _NAME_RE.fullmatch(model_name):
            raise ValueError(f"invalid model name {model_name!r}: must be {_NAME_RULE}")
        self.root = Path(root)
        self.model_name = model_name
        self._dir = self.root / model_name
        self._versions_dir = self._dir / "versions"

    def __repr__(self) -> str:
        return f"LocalModelRegistry(root={str(self.root)!r}, model_name={self.model_name!r})"

    def register(
        self,
        model_path: str | Path,
        metrics: dict[str, float],
        *,
        metric: str,
        direction: Direction,
        source: str = "",
    ) -> Registration:
        """Store a new version and make it champion if it beats the current one on ``metric``."""
        metrics, value = check_registration(metrics, metric, direction)
        model_path = Path(model_path)
        _check_model_path(model_path)

        self._versions_dir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".tmp-", dir=self._dir))
        try:
            # mkdtemp makes the directory private (0700); give it the usual permissions.
            os.chmod(staging, self._versions_dir.stat().st_mode & 0o777)
            if model_path.is_dir():
                shutil.copytree(model_path, staging, dirs_exist_ok=True)
            else:
                shutil.copy2(model_path, staging / model_path.name)
            with self._lock():
                champion = self.champion()
                is_champion, reason_tail = _decide(champion, metric, value, direction)
                version = self._reserve_version()
                version_dir = self._versions_dir / str(version)
                try:
                    _write_json(
                        staging / _REGISTRATION_FILE,
                        {
                            "version": version,
                            "metrics": metrics,
                            "created": _now(),
                            "source": source,
                            "champion_at_registration": is_champion,
                        },
                    )
                    # rename(2) atomically replaces the empty reserved directory.
                    os.replace(staging, version_dir)
                except BaseException:
                    os.rmdir(version_dir)  # release the number; nobody else holds the lock
                    raise
                if is_champion:
                    _write_json(
                        self._dir / _CHAMPION_FILE,
                        {
                            "version": version,
                            "metric": metric,
                            "value": value,
                            "updated": _now(),
                        },
                    )
        finally:
            shutil.rmtree(staging, ignore_errors=True)

        reason = describe_registration(version, champion, is_champion, reason_tail)
        return Registration(
            version=version,
            path=version_dir,
            is_champion=is_champion,
            previous_champion=champion.version if champion else None,
            previous_value=champion.metrics[metric] if champion else None,
            value=value,
            reason=reason,
        )

    def champion(self) -> ModelVersion | None:
        """The current champion, or None when nothing has been registered."""
        champion_file = self._dir / _CHAMPION_FILE
        if not champion_file.is_file():
            return None
        return self.get(json.loads(champion_file.read_text())["version"])

    def get(self, version: int) -> ModelVersion:
        """One version; raises LookupError when it does not exist."""
        registration_file = self._versions_dir / str(version) / _REGISTRATION_FILE
        if not registration_file.is_file():
            existing = ", ".join(str(n) for n in self._version_numbers()) or "none"
            raise LookupError(
                f"model {self.model_name!r} in {self.root} has no version {version} "
                f"(existing versions: {existing})"
            )
        data = json.loads(registration_file.read_text())
        return ModelVersion(
            version=data["version"],
            path=registration_file.parent,
            metrics=data["metrics"],
            created=datetime.fromisoformat(data["created"]),
            source=data["source"],
            is_champion=data["version"] == self._champion_version(),
        )

    def versions(self) -> list[ModelVersion]:
        """All stored versions, oldest first."""
        return [self.get(n) for n in self._version_numbers()]

    def champion_path(self) -> Path:
        """The champion version's directory; raises LookupError when there is no champion."""
        return self._require_champion().path

    def copy_champion_to(self, dest: str | Path) -> ModelVersion:
        """Copy the champion's model files (without registration.json) into directory ``dest``."""
        champion = self._require_champion()
        source_dir = champion.path
        shutil.copytree(
            source_dir,
            dest,
            dirs_exist_ok=True,
            ignore=lambda d, names: [_REGISTRATION_FILE] if Path(d) == source_dir else [],
        )
        return champion

    def claim_retrain(
        self, cooldown: timedelta, now: datetime | None = None, *, reason: str = ""
    ) -> tuple[bool, datetime | None]:
        """Claim the drift-triggered retraining of this model, once per ``cooldown``.

        Returns (True, None) and records ``now`` in retrain.json when no retraining was claimed
        within ``cooldown`` before ``now``; else (False, when the last one was). The file lock
        makes concurrent claims of several processes start one retraining.
        """
        now = now or datetime.now(timezone.utc)
        self._dir.mkdir(parents=True, exist_ok=True)
        marker = self._dir / _RETRAIN_FILE
        with self._lock():
            last = _last_retrain(marker)
            if last is not None and now - last < cooldown:
                return False, last
            stamp = now.isoformat(timespec="seconds")
            _write_json(marker, {"last_retrain": stamp, "reason": reason})
        return True, None

    def last_retrain(self) -> datetime | None:
        """When drift last triggered a retraining of this model (None: never)."""
        return _last_retrain(self._dir / _RETRAIN_FILE)

    def _require_champion(self) -> ModelVersion:
        champion = self.champion()
        if champion is None:
            raise LookupError(
                f"no champion for model {self.model_name!r} in {self.root}: "
                "run the training pipeline first"
            )
        return champion

    def _champion_version(self) -> int | None:
        champion_file = self._dir / _CHAMPION_FILE
        if not champion_file.is_file():
            return None
        return json.loads(champion_file.read_text())["version"]

    def _version_numbers(self) -> list[int]:
        """Numbers of the complete versions (a reserved, still-empty directory is skipped)."""
        if not self._versions_dir.is_dir():
            return []
        return sorted(
            int(entry.name)
            for entry in self._versions_dir.iterdir()
            if entry.name.isdigit() and (entry / _REGISTRATION_FILE).is_file()
        )

    def _reserve_version(self) -> int:
        """Claim the next version number by exclusively creating its directory."""
        numbers = [int(e.name) for e in self._versions_dir.iterdir() if e.name.isdigit()]
        candidate = max(numbers, default=0) + 1
        while True:
            try:
                os.mkdir(self._versions_dir / str(candidate))
                return candidate
            except FileExistsError:
                candidate += 1

    @contextmanager
    def _lock(self) -> Iterator[None]:
        """Serialise champion decisions across processes with an advisory lock."""
        with open(self._dir / ".lock", "a") as lock_file:
            fcntl.flock(lock_file, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock_file, fcntl.LOCK_UN)


def _check_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """Metrics as plain floats; JSON cannot hold NaN or infinity, so those are rejected."""
    checked: dict[str, float] = {}
    for name, raw in metrics.items():
        if isinstance(raw, bool) or not isinstance(raw, numbers.Real):
            raise ValueError(f"metric {name!r} must be a number, got {raw!r}")
        if not math.isfinite(raw):
            raise ValueError(f"metric {name!r} must be finite, got {raw!r}")
        checked[str(name)] = float(raw)
    return checked


def _check_model_path(model_path: Path) -> None:
    if not model_path.exists():
        raise FileNotFoundError(f"model path {model_path} does not exist")
    if model_path.name == _REGISTRATION_FILE or (model_path / _REGISTRATION_FILE).exists():
        raise ValueError(
            f"model path {model_path} contains {_REGISTRATION_FILE!r}, a name the registry reserves"
        )


def _decide(
    champion: ModelVersion | None, metric: str, value: float, direction: Direction
) -> tuple[bool, str]:
    """Whether ``value`` becomes champion, and the comparison text for the reason."""
    if champion is None:
        return True, ""
    if metric not in champion.metrics:
        available = ", ".join(sorted(champion.metrics)) or "none"
        raise ValueError(
            f"champion version {champion.version} has no metric {metric!r} to compare with "
            f"(it has: {available})"
        )
    best = champion.metrics[metric]
    if direction == "maximize":
        wins, symbol = value > best, (">" if value > best else "<=")
    else:
        wins, symbol = value < best, ("<" if value < best else ">=")
    new_text, best_text = _format_pair(value, best)
    return wins, f"on {metric}: {new_text} {symbol} {best_text}"


def check_registration(
    metrics: dict[str, Any], metric: str, direction: str
) -> tuple[dict[str, float], float]:
    """The checked metrics and the value of ``metric``; ValueError names what is wrong."""
    if direction not in _DIRECTIONS:
        raise ValueError(f"invalid direction {direction!r}: must be one of {_DIRECTIONS}")
    checked = _check_metrics(metrics)
    if metric not in checked:
        available = ", ".join(sorted(checked)) or "none"
        raise ValueError(f"metric {metric!r} is not in the metrics (available: {available})")
    return checked, checked[metric]


def describe_registration(
    version: int, champion: ModelVersion | None, wins: bool, comparison: str
) -> str:
    """The one-line reason of a registration (``comparison`` comes from ``_decide``)."""
    if champion is None:
        return f"version {version} is the first version: champion"
    if wins:
        return f"version {version} beats champion version {champion.version} {comparison}"
    return (
        f"version {version} does not beat champion version {champion.version} "
        f"{comparison}; champion unchanged"
    )


def _format_pair(a: float, b: float) -> tuple[str, str]:
    """Four decimals, or more digits when four would make different values look equal."""
    short = (f"{a:.4f}", f"{b:.4f}")
    if short[0] == short[1] and a != b:
        return repr(a), repr(b)
    return short


def _last_retrain(marker: Path) -> datetime | None:
    try:
        return datetime.fromisoformat(json.loads(marker.read_text())["last_retrain"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _write_json(path: Path, data: dict[str, Any]) -> None:
    """Write JSON atomically: a temporary file in the same directory, then os.replace."""
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, path.parent.stat().st_mode & 0o666)  # mkstemp files are private (0600)
        with os.fdopen(fd, "w") as handle:
            json.dump(data, handle, indent=2, allow_nan=False)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
