"""Archives through the service: studies per minute with 1 and 2 Celery worker processes, and
where the time goes.

Run: ``.venv/bin/python benchmarks/batch_throughput.py [--n 1000] [--processes 1 2]
[--chunk 16] [--readers 1]`` with Redis on 127.0.0.1:6379.
Writes ``benchmarks/results/batch_throughput.{md,json,png}``.

A batch of ``--n`` full-resolution phantom studies (a server folder, as ``POST /v1/batches``
takes it) is recorded and its chunks queued on the ``generate`` queue of a fresh SQLite
database and queue prefix; one ``echocxr worker --concurrency P`` drafts it, for each ``P`` of
``--processes``. Each worker process loads the model on its first chunk and keeps
``--readers`` reader processes; both start-ups are inside the measured time, as they are for a
deployment's first batch. Throughput is the batch's studies over the time from its recording
to its end. Where the time goes is summed over the studies from what each recorded: reading
(the chunk's reading, shared out), the model (its share of the decoding batch) and writing the
four files; what remains of the worker processes' time is start-up, claiming and queueing.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"
ARCHIVE_SEED = 20261206  # not a seed any recipe trains or benchmarks on
REDIS = "redis://127.0.0.1:6379/0"


def phantom_folder(n: int, cache: Path) -> Path:
    """``n`` full-resolution phantom studies, one file each, written once and cached."""
    from model.data.phantom.dataset import write_dataset

    folder = cache / f"archive-seed{ARCHIVE_SEED}-n{n}"
    if not (folder / "manifest.csv").is_file():
        write_dataset(folder, n, seed=ARCHIVE_SEED, workers=2)
    return folder / "dicom"


def run(archive: Path, processes: int, chunk: int, readers: int, scratch: Path) -> dict[str, Any]:
    from service.database import upgrade
    from service.dispatch import CeleryDispatcher, hand_over_chunks
    from workers import batches
    from workers.config import Settings
    from workers.db import session_scope
    from workers.records import FOLDER, Batch

    settings = Settings(
        data_dir=scratch / f"p{processes}",
        broker_url=REDIS,
        queue_prefix=f"bench{uuid.uuid4().hex[:8]}-",
        batch_roots=str(archive.parent),
        batch_chunk=chunk,
        batch_readers=readers,
    )
    upgrade(settings)
    folder, entries = batches.folder_entries(settings, str(archive))
    with session_scope(settings.sqlalchemy_url) as session:
        batch = batches.record_batch(
            session,
            settings,
            kind=FOLDER,
            source=str(folder),
            folder=str(folder),
            entries=entries,
            user=("benchmark", "benchmark"),
        )
        batch_id, chunks = batch.id, batches.chunks_of(session, batch.id)
    worker = start_worker(settings, processes, scratch / f"worker-p{processes}.log")
    try:
        dispatcher = CeleryDispatcher(settings)
        hand_over_chunks(dispatcher, settings, batch_id, chunks)
        dispatcher.close()
        while True:
            with session_scope(settings.sqlalchemy_url) as session:
                found = session.get(Batch, batch_id)
                assert found is not None
                if found.state == "done" and found.finished_at is not None:
                    wall = (found.finished_at - found.created_at).total_seconds()
                    items = batches.batch_items(session, batch_id)
                    summary = batches.summarize(items)
                    break
            time.sleep(1.0)
    finally:
        worker.terminate()
        worker.wait(timeout=60)
    drafted = summary.counts["done"]
    stages = {k.removesuffix("_s"): v for k, v in summary.seconds.items()}
    busy = sum(stages.values())
    return {
        "processes": processes,
        "studies": len(entries),
        "drafted": drafted,
        "failed": summary.counts["failed"],
        "wall_s": wall,
        "studies_per_min": 60 * drafted / wall,
        "stage_s": stages,
        "other_s": processes * wall - busy,  # start-up, claiming, queueing, idle
    }


def start_worker(settings: Any, processes: int, log: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        **{
            f"ECHOCXR_{k.upper()}": str(v)
            for k, v in settings.model_dump(exclude_none=True).items()
        },
    }
    command = [
        str(Path(sys.executable).with_name("echocxr")),
        "worker",
        "--queues",
        "generate",
        "--concurrency",
        str(processes),
    ]
    with log.open("wb") as sink:
        worker = subprocess.Popen(command, env=env, stdout=sink, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 180
    while " ready." not in log.read_text(errors="replace"):
        if worker.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the worker did not start: {log.read_text()[-2000:]}")
        time.sleep(0.5)
    return worker


def write(results: list[dict[str, Any]], args: argparse.Namespace) -> None:
    meta = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs (shared by other jobs)",
        "python": platform.python_version(),
        "n": args.n,
        "chunk": args.chunk,
        "readers_per_process": args.readers,
        "load_average_at_end": os.getloadavg(),
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "batch_throughput.json").write_text(
        json.dumps({"meta": meta, "results": results}, indent=2) + "\n"
    )
    lines = [
        "# Archives through the service: studies per minute and where the time goes",
        "",
        f"`benchmarks/batch_throughput.py --n {args.n} --chunk {args.chunk} --readers "
        f"{args.readers}`: {args.n} full-resolution phantom studies, one `echocxr worker` with "
        f"1 or 2 processes on the CPU ({meta['machine']}; load average at the end "
        f"{meta['load_average_at_end'][0]:.1f}).",
        "",
        "| worker processes | drafted | failed | wall (s) | studies/min | read (s) | model (s) "
        "| write (s) | other (s) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        s = r["stage_s"]
        lines.append(
            f"| {r['processes']} | {r['drafted']} | {r['failed']} | {r['wall_s']:.0f} | "
            f"{r['studies_per_min']:.1f} | {s.get('read', 0):.0f} | {s.get('model', 0):.0f} | "
            f"{s.get('write', 0):.0f} | {r['other_s']:.0f} |"
        )
    lines += [
        "",
        "Stage seconds are summed over the studies (each study's share of its chunk's reading "
        "and of its decoding batch); *other* is the rest of the worker processes' time "
        "(processes x wall): model and reader start-up, claiming, queueing, idle.",
        "",
    ]
    (RESULTS / "batch_throughput.md").write_text("\n".join(lines))
    plot(results)


def plot(results: list[dict[str, Any]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    labels = [f"{r['processes']} process{'es' if r['processes'] > 1 else ''}" for r in results]
    left.bar(labels, [r["studies_per_min"] for r in results], color="#0b5cad")
    left.set_ylabel("studies per minute")
    left.set_title("Throughput")
    bottom = [0.0] * len(results)
    for stage, colour in (
        ("read", "#0b5cad"),
        ("model", "#c0392b"),
        ("write", "#27ae60"),
        ("other", "#95a5a6"),
    ):
        values = [
            r["other_s"] if stage == "other" else r["stage_s"].get(stage, 0.0) for r in results
        ]
        right.bar(labels, values, bottom=bottom, label=stage, color=colour)
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    right.set_ylabel("process-seconds")
    right.set_title("Where the time goes")
    right.legend()
    figure.tight_layout()
    figure.savefig(RESULTS / "batch_throughput.png", dpi=120)


def main() -> None:
    from model.cli import DEFAULT_CACHE

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--chunk", type=int, default=16)
    parser.add_argument("--readers", type=int, default=1)
    args = parser.parse_args()
    archive = phantom_folder(args.n, Path(DEFAULT_CACHE))
    with tempfile.TemporaryDirectory() as scratch:
        results = [run(archive, p, args.chunk, args.readers, Path(scratch)) for p in args.processes]
    write(results, args)
    for r in results:
        print(f"{r['processes']} processes: {r['studies_per_min']:.1f} studies/min")


if __name__ == "__main__":
    main()
