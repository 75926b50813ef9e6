"""Training data: study records and a pre-rendered uint8 image cache.

Making a phantom study's model input (render, write DICOM, read it back as the product does)
costs far more than a training step on a 2-core CPU, so each split is made once into
``images.npy`` (uint8, read back as a memory map) beside ``records.jsonl`` (report, labels and
Q&A per study). The cache directory name hashes everything that determines its content, and the
same hash is recorded in checkpoints as the training-data hash.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch.utils.data import Dataset

from dicom.transforms import to_model_input
from model.data.qa import QAPair, questions_for
from model.data.transforms import cached_image_transform
from model.partial_directory import new_partial_directory

if TYPE_CHECKING:
    from model.data.phantom import PhantomCase

IMAGES_FILE = "images.npy"
# The phantom caches write each study's DICOM at a quarter of its detector matrix (1/16 of the
# pixels): 13.6 studies/s instead of 0.8 at full size, and a model input within 0.010 a pixel of
# the full matrix's, against 0.106 between the direct render and the DICOM path (measured on 8
# test studies; tests/model/shipped_drafts.py drafts its serving inputs the same way).
CACHE_DICOM_DOWNSCALE = 4
# Part of the cache key: how the phantom studies become model inputs.
PHANTOM_INPUT_PATH = f"dicom-downscale-{CACHE_DICOM_DOWNSCALE}"
RECORDS_FILE = "records.jsonl"


class DatasetError(ValueError):
    """A data directory or annotation file is missing, malformed or inconsistent."""


@dataclass
class StudyRecord:
    """One study's targets: report sections, CheXpert labels and closed Q&A pairs."""

    study_id: str
    findings: str
    impression: str
    labels: dict[str, int | None]
    qa: list[QAPair] = field(default_factory=list)

    @property
    def report_text(self) -> str:
        """The response the model learns to write; :func:`model.report.parse_report` inverts it."""
        return f"FINDINGS: {self.findings}\nIMPRESSION: {self.impression}"

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, line: str) -> StudyRecord:
        data = json.loads(line)
        data["qa"] = [QAPair(**pair) for pair in data.get("qa", [])]
        return cls(**data)


def write_cache(directory: Path, studies: Iterable[tuple[np.ndarray, StudyRecord]]) -> Path:
    """Write ``(image float [0,1] (S,S), record)`` pairs as a cache, atomically.

    Written into a temp directory of this process (``model/partial_directory.py``); when two
    processes render the same cache at once, the first rename wins and the other's identical
    render is dropped.
    """
    directory = Path(directory)
    tmp = new_partial_directory(directory)
    images, lines = [], []
    for image, record in studies:
        images.append(np.round(np.clip(image, 0.0, 1.0) * 255).astype(np.uint8))
        lines.append(record.to_json())
    if not images:
        shutil.rmtree(tmp)
        raise DatasetError("no studies to cache")
    np.save(tmp / IMAGES_FILE, np.stack(images))
    (tmp / RECORDS_FILE).write_text("\n".join(lines) + "\n")
    if (directory / RECORDS_FILE).is_file():  # another process finished the same render first
        shutil.rmtree(tmp)
        return directory
    shutil.rmtree(directory, ignore_errors=True)  # an incomplete cache of an older version
    try:
        tmp.rename(directory)
    except OSError:  # renamed by another process between the check and here
        shutil.rmtree(tmp)
        if not (directory / RECORDS_FILE).is_file():
            raise
    return directory


def read_cache(directory: Path) -> tuple[np.ndarray, list[StudyRecord]]:
    """Memory-map the images and parse the records; mismatched counts are an error."""
    directory = Path(directory)
    if not (directory / IMAGES_FILE).is_file() or not (directory / RECORDS_FILE).is_file():
        raise DatasetError(
            f"{directory} is not a render cache (needs {IMAGES_FILE}, {RECORDS_FILE})"
        )
    images = np.load(directory / IMAGES_FILE, mmap_mode="r")
    records = [
        StudyRecord.from_json(line)
        for line in (directory / RECORDS_FILE).read_text().splitlines()
        if line
    ]
    if len(records) != images.shape[0]:
        raise DatasetError(f"{directory}: {images.shape[0]} images but {len(records)} records")
    return images, records


def phantom_studies(
    seed: int, n: int, split: str, image_size: int
) -> Iterator[tuple[np.ndarray, StudyRecord]]:
    """``n`` phantom studies of one split as the product reads them, with their ground truth."""
    from model.data.phantom import iter_cases

    with tempfile.TemporaryDirectory(prefix="echocxr-phantom-") as scratch:
        for case in iter_cases(seed, n, split=split):
            yield phantom_model_input(case, Path(scratch), image_size), phantom_record(case)


def phantom_model_input(case: PhantomCase, scratch: Path, image_size: int) -> np.ndarray:
    """The model input of a phantom study through the product's path.

    The study is written as DICOM (its own transfer syntax, photometric interpretation and VOI
    LUT), read back by ``dicom.read_study`` and made into the model input by
    ``dicom.to_model_input``, as serving does. Rendering straight to the model's size skipped
    the LUTs, the padding and the matrix, and cost 0.056 macro-F1 between the published figures
    and what a user gets (benchmarks/results/input_paths.md).
    """
    import dicom
    from model.data.phantom import write_dicom

    path = write_dicom(case, scratch / f"{case.study_id}.dcm", downscale=CACHE_DICOM_DOWNSCALE)
    try:
        return to_model_input(dicom.read_study(path).frontal_images[0], image_size)
    finally:
        path.unlink()


def phantom_records(seed: int, n: int, split: str) -> Iterator[StudyRecord]:
    """The ground truth of the studies :func:`phantom_studies` renders, without the images."""
    from model.data.phantom import iter_cases

    return (phantom_record(case) for case in iter_cases(seed, n, split=split))


def phantom_record(case: PhantomCase) -> StudyRecord:
    return StudyRecord(
        study_id=str(case.study_id),
        findings=case.report.findings,
        impression=case.report.impression,
        labels=dict(case.labels),
        qa=questions_for(dict(case.labels), list(case.findings)),
    )


def phantom_cache_key(seed: int, n: int, split: str, image_size: int) -> str:
    """Hash of what determines a phantom cache, including the generator's source code."""
    import model.data.phantom as phantom

    source = hashlib.sha256()
    for path in sorted(Path(phantom.__file__).parent.rglob("*.py")):
        source.update(path.read_bytes())
    spec = f"{seed}/{n}/{split}/{image_size}/{PHANTOM_INPUT_PATH}/{source.hexdigest()}"
    return hashlib.sha256(spec.encode()).hexdigest()[:16]


def phantom_cache(root: Path, seed: int, n: int, split: str, image_size: int) -> Path:
    """Return the cache directory for these parameters, rendering it first if absent."""
    key = phantom_cache_key(seed, n, split, image_size)
    directory = Path(root) / f"phantom-{split}-{n}-{image_size}-{key}"
    if not (directory / RECORDS_FILE).is_file():
        write_cache(directory, phantom_studies(seed, n, split, image_size))
    return directory


class StudyDataset(Dataset[dict[str, object]]):
    """Images from a render cache with their records; Q&A chosen per (seed, epoch, index).

    The Q&A choice depends only on those three numbers, never on global random state, so a run
    resumed mid-epoch sees exactly the batches an uninterrupted run would.
    """

    def __init__(self, directory: Path, qa_per_study: int = 1, seed: int = 0) -> None:
        self.directory = Path(directory)
        self.images, self.records = read_cache(directory)
        self.qa_per_study = qa_per_study
        self.seed = seed
        self.epoch = 0
        self.to_tensor = cached_image_transform()

    def __len__(self) -> int:
        return len(self.records)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def pick_qa(self, index: int) -> list[QAPair]:
        pool = self.records[index].qa
        if not pool or self.qa_per_study == 0:
            return []
        rng = np.random.default_rng([self.seed, self.epoch, index])
        picks = rng.choice(len(pool), size=min(self.qa_per_study, len(pool)), replace=False)
        return [pool[i] for i in picks]

    def __getitem__(self, index: int) -> dict[str, object]:
        pixels: torch.Tensor = self.to_tensor(np.array(self.images[index]))
        return {"pixels": pixels, "record": self.records[index], "qa": self.pick_qa(index)}
