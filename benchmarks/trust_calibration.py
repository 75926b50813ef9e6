"""Calibrated finding probabilities and critical findings on the phantom test split.

Run: ``.venv/bin/python benchmarks/trust_calibration.py [--checkpoint dcd-b4] [--test 500]``.
Writes ``benchmarks/results/trust_calibration.{md,json,png}``.

Every image goes through the product's path (phantom study -> DICOM -> ``dicom.read_study`` ->
``dicom.to_model_input``; the render caches of ``model.data.datasets``). The finding head's
logits are calibrated per observation four ways, each fitted on the validation split:

- ``raw``: the head's own sigmoid;
- ``temperature``: ``sigmoid(logit * scale)``, one number an observation;
- ``platt``: ``sigmoid(logit * scale + bias)``, two numbers an observation;
- ``isotonic``: a monotone step function an observation (scikit-learn).

ECE (10 equal-width bins, ``clinical_eval.calibration``) is reported on the test split, and on
the second half of the validation split for calibrations fitted on its first half (the held-out
check that chooses the method). The critical-finding thresholds (the highest that keeps 90% of
the validation positives) are scored on the test split: sensitivity and false-alarm rate.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from trust_results import arguments, write_results  # noqa: E402

from clinical_eval.calibration import reliability  # noqa: E402
from clinical_eval.observations import OBSERVATIONS  # noqa: E402
from model import CHECKPOINTS  # noqa: E402
from model.checkpoint import load_checkpoint  # noqa: E402
from model.cli import DEFAULT_CACHE  # noqa: E402
from model.trust_fit import (  # noqa: E402
    critical_thresholds,
    fit_calibration,
    split_inputs,
)
from model.trust_stats import image_signals  # noqa: E402

Calibrator = Callable[[np.ndarray], np.ndarray]
METHODS = ("raw", "temperature", "platt", "isotonic")
SHIPPED = "platt"
OPERATING_POINTS = (0.9, 0.8, 0.7, 0.5)  # validation sensitivities of the pneumothorax table


def fit_method(method: str, logits: np.ndarray, positive: np.ndarray) -> Calibrator:
    """One calibration fitted on (logits, positives), as a function of logits."""
    if method == "raw":
        return lambda z: 1.0 / (1.0 + np.exp(-z))
    if method in ("temperature", "platt"):
        return fit_calibration(logits, positive, bias=method == "platt")
    from sklearn.isotonic import IsotonicRegression

    models = [
        IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(
            logits[:, i], positive[:, i].astype(float)
        )
        for i in range(len(OBSERVATIONS))
    ]
    return lambda z: np.stack([m.predict(z[:, i]) for i, m in enumerate(models)], 1)


def ece_table(probabilities: np.ndarray, positive: np.ndarray) -> dict[str, Any]:
    """Per-observation ECE and reliability bins, and the mean ECE over the 14."""
    rows = {
        name: reliability(probabilities[:, i].tolist(), positive[:, i].tolist())
        for i, name in enumerate(OBSERVATIONS)
    }
    return {"per_observation": rows, "mean_ece": float(np.mean([r["ece"] for r in rows.values()]))}


def critical_scores(
    thresholds: dict[str, float], probabilities: np.ndarray, positive: np.ndarray
) -> dict[str, dict[str, float]]:
    out = {}
    for i, name in enumerate(OBSERVATIONS):
        alarm = probabilities[:, i] >= thresholds[name]
        positives, negatives = positive[:, i], ~positive[:, i]
        out[name] = {
            "threshold": thresholds[name],
            "positives": int(positives.sum()),
            "sensitivity": float(alarm[positives].mean()) if positives.any() else float("nan"),
            "false_alarm_rate": float(alarm[negatives].mean()),
            "alarms": int(alarm.sum()),
        }
    return out


def measure(checkpoint: Path, cache: Path, val_n: int, test_n: int) -> dict[str, Any]:
    loaded = load_checkpoint(checkpoint)
    size = loaded.vlm.config.image_size
    signals = {}
    for split, n in (("val", val_n), ("test", test_n)):
        pixels, positive = split_inputs(cache, 0, n, split, size)
        signals[split] = (image_signals(loaded.vlm, pixels)[1], positive)
    (val_z, val_y), (test_z, test_y) = signals["val"], signals["test"]
    half = val_n // 2
    result: dict[str, Any] = {"held_out_val": {}, "test": {}}
    for method in METHODS:
        held_out = fit_method(method, val_z[:half], val_y[:half])
        result["held_out_val"][method] = ece_table(held_out(val_z[half:]), val_y[half:])
        result["test"][method] = ece_table(fit_method(method, val_z, val_y)(test_z), test_y)
    shipped = fit_method(SHIPPED, val_z, val_y)
    thresholds = critical_thresholds(shipped(val_z), val_y)
    result["critical"] = critical_scores(thresholds, shipped(test_z), test_y)
    result["pneumothorax_operating_points"] = {
        str(target): critical_scores(
            critical_thresholds(shipped(val_z), val_y, sensitivity=target),
            shipped(test_z),
            test_y,
        )["Pneumothorax"]
        for target in OPERATING_POINTS
    }
    result["setup"] = {
        "checkpoint": checkpoint.name,
        "val_studies": val_n,
        "test_studies": test_n,
        "shipped_method": SHIPPED,
        "prevalence_test": {n: float(test_y[:, i].mean()) for i, n in enumerate(OBSERVATIONS)},
    }
    return result


def markdown(result: dict[str, Any]) -> str:
    setup = result["setup"]
    lines = [
        "# Calibrated finding probabilities and critical findings",
        "",
        f"Checkpoint `{setup['checkpoint']}` (all four shipped checkpoints share its vision "
        f"encoder and finding head). Calibrations fitted on {setup['val_studies']} validation "
        f"studies, scored on {setup['test_studies']} test studies; every image through DICOM "
        "(`read_study`, `to_model_input`). ECE: 10 equal-width bins; positive = label 1.",
        "",
        "## Mean ECE over the 14 observations",
        "",
        "| method | held-out validation (fit on half, score the other) | test |",
        "|---|---|---|",
    ]
    for method in METHODS:
        lines.append(
            f"| {method} | {result['held_out_val'][method]['mean_ece']:.4f} | "
            f"{result['test'][method]['mean_ece']:.4f} |"
        )
    lines += [
        "",
        f"## ECE per observation on test (shipped: `{setup['shipped_method']}`)",
        "",
        "| observation | test prevalence | " + " | ".join(METHODS) + " |",
        "|---|---|" + "---|" * len(METHODS),
    ]
    for name in OBSERVATIONS:
        eces = " | ".join(
            f"{result['test'][m]['per_observation'][name]['ece']:.4f}" for m in METHODS
        )
        lines.append(f"| {name} | {setup['prevalence_test'][name]:.3f} | {eces} |")
    lines += [
        "",
        "## Critical-finding thresholds on test",
        "",
        "Threshold per observation: the highest calibrated probability that keeps 90% of the "
        "validation positives. The default critical set is Pneumothorax.",
        "",
        "| observation | threshold | test positives | sensitivity | false-alarm rate | alarms |",
        "|---|---|---|---|---|---|",
    ]
    for name, row in result["critical"].items():
        lines.append(f"| {name} | " + critical_cells(row))
    lines += [
        "",
        "## Pneumothorax at other validation sensitivities",
        "",
        "| validation sensitivity | threshold | test positives | sensitivity | false-alarm rate "
        "| alarms |",
        "|---|---|---|---|---|---|",
    ]
    for target, row in result["pneumothorax_operating_points"].items():
        lines.append(f"| {target} | " + critical_cells(row))
    return "\n".join(lines) + "\n"


def critical_cells(row: dict[str, float]) -> str:
    return (
        f"{row['threshold']:.3f} | {row['positives']} | {row['sensitivity']:.3f} | "
        f"{row['false_alarm_rate']:.3f} | {row['alarms']} |"
    )


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(3, 5, figsize=(16, 10))
    for axis, name in zip(axes.flat, OBSERVATIONS, strict=False):
        for method, style in (("raw", "o--"), (SHIPPED, "s-")):
            bins = result["test"][method]["per_observation"][name]["bins"]
            ece = result["test"][method]["per_observation"][name]["ece"]
            axis.plot(
                [b["mean_confidence"] for b in bins],
                [b["observed_rate"] for b in bins],
                style,
                label=f"{method} ECE {ece:.3f}",
            )
        axis.plot([0, 1], [0, 1], color="gray", linewidth=0.8)
        axis.set_title(name, fontsize=10)
        axis.legend(fontsize=7)
    axes.flat[-1].axis("off")
    figure.supxlabel("mean predicted probability (bin)")
    figure.supylabel("observed positive rate")
    figure.suptitle("Finding-head reliability on the phantom test split (DICOM path)")
    figure.tight_layout()
    figure.savefig(path, dpi=90)


def main() -> None:
    parser = arguments(__doc__, ROOT / DEFAULT_CACHE)
    parser.add_argument("--val", type=int, default=2000)
    parser.add_argument("--test", type=int, default=500)
    args = parser.parse_args()
    result = measure(CHECKPOINTS / args.checkpoint, args.cache_dir, args.val, args.test)
    write_results("trust_calibration", result, markdown, plot)


if __name__ == "__main__":
    main()
