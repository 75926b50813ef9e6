"""De-identification by the PS3.15 Annex E Basic Profile, and the way back for the draft report.

Why our own table rather than ``deid``, ``dicognito`` or ``dicom-anonymizer``: a projection
radiograph carries a few dozen attributes that Table E.1-1 acts on, and the two options we need
(Retain Longitudinal Temporal Information with Full Dates, Retain Patient Characteristics) change
only a handful of them. A short table in this file can be read against the standard line by
line, its UIDs are pseudonymised with a keyed hash we control (so the re-identification map
can be rebuilt and checked), and it adds no dependency whose defaults could change under us.
Beyond the table, three blanket rules catch what a short table would miss: every private
element is removed, every overlay/curve group is removed, every PN value not listed is
removed, and every instance UID (any UI value that is not a registered well-known UID) is
replaced. Sequences are walked recursively.

The re-identification map (``ReidEntry``) holds the original Patient and Study attributes and
the UID mapping. ``ReidStore`` keeps it apart from the de-identified data, encrypted with
Fernet when a key is configured, so that ``reidentify_for_sr`` can put a draft back into the
original study.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from cryptography.fernet import Fernet, InvalidToken
from pydicom import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.sr.codedict import codes
from pydicom.uid import UID_dictionary, generate_uid

from dicom.bundle import OWNER_ONLY_MODE, write_atomically
from dicom.errors import ReidentificationError
from dicom.read import Study
from dicom.sr import PATIENT_AND_STUDY_KEYWORDS, copy_patient_and_study, patient_and_study

Action = Literal["X", "Z", "K"]

# Table E.1-1 Basic Profile actions for the attributes a CR/DX header carries (X remove,
# Z zero-length or dummy). UIDs (U) are handled by the blanket UID rule below.
BASIC_PROFILE: dict[str, Action] = {
    "PatientName": "Z",
    "PatientID": "Z",
    "IssuerOfPatientID": "X",
    "PatientBirthDate": "Z",
    "PatientBirthTime": "X",
    "PatientSex": "Z",
    "PatientAge": "X",
    "PatientSize": "X",
    "PatientWeight": "X",
    "EthnicGroup": "X",
    "SmokingStatus": "X",
    "PregnancyStatus": "X",
    "OtherPatientIDs": "X",
    "OtherPatientIDsSequence": "X",
    "OtherPatientNames": "X",
    "PatientAddress": "X",
    "PatientTelephoneNumbers": "X",
    "PatientMotherBirthName": "X",
    "MedicalRecordLocator": "X",
    "Occupation": "X",
    "AdditionalPatientHistory": "X",
    "PatientComments": "X",
    "AccessionNumber": "Z",
    "StudyID": "Z",
    "StudyDate": "Z",
    "StudyTime": "Z",
    "SeriesDate": "X",
    "SeriesTime": "X",
    "AcquisitionDate": "X",
    "AcquisitionTime": "X",
    "AcquisitionDateTime": "X",
    "ContentDate": "Z",
    "ContentTime": "Z",
    "InstanceCreationDate": "X",
    "InstanceCreationTime": "X",
    "ReferringPhysicianName": "Z",
    "PerformingPhysicianName": "X",
    "OperatorsName": "X",
    "PhysiciansOfRecord": "X",
    "NameOfPhysiciansReadingStudy": "X",
    "RequestingPhysician": "X",
    "InstitutionName": "X",
    "InstitutionAddress": "X",
    "InstitutionalDepartmentName": "X",
    "StationName": "X",
    "DeviceSerialNumber": "X",
    "StudyDescription": "X",
    "SeriesDescription": "X",
    "ProtocolName": "X",
    "ImageComments": "X",
    "DerivationDescription": "X",
    "RequestAttributesSequence": "X",
    "RequestedProcedureDescription": "X",
    "PerformedProcedureStepDescription": "X",
    "PerformedProcedureStepID": "X",
    "PerformedProcedureStepStartDate": "X",
    "PerformedProcedureStepStartTime": "X",
    "ReferencedStudySequence": "X",
    "ReferencedPatientSequence": "X",
    "ReferencedPerformedProcedureStepSequence": "X",
    "AdmissionID": "X",
    "ScheduledProcedureStepID": "X",
    "ContentSequence": "X",
}
PATIENT_CHARACTERISTICS = frozenset(
    {
        "PatientSex",
        "PatientAge",
        "PatientSize",
        "PatientWeight",
        "EthnicGroup",
        "SmokingStatus",
        "PregnancyStatus",
    }
)
TEMPORAL = frozenset(
    {keyword for keyword in BASIC_PROFILE if keyword.endswith(("Date", "Time", "DateTime"))}
    - {"PatientBirthDate", "PatientBirthTime"}
)


@dataclass(frozen=True)
class DeidOptions:
    """Which Annex E options apply on top of the Basic Profile.

    Attributes
    ----------
    retain_dates
        Retain Longitudinal Temporal Information with Full Dates Option (113106): study,
        series and acquisition dates and times are kept (a draft may compare with priors).
    retain_patient_characteristics
        Retain Patient Characteristics Option (113108): sex, age, size, weight and the like are
        kept, since the findings of a chest film depend on them.
    """

    retain_dates: bool = True
    retain_patient_characteristics: bool = True


@dataclass(frozen=True)
class ReidEntry:
    """What ``deidentify`` removed from one instance that the report needs back.

    Attributes
    ----------
    pseudonymous_study_uid
        The StudyInstanceUID of the de-identified study (the map's key).
    patient_and_study
        The original Patient and Study attributes, as DICOM JSON.
    uid_map
        Pseudonymous UID → original UID, for every UID replaced.
    """

    pseudonymous_study_uid: str
    patient_and_study: dict[str, object]
    uid_map: dict[str, str] = field(default_factory=dict)

    def merged(self, other: ReidEntry) -> ReidEntry:
        """The map of two instances of one study (same key), UIDs pooled."""
        if other.pseudonymous_study_uid != self.pseudonymous_study_uid:
            raise ReidentificationError("re-identification maps of two studies cannot be merged")
        return ReidEntry(
            self.pseudonymous_study_uid, self.patient_and_study, {**self.uid_map, **other.uid_map}
        )


def pseudonymous_uid(original: str, uid_salt: bytes) -> str:
    """A UID fixed by (salt, original): the same within and across a study, unguessable without
    the salt, so related instances stay related and nobody can reverse it by trying UIDs."""
    return str(generate_uid(entropy_srcs=[uid_salt.hex(), original]))


def deidentify(
    dataset: Dataset, *, options: DeidOptions | None = None, uid_salt: bytes
) -> tuple[Dataset, ReidEntry]:
    """A de-identified copy of ``dataset`` and the entry that reverses it for the report.

    Raises
    ------
    ReidentificationError
        When ``uid_salt`` is shorter than 16 bytes (pseudonyms could then be brute-forced).
    """
    if len(uid_salt) < 16:
        raise ReidentificationError("uid_salt must be at least 16 random bytes")
    options = options or DeidOptions()
    original = _patient_and_study(dataset)
    result = copy.deepcopy(dataset)
    result.file_meta = FileMetaDataset(getattr(result, "file_meta", Dataset()))
    uid_map: dict[str, str] = {}
    _apply_profile(result, _actions(options))
    _clean_recursively(result, uid_salt, uid_map)
    _replace_uids(result.file_meta, uid_salt, uid_map)
    _mark_deidentified(result, options)
    entry = ReidEntry(str(result.StudyInstanceUID), original, uid_map)
    return result, entry


def _actions(options: DeidOptions) -> dict[str, Action]:
    """The Basic Profile table with the chosen options' K (keep) actions applied."""
    actions = dict(BASIC_PROFILE)
    kept = (PATIENT_CHARACTERISTICS if options.retain_patient_characteristics else set()) | (
        TEMPORAL if options.retain_dates else set()
    )
    for keyword in kept:
        actions[keyword] = "K"
    return actions


def _patient_and_study(ds: Dataset) -> dict[str, object]:
    """The attributes the SR copies, as DICOM JSON, taken before anything is removed."""
    subset = Dataset()
    for keyword in PATIENT_AND_STUDY_KEYWORDS:
        if keyword in ds:
            subset[keyword] = ds[keyword]
    return subset.to_json_dict()


def _apply_profile(ds: Dataset, actions: dict[str, Action]) -> None:
    """X removes, Z empties (type 2 attributes stay present), K keeps."""
    for keyword, action in actions.items():
        if keyword not in ds or action == "K":
            continue
        if action == "X":
            delattr(ds, keyword)
        else:
            ds[keyword].value = "" if ds[keyword].VR != "SQ" else Sequence()


def _clean_recursively(ds: Dataset, uid_salt: bytes, uid_map: dict[str, str]) -> None:
    """Blanket rules: private tags, overlay/curve groups and person names out, UIDs replaced."""
    ds.remove_private_tags()
    for element in list(ds):
        group = element.tag.group
        if (
            0x5000 <= group <= 0x50FF
            or 0x6000 <= group <= 0x60FF
            or (element.VR == "PN" and element.keyword not in BASIC_PROFILE and element.value)
        ):
            del ds[element.tag]
        elif element.VR == "SQ":
            for item in element.value:
                _clean_recursively(item, uid_salt, uid_map)
    _replace_uids(ds, uid_salt, uid_map)


def _replace_uids(ds: Dataset, uid_salt: bytes, uid_map: dict[str, str]) -> None:
    """Replaces every instance UID (UI values that are not registered well-known UIDs)."""
    for element in ds:
        if element.VR != "UI" or not element.value:
            continue
        values = element.value if isinstance(element.value, list) else [element.value]
        if all(str(v) in UID_dictionary for v in values):
            continue
        replaced = [_pseudonym(str(v), uid_salt, uid_map) for v in values]
        element.value = replaced if len(replaced) > 1 else replaced[0]


def _pseudonym(original: str, uid_salt: bytes, uid_map: dict[str, str]) -> str:
    if original in UID_dictionary:
        return original
    pseudonym = pseudonymous_uid(original, uid_salt)
    uid_map[pseudonym] = original
    return pseudonym


def _mark_deidentified(ds: Dataset, options: DeidOptions) -> None:
    """PatientIdentityRemoved and the method codes PS3.3 C.12.1.1.3 asks for."""
    ds.PatientIdentityRemoved = "YES"
    used = [codes.DCM.BasicApplicationConfidentialityProfile]
    if options.retain_dates:
        used.append(codes.DCM.RetainLongitudinalTemporalInformationFullDatesOption)
    if options.retain_patient_characteristics:
        used.append(codes.DCM.RetainPatientCharacteristicsOption)
    ds.DeidentificationMethod = "PS3.15 Annex E Basic Profile (EchoCXR table)"
    ds.DeidentificationMethodCodeSequence = Sequence([_code_item(code) for code in used])
    ds.LongitudinalTemporalInformationModified = "UNMODIFIED" if options.retain_dates else "REMOVED"


def _code_item(code: object) -> Dataset:
    item = Dataset()
    item.CodeValue = code.value  # type: ignore[attr-defined]
    item.CodingSchemeDesignator = code.scheme_designator  # type: ignore[attr-defined]
    item.CodeMeaning = code.meaning  # type: ignore[attr-defined]
    return item


def reidentify_for_sr(sr: Dataset, entry: ReidEntry) -> Dataset:
    """A copy of a draft written for the de-identified study, put back into the original one.

    Patient and Study attributes are restored from ``entry`` (in the valid form the SR writer
    gives them, ``dicom.sr.patient_and_study``); every pseudonymous UID it
    references (study, series, source images in the evidence) becomes the original again;
    the SR's own SOP and Series UIDs are re-derived from the original study, so a re-run
    still replaces rather than duplicates.

    Raises
    ------
    ReidentificationError
        When the SR does not belong to the study the entry describes.
    """
    if str(sr.get("StudyInstanceUID", "")) != entry.pseudonymous_study_uid:
        raise ReidentificationError(
            "(0020,000D) StudyInstanceUID of the SR is not the de-identified study of this "
            "re-identification map; use the map made for that study"
        )
    result = copy.deepcopy(sr)
    own = {str(sr.SOPInstanceUID), str(sr.SeriesInstanceUID)}
    reverse = {**entry.uid_map, **{uid: _rederived(uid, entry) for uid in own}}
    _restore_uids(result, reverse)
    _restore_uids(result.file_meta, reverse)
    copy_patient_and_study(patient_and_study(Dataset.from_json(entry.patient_and_study)), result)
    return result


def reidentify_study(study: Study, entry: ReidEntry) -> Study:
    """The de-identified study the model saw, with its original identifiers and UIDs back.

    A report written for the result (``write_report_bundle``) belongs to the original study in
    all four files: the SR and PDF carry the original Patient and Study modules and cite the
    original images, the PDF prints the original name, ID and accession number, and FHIR and
    report.json name the original study. This is the PDF's way back, as ``reidentify_for_sr`` is
    the SR's; the SR written this way takes UIDs derived from the original study and the model,
    not those ``reidentify_for_sr`` gives, so use one way per deployment.

    Raises
    ------
    ReidentificationError
        When the study is not the de-identified study the entry describes.
    """
    if study.study_instance_uid != entry.pseudonymous_study_uid:
        raise ReidentificationError(
            "(0020,000D) StudyInstanceUID of the study is not the de-identified study of this "
            "re-identification map; use the map made for that study"
        )
    original = entry.uid_map.get
    images = [
        replace(
            image,
            sop_instance_uid=original(image.sop_instance_uid, image.sop_instance_uid),
            series_instance_uid=original(image.series_instance_uid, image.series_instance_uid),
            dataset=_reidentified_header(image.dataset, entry),
        )
        for image in study.frontal_images
    ]
    series = tuple(
        replace(
            item,
            series_instance_uid=original(item.series_instance_uid, item.series_instance_uid),
            sop_instance_uids=tuple(original(uid, uid) for uid in item.sop_instance_uids),
        )
        for item in study.series
    )
    set_aside = [
        replace(item, sop_instance_uid=original(item.sop_instance_uid, item.sop_instance_uid))
        for item in study.set_aside
    ]
    study_uid = original(study.study_instance_uid, study.study_instance_uid)
    return Study(study_uid, series, images, set_aside)


def _reidentified_header(header: Dataset, entry: ReidEntry) -> Dataset:
    """A copy of an image header with the original UIDs and Patient and Study attributes."""
    result = copy.deepcopy(header)
    _restore_uids(result, entry.uid_map)
    _restore_uids(result.file_meta, entry.uid_map)
    for element in Dataset.from_json(entry.patient_and_study):
        result[element.tag] = element
    return result


def _rederived(pseudonymous: str, entry: ReidEntry) -> str:
    original_study = entry.uid_map.get(entry.pseudonymous_study_uid, entry.pseudonymous_study_uid)
    return str(generate_uid(entropy_srcs=[original_study, pseudonymous]))


def _restore_uids(ds: Dataset, reverse: dict[str, str]) -> None:
    for element in ds:
        if element.VR == "SQ":
            for item in element.value:
                _restore_uids(item, reverse)
        elif element.VR == "UI" and isinstance(element.value, str) and element.value in reverse:
            element.value = reverse[element.value]


class ReidStore:
    """Re-identification maps in their own folder, one file per study, Fernet-encrypted with a key.

    Parameters
    ----------
    folder
        Where the maps live; keep it apart from the de-identified data.
    key
        A Fernet key (``Fernet.generate_key()``); without one the maps are plain JSON, which
        suits tests and single-user set-ups only.
    """

    def __init__(self, folder: Path, key: bytes | None = None) -> None:
        self.folder = folder
        self._fernet = Fernet(key) if key else None

    def save(self, entry: ReidEntry) -> Path:
        """Writes (atomically) the map of one study, replacing an older one."""
        self.folder.mkdir(parents=True, exist_ok=True)
        payload = json.dumps(entry.__dict__).encode("utf-8")
        if self._fernet:
            payload = self._fernet.encrypt(payload)
        # the map links pseudonyms to patients: readable by its owner only
        return write_atomically(
            self._path(entry.pseudonymous_study_uid), payload, mode=OWNER_ONLY_MODE
        )

    def load(self, pseudonymous_study_uid: str) -> ReidEntry:
        """The map of one study.

        Raises
        ------
        ReidentificationError
            When there is no map, or it was written with another key or is corrupt.
        """
        path = self._path(pseudonymous_study_uid)
        if not path.is_file():
            raise ReidentificationError(
                "no re-identification map for this de-identified study; the draft cannot be "
                "returned to the original study"
            )
        payload = path.read_bytes()
        try:
            data = json.loads(self._fernet.decrypt(payload) if self._fernet else payload)
        except (InvalidToken, ValueError) as error:
            raise ReidentificationError(
                "the re-identification map cannot be read: it was written with another key, "
                "without a key, or is corrupt; configure the key it was written with"
            ) from error
        return ReidEntry(**data)

    def _path(self, study_uid: str) -> Path:
        return self.folder / f"{study_uid}.reid"
