"""Attacks for the minimal-perturbation search, built on CleverHans (see ``cleverhans_compat``).

Two kinds:

* ``EpsilonAttack``: a fixed-budget attack (PGD, momentum iterative, SPSA, APGD).
  ``minimal_perturbation`` searches its budget per sample. Its ``build(logits_fn)`` returns
  ``run(x, y, eps)`` where ``eps`` holds one budget per image; PGD's step size is a fixed fraction
  of each image's budget, APGD's adapts itself (``neuroreg_tf.robustness.apgd``).
* ``MinimizingAttack``: an attack that minimises the distance itself (Carlini & Wagner L2). Its
  ``build(logits_fn)`` returns ``run(x, y)``.

Per-sample budgets with CleverHans' PGD: CleverHans takes one scalar ``eps`` (it asserts
``eps_iter <= eps`` in Python). PGD is run instead in per-sample scaled coordinates
``u = (x' - x) / eps_i``, where every image's budget is 1 and the step is ``step_fraction``; the
model sees ``x + eps_i * u`` and the valid range becomes ``[(0 - x) / eps_i, (1 - x) / eps_i]``.
Signs of gradients (L-inf), gradient directions (L2), projections onto the ball and clipping all
commute with this per-image scaling, so this is exactly PGD with budget ``eps_i`` and step
``step_fraction * eps_i`` for every image, in one batched call.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Callable

import numpy as np
import tensorflow as tf

from neuroreg_tf.robustness import apgd as apgd_lib
from neuroreg_tf.robustness import cleverhans_compat
from neuroreg_tf.robustness.settings import EPSILON_NORMS, AttackSettings, check_epsilon_norm, check_norm

CLEVERHANS_NORMS = {"linf": np.inf, "l2": 2}


@dataclasses.dataclass(frozen=True)
class EpsilonAttack:
    """A fixed-budget attack whose budget ``minimal_perturbation`` searches per sample.

    Attributes:
        name: A unique, descriptive name (used in reports).
        norm: "linf" or "l2".
        build: ``build(logits_fn) -> run(x, y, eps)``; ``x`` float32 (n, h, w, c), ``y`` int labels,
            ``eps`` float32 (n,), returns adversarial candidates (n, h, w, c) within [0, 1].
    """

    name: str
    norm: str
    build: Callable


@dataclasses.dataclass(frozen=True)
class MinimizingAttack:
    """An attack that minimises the perturbation itself; run once per sample.

    Attributes:
        name: A unique, descriptive name (used in reports).
        norm: One of ``settings.NORMS``.
        build: ``build(logits_fn) -> run(x, y)`` returning adversarial candidates (n, h, w, c);
            with ``refines``, ``run(x, y, starting_points)``.
        refines: The attack starts from adversarials it is given (Brendel & Bethge, HopSkipJump):
            the search runs it on the samples already broken, from their best adversarial so far.
    """

    name: str
    norm: str
    build: Callable
    refines: bool = False


def _compile_for_batches(function):
    """Compiles ``function(x, y, eps, loop_in_graph)`` once, for any batch size, at its first call.

    A fixed input signature with an unknown batch dimension avoids retracing as the number of
    samples still being searched shrinks. The attack loop becomes a ``tf.while_loop`` through
    AutoGraph (a small graph, traced in about a second); where AutoGraph cannot convert CleverHans'
    loop (e.g. its source is unavailable), the loop is unrolled instead.
    """
    compiled = []

    def run(x, y, eps):
        arguments = (
            tf.convert_to_tensor(x, tf.float32),
            tf.cast(tf.convert_to_tensor(y), tf.int64),
            tf.convert_to_tensor(eps, tf.float32),
        )
        if compiled:
            return compiled[0](*arguments)
        signature = [
            tf.TensorSpec([None, *np.shape(x)[1:]], tf.float32),
            tf.TensorSpec([None], tf.int64),
            tf.TensorSpec([None], tf.float32),
        ]
        try:
            graph_loop = tf.function(
                functools.partial(function, loop_in_graph=True), input_signature=signature
            )
            result = graph_loop(*arguments)
            compiled.append(graph_loop)
        except tf.errors.OperatorNotAllowedInGraphError:
            unrolled = tf.function(
                functools.partial(function, loop_in_graph=False),
                input_signature=signature,
                autograph=False,
            )
            result = unrolled(*arguments)
            compiled.append(unrolled)
        return result

    return run


def _check_schedule(step_fraction, iterations):
    if not 0 < step_fraction <= 1:
        raise ValueError(
            "Expected the step size as a fraction of epsilon in (0, 1]. "
            f"Received: step_fraction={step_fraction!r}"
        )
    if (
        isinstance(iterations, bool)
        or not isinstance(iterations, (int, np.integer))
        or iterations < 1
    ):
        raise ValueError(
            f"Expected a positive number of iterations. Received: iterations={iterations!r}"
        )


def _scaled_attack(
    attack_fn, logits_fn, x, y, eps, step_fraction, iterations, norm, loop_in_graph, **kwargs
):
    scale = tf.reshape(eps, [-1] + [1] * (len(x.shape) - 1))

    def scaled_logits(u):
        return logits_fn(x + scale * u)

    u = attack_fn(
        scaled_logits,
        tf.zeros_like(x),
        1.0,
        step_fraction,
        # A tensor bound lets AutoGraph turn CleverHans' Python loop into a tf.while_loop.
        tf.constant(iterations) if loop_in_graph else iterations,
        CLEVERHANS_NORMS[norm],
        clip_min=(0.0 - x) / scale,
        clip_max=(1.0 - x) / scale,
        y=y,
        sanity_checks=False,
        **kwargs,
    )
    return tf.clip_by_value(x + scale * u, 0.0, 1.0)


def _scaled_builder(attack_fn, step_fraction, iterations, norm, attack_arguments):
    """``build(logits_fn) -> run(x, y, eps)`` of a CleverHans iterative attack with per-image budgets.

    ``attack_arguments(logits_fn, x, y)`` gives the attack's own keyword arguments.
    """

    def build(logits_fn):
        def run(x, y, eps, loop_in_graph):
            return _scaled_attack(
                attack_fn, logits_fn, x, y, eps, step_fraction, iterations, norm, loop_in_graph,
                **attack_arguments(logits_fn, x, y),
            )

        return _compile_for_batches(run)

    return build


def margin_loss(labels: tf.Tensor, logits: tf.Tensor) -> tf.Tensor:
    """Largest wrong-class logit minus the true-class logit (per example); PGD maximises it."""
    one_hot = tf.one_hot(labels, tf.shape(logits)[-1], dtype=logits.dtype)
    true_logit = tf.reduce_sum(one_hot * logits, axis=-1)
    other_logit = tf.reduce_max(logits - one_hot * 1e9, axis=-1)
    return other_logit - true_logit


LOSSES = {"ce": None, "margin": margin_loss}  # None: CleverHans' default cross-entropy


def targeted_margin_loss(target_rank: int) -> Callable:
    """Margin toward the ``target_rank``-th most likely wrong class of the clean image.

    Returns ``make(clean_logits) -> loss(labels, logits)``; the loss is the target's logit minus
    the true class's logit. Running it for ranks 1..k is the multi-targeted attack: the nearest
    decision boundary is not always the one of the wrong class with the highest logit.
    """

    def make(clean_logits, labels):
        num_classes = clean_logits.shape[-1]
        rank = min(target_rank, num_classes - 1)  # with fewer wrong classes, the last one
        wrong = clean_logits - tf.one_hot(labels, num_classes, dtype=clean_logits.dtype) * 1e9
        targets = tf.math.top_k(wrong, k=rank).indices[:, rank - 1]

        def loss(labels, logits):  # CleverHans calls loss_fn(labels=..., logits=...)
            target_logit = tf.gather(logits, targets, axis=1, batch_dims=1)
            true_logit = tf.gather(logits, labels, axis=1, batch_dims=1)
            return target_logit - true_logit

        return loss

    return make


def pgd(
    norm: str,
    step_fraction: float = 0.1,
    iterations: int = 20,
    loss: str = "ce",
    target_rank: int | None = None,
) -> EpsilonAttack:
    """Projected gradient descent (CleverHans), from the clean image, step = fraction of epsilon.

    Args:
        norm: "linf" or "l2".
        step_fraction: Step size as a fraction of the budget.
        iterations: Number of PGD steps.
        loss: "ce" (cross-entropy, CleverHans' default) or "margin" (best wrong logit minus true
            logit, as in Carlini & Wagner), the objective PGD maximises.
        target_rank: If given (1, 2, ...), maximise instead the margin of the ``target_rank``-th most
            likely wrong class at the clean image over the true class (multi-targeted PGD).

    Returns:
        An ``EpsilonAttack``.
    """
    check_epsilon_norm(norm)
    _check_schedule(step_fraction, iterations)
    if loss not in LOSSES:
        raise ValueError(f"Expected loss 'ce' or 'margin'. Received: loss={loss!r}")
    if target_rank is not None and (
        isinstance(target_rank, bool)
        or not isinstance(target_rank, (int, np.integer))
        or target_rank < 1
    ):
        raise ValueError(
            f"Expected target_rank to be None or a positive integer. Received: target_rank={target_rank!r}"
        )

    def attack_arguments(logits_fn, x, y):
        loss_fn = LOSSES[loss]
        if target_rank is not None:
            loss_fn = targeted_margin_loss(target_rank)(logits_fn(x), y)
        return {"rand_init": False, "loss_fn": loss_fn}

    build = _scaled_builder(
        cleverhans_compat.projected_gradient_descent, step_fraction, iterations, norm, attack_arguments
    )

    if target_rank is not None:
        suffix = f",target=wrong#{target_rank}"
    else:
        suffix = "" if loss == "ce" else f",loss={loss}"
    return EpsilonAttack(
        f"pgd_{norm}(step={step_fraction:g}eps,iters={iterations}{suffix})", norm, build
    )


def momentum_iterative(
    norm: str, step_fraction: float = 0.1, iterations: int = 20, decay_factor: float = 1.0
) -> EpsilonAttack:
    """Momentum iterative method (CleverHans MI-FGSM), step = fraction of epsilon.

    Args:
        norm: "linf" or "l2".
        step_fraction: Step size as a fraction of the budget.
        iterations: Number of steps.
        decay_factor: Momentum decay.

    Returns:
        An ``EpsilonAttack``.
    """
    check_epsilon_norm(norm)
    _check_schedule(step_fraction, iterations)

    build = _scaled_builder(
        cleverhans_compat.momentum_iterative_method, step_fraction, iterations, norm,
        lambda logits_fn, x, y: {"decay_factor": decay_factor},
    )

    return EpsilonAttack(f"mim_{norm}(step={step_fraction:g}eps,iters={iterations})", norm, build)


def apgd(
    norm: str,
    loss: str = "ce",
    iterations: int = 100,
    restarts: int = 1,
    target_rank: int | None = None,
    seed: int = 0,
) -> EpsilonAttack:
    """Auto-PGD (Croce & Hein 2020), PGD without a step size to tune (``apgd.apgd_attack``).

    Args:
        norm: "linf" or "l2".
        loss: "ce" (APGD-CE) or "dlr" (difference of logits ratio; at least 3 classes).
        iterations: Steps per restart (the paper: 100).
        restarts: Random starts per budget; the best adversarial is kept.
        target_rank: With "dlr": the targeted DLR toward the ``target_rank``-th most likely wrong
            class of the clean image (APGD-T; at least 4 classes and ``target_rank < classes``).
        seed: Seed of the random starts.

    Returns:
        An ``EpsilonAttack``.
    """
    check_epsilon_norm(norm)
    build = apgd_lib.builder(norm, loss, iterations, restarts, target_rank, seed)
    name = apgd_lib.attack_name(norm, loss, iterations, restarts, target_rank)
    return EpsilonAttack(name, norm, build)


def spsa_linf(
    iterations: int = 50,
    learning_rate: float = 0.01,
    delta: float = 0.01,
    samples: int = 128,
    seed: int = 0,
) -> EpsilonAttack:
    """The gradient-free SPSA L-inf attack (fixed CleverHans version), one image at a time.

    Slow (``iterations * samples`` forward passes per image and budget); useful to check that
    gradient-based results are not an artefact of masked gradients.

    Returns:
        An ``EpsilonAttack``.
    """
    _check_schedule(0.5, iterations)

    def build(logits_fn):
        def run(x, y, eps):
            return cleverhans_compat.spsa(
                logits_fn,
                np.asarray(x),
                np.asarray(y),
                np.asarray(eps),
                iterations,
                learning_rate=learning_rate,
                delta=delta,
                spsa_samples=samples,
                early_stop_loss_threshold=0.0,
                seed=seed,
            )

        return run

    return EpsilonAttack(f"spsa_linf(iters={iterations},samples={samples})", "linf", build)


def carlini_wagner(
    max_iterations=100,
    binary_search_steps=5,
    learning_rate=0.1,
    initial_const=1.0,
    confidence=2e-3,
    batch_size=500,
):
    """Carlini & Wagner L2 (fixed CleverHans version), which minimises the L2 distance itself.

    The defaults trade precision for speed (CleverHans': 1000 iterations, 5 searches, learning rate
    0.005, constant 0.01). On a small Fashion-MNIST CNN they gave a median within 5% of margin
    PGD's in a fifth of the time, where CleverHans-like settings (200 iterations, rate 0.01)
    stayed 40% above it; the PGD search that follows only has to improve on C&W's distances.
    ``confidence`` (the logit margin C&W aims for) sits just above ``minimal_perturbation``'s
    default ``decision_margin`` (1e-3), so that C&W's boundary points count.

    Returns:
        A ``MinimizingAttack``.
    """

    def build(logits_fn):
        attack = cleverhans_compat.CarliniWagnerL2(
            logits_fn,
            batch_size=batch_size,
            max_iterations=max_iterations,
            binary_search_steps=binary_search_steps,
            learning_rate=learning_rate,
            initial_const=initial_const,
            confidence=confidence,
        )

        def run(x, y):
            return attack.attack(np.asarray(x), np.asarray(y))

        return run

    return MinimizingAttack(
        f"cw_l2(iters={max_iterations},search={binary_search_steps})", "l2", build
    )


def default_attacks(norm: str, settings: AttackSettings | None = None) -> list:
    """The attack list for one norm: C&W first for L2, the PGD grid, optional MIM, APGD and SPSA,
    then the Foolbox attacks (those that refine an adversarial last).

    Args:
        norm: One of ``settings.NORMS``; L1 and L0 have only Foolbox's minimum-norm attacks.
        settings: What to run (``AttackSettings``; default: its defaults). Every (iterations,
            step fraction, loss) triple of its PGD grid is one attack, plus margin PGD toward each
            of its ``target_ranks``.

    Returns:
        A list of ``EpsilonAttack`` / ``MinimizingAttack``.

    Raises:
        ValueError: If no attack of ``settings`` exists for ``norm`` (with the fix).
    """
    check_norm(norm)
    settings = settings or AttackSettings()
    problem = settings.attacks_missing([norm])
    if problem:
        raise ValueError(problem)
    attacks = []
    if settings.foolbox:
        from neuroreg_tf.robustness import foolbox_attacks

        foolbox = [foolbox_attacks.foolbox_attack(
            name, norm, steps=settings.foolbox_steps, decision_margin=settings.decision_margin,
            batch_size=settings.batch_size) for name in settings.foolbox if foolbox_attacks.available(name, norm)]
    else:
        foolbox = []
    if norm not in EPSILON_NORMS:
        return sorted(foolbox, key=lambda attack: attack.refines)
    if norm == "l2" and settings.carlini_wagner:
        attacks.append(
            carlini_wagner(
                settings.cw_max_iterations,
                settings.cw_binary_search_steps,
                settings.cw_learning_rate,
                settings.cw_initial_const,
                batch_size=settings.batch_size,
            )
        )
    for count in settings.iterations:
        for fraction in settings.step_fractions:
            for loss in settings.losses:
                attacks.append(pgd(norm, fraction, count, loss))
            for rank in settings.target_ranks:
                attacks.append(pgd(norm, fraction, count, "margin", target_rank=rank))
            if settings.momentum:
                attacks.append(momentum_iterative(norm, fraction, count))
    if settings.apgd:
        schedule = dict(
            iterations=settings.apgd_iterations, restarts=settings.apgd_restarts, seed=settings.seed
        )
        for loss in settings.apgd_losses:
            attacks.append(apgd(norm, loss, **schedule))
        for rank in settings.apgd_target_ranks:
            attacks.append(apgd(norm, "dlr", target_rank=rank, **schedule))
    if norm == "linf" and settings.spsa:
        attacks.append(spsa_linf(settings.spsa_iterations, seed=settings.seed))
    return attacks + sorted(foolbox, key=lambda attack: attack.refines)
