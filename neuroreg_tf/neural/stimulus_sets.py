"""Any image set as stimuli for a Neural (model) target: a folder of images or an array file.

The predictive models generalise, so the Neural (model) target (Eq 6) can be
built on images no animal saw (the paper computed model similarities for
millions of image pairs). ``open_stimulus_set(path, options)`` reads

* a folder of image files (``.png``, ``.jpg``/``.jpeg``, ``.bmp``, ``.tif``/``.tiff``, read
  with Pillow; RGBA loses its alpha channel), in sorted file-name order;
* a ``.npy`` (memory-mapped) or a ``.npz`` with key ``stimuli``, shaped
  (n, h, w), (n, h, w, c) or (n, c, h, w) with c <= 4;

and prepares them like a recording's images (``recordings.images``: colour
reduction, resize, 0..255 -> [0, 1]) chunk by chunk, so 100,000 stimuli and more
never have to be in memory at once.
"""

from __future__ import annotations

import os

import numpy as np

from neuroreg_tf.errors import InputError, MissingDataError
from neuroreg_tf.neural.recordings import images as image_ops

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
ARRAY_KEY = "stimuli"


class StimulusSet:
    """A readable, prepared stimulus set.

    Attributes:
        path: the folder or file.
        n: number of stimuli.
        shape: (height, width) after preparation.
        names: the file names (folders) or None (arrays).
    """

    def __init__(self, path: str, n: int, stored_shape: tuple, options: image_ops.ImageOptions, reader, scale: float, names=None):
        self.path = path
        self.n = int(n)
        self.options = options
        self._reader = reader
        self._scale = np.float32(scale)
        self.names = names
        size = options.size or tuple(stored_shape[-2:])
        self.shape = (int(size[0]), int(size[1]))

    def read(self, start: int, stop: int) -> np.ndarray:
        """Stimuli ``start..stop-1`` as (k, height, width, 1) float32 in [0, 1]."""
        stored = self._reader(start, stop)
        try:
            prepared = image_ops.prepare(stored, self.options) / self._scale
        except image_ops.ImageFormatError as error:
            raise InputError(f"{self.path}: {error}") from None
        return np.clip(prepared, 0.0, 1.0)[..., None].astype(np.float32)


def _array_stimuli(path: str, options, chunk: int) -> StimulusSet:
    if path.endswith(".npz"):
        with np.load(path, allow_pickle=False) as archive:
            if ARRAY_KEY not in archive:
                raise InputError(
                    f"{path} must hold the stimuli under the key {ARRAY_KEY!r} (np.savez(path, stimuli=images)). "
                    f"Received: keys {sorted(archive.keys())}"
                )
            array = archive[ARRAY_KEY]
    else:
        try:
            array = np.load(path, mmap_mode="r", allow_pickle=False)
        except ValueError as error:
            raise InputError(f"{path} is not a plain NumPy array file ({error}). Received: an unreadable .npy") from None
    if array.ndim not in (3, 4) or array.shape[0] < 1 or not np.issubdtype(array.dtype, np.number):
        raise InputError(
            f"{path}: stimuli must be a numeric array shaped (n, h, w), (n, h, w, c) or (n, c, h, w). "
            f"Received: shape {array.shape}, dtype {array.dtype}"
        )
    try:
        first = image_ops.channels_first(array[0]) if array.ndim == 4 else array[0][None]
    except image_ops.ImageFormatError as error:
        raise InputError(f"{path}: {error}") from None
    channel_last = array.ndim == 4 and first.shape[0] != array.shape[1]

    def reader(start, stop):
        block = np.asarray(array[start:stop])
        if block.ndim == 3:
            return block[:, None]
        return np.moveaxis(block, -1, 1) if channel_last else block

    def blocks():
        for start in range(0, array.shape[0], chunk):
            yield start, np.asarray(array[start : start + chunk], dtype=np.float64)

    if array.dtype == np.uint8 and options.scale != "unit":
        low, high = 0.0, 255.0  # the dtype's own range: nothing to scan
    else:
        low, high = np.inf, -np.inf
        for start, block in blocks():
            if not np.isfinite(block).all():
                bad = start + np.flatnonzero(~np.isfinite(block.reshape(len(block), -1)).all(axis=1))
                raise InputError(
                    f"{path}: {bad.size} stimulus image(s) contain NaN or inf (first indices {bad[:5].tolist()}). "
                    "Remove or repair them. Received: non-finite stimuli"
                )
            low, high = min(low, block.min()), max(high, block.max())
    try:
        scale = image_ops.unit_range_divisor(low, high, np.issubdtype(array.dtype, np.integer), options.scale, path)
    except image_ops.ImageFormatError as error:
        raise InputError(str(error)) from None
    if low < 0 or high > scale:  # rare: count what each read will clip, for the warning
        outside = sum(int(np.count_nonzero((block < 0) | (block > scale))) for _, block in blocks())
        image_ops.warn_clipped(path, outside, array.size, low / scale, high / scale)
    return StimulusSet(path, array.shape[0], first.shape, options, reader, scale)


def _folder_stimuli(path: str, options) -> StimulusSet:
    from PIL import Image

    names = sorted(name for name in os.listdir(path) if name.lower().endswith(IMAGE_SUFFIXES))
    if not names:
        raise InputError(
            f"{path} holds no image files ({', '.join(IMAGE_SUFFIXES)}). Pass a folder of images or a .npy "
            f"of stimuli. Received: {len(os.listdir(path))} other file(s)"
        )

    def load(name):
        file = os.path.join(path, name)
        try:
            with Image.open(file) as image:
                if image.mode in ("I;16", "I;16B", "I;16L", "I"):
                    return np.asarray(image, dtype=np.float64) / (65535.0 if image.mode.startswith("I;16") else 1.0) * 255.0
                if image.mode == "RGBA":
                    image = image.convert("RGB")
                elif image.mode not in ("L", "RGB"):
                    image = image.convert("RGB")
                return np.asarray(image)
        except OSError as error:
            raise InputError(f"{file} cannot be read as an image ({error}). Remove or replace it. Received: a damaged image") from None

    first = image_ops.channels_first(load(names[0]))

    def reader(start, stop):
        stack = []
        for name in names[start:stop]:
            image = image_ops.channels_first(load(name))
            if image.shape != first.shape:
                raise InputError(
                    f"{os.path.join(path, name)} is {image.shape[1]}x{image.shape[2]} with {image.shape[0]} channel(s), "
                    f"{names[0]} {first.shape[1]}x{first.shape[2]} with {first.shape[0]}: every stimulus must have "
                    "the same size and channels. Resize them first. Received: mixed image sizes"
                )
            stack.append(image)
        return np.stack(stack)

    return StimulusSet(path, len(names), first.shape, options, reader, 255.0, names=names)


def open_stimulus_set(path: str, options: image_ops.ImageOptions | None = None, *, chunk: int = 4096) -> StimulusSet:
    """Opens a folder of images or a ``.npy``/``.npz`` of stimuli (see the module docstring).

    Raises:
        MissingDataError: nothing at ``path``.
        InputError: an unreadable, empty or malformed stimulus set, naming the file.
    """
    options = options or image_ops.ImageOptions()
    if not os.path.exists(path):
        raise MissingDataError(f"No stimulus set at {path}: pass a folder of images or a .npy/.npz file. Received: {path!r}")
    if os.path.isdir(path):
        stimuli = _folder_stimuli(path, options)
    elif path.endswith((".npy", ".npz")):
        stimuli = _array_stimuli(path, options, chunk)
    else:
        raise InputError(f"A stimulus set must be a folder of images or a .npy/.npz file. Received: {path!r}")
    try:
        image_ops.check_resizable(tuple(stimuli._reader(0, 1).shape[-2:]), options.size)
    except image_ops.ImageFormatError as error:
        raise InputError(f"{path}: {error}") from None
    return stimuli


def prepare_to_file(stimuli: StimulusSet, path: str, *, chunk: int = 4096, log=None) -> np.ndarray:
    """Writes the prepared stimuli to ``path`` (.npy, chunk by chunk) and returns it memory-mapped."""
    log = log or (lambda message: None)
    shape = (stimuli.n, *stimuli.shape, 1)
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(np.float32)), "fortran_order": False, "shape": shape}
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(f, header)
        for start in range(0, stimuli.n, chunk):
            f.write(np.ascontiguousarray(stimuli.read(start, min(start + chunk, stimuli.n))).tobytes())
            log(f"prepared stimuli {min(start + chunk, stimuli.n)}/{stimuli.n}")
    return np.load(path, mmap_mode="r")
