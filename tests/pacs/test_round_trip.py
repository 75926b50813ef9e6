"""A study through a real Orthanc: sent with dcmtk's storescu, Orthanc's stable-study hook
notifies the API, the study is pulled by WADO-RS, drafted, and the SR and PDF pushed back by
STOW-RS into the same study; signed, the VERIFIED version replaces the draft there."""

from __future__ import annotations

import time
from pathlib import Path

import pydicom
import pytest
from sqlalchemy import func, select

from dicom import DicomWebError, cited_images
from tests.pacs.conftest import (
    Rig,
    reports_in_pacs,
    send_with_storescu,
    wait_until,
)
from tests.support.orthanc import OrthancServer
from tests.support.service import another_instance, auth, phantom_bytes
from workers.config import Settings
from workers.db import session_scope
from workers.records import Job, Push, Report, Study

pytestmark = pytest.mark.integration

DRAFT_WAIT_S = 300  # notify, pull, draft on a busy 2-core machine, push


def _drafted(orthanc: OrthancServer, study_uid: str, unverified: bool = True) -> dict | None:
    """The study's reports in the PACS once it holds exactly the kind wanted; None meanwhile,
    also while a replacement deletes an instance between our search and our retrieval."""
    try:
        found = reports_in_pacs(orthanc, study_uid)
    except DicomWebError:
        return None
    flags = {str(sr.VerificationFlag) for sr in found["sr"]}
    wanted = {"UNVERIFIED"} if unverified else {"VERIFIED"}
    return found if flags == wanted and found["pdf"] else None


def _records(settings: Settings, study_uid: str) -> tuple[list[Job], list[Report], list[Push]]:
    with session_scope(settings.sqlalchemy_url) as session:
        study = session.scalar(select(Study).where(Study.study_instance_uid == study_uid))
        assert study is not None and study.return_to_pacs
        jobs = list(session.scalars(select(Job).where(Job.study_id == study.id)))
        reports = list(
            session.scalars(
                select(Report).where(Report.study_id == study.id).order_by(Report.version)
            )
        )
        pushes = list(
            session.scalars(select(Push).where(Push.study_id == study.id).order_by(Push.created_at))
        )
        return jobs, reports, pushes


def test_a_study_sent_to_the_pacs_comes_back_drafted_then_signed(
    rig: Rig, storescu: str, tmp_path: Path
) -> None:
    source = tmp_path / "study.dcm"
    source.write_bytes(phantom_bytes(11))
    header = pydicom.dcmread(source, stop_before_pixels=True)
    uid = str(header.StudyInstanceUID)
    send_with_storescu(storescu, rig.orthanc, source)

    found = wait_until(lambda: _drafted(rig.orthanc, uid), DRAFT_WAIT_S, "no draft in the PACS")
    assert len(found["sr"]) == len(found["pdf"]) == len(found["other"]) == 1
    sr, pdf = found["sr"][0], found["pdf"][0]
    assert (sr.CompletionFlag, sr.VerificationFlag, sr.PreliminaryFlag) == (
        "PARTIAL",
        "UNVERIFIED",
        "PRELIMINARY",
    )
    for filed in (sr, pdf):
        assert filed.StudyInstanceUID == uid
        assert (filed.PatientID, filed.PatientName) == (header.PatientID, header.PatientName)
    assert pdf.Modality == "DOC" and len(cited_images(sr)) == 1
    patients = rig.orthanc.get_json("/patients")
    assert isinstance(patients, list) and len(patients) == 1  # filed under the source patient

    jobs, reports, _ = _records(rig.api.settings, uid)
    with rig.api.client() as api:
        job = api.get(f"/v1/jobs/{jobs[0].id}", headers=auth(rig.keys["uploader"])).json()
    assert [(p["report_id"], p["state"], p["attempts"]) for p in job["pushes"]] == [
        (reports[0].id, "done", 1)
    ]

    # sent again (and our own SR made the study stable again): no new draft, no duplicate
    send_with_storescu(storescu, rig.orthanc, source)
    time.sleep(4)  # StableAge 1 s, then the notification and the pull
    again = reports_in_pacs(rig.orthanc, uid)
    assert [len(again[kind]) for kind in ("sr", "pdf", "other")] == [1, 1, 1]
    jobs, reports, pushes = _records(rig.api.settings, uid)
    assert (len(jobs), len(reports), len(pushes)) == (1, 1, 1)

    with rig.api.client() as api:
        signed = api.post(
            f"/v1/reports/{reports[0].id}/sign",
            json={"findings": reports[0].findings, "impression": "Signed after review."},
            headers=auth(rig.keys["radiologist"]),
        )
    assert signed.status_code == 201, signed.text
    found = wait_until(
        lambda: _drafted(rig.orthanc, uid, unverified=False), 120, "no signed SR in the PACS"
    )
    assert [len(found[kind]) for kind in ("sr", "pdf", "other")] == [1, 1, 1]  # draft deleted
    verified = found["sr"][0]
    assert verified.CompletionFlag == "COMPLETE" and verified.PreliminaryFlag == "FINAL"
    assert str(verified.VerifyingObserverSequence[0].VerifyingObserverName) == "Test Radiologist"
    assert verified.PredecessorDocumentsSequence[0].ReferencedSeriesSequence[
        0
    ].ReferencedSOPSequence[0].ReferencedSOPInstanceUID == str(sr.SOPInstanceUID)
    assert verified.PatientID == header.PatientID
    _, reports, pushes = _records(rig.api.settings, uid)
    assert [(p.report_id, p.state, p.job_id) for p in pushes] == [
        (reports[0].id, "done", jobs[0].id),
        (reports[1].id, "done", jobs[0].id),
    ]
    assert pushes[0].withdrawn_at is not None and pushes[1].withdrawn_at is None


def test_a_study_that_grows_is_drafted_again_and_its_draft_replaced(
    rig: Rig, storescu: str, tmp_path: Path
) -> None:
    first = tmp_path / "first.dcm"
    first.write_bytes(phantom_bytes(12))
    uid = str(pydicom.dcmread(first, stop_before_pixels=True).StudyInstanceUID)
    send_with_storescu(storescu, rig.orthanc, first)
    found = wait_until(lambda: _drafted(rig.orthanc, uid), DRAFT_WAIT_S, "no first draft")
    assert len(cited_images(found["sr"][0])) == 1

    second = tmp_path / "second.dcm"
    second.write_bytes(another_instance(first.read_bytes(), 1))
    send_with_storescu(storescu, rig.orthanc, second)

    def replaced() -> dict | None:
        now = _drafted(rig.orthanc, uid)
        return now if now and len(cited_images(now["sr"][0])) == 2 else None

    found = wait_until(replaced, DRAFT_WAIT_S, "the draft of the grown study did not replace it")
    assert [len(found[kind]) for kind in ("sr", "pdf", "other")] == [1, 1, 2]
    jobs, reports, pushes = _records(rig.api.settings, uid)
    assert len(jobs) == 2 and [r.version for r in reports] == [1, 2]
    assert [p.state for p in pushes] == ["done", "done"]
    assert pushes[0].withdrawn_at is not None
    with session_scope(rig.api.settings.sqlalchemy_url) as session:
        assert session.scalar(select(func.count()).select_from(Study)) == 1
