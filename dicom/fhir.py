"""The draft as a FHIR DiagnosticReport (status ``partial``), validated by fhir.resources.

``partial`` is FHIR's "initial, interim or preliminary; may be incomplete or unverified", which
is what an unreviewed machine draft is (``preliminary`` would claim verified early results).
The model is a contained Device, named as the author by a contained Provenance whose target is
the report itself. fhir.resources ships R5 by default and R4B (4.3) as a subpackage; R4B's
DiagnosticReport, Device and Provenance have the R4 elements used here, so it validates them.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime

from fhir.resources.R4B.diagnosticreport import DiagnosticReport

from dicom.draft import DraftReport, derived_uid
from dicom.read import Study

DICOM_UID_SYSTEM = "urn:dicom:uid"


def fhir_diagnostic_report(draft: DraftReport, study: Study) -> dict[str, object]:
    """The DiagnosticReport as a JSON-ready dict, validated against the R4B resource model.

    Raises
    ------
    pydantic.ValidationError
        Never for well-formed drafts; raised by fhir.resources if the resource were invalid.
    """
    issued = datetime.now(UTC).isoformat(timespec="seconds")
    resource: dict[str, object] = {
        "resourceType": "DiagnosticReport",
        "id": _resource_id(draft, study),
        "contained": [_device(draft), _provenance(issued)],
        "identifier": [{"system": DICOM_UID_SYSTEM, "value": f"urn:oid:{_sr_uid(draft, study)}"}],
        "status": "partial",
        "category": [_coding("http://terminology.hl7.org/CodeSystem/v2-0074", "RAD", "Radiology")],
        "code": _coding("http://loinc.org", "18748-4", "Diagnostic imaging study"),
        "issued": issued,
        "imagingStudy": [
            {
                "type": "ImagingStudy",
                "identifier": {
                    "system": DICOM_UID_SYSTEM,
                    "value": f"urn:oid:{study.study_instance_uid}",
                },
            }
        ],
        "presentedForm": [_attachment(draft)],
    }
    if draft.impression.strip():
        resource["conclusion"] = draft.impression.strip()
    validated = DiagnosticReport.model_validate(resource)
    return dict(validated.model_dump(mode="json", by_alias=True, exclude_none=True))


def _resource_id(draft: DraftReport, study: Study) -> str:
    """A FHIR id (≤ 64 chars of [A-Za-z0-9.-]) fixed by study and model, like the SR UIDs."""
    return derived_uid(study.study_instance_uid, draft.algorithm, "fhir-report")[-64:]


def _sr_uid(draft: DraftReport, study: Study) -> str:
    return derived_uid(study.study_instance_uid, draft.algorithm, "sr-instance")


def _coding(system: str, code: str, display: str) -> dict[str, object]:
    return {"coding": [{"system": system, "code": code, "display": display}]}


def _device(draft: DraftReport) -> dict[str, object]:
    """The model as a FHIR Device: name, version, manufacturer, and its DICOM device UID."""
    algorithm = draft.algorithm
    return {
        "resourceType": "Device",
        "id": "model",
        "identifier": [{"system": DICOM_UID_SYSTEM, "value": f"urn:oid:{algorithm.device_uid}"}],
        "manufacturer": algorithm.manufacturer,
        "modelNumber": algorithm.model_name,
        "deviceName": [{"name": algorithm.name, "type": "model-name"}],
        "version": [{"value": algorithm.version}],
        "note": [{"text": f"weights sha256 {algorithm.checkpoint_sha256}"}],
    }


def _provenance(recorded: str) -> dict[str, object]:
    """Provenance naming the contained Device as the author of this report ('#')."""
    return {
        "resourceType": "Provenance",
        "id": "drafted-by",
        "target": [{"reference": "#"}],
        "recorded": recorded,
        "agent": [
            {
                "type": _coding(
                    "http://terminology.hl7.org/CodeSystem/provenance-participant-type",
                    "author",
                    "Author",
                ),
                "who": {"reference": "#model"},
            }
        ],
    }


def _attachment(draft: DraftReport) -> dict[str, object]:
    """The draft's text as a plain-text attachment."""
    text = f"FINDINGS: {draft.findings.strip()}\n\nIMPRESSION: {draft.impression.strip()}\n"
    return {
        "contentType": "text/plain; charset=utf-8",
        "language": "en-US",
        "title": "AI draft report (unverified)",
        "data": base64.b64encode(text.encode("utf-8")).decode("ascii"),
    }
