"""Handing work to whoever runs it: the API's own pool (embedded) or Celery workers (scale-out).

Both run the same plain functions of ``workers.jobs`` with the same ids, so a job's states,
errors and records are the same either way; only the transport differs. The database is the
durable record of what is to be done: a job is committed before it is handed over, and one that
was not handed over (a broker down at upload time, an API restarted with work in its pool) is
handed again by ``redispatch``. Handing a job twice is harmless: the second delivery finds it
done.

STAT drafts overtake routine ones: in the pool by a priority queue, with Celery by a queue of
their own (``stat``) that GPU workers consume beside ``generate``.

Studies from a PACS are pulled, and reports pushed back, on the ``pacs`` queue (``workers.pacs``);
a push that failed is tried again after the wait it returns: in the pool by a timer, with Celery
by a delayed task. A push is a record too, so one whose timer or message was lost is handed
again by ``redispatch``.
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Protocol

from sqlalchemy import select

from workers import batches, jobs, pacs
from workers.app import ASSISTANT, EVALUATE, GENERATE, PACS, QUEUES, STAT, create_app, queue_for
from workers.audits import audit_folder, run_audit_folder
from workers.config import Settings
from workers.db import session_scope
from workers.generators import resolve_profile
from workers.records import QUEUED, RUNNING, Job, now

logger = logging.getLogger(__name__)
EVALUATION_GRACE = timedelta(minutes=10)  # a sign-off's labelling takes well under a second
PUSH_GRACE_S = 300.0  # a push this late past its try was lost with a process or the broker


class AssistantBusyError(TimeoutError):
    """No answer within ``Settings.ask_timeout_s``."""


class Dispatcher(Protocol):
    def draft(self, job_id: str, priority: str) -> None: ...
    def evaluate_signoff(self, signoff_id: str) -> None: ...
    def audit(self, run_id: str, metrics: list[str], resamples: int) -> None: ...
    def ask(
        self, study_id: str, question: str, history: list[tuple[str, str]]
    ) -> dict[str, str]: ...
    def pull(self, study_uid: str, priority: str) -> None: ...
    def batch_chunk(self, batch_id: str, chunk: int) -> None: ...
    def push(self, push_id: str, delay_s: float = 0.0) -> None: ...
    def queue_depths(self) -> dict[str, int]: ...
    def broker_problem(self) -> str | None: ...
    def close(self) -> None: ...


# the pool serves questions (a person waits) before the PACS's pulls and pushes (short), routine
# drafts and evaluations; STAT drafts come first of all, archives' chunks last (a quality team's
# archive must not hold up the drafts a radiologist waits for)
BATCH = "batch"
RANK = {STAT: 0, ASSISTANT: 1, PACS: 2, GENERATE: 3, EVALUATE: 4, BATCH: 5}


@dataclass(order=True)
class _Work:
    rank: int
    number: int
    queue: str = field(compare=False)
    run: Callable[[], Any] = field(compare=False)
    job_id: str | None = field(default=None, compare=False)  # a draft, which may be batched


class EmbeddedDispatcher:
    """A bounded pool of threads in the API process, fed by a priority queue.

    The model is loaded once, on the first draft, and shared by the threads
    (``workers.generators``). Work waiting in the queue is lost with the process, not the jobs:
    at start, ``redispatch`` hands the pool every job still queued or running.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.work: queue.PriorityQueue[_Work] = queue.PriorityQueue()
        self.numbers = itertools.count()
        self.waiting: Counter[str] = Counter()
        self.running = 0
        self.lock = threading.Lock()
        self.threads = [
            threading.Thread(target=self._serve, name=f"echocxr-pool-{i}", daemon=True)
            for i in range(settings.embedded_workers)
        ]
        for thread in self.threads:
            thread.start()

    def draft(self, job_id: str, priority: str) -> None:
        self._put(queue_for(priority), lambda: self._drafts([job_id]), job_id)

    def _drafts(self, job_ids: list[str]) -> None:
        jobs.run_drafts(self.settings, job_ids)
        for job_id in job_ids:
            for push_id in pacs.pending_pushes(self.settings, job_id=job_id):
                self.push(push_id)

    def pull(self, study_uid: str, priority: str) -> None:
        self._put(PACS, lambda: self._pull(study_uid, priority))

    def batch_chunk(self, batch_id: str, chunk: int) -> None:
        self._put(BATCH, lambda: batches.run_chunk(self.settings, batch_id, chunk))

    def _pull(self, study_uid: str, priority: str) -> None:
        profile = resolve_profile(self.settings)
        pulled = pacs.pull_study(self.settings, profile, study_uid, priority)
        if pulled is None:
            return
        if pulled.ingested.new_job:
            hand_over(self, self.settings, pulled.ingested.job.id, priority)
        for push_id in pulled.push_ids:
            self.push(push_id)

    def push(self, push_id: str, delay_s: float = 0.0) -> None:
        if delay_s > 0:
            timer = threading.Timer(delay_s, self.push, args=(push_id,))
            timer.daemon = True
            timer.start()
            return
        self._put(PACS, lambda: self._push(push_id))

    def _push(self, push_id: str) -> None:
        wait = pacs.push_report(self.settings, push_id)
        if wait is not None:
            self.push(push_id, wait)

    def wait_idle(self, timeout_s: float) -> bool:
        """Until nothing waits or runs in the pool (a one-shot command's work is done); retries
        on timers are left to the records. False when ``timeout_s`` passed first."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self.lock:
                if self.running == 0 and sum(self.waiting.values()) == 0:
                    return True
            time.sleep(0.1)
        return False

    def evaluate_signoff(self, signoff_id: str) -> None:
        self._put(EVALUATE, lambda: jobs.evaluate_signoff(self.settings, signoff_id))

    def audit(self, run_id: str, metrics: list[str], resamples: int) -> None:
        folder = audit_folder(self.settings, run_id)
        self._put(EVALUATE, lambda: run_audit_folder(folder, metrics, resamples))

    def ask(self, study_id: str, question: str, history: list[tuple[str, str]]) -> dict[str, str]:
        answer: Future[dict[str, str]] = Future()

        def run() -> None:
            try:
                answer.set_result(jobs.answer_question(self.settings, study_id, question, history))
            except BaseException as error:
                answer.set_exception(error)

        self._put(ASSISTANT, run)
        try:
            return answer.result(timeout=self.settings.ask_timeout_s)
        except FutureTimeout:
            raise AssistantBusyError from None

    def queue_depths(self) -> dict[str, int]:
        with self.lock:
            depths = {name: self.waiting[name] for name in QUEUES}
            depths[GENERATE] += self.waiting[BATCH]  # a broker's workers take chunks from there
        return depths

    def broker_problem(self) -> str | None:
        if not all(thread.is_alive() for thread in self.threads):
            return "a thread of the drafting pool has stopped; restart the service"
        return None

    def close(self) -> None:
        from workers.batches import close_readers

        for _ in self.threads:
            self.work.put(_Work(-1, next(self.numbers), "", lambda: None))  # wakes, then stops
        for thread in self.threads:
            thread.join(timeout=30)
        close_readers()  # the batch chunks' readers outlive each chunk, not the server

    def _put(self, name: str, run: Callable[[], Any], job_id: str | None = None) -> None:
        with self.lock:
            self.waiting[name] += 1
        self.work.put(_Work(RANK[name], next(self.numbers), name, run, job_id))

    def _serve(self) -> None:
        while True:
            item = self.work.get()
            if item.rank < 0:
                return
            batch = self._more_drafts([item]) if item.job_id else [item]
            with self.lock:
                for taken in batch:
                    self.waiting[taken.queue] -= 1
                self.running += 1
            try:
                if item.job_id:
                    self._drafts([taken.job_id for taken in batch if taken.job_id])
                else:
                    item.run()
            except Exception as error:  # the job records its own failure; the pool lives on
                logger.error("pool work on %s raised %s", item.queue, type(error).__name__)
            finally:
                with self.lock:
                    self.running -= 1

    def _more_drafts(self, batch: list[_Work]) -> list[_Work]:
        """The drafts queued right behind the first, up to ``draft_batch`` in all: decoded in
        one pass of the model. The first other kind of work met is put back."""
        while len(batch) < self.settings.draft_batch:
            try:
                following = self.work.get_nowait()
            except queue.Empty:
                break
            if following.job_id is None:
                self.work.put(following)
                break
            batch.append(following)
        return batch


class CeleryDispatcher:
    """Tasks sent to Celery workers over the broker (Redis)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.app = create_app(settings)

    def draft(self, job_id: str, priority: str) -> None:
        name = queue_for(priority)
        self.app.send_task(
            "echocxr.draft", args=[job_id], queue=self.settings.queue(name), ignore_result=True
        )

    def evaluate_signoff(self, signoff_id: str) -> None:
        queue_name = self.settings.queue(EVALUATE)
        self.app.send_task(
            "echocxr.evaluate_signoff", args=[signoff_id], queue=queue_name, ignore_result=True
        )

    def pull(self, study_uid: str, priority: str) -> None:
        self.app.send_task(
            "echocxr.pacs_pull",
            args=[study_uid, priority],
            queue=self.settings.queue(PACS),
            ignore_result=True,
        )

    def batch_chunk(self, batch_id: str, chunk: int) -> None:
        self.app.send_task(
            "echocxr.batch_chunk",
            args=[batch_id, chunk],
            queue=self.settings.queue(GENERATE),
            ignore_result=True,
        )

    def push(self, push_id: str, delay_s: float = 0.0) -> None:
        self.app.send_task(
            "echocxr.pacs_push",
            args=[push_id],
            queue=self.settings.queue(PACS),
            countdown=delay_s,
            ignore_result=True,
        )

    def audit(self, run_id: str, metrics: list[str], resamples: int) -> None:
        queue_name = self.settings.queue(EVALUATE)
        self.app.send_task(
            "echocxr.audit", args=[run_id, metrics, resamples], queue=queue_name, ignore_result=True
        )

    def ask(self, study_id: str, question: str, history: list[tuple[str, str]]) -> dict[str, str]:
        from celery.exceptions import TimeoutError as CeleryTimeout

        result = self.app.send_task(
            "echocxr.ask",
            args=[study_id, question, [list(turn) for turn in history]],
            queue=self.settings.queue(ASSISTANT),
        )
        try:
            return dict(result.get(timeout=self.settings.ask_timeout_s))
        except CeleryTimeout:
            raise AssistantBusyError from None
        finally:
            result.forget()

    def queue_depths(self) -> dict[str, int]:
        """Messages waiting in each queue: a Redis list per queue."""
        with self.app.connection_for_read() as connection:
            client = connection.default_channel.client
            return {name: int(client.llen(self.settings.queue(name))) for name in QUEUES}

    def broker_problem(self) -> str | None:
        try:
            with self.app.connection_for_write() as connection:
                connection.ensure_connection(max_retries=1, timeout=2)
        except Exception as error:
            return f"the broker does not answer ({type(error).__name__}); check ECHOCXR_BROKER_URL"
        return None

    def close(self) -> None:
        self.app.close()


def make_dispatcher(settings: Settings) -> Dispatcher:
    return EmbeddedDispatcher(settings) if settings.embedded else CeleryDispatcher(settings)


def hand_over(dispatcher: Dispatcher, settings: Settings, job_id: str, priority: str) -> bool:
    """Give a committed job to the dispatcher and note it; False when the broker refused (the
    job stays queued and ``redispatch`` tries again)."""
    try:
        dispatcher.draft(job_id, priority)
    except Exception as error:
        logger.warning("job %s not handed over (%s); will retry", job_id, type(error).__name__)
        return False
    jobs.mark_dispatched(settings, job_id)
    return True


def hand_over_pushes(dispatcher: Dispatcher, push_ids: list[str]) -> int:
    """Queue pushes to the PACS; returns how many the broker took (``redispatch`` retries the
    others: they are pending in the records)."""
    taken = 0
    for push_id in push_ids:
        try:
            dispatcher.push(push_id)
        except Exception as error:
            logger.warning("push %s not handed over (%s)", push_id, type(error).__name__)
            continue
        taken += 1
    return taken


def hand_over_evaluation(dispatcher: Dispatcher, signoff_id: str) -> bool:
    """Queue a sign-off's labelling; False when the broker refused (``redispatch`` retries)."""
    try:
        dispatcher.evaluate_signoff(signoff_id)
    except Exception as error:
        logger.warning("sign-off %s not handed over (%s)", signoff_id, type(error).__name__)
        return False
    return True


def hand_over_chunks(
    dispatcher: Dispatcher, settings: Settings, batch_id: str, chunks: list[int]
) -> int:
    """Queue chunks of a committed batch; returns how many the broker took (``redispatch``
    hands over the others: their studies are queued in the records)."""
    taken = 0
    for chunk in chunks:
        try:
            dispatcher.batch_chunk(batch_id, chunk)
        except Exception as error:
            logger.warning("batch %s not handed over (%s)", batch_id, type(error).__name__)
            break
        batches.mark_chunk_dispatched(settings, batch_id, chunk)
        taken += 1
    return taken


def redispatch(dispatcher: Dispatcher, settings: Settings, *, everything: bool) -> int:
    """Hand over again the jobs, batch chunks and pushes that need it; returns how many.

    ``everything`` (the embedded pool at start): every job queued or running and every pending
    push, since the pool's queue and timers died with the last process. Otherwise (Celery): the
    jobs never handed over, those queued but handed over more than a visibility timeout ago,
    whose message a restarted broker may have lost, and pushes long past their try.
    """
    stale = now() - timedelta(seconds=settings.visibility_timeout_s)
    with session_scope(settings.sqlalchemy_url) as session:
        query = select(Job.id, Job.priority, Job.state, Job.dispatched_at).order_by(Job.created_at)
        rows = session.execute(query.where(Job.state.in_((QUEUED, RUNNING)))).all()
    due = [
        (job_id, priority)
        for job_id, priority, state, dispatched in rows
        if everything or (state == QUEUED and (dispatched is None or dispatched < stale))
    ]
    handed = sum(hand_over(dispatcher, settings, job_id, priority) for job_id, priority in due)
    chunks = batches.pending_chunks(settings, None if everything else stale)
    handed += sum(hand_over_chunks(dispatcher, settings, b, [c]) for b, c in chunks)
    overdue = None if everything else PUSH_GRACE_S
    return handed + hand_over_pushes(dispatcher, pacs.pending_pushes(settings, overdue_s=overdue))
