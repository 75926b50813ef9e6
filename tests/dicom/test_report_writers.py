"""SR, encapsulated PDF and FHIR drafts, checked with dciodvfy, dsrdump and fhir.resources."""

from __future__ import annotations

import json
import logging
import subprocess
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pydicom
import pytest
from fhir.resources.R4B.diagnosticreport import DiagnosticReport

import dicom
from dicom.bundle import REPORT_FILES, bundle_damage, write_report_bundle
from dicom.draft import AlgorithmIdentity, DraftReport
from dicom.fhir import fhir_diagnostic_report
from dicom.pdf import write_encapsulated_pdf
from dicom.sr import write_sr
from tests.dicom.factories import (
    PATIENT_ID,
    PATIENT_NAME,
    dciodvfy_errors,
    processing_equipment,
)

pytestmark = pytest.mark.integration


def test_sr_has_draft_flags_evidence_and_source_patient(
    draft: DraftReport, study: dicom.Study, tmp_path: Path, dciodvfy: str
) -> None:
    sr = write_sr(draft, study)
    path = tmp_path / "sr.dcm"
    sr.save_as(path, enforce_file_format=True)
    read = pydicom.dcmread(path)
    assert (read.CompletionFlag, read.VerificationFlag, read.PreliminaryFlag) == (
        "PARTIAL",
        "UNVERIFIED",
        "PRELIMINARY",
    )
    assert "draft" in read.CompletionFlagDescription.lower()
    assert read.SOPClassUID == pydicom.uid.EnhancedSRStorage
    assert str(read.PatientName) == PATIENT_NAME and read.PatientID == PATIENT_ID
    assert read.StudyInstanceUID == study.study_instance_uid
    assert read.AccessionNumber == "ACC-99812"
    evidence = read.CurrentRequestedProcedureEvidenceSequence[0]
    cited = evidence.ReferencedSeriesSequence[0].ReferencedSOPSequence[0]
    assert cited.ReferencedSOPInstanceUID == study.frontal_images[0].sop_instance_uid
    (equipment,) = [
        item
        for item in read.ContributingEquipmentSequence
        if item.get("DeviceUID") == draft.algorithm.device_uid
    ]
    assert equipment.ManufacturerModelName == "EchoCXR test model"
    assert equipment.PurposeOfReferenceCodeSequence[0].CodeValue == "109102"  # Processing Equipment
    assert dciodvfy_errors(dciodvfy, path) == []


def test_writing_the_sr_logs_no_identifier(
    draft: DraftReport, study: dicom.Study, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    write_sr(draft, study)
    image = study.frontal_images[0]
    for identifier in (study.study_instance_uid, image.sop_instance_uid, PATIENT_ID, PATIENT_NAME):
        assert identifier not in caplog.text


def test_dsrdump_renders_the_tid_2000_tree(
    draft: DraftReport, study: dicom.Study, tmp_path: Path, dsrdump: str
) -> None:
    path = tmp_path / "sr.dcm"
    write_sr(draft, study).save_as(path, enforce_file_format=True)
    tree = subprocess.run(
        [dsrdump, "+Pl", "+Pc", str(path)], capture_output=True, text=True, check=True
    )
    for line in (
        '<CONTAINER:(18748-4,LN,"Diagnostic Imaging Report")',
        '(121005,DCM,"Observer Type")=(121007,DCM,"Device")',
        '<contains CONTAINER:(59776-5,LN,"Findings")',
        '<contains TEXT:(121071,DCM,"Finding")="The heart is normal in size. Small right',
        '<contains CONTAINER:(19005-8,LN,"Impressions")',
        '(121049,DCM,"Language of Content Item and Descendants")',
    ):
        assert line in tree.stdout


def test_uids_are_deterministic_per_study_model_and_checkpoint(
    draft: DraftReport, study: dicom.Study, algorithm: AlgorithmIdentity
) -> None:
    first, again = write_sr(draft, study), write_sr(draft, study)
    assert first.SOPInstanceUID == again.SOPInstanceUID
    assert first.SeriesInstanceUID == again.SeriesInstanceUID
    retrained = AlgorithmIdentity(**{**algorithm.__dict__, "checkpoint_sha256": "f" * 64})
    other = write_sr(DraftReport(draft.findings, draft.impression, retrained), study)
    assert other.SOPInstanceUID != first.SOPInstanceUID


def test_other_decoding_of_the_same_weights_gets_its_own_uids_and_says_so(
    draft: DraftReport, study: dicom.Study, algorithm: AlgorithmIdentity
) -> None:
    """Other decoding options write other text with the same weights; one UID must not name
    both."""
    decoded = AlgorithmIdentity(**{**algorithm.__dict__, "decoding": "diffusion-multistep steps=2"})
    first = write_sr(draft, study)
    other = write_sr(DraftReport(draft.findings, draft.impression, decoded), study)
    assert other.SOPInstanceUID != first.SOPInstanceUID
    assert other.SeriesInstanceUID != first.SeriesInstanceUID
    described = processing_equipment(other).ContributionDescription
    assert described.endswith("; decoding diffusion-multistep steps=2")
    assert "decoding" not in processing_equipment(first).ContributionDescription


def test_a_study_that_grew_gets_new_objects_and_its_first_images_the_same_ones(
    draft: DraftReport, study: dicom.Study
) -> None:
    """One UID names one content: a PACS keeps the first of two instances sharing a UID, so the
    draft of a grown study must not reuse the first draft's UIDs; the signed version finds the
    draft it revises by restricting the study to what the draft cites."""
    [image] = study.frontal_images
    later = replace(image, sop_instance_uid=image.sop_instance_uid + ".2")
    grown = replace(study, frontal_images=[image, later])
    first, second = write_sr(draft, study), write_sr(draft, grown)
    assert first.SOPInstanceUID != second.SOPInstanceUID
    assert first.SeriesInstanceUID != second.SeriesInstanceUID
    assert write_encapsulated_pdf(draft, grown).SOPInstanceUID != (
        write_encapsulated_pdf(draft, study).SOPInstanceUID
    )
    assert dicom.cited_images(first) == {image.sop_instance_uid}
    as_drafted = grown.restricted_to(dicom.cited_images(first))
    assert write_sr(draft, as_drafted).SOPInstanceUID == first.SOPInstanceUID


def test_encapsulated_pdf_passes_dciodvfy(
    draft: DraftReport, study: dicom.Study, tmp_path: Path, dciodvfy: str
) -> None:
    pdf = write_encapsulated_pdf(draft, study)
    path = tmp_path / "pdf.dcm"
    pdf.save_as(path, enforce_file_format=True)
    read = pydicom.dcmread(path)
    assert read.Modality == "DOC" and read.MIMETypeOfEncapsulatedDocument == "application/pdf"
    assert bytes(read.EncapsulatedDocument).startswith(b"%PDF-")
    assert str(read.PatientName) == PATIENT_NAME
    assert dciodvfy_errors(dciodvfy, path) == []


def test_fhir_report_is_partial_and_names_the_model(draft: DraftReport, study: dicom.Study) -> None:
    resource = fhir_diagnostic_report(draft, study)
    parsed = DiagnosticReport.model_validate(resource)
    assert parsed.status == "partial"
    assert parsed.conclusion == draft.impression
    assert parsed.imagingStudy and parsed.contained
    identifier = parsed.imagingStudy[0].identifier
    assert identifier and identifier.value == f"urn:oid:{study.study_instance_uid}"
    kinds = {item.get_resource_type() for item in parsed.contained}
    assert kinds == {"Device", "Provenance"}


def test_bundle_writes_four_files_and_leaves_no_temporaries(
    draft: DraftReport, study: dicom.Study, tmp_path: Path
) -> None:
    written = write_report_bundle(draft, study, tmp_path / "out", details={"engine": "ar"})
    assert {p.name for p in written.values()} == set(REPORT_FILES.values())
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(REPORT_FILES.values())
    summary = json.loads(written["json"].read_text())
    assert summary["findings"] == draft.findings
    assert summary["engine"] == "ar"  # details go into report.json only
    assert all(path.stat().st_mode & 0o044 for path in written.values())  # not owner-only
    assert pydicom.dcmread(written["sr"]).SOPInstanceUID == summary["sr_sop_instance_uid"]


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _zero(path: Path) -> None:
    path.write_bytes(b"")


@pytest.mark.parametrize(
    ("damage", "name", "why"),
    [
        (Path.unlink, "report.pdf.dcm", "report.pdf.dcm is missing"),
        (_zero, "report.sr.dcm", "report.sr.dcm is empty"),
        (_truncate, "report.json", "does not parse"),
        (_truncate, "report.fhir.json", "does not parse"),
        (_truncate, "report.sr.dcm", "report.sr.dcm is not the file report.json lists"),
        (_truncate, "report.pdf.dcm", "report.pdf.dcm"),
    ],
)
def test_a_damaged_bundle_is_told_from_a_whole_one(
    draft: DraftReport,
    study: dicom.Study,
    tmp_path: Path,
    damage: Callable[[Path], None],
    name: str,
    why: str,
) -> None:
    """What a full disk or a cut-off copy leaves is not a draft: an archive drafts it again."""
    write_report_bundle(draft, study, tmp_path)
    assert bundle_damage(tmp_path) == ""
    damage(tmp_path / name)
    assert why in bundle_damage(tmp_path)


def test_a_folder_mixing_two_drafts_is_not_whole(
    draft: DraftReport, study: dicom.Study, tmp_path: Path
) -> None:
    write_report_bundle(draft, study, tmp_path / "first")
    written = write_report_bundle(draft, study, tmp_path / "second", timings={"model_s": 1.5})
    (tmp_path / "second" / "report.sr.dcm").replace(tmp_path / "first" / "report.sr.dcm")
    assert "report.sr.dcm is not the file report.json lists" in bundle_damage(tmp_path / "first")
    timings = json.loads(written["json"].read_text())["timings"]
    assert timings["model_s"] == 1.5 and timings["write_s"] > 0


def test_invalid_drafts_are_refused(algorithm: AlgorithmIdentity) -> None:
    with pytest.raises(dicom.ReportInputError, match="both are empty"):
        DraftReport(findings=" ", impression="", algorithm=algorithm)
    with pytest.raises(dicom.ReportInputError, match="checkpoint_sha256"):
        AlgorithmIdentity(**{**algorithm.__dict__, "checkpoint_sha256": "abc"})
    with pytest.raises(dicom.ReportInputError, match="decoding must be printable"):
        AlgorithmIdentity(**{**algorithm.__dict__, "decoding": "ar\x1b[31m"})
