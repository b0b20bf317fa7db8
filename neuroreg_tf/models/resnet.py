"""CIFAR-style ResNets for grayscale images, with named taps.

3x3 stem without max-pooling, basic residual blocks, global average pooling
and a linear head that outputs logits. The input is ``(None, None, 1)`` images
in [0, 1]; the model rescales them itself (``5 * (x - 0.5)``), so the same
weights take 28x28 or 32x32 classification images and 36x64 stimuli, and
attacks operate directly in pixel space.

Layer names are hierarchical (``stage2_block1_conv1``); the output of the stem
is ``stem_relu`` and the output of block b of stage s is ``stage{s}_block{b}_out``.
For ResNet18 the paper's layers 1, 5, 9, 13 and 17 are the stem and the end of
each stage: see ``paper_tap_layers``.
"""

from __future__ import annotations

from typing import Sequence

import keras

from neuroreg_tf.config import comma_list

STAGE_BLOCKS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3)}
BASE_WIDTHS = (64, 128, 256, 512)
INPUT_SCALE = 5.0


def _conv(filters, strides, name, weight_decay):
    return keras.layers.Conv2D(
        filters,
        3,
        strides=strides,
        padding="same",
        use_bias=False,
        kernel_initializer="he_normal",
        kernel_regularizer=keras.regularizers.L2(weight_decay) if weight_decay else None,
        name=name,
    )


def _batch_norm(name):
    return keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5, name=name)


def basic_block(x, filters: int, strides: int, name: str, weight_decay: float = 0.0):
    """Two 3x3 convolutions with a residual connection, ending in ``{name}_out``."""
    shortcut = x
    if strides != 1 or x.shape[-1] != filters:
        if strides != 1:
            # Equal to a strided 1x1 convolution; TF 2.21's oneDNN backward pass of
            # a 1x1 stride-2 VALID convolution aborts the process on some shapes
            # (e.g. 36x64x8 inputs), so subsample first and convolve with stride 1.
            shortcut = keras.layers.AveragePooling2D(
                pool_size=1, strides=strides, name=f"{name}_shortcut_subsample"
            )(shortcut)
        shortcut = keras.layers.Conv2D(
            filters,
            1,
            use_bias=False,
            kernel_initializer="he_normal",
            kernel_regularizer=keras.regularizers.L2(weight_decay) if weight_decay else None,
            name=f"{name}_shortcut_conv",
        )(shortcut)
        shortcut = _batch_norm(f"{name}_shortcut_bn")(shortcut)
    y = _conv(filters, strides, f"{name}_conv1", weight_decay)(x)
    y = _batch_norm(f"{name}_bn1")(y)
    y = keras.layers.Activation("relu", name=f"{name}_relu1")(y)
    y = _conv(filters, 1, f"{name}_conv2", weight_decay)(y)
    y = _batch_norm(f"{name}_bn2")(y)
    y = keras.layers.Add(name=f"{name}_add")([shortcut, y])
    return keras.layers.Activation("relu", name=f"{name}_out")(y)


def ResNet(
    depth: int,
    *,
    num_classes: int,
    width: float = 1.0,
    weight_decay: float = 0.0,
    name: str | None = None,
) -> keras.Model:
    """Builds a grayscale CIFAR-style ResNet that outputs logits.

    Args:
        depth: 18 or 34.
        num_classes: number of output logits.
        width: multiplier on the channel widths (64, 128, 256, 512).
        weight_decay: L2 coefficient on convolution and dense kernels.
        name: model name; defaults to ``resnet{depth}``.
    """
    if depth not in STAGE_BLOCKS:
        raise ValueError(f"`depth` must be one of {sorted(STAGE_BLOCKS)}. Received: depth={depth}")
    if width <= 0:
        raise ValueError(f"`width` must be positive. Received: width={width}")
    if num_classes < 2:
        raise ValueError(f"`num_classes` must be at least 2. Received: num_classes={num_classes}")
    widths = [max(1, int(round(base * width))) for base in BASE_WIDTHS]

    inputs = keras.Input(shape=(None, None, 1), name="images")
    x = keras.layers.Rescaling(INPUT_SCALE, offset=-INPUT_SCALE / 2, name="input_scaling")(inputs)
    x = _conv(widths[0], 1, "stem_conv", weight_decay)(x)
    x = _batch_norm("stem_bn")(x)
    x = keras.layers.Activation("relu", name="stem_relu")(x)
    for stage, (blocks, filters) in enumerate(zip(STAGE_BLOCKS[depth], widths), start=1):
        for block in range(1, blocks + 1):
            strides = 2 if stage > 1 and block == 1 else 1
            x = basic_block(x, filters, strides, f"stage{stage}_block{block}", weight_decay)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = keras.layers.Dense(
        num_classes,
        kernel_regularizer=keras.regularizers.L2(weight_decay) if weight_decay else None,
        dtype="float32",  # logits in float32 under a mixed-precision policy too
        name="logits",
    )(x)
    return keras.Model(inputs, outputs, name=name or f"resnet{depth}")


def ResNet18(*, num_classes: int, width: float = 1.0, weight_decay: float = 0.0) -> keras.Model:
    """ResNet18 (the paper's grayscale CIFAR-10 model)."""
    return ResNet(18, num_classes=num_classes, width=width, weight_decay=weight_decay)


def ResNet34(*, num_classes: int, width: float = 1.0, weight_decay: float = 0.0) -> keras.Model:
    """ResNet34 (the paper's grayscale CIFAR-100 model)."""
    return ResNet(34, num_classes=num_classes, width=width, weight_decay=weight_decay)


def layer_names(depth: int) -> list[str]:
    """The names of the layers ``ResNet(depth, ...)`` builds, without building it.

    For checking tap names in a config before TensorFlow runs anything.
    """
    if depth not in STAGE_BLOCKS:
        raise ValueError(f"`depth` must be one of {sorted(STAGE_BLOCKS)}. Received: depth={depth}")
    names = ["images", "input_scaling", "stem_conv", "stem_bn", "stem_relu"]
    for stage, blocks in enumerate(STAGE_BLOCKS[depth], start=1):
        for block in range(1, blocks + 1):
            name = f"stage{stage}_block{block}"
            if block == 1 and stage > 1:
                names += [f"{name}_shortcut_subsample", f"{name}_shortcut_conv", f"{name}_shortcut_bn"]
            names += [f"{name}_conv1", f"{name}_bn1", f"{name}_relu1", f"{name}_conv2", f"{name}_bn2",
                      f"{name}_add", f"{name}_out"]
    return names + ["pool", "logits"]


def paper_tap_layers(model: keras.Model) -> list[str]:
    """The stem and the end of each stage: ResNet18's layers 1, 5, 9, 13, 17."""
    names = [layer.name for layer in model.layers]
    taps = ["stem_relu"]
    for stage in range(1, 5):
        last = [n for n in names if n.startswith(f"stage{stage}_block") and n.endswith("_out")]
        if not last:
            raise ValueError(f"Model {model.name!r} has no stage {stage}; is it a neuroreg_tf ResNet?")
        taps.append(last[-1])
    return taps


def tap_layer_names(model: keras.Model) -> list[str]:
    """Every layer whose output can be tapped: the stem and each block's output."""
    return [
        layer.name
        for layer in model.layers
        if layer.name == "stem_relu" or layer.name.endswith("_out")
    ]


def resolve_tap_layers(model: keras.Model, names: Sequence[str] | str) -> list[str]:
    """Expands ``"paper"`` and checks that each named layer exists."""
    if isinstance(names, str):
        if names == "paper":
            return paper_tap_layers(model)
        names = comma_list(names)
    names = list(names)
    if not names:
        raise ValueError("At least one tap layer is needed. Received: names=[]")
    known = {layer.name for layer in model.layers}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(
            f"Unknown layer name(s) {unknown} for model {model.name!r}. Tappable layers: "
            f"{tap_layer_names(model)} (or 'paper' for the stem and each stage's end). "
            f"Received: names={names}"
        )
    return names


def feature_model(model: keras.Model, names: Sequence[str] | str) -> keras.Model:
    """A model sharing ``model``'s weights that returns the named layers' outputs."""
    names = resolve_tap_layers(model, names)
    outputs = [model.get_layer(n).output for n in names]
    return keras.Model(model.input, outputs, name=f"{model.name}_taps")


def features(model: keras.Model, names: Sequence[str] | str, images, training: bool = False):
    """The features of the named layers for ``images``, as a list of tensors."""
    outputs = feature_model(model, names)(images, training=training)
    return outputs if isinstance(outputs, (list, tuple)) else [outputs]
