"""STOW-RS the draft SR and PDF into a real Orthanc, then find and read them back."""

from __future__ import annotations

import io
from pathlib import Path

import pydicom
import pytest

import dicom
from dicom.dicomweb import DicomWebClient
from dicom.draft import DraftReport
from dicom.pdf import write_encapsulated_pdf
from dicom.sr import write_sr
from tests.support.faults import faulty_proxy
from tests.support.orthanc import OrthancServer

pytestmark = pytest.mark.integration


def test_sr_round_trips_through_orthanc_without_duplicates(
    orthanc: OrthancServer, frontal_file: Path, draft: DraftReport
) -> None:
    study = dicom.read_study(frontal_file)
    sr, pdf = write_sr(draft, study), write_encapsulated_pdf(draft, study)
    with DicomWebClient(orthanc.dicomweb_url) as client:
        client.store([pydicom.dcmread(frontal_file), sr, pdf])
        client.store([write_sr(draft, study)])  # a re-run replaces: same UIDs
        found = client.search_instances(study.study_instance_uid)
        back = client.retrieve_instance(
            study.study_instance_uid, str(sr.SeriesInstanceUID), str(sr.SOPInstanceUID)
        )
    assert sorted(str(i.SOPInstanceUID) for i in found) == sorted(
        [study.frontal_images[0].sop_instance_uid, str(sr.SOPInstanceUID), str(pdf.SOPInstanceUID)]
    )
    assert back.VerificationFlag == "UNVERIFIED" and back.CompletionFlag == "PARTIAL"
    assert back.PatientID == study.frontal_images[0].dataset.PatientID
    patients = orthanc.get_json("/patients")
    assert isinstance(patients, list) and len(patients) == 1  # filed under the source patient


def test_unreachable_server_is_a_dicomweb_error(draft: DraftReport, frontal_file: Path) -> None:
    sr = write_sr(draft, dicom.read_study(frontal_file))
    with (
        DicomWebClient("http://127.0.0.1:9/dicom-web", timeout_s=2) as client,
        pytest.raises(dicom.DicomWebError, match="reachable"),
    ):
        client.store([sr])


def test_a_server_refusing_instances_as_stored_is_asked_for_its_default(
    orthanc: OrthancServer, frontal_file: Path
) -> None:
    source = pydicom.dcmread(frontal_file)
    with DicomWebClient(orthanc.dicomweb_url) as client:
        client.store([source])
    study_uid, series_uid = str(source.StudyInstanceUID), str(source.SeriesInstanceUID)
    with faulty_proxy(orthanc.url, "no-wildcard") as proxy:
        with DicomWebClient(f"{proxy.url}/dicom-web") as client:
            parts = client.retrieve_series(study_uid, series_uid)
        assert proxy.requests == 2  # refused with 406, then asked without the wildcard
    (only,) = parts
    assert pydicom.dcmread(io.BytesIO(only)).SOPInstanceUID == source.SOPInstanceUID


def test_a_missing_series_is_an_error_with_its_status(orthanc: OrthancServer) -> None:
    with (
        DicomWebClient(orthanc.dicomweb_url) as client,
        pytest.raises(dicom.DicomWebError, match="HTTP 404") as raised,
    ):
        client.retrieve_series("1.2.3.4", "1.2.3.4.5")
    assert raised.value.status_code == 404  # not retried: only 406 asks again
