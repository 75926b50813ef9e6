"""A quality auditor in Chromium: upload an archive of 20 small phantom studies (one of them
not a radiograph), watch the page follow it to the end, read its failure and its drafts'
findings, download its results."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import Any

import pytest

from tests.support.archives import phantom_archive
from tests.web.conftest import LiveServer, check_accessibility, new_page, screenshot

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("web-browser")]


def archive_zip(folder: Path, count: int) -> Path:
    """A ZIP of ``count`` phantom studies and a note that is not DICOM."""
    studies = phantom_archive(folder / "studies", count - 1)
    path = folder / "ward-7.zip"
    with zipfile.ZipFile(path, "w") as archive:
        for study in studies:
            archive.write(study, study.name)
        archive.writestr("readme.txt", "exported by the PACS")
    return path


def test_auditor_drafts_an_archive_of_20_and_watches_it_finish(
    live_server: LiveServer, browser: Any, shots: Path, tmp_path: Path
) -> None:
    page = new_page(browser, live_server, "auditor")
    page.goto(f"{live_server.url}/app/archives")
    page.get_by_label("A ZIP or TAR").set_input_files(str(archive_zip(tmp_path, 20)))
    check_accessibility(page)
    page.get_by_role("button", name="Draft the archive").click()
    page.wait_for_url("**/app/archives/*")
    assert page.get_by_role("status").count() == 1  # the progress the page follows
    screenshot(page, shots, "archive-running")

    # the page polls the batch's state and reloads itself once it has ended
    page.get_by_text("19 drafted, 1 failed").wait_for(
        timeout=900_000
    )  # a loaded CI machine: minutes
    failures = page.get_by_role("table", name="Why studies failed, most frequent first")
    assert failures.locator("tbody tr").count() == 1
    findings = page.get_by_role("table", name="For each observation")
    assert findings.locator("tbody tr").count() >= 10
    assert page.locator("td .state-done").count() == 19
    check_accessibility(page)
    screenshot(page, shots, "archive")

    with page.expect_download() as download:
        page.get_by_role("link", name="every report file (ZIP)").click()
    names = zipfile.ZipFile(io.BytesIO(Path(download.value.path()).read_bytes())).namelist()
    assert "results.csv" in names and "study-18.dcm/report.sr.dcm" in names

    page.goto(f"{live_server.url}/app/archives")
    assert page.locator("table").get_by_text("done").count() == 1
    check_accessibility(page)
    screenshot(page, shots, "archives")
    page.context.close()
