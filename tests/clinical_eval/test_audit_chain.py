"""The README's chain with no script between: ``echocxr phantom`` -> ``echocxr report-archive`` (or
``echocxr report``) -> ``echocxr audit --generated DRAFTS --manifest MANIFEST``, on the shipped
checkpoints."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
from click.testing import Result
from typer.testing import CliRunner

from clinical_eval import OBSERVATIONS, label
from service.cli import app

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("audit_chain")]

STUDIES = 4


def echocxr(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A phantom data set and its archive drafts, as a user makes them."""
    root = tmp_path_factory.mktemp("chain")
    made = echocxr(
        "phantom", "--n", str(STUDIES), "--out", str(root / "phantom"), "--downscale", "8"
    )
    assert made.exit_code == 0, made.output
    drafted = echocxr(
        "report-archive", str(root / "phantom" / "dicom"), "--out", str(root / "drafts"),
        "--readers", "0",
    )  # fmt: skip
    assert drafted.exit_code == 0, drafted.output
    return root


def truth(root: Path) -> dict[str, dict[str, int | None]]:
    with (root / "phantom" / "manifest.csv").open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    return {
        row["study_id"]: {k: int(row[k]) if row[k] else None for k in OBSERVATIONS} for row in rows
    }


def audit(root: Path, drafts: Path, out: str) -> tuple[Result, dict]:
    result = echocxr(
        "audit", "--generated", str(drafts), "--manifest", str(root / "phantom" / "manifest.csv"),
        "--out", str(root / out), "--metrics", "labels,bleu,rouge_l", "--resamples", "200",
    )  # fmt: skip
    numbers = json.loads((root / out / "audit.json").read_text()) if result.exit_code == 0 else {}
    return result, numbers


def test_archive_drafts_audit_directly_each_against_its_own_study(chain: Path) -> None:
    result, numbers = audit(chain, chain / "drafts", "audit")
    assert result.exit_code == 0, result.output
    assert (numbers["n_studies"], numbers["n_drafted"]) == (STUDIES, STUDIES)
    assert numbers["missing_drafts"] == {} and numbers["drafts_left_out"] == {}
    assert numbers["mode"] == "ground_truth_labels" and "rouge_l" in numbers["language"]
    # Each study was scored against its own draft: redo its disagreements from the files.
    expected = truth(chain)
    for row in numbers["samples"]:
        draft = json.loads(
            (chain / "drafts" / f"{row['study_id']}.dcm" / "report.json").read_text()
        )
        composed = f"FINDINGS: {draft['findings']}\nIMPRESSION: {draft['impression']}"
        text = draft.get("text") or composed  # report.json's own text, once it has one
        drafted = label([text])[0]
        reference = expected[row["study_id"]]
        assert row["label_disagreements"] == {
            k: [reference[k], v] for k, v in drafted.items() if v != reference[k]
        }


def test_a_study_whose_draft_is_gone_is_audited_as_missing(chain: Path) -> None:
    drafts = chain / "drafts-one-gone"
    shutil.copytree(chain / "drafts", drafts)
    gone = sorted(p.name for p in drafts.iterdir() if p.is_dir())[1]
    shutil.rmtree(drafts / gone)
    result, numbers = audit(chain, drafts, "audit-one-gone")
    assert result.exit_code == 0, result.output
    study = gone.removesuffix(".dcm")
    assert numbers["missing_drafts"] == {study: "listed in archive.csv but no report.json"}
    assert numbers["n_drafted"] == STUDIES - 1
    assert study in result.output


def test_a_single_report_folder_audits_as_its_study(chain: Path) -> None:
    dicom_file = sorted((chain / "phantom" / "dicom").iterdir())[0]
    study = dicom_file.stem
    made = echocxr("report", str(dicom_file), "--out", str(chain / study))
    assert made.exit_code == 0, made.output
    result, numbers = audit(chain, chain / study, "audit-single")
    assert result.exit_code == 0, result.output
    assert numbers["n_drafted"] == 1
    assert [row["study_id"] for row in numbers["samples"] if row["draft"] == "drafted"] == [study]
    assert len(numbers["missing_drafts"]) == STUDIES - 1
