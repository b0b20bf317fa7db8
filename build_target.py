r"""Builds similarity targets from recordings (real or SIMULATED).

    python build_target.py --workdir=runs/target                     # configs/build_target.py
    python build_target.py --workdir=runs/target_small --config=configs/build_target.py:small
    python build_target.py --workdir=runs/real --config.recordings=/data/scan1,/data/scan2.h5

Writes to --workdir: config.json (the resolved config), target/ (the primary
target, e.g. Neural (model); what train.py's config.target.path points at),
targets/<kind>/ (the controls), target_report.json, figures/*.png and, for
simulated data with simulation.save_recordings, recordings/scan_<h>/ in the
FileTree layout. Everything built from simulated data is labelled SIMULATED.
"""

import os

from neuroreg_tf import cli

cli.quiet_tensorflow()

from absl import app, flags
from ml_collections import config_flags

from neuroreg_tf.neural import pipeline, predictive, recordings, simulation

_CONFIG = config_flags.DEFINE_config_file(
    "config", "configs/build_target.py", "Target config file (optionally path:arg).", lock_config=True
)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for everything the build writes.")
flags.mark_flag_as_required("workdir")


def _progress(message: str) -> None:
    print(message, flush=True)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    cli.quiet_absl_info()
    config = _CONFIG.value
    workdir = _WORKDIR.value
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, "config.json"), "w") as f:
        f.write(config.to_json_best_effort(indent=2))

    experiment = None
    if config.recordings:
        paths = [p.strip() for p in config.recordings.split(",") if p.strip()]
        _progress(f"reading {len(paths)} recording(s)")
        scans = [recordings.read_recording(p) for p in paths]
    else:
        _progress(f"simulating V1 ({simulation.SIMULATED_LABEL}), preset {config.simulation.preset!r}")
        experiment = simulation.simulate_experiment(preset=config.simulation.preset, seed=config.simulation.seed)
        scans = experiment.recordings
        if config.simulation.save_recordings:
            simulation.write_experiment(os.path.join(workdir, "recordings"), experiment)
            _progress(f"wrote {len(scans)} simulated scans and their ground truth to {os.path.join(workdir, 'recordings')}")

    requested = [k.strip() for k in config.target.extra_kinds.split(",") if k.strip()]
    extra_kinds = [k for k in requested if not (k == "ground_truth" and experiment is None)]
    report = pipeline.build_targets(
        scans,
        workdir,
        primary_kind=config.target.kind,
        extra_kinds=extra_kinds,
        predictor_config=predictive.PredictiveModelConfig(**config.model.to_dict()),
        experiment=experiment,
        vgg_weights=config.vgg.weights or None,
        make_figures=config.figures,
        seed=config.target.seed,
        log=_progress,
    )
    _progress(f"done in {report['seconds']} s; target at {report['targets'][config.target.kind]}")


if __name__ == "__main__":
    app.run(main)
