"""The report grammar: findings in, a FINDINGS/IMPRESSION report and its CheXpert labels out.

Every sentence is built together with the labels it asserts (``Sentence.labels``), and the
study's label vector is the merge of those assertions. Labels therefore come from the report
text, as in CheXpert, and cannot drift from it. Three rules keep the text machine-checkable:

- a hedge ("may represent", "cannot be excluded", "possible") appears only in a sentence whose
  labels are all uncertain (-1), and names only those observations;
- a negative sentence ("No ...", "... is normal") only negates observations labelled 0;
- the word "opacity" appears exactly when Lung Opacity is positive.

Two styles: *normalized* gives every anatomical region an explicit positive or negative
sentence (the ECHO paper's normalisation), *exception* reports only abnormalities and a short
normal statement, leaving the unmentioned observations blank (None).

Every choice of style and phrasing is drawn from the study's seeded report stream, which gives
the varied archive an AR model meets in practice.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from clinical_eval.observations import OBSERVATIONS
from model.data.phantom.cases import Finding, Report

PATHOLOGIES = tuple(o for o in OBSERVATIONS if o not in ("No Finding", "Support Devices"))
NORMALIZED_SHARE = 0.6
ORDINALS = {
    3: "third",
    4: "fourth",
    5: "fifth",
    6: "sixth",
    7: "seventh",
    8: "eighth",
    9: "ninth",
    10: "tenth",
}
ADVERBS = {"mild": "mildly", "moderate": "moderately", "severe": "severely", "marked": "markedly"}


@dataclass(frozen=True)
class Sentence:
    """One sentence and the labels it asserts (observation -> 1, 0 or -1)."""

    text: str
    labels: dict[str, int] = field(default_factory=dict)


Phrases = list[Sentence]


def compose_report(
    findings: Sequence[Finding], view: str, rng: np.random.Generator
) -> tuple[Report, dict[str, int | None]]:
    """Write the report for ``findings`` and derive its label vector from what it says."""
    style = "normalized" if rng.random() < NORMALIZED_SHARE else "exception"
    body = _findings_section(findings, style, view, rng)
    impression = _impression_section(findings, rng)
    labels = merge_labels([*body, *impression])
    report = Report(
        findings=" ".join(s.text for s in body),
        impression=" ".join(s.text for s in impression),
        style=style,  # type: ignore[arg-type]
    )
    return report, labels


def merge_labels(sentences: Sequence[Sentence]) -> dict[str, int | None]:
    """Combine per-sentence assertions; positive beats uncertain beats negative beats blank."""
    rank = {1: 3, -1: 2, 0: 1}
    labels: dict[str, int | None] = dict.fromkeys(OBSERVATIONS)
    for sentence in sentences:
        for name, value in sentence.labels.items():
            current = labels[name]
            if current is None or rank[value] > rank[current]:
                labels[name] = value
    if any(labels[p] in (1, -1) for p in PATHOLOGIES):
        labels["No Finding"] = None
    return labels


def _pick(rng: np.random.Generator, options: Sequence[str]) -> str:
    return options[int(rng.integers(0, len(options)))]


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


# --- regions -----------------------------------------------------------------------------

REGIONS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("devices", ("device",)),
    ("lungs", ("opacity", "lesion", "edema", "consolidation", "pneumonia", "atelectasis")),
    ("pleura", ("pneumothorax", "effusion", "pleural_thickening")),
    ("heart", ("cardiomegaly", "widened_mediastinum")),
    ("bones", ("fracture",)),
)
REGION_OBSERVATIONS: dict[str, tuple[str, ...]] = {
    "devices": ("Support Devices",),
    "lungs": ("Lung Opacity", "Consolidation", "Pneumonia", "Edema", "Lung Lesion", "Atelectasis"),
    "pleura": ("Pleural Effusion", "Pneumothorax", "Pleural Other"),
    "heart": ("Cardiomegaly", "Enlarged Cardiomediastinum"),
    "bones": ("Fracture",),
}
NEGATED_NAMES = {
    "Lung Opacity": "focal airspace opacity",
    "Consolidation": "consolidation",
    "Pneumonia": "pneumonia",
    "Edema": "pulmonary edema",
    "Lung Lesion": "suspicious pulmonary nodule",
    "Atelectasis": "atelectasis",
    "Pleural Effusion": "pleural effusion",
    "Pneumothorax": "pneumothorax",
    "Pleural Other": "pleural thickening",
}


def _findings_section(
    findings: Sequence[Finding], style: str, view: str, rng: np.random.Generator
) -> Phrases:
    sentences: Phrases = []
    if view == "AP" and rng.random() < 0.5:
        sentences.append(
            Sentence(_pick(rng, ("Portable AP view.", "Single AP view of the chest.")))
        )
    positives_seen = False
    for region, kinds in REGIONS:
        region_findings = [f for f in findings if f.kind in kinds]
        positive = _describe(region, region_findings, rng)
        positives_seen = positives_seen or bool(positive)
        sentences.extend(positive)
        if style == "normalized":
            sentences.extend(_negate_region(region, positive, rng))
    if style == "exception":
        sentences.append(_exception_closing(positives_seen, findings, rng))
    return sentences


def _exception_closing(
    positives_seen: bool, findings: Sequence[Finding], rng: np.random.Generator
) -> Sentence:
    if not positives_seen:
        return Sentence(
            _pick(
                rng, ("No acute cardiopulmonary abnormality.", "No acute cardiopulmonary process.")
            ),
            {"No Finding": 1},
        )
    if all(f.kind == "device" for f in findings):
        return Sentence("No acute cardiopulmonary abnormality.", {"No Finding": 1})
    return Sentence(
        _pick(rng, ("Otherwise unremarkable.", "The remaining structures are unremarkable."))
    )


def _describe(region: str, findings: Sequence[Finding], rng: np.random.Generator) -> Phrases:
    sentences: Phrases = []
    effusions = [f for f in findings if f.kind == "effusion"]
    if len(effusions) == 2:
        sentences.extend(_bilateral_effusion(effusions, rng))
    for finding in findings:
        if finding.kind == "effusion" and len(effusions) == 2:
            continue
        sentences.extend(DESCRIBERS[finding.kind](finding, rng))
    return sentences


def _negate_region(region: str, positive: Phrases, rng: np.random.Generator) -> Phrases:
    asserted = {name for s in positive for name in s.labels}
    remaining = [o for o in REGION_OBSERVATIONS[region] if o not in asserted]
    if "Consolidation" in asserted or "Lung Opacity" in asserted:
        remaining = [o for o in remaining if o != "Pneumonia"]
    if not remaining:
        return []
    zeros = dict.fromkeys(remaining, 0)
    if region == "devices":
        return [
            Sentence(
                _pick(rng, ("No lines or tubes are seen.", "No support devices are present.")),
                zeros,
            )
        ]
    if region == "bones":
        return [
            Sentence(
                _pick(
                    rng,
                    (
                        "No acute osseous abnormality.",
                        "No displaced rib fracture.",
                        "No acute fracture is identified.",
                    ),
                ),
                zeros,
            )
        ]
    if region == "heart":
        return [_heart_negation(name, rng) for name in remaining]
    names = [NEGATED_NAMES[o] for o in remaining]
    listed = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]
    template = _pick(rng, ("No {}.", "There is no {}.", "No evidence of {}."))
    return [Sentence(template.format(listed), zeros)]


def _heart_negation(name: str, rng: np.random.Generator) -> Sentence:
    if name == "Cardiomegaly":
        text = _pick(
            rng, ("Heart size is normal.", "The heart is not enlarged.", "Normal heart size.")
        )
    else:
        text = _pick(
            rng,
            (
                "The mediastinal contours are normal.",
                "Normal mediastinal contours.",
                "The mediastinum is not widened.",
            ),
        )
    return Sentence(text, {name: 0})


# --- positive descriptions ---------------------------------------------------------------


def _zone_words(finding: Finding) -> str:
    side = "bilateral" if finding.laterality == "bilateral" else finding.laterality
    zone = {"upper": "upper", "middle": "mid", "lower": "lower"}[finding.zone or "lower"]
    return f"{side} {zone} zone"


def _lobe(finding: Finding) -> str:
    if finding.zone == "middle":
        return "right middle lobe" if finding.laterality == "right" else "lingula"
    return f"{finding.laterality} {finding.zone} lobe"


def _say(rng: np.random.Generator, labels: dict[str, int], *options: str) -> Sentence:
    """One of several phrasings, all asserting the same ``labels``."""
    return Sentence(_pick(rng, options), labels)


def _hedged(
    rng: np.random.Generator, observation: str, lead: Sentence | None, *hedges: str
) -> Phrases:
    """An optional descriptive lead, then a hedge sentence naming only ``observation`` (-1)."""
    return [s for s in (lead, _say(rng, {observation: -1}, *hedges)) if s is not None]


def _base_words(f: Finding) -> str:
    return "both lung bases" if f.laterality == "bilateral" else f"the {f.laterality} lung base"


def _cardiomegaly(f: Finding, rng: np.random.Generator) -> Phrases:
    if f.certainty == "uncertain":
        return _hedged(rng, "Cardiomegaly", None, "Mild cardiomegaly cannot be excluded.",
                       "The cardiac silhouette may be mildly enlarged.")  # fmt: skip
    severity = f.severity or "mild"
    adverb = ADVERBS[severity]
    return [_say(rng, {"Cardiomegaly": 1}, f"The heart is {adverb} enlarged.",
                 f"{_cap(severity)} cardiomegaly.",
                 f"The cardiac silhouette is {adverb} enlarged.")]  # fmt: skip


def _widened_mediastinum(f: Finding, rng: np.random.Generator) -> Phrases:
    adverb = ADVERBS[f.severity or "mild"]
    return [_say(rng, {"Enlarged Cardiomediastinum": 1},
                 f"The superior mediastinum is {adverb} widened.",
                 f"The mediastinal silhouette is {adverb} widened.")]  # fmt: skip


def _opacity(f: Finding, rng: np.random.Generator) -> Phrases:
    texture = _pick(rng, ("patchy", "hazy", "ill-defined"))
    where = _zone_words(f)
    if f.laterality == "bilateral":
        zone = where.split()[1]
        return [_say(rng, {"Lung Opacity": 1}, f"{_cap(texture)} opacities in the {where}s.",
                     f"There are {texture} airspace opacities in both {zone} zones.")]  # fmt: skip
    return [_say(rng, {"Lung Opacity": 1}, f"{_cap(texture)} opacity in the {where}.",
                 f"There is {texture} airspace opacity in the {where}.")]  # fmt: skip


def _lesion(f: Finding, rng: np.random.Generator) -> Phrases:
    size = round(f.size_mm or 0)
    kind = f.lesion_type or "nodule"
    edge = _pick(
        rng, ("well-circumscribed", "rounded", "lobulated" if kind == "mass" else "smooth")
    )
    where = _zone_words(f)
    return [_say(rng, {"Lung Lesion": 1}, f"A {size} mm {edge} {kind} in the {where}.",
                 f"There is a {edge} {kind} in the {where} measuring {size} mm.")]  # fmt: skip


def _edema(f: Finding, rng: np.random.Generator) -> Phrases:
    if f.certainty == "uncertain":
        lead = Sentence("Mild prominence of the interstitial markings.")
        return _hedged(rng, "Edema", lead, "This may represent mild interstitial edema.",
                       "Mild pulmonary edema cannot be excluded.")  # fmt: skip
    severity = f.severity or "mild"
    return [_say(rng, {"Edema": 1, "Lung Opacity": 1},
                 f"{_cap(severity)} pulmonary edema with perihilar opacities and septal lines.",
                 f"Perihilar opacities and Kerley B lines consistent with {severity} "
                 "pulmonary edema.")]  # fmt: skip


def _consolidation(f: Finding, rng: np.random.Generator) -> Phrases:
    where = _base_words(f)
    if f.certainty == "uncertain":
        lead = Sentence(f"Patchy airspace opacity at {where}.", {"Lung Opacity": 1})
        return _hedged(rng, "Consolidation", lead, "Consolidation cannot be excluded.",
                       "This may represent early consolidation.")  # fmt: skip
    return [_say(rng, {"Consolidation": 1, "Lung Opacity": 1},
                 f"Dense airspace opacity at {where} consistent with consolidation.",
                 f"Consolidative opacity at {where}.")]  # fmt: skip


def _pneumonia(f: Finding, rng: np.random.Generator) -> Phrases:
    if f.certainty == "uncertain":
        lead = Sentence(f"Patchy opacity in the {_zone_words(f)}.", {"Lung Opacity": 1})
        return _hedged(rng, "Pneumonia", lead,
                       "This may represent pneumonia in the appropriate clinical setting.",
                       "Early pneumonia cannot be excluded.")  # fmt: skip
    lobe = _lobe(f)
    return [
        _say(rng, {"Consolidation": 1, "Lung Opacity": 1},
             f"Lobar opacity with air bronchograms in the {lobe}, consistent with consolidation.",
             f"Dense consolidative opacity in the {lobe} with air bronchograms."),
        _say(rng, {"Pneumonia": 1}, "Findings are consistent with pneumonia.",
             f"Appearance is compatible with {lobe} pneumonia."),
    ]  # fmt: skip


def _atelectasis(f: Finding, rng: np.random.Generator) -> Phrases:
    where = _base_words(f)
    if f.certainty == "uncertain":
        lead = Sentence(f"Streaky opacity at {where}.", {"Lung Opacity": 1})
        return _hedged(rng, "Atelectasis", lead, "This may represent atelectasis.",
                       "Atelectasis cannot be excluded.")  # fmt: skip
    severity = f.severity or "plate-like"
    return [_say(rng, {"Atelectasis": 1}, f"{_cap(severity)} atelectasis at {where}.",
                 f"There is {severity} atelectasis at {where} with mild volume loss.")]  # fmt: skip


def _pneumothorax(f: Finding, rng: np.random.Generator) -> Phrases:
    side = f.laterality
    if f.certainty == "uncertain":
        return _hedged(rng, "Pneumothorax", None,
                       f"A tiny {side} apical pneumothorax cannot be excluded.",
                       f"There may be a tiny {side} apical pneumothorax.")  # fmt: skip
    return [_say(rng, {"Pneumothorax": 1}, f"{_cap(f.severity or 'small')} {side} pneumothorax.",
                 f"There is a {f.severity} {side} pneumothorax with a visible visceral "
                 "pleural line.")]  # fmt: skip


def _effusion(f: Finding, rng: np.random.Generator) -> Phrases:
    side = f.laterality
    if f.certainty == "uncertain":
        lead = Sentence(f"Blunting of the {side} costophrenic angle.")
        return _hedged(rng, "Pleural Effusion", lead,
                       "This may represent a small pleural effusion.",
                       "A small pleural effusion cannot be excluded.")  # fmt: skip
    severity = f.severity or "small"
    return [_say(rng, {"Pleural Effusion": 1}, f"{_cap(severity)} {side} pleural effusion.",
                 f"There is a {severity} {side} pleural effusion with blunting of the "
                 "costophrenic angle.")]  # fmt: skip


def _bilateral_effusion(effusions: Sequence[Finding], rng: np.random.Generator) -> Phrases:
    right, left = sorted(effusions, key=lambda f: f.laterality != "right")
    if right.severity == left.severity:
        text = f"{_cap(right.severity or 'small')} bilateral pleural effusions."
    else:
        text = (f"Bilateral pleural effusions, {right.severity} on the right and "
                f"{left.severity} on the left.")  # fmt: skip
    return [Sentence(text, {"Pleural Effusion": 1})]


def _pleural_thickening(f: Finding, rng: np.random.Generator) -> Phrases:
    where = "apical" if f.zone == "upper" else "lateral"
    return [_say(rng, {"Pleural Other": 1},
                 f"{_cap(f.laterality or 'right')} {where} pleural thickening.",
                 f"Smooth {where} pleural thickening on the {f.laterality}.")]  # fmt: skip


def _fracture(f: Finding, rng: np.random.Generator) -> Phrases:
    rib = ORDINALS.get(f.rib or 0, "lower")
    return [_say(rng, {"Fracture": 1},
                 f"{_cap(f.severity or 'nondisplaced')} fracture of the {f.laterality} {rib} rib.",
                 f"Acute {f.severity} {f.laterality} {rib} rib fracture.")]  # fmt: skip


def _device(f: Finding, rng: np.random.Generator) -> Phrases:
    return [Sentence(text, {"Support Devices": 1}) for text in _device_texts(f, rng)]


def _device_texts(f: Finding, rng: np.random.Generator) -> list[str]:
    if f.device == "endotracheal tube":
        distance = f.tip_to_carina_cm
        texts = [
            _pick(
                rng,
                (
                    f"Endotracheal tube tip is {distance} cm above the carina.",
                    f"The endotracheal tube terminates {distance} cm above the carina.",
                ),
            )
        ]
        if f.tip_position in TUBE_ADVICE:
            texts.append(TUBE_ADVICE[f.tip_position])
        return texts
    if f.device == "central venous catheter":
        return [
            _pick(
                rng,
                (
                    f"{_cap(f.laterality or 'right')} internal jugular central venous "
                    f"catheter with its tip in the {f.tip_position}.",
                    f"A {f.laterality} jugular central line terminates in the {f.tip_position}.",
                ),
            )
        ]
    if f.device == "nasogastric tube":
        if f.tip_position == "stomach":
            return ["Nasogastric tube courses below the diaphragm with its tip in the stomach."]
        return ["Nasogastric tube tip in the distal esophagus; advancement is recommended."]
    return [_pick(rng, PACEMAKER_PHRASES)]


PACEMAKER_PHRASES = (
    "Left chest wall pacemaker with its lead in the right ventricle.",
    "A left-sided pacemaker generator with a right ventricular lead.",
)
TUBE_ADVICE = {
    "low": "The endotracheal tube should be withdrawn by about 2 cm.",
    "high": "The endotracheal tube could be advanced by about 2 cm.",
}


DESCRIBERS: dict[str, Callable[[Finding, np.random.Generator], Phrases]] = {
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
    "device": _device,
}

# --- impression --------------------------------------------------------------------------

IMPRESSION_NAMES = {
    "cardiomegaly": ("Cardiomegaly", "cardiomegaly"),
    "widened_mediastinum": ("Enlarged Cardiomediastinum", "widened mediastinum"),
    "lesion": ("Lung Lesion", "pulmonary {lesion_type}"),
    "edema": ("Edema", "pulmonary edema"),
    "pneumonia": ("Pneumonia", "pneumonia"),
    "consolidation": ("Consolidation", "consolidation"),
    "atelectasis": ("Atelectasis", "atelectasis"),
    "pneumothorax": ("Pneumothorax", "{laterality} pneumothorax"),
    "effusion": ("Pleural Effusion", "{laterality} pleural effusion"),
    "pleural_thickening": ("Pleural Other", "pleural thickening"),
    "fracture": ("Fracture", "{laterality} rib fracture"),
    "opacity": ("Lung Opacity", "{laterality} airspace opacity"),
}


def _impression_section(findings: Sequence[Finding], rng: np.random.Generator) -> Phrases:
    sentences: Phrases = []
    seen: set[str] = set()
    for finding in findings:
        if finding.kind not in IMPRESSION_NAMES:
            continue
        observation, template = IMPRESSION_NAMES[finding.kind]
        phrase = template.format(laterality=finding.laterality, lesion_type=finding.lesion_type)
        if phrase in seen:
            continue
        seen.add(phrase)
        if finding.certainty == "uncertain":
            sentences.append(Sentence(f"Possible {phrase}.", {observation: -1}))
        else:
            sentences.append(Sentence(f"{_cap(phrase)}.", {observation: 1}))
    if any(f.kind == "device" for f in findings):
        sentences.append(Sentence("Support devices as described.", {"Support Devices": 1}))
    if not any("Support Devices" not in s.labels for s in sentences):
        sentences.append(
            Sentence(
                _pick(
                    rng,
                    ("No acute cardiopulmonary abnormality.", "No acute cardiopulmonary process."),
                ),
                {"No Finding": 1},
            )
        )
    return sentences
