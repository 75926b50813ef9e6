"""``echocxr audit``: score a set of drafts and write an HTML page plus a JSON of every number."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def audit(
    out: Annotated[Path, typer.Option("--out", help="Folder for audit.html and audit.json.")],
    input_file: Annotated[
        Path | None,
        typer.Option(
            "--input",
            help="CSV/JSONL with study_id, generated and reference (or the 14 label columns).",
        ),
    ] = None,
    generated: Annotated[
        Path | None, typer.Option(help="CSV/JSONL of drafts (study_id, text).")
    ] = None,
    reference: Annotated[
        Path | None, typer.Option(help="CSV/JSONL of signed reports (study_id, text).")
    ] = None,
    manifest: Annotated[
        Path | None,
        typer.Option(help="Phantom manifest.csv with ground-truth labels; pair with --generated."),
    ] = None,
    split: Annotated[
        str | None, typer.Option(help="With --manifest: audit only this split (e.g. test).")
    ] = None,
    metrics: Annotated[
        str, typer.Option(help="Comma-separated metric groups (labels,bleu,rouge_l,...).")
    ] = "labels,bleu,rouge_l,meteor,cider_d,sacrebleu,minilm",
    resamples: Annotated[int, typer.Option(help="Bootstrap resamples.", min=100)] = 1000,
) -> None:
    """Audit drafts against reference reports or ground-truth labels."""
    from tqdm import tqdm

    from clinical_eval import audit as audit_module
    from clinical_eval.audit_html import render
    from clinical_eval.audit_input import AuditInput, load_manifest, load_pair, load_single
    from clinical_eval.errors import ClinicalEvalError

    def load() -> AuditInput:
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

    try:
        data = load()
        total = len(data.study_ids) * (2 if data.reference is not None else 1)
        total += len(data.study_ids) if data.reference is not None else 0
        with tqdm(total=total, unit="study", desc="audit") as bar:

            def progress(stage: str, done: int) -> None:
                bar.set_description(stage)
                bar.update(done)

            report = audit_module.run_audit(
                data, [m.strip() for m in metrics.split(",") if m.strip()], resamples, progress
            )
        json_path, html_path = audit_module.write_outputs(out, report, render(report))
    except ClinicalEvalError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(code=2) from None
    typer.echo(f"wrote {html_path} and {json_path}")
