"""Scoring adversarial examples: distances, verification and the paper's median score.

Every number the adversarial evaluation reports comes from here: ``perturbation_distance``
recomputes distances (float64) from the returned images, ``verify_adversarial`` checks that a
candidate really flips the label within [0, 1], and ``summarize_distances`` gives the median
minimal perturbation (misclassified clean images count as 0, unbroken samples as inf).
"""

from __future__ import annotations

import numpy as np

from neuroreg_tf.robustness.loading import as_logits_fn
from neuroreg_tf.robustness.settings import check_norm

CLEAN_MISCLASSIFIED = "clean_misclassified"
SUCCESS_CURVE_POINTS = 40


def perturbation_distance(x, adversarial, norm: str) -> np.ndarray:
    """Per-sample distance (float64) between image batches ``x`` and ``adversarial``: L-inf, L2,
    L1, or L0 (the number of pixel values that differ at all, as Foolbox counts them)."""
    check_norm(norm)
    difference = (np.asarray(adversarial, np.float64) - np.asarray(x, np.float64)).reshape(
        len(x), -1
    )
    if norm == "linf":
        return np.abs(difference).max(axis=1) if difference.shape[1] else np.zeros(len(x))
    if norm == "l1":
        return np.abs(difference).sum(axis=1)
    if norm == "l0":
        return np.count_nonzero(difference, axis=1).astype(np.float64)
    return np.sqrt(np.sum(difference**2, axis=1))


def verify_adversarial(
    model, x, adversarial, y, norm, *, clip_min=0.0, clip_max=1.0, min_margin=0.0, batch_size=500
):
    """Checks candidate adversarials and recomputes their distances.

    Args:
        model: A Keras model or a callable mapping images to logits.
        x: Clean images, (n, h, w, c).
        adversarial: Candidate adversarial images, same shape.
        y: True labels, (n,).
        norm: One of ``settings.NORMS``.
        clip_min: Smallest valid pixel value.
        clip_max: Largest valid pixel value.
        min_margin: How far the best wrong logit must exceed the true logit. 0 means the label
            flips (a tie does not count).
        batch_size: Images per forward pass.

    Returns:
        (is_adversarial, distances): a bool array, True where the candidate is finite, within
        [clip_min, clip_max] and its best wrong logit exceeds the true logit by more than
        ``min_margin``; and the recomputed distances.
    """
    logits_fn = as_logits_fn(model)
    adversarial = np.asarray(adversarial, np.float32)
    if adversarial.shape != np.shape(x):
        raise ValueError(
            f"Expected adversarial images shaped like the clean images {np.shape(x)}. "
            f"Received: adversarial with shape {adversarial.shape}"
        )
    y = np.asarray(y)
    flat = adversarial.reshape(len(adversarial), -1)
    finite = np.all(np.isfinite(flat), axis=1)
    valid = finite & np.all(flat >= clip_min, axis=1) & np.all(flat <= clip_max, axis=1)
    margins = np.empty(len(adversarial))
    for start in range(0, len(adversarial), batch_size):
        stop = start + batch_size
        batch = np.where(finite[start:stop, None, None, None], adversarial[start:stop], 0.0)
        logits = logits_fn(batch).numpy().astype(np.float64)
        rows = np.arange(len(logits))
        true_logit = logits[rows, y[start:stop]]
        logits[rows, y[start:stop]] = -np.inf
        margins[start:stop] = logits.max(axis=1) - true_logit
    return valid & (margins > min_margin), perturbation_distance(x, adversarial, norm)


def quantile(values, q: float) -> float:
    """Quantile with linear interpolation that treats inf as a value (an inf neighbour gives inf)."""
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"A quantile q must be in [0, 1] (0.5 is the median). Received: q={q}")
    values = np.sort(np.asarray(values, np.float64))
    if values.size == 0:
        return float("nan")
    position = q * (values.size - 1)
    lower = int(np.floor(position))
    upper = min(lower + 1, values.size - 1)
    fraction = position - lower
    if fraction == 0 or values[lower] == values[upper]:
        return float(values[lower])
    if np.isinf(values[upper]):
        return float("inf")
    return float(values[lower] + (values[upper] - values[lower]) * fraction)


def summarize_distances(
    distances, clean_correct, per_attack: dict | None = None, best_attack=None
) -> dict:
    """Median, quartiles and counts of minimal distances.

    Args:
        distances: (n,) minimal distances (0 for misclassified clean images, inf for not found).
        clean_correct: (n,) bool.
        per_attack: Optional attack name -> (n,) distances.
        best_attack: Optional (n,) names of the attack that found each kept adversarial.

    Returns:
        A dict: ``median``, ``q25``, ``q75`` over all n samples (the paper's score, misclassified
        clean images counting as 0), ``n``, ``n_clean_misclassified``, ``n_not_found``,
        ``median_clean_correct`` (over correctly classified samples only) and ``per_attack``
        (per attack: ``median``, ``n_found`` and ``n_best``, the samples where it was the best).
    """
    distances = np.asarray(distances, np.float64)
    clean_correct = np.asarray(clean_correct, bool)
    summary = {
        "median": quantile(distances, 0.5),
        "q25": quantile(distances, 0.25),
        "q75": quantile(distances, 0.75),
        "n": int(distances.size),
        "n_clean_misclassified": int(np.sum(~clean_correct)),
        "n_not_found": int(np.sum(np.isinf(distances))),
        "median_clean_correct": (
            quantile(distances[clean_correct], 0.5) if clean_correct.any() else None
        ),
    }
    if per_attack is not None:
        summary["per_attack"] = {
            name: {
                "median": quantile(found, 0.5),
                "n_found": int(np.sum(np.isfinite(found) & clean_correct)),
                "n_best": (
                    int(np.sum(np.asarray(best_attack) == name))
                    if best_attack is not None
                    else None
                ),
            }
            for name, found in per_attack.items()
        }
    return summary


def success_curve(distances, epsilons) -> np.ndarray:
    """Fraction of samples broken within each budget: mean(distances <= eps) for each eps."""
    distances = np.asarray(distances, np.float64)
    return np.array([float(np.mean(distances <= eps)) for eps in np.asarray(epsilons, np.float64)])


def epsilon_grid(distances, points: int = SUCCESS_CURVE_POINTS) -> np.ndarray:
    """A geometric grid of budgets spanning the finite, positive ``distances`` (for success curves)."""
    distances = np.asarray(distances, np.float64)
    positive = distances[np.isfinite(distances) & (distances > 0)]
    if positive.size == 0:
        return np.array([0.0])
    return np.concatenate(
        [[0.0], np.geomspace(positive.min() / 2, positive.max() * 1.25, points - 1)]
    )
