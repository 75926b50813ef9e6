"""Image preprocessing as MONAI transforms: one visible ``Compose`` list per use.

Inference and training share :func:`model_input_transform`, so a checkpoint sees pixels prepared
the same way it was trained on; the image preprocessing recorded in ``config.json`` names it.
"""

from __future__ import annotations

import numpy as np
import torch
from monai.transforms import Compose, EnsureChannelFirst, EnsureType, Resize, ScaleIntensityRange

PREPROCESSING = "grayscale [0,1] -> bilinear resize to image_size x image_size (MONAI Resize)"


class ImageInputError(ValueError):
    """An input image has the wrong shape, dtype or value range."""


def model_input_transform(image_size: int) -> Compose:
    """``(H, W)`` float32 in [0, 1] -> ``(1, S, S)`` float32 tensor."""
    return Compose(
        [
            EnsureChannelFirst(channel_dim="no_channel"),
            Resize((image_size, image_size), mode="bilinear", anti_aliasing=False),
            EnsureType(data_type="tensor", track_meta=False, dtype=torch.float32),
        ]
    )


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
    """Validate and stack a list of images into ``(B, 1, S, S)``."""
    if len(images) == 0:
        raise ImageInputError("empty batch: pass at least one image")
    transform = model_input_transform(image_size)
    return torch.stack([transform(check_image(img, i)) for i, img in enumerate(images)])
