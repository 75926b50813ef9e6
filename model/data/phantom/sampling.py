"""Draw a ``PhantomCase``: scenario, findings, anatomy, acquisition, identity, report.

Three seeded streams keep the draws independent: stream 0 is the patient (habitus, scenario,
identity, the same for both of their studies), stream 1 the study (findings, acquisition),
stream 2 the report wording. Changing the report grammar therefore never changes an image.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Literal

import numpy as np

from model.data.phantom.cases import (
    SPLIT_FRACTIONS,
    Acquisition,
    Anatomy,
    Finding,
    Identity,
    Laterality,
    PhantomCase,
    Side,
    patient_number,
    rng_for,
    split_of,
)
from model.data.phantom.report import compose_report

PATIENT_STREAM, STUDY_STREAM, REPORT_STREAM = 0, 1, 2
SPLIT_NAMES = tuple(name for name, _ in SPLIT_FRACTIONS)

# Scenario prior of an in-patient chest X-ray archive (roughly: a third normal, many portable
# ICU films). Per scenario, the probability of each finding kind.
SCENARIOS: dict[str, float] = {
    "normal": 0.30,
    "icu": 0.17,
    "heart_failure": 0.12,
    "infection": 0.15,
    "oncology": 0.08,
    "trauma": 0.06,
    "postop": 0.12,
}
FINDING_RATES: dict[str, dict[str, float]] = {
    "normal": {},
    "icu": {
        "device": 0.9,
        "effusion": 0.45,
        "atelectasis": 0.45,
        "edema": 0.25,
        "opacity": 0.25,
        "cardiomegaly": 0.25,
        "pneumothorax": 0.08,
        "consolidation": 0.15,
        "widened_mediastinum": 0.1,
    },
    "heart_failure": {
        "cardiomegaly": 0.85,
        "edema": 0.7,
        "effusion": 0.6,
        "device": 0.3,
        "widened_mediastinum": 0.15,
        "atelectasis": 0.2,
    },
    "infection": {
        "pneumonia": 0.8,
        "opacity": 0.35,
        "consolidation": 0.2,
        "effusion": 0.25,
        "atelectasis": 0.15,
    },
    "oncology": {
        "lesion": 0.9,
        "effusion": 0.35,
        "device": 0.3,
        "pleural_thickening": 0.2,
        "widened_mediastinum": 0.2,
        "atelectasis": 0.15,
    },
    "trauma": {
        "fracture": 0.85,
        "pneumothorax": 0.35,
        "opacity": 0.3,
        "effusion": 0.2,
        "widened_mediastinum": 0.15,
        "device": 0.25,
    },
    "postop": {
        "device": 0.7,
        "atelectasis": 0.55,
        "effusion": 0.35,
        "pneumothorax": 0.15,
        "pleural_thickening": 0.12,
        "cardiomegaly": 0.2,
    },
}
# Of the present findings, the share a radiologist would hedge on (label -1).
UNCERTAIN_RATE: dict[str, float] = {
    "pneumonia": 0.3,
    "consolidation": 0.2,
    "atelectasis": 0.2,
    "edema": 0.2,
    "effusion": 0.12,
    "pneumothorax": 0.12,
    "cardiomegaly": 0.15,
}
DEVICE_RATES: dict[str, float] = {
    "endotracheal tube": 0.55,
    "central venous catheter": 0.6,
    "nasogastric tube": 0.45,
    "pacemaker": 0.2,
}
ZONES = ("upper", "middle", "lower")
SIDES: tuple[Side, ...] = ("right", "left")
FIRST_NAMES_F = ("Alma", "Berit", "Carla", "Dana", "Edith", "Freya", "Greta", "Hanna", "Ines")
FIRST_NAMES_M = ("Anton", "Bruno", "Cyril", "Dario", "Emil", "Felix", "Gustav", "Hugo", "Ivan")
LAST_NAMES = (
    "Ashdown",
    "Brekke",
    "Calloway",
    "Dunmore",
    "Elsworth",
    "Fairholm",
    "Garrick",
    "Holloway",
    "Iversen",
    "Jarrow",
    "Kettering",
    "Lindqvist",
    "Marlow",
    "Norcross",
)
INSTITUTIONS = (
    "Phantom General Hospital",
    "Synthetic Valley Medical Center",
    "Mock County Infirmary",
)
TRANSFER_SYNTAXES = (
    "1.2.840.10008.1.2.1",  # explicit VR little endian
    "1.2.840.10008.1.2.5",  # RLE lossless
    "1.2.840.10008.1.2.4.80",  # JPEG-LS lossless
    "1.2.840.10008.1.2.4.90",  # JPEG 2000 lossless
    "1.2.840.10008.1.2.4.70",  # JPEG lossless, process 14 SV1
)


def sample_case(seed: int, index: int) -> PhantomCase:
    """Deterministic ground truth for study ``index`` of the data set drawn with ``seed``.

    Raises
    ------
    ValueError
        If ``seed`` or ``index`` is negative (numpy's seed sequences reject them).
    """
    if seed < 0 or index < 0:
        raise ValueError(f"seed and index must be >= 0, got seed={seed}, index={index}")
    patient_rng = rng_for(seed, patient_number(index), PATIENT_STREAM)
    study_rng = rng_for(seed, index, STUDY_STREAM)
    identity = _draw_identity(patient_rng, index)
    anatomy = _draw_anatomy(patient_rng, identity.sex)
    scenario = _draw_scenario(patient_rng, study_rng, index)
    findings = _draw_findings(study_rng, scenario, anatomy)
    acquisition = _draw_acquisition(study_rng, scenario, findings)
    report, labels = compose_report(findings, acquisition.view, rng_for(seed, index, REPORT_STREAM))
    return PhantomCase(
        seed=seed,
        index=index,
        study_id=f"S{seed:04d}-{index:07d}",
        patient_id=f"P{seed:04d}-{patient_number(index):06d}",
        split=split_of(seed, index),
        scenario=scenario,
        identity=identity,
        anatomy=anatomy,
        acquisition=acquisition,
        findings=findings,
        labels=labels,
        report=report,
    )


def iter_cases(seed: int, n: int, split: str | None = None) -> Iterator[PhantomCase]:
    """The first ``n`` cases of the data set (of ``split`` only, when given), in index order.

    Raises
    ------
    ValueError
        If ``split`` is not one of "train", "val", "test" (or None for all).
    """
    if split is not None and split not in SPLIT_NAMES:
        raise ValueError(f"split must be one of {SPLIT_NAMES} or None, got {split!r}")
    index, produced = 0, 0
    while produced < n:
        if split is None or split_of(seed, index) == split:
            yield sample_case(seed, index)
            produced += 1
        index += 1


def _draw_identity(rng: np.random.Generator, index: int) -> Identity:
    sex: Literal["F", "M"] = "F" if rng.random() < 0.48 else "M"
    first = rng.choice(FIRST_NAMES_F if sex == "F" else FIRST_NAMES_M)
    age = int(np.clip(rng.normal(62, 16), 19, 95))
    year = 2024 - age
    follow_up_days = int(rng.integers(1, 40)) * (index % 2)
    day = np.datetime64("2024-01-01") + int(rng.integers(0, 300)) + follow_up_days
    hour, minute = int(rng.integers(0, 24)), int(rng.integers(0, 60))
    return Identity(
        patient_name=f"{rng.choice(LAST_NAMES)}^{first}",
        birth_date=f"{year}{int(rng.integers(1, 13)):02d}{int(rng.integers(1, 29)):02d}",
        sex=sex,
        age=age,
        accession=f"AC{int(rng.integers(10**7, 10**8))}{index % 2}",
        institution=str(rng.choice(INSTITUTIONS)),
        referring_physician=f"{rng.choice(LAST_NAMES)}^{rng.choice(FIRST_NAMES_M)}",
        study_date=str(day).replace("-", ""),
        study_time=f"{hour:02d}{minute:02d}00",
    )


def _draw_anatomy(rng: np.random.Generator, sex: str) -> Anatomy:
    right_dome = float(rng.uniform(0.74, 0.82))
    return Anatomy(
        half_width_mm=float(rng.uniform(128, 165) * (0.93 if sex == "F" else 1.0)),
        height_mm=float(rng.uniform(250, 300)),
        ctr=float(rng.uniform(0.40, 0.48)),
        mediastinum_half_width=float(rng.uniform(0.14, 0.18)),
        right_dome=right_dome,
        left_dome=right_dome + float(rng.uniform(0.02, 0.06)),
        rib_phase=float(rng.uniform(-0.2, 0.2)),
        breast_shadows=sex == "F" and rng.random() < 0.7,
        texture=int(rng.integers(0, 8)),
    )


def _draw_scenario(
    patient_rng: np.random.Generator, study_rng: np.random.Generator, index: int
) -> str:
    names = list(SCENARIOS)
    probabilities = np.array(list(SCENARIOS.values()))
    patient_scenario = str(patient_rng.choice(names, p=probabilities / probabilities.sum()))
    # The follow-up film is usually the same clinical picture; sometimes it has resolved.
    if index % 2 == 1 and study_rng.random() < 0.25:
        return "normal"
    return patient_scenario


def _draw_findings(
    rng: np.random.Generator, scenario: str, anatomy: Anatomy
) -> tuple[Finding, ...]:
    findings: list[Finding] = []
    for kind, rate in FINDING_RATES[scenario].items():
        if rng.random() < rate:
            findings.extend(FINDING_DRAWERS[kind](rng, anatomy))
    return tuple(findings)


def _certainty(rng: np.random.Generator, kind: str) -> Any:
    return "uncertain" if rng.random() < UNCERTAIN_RATE.get(kind, 0.0) else "present"


def _side(rng: np.random.Generator) -> Any:
    return SIDES[int(rng.integers(0, 2))]


def _graded(
    rng: np.random.Generator, certainty: str, grades: tuple[str, ...], p: tuple[float, ...]
) -> str:
    """A severity grade; hedged findings are always the mildest grade (they are subtle)."""
    return grades[0] if certainty == "uncertain" else str(rng.choice(grades, p=p))


def _laterality(rng: np.random.Generator, unilateral_share: float) -> Laterality:
    return _side(rng) if rng.random() < unilateral_share else "bilateral"


def _zone(rng: np.random.Generator, weights: tuple[float, float, float]) -> Any:
    return ZONES[int(rng.choice(3, p=np.array(weights) / sum(weights)))]


def _cardiomegaly(rng: np.random.Generator, anatomy: Anatomy) -> list[Finding]:
    certainty = _certainty(rng, "cardiomegaly")
    if certainty == "uncertain":
        return [
            Finding(
                "cardiomegaly",
                certainty,
                severity="borderline",
                ctr=round(float(rng.uniform(0.52, 0.55)), 3),
            )
        ]
    ctr = float(rng.uniform(0.56, 0.72))
    severity = "mild" if ctr < 0.6 else "moderate" if ctr < 0.66 else "severe"
    return [Finding("cardiomegaly", certainty, severity=severity, ctr=round(ctr, 3))]


def _widened_mediastinum(rng: np.random.Generator, anatomy: Anatomy) -> list[Finding]:
    severity = "mild" if rng.random() < 0.6 else "marked"
    return [Finding("widened_mediastinum", severity=severity)]


def _opacity(rng: np.random.Generator, anatomy: Anatomy) -> list[Finding]:
    side = _laterality(rng, 0.8)
    return [
        Finding(
            "opacity",
            laterality=side,
            zone=_zone(rng, (1, 2, 3)),
            severity="mild" if rng.random() < 0.5 else "moderate",
        )
    ]


def _lesion(rng: np.random.Generator, anatomy: Anatomy) -> list[Finding]:
    size = float(rng.uniform(12, 30) if rng.random() < 0.6 else rng.uniform(32, 65))
    zone = _zone(rng, (3, 2, 1.5))
    side = _side(rng)
    y = {"upper": 0.25, "middle": 0.47, "lower": 0.64}[zone] + float(rng.uniform(-0.05, 0.05))
    x = float(rng.uniform(0.45, 0.68)) * (-1 if side == "right" else 1)
    return [
        Finding(
            "lesion",
            laterality=side,
            zone=zone,
            size_mm=round(size, 1),
            lesion_type="nodule" if size <= 30 else "mass",
            center=(x, y),
        )
    ]


def _edema(rng: np.random.Generator, anatomy: Anatomy) -> list[Finding]:
    certainty = _certainty(rng, "edema")
    severity = _graded(rng, certainty, ("mild", "moderate", "severe"), (0.4, 0.4, 0.2))
    return [Finding("edema", certainty, laterality="bilateral", severity=severity)]


def _consolidation(rng: np.random.Generator, anatomy: Anatomy) -> list[Finding]:
    side = _laterality(rng, 0.75)
    return [
        Finding("consolidation", _certainty(rng, "consolidation"), laterality=side, zone="lower")
    ]


def _pneumonia(rng: np.random.Generator, anatomy: Anatomy) -> list[Finding]:
    return [
        Finding(
            "pneumonia",
            _certainty(rng, "pneumonia"),
            laterality=_side(rng),
            zone=_zone(rng, (1, 1, 2)),
        )
    ]


def _atelectasis(rng: np.random.Generator, anatomy: Anatomy) -> list[Finding]:
    side = _laterality(rng, 0.7)
    return [
        Finding(
            "atelectasis",
            _certainty(rng, "atelectasis"),
            laterality=side,
            zone="lower",
            severity="plate-like" if rng.random() < 0.6 else "subsegmental",
        )
    ]


def _pneumothorax(rng: np.random.Generator, anatomy: Anatomy) -> list[Finding]:
    certainty = _certainty(rng, "pneumothorax")
    severity = _graded(rng, certainty, ("small", "moderate", "large"), (0.45, 0.35, 0.2))
    return [
        Finding("pneumothorax", certainty, laterality=_side(rng), zone="upper", severity=severity)
    ]


def _effusion(rng: np.random.Generator, anatomy: Anatomy) -> list[Finding]:
    certainty = _certainty(rng, "effusion")
    both = rng.random() < 0.35 and certainty == "present"
    sides: tuple[Side, ...] = SIDES if both else (_side(rng),)
    findings = []
    for side in sides:
        severity = (
            "small"
            if certainty == "uncertain"
            else str(rng.choice(("small", "moderate", "large"), p=(0.45, 0.4, 0.15)))
        )
        findings.append(
            Finding("effusion", certainty, laterality=side, zone="lower", severity=severity)
        )
    return findings


def _pleural_thickening(rng: np.random.Generator, anatomy: Anatomy) -> list[Finding]:
    return [
        Finding(
            "pleural_thickening",
            laterality=_side(rng),
            zone="upper" if rng.random() < 0.5 else "middle",
        )
    ]


def _fracture(rng: np.random.Generator, anatomy: Anatomy) -> list[Finding]:
    side = _side(rng)
    count = 1 if rng.random() < 0.6 else 2
    first = int(rng.integers(4, 8))
    return [
        Finding(
            "fracture",
            laterality=side,
            rib=first + i,
            zone="middle" if first + i < 7 else "lower",
            severity="displaced" if rng.random() < 0.5 else "nondisplaced",
        )
        for i in range(count)
    ]


def _devices(rng: np.random.Generator, anatomy: Anatomy) -> list[Finding]:
    chosen = [name for name, rate in DEVICE_RATES.items() if rng.random() < rate]
    if not chosen:
        chosen = ["central venous catheter"]
    return [_device(rng, name) for name in chosen]


def _device(rng: np.random.Generator, name: str) -> Finding:
    if name == "endotracheal tube":
        distance = round(float(rng.uniform(0.8, 7.5)), 1)
        position = "low" if distance < 2.0 else "high" if distance > 6.5 else "appropriate"
        return Finding("device", device=name, tip_position=position, tip_to_carina_cm=distance)
    if name == "central venous catheter":
        side = _side(rng)
        tip = str(
            rng.choice(
                ("superior vena cava", "cavoatrial junction", "right atrium"), p=(0.5, 0.35, 0.15)
            )
        )
        return Finding("device", device=name, laterality=side, tip_position=tip)
    if name == "nasogastric tube":
        tip = "stomach" if rng.random() < 0.85 else "distal esophagus"
        return Finding("device", device=name, tip_position=tip)
    return Finding("device", device=name, laterality="left", tip_position="right ventricle")


FINDING_DRAWERS = {
    "cardiomegaly": _cardiomegaly,
    "widened_mediastinum": _widened_mediastinum,
    "opacity": _opacity,
    "lesion": _lesion,
    "edema": _edema,
    "consolidation": _consolidation,
    "pneumonia": _pneumonia,
    "atelectasis": _atelectasis,
    "pneumothorax": _pneumothorax,
    "effusion": _effusion,
    "pleural_thickening": _pleural_thickening,
    "fracture": _fracture,
    "device": _devices,
}


def _draw_acquisition(
    rng: np.random.Generator, scenario: str, findings: tuple[Finding, ...]
) -> Acquisition:
    bedside = scenario in ("icu", "postop") or any(f.kind == "device" for f in findings)
    view: Literal["PA", "AP"] = "AP" if rng.random() < (0.85 if bedside else 0.12) else "PA"
    position = "erect" if view == "PA" else str(rng.choice(("supine", "semi-erect")))
    kvp = float(rng.uniform(85, 125) if view == "PA" else rng.uniform(70, 95))
    mas = float(rng.uniform(1.5, 6.0))
    spacing = round(float(rng.uniform(0.139, 0.34)), 3)
    width_mm, height_mm = _detector(rng)
    return Acquisition(
        view=view,
        modality="DX" if rng.random() < 0.6 else "CR",
        patient_position=position,  # type: ignore[arg-type]
        kvp=round(kvp, 1),
        mas=round(mas, 2),
        noise=round(0.012 + 0.02 / mas**0.5 + (0.006 if view == "AP" else 0.0), 4),
        rotation_deg=round(float(rng.normal(0, 2.0)), 2),
        offset=(round(float(rng.normal(0, 0.03)), 3), round(float(rng.normal(0, 0.03)), 3)),
        collimation=tuple(round(float(v), 3) for v in rng.uniform(0.0, 0.05, 4)),  # type: ignore[arg-type]
        rows=int(np.clip(round(height_mm / spacing), 1000, 3000)),
        columns=int(np.clip(round(width_mm / spacing), 1000, 3000)),
        pixel_spacing_mm=spacing,
        bits_stored=int(rng.choice((10, 12, 14, 16))),
        photometric="MONOCHROME1" if rng.random() < 0.35 else "MONOCHROME2",
        voi="lut" if rng.random() < 0.3 else "window",
        transfer_syntax=str(rng.choice(TRANSFER_SYNTAXES)),
        marker="L" if rng.random() < 0.8 else "R",
    )


def _detector(rng: np.random.Generator) -> tuple[float, float]:
    """Cassette/detector sizes in mm (width, height) seen on chest films."""
    sizes = ((350.0, 430.0), (430.0, 430.0), (430.0, 350.0), (350.0, 350.0))
    return sizes[int(rng.choice(4, p=(0.5, 0.3, 0.1, 0.1)))]
