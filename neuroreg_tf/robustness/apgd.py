"""Auto-PGD (APGD), the step-size-free PGD of Croce & Hein (ICML 2020), in TensorFlow.

Written from the paper ("Reliable evaluation of adversarial robustness with an ensemble of diverse
parameter-free attacks", Algorithm 1 and Section 3): a fixed-budget attack, L-inf or L2, that
maximises a loss over the budget ball intersected with the [0, 1] box:

* start: a random point of the ball (seeded, stateless: the same inputs and seed give the same
  output), clipped to [0, 1]; ``restarts`` such starts, the best result kept;
* step ``k`` (``1 .. iterations``): ``z = P(x_k + eta * s(grad))`` and
  ``x_{k+1} = P(x_k + alpha (z - x_k) + (1 - alpha)(x_k - x_{k-1}))`` with momentum
  ``alpha = 0.75`` (1 on the first step), ``s`` the gradient's sign (L-inf) or direction (L2),
  and ``P`` the projection onto the ball followed by clipping to [0, 1] (for L-inf this is the
  exact projection onto the intersection; for L2 it is the paper's implementation);
* step size: ``eta = 2 eps`` at the start and per sample; at every checkpoint ``w_j``
  (``step_size_checkpoints``) it is halved, and the sample restarts from the point of highest loss
  so far (``x_max``, with momentum reset: the next step is taken as a first step), when

  1. fewer than ``rho * (w_j - w_{j-1})`` of the steps since the last checkpoint increased the
     loss (``rho = 0.75``), or
  2. the step size was not halved at the last checkpoint and the highest loss has not increased
     since then;

* losses: "ce" (cross-entropy, APGD-CE), "dlr" (the difference of logits ratio
  ``-(z_y - max_{i != y} z_i) / (z_pi1 - z_pi3)``), and, with a ``target_rank``, the targeted
  DLR of APGD-T ``-(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2)`` toward the ``target_rank``-th
  most likely class other than ``y`` at the clean image (``pi`` sorts the logits in decreasing
  order). Whatever the loss, success means any wrong label (untargeted).

A restart costs ``iterations + 1`` forward and backward passes (the start and one per step). Where
the paper leaves details open: checkpoint ``w_j`` is checked once step ``w_j`` has been taken,
counting the increases ``f(x_{i+1}) > f(x_i)`` of steps ``w_{j-1} + 1 .. w_j``; after a restart
from ``x_max`` the next step's loss is compared with ``f_max``; and the momentum term after such
a restart, which the paper does not specify, is reset (the next step is taken as a first step).

Every evaluated point (starts included) that the model misclassifies is a candidate; per sample the
one with the largest margin (best wrong logit minus true logit) is kept, so that the candidate
stays adversarial under ``minimal_perturbation``'s ``decision_margin``.

``apgd_attack`` runs the attack on a batch (one budget per image, or one for all) and returns the
adversarials and success flags. ``builder`` gives ``build(logits_fn) -> run(x, y, eps)``, the
calling convention of ``attacks.EpsilonAttack``, so that ``minimal_perturbation`` can search APGD's
budget per sample like PGD's.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import numpy as np
import tensorflow as tf

from neuroreg_tf.robustness.loading import as_logits_fn
from neuroreg_tf.robustness.settings import check_epsilon_norm

LOSSES = ("ce", "dlr")
RHO = 0.75  # the paper's fraction of loss increases below which the step size is halved
MOMENTUM = 0.75  # the paper's alpha
INITIAL_STEP = 2.0  # the initial step size, in units of epsilon (both norms)
# Checkpoints in hundredths of the iteration count: p_1 = 0.22, the interval shrinks by 0.03 per
# checkpoint and never below 0.06 (the paper's p_j).
_FIRST_CHECKPOINT, _SHRINK, _SMALLEST_INTERVAL = 22, 3, 6
_TINY = 1e-12


class APGDResult(NamedTuple):
    """What ``apgd_attack`` returns, per sample.

    Attributes:
        adversarials: float32 (n, ...): the kept adversarial (largest margin over every evaluated
            point of every restart), or the clean image where none was found.
        success: bool (n,): whether an adversarial was found.
        margins: float32 (n,): the kept adversarial's best wrong logit minus its true logit
            (-inf where none was found).
        best_loss: float32 (n,): the highest loss reached (over all restarts).
        step_sizes: float32 (n,): the step size at the end of the last restart.
    """

    adversarials: tf.Tensor
    success: tf.Tensor
    margins: tf.Tensor
    best_loss: tf.Tensor
    step_sizes: tf.Tensor


def step_size_checkpoints(iterations: int) -> tuple[int, ...]:
    """The paper's checkpoints ``w_j = ceil(p_j * iterations)``, ``w_0 = 0``, up to ``iterations``.

    ``p_0 = 0``, ``p_1 = 0.22`` and ``p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06)``; the
    ``p_j`` are computed exactly (in hundredths), and equal ``w_j`` (few iterations) appear once.

    Args:
        iterations: The number of APGD steps, a positive integer.

    Returns:
        The increasing checkpoints ``(0, w_1, ..., w_n)``, all ``<= iterations``.

    Raises:
        ValueError: If ``iterations`` is not a positive integer.
    """
    _check_positive_integer("iterations", iterations)
    previous, current = 0, _FIRST_CHECKPOINT
    checkpoints = [0]
    while True:
        checkpoint = -(-current * int(iterations) // 100)  # ceil(current / 100 * iterations)
        if checkpoint > iterations:
            return tuple(checkpoints)
        if checkpoint > checkpoints[-1]:
            checkpoints.append(checkpoint)
        previous, current = current, current + max(current - previous - _SHRINK, _SMALLEST_INTERVAL)


def dlr_loss(logits: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
    """The untargeted difference of logits ratio, ``-(z_y - max_{i != y} z_i) / (z_pi1 - z_pi3)``.

    Args:
        logits: (n, classes) with at least 3 classes.
        labels: (n,) true labels.

    Returns:
        (n,) losses; positive exactly where the label is wrong. APGD maximises it.
    """
    logits = tf.convert_to_tensor(logits, tf.float32)
    _check_class_count(logits, 3, "the DLR loss")
    ordered = tf.sort(logits, axis=-1, direction="DESCENDING")
    true_logit = tf.gather(logits, labels, axis=1, batch_dims=1)
    best_wrong = _best_wrong_logit(logits, labels)
    return -(true_logit - best_wrong) / (ordered[:, 0] - ordered[:, 2] + _TINY)


def targeted_dlr_loss(logits: tf.Tensor, labels: tf.Tensor, targets: tf.Tensor) -> tf.Tensor:
    """The targeted DLR of APGD-T, ``-(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2)``.

    Args:
        logits: (n, classes) with at least 4 classes.
        labels: (n,) true labels.
        targets: (n,) target classes.

    Returns:
        (n,) losses; positive exactly where the target's logit exceeds the true one.
    """
    logits = tf.convert_to_tensor(logits, tf.float32)
    _check_class_count(logits, 4, "the targeted DLR loss")
    ordered = tf.sort(logits, axis=-1, direction="DESCENDING")
    true_logit = tf.gather(logits, labels, axis=1, batch_dims=1)
    target_logit = tf.gather(logits, targets, axis=1, batch_dims=1)
    scale = ordered[:, 0] - (ordered[:, 2] + ordered[:, 3]) / 2.0
    return -(true_logit - target_logit) / (scale + _TINY)


def apgd_attack(
    model,
    x,
    y,
    eps,
    *,
    norm: str = "linf",
    loss: str = "ce",
    iterations: int = 100,
    restarts: int = 1,
    target_rank: int | None = None,
    seed: int = 0,
    rho: float = RHO,
    momentum: float = MOMENTUM,
) -> APGDResult:
    """Runs APGD with a fixed budget per image.

    Args:
        model: A Keras model or a callable mapping float32 images in [0, 1] to logits.
        x: Clean images, float32 in [0, 1], (n, ...) (e.g. NHWC).
        y: True integer labels, (n,).
        eps: The budget: a scalar or one value per image, >= 0.
        norm: "linf" or "l2".
        loss: "ce" (cross-entropy) or "dlr" (difference of logits ratio; at least 3 classes).
        iterations: Steps per restart (the paper: 100).
        restarts: Random starts; the best adversarial over all of them is kept.
        target_rank: With ``loss="dlr"``: maximise the targeted DLR toward the ``target_rank``-th
            most likely class other than ``y`` at the clean image (APGD-T; at least 4 classes and
            ``target_rank < classes``). None: untargeted.
        seed: Seed of the random starts (restart ``r`` draws with the stateless seed
            ``(seed, r)``).
        rho: Halve the step size when fewer than this fraction of the steps since the last
            checkpoint increased the loss.
        momentum: The paper's alpha, the weight of the new step against the previous one.

    Returns:
        An ``APGDResult`` (``adversarials``, ``success``, ``margins``, ``best_loss``,
        ``step_sizes``).

    Raises:
        ValueError: For an unknown norm or loss, a negative or non-finite budget, a budget shaped
            neither () nor (n,), a non-positive iteration or restart count, a target rank without
            the DLR loss, too few classes for the DLR loss or the target rank, or ``rho`` or
            ``momentum`` outside (0, 1].
    """
    _check_options(norm, loss, iterations, restarts, target_rank, rho, momentum)
    logits_fn = as_logits_fn(model)
    x = tf.convert_to_tensor(x, tf.float32)
    y = tf.cast(tf.convert_to_tensor(y), tf.int64)
    eps = _per_sample_epsilon(eps, x)
    shape = tf.shape(x)
    ball_shape = tf.concat([shape[:1], tf.ones_like(shape[1:])], axis=0)
    radius = tf.reshape(eps, ball_shape)

    loss_fn = _loss_function(loss, target_rank, logits_fn, x, y)
    schedule = _schedule_tables(iterations)

    def evaluate(points):
        with tf.GradientTape() as tape:
            tape.watch(points)
            logits = tf.cast(logits_fn(points), tf.float32)
            losses = loss_fn(logits)
        gradient = tape.gradient(
            losses, points, unconnected_gradients=tf.UnconnectedGradients.ZERO
        )
        true_logit = tf.gather(logits, y, axis=1, batch_dims=1)
        return losses, gradient, _best_wrong_logit(logits, y) - true_logit

    def project(points):
        return _project(points, x, radius, norm)

    best_adversarials = x
    best_margins = tf.fill(tf.shape(y), tf.constant(-np.inf, tf.float32))
    best_loss = tf.fill(tf.shape(y), tf.constant(-np.inf, tf.float32))
    step_sizes = eps * INITIAL_STEP
    for restart in range(restarts):
        start = project(x + radius * _random_direction(shape, norm, (seed, restart)))
        outcome = _run_schedule(
            evaluate, project, start, eps * INITIAL_STEP, schedule, norm, rho, momentum
        )
        adversarials, margins, losses, step_sizes = outcome
        better = margins > best_margins
        best_adversarials = tf.where(_per_image(better, x), adversarials, best_adversarials)
        best_margins = tf.where(better, margins, best_margins)
        best_loss = tf.maximum(best_loss, losses)
    return APGDResult(
        adversarials=best_adversarials,
        success=best_margins > 0.0,
        margins=best_margins,
        best_loss=best_loss,
        step_sizes=step_sizes,
    )


def builder(
    norm: str,
    loss: str = "ce",
    iterations: int = 100,
    restarts: int = 1,
    target_rank: int | None = None,
    seed: int = 0,
) -> Callable:
    """APGD as an ``attacks.EpsilonAttack``'s build: ``build(logits_fn) -> run(x, y, eps)``.

    ``run`` takes images (n, ...), labels (n,) and one budget per image (n,) (NumPy or tensors)
    and returns the adversarial candidates (the clean image where none was found), float32. It is
    compiled once per image shape, for any batch size.

    Args:
        norm: "linf" or "l2".
        loss: "ce" or "dlr".
        iterations: Steps per restart.
        restarts: Random starts.
        target_rank: With "dlr": the targeted DLR toward this wrong class (APGD-T).
        seed: Seed of the random starts.

    Returns:
        ``build(logits_fn) -> run(x, y, eps)``.

    Raises:
        ValueError: As ``apgd_attack``, for the options at once and the budgets at each run.
    """
    _check_options(norm, loss, iterations, restarts, target_rank, RHO, MOMENTUM)
    options = dict(
        norm=norm,
        loss=loss,
        iterations=iterations,
        restarts=restarts,
        target_rank=target_rank,
        seed=seed,
    )

    def build(logits_fn):
        compiled = {}

        def run(x, y, eps):
            x = tf.convert_to_tensor(x, tf.float32)
            eps = _per_sample_epsilon(eps, x)  # checked here, eagerly
            key = tuple(x.shape[1:])
            if key not in compiled:
                compiled[key] = tf.function(
                    lambda images, labels, budgets: apgd_attack(
                        logits_fn, images, labels, budgets, **options
                    ).adversarials,
                    input_signature=[
                        tf.TensorSpec([None, *key], tf.float32),
                        tf.TensorSpec([None], tf.int64),
                        tf.TensorSpec([None], tf.float32),
                    ],
                    autograph=False,
                )
            return compiled[key](x, tf.cast(tf.convert_to_tensor(y), tf.int64), eps)

        return run

    return build


def attack_name(
    norm: str,
    loss: str = "ce",
    iterations: int = 100,
    restarts: int = 1,
    target_rank: int | None = None,
) -> str:
    """A report name for an APGD configuration.

    E.g. ``apgd_linf(loss=dlr,iters=100,restarts=1,target=wrong#2)``.
    """
    suffix = "" if target_rank is None else f",target=wrong#{target_rank}"
    return f"apgd_{norm}(loss={loss},iters={iterations},restarts={restarts}{suffix})"


# ----------------------------------------------------------------------------------- internals


def _run_schedule(evaluate, project, start, step_size, schedule, norm, rho, momentum):
    """One restart of Algorithm 1 from ``start``.

    Returns (kept adversarials, their margins, the highest losses, the final step sizes).
    """
    is_checkpoint, interval = schedule
    iterations = int(is_checkpoint.shape[0]) - 1
    losses, gradient, margins = evaluate(start)
    found = tf.where(_per_image(margins > 0.0, start), start, tf.zeros_like(start))
    found_margins = tf.where(margins > 0.0, margins, -np.inf)
    false = tf.zeros_like(margins, tf.bool)
    state = (
        tf.constant(1),  # k: the step about to be taken
        start,  # x_k
        start,  # x_{k-1} (no momentum on a fresh start)
        gradient,  # gradient at x_k
        losses,  # f(x_k)
        tf.logical_not(false),  # fresh: alpha = 1 on the next step
        step_size,  # eta, per sample
        start,  # x_max
        gradient,  # gradient at x_max
        losses,  # f_max
        tf.zeros_like(margins),  # loss increases since the last checkpoint
        false,  # halved at the last checkpoint
        losses,  # f_max at the last checkpoint
        found,  # the kept adversarial
        found_margins,  # its margin (-inf: none)
    )

    def step(k, current, previous, gradient, loss, fresh, eta, x_max, g_max, f_max,
             increases, halved, f_max_then, found, found_margins):
        alpha = _per_image(tf.where(fresh, 1.0, momentum), current)
        size = _per_image(eta, current)
        z = project(current + size * _ascent_direction(gradient, norm))
        new = project(current + alpha * (z - current) + (1.0 - alpha) * (current - previous))
        new_loss, new_gradient, margins = evaluate(new)

        better_adversarial = margins > tf.maximum(found_margins, 0.0)
        found = tf.where(_per_image(better_adversarial, new), new, found)
        found_margins = tf.where(better_adversarial, margins, found_margins)

        increases = increases + tf.cast(new_loss > loss, tf.float32)
        improved = new_loss > f_max
        x_max = tf.where(_per_image(improved, new), new, x_max)
        g_max = tf.where(_per_image(improved, new), new_gradient, g_max)
        f_max = tf.where(improved, new_loss, f_max)

        # Checkpoint w_j: halve and restart from x_max where condition 1 or 2 holds.
        at_checkpoint = tf.gather(is_checkpoint, k)
        too_few_increases = increases < rho * tf.gather(interval, k)
        stalled = tf.logical_not(halved) & (f_max <= f_max_then)
        halve = at_checkpoint & (too_few_increases | stalled)
        restart = _per_image(halve, new)
        eta = tf.where(halve, eta / 2.0, eta)
        previous = tf.where(restart, x_max, current)
        current = tf.where(restart, x_max, new)
        gradient = tf.where(restart, g_max, new_gradient)
        loss = tf.where(halve, f_max, new_loss)
        increases = tf.where(at_checkpoint, tf.zeros_like(increases), increases)
        halved = tf.where(at_checkpoint, halve, halved)
        f_max_then = tf.where(at_checkpoint, f_max, f_max_then)
        return (k + 1, current, previous, gradient, loss, halve, eta, x_max, g_max, f_max,
                increases, halved, f_max_then, found, found_margins)

    final = tf.while_loop(lambda k, *rest: k <= iterations, step, state)
    return final[13], final[14], final[9], final[6]


def _schedule_tables(iterations):
    """(is_checkpoint, interval): per step k (0 .. iterations), whether it is a checkpoint w_j and
    then w_j - w_{j-1}."""
    checkpoints = step_size_checkpoints(iterations)
    is_checkpoint = np.zeros(iterations + 1, bool)
    interval = np.zeros(iterations + 1, np.float32)
    for earlier, later in zip(checkpoints[:-1], checkpoints[1:]):
        is_checkpoint[later] = True
        interval[later] = later - earlier
    return tf.constant(is_checkpoint), tf.constant(interval)


def _ascent_direction(gradient, norm):
    if norm == "linf":
        return tf.sign(gradient)
    return gradient / (_norm_per_image(gradient, "l2") + _TINY)


def _project(points, clean, radius, norm):
    """Onto the ``radius`` ball around ``clean``, then clipped to [0, 1]."""
    difference = points - clean
    if norm == "linf":
        difference = tf.clip_by_value(difference, -radius, radius)
    else:
        length = _norm_per_image(difference, "l2")
        difference = difference * tf.minimum(1.0, radius / (length + _TINY))
    return tf.clip_by_value(clean + difference, 0.0, 1.0)


def _random_direction(shape, norm, seed):
    """A random point of the unit ball: uniform in the cube (L-inf) or on the sphere (L2)."""
    seed = tf.constant(seed, tf.int64)
    if norm == "linf":
        return tf.random.stateless_uniform(shape, seed, minval=-1.0, maxval=1.0)
    direction = tf.random.stateless_normal(shape, seed)
    return direction / (_norm_per_image(direction, "l2") + _TINY)


def _norm_per_image(values, norm):
    axes = tf.range(1, tf.rank(values))
    if norm == "linf":
        return tf.reduce_max(tf.abs(values), axis=axes, keepdims=True)
    return tf.sqrt(tf.reduce_sum(tf.square(values), axis=axes, keepdims=True))


def _per_image(flags, like):
    """(n,) flags broadcastable against images shaped like ``like``."""
    shape = tf.concat([tf.shape(flags), tf.ones([tf.rank(like) - 1], tf.int32)], axis=0)
    return tf.reshape(flags, shape)


def _best_wrong_logit(logits, labels):
    wrong = tf.one_hot(labels, tf.shape(logits)[-1], on_value=True, off_value=False)
    return tf.reduce_max(tf.where(wrong, tf.constant(-np.inf, logits.dtype), logits), axis=-1)


def _loss_function(loss, target_rank, logits_fn, x, y):
    if loss == "ce":
        return lambda logits: tf.nn.sparse_softmax_cross_entropy_with_logits(y, logits)
    if target_rank is None:
        return lambda logits: dlr_loss(logits, y)
    clean_logits = tf.cast(logits_fn(x), tf.float32)
    classes = clean_logits.shape[-1]
    if classes is not None and target_rank > classes - 1:
        raise ValueError(
            f"Expected target_rank below the number of classes ({classes}). "
            f"Received: target_rank={target_rank!r}"
        )
    wrong = tf.one_hot(y, tf.shape(clean_logits)[-1], on_value=True, off_value=False)
    others = tf.where(wrong, tf.constant(-np.inf, tf.float32), clean_logits)
    targets = tf.math.top_k(others, k=target_rank).indices[:, target_rank - 1]
    return lambda logits: targeted_dlr_loss(logits, y, targets)


def _check_class_count(logits, minimum, what):
    classes = logits.shape[-1]
    if classes is not None and classes < minimum:
        raise ValueError(
            f"Expected at least {minimum} classes for {what}. "
            f"Received: logits with {classes} classes"
        )


def _per_sample_epsilon(eps, x):
    """``eps`` as float32 (n,), checked where its values are known (>= 0, finite, () or (n,))."""
    count = x.shape[0]
    values = tf.get_static_value(eps) if tf.is_tensor(eps) else eps
    if values is not None:
        values = np.asarray(values, np.float64)
        if values.ndim > 1 or (values.ndim == 1 and count is not None and values.shape[0] != count):
            raise ValueError(
                f"Expected eps as a scalar or one value per image ({count}). "
                f"Received: eps with shape {values.shape}"
            )
        if not np.all(np.isfinite(values)) or np.any(values < 0):
            raise ValueError(f"Expected eps >= 0 and finite. Received: eps={eps!r}")
    eps = tf.cast(tf.convert_to_tensor(eps), tf.float32)
    return tf.broadcast_to(eps, tf.shape(x)[:1]) if eps.shape.rank == 0 else eps


def _check_positive_integer(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"Expected {name} to be a positive integer. Received: {name}={value!r}")


def _check_options(norm, loss, iterations, restarts, target_rank, rho, momentum):
    check_epsilon_norm(norm)
    if loss not in LOSSES:
        raise ValueError(f"Expected loss 'ce' or 'dlr'. Received: loss={loss!r}")
    _check_positive_integer("iterations", iterations)
    _check_positive_integer("restarts", restarts)
    if target_rank is not None:
        _check_positive_integer("target_rank", target_rank)
        if loss != "dlr":
            raise ValueError(
                f"Expected target_rank only with loss='dlr' (APGD-T). Received: loss={loss!r}, "
                f"target_rank={target_rank!r}"
            )
    for name, value in (("rho", rho), ("momentum", momentum)):
        if not 0.0 < value <= 1.0:
            raise ValueError(f"Expected {name} in (0, 1]. Received: {name}={value!r}")
