"""Drafting a report for an ingested study, in-process: the embedded mode's path.

``echocxr report``, ``echocxr demo`` and (at scale) the ``generate`` worker all go through
``draft_study`` and ``write_draft``, so a draft is made and written the same way everywhere.
The model never sees the DICOM header: only the frontal image's pixels, resized by
``dicom.to_model_input``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from typer.models import OptionInfo

from model import DEFAULT_ENGINE

if TYPE_CHECKING:
    import dicom
    from model.report import Report, ReportGenerator

MANUFACTURER = "EchoCXR open-source project"
PRODUCT_NAME = "EchoCXR draft report generator"


@dataclass(frozen=True)
class WrittenDraft:
    report: Report
    files: dict[str, Path]

    @property
    def report_text(self) -> str:
        return self.report.text


def pick_image(study: dicom.Study) -> dicom.FrontalImage:
    """The frontal image the draft is written from: PA when there is one, else the first AP."""
    if not study.frontal_images:
        import dicom

        reasons = "; ".join(item.reason for item in study.set_aside) or "no instances"
        raise dicom.NotChestRadiographError(
            f"the study has no frontal chest radiograph to report on ({reasons})"
        )
    by_view = sorted(study.frontal_images, key=lambda image: image.view_position != "PA")
    return by_view[0]


def draft_study(study: dicom.Study, generator: ReportGenerator) -> Report:
    import dicom

    image = pick_image(study)
    pixels = dicom.to_model_input(image, generator.image_size)
    return generator.generate([pixels])[0]


def algorithm_identity(report: Report) -> dicom.AlgorithmIdentity:
    """The model as a device; its UID follows from its id, so all its drafts name it alike."""
    from pydicom.uid import generate_uid

    import dicom

    name, _, version = report.model_id.partition("/")
    return dicom.AlgorithmIdentity(
        name=name,
        version=version or "0",
        manufacturer=MANUFACTURER,
        model_name=PRODUCT_NAME,
        device_uid=generate_uid(entropy_srcs=["echocxr-device", report.model_id]),
        checkpoint_sha256=report.checkpoint_sha256,
        decoding=" ".join(
            [report.engine]
            + [f"{key}={json.dumps(value)}" for key, value in sorted(report.engine_options.items())]
        ),
    )


def write_draft(study: dicom.Study, report: Report, out_dir: Path) -> WrittenDraft:
    """report.json, report.sr.dcm, report.pdf.dcm and report.fhir.json, all or none."""
    import dicom

    draft = dicom.DraftReport(
        findings=report.findings, impression=report.impression, algorithm=algorithm_identity(report)
    )
    details = {
        "engine": report.engine,
        "engine_options": report.engine_options,
        "labels": report.labels,
        "timings": report.timings,
        "model_id": report.model_id,
    }
    files = dicom.write_report_bundle(draft, study, out_dir, details=details)
    return WrittenDraft(report=report, files=files)


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
    """The checkpoint and engine a command asked for; a bad choice ends it with a clear error."""
    import model
    from model.checkpoint import CheckpointError
    from model.decoding import EngineError, parse_engine_options

    try:
        options = parse_engine_options(engine_option or [])
        return model.load(checkpoint, engine, batch_size=batch_size, engine_options=options)
    except (CheckpointError, EngineError) as error:
        raise fail(str(error)) from None


def report(
    study: Annotated[Path, typer.Argument(help="A DICOM file, folder, ZIP/TAR or DICOMDIR.")],
    out: OutOption = Path("report"),
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
    if as_json:
        typer.echo(json.dumps(json.loads(written.files["json"].read_text()), indent=2))
    else:
        typer.echo(written.report_text)
        for kind, path in written.files.items():
            typer.echo(f"{kind}: {path}")


def fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(2)
