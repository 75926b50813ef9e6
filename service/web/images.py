"""The study's frontal image as the browser shows it: a PNG rendered here, at the window asked.

The display pipeline of PS3.4 Annex N, with ``dicom.pixels``'s steps: stored values → modality
LUT (rescale) → VOI (the centre and width asked for, with the file's VOI LUT Function; or, when
none is asked, the file's own VOI: its VOI LUT, first window, or full range) → the MONOCHROME1 /
INVERSE inversion, after VOI → padding black. One Python path, tested on pixel values; the
browser only swaps PNGs (WORKSPACE_NOTES §5, option A), so no DICOM decoder ships to it.

The API process decodes here, for display only, because a window drag needs an answer within
a frame or two, which a queue hop would not give (``benchmarks/results/workspace_images.md``).
Decoding is the expensive step, so a study's modality values are kept at display size
(``MAX_SIDE``, and shrunk to each size the viewer asks) for the last few studies opened, and each
PNG for the last windows asked (``PNG_CACHE``), keyed by the study's content hash: a study that
grows gets fresh images.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image
from pydicom import Dataset
from pydicom.multival import MultiValue

MAX_SIDE = 2048
"""Longest side kept of a study's image; a 3k detector is shown at most this large."""
SIDES = (512, 1024, 2048)
"""PNG sizes the viewer asks for: a quick preview while dragging, then the sharp one."""
FRAME_CACHE, PNG_CACHE = 4, 128


@dataclass(frozen=True)
class Frame:
    """A frontal image's modality values at display size, and how to window them.

    Attributes
    ----------
    values
        float32 modality values (after rescale / Modality LUT), at most ``MAX_SIDE`` long.
    padding
        True where the detector recorded nothing (PixelPaddingValue): shown black.
    header
        The instance's header without pixel data (VOI attributes, photometric interpretation).
    window
        The (centre, width) a drag starts from: the file's first window, else the full range.
    value_range
        Lowest and highest modality value outside the padding.
    """

    values: np.ndarray
    padding: np.ndarray
    header: Dataset
    window: tuple[float, float]
    value_range: tuple[float, float]

    @property
    def inverted(self) -> bool:
        """Whether the file asks for low values bright (MONOCHROME1, or INVERSE)."""
        from dicom.pixels import needs_inversion

        return needs_inversion(self.header)

    @property
    def function(self) -> str:
        """(0028,1056) VOILUTFunction for a window asked in the browser (LINEAR when absent)."""
        return str(self.header.get("VOILUTFunction", "LINEAR")).strip().upper() or "LINEAR"


@lru_cache(maxsize=FRAME_CACHE)
def load_frame(folder: Path, content_sha256: str) -> Frame:
    """The frame of the study in ``folder``: the frontal image the draft was written from.

    ``content_sha256`` keys the cache only. Raises ``dicom.DicomError`` for a study that cannot
    be shown (as for one that cannot be drafted).
    """
    import dicom
    from dicom.pixels import apply_modality, decode, padding_mask
    from workers.drafting import pick_image

    chosen = pick_image(dicom.read_study(folder, decode_pixels=False))
    ds = _instance(folder, chosen.sop_instance_uid)
    stored = decode(ds)
    padding = padding_mask(stored, ds)
    values = apply_modality(stored, ds)
    real = values[~padding] if (~padding).any() else values.ravel()
    low, high = float(real.min()), float(real.max())
    values[padding] = low  # padding must not brighten the image's edge when it is shrunk
    values, padding = _shrink(values, padding, MAX_SIDE)
    del ds.PixelData
    return Frame(values, padding, ds, _start_window(ds, low, high), (low, high))


def _instance(folder: Path, sop_instance_uid: str) -> Dataset:
    from dicom.read import parse

    for path in sorted(folder.iterdir()):
        ds = parse(path.read_bytes())
        if str(ds.get("SOPInstanceUID", "")) == sop_instance_uid:
            return ds
    raise FileNotFoundError(f"instance {sop_instance_uid} is not in the study's folder")


def _shrink(values: np.ndarray, padding: np.ndarray, side: int) -> tuple[np.ndarray, np.ndarray]:
    """Area-averaged to at most ``side`` on the long side (float32), padding by nearest."""
    rows, columns = values.shape
    scale = side / max(rows, columns)
    if scale >= 1.0:
        return values.astype(np.float32), padding
    size = (max(1, round(columns * scale)), max(1, round(rows * scale)))
    image = Image.fromarray(values.astype(np.float32))
    shrunk = np.asarray(image.resize(size, Image.Resampling.BOX), dtype=np.float32)
    mask = Image.fromarray(padding.astype(np.uint8) * 255).resize(size, Image.Resampling.NEAREST)
    return shrunk, np.asarray(mask) > 127


@lru_cache(maxsize=FRAME_CACHE * len(SIDES))
def sized_frame(folder: Path, content_sha256: str, side: int) -> Frame:
    """The frame at most ``side`` long: a window is applied at the size it is shown, so a
    512 px preview while dragging windows a sixteenth of the pixels of a 2048 px image."""
    frame = load_frame(folder, content_sha256)
    values, padding = _shrink(frame.values, frame.padding, side)
    return replace(frame, values=values, padding=padding)


def _start_window(ds: Dataset, low: float, high: float) -> tuple[float, float]:
    """The file's first Window Center/Width, else the full range of the image."""
    try:
        center, width = _first(ds.WindowCenter), _first(ds.WindowWidth)
    except (AttributeError, TypeError, ValueError, IndexError):
        center, width = 0.0, 0.0
    if width >= 1:
        return center, width
    return (low + high) / 2, max(high - low, 1.0)


def _first(value: object) -> float:
    """The first value of a decimal string that may hold several (one per window)."""
    return float(value[0] if isinstance(value, MultiValue | list) else value)  # type: ignore[arg-type]


def display_values(frame: Frame, window: tuple[float, float] | None, invert: bool) -> np.ndarray:
    """[0, 1] values as shown: VOI, the file's inversion, the viewer's own inversion, padding."""
    from dicom.pixels import apply_presentation, apply_voi
    from dicom.pixels import window as apply_window

    values = frame.values.astype(np.float64)
    if window is None:
        shown = apply_voi(values, frame.header, frame.padding)
    else:
        shown = apply_window(values, window[0], window[1], frame.function)
    shown = apply_presentation(shown, frame.header)
    if invert:
        shown = 1.0 - shown
    shown[frame.padding] = 0.0
    return shown


@lru_cache(maxsize=PNG_CACHE)
def render_png(
    folder: Path,
    content_sha256: str,
    window: tuple[float, float] | None,
    invert: bool,
    side: int,
) -> bytes:
    """The PNG of a study's frame at ``window`` (None: the file's own VOI), at most ``side``
    pixels on its long side."""
    shown = display_values(sized_frame(folder, content_sha256, side), window, invert)
    buffer = io.BytesIO()
    # speed over size: PNG level 1 on loopback or a LAN
    Image.fromarray(np.rint(shown * 255).astype(np.uint8)).save(buffer, "PNG", compress_level=1)
    return buffer.getvalue()
