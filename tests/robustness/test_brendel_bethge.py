"""Foolbox's Brendel & Bethge attacks on linear models, whose minimal distance is known in closed form
for every norm: started from a far adversarial, each lands just above the minimum, never below.

Slow: numba compiles each norm's optimiser on first use (20 to 60 s each).
"""

from __future__ import annotations

import numpy as np
import pytest

from neuroreg_tf.robustness import attacks, foolbox_attacks, scoring, search
from neuroreg_tf.robustness.settings import AttackSettings
from test_attacks import exact_linear_distances, linear_model, mid_gray_images
from test_sparse_norms import exact_sparse_distances, sparse_model

pytestmark = pytest.mark.slow
MARGIN = AttackSettings().decision_margin


def far_adversarials(model, kernel, x, y, factor=3.0):
    """Each image moved toward the other class by ``factor`` times the L2 step that reaches the
    boundary (clipped to [0, 1]): adversarial, and far from the boundary in every norm."""
    direction = (kernel[:, 1 - y] - kernel[:, y]).T
    logits = np.asarray(model(x), np.float64)
    gap = logits[np.arange(len(x)), y] - logits[np.arange(len(x)), 1 - y]
    step = factor * gap / np.sum(direction**2, axis=1)
    far = np.clip(x.reshape(len(x), -1) + direction * step[:, None], 0, 1).reshape(x.shape).astype(np.float32)
    assert (np.asarray(model(far)).argmax(axis=1) != y).all()
    return far


@pytest.mark.parametrize("norm, tolerance", [("linf", 0.02), ("l2", 0.02), ("l1", 0.02), ("l0", 0.0)])
def test_from_a_start_it_lands_just_above_the_exact_minimum(norm, tolerance):
    """From a far, dense adversarial for L-inf, L2 and L1; for L0, as in the ensemble, from FMN's
    (a dense start leaves B&B's L0 steps at about twice the minimum after 100 steps)."""
    if norm in ("linf", "l2", "l0"):
        # (L0 here: one or two pixels, where FMN's L0 ends one pixel above the minimum.)
        model, kernel, bias = linear_model(num_classes=2, seed=2)
        x = mid_gray_images(8, seed=3)
        y = np.asarray(model(x)).argmax(axis=1)
        if norm == "l0":
            exact = exact_sparse_distances(x, y, kernel, bias, norm, decision_margin=MARGIN)
        else:
            exact = exact_linear_distances(x, y, kernel, bias, norm, decision_margin=MARGIN)
    else:
        model, kernel, bias, x = sparse_model()
        x, y = x[:8], np.asarray(model(x[:8])).argmax(axis=1)
        exact = exact_sparse_distances(x, y, kernel, bias, norm, decision_margin=MARGIN)
    if norm == "l0":
        start = foolbox_attacks.foolbox_attack("fmn", "l0", steps=100, decision_margin=MARGIN)
    else:
        far = far_adversarials(model, kernel, x, y)
        start = attacks.MinimizingAttack("far start", norm, lambda logits_fn: lambda images, labels: far)
    attack = foolbox_attacks.foolbox_attack("brendel_bethge", norm, steps=100, decision_margin=MARGIN)
    result = search.minimal_perturbation(model, x, y, norm, attacks=[start, attack], progress=None)
    assert np.isfinite(result.distances).all()
    assert (result.distances >= exact * (1 - 1e-5)).all(), "never below the exact minimum"
    if norm != "l0":
        assert (result.per_attack[attack.name] < scoring.perturbation_distance(x, far, norm)).all(), \
            "it improved on every start"
    else:
        assert (result.distances < result.per_attack[start.name]).all(), "it improved on FMN's L0"
    excess = result.distances / exact - 1 if norm != "l0" else result.distances - exact
    assert np.median(excess) <= tolerance, (result.distances, exact)
