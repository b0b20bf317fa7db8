"""Running a study: its targets built once, its runs trained and evaluated, failures recorded.

``run_study`` claims the study's workdir, builds the targets this shard needs (one build at a
time per target, under a file lock, so shards on a shared filesystem build each target once),
then runs every run of the shard that is not finished yet: ``config.workers`` worker processes
at once (each run in a fresh process, ``python -m neuroreg_tf.study.worker``; its output in
``runs/<condition>/seed_<k>.log``), or one after another in this process with ``workers = 0``. A run is an ordinary
training workdir plus its evaluation, so an interrupted run resumes exactly and a finished one
is reused. A run that fails leaves ``seed_<k>.failed.json`` (its error) beside its directory,
and the others go on. Every
invocation ends by writing the report over all runs that have finished, in any shard.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import subprocess
import sys
import time
import traceback
from concurrent.futures import ThreadPoolExecutor, as_completed

import ml_collections

from neuroreg_tf import workdir as workdir_files
from neuroreg_tf.fileio import read_json, write_json_atomic
from neuroreg_tf.neural import build_targets
from neuroreg_tf.progress import Counter, Reporter, print_line, reporter
from neuroreg_tf.robustness import evaluation
from neuroreg_tf.robustness.settings import EPSILON_NORMS, NORMS
from neuroreg_tf.study import report as report_lib
from neuroreg_tf.study import alignment as study_alignment
from neuroreg_tf.study import transfer
from neuroreg_tf.study import plan as plan_lib
from neuroreg_tf.study.plan import Run, StudyPlan, make_plan, study_identity, upgrade_identity
from neuroreg_tf.training import trainer


@contextlib.contextmanager
def _locked(path: str):
    """An exclusive ``fcntl`` lock on ``path`` (created), held for the ``with`` block."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def build_study_targets(plan: StudyPlan, builds, progress: Reporter = print_line) -> None:
    """Builds (or reuses) each target build in ``builds``, one process at a time per build."""
    for name in builds:
        directory = plan.build_directory(name)
        with _locked(directory + ".lock"):
            build_targets.ensure_built(plan.builds[name], directory, progress=progress)


def is_finished(run: Run) -> bool:
    """Whether ``run`` has trained and been evaluated, its records matching its model (``report.run_state``)."""
    return report_lib.run_state(run)[0] == "finished"


def execute_run(config, plan: StudyPlan, run: Run, examples=None, progress: Reporter = None) -> dict:
    """Trains and evaluates one run in this process; records a failure instead of raising it.

    Returns:
        ``{"status": "finished"}`` or ``{"status": "failed", "error": ...}``.
    """
    failed = run.failed_path
    try:
        if os.path.exists(failed):
            os.remove(failed)
        trainer.train(plan.train_config(config.train, run), run.directory, progress=progress)
        # An evaluation of a model the run no longer holds (it was trained again) is replaced.
        stale = workdir_files.read_identity(run.evaluation_directory) is not None and \
            report_lib.evaluation_problem(run) is not None
        x, y = examples if examples is not None else load_examples(config)
        evaluation.evaluate_models(
            [(run.condition.label, run.directory)],
            x,
            y,
            sigmas=config.evaluation.noise.sigmas,
            seeds=config.evaluation.noise.seeds,
            batch_size=config.evaluation.batch_size,
            adversarial=plan_lib.evaluation_arguments(config),
            workdir=run.evaluation_directory,
            metadata={"dataset": config.train.data.dataset, "split": "test", "condition": run.condition.name,
                      "seed": run.seed},
            overwrite=bool(config.overwrite) or stale,
            progress=progress,
        )
        if run.compare_preset:
            # The same samples scored with the cheaper preset: does it rank the conditions alike?
            evaluation.evaluate_models(
                [(run.condition.label, run.directory)], x, y, sigmas=(0.0,), seeds=(0,),
                batch_size=config.evaluation.batch_size, adversarial=plan_lib.comparison_arguments(config),
                workdir=run.comparison_directory,
                metadata={"condition": run.condition.name, "seed": run.seed, "preset": run.compare_preset},
                overwrite=bool(config.overwrite) or report_lib.evaluation_problem(run, run.comparison_directory,
                                                                                  check_settings=False) is not None,
                progress=progress,
            )
        return {"status": "finished"}
    except Exception as error:  # noqa: BLE001 - a failed run is recorded and the study goes on
        os.makedirs(os.path.dirname(failed), exist_ok=True)
        record = {"error": f"{type(error).__name__}: {error}", "traceback": traceback.format_exc()}
        write_json_atomic(failed, record)
        return {"status": "failed", "error": record["error"]}


def load_examples(config):
    """The study's evaluation examples: the first ``evaluation.num_examples`` test images."""
    return evaluation.load_examples(
        config.train.data.dataset, "test", num_examples=config.evaluation.num_examples or None,
        data_dir=config.train.data.data_dir,
    )


def _run_in_worker(config: ml_collections.ConfigDict, workdir: str, run: Run, threads: int) -> dict:
    """Runs ``run`` in a fresh process (``neuroreg_tf.study.worker``), its output to its log.

    The worker gets this study's config on its standard input, not from ``config.json``, which
    another shard of the study may rewrite meanwhile.
    """
    os.makedirs(os.path.dirname(run.directory), exist_ok=True)
    command = [sys.executable, "-m", "neuroreg_tf.study.worker", f"--workdir={workdir}",
               f"--condition={run.condition.name}", f"--seed={run.seed}", f"--threads={threads}"]
    with open(run.log_path, "w") as log:
        completed = subprocess.run(command, input=json.dumps(config.to_dict()), stdout=log,
                                   stderr=subprocess.STDOUT, text=True)
    if completed.returncode == 0 and is_finished(run):
        return {"status": "finished"}
    failed = run.failed_path
    if os.path.isfile(failed):
        return {"status": "failed", "error": read_json(failed, "a failed run's record")["error"]}
    error = f"the worker process ended with status {completed.returncode}; see {run.log_path}"
    write_json_atomic(failed, {"error": error, "traceback": ""})
    return {"status": "failed", "error": error}


def _describe(run: Run, outcome: dict) -> str:
    if outcome["status"] != "finished":
        return f"{run.key} FAILED: {outcome['error']}"
    metrics = report_lib.run_metrics(run)
    details = [f"clean {metrics['clean']:.3f}"]
    for norm in NORMS:
        if metrics.get(f"{norm}_median") is not None:
            details.append(f"{norm} {metrics[f'{norm}_median']:.4g}")
    return f"{run.key} finished ({', '.join(details)})"


def run_study(config: ml_collections.ConfigDict, workdir: str, progress: Reporter = print_line) -> dict:
    """Builds, trains, evaluates and reports the study ``config`` describes, in ``workdir``.

    Args:
        config: a ``configs/study.py`` config.
        workdir: the study's directory (see ``neuroreg_tf.study.plan``).
        progress: reporter of one line per finished target build and run (None: silent).

    Returns:
        The report (``study.json``'s content), with ``unfinished_in_this_shard``: the records
        of this shard's runs that did not finish (``study.py`` exits 1 when there are any).
    """
    plan = make_plan(config, workdir)
    index, count = plan.shard
    # Each shard holds its own lock: shards of one study run at once; the same shard twice does not.
    # Writing the report only reads finished runs, so it may run beside them (one report at a time).
    lock = workdir_files.LOCK if count == 1 else f"{workdir_files.LOCK}-shard-{index}-of-{count}"
    what = "study" if count == 1 else f"study shard {index}/{count}"
    if config.report_only:
        lock, what = f"{workdir_files.LOCK}-report", "study report"
    with workdir_files.locked(workdir, what, name=lock, progress=progress):
        return _run_study(config, plan, workdir, progress)


def _run_study(config, plan, workdir: str, progress: Reporter) -> dict:
    log = reporter(progress)
    started = time.time()
    workdir_files.claim(workdir, study_identity(config), what="study", finished_marker="(never)",
                        overwrite=False, start_over=f"delete {workdir} (or move it aside) to start this study over",
                        upgrade=upgrade_identity)
    write_json_atomic(workdir_files.path(workdir, workdir_files.CONFIG), config.to_dict())
    for name, reason in plan.skipped.items():
        log(f"skipping condition {name}: {reason}")
    if not config.report_only:
        runs = plan.shard_runs()
        pending = [run for run in runs if not is_finished(run)]
        # The builds pending runs need, and those already made (an older one gains its diagnostics).
        builds = sorted({run.condition.build for run in runs if run.condition.build and (
            run in pending or os.path.isdir(plan.build_directory(run.condition.build)))})
        if builds:
            log(f"targets: {', '.join(builds)} in {os.path.join(workdir, 'targets')}")
            build_study_targets(plan, builds, progress)
        shard = f" (shard {plan.shard[0]}/{plan.shard[1]})" if plan.shard[1] > 1 else ""
        log(f"{len(runs)} run(s){shard}: {len(runs) - len(pending)} already finished, {len(pending)} to run, "
            f"{config.workers or 'in-process'} worker(s)")
        counter = Counter(len(pending), "run", progress)
        if config.workers == 0:
            examples = load_examples(config) if pending else None
            for run in pending:
                counter.advance(_describe(run, execute_run(config, plan, run, examples)))
        else:
            threads = max(1, (os.cpu_count() or 1) // int(config.workers))
            with ThreadPoolExecutor(max_workers=int(config.workers)) as pool:
                futures = {pool.submit(_run_in_worker, config, workdir, run, threads): run for run in pending}
                for future in as_completed(futures):
                    counter.advance(_describe(futures[future], future.result()))
    records = report_lib.collect(plan)
    finished = {f"{r['condition']}/seed_{r['seed']}" for r in records if r["status"] == "finished"}
    if study_alignment.applies(config) and finished:
        study_alignment.run_alignments(config, plan, finished, progress)
    adversarial = config.evaluation.adversarial
    if adversarial.get("diagnostics", False) and adversarial.num_examples and not config.report_only and finished:
        x, y = load_examples(config)
        # Transfer compares budget attacks: L-inf and L2 only.
        norms = tuple(n for n in adversarial.norms if n in EPSILON_NORMS)
        transfer.run_transfer_checks(plan, finished, x, y, norms, progress)
    report = report_lib.write_report(config, plan, seconds=time.time() - started, progress=progress,
                                     records=records)
    mine = {run.directory for run in plan.shard_runs()}
    report["unfinished_in_this_shard"] = [
        record for record in report["runs"] if record["directory"] in mine and record["status"] != "finished"
    ]
    return report
