"""Burned-in annotation: the header's (0028,0301) flag, and a pixel check for text it omits.

De-identifying the header is not enough when a name or date is drawn into the pixels, and
the tag is often absent or wrong on CR/DX. The check here is a cheap screen, not OCR: it flags
for review (and can black out) saturated glyph-like blobs lined up near the image edges.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pydicom import Dataset
from scipy import ndimage


@dataclass(frozen=True)
class BurnedInAnnotation:
    """Whether an image carries burned-in text, by its header and by a pixel check.

    Attributes
    ----------
    tag_says
        (0028,0301) BurnedInAnnotation is YES.
    regions
        (row0, col0, row1, col1) boxes of bright, saturated, text-like blobs near the edges.
    """

    tag_says: bool
    regions: list[tuple[int, int, int, int]]

    @property
    def flagged(self) -> bool:
        return self.tag_says or bool(self.regions)


def detect_burned_in(dataset: Dataset, pixels: np.ndarray, edge: float = 0.2) -> BurnedInAnnotation:
    """Flags burned-in annotation from the tag and from the display pixels.

    Burned-in text on radiographs is drawn at the maximum display value in a corner or along an
    edge (markers, names, dates). We therefore look, inside a band of ``edge`` of each side,
    for saturated blobs (≥ 0.98) shaped like glyphs: small, thin strokes, several of them
    lined up. Anatomy near the edges is rarely saturated after the VOI window.
    """
    tag_says = str(dataset.get("BurnedInAnnotation", "")).strip().upper() == "YES"
    rows, columns = pixels.shape
    saturated = pixels >= 0.98
    band = np.zeros_like(saturated)
    r, c = int(rows * edge), int(columns * edge)
    band[:r], band[-r:], band[:, :c], band[:, -c:] = True, True, True, True
    labels, _ = ndimage.label(saturated & band)
    boxes = ndimage.find_objects(labels)
    glyph_ids = [i + 1 for i, box in enumerate(boxes) if box and _glyph_like(box, saturated, rows)]
    return BurnedInAnnotation(tag_says, _lines_of_text(labels, glyph_ids, rows))


def _glyph_like(box: tuple[slice, slice], saturated: np.ndarray, rows: int) -> bool:
    """A blob the size of a character: 0.4–8 % of the image height, partly filled strokes."""
    height, width = box[0].stop - box[0].start, box[1].stop - box[1].start
    fill = saturated[box].mean()
    return 0.004 * rows <= height <= 0.08 * rows and width <= 3 * height and fill < 0.85


def _lines_of_text(
    labels: np.ndarray, glyph_ids: list[int], rows: int
) -> list[tuple[int, int, int, int]]:
    """Boxes around runs of three or more glyphs joined along a line (a lone dot is not text)."""
    glyphs = np.isin(labels, glyph_ids)
    gap = max(1, int(0.02 * rows))
    joined, _ = ndimage.label(ndimage.binary_dilation(glyphs, np.ones((3, 2 * gap + 1))))
    regions = []
    for index, box in enumerate(ndimage.find_objects(joined), start=1):
        members = np.unique(labels[(joined == index) & glyphs])
        if box and len(members) >= 3:
            regions.append((box[0].start, box[1].start, box[0].stop, box[1].stop))
    return regions


def mask_burned_in(pixels: np.ndarray, finding: BurnedInAnnotation) -> np.ndarray:
    """A copy of ``pixels`` with the detected text boxes (plus a small margin) set to black."""
    masked = pixels.copy()
    margin = max(2, pixels.shape[0] // 200)
    for row0, col0, row1, col1 in finding.regions:
        masked[max(0, row0 - margin) : row1 + margin, max(0, col0 - margin) : col1 + margin] = 0.0
    return masked
