"""The Celery application, built once; the worker's entry module (``celery -A workers.app``).

One app serves three queues: ``generate`` and ``assistant`` (GPU workers, model loaded once per
process) and ``evaluate`` (CPU, clinical metrics). Configuration follows the scale-out design:
late acknowledgement plus a prefetch of one, so a worker that dies mid-task gives the task back
to the broker instead of losing it, and a long generation never sits queued behind another
worker's prefetched backlog. Tasks therefore must be idempotent.
"""

from __future__ import annotations

import os

from celery import Celery
from kombu import Queue

DEFAULT_REDIS = "redis://127.0.0.1:6379/0"
QUEUES: tuple[str, ...] = ("generate", "assistant", "evaluate")


def create_app() -> Celery:
    """The configured app; broker and result backend come from the environment."""
    broker = os.environ.get("ECHOCXR_BROKER_URL", DEFAULT_REDIS)
    backend = os.environ.get("ECHOCXR_RESULT_BACKEND", broker)
    celery_app = Celery("echocxr", broker=broker, backend=backend, include=["workers.tasks"])
    celery_app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        task_queues=[Queue(name) for name in QUEUES],
        task_default_queue="generate",
        task_routes={"echocxr.evaluate": {"queue": "evaluate"}},
        result_expires=7 * 24 * 3600,
        broker_connection_retry_on_startup=True,
    )
    return celery_app


app = create_app()
