r"""Benchmark: our L-inf minimal-perturbation search vs Foolbox 3 on the same model and samples.

  python bench/bench_minimal_perturbation.py --num_examples=100
  python bench/bench_minimal_perturbation.py --model=runs/demo/none --num_examples=200

Without --model, a small CNN is trained for one epoch on Fashion-MNIST first (about a minute on
2 CPU cores). Compared, on the same correctly and incorrectly classified test samples:

* ours: ``neuroreg_tf.robustness.minimal_perturbation`` with its default L-inf attacks (CleverHans
  PGD, 20 iterations of 0.25 epsilon, margin loss, then margin toward the 2nd and 3rd most likely
  wrong classes; per-sample exponential search and 10 bisection steps);
* Foolbox LinfPGD (its defaults: 40 steps of 0.033 epsilon, random start) driven by the same
  per-sample exponential search and bisection (``search.search_epsilon``, one batched Foolbox call per
  probe with a per-sample epsilon tensor; only its random start and projection are re-written
  to accept that);
* Foolbox's minimisation attacks LInfFMNAttack (fast minimum norm) and LinfDeepFoolAttack;
* "Foolbox best": per sample, the smallest of Foolbox's three.

Every adversarial of every method is verified the same way (label flipped, pixels in [0, 1],
distance recomputed) before it counts; clean-misclassified samples count as 0 for all.
"""

import os
import sys
import time

import numpy as np
from absl import app
from absl import flags

_MODEL = flags.DEFINE_string(
    "model", None, "Classifier to attack (workdir, export/ or .keras); default: train a small CNN."
)
_DATASET = flags.DEFINE_string("dataset", "fashion_mnist", "Dataset for training and test samples.")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "tfds data directory.")
_NUM_EXAMPLES = flags.DEFINE_integer("num_examples", 100, "Test samples to attack.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 500, "Images per attack call.")
_SEED = flags.DEFINE_integer(
    "seed", 0, "Seed for training the default model and Foolbox's random start."
)


def train_small_cnn(dataset, data_dir, seed):
    """One epoch of a small CNN (2 conv layers) on the training split; returns the Keras model."""
    import keras

    from neuroreg_tf.robustness import evaluation

    keras.utils.set_random_seed(seed)
    x, y = evaluation.load_examples(dataset, "train", num_examples=20000, data_dir=data_dir)
    inputs = keras.Input(x.shape[1:])
    hidden = keras.layers.Conv2D(16, 3, strides=2, activation="relu")(inputs)
    hidden = keras.layers.Conv2D(32, 3, strides=2, activation="relu")(hidden)
    hidden = keras.layers.Flatten()(hidden)
    model = keras.Model(inputs, keras.layers.Dense(int(y.max()) + 1)(hidden))
    model.compile(
        optimizer=keras.optimizers.Adam(2e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    model.fit(x, y, batch_size=128, epochs=1, verbose=2)
    return model


def foolbox_methods(model, batch_size, seed):
    """Returns {name: run(x, y) -> candidate adversarials} for the Foolbox attacks compared."""
    import eagerpy as ep
    import foolbox
    import tensorflow as tf

    from neuroreg_tf.robustness import scoring, search, settings

    fmodel = foolbox.TensorFlowModel(model, bounds=(0.0, 1.0))

    def minimization(attack):
        def run(x, y):
            outputs = []
            for start in range(0, len(x), batch_size):
                _, clipped, _ = attack(
                    fmodel,
                    tf.constant(x[start : start + batch_size]),
                    tf.constant(y[start : start + batch_size]),
                    epsilons=None,
                )
                outputs.append(clipped.numpy())
            return np.concatenate(outputs)

        return run

    class LinfPGDPerSampleEpsilon(foolbox.attacks.LinfPGD):
        """Foolbox's LinfPGD, with random start and projection written for a per-sample epsilon."""

        def get_random_start(self, x0, epsilon):
            return x0 + ep.uniform(x0, x0.shape, -1.0, 1.0) * epsilon

        def project(self, x, x0, epsilon):
            return x0 + ep.minimum(ep.maximum(x - x0, -epsilon), epsilon)

    pgd = LinfPGDPerSampleEpsilon()

    def pgd_search(x, y):
        tf.random.set_seed(seed)

        def probe(images, labels, eps):
            epsilon = ep.astensor(tf.reshape(tf.constant(eps), [-1, 1, 1, 1]))
            criterion = foolbox.criteria.Misclassification(tf.constant(labels))
            return pgd.run(fmodel, tf.constant(images), criterion, epsilon=epsilon).numpy()

        def verify(images, candidates, labels):
            return scoring.verify_adversarial(model, images, candidates, labels, "linf")

        start = np.full(len(x), settings.DEFAULT_INITIAL_EPSILON["linf"])
        _, images, _ = search.search_epsilon(probe, verify, x, y, start, batch_size=batch_size)
        return images

    return {
        "foolbox LinfPGD + same search": pgd_search,
        "foolbox LInfFMNAttack": minimization(foolbox.attacks.LInfFMNAttack()),
        "foolbox LinfDeepFoolAttack": minimization(foolbox.attacks.LinfDeepFoolAttack()),
    }


def main(argv):
    del argv
    from neuroreg_tf import robustness
    from neuroreg_tf.robustness import evaluation
    from neuroreg_tf.robustness import scoring

    if _MODEL.value:
        path = _MODEL.value
        if os.path.isfile(os.path.join(path, "classifier.keras")):
            path = os.path.join(path, "classifier.keras")  # Foolbox needs the Keras model itself
        model = robustness.load_classifier(path)
        if model.kind != "keras":
            raise SystemExit(
                "Foolbox needs a Keras model: pass a .keras file or a workdir with classifier.keras. "
                f"Received: --model={_MODEL.value}"
            )
        model = model.model
        dataset, data_dir = _DATASET.value, _DATA_DIR.value
        try:
            dataset, run_data_dir = evaluation.dataset_from_run(_MODEL.value)
            data_dir = _DATA_DIR.value or run_data_dir
        except ValueError:
            pass
    else:
        dataset, data_dir = _DATASET.value, _DATA_DIR.value
        model = train_small_cnn(dataset, data_dir, _SEED.value)
    x, y = evaluation.load_examples(
        dataset, "test", num_examples=_NUM_EXAMPLES.value, data_dir=data_dir
    )
    print(
        f"model: {_MODEL.value or 'small CNN, 1 epoch'}; dataset {dataset}; {len(x)} test samples; "
        f"clean accuracy {robustness.clean_accuracy(model, x, y):.3f}",
        flush=True,
    )

    rows = []
    started = time.perf_counter()
    ours = robustness.minimal_perturbation(model, x, y, "linf", batch_size=_BATCH_SIZE.value)
    rows.append(
        ("ours: CleverHans PGD search (default)", ours.distances, time.perf_counter() - started)
    )

    foolbox_distances = []
    foolbox_seconds = 0.0
    for name, run in foolbox_methods(model, _BATCH_SIZE.value, _SEED.value).items():
        started = time.perf_counter()
        candidates = run(x, y)
        seconds = time.perf_counter() - started
        broken, distance = scoring.verify_adversarial(model, x, candidates, y, "linf")
        distances = np.where(ours.clean_correct, np.where(broken, distance, np.inf), 0.0)
        rows.append((name, distances, seconds))
        foolbox_distances.append(distances)
        foolbox_seconds += seconds
        print(f"{name}: {seconds:.1f} s", file=sys.stderr, flush=True)
    best = np.min(foolbox_distances, axis=0)
    rows.append(("foolbox best of the three", best, foolbox_seconds))

    print(f"\n{'method':<40} {'median':>9} {'q25':>9} {'q75':>9} {'broken':>7} {'time s':>8}")
    for name, distances, seconds in rows:
        summary = scoring.summarize_distances(distances, ours.clean_correct)
        broken = int(np.sum(np.isfinite(distances)))
        print(
            f"{name:<40} {summary['median']:>9.5f} {summary['q25']:>9.5f} {summary['q75']:>9.5f} "
            f"{broken:>4}/{len(x):<3} {seconds:>7.1f}"
        )
    ours_median = scoring.quantile(ours.distances, 0.5)
    best_median = scoring.quantile(best, 0.5)
    print(
        f"\nours / foolbox-best median: {ours_median / best_median:.3f}; "
        f"ours / foolbox-total time: {rows[0][2] / foolbox_seconds:.3f}; "
        f"samples where ours is smaller / equal (1e-4) / larger than foolbox best: "
        f"{int(np.sum(ours.distances < best * (1 - 1e-4)))} / "
        f"{int(np.sum(np.abs(ours.distances - best) <= best * 1e-4))} / "
        f"{int(np.sum(ours.distances > best * (1 + 1e-4)))}"
    )


if __name__ == "__main__":
    app.run(main)
