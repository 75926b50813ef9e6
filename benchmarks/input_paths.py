"""The checkpoints' quality on three inputs made from the same phantom test studies.

Run: ``.venv/bin/python benchmarks/input_paths.py [--studies 150] [--before DIR]``.
Writes ``benchmarks/results/input_paths.{md,json,png}``.

- ``direct``: the phantom rendered straight at the model's size, then ``to_model_input`` and
  8-bit rounding: what training caches and ``echocxr bench`` read until issue 30;
- ``dicom-cache``: written as DICOM at a quarter of the detector matrix, read by
  ``dicom.read_study``, ``to_model_input``, 8-bit: what the caches and the bench read now;
- ``dicom-full``: the full detector matrix, read as ``echocxr report`` and the workers read it.

Each input is drafted by AR (``ar-tiny``) and the default one-step engine (``dcd-b4``) of the
shipped checkpoints and, with ``--before``, of the checkpoints in that folder (those shipped
before the rebuild through DICOM, ``git archive`` of an earlier commit). Macro-F1 (14) against
the phantom labels, with paired bootstrap 95% intervals for issue 30's two targets: served
(``dicom-full``) within 0.01 of what the bench reads (``dicom-cache``), and no lower than the
earlier checkpoints on ``direct`` (the figure published before).
"""

from __future__ import annotations

import json
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
PATHS = ("direct", "dicom-cache", "dicom-full")
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


def measure(n: int, cache: Path, before: Path | None) -> dict[str, Any]:
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
        shipped = drafted_labels(model.CHECKPOINTS / checkpoint, engine, pixels)
        run: dict[str, Any] = {name: macro(shipped[name], references) for name in PATHS}
        run["weights_sha256"] = weights_sha256(model.CHECKPOINTS / checkpoint)
        run["served_vs_bench"] = compare_systems(
            shipped["dicom-cache"], shipped["dicom-full"], references
        )[MACRO].as_dict()
        if before is not None:
            earlier = drafted_labels(before / checkpoint, engine, pixels)
            run["before"] = {name: macro(earlier[name], references) for name in PATHS}
            run["before"]["weights_sha256"] = weights_sha256(before / checkpoint)
            run["served_vs_before_direct"] = compare_systems(
                earlier["direct"], shipped["dicom-full"], references
            )[MACRO].as_dict()
        result["runs"][f"{checkpoint} {engine}"] = run
    return result


def drafted_labels(
    checkpoint: Path, engine: str, pixels: dict[str, torch.Tensor]
) -> dict[str, list[dict[str, int | None]]]:
    generator = model.load(checkpoint, engine)
    return {name: [r.labels or {} for r in generator.generate(x)] for name, x in pixels.items()}


def weights_sha256(checkpoint: Path) -> str:
    return str(json.loads((checkpoint / "config.json").read_text())["weights"]["sha256"])


def macro(found: list[dict[str, int | None]], references: list[Any]) -> float:
    return float(label_f1(found, references)[MACRO])


def interval(test: dict[str, float]) -> str:
    return f"{test['delta']:+.3f} [{test['low']:+.3f}, {test['high']:+.3f}]"


def markdown(result: dict[str, Any]) -> str:
    pixel = result["mean_abs_pixel_difference_vs_direct"]
    runs = result["runs"]
    before = all("before" in run for run in runs.values())
    lines = [
        "# One image path: the checkpoints on direct renders and through DICOM",
        "",
        f"The same {result['studies']} phantom test studies (seed 0), batch 16, one thread. "
        "Mean absolute difference per pixel of the model input against `direct`: "
        f"dicom-cache {pixel['dicom-cache']:.4f}, dicom-full {pixel['dicom-full']:.4f}; "
        "dicom-cache against dicom-full "
        f"{result['mean_abs_pixel_difference_cache_vs_full']:.4f}. `direct` is what training "
        "and the bench read until issue 30, `dicom-cache` what they read now, `dicom-full` "
        "what the product serves.",
        "",
        "| checkpoints, engine | direct | dicom-cache | dicom-full (served) "
        "| served − cache [95% CI] |" + (" served − before on direct [95% CI] |" if before else ""),
        "|---|---|---|---|---|" + ("---|" if before else ""),
    ]
    for name, run in runs.items():
        cells = [f"{run[p]:.3f}" for p in PATHS] + [interval(run["served_vs_bench"])]
        label = name
        if before:
            earlier = [f"{run['before'][p]:.3f}" for p in PATHS]
            lines.append(f"| before the rebuild: {name} | " + " | ".join(earlier) + " | | |")
            cells.append(interval(run["served_vs_before_direct"]))
            rebuilt = run["weights_sha256"] != run["before"]["weights_sha256"]
            label = f"{'rebuilt through DICOM' if rebuilt else 'shipped, unchanged'}: {name}"
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += ["", *targets(runs, before)]
    return "\n".join(lines) + "\n"


def targets(runs: dict[str, Any], before: bool) -> list[str]:
    """Issue 30's two targets, as the numbers above decide them."""
    said = []
    for name, run in runs.items():
        gap = run["dicom-full"] - run["dicom-cache"]
        line = f"- {name}: served {'within' if abs(gap) <= 0.01 else 'NOT within'} 0.01 of the "
        line += f"bench's input ({gap:+.3f})"
        if before:
            change = run["dicom-full"] - run["before"]["direct"]
            line += (
                f"; served {'no lower than' if change >= 0 else 'LOWER than'} the earlier "
                f"checkpoints' direct figure ({change:+.3f})"
            )
        said.append(line + ".")
    return said


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bars = []
    for name, run in result["runs"].items():
        if "before" in run:
            bars.append((f"before: {name}", [run["before"][p] for p in PATHS]))
        bars.append((f"shipped: {name}", [run[p] for p in PATHS]))
    figure, axis = plt.subplots(figsize=(8, 4))
    width = 0.8 / len(bars)
    for offset, (label, values) in enumerate(bars):
        axis.bar(np.arange(len(PATHS)) + offset * width, values, width, label=label)
    axis.set_xticks(np.arange(len(PATHS)) + 0.4 - width / 2, PATHS)
    axis.set_ylabel("macro-F1 (14), phantom test")
    low = min(value for _, values in bars for value in values)
    axis.set_ylim(max(0.0, low - 0.05), None)  # the differences, not the bars' common base
    axis.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=2)
    figure.tight_layout()
    figure.savefig(path, dpi=90)


def main() -> None:
    parser = arguments(__doc__, ROOT / DEFAULT_CACHE, checkpoint=False)
    parser.add_argument("--studies", type=int, default=150)
    parser.add_argument("--before", type=Path, help="a folder of earlier checkpoints to compare")
    args = parser.parse_args()
    if not 0 < args.studies <= TEST_CACHE:
        parser.error(f"--studies must be within 1..{TEST_CACHE}")
    result = measure(args.studies, args.cache_dir, args.before)
    write_results("input_paths", result, markdown, plot)


if __name__ == "__main__":
    main()
