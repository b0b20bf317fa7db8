r"""Builds similarity targets from recordings (real or SIMULATED).

    python build_target.py --workdir=runs/target                     # configs/build_target.py
    python build_target.py --workdir=runs/target_small --config=configs/build_target.py:small
    python build_target.py --workdir=runs/real --config=configs/build_target.py:recordings \
        --config.recordings=/data/static1.zip,/data/scan2.h5 [--config.stimuli=/data/images/]

Writes to --workdir: identity.json and config.json (what made the build), target/ (the primary
target, e.g. Neural (model); what train.py's config.target.path points at), targets/<kind>/ (the
controls), target_report.json (written last), figures/*.png and, for simulated data with
simulation.save_recordings, recordings/scan_<h>/ in the FileTree layout. Everything built from
simulated data is labelled SIMULATED. The same command again reuses the finished build; another
build in --workdir is refused unless --config.overwrite=True.
"""

from neuroreg_tf import cli

cli.quiet_tensorflow()

from neuroreg_tf.neural import build_config, build_targets, target_registry

__doc__ += (  # noqa: A001  (--help lists every registered kind, those of NEUROREG_TF_PLUGINS modules too)
    "\nTarget kinds (config.target.kind, config.target.extra_kinds; neuroreg_tf.neural.target_registry):\n"
    + target_registry.describe_kinds() + "\n"
)

_CONFIG = cli.define_config("build_target.py", "Target config")
_WORKDIR = cli.define_workdir()


def main(argv):
    target = build_targets.ensure_built(_CONFIG.value, _WORKDIR.value)
    print(f"target at {target}", flush=True)


if __name__ == "__main__":
    cli.run(main, check=build_config.check_build_config)
