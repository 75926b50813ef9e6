"""Ground truth for one phantom study: who, what was seen, how it was acquired.

Everything here is drawn from seeded generators, so ``sample_case(seed, index)`` is a pure
function: the same pair always gives the same case, on any machine. Patients own two studies
each (consecutive indices), and the train/val/test split is drawn per patient, so no patient
leaks across splits.

The findings are drawn from clinical *scenarios* (normal outpatient, ICU, heart failure...)
rather than independently, because real in-patient films are correlated: devices come with
effusions and atelectasis, cardiomegaly with edema. A uniform, independent draw would teach a
model priors no real archive has.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

Split = Literal["train", "val", "test"]
SPLIT_FRACTIONS: tuple[tuple[Split, float], ...] = (("train", 0.8), ("val", 0.1), ("test", 0.1))
STUDIES_PER_PATIENT = 2

Side = Literal["right", "left"]
Laterality = Literal["right", "left", "bilateral"]
Zone = Literal["upper", "middle", "lower"]
Certainty = Literal["present", "uncertain"]


@dataclass(frozen=True)
class Finding:
    """One abnormality, described the way a radiologist (or a Q&A generator) would ask about it.

    Only the attributes that apply to ``kind`` are set; the others stay ``None``. Geometry
    (``center``, in the body frame used by the renderer) is kept here so the image and the
    report are drawn from the same numbers.
    """

    kind: str
    certainty: Certainty = "present"
    laterality: Laterality | None = None
    zone: Zone | None = None
    severity: str | None = None
    size_mm: float | None = None
    lesion_type: str | None = None
    ctr: float | None = None
    device: str | None = None
    tip_position: str | None = None
    tip_to_carina_cm: float | None = None
    rib: int | None = None
    center: tuple[float, float] | None = None


@dataclass(frozen=True)
class Anatomy:
    """Patient-level body habitus, in the renderer's body frame (see ``render.py``).

    ``half_width_mm`` and ``height_mm`` tie the body frame to millimetres, which is how a
    lesion's ``size_mm`` becomes pixels at any PixelSpacing.
    """

    half_width_mm: float
    height_mm: float
    ctr: float
    mediastinum_half_width: float
    right_dome: float
    left_dome: float
    rib_phase: float
    breast_shadows: bool
    texture: int


@dataclass(frozen=True)
class Acquisition:
    """How the film was taken and how its DICOM file is written."""

    view: Literal["PA", "AP"]
    modality: Literal["CR", "DX"]
    patient_position: Literal["erect", "semi-erect", "supine"]
    kvp: float
    mas: float
    noise: float
    rotation_deg: float
    offset: tuple[float, float]
    collimation: tuple[float, float, float, float]
    rows: int
    columns: int
    pixel_spacing_mm: float
    bits_stored: int
    photometric: Literal["MONOCHROME1", "MONOCHROME2"]
    voi: Literal["window", "lut"]
    transfer_syntax: str
    marker: Literal["L", "R"]


@dataclass(frozen=True)
class Identity:
    """Fake but plausible identifying data, present only so de-identification can be tested."""

    patient_name: str
    birth_date: str
    sex: Literal["F", "M"]
    age: int
    accession: str
    institution: str
    referring_physician: str
    study_date: str
    study_time: str


@dataclass(frozen=True)
class Report:
    """A FINDINGS / IMPRESSION report in one of two styles."""

    findings: str
    impression: str
    style: Literal["normalized", "exception"]

    @property
    def text(self) -> str:
        """The report as a radiologist would sign it."""
        return f"FINDINGS: {self.findings}\nIMPRESSION: {self.impression}"


@dataclass(frozen=True)
class PhantomCase:
    """Ground truth for one study: labels, findings, acquisition, report, fake identity."""

    seed: int
    index: int
    study_id: str
    patient_id: str
    split: Split
    scenario: str
    identity: Identity
    anatomy: Anatomy
    acquisition: Acquisition
    findings: tuple[Finding, ...]
    labels: dict[str, int | None] = field(hash=False)
    report: Report

    def findings_of(self, kind: str) -> tuple[Finding, ...]:
        """The findings of one kind, e.g. ``case.findings_of("effusion")``."""
        return tuple(f for f in self.findings if f.kind == kind)


def rng_for(seed: int, *stream: int) -> np.random.Generator:
    """A generator for one named stream, independent of every other stream."""
    return np.random.default_rng([seed, *stream])


def patient_number(index: int) -> int:
    """Consecutive study indices belong to the same patient (follow-up films)."""
    return index // STUDIES_PER_PATIENT


def split_of(seed: int, index: int) -> Split:
    """The split of a study, drawn once per patient so no patient crosses splits."""
    digest = hashlib.sha256(f"{seed}:{patient_number(index)}:split".encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2**64
    cumulative = 0.0
    for name, fraction in SPLIT_FRACTIONS:
        cumulative += fraction
        if u < cumulative:
            return name
    return SPLIT_FRACTIONS[-1][0]
