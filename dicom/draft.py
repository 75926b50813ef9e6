"""The draft report as plain data, its sign-off, and the deterministic UIDs of what is written.

The writers (SR, PDF, FHIR) take these dataclasses rather than model objects, so ``dicom/``
never imports ``model/``: whoever drafted the text fills in ``AlgorithmIdentity``, and the
service fills in ``Signature`` when a radiologist signs. ``ReportState`` says in each output's
own words how far a report is from final (WORKSPACE_NOTES §2: draft → preliminary, signed →
final).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from pydicom import config
from pydicom.uid import generate_uid
from pydicom.valuerep import validate_value

from dicom.errors import ReportInputError

if TYPE_CHECKING:
    from dicom.read import Study

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
# The words every output shows above an out-of-distribution draft (issue 30, item 4).
OOD_WARNING = "outside the model's training distribution — not reliable"
# report.json's trust keys, top level, as ``model.trust.Trust.to_json`` writes them.
TRUST_KEYS = (
    "finding_probabilities",
    "out_of_distribution",
    "ood_score",
    "ood_threshold",
    "consistency_flags",
    "critical_findings",
)


@dataclass(frozen=True)
class AlgorithmIdentity:
    """Which model wrote a draft, as IHE AIR's ContributingEquipmentSequence and TID 1004 ask.

    Attributes
    ----------
    name, version
        The model's name and version, e.g. ``"echocxr-dcd"`` and ``"0.3.0"``.
    manufacturer, model_name
        Who makes the software and its product name (Manufacturer, ManufacturerModelName).
    device_uid
        A UID identifying the software as a device (TID 1004 Device Observer UID).
    checkpoint_sha256
        Hash of the weights that wrote the draft, so a re-run with other weights is told apart.
    decoding
        The decoding engine and its options (e.g. ``"diffusion-onestep report_ngrams=false"``).
        The same weights write other text under another, so it is part of the derived UIDs (a
        SOP Instance UID never names two contents) and of the ContributionDescription.
    """

    name: str
    version: str
    manufacturer: str
    model_name: str
    device_uid: str
    checkpoint_sha256: str
    decoding: str = ""

    def __post_init__(self) -> None:
        for field_name in ("name", "version", "manufacturer", "model_name"):
            if not getattr(self, field_name).strip():
                raise ReportInputError(f"AlgorithmIdentity.{field_name} must not be empty")
        if not re.fullmatch(r"[0-9]+(\.[0-9]+)*", self.device_uid) or len(self.device_uid) > 64:
            raise ReportInputError(
                "AlgorithmIdentity.device_uid must be a DICOM UID (digits and dots, ≤ 64 chars)"
            )
        if not _SHA256.match(self.checkpoint_sha256):
            raise ReportInputError(
                "AlgorithmIdentity.checkpoint_sha256 must be 64 lowercase hex digits"
            )
        if len(self.decoding) > 512 or not self.decoding.isprintable():
            raise ReportInputError(
                "AlgorithmIdentity.decoding must be printable text of at most 512 characters"
            )

    @property
    def model_id(self) -> str:
        """Name and version, the model part of the deterministic UIDs."""
        return f"{self.name}/{self.version}"


@dataclass(frozen=True)
class DraftReport:
    """Findings and impression text written by ``algorithm``; at least one must be non-empty.

    ``trust`` holds the draft's trust signals as ``model.trust.Trust.to_json`` writes them (the
    keys of ``TRUST_KEYS``; ``dicom`` never imports ``model``), or None where the checkpoint
    ships no trust statistics, and for a signed version: the signals judge the model's text, not
    the radiologist's.
    """

    findings: str
    impression: str
    algorithm: AlgorithmIdentity
    trust: Mapping[str, Any] | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if not (self.findings.strip() or self.impression.strip()):
            raise ReportInputError("DraftReport needs findings or impression text; both are empty")
        missing = [key for key in TRUST_KEYS if self.trust is not None and key not in self.trust]
        if missing:
            raise ReportInputError(
                f"DraftReport.trust lacks {missing}: pass model.trust.Trust.to_json() or None"
            )

    @property
    def text(self) -> str:
        """The whole report as one text, sections labelled, as an audit or a reader reads it."""
        sections = (("FINDINGS", self.findings), ("IMPRESSION", self.impression))
        return "\n".join(f"{label}: {body.strip()}" for label, body in sections if body.strip())

    @property
    def probabilities(self) -> dict[str, float]:
        """The calibrated probability per observation, most likely first (none without trust)."""
        given = self.trust["finding_probabilities"] if self.trust else {}
        return dict(sorted(given.items(), key=lambda item: -float(item[1])))

    def ood_warning(self) -> str | None:
        return ood_warning(self.trust)

    def warnings(self) -> list[str]:
        return trust_warnings(self.trust)

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form, as written to ``report.json``: the trust keys at top level, each
        None when the draft carries no trust signals."""
        return {
            "findings": self.findings,
            "impression": self.impression,
            "algorithm": asdict(self.algorithm),
            "text": self.text,
            **trust_fields(self.trust),
        }


def trust_fields(trust: Mapping[str, Any] | None) -> dict[str, Any]:
    """The ``TRUST_KEYS`` of a trust document, each None without one: what report.json and the
    API show, so a reader always finds the keys and null says "not assessed"."""
    return {key: None if trust is None else trust[key] for key in TRUST_KEYS}


def ood_warning(trust: Mapping[str, Any] | None) -> str | None:
    """The out-of-distribution warning with its score, or None for an image like those the
    model was trained on (or a draft without trust signals)."""
    if not (trust and trust["out_of_distribution"]):
        return None
    score, threshold = float(trust["ood_score"]), float(trust["ood_threshold"])
    return (
        f"WARNING: the image lies {OOD_WARNING} (score {score:.2f} > threshold "
        f"{threshold:.2f}); read the study unaided."
    )


def trust_warnings(trust: Mapping[str, Any] | None) -> list[str]:
    """What a reader must see before the text, most serious first, one line each: the
    out-of-distribution warning, the critical findings, the contradictions (none without
    trust signals)."""
    if trust is None:
        return []
    ood = ood_warning(trust)
    lines = [ood] if ood else []
    if trust["critical_findings"]:
        lines.append(
            f"Suspected critical finding: {', '.join(trust['critical_findings'])}; "
            "confirm on the image and call it in."
        )
    return lines + [f"Inconsistent draft: {flag_text(flag)}" for flag in trust["consistency_flags"]]


def flag_text(flag: Mapping[str, Any]) -> str:
    """A consistency flag in words: 'Cardiomegaly: negated in the findings, asserted in the
    impression'."""
    return f"{flag['observation']}: {flag['detail']}"


@dataclass(frozen=True)
class Signature:
    """A radiologist's sign-off: who is accountable for the report's text, and since when.

    Attributes
    ----------
    name
        The radiologist as a DICOM person name, family name first (``"Curie^Marie"``); it
        becomes the SR's VerifyingObserverName and the FHIR Practitioner.
    organization
        The organisation the radiologist signs for (VerifyingOrganization, at most 64 characters).
    signed_at
        When the report was signed, with its time zone (VerificationDateTime; FHIR needs one).
    """

    name: str
    organization: str
    signed_at: datetime

    def __post_init__(self) -> None:
        # messages name the field, never its value: they may reach logs
        if not (_valid_as("PN", self.name) and _valid_as("LO", self.organization)):
            raise ReportInputError(
                "Signature.name must be a DICOM person name (at most 64 characters per "
                "component) and Signature.organization at most 64 characters, both printable "
                "and without backslash"
            )
        if not (self.name.strip(" ^=") and self.organization.strip()):
            raise ReportInputError("Signature.name and Signature.organization must not be empty")
        if self.signed_at.utcoffset() is None:
            raise ReportInputError("Signature.signed_at needs a time zone (e.g. datetime.now(UTC))")

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form, as written to ``report.json``."""
        return {
            "name": self.name,
            "organization": self.organization,
            "signed_at": self.signed_at.isoformat(),
        }


@dataclass(frozen=True)
class ReportState:
    """How far a report is from final, in the words of each output.

    Attributes
    ----------
    status
        report.json's ``status``: 'preliminary' or 'final'.
    completion_flag, verification_flag, preliminary_flag
        The SR's (0040,A491) CompletionFlag, (0040,A493) VerificationFlag and (0040,A496)
        PreliminaryFlag, also written to report.json.
    fhir_status
        DiagnosticReport.status: 'partial' for an unreviewed draft (``dicom.fhir`` says why),
        'final' once signed.
    """

    status: str
    completion_flag: str
    verification_flag: str
    preliminary_flag: str
    fhir_status: str

    def to_dict(self) -> dict[str, object]:
        """The fields report.json carries (FHIR's own status stays in the FHIR file)."""
        return {
            "status": self.status,
            "completion_flag": self.completion_flag,
            "verification_flag": self.verification_flag,
            "preliminary_flag": self.preliminary_flag,
        }


DRAFT = ReportState("preliminary", "PARTIAL", "UNVERIFIED", "PRELIMINARY", "partial")
SIGNED = ReportState("final", "COMPLETE", "VERIFIED", "FINAL", "final")


def report_state(signature: Signature | None) -> ReportState:
    """``SIGNED`` once a radiologist signed, else ``DRAFT``."""
    return DRAFT if signature is None else SIGNED


def _valid_as(vr: str, value: str) -> bool:
    """True for one printable value of ``vr`` (a backslash would make it several)."""
    if "\\" in value or not value.isprintable():
        return False
    try:
        validate_value(vr, value, config.RAISE)
    except ValueError:
        return False
    return True


def person_name_parts(name: str) -> tuple[str, str, str, str, str]:
    """Family, given, middle, prefix and suffix of a DICOM person name (PS3.5 6.2.1), from its
    first component group that holds a name (alphabetic, else ideographic, else phonetic)."""
    chosen = (person_name_groups(name) or [""])[0]
    family, given, middle, prefix, suffix = (chosen.split("^") + [""] * 5)[:5]
    return family, given, middle, prefix, suffix


def person_name_groups(name: str) -> list[str]:
    """The component groups of a person name that hold a name, in their order."""
    return [group for group in name.split("=") if group.strip("^ ")]


def derived_uid(
    study: Study,
    algorithm: AlgorithmIdentity,
    purpose: str,
    signature: Signature | None = None,
) -> str:
    """A UID fixed by (study, the frontal images it was read from, model id, checkpoint hash,
    decoding, purpose): a re-run on the same images replaces, not adds.

    The images are in it because one UID must name one content (PS3.5 9.1): a study that grew
    is drafted again, and a PACS keeps the first of two instances sharing a UID, so a second
    draft under the first one's UIDs would never reach the reader. ``purpose`` separates the
    objects of one draft (``"sr-series"``, ``"sr-instance"``, …). A signed version adds the
    signing time, so it is a new object beside the draft it replaces, and signing again (an
    addendum) makes another.
    """
    sources = [
        study.study_instance_uid,
        *sorted(image.sop_instance_uid for image in study.frontal_images),
        algorithm.model_id,
        algorithm.checkpoint_sha256,
        algorithm.decoding,
        purpose,
    ]
    if signature is not None:
        sources += ["signed", signature.signed_at.isoformat()]
    return str(generate_uid(entropy_srcs=sources))
