"""`echocxr report-archive`: a folder of studies drafted in batches, on the shipped models."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pydicom
import pytest

import model
from tests.support.archives import phantom_archive, report_archive
from workers.archive import draft_is_complete
from workers.drafting import draft_study

pytestmark = pytest.mark.e2e


def manifest(out: Path) -> dict[str, tuple[str, str]]:
    with (out / "archive.csv").open() as rows:
        return {row["entry"]: (row["status"], row["detail"]) for row in csv.DictReader(rows)}


def rows(out: Path) -> dict[str, dict[str, str]]:
    with (out / "archive.csv").open() as lines:
        return {row["entry"]: row for row in csv.DictReader(lines)}


def summary(out: Path, entry: str) -> dict[str, object]:
    return dict(json.loads((out / entry / "report.json").read_text()))


def test_an_archive_drafted_in_batches_reads_as_each_study_drafted_alone(tmp_path: Path) -> None:
    """Batching (with ended reports leaving the batch) and reading in other processes change
    the throughput, not the drafts."""
    import dicom

    studies = phantom_archive(tmp_path / "archive", 5)
    (tmp_path / "archive" / "notes.txt").write_text("not DICOM")  # a failure among the reads
    result = report_archive(tmp_path / "archive", tmp_path / "out", "--batch-size", "2", readers=2)
    assert result.exit_code == 1, result.output
    assert "5 drafted, 0 already drafted, 1 failed" in result.output
    outcomes = manifest(tmp_path / "out")
    assert outcomes.pop("notes.txt")[0] == "failed"
    assert outcomes == {s.name: ("drafted", "") for s in studies}
    for study in studies:  # archive.csv says where each draft is, of what study, by what engine
        row = rows(tmp_path / "out")[study.name]
        assert Path(row["output_folder"]) == (tmp_path / "out" / study.name).resolve()
        assert row["StudyInstanceUID"] == pydicom.dcmread(study).StudyInstanceUID
        assert row["engine"] == model.DEFAULT_ARCHIVE_ENGINE and float(row["seconds"]) > 0
    alone = model.load(engine=model.DEFAULT_ARCHIVE_ENGINE, batch_size=1)
    for study in studies:
        drafted = summary(tmp_path / "out", study.name)
        reference = draft_study(dicom.read_study(study), alone)
        assert (drafted["findings"], drafted["impression"], drafted["labels"]) == (
            reference.findings,
            reference.impression,
            reference.labels,
        )
        assert drafted["engine"] == model.DEFAULT_ARCHIVE_ENGINE
        sr = pydicom.dcmread(tmp_path / "out" / study.name / "report.sr.dcm")
        assert sr.StudyInstanceUID == pydicom.dcmread(study).StudyInstanceUID
    # each report.json has its study's own timings: its read, its share of its batch's model
    # time (notes.txt sorts first: its batch drafts one), its write
    timings = [summary(tmp_path / "out", s.name)["timings"] for s in studies]
    assert [t["model_batch_size"] for t in timings] == [1.0, 2.0, 2.0, 2.0, 2.0]  # type: ignore[index]
    for t in timings:
        assert t["model_s"] == t["model_batch_s"] / t["model_batch_size"]  # type: ignore[index]
        assert t["read_s"] > 0 and t["write_s"] > 0  # type: ignore[index]
    assert len({t["read_s"] for t in timings}) == len(studies)  # type: ignore[index]


def test_bad_entries_fail_alone_and_a_second_run_drafts_only_what_is_missing(
    tmp_path: Path,
) -> None:
    archive, out = tmp_path / "archive", tmp_path / "archive" / "drafts"
    good = phantom_archive(archive, 3)
    (archive / "notes.dcm").write_text("not a DICOM file")
    (archive / "empty").mkdir()
    (archive / ".DS_Store").write_text("hidden")

    first = report_archive(archive, out, "--batch-size", "4")
    assert first.exit_code == 1, first.output  # a script notices that some entries failed
    assert "3 drafted, 0 already drafted, 2 failed" in first.output
    outcomes = manifest(out)
    assert sorted(outcomes) == sorted([s.name for s in good] + ["notes.dcm", "empty"])
    assert outcomes["notes.dcm"][0] == "failed" and "not DICOM" in outcomes["notes.dcm"][1]
    assert outcomes["empty"] == (
        "failed",
        "the folder holds no files; point at a folder with DICOM files",
    )
    assert "Traceback" not in first.output

    # a second run drafts again only what has no whole draft (a file missing, an empty SR, a
    # cut-off PDF) and keeps the other rows as the first run wrote them
    first_rows = rows(out)
    kept = (out / good[0].name / "report.json").stat().st_mtime_ns
    (out / good[1].name / "report.pdf.dcm").unlink()
    (out / good[2].name / "report.sr.dcm").write_bytes(b"")
    (archive / "notes.dcm").unlink()
    second = report_archive(archive, out, "--batch-size", "4")
    assert second.exit_code == 1, second.output
    assert "2 drafted, 1 already drafted, 1 failed" in second.output
    again = rows(out)
    assert list(again) == sorted(again)  # in entry order again at the end
    assert again[good[0].name] == first_rows[good[0].name]
    assert (out / good[0].name / "report.json").stat().st_mtime_ns == kept
    assert again[good[1].name]["status"] == again[good[2].name]["status"] == "drafted"
    assert "report.pdf.dcm is missing" in again[good[1].name]["detail"]
    assert "report.sr.dcm is empty" in again[good[2].name]["detail"]
    assert all(draft_is_complete(out / study.name) for study in good)


def test_archives_take_their_engine_and_options_from_their_own_settings(tmp_path: Path) -> None:
    """The interactive engine's settings do not move archives (its options would not even fit
    the archive's engine), and the archive's settings do."""
    (study,) = phantom_archive(tmp_path / "archive", 1)
    interactive = {
        "ECHOCXR_ENGINE": "diffusion-onestep",
        "ECHOCXR_ENGINE_OPTIONS": "ngram_candidates=8",
    }
    default = report_archive(tmp_path / "archive", tmp_path / "default", env=interactive)
    archive_env = {
        "ECHOCXR_ARCHIVE_ENGINE": "diffusion-onestep",
        "ECHOCXR_ARCHIVE_ENGINE_OPTIONS": "ngram_candidates=8",
    }
    chosen = report_archive(tmp_path / "archive", tmp_path / "chosen", env=archive_env)
    assert default.exit_code == chosen.exit_code == 0, default.output + chosen.output
    drafted_by_default = summary(tmp_path / "default", study.name)
    assert drafted_by_default["engine"] == model.DEFAULT_ARCHIVE_ENGINE
    assert "ngram_candidates" not in drafted_by_default["engine_options"]  # type: ignore[operator]
    drafted_as_chosen = summary(tmp_path / "chosen", study.name)
    assert drafted_as_chosen["engine"] == "diffusion-onestep"
    assert drafted_as_chosen["engine_options"]["ngram_candidates"] == 8  # type: ignore[index]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--engine", "beam-search"], "unknown engine"),
        (["--engine-option", "steps"], "KEY=VALUE"),
    ],
)
def test_a_bad_choice_ends_before_anything_is_written(
    tmp_path: Path, args: list[str], message: str
) -> None:
    phantom_archive(tmp_path / "archive", 1)
    result = report_archive(tmp_path / "archive", tmp_path / "out", *args)
    assert result.exit_code == 2 and message in result.output, result.output
    assert not (tmp_path / "out").exists()


def test_a_single_study_or_the_archive_itself_as_output_is_refused(tmp_path: Path) -> None:
    (study,) = phantom_archive(tmp_path / "archive", 1)
    result = report_archive(study, tmp_path / "out")
    assert result.exit_code == 2
    assert "is not a folder" in result.output and "echocxr report" in result.output
    into_itself = report_archive(tmp_path / "archive", tmp_path / "archive")
    assert into_itself.exit_code == 2 and "separate folder" in into_itself.output
    assert sorted(p.name for p in (tmp_path / "archive").iterdir()) == [study.name]
