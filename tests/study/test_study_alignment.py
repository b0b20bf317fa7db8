"""Each run's brain alignment in the study: measured once per model, in the report beside robustness."""

import os

import keras
import numpy as np
import pytest
from scipy import stats as scipy_stats

from neuroreg_tf import workdir
from neuroreg_tf.fileio import sha256_tree, write_json_atomic
from neuroreg_tf.models import resnet
from neuroreg_tf.neural import alignment, build_config
from neuroreg_tf.study import alignment as study_alignment
from neuroreg_tf.study import report
from test_report_metrics import _hand_written_study, _report


def _classifier(run):
    keras.utils.set_random_seed(100 * len(run.condition.name) + run.seed)  # a different network per run
    return resnet.ResNet18(num_classes=10, width=0.125)


@pytest.mark.slow  # nine small ResNets built, saved and read out (about a minute)
def test_alignment_is_measured_once_per_model_and_reported_beside_robustness(tmp_path):
    config, study_plan, names = _hand_written_study(tmp_path, classifiers=_classifier)
    config.alignment.update(n_train=120, n_test=12, n_repeats=4, n_neurons=12)
    assert study_alignment.applies(config)
    finished = {run.key for run in study_plan.runs}
    lines = []
    assert study_alignment.run_alignments(config, study_plan, finished, progress=lines.append) == 9
    assert any(line.startswith("alignment 9/9") for line in lines)
    assert study_alignment.run_alignments(config, study_plan, finished, progress=None) == 0  # kept

    # One run's result is the readout of its own classifier against the build's SIMULATED neurons.
    run = study_plan.runs[4]
    stored = study_alignment.read_alignment(study_plan, run)
    settings = study_alignment.settings_of(config)
    responses = alignment.simulated_responses(build_config.simulation_arguments(config.build.simulation), settings)
    model = keras.models.load_model(os.path.join(run.directory, "classifier.keras"), compile=False)
    direct = alignment.network_alignment(model, resnet.paper_tap_layers(model), responses, settings)
    assert stored["alignment"] == direct["alignment"] and stored["best_layer"] == direct["best_layer"]

    result, rows, markdown = _report(config, study_plan)
    by_run = {(r["condition"], int(r["seed"])): r for r in rows}
    for record in result["runs"]:
        expected = study_alignment.read_alignment(study_plan, study_plan.runs[[r.key for r in study_plan.runs].index(
            f"{record['condition']}/seed_{record['seed']}")])["alignment"]
        assert record["alignment"] == expected
        assert float(by_run[(record["condition"], record["seed"])]["alignment"]) == expected
    for name in names:
        values = [r["alignment"] for r in result["runs"] if r["condition"] == name]
        assert np.isclose(result["summaries"][name]["alignment"]["mean"], np.mean(values))
    pairs = [(r["alignment"], r["linf_median"]) for r in result["runs"]]
    rho = scipy_stats.spearmanr(*zip(*pairs))
    assert np.isclose(result["alignment_vs_robustness"]["linf_median"]["rho_runs"], rho.statistic)
    assert "## Brain alignment" in markdown and "Spearman rho" in markdown
    assert os.path.isfile(os.path.join(study_plan.workdir, "figures", "alignment.png"))

    # A retrained run (another model) is measured again; its old number is not reported meanwhile.
    keras.utils.set_random_seed(999)
    resnet.ResNet18(num_classes=10, width=0.125).save(os.path.join(run.directory, "classifier.keras"))
    rescored = workdir.read_identity(run.evaluation_directory)  # as its new evaluation records it
    rescored["models"][0]["artifact"] = sha256_tree(os.path.join(run.directory, "classifier.keras"))
    rescored = {k: v for k, v in rescored.items() if k != "fingerprint"}
    write_json_atomic(os.path.join(run.evaluation_directory, workdir.IDENTITY),
                      {**rescored, "fingerprint": workdir.fingerprint_of(rescored)})
    assert study_alignment.read_alignment(study_plan, run) is None
    assert study_alignment.run_alignments(config, study_plan, finished, progress=None) == 1


def test_a_study_of_recorded_data_or_with_alignment_off_measures_none(tmp_path):
    config, study_plan, _ = _hand_written_study(tmp_path)
    config.alignment.enabled = False
    assert not study_alignment.applies(config)
    config.alignment.enabled = True
    config.build.recordings = "/data/scan1.zip"
    assert not study_alignment.applies(config)
    result, _, markdown = _report(config, study_plan)
    assert result["alignment_vs_robustness"] is None and "Brain alignment" not in markdown
    assert "alignment" not in report.metric_names(result["runs"])


def test_a_run_whose_classifier_cannot_be_read_is_left_out_with_the_reason(tmp_path):
    config, study_plan, _ = _hand_written_study(tmp_path)  # placeholder classifier files
    config.alignment.update(n_train=60, n_test=6, n_repeats=2, n_neurons=4)
    lines = []
    finished = {study_plan.runs[0].key}
    assert study_alignment.run_alignments(config, study_plan, finished, progress=lines.append) == 1
    assert any("none/seed_0: not measured" in line for line in lines), lines
    assert study_alignment.read_alignment(study_plan, study_plan.runs[0]) is None
