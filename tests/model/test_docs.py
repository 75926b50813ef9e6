"""The README, the model card and the benchmark index say what the code and the results hold.

Documentation drifts silently: a link to a result that was deleted, a decision record a comment
names but nobody wrote, a default in the README that ``--help`` contradicts (issue 34 found
``phantom --workers 2`` where the command's default is 1), a script or result nobody indexed.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import typer

from service.cli import app

pytestmark = pytest.mark.unit

DOCS = [Path("README.md"), Path("benchmarks/README.md"), *sorted(Path("docs").rglob("*.md"))]
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


@pytest.mark.parametrize("document", DOCS, ids=str)
def test_every_relative_link_resolves(document: Path) -> None:
    targets = [t for t in LINK.findall(document.read_text()) if "://" not in t]
    assert [t for t in targets if not (document.parent / t).exists()] == []


def test_every_decision_record_the_code_names_exists() -> None:
    named = {
        match
        for root in ("model", "dicom", "benchmarks", "scripts")
        for path in Path(root).rglob("*.[ps][yh]")
        for match in re.findall(r"docs/decisions/([\w-]+\.md)", path.read_text())
    }
    assert named and all(Path("docs/decisions", name).is_file() for name in named)


def test_the_readme_quotes_each_commands_defaults_as_help_prints_them() -> None:
    commands = typer.main.get_command(app).commands  # type: ignore[attr-defined]
    rows = re.findall(r"^\| `echocxr ([\w-]+) ([^`]*)` \|", Path("README.md").read_text(), re.M)
    quoted = [
        (name, option, value)
        for name, usage in rows
        for option, value in re.findall(r"\[(--[\w-]+) ([\w.-]+)\]", usage)
        if not value.isupper()  # a placeholder (E, N), not a default
    ]
    assert len(quoted) >= 8  # the table still quotes defaults
    for name, option, value in quoted:
        defaults = {opt: param.default for param in commands[name].params for opt in param.opts}
        assert str(defaults[option]) == value, f"echocxr {name} {option}"


def test_the_benchmark_index_names_every_script_and_result() -> None:
    index = Path("benchmarks/README.md").read_text()
    scripts = [path.name for path in Path("benchmarks").glob("*.py")]
    results = {path.stem for path in Path("benchmarks/results").iterdir() if path.is_file()}
    assert [name for name in scripts if name not in index] == []
    assert sorted(stem for stem in results if stem not in index) == []
