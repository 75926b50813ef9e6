"""A study through the service, drafted by the embedded pool with the shipped model: upload,
job, report versions in every format, and the same study uploaded again."""

from __future__ import annotations

import io
import json
import subprocess
from pathlib import Path

import pydicom
import pytest
from fastapi.testclient import TestClient

import model
from tests.support.service import auth, phantom_bytes, upload, wait_for_job, zipped

pytestmark = pytest.mark.integration


def test_an_upload_becomes_a_draft_in_every_format(
    client: TestClient, keys: dict[str, str], tmp_path: Path, dciodvfy: str
) -> None:
    key = keys["radiologist"]
    uploaded = upload(client, key, phantom_bytes(3))
    assert uploaded["job"]["state"] in ("queued", "running", "done")
    job = wait_for_job(client, key, uploaded["job"]["id"])
    assert job["state"] == "done", job["error"]
    assert job["progress"] == 1.0 and job["engine"] == model.DEFAULT_ENGINE
    assert {"queued_s", "read_s", "draft_s", "write_s", "total_s"} <= set(job["timings"])

    versions = client.get(f"/v1/studies/{uploaded['id']}/reports", headers=auth(key)).json()
    assert [v["id"] for v in versions] == [job["report_id"]]
    report = versions[0]
    assert report["kind"] == "draft" and report["status"] == "preliminary"
    assert report["engine"] == model.DEFAULT_ENGINE and len(report["checkpoint_sha256"]) == 64
    assert report["findings"] and set(report["formats"]) == {"json", "text", "sr", "pdf", "fhir"}

    url = f"/v1/reports/{report['id']}"
    text = client.get(url, params={"format": "text"}, headers=auth(key))
    assert text.headers["content-type"].startswith("text/plain")
    assert text.text.startswith("PRELIMINARY") and report["findings"] in text.text

    sr = client.get(url, headers={**auth(key), "Accept": "application/dicom"})
    assert sr.headers["content-type"] == "application/dicom"
    dataset = pydicom.dcmread(io.BytesIO(sr.content))
    assert (dataset.CompletionFlag, dataset.VerificationFlag) == ("PARTIAL", "UNVERIFIED")
    assert dataset.StudyInstanceUID == uploaded["study_instance_uid"]
    (tmp_path / "report.sr.dcm").write_bytes(sr.content)
    check = subprocess.run(
        [dciodvfy, str(tmp_path / "report.sr.dcm")], capture_output=True, text=True
    )
    assert "Error" not in check.stdout + check.stderr, check.stdout + check.stderr

    pdf = client.get(url, params={"format": "pdf"}, headers=auth(key))
    assert pdf.headers["content-type"] == "application/pdf" and pdf.content.startswith(b"%PDF")
    fhir = client.get(url, headers={**auth(key), "Accept": "application/fhir+json"})
    assert fhir.headers["content-type"] == "application/fhir+json"
    assert fhir.json()["resourceType"] == "DiagnosticReport" and fhir.json()["status"] == "partial"
    as_json = client.get(url, headers=auth(key)).json()
    assert as_json["findings"] == report["findings"]


def test_the_same_study_uploaded_again_is_not_drafted_twice(
    client: TestClient, keys: dict[str, str]
) -> None:
    key = keys["uploader"]
    data = phantom_bytes(4)
    first = upload(client, key, data)
    again = upload(client, key, data)
    as_archive = upload(client, key, zipped({"export/IM0001": data}), name="study.zip")
    assert first["id"] == again["id"] == as_archive["id"]
    assert first["job"]["id"] == again["job"]["id"] == as_archive["job"]["id"]
    wait_for_job(client, key, first["job"]["id"])
    reader = keys["radiologist"]
    assert len(client.get(f"/v1/studies/{first['id']}/reports", headers=auth(reader)).json()) == 1


def test_a_study_that_grows_is_drafted_again_as_a_new_version(
    client: TestClient, keys: dict[str, str]
) -> None:
    """A second instance of the same study (here a second frontal image of the same case)
    changes the study's content, so it gets a new draft; the first stays as version 1."""
    from pydicom.uid import generate_uid

    key = keys["radiologist"]
    first_bytes = phantom_bytes(5)
    first = upload(client, key, first_bytes)
    wait_for_job(client, key, first["job"]["id"])
    second = pydicom.dcmread(io.BytesIO(first_bytes))
    second.SOPInstanceUID = generate_uid()
    second.file_meta.MediaStorageSOPInstanceUID = second.SOPInstanceUID
    buffer = io.BytesIO()
    second.save_as(buffer, enforce_file_format=True)
    grown = upload(client, key, buffer.getvalue())
    assert grown["id"] == first["id"] and grown["job"]["id"] != first["job"]["id"]
    assert grown["frontal_count"] == 2
    wait_for_job(client, key, grown["job"]["id"])
    versions = client.get(f"/v1/studies/{first['id']}/reports", headers=auth(key)).json()
    assert [v["version"] for v in versions] == [2, 1]


def undecodable_study(index: int) -> bytes:
    """A study whose headers read but whose RLE pixel stream is cut and scrambled: accepted at
    upload (the API never decodes), refused where it is decoded."""
    from pydicom.encaps import encapsulate, generate_frames
    from pydicom.uid import RLELossless

    dataset = pydicom.dcmread(io.BytesIO(phantom_bytes(index)))
    dataset.compress(RLELossless)
    frame = next(generate_frames(dataset.PixelData, number_of_frames=1))
    dataset.PixelData = encapsulate([frame[:64] + b"\x7f" * 10 + frame[64 : len(frame) // 4]])
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def test_queued_studies_are_drafted_together_and_a_bad_one_fails_alone(
    client: TestClient, keys: dict[str, str]
) -> None:
    """Uploaded while the pool drafts the first, the rest wait and are decoded in one pass of
    the model; the one whose pixels cannot be decoded fails with the reason, no stack trace,
    and costs the others nothing."""
    key = keys["radiologist"]
    good = [upload(client, key, phantom_bytes(60 + i)) for i in range(5)]
    bad = upload(client, key, undecodable_study(66))
    jobs = [wait_for_job(client, key, study["job"]["id"]) for study in good]
    assert [job["state"] for job in jobs] == ["done"] * len(good)
    assert max(job["timings"]["batch"] for job in jobs) >= 2
    failed = wait_for_job(client, key, bad["job"]["id"])
    assert failed["state"] == "failed" and failed["report_id"] is None
    assert "PixelData" in failed["error"] and "Traceback" not in failed["error"]


def test_stat_uploads_come_first_in_the_worklist(client: TestClient, keys: dict[str, str]) -> None:
    key = keys["radiologist"]
    routine = upload(client, key, phantom_bytes(7))
    stat = upload(client, key, phantom_bytes(8), priority="stat")
    assert stat["priority"] == "stat"
    for study in (routine, stat):
        wait_for_job(client, key, study["job"]["id"])
    items = client.get("/v1/worklist", headers=auth(key)).json()
    assert [item["study"]["id"] for item in items][:1] == [stat["id"]]
    assert items[0]["study"]["identifiers"]["PatientID"]
    assert all(item["latest_report"]["status"] == "preliminary" for item in items)
    signed = client.get("/v1/worklist", params={"state": "signed"}, headers=auth(key)).json()
    assert signed == []


def test_the_assistant_answers_with_the_model_that_answered(
    client: TestClient, keys: dict[str, str]
) -> None:
    key = keys["radiologist"]
    study = upload(client, key, phantom_bytes(9))
    response = client.post(
        f"/v1/studies/{study['id']}/ask",
        json={"question": "Is there a pleural effusion?", "history": []},
        headers=auth(key),
    )
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["answer"].strip() and answer["model"].startswith("echocxr-ar")
    empty = client.post(f"/v1/studies/{study['id']}/ask", json={"question": ""}, headers=auth(key))
    assert empty.status_code == 422


def test_metrics_count_what_the_pool_drafted(client: TestClient, keys: dict[str, str]) -> None:
    key = keys["radiologist"]
    study = upload(client, key, phantom_bytes(10))
    wait_for_job(client, key, study["job"]["id"])
    text = client.get("/metrics").text
    assert 'echocxr_jobs{state="done"} 1.0' in text
    assert f'echocxr_drafts_total{{engine="{model.DEFAULT_ENGINE}"}} 1.0' in text
    assert "echocxr_job_latency_seconds_count 1.0" in text
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"
    assert json.loads(ready.text)["checks"] == {"database": "ok", "broker": "ok", "model": "ok"}
