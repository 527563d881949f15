"""Fakes of the orchestrators' APIs, just enough for vertexkit's requests, at the HTTP boundary.

Each registers routes on a :class:`tests.recording_server.RecordingServer` and keeps the state
those requests change, so that tests check what vertexkit sent and what it made of the answers.
"""

from __future__ import annotations

import json
import re
from typing import Any

import yaml

from tests.recording_server import Recorded, RecordingServer

API = "/apis/v2beta1"
# How a fake run moves on each time it is read; a run with the parameter label="fail" fails.
PROGRESS = {"PENDING": "RUNNING", "RUNNING": "SUCCEEDED"}
VERTEX_PROGRESS = {
    "PIPELINE_STATE_PENDING": "PIPELINE_STATE_RUNNING",
    "PIPELINE_STATE_RUNNING": "PIPELINE_STATE_SUCCEEDED",
}


class FakeKfp:
    """Just enough of the KFP v2beta1 API server for publish and run, at the HTTP boundary."""

    def __init__(self, server: RecordingServer, multi_user: bool = False) -> None:
        self.reset()
        server.route("GET", f"{API}/healthz", (200, {"multi_user": multi_user}))
        server.route("GET", f"{API}/pipelines", self.list_pipelines)
        server.route("POST", f"{API}/pipelines/upload", self.upload)
        server.route("POST", f"{API}/pipelines/upload_version", self.upload_version)
        server.route("GET", f"{API}/pipelines/[^/]+/versions", self.list_versions)
        server.route("GET", f"{API}/experiments", self.list_experiments)
        server.route("POST", f"{API}/experiments", self.create_experiment)
        server.route("POST", f"{API}/runs", self.create_run)
        server.route("GET", f"{API}/runs", self.list_runs)
        server.route("GET", f"{API}/runs/[^/]+", self.read_run)

    def reset(self) -> None:
        self.pipelines: list[dict[str, Any]] = []
        self.versions: list[dict[str, Any]] = []
        self.experiments: list[dict[str, Any]] = []
        self.runs: list[dict[str, Any]] = []

    @staticmethod
    def _matches(request: Recorded, item: dict[str, Any]) -> bool:
        [spec] = request.query.get("filter", ['{"predicates": []}'])
        for predicate in json.loads(spec)["predicates"]:
            value = str(item.get(predicate["key"], "")).lower()
            wanted = predicate["stringValue"].lower()
            if predicate["operation"] == 1 and value != wanted:
                return False
            if predicate["operation"] == 9 and wanted not in value:
                return False
        return True

    def list_pipelines(self, request: Recorded) -> tuple[int, Any]:
        found = [p for p in self.pipelines if self._matches(request, p)]
        return 200, ({"pipelines": found, "total_size": len(found)} if found else {})

    def _version(self, pipeline_id: str, name: str) -> dict[str, Any]:
        version = {
            "pipeline_id": pipeline_id,
            "pipeline_version_id": f"v{len(self.versions) + 1}",
            "name": name,
            "display_name": name,
        }
        self.versions.append(version)
        return version

    def upload(self, request: Recorded) -> tuple[int, Any]:
        [name] = request.query["name"]
        if any(p["name"] == name for p in self.pipelines):
            return 409, {"error_message": "Failed to create a pipeline and a pipeline version"}
        pipeline = {"pipeline_id": f"p{len(self.pipelines) + 1}", "name": name}
        pipeline["display_name"] = name
        self.pipelines.append(pipeline)
        self._version(pipeline["pipeline_id"], name)  # KFP's upload makes a first version
        return 200, pipeline

    def upload_version(self, request: Recorded) -> tuple[int, Any]:
        [pipeline_id], [name] = request.query["pipelineid"], request.query["name"]
        if any(v["pipeline_id"] == pipeline_id and v["name"] == name for v in self.versions):
            return 409, {"error_message": "Failed to create a pipeline version"}
        return 200, self._version(pipeline_id, name)

    def list_versions(self, request: Recorded) -> tuple[int, Any]:
        pipeline_id = request.path.split("/")[-2]
        found = [
            v
            for v in reversed(self.versions)  # newest first, as sort_by=created_at desc
            if v["pipeline_id"] == pipeline_id and self._matches(request, v)
        ][: int(request.query.get("page_size", ["100"])[0])]
        return 200, ({"pipeline_versions": found} if found else {})

    def list_experiments(self, request: Recorded) -> tuple[int, Any]:
        found = [e for e in self.experiments if self._matches(request, e)]
        return 200, ({"experiments": found} if found else {})

    def create_experiment(self, request: Recorded) -> tuple[int, Any]:
        experiment = {"experiment_id": f"e{len(self.experiments) + 1}", **request.json}
        self.experiments.append(experiment)
        return 200, experiment

    def create_run(self, request: Recorded) -> tuple[int, Any]:
        run = {"run_id": f"r{len(self.runs) + 1}", "state": "PENDING", **request.json}
        self.runs.append(run)
        return 200, run

    def list_runs(self, request: Recorded) -> tuple[int, Any]:
        [experiment] = request.query.get("experiment_id", [""])
        found = [r for r in reversed(self.runs) if r.get("experiment_id") == experiment]
        return 200, ({"runs": found} if found else {})

    def read_run(self, request: Recorded) -> tuple[int, Any]:
        """The run, one state further each time it is read (PENDING, RUNNING, the end)."""
        run_id = request.path.rsplit("/", 1)[-1]
        run = next((r for r in self.runs if r["run_id"] == run_id), None)
        if run is None:
            return 404, {"error": f"run {run_id} not found", "code": 5}
        if run["state"] in PROGRESS:
            run["state"] = PROGRESS[run["state"]]
        task: dict[str, Any] = {"display_name": "train", "state": run["state"]}
        parameters = run.get("runtime_config", {}).get("parameters", {})
        if run["state"] == "SUCCEEDED" and parameters.get("label") == "fail":
            run["state"] = task["state"] = "FAILED"
            run["error"] = task["error"] = {"message": "train: exit code 1"}
        run["run_details"] = {"task_details": [task]}
        return 200, run


class FakeVertex:
    """Enough of Vertex AI (pipeline jobs, metadata) and the Artifact Registry KFP repository for
    publish, submit, follow, list and read. Paths are those of the v1 API and of kfp.pkg.dev."""

    def __init__(self, server: RecordingServer, project: str, region: str) -> None:
        self.parent = f"projects/{project}/locations/{region}"
        self.jobs: list[dict[str, Any]] = []
        self.uploads: list[Recorded] = []
        self.tags: set[tuple[str, str]] = set()  # (package, tag) published
        base = f"/v1/{self.parent}"
        server.route("POST", f"/{project}/[^/]+", self.upload)
        server.route("GET", f"{base}/repositories/[^/]+/packages/[^/]+/tags/[^/]+", self.read_tag)
        server.route("POST", f"{base}/metadataStores", (200, {}))
        server.route("POST", f"{base}/metadataStores/default/contexts", (200, {}))
        server.route("POST", f"{base}/metadataStores/default/contexts/[^/]+", (200, {}))
        server.route("POST", f"{base}/pipelineJobs", self.create_job)
        server.route("GET", f"{base}/pipelineJobs", self.list_jobs)
        server.route("GET", f"{base}/pipelineJobs/[^/]+", self.read_job)

    def upload(self, request: Recorded) -> tuple[int, Any]:
        """The registry answers ``<package>/sha256:<digest>`` (as text; JSON here)."""
        self.uploads.append(request)
        package = yaml.safe_load(_form_field(request.body, "content"))["pipelineInfo"]["name"]
        for tag in _form_field(request.body, "tags").split(","):
            self.tags.add((package, tag))
        return 200, f"{package}/sha256:{'ab' * 32}"

    def read_tag(self, request: Recorded) -> tuple[int, Any]:
        """Artifact Registry's tag of a package, as kfp's RegistryClient.get_tag reads it."""
        parts = request.path.split("/")
        package, tag = parts[-3], parts[-1]
        if (package, tag) not in self.tags:
            return 404, {"error": {"code": 404, "message": f"{package}:{tag} not found"}}
        name = request.path.removeprefix("/v1/")
        return 200, {"name": name, "version": f"{name.rsplit('/tags/', 1)[0]}/versions/x"}

    def create_job(self, request: Recorded) -> tuple[int, Any]:
        [job_id] = request.query["pipelineJobId"]
        job = {
            **request.json,
            "name": f"{self.parent}/pipelineJobs/{job_id}",
            "state": "PIPELINE_STATE_PENDING",
            "createTime": "2026-11-23T10:30:05Z",
        }
        self.jobs.append(job)
        return 200, job

    def list_jobs(self, request: Recorded) -> tuple[int, Any]:
        """Newest first; a ``filter`` of ``labels.KEY="VALUE"`` terms joined by AND applies."""
        [spec] = request.query.get("filter", [""])
        wanted = dict(re.findall(r'labels\.([a-z0-9_-]+)="([^"]*)"', spec))
        found = [
            job
            for job in reversed(self.jobs)
            if all(job.get("labels", {}).get(k) == v for k, v in wanted.items())
        ][: int(request.query.get("pageSize", ["100"])[0])]
        return 200, ({"pipelineJobs": found} if found else {})

    def read_job(self, request: Recorded) -> tuple[int, Any]:
        """The job, one state further each time it is read, with its run's metadata context."""
        name = request.path.removeprefix("/v1/")
        job = next((j for j in self.jobs if j["name"] == name), None)
        if job is None:
            return 404, {"error": {"code": 404, "message": f"{name} not found"}}
        job["state"] = VERTEX_PROGRESS.get(job["state"], job["state"])
        task: dict[str, Any] = {"taskName": "train", "state": job["state"].split("_")[-1]}
        parameters = job.get("runtimeConfig", {}).get("parameterValues", {})
        if job["state"].endswith("SUCCEEDED") and parameters.get("label") == "fail":
            job["state"] = "PIPELINE_STATE_FAILED"
            task["state"] = "FAILED"
            job["error"] = task["error"] = {"message": "train: exit code 1"}
        job["jobDetail"] = {
            "pipelineRunContext": {"name": f"{self.parent}/metadataStores/default/contexts/r"},
            "taskDetails": [task],
        }
        return 200, job


def _form_field(body: bytes, name: str) -> str:
    """One field of a multipart/form-data body (files and plain fields alike)."""
    marker = f'name="{name}"'.encode()
    start = body.index(marker)
    value_start = body.index(b"\r\n\r\n", start) + 4
    value_end = body.index(b"\r\n--", value_start)
    return body[value_start:value_end].decode()
