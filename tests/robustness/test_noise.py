"""Tests for classifier loading and Gaussian-noise robustness (neuroreg_tf.robustness)."""

import json
import os

import keras
import numpy as np
import pytest

from neuroreg_tf import robustness
from neuroreg_tf.robustness import report

IMAGE_SHAPE = (8, 8, 1)


def quadrant_classifier(name="quadrant"):
    """A fixed linear classifier: the class is the brightest of the four 4x4 quadrants."""
    inputs = keras.Input(IMAGE_SHAPE)
    flat = keras.layers.Flatten()(inputs)
    logits = keras.layers.Dense(4, name="logits")(flat)
    model = keras.Model(inputs, logits, name=name)
    kernel = np.zeros((64, 4), np.float32)
    for index in range(64):
        row, col = divmod(index, 8)
        kernel[index, 2 * (row >= 4) + (col >= 4)] = 1.0
    model.get_layer("logits").set_weights([kernel, np.zeros(4, np.float32)])
    return model


def quadrant_data(num_examples=64, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 4, num_examples)
    images = rng.uniform(0.2, 0.4, (num_examples,) + IMAGE_SHAPE).astype(np.float32)
    for image, label in zip(images, labels):
        row, col = divmod(int(label), 2)
        image[4 * row : 4 * row + 4, 4 * col : 4 * col + 4] += 0.15
    return images, labels


def test_clean_accuracy_of_fixed_classifier_is_one():
    x, y = quadrant_data()
    assert robustness.clean_accuracy(quadrant_classifier(), x, y, batch_size=10) == 1.0


def test_noise_robustness_decreases_and_is_deterministic():
    x, y = quadrant_data(96)
    model = quadrant_classifier()
    sigmas = (0.0, 0.1, 1.0, 3.0)
    first = robustness.noise_robustness(
        model, x, y, sigmas, seeds=(0, 1, 2), batch_size=32, progress=None
    )
    again = robustness.noise_robustness(
        model, x, y, sigmas, seeds=(0, 1, 2), batch_size=7, progress=None
    )
    assert first == again  # same seeds -> same noise, whatever the batch size
    assert [entry["sigma"] for entry in first] == list(sigmas)
    accuracies = [entry["accuracy"] for entry in first]
    assert accuracies[0] == 1.0 and first[0]["sem"] == 0.0
    assert accuracies[-1] < 0.7 < accuracies[1]
    assert all(len(entry["accuracies_per_seed"]) == 3 for entry in first[1:])
    high = first[-1]["accuracies_per_seed"]
    assert first[-1]["sem"] == pytest.approx(np.std(high, ddof=1) / np.sqrt(3))
    other_seeds = robustness.noise_robustness(model, x, y, (3.0,), seeds=(5, 6, 7), progress=None)
    assert other_seeds[0]["accuracies_per_seed"] != high


def test_noise_is_clipped_to_valid_range():
    x, _ = quadrant_data(4)
    noisy = robustness.add_gaussian_noise(x, 2.0, seed=0)
    assert noisy.min() == 0.0 and noisy.max() == 1.0
    np.testing.assert_array_equal(noisy, robustness.add_gaussian_noise(x, 2.0, seed=0))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"x": np.full((2, 8, 8, 1), 1.5, np.float32)}, r"within \[0.0, 1.0\].*Received: x="),
        ({"x": np.zeros((2, 8, 8), np.float32)}, r"NHWC.*Received: x="),
        ({"y": np.array([0, 7])}, r"within \[0, 4\).*Received: y="),
        ({"y": np.array([0, 1, 2])}, r"shape \(2,\).*Received: y="),
        ({"sigmas": (-0.1,)}, r"non-negative.*Received: sigmas="),
        ({"seeds": 5}, r"list of integer seeds.*Received: seeds="),
    ],
)
def test_noise_robustness_rejects_bad_input(kwargs, message):
    arguments = {"x": np.zeros((2,) + IMAGE_SHAPE, np.float32), "y": np.array([0, 1])}
    arguments.update(kwargs)
    with pytest.raises(ValueError, match=message):
        robustness.noise_robustness(quadrant_classifier(), progress=None, **arguments)


def write_workdir(path, model, dataset="fashion_mnist"):
    """Writes what train.py leaves in a workdir, for a plain classifier."""
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, "config.json"), "w") as handle:
        json.dump({"data": {"dataset": dataset, "data_dir": None}}, handle)
    model.save(os.path.join(path, "classifier.keras"))
    model.export(os.path.join(path, "export"), verbose=False)
    return path


def test_load_classifier_from_every_artifact_gives_identical_logits(tmp_path):
    model = quadrant_classifier()
    workdir = write_workdir(str(tmp_path / "run"), model)
    x, _ = quadrant_data(5)
    expected = model(x).numpy()
    for path, kind in [
        (workdir, "saved_model"),
        (os.path.join(workdir, "export"), "saved_model"),
        (os.path.join(workdir, "classifier.keras"), "keras"),
    ]:
        classifier = robustness.load_classifier(path)
        assert classifier.kind == kind
        np.testing.assert_allclose(classifier(x).numpy(), expected, rtol=1e-5, atol=1e-5)
    os.rename(os.path.join(workdir, "export"), os.path.join(workdir, "old_export"))
    assert robustness.load_classifier(workdir).kind == "keras"


def test_load_classifier_errors_say_what_was_expected(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist.*Expected a SavedModel"):
        robustness.load_classifier(str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="holds no classifier.*Received: path="):
        robustness.load_classifier(str(tmp_path))
    bad_file = tmp_path / "weights.h5"
    bad_file.write_text("")
    with pytest.raises(ValueError, match="Unknown classifier file.*Received: path="):
        robustness.load_classifier(str(bad_file))


def test_evaluate_models_writes_json_plot_and_table(tmp_path, capsys):
    x, y = quadrant_data(40)
    weak = quadrant_classifier("weak")
    kernel, bias = weak.get_layer("logits").get_weights()
    weak.get_layer("logits").set_weights([kernel * 0.2, bias])  # same decisions, same ranking
    strong_dir = write_workdir(str(tmp_path / "strong"), quadrant_classifier())
    messages = []
    result = robustness.evaluate_models(
        {"Strong": strong_dir, "Weak": weak},
        x,
        y,
        sigmas=(0.0, 0.5),
        seeds=(0, 1),
        batch_size=16,
        workdir=str(tmp_path / "eval"),
        metadata={"dataset": "synthetic"},
        progress=messages.append,
    )
    with open(tmp_path / "eval" / report.JSON_FILENAME) as handle:
        written = json.load(handle)
    assert [model["label"] for model in written["models"]] == ["Strong", "Weak"]
    assert written["models"][0]["clean_accuracy"] == 1.0
    assert written["models"][0]["path"] == strong_dir
    assert {"sigma", "accuracy", "sem"} <= set(written["models"][1]["noise"][1])
    assert "clean_accuracy" not in written  # several models: one entry each
    assert written["dataset"] == "synthetic" and written["num_examples"] == 40
    assert (tmp_path / "eval" / report.NOISE_PLOT_FILENAME).stat().st_size > 1000
    assert result["models"][1]["noise"] == written["models"][1]["noise"]
    table = "\n".join(messages)
    assert "Strong" in table and "Weak" in table and "s=0.5" in table


def test_single_model_report_has_top_level_keys(tmp_path):
    x, y = quadrant_data(20)
    result = robustness.evaluate_models(
        [("Only", quadrant_classifier())], x, y, sigmas=(0.0, 0.2), seeds=(0,), progress=None
    )
    assert result["clean_accuracy"] == 1.0
    assert result["noise"][0]["sigma"] == 0.0


def test_parse_model_specs():
    assert robustness.parse_model_specs("None=runs/a, Neural=runs/b") == [
        ("None", "runs/a"),
        ("Neural", "runs/b"),
    ]
    assert robustness.parse_model_specs("runs/demo/none/") == [("none", "runs/demo/none/")]
    with pytest.raises(ValueError, match="at least one model.*Received: models="):
        robustness.parse_model_specs("")
    with pytest.raises(ValueError, match="distinct.*Received: models="):
        robustness.parse_model_specs("A=x,A=y")


@keras.saving.register_keras_serializable(package="neuroreg_tf_tests")
class TrainingModelStandIn(keras.Model):
    """Like the training model: a registered subclass whose ``.classifier`` is the classifier."""

    def __init__(self, classifier, **kwargs):
        super().__init__(**kwargs)
        self.classifier = classifier

    def call(self, images):
        return self.classifier(images) * 0.0  # anything but the classifier's logits

    def get_config(self):
        return {
            **super().get_config(),
            "classifier": keras.saving.serialize_keras_object(self.classifier),
        }

    @classmethod
    def from_config(cls, config):
        config["classifier"] = keras.saving.deserialize_keras_object(config["classifier"])
        return cls(**config)


def test_load_classifier_takes_classifier_of_training_model(tmp_path):
    classifier = quadrant_classifier()
    wrapper = TrainingModelStandIn(classifier)
    x, _ = quadrant_data(3)
    wrapper(x)
    wrapper.save(str(tmp_path / "model.keras"))
    loaded = robustness.load_classifier(str(tmp_path))  # a workdir with only model.keras
    assert loaded.source.endswith("model.keras")
    np.testing.assert_allclose(loaded(x).numpy(), classifier(x).numpy(), rtol=1e-5, atol=1e-6)
