"""Does storing the shipped checkpoint in float16 cost anything measurable?

Run after training, while the run directory still holds the float32 snapshot:
``.venv/bin/python benchmarks/ar_fp16.py --run runs/ar-tiny [--studies 200]``.
Generates greedy reports on phantom test studies with the float16 checkpoint and with the float32
weights of the final snapshot, and writes the share of identical reports and both label F1s to
``benchmarks/results/ar_fp16.{md,json}``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
# a site-packages module is also called "benchmarks": import the sibling script by its folder
sys.path.insert(0, str(ROOT / "benchmarks"))

from ar_benchmark import RESULTS, label_scores, load_split  # noqa: E402

import model  # noqa: E402
from model.train import STATE_FILE  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=ROOT / "runs" / "ar-tiny")
    parser.add_argument("--studies", type=int, default=200)
    parser.add_argument("--cache-dir", type=Path, default=ROOT / "runs" / "cache")
    args = parser.parse_args()

    generator = model.load(args.run / "checkpoint", batch_size=16)
    pixels, records = load_split(args.cache_dir, "test", args.studies, generator.image_size)
    half = [r.text for r in generator.generate(pixels, label=False)]
    state = torch.load(args.run / STATE_FILE, map_location="cpu", weights_only=False)
    # the snapshot holds the training objective, whose only parameters are the VLM's ("vlm.")
    generator.vlm.load_state_dict({k.removeprefix("vlm."): v for k, v in state["model"].items()})
    full = [r.text for r in generator.generate(pixels, label=False)]
    key = "f16_macro14_unc0"
    results = {
        "studies": len(records),
        "snapshot_step": state["step"],
        "identical_reports": sum(a == b for a, b in zip(half, full, strict=True)) / len(half),
        "macro14_f1_float16": label_scores(half, records, "f16")[
            f"{key.replace('f16', 'f16_vs_truth')}"
        ],
        "macro14_f1_float32": label_scores(full, records, "f16")[
            f"{key.replace('f16', 'f16_vs_truth')}"
        ],
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "ar_fp16.json").write_text(json.dumps(results, indent=2) + "\n")
    rows = "\n".join(f"| {k} | {v} |" for k, v in results.items())
    (RESULTS / "ar_fp16.md").write_text(
        f"# float16 vs float32 weights\n\n| measure | value |\n|---|---|\n{rows}\n"
    )
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
