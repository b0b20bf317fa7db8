"""Joint training: classification loss plus alpha times the neural similarity loss.

``NeuralRegularizedModel`` wraps a classifier with named tap layers. Each
training step takes one classification batch and one batch of stimuli with
their target similarities, and minimises (Eq 7)

    L = L_task + alpha * L_similarity,

where L_similarity (Eq 8) compares S_CNN = sum_k gamma_k S_CNN-k (Eq 9-10)
with the target over all i < j pairs of the stimulus batch, and
gamma = softmax(gamma_logits) is trained with the network.

BatchNorm and the stimulus batch (``stimulus_bn``):

* ``"batch_stats"`` (default): the stimulus pass normalises the stimuli with
  their own batch statistics, like a training-mode pass, but BatchNorm's
  moving averages are restored afterwards, so they describe classification
  images only -- as in the alpha = 0 control. This isolates the effect of the
  similarity loss: on the demo we measured that merely letting BatchNorm's
  moving averages see the stimuli (alpha ~ 0) already changes noise robustness
  and clean accuracy substantially (README, "What the demo shows").
* ``"train"``: a plain training-mode pass, as in the public PyTorch derivative
  of the paper: the moving averages are updated by both the classification
  and the stimulus batches.
* ``"inference"``: the stimuli are normalised with the moving averages learned
  on classification images and do not update them.

With ``alpha == 0`` no stimulus pass enters the training step at
all, so training is exactly that of the plain classifier; similarity metrics
are then measured in inference mode, outside the gradient.

Distributed training: under a ``tf.distribute`` strategy with R replicas, each
replica holds B/R classification images and B/R stimuli (with the matching B/R
rows of the B x B target block; see ``neuroreg_tf.training.distributed_data``).
Eq 9 couples all stimuli of a batch (through the mean and through every i < j
pair), so each replica all-gathers the tapped features and the target rows and
computes the similarity loss over the GLOBAL stimulus batch; the gradient of
the gather routes each replica's share back to its own features. Every loss is
scaled as ``tf.nn.compute_average_loss`` would: the task loss is the sum of the
per-example losses divided by the global batch size, the similarity and weight
regularisation losses by the number of replicas, so the all-reduced (summed)
gradients equal those of one device holding the whole global batch. BatchNorm
is per replica by default (each replica normalises with its own batch
statistics); ``neuroreg_tf.training.strategies.configure_batch_norm(classifier,
"synchronized")`` makes it use global batch statistics instead, which is what
makes R replicas compute exactly what one device computes.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from neuroreg_tf import similarity
from neuroreg_tf.models import adversarial_training, replicas
from neuroreg_tf.models.adversarial_training import AdversarialTraining
from neuroreg_tf.models.replicas import all_gather_rows, at_least_float32  # noqa: F401  (public here before)
from neuroreg_tf.models.resnet import resolve_tap_layers
from neuroreg_tf.models.similarity_head import CENTERINGS, SimilarityHead

STIMULUS_BN_MODES = ("batch_stats", "train", "inference")
DATA_KEYS = ("images", "labels", "stimuli", "target_similarity")


def _choice(name, value, options):
    if value not in options:
        raise ValueError(f"`{name}` must be one of {options}. Received: {name}={value!r}")
    return value


@keras.saving.register_keras_serializable(package="neuroreg_tf")
class NeuralRegularizedModel(keras.Model):
    """A classifier trained jointly with a representational-similarity loss.

    Calling the model returns the classifier's logits, so ``predict`` and
    ``evaluate`` on plain (images, labels) data behave like the classifier's.

    Args:
        classifier: a Keras functional classifier that maps images in [0, 1] to
            logits and has the tap layers.
        tap_layers: layer names whose features enter Eq 9, or "paper".
        alpha: weight of the similarity loss (Eq 7).
        centering: "batch" centres each layer's features with the mean over the
            stimulus batch (Eq 9); "ema" with a running mean over batches
            (per feature dimension, updated in training steps; needs
            ``stimulus_shape``).
        ema_momentum: decay of the running mean for ``centering="ema"``.
        similarity_loss: "arctanh" (Eq 8) or "cka" (log(1 - CKA) on the
            similarity matrices, as in Dapello et al. 2023).
        arctanh_eps: clamp margin for arctanh.
        stimulus_bn: "batch_stats", "train" or "inference"; see the module docstring.
        stimulus_shape: (height, width) of the stimuli; required for "ema".
        adversarial_training: ``AdversarialTraining`` fields (``method`` "fgsm_rs" or "pgd",
            ``epsilon``, ``steps``, ``seed``): train on L-inf adversarial images of each
            classification batch (the baseline); None: on the images as given.
    """

    def __init__(
        self,
        classifier: keras.Model,
        tap_layers="paper",
        alpha: float = 20.0,
        centering: str = "batch",
        ema_momentum: float = 0.9,
        similarity_loss: str = "arctanh",
        arctanh_eps: float = similarity.ARCTANH_EPS,
        stimulus_bn: str = "batch_stats",
        stimulus_shape=None,
        adversarial_training: dict | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if alpha < 0:
            raise ValueError(f"`alpha` must be non-negative. Received: alpha={alpha}")
        self.classifier = classifier
        self.tap_layers = resolve_tap_layers(classifier, tap_layers)
        self.alpha = float(alpha)
        self.centering = _choice("centering", centering, CENTERINGS)
        self.ema_momentum = float(ema_momentum)
        self.similarity_loss_name = _choice("similarity_loss", similarity_loss, similarity.similarity_loss_names())
        self.arctanh_eps = float(arctanh_eps)
        self.stimulus_bn = _choice("stimulus_bn", stimulus_bn, STIMULUS_BN_MODES)
        self.stimulus_shape = None if stimulus_shape is None else tuple(int(s) for s in stimulus_shape)
        self.adversarial_training = AdversarialTraining(**(adversarial_training or {}))

        if self.centering == "ema" and self.stimulus_shape is None:
            raise ValueError(
                "centering='ema' keeps a running mean of each layer's features, "
                "so it needs the stimulus size. Received: stimulus_shape=None; pass "
                "e.g. stimulus_shape=(36, 64)."
            )
        head = SimilarityHead(classifier, self.tap_layers, self.add_weight, centering=self.centering,
                              ema_momentum=self.ema_momentum, stimulus_shape=self.stimulus_shape)
        # The head's variables are the model's own (saved layout unchanged); the head is not tracked.
        object.__setattr__(self, "similarity_head", head)
        self.tap_model = head.tap_model
        self.gamma_logits = head.gamma_logits
        self.feature_means = head.feature_means
        if head.ema_initialized is not None:
            self.ema_initialized = head.ema_initialized

        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.task_loss_tracker = keras.metrics.Mean(name="task_loss")
        self.similarity_loss_tracker = keras.metrics.Mean(name="similarity_loss")
        self.similarity_r_tracker = keras.metrics.Mean(name="similarity_r")
        self.accuracy_tracker = keras.metrics.SparseCategoricalAccuracy(name="accuracy")
        self.built = True

    @property
    def metrics(self):
        return [
            self.loss_tracker,
            self.task_loss_tracker,
            self.similarity_loss_tracker,
            self.similarity_r_tracker,
            self.accuracy_tracker,
        ]

    def call(self, inputs, training=None):
        return self.classifier(inputs, training=training)

    def gamma(self) -> tf.Tensor:
        """The current layer weights softmax(gamma_logits) (Eq 10)."""
        return self.similarity_head.gamma()

    def model_similarity(self, stimuli, training: bool = False, update_means: bool = False):
        """S_CNN (Eq 9-10) and the per-layer similarities for a stimulus batch (``SimilarityHead``).

        Inside a multi-replica step, ``stimuli`` is this replica's share and the
        returned matrices cover the global stimulus batch (all replicas'
        stimuli, in replica order).
        """
        return self.similarity_head.similarity(stimuli, training=training, update_means=update_means)

    def _global_target(self, target):
        if target is None:
            return None
        (gathered,) = replicas.gather_rows([tf.stop_gradient(target)])
        return gathered

    def similarity_loss(self, s_pred, s_target) -> tf.Tensor:
        """The model's similarity loss between S_CNN and the target: Eq 8 ("arctanh"), log(1 - CKA)
        ("cka"), or another registered one (``similarity.register_similarity_loss``)."""
        return similarity.get_similarity_loss(self.similarity_loss_name)(s_pred, s_target, eps=self.arctanh_eps)

    @staticmethod
    def _unpack(data):
        if isinstance(data, dict):
            missing = [k for k in DATA_KEYS[:2] if k not in data]
            if missing:
                raise ValueError(
                    f"Training data must be dicts with keys {DATA_KEYS}. Received keys: {sorted(data)}"
                )
            return (
                data["images"],
                data["labels"],
                data.get("stimuli"),
                data.get("target_similarity"),
            )
        if isinstance(data, (tuple, list)) and len(data) == 3 and data[2] is not None:
            raise ValueError(
                "Sample weights (and fit's class_weight) are not supported: the joint objective "
                "weights every image equally (Eq 7). Pass (images, labels) or the dicts of "
                "neuroreg_tf.training.joint_dataset, without weights."
            )
        if isinstance(data, (tuple, list)) and len(data) in (2, 3):
            return data[0], data[1], None, None
        raise ValueError(
            "Expected a dict with keys ('images', 'labels', 'stimuli', "
            "'target_similarity') or an (images, labels) tuple. "
            f"Received: {type(data).__name__}"
        )

    @staticmethod
    def _replica_task_loss(labels, logits):
        """This replica's share of the global mean cross-entropy.

        The sum of the per-example losses divided by the GLOBAL batch size
        (``tf.nn.compute_average_loss`` semantics, with the global size counted
        across replicas so uneven splits stay exact); summed over replicas it is
        the global mean.
        """
        logits = at_least_float32(logits)
        per_example = keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)
        local_count = tf.cast(tf.shape(per_example)[0], per_example.dtype)
        global_count = replicas.sum_over_replicas(local_count)
        return tf.reduce_sum(per_example) / tf.maximum(global_count, 1.0)

    def _batch_norm_moving_averages(self) -> list:
        """The classifier's BatchNorm moving means and variances.

        Looked up on demand rather than stored on the model: an attribute
        holding them would make Keras track them a second time as the model's
        own weights and change the saved weights layout.
        """
        return [
            variable
            for layer in self.classifier.layers
            if isinstance(layer, keras.layers.BatchNormalization)
            for variable in (layer.moving_mean, layer.moving_variance)
        ]

    def _stimulus_similarity_for_training(self, stimuli):
        """S_CNN of the stimulus batch inside the training step (see ``stimulus_bn``)."""
        if self.stimulus_bn != "batch_stats":
            s_pred, _ = self.model_similarity(
                stimuli, training=self.stimulus_bn == "train", update_means=True
            )
            return s_pred
        moving_averages = self._batch_norm_moving_averages()
        saved = [tf.identity(variable) for variable in moving_averages]
        s_pred, _ = self.model_similarity(stimuli, training=True, update_means=True)
        with tf.control_dependencies([s_pred]):
            for variable, value in zip(moving_averages, saved):
                variable.assign(value)
        return s_pred

    def train_step(self, data):
        images, labels, stimuli, target = self._unpack(data)
        if stimuli is None and self.alpha > 0:
            raise ValueError(
                f"alpha={self.alpha} needs stimulus batches: build the training data "
                "with neuroreg_tf.training.joint_dataset."
            )
        n_replicas = replicas.num_replicas()
        target = self._global_target(target)
        if self.adversarial_training.enabled:
            images = adversarial_training.perturb(self.classifier, images, labels, self.adversarial_training,
                                                  self.optimizer.iterations, self._batch_norm_moving_averages())
        with tf.GradientTape() as tape:
            logits = self.classifier(images, training=True)
            task_share = self._replica_task_loss(labels, logits)
            objective = task_share
            regularization = None
            if self.classifier.losses:
                regularization = tf.add_n(self.classifier.losses)
                objective = objective + regularization / n_replicas
            if self.alpha > 0:
                s_pred = self._stimulus_similarity_for_training(stimuli)
                sim_loss = self.similarity_loss(s_pred, target)
                objective = objective + self.alpha * sim_loss / n_replicas
        variables = self.trainable_variables
        # Under mixed_float16 the optimizer is a LossScaleOptimizer: it scales the loss here and
        # unscales (and checks) the gradients in apply; otherwise scale_loss is the identity.
        gradients = tape.gradient(self.optimizer.scale_loss(objective), variables)
        self.optimizer.apply(
            [g for g in gradients if g is not None],
            [v for g, v in zip(gradients, variables) if g is not None],
        )
        task_loss = replicas.sum_over_replicas(tf.stop_gradient(task_share))
        total = task_loss
        if regularization is not None:
            total = total + regularization
        if stimuli is None:
            s_pred = sim_loss = None
        elif self.alpha == 0:
            s_pred, _ = self.model_similarity(stimuli, training=False)
            sim_loss = self.similarity_loss(s_pred, target)
        else:
            total = total + self.alpha * sim_loss
        self._update_metrics(total, task_loss, labels, logits, target, s_pred, sim_loss)
        return self._logs(with_similarity=stimuli is not None)

    def test_step(self, data):
        images, labels, stimuli, target = self._unpack(data)
        target = self._global_target(target)
        logits = self.classifier(images, training=False)
        task_loss = replicas.sum_over_replicas(self._replica_task_loss(labels, logits))
        total = task_loss
        if self.classifier.losses:  # weight decay, logged in the loss as train_step does
            total = total + tf.add_n(self.classifier.losses)
        s_pred = sim_loss = None
        if stimuli is not None:
            s_pred, _ = self.model_similarity(stimuli, training=False)
            sim_loss = self.similarity_loss(s_pred, target)
            total = total + self.alpha * sim_loss
        self._update_metrics(total, task_loss, labels, logits, target, s_pred, sim_loss)
        return self._logs(with_similarity=stimuli is not None)

    def _update_metrics(self, total, task_loss, labels, logits, target, s_pred, sim_loss):
        self.loss_tracker.update_state(total)
        self.task_loss_tracker.update_state(task_loss)
        self.accuracy_tracker.update_state(labels, at_least_float32(logits))
        if s_pred is not None:
            self.similarity_loss_tracker.update_state(sim_loss)
            self.similarity_r_tracker.update_state(similarity.pair_correlation(s_pred, target))

    def _logs(self, with_similarity: bool):
        """Metric results. The layer weights gamma are not step logs (they would crowd every
        progress line): ``SimilarityMonitor`` adds them to each epoch's logs."""
        similarity_metrics = (self.similarity_loss_tracker, self.similarity_r_tracker)
        return {
            m.name: m.result()
            for m in self.metrics
            if with_similarity or m not in similarity_metrics
        }

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "classifier": keras.saving.serialize_keras_object(self.classifier),
                "tap_layers": list(self.tap_layers),
                "alpha": self.alpha,
                "centering": self.centering,
                "ema_momentum": self.ema_momentum,
                "similarity_loss": self.similarity_loss_name,
                "arctanh_eps": self.arctanh_eps,
                "stimulus_bn": self.stimulus_bn,
                "stimulus_shape": None if self.stimulus_shape is None else list(self.stimulus_shape),
            }
        )
        if self.adversarial_training.enabled:  # absent otherwise: the saved config of a plain run is unchanged
            config["adversarial_training"] = self.adversarial_training.as_dict()
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["classifier"] = keras.saving.deserialize_keras_object(config["classifier"])
        return cls(**config)
