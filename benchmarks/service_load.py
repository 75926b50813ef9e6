"""Load on the service over loopback: many concurrent uploads, embedded and with Celery workers.

Runs the real thing: ``echocxr serve`` as a subprocess on a fresh data folder (SQLite), and for
the scale-out mode ``--workers`` ``echocxr worker`` processes on the local Redis (a database
number nobody uses, and a queue prefix of its own) beside it, each given its share of the cores
(``ECHOCXR_TORCH_THREADS`` = cores / workers). Per mode:

1. **One study at a time**: ``--idle`` studies uploaded one after the other, each waited for, so
   nothing queues. The service's overhead per study is its upload-to-draft time less the
   model's own decoding (``model_s``), split by stage from the job's timings.
2. **Load**: ``--uploads`` distinct studies uploaded by as many concurrent clients. Upload errors
   (no 201), lost jobs (uploaded but neither done nor failed when the queue drained or
   ``--timeout`` passed), failed jobs, upload and upload-to-draft p50/p95, drafts per minute,
   and ``/healthz`` sampled every 0.2 s until the last draft.

Each mode's result replaces that mode's entry in ``results/service_load.json``; the table and
the plot are drawn from every entry, so the modes can be run one at a time (``--redraw`` only
redraws; the md's closing "Reading" is written by hand, so carry it over). The machine is shared:
run under ``nice`` and compare the modes of one result, not runs of different days.

    nice -n 5 python benchmarks/service_load.py --uploads 200 --mode embedded
    nice -n 5 python benchmarks/service_load.py --uploads 200 --mode celery --workers 2
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

RESULTS = Path(__file__).parent / "results"
ECHOCXR = str(Path(sys.executable).with_name("echocxr"))
FINISHED = ("done", "failed", "cancelled")
CORES = len(os.sched_getaffinity(0))
# the stages of one study's upload-to-draft (ms); "label" is the rest of the model's call
STAGES = ("upload", "queued", "read", "model", "label", "write", "total")


@dataclass
class ModeResult:
    mode: str
    uploads: int
    downscale: int
    workers: int  # drafting processes
    torch_threads: int  # each drafting process's
    started: str
    load_average: float  # the machine's 1-minute load when the mode started
    upload_errors: int = 0
    error_kinds: dict[str, int] = field(default_factory=dict)
    lost_jobs: int = 0
    failed_jobs: int = 0
    wall_s: float = 0.0  # first upload to last draft
    upload_s: list[float] = field(default_factory=list)
    upload_to_draft_s: list[float] = field(default_factory=list)
    model_s: list[float] = field(default_factory=list)  # per draft under load
    healthz: list[tuple[float, float]] = field(default_factory=list)  # (s since start, ms)
    healthz_failures: int = 0  # errors or no answer within 30 s
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
def unused_redis_db(url: str) -> Iterator[str]:
    """The URL of a Redis database number that holds no key, emptied again afterwards (all it
    holds then is the run's): the run's tasks stay apart from the tests' and other runs'."""
    import redis

    for number in range(15, 0, -1):
        client = redis.Redis.from_url(f"{url}/{number}")
        if client.dbsize() == 0:
            break
        client.close()
    else:
        raise RuntimeError(f"every database of {url} holds keys; free one or pass another --redis")
    try:
        yield f"{url}/{number}"
    finally:
        client.flushdb()
        client.close()


@contextmanager
def service(mode: str, workers: int, data: Path, redis: str) -> Iterator[tuple[str, str]]:
    """The API (and workers) running; yields its URL and a radiologist's key."""
    with ExitStack() as stack:
        env = {**os.environ, "ECHOCXR_DATA_DIR": str(data)}
        if mode == "celery":
            broker = stack.enter_context(unused_redis_db(redis))
            prefix = f"load{uuid.uuid4().hex[:8]}-"
            env |= {"ECHOCXR_BROKER_URL": broker, "ECHOCXR_QUEUE_PREFIX": prefix}
        yield from _serving(mode, workers, data, env)


def _serving(mode: str, workers: int, data: Path, env: dict[str, str]) -> Iterator[tuple[str, str]]:
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
        share = {"ECHOCXR_TORCH_THREADS": str(max(1, CORES // workers))}
        processes += [
            _start(
                [ECHOCXR, "worker", "--queues", "stat,generate"],
                env | share,
                logs / f"worker{i}.log",
            )
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


@dataclass
class Upload:
    job_id: str | None
    started: float  # wall clock (time.time()), comparable with the server's timestamps
    seconds: float
    error: str | None = None


def upload(client: httpx.Client, data: bytes) -> Upload:
    started, start = time.time(), time.perf_counter()
    try:
        response = client.post("/v1/studies", files={"file": ("study.dcm", data)})
    except httpx.HTTPError as error:
        return Upload(None, started, time.perf_counter() - start, type(error).__name__)
    elapsed = time.perf_counter() - start
    if response.status_code != 201:
        return Upload(None, started, elapsed, f"{response.status_code} {response.text[:120]}")
    return Upload(response.json()["job"]["id"], started, elapsed)


def unfinished(client: httpx.Client) -> int:
    """Jobs queued or running, from one ``/metrics`` scrape: following 200 jobs one by one
    would load the API (every job read is an audit event) more than the uploads do."""
    text = client.get("/metrics").text
    counts = re.findall(r'^echocxr_jobs\{state="(queued|running)"\} (\S+)$', text, re.M)
    return sum(int(float(count)) for _, count in counts)


def drain(client: httpx.Client, job_ids: list[str], timeout: float) -> dict[str, dict[str, Any]]:
    """Wait until nothing is queued or running (or ``timeout``), then read each job once."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if unfinished(client) == 0:
                break
        except httpx.HTTPError:
            pass  # a scrape lost under load: the next one tells
        time.sleep(2)
    return {job_id: client.get(f"/v1/jobs/{job_id}").json() for job_id in job_ids}


def finished_at(job: dict[str, Any]) -> float:
    return datetime.fromisoformat(job["finished_at"]).timestamp()


def warm_up(client: httpx.Client, studies: list[bytes]) -> None:
    """Load the model in every drafting process first: a first draft also loads the weights
    and the labeler, which is start-up cost, not per-study overhead."""
    with ThreadPoolExecutor(max_workers=len(studies)) as pool:
        uploads = list(pool.map(lambda data: upload(client, data), studies))
    drain(client, [u.job_id for u in uploads if u.job_id], 300)


def one_at_a_time(client: httpx.Client, studies: list[bytes], result: ModeResult) -> None:
    """The latency a lone study sees, less the model's decoding, and where it goes."""
    for data in studies:
        sent = upload(client, data)
        if sent.job_id is None:
            raise RuntimeError(f"an upload on an idle service failed: {sent.error}")
        job = drain(client, [sent.job_id], 120)[sent.job_id]
        if job["state"] != "done":
            continue
        timings = job["timings"]
        total = finished_at(job) - sent.started
        stages = {
            "upload": sent.seconds,
            "queued": timings["queued_s"],
            "read": timings["read_s"],
            "model": timings["model_s"],
            "label": timings["draft_s"] - timings["model_s"],
            "write": timings["write_s"],
            "total": total,
        }
        for stage, seconds in stages.items():
            result.idle_stages_ms.setdefault(stage, []).append(1000 * seconds)


@contextmanager
def sampling_health(url: str, result: ModeResult) -> Iterator[None]:
    """``/healthz`` asked every 0.2 s, on a connection of its own, while the block runs."""
    stop = threading.Event()
    origin = time.perf_counter()

    def sample() -> None:
        with httpx.Client(base_url=url, timeout=30) as probe:
            while not stop.wait(0.2):
                start = time.perf_counter()
                try:
                    answered = probe.get("/healthz").status_code == 200
                except httpx.HTTPError:
                    answered = False
                elapsed = time.perf_counter() - start
                result.healthz.append((round(start - origin, 2), round(1000 * elapsed, 1)))
                result.healthz_failures += not answered

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield
    finally:
        stop.set()
        sampler.join()


def under_load(
    client: httpx.Client, url: str, studies: list[bytes], timeout: float, result: ModeResult
) -> None:
    with sampling_health(url, result), ThreadPoolExecutor(max_workers=len(studies)) as pool:
        uploads = list(pool.map(lambda data: upload(client, data), studies))
        sent = {u.job_id: u for u in uploads if u.job_id is not None}
        jobs = drain(client, list(sent), timeout)
    result.upload_s = [u.seconds for u in uploads]
    result.upload_errors = len(uploads) - len(sent)
    result.error_kinds = dict(Counter(u.error for u in uploads if u.error))
    result.lost_jobs = sum(job["state"] not in FINISHED for job in jobs.values())
    result.failed_jobs = sum(job["state"] == "failed" for job in jobs.values())
    done = {job_id: job for job_id, job in jobs.items() if job["state"] == "done"}
    result.upload_to_draft_s = [finished_at(job) - sent[i].started for i, job in done.items()]
    result.model_s = [job["timings"]["model_s"] for job in done.values()]
    first = min(u.started for u in uploads)
    result.wall_s = max((finished_at(job) for job in done.values()), default=first) - first


def run_mode(mode: str, args: argparse.Namespace) -> ModeResult:
    workers = args.workers if mode == "celery" else 1
    result = ModeResult(
        mode=f"celery ({workers} workers)" if mode == "celery" else "embedded",
        uploads=args.uploads,
        downscale=args.downscale,
        workers=workers,
        torch_threads=max(1, CORES // workers) if mode == "celery" else CORES,
        started=datetime.now(UTC).isoformat(timespec="seconds"),
        load_average=os.getloadavg()[0],
    )
    studies = [phantom(i, args.downscale) for i in range(args.uploads)]
    idle = [phantom(100_000 + i, args.downscale) for i in range(args.idle)]
    warm = [phantom(200_000 + i, args.downscale) for i in range(2 * workers + 1)]
    data = Path(tempfile.mkdtemp(prefix=f"echocxr-load-{mode}-"))
    try:
        with service(mode, workers, data, args.redis) as (url, key):
            limits = httpx.Limits(max_connections=args.uploads + 10)
            headers = {"Authorization": f"Bearer {key}"}
            with httpx.Client(base_url=url, headers=headers, timeout=600, limits=limits) as client:
                warm_up(client, warm)
                one_at_a_time(client, idle, result)
                under_load(client, url, studies, args.timeout, result)
    finally:
        shutil.rmtree(data, ignore_errors=True)
    return result


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def overheads(r: dict[str, Any], model_stages: tuple[str, ...]) -> list[float]:
    """Per study, ms: upload start to draft less the stages counted as the model's."""
    stages = r["idle_stages_ms"]
    return [
        total - sum(stages[name][i] for name in model_stages)
        for i, total in enumerate(stages.get("total", []))
    ]


def _p50_p95(values: list[float]) -> str:
    return f"{percentile(values, 0.5):.0f} / {percentile(values, 0.95):.0f}"


def table(results: list[dict[str, Any]]) -> str:
    lines = [
        "# Service under load (benchmarks/service_load.py)",
        "",
        "Distinct phantom studies (one frontal DX each, downscaled: matrix ~2000 px / downscale) "
        "uploaded by as many concurrent clients over loopback to `echocxr serve` on SQLite, the "
        "shipped default model on the CPU. Embedded: the API drafts in its own pool (one "
        "process, torch's default threads, up to 4 queued drafts decoded together). Celery: "
        "`echocxr worker` processes on the local Redis, each with `ECHOCXR_TORCH_THREADS` = "
        "cores / workers, drafting one study at a time.",
        "",
        f"**A shared machine**: {CORES} cores shared with other engineers' builds and tests, "
        "each mode run under `nice -n 5`; the load average when each mode started and the "
        "model's own time per study under load against one study at a time (`model_s`, "
        "median) say how much of the machine the run had. Absolute times are noisy; compare "
        "the modes.",
        "",
        "| mode | started (UTC) | load avg | uploads | downscale | threads per drafter | "
        "model_s idle / under load |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['mode']} | {r['started']} | {r['load_average']:.1f} | {r['uploads']} | "
            f"{r['downscale']} | {r['torch_threads']} | "
            f"{_median(r['idle_stages_ms'].get('model', [])) / 1000:.2f} / "
            f"{_median(r['model_s']):.2f} s |"
        )
    lines += [
        "",
        "## Under load",
        "",
        "Lost jobs: uploaded (201) but neither done nor failed once the queue drained. "
        "Upload-to-draft: from the client starting its upload to the job's `finished_at`. "
        "Drafts/min: drafts over the time from the first upload to the last draft. `/healthz` "
        "asked every 0.2 s on a connection of its own from the first upload to the last draft.",
        "",
        "| mode | uploads | upload errors | lost jobs | failed jobs | upload p50 / p95 s | "
        "upload-to-draft p50 / p95 s | drafts/min | /healthz p50 / p95 / max ms (failed) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        health = [ms for _, ms in r["healthz"]]
        wall = r["wall_s"] or float("nan")
        lines.append(
            f"| {r['mode']} | {r['uploads']} | {r['upload_errors']} | {r['lost_jobs']} | "
            f"{r['failed_jobs']} | "
            f"{percentile(r['upload_s'], 0.5):.2f} / {percentile(r['upload_s'], 0.95):.2f} | "
            f"{percentile(r['upload_to_draft_s'], 0.5):.1f} / "
            f"{percentile(r['upload_to_draft_s'], 0.95):.1f} | "
            f"{60 * len(r['upload_to_draft_s']) / wall:.1f} | "
            f"{percentile(health, 0.5):.0f} / {percentile(health, 0.95):.0f} / "
            f"{max(health, default=float('nan')):.0f} ({r['healthz_failures']}) |"
        )
    errors = {kind: n for r in results for kind, n in r["error_kinds"].items()}
    if errors:
        lines += ["", "Upload errors: " + "; ".join(f"{k} ×{n}" for k, n in errors.items())]
    lines += [
        "",
        "## One study at a time (nothing queued)",
        "",
        "The service's overhead per study: upload-to-draft less the model's time; goal ≤ 100 "
        "ms p95 on an idle machine. Counted two ways: less the decoding only (`model_s`), and "
        "less the whole call to the model (`ReportGenerator.generate`: the image encoder, the "
        "decoding and labelling the text). Stages, ms (median): `upload` the upload request as "
        "the client sees it (reading, de-identifying and recording the study), `queued` from "
        "the job's record to a drafter taking it, `read` decoding the stored DICOM into the "
        "model's input, `model` the decoding, `label` the rest of the model's call (image "
        "encoder, labelling), `write` rendering and storing JSON, SR, PDF and FHIR and "
        "recording the draft; `total` is upload start to the job's `finished_at`.",
        "",
        "| mode | studies | overhead over decoding p50 / p95 ms | over the model's call | "
        + " | ".join(STAGES)
        + " |",
        "|---|---|---|---|" + "---|" * len(STAGES),
    ]
    for r in results:
        stages = " | ".join(f"{_median(r['idle_stages_ms'].get(s, [])):.0f}" for s in STAGES)
        lines.append(
            f"| {r['mode']} | {len(r['idle_stages_ms'].get('total', []))} | "
            f"{_p50_p95(overheads(r, ('model',)))} | "
            f"{_p50_p95(overheads(r, ('model', 'label')))} | {stages} |"
        )
    return "\n".join(lines) + "\n"


def plot(results: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(11, 4))
    for r in results:
        ordered = sorted(r["upload_to_draft_s"])
        shares = [(i + 1) / len(ordered) for i in range(len(ordered))]
        axes[0].plot(ordered, shares, label=r["mode"])
        if r["healthz"]:
            seconds, ms = zip(*r["healthz"], strict=True)
            axes[1].plot(seconds, ms, ".", markersize=2, label=r["mode"])
    axes[0].set(xlabel="upload-to-draft (s)", ylabel="share of studies", title="Drafts under load")
    axes[1].set(xlabel="s since the first upload", ylabel="/healthz (ms)", title="/healthz, busy")
    axes[1].set_yscale("log")
    for ax in axes:
        ax.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--uploads", type=int, default=200, help="concurrent uploads")
    parser.add_argument(
        "--mode", action="append", choices=("embedded", "celery"), help="repeatable; default both"
    )
    parser.add_argument("--workers", type=int, default=2, help="Celery worker processes")
    parser.add_argument("--idle", type=int, default=20, help="studies drafted one at a time")
    parser.add_argument("--downscale", type=int, default=4)
    parser.add_argument("--timeout", type=float, default=3600, help="seconds for the queue")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379", help="without a db number")
    parser.add_argument("--redraw", action="store_true", help="only redraw the table and plot")
    args = parser.parse_args()
    stored = RESULTS / "service_load.json"
    runs = json.loads(stored.read_text()).get("runs", {}) if stored.exists() else {}
    for mode in [] if args.redraw else args.mode or ["embedded", "celery"]:
        runs[mode] = asdict(run_mode(mode, args))
        RESULTS.mkdir(exist_ok=True)
        stored.write_text(json.dumps({"runs": runs}, indent=1) + "\n")
        draw(runs)
    if args.redraw:
        draw(runs)


def draw(runs: dict[str, dict[str, Any]]) -> None:
    results = [runs[name] for name in ("embedded", "celery") if name in runs]
    (RESULTS / "service_load.md").write_text(table(results))
    plot(results, RESULTS / "service_load.png")
    print(table(results))


if __name__ == "__main__":
    main()
