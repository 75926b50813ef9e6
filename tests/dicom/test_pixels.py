"""The pixel pipeline against dcmtk's dcm2pnm, which renders what a viewer shows."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydicom import Dataset

import dicom
from dicom.pixels import window
from tests.dicom.factories import radiograph, ramp, save, voi_lut_item, with_voi_lut
from tests.support.components import require_tool

pytestmark = pytest.mark.unit

SQRT_LUT = (np.sqrt(np.arange(4096) / 4095) * 65535).astype(int)
CASES: dict[str, tuple[Dataset, list[str]]] = {
    "no VOI: min-max": (radiograph(), ["+Wm"]),
    "linear window": (radiograph(WindowCenter=1500, WindowWidth=2000), ["+Wi", "1"]),
    "MONOCHROME1": (
        radiograph(photometric="MONOCHROME1", WindowCenter=1500, WindowWidth=2000),
        ["+Wi", "1"],
    ),
    "rescale then window": (
        radiograph(RescaleSlope=2, RescaleIntercept=-1000, WindowCenter=1500, WindowWidth=3000),
        ["+Wi", "1"],
    ),
    "sigmoid window": (
        radiograph(WindowCenter=1500, WindowWidth=2000, VOILUTFunction="SIGMOID"),
        ["+Wi", "1"],
    ),
    "VOI LUT sequence": (
        with_voi_lut(radiograph(), voi_lut_item(0, 4096, 16, SQRT_LUT)),
        ["+Wl", "1"],
    ),
}


def read_pgm(path: Path) -> np.ndarray:
    """An 8-bit binary PGM as floats in [0, 1]."""
    magic, size, maximum, raster = path.read_bytes().split(b"\n", 3)
    width, height = (int(v) for v in size.split())
    assert magic == b"P5" and int(maximum) == 255
    return np.frombuffer(raster, dtype=np.uint8).reshape(height, width) / 255.0


@pytest.mark.parametrize("case", list(CASES))
def test_display_values_match_dcmtk(case: str, tmp_path: Path) -> None:
    ds, options = CASES[case]
    path = save(ds, tmp_path / "image.dcm")
    subprocess.run(
        [require_tool("dcm2pnm"), *options, str(path), str(tmp_path / "ref.pgm")], check=True
    )
    reference = read_pgm(tmp_path / "ref.pgm")
    ours = dicom.read_study(path).frontal_images[0].pixels
    assert ours.dtype == np.float32
    assert np.abs(ours - reference).max() <= 1.5 / 255


def test_monochrome1_is_the_inverse_of_monochrome2(tmp_path: Path) -> None:
    mono2 = dicom.read_study(save(radiograph(), tmp_path / "m2.dcm")).frontal_images[0]
    mono1 = dicom.read_study(
        save(radiograph(photometric="MONOCHROME1"), tmp_path / "m1.dcm")
    ).frontal_images[0]
    np.testing.assert_allclose(mono1.pixels, 1.0 - mono2.pixels, atol=1e-6)
    assert mono2.pixels[0, -1] == 1.0  # highest stored value is brightest in MONOCHROME2


def test_presentation_lut_shape_inverse_inverts_monochrome2(tmp_path: Path) -> None:
    image = dicom.read_study(
        save(radiograph(PresentationLUTShape="INVERSE"), tmp_path / "inv.dcm")
    ).frontal_images[0]
    assert image.pixels[0, 0] == 1.0 and image.pixels[0, -1] == 0.0


def test_padding_is_black_and_ignored_by_the_automatic_window(tmp_path: Path) -> None:
    stored = ramp(96, 128, 12)
    stored[:, :16] = 4095  # a padded border at the top stored value
    stored[:, 16:] = np.linspace(1000, 2000, 112).round().astype(np.uint16)
    ds = radiograph(pixels=stored, PixelPaddingValue=4095)
    image = dicom.read_study(save(ds, tmp_path / "pad.dcm")).frontal_images[0]
    assert np.all(image.pixels[:, :16] == 0.0)
    assert image.pixels[0, 16] == 0.0 and image.pixels[0, -1] == 1.0


def test_linear_window_follows_the_standard_formula() -> None:
    values = np.array([0.0, 999.5, 1000.0, 1500.0, 2000.0])
    # PS3.3 C.11.2.1.2.1 with c=1000, w=1001: bounds at 499.5 and 1500.5
    expected = [0.0, 0.5, (1000 - 999.5) / 1000 + 0.5, 1.0, 1.0]
    np.testing.assert_allclose(window(values, 1000.0, 1001.0, "LINEAR"), expected)


def test_unknown_voi_lut_function_is_refused(tmp_path: Path) -> None:
    ds = radiograph(WindowCenter=1000, WindowWidth=500, VOILUTFunction="CUBIC")
    with pytest.raises(dicom.InvalidHeaderError, match=r"\(0028,1056\) VOILUTFunction"):
        dicom.read_study(save(ds, tmp_path / "f.dcm"))


@pytest.mark.parametrize(
    ("extra", "spacing", "source"),
    [
        ({}, (0.139, 0.139), "ImagerPixelSpacing"),
        (
            {"EstimatedRadiographicMagnificationFactor": 1.1},
            (0.139 / 1.1, 0.139 / 1.1),
            "ImagerPixelSpacing / EstimatedRadiographicMagnificationFactor",
        ),
        ({"PixelSpacing": [0.125, 0.13]}, (0.125, 0.13), "PixelSpacing"),
    ],
)
def test_pixel_spacing_names_its_source(
    extra: dict[str, Any], spacing: tuple[float, float], source: str, tmp_path: Path
) -> None:
    image = dicom.read_study(save(radiograph(**extra), tmp_path / "s.dcm")).frontal_images[0]
    assert image.pixel_spacing_mm is not None
    assert image.pixel_spacing_mm.spacing == pytest.approx(spacing)
    assert image.pixel_spacing_mm.source == source


def test_model_input_keeps_aspect_ratio_and_pads(tmp_path: Path) -> None:
    image = dicom.read_study(save(radiograph(rows=100, columns=200), tmp_path / "w.dcm"))
    square = dicom.to_model_input(image.frontal_images[0], size=64)
    assert square.shape == (64, 64) and square.dtype == np.float32
    assert np.all(square[:15] == 0.0) and np.all(square[-15:] == 0.0)  # 32 image rows, centred
    assert square[32, -1] > 0.95 and square[32, 0] < 0.05  # the ramp still rises left to right
