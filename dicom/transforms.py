"""From a display image to the model's square input, as one visible MONAI ``Compose`` list.

The resize keeps the aspect ratio (the longest side becomes ``size``) and the short side is
padded with black, because stretching a portrait chest film to a square changes the
cardiothoracic ratio the model is meant to read. ``area`` interpolation averages when shrinking,
so thin lines (tubes, wires) fade rather than alias.
"""

from __future__ import annotations

import numpy as np
from monai.transforms import Compose, EnsureChannelFirst, Resize, SpatialPad

from dicom.read import FrontalImage


def model_input_transforms(size: int) -> Compose:
    """The transform list for a (rows, columns) display array to (1, size, size)."""
    return Compose(
        [
            EnsureChannelFirst(channel_dim="no_channel"),
            Resize(spatial_size=size, size_mode="longest", mode="area"),
            SpatialPad(spatial_size=(size, size), method="symmetric", value=0.0),
        ]
    )


def to_model_input(image: FrontalImage, size: int = 256) -> np.ndarray:
    """float32 (size, size) in [0, 1]: the image resized keeping its aspect ratio, then padded.

    Raises
    ------
    ValueError
        When ``size`` is not a positive number of pixels.
    """
    if size < 1:
        raise ValueError(f"size must be a positive number of pixels, got {size}")
    result = model_input_transforms(size)(image.pixels)
    array = np.asarray(result, dtype=np.float32)[0]
    return np.clip(array, 0.0, 1.0)
