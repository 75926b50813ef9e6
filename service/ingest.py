"""Ingest an uploaded study: keep the files, read them with ``dicom.read_study``, record it.

Files are written into a temporary folder beside their final place and renamed only after the
study was read and its record flushed, inside one transaction: a refused upload leaves neither a
folder nor a row behind.
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
from pathlib import Path

from sqlalchemy.orm import Session

import dicom
from service import crud
from service.models import StudyRecord


def ingest_upload(
    session: Session, *, studies_dir: Path, payload: bytes, filename: str
) -> StudyRecord:
    """Store and read one upload (a DICOM file or an archive); raises ``dicom.DicomError``."""
    studies_dir.mkdir(parents=True, exist_ok=True)
    record_id = uuid.uuid4().hex
    staging = Path(tempfile.mkdtemp(prefix=".incoming-", dir=studies_dir))
    try:
        upload = staging / _safe_name(filename)
        upload.write_bytes(payload)
        study = dicom.read_study(upload)
        record = crud.create_study(
            session,
            record_id=record_id,
            study_instance_uid=study.study_instance_uid,
            frontal_count=len(study.frontal_images),
            set_aside_count=len(study.set_aside),
            summary=dicom.summarize_study(study),
        )
        staging.rename(studies_dir / record_id)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return record


def _safe_name(filename: str) -> str:
    """The client's file name without any folder part, so it cannot escape the staging folder."""
    name = Path(filename.replace("\\", "/")).name
    return name if name not in {"", ".", ".."} else "upload.dcm"
