r"""Runs a study: conditions x training seeds, each run trained and evaluated, one report.

    python study.py --workdir=runs/study                                    # configs/study.py
    python study.py --workdir=runs/study_local --config=configs/study.py:runlocal
    python study.py --workdir=/shared/study --config.shard=2/8              # one of 8 machines
    python study.py --workdir=runs/study --config.report_only=True          # rewrite the report

Writes <workdir>/targets/<build>/ (each target built once), <workdir>/runs/<condition>/seed_<k>/
(ordinary training workdirs, each with evaluation/), and the report: study.json, study.csv,
report.md and figures/. The same command again continues an interrupted study. See
configs/study.py for the conditions and every setting.
"""

import sys

from neuroreg_tf import cli

cli.quiet_tensorflow()

from neuroreg_tf.study import plan, runner

_CONFIG = cli.define_config("study.py", "Study config")
_WORKDIR = cli.define_workdir()


def main(argv):
    report = runner.run_study(_CONFIG.value, _WORKDIR.value)
    unfinished = report["unfinished_in_this_shard"]
    if unfinished:
        statuses = ", ".join(sorted({record["status"] for record in unfinished}))
        print(f"{len(unfinished)} run(s) of this study did not finish ({statuses}); report.md lists "
              "each with its reason. Fix what it says and run the same command again.", file=sys.stderr)
        raise SystemExit(1)


if __name__ == "__main__":
    cli.run(main, check=plan.check_config)
