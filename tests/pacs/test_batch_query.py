"""An archive drafted from a PACS query: QIDO-RS finds the studies of a date range and modality
in a real Orthanc, each chunk pulls its studies by WADO-RS, and the drafts stay in EchoCXR (an
archive run is a retrospective audit, not a reading: nothing is pushed back to the PACS)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pydicom
import pytest
from fastapi.testclient import TestClient

from service.main import create_app
from tests.pacs.conftest import reports_in_pacs, with_pacs
from tests.support.archives import phantom_archive
from tests.support.orthanc import OrthancServer
from tests.support.service import auth, wait_for_batch
from workers.config import Settings

pytestmark = pytest.mark.integration

DATES = ("20240105", "20240130", "20231231")  # the last one lies outside the queried month


@pytest.fixture
def api(base_settings: Settings, orthanc_peer: OrthancServer) -> Iterator[TestClient]:
    settings = with_pacs(base_settings, orthanc_peer).model_copy(update={"batch_chunk": 1})
    with TestClient(create_app(settings)) as client:
        yield client


def stored_studies(orthanc: OrthancServer, folder: Path) -> dict[str, tuple[str, str]]:
    """Three phantom studies stored in the PACS (its REST import keeps their compressed transfer
    syntaxes), one per date of ``DATES``: StudyInstanceUID → (StudyDate, Modality)."""
    found = {}
    for path, date in zip(phantom_archive(folder, len(DATES)), DATES, strict=True):
        ds = pydicom.dcmread(path)
        ds.StudyDate = date
        ds.save_as(path)
        httpx.post(f"{orthanc.url}/instances", content=path.read_bytes()).raise_for_status()
        found[str(ds.StudyInstanceUID)] = (date, str(ds.Modality))
    return found


def test_a_pacs_query_drafts_the_studies_it_finds_and_pushes_nothing_back(
    api: TestClient, keys: dict[str, str], orthanc_peer: OrthancServer, tmp_path: Path
) -> None:
    studies = stored_studies(orthanc_peer, tmp_path / "studies")
    wanted = {uid for uid, (date, kind) in studies.items() if date[:6] == "202401" and kind == "CR"}
    assert 0 < len(wanted) < len(studies)  # the date and the modality each leave a study out
    form = {"pacs_since": "20240101", "pacs_until": "20240131", "modality": "cr"}
    response = api.post("/v1/batches", data=form, headers=auth(keys["auditor"]))
    assert response.status_code == 201, response.text
    created = response.json()
    assert created["source_kind"] == "pacs_query" and created["total"] == len(wanted)

    batch = wait_for_batch(api, keys["auditor"], created["id"])
    why = [item["detail"] for item in batch["items"]]
    assert batch["state"] == "done" and batch["counts"]["done"] == len(wanted), why
    assert {item["study_uid"] for item in batch["items"]} == wanted
    assert all(item["findings"] for item in batch["items"])
    for uid in studies:
        held = reports_in_pacs(orthanc_peer, uid)
        assert not held["sr"] and not held["pdf"] and len(held["other"]) == 1


def test_a_query_that_finds_nothing_is_refused_leaving_no_batch(
    api: TestClient, keys: dict[str, str], orthanc_peer: OrthancServer
) -> None:
    form = {"pacs_since": "19500101", "pacs_until": "19500131"}
    response = api.post("/v1/batches", data=form, headers=auth(keys["admin"]))
    assert response.status_code == 422 and "holds no studies" in response.json()["detail"]
    assert api.get("/v1/batches", headers=auth(keys["admin"])).json() == []
