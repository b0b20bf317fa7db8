r"""Builds similarity targets from recordings (real or SIMULATED).

    python build_target.py --workdir=runs/target                     # configs/build_target.py
    python build_target.py --workdir=runs/target_small --config=configs/build_target.py:small
    python build_target.py --workdir=runs/real --config=configs/build_target.py:recordings \
        --config.recordings=/data/static1.zip,/data/scan2.h5 [--config.stimuli=/data/images/]

Writes to --workdir: config.json (the resolved config), target/ (the primary
target, e.g. Neural (model); what train.py's config.target.path points at),
targets/<kind>/ (the controls), target_report.json, figures/*.png and, for
simulated data with simulation.save_recordings, recordings/scan_<h>/ in the
FileTree layout. Everything built from simulated data is labelled SIMULATED.
"""

import os
import sys

from neuroreg_tf import cli

cli.quiet_tensorflow()

from absl import app, flags
from ml_collections import config_flags

from neuroreg_tf import workdir as workdir_files
from neuroreg_tf.errors import NeuroregError
from neuroreg_tf.neural import build_targets

_CONFIG = config_flags.DEFINE_config_file(
    "config", "configs/build_target.py", "Target config file (optionally path:arg).", lock_config=True
)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for everything the build writes.")
flags.mark_flag_as_required("workdir")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    cli.quiet_absl_info()
    config, workdir = _CONFIG.value, _WORKDIR.value
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, workdir_files.CONFIG), "w") as f:
        f.write(config.to_json_best_effort(indent=2))
    try:
        report = build_targets.build_from_config(config, workdir)
    except NeuroregError as error:  # bad config or data: the message says what to fix
        print(f"build_target.py: {type(error).__name__}: {error}", file=sys.stderr, flush=True)
        sys.exit(2)
    print(f"done in {report['seconds']} s; target at {report['targets'][config.target.kind]}", flush=True)


if __name__ == "__main__":
    app.run(main)
