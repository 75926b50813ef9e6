"""Language metrics against published values and hand-computable cases."""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import pytest

import clinical_eval
from clinical_eval import language
from clinical_eval.embedding import minilm_cosines, sha256_of

pytestmark = pytest.mark.unit

CAT = (["the cat sat on the mat"], ["the cat is on the mat"])


def test_bleu_hand_computed() -> None:
    # Same length (BP = 1). Unigram 5/6, bigram 3/5 (the cat, on the, the mat), trigram 1/4.
    scores = language.coco_bleu(*CAT)
    assert scores["bleu1"] == pytest.approx(5 / 6, abs=1e-6)
    assert scores["bleu2"] == pytest.approx(math.sqrt(5 / 6 * 3 / 5), abs=1e-6)
    assert scores["bleu3"] == pytest.approx((5 / 6 * 3 / 5 * 1 / 4) ** (1 / 3), abs=1e-6)
    assert scores["bleu4"] < 1e-3  # no 4-gram matches


def test_rouge_l_hand_computed_in_both_conventions() -> None:
    # LCS "the cat on the mat" = 5 of 6 words each side: P = R = 5/6, so F = 5/6 for any beta.
    mean, per_sample = language.coco_rouge_l(*CAT)
    assert mean == pytest.approx(5 / 6)
    assert per_sample == [pytest.approx(5 / 6)]
    assert language.rouge_score_l(*CAT) == [pytest.approx(5 / 6)]


def test_rouge_l_conventions_differ_when_precision_and_recall_differ() -> None:
    generated, reference = ["no pleural effusion"], ["no pleural effusion or pneumothorax"]
    coco, _ = language.coco_rouge_l(generated, reference)
    f1 = language.rouge_score_l(generated, reference)[0]
    precision, recall, beta = 1.0, 3 / 5, 1.2
    assert f1 == pytest.approx(2 * precision * recall / (precision + recall))
    assert coco == pytest.approx(
        (1 + beta**2) * precision * recall / (recall + beta**2 * precision)
    )


def test_sacrebleu_reproduces_its_readme_example_on_the_0_to_1_scale() -> None:
    # sacrebleu README ("Using SacreBLEU from Python"): BLEU = 48.53 for this system and refs;
    # the key reports it / 100, beside bleu4.
    hypotheses = ["The dog bit the man.", "It wasn't surprising.", "The man had just bitten him."]
    references = [
        ["The dog bit the man.", "It was not unexpected.", "The man bit him first."],
        ["The dog had bit the man.", "No one was surprised.", "The man had bitten the dog."],
    ]
    assert language.sacrebleu_bleu(hypotheses, references) == pytest.approx(0.4853, abs=5e-5)


def test_rouge_score_reproduces_its_readme_example() -> None:
    # rouge-score README: rougeL F = 0.5882 (P 0.625, R 0.5556) for this pair, stemmer on. With
    # the stemmer off, as our key runs, "jumps" still matches itself and nothing else changes.
    target, prediction = (
        "The quick brown fox jumps over the lazy dog",
        "The quick brown dog jumps on the log.",
    )
    assert language.rouge_score_l([prediction], [target]) == [pytest.approx(0.5882353, abs=1e-6)]


# Radiology pairs with what the tokenisers treat differently: case, punctuation, hyphens,
# decimals, brackets, "n't", slashes and de-identification tokens.
TOKENIZER_PAIRS = (
    [
        "Ground-glass opacity in the RIGHT lower lobe; 1.5 cm nodule (stable).",
        "Heart size isn't enlarged. No effusion and/or pneumothorax on the X-ray.",
        "s/p CABG: sternotomy wires intact, no XXXX of pneumonia!",
        "Lungs: clear. Pleura -- no effusion? 10-cm mass... L5 'stable'.",
    ],
    [
        "Ground-glass opacities in the right lower lobe, 1.5 cm nodule (unchanged).",
        "The heart is not enlarged. No pleural effusion or pneumothorax on the x-ray.",
        "Status post CABG with intact sternotomy wires; no evidence of pneumonia.",
        "The lungs are clear. No pleural effusion. Stable 10-cm mass at L5.",
    ],
)


def test_tokenisation_matches_pycocoevalcaps_java_ptb_tokenizer() -> None:
    """bleu4 and rouge_l equal pycocoevalcap's own pipeline (Java PTBTokenizer, then Bleu and
    Rouge) to 1e-3, so our numbers compare with papers that ran it."""
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.rouge.rouge import Rouge
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    generated, reference = TOKENIZER_PAIRS
    ptb = PTBTokenizer()
    gts = ptb.tokenize({i: [{"caption": t}] for i, t in enumerate(reference)})
    res = ptb.tokenize({i: [{"caption": t}] for i, t in enumerate(generated)})
    assert [language.tokenize(t) for t in generated] == [res[i][0] for i in range(4)]
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    rouge, _ = Rouge().compute_score(gts, res)
    ours = language.coco_bleu(generated, reference)
    assert ours["bleu4"] == pytest.approx(bleu[3], abs=1e-3)
    assert ours["bleu1"] == pytest.approx(bleu[0], abs=1e-3)
    assert language.coco_rouge_l(generated, reference)[0] == pytest.approx(rouge, abs=1e-3)


def test_cider_d_of_perfect_drafts_hand_computed() -> None:
    # CIDEr-D is 10 x the mean over n = 1..4 of the n-gram TF-IDF cosine. A perfect draft of 4+
    # words scores 10; a perfect 2-word draft has no 3- or 4-grams, so it scores 10 x 2/4 = 5.
    reports = ["small left pleural effusion", "mild cardiomegaly without edema", "no pneumothorax"]
    assert language.coco_cider_d(reports, reports) == pytest.approx((10 + 10 + 5) / 3)


def test_meteor_rewards_overlap() -> None:
    same, _ = language.coco_meteor(["small left pleural effusion"], ["small left pleural effusion"])
    other, _ = language.coco_meteor(["small left pleural effusion"], ["normal heart size"])
    assert same > 0.9
    assert other < 0.2


def test_sha256_matches_the_fips_180_2_test_vector(tmp_path: Path) -> None:
    sample = tmp_path / "abc"
    sample.write_bytes(b"abc")
    expected = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert sha256_of(sample) == expected == hashlib.sha256(b"abc").hexdigest()


def test_minilm_cosine_orders_paraphrase_above_unrelated() -> None:
    generated = ["No pleural effusion.", "No pleural effusion.", "Mild cardiomegaly."]
    reference = ["No pleural effusion.", "There is no effusion.", "The left femur is fractured."]
    same, paraphrase, unrelated = minilm_cosines(generated, reference)
    assert same == pytest.approx(1.0, abs=1e-5)
    assert paraphrase > unrelated


def test_score_names_every_variant_and_refuses_bad_pairs() -> None:
    out = clinical_eval.score(*CAT, metrics=["labels", "bleu", "rouge_l", "cider_d", "sacrebleu"])
    assert {
        "bleu1",
        "bleu4",
        "rouge_l",
        "rouge_l_rougescore_f1",
        "cider_d",
        "sacrebleu_bleu",
        "chexpert_rule_f1_macro14_unc0",
        "n_studies",
    } <= set(out)
    with pytest.raises(clinical_eval.MetricInputError, match="1 generated reports but 2"):
        clinical_eval.score(["a"], ["a", "b"])
    with pytest.raises(clinical_eval.MetricInputError, match="unknown metric groups"):
        clinical_eval.score(["a"], ["a"], metrics=["chexbert"])
