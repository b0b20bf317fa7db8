"""One run of a study in a fresh process: ``python -m neuroreg_tf.study.worker --workdir=...``.

The study runner starts one per run (``config.workers`` at a time) and writes the study's config
to its standard input; it trains and evaluates the run, and records a failure beside the run
directory.
"""

from __future__ import annotations

import argparse
import json
import sys


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--condition", required=True)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--threads", type=int, default=0, help="TensorFlow threads (0: its default)")
    arguments = parser.parse_args()

    from neuroreg_tf.quiet import quiet_tensorflow

    quiet_tensorflow()
    import ml_collections
    import tensorflow as tf

    if arguments.threads:
        tf.config.threading.set_intra_op_parallelism_threads(arguments.threads)
        tf.config.threading.set_inter_op_parallelism_threads(arguments.threads)
    from neuroreg_tf.study import plan as plan_lib
    from neuroreg_tf.study import runner

    config = ml_collections.ConfigDict(json.load(sys.stdin))
    plan = plan_lib.make_plan(config, arguments.workdir)
    (run,) = [r for r in plan.runs if r.condition.name == arguments.condition and r.seed == arguments.seed]
    outcome = runner.execute_run(config, plan, run)
    raise SystemExit(0 if outcome["status"] == "finished" else 1)


if __name__ == "__main__":
    main()
