"""The gradient-masking checks: every check passes on a linear model, where gradients are exact,
and the checks that should flag do on a model whose gradient is zero everywhere."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from neuroreg_tf.robustness import attacks, diagnostics
from test_attacks import exact_linear_distances, linear_model, mid_gray_images


def _labels(model, x):
    return np.asarray(model(x)).argmax(axis=1)  # every sample correctly classified


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_a_fixed_budget_success_is_exactly_above_the_closed_form_distance(norm):
    model, kernel, bias = linear_model(num_classes=2, seed=2)  # one boundary: PGD's direction is exact
    x = mid_gray_images(12, seed=3)
    y = _labels(model, x)
    exact = exact_linear_distances(x, y, kernel, bias, norm)
    pgd = attacks.pgd(norm, step_fraction=0.25, iterations=20, loss="margin")
    for scale, expected in ((1.05, True), (0.95, False)):
        found = np.array([diagnostics.success_at(model, x[i:i + 1], y[i:i + 1], pgd, exact[i] * scale)[0]
                          for i in range(len(x))])
        if expected:
            assert found.all()
        else:
            assert not found.any(), "nothing is adversarial below the exact minimal distance"


def test_every_check_passes_on_a_linear_model():
    model, kernel, bias = linear_model(num_classes=2, seed=2)
    x = mid_gray_images(10, seed=4)
    y = _labels(model, x)
    result = diagnostics.diagnose(model, x, y, "linf", efforts=(10, 30), progress=None)
    assert result["flags"] == [], result["checks"]
    assert [c["name"] for c in result["checks"]] == ["effort", "iterative", "unbounded", "gradient_free",
                                                     "decision_based"]
    exact_median = float(np.median(exact_linear_distances(x, y, kernel, bias, "linf")))
    assert result["effort_curve"][-1]["median"] == pytest.approx(exact_median, rel=0.02)
    assert result["effort_curve"][-1]["median"] >= exact_median * (1 - 1e-6)


def _zero_gradient_model(num_classes=3):
    """A linear classifier behind tf.stop_gradient: the right answers, a zero input gradient."""
    model, _, _ = linear_model(num_classes=num_classes, seed=2)
    inputs = keras.Input(model.input_shape[1:])
    frozen = keras.layers.Lambda(lambda t: tf.stop_gradient(t) + 0.0 * t)(inputs)
    return keras.Model(inputs, model(frozen))


def test_a_model_without_gradients_is_flagged():
    model = _zero_gradient_model()
    x = mid_gray_images(6, seed=5)
    y = _labels(model, x)
    result = diagnostics.diagnose(model, x, y, "linf", efforts=(5, 10), progress=None)
    statuses = {c["name"]: c["status"] for c in result["checks"]}
    assert statuses["unbounded"] == "flag"  # PGD cannot move without a gradient
    assert statuses["gradient_free"] == "flag"  # SPSA estimates the gradient and breaks it
    assert statuses["decision_based"] == "flag"  # HopSkipJump needs labels only: far closer
    # APGD's random start alone finds (large) distances, the same at every effort: the effort
    # check passes; it catches attacks that have not converged, not a missing gradient.
    assert result["effort_curve"][0]["median"] == result["effort_curve"][1]["median"]
    gradient_free = next(c for c in result["checks"] if c["name"] == "gradient_free")
    assert gradient_free["spsa_success"] > gradient_free["pgd_success"]


def test_the_unbounded_budget_reaches_every_image():
    assert diagnostics.unbounded_epsilon("linf", (6, 6, 1)) == 1.0
    assert diagnostics.unbounded_epsilon("l2", (6, 6, 1)) == pytest.approx(6.0)  # ||1 - 0||_2 over 36 pixels


def test_the_evaluation_runs_the_checks_only_when_asked_and_its_identity_is_unchanged_otherwise():
    from neuroreg_tf.robustness import adversarial
    from neuroreg_tf.robustness.settings import preset

    model, _, _ = linear_model(num_classes=2, seed=2)
    x = mid_gray_images(4, seed=6)
    y = _labels(model, x)
    settings = preset("runlocal")
    summary, _ = adversarial.adversarial_evaluation(model, x, y, norms=("l2",), settings=settings,
                                                    diagnostics=True, progress=None)
    assert summary["l2"]["diagnostics"]["flags"] == []
    assert [c["name"] for c in summary["l2"]["diagnostics"]["checks"]] == ["effort", "iterative", "unbounded",
                                                                          "decision_based"]
    plain, _ = adversarial.adversarial_evaluation(model, x, y, norms=("l2",), settings=settings, progress=None)
    assert "diagnostics" not in plain["l2"]
    section = {"norms": ("l2",), "num_examples": 4, **settings.as_dict()}
    assert "diagnostics" not in adversarial.arguments_from_config({**section, "diagnostics": False})
    assert adversarial.arguments_from_config({**section, "diagnostics": True})["diagnostics"] is True


def test_the_study_report_counts_flagged_seeds_per_condition():
    from neuroreg_tf.study import conditions, report

    def run(seed, status):
        return {"condition": "none", "seed": seed, "status": "finished",
                "diagnostics": {"linf": {"checks": {"effort": "pass", "unbounded": status},
                                         "effort_curve": {"10": 0.02 + seed * 0.01, "100": 0.01}}}}

    none = conditions.resolve("none", alpha=20.0, alpha_cka=2.0)
    lines = report._diagnostics_lines([run(0, "pass"), run(1, "flag")], [none])
    assert lines[-1] == "| None | linf | 0/2 | 1/2 | 0.025 / 0.01 |"  # effort at 10: mean of 0.02 and 0.03


def test_transfer_from_a_working_model_flags_a_model_whose_gradient_misleads():
    source, kernel, bias = linear_model(num_classes=2, seed=2)
    masked = _zero_gradient_model(num_classes=2)  # the same function, no gradient
    x = mid_gray_images(10, seed=7)
    y = _labels(source, x)
    exact = exact_linear_distances(x, y, kernel, bias, "linf")
    epsilon = float(np.median(exact)) * 1.5
    # The masked model's own white-box search finds nothing (inf); transfer breaks what the exact
    # distances allow.
    flagged = diagnostics.transfer_check(source, masked, x, y, "linf", epsilon, np.full(len(x), np.inf))
    assert flagged["status"] == "flag" and flagged["transfer_success"] == pytest.approx(np.mean(exact <= epsilon))
    honest = diagnostics.transfer_check(source, source, x, y, "linf", epsilon, exact)
    assert honest["status"] == "pass" and honest["white_box_success"] == pytest.approx(np.mean(exact <= epsilon))
