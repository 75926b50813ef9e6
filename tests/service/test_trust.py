"""A draft's trust signals through the service: stored with the draft, shown by the API and in
its files, ranking the worklist (STAT, then suspected critical, then oldest), and an
out-of-distribution study refused when the service is set to.

Most drafts here are recorded through the workers' own write path with signals built directly
(``record_trusted_draft``), to choose them; a draft without them (``trust=None``, a checkpoint
without trust statistics) must show null keys and raise nothing. The last test drafts with the
shipped model.
"""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from dicom.draft import TRUST_KEYS
from model.trust import Trust
from service.main import create_app
from tests.support.service import (
    UNRELIABLE_CRITICAL,
    auth,
    make_keys,
    noise_bytes,
    phantom_bytes,
    record_trusted_draft,
    upload,
    wait_for_job,
)
from workers.config import Settings
from workers.db import session_scope
from workers.records import Job, Report

pytestmark = pytest.mark.integration

CALM = Trust(finding_probabilities={"Pleural Effusion": 0.74}, ood_score=1.0, ood_threshold=4.0)


def test_the_api_and_the_files_carry_the_drafts_trust_signals(settings: Settings) -> None:
    study_id, _, report_id = record_trusted_draft(settings, phantom_bytes(21), UNRELIABLE_CRITICAL)
    plain_study, _, plain_id = record_trusted_draft(settings, phantom_bytes(22), None)
    key = make_keys(settings)["radiologist"]
    with TestClient(create_app(settings)) as client:
        (public,) = client.get(f"/v1/studies/{study_id}/reports", headers=auth(key)).json()
        assert public["id"] == report_id
        assert public["finding_probabilities"] == UNRELIABLE_CRITICAL.finding_probabilities
        assert public["out_of_distribution"] is True and public["ood_score"] == 9.0
        assert public["critical_findings"] == ["Pneumothorax"]
        assert public["consistency_flags"][0]["observation"] == "Pneumothorax"
        as_json = client.get(
            f"/v1/reports/{report_id}", params={"format": "json"}, headers=auth(key)
        )
        assert Trust.from_json(as_json.json()) == UNRELIABLE_CRITICAL  # report.json, as stored
        fhir = client.get(f"/v1/reports/{report_id}", params={"format": "fhir"}, headers=auth(key))
        assert len(fhir.json()["result"]) == 3  # the assessment and two probabilities
        text = client.get(f"/v1/reports/{report_id}", params={"format": "text"}, headers=auth(key))
        header = text.text.split("\n\nFINDINGS:")[0]
        assert "outside the model's training distribution — not reliable" in header
        assert "Suspected critical finding: Pneumothorax" in header

        (plain,) = client.get(f"/v1/studies/{plain_study}/reports", headers=auth(key)).json()
        assert plain["id"] == plain_id
        assert {k: plain[k] for k in TRUST_KEYS} == dict.fromkeys(TRUST_KEYS)
        stored = client.get(f"/v1/reports/{plain_id}", params={"format": "json"}, headers=auth(key))
        assert {k: stored.json()[k] for k in TRUST_KEYS} == dict.fromkeys(TRUST_KEYS)


def test_the_worklist_puts_stat_then_suspected_critical_then_oldest(settings: Settings) -> None:
    oldest, _, _ = record_trusted_draft(settings, phantom_bytes(23), None)
    calm, _, _ = record_trusted_draft(settings, phantom_bytes(24), CALM)
    critical, _, _ = record_trusted_draft(settings, phantom_bytes(25), UNRELIABLE_CRITICAL)
    stat, _, _ = record_trusted_draft(settings, phantom_bytes(26), None, priority="stat")
    key = make_keys(settings)["radiologist"]
    with TestClient(create_app(settings)) as client:
        items = client.get("/v1/worklist", headers=auth(key)).json()
    assert [item["study"]["id"] for item in items] == [stat, critical, oldest, calm]
    assert items[1]["latest_report"]["critical_findings"] == ["Pneumothorax"]


def test_an_out_of_distribution_study_is_refused_when_the_service_is_set_to(
    settings: Settings,
) -> None:
    refusing = settings.model_copy(update={"refuse_ood": True})
    study_id, job_id, report_id = record_trusted_draft(
        refusing, phantom_bytes(27), UNRELIABLE_CRITICAL
    )
    assert report_id is None
    with session_scope(settings.sqlalchemy_url) as session:
        job = session.get(Job, job_id)
        assert job is not None and job.state == "failed" and job.report_id is None
        assert job.error is not None and job.error.startswith(
            "the image lies outside the model's training distribution (score 9.00 > threshold "
            "4.00); no draft was written"
        )
        assert session.scalars(select(Report).where(Report.study_id == study_id)).all() == []
    # an image like the training data is drafted as usual
    _, _, drafted = record_trusted_draft(refusing, phantom_bytes(28), CALM)
    assert drafted is not None


def test_a_refused_job_says_why_through_the_api(settings: Settings) -> None:
    refusing = settings.model_copy(update={"refuse_ood": True})
    _, job_id, _ = record_trusted_draft(refusing, phantom_bytes(29), UNRELIABLE_CRITICAL)
    key = make_keys(settings)["uploader"]
    with TestClient(create_app(refusing)) as client:
        job = client.get(f"/v1/jobs/{job_id}", headers=auth(key)).json()
    assert job["state"] == "failed" and job["report_id"] is None
    assert "outside the model's training distribution" in job["error"]
    assert "Traceback" not in json.dumps(job)


def test_the_shipped_model_drafts_with_trust_signals_and_a_noise_image_is_refused(
    settings: Settings,
) -> None:
    """End to end through the embedded pool: a phantom study is drafted with its signals; with
    ECHOCXR_REFUSE_OOD an image of noise fails its job with the reason and gets no draft."""
    refusing = settings.model_copy(update={"refuse_ood": True})
    key = make_keys(settings)["radiologist"]
    with TestClient(create_app(refusing)) as client:
        phantom = upload(client, key, phantom_bytes(32))
        noise = upload(client, key, noise_bytes(33))
        drafted = wait_for_job(client, key, phantom["job"]["id"])
        refused = wait_for_job(client, key, noise["job"]["id"])
        assert drafted["state"] == "done", drafted["error"]
        (report,) = client.get(f"/v1/studies/{phantom['id']}/reports", headers=auth(key)).json()
        assert len(report["finding_probabilities"]) == 14
        assert report["out_of_distribution"] is False
        assert report["ood_score"] < report["ood_threshold"]
        assert isinstance(report["consistency_flags"], list)
        assert isinstance(report["critical_findings"], list)
        assert refused["state"] == "failed" and refused["report_id"] is None
        assert refused["error"].startswith(
            "the image lies outside the model's training distribution (score "
        )
        assert client.get(f"/v1/studies/{noise['id']}/reports", headers=auth(key)).json() == []
