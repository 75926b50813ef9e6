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

from dicom.draft import (
    DraftReport,
    Signature,
    derived_uid,
    flag_text,
    person_name_parts,
    report_state,
)
from dicom.pdf import person_display
from dicom.read import Study

DICOM_UID_SYSTEM = "urn:dicom:uid"
INTERPRETATION = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"


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
    sr_uid = derived_uid(study, draft.algorithm, "sr-instance", signature)
    observations = trust_observations(draft)
    resource: dict[str, object] = {
        "resourceType": "DiagnosticReport",
        "id": derived_uid(study, draft.algorithm, "fhir-report", signature)[-64:],
        "contained": [
            _device(draft),
            *_signer(signature),
            _provenance(draft, study, signature, issued),
            *observations,
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
    if observations:
        resource["result"] = [{"reference": f"#{item['id']}"} for item in observations]
    if draft.impression.strip():
        resource["conclusion"] = draft.impression.strip()
    validated = DiagnosticReport.model_validate(resource)
    return dict(validated.model_dump(mode="json", by_alias=True, exclude_none=True))


def trust_observations(draft: DraftReport) -> list[dict[str, object]]:
    """The draft's trust signals as contained Observations, by the model, ``preliminary``.

    One "Algorithm assessment" holds the out-of-distribution score (the threshold as its
    reference range) and, as notes, every warning in words; then one per observation holds its
    calibrated probability, interpreted ``AA`` (critical) when it is a suspected critical
    finding, with its contradictions as notes. None for a draft without trust signals.
    """
    if draft.trust is None:
        return []
    trust = draft.trust
    assessment: dict[str, object] = {
        **_by_model("assessment", "Algorithm assessment: out-of-distribution score"),
        "valueQuantity": {"value": float(trust["ood_score"])},
        "referenceRange": [{"high": {"value": float(trust["ood_threshold"])}}],
    }
    if draft.ood_warning():
        assessment["interpretation"] = [_coding(INTERPRETATION, "H", "High")]
    if draft.warnings():
        assessment["note"] = [{"text": line} for line in draft.warnings()]
    found = [assessment]
    for index, (name, probability) in enumerate(draft.probabilities.items()):
        item = {
            **_by_model(f"probability-{index}", f"Probability of {name}"),
            "valueQuantity": {
                "value": round(float(probability), 4),
                "unit": "probability",
                "system": "http://unitsofmeasure.org",
                "code": "1",
            },
        }
        if name in trust["critical_findings"]:
            item["interpretation"] = [_coding(INTERPRETATION, "AA", "Critical abnormal")]
        flags = [flag for flag in trust["consistency_flags"] if flag["observation"] == name]
        if flags:
            item["note"] = [{"text": flag_text(flag)} for flag in flags]
        found.append(item)
    return found


def _by_model(identifier: str, text: str) -> dict[str, object]:
    return {
        "resourceType": "Observation",
        "id": identifier,
        "status": "preliminary",
        "code": {"text": text},
        "device": {"reference": "#model"},
    }


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
    draft_sr = derived_uid(study, draft.algorithm, "sr-instance")
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
