"""DCD: teacher rollouts, loop filtering, the coarse KL and a student learning one-step decoding."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from model.blocks import DiffusionError
from model.distill import DCDConfig
from model.distill.loss import coarse_kl, dcd_loss, one_step_logits
from model.distill.rollouts import looping_rows, rollout, top_k_with_rest
from model.report_ngrams import NgramPrior, ReportNgrams
from model.sampling import decode_blocks
from tests.model.test_diffusion import EOS_ID, MASK_ID, VOCAB, context_of, tiny_lm
from tests.model.test_sampling import constant_lm, strip, unseen_trigrams

pytestmark = pytest.mark.unit


def test_looping_trajectories_are_flagged() -> None:
    tokens = torch.tensor(
        [
            [5, 6, 7, 8, 9, EOS_ID, 1, 1],  # fine
            [5, 6, 7, 8, 7, 8, EOS_ID, 1],  # block [7, 8] repeats before eos
            [5, 6, 7, 8, 9, 10, 11, 12],  # no eos before the cap
            [5, 6, EOS_ID, 8, 4, 4, 4, 4],  # repeats only after eos: fine
        ]
    )
    assert looping_rows(tokens, [2, 2, 2, 2], EOS_ID).tolist() == [False, True, True, False]


def test_coarse_kl_is_exact_when_nothing_is_left_out() -> None:
    teacher = torch.randn(2, 5, VOCAB).softmax(-1)
    student_logits = torch.randn(2, 5, VOCAB)
    ids, probs = top_k_with_rest(teacher, VOCAB)
    exact = (teacher * (teacher.log() - student_logits.log_softmax(-1))).sum(-1)
    torch.testing.assert_close(coarse_kl(ids, probs, student_logits), exact, atol=1e-5, rtol=1e-4)


def test_coarse_kl_keeps_the_mass_of_the_rest() -> None:
    teacher = torch.randn(3, VOCAB).mul(3).softmax(-1)
    ids, probs = top_k_with_rest(teacher, 4)
    torch.testing.assert_close(probs.sum(-1), torch.ones(3))
    assert (
        coarse_kl(ids[None], probs[None], teacher.log()[None]).abs().max() < 1e-5
    )  # student == teacher


def test_rollout_records_teacher_targets() -> None:
    lm = tiny_lm()
    context, mask = context_of(lm, 3, 9)
    config = DCDConfig(teacher_steps=4, threshold=0.9, teacher_order="confidence", top_k=8)
    with torch.inference_mode():
        shard = rollout(lm, context, mask, config, block_size=4, max_new_tokens=15)
        plain = decode_blocks(
            lm,
            context,
            mask,
            block_size=4,
            steps=4,
            threshold=0.9,
            max_new_tokens=15,
            repetition_guard=False,
        )
    W = shard["tokens"].shape[1]
    assert torch.equal(
        shard["tokens"][:, :15], plain.tokens[:, :W][:, :15]
    )  # on-policy, own blocks
    assert torch.equal(
        shard["commit_ids"][..., 0], shard["tokens"]
    )  # top-1 at commit = committed token
    assert shard["steps"].min() >= 1 and shard["steps"].max() <= 4
    assert torch.equal(
        shard["keep"], ~looping_rows(shard["tokens"], [1] * 0 + [3, 4, 4, 4], EOS_ID)
    )


def test_a_left_to_right_teacher_commits_each_block_in_position_order() -> None:
    lm = tiny_lm()
    context, mask = context_of(lm, 3, 9)
    config = DCDConfig(teacher_steps=4, top_k=8, teacher_order="left-to-right")
    with torch.inference_mode():
        shard = rollout(lm, context, mask, config, block_size=4, max_new_tokens=15)
        confident = replace(config, teacher_order="confidence")
        by_confidence = rollout(lm, context, mask, confident, block_size=4, max_new_tokens=15)
    # the prompt tail takes one slot of the first block; every later block takes four steps
    in_order = torch.tensor([1, 2, 3] + [1, 2, 3, 4] * 3).expand(3, -1)
    assert torch.equal(shard["steps"], in_order)
    assert not torch.equal(by_confidence["steps"], in_order)


def test_student_prefix_rollout_conditions_the_teacher_on_the_students_blocks() -> None:
    teacher, student = peaked_lm(seed=3), peaked_lm(seed=4)
    context, mask = context_of(teacher, 3, 9)
    config = DCDConfig(teacher_steps=4, threshold=0.9, teacher_order="confidence", top_k=8)
    with torch.inference_mode():
        shard = rollout(teacher, context, mask, config, 4, 15, prefix_writer=student)
        own = rollout(teacher, context, mask, config, 4, 15)
        written = decode_blocks(
            student, context, mask, block_size=4, steps=1, threshold=1.0, max_new_tokens=15
        ).tokens
    W = shard["tokens"].shape[1]
    assert torch.equal(shard["tokens"][:, : written.shape[1]], written[:, :W])
    assert shard["keep"].all()  # the student's loops are kept: they are what the round fixes
    # The first block conditions on the context only, so the teacher writes it as in phase 1;
    # later blocks condition on the student's, and differ.
    first = 3  # the prompt tail takes one slot of the first block
    assert torch.equal(shard["commit_ids"][:, :first, 0], own["commit_ids"][:, :first, 0])
    assert not torch.equal(shard["commit_ids"][:, first:, 0], shard["tokens"][:, first:])


def test_student_prefix_rollout_can_write_the_students_blocks_under_report_ngrams() -> None:
    """The round's student writes as the default one-step engine does: near-flat logits pick
    "0 0 0 ..." by argmax; under the training reports' trigrams (counting up) every trigram of
    the blocks the teacher conditions on is one those reports hold."""
    teacher, student = peaked_lm(seed=3), constant_lm(eos_id=EOS_ID)
    student.model.norm.weight.data.fill_(1e-3)
    reports = [[*range(start, start + 10), EOS_ID] for start in (4, 16, 28)]
    ngrams = ReportNgrams.from_reports(reports, order=3, vocab_size=VOCAB, start_id=1)
    prior = NgramPrior(ngrams, EOS_ID, candidates=VOCAB, penalty=100.0)
    context, mask = context_of(teacher, 2, 6)
    config = DCDConfig(teacher_steps=4, threshold=0.9, teacher_order="confidence", top_k=8)
    with torch.inference_mode():
        guided = rollout(teacher, context, mask, config, 4, 24, student, prefix_prior=prior)
        plain = rollout(teacher, context, mask, config, 4, 24, student)
        written = decode_blocks(
            student,
            context,
            mask,
            block_size=4,
            steps=1,
            threshold=1.0,
            max_new_tokens=24,
            ngram_prior=prior,
        ).tokens
    W = guided["tokens"].shape[1]
    assert torch.equal(guided["tokens"][:, : written.shape[1]], written[:, :W])
    for before, after in zip(plain["tokens"].tolist(), guided["tokens"].tolist(), strict=True):
        assert unseen_trigrams(strip(before), ngrams) > 0
        assert len(strip(after)) > 6 and unseen_trigrams(strip(after), ngrams) == 0, after


def test_eos_term_pulls_toward_the_teachers_eos_not_the_prefix_writers() -> None:
    """After a student's prefix the teacher may stop earlier than the student did; the CE term
    sits where the teacher committed ``<eos>``, inside the part of the report the student keeps."""
    lm = peaked_lm(seed=3)
    context, mask = context_of(lm, 2, 10)
    config = DCDConfig(teacher_steps=4, threshold=0.9, teacher_order="confidence", top_k=8)
    with torch.no_grad():
        shard = rollout(lm, context, mask, config, 4, 14)
    W = shard["tokens"].shape[1]
    shard["tokens"] = torch.randint(3, 40, (2, W))
    shard["tokens"][:, W - 1] = EOS_ID  # the "student" stops at the last position
    shard["commit_ids"][0, 5, 0] = EOS_ID  # the teacher would stop earlier in row 0
    shard["commit_ids"][1, :, 0] = 7  # and not at all in row 1
    kwargs = {"block_size": 4, "mask_id": MASK_ID, "eos_id": EOS_ID}
    with torch.no_grad():
        gap = dcd_loss(lm, context, mask, shard, eos_weight=1.0, **kwargs) - dcd_loss(
            lm, context, mask, shard, eos_weight=0.0, **kwargs
        )
        logits, _ = one_step_logits(lm, context, mask, shard["tokens"], **kwargs)
    expected = -logits[0, 5].float().log_softmax(-1)[EOS_ID]
    torch.testing.assert_close(gap, expected, rtol=1e-4, atol=1e-5)


def test_unknown_target_or_teacher_order_is_rejected() -> None:
    with pytest.raises(DiffusionError, match="target must be one of"):
        DCDConfig(target="marginal")
    with pytest.raises(DiffusionError, match="teacher_order must be one of"):
        DCDConfig(teacher_order="random")


def peaked_lm(seed: int) -> torch.nn.Module:
    """A random Llama with sharper distributions (scaled final norm), like a trained teacher's."""
    lm = tiny_lm(seed=seed)
    lm.model.norm.weight.data.mul_(6.0)
    return lm


def peaked_rollout() -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    """A peaked teacher, four rows of context and the teacher's phase-1 shard for them."""
    teacher = peaked_lm(seed=3)
    context, mask = context_of(teacher, 4, 10)
    config = DCDConfig(teacher_steps=4, threshold=0.9, teacher_order="confidence", top_k=16)
    with torch.no_grad():
        shard = rollout(teacher, context, mask, config, block_size=4, max_new_tokens=14)
    return teacher, context, mask, shard


def one_step_agreement(
    lm: torch.nn.Module, context: torch.Tensor, mask: torch.Tensor, tokens: torch.Tensor
) -> float:
    with torch.inference_mode():
        out = decode_blocks(
            lm,
            context,
            mask,
            block_size=4,
            steps=1,
            threshold=0.85,
            max_new_tokens=tokens.shape[1],
            repetition_guard=False,
        )  # type: ignore[arg-type]
    return float((out.tokens == tokens[:, : out.tokens.shape[1]]).float().mean())


def test_dcd_student_learns_the_teachers_trajectory_in_one_step() -> None:
    """The core claim at toy scale: after DCD, one forward per block writes the teacher's blocks.

    A random teacher barely depends on context, so a student copied from it would agree before
    training; the student here starts from other weights and can only agree by learning the targets.
    """
    _, context, mask, shard = peaked_rollout()
    student = peaked_lm(seed=4).train()  # a different network, so it must learn the blocks
    before = one_step_agreement(student, context, mask, shard["tokens"])
    optimizer = torch.optim.AdamW(student.parameters(), lr=3e-3)
    for _ in range(50):
        loss = dcd_loss(student, context, mask, shard, block_size=4, mask_id=MASK_ID, eos_id=EOS_ID)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after = one_step_agreement(student.eval(), context, mask, shard["tokens"])
    assert before < 0.2 and after > 0.8, (before, after)


def test_dcd_loss_accepts_rollouts_longer_than_every_kept_row() -> None:
    """Found at B = 4 and 16 on the phantom set: a looping row (filtered out) set the rollout's
    width, and the loss compared targets wider than the kept rows' canvas."""
    teacher, context, mask, shard = peaked_rollout()
    pad = 12  # the rows end where they end; the rollout ran three blocks longer
    longer = {name: value for name, value in shard.items()}
    longer["tokens"] = torch.cat(
        [shard["tokens"], torch.full((4, pad), EOS_ID, dtype=torch.long)], 1
    )
    longer["tokens"][:, shard["tokens"].shape[1] - 1] = EOS_ID  # every kept row has ended
    for name in ("steps", "commit_ids", "commit_probs", "first_ids", "first_probs"):
        extra = shard[name][:, -1:].expand(-1, pad, *shard[name].shape[2:])
        longer[name] = torch.cat([shard[name], extra], 1)
    loss = dcd_loss(teacher, context, mask, longer, block_size=4, mask_id=MASK_ID, eos_id=EOS_ID)
    assert torch.isfinite(loss)


def test_bucketed_shards_sum_their_kl_over_a_constant_per_row() -> None:
    """Shards of similar lengths (``length_buckets``) divide by rows x ``tokens_per_row``, so a
    position of a short trajectory weighs what one of a long trajectory does."""
    teacher, context, mask, shard = peaked_rollout()
    kwargs = {"block_size": 4, "mask_id": MASK_ID, "eos_id": EOS_ID}
    with torch.no_grad():
        averaged = dcd_loss(teacher, context, mask, shard, eos_weight=0.0, **kwargs)
        fixed = dcd_loss(
            teacher, context, mask, shard, eos_weight=0.0, tokens_per_row=5.0, **kwargs
        )
        _, upto = one_step_logits(teacher, context, mask, shard["tokens"], **kwargs)
    assert int(upto.sum()) != 4 * 5  # the two divisors differ
    torch.testing.assert_close(fixed * 4 * 5.0, averaged * upto.sum(), rtol=1e-5, atol=1e-6)
