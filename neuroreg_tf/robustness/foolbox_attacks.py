"""Foolbox 3 attacks (the paper's own evaluation tool) as minimising attacks of our search.

Each is an ``attacks.MinimizingAttack``: Foolbox returns, per sample, the smallest adversarial it
found, and the search verifies it like every candidate (label flipped by more than the decision
margin, pixels in [0, 1], distance recomputed). Minimum-norm attacks stop on the decision
boundary, where a tie or float32 rounding can leave the true class on top; each candidate is
therefore pushed just past the boundary: its perturbation is scaled by the smallest factor in
[1, ``MAX_OVERSHOOT``] that clears the margin (found by doubling, then bisection).

* ``fmn``: Fast Minimum-Norm (Pintor et al. 2021), L-inf, L1 and L0;
* ``ddn``: Decoupled Direction and Norm (Rony et al. 2019), L2;
* ``brendel_bethge``: the Brendel & Bethge family (Brendel et al. 2019), L-inf, L2, L1 and L0,
  the paper's state-of-the-art attack: it walks along the decision boundary from an adversarial
  it is given, so in the search it refines the best adversarial found before it (``refines``);
* ``hop_skip_jump``: HopSkipJump (Chen et al. 2020), decision-based (it only queries labels),
  L-inf and L2: the gradient-free check of ``diagnostics``; it also refines.

Brendel & Bethge needs numba (a dependency of this package).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from neuroreg_tf.robustness.attacks import MinimizingAttack
from neuroreg_tf.robustness.loading import predict_labels
from neuroreg_tf.robustness.settings import FOOLBOX_CLASSES, check_norm

ATTACKS = FOOLBOX_CLASSES  # name -> {norm: Foolbox class name}
# Attacks that start from adversarials they are given: in the search, the best found before them.
REFINING = ("brendel_bethge", "hop_skip_jump")
MAX_OVERSHOOT = 4.0  # a candidate whose perturbation needs more is not pushed further
BISECTION_STEPS = 12  # the factor's precision: (upper - lower) / 2^12


def available(name: str, norm: str) -> bool:
    """Whether Foolbox attack ``name`` exists for ``norm``."""
    return norm in ATTACKS.get(name, {})


def _make(name: str, norm: str, steps: int):
    import foolbox

    cls = getattr(foolbox.attacks, ATTACKS[name][norm])
    if name == "hop_skip_jump":
        return cls(steps=steps, constraint=norm)
    if name == "brendel_bethge":
        # Foolbox's default of 10 binary-search steps to the boundary is coarse for a start that
        # is already near it; the boundary search is cheap next to the optimisation steps.
        return cls(steps=steps, binary_search_steps=20)
    return cls(steps=steps)


def past_the_boundary(logits_fn, x, candidates, y, margin: float) -> np.ndarray:
    """Each candidate's perturbation scaled by the smallest factor in [1, ``MAX_OVERSHOOT``] whose
    best wrong logit beats the true one by more than ``margin`` (the candidate itself where none
    does); the factor to within ``(upper - lower) / 2**BISECTION_STEPS``."""
    x = np.asarray(x, np.float32)
    candidates = np.asarray(candidates, np.float32)
    rows = np.arange(len(x))

    def scaled(factors):
        return np.clip(x + factors[:, None, None, None] * (candidates - x), 0.0, 1.0).astype(np.float32)

    def clears(factors):
        logits = np.asarray(logits_fn(tf.constant(scaled(factors))), np.float64)
        true = logits[rows, y]
        logits[rows, y] = -np.inf
        return logits.max(axis=1) - true > margin

    lower = np.zeros(len(x))  # a factor known not to clear (0: the clean image)
    upper = np.ones(len(x))
    ok = clears(upper)
    while not ok.all() and upper[~ok].max() < MAX_OVERSHOOT:
        lower = np.where(ok, lower, upper)
        upper = np.where(ok, upper, np.minimum(upper * 2.0, MAX_OVERSHOOT))
        ok = clears(upper)
    lower = np.where(upper == 1.0, np.maximum(lower, 0.0), lower)
    for _ in range(BISECTION_STEPS):
        middle = (lower + upper) / 2.0
        middle_ok = ok & clears(middle)
        upper = np.where(middle_ok, middle, upper)
        lower = np.where(ok & ~middle_ok, middle, lower)
    return np.where(ok[:, None, None, None], scaled(np.where(ok, upper, 1.0)), candidates)


def _initial_search(model, x, labels) -> np.ndarray:
    """Foolbox's default start of the refining attacks (blended uniform noise, a line search); where
    it finds no adversarial its output is not one, which the caller's check leaves out."""
    import warnings

    import foolbox

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "failed to draw sufficient random inputs": handled by the caller
        return np.asarray(foolbox.attacks.LinearSearchBlendedUniformNoiseAttack().run(model, tf.constant(x), labels),
                          np.float32)


def foolbox_attack(name: str, norm: str, *, steps: int = 100, decision_margin: float = 1e-3,
                   batch_size: int = 500) -> MinimizingAttack:
    """A Foolbox minimum-norm or decision-based attack as a ``MinimizingAttack``.

    Args:
        name: "fmn", "ddn", "brendel_bethge" or "hop_skip_jump" (``ATTACKS``).
        norm: one the attack has (``ATTACKS[name]``).
        steps: the attack's steps (Foolbox's ``steps``).
        decision_margin: how far past the boundary a candidate is pushed (the search's).
        batch_size: images per Foolbox call.

    Returns:
        A ``MinimizingAttack`` named ``foolbox_<name>_<norm>(steps=...)``; those of ``REFINING``
        have ``refines`` set and take the adversarials to start from.
    """
    check_norm(norm)
    if not available(name, norm):
        raise ValueError(
            f"No Foolbox attack {name!r} for norm {norm!r}; available: "
            + ", ".join(f"{n} ({'/'.join(norms)})" for n, norms in ATTACKS.items()) + f". Received: {name!r}"
        )
    if isinstance(steps, bool) or int(steps) < 1:
        raise ValueError(f"`steps` must be a positive integer. Received: steps={steps!r}")

    def build(logits_fn):
        import foolbox

        model = foolbox.TensorFlowModel(lambda images: logits_fn(images), bounds=(0.0, 1.0))
        attack = _make(name, norm, int(steps))

        def run(x, y, starting_points=None):
            """Candidates for ``x`` (the clean image where nothing was found); ``starting_points``:
            adversarials to start from (the refining attacks; without them they start from
            Foolbox's blended-noise search, on the images where it finds an adversarial)."""
            x, y = np.asarray(x, np.float32), np.asarray(y)
            outputs = []
            for start in range(0, len(x), batch_size):
                xb, yb = x[start:start + batch_size], y[start:start + batch_size]
                labels = tf.constant(yb.astype(np.int64))
                if starting_points is not None:
                    starts = np.asarray(starting_points, np.float32)[start:start + batch_size]
                elif name in REFINING:
                    starts = _initial_search(model, xb, labels)
                else:
                    starts = None
                if starts is None:
                    _, clipped, _ = attack(model, tf.constant(xb), labels, epsilons=None)
                    outputs.append(past_the_boundary(logits_fn, xb, clipped.numpy(), yb, decision_margin))
                    continue
                found = np.flatnonzero(predict_labels(logits_fn, starts, batch_size) != yb)  # Foolbox's criterion
                candidates = xb.copy()
                if found.size:
                    _, clipped, _ = attack(model, tf.constant(xb[found]), tf.gather(labels, found), epsilons=None,
                                           starting_points=tf.constant(starts[found]))
                    candidates[found] = past_the_boundary(logits_fn, xb[found], clipped.numpy(), yb[found],
                                                          decision_margin)
                outputs.append(candidates)
            return np.concatenate(outputs) if outputs else x

        return run

    return MinimizingAttack(f"foolbox_{name}_{norm}(steps={int(steps)})", norm, build, refines=name in REFINING)
