"""Drafting one study: pick the frontal image, make the model input, generate, write the bundle.

These plain functions are what every path runs: ``echocxr report`` and ``echocxr demo`` in this
process, the API's embedded pool, and the Celery ``generate`` workers, so a draft is made and
written the same way everywhere. The model never sees the DICOM header: only the frontal image's
pixels, resized by ``dicom.to_model_input``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import dicom
    from model.report import Report, ReportGenerator

MANUFACTURER = "EchoCXR open-source project"
PRODUCT_NAME = "EchoCXR draft report generator"


class Provenance(Protocol):
    """What names the model behind a text: a fresh ``model.report.Report`` or a stored version
    (``workers.records.Report``) alike."""

    model_id: str
    checkpoint_sha256: str
    engine: str
    engine_options: dict[str, Any]


@dataclass(frozen=True)
class WrittenDraft:
    report: Report
    draft: dicom.DraftReport
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


def algorithm_identity(report: Provenance) -> dicom.AlgorithmIdentity:
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


def write_draft(
    study: dicom.Study,
    report: Report,
    out_dir: Path,
    timings: Mapping[str, float] | None = None,
) -> WrittenDraft:
    """report.json, report.sr.dcm, report.pdf.dcm and report.fhir.json, all or none.

    report.json's ``timings`` are ``timings`` when given (an archive gives each study its own),
    else the generator's (``report.timings``, which cover the whole batch the study was
    decoded in), with the seconds the writing took added (``write_s``).
    """
    import dicom

    draft = dicom.DraftReport(
        findings=report.findings,
        impression=report.impression,
        algorithm=algorithm_identity(report),
        trust=None if report.trust is None else report.trust.to_json(),
    )
    details = {
        "engine": report.engine,
        "engine_options": report.engine_options,
        "labels": report.labels,
        "model_id": report.model_id,
    }
    timings = report.timings if timings is None else timings
    files = dicom.write_report_bundle(draft, study, out_dir, details=details, timings=timings)
    return WrittenDraft(report=report, draft=draft, files=files)
