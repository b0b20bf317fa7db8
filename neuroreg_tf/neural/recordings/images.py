"""From the images a release stores to the grayscale stimulus the classifier sees.

Released mouse-V1 datasets store each trial's image channel-first: ``(1, h, w)``
grayscale, or ``(2, h, w)`` for the colour datasets (UV and green), often at
the screen's 144 x 256 pixels, while the paper (and the predictive model here)
works on 36 x 64 grayscale stimuli. Reading a recording therefore

1. reduces the channels to one (``ImageOptions.color``):

   * ``"mean"`` (default): the mean over the channels, i.e. equal weights;
   * ``"luminance"``: ITU-R BT.601 weights 0.299, 0.587, 0.114 (3-channel RGB only);
   * ``"channel:K"``: channel K alone (SENSORIUM's ``select_input_channel=K``), e.g.
     ``channel:1`` for the green channel of a (UV, green) dataset;
   * ``"weights:a,b,..."``: any weights, one per channel, normalised to sum 1;

2. resizes to ``ImageOptions.size`` (default (36, 64), the paper's stimulus size;
   None keeps the stored size). The aspect ratio must be kept (within 2%):
   when the stored size is an integer multiple of the target (144 x 256 -> 36 x 64
   is 4 x 4) each output pixel is the mean of its block of input pixels (area
   averaging, exact); otherwise ``skimage.transform.resize`` with anti-aliasing
   (Gaussian pre-filter, bilinear interpolation);

3. scales to [0, 1] (``ImageOptions.scale``, ``unit_range_divisor``): with
   ``"auto"`` (default) integer images are 0..255 and divided by 255; float images
   are [0, 1] when their values over the whole recording lie within [-0.5, 1.5]
   (values outside [0, 1] are clipped, with a warning that counts them), 0..255
   only when clearly so (a largest value of at least 10, at most 255, nothing
   below 0), and refused in between, naming the option that decides: ``"unit"``
   (clip to [0, 1]) or ``"255"`` (divide by 255). A rescale and a clip are
   recorded in the metadata.

Steps 1 and 2 are linear, so they are applied trial by trial in the stored units
(a 144 x 256 recording never has to fit in memory at full size) and step 3 once,
on the whole recording.
"""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np

SCALES = ("auto", "unit", "255")
COLOR_MODES = ("mean", "luminance", "channel:K", "weights:a,b,...")
PAPER_SIZE = (36, 64)
_LUMINANCE = (0.299, 0.587, 0.114)
_ASPECT_TOLERANCE = 0.02


class ImageFormatError(ValueError):
    """An image cannot be turned into a stimulus with the given options."""


@dataclasses.dataclass(frozen=True)
class ImageOptions:
    """How stored images become the (height, width) grayscale stimuli.

    Attributes:
        color: channel reduction, one of ``COLOR_MODES`` (see the module docstring).
        size: (height, width) to resize to, or None to keep the stored size.
        scale: how stored values map to [0, 1], one of ``SCALES`` (step 3 of the module docstring).
    """

    color: str = "mean"
    size: tuple[int, int] | None = PAPER_SIZE
    scale: str = "auto"

    def __post_init__(self):
        channel_weights(self.color, None)
        if str(self.scale) not in SCALES:
            raise ImageFormatError(f"`scale` must be one of {', '.join(SCALES)}. Received: scale={self.scale!r}")
        if self.size is not None:
            size = tuple(int(s) for s in self.size)
            if len(size) != 2 or min(size) < 1:
                raise ImageFormatError(f"`size` must be (height, width) with positive entries. Received: size={self.size}")
            object.__setattr__(self, "size", size)


def parse_size(text: str) -> tuple[int, int] | None:
    """``"36,64"`` (or ``"36x64"``) -> (36, 64); ``""`` -> None (keep the stored size)."""
    text = str(text).strip()
    if not text:
        return None
    parts = text.replace("x", ",").split(",")
    try:
        size = tuple(int(p) for p in parts)
    except ValueError:
        size = ()
    if len(size) != 2 or min(size) < 1:
        raise ImageFormatError(f"A size must be 'height,width' with positive integers, e.g. '36,64'. Received: {text!r}")
    return size


def channel_weights(color: str, n_channels: int | None) -> np.ndarray | None:
    """The per-channel weights of ``color`` for ``n_channels`` channels (None: only check ``color``)."""
    color = str(color)
    if color == "mean":
        return None if n_channels is None else np.full(n_channels, 1.0 / n_channels)
    if color == "luminance":
        if n_channels not in (None, 3):
            raise ImageFormatError(
                "color='luminance' needs 3-channel RGB images; use 'mean', 'channel:K' or 'weights:...' "
                f"for others. Received: {n_channels} channel(s)"
            )
        return None if n_channels is None else np.asarray(_LUMINANCE)
    if color.startswith("channel:"):
        try:
            channel = int(color.split(":", 1)[1])
        except ValueError:
            raise ImageFormatError(f"color must be 'channel:K' with an integer K. Received: color={color!r}") from None
        if n_channels is None:
            return None
        if not 0 <= channel < n_channels:
            raise ImageFormatError(
                f"color={color!r} selects channel {channel}, but the images have {n_channels} channel(s) "
                f"(0..{n_channels - 1}). Received: color={color!r}"
            )
        weights = np.zeros(n_channels)
        weights[channel] = 1.0
        return weights
    if color.startswith("weights:"):
        try:
            weights = np.asarray([float(w) for w in color.split(":", 1)[1].split(",")])
        except ValueError:
            raise ImageFormatError(f"color must be 'weights:a,b,...' with numbers. Received: color={color!r}") from None
        if np.any(weights < 0) or weights.sum() <= 0:
            raise ImageFormatError(f"Channel weights must be non-negative with a positive sum. Received: color={color!r}")
        if n_channels is not None and weights.size != n_channels:
            raise ImageFormatError(
                f"color={color!r} gives {weights.size} weight(s) for images with {n_channels} channel(s). "
                f"Received: color={color!r}"
            )
        return None if n_channels is None else weights / weights.sum()
    raise ImageFormatError(f"color must be one of {COLOR_MODES}. Received: color={color!r}")


def channels_first(image: np.ndarray) -> np.ndarray:
    """One stored image as (channels, height, width): (h, w), (c, h, w) or (h, w, c) with c <= 4."""
    image = np.asarray(image)
    if image.ndim == 2:
        return image[None]
    if image.ndim == 3:
        if image.shape[0] <= 4 and image.shape[0] < min(image.shape[1:]):
            return image
        if image.shape[-1] <= 4 and image.shape[-1] < min(image.shape[:2]):
            return np.moveaxis(image, -1, 0)
    raise ImageFormatError(
        "An image must be (height, width), (channels, height, width) or (height, width, channels) "
        f"with at most 4 channels. Received: image.shape={image.shape}"
    )


def to_grayscale(images: np.ndarray, color: str = "mean") -> np.ndarray:
    """(n, c, h, w) in stored units -> (n, h, w) float32, reduced as ``color`` says."""
    images = np.asarray(images)
    if images.shape[1] == 1:
        return images[:, 0].astype(np.float32)
    weights = channel_weights(color, images.shape[1])
    return np.tensordot(images.astype(np.float64), weights, axes=([1], [0])).astype(np.float32)


def check_resizable(shape: tuple[int, int], size: tuple[int, int] | None) -> None:
    """Raises unless (h, w) can be resized to ``size`` keeping the aspect ratio (within 2%)."""
    if size is None or tuple(shape) == tuple(size):
        return
    ratio_in, ratio_out = shape[1] / shape[0], size[1] / size[0]
    if abs(ratio_in / ratio_out - 1.0) > _ASPECT_TOLERANCE:
        raise ImageFormatError(
            f"Images of {shape[0]}x{shape[1]} pixels cannot be resized to {size[0]}x{size[1]} without "
            f"distorting them (different aspect ratio). Choose a size whose width / height is "
            f"{ratio_in:.3f} like the images', or keep the stored size (an empty size). "
            f"Received: image size {shape[0]}x{shape[1]}, size={size[0]},{size[1]}"
        )


def resize(images: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
    """(n, h, w) -> (n, *size): block means for integer factors, else anti-aliased resampling."""
    images = np.asarray(images, dtype=np.float32)
    if size is None or images.shape[1:] == tuple(size):
        return images
    n, height, width = images.shape
    check_resizable((height, width), size)
    if height % size[0] == 0 and width % size[1] == 0:
        fy, fx = height // size[0], width // size[1]
        blocks = images.astype(np.float64).reshape(n, size[0], fy, size[1], fx)
        return blocks.mean(axis=(2, 4)).astype(np.float32)
    import skimage.transform

    return np.stack(
        [
            skimage.transform.resize(image.astype(np.float64), size, order=1, anti_aliasing=True, preserve_range=True, mode="edge")
            for image in images
        ]
    ).astype(np.float32)


def prepare(images: np.ndarray, options: ImageOptions) -> np.ndarray:
    """Stored images (n, c, h, w) -> (n, h', w') float32 grayscale, resized, still in stored units."""
    return resize(to_grayscale(images, options.color), options.size)


class ImageRangeWarning(UserWarning):
    """Stimulus values slightly outside [0, 1] were clipped."""


def unit_range_divisor(low: float, high: float, integer: bool, scale: str, where: str) -> float:
    """The divisor that brings stored values in [low, high] to [0, 1] (step 3 of the module docstring).

    Raises:
        ImageFormatError: values that ``scale`` cannot map, or ambiguous ones under ``"auto"``,
            with the option that decides.
    """
    received = f"Received: values in [{low:g}, {high:g}]"
    if scale == "255" or (scale == "auto" and integer):
        if low < 0 or high > 255:
            raise ImageFormatError(f"{where}: 0..255 images must lie in [0, 255]. {received}")
        return 255.0
    if scale == "unit" or (-0.5 <= low and high <= 1.5):
        return 1.0
    if low >= 0 and 10 <= high <= 255:
        return 255.0
    raise ImageFormatError(
        f"{where}: float images must lie in [0, 1] (within [-0.5, 1.5], clipped) or clearly in 0..255 "
        "(largest value 10 to 255, none below 0); these are neither. Pass --config.images.scale=unit "
        f"to clip them to [0, 1], or --config.images.scale=255 to divide them by 255. {received}"
    )


def warn_clipped(where: str, outside: int, total: int, low: float, high: float, metadata: dict | None = None) -> None:
    """Warns that ``outside`` of ``total`` values (scaled range [low, high]) were clipped to [0, 1]."""
    warnings.warn(
        f"{where}: {outside} of {total} pixel values lie outside [0, 1] (in [{low:g}, {high:g}] after "
        "scaling) and were clipped to it; pass --config.images.scale=255 if the images are 0..255.",
        ImageRangeWarning, stacklevel=3,
    )
    if metadata is not None:
        metadata["images_clipped_pixels"] = int(outside)


def clip_to_unit(images: np.ndarray, where: str, metadata: dict | None = None) -> np.ndarray:
    """``images`` clipped to [0, 1]; clipped pixels are counted in a warning (and the metadata)."""
    outside = int(np.count_nonzero((images < 0) | (images > 1)))
    if outside:
        warn_clipped(where, outside, images.size, float(images.min()), float(images.max()), metadata)
    return np.clip(images, 0.0, 1.0)


def to_unit_range(images: np.ndarray, stored_dtype, metadata: dict, scale: str = "auto",
                  where: str = "images") -> np.ndarray:
    """Scales prepared images to [0, 1] (step 3 of the module docstring); records a rescale or clip."""
    images = np.asarray(images, dtype=np.float32)
    if not images.size:
        return images
    if not np.isfinite(images).all():
        return images  # refused, naming the trials, by Recording.validate
    integer = np.issubdtype(np.dtype(stored_dtype), np.integer)
    divisor = unit_range_divisor(float(images.min()), float(images.max()), integer, str(scale), where)
    if divisor != 1.0:
        if not integer:
            metadata["images_rescaled_from_0_255"] = True
        images = images / np.float32(divisor)
    return clip_to_unit(images, where, metadata)
