"""Argument checks shared by the robustness functions, with errors that show the received value."""

from __future__ import annotations

import numpy as np


def _describe(array):
    array = np.asarray(array)
    if array.size == 0:
        return f"array of shape {array.shape}, dtype {array.dtype}"
    return (
        f"array of shape {array.shape}, dtype {array.dtype}, "
        f"range [{np.nanmin(array):.6g}, {np.nanmax(array):.6g}]"
    )


def check_images(x, *, clip_min: float = 0.0, clip_max: float = 1.0, name: str = "x") -> np.ndarray:
    """Returns ``x`` as a float32 NHWC array after checking its shape, finiteness and value range.

    Args:
        x: Images, shape (n, height, width, channels), values in [clip_min, clip_max].
        clip_min: Smallest valid pixel value.
        clip_max: Largest valid pixel value.
        name: The argument name used in error messages.

    Raises:
        ValueError: If ``x`` is not 4-D, is empty, holds NaN/inf, or lies outside the bounds.
    """
    array = np.asarray(x)
    if array.ndim != 4:
        raise ValueError(
            f"Expected `{name}` to be a batch of images of shape (n, height, width, channels) "
            f"(NHWC). Received: {name}={_describe(array)}"
        )
    if array.shape[0] == 0:
        raise ValueError(
            f"Expected at least one image in `{name}`. Received: {name}={_describe(array)}"
        )
    if not np.issubdtype(array.dtype, np.number) or np.issubdtype(array.dtype, np.complexfloating):
        raise ValueError(
            f"Expected `{name}` to hold real numbers. Received: {name}={_describe(array)}"
        )
    array = array.astype(np.float32, copy=False)
    if not np.all(np.isfinite(array)):
        raise ValueError(
            f"Expected finite pixel values in `{name}`. Received: {name}={_describe(array)}"
        )
    if array.min() < clip_min or array.max() > clip_max:
        raise ValueError(
            f"Expected pixel values of `{name}` within [{clip_min}, {clip_max}]. "
            f"Received: {name}={_describe(array)}"
        )
    return array


def check_labels(
    y, num_examples: int, num_classes: int | None = None, *, name: str = "y"
) -> np.ndarray:
    """Returns ``y`` as an int64 array of shape (num_examples,) after checking its values.

    Args:
        y: Integer class labels, shape (num_examples,).
        num_examples: The number of images the labels belong to.
        num_classes: If given, labels must lie in [0, num_classes).
        name: The argument name used in error messages.

    Raises:
        ValueError: If ``y`` has the wrong shape, non-integer values or labels out of range.
    """
    array = np.asarray(y)
    if array.ndim != 1 or array.shape[0] != num_examples:
        raise ValueError(
            f"Expected `{name}` to be integer labels of shape ({num_examples},), one per image. "
            f"Received: {name}={_describe(array)}"
        )
    if not np.issubdtype(array.dtype, np.integer):
        if not np.issubdtype(array.dtype, np.floating) or np.any(array != np.round(array)):
            raise ValueError(
                f"Expected integer class labels in `{name}`. Received: {name}={_describe(array)}"
            )
    array = array.astype(np.int64)
    upper = num_classes if num_classes is not None else np.iinfo(np.int64).max
    if array.min() < 0 or array.max() >= upper:
        raise ValueError(
            f"Expected labels in `{name}` within [0, {num_classes}) for a model with "
            f"{num_classes} classes. Received: {name}={_describe(array)}"
        )
    return array


def check_positive_int(value, name: str) -> int:
    """Returns ``value`` as an int after checking that it is a positive integer."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"Expected `{name}` to be a positive integer. Received: {name}={value!r}")
    return int(value)
