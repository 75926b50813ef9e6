"""``echocxr audit`` end to end through the command line, including every bad-input path."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from clinical_eval.cli import audit
from clinical_eval.observations import OBSERVATIONS

pytestmark = pytest.mark.e2e

FAST = ["--metrics", "labels,bleu,rouge_l", "--resamples", "200"]


def run(*args: str) -> tuple[int, str]:
    app = typer.Typer()
    app.command()(audit)
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


PAIRS = [
    {
        "study_id": "a",
        "generated": "Small left pleural effusion.",
        "reference": "Small left pleural effusion.",
    },
    {"study_id": "b", "generated": "No pneumothorax.", "reference": "No pneumothorax."},
    {"study_id": "c", "generated": "Mild cardiomegaly.", "reference": "Right pneumothorax."},
]


def test_audit_writes_html_and_json_with_the_expected_numbers(tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "pairs.jsonl", PAIRS)
    code, output = run("--input", str(source), "--out", str(tmp_path / "out"), *FAST)
    assert code == 0, output
    numbers = json.loads((tmp_path / "out" / "audit.json").read_text())
    # Positives at unc0: drafts {a: PE, b: No Finding, c: CM}; refs {a: PE, b: No Finding, c: PTX}
    # -> TP 2, FP 1, FN 1 -> micro F1 = 4/6.
    assert numbers["label_f1"]["chexpert_rule_f1_micro14_unc0"] == pytest.approx(4 / 6)
    assert numbers["worst_study_ids"][0] == "c"
    assert numbers["samples"][2]["label_disagreements"] == {
        "Cardiomegaly": [None, 1],
        "Pneumothorax": [1, None],
    }
    assert numbers["confusion"]["Pleural Effusion"][0][0] == 1
    page = (tmp_path / "out" / "audit.html").read_text()
    assert page.count("data:image/png;base64,") == 3
    assert "<script" not in page and "http" not in page.split("</style>")[1]


def test_ground_truth_mode_uses_label_columns(tmp_path: Path) -> None:
    path = tmp_path / "manifest.csv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, ["study_id", "generated", *OBSERVATIONS])
        writer.writeheader()
        writer.writerow(
            {"study_id": "p1", "generated": "Small right effusion.", "Pleural Effusion": "1"}
        )
        writer.writerow({"study_id": "p2", "generated": "Lungs are clear.", "No Finding": "1"})
    code, output = run("--input", str(path), "--out", str(tmp_path / "out"), *FAST)
    assert code == 0, output
    numbers = json.loads((tmp_path / "out" / "audit.json").read_text())
    assert numbers["mode"] == "ground_truth_labels"
    assert numbers["label_f1"]["chexpert_rule_f1_micro14_unc0"] == 1.0


def test_two_report_sets_are_joined_on_study_id(tmp_path: Path) -> None:
    drafts = write_jsonl(
        tmp_path / "d.jsonl",
        [{"study_id": "x", "text": "No effusion."}, {"study_id": "y", "text": "Effusion."}],
    )
    signed = write_jsonl(
        tmp_path / "s.jsonl",
        [{"study_id": "y", "text": "Effusion."}, {"study_id": "x", "text": "No effusion."}],
    )
    code, output = run(
        "--generated",
        str(drafts),
        "--reference",
        str(signed),
        "--out",
        str(tmp_path / "out"),
        *FAST,
    )
    assert code == 0, output
    numbers = json.loads((tmp_path / "out" / "audit.json").read_text())
    assert numbers["label_f1"]["chexpert_rule_f1_micro14_unc0"] == 1.0


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b'{"study_id": "a", "generated": "x"}\n', "lacks column(s) ['reference']"),
        (
            b'{"study_id": "a", "generated": "x", "reference": "y"}\n'
            b'{"study_id": "b", "generated": "  ", "reference": "y"}\n',
            "empty or non-text 'generated' in data rows 2",
        ),
        (
            b'{"study_id": "a", "generated": "x", "reference": "y"}\n'
            b'{"study_id": "a", "generated": "x", "reference": "y"}\n',
            "duplicate study_id in data rows 1, 2",
        ),
        (b'{"study_id": "a", "generated": "caf\xe9", "reference": "y"}\n', "is not UTF-8"),
        (b'{"study_id": "a"\n', "lines 1 are not JSON objects"),
        (b"", "has no data rows"),
        (b'{"study_id": "a", "generated": "x", "Edema": 1}\n', "has some label columns but lacks"),
    ],
)
def test_bad_input_fails_cleanly_without_output(
    tmp_path: Path, content: bytes, message: str
) -> None:
    source = tmp_path / "bad.jsonl"
    source.write_bytes(content)
    out = tmp_path / "out"
    code, output = run("--input", str(source), "--out", str(out), *FAST)
    assert code == 2
    assert message in output
    assert "Traceback" not in output
    assert not out.exists()


def test_mismatched_ids_are_listed(tmp_path: Path) -> None:
    drafts = write_jsonl(
        tmp_path / "d.jsonl", [{"study_id": "x", "text": "a"}, {"study_id": "z", "text": "b"}]
    )
    signed = write_jsonl(tmp_path / "s.jsonl", [{"study_id": "x", "text": "a"}])
    code, output = run(
        "--generated", str(drafts), "--reference", str(signed), "--out", str(tmp_path / "o")
    )
    assert code == 2
    assert "d.jsonl rows 2 have no reference" in output


def test_bad_label_values_in_a_manifest_are_listed(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    header = ",".join(["study_id", "generated", *OBSERVATIONS])
    path.write_text(header + "\np1,Effusion." + ",yes" + "," * 13 + "\n", encoding="utf-8")
    code, output = run("--input", str(path), "--out", str(tmp_path / "o"))
    assert code == 2
    assert "label values other than 1, 0, -1 or blank in data rows 1" in output


def test_confidence_columns_give_a_calibration_section(tmp_path: Path) -> None:
    rows = []
    for i in range(20):
        positive = i % 2 == 0
        rows.append(
            {
                "study_id": f"s{i}",
                "generated": "Small effusion." if positive else "Clear.",
                **dict.fromkeys(OBSERVATIONS),
                "Pleural Effusion": 1 if positive else 0,
                "confidence:Pleural Effusion": 0.9 if positive else 0.3,
            }
        )
    source = write_jsonl(tmp_path / "m.jsonl", rows)
    code, output = run("--input", str(source), "--out", str(tmp_path / "out"), *FAST)
    assert code == 0, output
    calibration = json.loads((tmp_path / "out" / "audit.json").read_text())["calibration"]
    # Half the studies at 0.9 confidence, all positive (gap 0.1); half at 0.3, none (gap 0.3).
    assert calibration["Pleural Effusion"]["ece"] == pytest.approx(0.2)
    assert "Calibration of per-finding confidence" in (tmp_path / "out" / "audit.html").read_text()


def test_out_of_range_confidence_is_listed(tmp_path: Path) -> None:
    rows = [{"study_id": "a", "generated": "x", "reference": "y", "confidence:Edema": 1.5}]
    code, output = run(
        "--input", str(write_jsonl(tmp_path / "m.jsonl", rows)), "--out", str(tmp_path / "o")
    )
    assert code == 2
    assert "confidence values must be numbers in [0, 1]; data rows 1" in output


def write_manifest(folder: Path) -> Path:
    """A manifest shaped like model/data/phantom's: ids, split, 14 labels, report paths."""
    (folder / "reports").mkdir()
    rows = [
        ("p3", "train", {"Edema": "1"}, "Pulmonary edema."),
        ("p1", "test", {"Pleural Effusion": "1"}, "Small left pleural effusion."),
        ("p2", "test", {"No Finding": "1"}, "Lungs are clear."),
    ]
    path = folder / "manifest.csv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, ["study_id", "split", *OBSERVATIONS, "report_path"])
        writer.writeheader()
        for study_id, split, labels, report in rows:
            (folder / "reports" / f"{study_id}.txt").write_text(report, encoding="utf-8")
            writer.writerow(
                {
                    "study_id": study_id,
                    "split": split,
                    **labels,
                    "report_path": f"reports/{study_id}.txt",
                }
            )
    return path


def test_phantom_manifest_split_against_drafts(tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path)
    drafts = write_jsonl(
        tmp_path / "drafts.jsonl",
        [
            {"study_id": "p2", "text": "Small right pleural effusion."},
            {"study_id": "p1", "text": "Small left pleural effusion."},
        ],
    )
    code, output = run(
        "--manifest",
        str(manifest),
        "--generated",
        str(drafts),
        "--split",
        "test",
        "--out",
        str(tmp_path / "out"),
        *FAST,
    )
    assert code == 0, output
    numbers = json.loads((tmp_path / "out" / "audit.json").read_text())
    assert numbers["mode"] == "ground_truth_labels"
    assert numbers["n_studies"] == 2
    # Positives: drafts PE, PE; truth PE, No Finding -> TP 1, FP 1, FN 1 -> micro F1 = 1/2.
    assert numbers["label_f1"]["chexpert_rule_f1_micro14_unc0"] == pytest.approx(0.5)
    assert numbers["language"]["bleu1"] > 0


def test_phantom_manifest_without_a_draft_for_a_study_is_refused(tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path)
    drafts = write_jsonl(tmp_path / "drafts.jsonl", [{"study_id": "p1", "text": "Effusion."}])
    code, output = run(
        "--manifest",
        str(manifest),
        "--generated",
        str(drafts),
        "--split",
        "test",
        "--out",
        str(tmp_path / "out"),
    )
    assert code == 2
    assert "manifest.csv rows 3 have no draft" in output  # file row of p2, after the train row
    assert not (tmp_path / "out").exists()
