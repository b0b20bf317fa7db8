"""Targets from a layer of a pretrained Keras network: ``pretrained_layer_kind`` and the paper's VGG.

The similarity is Eq 9's centred cosine of the layer's features; the network is a
``keras.applications`` architecture loaded from a weights file (these machines cannot download
ImageNet weights). The paper's VGG control is one instance (VGG19, ``block3_conv1``, registered in
``builtin_kinds``); register another with one call::

    from neuroreg_tf.neural import pretrained_kinds, target_registry

    target_registry.register_target_kind(pretrained_kinds.pretrained_layer_kind(
        "resnet50_stage3", label="ResNet50 stage 3", architecture="ResNet50",
        layer="conv3_block4_out", preprocessing="resnet"))

and give its weights file in the build config: ``--config.kinds.resnet50_stage3.weights=/path.h5``.
"""

from __future__ import annotations

import os

import numpy as np

from neuroreg_tf import similarity
from neuroreg_tf.neural.target_registry import ON_STIMULUS_SET, BuildContext, TargetKind

RANDOM_WEIGHTS = "random"  # seeded He-normal weights: tests of the mechanics only, never a real target


def weights_help(architecture: str, kind: str) -> str:
    """How to get a ``keras.applications`` network's ImageNet weights onto a machine without internet."""
    return (
        f"ImageNet {architecture} weights cannot be downloaded in this environment. On a machine with "
        f"internet access, keras.applications.{architecture}(weights='imagenet', include_top=False) fetches "
        f"them to ~/.keras/models/ (for VGG19: 'vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5'); copy "
        f"the file here and pass its path (build_target.py: --config.kinds.{kind}.weights=/path/to/file.h5)."
    )


def pretrained_features(stimuli, weights: str, *, architecture: str = "VGG19", layer: str = "block3_conv1",
                        preprocessing: str = "vgg19", batch_size: int = 64) -> np.ndarray:
    """Flattened features of grayscale stimuli at ``layer`` of a ``keras.applications`` network.

    Grayscale is repeated to RGB, scaled to 0..255 and passed through the architecture's own
    preprocessing (``keras.applications.<preprocessing>.preprocess_input``).

    Args:
        stimuli: (n, height, width, 1) images in [0, 1], at least the network's minimum size.
        weights: a Keras weights file of the ``include_top=False`` network, or ``"random"`` for
            seeded random (He-normal) weights -- only for testing the mechanics.
        architecture: a ``keras.applications`` constructor name, e.g. ``"VGG19"``.
        layer: the layer whose output is the feature vector.
        preprocessing: the ``keras.applications`` module whose ``preprocess_input`` applies.
        batch_size: stimuli per forward pass.

    Returns:
        (n, features) float32.
    """
    import keras

    if weights != RANDOM_WEIGHTS and not (isinstance(weights, str) and os.path.isfile(weights)):
        raise FileNotFoundError(f"No {architecture} weights file at {weights!r}. {weights_help(architecture, '<kind>')}")
    constructor = getattr(keras.applications, architecture, None)
    module = getattr(keras.applications, preprocessing, None)
    if constructor is None or module is None or not hasattr(module, "preprocess_input"):
        raise ValueError(
            f"`architecture` must name a keras.applications network (e.g. 'VGG19') and `preprocessing` its "
            f"module (e.g. 'vgg19'). Received: architecture={architecture!r}, preprocessing={preprocessing!r}"
        )
    stimuli = np.asarray(stimuli, dtype=np.float32)
    base = constructor(include_top=False, weights=None, input_shape=stimuli.shape[1:3] + (3,))
    if weights == RANDOM_WEIGHTS:
        rng = np.random.default_rng(0)
        for variable in base.weights:
            shape = tuple(variable.shape)
            fan_in = int(np.prod(shape[:-1])) if len(shape) > 1 else 1
            scale = np.sqrt(2.0 / fan_in) if len(shape) > 1 else 0.0
            variable.assign(rng.normal(0.0, 1.0, shape).astype(np.float32) * scale)
    else:
        base.load_weights(weights)
    try:
        output = base.get_layer(layer).output
    except ValueError as error:
        raise ValueError(f"`layer` must name a layer of {architecture}. Received: layer={layer!r}") from error
    extractor = keras.Model(base.input, output)
    outputs = []
    for start in range(0, stimuli.shape[0], batch_size):
        rgb = np.repeat(stimuli[start : start + batch_size], 3, axis=-1) * 255.0
        batch = module.preprocess_input(rgb)
        outputs.append(np.asarray(extractor(batch, training=False)).reshape(batch.shape[0], -1))
    return np.concatenate(outputs).astype(np.float32)


def pretrained_embedding(stimuli, weights: str, **network) -> np.ndarray:
    """Centred unit embedding of ``pretrained_features`` (Eq 9 similarity = E E^T)."""
    return similarity.stimulus_embedding(pretrained_features(stimuli, weights, **network)).astype(np.float32)


def pretrained_layer_kind(name: str, *, label: str, architecture: str, layer: str, preprocessing: str,
                          description: str | None = None) -> TargetKind:
    """A target kind: Eq 9 on ``layer`` of a pretrained ``architecture`` (``keras.applications``).

    Its options (``config.kinds.<name>``): ``weights`` (required), ``architecture``, ``layer``
    and ``preprocessing`` (defaults as given here). It is built on the build's stimuli, a stimulus
    set of its own included.
    """

    def build(context: BuildContext, path: str) -> int:
        options = context.kind_options(name)
        network = {key: options[key] for key in ("architecture", "layer", "preprocessing")}
        images = np.asarray(context.prepared) if context.streamed else context.union_images
        context.log(f"computing {network['architecture']} {network['layer']} features")
        embedding = pretrained_embedding(images, options["weights"], **network)
        metadata = {"method": f"Eq 9 on {network['architecture']} {network['layer']} features",
                    "weights": options["weights"]}
        return context.write(path, name, images, embedding=embedding, **metadata)

    return TargetKind(
        name=name,
        label=label,
        description=description or f"{architecture} {layer} feature similarity (needs ImageNet weights)",
        build=build,
        on_stimulus_set=ON_STIMULUS_SET,
        options={"weights": "", "architecture": architecture, "layer": layer, "preprocessing": preprocessing},
        options_help=weights_help(architecture, name),
    )
