"""`echocxr report-archive` at a terminal: its progress, and Ctrl-C in the middle of a run.

The command runs as a real process on a pseudo-terminal, with reader processes beside it, and
Ctrl-C is sent as a terminal sends it: SIGINT to the whole process group, readers included.
"""

from __future__ import annotations

import csv
import os
import re
import sys
import time
from pathlib import Path

import pytest

from tests.support.archives import phantom_archive, report_archive
from tests.support.terminal import Terminal
from workers.archive import draft_is_complete

pytestmark = pytest.mark.e2e

STUDIES = 6


def drafted_rows(out: Path) -> dict[str, dict[str, str]]:
    """archive.csv's rows as they are now (none before the file is there)."""
    if not (out / "archive.csv").is_file():
        return {}
    with (out / "archive.csv").open() as lines:
        return {row["entry"]: row for row in csv.DictReader(lines)}


def test_progress_shows_while_reading_and_ctrl_c_keeps_what_is_finished(tmp_path: Path) -> None:
    archive, out = tmp_path / "archive", tmp_path / "out"
    studies = phantom_archive(archive, STUDIES)
    command = [str(Path(sys.executable).with_name("echocxr")), "report-archive", str(archive)]
    options = ["--out", str(out), "--batch-size", "1", "--readers", "2"]
    terminal = Terminal([*command, *options], dict(os.environ))
    # each study drafted alone, one after another: Ctrl-C lands with some finished, not all
    terminal.wait_until(lambda: len(drafted_rows(out)) >= 1)
    terminal.ctrl_c()
    status, shown = terminal.finish(), terminal.text

    # progress: a line of studies read, with total, rate and time left, from the first read on
    # (before anything is drafted), and a line of studies finished
    assert re.search(rf"read .* 1/{STUDIES} .*\n.*drafted .* 0/{STUDIES}", shown), shown
    assert re.search(rf"read .* [2-6]/{STUDIES} +\d+\.\d\d/s +\d+:\d\d:\d\d", shown), shown
    assert re.search(rf"drafted .* [1-6]/{STUDIES}", shown), shown

    # Ctrl-C: a clean stop, the usual status, a line saying what was kept and how to resume
    assert status == 130, shown
    assert "Traceback" not in shown and "KeyboardInterrupt" not in shown, shown
    kept = drafted_rows(out)
    assert 1 <= len(kept) < STUDIES, shown
    assert f"{len(kept)} of {STUDIES} entries are drafted and listed" in shown, shown
    assert "run the same command again" in shown
    # every draft finished is whole and listed, and no reader process outlives the command
    assert {row["status"] for row in kept.values()} == {"drafted"}
    whole = {study.name for study in studies if draft_is_complete(out / study.name)}
    assert whole == set(kept)
    # (multiprocessing's resource tracker ends on its own once it sees the command gone)
    deadline = time.monotonic() + 60
    while terminal.survivors() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not terminal.survivors()

    # the same command again drafts the rest and keeps the rows of the first run
    again = report_archive(archive, out)
    assert again.exit_code == 0, again.output
    left = STUDIES - len(kept)
    assert f"{left} drafted, {len(kept)} already drafted, 0 failed" in again.output
    assert "where the time went: waiting for reads" in again.output
    assert "drafted by engine ar, checkpoint" in again.output
    rows = drafted_rows(out)
    assert {name: rows[name] for name in kept} == kept
    assert all(draft_is_complete(out / study.name) for study in studies)
