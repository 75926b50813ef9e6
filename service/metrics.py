"""Prometheus metrics, read from the records at each scrape.

The database, not a process's memory, holds the truth: drafts are made by other processes (the
Celery workers), so counters kept in the API would see none of them. Each scrape therefore
counts jobs and reports in the database, and asks the dispatcher how deep its queues are.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from service.dispatch import Dispatcher
from workers.records import DONE, DRAFT, JOB_STATES, Job, Report

logger = logging.getLogger(__name__)

# upload-to-draft seconds: an idle CPU drafts in about a second, a busy queue takes minutes
LATENCY_BUCKETS = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)


class RecordsCollector:
    """One scrape's metrics from ``session`` and ``dispatcher``."""

    def __init__(self, session: Session, dispatcher: Dispatcher) -> None:
        self.session, self.dispatcher = session, dispatcher

    def collect(self) -> Iterator[Metric]:
        yield self._queue_depth()
        yield self._jobs_by_state()
        yield from self._latencies()
        yield self._drafts_by_engine()

    def _queue_depth(self) -> Metric:
        family = GaugeMetricFamily(
            "echocxr_queue_depth", "Tasks waiting in each queue", labels=["queue"]
        )
        try:
            depths = self.dispatcher.queue_depths()
        except Exception as error:  # a broker that is down must not break the scrape
            logger.warning("queue depths unavailable (%s)", type(error).__name__)
            depths = {}
        for name, depth in sorted(depths.items()):
            family.add_metric([name], depth)
        return family

    def _jobs_by_state(self) -> Metric:
        counts = dict(
            self.session.execute(select(Job.state, func.count()).group_by(Job.state)).all()
        )
        family = GaugeMetricFamily("echocxr_jobs", "Drafting jobs in each state", labels=["state"])
        for state in JOB_STATES:
            family.add_metric([state], counts.get(state, 0))
        return family

    def _latencies(self) -> Iterator[Metric]:
        query = select(Job.created_at, Job.finished_at, Job.timings).where(Job.state == DONE)
        done = self.session.execute(query).all()
        total = [(end - start).total_seconds() for start, end, _ in done if end]
        model = [float(timings.get("draft_s", 0.0)) for _, _, timings in done]
        yield _histogram(
            "echocxr_job_latency_seconds", "Upload (or hand-over) to draft recorded", total
        )
        yield _histogram("echocxr_draft_model_seconds", "Time in the model, per draft", model)

    def _drafts_by_engine(self) -> Metric:
        query = (
            select(Report.engine, func.count()).where(Report.kind == DRAFT).group_by(Report.engine)
        )
        family = CounterMetricFamily(
            "echocxr_drafts", "Drafts recorded, by decoding engine", labels=["engine"]
        )
        for engine, count in self.session.execute(query).all():
            family.add_metric([engine], count)
        return family


def _histogram(name: str, documentation: str, values: list[float]) -> Metric:
    buckets = [(str(bound), sum(v <= bound for v in values)) for bound in LATENCY_BUCKETS]
    buckets.append(("+Inf", len(values)))
    return HistogramMetricFamily(name, documentation, buckets=buckets, sum_value=sum(values))


def exposition(session: Session, dispatcher: Dispatcher) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(RecordsCollector(session, dispatcher))
    return generate_latest(registry)
