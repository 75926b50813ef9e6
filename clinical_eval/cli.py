"""``echocxr audit``: score a set of drafts and write an HTML page plus a JSON of every number."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from clinical_eval.scoring import METRIC_GROUPS

if TYPE_CHECKING:
    from clinical_eval.audit import AuditReport
    from clinical_eval.audit_input import AuditInput


def audit(
    out: Annotated[
        Path, typer.Option("--out", help="Folder for audit.html and audit.json.")
    ] = Path("audit-output"),
    input_file: Annotated[
        Path | None,
        typer.Option(
            "--input",
            help="CSV/JSONL with study_id, generated and reference (or the 14 label columns).",
        ),
    ] = None,
    generated: Annotated[
        Path | None,
        typer.Option(
            help="Drafts: the --out folder of `echocxr report-archive` or `echocxr report`, or a "
            "CSV/JSONL of study_id, text. Studies without a draft are audited as empty reports."
        ),
    ] = None,
    reference: Annotated[
        Path | None,
        typer.Option(help="CSV/JSONL of signed reports (study_id, text[, StudyInstanceUID])."),
    ] = None,
    manifest: Annotated[
        Path | None,
        typer.Option(help="Phantom manifest.csv with ground-truth labels; pair with --generated."),
    ] = None,
    split: Annotated[
        str | None, typer.Option(help="With --manifest: audit only this split (e.g. test).")
    ] = None,
    metrics: Annotated[
        str, typer.Option(help=f"Comma-separated metric groups from: {', '.join(METRIC_GROUPS)}.")
    ] = ",".join(METRIC_GROUPS),
    resamples: Annotated[int, typer.Option(help="Bootstrap resamples.", min=100)] = 1000,
) -> None:
    """Audit drafts against reference reports or ground-truth labels."""
    from clinical_eval.errors import ClinicalEvalError
    from clinical_eval.scoring import chosen_groups

    try:
        groups = chosen_groups([m.strip() for m in metrics.split(",") if m.strip()])
        if out.exists() and not out.is_dir():
            raise typer.BadParameter(f"{out} exists and is not a folder", param_hint="--out")
        data = _load(input_file, generated, reference, manifest, split)
        _tell_what_is_audited(data)
        report = _run(data, groups, resamples)
        json_path, html_path = _write(out, report)
    except ClinicalEvalError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(code=2) from None
    typer.echo(f"wrote {html_path} and {json_path}")


def _load(
    input_file: Path | None,
    generated: Path | None,
    reference: Path | None,
    manifest: Path | None,
    split: str | None,
) -> AuditInput:
    from clinical_eval.audit_input import load_manifest, load_pair, load_single

    given = (input_file is not None, generated is not None, reference is not None,
             manifest is not None)  # fmt: skip
    if given == (True, False, False, False) and input_file is not None:
        return load_single(input_file)
    if given == (False, True, True, False) and generated and reference:
        return load_pair(generated, reference)
    if given == (False, True, False, True) and generated and manifest:
        return load_manifest(manifest, generated, split)
    raise typer.BadParameter(
        "give --input, or --generated with --reference, or --generated with --manifest"
    )


def _tell_what_is_audited(data: AuditInput) -> None:
    """Say up front which studies count as missing and which drafts are ignored, by name."""
    from clinical_eval.audit_input import listed

    if data.missing:
        typer.echo(
            f"{len(data.missing)} of {len(data.study_ids)} studies have no draft and are audited "
            f"as empty reports: {listed(list(data.missing))}",
            err=True,
        )
    if data.left_out:
        typer.echo(
            f"{len(data.left_out)} draft(s) of no audited study left out: "
            f"{listed(list(data.left_out))}",
            err=True,
        )


def _run(data: AuditInput, groups: list[str], resamples: int) -> AuditReport:
    from tqdm import tqdm

    from clinical_eval.audit import planned_work, run_audit

    with tqdm(total=planned_work(data), unit="study", desc="audit") as bar:

        def progress(stage: str, done: int) -> None:
            bar.set_description(stage)
            bar.update(done)

        return run_audit(data, groups, resamples, progress)


def _write(out: Path, report: AuditReport) -> tuple[Path, Path]:
    from clinical_eval.audit import write_outputs
    from clinical_eval.audit_html import render

    try:
        return write_outputs(out, report, render(report))
    except OSError as error:
        typer.echo(f"error: cannot write the audit into {out}: {error.strerror}", err=True)
        raise typer.Exit(code=2) from None
