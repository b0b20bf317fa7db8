"""The kinds that take Ground truth and Neural (model) apart, each against Eq 2 / Eq 6 by hand."""

import os

import numpy as np
import pytest

from neuroreg_tf import targets
from neuroreg_tf.neural import build_targets, predictive, simulation, target_kinds
from neuroreg_tf.study import conditions

KINDS = ("ground_truth", "ground_truth_scans", "ground_truth_model_weights", "neural_model_unweighted",
         "ground_truth_low_sf", "ground_truth_high_sf")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    tiny = simulation.simulate_experiment(preset="tiny", seed=3)
    out = str(tmp_path_factory.mktemp("decomposition"))
    scans = [target_kinds.analyse_scan(r) for r in tiny.recordings]
    predictors = predictive.fit_predictive_models(
        tiny.recordings, predictive.PredictiveModelConfig(channels=4, max_epochs=1, batch_size=32), workers=0, log=None)
    build_targets.build_targets(tiny.recordings, out, extra_kinds=KINDS, experiment=tiny, predictors=predictors,
                                make_figures=False, log=None)
    for scan, predictor in zip(scans, predictors):
        scan.predictor = predictor
    return tiny, scans, out


def eq2(responses, weights=None):
    """Eq 2 by NumPy: scale, centre over stimuli, unit rows, inner products (float64)."""
    responses = np.asarray(responses, np.float64) * (1.0 if weights is None else np.asarray(weights, np.float64))
    centred = responses - responses.mean(axis=0)
    units = centred / np.linalg.norm(centred, axis=1, keepdims=True)
    return units @ units.T


def loaded(out, kind):
    return targets.load_target(os.path.join(out, "targets", kind)).full_matrix().astype(np.float64)


def test_each_kind_is_its_formula_on_the_simulated_truth_or_the_model(built):
    tiny, scans, out = built
    ids = np.arange(len(tiny.stimuli))
    per_scan_truth = [tiny.ground_truth_rates(ids, neurons=n) for n in tiny.scan_neurons]
    weights = [s.weights * np.clip(s.predictor.test_correlation, 0, None) for s in scans]
    expected = {
        "ground_truth": eq2(tiny.ground_truth_rates(ids)),
        "ground_truth_scans": np.mean([eq2(r) for r in per_scan_truth], axis=0),
        "ground_truth_model_weights": np.mean([eq2(r, w) for r, w in zip(per_scan_truth, weights)], axis=0),
        "neural_model_unweighted": np.mean([eq2(s.predictor.predict_neutral(tiny.stimuli)) for s in scans], axis=0),
    }
    for kind, matrix in expected.items():
        np.testing.assert_allclose(loaded(out, kind), matrix, atol=2e-5, err_msg=kind)
    assert not np.allclose(expected["ground_truth_scans"], expected["ground_truth_model_weights"], atol=1e-3)


def test_the_spatial_frequency_halves_split_the_recorded_neurons_at_the_median_wavelength(built):
    tiny, _, out = built
    recorded = np.unique(np.concatenate(tiny.scan_neurons))
    wavelengths = tiny.population.wavelength[recorded]
    long = [n for n, w in zip(recorded, wavelengths) if w > np.median(wavelengths)]
    short = [n for n, w in zip(recorded, wavelengths) if w <= np.median(wavelengths)]
    assert len(long) + len(short) == len(recorded) and abs(len(long) - len(short)) <= 1
    ids = np.arange(len(tiny.stimuli))
    np.testing.assert_allclose(loaded(out, "ground_truth_low_sf"), eq2(tiny.ground_truth_rates(ids, neurons=np.array(long))), atol=2e-5)
    np.testing.assert_allclose(loaded(out, "ground_truth_high_sf"), eq2(tiny.ground_truth_rates(ids, neurons=np.array(short))), atol=2e-5)


def test_each_kind_is_a_study_condition_and_the_puzzle_study_declares_its_hypotheses():
    from neuroreg_tf import cli
    from neuroreg_tf.study import plan

    for kind in KINDS:
        condition = conditions.resolve(kind, alpha=20.0, alpha_cka=2.0)
        assert condition.kind == kind and condition.alpha == 20.0
    config = cli.load_config("study.py", "puzzle")
    names = config.conditions.split(",")
    assert set(KINDS) <= set(names) and "neural_model" in names and "none" in names
    hypotheses = plan.primary_hypotheses(config)
    assert ("ground_truth_model_weights", "ground_truth", "noise_mean") in hypotheses
