"""Task definitions: thin, explicitly named, taking plain data (JSON) and calling the packages.

``echocxr.evaluate`` is a pure function of its inputs, so a redelivered message (``acks_late``)
recomputes the same result: idempotent without bookkeeping. ``echocxr.draft_archive`` skips the
studies already drafted, so a redelivered one finishes what its first delivery left.
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING, Any

from workers.app import app

if TYPE_CHECKING:
    from model.report import ReportGenerator


@app.task(
    name="echocxr.evaluate",
    autoretry_for=(ConnectionError, TimeoutError),
    retry_backoff=True,
    retry_kwargs={"max_retries": 3},
    soft_time_limit=1800,
    time_limit=1900,
)
def evaluate(
    generated: list[str], reference: list[str], metrics: list[str] | None = None
) -> dict[str, Any]:
    """Score generated reports against references; returns ``clinical_eval.score``'s dict.

    Bad input (unequal lengths, unknown metric group) raises ``MetricInputError``, which is not
    retried: the same input would fail again.
    """
    from clinical_eval import score

    return {"metrics": score(generated, reference, metrics), "n_studies": len(generated)}


@lru_cache(maxsize=2)
def generator(engine: str, batch_size: int) -> ReportGenerator:
    """The shipped model with ``engine``, loaded once per worker process and kept."""
    import model

    return model.load(engine=engine, batch_size=batch_size)


@app.task(name="echocxr.draft_archive", soft_time_limit=24 * 3600, time_limit=24 * 3600 + 300)
def draft_archive(
    archive: str, out: str, engine: str | None = None, batch_size: int = 64
) -> dict[str, int]:
    """Draft every study of an archive folder into ``out``, both on storage the worker shares
    with whoever sends the task; returns how many entries were drafted, already drafted and
    failed (``out/archive.csv`` says which and why).

    The worker reads the DICOM in its own process (``echocxr report-archive`` can spread that
    over reader processes; here it would be the CPU workers' job). A folder that is not an
    archive raises ``ArchiveFolderError``, which is not retried: the same message would fail
    again.
    """
    from pathlib import Path

    import model
    from service.archive import StageSeconds, count_outcomes
    from service.archive import draft_archive as draft

    drafting = generator(engine or model.DEFAULT_ARCHIVE_ENGINE, batch_size)
    return count_outcomes(draft(Path(archive), Path(out), drafting, StageSeconds()))
