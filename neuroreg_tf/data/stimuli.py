"""Stimulus images for the similarity regularizer: natural crops or user arrays.

The paper shows mice 5000 grayscale ImageNet images at 36x64 pixels. No such
set is reachable offline here, so ``natural_stimuli`` cuts deterministic random
crops out of the photographs bundled in scikit-image's wheel. Real stimuli
(the images shown in a recording) are loaded with ``load_stimuli``.
"""

from __future__ import annotations

import functools
import pathlib

import numpy as np
import skimage.color
import skimage.data
import skimage.transform
from scipy import ndimage

from neuroreg_tf.errors import InputError

# skimage.data photographs that ship inside the wheel (no download needed).
NATURAL_IMAGE_NAMES = (
    "astronaut", "brick", "camera", "chelsea", "clock", "coffee", "coins",
    "grass", "gravel", "hubble_deep_field", "moon", "motorcycle_left",
    "motorcycle_right", "rocket",
)
MIN_CROP_FRACTION = 0.25
STIMULI_NPZ_KEY = "stimuli"


def _load_photo(name: str) -> np.ndarray:
    if name in ("motorcycle_left", "motorcycle_right"):
        left, right, _ = skimage.data.stereo_motorcycle()
        image = left if name == "motorcycle_left" else right
    else:
        image = getattr(skimage.data, name)()
    image = np.asarray(image)
    if image.ndim == 3:
        image = skimage.color.rgb2gray(image[..., :3])
    elif image.dtype == np.uint8:
        image = image / 255.0
    return image.astype(np.float64)


@functools.lru_cache(maxsize=None)
def _photo_pyramids():
    """Returns, per photo, its Gaussian pyramid (each level half the previous)."""
    pyramids = []
    for name in NATURAL_IMAGE_NAMES:
        photo = _load_photo(name)
        pyramids.append(tuple(skimage.transform.pyramid_gaussian(photo, downscale=2)))
    return tuple(pyramids)


def _crop(pyramid, top, left, crop_height, crop_width, height, width):
    """Samples a crop (full-resolution coordinates) onto a height x width grid.

    Reads from the coarsest pyramid level that is still at least as fine as the
    output, so bilinear sampling never shrinks by more than 2x (little aliasing).
    """
    shrink = crop_height / height
    level = min(int(np.floor(np.log2(max(shrink, 1.0)))), len(pyramid) - 1)
    image = pyramid[level]
    scale = 2.0 ** -level
    rows = (top + (np.arange(height) + 0.5) * crop_height / height) * scale - 0.5
    cols = (left + (np.arange(width) + 0.5) * crop_width / width) * scale - 0.5
    grid = np.meshgrid(rows, cols, indexing="ij")
    return ndimage.map_coordinates(image, grid, order=1, mode="nearest")


def natural_stimuli(n: int, *, height: int = 36, width: int = 64,
                    seed: int = 0) -> np.ndarray:
    """Returns ``n`` grayscale natural-image crops, deterministic given the seed.

    Each crop picks one of ``NATURAL_IMAGE_NAMES`` uniformly, a size between
    ``MIN_CROP_FRACTION`` and 1 of the largest height:width window the photo holds
    (never smaller than the output), and a uniform location; it is then resampled
    to height x width (anti-aliased through a Gaussian pyramid). Locations and
    sizes are continuous, so any number of distinct crops is possible.

    Args:
        n: number of stimuli.
        height: output height in pixels (the paper's stimuli are 36 x 64).
        width: output width in pixels.
        seed: random seed; same seed, same stimuli.

    Returns:
        float32 array (n, height, width, 1) with values in [0, 1].

    Raises:
        ValueError: non-positive n, height or width.
    """
    for arg_name, value in (("n", n), ("height", height), ("width", width)):
        if not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{arg_name} must be a positive integer. "
                             f"Received: {arg_name}={value!r}")
    pyramids = _photo_pyramids()
    rng = np.random.default_rng(seed)
    stimuli = np.empty((n, height, width, 1), np.float32)
    aspect = width / height
    for index in range(n):
        pyramid = pyramids[rng.integers(len(pyramids))]
        photo_height, photo_width = pyramid[0].shape
        max_crop_height = min(photo_height, photo_width / aspect)
        min_crop_height = min(max(MIN_CROP_FRACTION * max_crop_height, height),
                              max_crop_height)
        crop_height = rng.uniform(min_crop_height, max_crop_height)
        crop_width = crop_height * aspect
        top = rng.uniform(0, photo_height - crop_height)
        left = rng.uniform(0, photo_width - crop_width)
        stimuli[index, ..., 0] = _crop(
            pyramid, top, left, crop_height, crop_width, height, width)
    return np.clip(stimuli, 0.0, 1.0)


def check_stimuli(stimuli, *, error=InputError, chunk: int = 4096) -> None:
    """Checks stimuli shaped (n, height, width, 1) with finite values in [0, 1], without copying.

    Values are read chunk by chunk, so a memory-mapped array of 100k stimuli stays on disk.

    Args:
        stimuli: array (n, h, w, 1), e.g. memory-mapped.
        error: the exception class to raise (a subclass of ``InputError``).
        chunk: images per chunk.

    Raises:
        error: wrong rank or channel count, no stimuli, NaN/inf, or values outside [0, 1].
    """
    shape = np.shape(stimuli)
    if len(shape) != 4 or shape[-1] != 1:
        raise error(
            "Stimuli must be grayscale images shaped (n, height, width) or "
            "(n, height, width, 1); convert colour images to grayscale first. "
            f"Received: stimuli.shape={shape}")
    if 0 in shape[:3]:
        raise error(
            f"Stimuli must hold at least one non-empty image. Received: stimuli.shape={shape}")
    low, high = np.inf, -np.inf
    for start in range(0, shape[0], chunk):
        block = np.asarray(stimuli[start:start + chunk])
        finite = np.isfinite(block)
        if not finite.all():
            bad = start + np.flatnonzero(~finite.reshape(len(block), -1).all(axis=1))
            raise error(
                f"Stimuli must be finite; {bad.size} image(s) contain NaN or inf "
                f"(first indices {bad[:5].tolist()}). Remove or repair them. "
                f"Received: stimuli with {int((~finite).sum())} non-finite values")
        low, high = min(low, float(block.min())), max(high, float(block.max()))
    if low < 0.0 or high > 1.0:
        raise error(
            "Stimuli values must lie in [0, 1]; rescale them (e.g. uint8 images: "
            "pass the uint8 array to load_stimuli, or divide by 255). "
            f"Received: stimuli with min={low:g}, max={high:g}")


def validate_stimuli(stimuli) -> np.ndarray:
    """Checks a stimulus array and returns it as float32 (n, h, w, 1).

    Args:
        stimuli: array (n, h, w) or (n, h, w, 1), finite, with values in [0, 1].

    Returns:
        The stimuli as float32 with a trailing channel axis.

    Raises:
        InputError: not numeric, wrong rank or channel count, no stimuli, NaN/inf, or values
            outside [0, 1] (see ``check_stimuli``).
    """
    array = np.asarray(stimuli)
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise InputError(
            "Stimuli must be a numeric array of grayscale images. "
            f"Received: stimuli.dtype={array.dtype}")
    if array.ndim == 3:
        array = array[..., np.newaxis]
    if array.ndim != 4 or array.shape[-1] != 1:
        raise InputError(
            "Stimuli must be grayscale images shaped (n, height, width) or "
            "(n, height, width, 1); convert colour images to grayscale first. "
            f"Received: stimuli.shape={np.shape(stimuli)}")
    array = array.astype(np.float32)
    check_stimuli(array)
    return array


def load_stimuli(path) -> np.ndarray:
    """Loads user stimuli from .npy or .npz (key 'stimuli') and validates them.

    uint8 arrays (0..255) are rescaled to [0, 1]; other dtypes must already be in
    [0, 1].

    Args:
        path: a .npy file, or a .npz file with the array under 'stimuli'.

    Returns:
        float32 array (n, h, w, 1) in [0, 1].

    Raises:
        FileNotFoundError: no such file.
        ValueError: unsupported file type, missing key, or invalid stimuli (see
            ``validate_stimuli``).
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No stimulus file at {path}.")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        array = np.load(path, allow_pickle=False)
    elif suffix == ".npz":
        with np.load(path, allow_pickle=False) as archive:
            if STIMULI_NPZ_KEY not in archive:
                raise ValueError(
                    f"A .npz stimulus file must hold the images under the key "
                    f"{STIMULI_NPZ_KEY!r}, e.g. np.savez(path, stimuli=images). "
                    f"Received: keys={sorted(archive.keys())}")
            array = archive[STIMULI_NPZ_KEY]
    else:
        raise ValueError(
            "Stimulus files must be .npy or .npz (with key 'stimuli'). "
            f"Received: path={str(path)!r}")
    if array.dtype == np.uint8:
        array = array.astype(np.float32) / 255.0
    return validate_stimuli(array)
