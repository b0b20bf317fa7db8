"""One run of a study in a fresh process: ``python -m neuroreg_tf.study.worker --workdir=...``.

The study runner starts one per run (``config.workers`` at a time) and writes the study's config
to its standard input; it trains and evaluates the run, and records a failure beside the run
directory.
"""

from __future__ import annotations

import json
import sys

from absl import app, flags

_WORKDIR = flags.DEFINE_string("workdir", None, "The study's directory.", required=True)
_CONDITION = flags.DEFINE_string("condition", None, "The run's condition name.", required=True)
_SEED = flags.DEFINE_integer("seed", None, "The run's training seed.", required=True)
_THREADS = flags.DEFINE_integer("threads", 0, "TensorFlow threads (0: its default).")


def main(argv) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    from neuroreg_tf.quiet import quiet_tensorflow

    quiet_tensorflow()
    import ml_collections
    import tensorflow as tf

    if _THREADS.value:
        tf.config.threading.set_intra_op_parallelism_threads(_THREADS.value)
        tf.config.threading.set_inter_op_parallelism_threads(_THREADS.value)
    from neuroreg_tf import plugins
    from neuroreg_tf.study import plan as plan_lib
    from neuroreg_tf.study import runner

    plugins.load()  # the kinds, losses and conditions of your own that the study's process had

    config = ml_collections.ConfigDict(json.load(sys.stdin))
    plan = plan_lib.make_plan(config, _WORKDIR.value)
    (run,) = [r for r in plan.runs if r.condition.name == _CONDITION.value and r.seed == _SEED.value]
    from neuroreg_tf.progress import print_line

    # Its progress (training, each attack, each check) goes to the run's log, runs/<condition>/seed_<k>.log.
    outcome = runner.execute_run(config, plan, run, progress=print_line)
    raise SystemExit(0 if outcome["status"] == "finished" else 1)


if __name__ == "__main__":
    app.run(main)
