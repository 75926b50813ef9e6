"""The draft as a DICOM Enhanced SR following TID 2000 (Basic Diagnostic Imaging Report).

highdicom has no TID 2000 class, so the tree is built from its content items, one function per
sub-template (PS3.16 TID 2000, TID 1204 language, TID 1001/1004 device observer, TID 2002
sections). highdicom's ``EnhancedSR`` supplies the SR Document General module: PARTIAL,
UNVERIFIED, PRELIMINARY (its defaults) and the evidence sequence from the source headers.
The Patient and Study modules are then copied attribute by attribute from the source, so a
PACS files the draft under the right patient (OHIF #3148 shows what an empty Patient module does).
"""

from __future__ import annotations

import highdicom as hd
from highdicom.sr import (
    CodedConcept,
    ContainerContentItem,
    DeviceObserverIdentifyingAttributes,
    LanguageOfContentItemAndDescendants,
    ObserverContext,
    RelationshipTypeValues,
    TextContentItem,
)
from pydicom import Dataset
from pydicom.sequence import Sequence
from pydicom.sr.codedict import codes

from dicom.draft import DraftReport, derived_uid
from dicom.errors import ReportInputError
from dicom.read import Study

DIAGNOSTIC_IMAGING_REPORT = CodedConcept("18748-4", "LN", "Diagnostic Imaging Report")
FINDINGS_SECTION = CodedConcept("59776-5", "LN", "Findings")
IMPRESSIONS_SECTION = CodedConcept("19005-8", "LN", "Impressions")
FINDING = CodedConcept("121071", "DCM", "Finding")
IMPRESSION = CodedConcept("121073", "DCM", "Impression")
ENGLISH = CodedConcept("en-US", "RFC5646", "English (United States)")
SERIES_NUMBER = 9901
COMPLETION_DESCRIPTION = "Machine-generated draft for radiologist review; not verified"

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


def write_sr(draft: DraftReport, study: Study) -> Dataset:
    """The Enhanced SR of ``draft`` for ``study``, UIDs derived from study and model.

    Raises
    ------
    ReportInputError
        When the study holds no frontal image to cite as evidence.
    """
    sources = _source_headers(study)
    algorithm = draft.algorithm
    sr = hd.sr.EnhancedSR(
        evidence=sources,
        content=diagnostic_imaging_report(draft),
        series_instance_uid=derived_uid(study.study_instance_uid, algorithm, "sr-series"),
        series_number=SERIES_NUMBER,
        sop_instance_uid=derived_uid(study.study_instance_uid, algorithm, "sr-instance"),
        instance_number=1,
        manufacturer=algorithm.manufacturer,
        is_complete=False,
        is_final=False,
        is_verified=False,
        contributing_equipment=[contributing_equipment(draft)],
    )
    sr.CompletionFlagDescription = COMPLETION_DESCRIPTION
    sr.SeriesDescription = "AI draft report (unverified)"
    copy_patient_and_study(sources[0], sr)
    return sr


def _source_headers(study: Study) -> list[Dataset]:
    """The frontal images' headers, the evidence the draft was written from."""
    if not study.frontal_images:
        raise ReportInputError("the study has no frontal image to cite as the report's evidence")
    return [image.dataset for image in study.frontal_images]


def diagnostic_imaging_report(draft: DraftReport) -> ContainerContentItem:
    """TID 2000 root: title, language, device observer, then Findings and Impressions."""
    root = ContainerContentItem(name=DIAGNOSTIC_IMAGING_REPORT, template_id="2000")
    root.ContentSequence = Sequence(
        [
            *LanguageOfContentItemAndDescendants(ENGLISH),
            *device_observer(draft),
            *_sections(draft),
        ]
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


def _sections(draft: DraftReport) -> list[ContainerContentItem]:
    """TID 2002 sections with one text item each, only for text that is present."""
    wanted = [
        (FINDINGS_SECTION, FINDING, draft.findings),
        (IMPRESSIONS_SECTION, IMPRESSION, draft.impression),
    ]
    return [section(title, name, text) for title, name, text in wanted if text.strip()]


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
    """Copies the Patient, Patient Study and General Study attributes the source has."""
    for keyword in PATIENT_AND_STUDY_KEYWORDS:
        if keyword in source:
            target[keyword] = source[keyword]
