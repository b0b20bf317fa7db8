"""Keras models with named, tappable intermediate layers, and the neurally regularized model.

``NeuralRegularizedModel`` is a registered Keras class: importing this package lets
``keras.models.load_model`` rebuild a saved training model (``model.keras``) anywhere, training
and evaluation alike.
"""

from neuroreg_tf.models.regularized import NeuralRegularizedModel
from neuroreg_tf.models.resnet import (
    ResNet,
    ResNet18,
    ResNet34,
    feature_model,
    features,
    paper_tap_layers,
    resolve_tap_layers,
    tap_layer_names,
)

__all__ = [
    "NeuralRegularizedModel",
    "ResNet",
    "ResNet18",
    "ResNet34",
    "feature_model",
    "features",
    "paper_tap_layers",
    "resolve_tap_layers",
    "tap_layer_names",
]
