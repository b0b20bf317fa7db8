"""The predictive model ("denoiser") of neural responses, in Keras.

The design follows the field's system-identification models (Sinz et al. 2018,
Walker et al. 2019; sinzlab/neuralpredictors), composed of swappable parts:

* core: 3 convolutional layers with skip connections (every layer sees the
  outputs of all earlier layers; the features are all layers concatenated),
  batch norm and ELU; a Laplace smoothness penalty on the first layer's kernels;
* readout, one per neuron: ``"factorized"`` (spatial mask x feature weights)
  or ``"gaussian"`` (features sampled at a learned location, jittered during
  training);
* shifter: an MLP from the pupil centre to a shift of the readout position
  (the image moves on the retina with the eye);
* modulator: an MLP from behaviour to a per-neuron multiplicative gain;
* output ELU(x) + 1 (positive rates), Poisson loss, Adam, early stopping on
  the validation correlation with the best weights restored.

Behaviour and pupil centre are standardised with the training statistics, so
"neutral" behaviour and eye position (their means) are zeros; that is how
``predict_neutral`` makes the predictions of Eq 6.

Modules, as in neuralpredictors: ``config`` (hyper-parameters), ``core``, ``readouts``,
``shifter``, ``modulator``, ``model`` (the composed Keras model and the Poisson loss),
``training`` (fitting one scan's model) and ``evaluation`` (v_a and FEVE on the test trials).
"""

from neuroreg_tf.neural.predictive.config import READOUTS, PredictiveModelConfig
from neuroreg_tf.neural.predictive.evaluation import evaluate_predictor
from neuroreg_tf.neural.predictive.model import PredictiveModel, poisson_loss
from neuroreg_tf.neural.predictive.training import (
    FittedPredictor,
    fit_predictive_model,
    fit_predictive_models,
)

__all__ = [
    "READOUTS",
    "FittedPredictor",
    "PredictiveModel",
    "PredictiveModelConfig",
    "evaluate_predictor",
    "fit_predictive_model",
    "fit_predictive_models",
    "poisson_loss",
]
