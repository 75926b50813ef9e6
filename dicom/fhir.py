"""The report as a FHIR DiagnosticReport, validated by fhir.resources.

A draft is ``partial``, FHIR's "initial, interim or preliminary; may be incomplete or
unverified", which is what an unreviewed machine draft is (``preliminary`` would claim verified
early results). The model is a contained Device, named as the author by a contained Provenance
whose target is the report itself. A signed version is ``final``: the radiologist, a contained
Practitioner, is performer, results interpreter and the Provenance's author (on behalf of a
contained Organization), and the Provenance records the draft it revises, with the model as
that draft's author. fhir.resources ships R5 by default and R4B (4.3) as a subpackage; R4B's
DiagnosticReport, Device, Practitioner, Organization and Provenance have the R4 elements used
here, so it validates them.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime

from fhir.resources.R4B.diagnosticreport import DiagnosticReport

from dicom.draft import DraftReport, Signature, derived_uid, person_name_parts, report_state
from dicom.pdf import person_display
from dicom.read import Study

DICOM_UID_SYSTEM = "urn:dicom:uid"


def fhir_diagnostic_report(
    draft: DraftReport, study: Study, signature: Signature | None = None
) -> dict[str, object]:
    """The DiagnosticReport as a JSON-ready dict, validated against the R4B resource model.

    With a ``signature`` it is the signed version: status final, issued when signed, with the
    radiologist as performer and results interpreter.

    Raises
    ------
    pydantic.ValidationError
        Never for well-formed drafts; raised by fhir.resources if the resource were invalid.
    """
    issued = (signature.signed_at if signature else datetime.now(UTC)).isoformat(timespec="seconds")
    study_uid = study.study_instance_uid
    sr_uid = derived_uid(study_uid, draft.algorithm, "sr-instance", signature)
    resource: dict[str, object] = {
        "resourceType": "DiagnosticReport",
        "id": derived_uid(study_uid, draft.algorithm, "fhir-report", signature)[-64:],
        "contained": [
            _device(draft),
            *_signer(signature),
            _provenance(draft, study, signature, issued),
        ],
        "identifier": [{"system": DICOM_UID_SYSTEM, "value": f"urn:oid:{sr_uid}"}],
        "status": report_state(signature).fhir_status,
        "category": [_coding("http://terminology.hl7.org/CodeSystem/v2-0074", "RAD", "Radiology")],
        "code": _coding("http://loinc.org", "18748-4", "Diagnostic imaging study"),
        "issued": issued,
        "imagingStudy": [
            {
                "type": "ImagingStudy",
                "identifier": {"system": DICOM_UID_SYSTEM, "value": f"urn:oid:{study_uid}"},
            }
        ],
        "presentedForm": [_attachment(draft, signature)],
    }
    if signature is not None:
        resource["performer"] = resource["resultsInterpreter"] = [{"reference": "#radiologist"}]
    if draft.impression.strip():
        resource["conclusion"] = draft.impression.strip()
    validated = DiagnosticReport.model_validate(resource)
    return dict(validated.model_dump(mode="json", by_alias=True, exclude_none=True))


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


def _signer(signature: Signature | None) -> list[dict[str, object]]:
    """The radiologist (Practitioner) and the organisation they signed for, once signed."""
    if signature is None:
        return []
    family, given, middle, prefix, suffix = person_name_parts(signature.name)
    name: dict[str, object] = {"text": person_display(signature.name), "family": family}
    for key, parts in (("given", [given, middle]), ("prefix", [prefix]), ("suffix", [suffix])):
        if any(parts):
            name[key] = [part for part in parts if part]
    return [
        {"resourceType": "Practitioner", "id": "radiologist", "name": [name]},
        {"resourceType": "Organization", "id": "organization", "name": signature.organization},
    ]


def _provenance(
    draft: DraftReport, study: Study, signature: Signature | None, recorded: str
) -> dict[str, object]:
    """Who wrote this report ('#'): the model for a draft; for a signed version the radiologist,
    with the draft it revises and the model as that draft's author."""
    provenance: dict[str, object] = {
        "resourceType": "Provenance",
        "id": "drafted-by" if signature is None else "signed-by",
        "target": [{"reference": "#"}],
        "recorded": recorded,
    }
    if signature is None:
        provenance["agent"] = [_author("#model")]
        return provenance
    draft_sr = derived_uid(study.study_instance_uid, draft.algorithm, "sr-instance")
    on_behalf = {"onBehalfOf": {"reference": "#organization"}}
    provenance["agent"] = [{**_author("#radiologist"), **on_behalf}]
    provenance["entity"] = [
        {
            "role": "revision",
            "what": {
                "identifier": {"system": DICOM_UID_SYSTEM, "value": f"urn:oid:{draft_sr}"},
                "display": "AI draft report",
            },
            "agent": [_author("#model")],
        }
    ]
    return provenance


def _author(reference: str) -> dict[str, object]:
    return {
        "type": _coding(
            "http://terminology.hl7.org/CodeSystem/provenance-participant-type", "author", "Author"
        ),
        "who": {"reference": reference},
    }


def _attachment(draft: DraftReport, signature: Signature | None) -> dict[str, object]:
    """The report's text as a plain-text attachment."""
    return {
        "contentType": "text/plain; charset=utf-8",
        "language": "en-US",
        "title": "AI draft report (unverified)" if signature is None else "Signed report",
        "data": base64.b64encode((draft.text + "\n").encode("utf-8")).decode("ascii"),
    }
