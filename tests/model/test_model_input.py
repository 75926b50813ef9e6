"""One function makes the model input from a decoded image, for serving, training and the bench.

A checkpoint reads pixels prepared as it was trained on only if every path prepares them alike:
the product (``dicom.to_model_input``), ``ReportGenerator`` given arrays, the phantom render
cache that training and ``echocxr bench`` read, and the public data sets' caches.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dicom.transforms import PREPROCESSING, to_model_input
from model.data.datasets import phantom_studies, read_cache
from model.data.public import PublicStudy, build_cache
from model.data.transforms import images_to_batch

pytestmark = pytest.mark.unit


def portrait(rows: int = 60, columns: int = 40) -> np.ndarray:
    """A portrait film: bright, with a dark band down the middle, so stretching shows."""
    image = np.full((rows, columns), 0.8, dtype=np.float32)
    image[:, columns // 2 - 2 : columns // 2 + 2] = 0.1
    return image


def test_a_portrait_image_keeps_its_aspect_and_is_padded_not_stretched() -> None:
    square = to_model_input(portrait(), 30)
    assert square.shape == (30, 30) and square.dtype == np.float32
    assert square[:, :5].max() == 0.0 and square[:, -5:].max() == 0.0  # padding on both sides
    assert square[:, 10:20].max() == pytest.approx(0.8)


def test_an_image_already_at_the_model_size_passes_through_unchanged() -> None:
    image = np.random.default_rng(0).random((32, 32), dtype=np.float32)
    assert np.array_equal(to_model_input(image, 32), image)


def test_the_generator_prepares_arrays_as_the_dicom_path_does() -> None:
    batch = images_to_batch([portrait(), portrait(50, 70)], 30)
    expected = np.stack([to_model_input(portrait(), 30), to_model_input(portrait(50, 70), 30)])
    assert torch.equal(batch, torch.from_numpy(expected)[:, None])


def test_the_phantom_training_images_are_what_serving_reads_from_their_dicom(
    tmp_path: Path,
) -> None:
    import dicom
    from model.data.datasets import CACHE_DICOM_DOWNSCALE
    from model.data.phantom import iter_cases, render, write_dicom

    (image, _), case = next(phantom_studies(0, 1, "test", 64)), next(iter_cases(0, 1, "test"))
    path = write_dicom(case, tmp_path / "study.dcm", downscale=CACHE_DICOM_DOWNSCALE)
    served = to_model_input(dicom.read_study(path).frontal_images[0], 64)
    assert np.array_equal(image, served)
    # not the direct render, which skips the LUTs and the detector matrix
    assert not np.allclose(image, to_model_input(render(case, size=64), 64), atol=0.02)


def test_a_public_data_set_cache_holds_the_same_model_input(tmp_path: Path) -> None:
    path = tmp_path / "film.png"
    Image.fromarray(np.round(portrait() * 255).astype(np.uint8)).save(path)
    study = PublicStudy("s1", path, "Clear.", "Normal.", {}, "train")
    images, _ = read_cache(build_cache(iter([study]), tmp_path / "cache", "train", 30))
    decoded = np.asarray(Image.open(path), dtype=np.float32) / 255.0
    expected = np.round(to_model_input(decoded, 30) * 255).astype(np.uint8)
    assert np.array_equal(images[0], expected)
    assert images[0][:, :5].max() == 0  # padded, as serving pads, not stretched


def test_every_shipped_checkpoint_names_that_function_as_its_preprocessing() -> None:
    for manifest in Path("model/checkpoints").glob("*/config.json"):
        assert json.loads(manifest.read_text())["image_preprocessing"]["steps"] == PREPROCESSING


def test_no_other_module_resizes_images_for_the_model() -> None:
    """The one place stays one: only dicom/transforms.py builds a MONAI resize."""
    resizers = {"Resize", "Resized", "Zoom"}
    resizing = [
        str(path)
        for path in [*Path("model").rglob("*.py"), *Path("dicom").rglob("*.py")]
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.ImportFrom)
        and node.module == "monai.transforms"
        and resizers & {alias.name for alias in node.names}
    ]
    assert resizing == ["dicom/transforms.py"]
