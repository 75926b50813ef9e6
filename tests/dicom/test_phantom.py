"""Phantom DICOMs (both photometrics, several syntaxes) read as a viewer shows them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import dicom
from model.data import phantom
from model.data.phantom.dicom_export import write_dicom

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("index", range(6))
def test_phantom_mediastinum_is_brighter_than_the_lungs(index: int, tmp_path: Path) -> None:
    path = write_dicom(phantom.sample_case(0, index), tmp_path / "case.dcm", downscale=4)
    image = dicom.read_study(path).frontal_images[0]
    pixels, (rows, columns) = image.pixels, image.pixels.shape
    band = slice(int(rows * 0.35), int(rows * 0.6))
    mediastinum = pixels[band, int(columns * 0.45) : int(columns * 0.55)].mean()
    lungs = np.mean(
        [
            pixels[band, int(columns * 0.22) : int(columns * 0.32)].mean(),
            pixels[band, int(columns * 0.68) : int(columns * 0.78)].mean(),
        ]
    )
    assert mediastinum > lungs + 0.3  # bone and soft tissue white, air dark, whatever the encoding
    assert image.pixel_spacing_mm is not None and image.view_position in {"PA", "AP"}
