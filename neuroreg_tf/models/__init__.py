"""Keras models with named, tappable intermediate layers."""

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
    "ResNet",
    "ResNet18",
    "ResNet34",
    "feature_model",
    "features",
    "paper_tap_layers",
    "resolve_tap_layers",
    "tap_layer_names",
]
