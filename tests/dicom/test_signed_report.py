"""The signed version of a draft in all four files, and report.json's status fields."""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pydicom
import pytest
from fhir.resources.R4B.diagnosticreport import DiagnosticReport

import dicom
from dicom.bundle import write_report_bundle
from dicom.draft import DraftReport, Signature
from tests.dicom.factories import SIGNATURE, dciodvfy_errors, pdf_text

pytestmark = pytest.mark.integration

SIGNED_AT = SIGNATURE.signed_at


@pytest.fixture
def edited(draft: DraftReport) -> DraftReport:
    """The text the radiologist signed: the draft, corrected."""
    return DraftReport(
        draft.findings, "Small right pleural effusion. No pneumothorax.", draft.algorithm
    )


def _bundles(
    draft: DraftReport, edited: DraftReport, study: dicom.Study, folder: Path
) -> tuple[dict[str, Path], dict[str, Path]]:
    drafted = write_report_bundle(draft, study, folder / "draft")
    signed = write_report_bundle(edited, study, folder / "signed", signature=SIGNATURE)
    return drafted, signed


def test_report_json_states_the_draft_status_and_holds_the_whole_text(
    draft: DraftReport, study: dicom.Study, tmp_path: Path
) -> None:
    summary = json.loads(write_report_bundle(draft, study, tmp_path)["json"].read_text())
    assert summary["status"] == "preliminary"
    assert (summary["completion_flag"], summary["verification_flag"]) == ("PARTIAL", "UNVERIFIED")
    assert summary["preliminary_flag"] == "PRELIMINARY"
    assert summary["text"] == (
        "FINDINGS: The heart is normal in size. Small right pleural effusion.\n"
        "IMPRESSION: Small right pleural effusion."
    )
    assert "signature" not in summary


def test_an_impression_only_draft_has_only_its_impression_in_text(
    draft: DraftReport, study: dicom.Study, tmp_path: Path
) -> None:
    only = DraftReport("", "No acute disease.", draft.algorithm)
    summary = json.loads(write_report_bundle(only, study, tmp_path)["json"].read_text())
    assert summary["text"] == "IMPRESSION: No acute disease."


def test_details_cannot_overwrite_the_status(
    draft: DraftReport, study: dicom.Study, tmp_path: Path
) -> None:
    with pytest.raises(dicom.ReportInputError, match="status"):
        write_report_bundle(draft, study, tmp_path, details={"status": "final"})
    assert not tmp_path.joinpath("report.json").exists()


def test_the_signed_sr_is_complete_verified_and_cites_the_draft(
    draft: DraftReport,
    edited: DraftReport,
    study: dicom.Study,
    tmp_path: Path,
    dciodvfy: str,
    dsrdump: str,
) -> None:
    drafted, signed = _bundles(draft, edited, study, tmp_path)
    draft_sr, sr = pydicom.dcmread(drafted["sr"]), pydicom.dcmread(signed["sr"])
    assert dciodvfy_errors(dciodvfy, signed["sr"]) == []
    assert (sr.CompletionFlag, sr.VerificationFlag, sr.PreliminaryFlag) == (
        "COMPLETE",
        "VERIFIED",
        "FINAL",
    )
    (observer,) = sr.VerifyingObserverSequence
    assert (str(observer.VerifyingObserverName), observer.VerifyingOrganization) == (
        "Curie^Marie",
        "Saint Example Radiology",
    )
    assert observer.VerificationDateTime.startswith("20250301140200")
    assert observer.VerificationDateTime.endswith("+0100")
    predecessor = sr.PredecessorDocumentsSequence[0].ReferencedSeriesSequence[0]
    assert predecessor.SeriesInstanceUID == draft_sr.SeriesInstanceUID
    assert predecessor.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == draft_sr.SOPInstanceUID
    assert sr.SOPInstanceUID != draft_sr.SOPInstanceUID
    assert (sr.StudyInstanceUID, sr.PatientID) == (draft_sr.StudyInstanceUID, draft_sr.PatientID)
    tree = subprocess.run(
        [dsrdump, "+Pl", str(signed["sr"])], capture_output=True, text=True, check=True
    ).stdout
    for line in (
        "Completion Flag     : COMPLETE",
        "Verification Flag   : VERIFIED",
        "Verifying Observers : 2025-03-01 14:02:00 +01:00, Curie^Marie, Saint Example Radiology",
        '(,,"Person Observer Name")="Curie^Marie"',
        '(,,"Impression")="Small right pleural effusion. No pneumothorax."',
    ):
        assert line in tree


def test_the_signed_pdf_names_the_signer_and_drops_preliminary(
    draft: DraftReport, edited: DraftReport, study: dicom.Study, tmp_path: Path, dciodvfy: str
) -> None:
    _, signed = _bundles(draft, edited, study, tmp_path)
    assert dciodvfy_errors(dciodvfy, signed["pdf"]) == []
    pdf = pydicom.dcmread(signed["pdf"])
    text = pdf_text(pdf)
    signer = "SIGNED by Curie, Marie (Saint Example Radiology), 2025-03-01 14:02+01:00"
    assert signer in " ".join(text.split())  # the line may wrap
    assert "No pneumothorax." in text and "Patient\nTestpatient, Identifiable" in text
    assert "PRELIMINARY" not in text and "not verified" not in text
    assert pdf.DocumentTitle == "Chest radiograph report"


def test_the_signed_fhir_report_is_final_with_the_radiologist(
    draft: DraftReport, edited: DraftReport, study: dicom.Study, tmp_path: Path
) -> None:
    drafted, signed = _bundles(draft, edited, study, tmp_path)
    resource = json.loads(signed["fhir"].read_text())
    parsed = DiagnosticReport.model_validate(resource)
    assert parsed.status == "final"
    assert resource["issued"] == "2025-03-01T14:02:00+01:00"
    assert (
        resource["performer"] == resource["resultsInterpreter"] == [{"reference": "#radiologist"}]
    )
    contained = {item["id"]: item for item in resource["contained"]}
    assert contained["radiologist"]["name"][0] == {
        "text": "Curie, Marie",
        "family": "Curie",
        "given": ["Marie"],
    }
    assert contained["organization"]["name"] == "Saint Example Radiology"
    provenance = contained["signed-by"]
    (author,) = provenance["agent"]
    assert author["who"] == {"reference": "#radiologist"}
    assert author["type"]["coding"][0]["code"] == "author"
    (revised,) = provenance["entity"]
    draft_sr_uid = json.loads(drafted["json"].read_text())["sr_sop_instance_uid"]
    assert revised["role"] == "revision"
    assert revised["what"]["identifier"]["value"] == f"urn:oid:{draft_sr_uid}"
    assert revised["agent"][0]["who"] == {"reference": "#model"}
    assert resource["id"] != json.loads(drafted["fhir"].read_text())["id"]


def test_the_signed_report_json_says_who_signed_and_what_it_replaces(
    draft: DraftReport, edited: DraftReport, study: dicom.Study, tmp_path: Path
) -> None:
    drafted, signed = _bundles(draft, edited, study, tmp_path)
    summary = json.loads(signed["json"].read_text())
    assert (summary["status"], summary["completion_flag"], summary["verification_flag"]) == (
        "final",
        "COMPLETE",
        "VERIFIED",
    )
    assert summary["signature"] == {
        "name": "Curie^Marie",
        "organization": "Saint Example Radiology",
        "signed_at": "2025-03-01T14:02:00+01:00",
    }
    draft_summary = json.loads(drafted["json"].read_text())
    assert summary["predecessor_sr_sop_instance_uid"] == draft_summary["sr_sop_instance_uid"]
    assert summary["text"].endswith("IMPRESSION: Small right pleural effusion. No pneumothorax.")


def test_signing_again_is_a_new_instance_and_a_rerun_replaces(
    edited: DraftReport, study: dicom.Study, tmp_path: Path
) -> None:
    def uids(signature: Signature, folder: str) -> tuple[str, str]:
        files = write_report_bundle(edited, study, tmp_path / folder, signature=signature)
        summary = json.loads(files["json"].read_text())
        return summary["sr_sop_instance_uid"], summary["pdf_sop_instance_uid"]

    first = uids(SIGNATURE, "a")
    assert uids(SIGNATURE, "b") == first
    later = Signature(SIGNATURE.name, SIGNATURE.organization, SIGNED_AT + timedelta(hours=2))
    assert set(uids(later, "c")).isdisjoint(first)


@pytest.mark.parametrize(
    ("name", "organization", "signed_at", "field"),
    [
        ("Curie^Marie", "Saint Example Radiology", datetime(2025, 3, 1, 14, 2), "time zone"),
        ("^", "Saint Example Radiology", datetime.now(UTC), "must not be empty"),
        ("Curie^Marie", "X" * 65, datetime.now(UTC), "organization at most 64"),
        ("Curie\\Marie", "Saint Example Radiology", datetime.now(UTC), "person name"),
    ],
)
def test_invalid_signatures_are_refused_without_quoting_them(
    name: str, organization: str, signed_at: datetime, field: str
) -> None:
    with pytest.raises(dicom.ReportInputError, match=field) as caught:
        Signature(name, organization, signed_at)
    assert "Curie" not in str(caught.value)
