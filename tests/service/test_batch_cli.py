"""``echocxr batch`` against the service over real HTTP: submit a server folder, watch it
finish, fetch the results; refusals in the service's words, a service that is down named."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from service.cli import app
from tests.support.archives import phantom_archive
from tests.support.service import database_settings, make_keys, serving

pytestmark = pytest.mark.integration


def test_submit_watch_and_fetch_the_results(tmp_path: Path) -> None:
    archive = tmp_path / "archives" / "ward"
    phantom_archive(archive, 3)
    extra = {"batch_roots": str(archive.parent), "batch_chunk": 2, "batch_readers": 1}
    with (
        database_settings("sqlite", tmp_path / "data", None, **extra) as settings,
        serving(settings) as url,
    ):
        env = {"ECHOCXR_API_URL": url, "ECHOCXR_API_KEY": make_keys(settings)["auditor"]}
        runner = CliRunner()
        submitted = runner.invoke(app, ["batch", "submit", str(archive)], env=env)
        assert submitted.exit_code == 0, submitted.output
        batch_id = submitted.stdout.strip()
        watched = runner.invoke(app, ["batch", "status", batch_id, "--watch"], env=env)
        assert watched.exit_code == 0, watched.output
        assert f"{batch_id} done: 3 done of 3" in watched.stdout
        out = tmp_path / "results"
        fetched = runner.invoke(app, ["batch", "results", batch_id, "--out", str(out)], env=env)
        assert fetched.exit_code == 0, fetched.output
        assert len((out / "results.jsonl").read_text().splitlines()) == 3
        assert (out / "results.csv").is_file() and (
            out / "study-2.dcm" / "report.pdf.dcm"
        ).is_file()
        assert not list(out.glob("tmp*"))  # the streamed ZIP is gone once unpacked
        none = tmp_path / "none"
        missing = runner.invoke(app, ["batch", "results", "no-such", "--out", str(none)], env=env)
        assert missing.exit_code == 2 and "404: No batch with id 'no-such'" in missing.output
        assert list(none.iterdir()) == []  # nothing half-written
        refused = runner.invoke(app, ["batch", "submit", "/etc"], env=env)
        assert refused.exit_code == 2 and "ECHOCXR_BATCH_ROOTS" in refused.output
        done = runner.invoke(app, ["batch", "cancel", batch_id], env=env)
        assert done.exit_code == 2 and "409" in done.output
    down = runner.invoke(app, ["batch", "status", batch_id], env=env)
    assert down.exit_code == 2 and "does not answer" in down.output
