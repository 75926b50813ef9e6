"""The shipped checkpoints' quality on three inputs made from the same phantom test studies.

Run: ``.venv/bin/python benchmarks/input_paths.py [--studies 150]``.
Writes ``benchmarks/results/input_paths.{md,json,png}``.

- ``direct``: the phantom rendered straight at the model's size, then ``to_model_input`` and
  8-bit rounding: what training caches and ``echocxr bench`` read until issue 30;
- ``dicom-cache``: written as DICOM at a quarter of the detector matrix, read by
  ``dicom.read_study``, ``to_model_input``, 8-bit: what the caches and the bench read now;
- ``dicom-full``: the full detector matrix, read as ``echocxr report`` and the workers read it.

Each input is drafted by AR (``ar-tiny``) and the default one-step engine (``dcd-b4``); macro-F1
(14) against the phantom labels, with a paired bootstrap 95% interval of each DICOM input
against ``direct``. The shipped checkpoints were trained on ``direct``: the gap is the
train/serve skew a rebuild through the DICOM caches removes.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from trust_results import arguments, write_results  # noqa: E402

import dicom  # noqa: E402
import model  # noqa: E402
from clinical_eval import compare_systems, label_f1  # noqa: E402
from model.cli import DEFAULT_CACHE  # noqa: E402
from model.data.datasets import phantom_records  # noqa: E402
from model.data.phantom import iter_cases, render, write_dicom  # noqa: E402
from model.trust_fit import split_inputs  # noqa: E402

SIZE = 128
TEST_CACHE = 500  # the test studies' DICOM-path cache the other trust benchmarks read too
RUNS = (("ar-tiny", "ar"), ("dcd-b4", "diffusion-onestep"))
MACRO = "chexpert_rule_f1_macro14_unc0"


def eight_bit(images: list[np.ndarray]) -> torch.Tensor:
    """As a render cache stores them: rounded to 8 bits, read back to [0, 1]."""
    stacked = np.round(np.clip(np.stack(images), 0, 1) * 255) / 255.0
    return torch.from_numpy(stacked.astype(np.float32))[:, None]


def inputs(n: int, cache: Path) -> dict[str, torch.Tensor]:
    cases = list(iter_cases(0, n, split="test"))
    direct = [dicom.to_model_input(render(case, size=SIZE), SIZE) for case in cases]
    full = []
    with tempfile.TemporaryDirectory() as scratch:
        for case in cases:
            path = write_dicom(case, Path(scratch) / "study.dcm")
            full.append(dicom.to_model_input(dicom.read_study(path).frontal_images[0], SIZE))
    return {
        "direct": eight_bit(direct),
        "dicom-cache": split_inputs(cache, 0, TEST_CACHE, "test", SIZE)[0][:n],
        "dicom-full": torch.from_numpy(np.stack(full))[:, None],
    }


def measure(n: int, cache: Path) -> dict[str, Any]:
    torch.set_num_threads(1)
    pixels = inputs(n, cache)
    references = [record.labels for record in phantom_records(0, n, "test")]
    result: dict[str, Any] = {
        "studies": n,
        "mean_abs_pixel_difference_vs_direct": {
            name: float((x - pixels["direct"]).abs().mean()) for name, x in pixels.items()
        },
        "mean_abs_pixel_difference_cache_vs_full": float(
            (pixels["dicom-cache"] - pixels["dicom-full"]).abs().mean()
        ),
        "runs": {},
    }
    for checkpoint, engine in RUNS:
        generator = model.load(model.CHECKPOINTS / checkpoint, engine)
        labels = {
            name: [r.labels or {} for r in generator.generate(x)] for name, x in pixels.items()
        }
        run: dict[str, Any] = {
            name: {"macro_f1_14": label_f1(found, references)[MACRO]}
            for name, found in labels.items()
        }
        for name in ("dicom-cache", "dicom-full"):
            test = compare_systems(labels["direct"], labels[name], references)[MACRO]
            run[name]["vs_direct"] = test.as_dict()
        result["runs"][f"{checkpoint} {engine}"] = run
    return result


def markdown(result: dict[str, Any]) -> str:
    pixel = result["mean_abs_pixel_difference_vs_direct"]
    lines = [
        "# One image path: the shipped checkpoints on direct renders and through DICOM",
        "",
        f"The same {result['studies']} phantom test studies (seed 0), batch 16, one thread. "
        "Mean absolute difference per pixel of the model input against `direct`: "
        f"dicom-cache {pixel['dicom-cache']:.4f}, dicom-full {pixel['dicom-full']:.4f}; "
        "dicom-cache against dicom-full "
        f"{result['mean_abs_pixel_difference_cache_vs_full']:.4f}.",
        "",
        "| checkpoint, engine | direct (old caches, old bench) | dicom-cache (caches and "
        "bench now) | − direct [95% CI] | dicom-full (serving) | − direct [95% CI] |",
        "|---|---|---|---|---|---|",
    ]
    for name, run in result["runs"].items():
        cells = [f"{run['direct']['macro_f1_14']:.3f}"]
        for path in ("dicom-cache", "dicom-full"):
            test = run[path]["vs_direct"]
            cells += [
                f"{run[path]['macro_f1_14']:.3f}",
                f"{test['delta']:+.3f} [{test['low']:+.3f}, {test['high']:+.3f}]",
            ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "The shipped checkpoints were trained on `direct` inputs. Their recipes now train on "
        "`dicom-cache` inputs, so the next `scripts/rebuild-checkpoints.sh` trains on what the "
        "product serves.",
    ]
    return "\n".join(lines) + "\n"


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = ("direct", "dicom-cache", "dicom-full")
    figure, axis = plt.subplots(figsize=(7, 4))
    width = 0.35
    for offset, (name, run) in enumerate(result["runs"].items()):
        values = [run[p]["macro_f1_14"] for p in paths]
        axis.bar(np.arange(3) + offset * width, values, width, label=name)
    axis.set_xticks(np.arange(3) + width / 2, paths)
    axis.set_ylabel("macro-F1 (14), phantom test")
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=90)


def main() -> None:
    parser = arguments(__doc__, ROOT / DEFAULT_CACHE, checkpoint=False)
    parser.add_argument("--studies", type=int, default=150)
    args = parser.parse_args()
    if not 0 < args.studies <= TEST_CACHE:
        parser.error(f"--studies must be within 1..{TEST_CACHE}")
    result = measure(args.studies, args.cache_dir)
    write_results("input_paths", result, markdown, plot)


if __name__ == "__main__":
    main()
