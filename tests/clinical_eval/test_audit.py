"""``echocxr audit`` end to end through the command line, including every bad-input path."""

from __future__ import annotations

import csv
import json
import os
import stat
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from clinical_eval.audit import CLINICAL_WEIGHT, run_audit
from clinical_eval.audit_input import AuditInput
from clinical_eval.cli import audit
from clinical_eval.errors import MetricInputError
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
            b'{"study_id": "b", "generated": 5, "reference": "y"}\n',
            "'generated' is not text for studies b",
        ),
        (
            b'{"study_id": "a", "generated": "x", "reference": "y"}\n'
            b'{"study_id": "b", "generated": "x", "reference": " "}\n',
            "empty 'reference' for studies b",
        ),
        (
            b'{"study_id": "a", "generated": "x", "reference": "y"}\n'
            b'{"study_id": "a", "generated": "x", "reference": "y"}\n',
            "study_id repeated for studies a",
        ),
        (
            b'{"study_id": "a", "generated": "x", "reference": "y"}\n'
            b'{"generated": "x", "reference": "y"}\n',
            "data rows 2 have no study_id",
        ),
        (
            b'{"study_id": "a", "generated": "", "reference": "y"}\n',
            "none of the 1 studies of bad.jsonl has a draft (e.g. study a: empty draft text)",
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


def test_drafts_of_other_studies_are_left_out_and_listed(tmp_path: Path) -> None:
    drafts = write_jsonl(
        tmp_path / "d.jsonl", [{"study_id": "x", "text": "a"}, {"study_id": "z", "text": "b"}]
    )
    signed = write_jsonl(tmp_path / "s.jsonl", [{"study_id": "x", "text": "a"}])
    code, output = run(
        "--generated", str(drafts), "--reference", str(signed), "--out", str(tmp_path / "o"), *FAST
    )
    assert code == 0, output
    assert "1 draft(s) of no audited study left out: z" in output
    numbers = json.loads((tmp_path / "o" / "audit.json").read_text())
    assert numbers["drafts_left_out"] == {"z": "not among the audited studies"}
    assert [row["study_id"] for row in numbers["samples"]] == ["x"]


def test_no_draft_of_any_study_is_refused_naming_one(tmp_path: Path) -> None:
    drafts = write_jsonl(tmp_path / "d.jsonl", [{"study_id": "z", "text": "b"}])
    signed = write_jsonl(tmp_path / "s.jsonl", [{"study_id": "x", "text": "a"}])
    code, output = run(
        "--generated", str(drafts), "--reference", str(signed), "--out", str(tmp_path / "o")
    )
    assert code == 2
    assert "none of the 1 studies of s.jsonl has a draft (e.g. study x: no draft found)" in output
    assert not (tmp_path / "o").exists()


def test_bad_label_values_in_a_manifest_are_listed(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    header = ",".join(["study_id", "generated", *OBSERVATIONS])
    path.write_text(header + "\np1,Effusion." + ",yes" + "," * 13 + "\n", encoding="utf-8")
    code, output = run("--input", str(path), "--out", str(tmp_path / "o"))
    assert code == 2
    assert "label values other than 1, 0, -1 or blank for studies p1" in output


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
    assert "confidence values must be numbers in [0, 1]; studies a" in output


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


def test_a_study_without_a_draft_is_audited_as_an_empty_report(tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path)
    drafts = write_jsonl(
        tmp_path / "drafts.jsonl",
        [
            {"study_id": "p1", "text": "Small left pleural effusion."},
            {"study_id": "p2", "text": ""},
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
    assert "1 of 2 studies have no draft and are audited as empty reports: p2" in output
    numbers = json.loads((tmp_path / "out" / "audit.json").read_text())
    assert (numbers["n_studies"], numbers["n_drafted"]) == (2, 1)
    assert numbers["missing_drafts"] == {"p2": "empty draft text"}
    # Positives: draft PE for p1, nothing for p2; truth PE, No Finding -> TP 1, FN 1 -> 2/3.
    assert numbers["label_f1"]["chexpert_rule_f1_micro14_unc0"] == pytest.approx(2 / 3)
    assert numbers["language"]["rouge_l"] == pytest.approx(1.0)  # p1 only, drafted verbatim
    assert numbers["samples"][1]["draft"] == "missing"
    assert numbers["samples"][1]["rouge_l"] is None
    assert numbers["worst_study_ids"] == ["p1"]
    assert "Studies without a draft (1)" in (tmp_path / "out" / "audit.html").read_text()


NORMAL_REFERENCE = "No pneumothorax. No pleural effusion. No focal consolidation."


def test_worst_studies_rank_f1_changing_errors_then_critical_ones(tmp_path: Path) -> None:
    """Normal studies drafted correctly ("the lungs are clear" against three negatives) have the
    most raw label disagreements; they must rank below a false pneumothorax and a false
    cardiomegaly, and the pneumothorax, being critical, above the cardiomegaly."""
    normals = [
        {"study_id": f"n{i}", "generated": "The lungs are clear.", "reference": NORMAL_REFERENCE}
        for i in range(3)
    ]
    errors = [
        {"study_id": "cm", "generated": "Mild cardiomegaly.", "reference": "Normal heart size."},
        {
            "study_id": "ptx",
            "generated": "Small right pneumothorax.",
            "reference": "No pneumothorax.",
        },
    ]
    source = write_jsonl(tmp_path / "pairs.jsonl", normals + errors)
    code, output = run("--input", str(source), "--out", str(tmp_path / "out"), *FAST)
    assert code == 0, output
    numbers = json.loads((tmp_path / "out" / "audit.json").read_text())
    assert numbers["worst_study_ids"][:2] == ["ptx", "cm"]
    by_id = {row["study_id"]: row for row in numbers["samples"]}
    assert len(by_id["n0"]["label_disagreements"]) == 3  # negative vs not mentioned, thrice
    assert by_id["n0"]["f1_disagreements"] == []
    assert by_id["ptx"]["f1_disagreements"] == ["No Finding", "Pneumothorax"]
    assert (by_id["ptx"]["clinical_weight"], by_id["cm"]["clinical_weight"]) == (1.0, 0.25)
    page = (tmp_path / "out" / "audit.html").read_text()
    assert "Study ptx: 2 disagreement(s) that change F1, clinical weight 1" in page
    assert "Pneumothorax (critical)" in page


def test_every_observation_has_a_clinical_weight() -> None:
    assert set(CLINICAL_WEIGHT) == set(OBSERVATIONS)
    assert CLINICAL_WEIGHT["Pneumothorax"] == max(CLINICAL_WEIGHT.values())


def test_headline_cards_share_one_convention_with_intervals_and_human_names(
    tmp_path: Path,
) -> None:
    source = write_jsonl(tmp_path / "pairs.jsonl", PAIRS)
    code, output = run("--input", str(source), "--out", str(tmp_path / "out"), *FAST)
    assert code == 0, output
    numbers = json.loads((tmp_path / "out" / "audit.json").read_text())
    cards = numbers["headline"]["cards"]
    assert numbers["headline"]["convention"] == "uncertain = negative"
    assert [c["key"] for c in cards] == [
        "chexpert_rule_f1_micro14_unc0",
        "chexpert_rule_f1_macro14_unc0",
        "chexpert_rule_f1_micro5_unc0",
        "chexpert_rule_f1_macro5_unc0",
        "rouge_l",
    ]
    assert cards[0]["name"] == "Label F1, micro, 14 findings, uncertain = negative"
    assert cards[0]["value"] == pytest.approx(4 / 6)
    assert all(c["low"] <= c["high"] for c in cards)
    assert numbers["names"]["rouge_l_rougescore_f1"] == "ROUGE-L F1 (rouge-score)"
    page = (tmp_path / "out" / "audit.html").read_text()
    cards_html = page.split("<div class='cards'>")[1].split("<h2>")[0]
    assert "Label F1, macro, 5 competition findings, uncertain = negative" in cards_html
    assert "95% CI" in cards_html
    assert "chexpert_rule_f1" not in page.split("</style>")[1]
    assert "uncertain = positive" not in cards_html
    assert "BLEU-4 (pycocoevalcap, corpus, 0-1)" in page
    assert "<h2>Glossary</h2>" in page


def test_unknown_metric_is_refused_before_anything_is_read(tmp_path: Path) -> None:
    """The input does not even exist: the metric list must be what fails."""
    code, output = run(
        "--input", str(tmp_path / "absent.jsonl"), "--out", str(tmp_path / "o"),
        "--metrics", "labels,bleu,rouge",
    )  # fmt: skip
    assert code == 2
    assert "unknown metric groups ['rouge']; choose from labels, bleu, rouge_l" in output


def test_run_audit_checks_metrics_before_labelling() -> None:
    """A draft the labeler cannot take (not text) would fail first if labelling came first."""
    data = AuditInput(["a"], [123], ["Effusion."], None)  # type: ignore[list-item]
    with pytest.raises(MetricInputError, match="unknown metric groups"):
        run_audit(data, ["labels", "blue"])


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o002, 0o664)])
def test_audit_files_get_the_umasks_mode(tmp_path: Path, umask: int, mode: int) -> None:
    source = write_jsonl(tmp_path / "pairs.jsonl", PAIRS)
    previous = os.umask(umask)
    try:
        code, output = run("--input", str(source), "--out", str(tmp_path / "out"), *FAST)
    finally:
        os.umask(previous)
    assert code == 0, output
    for name in ("audit.json", "audit.html"):
        assert stat.S_IMODE((tmp_path / "out" / name).stat().st_mode) == mode


def test_out_that_is_a_file_is_refused_before_work(tmp_path: Path) -> None:
    taken = tmp_path / "taken"
    taken.write_text("x", encoding="utf-8")
    source = write_jsonl(tmp_path / "pairs.jsonl", PAIRS)
    code, output = run("--input", str(source), "--out", str(taken), *FAST)
    assert code == 2
    assert "exists and is not a folder" in output
    assert taken.read_text(encoding="utf-8") == "x"
