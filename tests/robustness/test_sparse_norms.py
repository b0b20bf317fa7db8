"""L1 and L0 minimal perturbations: distances, attacks against the closed-form minimum of linear
models with the [0, 1] box, and the configs that ask for them.

On a linear model the smallest perturbation that lifts class j over the true class y has a closed
form even with the box: each pixel i can move by at most its room toward the favourable bound and
raises the gap by |w_j,i - w_y,i| per unit. The L1 minimum takes the pixels in decreasing order of
|w_j,i - w_y,i| (a fractional knapsack); the L0 minimum takes the pixels of largest total gain
|w_j,i - w_y,i| * room_i until the gap is closed. ``exact_sparse_distances`` computes both by loops.
"""

from __future__ import annotations

import numpy as np
import pytest

from neuroreg_tf.errors import ConfigError
from neuroreg_tf.robustness import adversarial, attacks, foolbox_attacks, scoring, search
from neuroreg_tf.robustness.settings import AttackSettings, preset
from test_attacks import linear_model, mid_gray_images

MARGIN = AttackSettings().decision_margin


def exact_sparse_distances(x, y, kernel, bias, norm, decision_margin=0.0):
    """Per sample the minimal L1 or L0 perturbation within [0, 1] that puts a wrong class above
    the true one by more than ``decision_margin`` (inf where none exists), by greedy loops."""
    flat = x.reshape(len(x), -1).astype(np.float64)
    logits = flat @ kernel.astype(np.float64) + bias
    distances = []
    for image, row, label in zip(flat, logits, y):
        best = np.inf
        for other in range(kernel.shape[1]):
            if other == label:
                continue
            gain = kernel[:, other].astype(np.float64) - kernel[:, label]
            needed = row[label] - row[other] + decision_margin
            room = np.where(gain > 0, 1.0 - image, image)
            if norm == "l1":
                cost, remaining = 0.0, needed
                for pixel in sorted(range(len(gain)), key=lambda i: -abs(gain[i])):
                    if remaining <= 0:
                        break
                    amount = min(room[pixel], remaining / abs(gain[pixel]))
                    cost += amount
                    remaining -= amount * abs(gain[pixel])
                if remaining <= 1e-12:
                    best = min(best, cost)
            else:
                total, count = 0.0, 0
                for pixel_gain in sorted(abs(gain) * room, reverse=True):
                    if total > needed:
                        break
                    total += pixel_gain
                    count += 1
                if total > needed:
                    best = min(best, count)
        distances.append(best)
    return np.array(distances, np.float64)


def sparse_model(seed=0, size=6, gap=2.5):
    """A two-class linear model on which L0 minima are several pixels: every pixel can move the gap
    by about the same amount (a weight difference near 1 times a room near 0.5), and clean images
    sit about ``gap`` from the boundary."""
    rng = np.random.default_rng(seed)
    model, _, _ = linear_model(num_classes=2, seed=seed, size=size)
    signs = rng.choice([-1.0, 1.0], size * size)
    scale = 1.0 + 0.2 * rng.uniform(-1, 1, size * size)
    kernel = np.stack([0.5 * signs * scale, -0.5 * signs * scale], axis=1).astype(np.float32)
    x = mid_gray_images(10, seed=seed + 1, size=size)
    center = x.reshape(len(x), -1) @ kernel
    bias = np.array([gap - float(np.mean(center[:, 0] - center[:, 1])), 0.0], np.float32)
    model.get_layer("logits").set_weights([kernel, bias])
    return model, kernel, bias, x


def test_l1_and_l0_distances_are_the_sum_and_the_count_of_changed_pixel_values():
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (3, 4, 4, 1)).astype(np.float32)
    adversarial_images = x.copy()
    adversarial_images[0, 1, 2, 0] += 0.25
    adversarial_images[0, 3, 3, 0] -= 0.5
    adversarial_images[2, 0, 0, 0] = 1.0 - adversarial_images[2, 0, 0, 0]
    l1 = scoring.perturbation_distance(x, adversarial_images, "l1")
    l0 = scoring.perturbation_distance(x, adversarial_images, "l0")
    expected_l1 = [sum(abs(float(a) - float(b)) for a, b in zip(row_a.ravel(), row_b.ravel()))
                   for row_a, row_b in zip(adversarial_images, x)]
    np.testing.assert_allclose(l1, expected_l1, rtol=1e-6)
    np.testing.assert_array_equal(l0, [2, 0, 1 if x[2, 0, 0, 0] != 0.5 else 0])


def test_the_closed_form_of_the_test_is_itself_right_on_a_tiny_case():
    # Two pixels at 0.5, gains 2 and 1 toward class 1, a gap of 1.4: L1 moves the first pixel by
    # its whole room 0.5 (closing 1.0) and the second by 0.4: 0.9; L0 needs both pixels.
    kernel = np.array([[0.0, 2.0], [0.0, 1.0]], np.float32)
    bias = np.array([1.5 + 1.4, 0.0], np.float32)  # logits 2.9 and 1.5 at the clean image: a gap of 1.4
    x = np.full((1, 1, 2, 1), 0.5, np.float32)
    assert exact_sparse_distances(x, [0], kernel, bias, "l1")[0] == pytest.approx(0.9)
    assert exact_sparse_distances(x, [0], kernel, bias, "l0")[0] == 2
    assert exact_sparse_distances(x, [0], kernel, bias + np.array([1.0, 0.0], np.float32), "l0")[0] == np.inf


@pytest.mark.parametrize("norm, tolerance", [("l1", 0.02), ("l0", 1.0)])
def test_fmn_is_never_below_the_exact_minimum_and_lands_near_it(norm, tolerance):
    model, kernel, bias, x = sparse_model()
    y = np.asarray(model(x)).argmax(axis=1)
    exact = exact_sparse_distances(x, y, kernel, bias, norm, decision_margin=MARGIN)
    assert np.isfinite(exact).all() and exact.min() > 0
    if norm == "l0":
        assert np.median(exact) >= 3, "the test's model needs several pixels per sample"
    attack = foolbox_attacks.foolbox_attack("fmn", norm, steps=100, decision_margin=MARGIN)
    result = search.minimal_perturbation(model, x, y, norm, attacks=[attack], progress=None)
    assert np.isfinite(result.distances).all()
    assert (result.distances >= exact * (1 - 1e-5)).all(), "never below the exact minimum"
    # L1: within 2 %; L0 (FMN's L0 is a relaxation): at most 1 pixel more than the minimum.
    excess = result.distances / exact - 1 if norm == "l1" else result.distances - exact
    assert np.median(excess) <= tolerance


def test_l1_and_l0_need_a_minimum_norm_attack_and_say_how_to_get_one():
    assert AttackSettings().attacks_missing(["linf", "l2"]) is None
    problem = AttackSettings().attacks_missing(["linf", "l1"])
    assert "'l1'" in problem and "brendel_bethge" in problem
    assert AttackSettings(foolbox=("ddn",)).attacks_missing(["l0"]) is not None
    assert preset("strong").attacks_missing(["linf", "l2", "l1", "l0"]) is None
    assert preset("paper").attacks_missing(["l1", "l0"]) is None
    model, _, _, x = sparse_model()
    y = np.asarray(model(x)).argmax(axis=1)
    with pytest.raises(ValueError, match="norm 'l0' has no attack"):
        adversarial.adversarial_evaluation(model, x, y, norms=("l0",), settings=preset("study"), progress=None)
    with pytest.raises(ValueError, match="norm among \\('linf', 'l2'\\)"):
        attacks.pgd("l1")


def test_an_evaluation_config_asking_for_l1_without_such_an_attack_is_refused():
    from neuroreg_tf import cli
    from neuroreg_tf.robustness import evaluation

    config = cli.load_config("evaluate.py")
    config.models = "None=runs/x"
    config.adversarial.norms = ("linf", "l1")
    with pytest.raises(ConfigError, match="config.adversarial.norms: norm 'l1' has no attack"):
        evaluation.check_config(config)
    config.adversarial.foolbox = ("fmn",)
    evaluation.check_config(config)


def test_l1_and_l0_lists_hold_only_the_foolbox_attacks_with_the_refining_one_last():
    names = [a.name for a in attacks.default_attacks("l1", preset("strong"))]
    assert names == ["foolbox_fmn_l1(steps=100)", "foolbox_brendel_bethge_l1(steps=100)"]
    linf = attacks.default_attacks("linf", preset("strong"))
    assert linf[-1].refines and not any(getattr(a, "refines", False) for a in linf[:-1])
    assert [a.norm for a in attacks.default_attacks("l0", preset("strong"))] == ["l0", "l0"]


def recording_refiner(norm, seen):
    """A refining attack that records what the search gives it into ``seen`` ("count" and "starts"
    for the samples given a start, "own_search" for the others) and finds nothing better."""

    def build(logits_fn):
        def run(images, labels, starting_points=None):
            if starting_points is None:  # the samples without a start: the attack's own search
                seen["own_search"] = len(images)
                return images
            seen["count"], seen["starts"] = len(images), starting_points.copy()
            return starting_points  # no better: the search keeps what it had
        return run

    return attacks.MinimizingAttack("refiner", norm, build, refines=True)


def test_a_refining_attack_runs_from_the_best_adversarial_so_far_on_broken_samples_only():
    model, kernel, bias, x = sparse_model()
    y = np.asarray(model(x)).argmax(axis=1)
    seen = {}
    refiner = recording_refiner("l1", seen)
    first = foolbox_attacks.foolbox_attack("fmn", "l1", steps=30, decision_margin=MARGIN)
    result = search.minimal_perturbation(model, x, y, "l1", attacks=[first, refiner], progress=None)
    broken = np.isfinite(result.per_attack[first.name])
    assert seen["count"] == broken.sum() and seen.get("own_search", 0) == (~broken).sum()
    np.testing.assert_allclose(scoring.perturbation_distance(x[broken], seen["starts"], "l1"),
                               result.per_attack[first.name][broken], rtol=1e-6)


def test_where_no_attack_of_the_norm_broke_a_sample_a_refining_attack_starts_from_another_norms_adversarial():
    model, kernel, bias, x = sparse_model()
    y = np.asarray(model(x)).argmax(axis=1)
    seen = {}
    finds_nothing = attacks.MinimizingAttack("nothing", "l0", lambda logits_fn: lambda images, labels: images)
    refiner = recording_refiner("l0", seen)
    # Adversarials of another norm: L1 ones for the first six samples, the clean image (not an
    # adversarial, so not a start) for the others.
    l1 = search.minimal_perturbation(model, x, y, "l1", progress=None,
                                     attacks=[foolbox_attacks.foolbox_attack("fmn", "l1", steps=50)])
    others = np.where(np.arange(len(x))[:, None, None, None] < 6, l1.adversarials, x)
    result = search.minimal_perturbation(model, x, y, "l0", attacks=[finds_nothing, refiner],
                                         starting_points=others, progress=None)
    np.testing.assert_array_equal(seen["starts"], l1.adversarials[:6])
    assert seen["own_search"] == len(x) - 6
    np.testing.assert_array_equal(result.distances[:6], scoring.perturbation_distance(x[:6], l1.adversarials[:6], "l0"))
    assert np.isinf(result.distances[6:]).all()
