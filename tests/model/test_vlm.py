from __future__ import annotations

import pytest
import torch

from model.config import TextConfig, VisionConfig
from model.tokenizer import Tokenizer, pad_rows
from model.vision import PretrainedDirError
from model.vlm import VLM
from tests.model.conftest import tiny_model_config

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def tokenizer() -> Tokenizer:
    return Tokenizer.train(["Is there an effusion? Write the report. Yes. No."] * 4, vocab_size=300)


@pytest.fixture(scope="module")
def vlm(tokenizer: Tokenizer) -> VLM:
    torch.manual_seed(0)
    return VLM(tiny_model_config(), tokenizer).eval()


def test_embed_images_gives_fixed_number_of_tokens_in_lm_width(vlm: VLM) -> None:
    visual = vlm.embed_images(torch.rand(3, 1, 32, 32))
    assert visual.shape == (3, vlm.config.num_visual_tokens, vlm.lm.config.hidden_size)


def test_build_context_moves_padding_to_the_far_left(vlm: VLM, tokenizer: Tokenizer) -> None:
    prompts = [tokenizer.chat_prompt("Is there an effusion?"), tokenizer.chat_prompt("Yes.")]
    ids, mask = pad_rows(prompts, tokenizer.pad_id, left=True)
    pixels = torch.rand(2, 1, 32, 32)
    embeds, context_mask = vlm.build_context(pixels, ids, mask)
    n_pad = len(prompts[0]) - len(prompts[1])
    assert context_mask[1, :n_pad].sum() == 0 and context_mask[1, n_pad:].all()
    single, _ = vlm.build_context(
        pixels[1:], torch.tensor([prompts[1]]), torch.ones(1, len(prompts[1]))
    )
    torch.testing.assert_close(embeds[1, n_pad:], single[0])
    bos = vlm.embed_tokens(torch.tensor([tokenizer.bos_id]))[0]
    torch.testing.assert_close(embeds[1, n_pad], bos)


def test_visual_tokens_depend_on_the_image(vlm: VLM) -> None:
    a, b = vlm.embed_images(torch.zeros(1, 1, 32, 32)), vlm.embed_images(torch.ones(1, 1, 32, 32))
    assert not torch.allclose(a, b)


def test_lm_knows_the_special_token_ids(vlm: VLM, tokenizer: Tokenizer) -> None:
    assert vlm.lm.config.eos_token_id == tokenizer.eos_id
    assert vlm.lm.config.mask_token_id == tokenizer.mask_id
    assert vlm.lm.get_input_embeddings().num_embeddings == tokenizer.vocab_size


@pytest.mark.parametrize("part", ["vision", "text"])
def test_missing_local_pretrained_dir_says_what_to_put_where(
    tokenizer: Tokenizer, tmp_path: object, part: str
) -> None:
    config = tiny_model_config()
    if part == "vision":
        config.vision = VisionConfig(pretrained_dir=str(tmp_path))
    else:
        config.text = TextConfig(pretrained_dir=str(tmp_path))
    with pytest.raises(PretrainedDirError, match="save_pretrained"):
        VLM(config, tokenizer)
