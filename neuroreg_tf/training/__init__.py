"""Joint training of classifiers with a neural similarity loss.

Modules: ``joint_data`` (classification batches paired with stimulus batches), ``callbacks``
(held-out similarity monitor), ``schedules``, ``strategies`` and ``distributed_data``
(distribution), ``checkpointing`` (atomic, exact backups that carry the run's history),
``driver`` (``fit`` or the multi-worker loop), ``multi_worker`` (the custom loop) and
``trainer`` (a config to a workdir).
The regularized model itself is ``neuroreg_tf.models.NeuralRegularizedModel``.
"""

from neuroreg_tf.models import NeuralRegularizedModel
from neuroreg_tf.training.callbacks import SimilarityMonitor
from neuroreg_tf.training.joint_data import joint_dataset, split_stimuli, stimulus_dataset
from neuroreg_tf.training.schedules import CyclicStepDecay

__all__ = [
    "CyclicStepDecay",
    "NeuralRegularizedModel",
    "SimilarityMonitor",
    "joint_dataset",
    "split_stimuli",
    "stimulus_dataset",
]
