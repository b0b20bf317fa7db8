"""Tests for the adversarial minimal-perturbation search and the CleverHans fixes."""

import re
import time

import keras
import numpy as np
import pytest
import tensorflow as tf

from neuroreg_tf import robustness
from neuroreg_tf.robustness import attacks
from neuroreg_tf.robustness import cleverhans_compat
from neuroreg_tf.robustness import scoring
from neuroreg_tf.robustness import search
from neuroreg_tf.robustness.settings import AttackSettings


def linear_model(channels=1, num_classes=3, seed=0, size=6):
    """A random linear classifier, whose exact minimal perturbations have a closed form."""
    rng = np.random.default_rng(seed)
    inputs = keras.Input((size, size, channels))
    logits = keras.layers.Dense(num_classes, name="logits")(keras.layers.Flatten()(inputs))
    model = keras.Model(inputs, logits)
    kernel = rng.normal(size=(size * size * channels, num_classes)).astype(np.float32)
    kernel -= kernel.mean(axis=0)  # a uniform gray image gets logits = bias: small margins near 0.5
    bias = rng.normal(scale=0.1, size=num_classes).astype(np.float32)
    model.get_layer("logits").set_weights([kernel, bias])
    return model, kernel, bias


def mid_gray_images(count, channels=1, seed=1, size=6):
    """Images near 0.5: small margins, so the unconstrained optimum stays inside [0, 1]."""
    rng = np.random.default_rng(seed)
    return rng.uniform(0.4, 0.6, (count, size, size, channels)).astype(np.float32)


def exact_linear_distances(x, y, kernel, bias, norm, decision_margin=0.0):
    """min over wrong classes j of (margin_j + decision_margin) / ||w_y - w_j||_dual.

    The dual norm is L1 for L-inf and L2 for L2; ``decision_margin`` is how far the wrong logit must
    end up above the true one.
    """
    logits = x.reshape(len(x), -1) @ kernel + bias
    distances = []
    for row, label in zip(logits, y):
        candidates = []
        for other in range(kernel.shape[1]):
            if other == label:
                continue
            difference = kernel[:, label] - kernel[:, other]
            dual = np.abs(difference).sum() if norm == "linf" else np.linalg.norm(difference)
            candidates.append((row[label] - row[other] + decision_margin) / dual)
        distances.append(min(candidates))
    return np.array(distances)


@pytest.fixture(scope="module")
def trained_model():
    """A small CNN trained for a few epochs on a synthetic 3-class brightness-pattern task."""
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 600)
    images = rng.uniform(0.0, 0.6, (600, 8, 8, 1)).astype(np.float32)
    for image, label in zip(images, labels):
        image[:, 2 * label : 2 * label + 3] += 0.35
    images = np.clip(images, 0, 1)
    inputs = keras.Input((8, 8, 1))
    hidden = keras.layers.Conv2D(6, 3, activation="relu")(inputs)
    hidden = keras.layers.Flatten()(hidden)
    model = keras.Model(inputs, keras.layers.Dense(3)(hidden))
    model.compile(
        optimizer=keras.optimizers.Adam(0.01),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    model.fit(images[:500], labels[:500], epochs=8, batch_size=50, verbose=0)
    return model, images[500:530], labels[500:530]


def assert_all_verified(model, x, y, result):
    predictions = np.argmax(model(result.adversarials).numpy(), axis=1)
    found = np.isfinite(result.distances) & result.clean_correct
    assert found.any()
    assert np.all(predictions[found] != y[found])
    assert result.adversarials.min() >= 0.0 and result.adversarials.max() <= 1.0
    np.testing.assert_allclose(
        robustness.perturbation_distance(x, result.adversarials, result.norm)[found],
        result.distances[found],
        rtol=1e-6,
    )
    np.testing.assert_array_equal(result.distances[~result.clean_correct], 0.0)


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_every_reported_distance_is_a_verified_adversarial(trained_model, norm):
    model, x, y = trained_model
    y = y.copy()
    y[:2] = (np.argmax(model(x[:2]).numpy(), axis=1) + 1) % 3  # two clean-misclassified samples
    result = robustness.minimal_perturbation(
        model,
        x,
        y,
        norm,
        iterations=(10,),
        search_steps=6,
        cw_max_iterations=30,
        cw_binary_search_steps=3,
        batch_size=16,
        progress=None,
    )
    assert not result.clean_correct[:2].any() and result.clean_correct[2:].mean() > 0.8
    assert_all_verified(model, x, y, result)
    assert set(result.best_attack[:2]) == {scoring.CLEAN_MISCLASSIFIED}
    summary = result.summary()
    assert summary["n"] == 30 and summary["n_clean_misclassified"] >= 2
    assert summary["q25"] <= summary["median"] <= summary["q75"]
    assert summary["median"] == pytest.approx(scoring.quantile(result.distances, 0.5))
    assert sum(entry["n_best"] for entry in summary["per_attack"].values()) == int(
        np.sum(np.isfinite(result.distances) & result.clean_correct)
    )


def test_minimal_distance_not_above_fixed_epsilon_success(trained_model):
    model, x, y = trained_model
    result = robustness.minimal_perturbation(
        model, x, y, "linf", attacks=[attacks.pgd("linf", 0.25, 10)], search_steps=8, progress=None
    )
    epsilon = float(np.median(result.distances[np.isfinite(result.distances)]))
    fixed = cleverhans_compat.projected_gradient_descent(
        model,
        x,
        epsilon,
        0.25 * epsilon,
        10,
        np.inf,
        clip_min=0.0,
        clip_max=1.0,
        y=y,
        sanity_checks=True,
    ).numpy()
    broken, distance = robustness.verify_adversarial(model, x, fixed, y, "linf")
    assert broken.sum() >= 5 and np.all(distance <= epsilon + 1e-6)
    assert np.all(result.distances[broken] <= epsilon * (1 + 1e-5))


def test_search_is_deterministic(trained_model):
    model, x, y = trained_model
    runs = [
        robustness.minimal_perturbation(
            model,
            x[:12],
            y[:12],
            "l2",
            attacks=[attacks.pgd("l2", 0.25, 10)],
            search_steps=5,
            batch_size=5,
            progress=None,
        )
        for _ in range(2)
    ]
    np.testing.assert_array_equal(runs[0].distances, runs[1].distances)
    np.testing.assert_array_equal(runs[0].adversarials, runs[1].adversarials)


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_linear_model_matches_closed_form(norm):
    model, kernel, bias = linear_model()
    x = mid_gray_images(16)
    y = np.argmax(model(x).numpy(), axis=1)
    exact = exact_linear_distances(x, y, kernel, bias, norm)
    assert exact.max() < 0.4  # every pixel moves by less than 0.4: the [0, 1] box does not bind
    result = robustness.minimal_perturbation(
        model,
        x,
        y,
        norm,
        attacks=[attacks.pgd(norm, 0.25, 20, loss="margin")],
        batch_size=10,
        progress=None,
    )
    assert np.all(result.distances >= exact * (1 - 1e-4))  # nothing below the true minimum
    # The search asks for a logit margin of 1e-3 beyond the boundary (decision_margin).
    exact_with_margin = exact_linear_distances(x, y, kernel, bias, norm, decision_margin=1e-3)
    assert np.all(result.distances <= exact_with_margin * 1.005)
    assert np.median(result.distances / exact) < 1.01


def test_cross_entropy_pgd_overestimates_multiclass_linear_minimum():
    model, kernel, bias = linear_model()
    x = mid_gray_images(8)
    y = np.argmax(model(x).numpy(), axis=1)
    exact = exact_linear_distances(x, y, kernel, bias, "linf")
    result = robustness.minimal_perturbation(
        model,
        x,
        y,
        "linf",
        attacks=[attacks.pgd("linf", 0.25, 20, loss="ce")],
        search_steps=6,
        progress=None,
    )
    assert np.all(result.distances >= exact * (1 - 1e-4))
    assert np.median(result.distances / exact) > 1.03  # why the default objective is the margin


@pytest.mark.parametrize("channels", [1, 3])
def test_carlini_wagner_fix_flips_labels_near_the_optimum(channels):
    model, kernel, bias = linear_model(channels=channels, seed=channels)
    x = np.random.default_rng(1).uniform(0.3, 0.7, (7, 6, 6, channels)).astype(np.float32)
    y = np.argmax(model(x).numpy(), axis=1)
    exact = exact_linear_distances(x, y, kernel, bias, "l2")
    assert exact.max() < 0.3  # the [0, 1] box does not bind
    adversarial = cleverhans_compat.carlini_wagner_l2(
        model,
        x,
        y,
        batch_size=3,
        max_iterations=100,
        binary_search_steps=5,
        learning_rate=0.01,
        initial_const=1.0,
    )  # 7 images in batches of 3: the last batch is smaller
    assert adversarial.shape == x.shape
    broken, distance = robustness.verify_adversarial(model, x, adversarial, y, "l2")
    assert broken.all()
    assert np.all(distance >= exact * (1 - 1e-4))
    assert np.all(distance <= exact * 1.5)  # C&W with few iterations: near, not at, the optimum


def test_carlini_wagner_targeted_reaches_targets():
    model, _, _ = linear_model(num_classes=4)
    x = mid_gray_images(5)
    targets = (np.argmax(model(x).numpy(), axis=1) + 1) % 4
    adversarial = cleverhans_compat.carlini_wagner_l2(
        model,
        x,
        targets,
        targeted=True,
        batch_size=2,
        max_iterations=100,
        binary_search_steps=4,
        learning_rate=0.05,
        initial_const=1.0,
    )
    np.testing.assert_array_equal(np.argmax(model(adversarial).numpy(), axis=1), targets)


@pytest.mark.parametrize("channels", [1, 3])
def test_spsa_fix_flips_labels_within_budget(channels):
    model, _, _ = linear_model(channels=channels, seed=channels)
    x = mid_gray_images(5, channels=channels)
    y = np.argmax(model(x).numpy(), axis=1)
    eps = np.full(5, 0.15, np.float32)
    run = lambda: cleverhans_compat.spsa(  # noqa: E731
        model,
        x,
        y,
        eps,
        20,
        spsa_samples=32,
        learning_rate=0.05,
        early_stop_loss_threshold=0.0,
        seed=3,
    )
    adversarial = run()
    broken, distance = robustness.verify_adversarial(model, x, adversarial, y, "linf")
    assert broken.all()
    assert np.all(distance <= 0.15 + 1e-6)
    np.testing.assert_array_equal(adversarial, run())


def test_spsa_optimizer_accepts_keras3_constructor():
    optimizer = cleverhans_compat.SPSAAdam(lr=0.05, num_samples=8)
    assert optimizer.lr == 0.05 and optimizer._num_samples == 4
    with pytest.raises(ValueError, match="even number.*Received: num_samples=7"):
        cleverhans_compat.SPSAAdam(num_samples=7)


def test_sanity_checks_run_under_numpy2_and_report_problems():
    model, _, _ = linear_model()
    x = mid_gray_images(4)
    adversarial = cleverhans_compat.basic_iterative_method(
        model, x, 0.05, 0.01, 5, np.inf, clip_min=0.0, clip_max=1.0
    )
    assert np.abs(adversarial.numpy() - x).max() <= 0.05 + 1e-6
    with pytest.raises(ValueError, match="step size not to exceed the budget"):
        cleverhans_compat.madry_et_al(model, x, 0.05, 0.1, 5, np.inf, clip_min=0.0, clip_max=1.0)
    with pytest.raises(ValueError, match="inputs <= clip_max"):
        cleverhans_compat.momentum_iterative_method(
            model, x + 0.6, 0.05, 0.01, 5, clip_min=0.0, clip_max=1.0
        )


def test_momentum_and_minimizing_attacks_in_search():
    model, kernel, bias = linear_model()
    x = mid_gray_images(9)
    y = np.argmax(model(x).numpy(), axis=1)
    result = robustness.minimal_perturbation(
        model,
        x,
        y,
        "l2",
        momentum=True,
        iterations=(10,),
        step_fractions=(0.25,),
        target_ranks=(),
        cw_max_iterations=60,
        cw_binary_search_steps=4,
        batch_size=4,
        progress=None,
    )
    assert set(result.per_attack) == {
        "cw_l2(iters=60,search=4)",
        "pgd_l2(step=0.25eps,iters=10,loss=margin)",
        "mim_l2(step=0.25eps,iters=10)",
    }
    exact = exact_linear_distances(x, y, kernel, bias, "l2")
    for found in result.per_attack.values():
        assert np.all(found >= exact * (1 - 1e-4))
    assert np.all(result.distances <= exact * 1.02)
    # Attacks after C&W only search below its distances: where they found something, it is smaller.
    cw_distances = result.per_attack["cw_l2(iters=60,search=4)"]
    for name, found in result.per_attack.items():
        if name != "cw_l2(iters=60,search=4)":
            assert np.all(found[np.isfinite(found)] <= cw_distances[np.isfinite(found)])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"x": np.full((3, 6, 6, 1), 1.2, np.float32)}, r"within \[0.0, 1.0\].*Received: x="),
        ({"x": np.zeros((3, 36), np.float32)}, r"NHWC.*Received: x="),
        ({"y": np.array([0, 1, 3])}, r"within \[0, 3\).*Received: y="),
        ({"y": np.array([0, 1])}, r"shape \(3,\).*Received: y="),
        ({"y": np.array([0.5, 1, 2])}, r"integer class labels.*Received: y="),
        ({"norm": "l3"}, r"norm among \('linf', 'l2', 'l1', 'l0'\). Received: norm='l3'"),
        ({"norm": "l1"}, r"norm 'l1' has no attack.*add 'fmn' and/or 'brendel_bethge' to foolbox"),
        ({"search_factor": 1.0}, r"search_factor must exceed 1. Received: search_factor=1.0"),
        ({"attacks": [attacks.pgd("l2")]}, r"Expected linf attacks only.*Received"),
    ],
)
def test_minimal_perturbation_rejects_bad_input(kwargs, message):
    model, _, _ = linear_model()
    arguments = {"x": mid_gray_images(3), "y": np.array([0, 1, 2]), "norm": "linf"}
    arguments.update(kwargs)
    with pytest.raises(ValueError, match=message):
        robustness.minimal_perturbation(model, progress=None, **arguments)


def test_attack_builders_reject_bad_schedules():
    with pytest.raises(
        ValueError, match=r"fraction of epsilon in \(0, 1\].*Received: step_fraction=2"
    ):
        attacks.pgd("linf", step_fraction=2)
    with pytest.raises(ValueError, match="positive number of iterations.*Received: iterations=0"):
        attacks.pgd("l2", iterations=0)


def test_quantile_summary_and_success_curve_handle_inf():
    distances = np.array([0.0, 0.1, 0.2, np.inf])
    assert scoring.quantile(distances, 0.5) == pytest.approx(0.15)
    assert scoring.quantile(distances, 0.75) == np.inf
    assert scoring.quantile([np.inf, np.inf], 0.5) == np.inf
    summary = scoring.summarize_distances(distances, np.array([False, True, True, True]))
    assert summary["n_clean_misclassified"] == 1 and summary["n_not_found"] == 1
    assert summary["median_clean_correct"] == pytest.approx(0.2)
    np.testing.assert_allclose(
        robustness.success_curve(distances, [0.0, 0.15, 1.0]), [0.25, 0.5, 0.75]
    )


def test_attacks_accept_saved_model_classifiers(tmp_path):
    model, kernel, bias = linear_model()
    model.export(str(tmp_path / "export"), verbose=False)
    classifier = robustness.load_classifier(str(tmp_path / "export"))
    x = mid_gray_images(6)
    y = np.argmax(model(x).numpy(), axis=1)
    result = robustness.minimal_perturbation(classifier, x, y, "linf", progress=None)
    exact = exact_linear_distances(x, y, kernel, bias, "linf")
    np.testing.assert_allclose(result.distances, exact, rtol=0.01)
    assert tf.is_tensor(classifier(x))


def test_minimal_perturbation_rejects_foreign_attack_objects():
    model, _, _ = linear_model()
    with pytest.raises(ValueError, match="EpsilonAttack or MinimizingAttack.*Received: attack="):
        robustness.minimal_perturbation(
            model, mid_gray_images(2), np.array([0, 1]), attacks=[lambda x: x], progress=None
        )


def test_spsa_attack_inside_the_search_is_verified_and_near_optimal():
    model, kernel, bias = linear_model()
    x = mid_gray_images(2)
    y = np.argmax(model(x).numpy(), axis=1)
    exact = exact_linear_distances(x, y, kernel, bias, "linf")
    result = robustness.minimal_perturbation(
        model,
        x,
        y,
        "linf",
        attacks=[attacks.spsa_linf(iterations=20, samples=32, seed=1)],
        initial_epsilon=float(exact.mean()),
        search_steps=3,
        progress=None,
    )
    assert_all_verified(model, x, y, result)
    assert np.all(result.distances >= exact * (1 - 1e-4))
    assert np.all(result.distances <= exact * 1.5)


def test_attack_loop_falls_back_to_unrolled_graph(monkeypatch):
    """Where AutoGraph cannot convert CleverHans' loop, the attack still runs (unrolled)."""
    model, kernel, bias = linear_model()
    x = mid_gray_images(4)
    y = np.argmax(model(x).numpy(), axis=1)
    original = tf.function

    def without_autograph(*args, **kwargs):
        kwargs["autograph"] = False  # as if CleverHans' source were unavailable
        return original(*args, **kwargs)

    monkeypatch.setattr(tf, "function", without_autograph)
    result = robustness.minimal_perturbation(
        model, x, y, "linf", attacks=[attacks.pgd("linf", 0.25, 10, loss="margin")], progress=None
    )
    assert_all_verified(model, x, y, result)
    np.testing.assert_allclose(
        result.distances, exact_linear_distances(x, y, kernel, bias, "linf"), rtol=0.01
    )


# ------------------------------------ the search's per-sample and per-attack numbers, in closed form

SEARCH_MARGIN = 1e-3  # AttackSettings.decision_margin: the logit margin a candidate needs during the search
FLOAT_SLACK = 2e-5
# Distances are recomputed (float64) from float32 images near 0.5, whose pixels carry a rounding
# error of ~3e-8; at the smallest distances here (~0.01) that is < 1e-5 relative. FLOAT_SLACK is
# twice that; the search's own resolution (below) is 25 times larger.


def search_resolution(factor, steps):
    """The bracket [lo, factor * lo] halved ``steps`` times, relative to lo: how far above the true
    minimum the smallest succeeding budget can lie."""
    return (factor - 1) / 2**steps


def two_class_problem(norm, count=16, seed=4):
    """A linear 2-class model, images near 0.5 it classifies correctly except the first, and the
    budgets at which an exact attack first clears the search margin (closed form)."""
    model, kernel, bias = linear_model(num_classes=2, seed=seed)
    x = mid_gray_images(count, seed=seed + 1)
    logits = x.reshape(count, -1).astype(np.float64) @ kernel + bias
    y = np.argmax(logits, axis=1)
    y[0] = 1 - y[0]  # misclassified without any perturbation: distance 0
    direction = (kernel[:, 1] - kernel[:, 0]).astype(np.float64)[None, :] * np.where(y == 0, 1.0, -1.0)[:, None]
    dual = np.abs(direction).sum(axis=1) if norm == "linf" else np.linalg.norm(direction, axis=1)
    gap = np.take_along_axis(logits, y[:, None], 1)[:, 0] - np.take_along_axis(logits, 1 - y[:, None], 1)[:, 0]
    threshold = (gap + SEARCH_MARGIN) / dual  # exact minimum with the search margin; 0 gap: the boundary
    unit = np.sign(direction) if norm == "linf" else direction / dual[:, None]
    return model, x, y, threshold, gap / dual, unit


def simulate_search(threshold, start, ceiling, factor, max_exponential_steps, steps, budgets=None):
    """The documented search on one sample whose probes succeed exactly above ``threshold``:
    (smallest succeeding budget or inf, number of probes), or None when a probe falls within
    float32 precision of the threshold (its outcome is then not predictable). The budgets probed
    are appended to ``budgets`` when it is a list."""
    failing, succeeding, exponential, bisection, probes = 0.0, np.inf, 0, 0, 0
    while True:
        bracketed = failing > 0 and np.isfinite(succeeding)
        if (bisection >= steps) if bracketed else (exponential >= max_exponential_steps):
            return succeeding, probes
        if not np.isfinite(succeeding) and failing > 0 and failing * factor >= ceiling:
            return succeeding, probes
        if np.isfinite(succeeding):
            eps = (failing + succeeding) / 2 if failing > 0 else succeeding / factor
        else:
            eps = failing * factor if failing > 0 else start
        if abs(eps / threshold - 1) < 1e-5:
            return None
        if budgets is not None:
            budgets.append(eps)
        probes += 1
        bisection, exponential = (bisection + 1, exponential) if bracketed else (bisection, exponential + 1)
        if eps > threshold:
            succeeding = eps
        else:
            failing = eps


class FlakyAtTheEnd:
    """The linear model, except that once ``flaky`` is set its logits for images near clean image
    ``index`` favour the true class by 10: a candidate that passed the search and fails the final
    re-verification (as boundary points can when logits shift with the batch)."""

    def __init__(self, model, x, y, index):
        self.model, self.x, self.y, self.index, self.flaky = model, x, y, index, False

    def __call__(self, images):
        logits = self.model(images)
        if not self.flaky:
            return logits
        nearest = np.argmin(
            np.abs(np.asarray(images)[:, None] - self.x[None]).reshape(len(images), len(self.x), -1).max(axis=2), axis=1
        )
        boost = np.where(nearest[:, None] == self.index, 10.0 * np.eye(2)[self.y[nearest]], 0.0)
        return logits + tf.constant(boost, logits.dtype)


def scaled_exact_attack(name, norm, threshold_fn, scale, fails_where):
    """A MinimizingAttack returning the exact minimal perturbation times ``scale`` (in closed form),
    and the clean image where ``fails_where(x)``."""

    def build(logits_fn):
        def run(x, y):
            distance, unit = threshold_fn(x, y)
            candidates = x + (scale * distance)[:, None, None, None] * unit.reshape(x.shape)
            return np.where(fails_where(x)[:, None, None, None], x, candidates).astype(np.float32)

        return run

    return attacks.MinimizingAttack(name, norm, build)


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_search_results_match_the_closed_form_per_sample_and_per_attack(norm):
    model, x, y, threshold, boundary, unit = two_class_problem(norm)
    index_of = {image.tobytes(): i for i, image in enumerate(x)}

    def closed_form(images, labels):
        rows = np.array([index_of[image.tobytes()] for image in images])
        return threshold[rows], unit[rows]

    first_pixel = x[:, 0, 0, 0]
    not_by_first = (first_pixel < 0.47) & (np.arange(len(x)) > 0)  # the first attack fails on these
    assert 2 <= not_by_first.sum() <= 6
    first = scaled_exact_attack("exact_x1.3", norm, closed_form, 1.3, lambda images: images[:, 0, 0, 0] < 0.47)
    second = attacks.pgd(norm, 0.25, 20, loss="margin")
    initial = float(np.median(threshold[1:])) / 2
    max_exponential_steps = 3  # reaches 2.25 x initial: the largest thresholds are not bracketed
    flaky = FlakyAtTheEnd(model, x, y, index=int(np.flatnonzero(~not_by_first)[1]))
    messages = []

    def progress(message):
        messages.append(message)
        if second.name in message:
            flaky.flaky = True  # the last attack has finished: only the final check is left

    started = time.perf_counter()
    result = robustness.minimal_perturbation(
        flaky, x, y, norm, attacks=[first, second], initial_epsilon=initial,
        max_exponential_steps=max_exponential_steps, search_steps=10, progress=progress,
    )
    wall = time.perf_counter() - started

    # The first attack: its candidates' distances exactly (1.3 x the minimum), inf where it failed.
    correct = np.arange(len(x)) > 0
    expected_first = np.where(not_by_first, np.inf, 1.3 * threshold)
    expected_first[0] = 0.0
    np.testing.assert_allclose(result.per_attack[first.name], expected_first, rtol=FLOAT_SLACK)
    # The second (PGD, exact on a linear model) starts just below the first's distance with it as
    # ceiling, or at the initial budget; its results follow the documented search step by step.
    expected_second = np.zeros(len(x))
    expected_probes = []
    for i in np.flatnonzero(correct):
        known = expected_first[i]
        start = 0.98 * known if np.isfinite(known) else initial  # search.CEILING_PROBE, documented
        simulated = simulate_search(threshold[i], start, known, 1.5, max_exponential_steps, 10)
        assert simulated is not None, f"sample {i}: a probe on the threshold; choose other data"
        expected_second[i], probes = simulated
        expected_probes.append(probes)
    np.testing.assert_allclose(result.per_attack[second.name], expected_second, rtol=FLOAT_SLACK)
    found = np.isfinite(expected_second) & correct
    assert 0 < (~found[1:]).sum() < not_by_first.sum()  # some unbroken samples, not all
    # Closed form with the search's stated resolution: never below the minimum, at most one
    # bracket-width above it.
    resolution = search_resolution(1.5, 10)
    assert np.all(result.per_attack[second.name][found] >= threshold[found] * (1 - FLOAT_SLACK))
    assert np.all(result.per_attack[second.name][found] <= threshold[found] * (1 + resolution + FLOAT_SLACK))
    assert np.all(threshold[found] > boundary[found])  # the margin makes a difference above the boundary

    # Kept per sample: the smaller distance; the flaky sample was dropped by the final check.
    dropped = flaky.index
    expected = np.minimum(expected_first, expected_second)
    expected[dropped] = np.inf
    np.testing.assert_allclose(result.distances, expected, rtol=FLOAT_SLACK)
    expected_best = np.where(np.isfinite(expected), second.name, "")
    expected_best[0] = scoring.CLEAN_MISCLASSIFIED
    assert list(result.best_attack) == list(expected_best)
    kept = np.isfinite(expected) & correct
    np.testing.assert_array_equal(result.adversarials[~kept], x[~kept])
    np.testing.assert_allclose(
        scoring.perturbation_distance(x[kept], result.adversarials[kept], norm), expected[kept], rtol=FLOAT_SLACK
    )
    np.testing.assert_array_equal(result.clean_correct, correct)
    # The reported counts and probe numbers.
    assert messages[0].startswith(f"{norm} {first.name}: found {int((~not_by_first[1:]).sum())}/15 (1 probes")
    assert f"{norm} {second.name}: found {int(found.sum())}/15 ({max(expected_probes)} probes" in messages[1]
    assert messages[2] == f"{norm}: 1 kept adversarials failed the final check; counted as not found"
    # Each progress line's "best so far" median: over all 16 samples, before the final check.
    for message, best_so_far in zip(messages, [expected_first, np.minimum(expected_first, expected_second)]):
        median = float(re.search(r"best so far: median (\S+) over 16,", message).group(1))
        assert median == pytest.approx(np.median(best_so_far), rel=1e-4)  # printed with 5 digits
    # Seconds per attack: wall-clock time spent inside this call.
    assert set(result.seconds) == {first.name, second.name}
    assert all(0 <= seconds for seconds in result.seconds.values())
    assert sum(result.seconds.values()) <= wall
    summary = result.summary()
    ordered = np.sort(expected)
    assert summary["median"] == pytest.approx((ordered[7] + ordered[8]) / 2, rel=FLOAT_SLACK)
    assert summary["n_not_found"] == int(np.isinf(expected).sum())
    assert summary["per_attack"][second.name]["n_best"] == int((expected_best == second.name).sum())


def test_search_epsilon_without_search_arguments_runs_the_attack_settings_search():
    """``search_epsilon``'s own defaults are the ``AttackSettings`` search (settings.py: one
    definition, one default everywhere; the benchmark's "same search" calls it with them): every
    sample's budgets follow the documented search with factor 1.5 (METHOD.md), 20 exponential and
    10 bisection steps, in ``run`` calls of 500 images; no budget reaches a sample's ceiling."""
    settings = AttackSettings()
    count = 1000
    rng = np.random.default_rng(7)
    threshold = np.exp(rng.uniform(np.log(0.05), np.log(20.0), count))  # below and above the start
    threshold[::97] = np.inf  # never broken: gives up after the exponential steps
    ceiling = np.full(count, np.inf)
    ceiling[1::97], threshold[1::97] = 2.25, 3.0  # after failing at 1.5 the next budget, 2.25, is the ceiling
    expected_budgets, expected_distances = [], np.empty(count)
    for i in range(count):
        while True:
            budgets = []
            simulated = simulate_search(
                threshold[i], 1.0, ceiling[i], settings.search_factor, settings.max_exponential_steps,
                settings.search_steps, budgets,
            )
            if simulated is not None:
                break
            threshold[i] *= 1.001  # a probe within float32 precision of the threshold: move it away
        expected_distances[i] = simulated[0]
        expected_budgets.append(budgets)
    x = np.zeros((count, 1, 1, 1), np.float32)
    labels = np.arange(count)  # the scripted attack tells samples apart by their label
    calls = []

    def run(images, batch_labels, eps):  # perturbs the pixel by exactly the budget
        calls.append((np.asarray(batch_labels), np.asarray(eps, np.float64)))
        return images + np.asarray(eps, np.float32)[:, None, None, None]

    def verify(images, candidates, batch_labels):  # succeeds exactly above the sample's threshold
        distance = (candidates.astype(np.float64) - images)[:, 0, 0, 0]
        return distance > threshold[batch_labels], distance

    distances, images, probes = search.search_epsilon(
        run=run, verify=verify, x=x, y=labels, start=np.ones(count), ceiling=ceiling
    )

    probed = [[] for _ in range(count)]
    for batch_labels, eps in calls:
        for label, budget in zip(batch_labels, eps):
            probed[label].append(budget)
    for i in range(count):
        np.testing.assert_allclose(probed[i], expected_budgets[i], rtol=1e-6, err_msg=f"sample {i}")
    lengths = np.array([len(b) for b in expected_budgets])
    assert lengths[::97].tolist() == [20] * len(lengths[::97])  # the never-broken samples
    assert all(max(probed[i]) < 2.25 for i in range(1, count, 97))
    assert probes == lengths.max()
    # Each probe runs its active samples in calls of settings.batch_size (500) images.
    expected_calls = []
    for k in range(lengths.max()):
        active = int(np.sum(lengths > k))
        expected_calls += [settings.batch_size] * (active // settings.batch_size)
        expected_calls += [active % settings.batch_size] if active % settings.batch_size else []
    assert [len(batch_labels) for batch_labels, _ in calls] == expected_calls
    assert expected_calls[:2] == [500, 500]
    np.testing.assert_allclose(distances, expected_distances, rtol=1e-6)
    np.testing.assert_allclose(images[:, 0, 0, 0], np.where(np.isfinite(distances), distances, 0.0), rtol=1e-6)


def test_minimal_perturbation_accepts_a_model_that_scores_one_image_at_a_time():
    """A model callable that loops over the batch (and so cannot take an empty batch) works: the
    search never asks it about zero images; the distances are those of the attack's candidates."""
    model, x, y, threshold, _, unit = two_class_problem("l2", count=5)
    index_of = {image.tobytes(): i for i, image in enumerate(x)}

    def closed_form(images, labels):
        rows = np.array([index_of[image.tobytes()] for image in images])
        return threshold[rows], unit[rows]

    def one_at_a_time(images):
        return np.concatenate([model(images[i : i + 1]).numpy() for i in range(len(images))])

    attack = scaled_exact_attack("exact_x1.1", "l2", closed_form, 1.1, lambda images: np.zeros(len(images), bool))
    result = robustness.minimal_perturbation(one_at_a_time, x, y, "l2", attacks=[attack], progress=None)
    expected = 1.1 * threshold
    expected[0] = 0.0  # misclassified without perturbation
    np.testing.assert_allclose(result.distances, expected, rtol=FLOAT_SLACK)


# ------------------------------------------------------------------- scoring: verification and summaries


def identity_logits(images):
    """Two-class logits that are the two pixels of a 1 x 1 x 2 image."""
    return tf.reshape(tf.convert_to_tensor(images, tf.float32), (-1, 2))


def test_verify_adversarial_needs_a_strict_flip_inside_the_unit_box():
    clean = np.tile(np.array([0.7, 0.3], np.float32), (6, 1)).reshape(6, 1, 1, 2)  # all of class 0
    candidates = np.array(
        [
            [0.4, 0.6],  # flips: margin 0.2
            [0.5, 0.5],  # a tie: not a flip (docstring: "a tie does not count")
            [-0.01, 0.6],  # flips, but below 0
            [0.4, 1.01],  # flips, but above 1
            [np.nan, 0.6],  # not finite
            [0.0, 1.0],  # flips on the box's edges
        ],
        np.float32,
    ).reshape(6, 1, 1, 2)
    broken, distance = robustness.verify_adversarial(
        model=identity_logits, x=clean, adversarial=candidates, y=np.zeros(6, int), norm="linf", batch_size=4
    )
    np.testing.assert_array_equal(broken, [True, False, False, False, False, True])
    difference = candidates.astype(np.float64) - clean.astype(np.float64)
    expected = [max(abs(difference[i, 0, 0, 0]), abs(difference[i, 0, 0, 1])) for i in range(6)]
    np.testing.assert_allclose(distance[[0, 1, 2, 3, 5]], np.array(expected)[[0, 1, 2, 3, 5]], rtol=1e-12)
    # With a margin, the flip must exceed it: 0.2 does not exceed 0.25, 2.0 (for [0, 1]) does.
    broken, _ = robustness.verify_adversarial(identity_logits, clean, candidates, np.zeros(6, int), "l2", min_margin=0.25)
    np.testing.assert_array_equal(broken, [False, False, False, False, False, True])


def test_perturbation_distance_of_images_without_pixels_is_zero():
    empty = np.zeros((3, 0, 0, 1), np.float32)
    for norm in ("linf", "l2"):
        np.testing.assert_array_equal(scoring.perturbation_distance(empty, empty, norm), np.zeros(3))


def test_quantile_of_one_value_is_that_value_and_of_none_is_nan():
    assert scoring.quantile([0.3], 0.25) == 0.3
    assert scoring.quantile([np.inf], 0.5) == np.inf
    assert np.isnan(scoring.quantile([], 0.5))


def test_quantiles_zero_and_one_are_the_smallest_and_largest_value():
    assert scoring.quantile([0.3, 0.1, 0.2], 0.0) == 0.1
    assert scoring.quantile([0.3, 0.1, 0.2], 1.0) == 0.3
    assert scoring.quantile([0.1, np.inf], 1.0) == np.inf


@pytest.mark.parametrize("q", [-0.5, 1.5])
def test_quantile_outside_zero_one_is_refused_not_wrapped_around(q):
    with pytest.raises(ValueError, match=rf"q must be in \[0, 1\].*q={q}"):
        scoring.quantile([0.1, 0.2, 0.3], q)


def test_summary_quartiles_and_per_attack_medians_match_numpy():
    distances = np.array([0.0, 0.31, 0.07, 0.12, 0.0, 0.55, 0.2])
    clean_correct = distances > 0
    per_attack = {"a": np.array([0.0, 0.4, 0.09, 0.12, 0.0, 0.6, 0.25]), "b": distances * 3}
    summary = scoring.summarize_distances(distances, clean_correct, per_attack, ["x"] * 7)
    for key, q in [("q25", 0.25), ("median", 0.5), ("q75", 0.75)]:
        assert summary[key] == pytest.approx(np.quantile(distances, q), rel=1e-12)
    for name, found in per_attack.items():
        assert summary["per_attack"][name]["median"] == pytest.approx(np.quantile(found, 0.5), rel=1e-12)
        assert summary["per_attack"][name]["n_found"] == 5 and summary["per_attack"][name]["n_best"] == 0


def test_epsilon_grid_starts_at_zero_and_spans_the_positive_distances_geometrically():
    distances = np.array([0.3, 0.0, 0.02, np.inf, 0.05, 0.0])
    grid = scoring.epsilon_grid(distances, points=6)
    assert len(grid) == 6 and grid[0] == 0.0
    ratios = grid[2:] / grid[1:-1]
    np.testing.assert_allclose(ratios, ratios[0], rtol=1e-12)
    assert ratios[0] > 1
    # The curve is seen before the first positive distance and after the last finite one.
    assert grid[1] < 0.02 and grid[-1] > 0.3
    curve = scoring.success_curve(distances, grid)
    np.testing.assert_allclose(curve[[0, 1, -1]], [2 / 6, 2 / 6, 5 / 6])
    # Without positive finite distances the grid is the zero budget alone.
    np.testing.assert_array_equal(scoring.epsilon_grid(np.array([0.0, np.inf, 0.0])), [0.0])
