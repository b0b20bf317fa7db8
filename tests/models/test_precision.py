"""Mixed precision: layers compute in float16/bfloat16, the similarity math stays float32."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from neuroreg_tf.config import base_train_config
from neuroreg_tf.training import trainer

# bfloat16 keeps 8 bits of mantissa (relative error ~4e-3 per operation) and float16 11 bits;
# through a ResNet18 of width 1/16 the losses of one batch agree with float32 to a few 1e-2.
TOLERANCE = {"mixed_bfloat16": 3e-2, "mixed_float16": 1e-2}


def _model(precision):
    config = base_train_config()
    config.model.width = 1 / 16
    config.precision = precision
    keras.utils.set_random_seed(0)
    return trainer.build_model(config, num_classes=10, stimulus_shape=(36, 64))


def _batch():
    rng = np.random.default_rng(0)
    embedding = rng.normal(size=(16, 6))
    embedding /= np.linalg.norm(embedding, axis=1, keepdims=True)
    return {
        "images": rng.uniform(size=(16, 28, 28, 1)).astype(np.float32),
        "labels": rng.integers(0, 10, 16),
        "stimuli": rng.uniform(size=(16, 36, 64, 1)).astype(np.float32),
        "target_similarity": (embedding @ embedding.T).astype(np.float32),
    }


def _losses(model):
    model.compile(optimizer=keras.optimizers.SGD(0.0))
    history = model.fit(tf.data.Dataset.from_tensors(_batch()), epochs=1, verbose=0, shuffle=False)
    return {key: history.history[key][0] for key in ("task_loss", "similarity_loss")}


@pytest.mark.parametrize("precision", ["mixed_bfloat16", "mixed_float16"])
def test_mixed_precision_losses_match_float32(precision):
    reference = _model("float32")
    mixed = _model(precision)
    assert keras.config.dtype_policy().name == "float32", "the policy is restored after building"
    assert mixed.classifier.get_layer("stem_conv").compute_dtype == precision.split("_")[1]
    assert mixed.classifier.get_layer("logits").compute_dtype == "float32"
    mixed.set_weights(reference.get_weights())
    s_pred, per_layer = mixed.model_similarity(_batch()["stimuli"])
    assert s_pred.dtype == tf.float32 and all(s.dtype == tf.float32 for s in per_layer)
    expected, got = _losses(reference), _losses(mixed)
    for key in expected:
        assert got[key] == pytest.approx(expected[key], rel=TOLERANCE[precision]), key
        assert got[key] != expected[key], "the mixed run really computed in lower precision"
    if precision == "mixed_float16":
        assert isinstance(mixed.optimizer, keras.optimizers.LossScaleOptimizer)


def test_unknown_precision_is_refused():
    config = base_train_config()
    config.precision = "float8"
    config.target.path = "x"
    with pytest.raises(ValueError, match="config.precision must be one of"):
        trainer.check_config(config)
