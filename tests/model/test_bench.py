"""``echocxr bench``'s comparison against AR on the same studies."""

from __future__ import annotations

import pytest

from clinical_eval import OBSERVATIONS, label_f1
from clinical_eval.labeler import Labels
from model.bench import (
    BenchError,
    paired_vs_ar,
    parse_engine_options,
    parse_rows,
    per_observation_scores,
)


def labels_with(present: set[str]) -> Labels:
    return {name: 1 if name in present else None for name in OBSERVATIONS}


def test_paired_vs_ar_is_the_rows_f1_minus_ars_with_its_interval() -> None:
    findings = ["Cardiomegaly", "Edema", "Pleural Effusion", "Atelectasis"]
    references = [labels_with({findings[i % 4]}) for i in range(60)]
    # AR reads every study right; the row misses every third study's finding
    row = [labels_with(set()) if i % 3 == 0 else ref for i, ref in enumerate(references)]
    gaps = paired_vs_ar(references, row, references)

    assert set(gaps) == {"macro_f1_14_vs_ar", "micro_f1_5_vs_ar"}
    f1_row, f1_ar = label_f1(row, references), label_f1(references, references)
    for name, aggregate in (("macro_f1_14", "macro14"), ("micro_f1_5", "micro5")):
        gap = gaps[f"{name}_vs_ar"]
        key = f"chexpert_rule_f1_{aggregate}_unc0"
        assert gap["delta"] == pytest.approx(f1_row[key] - f1_ar[key])
        assert gap["low"] <= gap["delta"] <= gap["high"] < 0  # worse on every resample
        assert gap["p_value"] < 0.01

    same = paired_vs_ar(references, references, references)["macro_f1_14_vs_ar"]
    assert (same["delta"], same["low"], same["high"], same["p_value"]) == (0, 0, 0, 1)


def test_per_observation_f1_names_the_finding_a_row_misses() -> None:
    references = [labels_with({"Cardiomegaly"} if i % 2 else {"Edema"}) for i in range(12)]
    # the row misses cardiomegaly in studies 3 and 9: recall 4/6, precision 1, F1 0.8
    row = [labels_with(set()) if i in (3, 9) else ref for i, ref in enumerate(references)]
    f1 = per_observation_scores(row, references)["per_observation_f1"]
    assert set(f1) == set(OBSERVATIONS)
    assert f1["Cardiomegaly"] == pytest.approx(0.8)
    assert f1["Edema"] == 1.0
    assert f1["Pneumothorax"] == 0.0  # never present, never predicted


def test_engine_options_reach_their_row_with_json_values() -> None:
    rows = parse_rows(
        "diffusion-multistep@s2,ar",
        [],
        8,
        ["diffusion-multistep@s2:steps=2", "diffusion-multistep@s2:threshold=0.5", "ar:seed=7"],
    )
    assert [row.name for row in rows] == ["ar", "diffusion-multistep@s2"]
    assert rows[0].options == {"seed": 7}
    assert rows[1].options == {"steps": 2, "threshold": 0.5}
    assert rows[1].checkpoint.name == "dcd-b8"


@pytest.mark.parametrize("option", ["ar", "ar:seed", "ar:=1", ":seed=1", "ar:seed="])
def test_a_malformed_engine_option_is_refused(option: str) -> None:
    with pytest.raises(BenchError, match="ROW:KEY=VALUE"):
        parse_rows("ar", [], 8, [option])


def test_an_engine_option_value_keeps_its_colons_and_text() -> None:
    options = parse_engine_options(["diffusion-multistep@a:mode=x:y", "ar:top_p=0.5"])
    assert options == {"diffusion-multistep@a": {"mode": "x:y"}, "ar": {"top_p": 0.5}}


def test_per_observation_errors_count_what_macro_f1_hides() -> None:
    references = [labels_with({"Edema"}) for _ in range(10)]
    # the row finds every edema and says pneumothorax in 3 studies; uncertain counts as negative
    row = [
        labels_with({"Edema", "Pneumothorax"}) if i < 3 else ref for i, ref in enumerate(references)
    ]
    row[9] = {**references[9], "Edema": -1}
    errors = per_observation_scores(row, references)["per_observation_errors"]
    assert errors["Pneumothorax"] == {"fp": 3, "fn": 0}
    assert errors["Edema"] == {"fp": 0, "fn": 1}
    assert sum(e["fp"] + e["fn"] for e in errors.values()) == 4
