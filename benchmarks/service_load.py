"""Load on the service over loopback: many concurrent uploads, embedded and with Celery workers.

Runs the real thing: ``echocxr serve`` as a subprocess on a fresh data folder (SQLite), and for
the scale-out mode ``echocxr worker`` processes on the local Redis (a queue prefix of its own)
beside it. Per mode:

1. **Idle overhead**: studies uploaded one at a time, each waited for, so nothing queues. The
   service's overhead per study is its upload-to-draft time less the model's own decoding
   (``model_s``), split by stage from the job's timings.
2. **Load**: ``--studies`` distinct studies uploaded by as many concurrent clients; every job is
   followed to its end. Errors (non-201 uploads), lost jobs (not done within ``--timeout``),
   upload-to-draft p50/p95, and ``/healthz`` latency sampled throughout.

Writes ``results/service_load.{json,md,png}``. Numbers from a shared machine are noisy: compare
the modes of one run, not runs of different days.

    python benchmarks/service_load.py --studies 200 --workers 2
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

RESULTS = Path(__file__).parent / "results"
ECHOCXR = str(Path(sys.executable).with_name("echocxr"))
FINISHED = ("done", "failed", "cancelled")


@dataclass
class ModeResult:
    mode: str
    studies: int
    upload_errors: int = 0
    lost_jobs: int = 0
    failed_jobs: int = 0
    wall_s: float = 0.0
    upload_s: list[float] = field(default_factory=list)
    upload_to_draft_s: list[float] = field(default_factory=list)
    healthz_ms: list[float] = field(default_factory=list)
    healthz_failures: int = 0  # errors or no answer within 30 s
    idle_overhead_ms: list[float] = field(default_factory=list)
    idle_stages_ms: dict[str, list[float]] = field(default_factory=dict)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def phantom(index: int, downscale: int) -> bytes:
    from pydicom.filebase import DicomBytesIO

    from model.data.phantom import sample_case
    from model.data.phantom.dicom_export import to_dicom

    buffer = DicomBytesIO()
    to_dicom(sample_case(20261206, index), downscale=downscale).save_as(
        buffer, enforce_file_format=True
    )
    return buffer.getvalue()


@contextmanager
def service(mode: str, workers: int, data: Path, redis: str) -> Iterator[tuple[str, str]]:
    """The API (and workers) running; yields its URL and a radiologist's key."""
    env = {**os.environ, "ECHOCXR_DATA_DIR": str(data)}
    if mode == "celery":
        env |= {"ECHOCXR_BROKER_URL": redis, "ECHOCXR_QUEUE_PREFIX": f"load{uuid.uuid4().hex[:8]}-"}
    added = subprocess.run(
        [ECHOCXR, "users", "add", "Load Test", "--role", "radiologist"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    key = added.stdout.strip().splitlines()[-1]
    port = free_port()
    logs = data / "logs"
    logs.mkdir()
    processes = [_start([ECHOCXR, "serve", "--port", str(port)], env, logs / "api.log")]
    if mode == "celery":
        processes += [
            _start([ECHOCXR, "worker", "--queues", "stat,generate"], env, logs / f"worker{i}.log")
            for i in range(workers)
        ]
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_ready(url)
        yield url, key
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()


def _start(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as sink:
        return subprocess.Popen(command, env=env, stdout=sink, stderr=subprocess.STDOUT)


def _wait_ready(url: str, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{url} was not ready within {seconds} s")


ERRORS: list[str] = []


def upload(client: httpx.Client, data: bytes) -> tuple[str | None, float]:
    start = time.perf_counter()
    try:
        response = client.post("/v1/studies", files={"file": ("study.dcm", data)})
    except httpx.HTTPError as error:
        ERRORS.append(type(error).__name__)
        return None, time.perf_counter() - start
    elapsed = time.perf_counter() - start
    if response.status_code != 201:
        ERRORS.append(f"{response.status_code} {response.text[:200]}")
        return None, elapsed
    return response.json()["job"]["id"], elapsed


def follow(client: httpx.Client, job_ids: list[str], timeout: float) -> dict[str, dict[str, Any]]:
    """Each job's record once it ends (or as it stands at ``timeout``)."""
    jobs: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + timeout
    pending = set(job_ids)
    while pending and time.monotonic() < deadline:
        for job_id in list(pending):
            job = client.get(f"/v1/jobs/{job_id}").json()
            jobs[job_id] = job
            if job["state"] in FINISHED:
                pending.discard(job_id)
        time.sleep(0.5)
    return jobs


def latency(job: dict[str, Any]) -> float:
    from datetime import datetime

    created = datetime.fromisoformat(job["created_at"])
    finished = datetime.fromisoformat(job["finished_at"])
    return (finished - created).total_seconds()


def warm_up(client: httpx.Client, studies: list[bytes]) -> None:
    """Load the models in every drafting process first: a first draft also loads the weights
    and the labeler, which is start-up cost, not per-study overhead."""
    with ThreadPoolExecutor(max_workers=len(studies)) as pool:
        job_ids = [job_id for job_id, _ in pool.map(lambda data: upload(client, data), studies)]
    follow(client, [job_id for job_id in job_ids if job_id], 300)


def idle_overhead(client: httpx.Client, studies: list[bytes], result: ModeResult) -> None:
    """One study at a time: the latency a lone study sees, less the model's decoding."""
    for data in studies:
        job_id, upload_s = upload(client, data)
        assert job_id is not None
        job = follow(client, [job_id], 120)[job_id]
        if job["state"] != "done":
            continue
        total = upload_s + latency(job)
        result.idle_overhead_ms.append(1000 * (total - job["timings"]["model_s"]))
        stages = {"upload_response": upload_s, **job["timings"]}
        for stage, seconds in stages.items():
            result.idle_stages_ms.setdefault(stage, []).append(1000 * seconds)


def load(
    client: httpx.Client, url: str, studies: list[bytes], timeout: float, result: ModeResult
) -> None:
    stop = threading.Event()

    def sample_health() -> None:
        with httpx.Client(base_url=url, timeout=30) as probe:
            while not stop.wait(0.2):
                start = time.perf_counter()
                try:
                    answered = probe.get("/healthz").status_code == 200
                except httpx.HTTPError:
                    answered = False
                result.healthz_ms.append(1000 * (time.perf_counter() - start))
                result.healthz_failures += not answered

    sampler = threading.Thread(target=sample_health, daemon=True)
    sampler.start()
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=len(studies)) as pool:
        uploads = list(pool.map(lambda data: upload(client, data), studies))
    result.upload_s = [seconds for _, seconds in uploads]
    job_ids = [job_id for job_id, _ in uploads if job_id is not None]
    result.upload_errors = len(studies) - len(job_ids)
    jobs = follow(client, job_ids, timeout)
    result.wall_s = time.perf_counter() - start
    stop.set()
    sampler.join()
    result.lost_jobs = sum(job["state"] not in FINISHED for job in jobs.values())
    result.failed_jobs = sum(job["state"] == "failed" for job in jobs.values())
    result.upload_to_draft_s = [latency(job) for job in jobs.values() if job["state"] == "done"]


def run_mode(
    mode: str, args: argparse.Namespace, studies: list[bytes], idle: list[bytes]
) -> ModeResult:
    result = ModeResult(
        mode=f"{mode} ({args.workers} workers)" if mode == "celery" else mode, studies=len(studies)
    )
    data = Path(tempfile.mkdtemp(prefix=f"echocxr-load-{mode}-"))
    try:
        with service(mode, args.workers, data, args.redis) as (url, key):
            limits = httpx.Limits(max_connections=len(studies) + 10)
            headers = {"Authorization": f"Bearer {key}"}
            with httpx.Client(base_url=url, headers=headers, timeout=600, limits=limits) as client:
                warm_up(client, [phantom(200_000 + i, args.downscale) for i in range(3)])
                idle_overhead(client, idle, result)
                load(client, url, studies, args.timeout, result)
    finally:
        shutil.rmtree(data, ignore_errors=True)
    return result


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def table(results: list[ModeResult], args: argparse.Namespace) -> str:
    lines = [
        "# Service under load (benchmarks/service_load.py)",
        "",
        f"{args.studies} distinct phantom studies (one frontal DX, downscale {args.downscale}: "
        f"matrix ~{2000 // args.downscale} px), uploaded by as many concurrent clients on "
        "loopback; SQLite; the shipped default model on the CPU; this machine's 2 cores "
        "shared with other work, so absolute times are noisy.",
        "",
        "| mode | uploads | upload errors | lost jobs | failed jobs | upload p50 / p95 s | "
        "upload-to-draft p50 / p95 s | drafts/min | /healthz p50 / p95 / max ms (failed) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r.mode} | {r.studies} | {r.upload_errors} | {r.lost_jobs} | {r.failed_jobs} | "
            f"{percentile(r.upload_s, 0.5):.2f} / {percentile(r.upload_s, 0.95):.2f} | "
            f"{percentile(r.upload_to_draft_s, 0.5):.1f} / "
            f"{percentile(r.upload_to_draft_s, 0.95):.1f} | "
            f"{60 * len(r.upload_to_draft_s) / r.wall_s:.0f} | "
            f"{percentile(r.healthz_ms, 0.5):.0f} / {percentile(r.healthz_ms, 0.95):.0f} / "
            f"{max(r.healthz_ms, default=float('nan')):.0f} ({r.healthz_failures}) |"
        )
    lines += [
        "",
        f"## One study at a time ({args.idle} studies each, nothing queued)",
        "",
        "Overhead = upload-to-draft less the model's own decoding (`model_s`); the stages are "
        "the job's timings (ms, median): `read_s` decodes the DICOM, `draft_s` is the model "
        "plus labelling the text, `write_s` renders and stores JSON, SR, PDF and FHIR.",
        "",
        "| mode | overhead p50 / p95 ms | " + " | ".join(STAGES) + " |",
        "|---|---|" + "---|" * len(STAGES),
    ]
    for r in results:
        stages = " | ".join(
            f"{statistics.median(r.idle_stages_ms.get(s, [float('nan')])):.0f}" for s in STAGES
        )
        lines.append(
            f"| {r.mode} | {percentile(r.idle_overhead_ms, 0.5):.0f} / "
            f"{percentile(r.idle_overhead_ms, 0.95):.0f} | {stages} |"
        )
    return "\n".join(lines) + "\n"


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


STAGES = ("upload_response", "queued_s", "read_s", "model_s", "draft_s", "write_s", "total_s")


def plot(results: list[ModeResult], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(11, 4))
    for r in results:
        ordered = sorted(r.upload_to_draft_s)
        axes[0].plot(
            ordered, [i / max(1, len(ordered) - 1) for i in range(len(ordered))], label=r.mode
        )
        axes[1].plot(sorted(r.healthz_ms), label=r.mode)
    axes[0].set(xlabel="upload-to-draft (s)", ylabel="share of studies", title="Drafts under load")
    axes[1].set(xlabel="samples (sorted)", ylabel="/healthz (ms)", title="/healthz while busy")
    axes[1].set_yscale("log")
    for ax in axes:
        ax.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--studies", type=int, default=200)
    parser.add_argument("--idle", type=int, default=20, help="studies for the idle overhead")
    parser.add_argument("--workers", type=int, default=2, help="Celery worker processes")
    parser.add_argument("--downscale", type=int, default=4)
    parser.add_argument("--timeout", type=float, default=1800)
    parser.add_argument("--modes", default="embedded,celery")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args()
    studies = [phantom(i, args.downscale) for i in range(args.studies)]
    idle = [phantom(100_000 + i, args.downscale) for i in range(args.idle)]
    results = [run_mode(mode, args, studies, idle) for mode in args.modes.split(",")]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "service_load.json").write_text(
        json.dumps({"args": vars(args), "results": [asdict(r) for r in results]}, indent=1) + "\n"
    )
    (RESULTS / "service_load.md").write_text(table(results, args))
    plot(results, RESULTS / "service_load.png")
    print(table(results, args))
    print("errors:", sorted(set(ERRORS))[:20])


if __name__ == "__main__":
    main()
