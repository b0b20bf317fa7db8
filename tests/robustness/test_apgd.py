"""Tests for APGD (``neuroreg_tf.robustness.apgd``), against closed forms computed here.

Expected values never come from the code under test: minimal distances of affine models are
``|margin| / ||w_y - w_j||_dual`` (L1 for L-inf, L2 for L2), computed in float64 by loops below;
the step-size checkpoints are the paper's formula in exact fractions; the step-size halving is
simulated step by step from the paper's two conditions on a scripted loss sequence.
"""

from __future__ import annotations

import math
from fractions import Fraction

import keras
import numpy as np
import pytest
import tensorflow as tf

import oracles
from neuroreg_tf import robustness
from neuroreg_tf.robustness import apgd
from neuroreg_tf.robustness import attacks

SIZE = 6
FLOAT_SLACK = 2e-5  # float32 images near 0.5: distances recomputed in float64 carry ~3e-8 absolute
SEARCH_MARGIN = 1e-3  # AttackSettings.decision_margin: the logit margin the search asks for
BALL_SLACK = 1e-6  # "inside the eps-ball": recomputed distance <= eps + 1e-6


# --------------------------------------------------------------------------------- closed forms


def affine_model(num_classes, seed):
    """A random affine classifier on 6 x 6 x 1 images, and its float64 kernel and bias."""
    rng = np.random.default_rng(seed)
    kernel = rng.normal(size=(SIZE * SIZE, num_classes))
    kernel -= kernel.mean(axis=0)  # a uniform gray image gets logits = bias: small margins near 0.5
    bias = rng.normal(scale=0.1, size=num_classes)
    inputs = keras.Input((SIZE, SIZE, 1))
    logits = keras.layers.Dense(num_classes, name="logits")(keras.layers.Flatten()(inputs))
    model = keras.Model(inputs, logits)
    model.get_layer("logits").set_weights([kernel.astype(np.float32), bias.astype(np.float32)])
    return model, kernel.astype(np.float32).astype(np.float64), bias.astype(np.float32).astype(np.float64)


def mid_gray_images(count, seed):
    """Images in [0.4, 0.6]: the minimal perturbations below move no pixel out of [0, 1]."""
    return np.random.default_rng(seed).uniform(0.4, 0.6, (count, SIZE, SIZE, 1)).astype(np.float32)


def closed_form(x, kernel, bias, norm, margin=0.0):
    """Per image, by loops in float64: the predicted class y, the minimal distance
    ``min_{j != y} (z_y - z_j + margin) / ||w_y - w_j||_dual`` and its class j, and the rank of
    that j among the other classes' clean logits (1: the most likely wrong class)."""
    labels, distances, nearest, ranks = [], [], [], []
    for image in np.asarray(x, np.float64).reshape(len(x), -1):
        logits = [
            sum(image[p] * kernel[p, c] for p in range(len(image))) + bias[c]
            for c in range(kernel.shape[1])
        ]
        label = max(range(len(logits)), key=lambda c: logits[c])
        best = (math.inf, None)
        for other in range(len(logits)):
            if other == label:
                continue
            difference = [kernel[p, label] - kernel[p, other] for p in range(len(image))]
            if norm == "linf":
                dual = sum(abs(d) for d in difference)
            else:
                dual = math.sqrt(sum(d * d for d in difference))
            best = min(best, ((logits[label] - logits[other] + margin) / dual, other))
        rank = 1 + sum(
            1 for c in range(len(logits)) if c not in (label, best[1]) and logits[c] > logits[best[1]]
        )
        labels.append(label)
        distances.append(best[0])
        nearest.append(best[1])
        ranks.append(rank)
    return np.array(labels), np.array(distances), np.array(nearest), np.array(ranks)


def assert_verified(model, x, y, eps, result, norm):
    """Every success flips the label, lies in [0, 1] and in the eps-ball (distance recomputed in
    float64); every failure returns the clean image."""
    adversarials = np.asarray(result.adversarials)
    success = np.asarray(result.success)
    assert adversarials.dtype == np.float32 and adversarials.shape == x.shape
    assert adversarials.min() >= 0.0 and adversarials.max() <= 1.0
    predictions = np.argmax(model(adversarials).numpy(), axis=1)
    np.testing.assert_array_equal(predictions != y, success)
    difference = (adversarials.astype(np.float64) - x.astype(np.float64)).reshape(len(x), -1)
    if norm == "linf":
        distance = np.abs(difference).max(axis=1)
    else:
        distance = np.sqrt((difference**2).sum(axis=1))
    assert np.all(distance <= np.broadcast_to(eps, distance.shape) + BALL_SLACK)
    np.testing.assert_array_equal(adversarials[~success], x[~success])


# ------------------------------------------------------------------------- fixed budget, affine


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_two_class_affine_succeeds_just_above_the_minimum_and_never_below(norm):
    model, kernel, bias = affine_model(2, seed=3)
    x = mid_gray_images(16, seed=5)
    y, exact, _, _ = closed_form(x, kernel, bias, norm)
    assert exact.max() < 0.3  # no pixel leaves [0, 1] at the optimum: the box does not bind
    above = np.arange(16) % 2 == 0
    eps = (exact * np.where(above, 1.05, 0.95)).astype(np.float32)  # one budget per image
    result = apgd.apgd_attack(model, x, y, eps, norm=norm, loss="ce", iterations=20)
    np.testing.assert_array_equal(np.asarray(result.success), above)
    assert_verified(model, x, y, eps, result, norm)
    # The reported margins are those of the returned images.
    logits = model(np.asarray(result.adversarials)).numpy().astype(np.float64)
    recomputed = logits[np.arange(16), 1 - y] - logits[np.arange(16), y]
    np.testing.assert_allclose(np.asarray(result.margins)[above], recomputed[above], rtol=1e-4)


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_multiclass_affine_dlr_and_targeted_dlr_bracket_the_minimum(norm):
    model, kernel, bias = affine_model(4, seed=9)
    x = mid_gray_images(16, seed=5)
    y, exact, _, nearest_rank = closed_form(x, kernel, bias, norm)
    assert exact.max() < 0.3
    assert set(nearest_rank) != {1}  # the nearest boundary is not always the runner-up's
    for factor in (0.95, 1.05):
        eps = (exact * factor).astype(np.float32)
        untargeted = apgd.apgd_attack(model, x, y, eps, norm=norm, loss="dlr", iterations=20)
        assert_verified(model, x, y, eps, untargeted, norm)
        cross_entropy = apgd.apgd_attack(model, x, y, eps, norm=norm, loss="ce", iterations=20)
        assert_verified(model, x, y, eps, cross_entropy, norm)
        targeted = {}
        for rank in (1, 2, 3):
            targeted[rank] = apgd.apgd_attack(
                model, x, y, eps, norm=norm, loss="dlr", target_rank=rank, iterations=20
            )
            assert_verified(model, x, y, eps, targeted[rank], norm)
        if factor < 1:  # below the minimum no attack may succeed
            assert not np.asarray(untargeted.success).any()
            assert not np.asarray(cross_entropy.success).any()
            assert not any(np.asarray(r.success).any() for r in targeted.values())
        else:
            # Untargeted DLR climbs toward the runner-up: it reaches every nearest boundary that
            # is the runner-up's (13 of the 16 here).
            assert np.asarray(untargeted.success)[nearest_rank == 1].all()
            # APGD-T toward the class of the nearest boundary reaches it on every image.
            for rank, result in targeted.items():
                assert np.asarray(result.success)[nearest_rank == rank].all(), f"rank {rank}"


def test_pixels_stay_in_the_box_where_it_binds():
    """Images on or near the box's edges and budgets larger than their distance to it: the
    candidates are clipped to [0, 1] and still within the ball."""
    model, _, _ = affine_model(3, seed=8)
    x = np.random.default_rng(9).choice([0.0, 0.02, 0.98, 1.0, 0.5], (10, SIZE, SIZE, 1)).astype(np.float32)
    y = np.argmax(model(x).numpy(), axis=1)
    for norm, eps in (("linf", 0.3), ("l2", 2.0)):
        result = apgd.apgd_attack(model, x, y, eps, norm=norm, iterations=10, restarts=2)
        assert np.asarray(result.success).any()
        assert_verified(model, x, y, eps, result, norm)


# --------------------------------------------------------------------- inside the epsilon search


def search_resolution(factor, steps):
    """The search's bracket [lo, factor * lo] halved ``steps`` times, relative to lo."""
    return (factor - 1) / 2**steps


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_minimal_perturbation_with_apgd_matches_the_closed_form(norm):
    """APGD as an EpsilonAttack in minimal_perturbation (exponential search, then 10 bisection
    steps): never below the exact minimum, and above it by at most the search's resolution
    ((1.5 - 1) / 2**10, 0.05 %) beyond the search's logit margin of 1e-3."""
    model, kernel, bias = affine_model(4, seed=9)
    x = mid_gray_images(12, seed=6)
    y, exact, _, _ = closed_form(x, kernel, bias, norm)
    _, exact_with_margin, _, _ = closed_form(x, kernel, bias, norm, margin=SEARCH_MARGIN)
    options = [dict(loss="ce"), dict(loss="dlr")] + [dict(loss="dlr", target_rank=r) for r in (1, 2, 3)]
    attack_list = [
        attacks.EpsilonAttack(
            apgd.attack_name(norm, iterations=20, **option),
            norm,
            apgd.builder(norm, iterations=20, **option),
        )
        for option in options
    ]
    result = robustness.minimal_perturbation(
        model, x, y, norm, attacks=attack_list, search_steps=10, batch_size=8, progress=None
    )
    assert result.clean_correct.all() and np.isfinite(result.distances).all()
    assert np.all(result.distances >= exact * (1 - FLOAT_SLACK))
    tolerance = search_resolution(1.5, 10) + FLOAT_SLACK
    assert np.all(result.distances <= exact_with_margin * (1 + tolerance))
    recomputed = robustness.perturbation_distance(x, result.adversarials, norm)
    np.testing.assert_allclose(recomputed, result.distances, rtol=1e-12)


# --------------------------------------------------------------------------- step-size schedule


def paper_checkpoints(iterations):
    """w_j = ceil(p_j N) with p_0 = 0, p_1 = 0.22, p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06),
    in exact fractions, while w_j <= N; repeated values once."""
    p = [Fraction(0), Fraction(22, 100)]
    while math.ceil(p[-1] * iterations) <= iterations:
        p.append(p[-1] + max(p[-1] - p[-2] - Fraction(3, 100), Fraction(6, 100)))
    w = sorted({math.ceil(value * iterations) for value in p[:-1]})
    return tuple(w)


@pytest.mark.parametrize("iterations", [1, 2, 3, 5, 7, 10, 13, 20, 50, 100, 137, 1000])
def test_checkpoints_follow_the_papers_formula(iterations):
    assert apgd.step_size_checkpoints(iterations) == paper_checkpoints(iterations)


def test_checkpoints_of_100_iterations_are_the_papers():
    # p_j = 0, .22, .41, .57, .70, .80, .87, .93, .99 (the last interval 0.06 from .87 on).
    assert apgd.step_size_checkpoints(100) == (0, 22, 41, 57, 70, 80, 87, 93, 99)


class ScriptedLoss:
    """Two-class logits (0, s_t[i]) at the t-th evaluation, whatever the image: the cross-entropy
    of label 0 is softplus(s_t[i]), increasing in s_t[i]; the gradient is zero."""

    def __init__(self, script):
        self.script = tf.constant(script, tf.float32)
        self.calls = tf.Variable(0)

    def __call__(self, images):
        values = tf.gather(self.script, self.calls)
        self.calls.assign_add(1)
        return tf.stack([tf.zeros_like(values), values], axis=1)


def simulate_halvings(values, checkpoints, rho=0.75):
    """The paper's step-size rule on the loss sequence ``values`` (t = 0: the start; t = k: after
    step k): at each checkpoint w_j (j >= 1) halve if (1) fewer than rho (w_j - w_{j-1}) of the
    steps since w_{j-1} increased the loss, or (2) the step size was not halved at w_{j-1} and the
    best loss has not increased since. After halving, the point is x_max, whose loss the next step
    is compared with. Returns the number of halvings."""
    best = current = best_at_last = values[0]
    increases, halved_last, halvings, last = 0, False, 0, 0
    for k in range(1, len(values)):
        increases += values[k] > current
        current = values[k]
        best = max(best, current)
        if k in checkpoints[1:]:
            halve = increases < rho * (k - last) or (not halved_last and best <= best_at_last)
            if halve:
                halvings += 1
                current = best
            increases, halved_last, best_at_last, last = 0, halve, best, k
    return halvings


@pytest.mark.parametrize("iterations", [13, 30])
def test_step_size_halves_exactly_where_the_papers_conditions_hold(iterations):
    calls = iterations + 1  # the start and one evaluation per step
    t = np.arange(calls)
    rng = np.random.default_rng(iterations)
    columns = [
        np.zeros(calls),  # never increases: condition 1 at every checkpoint
        np.linspace(-3.0, 3.0, calls),  # always increases: never halved
        (t % 5) * 0.5 - 2.0,  # 4 of 5 steps increase, no new best after the first teeth: condition 2
        (t % 4) * 0.5 - 2.0,  # 3 of 4 steps increase: exactly at rho on 4-step intervals
    ] + [rng.integers(-6, 7, calls) * 0.5 for _ in range(6)]  # random walks
    script = np.stack(columns, axis=1)
    model = ScriptedLoss(script)
    eps = 0.25
    result = apgd.apgd_attack(
        model, np.full((script.shape[1], 2, 2, 1), 0.5, np.float32), np.zeros(script.shape[1], int),
        eps, norm="linf", loss="ce", iterations=iterations,
    )
    assert int(model.calls.numpy()) == calls
    checkpoints = paper_checkpoints(iterations)
    halvings = np.array([simulate_halvings(list(column), checkpoints) for column in columns])
    assert halvings[0] == len(checkpoints) - 1 and halvings[1] == 0
    assert 0 < halvings[2] < len(checkpoints) - 1
    np.testing.assert_array_equal(np.asarray(result.step_sizes), 2 * eps * 0.5**halvings)
    expected_loss = [-math.log(oracles.softmax([0.0, max(column)])[0]) for column in columns]
    np.testing.assert_allclose(np.asarray(result.best_loss), expected_loss, rtol=1e-6)


class ScriptedTrajectory:
    """Two-class logits (0, s_t[i] + d_i . (x - x)) at the t-th evaluation: the loss is scripted
    (softplus(s_t[i]) for label 0) while its gradient points along the fixed direction d_i, so the
    path of the iterates is known. Records every evaluated batch."""

    def __init__(self, script, direction):
        self.script = script
        self.direction = tf.constant(direction, tf.float32)
        self.points = []

    def __call__(self, images):
        values = tf.constant(self.script[len(self.points)], tf.float32)
        self.points.append(np.asarray(images, np.float64))
        moving = tf.reduce_sum(self.direction * (images - tf.stop_gradient(images)), axis=[1, 2, 3])
        return tf.stack([tf.zeros_like(values), values + moving], axis=1)


def simulate_trajectory(start, clean, direction, values, eps, norm, checkpoints, rho=0.75, alpha=0.75):
    """Algorithm 1 of the paper for one image, in float64, with the losses ``values`` (t = 0: the
    start) and a gradient along ``direction``: z = P(x_k + eta s), x_{k+1} = P(x_k + a (z - x_k)
    + (1 - a)(x_k - x_{k-1})), a = 1 on a first step; at a checkpoint that halves eta, continue
    from x_max as from a fresh start. P: clip to the ball around ``clean``, then to [0, 1]."""

    def project(point):
        difference = point - clean
        if norm == "linf":
            difference = np.clip(difference, -eps, eps)
        else:
            length = math.sqrt(float((difference**2).sum()))
            difference = difference * min(1.0, eps / length) if length > 0 else difference
        return np.clip(clean + difference, 0.0, 1.0)

    step = np.sign(direction) if norm == "linf" else direction / math.sqrt(float((direction**2).sum()))
    eta, x, previous, fresh = 2 * eps, start, start, True
    best = current = best_at_last = values[0]
    x_max, increases, halved_last, last = start, 0, False, 0
    points = [start]
    for k in range(1, len(values)):
        a = 1.0 if fresh else alpha
        z = project(x + eta * step)
        new = project(x + a * (z - x) + (1 - a) * (x - previous))
        points.append(new)
        increases += values[k] > current
        if values[k] > best:
            best, x_max = values[k], new
        previous, x, current, fresh = x, new, values[k], False
        if k in checkpoints[1:]:
            halve = increases < rho * (k - last) or (not halved_last and best <= best_at_last)
            if halve:
                eta, x, previous, current, fresh = eta / 2, x_max, x_max, best, True
            increases, halved_last, best_at_last, last = 0, halve, best, k
    return np.array(points)


@pytest.mark.parametrize("norm, eps", [("linf", 0.15), ("l2", 0.5)])
def test_iterates_follow_algorithm_1_with_momentum_projection_and_restarts(norm, eps):
    iterations, count = 20, 6
    rng = np.random.default_rng(11)
    # Random walks in steps of 0.5 that go up with probability 0.5 .. 0.95 (by image), down by 0.5
    # to 2: some images have their step size halved at every checkpoint, others rarely.
    up = rng.uniform(size=(iterations + 1, count)) < np.linspace(0.5, 0.95, count)
    steps = np.where(up, 0.5, -0.5 * rng.integers(1, 5, (iterations + 1, count)))
    script = np.cumsum(steps, axis=0) - 1.0
    direction = rng.normal(size=(count, 3, 3, 1))
    clean = rng.uniform(0.05, 0.95, (count, 3, 3, 1)).astype(np.float32)  # the box binds at some pixels
    model = ScriptedTrajectory(script, direction)
    result = apgd.apgd_attack(
        model, clean, np.zeros(count, int), eps, norm=norm, loss="ce", iterations=iterations
    )
    points = np.array(model.points)  # (iterations + 1, count, 3, 3, 1)
    assert points.shape[0] == iterations + 1
    checkpoints = paper_checkpoints(iterations)
    halvings = [simulate_halvings(list(script[:, i]), checkpoints) for i in range(count)]
    assert 0 < len(set(halvings) - {0, len(checkpoints) - 1})  # some restarts, not at every checkpoint
    assert np.any(points[1:] == 0.0) and np.any(points[1:] == 1.0)  # the box binds
    for i in range(count):
        start = points[0, i]
        assert start.min() >= 0.0 and start.max() <= 1.0
        expected = simulate_trajectory(
            start, clean[i].astype(np.float64), direction[i], list(script[:, i]), eps, norm, checkpoints
        )
        np.testing.assert_allclose(points[:, i], expected, atol=2e-6, err_msg=f"image {i}")
        # Kept: the evaluated point of largest margin s_t (the first of equals), if positive.
        best_t = int(np.argmax(script[:, i]))
        kept = points[best_t, i] if script[best_t, i] > 0 else clean[i]
        np.testing.assert_array_equal(np.asarray(result.adversarials)[i], kept.astype(np.float32))
        assert bool(result.success[i]) == (script[best_t, i] > 0)


# --------------------------------------------------------------------------------- determinism


def small_cnn(seed):
    rng = np.random.default_rng(seed)
    inputs = keras.Input((SIZE, SIZE, 1))
    hidden = keras.layers.Conv2D(4, 3, activation="relu", name="conv")(inputs)
    logits = keras.layers.Dense(3, name="logits")(keras.layers.Flatten()(hidden))
    model = keras.Model(inputs, logits)
    for layer in ("conv", "logits"):
        shapes = [w.shape for w in model.get_layer(layer).get_weights()]
        model.get_layer(layer).set_weights([rng.normal(scale=0.5, size=s).astype(np.float32) for s in shapes])
    return model


@pytest.mark.parametrize("norm, eps", [("linf", 0.08), ("l2", 0.6)])
def test_same_seed_same_output_other_seed_other_starts(norm, eps):
    model = small_cnn(0)
    x = np.random.default_rng(1).uniform(0, 1, (8, SIZE, SIZE, 1)).astype(np.float32)
    y = np.argmax(model(x).numpy(), axis=1)

    def run(seed):
        return apgd.apgd_attack(model, x, y, eps, norm=norm, iterations=10, restarts=2, seed=seed)

    first, again, other = run(7), run(7), run(8)
    for field in apgd.APGDResult._fields:
        np.testing.assert_array_equal(np.asarray(getattr(first, field)), np.asarray(getattr(again, field)))
    assert not np.array_equal(np.asarray(first.best_loss), np.asarray(other.best_loss))
    assert_verified(model, x, y, eps, first, norm)
    # The compiled EpsilonAttack run: deterministic too, and verified.
    run_compiled = apgd.builder(norm, iterations=10, restarts=2, seed=7)(model)
    budgets = np.full(8, eps, np.float32)
    candidates = np.asarray(run_compiled(x, y, budgets))
    np.testing.assert_array_equal(candidates, np.asarray(run_compiled(x, y, budgets)))
    broken, distance = robustness.verify_adversarial(model, x, candidates, y, norm)
    assert broken.any() and np.all(distance <= eps + BALL_SLACK)
    np.testing.assert_array_equal(candidates[~broken], x[~broken])


# ----------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"norm": "l1"}, r"Expected norm among \('linf', 'l2'\): fixed-budget attacks.*Received: norm='l1'"),
        ({"loss": "margin"}, r"Expected loss 'ce' or 'dlr'. Received: loss='margin'"),
        ({"eps": -0.1}, r"Expected eps >= 0 and finite. Received: eps=-0.1"),
        ({"eps": np.array([0.1, np.nan, 0.1])}, r"Expected eps >= 0 and finite. Received: eps="),
        ({"eps": np.array([0.1, 0.1])}, r"one value per image \(3\). Received: eps with shape \(2,\)"),
        ({"iterations": 0}, r"Expected iterations to be a positive integer. Received: iterations=0"),
        ({"restarts": 1.5}, r"Expected restarts to be a positive integer. Received: restarts=1.5"),
        ({"target_rank": 1}, r"target_rank only with loss='dlr'.*Received: loss='ce', target_rank=1"),
        ({"loss": "dlr", "target_rank": 0}, r"Received: target_rank=0"),
        ({"loss": "dlr", "target_rank": 3}, r"below the number of classes \(3\). Received: target_rank=3"),
        ({"loss": "dlr", "target_rank": 1}, r"at least 4 classes.*Received: logits with 3 classes"),
        ({"rho": 0.0}, r"Expected rho in \(0, 1\]. Received: rho=0.0"),
    ],
)
def test_bad_input_is_refused_naming_the_value(kwargs, message):
    model, _, _ = affine_model(3, seed=0)
    arguments = {"eps": 0.1, "norm": "linf"}
    arguments.update(kwargs)
    eps = arguments.pop("eps")
    with pytest.raises(ValueError, match=message):
        apgd.apgd_attack(model, mid_gray_images(3, seed=0), np.array([0, 1, 2]), eps, **arguments)


def test_dlr_needs_three_classes_and_builder_checks_its_options():
    model, _, _ = affine_model(2, seed=0)
    with pytest.raises(ValueError, match=r"at least 3 classes for the DLR loss. Received: logits with 2"):
        apgd.apgd_attack(model, mid_gray_images(2, seed=0), np.array([0, 1]), 0.1, loss="dlr")
    with pytest.raises(ValueError, match=r"Received: norm='linf2'"):
        apgd.builder("linf2")
    run = apgd.builder("linf", iterations=2)(model)
    with pytest.raises(ValueError, match=r"Received: eps="):
        run(mid_gray_images(2, seed=0), np.array([0, 1]), np.array([0.1, -1.0], np.float32))


def test_dlr_losses_match_their_definitions():
    logits = np.array([[3.0, 1.0, -2.0, 0.5], [0.0, 4.0, 1.0, 2.0]], np.float32)
    labels = np.array([0, 0])
    targets = np.array([3, 2])
    untargeted, targeted = [], []
    for row, label, target in zip(logits.astype(np.float64), labels, targets):
        ordered = sorted(row, reverse=True)
        best_wrong = max(v for c, v in enumerate(row) if c != label)
        untargeted.append(-(row[label] - best_wrong) / (ordered[0] - ordered[2]))
        targeted.append(-(row[label] - row[target]) / (ordered[0] - (ordered[2] + ordered[3]) / 2))
    np.testing.assert_allclose(apgd.dlr_loss(logits, labels).numpy(), untargeted, rtol=1e-6)
    np.testing.assert_allclose(apgd.targeted_dlr_loss(logits, labels, targets).numpy(), targeted, rtol=1e-6)


def test_an_evaluation_without_apgd_has_the_identity_it_had_before_apgd_existed():
    """APGD's settings join an evaluation's identity only when APGD runs (old workdirs stay valid)."""
    from neuroreg_tf.robustness.settings import AttackSettings

    before_apgd = {"step_fractions", "iterations", "losses", "target_ranks", "momentum", "carlini_wagner",
                   "cw_max_iterations", "cw_binary_search_steps", "cw_learning_rate", "cw_initial_const", "spsa",
                   "spsa_iterations", "seed", "search_steps", "search_factor", "max_exponential_steps",
                   "initial_epsilon", "decision_margin", "batch_size"}  # the fields before APGD, by hand
    identity = AttackSettings().as_identity()
    assert set(identity) == before_apgd and not any(k.startswith("apgd") for k in identity)
    with_apgd = AttackSettings(apgd=True).as_identity()
    assert {"apgd", "apgd_losses", "apgd_iterations", "apgd_restarts", "apgd_target_ranks"} <= set(with_apgd)
