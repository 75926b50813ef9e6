"""The draft report as plain data, and the deterministic UIDs of the objects written from it.

The writers (SR, PDF, FHIR) take these dataclasses rather than model objects, so ``dicom/``
never imports ``model/``: whoever drafted the text fills in ``AlgorithmIdentity``.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

from pydicom.uid import generate_uid

from dicom.errors import ReportInputError

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


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
    """Findings and impression text written by ``algorithm``; at least one must be non-empty."""

    findings: str
    impression: str
    algorithm: AlgorithmIdentity

    def __post_init__(self) -> None:
        if not (self.findings.strip() or self.impression.strip()):
            raise ReportInputError("DraftReport needs findings or impression text; both are empty")

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form, as written to ``report.json``."""
        return asdict(self)


def derived_uid(study_instance_uid: str, algorithm: AlgorithmIdentity, purpose: str) -> str:
    """A UID fixed by (study, model id, checkpoint hash, decoding, purpose): a re-run replaces,
    not adds.

    ``purpose`` separates the objects of one draft (``"sr-series"``, ``"sr-instance"``, …).
    """
    sources = [
        study_instance_uid,
        algorithm.model_id,
        algorithm.checkpoint_sha256,
        algorithm.decoding,
        purpose,
    ]
    return str(generate_uid(entropy_srcs=sources))
