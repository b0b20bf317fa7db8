r"""Target-building config: recordings (real or SIMULATED) -> similarity targets.

Default: simulate the paper's per-scan design (5000 single-trial images + 100
oracle images x 10 repeats, 36 x 64 stimuli) for 3 scans of a SIMULATED V1
population, train one predictive model per scan, and write the Neural (model)
target plus the neural_data, oracle, shuffle, random and ground_truth
controls, target_report.json and Fig. 1-like figures:

  python build_target.py --workdir=runs/target                    # 2 min 55 s on 2 CPU cores
  python build_target.py --workdir=runs/target_small \
      --config=configs/build_target.py:small                      # a smaller population

(Time measured on a quiet machine, bench/RESULTS.md; the default build's predictive models
train up to 15 epochs.)

Real recordings (neuralpredictors / SENSORIUM FileTree folders, their .zip files as
released, or StaticImageSet .h5 files; scans may have seen different images), with the
Neural (model) target on every image the scans saw, or on any stimulus set
(--config.stimuli: a folder of images or a .npy, streamed; no scan need have seen them):

  python build_target.py --workdir=runs/target_real --config=configs/build_target.py:recordings \
      --config.recordings=/data/static1.zip,/data/static2.zip,/data/scan3.h5 \
      [--config.stimuli=/data/new_images/]

Colour images are reduced to grayscale (config.images.color) and resized to the
paper's 36 x 64 (config.images.size); dead neurons are dropped with a warning,
NaN trials and unknown tiers refused unless config.read says otherwise.

Kinds (``neuroreg_tf.neural.target_registry``; ``build_target.py --help`` lists every registered
one) with settings of their own have them under config.kinds.<kind>. The VGG control needs
ImageNet VGG19 weights, which cannot be downloaded here:
  --config.target.extra_kinds=neural_data,vgg --config.kinds.vgg.weights=/path/vgg19_..._notop.h5

Variants (``--config=configs/build_target.py:<arg>``):
  small     a small SIMULATED design (2 scans x 150 neurons, 1200 + 40 x 6 trials each;
            short training) with every control.
  demo      the small design, Neural (model) target only: what demo.py and train.py build
            when no target is given.
  runlocal  a tiny SIMULATED Neural (data) target in seconds (tests, ``:runlocal`` training).
  paper     8 SIMULATED scans (the paper averages 8) of 1000 neurons; GPU scale.
  paper_noise  the default design in the paper's noise regime: rates x 0.05 and stronger shared
            gain noise (latent_strength 0.8), so that single trials give r(S_data, S_oracle) =
            0.40 (the paper's mouse V1: 0.39; this build's default: 0.60). Measured with
            --config.target.kind=neural_data (simulation seed 0, 3 scans): rate_scale 1, 0.3,
            0.15 alone gave 0.60, 0.54, 0.52; latent_strength 1.0, 1.2 alone 0.45, 0.40 (but
            median oracle correlations near 0); rate_scale 0.2 / 0.1 / 0.05 with 0.8 / 0.7 / 0.8:
            0.47, 0.45, 0.40.
  recordings  for real recordings: every control that exists for them (no ground_truth).
"""

import ml_collections

from neuroreg_tf.config import check_variant
from neuroreg_tf.neural import build_config, target_registry
from neuroreg_tf.neural.predictive import PredictiveModelConfig

VARIANTS = ("small", "demo", "runlocal", "paper", "paper_noise", "recordings")
# The SIMULATED population's noise settings of the ``paper_noise`` variant (docstring: how chosen).
PAPER_NOISE = {"rate_scale": 0.05, "latent_strength": 0.8}
# Keys older versions used: a command line with one is refused naming the new key.
RENAMED = build_config.RENAMED


def get_config(arg=None):
    """Returns the config; ``arg`` is None or one of ``VARIANTS``."""
    check_variant(arg, VARIANTS, "configs/build_target.py")
    config = ml_collections.ConfigDict()
    # Comma-separated FileTree directories / .h5 files. Empty: simulate.
    config.recordings = ""
    # The Neural (model) target's stimuli: a folder of images or a .npy/.npz, prepared like the
    # recordings' images and streamed (any number). Empty: every image the scans saw.
    config.stimuli = ""

    # How stored images become the stimuli (neuroreg_tf.neural.recordings.images).
    config.images = ml_collections.ConfigDict()
    config.images.color = "mean"  # mean | luminance | channel:K | weights:a,b,...
    config.images.size = "36,64"  # height,width (the paper's); "" keeps the stored size
    config.images.scale = "auto"  # auto | unit | 255: stored values -> [0, 1] (auto: ints 0..255, floats [0, 1] clipped, or clearly 0..255)

    # What reading does with unusable data (neuroreg_tf.neural.recordings.treatments).
    config.read = ml_collections.ConfigDict()
    config.read.dead_neurons = "drop"  # drop (with a warning) | error
    config.read.nonfinite = "error"  # error | drop trials with NaN/inf responses or behaviour
    config.read.unknown_tiers = "error"  # error | drop trials of tiers other than train/validation/test/final_test

    # The streamed target on config.stimuli.
    config.streaming = ml_collections.ConfigDict()
    config.streaming.chunk = 4096  # stimuli per chunk
    config.streaming.projection_dims = 0  # 0: exact; k: random projection to k dimensions

    config.simulation = ml_collections.ConfigDict()
    config.simulation.preset = "default"  # simulation.PRESETS: paper | default | small
    config.simulation.seed = 0
    # Properties of the SIMULATED population (the study's ablations vary one at a time).
    config.simulation.complex_fraction = 0.5  # complex vs simple cells
    config.simulation.wavelength_range = (6.0, 32.0)  # preferred wavelengths, pixels
    config.simulation.rate_scale = 1.0  # x visual gain: higher rates, higher SNR
    # Shared gain fluctuations no recorded variable explains (std of the loadings): higher is noisier.
    config.simulation.latent_strength = build_config.DEFAULT_LATENT_STRENGTH
    config.simulation.neurons_per_scan = 0  # 0: the preset's
    config.simulation.n_scans = 0  # 0: the preset's
    # Also write the simulated scans in the FileTree layout under workdir/recordings/.
    config.simulation.save_recordings = False

    config.target = ml_collections.ConfigDict()
    config.target.kind = "neural_model"  # written to workdir/target (what train.py reads)
    # Comma-separated; each written to workdir/targets/<kind>; "ground_truth" is refused for
    # real data, "vgg" needs kinds.vgg.weights. Empty: only the primary target.
    config.target.extra_kinds = "neural_data,oracle,shuffle,random,ground_truth"
    config.target.seed = 0  # shuffle permutation and random-control seed

    # Each kind's own settings (target_registry: TargetKind.options), e.g. kinds.vgg.weights: a
    # Keras VGG19 notop weights file, required for the "vgg" kind.
    config.kinds = ml_collections.ConfigDict(target_registry.default_options())

    # The predictive models (neuroreg_tf.neural.predictive.PredictiveModelConfig, the one
    # definition of these fields and their defaults): a 3-layer core with smooth, Gabor-sized
    # first-layer kernels (Laplace-penalised), a factorized readout on pooled features, shifter
    # and modulator, Adam, early stopping on the validation correlation.
    config.model = ml_collections.ConfigDict(PredictiveModelConfig().as_dict())
    # Processes fitting the scans' models at once, each single-threaded, so that the models
    # and the target are the same bit for bit on every run; -1: one per scan; 0: in-process
    # (faster to start, not reproducible bit for bit).
    config.model.workers = -1

    config.figures = True
    # Replace what --workdir holds (another build, or an unfinished one) instead of refusing.
    config.overwrite = False

    if arg in ("small", "demo"):
        config.simulation.preset = "small"
        config.model.max_epochs = 8
        if arg == "demo":
            config.target.extra_kinds = ""
    elif arg == "runlocal":
        config.simulation.preset = "tiny"
        config.target.kind = "neural_data"
        config.target.extra_kinds = ""
        config.figures = False
    elif arg == "paper":
        config.simulation.preset = "paper"
        config.model.channels = 32
        config.model.max_epochs = 100
        config.model.patience = 5
    elif arg == "paper_noise":
        config.simulation.rate_scale = PAPER_NOISE["rate_scale"]
        config.simulation.latent_strength = PAPER_NOISE["latent_strength"]
    elif arg == "recordings":
        config.target.extra_kinds = "neural_data,oracle,shuffle,random"
    return config
