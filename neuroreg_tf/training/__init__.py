"""Joint training of classifiers with a neural similarity loss."""

from neuroreg_tf.training.callbacks import SimilarityMonitor
from neuroreg_tf.training.pipeline import joint_dataset, split_stimuli, stimulus_dataset
from neuroreg_tf.training.regularized import NeuralRegularizedModel
from neuroreg_tf.training.schedules import CyclicStepDecay

__all__ = [
    "CyclicStepDecay",
    "NeuralRegularizedModel",
    "SimilarityMonitor",
    "joint_dataset",
    "split_stimuli",
    "stimulus_dataset",
]
