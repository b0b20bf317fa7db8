"""Loading trained classifiers for evaluation, from any artifact a training run writes.

A training workdir (written by ``train.py``) holds ``export/`` (a SavedModel of the classifier),
``classifier.keras`` (the plain functional classifier) and ``model.keras`` (the full training model,
whose ``.classifier`` is the classifier). ``load_classifier`` accepts the workdir itself or any of these
artifacts and returns a callable that maps float32 images in [0, 1], NHWC, to logits.
"""

from __future__ import annotations

import os
import weakref
from typing import Callable

import numpy as np
import tensorflow as tf

import neuroreg_tf.models  # noqa: F401  (registers NeuralRegularizedModel for load_model)
from neuroreg_tf import workdir as workdir_files
from neuroreg_tf.errors import InputError, MissingDataError, NeuroregError
from neuroreg_tf.fileio import sha256_tree

EXPORT_DIRNAME = workdir_files.EXPORT
CLASSIFIER_FILENAME = workdir_files.CLASSIFIER
TRAINING_MODEL_FILENAME = workdir_files.MODEL

_EXPECTED = (
    "Expected a SavedModel directory (with saved_model.pb, e.g. <workdir>/export), a `.keras` file, "
    f"or a training workdir containing `{EXPORT_DIRNAME}/`, `{CLASSIFIER_FILENAME}` or "
    f"`{TRAINING_MODEL_FILENAME}`."
)


class LoadedClassifier:
    """A loaded classifier: a differentiable callable from images to logits.

    Calls run through one ``tf.function`` so that repeated evaluation and attack gradients are fast.

    Attributes:
        source: The path the classifier was loaded from.
        kind: ``"saved_model"`` or ``"keras"``.
        model: The underlying object (the restored SavedModel or the Keras model).
    """

    def __init__(self, forward, *, source, kind, model):
        self.source = source
        self.kind = kind
        self.model = model
        self._forward = tf.function(forward, reduce_retracing=True)

    def __call__(self, images):
        """Returns the logits for ``images`` (float32, [0, 1], NHWC) as a float32 tensor."""
        return tf.cast(self._forward(tf.convert_to_tensor(images, tf.float32)), tf.float32)

    def __repr__(self):
        return f"LoadedClassifier(kind={self.kind!r}, source={self.source!r})"


def _is_saved_model_dir(path):
    return os.path.isdir(path) and os.path.isfile(os.path.join(path, "saved_model.pb"))


def _load_saved_model(path):
    restored = tf.saved_model.load(path)
    if hasattr(restored, "serve"):
        endpoint = restored.serve
    elif "serving_default" in getattr(restored, "signatures", {}):
        signature = restored.signatures["serving_default"]

        def endpoint(images):
            outputs = signature(images)
            return next(iter(outputs.values()))

    else:
        raise ValueError(
            f"The SavedModel at {path} has neither a `serve` endpoint nor a `serving_default` "
            "signature; expected one written by `keras.Model.export`. "
            f"Received: path={path!r}"
        )
    return LoadedClassifier(endpoint, source=path, kind="saved_model", model=restored)


def _load_keras_file(path):
    import keras

    model = keras.models.load_model(path, compile=False)
    classifier = getattr(model, "classifier", None)
    if isinstance(classifier, keras.Model):
        model = classifier

    def forward(images):
        return model(images, training=False)

    return LoadedClassifier(forward, source=path, kind="keras", model=model)


def resolve_classifier_path(path) -> str:
    """Returns the artifact that ``load_classifier`` would load for ``path``.

    Args:
        path: A SavedModel directory, a ``.keras`` file or a training workdir.

    Returns:
        The path of the SavedModel directory or ``.keras`` file to load. For a workdir, ``export/`` is
        preferred, then ``classifier.keras``, then ``model.keras``.

    Raises:
        FileNotFoundError: If ``path`` does not exist.
        ValueError: If ``path`` exists but holds none of the expected artifacts.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise MissingDataError(f"No classifier at {path!r}: the path does not exist. {_EXPECTED}")
    if os.path.isfile(path):
        if path.endswith(".keras"):
            return path
        raise InputError(f"Unknown classifier file {path!r}. {_EXPECTED} Received: path={path!r}")
    if _is_saved_model_dir(path):
        return path
    if os.path.isfile(os.path.join(path, workdir_files.IDENTITY)) and not workdir_files.is_finished_training(path):
        raise InputError(
            f"{path} is an unfinished training run (no {workdir_files.SUMMARY}): its files may be "
            "those of an earlier run. Finish it (run the same train.py command again) and evaluate "
            f"it then. Received: path={path!r}"
        )
    candidates = [
        os.path.join(path, EXPORT_DIRNAME),
        os.path.join(path, CLASSIFIER_FILENAME),
        os.path.join(path, TRAINING_MODEL_FILENAME),
    ]
    if _is_saved_model_dir(candidates[0]):
        return candidates[0]
    for candidate in candidates[1:]:
        if os.path.isfile(candidate):
            return candidate
    raise InputError(
        f"The directory {path!r} holds no classifier. {_EXPECTED} Received: path={path!r}"
    )


def artifact_fingerprint(path) -> str:
    """The SHA-256 of the artifact ``load_classifier(path)`` loads (a file, or a SavedModel's files).

    An evaluation records it as the identity of each model it scores; a study compares it with
    the run's current artifact to tell a current evaluation from a stale one.
    """
    return sha256_tree(resolve_classifier_path(path))


def load_classifier(path) -> LoadedClassifier:
    """Loads a trained classifier as a callable mapping images to logits.

    Args:
        path: A SavedModel directory (``<workdir>/export``), a ``.keras`` file (a plain classifier or
            the training model, whose ``.classifier`` is then used), or a training workdir, where
            ``export/`` is preferred, then ``classifier.keras``, then ``model.keras``.

    Returns:
        A ``LoadedClassifier``: call it on float32 images in [0, 1], NHWC, to get float32 logits.
        It is differentiable with respect to the images, so attacks can use it directly.

    Raises:
        FileNotFoundError: If ``path`` does not exist.
        ValueError: If ``path`` holds none of the expected artifacts.
        InputError: If the artifact cannot be loaded (damaged), naming it.
    """
    resolved = resolve_classifier_path(path)
    try:
        if os.path.isdir(resolved):
            return _load_saved_model(resolved)
        return _load_keras_file(resolved)
    except NeuroregError:
        raise
    except Exception as error:  # noqa: BLE001 - any failure to load a file is a damaged file to the user
        detail = str(error).strip().splitlines()[0][:200] if str(error).strip() else ""
        raise InputError(
            f"{resolved} cannot be loaded as a classifier ({type(error).__name__}"
            f"{': ' + detail if detail else ''}): it is damaged or was not written by this package. "
            "Train the run again (train.py with --config.overwrite=True) or restore the file."
        ) from None


_KERAS_FORWARDS = weakref.WeakKeyDictionary()  # one compiled forward pass per Keras model


def as_logits_fn(model) -> Callable:
    """Wraps a Keras model or any callable returning logits as a float32 tensor -> tensor function.

    Args:
        model: A ``keras.Model`` (called with ``training=False``), a ``LoadedClassifier``, or any
            callable that maps a float32 image batch to logits.

    Returns:
        A callable mapping a float32 image tensor to a float32 logits tensor.
    """
    if isinstance(model, LoadedClassifier):
        return model
    if not callable(model):
        raise ValueError(
            "Expected a Keras model or a callable mapping images to logits. "
            f"Received: model={model!r}"
        )
    try:
        import keras

        is_keras = isinstance(model, keras.Model)
    except ImportError:  # pragma: no cover - keras ships with tensorflow here
        is_keras = False
    if is_keras:
        forward = _KERAS_FORWARDS.get(model)
        if forward is None:
            forward = tf.function(
                lambda images: model(images, training=False), reduce_retracing=True
            )
            _KERAS_FORWARDS[model] = forward
    else:
        forward = model

    def logits_fn(images):
        return tf.cast(forward(tf.convert_to_tensor(images, tf.float32)), tf.float32)

    return logits_fn


def predict_labels(model, x, batch_size: int = 500) -> np.ndarray:
    """The model's predicted class of each image (argmax of its logits), in batches."""
    logits_fn = as_logits_fn(model)
    return np.concatenate([np.argmax(logits_fn(x[s : s + batch_size]).numpy(), axis=-1)
                           for s in range(0, len(x), batch_size)])
