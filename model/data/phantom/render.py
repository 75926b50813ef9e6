"""Rasterise a ``PhantomCase`` into a radiograph, at training size or full detector size.

Everything is drawn analytically in a *body frame*, not on a pixel lattice, so one code path
serves the 256 px training image and the 3000 px DICOM and the two agree:

- ``x``: horizontal, 0 on the midline, +-1 at the inner rib cage at its widest. Negative x is
  the image's left, which is the **patient's right** (the radiographic convention).
- ``y``: vertical, 0 at the lung apices, about 1 at the costophrenic angles, increasing down.

The picture is a sum of *densities* (soft tissue, bone, fluid raise it; air in the lungs lowers
it), mapped to display brightness at the end. Findings act on two fields: ``fill`` (how much of
the lung's air is replaced by fluid or tissue, 0..1) and ``extra`` (added density, e.g. a tube).
All shapes are smooth ramps rather than blurred masks, so no convolution is needed and the
cost is a few hundred whole-array numpy operations per image.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from model.data.phantom.cases import Finding, PhantomCase, rng_for

F32 = np.float32
RENDER_STREAM = 3
THORAX_WIDTH = 1.9  # inner rib cage width in body units, the CTR denominator
AP_MAGNIFICATION = 1.06
AP_HEART_MAGNIFICATION = 1.12
CARINA_Y = 0.36
RIB_POWER, RIB_STEP = 0.75, 0.1  # rib phase = arched^0.75 / 0.1: ten ribs, widening downward
ZONE_CENTER_Y = {"upper": 0.22, "middle": 0.45, "lower": 0.66}


def render(case: PhantomCase, size: int = 256) -> np.ndarray:
    """The study as a viewer would display it, as float32 (size, size) in [0, 1].

    The detector field is fitted into the square without distortion; the margin and any
    collimated border are 0 (padding). Same case and size give identical bytes.

    Raises
    ------
    ValueError
        If ``size`` is below 32 pixels (anatomy would be sub-pixel).
    """
    if size < 32:
        raise ValueError(f"size must be >= 32 pixels, got {size}")
    acq = case.acquisition
    height_mm = acq.rows * acq.pixel_spacing_mm
    width_mm = acq.columns * acq.pixel_spacing_mm
    spacing = max(height_mm, width_mm) / size
    return rasterize(case, (size, size), spacing, (height_mm, width_mm))


def detector_image(case: PhantomCase, downscale: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """The full detector matrix (rows, columns) and its exposed-field mask.

    ``downscale`` divides the matrix (for quick tests and previews); the image is the same
    picture, sampled more coarsely.
    """
    if downscale < 1:
        raise ValueError(f"downscale must be >= 1, got {downscale}")
    acq = case.acquisition
    shape = (acq.rows // downscale, acq.columns // downscale)
    spacing = acq.pixel_spacing_mm * downscale
    image, box = _rasterize(case, shape, spacing, (shape[0] * spacing, shape[1] * spacing))
    exposed = np.zeros(shape, dtype=bool)
    exposed[box[0] : box[1], box[2] : box[3]] = True
    return image, exposed


def rasterize(
    case: PhantomCase,
    shape: tuple[int, int],
    spacing_mm: float,
    detector_mm: tuple[float, float],
) -> np.ndarray:
    """Draw ``case`` on a (rows, cols) grid of ``spacing_mm`` pixels centred on the detector."""
    return _rasterize(case, shape, spacing_mm, detector_mm)[0]


def _rasterize(
    case: PhantomCase,
    shape: tuple[int, int],
    spacing_mm: float,
    detector_mm: tuple[float, float],
) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    frame = Frame.build(case, shape, spacing_mm)
    density = _anatomy_density(frame)
    for finding in case.findings:
        FINDING_PAINTERS[finding.kind](frame, finding)
    density += _lung_density(frame) + frame.extra
    image = _to_display(case, density)
    _add_noise(case, image, shape)
    detector_px = (
        min(shape[0], round(detector_mm[0] / spacing_mm)),
        min(shape[1], round(detector_mm[1] / spacing_mm)),
    )
    box = _field_box(shape, detector_px, case.acquisition.collimation)
    _apply_collimation(image, box)
    _burn_marker(case, image, box)
    np.clip(image, 0.0, 1.0, out=image)
    return image, box


# --- geometry ----------------------------------------------------------------------------


def ramp(distance: np.ndarray | float, softness: float) -> np.ndarray:
    """1 well inside (distance < 0), 0 well outside, linear over ``softness`` body units."""
    t = np.asarray(distance, dtype=F32) * F32(-1.0 / softness)
    t += F32(0.5)
    return _unit_clip(t)


def _unit_clip(t: np.ndarray) -> np.ndarray:
    """Clip to [0, 1] IN PLACE (np.clip's dispatch costs more than the arithmetic here).

    Only pass temporaries: never a Frame field such as ``fr.y``.
    """
    np.maximum(t, F32(0.0), out=t)
    return np.minimum(t, F32(1.0), out=t)


@dataclass
class Frame:
    """Body-frame coordinates of every pixel plus the fields findings paint into."""

    case: PhantomCase
    x: np.ndarray
    y: np.ndarray
    ax: np.ndarray
    right: np.ndarray
    dome: np.ndarray
    lateral: np.ndarray
    lung: np.ndarray
    fill: np.ndarray
    extra: np.ndarray
    pneumothorax: np.ndarray
    mm_per_unit: tuple[float, float]
    row_y_min: np.ndarray
    row_y_max: np.ndarray
    col_x_min: np.ndarray
    col_x_max: np.ndarray
    pixel: float

    @classmethod
    def build(cls, case: PhantomCase, shape: tuple[int, int], spacing_mm: float) -> Frame:
        a, acq = case.anatomy, case.acquisition
        mag = AP_MAGNIFICATION if acq.view == "AP" else 1.0
        rows = (np.arange(shape[0], dtype=F32) - F32((shape[0] - 1) / 2)) * F32(spacing_mm)
        cols = (np.arange(shape[1], dtype=F32) - F32((shape[1] - 1) / 2)) * F32(spacing_mm)
        theta = math.radians(acq.rotation_deg)
        c, s = F32(math.cos(theta)), F32(math.sin(theta))
        sx, sy = F32(1 / (a.half_width_mm * mag)), F32(1 / (a.height_mm * mag))
        x = (cols[None, :] * c - rows[:, None] * s) * sx + F32(acq.offset[0])
        y = (cols[None, :] * s + rows[:, None] * c) * sy + F32(0.5 + acq.offset[1])
        ax = np.abs(x)
        right = x < 0
        domes = _domes(case)
        dome = (
            np.where(right, F32(domes[0]), F32(domes[1]))
            + F32(0.25) * ((ax - F32(0.35)) / F32(0.6)) ** 2
        )
        lateral = F32(0.97) * np.sqrt(_unit_clip(F32(1.0) - ((y - F32(0.9)) / F32(0.95)) ** 2))
        lung = ramp(ax - lateral, 0.03) * ramp(F32(0.1) - ax, 0.03) * ramp(y - dome, 0.025)
        zeros = np.zeros(shape, dtype=F32)
        return cls(
            case,
            x,
            y,
            ax,
            right,
            dome,
            lateral,
            lung,
            zeros,
            zeros.copy(),
            zeros.copy(),
            (a.half_width_mm * mag, a.height_mm * mag),
            y.min(axis=1),
            y.max(axis=1),
            x.min(axis=0),
            x.max(axis=0),
            spacing_mm / (a.half_width_mm * mag),
        )

    def side(self, laterality: str | None) -> np.ndarray:
        """1 on the finding's side of the chest (both for bilateral), else 0."""
        if laterality == "right":
            return self.right.astype(F32)
        if laterality == "left":
            return (~self.right).astype(F32)
        return np.ones_like(self.x)

    def sx(self, laterality: str | None) -> float:
        """Sign of x on a side: the patient's right is the image's left (negative x)."""
        return -1.0 if laterality == "right" else 1.0


def _domes(case: PhantomCase) -> tuple[float, float]:
    """Hemidiaphragm heights; atelectasis pulls its side up (volume loss)."""
    right, left = case.anatomy.right_dome, case.anatomy.left_dome
    for f in case.findings:
        if f.kind == "atelectasis" and f.certainty == "present":
            if f.laterality in ("right", "bilateral"):
                right -= 0.04
            if f.laterality in ("left", "bilateral"):
                left -= 0.04
    return right, left


def _window(
    fr: Frame, x_range: tuple[float, float], y_range: tuple[float, float]
) -> tuple[slice, slice]:
    """Rows and columns whose pixels may fall inside a body-frame box (rotation included)."""
    rows = np.nonzero((fr.row_y_max >= y_range[0]) & (fr.row_y_min <= y_range[1]))[0]
    cols = np.nonzero((fr.col_x_max >= x_range[0]) & (fr.col_x_min <= x_range[1]))[0]
    if rows.size == 0 or cols.size == 0:
        return slice(0, 0), slice(0, 0)
    return slice(int(rows[0]), int(rows[-1]) + 1), slice(int(cols[0]), int(cols[-1]) + 1)


Window = tuple[slice, slice]


def _ellipse_parts(
    fr: Frame, cx: float, cy: float, rx: float, ry: float, tilt_deg: float = 0.0
) -> tuple[Window, np.ndarray]:
    """Dome profile sqrt(1 - r^2) (an ellipsoid's projected thickness) over its window only."""
    reach_x, reach_y = (max(rx, ry), max(rx, ry)) if tilt_deg else (rx, ry)
    window = _window(fr, (cx - reach_x, cx + reach_x), (cy - reach_y, cy + reach_y))
    dx, dy = fr.x[window] - F32(cx), fr.y[window] - F32(cy)
    if tilt_deg:
        c, s = F32(math.cos(math.radians(tilt_deg))), F32(math.sin(math.radians(tilt_deg)))
        dx, dy = dx * c + dy * s, dy * c - dx * s
    u = dx * F32(1 / rx)
    v = dy * F32(1 / ry)
    u *= u
    v *= v
    u += v
    np.subtract(F32(1.0), u, out=u)
    return window, np.sqrt(_unit_clip(u), out=u)


def _ellipse(
    fr: Frame, cx: float, cy: float, rx: float, ry: float, tilt_deg: float = 0.0
) -> np.ndarray:
    """The ellipsoid profile as a full-size array (zero outside its window)."""
    out = np.zeros_like(fr.x)
    window, values = _ellipse_parts(fr, cx, cy, rx, ry, tilt_deg)
    out[window] = values
    return out


def _deposit(target: np.ndarray, amplitude: float, parts: tuple[Window, np.ndarray]) -> None:
    """Add ``amplitude`` times a windowed shape into ``target`` (no full-size temporaries)."""
    window, values = parts
    values *= F32(amplitude)
    target[window] += values


def _segment_distance(
    x: np.ndarray, y: np.ndarray, p: tuple[float, float], q: tuple[float, float]
) -> np.ndarray:
    px, py = F32(p[0]), F32(p[1])
    dx, dy = F32(q[0] - p[0]), F32(q[1] - p[1])
    rx, ry = x - px, y - py
    t = _unit_clip((rx * dx + ry * dy) * F32(1 / (dx * dx + dy * dy)))
    rx -= t * dx
    ry -= t * dy
    rx *= rx
    ry *= ry
    rx += ry
    return np.sqrt(rx, out=rx)


def _stroke_parts(
    fr: Frame, points: list[tuple[float, float]], width: float
) -> tuple[Window, np.ndarray]:
    """1 within ``width`` of the polyline through ``points``, ramping to 0, over its window."""
    # Sub-pixel wires still show at training size: at least about one pixel wide.
    width = max(width, 0.5 * fr.pixel)
    margin = 2 * width
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    window = _window(fr, (min(xs) - margin, max(xs) + margin), (min(ys) - margin, max(ys) + margin))
    x, y = fr.x[window], fr.y[window]
    d = _segment_distance(x, y, points[0], points[1])
    for p, q in itertools.pairwise(points[1:]):
        np.minimum(d, _segment_distance(x, y, p, q), out=d)
    return window, ramp(d - F32(width), max(width * 0.6, 0.7 * fr.pixel))


def _stroke(fr: Frame, points: list[tuple[float, float]], width: float) -> np.ndarray:
    """The polyline band as a full-size array (zero outside its window)."""
    out = np.zeros_like(fr.x)
    window, values = _stroke_parts(fr, points, width)
    out[window] = values
    return out


def _polyline(fr: Frame, points: list[tuple[float, float]], width: float, amplitude: float) -> None:
    """Paint a radio-opaque tube or wire along ``points`` into ``fr.extra``."""
    _deposit(fr.extra, amplitude, _stroke_parts(fr, points, width))


# --- normal anatomy ----------------------------------------------------------------------


def _anatomy_density(fr: Frame) -> np.ndarray:
    density = _soft_tissue(fr)
    density += _mediastinum_and_heart(fr)
    density += _bones(fr)
    return density


def _soft_tissue(fr: Frame) -> np.ndarray:
    shoulders = _unit_clip((fr.y + F32(0.32)) * F32(1 / 0.3))
    half_width = F32(0.42) + F32(0.98) * np.sqrt(shoulders)
    soft = np.sqrt(_unit_clip(F32(1.0) - (fr.x / half_width) ** 2))
    abdomen = ramp(fr.dome - fr.y, 0.04) * F32(0.25)
    density = F32(0.62) * soft + abdomen
    if fr.case.anatomy.breast_shadows:
        for sign in (-1.0, 1.0):
            _deposit(density, 0.22, _ellipse_parts(fr, 0.62 * sign, 1.02, 0.42, 0.3))
    left_dome = fr.case.anatomy.left_dome
    _deposit(density, -0.22, _ellipse_parts(fr, 0.42, left_dome + 0.12, 0.12, 0.06))
    return density


def _mediastinum_and_heart(fr: Frame) -> np.ndarray:
    """Mediastinum, aortic knob, heart, hila, trachea and bronchi; each drawn in its window."""
    mw = _mediastinum_half_width(fr.case)
    density = np.zeros_like(fr.x)
    occupied = np.zeros_like(fr.x)  # how much of the lung behind is displaced (-> fill)
    upper = _window(fr, (-1.3 * mw - 0.05, 1.3 * mw + 0.05), (-1.0, fr.case.anatomy.right_dome))
    y = fr.y[upper]
    half_width = F32(mw) * _clip_between(F32(0.7) + (y + F32(0.1)) * F32(0.6), 0.7, 1.15)
    heart_top = fr.case.anatomy.right_dome - 0.3
    column = ramp(fr.ax[upper] - half_width, 0.03) * ramp(y - F32(heart_top + 0.1), 0.1)
    density[upper] += F32(0.25) * column
    occupied[upper] += column
    knob = _ellipse_parts(fr, mw + 0.03, 0.24, 0.07, 0.06)
    occupied[knob[0]] += knob[1]
    _deposit(density, 0.2, knob)
    heart = _heart_parts(fr)
    occupied[heart[0]] += F32(2.0) * heart[1]
    _deposit(density, 0.35, heart)
    base = _heart_base_parts(fr)
    occupied[base[0]] += base[1]
    fr.fill += _unit_clip(occupied)
    for sign in (-1.0, 1.0):
        _deposit(density, -0.15, _stroke_parts(fr, [(0.0, CARINA_Y), (sign * 0.17, 0.48)], 0.02))
        _deposit(density, 0.2, _ellipse_parts(fr, sign * 0.21, 0.46, 0.08, 0.07))
    trachea = _window(fr, (-0.1, 0.1), (-1.0, CARINA_Y + 0.05))
    lumen = ramp(fr.ax[trachea] - F32(0.038), 0.02) * ramp(fr.y[trachea] - F32(CARINA_Y), 0.03)
    density[trachea] -= F32(0.28) * lumen
    return density


def _mediastinum_half_width(case: PhantomCase) -> float:
    widened = case.findings_of("widened_mediastinum")
    scale = 1.0 if not widened else 1.45 if widened[0].severity == "mild" else 1.8
    return case.anatomy.mediastinum_half_width * scale


def _clip_between(t: np.ndarray, low: float, high: float) -> np.ndarray:
    np.maximum(t, F32(low), out=t)
    return np.minimum(t, F32(high), out=t)


def _heart_parts(fr: Frame) -> tuple[Window, np.ndarray]:
    """Heart shadow sized by the cardiothoracic ratio; AP films magnify it."""
    ctr = _ctr(fr)
    width = ctr * THORAX_WIDTH
    cx = 0.17 * width
    cy = fr.case.anatomy.right_dome - 0.11
    tilt = 12.0  # the long axis runs from the right atrium down to the apex on the left
    rx = width / 2 / math.cos(math.radians(tilt))
    return _ellipse_parts(fr, cx, cy, rx, 0.22 + 0.12 * ctr, tilt)


def _heart_base_parts(fr: Frame) -> tuple[Window, np.ndarray]:
    """The heart rests on the diaphragm: no lung shows between its lower border and the domes."""
    width = _ctr(fr) * THORAX_WIDTH
    cx, cy = 0.17 * width, fr.case.anatomy.right_dome - 0.11
    window = _window(fr, (cx - 0.5 * width, cx + 0.5 * width), (cy - 0.05, cy + 0.4))
    across = ramp(np.abs(fr.x[window] - F32(cx)) - F32(0.42 * width), 0.06)
    return window, across * ramp(F32(cy) - fr.y[window], 0.03)


def _ctr(fr: Frame) -> float:
    """Cardiothoracic ratio as projected: cardiomegaly sets it, AP films magnify it."""
    ctr = fr.case.anatomy.ctr
    for f in fr.case.findings_of("cardiomegaly"):
        ctr = f.ctr or ctr
    return ctr * (AP_HEART_MAGNIFICATION if fr.case.acquisition.view == "AP" else 1.0)


def _bones(fr: Frame) -> np.ndarray:
    spine = ramp(fr.ax - F32(0.075), 0.02)
    endplates = F32(0.5) + F32(0.5) * np.cos(fr.y * F32(2 * math.pi / 0.095))
    density = spine * (F32(0.1) + F32(0.05) * endplates)
    for sign in (-1.0, 1.0):
        clavicle = [(sign * 0.1, 0.04), (sign * 0.4, -0.03), (sign * 0.7, -0.06)]
        _deposit(density, 0.22, _stroke_parts(fr, clavicle, 0.022))
        _add_shoulder(fr, density, sign)
    cage = _cage(fr)
    density += F32(0.16) * _posterior_ribs(fr, cage) + F32(0.09) * _anterior_ribs(fr, cage)
    return density


def _add_shoulder(fr: Frame, density: np.ndarray, sign: float) -> None:
    """Humeral head and upper arm at a top corner, the scapular border over the lung."""
    _deposit(density, 0.25, _stroke_parts(fr, [(sign * 1.34, -0.1), (sign * 1.5, 0.6)], 0.16))
    _deposit(density, 0.22, _ellipse_parts(fr, sign * 1.3, -0.06, 0.14, 0.13))
    _deposit(density, 0.15, _stroke_parts(fr, [(sign * 1.34, 0.05), (sign * 1.46, 0.6)], 0.045))
    _deposit(density, 0.07, _stroke_parts(fr, [(sign * 1.0, -0.1), (sign * 0.74, 0.42)], 0.012))


def rib_phase(fr: Frame) -> np.ndarray:
    """Continuous rib coordinate: rib k (1-based) occupies phase in [k-1, k)."""
    a = fr.case.anatomy
    arched = fr.y + F32(0.3) * fr.ax - F32(0.42) * fr.ax**2 + F32(0.09 + 0.03 * a.rib_phase)
    return np.maximum(arched, F32(0.0)) ** F32(RIB_POWER) / F32(RIB_STEP)


def _rib_band(phase: np.ndarray) -> np.ndarray:
    """Bone across a rib's height, brighter at the cortices (top and bottom edges)."""
    d = np.abs(phase - np.floor(phase) - F32(0.27))
    return _unit_clip((F32(0.2) - d) / F32(0.05)) * (F32(0.65) + F32(1.6) * d)


def _cage(fr: Frame) -> np.ndarray:
    return (
        ramp(fr.ax - fr.lateral - F32(0.06), 0.03)
        * ramp(F32(0.07) - fr.ax, 0.02)
        * ramp(fr.y - fr.dome - F32(0.12), 0.05)
    )


def _posterior_ribs(fr: Frame, cage: np.ndarray) -> np.ndarray:
    phase = rib_phase(fr)
    for f in fr.case.findings_of("fracture"):
        phase = _fracture_step(fr, f, phase)
    return _rib_band(phase) * cage * ramp(F32(0.0) - phase, 0.3)


def _anterior_ribs(fr: Frame, cage: np.ndarray) -> np.ndarray:
    phase = (fr.y - F32(0.3) * (F32(0.95) - fr.ax)) / F32(0.12)
    return _rib_band(phase) * cage * ramp(F32(0.2) - fr.ax, 0.05)


# --- lungs -------------------------------------------------------------------------------


def _lung_density(fr: Frame) -> np.ndarray:
    """Air lowers density; vessels and texture raise it, where the lung still holds air."""
    air = fr.lung * (F32(1.0) - np.minimum(fr.fill, F32(1.0)))  # fill is never negative
    vessels = _vessels(fr) * air * (F32(1.0) - fr.pneumothorax)
    # Upper zones hold more air per ray than the bases, which sit over the domes and breasts.
    depth = F32(0.42) + F32(0.14) * _unit_clip(F32(1.0) - fr.y)
    return F32(0.3) * vessels - depth * air - F32(0.3) * fr.pneumothorax * fr.lung


def _vessels(fr: Frame) -> np.ndarray:
    """Branching pulmonary vessels, looked up in a cached per-patient atlas.

    They depend only on (|x|, y) and the patient's texture id, so the tree is drawn once per
    texture on a fine grid (0.0025 body units, about 0.4 mm) and every render samples it.
    """
    atlas = _vessel_atlas(fr.case.anatomy.texture)
    iy = ((fr.y - F32(ATLAS_Y0)) * F32(ATLAS_CELLS_PER_UNIT)).astype(np.int32)
    ix = (fr.ax * F32(ATLAS_CELLS_PER_UNIT)).astype(np.int32)
    np.minimum(np.maximum(iy, 0, out=iy), atlas.shape[0] - 1, out=iy)
    np.minimum(np.maximum(ix, 0, out=ix), atlas.shape[1] - 1, out=ix)
    return atlas[iy, ix]


ATLAS_Y0, ATLAS_Y1, ATLAS_X1 = -0.2, 1.3, 1.1
ATLAS_CELLS_PER_UNIT = 400
HILUM = (0.2, 0.46)
TRUNK_ANGLES_DEG = (-120.0, -90.0, -60.0, -30.0, 0.0, 25.0, 55.0, 85.0, 115.0)


@functools.lru_cache(maxsize=16)
def _vessel_atlas(texture: int) -> np.ndarray:
    """Vessel trees for one texture id: trunks from the hilum that fork and taper."""
    rows = round((ATLAS_Y1 - ATLAS_Y0) * ATLAS_CELLS_PER_UNIT)
    cols = round(ATLAS_X1 * ATLAS_CELLS_PER_UNIT)
    atlas = np.zeros((rows, cols), dtype=F32)
    rng = np.random.default_rng([texture, 0x7E55E1])
    for angle in TRUNK_ANGLES_DEG:
        _branch(atlas, rng, HILUM, math.radians(angle + rng.normal(0, 8)), 0.16, 0.018, depth=0)
    atlas.flags.writeable = False
    return atlas


def _branch(
    atlas: np.ndarray,
    rng: np.random.Generator,
    start: tuple[float, float],
    angle: float,
    length: float,
    width: float,
    depth: int,
) -> None:
    """Draw one vessel segment, then fork it into two thinner, shorter children."""
    end = (start[0] + length * math.cos(angle), start[1] + length * math.sin(angle))
    _atlas_stroke(atlas, start, end, width)
    if depth == 4:
        return
    for turn in (-1.0, 1.0):
        child = angle + turn * math.radians(rng.uniform(15, 38))
        _branch(atlas, rng, end, child, length * rng.uniform(0.62, 0.8), width * 0.72, depth + 1)


def _atlas_stroke(
    atlas: np.ndarray, p: tuple[float, float], q: tuple[float, float], width: float
) -> None:
    """Rasterise a round-profile segment into the atlas (max-combined, so forks stay smooth)."""
    step = 1 / ATLAS_CELLS_PER_UNIT
    margin = width * 1.5
    r0 = max(0, int((min(p[1], q[1]) - margin - ATLAS_Y0) / step))
    r1 = min(atlas.shape[0], int((max(p[1], q[1]) + margin - ATLAS_Y0) / step) + 1)
    c0 = max(0, int((min(p[0], q[0]) - margin) / step))
    c1 = min(atlas.shape[1], int((max(p[0], q[0]) + margin) / step) + 1)
    if r0 >= r1 or c0 >= c1:
        return
    y = (np.arange(r0, r1, dtype=F32) * F32(step) + F32(ATLAS_Y0))[:, None]
    x = (np.arange(c0, c1, dtype=F32) * F32(step))[None, :]
    shape = (y.size, x.size)
    d = _segment_distance(np.broadcast_to(x, shape).copy(), np.broadcast_to(y, shape).copy(), p, q)
    profile = np.sqrt(np.clip(F32(1.0) - (d / F32(width)) ** 2, 0.0, 1.0))
    np.maximum(atlas[r0:r1, c0:c1], profile * F32(width / 0.018), out=atlas[r0:r1, c0:c1])


def _patchy(fr: Frame, salt: int) -> np.ndarray:
    """An irregular 0..1 field for airspace disease (so opacities are not perfect ellipses)."""
    t = fr.case.index * 7 + salt
    field = (
        np.sin(fr.x * F32(23 + t % 5) + F32(t))
        + np.sin(fr.y * F32(19 + t % 7) + F32(2 * t))
        + np.sin((fr.x + fr.y) * F32(31) + F32(3 * t))
    )
    return _unit_clip(F32(0.55) + F32(0.3) * field)


# --- findings ----------------------------------------------------------------------------


def _zone_blob(fr: Frame, f: Finding, rx: float, ry: float) -> np.ndarray:
    cy = ZONE_CENTER_Y[f.zone or "lower"]
    if f.laterality == "bilateral":
        return np.maximum(_ellipse(fr, -0.5, cy, rx, ry), _ellipse(fr, 0.5, cy, rx, ry))
    return _ellipse(fr, 0.5 * fr.sx(f.laterality), cy, rx, ry)


def _paint_opacity(fr: Frame, f: Finding) -> None:
    amount = 0.45 if f.severity == "mild" else 0.65
    blob = _unit_clip(_zone_blob(fr, f, 0.3, 0.15) * F32(2.0))
    fr.fill += F32(amount) * blob * _patchy(fr, 1)


def _paint_consolidation(fr: Frame, f: Finding) -> None:
    amount = 0.55 if f.certainty == "uncertain" else 0.85
    base = ramp(fr.dome - F32(0.2) - fr.y, 0.08) * fr.side(f.laterality)
    fr.fill += F32(amount) * base * (F32(0.5) + F32(0.5) * _patchy(fr, 2))


def _paint_pneumonia(fr: Frame, f: Finding) -> None:
    if f.certainty == "uncertain":
        fr.fill += F32(0.5) * _unit_clip(_zone_blob(fr, f, 0.28, 0.13) * F32(2)) * _patchy(fr, 3)
        return
    lobe = _lobe_mask(fr, f) * fr.side(f.laterality) * fr.lung
    fr.fill += F32(0.9) * lobe
    bronchograms = _unit_clip(_vessels(fr) * F32(1.6)) * lobe
    fr.extra -= F32(0.25) * bronchograms


def _lobe_mask(fr: Frame, f: Finding) -> np.ndarray:
    """Lobes bounded by fissures: the minor fissure is horizontal, the major ones oblique."""
    oblique = fr.y - (F32(0.3) + F32(0.35) * fr.ax)
    if f.zone == "upper":
        return ramp(fr.y - F32(0.42), 0.02) * ramp(oblique, 0.03)
    if f.zone == "middle":
        return ramp(F32(0.42) - fr.y, 0.02) * ramp(oblique, 0.03) * ramp(fr.ax - F32(0.8), 0.1)
    return ramp(-oblique, 0.03)


def _paint_edema(fr: Frame, f: Finding) -> None:
    amount = {"mild": 0.3, "moderate": 0.5, "severe": 0.7}[f.severity or "mild"]
    if f.certainty == "uncertain":
        amount = 0.22
    haze = np.exp(-((fr.ax - F32(0.22)) ** 2) / F32(0.09) - (fr.y - F32(0.5)) ** 2 / F32(0.06))
    fr.fill += F32(amount) * haze
    periphery = ramp(fr.lateral - F32(0.08) - fr.ax, 0.03) * ramp(F32(0.6) - fr.y, 0.05)
    lines = ramp(np.abs(fr.y / F32(0.04) - np.round(fr.y / F32(0.04))) - F32(0.1), 0.1)
    fr.extra += F32(0.3 * amount) * lines * periphery * fr.lung


def _paint_atelectasis(fr: Frame, f: Finding) -> None:
    amount = 0.6 if f.certainty == "uncertain" else 0.9
    width = 0.016 if f.severity == "plate-like" else 0.028
    sides = (-1.0, 1.0) if f.laterality == "bilateral" else (fr.sx(f.laterality),)
    dome = min(fr.case.anatomy.right_dome, fr.case.anatomy.left_dome)
    for sign in sides:
        band = _stroke(fr, [(sign * 0.28, dome - 0.1), (sign * 0.72, dome - 0.14)], width)
        fr.fill += F32(amount) * band


def _paint_pneumothorax(fr: Frame, f: Finding) -> None:
    gap = {"small": 0.07, "moderate": 0.15, "large": 0.28}[f.severity or "small"]
    if f.certainty == "uncertain":
        gap = 0.04
    edge = fr.lateral - F32(gap) * (
        F32(1.25) - F32(0.6) * np.minimum(np.maximum(fr.y, F32(0)), F32(1))
    )
    side = fr.side(f.laterality)
    region = ramp(edge - fr.ax, 0.01) * side
    fr.pneumothorax += region
    half_width = max(0.004, 0.5 * fr.pixel)
    pleural_line = ramp(np.abs(fr.ax - edge) - F32(half_width), half_width) * side * fr.lung
    fr.extra += F32(0.3) * pleural_line
    fr.fill += F32(0.05) * (F32(1.0) - region) * side * fr.lung


def _paint_effusion(fr: Frame, f: Finding) -> None:
    height = {"small": 0.06, "moderate": 0.2, "large": 0.42}[f.severity or "small"]
    if f.certainty == "uncertain":
        height = 0.035
    angle = fr.dome - F32(0.02)
    meniscus = angle - F32(height) - F32(0.06) * _unit_clip(fr.ax / F32(0.95)) ** 2
    fluid = ramp(meniscus - fr.y, 0.035) * fr.side(f.laterality)
    fr.fill += fluid
    fr.extra += F32(0.15) * fluid * fr.lung


def _paint_lesion(fr: Frame, f: Finding) -> None:
    cx, cy = f.center or (0.5 * fr.sx(f.laterality), ZONE_CENTER_Y[f.zone or "middle"])
    radius_mm = (f.size_mm or 15.0) / 2
    rx, ry = radius_mm / fr.mm_per_unit[0], radius_mm / fr.mm_per_unit[1]
    blob = _ellipse(fr, cx, cy, rx, ry)
    if f.lesion_type == "mass":  # lobulated: two satellite lobes on the main sphere
        for dx, dy in ((0.55, -0.35), (-0.45, 0.45)):
            lobe = _ellipse(fr, cx + dx * rx, cy + dy * ry, 0.6 * rx, 0.6 * ry)
            np.maximum(blob, lobe, out=blob)
    blob = _unit_clip(blob * F32(2.2))
    fr.fill += F32(0.85) * blob
    fr.extra += F32(0.1) * blob


def _paint_pleural_thickening(fr: Frame, f: Finding) -> None:
    band = ramp(fr.ax - fr.lateral, 0.01) * ramp(fr.lateral - F32(0.045) - fr.ax, 0.012)
    extent = (
        ramp(fr.y - F32(0.32), 0.06)
        if f.zone == "upper"
        else ramp(np.abs(fr.y - F32(0.45)) - F32(0.15), 0.06)
    )
    fr.fill += band * extent * fr.side(f.laterality)
    fr.extra += F32(0.2) * band * extent * fr.side(f.laterality)


def _fracture_point(fr: Frame, f: Finding) -> tuple[float, float]:
    """Body-frame point on rib ``f.rib`` at the posterolateral break, derived from rib_phase."""
    ax_break = 0.62
    rib_center = (f.rib or 6) - 1 + 0.27
    a = fr.case.anatomy
    arched = (rib_center * RIB_STEP) ** (1 / RIB_POWER)
    y = arched - 0.3 * ax_break + 0.42 * ax_break**2 - (0.09 + 0.03 * a.rib_phase)
    return ax_break, y


def _fracture_step(fr: Frame, f: Finding, phase: np.ndarray) -> np.ndarray:
    """Offset the rib beyond the break (displacement) and cut a lucent line through it."""
    ax_break, y_break = _fracture_point(fr, f)
    near = ramp(np.abs(fr.y - F32(y_break)) - F32(0.05), 0.02) * fr.side(f.laterality)
    beyond = ramp(F32(ax_break) - fr.ax, 0.004) * near
    shift = 0.45 if f.severity == "displaced" else 0.15
    half_width = max(0.006, 0.5 * fr.pixel)
    gap = ramp(np.abs(fr.ax - F32(ax_break)) - F32(half_width), half_width) * near
    return phase + F32(shift) * beyond + F32(0.5) * gap


def _paint_fracture(fr: Frame, f: Finding) -> None:
    """The break itself lives in the rib phase; here the soft-tissue swelling beside it."""
    ax_break, y_break = _fracture_point(fr, f)
    sign = fr.sx(f.laterality)
    _deposit(fr.extra, 0.4, _ellipse_parts(fr, sign * (ax_break + 0.1), y_break, 0.1, 0.08))


def _paint_device(fr: Frame, f: Finding) -> None:
    DEVICE_PAINTERS[f.device or "pacemaker"](fr, f)


def _paint_et_tube(fr: Frame, f: Finding) -> None:
    tip_y = CARINA_Y - (f.tip_to_carina_cm or 4.0) * 10 / fr.mm_per_unit[1]
    _polyline(fr, [(0.01, -0.6), (0.0, -0.2), (0.0, tip_y)], 0.012, 0.35)
    _polyline(fr, [(0.012, -0.6), (0.004, -0.2), (0.004, tip_y)], 0.003, 0.4)


def _paint_central_line(fr: Frame, f: Finding) -> None:
    sign = fr.sx(f.laterality)
    tip_y = {"superior vena cava": 0.42, "cavoatrial junction": 0.55, "right atrium": 0.66}[
        f.tip_position or "superior vena cava"
    ]
    points = [
        (sign * 0.3, -0.45),
        (sign * 0.2, -0.1),
        (sign * 0.12, 0.12),
        (-0.07, 0.25),
        (-0.07, tip_y),
    ]
    _polyline(fr, points, 0.005, 0.55)


def _paint_ng_tube(fr: Frame, f: Finding) -> None:
    dome = fr.case.anatomy.left_dome
    end = (0.38, dome + 0.14) if f.tip_position == "stomach" else (0.05, dome - 0.05)
    points = [(0.03, -0.6), (0.03, 0.2), (0.06, 0.6), (0.12, dome), end]
    _polyline(fr, points if f.tip_position == "stomach" else [*points[:3], end], 0.007, 0.4)


def _paint_pacemaker(fr: Frame, f: Finding) -> None:
    box = ramp(
        np.maximum(np.abs(fr.x - F32(0.58)) - F32(0.07), np.abs(fr.y - F32(0.05)) - F32(0.045)),
        0.01,
    )
    fr.extra += F32(1.2) * box
    apex = fr.case.anatomy.right_dome - 0.05
    _polyline(fr, [(0.55, 0.07), (0.3, 0.05), (0.05, 0.25), (-0.02, 0.5), (0.15, apex)], 0.004, 0.7)


DEVICE_PAINTERS: dict[str, Callable[[Frame, Finding], None]] = {
    "endotracheal tube": _paint_et_tube,
    "central venous catheter": _paint_central_line,
    "nasogastric tube": _paint_ng_tube,
    "pacemaker": _paint_pacemaker,
}


def _paint_nothing(fr: Frame, f: Finding) -> None:
    """Cardiomegaly and a widened mediastinum change anatomy parameters instead."""


FINDING_PAINTERS: dict[str, Callable[[Frame, Finding], None]] = {
    "cardiomegaly": _paint_nothing,
    "widened_mediastinum": _paint_nothing,
    "opacity": _paint_opacity,
    "lesion": _paint_lesion,
    "edema": _paint_edema,
    "consolidation": _paint_consolidation,
    "pneumonia": _paint_pneumonia,
    "atelectasis": _paint_atelectasis,
    "pneumothorax": _paint_pneumothorax,
    "effusion": _paint_effusion,
    "pleural_thickening": _paint_pleural_thickening,
    "fracture": _paint_fracture,
    "device": _paint_device,
}


# --- display -----------------------------------------------------------------------------


def _to_display(case: PhantomCase, density: np.ndarray) -> np.ndarray:
    """Density to brightness with a film-like shoulder; higher kVp flattens contrast."""
    contrast = F32(1.3 * (1.0 + (100.0 - case.acquisition.kvp) / 250.0))
    image = np.exp(-contrast * (np.maximum(density, F32(0.0)) + F32(0.05)))
    return F32(1.0) - image


def _add_noise(case: PhantomCase, image: np.ndarray, shape: tuple[int, int]) -> None:
    """Quantum noise: a random crop of a cached noise field (training sizes) or a fresh draw."""
    rng = rng_for(case.seed, case.index, RENDER_STREAM, *shape)
    if shape[0] * shape[1] > NOISE_BANK_MAX_PIXELS:
        noise = rng.standard_normal(shape, dtype=F32)
    else:
        bank = _noise_bank(shape)
        top = int(rng.integers(0, bank.shape[0] - shape[0]))
        left = int(rng.integers(0, bank.shape[1] - shape[1]))
        noise = bank[top : top + shape[0], left : left + shape[1]]
    image += F32(case.acquisition.noise) * noise


NOISE_BANK_MAX_PIXELS = 600 * 600


@functools.lru_cache(maxsize=4)
def _noise_bank(shape: tuple[int, int]) -> np.ndarray:
    bank = np.random.default_rng([0x0A15E, *shape]).standard_normal(
        (3 * shape[0], 3 * shape[1]), dtype=F32
    )
    bank.flags.writeable = False
    return bank


def _field_box(
    shape: tuple[int, int], detector_px: tuple[int, int], collimation: tuple[float, ...]
) -> tuple[int, int, int, int]:
    """Pixel bounds (top, bottom, left, right) of the exposed field, centred in ``shape``."""
    top = (shape[0] - detector_px[0]) // 2
    left = (shape[1] - detector_px[1]) // 2
    c_top, c_bottom, c_left, c_right = collimation
    return (
        top + int(detector_px[0] * c_top),
        top + detector_px[0] - int(detector_px[0] * c_bottom),
        left + int(detector_px[1] * c_left),
        left + detector_px[1] - int(detector_px[1] * c_right),
    )


def _apply_collimation(image: np.ndarray, box: tuple[int, int, int, int]) -> None:
    """Zero (padding) outside the detector and the collimator blades."""
    top, bottom, left, right = box
    image[:top] = 0.0
    image[bottom:] = 0.0
    image[:, :left] = 0.0
    image[:, right:] = 0.0


MARKER_GLYPHS = {
    "L": ("10000", "10000", "10000", "10000", "10000", "10000", "11111"),
    "R": ("11110", "10001", "10001", "11110", "10100", "10010", "10001"),
}


def _burn_marker(case: PhantomCase, image: np.ndarray, box: tuple[int, int, int, int]) -> None:
    """Burn the lead side marker in the upper corner on the patient's left (image right)."""
    glyph = np.array([[ch == "1" for ch in row] for row in MARKER_GLYPHS[case.acquisition.marker]])
    top, _, _, right = box
    cell = max(1, round(min(image.shape) / 110))
    big = np.kron(glyph, np.ones((cell, cell), dtype=bool))
    row, col = top + 3 * cell, right - 9 * cell
    image[row : row + big.shape[0], col : col + big.shape[1]][big] = 1.0
