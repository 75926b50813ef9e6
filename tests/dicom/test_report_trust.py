"""The draft's trust signals in each report file: report.json's keys, the SR's "Algorithm
assessment" section, the PDF's warning box and probability table, FHIR Observations; and no
trace of them (but report.json's null keys) for a draft without them."""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path

import pydicom
import pytest
from fhir.resources.R4B.diagnosticreport import DiagnosticReport

import dicom
from dicom.bundle import write_report_bundle
from dicom.draft import OOD_WARNING, TRUST_KEYS, DraftReport
from dicom.fhir import fhir_diagnostic_report
from dicom.pdf import write_encapsulated_pdf
from dicom.sr import write_sr
from model.trust import Trust
from tests.dicom.factories import dciodvfy_errors, pdf_text

pytestmark = pytest.mark.integration


def test_report_json_carries_the_five_keys_at_top_level(
    trusted_draft: DraftReport, trust: Trust, study: dicom.Study, tmp_path: Path
) -> None:
    files = write_report_bundle(trusted_draft, study, tmp_path / "out")
    summary = json.loads(files["json"].read_text())
    assert summary["finding_probabilities"] == trust.finding_probabilities
    assert summary["out_of_distribution"] is True and summary["ood_score"] == 7.5
    assert summary["ood_threshold"] == 3.25
    assert summary["critical_findings"] == ["Pneumothorax"]
    assert summary["consistency_flags"] == [
        {
            "observation": "Edema",
            "kind": "text-vs-head",
            "detail": "asserted in the text, probability 0.07",
        }
    ]
    assert Trust.from_json(summary) == trust  # the same document the model wrote


def test_without_trust_signals_the_keys_are_null_and_nothing_warns(
    draft: DraftReport, study: dicom.Study, tmp_path: Path
) -> None:
    files = write_report_bundle(draft, study, tmp_path / "out")
    summary = json.loads(files["json"].read_text())
    assert {key: summary[key] for key in TRUST_KEYS} == dict.fromkeys(TRUST_KEYS)
    assert draft.warnings() == [] and draft.probabilities == {}
    assert "WARNING" not in pdf_text(pydicom.dcmread(files["pdf"]))
    resource = json.loads(files["fhir"].read_text())
    assert "result" not in resource
    assert "Algorithm assessment" not in pydicom.dcmread(files["sr"]).to_json()


def test_the_warnings_say_what_is_wrong_most_serious_first(trusted_draft: DraftReport) -> None:
    ood, critical, inconsistent = trusted_draft.warnings()
    assert OOD_WARNING in ood and "score 7.50 > threshold 3.25" in ood
    assert critical.startswith("Suspected critical finding: Pneumothorax")
    assert inconsistent == "Inconsistent draft: Edema: asserted in the text, probability 0.07"
    assert list(trusted_draft.probabilities) == ["Pleural Effusion", "Pneumothorax", "Edema"]


def test_the_sr_holds_an_algorithm_assessment_and_stays_valid(
    trusted_draft: DraftReport, study: dicom.Study, tmp_path: Path, dciodvfy: str, dsrdump: str
) -> None:
    path = tmp_path / "sr.dcm"
    sr = write_sr(trusted_draft, study)
    sr.save_as(path, enforce_file_format=True)
    assert dciodvfy_errors(dciodvfy, path) == []
    assert sr.CompletionFlagDescription.startswith("NOT RELIABLE: image outside the model's")
    assert sr.SeriesDescription == "AI draft report (NOT RELIABLE)"
    tree = subprocess.run(
        [dsrdump, "+Pl", "+Pc", str(path)], capture_output=True, text=True, check=True
    ).stdout
    for line in (
        '<contains CONTAINER:(ASSESS,99ECHOCXR,"Algorithm assessment")',
        f'<contains TEXT:(WARN,99ECHOCXR,"Warning")="WARNING: the image lies {OOD_WARNING}',
        '<contains TEXT:(CRIT,99ECHOCXR,"Suspected critical finding")="Pneumothorax"',
        '<contains TEXT:(INCONS,99ECHOCXR,"Inconsistency")="Edema: asserted in the text',
        '<contains NUM:(OODSCORE,99ECHOCXR,"Out-of-distribution score")="7.5"',
        '(P-PLEURAL-EFFUSI,99ECHOCXR,"Probability of Pleural Effusion")="0.81"',
    ):
        assert line in tree, line
    # read before the text, as in every output
    assert tree.index("Algorithm assessment") < tree.index('"Findings"')


def test_the_pdf_boxes_the_warnings_and_lists_the_probabilities(
    trusted_draft: DraftReport, study: dicom.Study, tmp_path: Path, dciodvfy: str
) -> None:
    pdf = write_encapsulated_pdf(trusted_draft, study)
    path = tmp_path / "pdf.dcm"
    pdf.save_as(path, enforce_file_format=True)
    assert dciodvfy_errors(dciodvfy, path) == []
    text = pdf_text(pdf)
    flat = " ".join(text.split())
    assert f"WARNING: the image lies {OOD_WARNING}" in flat
    assert "Suspected critical finding: Pneumothorax" in flat
    assert "Inconsistent draft: Edema" in flat
    assert flat.index("WARNING") < flat.index("Findings")  # above the text
    assert "not reliable: the image is outside the training distribution" in flat
    assert "Pleural Effusion 81 %" in flat and "Edema 7 %" in flat


def test_fhir_carries_probabilities_and_flags_as_observations(
    trusted_draft: DraftReport, study: dicom.Study
) -> None:
    resource = fhir_diagnostic_report(trusted_draft, study)
    DiagnosticReport.model_validate(resource)
    contained = {item["id"]: item for item in resource["contained"]}  # type: ignore[index]
    references = [entry["reference"] for entry in resource["result"]]  # type: ignore[index]
    assert references == [
        "#assessment",
        "#probability-0",
        "#probability-1",
        "#probability-2",
    ]
    assessment = contained["assessment"]
    assert assessment["valueQuantity"]["value"] == 7.5
    assert assessment["referenceRange"][0]["high"]["value"] == 3.25
    notes = [note["text"] for note in assessment["note"]]
    assert notes == trusted_draft.warnings()
    pneumothorax = contained["probability-1"]
    assert pneumothorax["code"]["text"] == "Probability of Pneumothorax"
    assert pneumothorax["valueQuantity"]["value"] == 0.62
    assert pneumothorax["interpretation"][0]["coding"][0]["code"] == "AA"
    edema = contained["probability-2"]
    assert edema["note"] == [{"text": "Edema: asserted in the text, probability 0.07"}]
    text = base64.b64decode(resource["presentedForm"][0]["data"]).decode()  # type: ignore[index]
    assert text.startswith("FINDINGS:")  # the report's own text is left as written


def test_an_incomplete_trust_document_is_refused(draft: DraftReport) -> None:
    with pytest.raises(dicom.ReportInputError, match="lacks \\['ood_score'"):
        DraftReport(
            draft.findings,
            draft.impression,
            draft.algorithm,
            trust={"finding_probabilities": {}, "out_of_distribution": False},
        )
