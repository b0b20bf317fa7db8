"""Tests for classifier loading and Gaussian-noise robustness (neuroreg_tf.robustness)."""

import json
import os
import shutil

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


def quadrant_kernel():
    """The quadrant classifier's weights, for the NumPy oracles."""
    return quadrant_classifier().get_layer("logits").get_weights()


def numpy_accuracy(images, labels):
    """Accuracy of the quadrant classifier, by NumPy in float64."""
    kernel, bias = quadrant_kernel()
    logits = images.reshape(len(images), -1).astype(np.float64) @ kernel + bias
    return float(np.mean(np.argmax(logits, axis=1) == labels))


def high_contrast_data(num_examples=90, seed=2):
    """Dark images (0..0.15) with one bright quadrant (0.85..1): clipping noise at 0 and 1 lowers
    the contrast between quadrants, so clipped and unclipped noise give different accuracies."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 4, num_examples)
    images = rng.uniform(0.0, 0.15, (num_examples,) + IMAGE_SHAPE).astype(np.float32)
    for image, label in zip(images, labels):
        row, col = divmod(int(label), 2)
        image[4 * row : 4 * row + 4, 4 * col : 4 * col + 4] = rng.uniform(0.85, 1.0, (4, 4, 1))
    return images, labels


def expected_noise_accuracies(x, y, sigmas, seeds, clip=True, seed_of=lambda seed: seed, shared=True):
    """The documented noise model by NumPy: per seed, z from default_rng(seed) over the whole set in
    example order, shared by the sigmas; accuracy of clip(x + sigma z, 0, 1). The keyword arguments
    describe the bugs this oracle must tell apart (no clip, one seed for all, fresh z per sigma)."""
    accuracies = {}
    for seed in seeds:
        rng = np.random.default_rng(seed_of(seed))
        z = rng.standard_normal(x.shape, dtype=np.float32)
        for sigma in sigmas:
            if not shared:
                z = rng.standard_normal(x.shape, dtype=np.float32)
            noisy = x + np.float32(sigma) * z
            accuracies[(seed, sigma)] = numpy_accuracy(np.clip(noisy, 0.0, 1.0) if clip else noisy, y)
    return accuracies


def test_clean_accuracy_counts_correct_predictions():
    x, y = quadrant_data(40)
    y = y.copy()
    y[[3, 11, 12, 30]] = (y[[3, 11, 12, 30]] + 1) % 4  # four examples the classifier gets wrong
    expected = numpy_accuracy(x, y)
    assert expected == 36 / 40
    assert robustness.clean_accuracy(quadrant_classifier(), x, y, batch_size=7) == expected


def test_noise_curve_matches_numpy_per_seed():
    x, y = high_contrast_data()
    y = y.copy()
    y[:9] = (y[:9] + 1) % 4  # the clean accuracy is 0.9, not a trivial 1
    sigmas, seeds = (0.0, 0.4, 0.8, 1.5), (0, 3, 7)
    noisy_sigmas = sigmas[1:]
    expected = expected_noise_accuracies(x, y, noisy_sigmas, seeds)
    # The data tell the documented noise model from the bugs it rules out.
    assert expected != expected_noise_accuracies(x, y, noisy_sigmas, seeds, clip=False)
    assert expected != expected_noise_accuracies(x, y, noisy_sigmas, seeds, seed_of=lambda seed: seeds[0])
    assert expected != expected_noise_accuracies(x, y, noisy_sigmas, seeds, shared=False)

    messages = []
    result = robustness.noise_robustness(
        quadrant_classifier(), x, y, sigmas, seeds=seeds, batch_size=32, progress=messages.append
    )
    assert [entry["sigma"] for entry in result] == list(sigmas)
    assert result[0]["accuracies_per_seed"] == [numpy_accuracy(x, y)] == [0.9]
    assert result[0]["accuracy"] == 0.9 and result[0]["sem"] == 0.0
    for entry in result[1:]:
        per_seed = [expected[(seed, entry["sigma"])] for seed in seeds]
        assert entry["accuracies_per_seed"] == per_seed  # counts / n: exact
        mean = sum(per_seed) / len(per_seed)
        sem = (sum((a - mean) ** 2 for a in per_seed) / (len(per_seed) - 1)) ** 0.5 / len(per_seed) ** 0.5
        assert entry["accuracy"] == pytest.approx(mean, rel=1e-12)
        assert entry["sem"] == pytest.approx(sem, rel=1e-12)
    # One line per seed, counting seeds from 1 and listing only the noisy levels (sigma 0 is the
    # clean accuracy, computed once, not per seed).
    assert messages == [
        f"noise seed {seed} ({number}/{len(seeds)}): accuracy by sigma {{"
        + ", ".join(f"{sigma:g}: {expected[(seed, sigma)]:.3f}" for sigma in noisy_sigmas)
        + "}"
        for number, seed in enumerate(seeds, start=1)
    ]


def test_noise_curve_is_independent_of_batch_size_and_order_of_sigmas():
    x, y = quadrant_data(50)
    model = quadrant_classifier()
    first = robustness.noise_robustness(model, x, y, (0.3, 0.0, 0.1), seeds=(1, 2), batch_size=50, progress=None)
    again = robustness.noise_robustness(model, x, y, (0.1, 0.3), seeds=(1, 2), batch_size=3, progress=None)
    assert [entry["sigma"] for entry in first] == [0.3, 0.0, 0.1]
    assert first[0] == again[1] and first[2] == again[0]


def test_noise_is_clipped_to_valid_range():
    x, _ = high_contrast_data(4)
    z = np.random.default_rng(5).standard_normal(x.shape, dtype=np.float32)
    noisy = robustness.add_gaussian_noise(x, 0.7, seed=5)
    np.testing.assert_array_equal(noisy, np.clip(x + np.float32(0.7) * z, 0.0, 1.0))
    assert np.mean(noisy == 0.0) > 0.1 and np.mean(noisy == 1.0) > 0.01  # the clip is exercised


def test_default_noise_levels_and_seeds_are_those_of_the_evaluate_config():
    """Called without ``sigmas``/``seeds``, the library evaluates what ``python evaluate.py`` does by
    default: the levels and seeds documented in configs/evaluate.py (listed by ``--help``; 5 seeds
    as in the paper, METHOD.md), so API and command-line numbers agree."""
    from neuroreg_tf import cli

    config = cli.load_config("evaluate.py")
    sigmas, seeds = list(config.noise.sigmas), list(config.noise.seeds)
    x, y = high_contrast_data(40)
    noisy_sigmas = [sigma for sigma in sigmas if sigma > 0]
    expected = expected_noise_accuracies(x, y, noisy_sigmas, seeds)
    messages = []
    result = robustness.noise_robustness(quadrant_classifier(), x, y, progress=messages.append)
    assert [entry["sigma"] for entry in result] == sigmas
    assert result[sigmas.index(0.0)]["accuracies_per_seed"] == [numpy_accuracy(x, y)]
    for entry in result:
        if entry["sigma"] > 0:
            assert entry["accuracies_per_seed"] == [expected[(seed, entry["sigma"])] for seed in seeds]
    assert [message.split(":")[0] for message in messages] == [
        f"noise seed {seed} ({number}/{len(seeds)})" for number, seed in enumerate(seeds, start=1)
    ]


def test_model_is_called_on_non_empty_batches_of_at_most_batch_size_images():
    """``batch_size`` is the number of images per forward pass (docstrings): a model that takes one
    image at a time, computing logits image by image, works with ``batch_size=1``."""
    kernel, bias = quadrant_kernel()
    batch_sizes = []

    def one_image_at_a_time(images):
        images = np.asarray(images)
        batch_sizes.append(len(images))
        return np.stack([image.reshape(-1) @ kernel + bias for image in images])  # fails on 0 images

    x, y = quadrant_data(5)
    y = y.copy()
    y[2] = (y[2] + 1) % 4
    assert robustness.clean_accuracy(one_image_at_a_time, x, y, batch_size=1) == numpy_accuracy(x, y) == 0.8
    result = robustness.noise_robustness(
        one_image_at_a_time, x, y, sigmas=(0.0, 0.2), seeds=(0,), batch_size=1, progress=None
    )
    assert result[0]["accuracy"] == 0.8
    assert result[1]["accuracies_per_seed"] == [expected_noise_accuracies(x, y, (0.2,), (0,))[(0, 0.2)]]
    assert set(batch_sizes) == {1}


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"x": np.full((2, 8, 8, 1), 1.5, np.float32)}, r"within \[0.0, 1.0\].*Received: x="),
        ({"x": np.zeros((2, 8, 8), np.float32)}, r"NHWC.*Received: x="),
        ({"y": np.array([0, 7])}, r"within \[0, 4\).*Received: y="),
        ({"y": np.array([0, 1, 2])}, r"shape \(2,\).*Received: y="),
        ({"sigmas": (-0.1,)}, r"non-negative.*Received: sigmas="),
        ({"sigmas": ()}, r"non-empty list.*Received: sigmas=\(\)"),
        ({"sigmas": (0.1, float("nan"))}, r"finite.*Received: sigmas=\(0.1, nan\)"),
        ({"sigmas": [[0.1, 0.2]]}, r"list of finite.*Received: sigmas=\[\[0.1, 0.2\]\]"),
        ({"seeds": 5}, r"list of integer seeds.*Received: seeds="),
        ({"seeds": ()}, r"non-empty list.*Received: seeds=\[\]"),
        ({"seeds": (0, -1)}, r"non-negative integers. Received: seeds=\[0, -1\]"),
        ({"seeds": (True,)}, r"non-negative integers. Received: seeds=\[True\]"),
        ({"seeds": (0, 1.5)}, r"non-negative integers. Received: seeds=\[0, 1.5\]"),
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


def plotted_noise_curves(figure):
    """label -> (sigmas, accuracies, sems) as drawn by ``report.plot_noise``'s error bars."""
    (axes,) = figure.axes
    curves = {}
    for container in axes.containers:
        line, _, (bars,) = container.lines
        sigmas, accuracies = line.get_xydata().T
        sems = [(segment[1, 1] - segment[0, 1]) / 2 for segment in bars.get_segments()]
        curves[container.get_label()] = (list(sigmas), list(accuracies), sems)
    return curves


def test_evaluate_models_writes_json_plot_and_table(tmp_path, saved_figures):
    x, y = high_contrast_data(40)
    y = y.copy()
    y[:4] = (y[:4] + 1) % 4
    weak = quadrant_classifier("weak")
    kernel, _ = weak.get_layer("logits").get_weights()
    weak_bias = np.array([2.0, 0.0, 0.0, 0.0], np.float32)  # leans to class 0: worse under noise
    weak.get_layer("logits").set_weights([kernel * 0.2, weak_bias])
    strong_dir = write_workdir(str(tmp_path / "strong"), quadrant_classifier())
    messages = []
    sigmas, seeds = (0.0, 0.5, 1.0), (0, 3)  # seeds whose accuracies differ: SEMs above 0
    result = robustness.evaluate_models(
        {"Strong": strong_dir, "Weak": weak},
        x,
        y,
        sigmas=sigmas,
        seeds=seeds,
        batch_size=16,
        workdir=str(tmp_path / "eval"),
        metadata={"dataset": "synthetic"},
        progress=messages.append,
    )
    with open(tmp_path / "eval" / report.JSON_FILENAME) as handle:
        written = json.load(handle)
    assert [model["label"] for model in written["models"]] == ["Strong", "Weak"]
    assert written["models"][0]["path"] == strong_dir
    assert "clean_accuracy" not in written  # several models: one entry each
    assert written["dataset"] == "synthetic" and written["num_examples"] == 40
    weights = {"Strong": quadrant_kernel(), "Weak": (kernel * 0.2, weak_bias)}
    for model in written["models"]:
        def accuracy(images, model_weights=weights[model["label"]]):
            logits = images.reshape(len(images), -1).astype(np.float64) @ model_weights[0] + model_weights[1]
            return float(np.mean(np.argmax(logits, axis=1) == y))

        assert model["clean_accuracy"] == accuracy(x)
        for entry in model["noise"][1:]:
            per_seed = [
                accuracy(np.clip(x + np.float32(entry["sigma"]) * np.random.default_rng(seed).standard_normal(x.shape, dtype=np.float32), 0, 1))
                for seed in seeds
            ]
            assert entry["accuracies_per_seed"] == per_seed
        assert model["noise"][2]["sem"] > 0
    clean = [model["clean_accuracy"] for model in written["models"]]
    noisy = [model["noise"][1]["accuracy"] for model in written["models"]]
    assert clean[0] == clean[1] == 0.9 and noisy[0] > noisy[1]  # the two curves differ
    assert result["models"][1]["noise"] == written["models"][1]["noise"]
    # The figure shows the report's numbers: one error-bar line per model.
    curves = plotted_noise_curves(saved_figures[report.NOISE_PLOT_FILENAME])
    assert list(curves) == ["Strong", "Weak"]
    for model in written["models"]:
        plotted_sigmas, plotted_accuracies, plotted_sems = curves[model["label"]]
        assert plotted_sigmas == [entry["sigma"] for entry in model["noise"]]
        assert plotted_accuracies == pytest.approx([entry["accuracy"] for entry in model["noise"]], abs=1e-12)
        assert plotted_sems == pytest.approx([entry["sem"] for entry in model["noise"]], abs=1e-12)
    # The printed table: clean accuracy, then accuracy +- SEM per sigma > 0, per model.
    table = "\n".join(messages).splitlines()
    for model in written["models"]:
        (row,) = [line for line in table if line.startswith(model["label"] + " ")]
        cells = [f"{entry['accuracy']:.3f}+-{entry['sem']:.3f}" for entry in model["noise"][1:]]
        assert row.split() == [model["label"], f"{model['clean_accuracy']:.3f}", *cells]


def test_single_model_report_has_top_level_keys(tmp_path):
    x, y = quadrant_data(20)
    y = y.copy()
    y[0] = (y[0] + 1) % 4
    result = robustness.evaluate_models(
        [("Only", quadrant_classifier())], x, y, sigmas=(0.0, 0.2), seeds=(0,), progress=None
    )
    assert result["clean_accuracy"] == numpy_accuracy(x, y) == 0.95
    assert result["noise"] == result["models"][0]["noise"]
    assert result["noise"][0] == {"sigma": 0.0, "accuracy": 0.95, "sem": 0.0, "accuracies_per_seed": [0.95]}


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


def _flip(path, count=256):
    data = bytearray(open(path, "rb").read())
    middle = len(data) // 2
    for offset in range(middle, min(middle + count, len(data))):
        data[offset] ^= 0xFF
    open(path, "wb").write(bytes(data))


@pytest.mark.parametrize("artifact", ["classifier.keras", "export/saved_model.pb", "export/variables/variables.data-00000-of-00001"])
def test_a_damaged_model_file_is_one_message_naming_it(tmp_path, artifact):
    from neuroreg_tf.errors import InputError

    workdir = write_workdir(str(tmp_path / "run"), quadrant_classifier())
    if artifact == "classifier.keras":  # export/ would be preferred
        shutil.rmtree(os.path.join(workdir, "export"))
    else:
        os.remove(os.path.join(workdir, "classifier.keras"))
    _flip(os.path.join(workdir, artifact))
    loaded = os.path.join(workdir, artifact.split("/")[0])
    with pytest.raises(InputError, match=rf"{loaded} cannot be loaded as a classifier .*damaged.*--config.overwrite=True") as error:
        classifier = robustness.load_classifier(workdir)
        classifier(quadrant_data(2)[0])  # a damaged variables file may load and fail on first use
    assert "\n" not in str(error.value)


def test_one_noise_seed_has_no_standard_error_rather_than_zero():
    x, y = quadrant_data(20)
    result = robustness.noise_robustness(quadrant_classifier(), x, y, (0.0, 0.3), seeds=(0,), progress=None)
    assert result[0]["sem"] == 0.0  # sigma 0: one deterministic accuracy
    assert result[1]["sem"] is None  # one seed: the spread is unknown, not zero
    row = report.format_noise_table([{"label": "m", "clean_accuracy": 1.0, "noise": result}]).splitlines()[-1]
    assert row.split()[-1] == f"{result[1]['accuracy']:.3f}"  # no "+-" for an unknown spread
