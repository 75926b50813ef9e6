"""A quality auditor in Chromium: upload a CSV of drafts and references, run the audit on the
``evaluate`` queue (the embedded pool here), see its figures and plots, download its page."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import pytest

from model.data.phantom import sample_case
from tests.web.conftest import LiveServer, check_accessibility, new_page, screenshot

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("web-browser")]

PLOTS_RENDERED = """() => {
  const images = [...document.images];
  return images.length > 0 && images.every(i => i.complete && i.naturalWidth > 0);
}"""


def audit_csv(path: Path, count: int = 12) -> Path:
    """Phantom reports as drafts; each second reference is another case's report."""
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["study_id", "generated", "reference"])
        for index in range(count):
            draft = sample_case(0, index).report
            reference = sample_case(0, index + (0 if index % 2 else 50)).report
            writer.writerow(
                [
                    f"study-{index}",
                    f"FINDINGS: {draft.findings}\nIMPRESSION: {draft.impression}",
                    f"FINDINGS: {reference.findings}\nIMPRESSION: {reference.impression}",
                ]
            )
    return path


def test_auditor_runs_an_audit_and_reads_its_plots(
    live_server: LiveServer, browser: Any, shots: Path, tmp_path: Path
) -> None:
    page = new_page(browser, live_server, "auditor")
    page.wait_for_url("**/app/audits")
    page.get_by_label("An uploaded CSV").check()
    page.get_by_label("CSV with").set_input_files(str(audit_csv(tmp_path / "audit.csv")))
    for slow in ("bleu", "sacrebleu"):
        page.get_by_label(slow, exact=True).uncheck()
    check_accessibility(page)
    page.get_by_role("button", name="Run the audit").click()
    page.wait_for_url("**/app/audits/*")

    # the page follows the run and reloads itself once the audit is written
    page.get_by_role("heading", name="Headline").wait_for(timeout=180_000)
    cards = page.locator(".card").all_inner_texts()
    assert any("F1" in card for card in cards), cards
    frame = page.frame_locator("iframe.audit-frame")
    frame.get_by_role("heading", name="Confusion matrices").wait_for()
    audit_frame = page.frame(url=lambda url: url.endswith("/report.html"))
    assert audit_frame is not None
    audit_frame.wait_for_function(PLOTS_RENDERED)
    assert audit_frame.evaluate("() => document.images.length") >= 3
    check_accessibility(page)
    screenshot(page, shots, "audit")

    with page.expect_download() as download:
        page.get_by_role("link", name="Download the audit page (HTML)").click()
    assert "EchoCXR draft audit" in Path(download.value.path()).read_text(encoding="utf-8")

    page.goto(f"{live_server.url}/app/audits")
    assert page.locator("table").get_by_text("done").count() == 1
    screenshot(page, shots, "audits")
    page.context.close()
