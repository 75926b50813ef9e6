"""A radiologist in Chromium: log in, upload a phantom study, wait for the draft, read it beside
the image (window/level, zoom, MONOCHROME1), ask the assistant, edit, sign, and fetch the SR."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pydicom
import pytest

from tests.support.service import (
    UNRELIABLE_CRITICAL,
    auth,
    phantom_bytes,
    record_trusted_draft,
)
from tests.web.conftest import LiveServer, check_accessibility, new_page, screenshot

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("web-browser")]

VISIBLE_WITHOUT_SCROLLING = 900  # the viewport's height (tests/web/conftest.py)
MONOCHROME1_CASE = 4  # phantom case 4 is stored MONOCHROME1 (tests/dicom check the phantom)
IMAGE_READY = (
    "() => { const i = document.getElementById('xray'); return i.complete && i.naturalWidth > 0; }"
)
# mean grey of the middle tenth of the image (spine, mediastinum) over that of two lung strips
MIDDLE_OVER_LUNGS = """() => {
  const image = document.getElementById('xray');
  const canvas = document.createElement('canvas');
  canvas.width = image.naturalWidth; canvas.height = image.naturalHeight;
  const context = canvas.getContext('2d');
  context.drawImage(image, 0, 0);
  const mean = (x0, x1) => {
    const w = Math.round(canvas.width * (x1 - x0)), h = Math.round(canvas.height * 0.4);
    const x = Math.round(canvas.width * x0), y = Math.round(canvas.height * 0.3);
    const data = context.getImageData(x, y, w, h).data;
    let sum = 0; for (let i = 0; i < data.length; i += 4) sum += data[i];
    return sum / (data.length / 4);
  };
  return mean(0.45, 0.55) / ((mean(0.22, 0.30) + mean(0.70, 0.78)) / 2);
}"""


def _wait_for_image(page: Any, src_part: str) -> None:
    page.wait_for_function(
        f"() => document.getElementById('xray').src.includes({src_part!r})", timeout=30_000
    )
    page.wait_for_function(IMAGE_READY)


def test_radiologist_reads_edits_and_signs_a_draft(
    live_server: LiveServer, browser: Any, shots: Path, tmp_path: Path
) -> None:
    page = new_page(browser, live_server, "radiologist")
    page.wait_for_url("**/app/worklist")
    page.get_by_role("link", name="Upload", exact=True).click()
    study = tmp_path / "study.dcm"
    study.write_bytes(phantom_bytes(MONOCHROME1_CASE, downscale=4))
    page.get_by_label("Study file").set_input_files(str(study))
    page.get_by_label("stat").check()
    check_accessibility(page)
    screenshot(page, shots, "upload")
    page.get_by_role("button", name="Upload and draft").click()
    page.wait_for_url("**/app/studies/*")
    study_url = page.url

    # the page waits for the draft and reloads itself when it is written
    page.get_by_role("heading", name="Draft as written by the model").wait_for(timeout=180_000)
    page.wait_for_function(IMAGE_READY)
    assert page.locator(".sentences li .sentence").count() >= 2
    # MONOCHROME1 shown as a radiologist expects: the mediastinum brighter than the lungs
    assert page.evaluate(MIDDLE_OVER_LUNGS) > 1.2
    assert "MONOCHROME1 shown inverted" in page.locator("#readout").inner_text()
    check_accessibility(page)
    screenshot(page, shots, "review-draft")

    # window/level by dragging: a small preview while moving, the sharp image once released
    box = page.locator("#stage").bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x - 150, y + 60, steps=6)
    page.mouse.up()
    _wait_for_image(page, "side=1024")
    assert "ww=" in page.locator("#xray").get_attribute("src")
    assert page.locator("#readout").inner_text().startswith("Window ")
    # zoom and invert from the keyboard, with the image focused; 0 resets
    page.locator("#stage").focus()
    page.keyboard.press("+")
    assert "scale(1.25)" in page.locator("#xray").get_attribute("style")
    page.keyboard.press("i")
    _wait_for_image(page, "invert=true")
    assert page.evaluate(MIDDLE_OVER_LUNGS) < 1.0  # inverted: the lungs are now the bright part
    page.keyboard.press("0")
    _wait_for_image(page, "invert=false")
    assert page.locator('[data-action="invert"]').get_attribute("aria-pressed") == "false"

    # the assistant answers in the side panel
    page.get_by_label("Question").fill("Is there a pleural effusion?")
    page.get_by_role("button", name="Ask").click()
    answer = page.locator("#conversation li.answered")
    page.wait_for_function(
        "() => { const a = document.querySelector('#conversation li:last-child');"
        " return a && !a.textContent.includes('thinking'); }",
        timeout=180_000,
    )
    assert answer.count() == 1 and answer.inner_text().strip()

    # a shortcut letter typed into the report does nothing but type
    impression = page.get_by_label("Impression")
    impression.fill("Left pleural effusion. No pneumothorax. i")
    assert page.locator('[data-action="invert"]').get_attribute("aria-pressed") == "false"
    assert impression.input_value().endswith(" i")
    impression.fill("Left pleural effusion. No pneumothorax.")
    acknowledge = page.get_by_label("I have read the warnings above")
    if acknowledge.count():
        acknowledge.check()
    page.get_by_role("button", name="Sign as Test Radiologist").click()
    page.get_by_role("status").filter(has_text="Signed.").wait_for()
    assert page.get_by_role("heading", name="Signed report").is_visible()
    signed_impression = page.locator(".sentences").last
    assert signed_impression.locator(".sentence").all_inner_texts() == [
        "Left pleural effusion.",
        "No pneumothorax.",
    ]
    marks = signed_impression.locator(".mark").all_inner_texts()
    assert marks == ["Pleural Effusion: positive", "Pneumothorax: negative"]
    check_accessibility(page)
    screenshot(page, shots, "review-signed")

    with page.expect_download() as download:
        page.get_by_role("link", name="DICOM SR").click()
    sr = pydicom.dcmread(download.value.path())
    assert (sr.CompletionFlag, sr.VerificationFlag) == ("COMPLETE", "VERIFIED")
    assert str(sr.VerifyingObserverSequence[0].VerifyingObserverName) == "Test Radiologist"

    # a routine study comes in by the API; the STAT one stays first on the worklist
    routine = httpx.post(
        f"{live_server.url}/v1/studies",
        files={"file": ("routine.dcm", phantom_bytes(0, downscale=4))},
        headers=auth(live_server.keys["uploader"]),
    )
    assert routine.status_code == 201
    # the worklist, by keyboard: j to the first study, Enter to open it
    page.goto(f"{live_server.url}/app/worklist?state=all")
    page.keyboard.press("j")
    page.keyboard.press("Enter")
    page.wait_for_url(study_url)
    page.goto(f"{live_server.url}/app/worklist?state=all")
    check_accessibility(page)
    screenshot(page, shots, "worklist")
    page.context.close()


def test_a_radiologist_cannot_open_the_admin_page(live_server: LiveServer, browser: Any) -> None:
    page = new_page(browser, live_server, "radiologist")
    assert page.get_by_role("link", name="Admin").count() == 0
    response = page.goto(f"{live_server.url}/app/admin")
    assert response.status == 403
    assert "cannot open this page" in page.get_by_role("alert").inner_text()
    page.context.close()


def test_an_unreliable_critical_draft_cannot_be_missed(
    live_server: LiveServer, browser: Any, shots: Path
) -> None:
    """A draft whose signals say out of distribution, a suspected pneumothorax and a
    contradiction (recorded through the workers' write path): red banners the screen reader
    announces, the critical badge on the worklist and in the view, no percentages beside the
    sentences."""
    study_id, _, report_id = record_trusted_draft(
        live_server.settings, phantom_bytes(31, downscale=4), UNRELIABLE_CRITICAL
    )
    assert report_id is not None
    page = new_page(browser, live_server, "radiologist")
    page.goto(f"{live_server.url}/app/worklist")
    row = page.locator("tr", has=page.locator(f"a[href='/app/studies/{study_id}']"))
    assert row.locator(".badge.critical").inner_text() == "Critical? Pneumothorax"
    assert row.locator(".badge.ood").inner_text() == "Not reliable"
    check_accessibility(page)
    screenshot(page, shots, "worklist-critical")

    page.goto(f"{live_server.url}/app/studies/{study_id}")
    page.wait_for_function(IMAGE_READY)
    banners = page.get_by_role("alert")
    texts = banners.all_inner_texts()
    assert "outside the model's training distribution — not reliable" in texts[0]
    assert "(score 9.00 > threshold 4.00)" in texts[0]
    assert texts[1].startswith("Suspected critical finding: Pneumothorax")
    assert "Pneumothorax: negated in the text, probability 0.91" in texts[2]
    first = page.locator(".alert").first
    assert first.is_visible() and first.bounding_box()["y"] < VISIBLE_WITHOUT_SCROLLING
    assert page.locator(".study-head .badge.critical").inner_text() == "Critical? Pneumothorax"
    assert page.locator(".sentences .probability").count() == 0  # folded away, not reliable
    assert page.locator("details.unreliable table.probabilities").count() == 1
    check_accessibility(page)
    screenshot(page, shots, "review-unreliable")
    page.context.close()
