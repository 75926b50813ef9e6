"""The out-of-distribution gate: phantom test studies against images unlike the phantom.

Run: ``.venv/bin/python benchmarks/trust_ood.py [--checkpoint dcd-b4] [--per-kind 100]``.
Writes ``benchmarks/results/trust_ood.{md,json,png}``. Reads the checkpoint's shipped
``trust.json`` (``echocxr fit-trust``): the Mahalanobis distance of the pooled vision features
and its threshold, the 99th percentile of the validation split's distances.

Every image goes through ``dicom.to_model_input`` as served. The phantom test studies and the
chest-derived kinds start from DICOM read by ``dicom.read_study`` (a quarter of the detector
matrix, as the render caches); the others are drawn here at 512-1024 px:

- in distribution: the phantom test split (goal: at most 2% flagged);
- chest made strange: inverted (a MONOCHROME1 film read as MONOCHROME2), cropped to a random
  quarter, rotated by 60-300 degrees;
- not a chest: a skull-like ring of bone, a hand-like fan of finger bones, a page of text,
  natural-texture (1/f) noise, Gaussian and uniform noise, a blank detector (bright, faint
  noise), flat gray (goal: at least 95% of each flagged).
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from trust_results import arguments, write_results  # noqa: E402

import dicom  # noqa: E402
from model import CHECKPOINTS  # noqa: E402
from model.checkpoint import load_checkpoint  # noqa: E402
from model.cli import DEFAULT_CACHE  # noqa: E402
from model.data.datasets import CACHE_DICOM_DOWNSCALE  # noqa: E402
from model.data.phantom import iter_cases, write_dicom  # noqa: E402
from model.trust_fit import split_inputs  # noqa: E402
from model.trust_stats import image_signals  # noqa: E402

Maker = Callable[[np.random.Generator], np.ndarray]


def canvas(rng: np.random.Generator) -> tuple[int, int]:
    return int(rng.integers(512, 1025)), int(rng.integers(512, 1025))


def grid(shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    rows, columns = shape
    y, x = np.mgrid[0:rows, 0:columns]
    return y / rows, x / columns


def ellipse(y: np.ndarray, x: np.ndarray, cy: float, cx: float, ry: float, rx: float,
            angle: float = 0.0) -> np.ndarray:  # fmt: skip
    c, s = np.cos(angle), np.sin(angle)
    u, v = (x - cx) * c + (y - cy) * s, -(x - cx) * s + (y - cy) * c
    return np.asarray((u / rx) ** 2 + (v / ry) ** 2 <= 1.0)


def skull(rng: np.random.Generator) -> np.ndarray:
    y, x = grid(canvas(rng))
    r = rng.uniform(0.35, 0.45)
    outer = ellipse(y, x, 0.5, 0.5, r * 1.15, r)
    inner = ellipse(y, x, 0.5, 0.5, r * 1.15 - 0.04, r - 0.04)
    image = 0.05 + 0.35 * outer + 0.5 * (outer & ~inner)
    return np.clip(image + rng.normal(0, 0.02, image.shape), 0, 1).astype(np.float32)


def hand(rng: np.random.Generator) -> np.ndarray:
    y, x = grid(canvas(rng))
    image = 0.05 + 0.3 * ellipse(y, x, 0.7, 0.5, 0.18, 0.2)
    for finger in range(5):
        angle = -0.6 + 0.3 * finger + rng.normal(0, 0.05)
        cy, cx = 0.7 - 0.35 * np.cos(angle), 0.5 + 0.35 * np.sin(angle)
        image += 0.5 * ellipse(y, x, cy, cx, 0.2, 0.03, angle)
    return np.clip(image + rng.normal(0, 0.02, image.shape), 0, 1).astype(np.float32)


def text_page(rng: np.random.Generator) -> np.ndarray:
    from PIL import Image, ImageDraw

    rows, columns = canvas(rng)
    page = Image.new("L", (columns, rows), color=235)
    draw = ImageDraw.Draw(page)
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz     "))
    for line in range(20, rows - 20, 18):
        draw.text((20, line), "".join(rng.choice(letters, size=columns // 7)), fill=20)
    return np.asarray(page, dtype=np.float32) / 255.0


def pink_noise(rng: np.random.Generator) -> np.ndarray:
    rows, columns = canvas(rng)
    spectrum = np.fft.rfft2(rng.normal(size=(rows, columns)))
    fy, fx = np.fft.fftfreq(rows)[:, None], np.fft.rfftfreq(columns)[None]
    spectrum /= np.maximum(np.hypot(fy, fx), 1.0 / max(rows, columns))
    image = np.fft.irfft2(spectrum, s=(rows, columns))
    image = (image - image.min()) / (image.max() - image.min())
    return image.astype(np.float32)


def gaussian_noise(rng: np.random.Generator) -> np.ndarray:
    return np.clip(rng.normal(0.5, 0.2, canvas(rng)), 0, 1).astype(np.float32)


def uniform_noise(rng: np.random.Generator) -> np.ndarray:
    return rng.random(canvas(rng), dtype=np.float32)


def blank_detector(rng: np.random.Generator) -> np.ndarray:
    return np.clip(rng.normal(0.92, 0.01, canvas(rng)), 0, 1).astype(np.float32)


def flat_gray(rng: np.random.Generator) -> np.ndarray:
    return np.full(canvas(rng), rng.uniform(0.3, 0.7), dtype=np.float32)


def inverted(chest: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return (1.0 - chest).astype(np.float32)


def cropped(chest: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    rows, columns = chest.shape
    height, width = rows // 2, columns // 2
    top, left = int(rng.integers(0, rows - height)), int(rng.integers(0, columns - width))
    return np.ascontiguousarray(chest[top : top + height, left : left + width])


def rotated(chest: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    from scipy.ndimage import rotate

    angle = float(rng.uniform(60, 300))
    return np.clip(rotate(chest, angle, reshape=True, order=1, cval=0.0), 0, 1).astype(np.float32)


DRAWN: dict[str, Maker] = {
    "skull-like ring": skull,
    "hand-like fan": hand,
    "text page": text_page,
    "natural-texture (1/f) noise": pink_noise,
    "Gaussian noise": gaussian_noise,
    "uniform noise": uniform_noise,
    "blank detector": blank_detector,
    "flat gray": flat_gray,
}
FROM_CHEST: dict[str, Callable[[np.ndarray, np.random.Generator], np.ndarray]] = {
    "inverted chest": inverted,
    "cropped chest (a quarter)": cropped,
    "rotated chest (60-300 deg)": rotated,
}


def chests(n: int) -> Iterator[np.ndarray]:
    """Phantom test studies' display pixels, as ``dicom.read_study`` returns them."""
    with tempfile.TemporaryDirectory() as scratch:
        for case in iter_cases(0, n, split="test"):
            path = write_dicom(case, Path(scratch) / "study.dcm", downscale=CACHE_DICOM_DOWNSCALE)
            yield dicom.read_study(path).frontal_images[0].pixels


def kinds(per_kind: int) -> dict[str, list[np.ndarray]]:
    rng = np.random.default_rng(0)
    made: dict[str, list[np.ndarray]] = {name: [] for name in [*FROM_CHEST, *DRAWN]}
    for chest in chests(per_kind):
        for name, change in FROM_CHEST.items():
            made[name].append(change(chest, rng))
    for name, draw in DRAWN.items():
        made[name] = [draw(rng) for _ in range(per_kind)]
    return made


def measure(checkpoint: Path, cache: Path, test_n: int, per_kind: int) -> dict[str, Any]:
    loaded = load_checkpoint(checkpoint)
    if loaded.trust is None:
        raise SystemExit(f"{checkpoint} has no trust.json: run `echocxr fit-trust` first")
    size, ood = loaded.vlm.config.image_size, loaded.trust.ood
    test_pixels, _ = split_inputs(cache, 0, test_n, "test", size)
    scores = {"phantom test split": ood.score(image_signals(loaded.vlm, test_pixels)[0])}
    for name, images in kinds(per_kind).items():
        pixels = torch.stack(
            [torch.from_numpy(dicom.to_model_input(image, size))[None] for image in images]
        )
        scores[name] = ood.score(image_signals(loaded.vlm, pixels)[0])
    return {
        "checkpoint": checkpoint.name,
        "threshold": ood.threshold,
        "kinds": {
            name: {
                "images": int(values.size),
                "flagged": float((values > ood.threshold).mean()),
                "median_score": float(np.median(values)),
                "min_score": float(values.min()),
                "scores": [round(float(v), 3) for v in values],
            }
            for name, values in scores.items()
        },
    }


def markdown(result: dict[str, Any]) -> str:
    lines = [
        "# Out-of-distribution gate",
        "",
        f"Checkpoint `{result['checkpoint']}`: Mahalanobis distance of the pooled vision "
        "features (probabilistic-PCA covariance of 2,000 training studies), flagged above "
        f"{result['threshold']:.2f}, the 99th percentile of 2,000 validation studies. Goals: "
        "at most 2% of phantom test studies flagged, at least 95% of every other kind.",
        "",
        "| images | count | flagged | median score | lowest score | goal met |",
        "|---|---|---|---|---|---|",
    ]
    for name, row in result["kinds"].items():
        in_distribution = name == "phantom test split"
        met = row["flagged"] <= 0.02 if in_distribution else row["flagged"] >= 0.95
        lines.append(
            f"| {name} | {row['images']} | {100 * row['flagged']:.1f}% | "
            f"{row['median_score']:.1f} | {row['min_score']:.1f} | {'yes' if met else 'no'} |"
        )
    return "\n".join(lines) + "\n"


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(result["kinds"])
    figure, axis = plt.subplots(figsize=(10, 6))
    axis.boxplot([result["kinds"][n]["scores"] for n in names], vert=False, showfliers=True)
    axis.set_yticks(range(1, len(names) + 1), names, fontsize=8)
    axis.axvline(result["threshold"], color="red", linestyle="--", label="threshold")
    axis.set_xscale("log")
    axis.set_xlabel("Mahalanobis distance of the pooled vision features (log)")
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=90)


def main() -> None:
    parser = arguments(__doc__, ROOT / DEFAULT_CACHE)
    parser.add_argument("--test", type=int, default=500)
    parser.add_argument("--per-kind", type=int, default=100)
    args = parser.parse_args()
    result = measure(CHECKPOINTS / args.checkpoint, args.cache_dir, args.test, args.per_kind)
    write_results("trust_ood", result, markdown, plot)


if __name__ == "__main__":
    main()
