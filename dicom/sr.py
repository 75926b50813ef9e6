"""The draft as a DICOM Enhanced SR following TID 2000 (Basic Diagnostic Imaging Report).

highdicom has no TID 2000 class, so the tree is built from its content items, one function per
sub-template (PS3.16 TID 2000, TID 1204 language, TID 1001/1004 device observer, TID 1003 person
observer, TID 2002 sections). highdicom's ``EnhancedSR`` supplies the SR Document General
module: PARTIAL, UNVERIFIED, PRELIMINARY for a draft; COMPLETE, VERIFIED, FINAL with the
verifying observer and the draft as predecessor once a radiologist signed (WORKSPACE_NOTES §2);
and the evidence sequence from the source headers.
The Patient and Study modules are then copied attribute by attribute from the source, so a
PACS files the draft under the right patient (OHIF #3148 shows what an empty Patient module does).
"""

from __future__ import annotations

import logging
import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import highdicom as hd
from highdicom.sr import (
    CodedConcept,
    ContainerContentItem,
    DeviceObserverIdentifyingAttributes,
    LanguageOfContentItemAndDescendants,
    NumContentItem,
    ObserverContext,
    PersonObserverIdentifyingAttributes,
    RelationshipTypeValues,
    TextContentItem,
)
from pydicom import Dataset, config
from pydicom.dataelem import DataElement
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from pydicom.sr.codedict import codes
from pydicom.uid import EnhancedSRStorage
from pydicom.valuerep import DT, validate_value

from dicom.draft import DraftReport, Signature, derived_uid, flag_text
from dicom.errors import ReportInputError
from dicom.read import Study

# highdicom logs, at INFO, the UID of each dataset whose patient and study attributes it copies:
# identifiers that must not reach the service's logs
logging.getLogger("highdicom").setLevel(logging.WARNING)

DIAGNOSTIC_IMAGING_REPORT = CodedConcept("18748-4", "LN", "Diagnostic Imaging Report")
FINDINGS_SECTION = CodedConcept("59776-5", "LN", "Findings")
IMPRESSIONS_SECTION = CodedConcept("19005-8", "LN", "Impressions")
FINDING = CodedConcept("121071", "DCM", "Finding")
IMPRESSION = CodedConcept("121073", "DCM", "Impression")
ENGLISH = CodedConcept("en-US", "RFC5646", "English (United States)")
# No standard code names a report generator's self-assessment; a private scheme ("99" prefix,
# PS3.16 8.2) does, under a section heading a viewer shows like any other.
PRIVATE_SCHEME = "99ECHOCXR"
ASSESSMENT_SECTION = CodedConcept("ASSESS", PRIVATE_SCHEME, "Algorithm assessment")
WARNING = CodedConcept("WARN", PRIVATE_SCHEME, "Warning")
CRITICAL = CodedConcept("CRIT", PRIVATE_SCHEME, "Suspected critical finding")
INCONSISTENCY = CodedConcept("INCONS", PRIVATE_SCHEME, "Inconsistency")
OOD_SCORE = CodedConcept("OODSCORE", PRIVATE_SCHEME, "Out-of-distribution score")
NO_UNITS = CodedConcept("1", "UCUM", "no units")
SERIES_NUMBER = 9901
SIGNED_SERIES_NUMBER = 9903
COMPLETION_DESCRIPTION = "Machine-generated draft for radiologist review; not verified"
SIGNED_DESCRIPTION = "Machine-drafted; verified and signed by a radiologist"
UNRELIABLE_DESCRIPTION = "NOT RELIABLE: image outside the model's training distribution"  # LO: ≤ 64

PATIENT_AND_STUDY_KEYWORDS = (
    "PatientName",
    "PatientID",
    "IssuerOfPatientID",
    "PatientBirthDate",
    "PatientSex",
    "OtherPatientIDsSequence",
    "PatientAge",
    "PatientSize",
    "PatientWeight",
    "StudyInstanceUID",
    "StudyDate",
    "StudyTime",
    "StudyID",
    "AccessionNumber",
    "IssuerOfAccessionNumberSequence",
    "ReferringPhysicianName",
    "StudyDescription",
)
# Type 2 in the Patient (PS3.3 C.7.1.1) and General Study (C.7.2.1) modules: a report that copies
# the modules writes each one, empty where the source has no valid value.
PATIENT_AND_STUDY_TYPE_2 = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyDate",
    "StudyTime",
    "ReferringPhysicianName",
    "StudyID",
    "AccessionNumber",
)
# What highdicom cites of the source's equipment (ContributingEquipment.for_image_acquisition).
ACQUISITION_EQUIPMENT_KEYWORDS = (
    "Manufacturer",
    "ManufacturerModelName",
    "SoftwareVersions",
    "DeviceSerialNumber",
    "InstitutionName",
    "InstitutionalDepartmentName",
    "StationName",
)
SOURCE_UID_KEYWORDS = ("SOPClassUID", "SOPInstanceUID", "SeriesInstanceUID", "StudyInstanceUID")
# UTF-8: every value is a decoded string by now, and UTF-8 holds any repertoire a source declares.
REPORT_CHARACTER_SET = "ISO_IR 192"
PATIENT_SEXES = frozenset({"M", "F", "O"})  # (0010,0040) enumerated values
# ACR-NEMA and hand-typed forms of DA and TM values, rewritten to the DICOM form.
_LEGACY_DATE = re.compile(r"(\d{4})[.\-/](\d{2})[.\-/](\d{2})")
_LEGACY_TIME = re.compile(r"(\d{2}):(\d{2})(?::(\d{2}(?:\.\d{1,6})?))?")


def write_sr(draft: DraftReport, study: Study, signature: Signature | None = None) -> Dataset:
    """The Enhanced SR of ``draft`` for ``study``, UIDs derived from study and model.

    With a ``signature`` it is the signed version of the draft (``draft`` then holds the text
    the radiologist signed): COMPLETE, VERIFIED and FINAL, the radiologist in
    VerifyingObserverSequence and as a person observer, the draft SR in
    PredecessorDocumentsSequence, and UIDs of its own.

    Raises
    ------
    ReportInputError
        When the study holds no frontal image to cite as evidence.
    """
    sources = [report_source(header) for header in _source_headers(study)]
    algorithm = draft.algorithm
    with _person_names_kept_out_of_warnings():
        sr = hd.sr.EnhancedSR(
            evidence=sources,
            content=diagnostic_imaging_report(draft, signature),
            series_instance_uid=derived_uid(study, algorithm, "sr-series", signature),
            series_number=SERIES_NUMBER if signature is None else SIGNED_SERIES_NUMBER,
            sop_instance_uid=derived_uid(study, algorithm, "sr-instance", signature),
            instance_number=1,
            manufacturer=algorithm.manufacturer,
            contributing_equipment=[contributing_equipment(draft)],
            specific_character_set=REPORT_CHARACTER_SET,
            **_sign_off(draft, study, signature),
        )
    _describe(sr, signature, unreliable=draft.ood_warning() is not None)
    copy_patient_and_study(sources[0], sr)
    return sr


def _describe(sr: Dataset, signature: Signature | None, *, unreliable: bool) -> None:
    """The series and completion descriptions, and the signing time (highdicom writes 'now').

    An out-of-distribution draft says so in both, for the PACS lists that show no content tree.
    """
    if signature is None:
        sr.CompletionFlagDescription = (
            UNRELIABLE_DESCRIPTION if unreliable else COMPLETION_DESCRIPTION
        )
        sr.SeriesDescription = (
            "AI draft report (" + ("NOT RELIABLE" if unreliable else "unverified") + ")"
        )
        return
    sr.VerifyingObserverSequence[0].VerificationDateTime = DT(signature.signed_at)
    sr.CompletionFlagDescription = SIGNED_DESCRIPTION
    sr.SeriesDescription = "Signed report"


def _sign_off(draft: DraftReport, study: Study, signature: Signature | None) -> dict[str, Any]:
    """highdicom's SR Document General arguments: the draft's, or the signed version's."""
    if signature is None:
        return {"is_complete": False, "is_final": False, "is_verified": False}
    return {
        "is_complete": True,
        "is_final": True,
        "is_verified": True,
        "verifying_observer_name": signature.name,
        "verifying_organization": signature.organization,
        "previous_versions": [draft_sr_reference(draft, study)],
    }


def draft_sr_reference(draft: DraftReport, study: Study) -> Dataset:
    """The draft SR's study, series, class and instance, as its signed version cites it.

    Its UIDs follow from study and model alone, so the draft need not be read back.
    """
    algorithm = draft.algorithm
    reference = Dataset()
    reference.StudyInstanceUID = study.study_instance_uid
    reference.SeriesInstanceUID = derived_uid(study, algorithm, "sr-series")
    reference.SOPClassUID = EnhancedSRStorage
    reference.SOPInstanceUID = derived_uid(study, algorithm, "sr-instance")
    return reference


def cited_images(sr: Dataset) -> frozenset[str]:
    """The SOPInstanceUIDs an SR cites in CurrentRequestedProcedureEvidenceSequence: the images
    its report was written from."""
    return frozenset(
        str(instance.ReferencedSOPInstanceUID)
        for study in sr.get("CurrentRequestedProcedureEvidenceSequence", [])
        for series in study.get("ReferencedSeriesSequence", [])
        for instance in series.get("ReferencedSOPSequence", [])
    )


@contextmanager
def _person_names_kept_out_of_warnings() -> Iterator[None]:
    """Silences highdicom's warning that quotes a one-component person name in full.

    Names like 'JOHN DOE' are legal DICOM (PS3.5 6.2.1.2) and common in real headers; the
    warning would put a patient's name into the service's logs.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*unlikely to represent the intended person")
        yield


def _source_headers(study: Study) -> list[Dataset]:
    """The frontal images' headers, the evidence the draft was written from."""
    if not study.frontal_images:
        raise ReportInputError("the study has no frontal image to cite as the report's evidence")
    return [image.dataset for image in study.frontal_images]


def diagnostic_imaging_report(
    draft: DraftReport, signature: Signature | None = None
) -> ContainerContentItem:
    """TID 2000 root: title, language, observers (the model; the radiologist once signed), then
    Findings and Impressions."""
    root = ContainerContentItem(name=DIAGNOSTIC_IMAGING_REPORT, template_id="2000")
    observers = [*device_observer(draft), *(person_observer(signature) if signature else [])]
    root.ContentSequence = Sequence(
        [*LanguageOfContentItemAndDescendants(ENGLISH), *observers, *_sections(draft)]
    )
    return root


def device_observer(draft: DraftReport) -> ObserverContext:
    """TID 1001 observer context with the model as a TID 1004 device observer."""
    algorithm = draft.algorithm
    return ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=DeviceObserverIdentifyingAttributes(
            uid=algorithm.device_uid,
            name=f"{algorithm.name} {algorithm.version}",
            manufacturer_name=algorithm.manufacturer,
            model_name=algorithm.model_name,
        ),
    )


def person_observer(signature: Signature) -> ObserverContext:
    """TID 1001 observer context with the signing radiologist as a TID 1003 person observer."""
    return ObserverContext(
        observer_type=codes.DCM.Person,
        observer_identifying_attributes=PersonObserverIdentifyingAttributes(
            name=signature.name, organization_name=signature.organization
        ),
    )


def _sections(draft: DraftReport) -> list[ContainerContentItem]:
    """TID 2002 sections with one text item each, only for text that is present, after the
    algorithm's assessment of its draft when it made one (read first, as in every output)."""
    wanted = [
        (FINDINGS_SECTION, FINDING, draft.findings),
        (IMPRESSIONS_SECTION, IMPRESSION, draft.impression),
    ]
    texts = [section(title, name, text) for title, name, text in wanted if text.strip()]
    return [*assessment(draft), *texts]


def assessment(draft: DraftReport) -> list[ContainerContentItem]:
    """The "Algorithm assessment" section: the warnings as TEXT (out of distribution, critical
    findings, contradictions), the OOD score and each observation's calibrated probability as
    NUM items; nothing for a draft without trust signals."""
    if draft.trust is None:
        return []
    trust = draft.trust
    ood = draft.ood_warning()
    items: list[Any] = [_text(WARNING, ood)] if ood else []
    items += [_text(CRITICAL, name) for name in trust["critical_findings"]]
    items += [_text(INCONSISTENCY, flag_text(flag)) for flag in trust["consistency_flags"]]
    items.append(_number(OOD_SCORE, float(trust["ood_score"])))
    for name, probability in draft.probabilities.items():
        concept = CodedConcept(_code(name), PRIVATE_SCHEME, f"Probability of {name}")
        items.append(_number(concept, float(probability)))
    container = ContainerContentItem(
        name=ASSESSMENT_SECTION, relationship_type=RelationshipTypeValues.CONTAINS
    )
    container.ContentSequence = Sequence(items)
    return [container]


def _text(name: CodedConcept, value: str) -> TextContentItem:
    return TextContentItem(
        name=name, value=value, relationship_type=RelationshipTypeValues.CONTAINS
    )


def _number(name: CodedConcept, value: float) -> NumContentItem:
    return NumContentItem(
        name=name,
        value=round(value, 4),
        unit=NO_UNITS,
        relationship_type=RelationshipTypeValues.CONTAINS,
    )


def _code(observation: str) -> str:
    """A code value for an observation's probability: 'P-PLEURAL-EFFUSION' (SH, ≤ 16 chars)."""
    return ("P-" + re.sub(r"[^A-Z0-9]+", "-", observation.upper()).strip("-"))[:16]


def section(title: CodedConcept, item_name: CodedConcept, text: str) -> ContainerContentItem:
    """One section CONTAINER holding one TEXT item (TID 2002)."""
    container = ContainerContentItem(name=title, relationship_type=RelationshipTypeValues.CONTAINS)
    text_item = TextContentItem(
        name=item_name, value=text.strip(), relationship_type=RelationshipTypeValues.CONTAINS
    )
    container.ContentSequence = Sequence([text_item])
    return container


def contributing_equipment(draft: DraftReport) -> hd.ContributingEquipment:
    """The model as contributing equipment (IHE AIR 6.5.3.1), with its DeviceUID.

    IHE AIR names the purpose (Newcode1, 99IHE, "Processing Algorithm"), a placeholder code
    outside CID 7005 that highdicom rejects; (109102, DCM, "Processing Equipment") is the
    standard code with that meaning.
    """
    algorithm = draft.algorithm
    equipment = hd.ContributingEquipment(
        manufacturer=algorithm.manufacturer,
        purpose_of_reference=codes.DCM.ProcessingEquipment,
        manufacturer_model_name=algorithm.model_name,
        software_versions=algorithm.version,
        contribution_description=f"Draft text; weights sha256 {algorithm.checkpoint_sha256}"
        + (f"; decoding {algorithm.decoding}" if algorithm.decoding else ""),
    )
    equipment.DeviceUID = algorithm.device_uid
    return equipment


def copy_patient_and_study(source: Dataset, target: Dataset) -> None:
    """Copies the Patient, Patient Study and General Study attributes of ``report_source``."""
    for keyword in PATIENT_AND_STUDY_KEYWORDS:
        if keyword in source:
            target[keyword] = source[keyword]


def report_source(header: Dataset) -> Dataset:
    """What a report takes from one source image: its UIDs, Patient and Study, and equipment.

    Each value is valid for its VR (see ``patient_and_study``); ``read_study`` has checked the
    UIDs and derived a missing SOPClassUID.
    """
    result = patient_and_study(header)
    for keyword in SOURCE_UID_KEYWORDS:
        result[keyword] = header[keyword]
    _copy_valid(header, result, ACQUISITION_EQUIPMENT_KEYWORDS)
    return result


def patient_and_study(header: Dataset) -> Dataset:
    """The Patient and Study attributes a report copies, each valid for its VR, Type 2 ones all
    present.

    Real headers lack Type 2 attributes or hold values their VR forbids (ACR-NEMA dates,
    PatientSex 'U', over-long identifiers); copied as they are, they make an invalid report or
    stop highdicom. Each value is kept in its valid form (ACR-NEMA dates and times rewritten,
    1961.02.14 to 19610214) or dropped, and a Type 2 attribute dropped or missing is written
    empty, as PS3.3 allows. Values are decoded strings, declared as UTF-8 whatever the source
    declared.
    """
    result = Dataset()
    result.SpecificCharacterSet = REPORT_CHARACTER_SET
    _copy_valid(header, result, PATIENT_AND_STUDY_KEYWORDS)
    for keyword in PATIENT_AND_STUDY_TYPE_2:
        if keyword not in result:
            setattr(result, keyword, "")
    return result


def _copy_valid(source: Dataset, target: Dataset, keywords: tuple[str, ...]) -> None:
    """Sets on ``target`` each of ``keywords`` that ``source`` holds a valid value for."""
    for keyword in keywords:
        value = valid_value(source[keyword]) if keyword in source else None
        if value is not None:
            setattr(target, keyword, value)


def valid_value(element: DataElement) -> object | None:
    """The element's value in a form valid for its VR, or None when it has no valid value."""
    if element.VR == "SQ":
        return element.value if element.value else None
    items = list(element.value) if isinstance(element.value, MultiValue) else [element.value]
    values = [_standard_form(element, item) for item in items if item not in (None, "")]
    if not values:
        return None
    if element.keyword == "PatientSex" and values[0] not in PATIENT_SEXES:
        return None
    try:
        for value in values:
            validate_value(element.VR, value, config.RAISE)
    except ValueError:
        return None
    return values if len(values) > 1 else values[0]


def _standard_form(element: DataElement, value: object) -> str:
    """A value as a string, with the legacy DA/TM forms and lower-case sexes rewritten."""
    text = str(value).strip()
    legacy = {"DA": _LEGACY_DATE, "TM": _LEGACY_TIME}.get(str(element.VR))
    match = legacy.fullmatch(text) if legacy else None
    if match:
        text = "".join(part for part in match.groups() if part)
    return text.upper() if element.keyword == "PatientSex" else text
