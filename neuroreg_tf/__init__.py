"""neuroreg_tf: neural representational-similarity regularization for Keras classifiers."""

__version__ = "0.1.0"
