"""STOW-RS the draft SR and PDF into a real Orthanc, then find and read them back."""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest

import dicom
from dicom.dicomweb import DicomWebClient
from dicom.draft import DraftReport
from dicom.pdf import write_encapsulated_pdf
from dicom.sr import write_sr
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
