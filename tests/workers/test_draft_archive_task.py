"""The ``echocxr.draft_archive`` task run by a real Celery worker over real Redis."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from tests.support.archives import phantom_archive
from tests.workers.conftest import LiveWorker

pytestmark = pytest.mark.integration


def _run(worker: LiveWorker, archive: Path, out: Path) -> dict[str, int]:
    result = worker.client.send_task(
        "echocxr.draft_archive",
        args=[str(archive), str(out)],
        kwargs={"batch_size": 2},
        queue=worker.queue("generate"),
    )
    return dict(result.get(timeout=300))


def test_the_worker_drafts_an_archive_and_a_second_delivery_only_finishes_it(
    live_worker: LiveWorker, tmp_path: Path
) -> None:
    studies = phantom_archive(tmp_path / "archive", 3)
    (tmp_path / "archive" / "scan.pdf").write_text("%PDF- not an image")
    first = _run(live_worker, tmp_path / "archive", tmp_path / "out")
    assert first == {"drafted": 3, "already drafted": 0, "failed": 1}
    for study in studies:
        assert (tmp_path / "out" / study.name / "report.sr.dcm").is_file()
    with (tmp_path / "out" / "archive.csv").open() as rows:
        failed = {row["entry"] for row in csv.DictReader(rows) if row["status"] == "failed"}
    assert failed == {"scan.pdf"}

    (tmp_path / "out" / studies[2].name / "report.json").unlink()  # as if the worker died there
    again = _run(live_worker, tmp_path / "archive", tmp_path / "out")
    assert again == {"drafted": 1, "already drafted": 2, "failed": 1}


def test_a_folder_that_is_not_an_archive_fails_the_task_with_its_message(
    live_worker: LiveWorker, tmp_path: Path
) -> None:
    result = live_worker.client.send_task(
        "echocxr.draft_archive",
        args=[str(tmp_path / "missing"), str(tmp_path / "out")],
        queue=live_worker.queue("generate"),
    )
    with pytest.raises(Exception, match="is not a folder"):
        result.get(timeout=300)
    assert result.state == "FAILURE"
    assert not (tmp_path / "out").exists()
