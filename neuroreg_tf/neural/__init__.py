"""Neural side: recordings, a SIMULATED V1, neural statistics, the predictive model, targets.

Modules, in the order data flows through them:

* ``recordings``: the ``Recording`` of one scan; FileTree and HDF5 readers/writers.
* ``simulation``: a SIMULATED mouse-V1 population and multi-scan experiments.
* ``statistics``: oracle correlation, FEVE, Eq 4-5 fluctuations, pair correlations.
* ``predictive``: the Keras predictive model (core, readout, shifter, modulator).
* ``build``: every target kind (neural_model, neural_data, oracle, shuffle, random, vgg,
  ground_truth) in the ``neuroreg_tf.targets`` format.
* ``pipeline``: recordings -> targets + target_report.json + figures (``build_target.py``),
  and ``build_simulated_target`` for a quick demo target.
* ``scale``: streaming embedding targets for 100k+ stimuli.
* ``figures``: Fig. 1-like plots.

Import the submodules directly; this package imports nothing heavy on its own.
"""
