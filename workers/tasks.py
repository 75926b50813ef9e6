"""Task definitions: thin, explicitly named, taking plain data (JSON) and calling the packages.

``echocxr.evaluate`` is a pure function of its inputs, so a redelivered message (``acks_late``)
recomputes the same result: idempotent without bookkeeping.
"""

from __future__ import annotations

from typing import Any

from workers.app import app


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
