"""End-to-end tests of evaluate.py, run in-process on tiny synthetic training workdirs."""

import csv
import importlib.util
import json
import os
import sys

import keras
import numpy as np
import pytest
from absl import flags

from neuroreg_tf.robustness import evaluation

from conftest import REPO_ROOT


@pytest.fixture(scope="module")
def evaluate_script():
    saved_argv = sys.argv
    spec = importlib.util.spec_from_file_location(
        "evaluate_script", os.path.join(REPO_ROOT, "evaluate.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    yield module
    sys.argv = saved_argv


def run_script(module, *args, variant=""):
    """Runs evaluate.py's main on ``args`` (config_flags reads override flags from sys.argv)."""
    config_path = os.path.join(REPO_ROOT, "configs", "evaluate.py") + (
        f":{variant}" if variant else ""
    )
    argv = ["evaluate.py", f"--config={config_path}", *args]
    for name in list(flags.FLAGS):
        if name.startswith("config."):
            delattr(flags.FLAGS, name)  # registered anew for each parse
    flags.FLAGS.unparse_flags()
    sys.argv = argv
    remaining = flags.FLAGS(argv)
    module.main(remaining)


def brightness_classifier(gain=1.0):
    """Two classes: class 1 when the mean pixel value exceeds 0.5.

    Its minimal perturbation is |mean - 0.5| in L-inf and 6 |mean - 0.5| in L2, whatever ``gain``.
    """
    inputs = keras.Input((6, 6, 1))
    flat = keras.layers.Flatten()(inputs)
    logits = keras.layers.Dense(2, name="logits")(flat)
    model = keras.Model(inputs, logits)
    kernel = gain * np.stack([-np.ones(36), np.ones(36)], axis=1).astype(np.float32) / 36.0
    model.get_layer("logits").set_weights([kernel, gain * np.array([0.5, -0.5], np.float32)])
    return model


def brightness_data(num_examples):
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, num_examples)
    x = np.clip(rng.normal(0.3 + 0.4 * y[:, None, None, None], 0.05, (num_examples, 6, 6, 1)), 0, 1)
    mislabelled = [i for i in (13, 17, 25) if i < num_examples]  # after the adversarial samples
    y[mislabelled] = 1 - y[mislabelled]
    return x.astype(np.float32), y


def brightness_accuracy(num_examples):
    """The brightness classifier's clean accuracy on ``brightness_data``, by NumPy."""
    x, y = brightness_data(num_examples)
    return float(np.mean((x.reshape(num_examples, -1).mean(axis=1) > 0.5) == y))


def make_workdir(path, dataset="fashion_mnist", gain=1.0):
    os.makedirs(path)
    with open(os.path.join(path, "config.json"), "w") as handle:
        json.dump({"data": {"dataset": dataset, "data_dir": None}}, handle)
    brightness_classifier(gain).export(os.path.join(path, "export"), verbose=False)
    return path


@pytest.fixture
def fake_examples(monkeypatch):
    calls = []

    def load_examples(dataset, split="test", num_examples=None, data_dir=None):
        calls.append(
            {"dataset": dataset, "split": split, "num_examples": num_examples, "data_dir": data_dir}
        )
        return brightness_data(num_examples or 50)

    monkeypatch.setattr(evaluation, "load_examples", load_examples)
    return calls


def test_evaluate_reads_dataset_from_workdir_and_writes_report(
    tmp_path, evaluate_script, fake_examples
):
    none_dir = make_workdir(str(tmp_path / "none"))
    neural_dir = make_workdir(str(tmp_path / "neural"))
    out = tmp_path / "eval"
    run_script(
        evaluate_script,
        f"--workdir={out}",
        f"--config.models=None={none_dir},Neural={neural_dir}",
        "--config.num_examples=30",
        "--config.noise.sigmas=(0.0,0.2)",
        "--config.noise.seeds=(0,1)",
    )
    assert fake_examples == [
        {"dataset": "fashion_mnist", "split": "test", "num_examples": 30, "data_dir": None}
    ]
    with open(out / "robustness.json") as handle:
        report = json.load(handle)
    assert [model["label"] for model in report["models"]] == ["None", "Neural"]
    assert report["dataset"] == "fashion_mnist"
    for model in report["models"]:
        assert model["clean_accuracy"] == brightness_accuracy(30) == 27 / 30
        assert [entry["sigma"] for entry in model["noise"]] == [0.0, 0.2]
    assert (out / "noise_robustness.png").exists()
    # Written first, as every script writes its config (the workdir contract), then the results.
    config_written = (out / "evaluate_config.json").stat().st_mtime_ns
    assert config_written <= (out / "noise_robustness.png").stat().st_mtime_ns
    assert config_written <= (out / "robustness.json").stat().st_mtime_ns


def test_evaluate_dataset_override_and_plain_path(tmp_path, evaluate_script, fake_examples):
    run_dir = make_workdir(str(tmp_path / "run"), dataset="cifar10")
    run_script(
        evaluate_script,
        f"--workdir={tmp_path / 'eval'}",
        f"--config.models={run_dir}",
        "--config.dataset=fashion_mnist",
        "--config.data_dir=/somewhere",
        "--config.noise.sigmas=(0.1,)",
        "--config.noise.seeds=(3,)",
    )
    assert fake_examples[0]["dataset"] == "fashion_mnist"
    assert fake_examples[0]["data_dir"] == "/somewhere"
    with open(tmp_path / "eval" / "robustness.json") as handle:
        report = json.load(handle)
    assert report["models"][0]["label"] == "run"
    # A single model also gets the top-level keys.
    count = fake_examples[0]["num_examples"]
    assert report["clean_accuracy"] == brightness_accuracy(count) == (count - 3) / count


def test_evaluate_without_dataset_information_fails_clearly(
    tmp_path, evaluate_script, fake_examples
):
    bare = tmp_path / "bare"
    bare.mkdir()
    brightness_classifier().save(str(bare / "classifier.keras"))
    with pytest.raises(ValueError, match="Cannot tell which dataset.*--config.dataset"):
        run_script(evaluate_script, f"--workdir={tmp_path / 'eval'}", f"--config.models={bare}")


def test_evaluate_adversarial_writes_medians_csv_and_plot(tmp_path, evaluate_script, fake_examples, saved_figures):
    model_a = make_workdir(str(tmp_path / "a"))
    model_b = make_workdir(str(tmp_path / "b"), gain=3.0)
    out = tmp_path / "eval"
    run_script(
        evaluate_script,
        f"--workdir={out}",
        f"--config.models=A={model_a},B={model_b}",
        "--config.adversarial.num_examples=12",
        "--config.adversarial.enabled=True",
        variant="runlocal",
    )
    with open(out / "robustness.json") as handle:
        report = json.load(handle)
    assert fake_examples[0]["num_examples"] == 200  # the runlocal config
    x, _ = brightness_data(200)
    exact_linf = np.abs(x[:12].reshape(12, -1).mean(axis=1) - 0.5)
    for model in report["models"]:
        linf, l2 = model["adversarial"]["linf"], model["adversarial"]["l2"]
        assert linf["n"] == 12 and linf["n_clean_misclassified"] == 0 and linf["n_not_found"] == 0
        # runlocal bisects 6 times after a x1.5 bracket: about 1% resolution.
        assert np.median(exact_linf) * (1 - 1e-4) <= linf["median"] <= np.median(exact_linf) * 1.02
        assert (
            6 * np.median(exact_linf) * (1 - 1e-4)
            <= l2["median"]
            <= 6 * np.median(exact_linf) * 1.02
        )
        assert linf["q25"] <= linf["median"] <= linf["q75"]
        assert set(l2["per_attack"]) >= {"cw_l2(iters=50,search=3)"}
        assert len(linf["success_curve"]["epsilon"]) == len(linf["success_curve"]["fraction"])
    with open(out / "adversarial_per_sample.csv") as handle:
        rows = handle.read().splitlines()
    assert (
        rows[0] == "model,index,label,clean_correct,linf_distance,linf_attack,l2_distance,l2_attack"
    )
    assert len(rows) == 1 + 2 * 12
    # The plot shows, per norm and model, the fraction of the CSV's distances within each budget.
    distances = {}
    for row in csv.reader(rows[1:]):
        label, _, _, _, linf_distance, _, l2_distance, _ = row
        distances.setdefault(label, {"linf": [], "l2": []})
        distances[label]["linf"].append(float(linf_distance))
        distances[label]["l2"].append(float(l2_distance))
    figure = saved_figures["adversarial_robustness.png"]
    for axes, norm in zip(figure.axes, ("linf", "l2")):
        assert [line.get_label() for line in axes.get_lines()[:2]] == [
            f"{label} (median {report['models'][index]['adversarial'][norm]['median']:.4g})"
            for index, label in enumerate(("A", "B"))
        ]
        for line, label in zip(axes.get_lines(), ("A", "B")):
            budgets, fractions = line.get_xydata().T
            expected = [np.mean(np.array(distances[label][norm]) <= budget) for budget in budgets]
            np.testing.assert_allclose(fractions, expected, rtol=0, atol=1e-12)
            assert budgets.min() < min(distances[label][norm]) and budgets.max() >= max(distances[label][norm])


@pytest.mark.parametrize("variant", [None, "paper", "runlocal"])
def test_config_adversarial_section_is_the_attack_settings_of_its_variant(variant):
    from neuroreg_tf.errors import ConfigError
    from neuroreg_tf.robustness import adversarial, settings

    spec = importlib.util.spec_from_file_location(
        "evaluate_config", os.path.join(REPO_ROOT, "configs", "evaluate.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config(variant)
    arguments = adversarial.arguments_from_config(config.adversarial)
    assert arguments["settings"] == settings.preset(variant)
    assert arguments["norms"] == ("linf", "l2")
    assert config.adversarial.enabled is False
    assert len(config.noise.seeds) >= 2
    with config.adversarial.unlocked():
        config.adversarial.step_size = 0.1
    with pytest.raises(ConfigError, match="Unknown attack settings \\['step_size'\\]"):
        adversarial.arguments_from_config(config.adversarial)
    with pytest.raises(ValueError, match="no variant 'gpu'.*Received: configs/evaluate.py:gpu"):
        module.get_config("gpu")
