"""``echocxr audit --generated FOLDER``: drafts folders as the drafting commands leave them.

The folders here are written by hand in the shape ``echocxr report-archive`` gives (one
sub-folder per entry with ``report.json``, and ``archive.csv``), to reach the cases a real run
seldom gives (failed and damaged drafts, clashing UIDs); ``test_audit_chain`` runs the real
commands.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from clinical_eval.audit_drafts import study_id_of
from clinical_eval.observations import OBSERVATIONS
from tests.clinical_eval.test_audit import run

pytestmark = pytest.mark.e2e


def write_report(folder: Path, findings: str, impression: str, uid: str, **extra: str) -> None:
    """A report.json with the fields ``dicom.write_report_bundle`` writes that the audit reads."""
    folder.mkdir(parents=True)
    document = {"findings": findings, "impression": impression, "study_instance_uid": uid}
    (folder / "report.json").write_text(json.dumps({**document, **extra}), encoding="utf-8")


def write_archive_csv(folder: Path, rows: list[tuple[str, str]]) -> None:
    lines = ["entry,status,detail"] + [f"{entry},{status}," for entry, status in rows]
    (folder / "archive.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")


def write_truth(path: Path, rows: list[dict[str, str]], uids: bool = False) -> Path:
    """A manifest shaped like the phantom's: ids and the 14 labels (optionally the UIDs)."""
    fields = ["study_id", *(["StudyInstanceUID"] if uids else []), *OBSERVATIONS]
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return path


TRUTH = [
    {"study_id": "S1", "StudyInstanceUID": "1.2.3.1", "Pleural Effusion": "1"},
    {"study_id": "S2", "StudyInstanceUID": "1.2.3.2", "No Finding": "1"},
    {"study_id": "S3", "StudyInstanceUID": "1.2.3.3", "Pneumothorax": "1"},
]


def audit_folder(tmp_path: Path, drafts: Path, manifest: Path) -> tuple[int, str, dict]:
    out = tmp_path / "audit"
    code, output = run("--generated", str(drafts), "--manifest", str(manifest), "--out", str(out))
    numbers = json.loads((out / "audit.json").read_text()) if code == 0 else {}
    return code, output, numbers


def test_archive_folder_is_matched_by_entry_name_and_missing_drafts_are_listed(
    tmp_path: Path,
) -> None:
    drafts = tmp_path / "drafts"
    write_report(drafts / "S1.dcm", "Small left pleural effusion.", "Effusion.", "1.2.3.1")
    write_report(drafts / "S2.dcm", "Lungs are clear.", "Normal.", "1.2.3.2")
    write_report(drafts / "S9.dcm", "Lungs are clear.", "Normal.", "1.2.3.9")
    write_archive_csv(
        drafts,
        [("S1.dcm", "drafted"), ("S2.dcm", "drafted"), ("S3.dcm", "failed"), ("S9.dcm", "drafted")],
    )
    manifest = write_truth(tmp_path / "manifest.csv", TRUTH)  # no UID column: names decide
    code, output, numbers = audit_folder(tmp_path, drafts, manifest)
    assert code == 0, output
    assert numbers["missing_drafts"] == {"S3": "report-archive failed on it (see archive.csv)"}
    assert numbers["drafts_left_out"] == {"S9.dcm": "not among the audited studies"}
    # S1 PE and S2 No Finding found; S3's pneumothorax missed: TP 2, FN 1 -> micro F1 = 4/5.
    assert numbers["label_f1"]["chexpert_rule_f1_micro14_unc0"] == pytest.approx(0.8)
    assert "S3" in output and "audited as empty reports" in output


def test_an_interrupted_archive_without_archive_csv_is_audited(tmp_path: Path) -> None:
    drafts = tmp_path / "drafts"
    write_report(drafts / "S1", "Small left pleural effusion.", "Effusion.", "1.2.3.1")
    (drafts / "audit-old").mkdir()  # a folder without report.json is not a draft
    code, output, numbers = audit_folder(
        tmp_path, drafts, write_truth(tmp_path / "m.csv", TRUTH[:2])
    )
    assert code == 0, output
    assert numbers["n_drafted"] == 1
    assert numbers["missing_drafts"] == {"S2": "no draft found"}
    assert numbers["drafts_left_out"] == {}


def test_a_damaged_report_json_is_a_missing_draft_that_says_why(tmp_path: Path) -> None:
    drafts = tmp_path / "drafts"
    write_report(drafts / "S1", "Effusion.", "Effusion.", "1.2.3.1")
    (drafts / "S2").mkdir()
    (drafts / "S2" / "report.json").write_bytes(b'{"findings": "Lungs are cl')
    code, output, numbers = audit_folder(
        tmp_path, drafts, write_truth(tmp_path / "m.csv", TRUTH[:2])
    )
    assert code == 0, output
    assert numbers["missing_drafts"] == {"S2": "report.json is not UTF-8 JSON (damaged?)"}


def test_the_text_field_is_scored_when_report_json_has_one(tmp_path: Path) -> None:
    drafts = tmp_path / "drafts"
    write_report(
        drafts / "S1", "Lungs are clear.", "Normal.", "1.2.3.1", text="Small pleural effusion."
    )
    code, output, numbers = audit_folder(
        tmp_path, drafts, write_truth(tmp_path / "m.csv", TRUTH[:1])
    )
    assert code == 0, output
    assert numbers["label_f1"]["chexpert_rule_f1_micro14_unc0"] == 1.0


def test_study_instance_uid_wins_over_the_folder_name(tmp_path: Path) -> None:
    drafts = tmp_path / "drafts"
    # Folders named after the wrong studies; their report.json say which study each is.
    write_report(drafts / "S2", "Small left pleural effusion.", "Effusion.", "1.2.3.1")
    write_report(drafts / "S1", "Lungs are clear.", "Normal.", "1.2.3.2")
    write_report(drafts / "S3", "Lungs are clear.", "Normal.", "1.2.3.99")
    manifest = write_truth(tmp_path / "m.csv", TRUTH, uids=True)
    code, output, numbers = audit_folder(tmp_path, drafts, manifest)
    assert code == 0, output
    assert numbers["label_f1"]["chexpert_rule_f1_micro14_unc0"] == pytest.approx(0.8)
    assert numbers["missing_drafts"] == {"S3": "no draft found"}
    assert numbers["drafts_left_out"] == {
        "S3": "named like study S3, but of another StudyInstanceUID"
    }


def test_a_single_report_folder_is_one_draft(tmp_path: Path) -> None:
    single = tmp_path / "report"  # `echocxr report`'s default --out: only the UID can match it
    write_report(single, "Small left pleural effusion.", "Effusion.", "1.2.3.1")
    manifest = write_truth(tmp_path / "m.csv", TRUTH, uids=True)
    code, output, numbers = audit_folder(tmp_path, single, manifest)
    assert code == 0, output
    assert numbers["n_drafted"] == 1
    assert sorted(numbers["missing_drafts"]) == ["S2", "S3"]


def test_two_drafts_of_one_study_are_refused_naming_both(tmp_path: Path) -> None:
    drafts = tmp_path / "drafts"
    write_report(drafts / "S1.dcm", "Effusion.", "Effusion.", "1.2.3.1")
    write_report(drafts / "S1.zip", "Effusion.", "Effusion.", "1.2.3.1")
    code, output, _ = audit_folder(tmp_path, drafts, write_truth(tmp_path / "m.csv", TRUTH))
    assert code == 2
    assert "study S1 has two drafts, S1.dcm and S1.zip" in output


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda folder: folder.mkdir(), "holds no drafts: give the --out folder of"),
        (
            lambda folder: write_report(folder / "X7", "Effusion.", "Effusion.", "9.9"),
            "none of the 2 studies of m.csv has a draft (e.g. study S1: no draft found)",
        ),
    ],
)
def test_folders_without_usable_drafts_are_refused_clearly(
    tmp_path: Path, make: object, message: str
) -> None:
    drafts = tmp_path / "drafts"
    make(drafts)  # type: ignore[operator]
    code, output, _ = audit_folder(tmp_path, drafts, write_truth(tmp_path / "m.csv", TRUTH[:2]))
    assert code == 2
    assert message in output
    assert "Traceback" not in output
    assert not (tmp_path / "audit").exists()


@pytest.mark.parametrize(
    ("name", "study"),
    [
        ("S0001.dcm", "S0001"),
        ("S0001.DCM", "S0001"),
        ("S0001.tar.gz", "S0001"),
        ("1.2.840.10008.dcm", "1.2.840.10008"),
        ("1.2.840.10008", "1.2.840.10008"),
        (".dcm", ".dcm"),
    ],
)
def test_entry_suffixes_come_off_study_ids(name: str, study: str) -> None:
    assert study_id_of(name) == study
