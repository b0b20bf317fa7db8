"""Foolbox 3 attacks (the paper's own evaluation tool) as minimising attacks of our search.

Each is an ``attacks.MinimizingAttack``: Foolbox returns, per sample, the smallest adversarial it
found, and the search verifies it like every candidate (label flipped by more than the decision
margin, pixels in [0, 1], distance recomputed). Minimum-norm attacks stop on the decision
boundary, where a tie or float32 rounding can leave the true class on top; each candidate is
therefore pushed just past the boundary: its perturbation is scaled by the smallest factor in
[1, ``MAX_OVERSHOOT``] that clears the margin (found by doubling, then bisection).

* ``fmn``: Fast Minimum-Norm (Pintor et al. 2021), L-inf;
* ``ddn``: Decoupled Direction and Norm (Rony et al. 2019), L2;
* ``hop_skip_jump``: HopSkipJump (Chen et al. 2020), decision-based (it only queries labels),
  L-inf and L2: the gradient-free check of ``diagnostics``.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from neuroreg_tf.robustness.attacks import MinimizingAttack
from neuroreg_tf.robustness.settings import check_norm

# Foolbox 3.3.4's L2FMNAttack returned perturbations of L2 norm about 1 on the linear test models
# (50x their minimal distance), so FMN is used for L-inf only; DDN covers L2.
ATTACKS = {
    "fmn": {"linf": "LInfFMNAttack"},
    "ddn": {"l2": "DDNAttack"},
    "hop_skip_jump": {"linf": "HopSkipJumpAttack", "l2": "HopSkipJumpAttack"},
}
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


def foolbox_attack(name: str, norm: str, *, steps: int = 100, decision_margin: float = 1e-3,
                   batch_size: int = 500) -> MinimizingAttack:
    """A Foolbox minimum-norm or decision-based attack as a ``MinimizingAttack``.

    Args:
        name: "fmn", "ddn" or "hop_skip_jump" (``ATTACKS``).
        norm: "linf" or "l2" (DDN: "l2" only).
        steps: the attack's steps (Foolbox's ``steps``).
        decision_margin: how far past the boundary a candidate is pushed (the search's).
        batch_size: images per Foolbox call.

    Returns:
        A ``MinimizingAttack`` named ``foolbox_<name>_<norm>(steps=...)``.
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
            """Candidates for ``x``; ``starting_points``: adversarials to start from (decision-based
            attacks; without them HopSkipJump searches its own and fails where it finds none)."""
            x, y = np.asarray(x, np.float32), np.asarray(y)
            outputs = []
            for start in range(0, len(x), batch_size):
                xb, yb = x[start:start + batch_size], y[start:start + batch_size]
                extra = {} if starting_points is None else {
                    "starting_points": tf.constant(np.asarray(starting_points, np.float32)[start:start + batch_size])}
                try:
                    _, clipped, _ = attack(model, tf.constant(xb), tf.constant(yb.astype(np.int64)), epsilons=None,
                                           **extra)
                except ValueError as error:
                    if "init_attack failed" not in str(error):
                        raise
                    outputs.append(xb)  # no starting adversarial for some image: nothing found in this batch
                    continue
                outputs.append(past_the_boundary(logits_fn, xb, clipped.numpy(), yb, decision_margin))
            return np.concatenate(outputs) if outputs else x

        return run

    return MinimizingAttack(f"foolbox_{name}_{norm}(steps={int(steps)})", norm, build)
