"""ResNet structure, taps, and the strided-shortcut workaround."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from neuroreg_tf.models import ResNet, ResNet18, ResNet34, feature_model, features, paper_tap_layers, resnet


@pytest.fixture(scope="module")
def resnet18():
    keras.utils.set_random_seed(0)
    return ResNet18(num_classes=10, width=0.125)


def test_paper_taps_are_stem_and_stage_ends(resnet18):
    assert paper_tap_layers(resnet18) == [
        "stem_relu",
        "stage1_block2_out",
        "stage2_block2_out",
        "stage3_block2_out",
        "stage4_block2_out",
    ]
    resnet34 = ResNet34(num_classes=100, width=0.125)
    assert paper_tap_layers(resnet34)[1:] == [
        "stage1_block3_out",
        "stage2_block4_out",
        "stage3_block6_out",
        "stage4_block3_out",
    ]


def test_resnet18_has_17_convolutions_on_the_main_path(resnet18):
    main_path = [
        layer for layer in resnet18.layers
        if isinstance(layer, keras.layers.Conv2D) and "shortcut" not in layer.name
    ]
    assert len(main_path) == 17


@pytest.mark.parametrize("size", [(28, 28), (32, 32), (36, 64)])
def test_same_weights_take_every_image_size(resnet18, size):
    images = np.random.default_rng(0).uniform(size=(3, *size, 1)).astype(np.float32)
    assert resnet18(images).shape == (3, 10)
    shapes = [f.shape for f in features(resnet18, "paper", images)]
    height, width = size
    widths = [8, 8, 16, 32, 64]
    expected_hw = [(height, width), (height, width)]
    for _ in range(3):
        height, width = (height + 1) // 2, (width + 1) // 2
        expected_hw.append((height, width))
    assert shapes == [(3, h, w, c) for (h, w), c in zip(expected_hw, widths)]


def test_width_multiplier_scales_channels():
    wide = ResNet(18, num_classes=10, width=0.25)
    assert wide.get_layer("stem_conv").filters == 16
    assert wide.get_layer("stage4_block2_conv2").filters == 128


def test_feature_model_shares_weights(resnet18):
    taps = feature_model(resnet18, ["stem_relu"])
    assert taps.get_layer("stem_conv") is resnet18.get_layer("stem_conv")


@pytest.mark.parametrize(
    "names, message",
    [(["stage9_block1_out"], "Unknown layer name"), ([], "At least one tap layer")],
)
def test_bad_tap_names_give_clear_errors(resnet18, names, message):
    with pytest.raises(ValueError, match=message):
        feature_model(resnet18, names)


@pytest.mark.parametrize(
    "kwargs, message",
    [({"depth": 50}, "depth"), ({"depth": 18, "width": 0}, "width"), ({"depth": 18, "num_classes": 1}, "num_classes")],
)
def test_bad_architecture_arguments(kwargs, message):
    kwargs.setdefault("num_classes", 10)
    with pytest.raises(ValueError, match=message):
        ResNet(**kwargs)


def test_subsampled_shortcut_equals_strided_convolution(resnet18):
    shortcut = resnet18.get_layer("stage2_block1_shortcut_conv")
    inputs = resnet18.get_layer("stage1_block2_out").output
    probe = keras.Model(resnet18.input, [inputs, shortcut.output])
    stage1, through_shortcut = probe(np.random.default_rng(1).uniform(size=(2, 36, 64, 1)).astype(np.float32))
    strided = tf.nn.conv2d(stage1, shortcut.kernel, strides=2, padding="VALID")
    np.testing.assert_allclose(through_shortcut.numpy(), strided.numpy(), atol=1e-5)


def test_gradients_flow_through_deep_taps_on_stimulus_sized_input(resnet18):
    """Regression: TF 2.21's oneDNN aborted on the strided 1x1 shortcut's backward pass."""
    images = tf.constant(np.random.default_rng(2).uniform(size=(8, 36, 64, 1)).astype(np.float32))
    taps = feature_model(resnet18, ["stage4_block2_out"])
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(tf.square(taps(images, training=True)))
    gradients = tape.gradient(loss, resnet18.trainable_variables)
    stem = gradients[[v.path for v in resnet18.trainable_variables].index("stem_conv/kernel")]
    assert np.all(np.isfinite(stem.numpy())) and np.abs(stem.numpy()).sum() > 0


@pytest.mark.parametrize("depth", [18, 34])
def test_layer_names_are_those_the_model_builds(depth):
    model = ResNet(depth, num_classes=3, width=1 / 16)
    names = resnet.layer_names(depth)
    assert len(names) == len(set(names)) == len(model.layers)
    assert set(names) == {layer.name for layer in model.layers}
