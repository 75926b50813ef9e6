"""The reading view's image: PNG pixels checked against the display pipeline's formulas (PS3.3
C.11.2.1.2 LINEAR windowing, MONOCHROME1 inverted after VOI, padding black), computed here from
the stored values the test wrote, not by the code under test."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from service.web import images
from tests.dicom.factories import radiograph, ramp, save

pytestmark = pytest.mark.unit


def _study(folder: Path, **header: object) -> Path:
    save(radiograph(rows=64, columns=256, **header), folder / "image.dcm")  # type: ignore[arg-type]
    return folder


def _png(
    folder: Path, window: tuple[float, float] | None, invert: bool = False, side: int = 2048
) -> np.ndarray:
    data = images.render_png(folder, folder.name, window, invert, side)
    return np.asarray(Image.open(io.BytesIO(data)))


def _linear(values: np.ndarray, center: float, width: float) -> np.ndarray:
    """PS3.3 C.11.2.1.2.1, to [0, 255]."""
    shown = np.clip((values - (center - 0.5)) / (width - 1) + 0.5, 0, 1)
    return np.rint(shown * 255)


STORED = ramp(64, 256, 12).astype(np.float64)


def test_monochrome1_is_inverted_after_the_window(tmp_path: Path) -> None:
    folder = _study(tmp_path, photometric="MONOCHROME1")
    shown = _png(folder, (1500.0, 1000.0))
    assert np.abs(shown - (255 - _linear(STORED, 1500, 1000))).max() <= 1
    assert shown[0, 0] == 255 and shown[0, -1] == 0  # low stored values are bright
    frame = images.load_frame(folder, folder.name)
    assert frame.inverted and frame.value_range == (0.0, 4095.0)


def test_without_a_window_asked_the_file_window_applies(tmp_path: Path) -> None:
    folder = _study(tmp_path, WindowCenter="1000", WindowWidth="400")
    assert np.abs(_png(folder, None) - _linear(STORED, 1000, 400)).max() <= 1
    assert images.load_frame(folder, folder.name).window == (1000.0, 400.0)


def test_the_window_applies_to_rescaled_values(tmp_path: Path) -> None:
    """A negative rescale slope (seen on CR) makes low stored values bright without inversion."""
    folder = _study(tmp_path, RescaleSlope="-1", RescaleIntercept="4095")
    shown = _png(folder, (2000.0, 3000.0))
    assert np.abs(shown - _linear(4095 - STORED, 2000, 3000)).max() <= 1
    assert shown[0, 0] > shown[0, -1]


def test_padding_stays_black_and_the_viewer_can_invert(tmp_path: Path) -> None:
    pixels = ramp(64, 256, 12)
    pixels[:, :16] = 0
    folder = _study(tmp_path, pixels=pixels, photometric="MONOCHROME1", PixelPaddingValue=0)
    for invert in (False, True):
        shown = _png(folder, (2048.0, 4096.0), invert=invert)
        assert (shown[:, :16] == 0).all()
    plain, inverted = _png(folder, (2048.0, 4096.0)), _png(folder, (2048.0, 4096.0), True)
    assert np.abs(plain[:, 16:].astype(int) + inverted[:, 16:] - 255).max() <= 1


def test_the_png_is_no_larger_than_asked(tmp_path: Path) -> None:
    folder = _study(tmp_path)
    assert _png(folder, None, side=128).shape == (32, 128)
    assert _png(folder, None, side=1024).shape == (64, 256)
