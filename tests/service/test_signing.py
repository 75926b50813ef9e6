"""Signing a draft: a new, final version whose SR is COMPLETE / VERIFIED with the radiologist as
verifying observer, FHIR final, and what changed recorded and labelled."""

from __future__ import annotations

import io
import subprocess
import time
from pathlib import Path

import pydicom
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

import dicom
from tests.support.service import another_instance, auth, phantom_bytes, upload, wait_for_job
from workers import storage
from workers.config import Settings
from workers.db import session_scope
from workers.records import SignOff
from workers.signing import word_edit_distance

pytestmark = pytest.mark.integration


def _drafted(client: TestClient, key: str, index: int) -> tuple[dict, dict]:
    study = upload(client, key, phantom_bytes(index))
    job = wait_for_job(client, key, study["job"]["id"])
    draft = client.get(f"/v1/reports/{job['report_id']}", headers=auth(key)).json()
    return study, draft


def test_signing_issues_a_verified_sr_and_records_the_edit(
    client: TestClient,
    keys: dict[str, str],
    settings: Settings,
    tmp_path: Path,
    dciodvfy: str,
    dsrdump: str,
) -> None:
    key = keys["radiologist"]
    study, draft = _drafted(client, key, 30)
    edited = "Large left pneumothorax."
    response = client.post(
        f"/v1/reports/{draft['id']}/sign",
        json={"findings": draft["findings"], "impression": edited},
        headers=auth(key),
    )
    assert response.status_code == 201, response.text
    signed = response.json()
    assert signed["id"] != draft["id"] and signed["version"] == draft["version"] + 1
    assert (signed["kind"], signed["status"], signed["based_on_id"]) == (
        "signed",
        "final",
        draft["id"],
    )
    assert signed["signed_by"] == "Test Radiologist" and signed["impression"] == edited

    sr_bytes = client.get(f"/v1/reports/{signed['id']}?format=sr", headers=auth(key)).content
    sr = pydicom.dcmread(io.BytesIO(sr_bytes))
    assert (sr.CompletionFlag, sr.VerificationFlag, sr.PreliminaryFlag) == (
        "COMPLETE",
        "VERIFIED",
        "FINAL",
    )
    observer = sr.VerifyingObserverSequence[0]
    assert str(observer.VerifyingObserverName) == "Test Radiologist"
    assert observer.VerifyingOrganization == settings.organization
    assert sr.StudyInstanceUID == study["study_instance_uid"]
    path = tmp_path / "signed.sr.dcm"
    path.write_bytes(sr_bytes)
    check = subprocess.run([dciodvfy, str(path)], capture_output=True, text=True)
    assert "Error" not in check.stdout + check.stderr, check.stdout + check.stderr
    dump = subprocess.run([dsrdump, str(path)], capture_output=True, text=True).stdout
    assert "Completion Flag    : COMPLETE" in dump or "COMPLETE" in dump
    assert edited in dump

    fhir = client.get(f"/v1/reports/{signed['id']}?format=fhir", headers=auth(key)).json()
    assert fhir["status"] == "final"
    text = client.get(f"/v1/reports/{signed['id']}?format=text", headers=auth(key)).text
    assert text.startswith("FINAL - signed by Test Radiologist")

    versions = client.get(f"/v1/studies/{study['id']}/reports", headers=auth(key)).json()
    assert [v["kind"] for v in versions] == ["signed", "draft"]
    signoff = _evaluated_signoff(settings, signed["id"])
    before = f"FINDINGS: {draft['findings']}\nIMPRESSION: {draft['impression']}"
    after = f"FINDINGS: {draft['findings']}\nIMPRESSION: {edited}"
    assert signoff.word_edit_distance == word_edit_distance(before, after) > 0
    assert signoff.label_changes is not None
    assert signoff.label_changes["Pneumothorax"][1] == 1  # the drafted impression had none
    labelled = client.get(f"/v1/reports/{signed['id']}", headers=auth(key)).json()["labels"]
    assert labelled["Pneumothorax"] == 1
    worklist = client.get("/v1/worklist", params={"state": "signed"}, headers=auth(key)).json()
    assert [item["study"]["id"] for item in worklist] == [study["id"]]


def _evaluated_signoff(settings: Settings, signed_id: str, seconds: float = 60) -> SignOff:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with session_scope(settings.sqlalchemy_url) as session:
            signoff = session.scalar(select(SignOff).where(SignOff.signed_id == signed_id))
            if signoff is not None and signoff.evaluated_at is not None:
                return signoff
        time.sleep(0.1)
    pytest.fail("the sign-off was not evaluated")


def test_a_draft_signed_after_its_study_grew_cites_and_revises_what_it_was_written_from(
    client: TestClient, keys: dict[str, str], settings: Settings
) -> None:
    """A further image arrived (the study's next draft still on its way) before the radiologist
    signed the draft on screen: the signed SR cites the images that draft read and names that
    draft as its predecessor, not a draft of the grown study that does not exist."""
    key = keys["radiologist"]
    study, draft = _drafted(client, key, 33)
    draft_sr = _sr(client, key, draft["id"])
    folder = storage.study_folder(settings.studies_dir, study["id"])
    (folder / "arrived-later.dcm").write_bytes(another_instance(phantom_bytes(33), 1))
    body = {"findings": draft["findings"], "impression": draft["impression"]}
    response = client.post(f"/v1/reports/{draft['id']}/sign", json=body, headers=auth(key))
    assert response.status_code == 201, response.text
    signed_sr = _sr(client, key, response.json()["id"])
    assert dicom.cited_images(signed_sr) == dicom.cited_images(draft_sr)
    predecessor = signed_sr.PredecessorDocumentsSequence[0].ReferencedSeriesSequence[0]
    assert predecessor.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == draft_sr.SOPInstanceUID


def _sr(client: TestClient, key: str, report_id: str) -> pydicom.Dataset:
    sr = client.get(f"/v1/reports/{report_id}?format=sr", headers=auth(key))
    return pydicom.dcmread(io.BytesIO(sr.content))


def test_only_the_newest_draft_signs_and_only_once(
    client: TestClient, keys: dict[str, str]
) -> None:
    key = keys["radiologist"]
    _, draft = _drafted(client, key, 31)
    body = {"findings": draft["findings"], "impression": draft["impression"]}
    first = client.post(f"/v1/reports/{draft['id']}/sign", json=body, headers=auth(key))
    assert first.status_code == 201
    again = client.post(f"/v1/reports/{draft['id']}/sign", json=body, headers=auth(key))
    assert again.status_code == 409 and "newest" in again.json()["detail"]
    signed_again = client.post(
        f"/v1/reports/{first.json()['id']}/sign", json=body, headers=auth(key)
    )
    assert signed_again.status_code == 409 and "already signed" in signed_again.json()["detail"]


def test_an_empty_signed_report_is_refused(client: TestClient, keys: dict[str, str]) -> None:
    key = keys["radiologist"]
    _, draft = _drafted(client, key, 32)
    response = client.post(
        f"/v1/reports/{draft['id']}/sign",
        json={"findings": " ", "impression": ""},
        headers=auth(key),
    )
    assert response.status_code == 422 and "text" in response.json()["detail"]


def test_word_edit_distance_counts_words_changed() -> None:
    assert word_edit_distance("a b c", "a b c") == 0
    assert word_edit_distance("no pleural effusion", "small pleural effusion") == 1
    assert word_edit_distance("heart normal", "") == 2
    assert word_edit_distance("", "two words") == 2
