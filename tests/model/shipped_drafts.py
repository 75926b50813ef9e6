"""Drafts of the shipped checkpoints on a fixed set of phantom studies, and the fixture they form.

``tests/model/test_shipped_drafts.py`` compares what the code writes today with
``tests/model/data/shipped_drafts.json``: a change that alters a single token of a draft fails
the test. The file was first written by this module on the code of commit 4f9c863, before issue
28 moved the model code around (the refactored code matched it byte for byte). Issue 30
re-recorded it twice, each time on code that still matched the record before: the cache path,
when the caches began to go through DICOM, and the runs of ``ar-tiny``, when that checkpoint was
retrained through DICOM (every other run's drafts were left as they were).

Two paths to the model input are drafted, as the product and the benchmark take them:

- ``serving``: each study written as a DICOM file, read by ``dicom.read_study`` and made into
  the model input by ``dicom.to_model_input`` (what ``echocxr report`` and the workers do);
- ``cache``: the phantom render cache that training and ``echocxr bench`` read: the same DICOM
  path at the same matrix, rounded to 8 bits, so it drafts what serving drafts.

Run (only to record a new fixture after a deliberate change of behaviour, saying why in the
commit): ``.venv/bin/python -m tests.model.shipped_drafts``.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

FIXTURE = Path(__file__).parent / "data" / "shipped_drafts.json"
SEED, SPLIT, STUDIES = 0, "test", 6
DICOM_DOWNSCALE = (
    4  # a quarter of the detector matrix: the same reading path, a fraction of the time
)
QUESTION = "Is there a pleural effusion?"
# (checkpoint, engine, options): every shipped checkpoint under the engine it ships for, and the
# baselines the benchmark runs on them (the teacher left to right, the undistilled one step, argmax)
RUNS: tuple[tuple[str, str, dict[str, Any]], ...] = (
    ("ar-tiny", "ar", {}),
    ("rad-b8", "diffusion-multistep", {}),
    ("rad-b8", "diffusion-multistep", {"order": "left-to-right"}),
    ("rad-b8", "diffusion-onestep", {}),
    ("dcd-b4", "diffusion-onestep", {}),
    ("dcd-b4", "diffusion-onestep", {"report_ngrams": False}),
    ("dcd-b8", "diffusion-onestep", {}),
)


def run_key(checkpoint: str, engine: str, options: dict[str, Any]) -> str:
    settings = " ".join(f"{key}={json.dumps(value)}" for key, value in sorted(options.items()))
    return f"{checkpoint} {engine} {settings}".strip()


def serving_inputs(directory: Path) -> list[np.ndarray]:
    """The studies as the product reads them: DICOM file -> frontal image -> model input."""
    import dicom
    from model.data.phantom import iter_cases, write_dicom

    inputs = []
    for case in iter_cases(SEED, STUDIES, split=SPLIT):
        path = write_dicom(case, directory / f"{case.study_id}.dcm", downscale=DICOM_DOWNSCALE)
        image = dicom.read_study(path).frontal_images[0]
        inputs.append(dicom.to_model_input(image, 128))
    return inputs


def cache_inputs(directory: Path) -> tuple[torch.Tensor, list[Any]]:
    """The studies as training and the benchmark read them: the render cache at 128 px."""
    from model.data.datasets import StudyDataset, phantom_cache

    dataset = StudyDataset(phantom_cache(directory, SEED, STUDIES, SPLIT, 128), qa_per_study=0)
    pixels = torch.stack([dataset[i]["pixels"] for i in range(len(dataset))])  # type: ignore[misc]
    return pixels, dataset.records


def texts(reports: list[Any]) -> list[str]:
    return [report.text for report in reports]


def eight_bit_sha256(image: np.ndarray) -> str:
    """The hash of a model input at 8 bits, as the caches keep it: the float32 input differs in
    its last bits between CPU models (vectorised resampling), a preprocessing change does not."""
    quantized = np.round(np.clip(image, 0.0, 1.0) * 255).astype(np.uint8)
    return hashlib.sha256(quantized.tobytes()).hexdigest()


def drafts() -> dict[str, Any]:
    """Every run's drafts on both paths, one batch and one study at a time, with provenance."""
    import model
    from model.assistant import ask

    torch.set_num_threads(1)  # thread count can change float sums; the fixture fixes it
    with tempfile.TemporaryDirectory() as scratch:
        serving = serving_inputs(Path(scratch))
        pixels, records = cache_inputs(Path(scratch) / "cache")
    result: dict[str, Any] = {
        "inputs": {
            "serving_8bit_sha256": [eight_bit_sha256(x) for x in serving],
            "cache_sha256": [hashlib.sha256(p.numpy().tobytes()).hexdigest() for p in pixels],
            "references": [record.report_text for record in records],
        },
        "runs": {},
    }
    for checkpoint, engine, options in RUNS:
        generator = model.load(model.CHECKPOINTS / checkpoint, engine, engine_options=options)
        first = generator.generate(serving, label=False)[0]
        result["runs"][run_key(checkpoint, engine, options)] = {
            "model_id": first.model_id,
            "checkpoint_sha256": first.checkpoint_sha256,
            "engine": first.engine,
            "engine_options": first.engine_options,
            "serving_batch": texts(generator.generate(serving, label=False)),
            "serving_single": [texts(generator.generate([x], label=False))[0] for x in serving],
            "cache_batch": texts(generator.generate(pixels, label=False)),
        }
        if engine == "ar":
            result["runs"][run_key(checkpoint, engine, options)]["answers"] = [
                ask(generator, [x], QUESTION) for x in serving
            ]
    return result


def record(fixture: Path, data: dict[str, Any]) -> None:
    """Write a fixture as the tests read it (sorted keys, so a re-recording diffs cleanly)."""
    fixture.parent.mkdir(parents=True, exist_ok=True)
    fixture.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    print(f"wrote {fixture}")


if __name__ == "__main__":
    record(FIXTURE, drafts())
