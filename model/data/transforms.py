"""The model's side of image input: checking what callers pass, and reading the render cache.

The model input itself is made by one function, :func:`dicom.to_model_input`, for serving,
training data and the benchmark alike; the image preprocessing recorded in every checkpoint's
``config.json`` names it.
"""

from __future__ import annotations

import numpy as np
import torch
from monai.transforms import Compose, EnsureChannelFirst, EnsureType, ScaleIntensityRange

from dicom.transforms import to_model_input


class ImageInputError(ValueError):
    """An input image has the wrong shape, dtype or value range."""


def cached_image_transform() -> Compose:
    """``(S, S)`` uint8 from the render cache -> ``(1, S, S)`` float32 in [0, 1]."""
    return Compose(
        [
            EnsureChannelFirst(channel_dim="no_channel"),
            ScaleIntensityRange(0, 255, 0.0, 1.0, dtype=np.float32),
            EnsureType(data_type="tensor", track_meta=False, dtype=torch.float32),
        ]
    )


def check_image(image: np.ndarray, index: int = 0) -> np.ndarray:
    """Reject what the model cannot read, with a message naming the fix."""
    if not isinstance(image, np.ndarray):
        raise ImageInputError(f"image {index}: expected a numpy array, got {type(image).__name__}")
    if image.ndim != 2 or min(image.shape) < 16:
        raise ImageInputError(
            f"image {index}: expected a 2-D grayscale array (H, W) of at least 16 px, "
            f"got shape {image.shape}"
        )
    if image.dtype != np.float32:
        raise ImageInputError(
            f"image {index}: expected float32 in [0, 1], got {image.dtype} "
            "(use dicom.to_model_input or divide by the maximum value)"
        )
    if not np.isfinite(image).all() or image.min() < 0.0 or image.max() > 1.0:
        raise ImageInputError(f"image {index}: values must be finite and within [0, 1]")
    return image


def images_to_batch(images: list[np.ndarray], image_size: int) -> torch.Tensor:
    """Validate, make into the model input and stack a list of images: ``(B, 1, S, S)``."""
    if len(images) == 0:
        raise ImageInputError("empty batch: pass at least one image")
    return torch.stack(
        [
            torch.from_numpy(to_model_input(check_image(img, i), image_size))[None]
            for i, img in enumerate(images)
        ]
    )
