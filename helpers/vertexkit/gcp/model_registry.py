"""The Vertex AI Model Registry as a champion/challenger registry, through the REST API.

:class:`VertexModelRegistry` has the interface of
:class:`vertexkit.local.registry.LocalModelRegistry`
and its comparison rule (a new version becomes champion only when strictly better), with
Vertex AI's own notions: a registered model is one Vertex AI Model whose id is the model name,
each registration uploads one version of it, and the champion is the version holding the
``default`` alias (the version Vertex AI uses when none is named, as batch prediction does).

Where the metrics live: each version's ``versionDescription`` holds
``{"metrics": {...}, "source": "..."}`` as JSON. It is set in the upload request itself, so a
version never exists without its metrics, it is per version, free text (labels cannot hold
dots, upper case or more than 63 characters, so metric values would need a lossy encoding) and
readable in the console. ``metadata`` is reserved for ``metadataSchemaUri`` schemas, and
model evaluations (``models.evaluations.import``) need a schema per problem type and a second,
non-atomic request per version.

Promotion: the version is uploaded without aliases (the ``default`` alias stays where it is),
then the champion is read again and, if the new version wins, ``mergeVersionAliases`` moves
``default`` to it. Deciding after the upload, not before, shrinks the window in which two
concurrent trainings compare against the same champion from the upload's duration to one
request. The first upload creates the model (``modelId``); Vertex AI makes version 1 default.

Plain ``requests`` with google-auth (:class:`vertexkit.steps.Sender`), no aiplatform SDK: it runs
in a component container on Vertex AI, and tests point ``VERTEXKIT_ENDPOINT_AIPLATFORM`` at a fake.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path, PurePosixPath
from typing import Any

from vertexkit.local.registry import (
    _NAME_RE,
    _NAME_RULE,
    Direction,
    LocalModelRegistry,
    ModelVersion,
    Registration,
    _check_metrics,
    _decide,
    check_registration,
    describe_registration,
)
from vertexkit.steps import CloudError, HttpStep, Sender, endpoint

POLL_SECONDS = 5.0
UPLOAD_TIMEOUT_SECONDS = 3600.0
_VERTEX_URI = re.compile(
    r"vertex://(?P<project>[a-z][a-z0-9-]{4,28}[a-z0-9])/(?P<region>[a-z]+(?:-[a-z]+)+[0-9]+)/?"
)
RETRAIN_LABEL = "vertexkit-last-retrain"
_VERTEX_FORM = "vertex://PROJECT/REGION (e.g. vertex://my-project/europe-west4)"


@dataclass(frozen=True)
class VertexModelVersion(ModelVersion):
    """A version in Vertex AI; ``path`` is where Vertex AI containers see ``uri`` (/gcs/...)."""

    uri: str
    resource_name: str


@dataclass(frozen=True)
class VertexRegistration(Registration):
    """The outcome of :meth:`VertexModelRegistry.register`."""

    uri: str
    resource_name: str


class VertexModelRegistry:
    """Versions of one Vertex AI Model; the ``default`` version is the champion."""

    def __init__(
        self,
        project: str,
        region: str,
        model_name: str,
        *,
        serving_image: str = "",
        sender: Sender | None = None,
    ) -> None:
        """``serving_image`` (the container that serves the model) is needed to register only."""
        if not isinstance(model_name, str) or not _NAME_RE.fullmatch(model_name):
            raise ValueError(f"invalid model name {model_name!r}: must be {_NAME_RULE}")
        self.project, self.region, self.model_name = project, region, model_name
        self.serving_image = serving_image
        self._sender = sender
        self._location = f"projects/{project}/locations/{region}"
        self._model = f"{self._location}/models/{model_name}"

    def __repr__(self) -> str:
        return (
            f"VertexModelRegistry(project={self.project!r}, region={self.region!r}, "
            f"model_name={self.model_name!r})"
        )

    def register(
        self,
        model_path: str | Path,
        metrics: dict[str, float],
        *,
        metric: str,
        direction: Direction,
        source: str = "",
    ) -> VertexRegistration:
        """Upload a new version; move ``default`` to it if it beats the champion on ``metric``.

        ``model_path`` is the model directory as a gs:// URI or its /gcs/ path on Vertex AI.
        """
        if not self.serving_image:
            raise ValueError("serving_image is required to register: the model's serving container")
        metrics, value = check_registration(metrics, metric, direction)
        uri = _artifact_uri(model_path)
        before = self.champion()
        _decide(before, metric, value, direction)  # fail before uploading if it cannot compare
        description = json.dumps({"metrics": metrics, "source": source}, allow_nan=False)
        uploaded = self._upload(uri, description, new_model=True) if before is None else None
        created = uploaded is not None
        if uploaded is None:
            uploaded = self._upload(uri, description, new_model=False)
        version = int(uploaded["modelVersionId"])
        champion = None if created else self.champion()
        is_champion, comparison = _decide(champion, metric, value, direction)
        if is_champion and not created:
            self._send(
                "make the new version the default",
                "POST",
                f"{self._model}@{version}:mergeVersionAliases",
                {"versionAliases": ["default"]},
            )
        return VertexRegistration(
            version=version,
            path=_fuse_path(uri),
            is_champion=is_champion,
            previous_champion=champion.version if champion else None,
            previous_value=champion.metrics[metric] if champion else None,
            value=value,
            reason=describe_registration(version, champion, is_champion, comparison),
            uri=uri,
            resource_name=f"{self._model}@{version}",
        )

    def champion(self) -> VertexModelVersion | None:
        """The version holding the ``default`` alias, or None when the model does not exist."""
        model = self._send("get the champion", "GET", f"{self._model}@default", ok=(200, 404))
        if "error" in model:  # 404: the model has not been uploaded yet
            return None
        return self._version(model)

    def copy_champion_to(self, dest: str | Path) -> VertexModelVersion:
        """Download the champion's artifact directory from Cloud Storage into directory ``dest``."""
        from vertexkit.local.data import gcs_client  # honours STORAGE_EMULATOR_HOST

        champion = self.champion()
        if champion is None:
            raise LookupError(
                f"no champion for model {self.model_name!r} in the Vertex AI Model Registry "
                f"({self._location}): run the training pipeline first"
            )
        if not champion.uri.startswith("gs://"):
            raise LookupError(
                f"champion version {champion.version} of {self.model_name!r} has no Cloud "
                f"Storage artifact (artifactUri {champion.uri!r})"
            )
        bucket, _, prefix = champion.uri[len("gs://") :].partition("/")
        prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        dest, copied = Path(dest), 0
        for blob in gcs_client().list_blobs(bucket, prefix=prefix):
            relative = PurePosixPath(blob.name[len(prefix) :])
            if blob.name.endswith("/") or not relative.parts:
                continue  # folder placeholder objects
            if ".." in relative.parts:
                raise ValueError(f"refusing to copy object {blob.name!r}: it leaves {dest}")
            target = dest.joinpath(*relative.parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            blob.download_to_filename(str(target))
            copied += 1
        if not copied:
            raise FileNotFoundError(
                f"champion version {champion.version} of {self.model_name!r}: no files under "
                f"{champion.uri}"
            )
        return champion

    def claim_retrain(
        self, cooldown: timedelta, now: datetime | None = None, *, reason: str = ""
    ) -> tuple[bool, datetime | None]:
        """Claim the drift-triggered retraining of this model, once per ``cooldown``.

        The time of the last claim is the model-level label ``vertexkit-last-retrain`` (seconds
        since the epoch). The label is set with the etag of the model as read, a conditional
        update: of two concurrent claims, Vertex AI refuses the second (409 or 412), so one run
        starts. Returns (claimed, the last claim when refused within the cool-down).
        """
        now = now or datetime.now(timezone.utc)
        model = self._send("read the retrain label", "GET", self._model)
        labels = dict(model.get("labels") or {})
        stamp = labels.get(RETRAIN_LABEL, "")
        last = datetime.fromtimestamp(int(stamp), timezone.utc) if stamp.isdigit() else None
        if last is not None and now - last < cooldown:
            return False, last
        # The answer merges model and version labels; writing them back at model level keeps
        # every label the model showed, which is what a reader of the model sees anyway.
        labels[RETRAIN_LABEL] = str(int(now.timestamp()))
        body: dict[str, Any] = {"labels": labels}
        if model.get("etag"):
            body["etag"] = model["etag"]
        answer = self._send(
            "record the retraining",
            "PATCH",
            f"{self._model}?updateMask=labels",
            body,
            ok=(200, 409, 412),
        )
        if "error" in answer:  # a concurrent claim changed the model first
            return False, None
        return True, None

    def _upload(self, uri: str, description: str, *, new_model: bool) -> dict[str, Any] | None:
        """Upload one version and wait for it; None if ``new_model`` and the model exists."""
        body: dict[str, Any] = {
            "model": {
                "displayName": self.model_name,
                "artifactUri": uri,
                "containerSpec": {"imageUri": self.serving_image},
                "versionDescription": description,
            }
        }
        if new_model:
            body["modelId"] = self.model_name
        else:
            body["parentModel"] = self._model
        ok = (200, 409) if new_model else (200,)
        operation = self._send(
            "upload the model", "POST", f"{self._location}/models:upload", body, ok
        )
        if "error" in operation:  # 409: a concurrent run created the model first
            return None
        deadline, delay = time.monotonic() + UPLOAD_TIMEOUT_SECONDS, 0.0
        while not operation.get("done"):
            if time.monotonic() > deadline:
                raise CloudError(
                    f"model upload {operation['name']} did not finish within "
                    f"{UPLOAD_TIMEOUT_SECONDS:.0f} s; see it with GET /v1/{operation['name']}"
                )
            time.sleep(delay)  # poll at once, then back off to POLL_SECONDS
            delay = min(max(2 * delay, 0.5), POLL_SECONDS)
            operation = self._send("wait for the upload", "GET", operation["name"])
        if "error" in operation:
            error = operation["error"]
            raise CloudError(
                f"model upload {operation['name']} failed: {error.get('message') or error}"
            )
        return operation["response"]

    def _send(
        self, step: str, method: str, name: str, body: Any = None, ok: tuple[int, ...] = (200,)
    ) -> Any:
        url = f"{endpoint('aiplatform', self.region)}/v1/{name}"
        self._sender = self._sender or Sender()
        return self._sender.send(HttpStep(step, method, url, body, ok_statuses=ok))

    def _version(self, model: dict[str, Any]) -> VertexModelVersion:
        uri = model.get("artifactUri", "")
        record = _read_description(model.get("versionDescription", ""))
        return VertexModelVersion(
            version=int(model["versionId"]),
            path=_fuse_path(uri),
            metrics=record["metrics"],
            created=_timestamp(model["versionCreateTime"]),
            source=record["source"],
            is_champion="default" in model.get("versionAliases", []),
            uri=uri,
            resource_name=f"{self._model}@{model['versionId']}",
        )


def open_registry(
    uri: str, model_name: str, **kwargs: Any
) -> LocalModelRegistry | VertexModelRegistry:
    """``vertex://PROJECT/REGION``: Vertex AI (``kwargs`` go to it); anything else: a directory.

    The local registry takes no options and ignores ``kwargs``, so callers can pass the same
    arguments whichever registry the configuration names.
    """
    if not uri.lower().startswith("vertex:"):
        return LocalModelRegistry(uri, model_name)
    match = _VERTEX_URI.fullmatch(uri)
    if not match:
        raise ValueError(f"invalid model registry URI {uri!r}: expected {_VERTEX_FORM}")
    return VertexModelRegistry(match["project"], match["region"], model_name, **kwargs)


def _artifact_uri(model_path: str | Path) -> str:
    """gs://BUCKET/DIR from a gs:// URI or from its Cloud Storage FUSE path /gcs/BUCKET/DIR."""
    text = str(model_path).rstrip("/")
    if text.startswith("gs://") and len(text) > len("gs://"):
        return text
    parts = PurePosixPath(text).parts
    if len(parts) > 2 and parts[:2] == ("/", "gcs"):
        return "gs://" + "/".join(parts[2:])
    raise ValueError(
        f"model path {str(model_path)!r} is not in Cloud Storage: Vertex AI serves models from "
        "gs://BUCKET/DIR (in a Vertex AI container also seen as /gcs/BUCKET/DIR)"
    )


def _fuse_path(uri: str) -> Path:
    return Path("/gcs", uri[len("gs://") :]) if uri.startswith("gs://") else Path(uri)


def _read_description(text: str) -> dict[str, Any]:
    """Metrics and source from a versionDescription; none when it was not written by us."""
    try:
        record = json.loads(text)
        return {"metrics": _check_metrics(record["metrics"]), "source": record.get("source", "")}
    except (ValueError, TypeError, KeyError, AttributeError):
        return {"metrics": {}, "source": ""}


def _timestamp(text: str) -> datetime:
    """An RFC 3339 timestamp as the API writes it (Z, up to nanoseconds), on Python 3.10 too."""
    match = re.fullmatch(r"([^.]+?)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)", text)
    if not match:
        raise ValueError(f"unexpected timestamp {text!r}")
    base, fraction, zone = match.groups()
    micros = (fraction or "")[:6].ljust(6, "0")
    return datetime.fromisoformat(f"{base}.{micros}{'+00:00' if zone == 'Z' else zone}")
