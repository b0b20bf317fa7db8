"""Neural side: recordings, a SIMULATED V1, neural statistics, the predictive model, targets.

Modules, in the order data flows through them:

* ``recordings``: the ``Recording`` of one scan; the neuralpredictors / SENSORIUM layouts
  (FileTree folders and zips, StaticImageSet HDF5) read and written, colour reduction and
  resizing, documented treatments of unusable data.
* ``simulation``: a SIMULATED mouse-V1 population and multi-scan experiments;
  ``simulated_release``: a SIMULATED multi-animal dataset in the released layout.
* ``statistics``: oracle correlation, FEVE, Eq 4-5 fluctuations, pair correlations.
* ``predictive``: the Keras predictive model (core, readout, shifter, modulator).
* ``stimulus_sets``: any folder of images or array file as stimuli for the model target.
* ``target_kinds``: every target kind (neural_model, neural_data, oracle, shuffle, random,
  vgg, ground_truth) in the ``neuroreg_tf.targets`` format.
* ``streaming``: embedding targets for 100k+ stimuli, written chunk by chunk.
* ``build_targets``: recordings -> targets + target_report.json + figures (``build_target.py``),
  ``check_build_config``.
* ``figures``: Fig. 1-like plots.

Import the submodules directly; this package imports nothing heavy on its own.
"""
