"""Foolbox 3 attacks inside our search, against the closed-form minimal distance of linear models.

Each attack's verified distance is never below the exact minimum (the margin the search demands
included) and, for the minimum-norm attacks, within a stated tolerance above it.
"""

from __future__ import annotations

import numpy as np
import pytest

from neuroreg_tf.robustness import attacks, foolbox_attacks, search
from neuroreg_tf.robustness.settings import AttackSettings
from test_attacks import exact_linear_distances, linear_model, mid_gray_images

MARGIN = AttackSettings().decision_margin


@pytest.mark.parametrize("name, norm, steps, tolerance", [
    ("fmn", "linf", 100, 0.01),
    # DDN moves its norm by gamma = 5 % per step (from 1; 300 steps reach these distances), so
    # it ends within a few such steps of the minimum.
    ("ddn", "l2", 300, 0.15),
    ("hop_skip_jump", "l2", 20, 0.35),  # decision-based: only labels, few steps
])
def test_each_attack_lands_just_above_the_exact_minimum(name, norm, steps, tolerance):
    model, kernel, bias = linear_model(num_classes=2, seed=2)  # one boundary: every sample is breakable
    x = mid_gray_images(12, seed=3)
    y = np.asarray(model(x)).argmax(axis=1)
    attack = foolbox_attacks.foolbox_attack(name, norm, steps=steps, decision_margin=MARGIN)
    result = search.minimal_perturbation(model, x, y, norm, attacks=[attack], progress=None)
    exact = exact_linear_distances(x, y, kernel, bias, norm, decision_margin=MARGIN)
    assert np.isfinite(result.distances).all(), "every sample broken (pushed past the boundary)"
    assert (result.distances >= exact * (1 - 1e-5)).all(), "never below the exact minimum"
    assert np.median(result.distances / exact) <= 1 + tolerance


def test_on_several_classes_what_an_attack_finds_is_never_below_the_exact_minimum():
    model, kernel, bias = linear_model(num_classes=3, seed=2)
    x = mid_gray_images(12, seed=3)
    y = np.asarray(model(x)).argmax(axis=1)
    exact = exact_linear_distances(x, y, kernel, bias, "linf", decision_margin=MARGIN)
    attack = foolbox_attacks.foolbox_attack("fmn", "linf", decision_margin=MARGIN)
    distances = search.minimal_perturbation(model, x, y, "linf", attacks=[attack], progress=None).distances
    found = np.isfinite(distances)
    assert found.sum() >= 6 and (distances[found] >= exact[found] * (1 - 1e-5)).all()


def test_a_candidate_on_the_boundary_is_pushed_just_past_it():
    model, kernel, bias = linear_model(num_classes=2, seed=2)
    x = mid_gray_images(4, seed=5)
    y = np.asarray(model(x)).argmax(axis=1)
    exact = exact_linear_distances(x, y, kernel, bias, "l2")
    direction = (kernel[:, 1 - y] - kernel[:, y]).T  # per sample, toward the other class
    unit = direction / np.linalg.norm(direction, axis=1, keepdims=True)
    on_boundary = (x.reshape(4, -1) + unit * exact[:, None]).reshape(x.shape).astype(np.float32)
    pushed = foolbox_attacks.past_the_boundary(lambda t: model(t), x, on_boundary, y, MARGIN)
    logits = np.asarray(model(pushed), np.float64)
    assert (logits[np.arange(4), 1 - y] - logits[np.arange(4), y] > MARGIN).all()
    scale = np.linalg.norm((pushed - x).reshape(4, -1), axis=1) / exact
    # The smallest such factor: the exact minimum with the margin, to the bisection's precision.
    exact_with_margin = exact_linear_distances(x, y, kernel, bias, "l2", decision_margin=MARGIN)
    np.testing.assert_allclose(scale * exact, exact_with_margin, rtol=1e-3)
    assert (scale >= 1.0).all()


def test_the_strong_preset_adds_fmn_and_ddn_and_an_unknown_name_is_refused():
    from neuroreg_tf.errors import ConfigError
    from neuroreg_tf.robustness.settings import preset

    names = [a.name for a in attacks.default_attacks("l2", preset("strong"))]
    assert "foolbox_ddn_l2(steps=100)" in names
    assert "foolbox_fmn_linf(steps=100)" in [a.name for a in attacks.default_attacks("linf", preset("strong"))]
    with pytest.raises(ConfigError, match="foolbox must be among"):
        AttackSettings(foolbox=("boundary",))
    with pytest.raises(ValueError, match="No Foolbox attack 'ddn' for norm 'linf'"):
        foolbox_attacks.foolbox_attack("ddn", "linf")
    assert "foolbox" not in AttackSettings().as_identity()


def test_a_decision_based_attack_that_finds_no_starting_point_returns_nothing_instead_of_failing():
    import keras

    inputs = keras.Input((6, 6, 1))
    constant = keras.Model(inputs, keras.layers.Lambda(lambda t: 0.0 * t[:, 0, 0, :] + [[1.0, 0.0]])(inputs))
    x = mid_gray_images(3, seed=9)
    y = np.zeros(3, np.int64)  # the model says 0 for every image: no adversarial exists
    attack = foolbox_attacks.foolbox_attack("hop_skip_jump", "l2", steps=2)
    np.testing.assert_array_equal(attack.build(lambda t: constant(t))(x, y), x)
