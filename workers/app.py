"""The Celery application, built once from ``Settings``; the worker's entry module
(``celery -A workers.app worker``, or ``echocxr worker``).

Queues: ``generate`` (GPU, routine drafts), ``stat`` (GPU, drafts that overtake routine work:
a queue of its own rather than Redis priorities, which are approximate), ``assistant`` (GPU,
questions about a study), ``evaluate`` (CPU, clinical metrics) and ``pacs`` (CPU: pulling studies
from the PACS and pushing reports back, so a GPU never waits on the PACS's network). Late
acknowledgement with a prefetch of one and ``reject_on_worker_lost``: a worker that dies
mid-task gives the task back to the broker instead of losing it, and a long draft never sits
behind another worker's prefetched backlog; tasks are therefore idempotent (``workers.jobs``).
Redis redelivers a task not acknowledged within the visibility timeout, so it is set above the
longest task.
"""

from __future__ import annotations

import multiprocessing
import os
from multiprocessing.process import AuthenticationString  # type: ignore[attr-defined]

from celery import Celery
from celery.signals import celeryd_after_setup, worker_process_init
from kombu import Queue

from workers.config import Settings
from workers.db import get_engine
from workers.generators import set_torch_threads

GENERATE, STAT, ASSISTANT, EVALUATE, PACS = "generate", "stat", "assistant", "evaluate", "pacs"
QUEUES: tuple[str, ...] = (GENERATE, STAT, ASSISTANT, EVALUATE, PACS)
TASK_QUEUES = {
    "echocxr.draft": GENERATE,
    "echocxr.ask": ASSISTANT,
    "echocxr.evaluate": EVALUATE,
    "echocxr.evaluate_signoff": EVALUATE,
    "echocxr.audit": EVALUATE,
    "echocxr.draft_archive": GENERATE,
    "echocxr.batch_chunk": GENERATE,
    "echocxr.pacs_pull": PACS,
    "echocxr.pacs_push": PACS,
}


def queue_for(priority: str) -> str:
    """The queue of a draft: STAT drafts overtake routine ones on a queue of their own."""
    return STAT if priority == "stat" else GENERATE


def create_app(settings: Settings | None = None) -> Celery:
    """The configured app; broker and result backend come from ``settings``."""
    settings = settings or Settings()
    broker = settings.broker_url or "redis://127.0.0.1:6379/0"
    backend = settings.result_backend or broker
    # a broker that is down must not hold an upload for long: the job is already recorded, and
    # the service hands it over again later (service.dispatch.redispatch)
    transport = {
        "visibility_timeout": settings.visibility_timeout_s,
        "socket_connect_timeout": 3,
        "socket_timeout": 30,
    }
    celery_app = Celery("echocxr", broker=broker, backend=backend, include=["workers.tasks"])
    celery_app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        # a task running when the broker goes away finishes its study (its results go to the
        # database, not the broker); its unacknowledged message comes back after the visibility
        # timeout and finds the work done. Cancelled instead, the study would wait that long.
        worker_cancel_long_running_tasks_on_connection_loss=False,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        task_queues=[Queue(settings.queue(name)) for name in QUEUES],
        task_default_queue=settings.queue(GENERATE),
        task_routes={task: {"queue": settings.queue(q)} for task, q in TASK_QUEUES.items()},
        broker_transport_options=transport,
        result_backend_transport_options=transport,
        visibility_timeout=settings.visibility_timeout_s,
        result_expires=24 * 3600,
        broker_connection_retry_on_startup=True,
        task_publish_retry_policy={"max_retries": 2, "interval_start": 0.2, "interval_max": 1},
        worker_proc_alive_timeout=60,
    )
    celery_app.conf.echocxr_settings = settings
    return celery_app


app = create_app()


@worker_process_init.connect
def _init_pool_process(**_: object) -> None:
    """A forked pool child must not reuse the parent's pooled database connections, and drafts
    with its own share of the cores.

    It is also marked daemonic, and ``multiprocessing`` refuses children to a daemonic
    process; a batch chunk needs the reader processes of ``workers.readers``, which cannot
    outlive it (each ends at the EOF of its pipe from this process). And billiard's key for
    its own processes refuses to be sent to a spawned one: the readers get a key of their own.
    """
    settings: Settings = app.conf.echocxr_settings
    get_engine(settings.sqlalchemy_url).dispose(close=False)
    set_torch_threads(settings)
    # billiard's Process stands in the standard library's place; its setters would wrap the key
    # in billiard's class again
    config: dict[str, object] = vars(multiprocessing.current_process())["_config"]
    config["daemon"], config["authkey"] = False, AuthenticationString(os.urandom(32))


@celeryd_after_setup.connect
def _init_poolless_worker(instance: object, **_: object) -> None:
    """A worker without a pool of processes (``--pool solo`` or ``threads``) drafts in its own
    process: its share of the cores is set here, once its logging is set up."""
    from celery.concurrency.prefork import TaskPool

    if not issubclass(instance.pool_cls, TaskPool):  # type: ignore[attr-defined]
        set_torch_threads(app.conf.echocxr_settings)
