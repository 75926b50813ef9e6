"""Ingest an upload: check it is one readable study, keep its files, record it, key its draft.

The upload's headers are read and checked (``dicom.read_study`` without decoding pixels: the
API decodes none, the worker does) before anything is written, so a refused upload leaves
nothing behind. Its files are then stored by content (``workers.storage``) and linked into the
study's folder; the records (study, files, job) are written in the caller's transaction, so they
are all there or none is. A file stored by a transaction that then failed is never referenced
and costs only its bytes.

Uploads, DICOMweb STOW-RS, DIMSE C-STORE and studies pulled from a PACS all come through
``ingest_upload``; the last three hand over their instances as one ZIP (``as_archive``), so every
route gets the same checks and limits. A study that came from a PACS is marked
``return_to_pacs``: its drafts and signed versions go back there (``workers.pacs``).

A study is known by its StudyInstanceUID: an upload of more instances joins it, and the draft is
keyed by the study's content (the hashes of all its files) and the drafting profile, so
re-uploading the same study finds the same job instead of drafting it twice, while a study that
grew gets a new draft.
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from workers import storage
from workers.config import Settings
from workers.db import session_scope
from workers.generators import DraftProfile
from workers.records import (
    CANCELLED,
    FAILED,
    QUEUED,
    ROUTINE,
    STAT,
    Job,
    Study,
    StudyFile,
    now,
)

if TYPE_CHECKING:
    import dicom

# What a reading list needs to tell patients and exams apart; shown to clinical roles only.
IDENTIFIER_KEYWORDS = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "PatientAge",
    "AccessionNumber",
    "StudyDate",
    "StudyTime",
    "StudyDescription",
    "ReferringPhysicianName",
    "InstitutionName",
)


@dataclass(frozen=True)
class Ingested:
    """The study an upload joined and the drafting job for its content now."""

    study: Study
    job: Job
    new_job: bool  # False: the same content was already drafted or queued


def ingest_upload(
    session: Session,
    settings: Settings,
    profile: DraftProfile,
    data: bytes,
    priority: str,
    *,
    return_to_pacs: bool = False,
) -> Ingested:
    """Read, store and record one upload (a DICOM file, or a ZIP/TAR of one study).

    ``return_to_pacs`` marks a study that a PACS or modality sent: its reports go back to the
    PACS peer. Raises ``dicom.DicomError`` (nothing written) when the upload is not one readable
    study.
    """
    import dicom
    from dicom.sources import ReadLimits, gather

    read = dicom.read_study(data, decode_pixels=False)  # the API never decodes pixels
    members = gather(data, ReadLimits())
    hashes = {
        storage.put(settings.files_dir, member.data)[0]: len(member.data) for member in members
    }
    study, joined = _study_record(session, read)
    _add_files(session, settings, study, hashes)
    content = _content_sha256(session, study.id)
    if joined and content != study.content_sha256:  # it grew: read all of it again
        folder = storage.study_folder(settings.studies_dir, study.id)
        _refresh(study, dicom.read_study(folder, decode_pixels=False))
    study.content_sha256 = content
    if priority == STAT:
        study.priority = STAT
    study.return_to_pacs = study.return_to_pacs or return_to_pacs
    study.updated_at = now()
    job, new_job = _draft_job(session, study, profile.draft_key(content), profile, priority)
    session.flush()
    return Ingested(study, job, new_job)


def ingest_in_transaction(
    settings: Settings,
    profile: DraftProfile,
    data: bytes,
    priority: str,
    *,
    return_to_pacs: bool = False,
    record: Callable[[Session, Ingested], None] | None = None,
) -> Ingested:
    """``ingest_upload`` in a transaction of its own, committed before the job is handed over
    (a worker must find it); ``record`` adds to that transaction (an audit event). Two
    ingestions racing to create one study retry once."""
    for attempt in range(2):
        try:
            with session_scope(settings.sqlalchemy_url) as session:
                ingested = ingest_upload(
                    session, settings, profile, data, priority, return_to_pacs=return_to_pacs
                )
                if record is not None:
                    record(session, ingested)
                return ingested
        except IntegrityError:
            if attempt:
                raise
    raise AssertionError("unreachable")


def as_archive(instances: Sequence[bytes]) -> bytes:
    """Instances received one by one (STOW-RS parts, C-STOREs, WADO-RS) as the ZIP of one study
    that ``ingest_upload`` takes; stored, not compressed: DICOM pixels rarely shrink."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for number, data in enumerate(instances):
            archive.writestr(f"{number:06d}.dcm", data)
    return buffer.getvalue()


def _study_record(session: Session, read: dicom.Study) -> tuple[Study, bool]:
    """The study's record, new or existing (``True``: the upload joins an existing study)."""
    uid = read.study_instance_uid
    study = session.scalar(select(Study).where(Study.study_instance_uid == uid).with_for_update())
    if study is not None:
        return study, True
    study = Study(study_instance_uid=uid, content_sha256="", priority=ROUTINE, return_to_pacs=False)
    _refresh(study, read)
    session.add(study)
    session.flush()
    return study, False


def _refresh(study: Study, read: dicom.Study) -> None:
    """What the record says of the study's content, from a reading of all its files."""
    import dicom

    study.frontal_count = len(read.frontal_images)
    study.set_aside_count = len(read.set_aside)
    study.summary = dicom.summarize_study(read)
    study.identifiers = identifiers(read)


def identifiers(read: dicom.Study) -> dict[str, Any]:
    """The Patient and Study attributes a reader needs, as text, from the first frontal image."""
    if not read.frontal_images:
        return {}
    header = read.frontal_images[0].dataset
    return {key: str(header.get(key, "") or "") for key in IDENTIFIER_KEYWORDS}


def _add_files(session: Session, settings: Settings, study: Study, hashes: dict[str, int]) -> None:
    known = set(session.scalars(select(StudyFile.sha256).where(StudyFile.study_id == study.id)))
    folder = storage.study_folder(settings.studies_dir, study.id)
    for sha256, size in hashes.items():
        storage.link_into(folder, settings.files_dir, sha256)
        if sha256 not in known:
            session.add(StudyFile(study_id=study.id, sha256=sha256, size=size))
    session.flush()


def _content_sha256(session: Session, study_id: str) -> str:
    hashes = sorted(session.scalars(select(StudyFile.sha256).where(StudyFile.study_id == study_id)))
    return hashlib.sha256("\n".join(hashes).encode()).hexdigest()


def _draft_job(
    session: Session, study: Study, key: str, profile: DraftProfile, priority: str
) -> tuple[Job, bool]:
    """The job drafting this content with this profile: the existing one, a failed or cancelled
    one queued again (uploading again is how a user retries), or a new one."""
    job = session.scalar(select(Job).where(Job.draft_key == key).with_for_update())
    if job is None:
        job = Job(
            study_id=study.id,
            state=QUEUED,
            priority=priority,
            draft_key=key,
            checkpoint_sha256=profile.weights_sha256,
            engine=profile.engine,
            engine_options=profile.options,
            progress=0.0,
            attempts=0,
            timings={},
        )
        session.add(job)
        return job, True
    if job.state in (FAILED, CANCELLED):
        job.state, job.error, job.attempts, job.progress = QUEUED, None, 0, 0.0
        job.dispatched_at = job.started_at = job.finished_at = None
        job.created_at = now()
        job.priority = priority
        return job, True
    if priority == STAT and job.state == QUEUED:
        job.priority = STAT  # handed again, to the STAT queue; the first delivery wins
        return job, True
    return job, False
