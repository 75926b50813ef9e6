"""The PACS peer: pull a study (QIDO-RS, then WADO-RS), find studies to draft (QIDO-RS), push a
report version back into its study (STOW-RS), and withdraw the drafts a newer version replaces.

Plain functions taking settings and ids, like ``workers.jobs``: Celery tasks (``workers.tasks``)
and the API's embedded pool run the same ones. A push is a record (``Push``) planned in the
transaction that records its report version, then tried with a growing wait until
``Settings.push_attempts``; whoever runs it schedules the next try from what ``push_report``
returns.

Replacing a draft in the PACS: DICOMweb has no delete, and a PACS keeps every instance it is
sent. A signed SR names its draft in PredecessorDocumentsSequence and is VERIFIED, which is what
a reporting system shows first; but most viewers list every SR of a study, and an unverified
machine draft beside the signed report invites someone to read the wrong one. So where the peer
is an Orthanc (``Settings.pacs_orthanc_url``) the superseded draft's instances are deleted
through its REST API once the newer version is stored; a signed version is never deleted. A
draft made again (the study grew) has the same UIDs as the one it replaces (they follow from
study and model), and a PACS keeps the first instance of a UID: those are deleted first.

Logs name pushes, studies' record ids and error types, never UIDs or messages from the PACS.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from dicom.dicomweb import DicomWebClient
from dicom.errors import DicomWebError
from workers import storage
from workers.config import Settings
from workers.db import session_scope
from workers.ingest import Ingested, as_archive, ingest_in_transaction
from workers.records import (
    DONE,
    DRAFT,
    FAILED,
    PENDING,
    ROUTINE,
    SUPERSEDED,
    Push,
    Report,
    Study,
    StudyFile,
    now,
)

if TYPE_CHECKING:
    from workers.generators import DraftProfile

logger = logging.getLogger(__name__)

PUSHED_FILES = ("sr", "pdf")  # what goes back: the SR, and the PDF that every viewer shows
NOT_CONFIGURED = "no PACS peer is configured; set ECHOCXR_PACS_DICOMWEB_URL"


class PacsNotConfiguredError(RuntimeError):
    """A PACS operation was asked for without ``Settings.pacs_dicomweb_url``."""


@dataclass(frozen=True)
class Received:
    """A study a PACS or a modality sent (or we pulled): its ingestion, and the pushes now due."""

    ingested: Ingested
    push_ids: list[str]


def peer(settings: Settings) -> DicomWebClient:
    """A DICOMweb client for the PACS peer, with its credentials and timeout."""
    if settings.pacs_dicomweb_url is None:
        raise PacsNotConfiguredError(NOT_CONFIGURED)
    return DicomWebClient(
        settings.pacs_dicomweb_url, timeout_s=settings.pacs_timeout_s, auth=_credentials(settings)
    )


def _credentials(settings: Settings) -> tuple[str, str] | None:
    if settings.pacs_username is None:
        return None
    return settings.pacs_username, settings.pacs_password or ""


def fetch_study(settings: Settings, study_uid: str) -> list[bytes]:
    """The study's instances in the modalities pulled (``Settings.pacs_modalities``), as file
    bytes; other series, our own SR and PDF among them, stay in the PACS."""
    with peer(settings) as client:
        series = [
            str(item.SeriesInstanceUID)
            for item in client.search_series(study_uid)
            if str(item.get("Modality", "")).upper() in settings.pulled_modalities
        ]
        return [data for uid in series for data in client.retrieve_series(study_uid, uid)]


def receive(
    settings: Settings,
    profile: DraftProfile,
    instances: list[bytes],
    priority: str = ROUTINE,
    record: Callable[[Session, Ingested], None] | None = None,
) -> Received:
    """Ingest one study's instances as an upload is, marked to go back to the PACS; a newest
    version that never reached the PACS, or failed to, is pushed again. ``record`` adds to the
    ingestion's transaction (an audit event). Raises ``dicom.DicomError`` with nothing recorded
    when the study is not one we can read."""
    ingested = ingest_in_transaction(
        settings, profile, as_archive(instances), priority, return_to_pacs=True, record=record
    )
    return Received(ingested, replan_newest(settings, ingested.study.id))


def pull_study(
    settings: Settings, profile: DraftProfile, study_uid: str, priority: str = ROUTINE
) -> Received | None:
    """Pull one study and ingest it as if it were uploaded, marked to go back to the PACS.

    Returns None when the PACS holds no series in the modalities pulled (a CT, say). Raises
    ``dicom.DicomWebError`` when the PACS fails and ``dicom.DicomError`` when the study is not
    one we can read (nothing is recorded).
    """
    instances = fetch_study(settings, study_uid)
    return receive(settings, profile, instances, priority) if instances else None


def studies_to_pull(settings: Settings, days: int | None = None) -> list[str]:
    """StudyInstanceUIDs of the PACS's studies of the last ``days`` (``pacs_poll_days``) whose
    instances in the modalities pulled are not all here: new studies, and studies that grew."""
    days = days or settings.pacs_poll_days
    today = date.today()
    span = f"{today - timedelta(days=days - 1):%Y%m%d}-{today:%Y%m%d}"
    due = []
    with peer(settings) as client:
        for found in client.search_studies({"StudyDate": span}):
            uid = str(found.StudyInstanceUID)
            held = sum(
                int(item.get("NumberOfSeriesRelatedInstances", 0) or 0)
                for item in client.search_series(uid)
                if str(item.get("Modality", "")).upper() in settings.pulled_modalities
            )
            if held and held != _files_here(settings, uid):
                due.append(uid)
    return due


def _files_here(settings: Settings, study_uid: str) -> int:
    with session_scope(settings.sqlalchemy_url) as session:
        query = (
            select(func.count())
            .select_from(StudyFile)
            .join(Study, Study.id == StudyFile.study_id)
            .where(Study.study_instance_uid == study_uid)
        )
        return int(session.scalar(query) or 0)


def plan_push(session: Session, settings: Settings, report: Report) -> Push | None:
    """The push of a new report version, in the transaction that records it; None when its
    study did not come from a PACS or no PACS is configured."""
    if settings.pacs_dicomweb_url is None:
        return None
    study = session.get(Study, report.study_id)
    if study is None or not study.return_to_pacs:
        return None
    job_id = report.job_id
    if job_id is None and report.based_on_id is not None:
        based_on = session.get(Report, report.based_on_id)
        job_id = based_on.job_id if based_on is not None else None
    push = Push(
        study_id=report.study_id,
        report_id=report.id,
        job_id=job_id,
        state=PENDING,
        attempts=0,
        sop_instance_uids=[],
        next_attempt_at=now(),
    )
    session.add(push)
    session.flush()
    return push


def replan_newest(settings: Settings, study_id: str) -> list[str]:
    """When a PACS sends a study again: push its newest version if it never was (the study was
    uploaded by hand first) or its push failed (the PACS was down). Returns the pushes due."""
    with session_scope(settings.sqlalchemy_url) as session:
        newest = session.scalar(
            select(Report).where(Report.study_id == study_id).order_by(Report.version.desc())
        )
        if newest is None:
            return []
        push = session.scalar(select(Push).where(Push.report_id == newest.id).with_for_update())
        if push is None:
            planned = plan_push(session, settings, newest)
            return [planned.id] if planned is not None else []
        if push.state == FAILED:
            push.state, push.attempts, push.error = PENDING, 0, None
            push.next_attempt_at, push.finished_at = now(), None
            return [push.id]
        return []


def pending_pushes(
    settings: Settings, *, job_id: str | None = None, overdue_s: float | None = None
) -> list[str]:
    """Pushes waiting to be tried: a job's, or every one (``overdue_s``: only those whose try
    is that late, which a lost message or a restarted process left behind)."""
    query = select(Push.id).where(Push.state == PENDING).order_by(Push.created_at)
    if job_id is not None:
        query = query.where(Push.job_id == job_id)
    if overdue_s is not None:
        query = query.where(Push.next_attempt_at < now() - timedelta(seconds=overdue_s))
    with session_scope(settings.sqlalchemy_url) as session:
        return list(session.scalars(query))


@dataclass(frozen=True)
class _Sending:
    """What one try of a push sends and withdraws, read before any network call."""

    instances: list[bytes]
    withdraw: set[str]
    replaced: list[str]  # the pushes whose instances ``withdraw`` holds


def push_report(settings: Settings, push_id: str) -> float | None:
    """Try one push; returns the seconds until the next try, or None when it is finished (done,
    failed after ``push_attempts`` tries, superseded, or not pending any more)."""
    sending = _prepare(settings, push_id)
    if sending is None:
        return None
    try:
        sent = _send(settings, sending)
    except DicomWebError as error:
        return _record_failure(settings, push_id, str(error))
    _record_success(settings, push_id, sent, sending.replaced)
    return None


def _prepare(settings: Settings, push_id: str) -> _Sending | None:
    with session_scope(settings.sqlalchemy_url) as session:
        push = session.get(Push, push_id, with_for_update=True)
        if push is None or push.state != PENDING:
            return None
        report = session.get(Report, push.report_id)
        assert report is not None
        if _newer_planned(session, push, report.version):
            push.state, push.finished_at = SUPERSEDED, now()
            return None
        replaced = list(
            session.scalars(
                select(Push)
                .join(Report, Report.id == Push.report_id)
                .where(
                    Push.study_id == push.study_id,
                    Push.state == DONE,
                    Push.withdrawn_at.is_(None),
                    Report.kind == DRAFT,
                    Report.version < report.version,
                )
            )
        )
        instances = [storage.read(settings.files_dir, report.files[kind]) for kind in PUSHED_FILES]
        withdraw = {uid for old in replaced for uid in old.sop_instance_uids}
        return _Sending(instances, withdraw, [old.id for old in replaced])


def _newer_planned(session: Session, push: Push, version: int) -> bool:
    """A newer version of the study has a push: this one would only put back what that one
    replaces (a draft retried after its study was signed)."""
    newer = (
        select(Push.id)
        .join(Report, Report.id == Push.report_id)
        .where(Push.study_id == push.study_id, Report.version > version)
    )
    return session.scalar(newer.limit(1)) is not None


def _send(settings: Settings, sending: _Sending) -> list[str]:
    """Store the instances in the PACS, withdrawing what they replace; returns their UIDs."""
    uids = [_sop_instance_uid(data) for data in sending.instances]
    remover = _orthanc(settings)
    try:
        if remover is not None:
            remover.delete(sending.withdraw & set(uids))  # the PACS would keep the old ones
        with peer(settings) as client:
            client.store(sending.instances)
        if remover is not None:
            remover.delete(sending.withdraw - set(uids))
    finally:
        if remover is not None:
            remover.close()
    return uids


def _sop_instance_uid(data: bytes) -> str:
    import pydicom

    header = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
    return str(header.SOPInstanceUID)


def _record_success(settings: Settings, push_id: str, uids: list[str], replaced: list[str]) -> None:
    with session_scope(settings.sqlalchemy_url) as session:
        push = session.get(Push, push_id, with_for_update=True)
        assert push is not None
        push.state, push.error, push.sop_instance_uids = DONE, None, uids
        push.attempts, push.finished_at = push.attempts + 1, now()
        if settings.pacs_orthanc_url is not None:
            for old in replaced:
                withdrawn = session.get(Push, old)
                assert withdrawn is not None
                withdrawn.withdrawn_at = now()
    logger.info("push %s stored in the PACS", push_id)


def _record_failure(settings: Settings, push_id: str, message: str) -> float | None:
    """Count a failed try; the wait before the next, or None once the tries are used up."""
    with session_scope(settings.sqlalchemy_url) as session:
        push = session.get(Push, push_id, with_for_update=True)
        assert push is not None
        push.attempts += 1
        push.error = message
        if push.attempts >= settings.push_attempts:
            push.state, push.finished_at = FAILED, now()
            push.error = (
                f"{message} (gave up after {push.attempts} tries; the report is kept here and "
                "is pushed again when the PACS sends the study again)"
            )
            logger.error("push %s failed after %d tries", push_id, push.attempts)
            return None
        wait = min(settings.push_backoff_s * 2 ** (push.attempts - 1), settings.push_backoff_max_s)
        push.next_attempt_at = now() + timedelta(seconds=wait)
    logger.warning("push %s: try %d failed; next in %.0f s", push_id, push.attempts, wait)
    return wait


def _orthanc(settings: Settings) -> _Orthanc | None:
    if settings.pacs_orthanc_url is None:
        return None
    return _Orthanc(
        settings.pacs_orthanc_url, timeout_s=settings.pacs_timeout_s, auth=_credentials(settings)
    )


class _Orthanc(DicomWebClient):
    """An Orthanc's REST API: what DICOMweb lacks, deleting instances by SOP Instance UID."""

    def delete(self, uids: Iterable[str]) -> None:
        for uid in sorted(uids):
            for found in self._request("POST", f"{self.base_url}/tools/lookup", content=uid).json():
                if found.get("Type") == "Instance":
                    self._request("DELETE", f"{self.base_url}/instances/{found['ID']}")
