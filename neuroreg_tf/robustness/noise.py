"""Accuracy under additive Gaussian noise (the paper's Fig. 4), several seeds, mean and SEM.

Noise model: ``x_noisy = clip(x + sigma * z, 0, 1)`` with ``z ~ N(0, 1)`` drawn independently per
pixel. Images live in [0, 1] and the classifiers were trained on that range, so the noisy image is
clipped back into it; this makes the effective noise slightly smaller at nearly black or white pixels
and keeps every evaluated input a valid image. ``sigma`` is in units of the [0, 1] pixel range.

Determinism: for a given seed the same ``z`` is drawn (``numpy.random.default_rng(seed)``, one stream
consumed in example order), independent of the batch size and shared by all noise levels, so the
accuracy curve of one seed is computed on the same noise pattern scaled by sigma.
"""

from __future__ import annotations

import numpy as np
import scipy.stats

from neuroreg_tf.progress import Reporter, print_line, reporter
from neuroreg_tf.robustness import checks
from neuroreg_tf.robustness.loading import as_logits_fn

DEFAULT_SIGMAS = (0.0, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5)
DEFAULT_SEEDS = (0, 1, 2, 3, 4)


def _num_classes(logits_fn, x):
    return int(logits_fn(x[:1]).shape[-1])


def clean_accuracy(model, x, y, batch_size: int = 256) -> float:
    """Fraction of images the model classifies correctly.

    Args:
        model: A Keras model or a callable mapping float32 images in [0, 1], NHWC, to logits.
        x: Images, shape (n, h, w, c), values in [0, 1].
        y: Integer labels, shape (n,).
        batch_size: Images per forward pass.

    Returns:
        The accuracy as a float in [0, 1].
    """
    logits_fn = as_logits_fn(model)
    x = checks.check_images(x)
    y = checks.check_labels(y, len(x), _num_classes(logits_fn, x))
    batch_size = checks.check_positive_int(batch_size, "batch_size")
    correct = 0
    for start in range(0, len(x), batch_size):
        logits = logits_fn(x[start : start + batch_size]).numpy()
        correct += int(np.sum(np.argmax(logits, axis=-1) == y[start : start + batch_size]))
    return correct / len(x)


def _check_sigmas(sigmas):
    values = np.asarray(sigmas, dtype=np.float64).reshape(-1) if np.ndim(sigmas) <= 1 else None
    if values is None or values.size == 0 or not np.all(np.isfinite(values)) or np.any(values < 0):
        raise ValueError(
            "Expected `sigmas` to be a non-empty list of finite, non-negative noise levels. "
            f"Received: sigmas={sigmas!r}"
        )
    return [float(value) for value in values]


def _check_seeds(seeds):
    if isinstance(seeds, (int, np.integer)) and not isinstance(seeds, bool):
        raise ValueError(
            "Expected `seeds` to be a list of integer seeds, e.g. (0, 1, 2, 3, 4). "
            f"Received: seeds={seeds!r}"
        )
    seeds = list(seeds)
    if not seeds or not all(
        isinstance(seed, (int, np.integer)) and not isinstance(seed, bool) and seed >= 0
        for seed in seeds
    ):
        raise ValueError(
            f"Expected `seeds` to be a non-empty list of non-negative integers. Received: seeds={seeds!r}"
        )
    return [int(seed) for seed in seeds]


def noise_robustness(
    model,
    x,
    y,
    sigmas=DEFAULT_SIGMAS,
    seeds=DEFAULT_SEEDS,
    batch_size=256,
    progress: Reporter = print_line,
):
    """Accuracy under additive Gaussian noise, clipped to [0, 1], for several levels and seeds.

    Args:
        model: A Keras model or a callable mapping float32 images in [0, 1], NHWC, to logits.
        x: Clean images, shape (n, h, w, c), values in [0, 1].
        y: Integer labels, shape (n,).
        sigmas: Noise standard deviations, in units of the [0, 1] pixel range. A level of 0 gives the
            clean accuracy (computed once; its SEM is 0).
        seeds: Noise seeds; each seed draws one noise pattern shared by all levels.
        batch_size: Images per forward pass.
        progress: Reporter of a one-line message after each seed (None: silent).

    Returns:
        A list with one dict per sigma, in the given order: ``sigma``, ``accuracy`` (mean over
        seeds), ``sem`` (standard error of the mean over seeds, ddof=1) and ``accuracies_per_seed``.

    Raises:
        ValueError: For images outside [0, 1], labels out of range, or bad sigmas/seeds.
    """
    logits_fn = as_logits_fn(model)
    x = checks.check_images(x)
    y = checks.check_labels(y, len(x), _num_classes(logits_fn, x))
    sigmas = _check_sigmas(sigmas)
    seeds = _check_seeds(seeds)
    batch_size = checks.check_positive_int(batch_size, "batch_size")
    report = reporter(progress)

    noisy_sigmas = sorted({sigma for sigma in sigmas if sigma > 0})
    correct = {(seed, sigma): 0 for seed in seeds for sigma in noisy_sigmas}
    clean_correct = 0
    for seed_index, seed in enumerate(seeds):
        rng = np.random.default_rng(seed)
        for start in range(0, len(x), batch_size):
            images = x[start : start + batch_size]
            labels = y[start : start + batch_size]
            if seed_index == 0:
                predictions = np.argmax(logits_fn(images).numpy(), axis=-1)
                clean_correct += int(np.sum(predictions == labels))
            if not noisy_sigmas:
                continue
            unit_noise = rng.standard_normal(images.shape, dtype=np.float32)
            for sigma in noisy_sigmas:
                noisy = np.clip(images + np.float32(sigma) * unit_noise, 0.0, 1.0)
                predictions = np.argmax(logits_fn(noisy).numpy(), axis=-1)
                correct[(seed, sigma)] += int(np.sum(predictions == labels))
        summary = ", ".join(
            f"{sigma:g}: {correct[(seed, sigma)] / len(x):.3f}" for sigma in noisy_sigmas
        )
        report(f"noise seed {seed} ({seed_index + 1}/{len(seeds)}): accuracy by sigma {{{summary}}}")

    results = []
    for sigma in sigmas:
        if sigma == 0:
            per_seed = [clean_correct / len(x)]
            sem = 0.0  # no noise: one deterministic accuracy, no spread to estimate
        else:
            per_seed = [correct[(seed, sigma)] / len(x) for seed in seeds]
            sem = float(scipy.stats.sem(per_seed)) if len(per_seed) > 1 else None  # None: one seed
        results.append(
            {
                "sigma": sigma,
                "accuracy": float(np.mean(per_seed)),
                "sem": sem,
                "accuracies_per_seed": per_seed,
            }
        )
    return results


def add_gaussian_noise(x, sigma: float, seed: int) -> np.ndarray:
    """Returns ``clip(x + sigma * z, 0, 1)`` with the same ``z`` that ``noise_robustness`` draws for ``seed``.

    Useful for showing example noisy images next to the accuracy curve.
    """
    x = checks.check_images(x)
    rng = np.random.default_rng(seed)
    return np.clip(x + np.float32(sigma) * rng.standard_normal(x.shape, dtype=np.float32), 0.0, 1.0)
