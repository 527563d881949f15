"""The submission service's cold start and memory against the Vertex AI SDK's, then its latency
under load.

    .venv/bin/python benchmarks/service_cold_start.py [--runs 5] [--seconds 30] [--clients 50]

1. Cold start: in ``--runs`` fresh Python processes each, the time to import the service and
   create its ASGI app (dry-run backend, over a project whose pipelines are compiled) and the
   process's peak resident memory, read in the child: ``VmHWM`` of ``/proc/self/status`` where
   there is one, else ``resource.getrusage`` (whose ``ru_maxrss`` on Linux keeps the high-water
   mark of the process image before ``exec``, i.e. of the parent); the same for ``from
   google.cloud import aiplatform``; medians, and their ratio. Targets: ratio under 0.25, memory
   under 120 MB.
2. Load: the service (dry-run backend) served by uvicorn on 127.0.0.1 in its own process, and
   ``--clients`` concurrent clients (one asyncio loop, httpx) posting valid runs for
   ``--seconds`` (and at most ``--max-requests``): median and 99th-percentile latency, requests
   per second and the number of errors (any answer but 200, or no answer).

The figures are printed, not asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

PEAK_RSS = """
def peak_rss_mb():
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
"""
SERVICE_CHILD = (
    PEAK_RSS
    + """
import json, sys, time
started = time.perf_counter()
from vertexkit.service.server import asgi, create_service
app = asgi(create_service(sys.argv[1], "dev", backend="dry-run", commit="0123456789ab"))
seconds = time.perf_counter() - started
heavy = sorted(m for m in sys.modules if m == "kfp" or m.startswith("google.cloud.aiplatform"))
print(json.dumps({"seconds": seconds, "rss_mb": peak_rss_mb(), "heavy": heavy}))
"""
)
SDK_CHILD = (
    PEAK_RSS
    + """
import json, time
started = time.perf_counter()
from google.cloud import aiplatform
seconds = time.perf_counter() - started
print(json.dumps({"seconds": seconds, "rss_mb": peak_rss_mb()}))
"""
)
MAKE_PROJECT = """
import sys
sys.path.insert(0, sys.argv[1])
from pathlib import Path
from tests.service_support import make_project
make_project(Path(sys.argv[2]))
"""
SERVER_CHILD = """
import sys, uvicorn
from vertexkit.service.server import asgi, configure_logging, create_service
configure_logging()  # one JSON line a request, as in Cloud Run (to /dev/null here)
app = asgi(create_service(sys.argv[1], "dev", backend="dry-run", commit="0123456789ab"))
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning", access_log=False)
"""
BODY = {"parameters": {"threshold": 0.5, "tags": ["a"], "rounds": 3}}


def measure(code: str, *args: str, runs: int) -> tuple[float, float, list[str]]:
    """Median seconds and peak RSS (MB) over ``runs`` fresh processes."""
    results = []
    for _ in range(runs):
        output = subprocess.run(
            [sys.executable, "-c", code, *args], capture_output=True, text=True, check=True
        ).stdout
        results.append(json.loads(output.strip().splitlines()[-1]))
    seconds = statistics.median(r["seconds"] for r in results)
    rss = statistics.median(r["rss_mb"] for r in results)
    return seconds, rss, results[-1].get("heavy", [])


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def load(url: str, clients: int, seconds: float, max_requests: int) -> dict[str, float]:
    import httpx

    latencies: list[float] = []
    errors = 0
    deadline = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)

    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as client:

        async def one_client() -> None:
            nonlocal errors
            while time.monotonic() < deadline and len(latencies) + errors < max_requests:
                started = time.perf_counter()
                try:
                    response = await client.post("/pipelines/scoring/runs", json=BODY)
                    ok = response.status_code == 200 and response.json().get("dry_run") is True
                except httpx.HTTPError:
                    ok = False
                if ok:
                    latencies.append(time.perf_counter() - started)
                else:
                    errors += 1

        began = time.monotonic()
        await asyncio.gather(*(one_client() for _ in range(clients)))
        elapsed = time.monotonic() - began
    latencies.sort()
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] if latencies else 0.0
    return {
        "requests": len(latencies) + errors,
        "errors": errors,
        "median_ms": statistics.median(latencies) * 1000 if latencies else 0.0,
        "p99_ms": p99 * 1000,
        "per_second": (len(latencies) + errors) / elapsed,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--max-requests", type=int, default=200_000)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as folder:
        # Compiled in a child too: this process stays small (kfp is never imported here).
        project = Path(folder) / "project"
        subprocess.run(
            [sys.executable, "-c", MAKE_PROJECT, str(ROOT), str(project)],
            check=True,
            capture_output=True,
        )
        print(f"cold start: medians of {args.runs} fresh processes")
        seconds, rss, heavy = measure(SERVICE_CHILD, str(project), runs=args.runs)
        sdk_seconds, sdk_rss, _ = measure(SDK_CHILD, runs=args.runs)
        print(f"  service import + app:          {seconds * 1000:7.0f} ms  {rss:6.1f} MB peak RSS")
        print(
            f"  from google.cloud import aiplatform: {sdk_seconds * 1000:5.0f} ms"
            f"  {sdk_rss:6.1f} MB"
        )
        print(f"  ratio (time):  {seconds / sdk_seconds:.3f}   (target < 0.25)")
        print(f"  ratio (RSS):   {rss / sdk_rss:.3f}")
        print(f"  service RSS under 120 MB: {'yes' if rss < 120 else 'NO'}")
        print(f"  kfp / Vertex SDK imported by the service: {heavy or 'none'}")

        port = free_port()
        server = subprocess.Popen(
            [sys.executable, "-c", SERVER_CHILD, str(project), str(port)],
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            stdout=subprocess.DEVNULL,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            import httpx

            deadline = time.monotonic() + 30
            while True:
                try:
                    httpx.get(f"{url}/healthz", timeout=1)
                    break
                except httpx.HTTPError:
                    if time.monotonic() > deadline:
                        raise SystemExit("the service did not start") from None
                    time.sleep(0.1)
            print(
                f"load: {args.clients} concurrent clients for {args.seconds:.0f} s, dry-run "
                "backend, POST /pipelines/scoring/runs"
            )
            figures = asyncio.run(load(url, args.clients, args.seconds, args.max_requests))
        finally:
            server.terminate()
            server.wait(timeout=20)
        print(
            f"  requests {figures['requests']}  ({figures['per_second']:.0f}/s)  "
            f"median {figures['median_ms']:.1f} ms  p99 {figures['p99_ms']:.1f} ms  "
            f"errors {figures['errors']}"
        )


if __name__ == "__main__":
    main()
