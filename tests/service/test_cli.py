"""The command line as a new user meets it: version, -h, one default for output folders, and the
assistant's answers named as the assistant's."""

from __future__ import annotations

from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest
from typer.main import get_command
from typer.testing import CliRunner

from service.cli import app

pytestmark = pytest.mark.e2e


def _commands() -> dict[str, Any]:
    """Every command and sub-command by its full name (typer's own click classes)."""
    found: dict[str, Any] = {}
    for name, command in get_command(app).commands.items():  # type: ignore[attr-defined]
        if hasattr(command, "commands"):
            found |= {f"{name} {sub}": c for sub, c in command.commands.items()}
        else:
            found[name] = command
    return found


def test_version_and_short_help() -> None:
    runner = CliRunner()
    assert runner.invoke(app, ["--version"]).output.strip() == f"echocxr {version('echocxr')}"
    assert "Usage: echocxr" in runner.invoke(app, ["-h"]).output
    assert "--out" in runner.invoke(app, ["report", "-h"]).output


def test_every_default_output_folder_is_named_after_its_command() -> None:
    defaults = {
        name: option.default
        for name, command in _commands().items()
        for option in command.params
        if option.name == "out" and option.default is not None
    }
    assert {"report", "report-archive", "demo", "audit", "phantom"} <= set(defaults)
    for name, default in defaults.items():
        # a subcommand's folder joins its words: `batch results` -> batch-results-output
        assert Path(str(default)).name == f"{name.replace(' ', '-')}-output", (name, default)


def test_ask_answers_with_the_assistant_whatever_drafts_reports(tmp_path: Path) -> None:
    from model.data.phantom import sample_case
    from model.data.phantom.dicom_export import write_dicom

    study = write_dicom(sample_case(0, 3), tmp_path / "study.dcm", downscale=8)
    result = CliRunner().invoke(
        app,
        ["ask", str(study), "Is there a pleural effusion?"],
        env={"ECHOCXR_ENGINE": "diffusion-onestep"},
    )
    assert result.exit_code == 0, result.output
    answer, named = result.stdout.strip(), result.stderr
    assert answer and "FINDINGS" not in answer
    assert "answered by the assistant, echocxr-ar" in named
    empty = CliRunner().invoke(app, ["ask", str(study), "  "])
    assert empty.exit_code == 2 and "question" in empty.stderr
