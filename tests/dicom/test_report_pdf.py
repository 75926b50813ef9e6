"""The printed report: its identifying header, status and model lines, read back with pypdf."""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest

import dicom
from dicom.deid import deidentify, reidentify_study
from dicom.draft import DraftReport
from dicom.pdf import write_encapsulated_pdf
from dicom.sr import write_sr
from tests.dicom.factories import (
    PATIENT_AND_STUDY_TYPE_2,
    PATIENT_ID,
    STUDY_UID,
    pdf_text,
    radiograph,
    save,
    without,
)

pytestmark = pytest.mark.unit
SALT = b"0123456789abcdef-test-salt"


def _study(ds: pydicom.Dataset, tmp_path: Path) -> dicom.Study:
    return dicom.read_study(save(ds, tmp_path / "source.dcm"))


def test_the_draft_pdf_carries_the_radiology_report_header(
    draft: DraftReport, tmp_path: Path
) -> None:
    text = pdf_text(write_encapsulated_pdf(draft, _study(radiograph(), tmp_path)))
    for expected in (
        "PRELIMINARY: AI draft chest radiograph report",
        "Machine-generated draft for radiologist review; not verified",
        "Patient\nTestpatient, Identifiable",
        f"Patient ID\n{PATIENT_ID}",
        "Birth date / sex\n1961-02-14 / F",
        "Study date and time\n2025-03-01 10:15:00",
        "Accession number\nACC-99812",
        "Exam\nXR CHEST PA; body part CHEST; view PA",
        "Referring physician\nReferrer, Doctor",
        "Findings\nThe heart is normal in size. Small right pleural effusion.",
        "Impression\nSmall right pleural effusion.",
        "Drafted by echocxr-test 0.0.1 (EchoCXR project); decoding: the model's default",
    ):
        assert expected in text


def test_the_pdf_names_the_decoding_that_wrote_the_draft(
    draft: DraftReport, tmp_path: Path
) -> None:
    decoded = DraftReport(
        draft.findings,
        draft.impression,
        dicom.AlgorithmIdentity(**{**draft.algorithm.__dict__, "decoding": "diffusion-onestep"}),
    )
    text = pdf_text(write_encapsulated_pdf(decoded, _study(radiograph(), tmp_path)))
    assert "decoding: diffusion-onestep; weights sha256 0123456789abcdef" in " ".join(text.split())


def test_a_header_without_patient_or_study_attributes_prints_not_recorded(
    draft: DraftReport, tmp_path: Path
) -> None:
    bare = without(radiograph(view=None), *PATIENT_AND_STUDY_TYPE_2, "StudyDescription")
    text = pdf_text(write_encapsulated_pdf(draft, _study(bare, tmp_path)))
    assert "Patient\nnot recorded" in text
    assert "Birth date / sex\nnot recorded / not recorded" in text
    assert "Exam\nbody part CHEST" in text


def test_the_pdf_of_a_deidentified_study_shows_its_pseudonyms_and_the_reidentified_the_originals(
    draft: DraftReport, tmp_path: Path
) -> None:
    source = radiograph()
    clean, entry = deidentify(source, uid_salt=SALT)
    seen_by_model = _study(clean, tmp_path)
    pseudonymous = pdf_text(write_encapsulated_pdf(draft, seen_by_model))
    assert "Testpatient" not in pseudonymous and PATIENT_ID not in pseudonymous
    assert "Patient\nnot recorded" in pseudonymous

    original = reidentify_study(seen_by_model, entry)
    pdf = write_encapsulated_pdf(draft, original)
    text = pdf_text(pdf)
    assert "Patient\nTestpatient, Identifiable" in text
    assert f"Patient ID\n{PATIENT_ID}" in text and "Accession number\nACC-99812" in text
    assert (pdf.StudyInstanceUID, pdf.PatientID) == (STUDY_UID, PATIENT_ID)
    sr = write_sr(draft, original)
    cited = sr.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0]
    assert cited.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID
    assert cited.SeriesInstanceUID == source.SeriesInstanceUID


def test_a_study_is_reidentified_only_with_its_own_map(tmp_path: Path) -> None:
    _, other_entry = deidentify(radiograph(study_uid="1.2.826.0.1.3680043.8.498.7"), uid_salt=SALT)
    clean, _ = deidentify(radiograph(), uid_salt=SALT)
    with pytest.raises(dicom.ReidentificationError, match=r"\(0020,000D\)"):
        reidentify_study(_study(clean, tmp_path), other_entry)


# (SpecificCharacterSet, PatientName, what the printed header shows); the page is read back with
# pypdf, which maps each drawn glyph to its character, so a black box or a '?' fails here
NAMES_AS_PRINTED = {
    "Czech": ("ISO_IR 192", "Dvořák^Jiří", "Dvořák, Jiří"),
    "Cyrillic": ("ISO_IR 144", "Иванов^Иван", "Иванов, Иван"),
    "Greek": ("ISO_IR 126", "Παπαδόπουλος^Γιώργος", "Παπαδόπουλος, Γιώργος"),
    "Japanese, three groups": (
        ["", "ISO 2022 IR 87"],
        "Yamada^Tarou=山田^太郎=やまだ^たろう",
        "Yamada, Tarou (山田 太郎; やまだ たろう)",
    ),
    "Japanese, ideographic only": (["", "ISO 2022 IR 87"], "=山田^太郎", "山田, 太郎"),
    "Korean": (
        ["", "ISO 2022 IR 149"],
        "Hong^Gildong=洪^吉洞=홍^길동",
        "Hong, Gildong (洪 吉洞; 홍 길동)",
    ),
}


@pytest.mark.parametrize("label", list(NAMES_AS_PRINTED))
def test_a_name_in_any_script_prints_as_written(
    label: str, draft: DraftReport, tmp_path: Path
) -> None:
    character_set, name, printed = NAMES_AS_PRINTED[label]
    source = radiograph(SpecificCharacterSet=character_set, PatientName=name)
    assert f"Patient\n{printed}\n" in pdf_text(
        write_encapsulated_pdf(draft, _study(source, tmp_path))
    )


def test_an_edited_report_prints_its_symbols_and_marks_what_no_font_draws(
    draft: DraftReport, tmp_path: Path
) -> None:
    edited = DraftReport(
        findings="Apical pneumothorax ≥ 2 cm, 30° rotation; 5 µm.",
        impression="Pneumothorax — call placed ก.",  # a Thai letter: no font here draws it
        algorithm=draft.algorithm,
    )
    text = pdf_text(write_encapsulated_pdf(edited, _study(radiograph(), tmp_path)))
    assert "Apical pneumothorax ≥ 2 cm, 30° rotation; 5 µm." in text
    assert "Pneumothorax — call placed \ufffd." in text
