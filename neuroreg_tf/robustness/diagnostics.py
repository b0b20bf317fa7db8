"""Gradient-masking checks of one model (Carlini et al. 2019; Athalye et al. 2018), pass or flag.

A regularized, smoother network is where short gradient attacks can overstate robustness. Each
check compares attacks whose relation is known when gradients are informative, and states its
numbers:

* ``effort``: the median minimal distance under APGD-CE with growing effort (iterations) must
  level off: the last step may lower it by at most ``EFFORT_TOLERANCE``;
* ``iterative``: at a budget near the model's median distance, iterative PGD breaks at least as
  many samples as single-step FGSM;
* ``unbounded``: at a budget that allows any image (L-inf 1, L2 the box's diameter) PGD breaks
  every correctly classified sample;
* ``gradient_free`` (L-inf): at the same budget, the gradient-free SPSA does not break clearly
  more samples (``GRADIENT_FREE_MARGIN``) than PGD;
* ``decision_based``: the decision-based HopSkipJump (Foolbox; it only queries labels), started
  from the gradient attack's adversarials, does not lower their median distance clearly
  (``DECISION_BASED_RATIO``).

Transfer from the None model is a study-level check (it needs two models). Every success counts
only after ``scoring.verify_adversarial`` (label flipped, pixels in [0, 1], within the budget).
"""

from __future__ import annotations

import numpy as np

from neuroreg_tf.progress import Reporter, print_line, reporter
from neuroreg_tf.robustness import attacks as attacks_lib
from neuroreg_tf.robustness import scoring, search
from neuroreg_tf.robustness.loading import as_logits_fn, predict_labels
from neuroreg_tf.robustness.settings import check_epsilon_norm

EFFORTS = (10, 30, 100)  # APGD-CE iterations of the effort curve
EFFORT_TOLERANCE = 0.05  # the last effort step may lower the median by at most 5 %
GRADIENT_FREE_MARGIN = 0.10  # SPSA may break at most 10 % more samples than PGD
GRADIENT_FREE_SAMPLES = 20  # SPSA is slow: the first N correctly classified samples
DECISION_BASED_RATIO = 0.9  # HopSkipJump's median distance may be at most 10 % below APGD's
DECISION_BASED_STEPS = 20
CHECKS = ("effort", "iterative", "unbounded", "gradient_free", "decision_based")
# float32 images in [0, 1] move by up to ~6e-8 when stored: a distance within the budget plus this counts.
PIXEL_ROUNDING = 1e-6


def unbounded_epsilon(norm: str, image_shape) -> float:
    """A budget that reaches every image of [0, 1]^d: 1 (L-inf) or sqrt(d) (L2)."""
    check_epsilon_norm(norm)
    return 1.0 if norm == "linf" else float(np.sqrt(np.prod(image_shape)))


def success_at(model, x, y, attack, epsilon: float, batch_size: int = 500) -> np.ndarray:
    """Per sample, whether ``attack`` at budget ``epsilon`` finds a verified adversarial.

    Returns:
        (n,) bool; False for samples the model misclassifies already (they are not attacked).
    """
    logits_fn = as_logits_fn(model)
    run = attack.build(logits_fn)
    found = np.zeros(len(x), bool)
    for start in range(0, len(x), batch_size):
        xb, yb = x[start:start + batch_size], y[start:start + batch_size]
        candidates = np.asarray(run(xb, yb, np.full(len(xb), epsilon, np.float32)))
        ok, distances = scoring.verify_adversarial(model, xb, candidates, yb, attack.norm)
        found[start:start + len(xb)] = ok & (distances <= epsilon + PIXEL_ROUNDING)
    return found


def _check(name: str, passed: bool, rule: str, **numbers) -> dict:
    return {"name": name, "status": "pass" if passed else "flag", "rule": rule, **numbers}


def diagnose(model, x, y, norm: str, *, efforts=EFFORTS, progress: Reporter = print_line) -> dict:
    """The gradient-masking checks of ``model`` on ``(x, y)`` for ``norm``.

    Args:
        model: a Keras model or a callable mapping images in [0, 1] to logits.
        x: (n, h, w, c) images in [0, 1].
        y: (n,) labels.
        norm: "linf" or "l2" (``gradient_free`` only for "linf").
        efforts: APGD-CE iterations of the effort curve, increasing.
        progress: one line per check (None: silent).

    Returns:
        {"effort_curve": [{"iterations", "median"}], "epsilon": the budget of the fixed-budget
        checks, "checks": [{"name", "status" ("pass"/"flag"), "rule", numbers...}], "flags":
        the names of flagged checks}.
    """
    check_epsilon_norm(norm)
    report = reporter(progress)
    x, y = np.asarray(x, np.float32), np.asarray(y)
    curve = []
    for iterations in efforts:
        result = search.minimal_perturbation(model, x, y, norm, attacks=[attacks_lib.apgd(norm, "ce", iterations)],
                                             progress=None)
        curve.append({"iterations": int(iterations), "median": float(result.summary()["median"])})
    correct = result.clean_correct
    n_correct = int(correct.sum())
    previous, last = curve[-2]["median"], curve[-1]["median"]
    if not np.isfinite(last):
        drop = float("inf")  # no median distance at the highest effort: nothing levelled off
    elif previous in (0.0, last):
        drop = 0.0  # unchanged, or from 0 (a median cannot fall below 0)
    elif not np.isfinite(previous):
        drop = float("inf")  # none one step before: still falling
    else:
        drop = (previous - last) / previous
    checks = [_check(
        "effort", drop <= EFFORT_TOLERANCE,
        f"median distance levels off: the last effort step lowers it by at most {EFFORT_TOLERANCE:.0%}",
        medians=[c["median"] for c in curve], last_drop=float(drop),
    )]
    finite = result.distances[correct & np.isfinite(result.distances)]
    large = unbounded_epsilon(norm, x.shape[1:])
    # The budget of the fixed-budget checks: the median distance APGD found (the unbounded one
    # when it found none, itself a sign of masked gradients).
    epsilon = float(np.median(finite)) if finite.size else large
    iterative_attack = attacks_lib.pgd(norm, step_fraction=0.25, iterations=20, loss="margin")
    fgsm = success_at(model, x, y, attacks_lib.pgd(norm, step_fraction=1.0, iterations=1), epsilon)
    pgd = success_at(model, x, y, iterative_attack, epsilon)
    single, iterative = float(fgsm[correct].mean()) if n_correct else 0.0, float(pgd[correct].mean()) if n_correct else 0.0
    checks.append(_check("iterative", iterative >= single,
                         "iterative PGD breaks at least as many samples as single-step FGSM at the same budget",
                         epsilon=epsilon, fgsm_success=single, pgd_success=iterative))
    unbounded = success_at(model, x, y, iterative_attack, large)
    unbounded_rate = float(unbounded[correct].mean()) if n_correct else 1.0
    checks.append(_check("unbounded", unbounded_rate == 1.0,
                         "PGD with a budget reaching any image breaks every correctly classified sample",
                         epsilon=large, success=unbounded_rate))
    if norm == "linf":
        subset = np.flatnonzero(correct)[:GRADIENT_FREE_SAMPLES]
        spsa = success_at(model, x[subset], y[subset], attacks_lib.spsa_linf(iterations=20), epsilon)
        free, gradient = float(spsa.mean()) if subset.size else 0.0, float(pgd[subset].mean()) if subset.size else 0.0
        checks.append(_check("gradient_free", free <= gradient + GRADIENT_FREE_MARGIN,
                             f"gradient-free SPSA breaks at most {GRADIENT_FREE_MARGIN:.0%} more samples than PGD "
                             "at the same budget", epsilon=epsilon, samples=int(subset.size),
                             spsa_success=free, pgd_success=gradient))
    subset = np.flatnonzero(correct & np.isfinite(result.distances))[:GRADIENT_FREE_SAMPLES]
    if subset.size:
        from neuroreg_tf.robustness import foolbox_attacks

        # Started from the gradient attack's adversarials, as HopSkipJump is meant to be run: its
        # own initial search fails outright on an image where it finds no adversarial.
        hop_skip_jump = foolbox_attacks.foolbox_attack("hop_skip_jump", norm, steps=DECISION_BASED_STEPS)
        candidates = hop_skip_jump.build(as_logits_fn(model))(x[subset], y[subset],
                                                              starting_points=result.adversarials[subset])
        ok, distances = scoring.verify_adversarial(model, x[subset], candidates, y[subset], norm)
        decision = np.where(ok, np.minimum(distances, result.distances[subset]), result.distances[subset])
        gradient_median = float(np.median(result.distances[subset]))
        decision_median = float(np.median(decision))
        checks.append(_check(
            "decision_based", decision_median >= DECISION_BASED_RATIO * gradient_median,
            f"decision-based HopSkipJump, started from the gradient attack's adversarials, keeps the median "
            f"distance at least {DECISION_BASED_RATIO:g}x the gradient attack's", samples=int(subset.size), hop_skip_jump_median=decision_median,
            apgd_median=gradient_median))
    for check in checks:
        numbers = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                            for k, v in check.items() if k not in ("name", "status", "rule"))
        report(f"{norm} gradient-masking check {check['name']}: {check['status']} ({numbers})")
    return {"effort_curve": curve, "epsilon": epsilon, "checks": checks,
            "flags": [c["name"] for c in checks if c["status"] == "flag"]}


TRANSFER_MARGIN = 0.05  # transferred adversarials may break at most 5 % more samples than white-box


def transfer_check(source, target, x, y, norm: str, epsilon: float, target_distances) -> dict:
    """Adversarials crafted on ``source`` (20-step PGD at ``epsilon``), scored on ``target``.

    A black-box transfer attack never beats a working white-box attack on the same model; where it
    breaks clearly more samples than the target's own minimal distances allow (``target_distances``
    <= ``epsilon``), the target's gradients mislead its white-box attacks.

    Args:
        source: the model the adversarials are crafted on (the study's None model).
        target: the model scored.
        x, y: the samples, those of ``target_distances``.
        norm: "linf" or "l2".
        epsilon: the budget.
        target_distances: (n,) the target's verified minimal distances (0: misclassified clean).

    Returns:
        A check dict ({"name": "transfer", "status", "rule", numbers}).
    """
    x, y = np.asarray(x, np.float32), np.asarray(y)
    correct = predict_labels(target, x) == y
    pgd = attacks_lib.pgd(norm, step_fraction=0.25, iterations=20, loss="margin")
    candidates = np.asarray(pgd.build(as_logits_fn(source))(x, y, np.full(len(x), epsilon, np.float32)))
    ok, distances = scoring.verify_adversarial(target, x, candidates, y, norm)
    transferred = ok & (distances <= epsilon + PIXEL_ROUNDING)
    white_box = np.asarray(target_distances, np.float64) <= epsilon
    n = int(correct.sum())
    transfer_rate = float(transferred[correct].mean()) if n else 0.0
    white_box_rate = float(white_box[correct].mean()) if n else 0.0
    return _check("transfer", transfer_rate <= white_box_rate + TRANSFER_MARGIN,
                  f"adversarials crafted on the None model break at most {TRANSFER_MARGIN:.0%} more samples than "
                  "the model's own white-box distances at the same budget",
                  epsilon=float(epsilon), samples=n, transfer_success=transfer_rate, white_box_success=white_box_rate)
