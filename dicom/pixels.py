"""From stored pixel values to what a viewer shows, as float32 in [0, 1] (PS3.3 C.11, PS3.4 N).

The steps follow the display pipeline of PS3.4 Annex N, each a verb taking ``(array, dataset)``:
``decode`` → ``apply_modality`` (rescale or Modality LUT) → ``apply_voi`` (VOI LUT Sequence
preferred, else the first Window Center/Width with its VOI LUT Function, else the min–max of
the non-padding pixels) → ``apply_presentation`` (MONOCHROME1 or PresentationLUTShape INVERSE
inverted, so higher always means brighter). Pixel padding is excluded from the automatic window
and shown black.

Windowing is computed here rather than with pydicom's ``apply_windowing`` because that function
maps into the stored-value range, which would need a second, error-prone rescale to [0, 1].
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np
from pydicom import Dataset
from pydicom.multival import MultiValue
from pydicom.pixels import apply_modality_lut, pixel_array
from pydicom.pixels.processing import apply_voi as apply_voi_lut_table

from dicom.codecs import DCMTK_DECODER, decode_with_dcmtk, decoding_plugin, syntax_name
from dicom.errors import InvalidHeaderError, TruncatedError, UnsupportedTransferSyntaxError

_DECODE_FAILURES = (ValueError, RuntimeError, EOFError, KeyError, IndexError, TypeError, OSError)


@dataclass(frozen=True)
class PixelSpacing:
    """Row and column spacing in mm, and the attribute(s) it was taken from.

    Attributes
    ----------
    spacing
        (row spacing, column spacing) in mm, at the patient where the header allows.
    source
        The keyword(s) it came from, e.g. ``"ImagerPixelSpacing / EstimatedRadiographic
        MagnificationFactor"``, because detector-plane and patient-plane spacing differ by
        10–20 % on a chest radiograph and a measurement must say which it used.
    """

    spacing: tuple[float, float]
    source: str


def decode(ds: Dataset) -> np.ndarray:
    """Stored values of the single frame, decoded with the licence-chosen plugin (dicom.codecs).

    Raises
    ------
    UnsupportedTransferSyntaxError
        No permitted decoder for the file's transfer syntax.
    TruncatedError
        Pixel data shorter than the header declares, or a compressed stream that does not decode.
    """
    syntax = str(ds.file_meta.TransferSyntaxUID)
    plugin = _checked_plugin(ds)
    if plugin == DCMTK_DECODER:
        return decode_with_dcmtk(ds)
    try:
        array = pixel_array(ds, decoding_plugin=plugin) if plugin else ds.pixel_array
    except NotImplementedError as error:
        raise UnsupportedTransferSyntaxError(
            f"(0002,0010) TransferSyntaxUID {syntax_name(syntax)} could not be decoded: "
            "convert the file to explicit VR little endian and send it again"
        ) from error
    except _DECODE_FAILURES as error:
        raise TruncatedError(
            f"(7FE0,0010) PixelData in {syntax_name(syntax)} could not be decoded "
            f"({type(error).__name__}); the file is truncated or corrupt: export it again"
        ) from error
    return np.asarray(array)


def _checked_plugin(ds: Dataset) -> str:
    """The decoding plugin for the file's syntax, once native pixel data proved long enough."""
    plugin = decoding_plugin(str(ds.file_meta.TransferSyntaxUID), int(ds.get("BitsStored", 8) or 8))
    if not plugin:
        _check_native_length(ds)
    return plugin


def _check_native_length(ds: Dataset) -> None:
    """Refuses uncompressed pixel data shorter than Rows × Columns × BitsAllocated says."""
    expected = int(ds.Rows) * int(ds.Columns) * int(ds.get("SamplesPerPixel", 1))
    expected = expected * int(ds.BitsAllocated) // 8
    actual = len(ds.PixelData)
    if actual < expected:
        raise TruncatedError(
            f"(7FE0,0010) PixelData holds {actual} bytes but (0028,0010) Rows × (0028,0011) "
            f"Columns × (0028,0100) BitsAllocated need {expected}; the file is truncated: "
            "export it again"
        )


def padding_mask(stored: np.ndarray, ds: Dataset) -> np.ndarray:
    """True where a stored value is PixelPaddingValue (or within PixelPaddingRangeLimit)."""
    if "PixelPaddingValue" not in ds:
        return np.zeros(stored.shape, dtype=bool)
    first = int(ds.PixelPaddingValue)
    last = int(ds.get("PixelPaddingRangeLimit", first))
    low, high = min(first, last), max(first, last)
    return (stored >= low) & (stored <= high)


def apply_modality(stored: np.ndarray, ds: Dataset) -> np.ndarray:
    """Modality LUT or rescale slope/intercept (PS3.3 C.11.1) to float64 modality values."""
    try:
        return np.asarray(apply_modality_lut(stored, ds), dtype=np.float64)
    except (ValueError, TypeError, IndexError, struct.error) as error:
        raise InvalidHeaderError(
            "(0028,3000) ModalityLUTSequence or (0028,1053) RescaleSlope cannot be applied "
            f"({type(error).__name__}); correct the header"
        ) from error


def apply_voi(values: np.ndarray, ds: Dataset, padding: np.ndarray) -> np.ndarray:
    """VOI LUT Sequence, else the first window, else min–max of non-padding pixels, to [0, 1]."""
    if ds.get("VOILUTSequence"):
        return _apply_voi_lut_sequence(values, ds)
    if "WindowCenter" in ds and "WindowWidth" in ds:
        center, width = _first_window(ds)
        function = str(ds.get("VOILUTFunction", "LINEAR")).strip().upper() or "LINEAR"
        return window(values, center, width, function)
    return _min_max(values, padding)


def _apply_voi_lut_sequence(values: np.ndarray, ds: Dataset) -> np.ndarray:
    """The first VOI LUT item, scaled by its declared output bit depth (LUTDescriptor[2])."""
    item = ds.VOILUTSequence[0]
    try:
        output_bits = int(item.LUTDescriptor[2])
        mapped = apply_voi_lut_table(np.rint(values).astype(np.int64), ds, index=0)
    except (AttributeError, ValueError, TypeError, IndexError, struct.error) as error:
        # struct.error: LUTData shorter than its LUTDescriptor declares
        raise InvalidHeaderError(
            "(0028,3010) VOILUTSequence item 1 cannot be applied: its (0028,3002) LUTDescriptor "
            "or (0028,3006) LUTData is malformed; correct or remove the VOI LUT"
        ) from error
    return np.clip(np.asarray(mapped, dtype=np.float64) / (2**output_bits - 1), 0.0, 1.0)


def _first_window(ds: Dataset) -> tuple[float, float]:
    """The first Window Center/Width pair (viewers show the first by default)."""
    center, width = _first_value(ds.WindowCenter), _first_value(ds.WindowWidth)
    if width <= 0:
        raise InvalidHeaderError(
            f"(0028,1051) WindowWidth is {width}, it must be positive; correct the header"
        )
    return center, width


def _first_value(value: object) -> float:
    """The first of a possibly multi-valued decimal string."""
    return float(value[0] if isinstance(value, MultiValue | list) else value)  # type: ignore[arg-type]


def window(values: np.ndarray, center: float, width: float, function: str) -> np.ndarray:
    """Window to [0, 1] by the VOI LUT Function formulas of PS3.3 C.11.2.1.2–3.

    Raises
    ------
    InvalidHeaderError
        For a VOILUTFunction other than LINEAR, LINEAR_EXACT or SIGMOID, or an impossible width.
    """
    if function == "LINEAR":
        if width < 1:
            raise InvalidHeaderError("(0028,1051) WindowWidth must be at least 1 for LINEAR")
        if width == 1:
            return (values > center - 0.5).astype(np.float64)
        return np.clip((values - (center - 0.5)) / (width - 1) + 0.5, 0.0, 1.0)
    if function == "LINEAR_EXACT":
        return np.clip((values - center) / width + 0.5, 0.0, 1.0)
    if function == "SIGMOID":
        return 1.0 / (1.0 + np.exp(-4.0 * (values - center) / width))
    raise InvalidHeaderError(
        f"(0028,1056) VOILUTFunction {function!r} is not LINEAR, LINEAR_EXACT or SIGMOID; "
        "correct the header"
    )


def _min_max(values: np.ndarray, padding: np.ndarray) -> np.ndarray:
    """Full-range window over the pixels that are not padding (what viewers do without VOI)."""
    real = values[~padding]
    if real.size == 0:
        raise InvalidHeaderError(
            "(0028,0120) PixelPaddingValue marks every pixel as padding; correct the header"
        )
    low, high = float(real.min()), float(real.max())
    if high == low:
        return np.zeros(values.shape, dtype=np.float64)
    return np.clip((values - low) / (high - low), 0.0, 1.0)


def needs_inversion(ds: Dataset) -> bool:
    """MONOCHROME1 shows low values bright; PresentationLUTShape INVERSE asks the same.

    The DX IOD pairs MONOCHROME1 with INVERSE, both stating one inversion, so they do not
    cancel out (MONAI Deploy PR #290 made the same choice).
    """
    photometric = str(ds.get("PhotometricInterpretation", "")).strip().upper()
    shape = str(ds.get("PresentationLUTShape", "")).strip().upper()
    return photometric == "MONOCHROME1" or shape == "INVERSE"


def apply_presentation(display: np.ndarray, ds: Dataset) -> np.ndarray:
    """Inverts where the header says low values are bright, so higher always means brighter."""
    return 1.0 - display if needs_inversion(ds) else display


def check_display_header(ds: Dataset) -> None:
    """Refuses, without decoding, everything ``to_display`` would refuse from the header alone.

    The transfer syntax must have a permitted decoder, native pixel data must be as long as the
    header declares, and the modality and VOI attributes must apply: they run through the same
    steps on a one-pixel stand-in, so a header-only read refuses exactly what a full read refuses
    for its header. Only faults inside the stored values (a corrupt compressed stream, a
    PixelPaddingValue that covers every pixel) need the decode to be seen.

    Raises
    ------
    UnsupportedTransferSyntaxError, TruncatedError, InvalidHeaderError
        As ``to_display`` would for the same header.
    """
    _checked_plugin(ds)
    stand_in = np.zeros((1, 1), dtype=np.uint16)
    padding_mask(stand_in, ds)  # reads PixelPaddingValue; the stand-in itself is not padding
    apply_voi(apply_modality(stand_in, ds), ds, np.zeros(stand_in.shape, dtype=bool))


def to_display(ds: Dataset) -> np.ndarray:
    """The whole pipeline: float32 (rows, columns) in [0, 1] as a viewer shows the image."""
    stored = decode(ds)
    padding = padding_mask(stored, ds)
    display = apply_presentation(apply_voi(apply_modality(stored, ds), ds, padding), ds)
    display[padding] = 0.0
    return display.astype(np.float32)


def pixel_spacing(ds: Dataset) -> PixelSpacing | None:
    """Spacing at the patient where possible (PS3.3 10.7.1.3), else at the detector.

    PixelSpacing, when present, is already calibrated to the patient. ImagerPixelSpacing is at
    the detector and is divided by EstimatedRadiographicMagnificationFactor when that is given.
    """
    if _two_positive(ds.get("PixelSpacing")):
        row, col = (float(v) for v in ds.PixelSpacing)
        return PixelSpacing((row, col), "PixelSpacing")
    if not _two_positive(ds.get("ImagerPixelSpacing")):
        return None
    row, col = (float(v) for v in ds.ImagerPixelSpacing)
    factor = ds.get("EstimatedRadiographicMagnificationFactor")
    if factor is not None and float(factor) > 0:
        source = "ImagerPixelSpacing / EstimatedRadiographicMagnificationFactor"
        return PixelSpacing((row / float(factor), col / float(factor)), source)
    return PixelSpacing((row, col), "ImagerPixelSpacing")


def _two_positive(value: object) -> bool:
    """A two-valued spacing attribute whose values are both positive numbers."""
    if not isinstance(value, MultiValue | list | tuple) or len(value) != 2:
        return False
    try:
        return all(float(v) > 0 for v in value)
    except (TypeError, ValueError):
        return False
