"""DICOMweb STOW-RS (PS3.18 10.5): a PACS or a modality stores instances with us.

Each study among the instances is ingested and drafted as an upload is (``workers.pacs.receive``),
marked to go back to the PACS. The answer is the standard's: DICOM JSON with a
ReferencedSOPSequence of the instances kept and a FailedSOPSequence of those refused, status 200
(all kept), 202 (some) or 409 (none); why a study was refused is in a ``Warning`` header
(PS3.18 8.4.4), since DICOM JSON has no place for it. The service's body limit applies while the
request streams in.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Annotated

import pydicom
from fastapi import APIRouter, Depends, HTTPException, Request, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydicom import Dataset
from sqlalchemy.orm import Session

import dicom
from dicom.dicomweb import multipart_payloads
from service.api.deps import (
    Caller,
    DispatcherDep,
    ProfileDep,
    SettingsDep,
    allow,
    audit,
    error_responses,
)
from service.dispatch import hand_over, hand_over_pushes
from service.models import ADMIN, UPLOADER
from service.schemas import Priority
from workers.config import Settings
from workers.generators import DraftProfile
from workers.ingest import Ingested
from workers.pacs import receive

router = APIRouter(prefix="/dicomweb", tags=["dicomweb"])

Sender = Annotated[Caller, Depends(allow(UPLOADER, ADMIN))]
DICOM_JSON = "application/dicom+json"
# Failure Reason (0008,1197) values of PS3.18 Table 10.5.3-2 (from PS3.4 Annex B)
CANNOT_UNDERSTAND = 0xC000
PROCESSING_FAILURE = 0x0110
REQUIRED = ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID")
STOW_BODY = {
    "required": True,
    "content": {
        'multipart/related; type="application/dicom"': {
            "schema": {"type": "string", "format": "binary"}
        }
    },
}


@dataclass(frozen=True)
class _Instance:
    sop_class_uid: str
    sop_instance_uid: str
    data: bytes = field(repr=False)


@dataclass
class _Outcome:
    """What a STOW-RS request kept and refused, and the work it started."""

    stored: list[_Instance] = field(default_factory=list)
    failed: list[tuple[_Instance, int]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    new_jobs: list[str] = field(default_factory=list)
    push_ids: list[str] = field(default_factory=list)

    def status_code(self) -> int:
        if not self.failed:
            return status.HTTP_200_OK
        return status.HTTP_202_ACCEPTED if self.stored else status.HTTP_409_CONFLICT

    def response(self) -> JSONResponse:
        result = Dataset()
        if self.stored:
            result.ReferencedSOPSequence = [_reference(item) for item in self.stored]
        if self.failed:
            result.FailedSOPSequence = [_failure(item, reason) for item, reason in self.failed]
        headers = {"Warning": ", ".join(_warning(text) for text in self.warnings)}
        return JSONResponse(
            result.to_json_dict(),
            status_code=self.status_code(),
            media_type=DICOM_JSON,
            headers=headers if self.warnings else None,
        )


@router.post(
    "/studies",
    responses={
        200: {"description": "Every instance stored", "content": {DICOM_JSON: {}}},
        202: {"description": "Some instances stored (see FailedSOPSequence and Warning)"},
        409: {"description": "No instance stored (see FailedSOPSequence and Warning)"},
        **error_responses(400, 413, 415),
    },
    openapi_extra={"requestBody": STOW_BODY},
)
async def store_instances(
    request: Request,
    caller: Sender,
    settings: SettingsDep,
    profile: ProfileDep,
    dispatcher: DispatcherDep,
    priority: Priority = "routine",
) -> JSONResponse:
    """Store instances (multipart/related of application/dicom parts) and draft each study."""
    content_type = request.headers.get("content-type", "")
    if not content_type.lower().startswith("multipart/related"):
        raise HTTPException(
            status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
            'STOW-RS takes Content-Type: multipart/related; type="application/dicom"; '
            "boundary=..., one instance per part.",
        )
    try:
        parts = multipart_payloads(content_type, await request.body())
    except dicom.DicomWebError as error:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, str(error)) from None
    if not parts:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "The request holds no instance.")
    outcome = await run_in_threadpool(_store, settings, profile, parts, priority, caller)
    for job_id in outcome.new_jobs:
        await run_in_threadpool(hand_over, dispatcher, settings, job_id, priority)
    await run_in_threadpool(hand_over_pushes, dispatcher, outcome.push_ids)
    return outcome.response()


def _store(
    settings: Settings, profile: DraftProfile, parts: list[bytes], priority: str, caller: Caller
) -> _Outcome:
    outcome = _Outcome()
    studies: dict[str, list[_Instance]] = {}
    for data in parts:
        header = _header(data)
        instance = _Instance(
            str(header.get("SOPClassUID", "")), str(header.get("SOPInstanceUID", "")), data
        )
        if any(not header.get(keyword) for keyword in REQUIRED):
            outcome.failed.append((instance, CANNOT_UNDERSTAND))
            continue
        studies.setdefault(str(header.StudyInstanceUID), []).append(instance)
    if len(outcome.failed) > 0:
        outcome.warnings.append(
            f"{len(outcome.failed)} part(s) are not DICOM instances with SOPClassUID, "
            "SOPInstanceUID and StudyInstanceUID; send each instance as a Part 10 file"
        )
    for instances in studies.values():
        _store_study(settings, profile, instances, priority, caller, outcome)
    return outcome


def _store_study(
    settings: Settings,
    profile: DraftProfile,
    instances: list[_Instance],
    priority: str,
    caller: Caller,
    outcome: _Outcome,
) -> None:
    def record(session: Session, ingested: Ingested) -> None:
        audit(session, caller, "study.store", "study", ingested.study.id, status.HTTP_200_OK)

    try:
        received = receive(
            settings, profile, [item.data for item in instances], priority, record=record
        )
    except dicom.DicomError as error:
        outcome.failed += [(item, PROCESSING_FAILURE) for item in instances]
        outcome.warnings.append(str(error))
        return
    outcome.stored += instances
    if received.ingested.new_job:
        outcome.new_jobs.append(received.ingested.job.id)
    outcome.push_ids += received.push_ids


def _header(data: bytes) -> Dataset:
    """The part's header, or an empty data set when it is not DICOM at all."""
    try:
        return pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True, force=True)
    except Exception:  # anything pydicom raises on bytes that are not DICOM
        return Dataset()


def _reference(instance: _Instance) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID = instance.sop_class_uid
    item.ReferencedSOPInstanceUID = instance.sop_instance_uid
    return item


def _failure(instance: _Instance, reason: int) -> Dataset:
    item = _reference(instance)
    item.FailureReason = reason
    return item


def _warning(text: str) -> str:
    """A Warning header value (RFC 7234 5.5): code 299, our name, the text as a quoted string."""
    safe = "".join(c if c.isprintable() and c.isascii() and c not in '"\\' else " " for c in text)
    return f'299 echocxr "{safe}"'
