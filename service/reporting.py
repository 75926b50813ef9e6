"""``echocxr report``: one study drafted in this process, and the options every drafting command
shares (checkpoint, engine, engine options).

The drafting itself is ``workers.drafting``, the same functions the API and the workers run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from typer.models import OptionInfo

from model import DEFAULT_ENGINE
from workers.drafting import draft_study, write_draft

if TYPE_CHECKING:
    from model.report import ReportGenerator

# every command that writes files takes --out; its default is ./<command>-output
OutOption = Annotated[Path, typer.Option(help="Folder for the report files.")]
CheckpointOption = Annotated[
    Path | None, typer.Option(help="Checkpoint folder (default: the shipped one).")
]


def engine_parameter(envvar: str, default: str) -> OptionInfo:
    """The --engine parameter; each use has its own variable and default engine."""
    return typer.Option(
        envvar=envvar,
        help=f"ar, diffusion-multistep or diffusion-onestep (one forward per block); default "
        f"{default}, or with --checkpoint the engine of the checkpoint's stage.",
    )


def engine_option_parameter(envvar: str) -> OptionInfo:
    """The --engine-option parameter; each use reads its own variable, as it has its own engine
    (options for the interactive engine would not fit the archive's)."""
    return typer.Option(
        envvar=envvar,
        help="KEY=VALUE, a decoding option of the engine (repeatable; the variable takes "
        "them space-separated), e.g. report_ngrams=false for diffusion-onestep or "
        "steps=2 for diffusion-multistep. Recorded in report.json.",
    )


def load_generator(
    checkpoint: Path | None,
    engine: str | None,
    engine_option: list[str] | None,
    batch_size: int = 1,
) -> ReportGenerator:
    """The checkpoint and engine a command asked for, marking drafts critical as
    ``ECHOCXR_CRITICAL_FINDINGS`` says; a bad choice ends it with a clear error."""
    import model
    from model.checkpoint import CheckpointError
    from model.decoding import EngineError, parse_engine_options
    from model.trust_stats import CriticalPolicy, TrustStatisticsError
    from workers.config import Settings

    try:
        options = parse_engine_options(engine_option or [])
        critical = CriticalPolicy(Settings().critical_observations)
        return model.load(
            checkpoint, engine, batch_size=batch_size, engine_options=options, critical=critical
        )
    except (CheckpointError, EngineError, TrustStatisticsError) as error:
        raise fail(str(error)) from None


def report(
    study: Annotated[Path, typer.Argument(help="A DICOM file, folder, ZIP/TAR or DICOMDIR.")],
    out: OutOption = Path("report-output"),
    checkpoint: CheckpointOption = None,
    engine: Annotated[str | None, engine_parameter("ECHOCXR_ENGINE", DEFAULT_ENGINE)] = None,
    engine_option: Annotated[
        list[str] | None, engine_option_parameter("ECHOCXR_ENGINE_OPTIONS")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print report.json's content.")] = False,
) -> None:
    """Draft a preliminary report for one study and write it as JSON, SR, PDF and FHIR."""
    import dicom

    generator = load_generator(checkpoint, engine, engine_option)
    try:
        study_read = dicom.read_study(study)
        written = write_draft(study_read, draft_study(study_read, generator), out)
    except dicom.DicomError as error:
        raise fail(str(error)) from None
    warnings = written.draft.warnings()
    if as_json:  # the JSON has the trust keys; the warnings still reach the terminal
        for line in warnings:
            typer.echo(line, err=True)
        typer.echo(json.dumps(json.loads(written.files["json"].read_text()), indent=2))
    else:  # above the text, where the reader starts
        for line in warnings:
            typer.echo(line)
        typer.echo(written.report_text)
        for kind, path in written.files.items():
            typer.echo(f"{kind}: {path}")


def fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(2)


def ask(
    study: Annotated[Path, typer.Argument(help="A DICOM file, folder, ZIP/TAR or DICOMDIR.")],
    question: Annotated[str, typer.Argument(help='e.g. "Is there a pleural effusion?"')],
) -> None:
    """Ask the assistant (the shipped autoregressive model) a question about one study.

    The assistant is always the stage-1 model, whichever engine drafts reports: the one-step
    report models are trained to write reports, not to answer questions.
    """
    import dicom
    from model.assistant import QuestionError
    from model.assistant import ask as answer
    from model.report import PromptTooLongError
    from workers.drafting import pick_image
    from workers.generators import assistant_generator

    generator = assistant_generator()
    try:
        pixels = dicom.to_model_input(pick_image(dicom.read_study(study)), generator.image_size)
        text = answer(generator, [pixels], question)
    except (dicom.DicomError, QuestionError, PromptTooLongError) as error:
        raise fail(str(error)) from None
    typer.echo(text)
    typer.echo(f"(answered by the assistant, {generator.checkpoint.model_id})", err=True)
