"""The ``echocxr.evaluate`` task run by a real Celery worker over real Redis (no eager mode)."""

from __future__ import annotations

import pytest

from tests.workers.conftest import LiveWorker

pytestmark = pytest.mark.integration

GENERATED = ["No pleural effusion. Mild cardiomegaly.", "the cat sat on the mat"]
REFERENCE = ["Small left pleural effusion. Heart size is normal.", "the cat is on the mat"]


def _run(worker: LiveWorker, *args: object) -> dict:
    result = worker.client.send_task("echocxr.evaluate", args=args, queue=worker.queue("evaluate"))
    return result.get(timeout=120)


def test_worker_scores_pairs_with_the_labeler_and_bleu(live_worker: LiveWorker) -> None:
    out = _run(live_worker, GENERATED, REFERENCE, ["labels", "bleu"])
    assert out["n_studies"] == 2
    metrics = out["metrics"]
    # Study 1: generated says cardiomegaly, reference a pleural effusion -> no label agrees;
    # study 2 mentions nothing, so "No Finding" is 1 on both sides. At unc0: 1 TP (No Finding),
    # 1 FP (Cardiomegaly), 1 FN (Pleural Effusion): micro F1 = 2TP / (2TP + FP + FN).
    assert metrics["chexpert_rule_f1_micro14_unc0"] == pytest.approx(2 * 1 / (2 * 1 + 1 + 1))
    assert metrics["chexpert_rule_f1_micro5_unc0"] == 0.0
    assert 0 < metrics["bleu1"] < 1


def test_redelivered_task_gives_the_same_result(live_worker: LiveWorker) -> None:
    first = _run(live_worker, GENERATED, REFERENCE, ["labels", "rouge_l"])
    second = _run(live_worker, GENERATED, REFERENCE, ["labels", "rouge_l"])
    assert first == second


def test_bad_input_fails_with_the_metric_error_message(live_worker: LiveWorker) -> None:
    result = live_worker.client.send_task(
        "echocxr.evaluate", args=[GENERATED, REFERENCE[:1]], queue=live_worker.queue("evaluate")
    )
    with pytest.raises(Exception, match="2 generated reports but 1 references"):
        result.get(timeout=120)
    assert result.state == "FAILURE"
