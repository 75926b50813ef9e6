from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import model
from model.assistant import QuestionError, ask
from model.checkpoint import CheckpointError
from model.data.transforms import ImageInputError
from model.decoding import EngineError
from model.report import PromptTooLongError, ReportGenerator, parse_report
from tests.model.conftest import synthetic_study

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def generator(trained_checkpoint: Path) -> ReportGenerator:
    return model.load(trained_checkpoint, batch_size=4)


def test_parse_report_splits_sections() -> None:
    assert parse_report("FINDINGS: Clear lungs.\nIMPRESSION: Normal.") == (
        "Clear lungs.",
        "Normal.",
    )
    assert parse_report("FINDINGS: Clear lungs.") == ("Clear lungs.", "")
    assert parse_report("no sections") == ("no sections", "")


def test_reports_read_the_image_and_carry_provenance(
    generator: ReportGenerator, trained_checkpoint: Path
) -> None:
    studies = [synthetic_study(i) for i in range(3000, 3006)]
    reports = generator.generate([image for image, _ in studies], label=False)
    assert [(r.findings, r.impression) for r in reports] == [
        (s.findings, s.impression) for _, s in studies
    ]
    from model.checkpoint import sha256_file

    assert reports[0].checkpoint_sha256 == sha256_file(trained_checkpoint / "model.safetensors")
    assert reports[0].engine == "ar" and reports[0].model_id.startswith("echocxr-ar")
    assert reports[0].timings["forwards"] > 0


def test_larger_images_are_resized_and_tensors_accepted(generator: ReportGenerator) -> None:
    image, record = synthetic_study(3001, size=96)
    assert generator.generate([image], label=False)[0].findings == record.findings
    small, _ = synthetic_study(3001)
    tensor_report = generator.generate(torch.tensor(small)[None, None], label=False)[0]
    assert tensor_report.findings == record.findings


@pytest.mark.parametrize(
    ("images", "message"),
    [
        ([], "empty batch"),
        ([np.zeros((32, 32), np.uint8)], "float32"),
        ([np.zeros((3, 32, 32), np.float32)], "2-D"),
        ([np.full((32, 32), 2.0, np.float32)], r"\[0, 1\]"),
        (torch.zeros(2, 3, 32, 32), "tensor"),
    ],
)
def test_bad_images_get_a_typed_error(
    generator: ReportGenerator, images: object, message: str
) -> None:
    with pytest.raises(ImageInputError, match=message):
        generator.generate(images, label=False)  # type: ignore[arg-type]


def test_assistant_answers_from_the_image_and_keeps_history(generator: ReportGenerator) -> None:
    left, _ = synthetic_study(3000)
    right, _ = synthetic_study(3001)
    assert ask(generator, [left], "Which side is the opacity?") == "Left."
    assert ask(generator, [right], "Which side is the opacity?") == "Right."
    assert (
        ask(generator, [right], "Is there lung opacity?", history=[("Which side?", "Right.")])
        == "Yes."
    )


def test_assistant_rejects_empty_and_overlong_questions(generator: ReportGenerator) -> None:
    image, _ = synthetic_study(3000)
    with pytest.raises(QuestionError):
        ask(generator, [image], "  ")
    with pytest.raises(PromptTooLongError, match="positions"):
        ask(generator, [image], "opacity " * 400)


def test_load_errors_are_typed(tmp_path: Path, trained_checkpoint: Path) -> None:
    with pytest.raises(CheckpointError):
        model.load(tmp_path)
    with pytest.raises(EngineError):
        model.load(trained_checkpoint, engine="nonesuch")
