"""The CheXpert-rule labeler: contract, conventions, and accuracy floors on the validation set."""

from __future__ import annotations

import pytest

import clinical_eval
from clinical_eval.labeler import with_parents
from clinical_eval.validation import evaluate, load_examples, parse_labels, split_examples

pytestmark = pytest.mark.unit


def one(text: str) -> dict[str, int | None]:
    return clinical_eval.label([text])[0]


def test_contract_keys_order_and_values() -> None:
    labels = clinical_eval.label(["Small left pleural effusion.", ""])
    assert len(labels) == 2
    assert tuple(labels[0]) == clinical_eval.OBSERVATIONS
    assert len(clinical_eval.OBSERVATIONS) == 14
    assert all(v in (1, 0, -1, None) for row in labels for v in row.values())


def test_a_single_string_is_refused() -> None:
    with pytest.raises(TypeError, match="sequence of reports"):
        clinical_eval.label("No effusion.")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"positions \[1\] are not strings"):
        clinical_eval.label(["No effusion.", None])  # type: ignore[list-item]


@pytest.mark.parametrize(
    ("text", "name", "value"),
    [
        ("No pleural effusion.", "Pleural Effusion", 0),
        ("Lungs are clear without consolidation.", "Consolidation", 0),
        ("The lungs are free of consolidation.", "Consolidation", 0),
        ("Heart size is normal.", "Cardiomegaly", 0),
        ("No evidence of pneumothorax.", "Pneumothorax", 0),
        ("Pneumothorax is not seen.", "Pneumothorax", 0),
        ("A small effusion cannot be excluded.", "Pleural Effusion", -1),
        ("Cannot rule out pneumonia.", "Pneumonia", -1),
        ("Possible right lower lobe consolidation.", "Consolidation", -1),
        ("Findings may represent pulmonary edema.", "Edema", -1),
        ("Opacity suspicious for pneumonia.", "Pneumonia", -1),
        ("Atelectasis versus pneumonia.", "Atelectasis", -1),
        ("Heart size is stable.", "Cardiomegaly", -1),
        ("Stable cardiomegaly.", "Cardiomegaly", 1),
        ("Moderate right pleural effusion.", "Pleural Effusion", 1),
        ("Small pericardial effusion.", "Pleural Effusion", None),
        ("The trachea is midline.", "Support Devices", None),
    ],
)
def test_mention_conventions(text: str, name: str, value: int | None) -> None:
    assert one(text)[name] == value


def test_a_negation_covers_a_whole_list_but_stops_at_but() -> None:
    labels = one(
        "No focal consolidation, pleural effusion, or pneumothorax, but mild cardiomegaly."
    )
    assert (labels["Consolidation"], labels["Pleural Effusion"], labels["Pneumothorax"]) == (
        0,
        0,
        0,
    )
    assert labels["Cardiomegaly"] == 1


def test_report_aggregation_positive_beats_uncertain_beats_negative() -> None:
    assert one("No effusion. Small left effusion.")["Pleural Effusion"] == 1
    assert one("No effusion. A right effusion cannot be excluded.")["Pleural Effusion"] == -1


def test_no_finding_ignores_support_devices_only() -> None:
    assert one("Endotracheal tube in good position. Lungs are clear.")["No Finding"] == 1
    assert one("Endotracheal tube in good position. Small effusion.")["No Finding"] is None
    assert one("Emphysema. No effusion.")["No Finding"] is None


def test_heart_failure_implies_edema_and_uncertain_cardiomegaly() -> None:
    labels = one("Findings consistent with congestive heart failure.")
    assert (labels["Edema"], labels["Cardiomegaly"]) == (1, -1)


def test_only_configured_sections_are_scored() -> None:
    text = "INDICATION: Fever, pneumonia.\nFINDINGS: Lungs are clear.\nIMPRESSION: Normal."
    assert one(text)["Pneumonia"] is None
    assert clinical_eval.label([text], sections=("indication",))[0]["Pneumonia"] == 1


def test_evidence_names_the_sentence_and_trigger() -> None:
    report = clinical_eval.label_with_evidence(["Heart is normal. Effusion cannot be excluded."])[0]
    effusion = next(m for m in report.mentions if m.observation == "Pleural Effusion")
    assert effusion.value == -1
    assert effusion.triggers == ("cannot be excluded",)
    assert report.scored_text[effusion.start : effusion.end] == "Effusion"


# The error classes of issue 31, one example each, written here (not taken from any data set).
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # normal statements that name the heart, mediastinum or vessels are not findings
        ("Heart and mediastinum normal.", {"Cardiomegaly": 0, "Enlarged Cardiomediastinum": 0}),
        (
            "The heart, pulmonary XXXX and mediastinum are within normal limits.",
            {"Cardiomegaly": 0},
        ),
        ("The heart size and pulmonary vascularity appear within normal limits.", {"Edema": 0}),
        ("The cardiac silhouette is unremarkable.", {"Cardiomegaly": 0}),
        ("Heart size remains enlarged.", {"Cardiomegaly": 1}),
        ("Heart size is at the upper limits of normal.", {"Cardiomegaly": -1}),
        ("Increased pulmonary vascularity.", {"Edema": 1}),
        # nonspecific words are not edema or pneumonia
        ("Abnormal interstitial pattern.", {"Lung Opacity": 1, "Edema": None}),
        (
            "Opacity may represent atelectasis or infiltrate.",
            {"Lung Opacity": 1, "Atelectasis": -1, "Pneumonia": None},
        ),
        ("Opacity probably represents consolidation.", {"Consolidation": -1, "Pneumonia": None}),
        # a finding that is gone, or only asked about, is not present
        ("The opacities have cleared in the interval.", {"Lung Opacity": 0}),
        ("No residual pneumothorax.", {"Pneumothorax": 0}),
        ("Right chest tube with resolved pneumothorax.", {"Pneumothorax": 0}),
        ("History of pneumonia.", {"Pneumonia": None}),
        ("No new consolidation.", {"Consolidation": 0}),
        # real phrasing
        ("Small left apical pleural air collection.", {"Pneumothorax": 1}),
        ("Fibronodular changes at the right apex.", {"Lung Lesion": 1}),
        ("Calcified granuloma in the left upper lobe.", {"Lung Lesion": 1, "No Finding": None}),
        ("Blunting of the left costophrenic XXXX.", {"Pleural Effusion": 1}),
        (
            "Blunting of the costophrenic angle may reflect a small effusion.",
            {"Pleural Effusion": -1},
        ),
        ("Small right hydropneumothorax.", {"Pneumothorax": 1, "Pleural Effusion": 1}),
        ("No XXXX of pleural effusion.", {"Pleural Effusion": 0}),
        ("Unchanged small left effusion.", {"Pleural Effusion": 1}),
        ("Posterior costophrenic sulcus blunting on the lateral view.", {"Pleural Effusion": 1}),
        ("L base opacity ?infection.", {"Pneumonia": -1}),
    ],
)
def test_issue_31_error_classes(text: str, expected: dict[str, int | None]) -> None:
    labels = one(text)
    assert {name: labels[name] for name in expected} == expected


def test_templated_report_lines_and_unheaded_bodies_are_scored() -> None:
    templated = "LINES/TUBES: None.\nHEART: Moderately enlarged.\nIMPRESSION: Cardiomegaly."
    assert (one(templated)["Cardiomegaly"], one(templated)["Support Devices"]) == (1, 0)
    dictated = "REASON FOR EXAM: Cough, r/o pneumonia.\nThe lungs are clear. Small left effusion."
    labels = one(dictated)
    assert (labels["Pneumonia"], labels["Pleural Effusion"]) == (None, 1)
    british = "Clinical details: ?pneumonia.\nReport: Lungs clear.\nConclusion: Normal."
    assert one(british)["Pneumonia"] is None


def test_lung_opacity_takes_its_strongest_child() -> None:
    assert one("Bibasilar atelectasis.")["Lung Opacity"] == 1
    assert one("Possible pneumonia.")["Lung Opacity"] == -1
    assert one("No pneumonia.")["Lung Opacity"] is None
    truth = dict.fromkeys(clinical_eval.OBSERVATIONS, None) | {"Consolidation": 1}
    assert with_parents(truth)["Lung Opacity"] == 1
    assert with_parents(truth | {"Consolidation": -1, "Lung Opacity": 0})["Lung Opacity"] == -1


def test_validation_set_is_large_and_covers_every_observation() -> None:
    examples = load_examples()
    sentences = [e for e in examples if e.kind == "sentence"]
    reports = [e for e in examples if e.kind == "report"]
    assert len(sentences) >= 400 and len(reports) >= 150
    assert len(split_examples(examples, "heldout", "report")) >= 75
    assert len({e.style for e in reports}) >= 6
    assert sum("XXXX" in e.text for e in examples) >= 25
    for name in clinical_eval.OBSERVATIONS:
        assert sum(e.labels[name] in (1, -1) for e in examples) >= 10, name


def test_validation_labels_keep_the_no_finding_rule() -> None:
    """No hand label says No Finding beside a positive or uncertain finding."""
    for example in load_examples():
        if example.labels["No Finding"] == 1:
            findings = [example.labels[n] for n in clinical_eval.OBSERVATIONS[1:-1]]
            assert not {1, -1} & set(findings), example.id


def test_a_malformed_label_line_names_its_place() -> None:
    assert parse_labels("CM+ EF?", "x")["Pleural Effusion"] == -1
    with pytest.raises(ValueError, match=r"here: 'CM\*' is not a code"):
        parse_labels("CM*", "here")
    with pytest.raises(ValueError, match="Cardiomegaly is labelled twice"):
        parse_labels("CM+ CM-", "here")


# Floors just under what the labeler reaches on the held-out half (benchmarks/results/
# labeler_quality.md), binarised as the benchmarks do; the development half was tuned on.
HELDOUT_FLOORS = {"unc0": 0.95, "unc1": 0.97}


@pytest.mark.parametrize("uncertain_as", [0, 1])
def test_heldout_macro_f1_floor(uncertain_as: int) -> None:
    scores = evaluate(split_examples(load_examples(), "heldout"))[uncertain_as]
    macro = sum(s["f1"] for s in scores.values()) / len(scores)
    assert macro >= HELDOUT_FLOORS[f"unc{uncertain_as}"]
    assert min(s["f1"] for s in scores.values()) >= 0.8


def test_development_f1_floors() -> None:
    for per_label in evaluate(split_examples(load_examples(), "development")).values():
        below = {n: round(s["f1"], 3) for n, s in per_label.items() if s["f1"] < 0.97}
        assert not below


def test_phantom_reports_keep_their_labels() -> None:
    """The model's grammar: >= 0.98 macro-F1 (14) against the generator's truth, read with the
    same Lung Opacity hierarchy as the labeler."""
    from model.data.phantom import iter_cases

    cases = list(iter_cases(11, 300))
    predicted = clinical_eval.label([case.report.text for case in cases])
    scores = clinical_eval.label_f1(predicted, [with_parents(case.labels) for case in cases])
    assert scores["chexpert_rule_f1_macro14_unc0"] >= 0.98
    assert scores["chexpert_rule_f1_macro14_unc1"] >= 0.98


def test_unheaded_text_is_scored_when_no_configured_section_exists() -> None:
    text = "Small right pneumothorax.\nINDICATION: Chest pain, evaluate for pneumonia."
    labels = one(text)
    assert (labels["Pneumothorax"], labels["Pneumonia"]) == (1, None)
