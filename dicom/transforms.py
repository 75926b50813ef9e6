"""From a decoded image to the model's square input: the one function every use goes through.

Serving (``echocxr report``, archives, the workers), training data (the phantom render cache and
the public data sets' caches) and the benchmark all make the model input with
:func:`to_model_input`, so a checkpoint always sees pixels prepared the way it was trained on.

The resize keeps the aspect ratio (the longest side becomes ``size``) and the short side is
padded with black, because stretching a portrait chest film to a square changes the
cardiothoracic ratio the model is meant to read. ``area`` interpolation averages when shrinking,
so thin lines (tubes, wires) fade rather than alias. An image that is already ``size`` square
passes through unchanged.
"""

from __future__ import annotations

import numpy as np
from monai.transforms import Compose, EnsureChannelFirst, Resize, SpatialPad

from dicom.read import FrontalImage

PREPROCESSING = (
    "grayscale [0,1] -> longest side resized to image_size (area), zero-padded to a square "
    "(dicom.to_model_input)"
)


def model_input_transforms(size: int) -> Compose:
    """The transform list for a (rows, columns) display array to (1, size, size)."""
    return Compose(
        [
            EnsureChannelFirst(channel_dim="no_channel"),
            Resize(spatial_size=size, size_mode="longest", mode="area"),
            SpatialPad(spatial_size=(size, size), method="symmetric", value=0.0),
        ]
    )


def to_model_input(image: FrontalImage | np.ndarray, size: int = 256) -> np.ndarray:
    """float32 (size, size) in [0, 1]: the image resized keeping its aspect ratio, then padded.

    Parameters
    ----------
    image : FrontalImage or ndarray
        A frontal image read from DICOM, or its display pixels: a (rows, columns) array in
        [0, 1] (a phantom render, a public data set's decoded file).
    size : int
        The model's input side, ``VLMConfig.image_size`` of the checkpoint.

    Raises
    ------
    ValueError
        When ``size`` is not a positive number of pixels.
    """
    if size < 1:
        raise ValueError(f"size must be a positive number of pixels, got {size}")
    pixels = image.pixels if isinstance(image, FrontalImage) else image
    result = model_input_transforms(size)(pixels)
    array = np.asarray(result, dtype=np.float32)[0]
    return np.clip(array, 0.0, 1.0)
