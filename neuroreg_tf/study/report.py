"""A study's report: ``study.json``, ``study.csv``, ``report.md`` and figures, from the runs on disk.

Every run of the plan appears: finished runs with their numbers, failed runs with their error,
stale runs (records that do not belong to the run's current model, ``run_state``) with the
reason, runs not run yet (another shard, an interrupted study) as missing. Per condition, each metric is
summarised as mean +- SEM over the training seeds that finished, and compared, paired by seed,
with None and with Shuffle (``neuroreg_tf.study.statistics``).
"""

from __future__ import annotations

import csv
import dataclasses
import math
import os
import platform
from typing import Any, Callable

import numpy as np

from neuroreg_tf import __version__, workdir as workdir_files
from neuroreg_tf.fileio import read_json, write_json_atomic
from neuroreg_tf.progress import Reporter, print_line, reporter
from neuroreg_tf.robustness.settings import NORM_TITLES, NORMS
from neuroreg_tf.study import conditions as conditions_lib
from neuroreg_tf.study import alignment as study_alignment
from neuroreg_tf.study import statistics, transfer
from neuroreg_tf.study.plan import Run, StudyPlan

JSON = "study.json"
CSV = "study.csv"
MARKDOWN = "report.md"
FIGURES = "figures"
REFERENCES = ("none", "shuffle")  # conditions every other one is compared with, paired by seed
STATUSES = ("finished", "stale", "failed", "missing")  # of a run, in the order the report counts them


@dataclasses.dataclass(frozen=True)
class Metric:
    """One number the report gives per run, summarises per condition and may compare by seed.

    Attributes:
        name: the run record's key and the study.csv column.
        title: the heading in report.md.
        digits: decimals in report.md.
        higher_is_better: its direction (shown as ↑ or ↓ beside the title).
        compared: whether the paired comparison tables show it.
        in_csv: whether study.csv has a column for it.
        read: ``read(summary, evaluated_model) -> value or None`` from a run's summary.json and
            its entry in robustness.json.
    """

    name: str
    title: str
    digits: int
    higher_is_better: bool
    compared: bool
    in_csv: bool
    read: Callable[[dict, dict], Any]

    @property
    def heading(self) -> str:
        return f"{self.title} {'↑' if self.higher_is_better else '↓'}"


def _noise_accuracies(model: dict) -> dict:
    return {float(entry["sigma"]): float(entry["accuracy"]) for entry in model["noise"] if entry["sigma"] > 0}


def _noise_mean(model: dict) -> float | None:
    noise = _noise_accuracies(model)
    return float(np.mean(list(noise.values()))) if noise else None


def _adversarial_median(norm: str):
    def read(summary, model):
        entry = model.get("adversarial", {}).get(norm)
        return _number(entry["median"]) if entry else None
    return read


# The report's metrics, in table order; the per-sigma noise accuracies (``noise_metric``) go
# after the first. A new metric is one entry here.
METRICS = (
    Metric("clean", "clean", 3, True, True, True, lambda summary, model: float(model["clean_accuracy"])),
    Metric("noise_mean", "noise (mean over σ)", 3, True, True, False, lambda summary, model: _noise_mean(model)),
    Metric("linf_median", "L∞ median", 4, True, True, True, _adversarial_median("linf")),
    Metric("l2_median", "L2 median", 4, True, True, True, _adversarial_median("l2")),
    Metric("l1_median", "L1 median", 4, True, True, True, _adversarial_median("l1")),
    Metric("l0_median", "L0 median", 1, True, True, True, _adversarial_median("l0")),
    Metric("similarity_r", "held-out r", 3, True, False, True,
           lambda summary, model: summary["final"].get("val_similarity_r")),
    # The best layer's noise-ceiling normalised V1 predictivity (``study.alignment``), attached
    # to the records after they are read (``attach_alignment``).
    Metric("alignment", "V1 alignment", 3, True, True, True, lambda summary, model: None),
)
_BY_NAME = {metric.name: metric for metric in METRICS}


def noise_metric(sigma: float, *, noisiest: bool = False) -> Metric:
    """The accuracy at noise level ``sigma`` (compared by seed only at the noisiest level)."""
    return Metric(f"noise_{sigma:g}", f"σ = {sigma:g}", 3, True, noisiest, True,
                  lambda summary, model: _noise_accuracies(model).get(float(sigma)))


def metric(name: str) -> Metric:
    """The declared metric ``name`` (``noise_<sigma>`` for a noise level)."""
    if name in _BY_NAME:
        return _BY_NAME[name]
    if name.startswith("noise_"):
        return noise_metric(float(name[len("noise_"):]))
    raise KeyError(f"No metric {name!r}; the report has {', '.join(_BY_NAME)} and noise_<sigma>.")


def evaluation_problem(run: Run, directory: str | None = None, *, check_settings: bool = True) -> str | None:
    """Why the evaluation in ``run.evaluation_directory`` does not score the run's current model
    with the study's current evaluation settings.

    The evaluation's identity records the checksum of the model file it scored; it must be the
    checksum of the file the run's directory holds now; and its settings
    (``evaluation.settings_identity``) must be ``run.evaluation_settings``. None when both hold.
    ``directory``: another evaluation of the run (its scoring with ``compare_preset``), checked
    for the model only with ``check_settings=False``.
    """
    from neuroreg_tf.robustness.loading import artifact_fingerprint

    directory = directory or run.evaluation_directory
    recorded = workdir_files.read_identity(directory) or {}
    scored = [model.get("artifact") for model in recorded.get("models", [])]
    try:
        current = artifact_fingerprint(run.directory)
    except (OSError, ValueError):
        return f"{run.directory} holds no model"
    if scored != [current]:
        return ("its evaluation scored another model file than the one the run holds now (the run "
                "was trained again after it was evaluated); the next study.py run evaluates it again")
    if check_settings and run.evaluation_settings is not None:
        changed = [key for key, value in run.evaluation_settings.items() if recorded.get(key) != value]
        if changed:
            return (f"its evaluation used other settings ({', '.join(changed)}: e.g. the attack preset or the "
                    "norms changed); the next study.py run evaluates it again")
    return None


def summary_problem(run: Run) -> str | None:
    """Why ``summary.json`` does not describe the run's training (another identity); None when it does."""
    summary = read_json(workdir_files.path(run.directory, workdir_files.SUMMARY), "a run's summary")
    identity = workdir_files.read_identity(run.directory) or {}
    if summary.get("identity") is None or summary.get("identity") != identity.get("fingerprint"):
        return f"its {workdir_files.SUMMARY} belongs to another training config than its {workdir_files.IDENTITY}"
    return None


def run_state(run: Run) -> tuple[str, str | None]:
    """(status, reason) of a run, from its files; status is one of ``STATUSES``.

    "finished" needs the training summary and the evaluation report, each belonging to the
    run's current model; "stale" is a run whose records do not (the reason says which);
    "failed" a run whose last attempt recorded an error; "missing" one not run (yet).
    """
    if os.path.isfile(run.failed_path):
        return "failed", read_json(run.failed_path, "a failed run's record")["error"]
    trained = workdir_files.is_finished_training(run.directory)
    evaluated = os.path.isfile(os.path.join(run.evaluation_directory, workdir_files.ROBUSTNESS_JSON))
    if not (trained and evaluated):
        return "missing", None
    if run.compare_preset and not os.path.isfile(os.path.join(run.comparison_directory, workdir_files.ROBUSTNESS_JSON)):
        return "missing", None
    problem = summary_problem(run) or evaluation_problem(run) or (
        run.compare_preset and evaluation_problem(run, run.comparison_directory, check_settings=False))
    return ("stale", problem) if problem else ("finished", None)


def _number(value):
    if value is None:
        return None
    if isinstance(value, str):  # robustness.json writes inf as "inf"
        return float(value)
    return float(value)


def run_metrics(run: Run) -> dict:
    """The numbers of a finished run: every declared metric, the accuracy per noise level, gamma."""
    summary = read_json(workdir_files.path(run.directory, workdir_files.SUMMARY), "a run's summary")
    robustness = read_json(os.path.join(run.evaluation_directory, workdir_files.ROBUSTNESS_JSON),
                           "a run's evaluation")
    (model,) = robustness["models"]
    metrics = {declared.name: declared.read(summary, model) for declared in METRICS}
    if run.compare_preset:
        compared = read_json(os.path.join(run.comparison_directory, workdir_files.ROBUSTNESS_JSON),
                             "a run's scoring with the compared preset")["models"][0].get("adversarial") or {}
        metrics["compare_preset"] = {norm: _number(values["median"]) for norm, values in compared.items()}
    metrics["noise"] = _noise_accuracies(model)
    metrics["gamma"] = summary.get("gamma", {})
    metrics["train_seconds"] = summary.get("train_seconds_this_process")
    diagnosed = {norm: values["diagnostics"] for norm, values in (model.get("adversarial") or {}).items()
                 if isinstance(values, dict) and values.get("diagnostics")}
    if diagnosed:
        metrics["diagnostics"] = {
            norm: {"checks": {c["name"]: c["status"] for c in d["checks"]},
                   "effort_curve": {str(p["iterations"]): p["median"] for p in d["effort_curve"]}}
            for norm, d in diagnosed.items()
        }
    return metrics


def collect(plan: StudyPlan) -> list[dict]:
    """One record per run of the plan: its status, and its numbers or error."""
    records = []
    for run in plan.runs:
        record = {"condition": run.condition.name, "label": run.condition.label, "seed": run.seed,
                  "directory": run.directory}
        status, reason = run_state(run)
        record["status"] = status
        if status == "finished":
            record.update(run_metrics(run))
        elif reason:
            record["error"] = reason
        records.append(record)
    return records


def _finished(plan: StudyPlan, records: list[dict]):
    """(record, run) of each finished record."""
    runs = {run.key: run for run in plan.runs}
    for record in records:
        if record["status"] == "finished":
            yield record, runs[f"{record['condition']}/seed_{record['seed']}"]


def attach_transfer(plan: StudyPlan, records: list[dict]) -> None:
    """Adds each finished run's transfer checks (``study.transfer``) to its record's diagnostics."""
    for record, run in _finished(plan, records):
        transferred = transfer.read_transfer(plan, run)
        for norm, check in (transferred or {}).items():
            record.setdefault("diagnostics", {}).setdefault(norm, {"checks": {}, "effort_curve": {}})
            record["diagnostics"][norm]["checks"]["transfer"] = check["status"]


def attach_alignment(plan: StudyPlan, records: list[dict]) -> None:
    """Adds each finished run's brain alignment (``study.alignment``), where measured, to its record."""
    for record, run in _finished(plan, records):
        result = study_alignment.read_alignment(plan, run)
        if result is None:
            continue
        record["alignment"] = result["alignment"]
        record["alignment_best_layer"] = result["best_layer"]
        record["alignment_layers"] = {layer: values["median_normalised"] for layer, values in result["layers"].items()}


# The robustness numbers alignment is set against (Spearman over runs), where the study has them.
ALIGNMENT_AGAINST = ("clean", "noise_mean", "linf_median", "l2_median", "l1_median", "l0_median")


def _spearman(pairs) -> tuple[float, float | None] | None:
    """Spearman (rho, p) of (x, y) pairs; None with fewer than 3 or where x or y is constant; p
    None below 5 pairs (scipy's t approximation means nothing there: rho = 1 of 3 gives p = 0)."""
    from scipy import stats as scipy_stats

    if len(pairs) < 3 or any(np.ptp(values) == 0 for values in zip(*pairs)):
        return None
    rho = scipy_stats.spearmanr(*zip(*pairs))
    return float(rho.statistic), (float(rho.pvalue) if len(pairs) >= 5 else None)


def alignment_vs_robustness(records, conditions) -> dict | None:
    """Spearman rho (and p) between alignment and each robustness number, over the finished runs
    and over the condition means: are the more V1-like networks the more robust ones? (exploratory)"""
    aligned = [r for r in records if r["status"] == "finished" and r.get("alignment") is not None]
    if len(aligned) < 3:
        return None
    result = {}
    for name in ALIGNMENT_AGAINST:
        pairs = [(r["alignment"], r[name]) for r in aligned if r.get(name) is not None and math.isfinite(r[name])]
        means = []
        for c in conditions:
            rows = [(r["alignment"], r[name]) for r in aligned if r["condition"] == c.name
                    and r.get(name) is not None and math.isfinite(r[name])]
            if rows:
                means.append((float(np.mean([a for a, _ in rows])), float(np.mean([v for _, v in rows]))))
        runs_rho = _spearman(pairs)
        if runs_rho is None:
            continue
        entry = {"runs": len(pairs), "rho_runs": runs_rho[0], "p_runs": runs_rho[1]}
        means_rho = _spearman(means)
        if means_rho is not None:
            entry.update(conditions=len(means), rho_conditions=means_rho[0], p_conditions=means_rho[1])
        result[name] = entry
    return result or None


def _alignment_lines(report, conditions) -> list[str]:
    aligned = [r for r in report["runs"] if r["status"] == "finished" and r.get("alignment_layers")]
    if not aligned:
        return []
    layers = list(dict.fromkeys(layer for r in aligned for layer in r["alignment_layers"]))
    lines = ["", "## Brain alignment: held-out V1 predictivity of each layer (SIMULATED neurons)", "",
             "Median over neurons of r(readout prediction, mean of repeats) / noise ceiling, on new stimuli "
             "shown to the main build's SIMULATED population (neuroreg_tf.neural.alignment); mean over seeds. "
             "A run's alignment is its best layer's.", "",
             "| condition | " + " | ".join(layers) + " | best layer (runs) |", "|---|" + "---|" * (len(layers) + 1)]
    for c in conditions:
        rows = [r for r in aligned if r["condition"] == c.name]
        if not rows:
            continue
        cells = []
        for layer in layers:
            values = [r["alignment_layers"].get(layer) for r in rows if r["alignment_layers"].get(layer) is not None]
            cells.append(f"{np.mean(values):.3f}" if values else "-")
        best = [r["alignment_best_layer"] for r in rows]
        counted = ", ".join(f"{layer} ({best.count(layer)})" for layer in dict.fromkeys(best))
        lines.append(f"| {c.label} | " + " | ".join(cells) + f" | {counted} |")
    against = report.get("alignment_vs_robustness")
    if against:
        lines += ["", "Are the more V1-like networks the more robust ones? Spearman rho between alignment and each "
                  "number, over runs and over condition means (exploratory):", "",
                  "| number | rho over runs (n, p) | rho over conditions (n, p) |", "|---|---|---|"]
        for name, entry in against.items():
            over_conditions = (f"{entry['rho_conditions']:+.2f} ({entry['conditions']}, {_p(entry['p_conditions'])})"
                               if "rho_conditions" in entry else "-")
            lines.append(f"| {_title(name)} | {entry['rho_runs']:+.2f} ({entry['runs']}, {_p(entry['p_runs'])}) | "
                         f"{over_conditions} |")
    return lines


def noise_sigmas(records) -> list[float]:
    """The noise levels the finished runs were scored at (σ > 0), sorted."""
    return sorted({s for r in records if r["status"] == "finished" for s in r["noise"]})


def report_metrics(records) -> list[Metric]:
    """The metrics the report summarises, in table order: the first declared, one per noise
    level of the finished runs, then the other declared ones that some finished run has (a
    study scoring L-inf and L2 has no L1 or L0 column)."""
    finished = [r for r in records if r["status"] == "finished"]
    sigmas = noise_sigmas(records)
    noise = [noise_metric(s, noisiest=s == sigmas[-1]) for s in sigmas]
    declared = [m for m in METRICS[1:] if not finished or any(r.get(m.name) is not None for r in finished)]
    return [METRICS[0], *noise, *declared]


def metric_names(records) -> list[str]:
    """The names of ``report_metrics``."""
    return [declared.name for declared in report_metrics(records)]


def _value(record: dict, metric: str):
    if record["status"] != "finished":
        return None
    if metric.startswith("noise_") and metric != "noise_mean":
        return record["noise"].get(float(metric[len("noise_"):]))
    return record.get(metric)


def _by_seed(records, condition: str, metric: str) -> dict:
    return {r["seed"]: _value(r, metric) for r in records if r["condition"] == condition}


def summarize(plan: StudyPlan, records: list[dict]) -> tuple[dict, dict]:
    """(summaries, comparisons): mean +- SEM per condition and metric; paired comparisons."""
    metrics = metric_names(records)
    summaries = {
        c.name: {m: statistics.summarize(_by_seed(records, c.name, m).values()).__dict__ for m in metrics}
        for c in plan.conditions
    }
    comparisons = {}
    for reference in REFERENCES:
        if reference not in {c.name for c in plan.conditions}:
            continue
        family = {}
        for metric in metrics:
            others = [c.name for c in plan.conditions if c.name != reference]
            results = [statistics.compare_paired(_by_seed(records, name, metric), _by_seed(records, reference, metric))
                       for name in others]
            adjusted = statistics.holm([r.p for r in results])
            family[metric] = {
                name: {**result.__dict__, "p_holm": p_holm}
                for name, result, p_holm in zip(others, results, adjusted)
            }
        comparisons[reference] = family
    return summaries, comparisons


def _versions() -> dict:
    import keras
    import scipy
    import tensorflow as tf

    return {"neuroreg_tf": __version__, "python": platform.python_version(), "tensorflow": tf.__version__,
            "keras": keras.__version__, "numpy": np.__version__, "scipy": scipy.__version__,
            "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores",
            "gpus": [d.name for d in tf.config.list_logical_devices("GPU")]}


def data_label(plan: StudyPlan, config) -> str:
    """"SIMULATED V1 / fashion_mnist" or "recorded data / cifar10": what the numbers are about."""
    simulated = not config.build.recordings
    return f"{'SIMULATED V1' if simulated else 'recorded data'} / {config.train.data.dataset}"


def write_report(config, plan: StudyPlan, *, seconds: float, progress: Reporter = print_line,
                 records: list[dict] | None = None) -> dict:
    """Writes ``study.json``, ``study.csv``, ``report.md`` and the figures; returns the JSON.

    ``records``: ``collect(plan)``, when the caller has it already.
    """
    log = reporter(progress)
    records = collect(plan) if records is None else records
    attach_transfer(plan, records)
    attach_alignment(plan, records)
    summaries, comparisons = summarize(plan, records)
    report = {
        "label": data_label(plan, config),
        "test": statistics.TEST_NAME,
        "seconds_this_invocation": round(seconds, 1),
        "counts": {status: sum(r["status"] == status for r in records) for status in STATUSES},
        "conditions": [
            {"name": c.name, "label": c.label, "alpha": c.alpha, "similarity_loss": c.similarity_loss,
             "note": c.note, "target": plan.target_path(c)} for c in plan.conditions
        ],
        "skipped": plan.skipped,
        "summaries": summaries,
        "comparisons": comparisons,
        "runs": records,
        "config": config.to_dict(),
        "versions": _versions(),
    }
    report["primary"] = primary_family(config, plan, records)
    report["target_diagnostics"] = condition_target_diagnostics(plan)
    report["schedule_check"] = schedule_check(records, plan.conditions)
    report["answers"] = answers(plan.conditions, records, summaries, comparisons, report["primary"])
    report["alignment_vs_robustness"] = alignment_vs_robustness(records, plan.conditions)
    write_json_atomic(os.path.join(plan.workdir, JSON), report)
    _write_csv(os.path.join(plan.workdir, CSV), records)
    figures = write_figures(plan, records, summaries, os.path.join(plan.workdir, FIGURES))
    with open(os.path.join(plan.workdir, MARKDOWN), "w") as handle:
        handle.write(markdown(report, plan, figures))
    counts = report["counts"]
    log(f"report: {format_counts(counts)} runs -> {os.path.join(plan.workdir, MARKDOWN)}")
    return report


def format_counts(counts: dict) -> str:
    """"4 finished, 1 stale, 1 failed, 0 missing"."""
    return ", ".join(f"{counts.get(status, 0)} {status}" for status in STATUSES)


def _write_csv(path: str, records: list[dict]) -> None:
    sigmas = noise_sigmas(records)
    layers = sorted({layer for r in records if r["status"] == "finished" for layer in r["gamma"]})
    columns = [declared.name for declared in report_metrics(records) if declared.in_csv]
    header = ["condition", "seed", "status", *columns] + [f"gamma_{layer}" for layer in layers] + ["error"]
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        for r in records:
            done = r["status"] == "finished"
            row = [r["condition"], r["seed"], r["status"]] + [_value(r, name) for name in columns]
            row += [r["gamma"].get(layer) if done else None for layer in layers]
            writer.writerow(row + [r.get("error", "")])


def _format(summary: dict, digits: int = 3) -> str:
    if summary["mean"] is None:
        return "-"
    mean = summary["mean"]
    text = f"{mean:.{digits}f}" if abs(mean) >= 10 ** -digits or mean == 0 else f"{mean:.2g}"
    if summary["sem"] is not None:
        text += f" ± {summary['sem']:.{digits}f}" if abs(summary["sem"]) >= 10 ** -digits else f" ± {summary['sem']:.1g}"
    if summary.get("n_nonfinite"):
        text += f" ({summary['n_nonfinite']} non-finite left out)"
    return text


def _p(value) -> str:
    return "-" if value is None else (f"{value:.3f}" if value >= 0.001 else f"{value:.1e}")


def _title(name: str) -> str:
    return metric(name).heading


def markdown(report: dict, plan: StudyPlan, figures: list[str]) -> str:
    """The human-readable report."""
    summaries, comparisons = report["summaries"], report["comparisons"]
    conditions = [c for c in plan.conditions]
    metrics = list(next(iter(summaries.values())).keys()) if summaries else []
    counts = report["counts"]
    lines = [
        f"# Study report: {report['label']}",
        "",
        f"Runs: {format_counts(counts)}; "
        f"mean ± SEM over training seeds (n per cell below). Comparisons: {report['test']}, paired by "
        "training seed; d_z = mean difference / SD of the differences; p_holm adjusts for the "
        "conditions compared with one reference on one metric (Holm).",
        "",
    ]
    if "SIMULATED" in report["label"]:
        lines += ["All neural targets here come from a SIMULATED V1 population, not from recordings.", ""]
    lines += ["## Conditions", "", "| condition | alpha | loss | seeds finished | what it is |", "|---|---|---|---|---|"]
    for c in conditions:
        n = summaries[c.name]["clean"]["n"] if metrics else 0
        lines.append(f"| {c.label} | {c.alpha:g} | {c.similarity_loss} | {n} | {c.note} |")
    for name, reason in report["skipped"].items():
        lines.append(f"| {name} | - | - | skipped | {reason} |")
    lines += _target_lines(report.get("target_diagnostics"), conditions)
    sigmas = noise_sigmas(report["runs"])
    lines += ["", "## Results (mean ± SEM)", ""]
    if sigmas:
        lines += [f"noise (mean over σ) averages the accuracies at σ = {', '.join(f'{x:g}' for x in sigmas)}.", ""]
    lines += ["| condition | " + " | ".join(_title(m) for m in metrics) + " |",
              "|---|" + "---|" * len(metrics)]
    for c in conditions:
        lines.append(f"| {c.label} | " + " | ".join(
            _format(summaries[c.name][m], metric(m).digits) for m in metrics) + " |")
    lines += _primary_lines(report.get("primary"), conditions)
    for reference, family in comparisons.items():
        ref_label = next(c.label for c in conditions if c.name == reference)
        shown = [m.name for m in report_metrics(report["runs"]) if m.compared and m.name in family]
        lines += ["", f"## Each condition vs {ref_label} (paired by seed; exploratory)", "",
                  "| condition | " + " | ".join(f"{_title(m)}: Δ, d_z, p (p_holm)" for m in shown) + " |",
                  "|---|" + "---|" * len(shown)]
        for c in conditions:
            if c.name == reference:
                continue
            cells = []
            for m in shown:
                r = family[m][c.name]
                if r["difference"] is None:
                    cells.append("-")
                    continue
                digits = metric(m).digits
                d_z = "-" if r["d_z"] is None else f"{r['d_z']:+.2f}"
                cells.append(f"{r['difference']:+.{digits}f}, {d_z}, {_p(r['p'])} ({_p(r['p_holm'])})")
            lines.append(f"| {c.label} | " + " | ".join(cells) + " |")
    gamma_layers = sorted({layer for r in report["runs"] if r["status"] == "finished" for layer in r["gamma"]})
    if gamma_layers:
        lines += ["", "## Layer weights gamma at the end of training (mean over seeds; the paper's Table 1)", "",
                  "| condition | " + " | ".join(gamma_layers) + " |", "|---|" + "---|" * len(gamma_layers)]
        for c in conditions:
            values = []
            for layer in gamma_layers:
                summary = statistics.summarize(
                    r["gamma"].get(layer) for r in report["runs"] if r["condition"] == c.name and r["status"] == "finished"
                )
                values.append("-" if summary.mean is None else f"{summary.mean:.2f}")
            lines.append(f"| {c.label} | " + " | ".join(values) + " |")
    lines += _answer_lines(report, conditions)
    lines += _schedule_lines(report.get("schedule_check"), conditions)
    lines += _diagnostics_lines(report["runs"], conditions)
    lines += _alignment_lines(report, conditions)
    problems = [r for r in report["runs"] if r["status"] != "finished"]
    if problems:
        lines += ["", "## Runs not in the numbers", ""]
        lines += [f"- {r['condition']} seed {r['seed']}: {r['status']}" + (f" ({r['error']})" if r.get("error") else "")
                  for r in problems]
    if figures:
        lines += ["", "## Figures", ""] + [f"![{os.path.basename(f)}]({os.path.relpath(f, plan.workdir)})" for f in figures]
    return "\n".join(lines) + "\n"


def primary_family(config, plan: StudyPlan, records) -> list[dict]:
    """The declared primary hypotheses (``config.primary``) tested as one family: a paired test per
    hypothesis, Holm over all of them. Hypotheses naming a condition the study lacks are left out."""
    from neuroreg_tf.study.plan import primary_hypotheses

    names = {c.name for c in plan.conditions}
    available = set(metric_names(records))
    kept = [(c, r, m) for c, r, m in primary_hypotheses(config) if c in names and r in names and m in available]
    results = [statistics.compare_paired(_by_seed(records, c, m), _by_seed(records, r, m)) for c, r, m in kept]
    adjusted = statistics.holm([result.p for result in results])
    return [{"condition": c, "reference": r, "metric": m, **result.__dict__, "p_holm": p_holm,
             "verdict": _verdict(result.difference, p_holm)}
            for (c, r, m), result, p_holm in zip(kept, results, adjusted)]


def _primary_lines(primary, conditions) -> list[str]:
    if not primary:
        return []
    labels = {c.name: c.label for c in conditions}
    lines = ["", "## Primary hypotheses (declared in the config before the study ran; Holm over this family)", "",
             "| hypothesis | n | Δ | d_z | p | p_holm | verdict |", "|---|---|---|---|---|---|---|"]
    for h in primary:
        digits = metric(h["metric"]).digits
        d_z = "-" if h["d_z"] is None else f"{h['d_z']:+.2f}"
        lines.append(f"| {labels[h['condition']]} vs {labels[h['reference']]}: {_title(h['metric'])} | {h['n']} | "
                     f"{_signed(h['difference'], digits)} | {d_z} | {_p(h['p'])} | {_p(h['p_holm'])} | {h['verdict']} |")
    lines += ["", "Every other comparison below is exploratory (Holm within one reference and one metric)."]
    return lines


def condition_target_diagnostics(plan: StudyPlan) -> dict:
    """Each condition's target diagnostics (``neural.target_diagnostics``), read from its build's
    ``target_report.json``, with its correlation to the Neural (model) target of the same build;
    conditions without a build target (None, a target given by path) or without diagnostics
    (a build not made yet) are left out."""
    found, by_build = {}, {}
    for c in plan.conditions:
        if c.path or not c.build or c.alpha == 0:
            continue
        if c.build not in by_build:  # one read per build, however many conditions draw from it
            path = os.path.join(plan.build_directory(c.build), workdir_files.TARGET_REPORT)
            by_build[c.build] = (read_json(path, "a target build's report").get("target_diagnostics") or {}
                                 if os.path.isfile(path) else {})
        diagnostics = by_build[c.build]
        entry = (diagnostics.get("kinds") or {}).get(c.kind)
        if entry:
            found[c.name] = {**entry, "r_neural_model": (diagnostics.get("between_kinds") or {}).get(c.kind, {})
                             .get("neural_model")}
    return found


def _target_lines(found, conditions) -> list[str]:
    if not found:
        return []
    lines = ["", "## What each condition's target emphasises (target diagnostics of its build)", "",
             "PR: participation ratio of S (effective dimensions); top 1: variance share of the first component; "
             "r pixel / r low-pass: Pearson r over pairs with the pixel similarity of the images and of their "
             "low-pass; low-SF share: r_low² / (r_low² + r_high²); r N(model): with the Neural (model) target "
             "(`neuroreg_tf/neural/target_diagnostics.py`).", "",
             "| condition | stimuli | PR | top 1 | mean S_ij | r pixel | r low-pass | low-SF share | r N(model) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for c in conditions:
        d = found.get(c.name)
        if not d:
            continue
        cells = [str(d["n_stimuli"]), _number_text(d["participation_ratio"], 1), _number_text(d["top_k_variance"].get("1"), 3),
                 _number_text(d["off_diagonal_mean"], 3), _number_text(d["r_pixel"], 3), _number_text(d["r_lowpass"], 3),
                 _number_text(d["low_frequency_share"], 3), _number_text(d.get("r_neural_model"), 3)]
        lines.append(f"| {c.label} | " + " | ".join(cells) + " |")
    return lines


SIGNIFICANCE = 0.05  # a difference "holds" when its Holm-adjusted p is below this
QUESTION_METRICS = ("clean", "noise_mean", "linf_median", "l2_median", "l1_median", "l0_median")


def _verdict(difference, p_holm) -> str:
    if difference is None or p_holm is None:
        return "untested"
    if p_holm >= SIGNIFICANCE:
        return "no significant difference"
    return "higher" if difference > 0 else "lower"


def answers(conditions, records, summaries, comparisons, primary=()) -> dict | None:
    """The questions a robustness audit asks, answered from the numbers (None without Neural (model)).

    * ``advantage``: per reference (None, Shuffle) and metric, Neural (model)'s paired difference,
      its Holm-adjusted p and the verdict ("higher", "lower", "no significant difference" at
      ``SIGNIFICANCE``); ``family`` says which Holm family: "primary" where the comparison is one
      of the declared primary hypotheses (``primary``), else "exploratory";
    * ``baselines``: per baseline condition present (``conditions.BASELINE_NAMES``) and metric, the
      baseline's mean against Neural (model)'s, with a paired test over the common seeds (Holm over
      the baselines, per metric).
    """
    names = {c.name for c in conditions}
    if "neural_model" not in names:
        return None
    metrics = [m for m in QUESTION_METRICS if any(r.get(m) is not None for r in records if r["status"] == "finished")]
    advantage = {}
    for reference, family in comparisons.items():
        advantage[reference] = {}
        for m in metrics:
            if m in family and "neural_model" in family[m]:
                r = family[m]["neural_model"]
                declared = next((h for h in primary if (h["condition"], h["reference"], h["metric"])
                                 == ("neural_model", reference, m)), None)
                p_holm = declared["p_holm"] if declared else r["p_holm"]
                advantage[reference][m] = {"difference": r["difference"], "d_z": r["d_z"], "n": r["n"],
                                           "p_holm": p_holm, "family": "primary" if declared else "exploratory",
                                           "verdict": _verdict(r["difference"], p_holm)}
    baselines = {}
    present = [b for b in conditions_lib.BASELINE_NAMES if b in names]
    for m in metrics:
        results = [statistics.compare_paired(_by_seed(records, b, m), _by_seed(records, "neural_model", m))
                   for b in present]
        adjusted = statistics.holm([r.p for r in results])
        for b, r, p_holm in zip(present, results, adjusted):
            baselines.setdefault(b, {})[m] = {
                "baseline": summaries[b][m]["mean"], "neural_model": summaries["neural_model"][m]["mean"],
                "difference": r.difference, "n": r.n, "p_holm": p_holm, "verdict": _verdict(r.difference, p_holm)}
    return {"significance": SIGNIFICANCE, "advantage": advantage, "baselines": baselines}


def _answer_lines(report, conditions) -> list[str]:
    found = report.get("answers")
    if not found:
        return []
    labels = {c.name: c.label for c in conditions}
    lines = ["", "## The audit's questions, answered from these numbers", "",
             f"Verdicts: Holm-adjusted paired p < {found['significance']:g} (higher / lower), else no significant "
             "difference; \"primary\" marks a declared primary hypothesis (Holm over that family), the others are "
             "exploratory. Adversarial metrics are median minimal perturbations (higher = more robust).", ""]
    for reference, by_metric in found["advantage"].items():
        if not any(v["n"] for v in by_metric.values()):
            continue
        cells = [f"{_title(m)}: {v['verdict']} ({_signed(v['difference'], metric(m).digits)}, p_holm {_p(v['p_holm'])}"
                 f"{', primary' if v['family'] == 'primary' else ''})" for m, v in by_metric.items()]
        lines.append(f"- Neural (model) against {labels.get(reference, reference)}: " + "; ".join(cells) + ".")
    for baseline, by_metric in found["baselines"].items():
        if not any(v["n"] for v in by_metric.values()):
            continue
        cells = [f"{_title(m)} {_number_text(v['baseline'], metric(m).digits)} vs "
                 f"{_number_text(v['neural_model'], metric(m).digits)} ({v['verdict']}, p_holm {_p(v['p_holm'])})"
                 for m, v in by_metric.items()]
        lines.append(f"- {labels.get(baseline, baseline)} against Neural (model): " + "; ".join(cells) + ".")
    return lines


def _signed(value, digits) -> str:
    return "-" if value is None else f"{value:+.{digits}f}"


def _number_text(value, digits) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def schedule_check(records, conditions) -> dict | None:
    """Whether the cheaper preset (``compare_preset``) ranks the conditions as the study's preset
    does, per norm: the conditions' mean medians under each, their ranks, Spearman's rho over the
    conditions, and the mean per-run ratio cheap / study preset (above 1: the cheap one overstates
    robustness). None when no run was scored with a compared preset."""
    from scipy import stats

    finished = [r for r in records if r["status"] == "finished" and r.get("compare_preset")]
    if not finished:
        return None
    result = {}
    norms = [n for n in NORMS if any(n in r["compare_preset"] for r in finished)]
    for norm in norms:
        rows = []
        for c in conditions:
            pairs = [(r[f"{norm}_median"], r["compare_preset"][norm]) for r in finished
                     if r["condition"] == c.name and r.get(f"{norm}_median") is not None and norm in r["compare_preset"]
                     and math.isfinite(r[f"{norm}_median"]) and math.isfinite(r["compare_preset"][norm])]
            if pairs:
                ratios = [p[1] / p[0] for p in pairs if p[0] > 0]
                rows.append({"condition": c.name, "strong": float(np.mean([p[0] for p in pairs])),
                             "cheap": float(np.mean([p[1] for p in pairs])), "n": len(pairs),
                             "ratio": float(np.mean(ratios)) if ratios else None})
        if len(rows) < 2:
            continue
        strong_rank = stats.rankdata([-r["strong"] for r in rows])
        cheap_rank = stats.rankdata([-r["cheap"] for r in rows])
        for row, a, b in zip(rows, strong_rank, cheap_rank):
            row["rank_strong"], row["rank_cheap"] = float(a), float(b)
        strong, cheap = [r["strong"] for r in rows], [r["cheap"] for r in rows]
        constant = len(set(strong)) == 1 or len(set(cheap)) == 1  # no ranking to correlate
        rho = None if constant else float(stats.spearmanr(strong, cheap).statistic)
        result[norm] = {"conditions": rows, "spearman_rho": rho,
                        "same_order": bool(np.array_equal(strong_rank, cheap_rank))}
    return result or None


def _schedule_lines(check, conditions) -> list[str]:
    if not check:
        return []
    labels = {c.name: c.label for c in conditions}
    lines = ["", "## Does the cheap schedule rank the conditions as the strong ensemble does?", "",
             "Each run also scored with the compared preset on the same samples (mean median over seeds; "
             "rank 1 = most robust; ratio: mean per-run cheap / strong median).", ""]
    for norm, entry in check.items():
        rho = "undefined (a constant column)" if entry["spearman_rho"] is None else f"{entry['spearman_rho']:.2f}"
        lines += [f"{NORM_TITLES[norm]}: Spearman rho {rho} over the conditions; "
                  f"same order: {'yes' if entry['same_order'] else 'no'}.", "",
                  "| condition | strong | cheap | rank strong | rank cheap | ratio |", "|---|---|---|---|---|---|"]
        lines += [f"| {labels.get(r['condition'], r['condition'])} | {r['strong']:.4g} | {r['cheap']:.4g} | "
                  f"{r['rank_strong']:g} | {r['rank_cheap']:g} | {_number_text(r['ratio'], 3)} |"
                  for r in entry["conditions"]]
        lines.append("")
    return lines


def _mean_effort_curve(diagnostics, efforts) -> list[float | None]:
    """The mean over runs (their ``diagnostics[norm]`` entries) of the median distance at each effort."""
    return [statistics.summarize(d["effort_curve"].get(str(e)) for d in diagnostics).mean for e in efforts]


def _diagnostics_lines(runs, conditions) -> list[str]:
    """The gradient-masking checks (``robustness.diagnostics``): per condition and norm, how many
    seeds flag each check, and the mean effort curve (median distance against APGD iterations)."""
    diagnosed = [r for r in runs if r["status"] == "finished" and r.get("diagnostics")]
    if not diagnosed:
        return []
    norms = sorted({norm for r in diagnosed for norm in r["diagnostics"]})
    checks = sorted({check for r in diagnosed for d in r["diagnostics"].values() for check in d["checks"]})
    efforts = sorted({int(e) for r in diagnosed for d in r["diagnostics"].values() for e in d["effort_curve"]})
    lines = ["", "## Gradient-masking checks (seeds flagged / seeds checked; effort: mean median distance "
             "at each number of APGD-CE iterations)", "",
             "| condition | norm | " + " | ".join(checks) + " | effort " + " / ".join(map(str, efforts)) + " |",
             "|---|---|" + "---|" * (len(checks) + 1)]
    for c in conditions:
        for norm in norms:
            rows = [r["diagnostics"][norm] for r in diagnosed if r["condition"] == c.name and norm in r["diagnostics"]]
            if not rows:
                continue
            cells = []
            for check in checks:
                statuses = [d["checks"][check] for d in rows if check in d["checks"]]
                cells.append(f"{statuses.count('flag')}/{len(statuses)}" if statuses else "-")
            curve = _mean_effort_curve(rows, efforts)
            cells.append(" / ".join("-" if v is None else f"{v:.4g}" for v in curve))
            lines.append(f"| {c.label} | {norm} | " + " | ".join(cells) + " |")
    return lines


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(figure, directory: str, name: str) -> str:
    """Lays out, writes and closes ``figure`` as ``directory/name``; returns the path."""
    path = os.path.join(directory, name)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    _pyplot().close(figure)
    return path


def write_figures(plan: StudyPlan, records: list[dict], summaries: dict, directory: str) -> list[str]:
    """Noise curves with SEM bands, adversarial medians with each seed, gamma, the attack-effort
    curves of the gradient-masking checks, each metric against training length, accuracy vs alpha."""
    finished = [r for r in records if r["status"] == "finished"]
    if not finished:
        return []
    os.makedirs(directory, exist_ok=True)
    plt = _pyplot()
    conditions = [c for c in plan.conditions if summaries[c.name]["clean"]["n"]]
    paths = []

    figure, axis = plt.subplots(figsize=(6.5, 4.2))
    sigmas = noise_sigmas(records)
    for c in conditions:
        xs = [0.0] + sigmas
        mean = [summaries[c.name]["clean"]["mean"]] + [summaries[c.name][f"noise_{s:g}"]["mean"] for s in sigmas]
        sem = [summaries[c.name]["clean"]["sem"] or 0.0] + [summaries[c.name][f"noise_{s:g}"]["sem"] or 0.0 for s in sigmas]
        mean, sem = np.asarray(mean, float), np.asarray(sem, float)
        axis.plot(xs, mean, marker="o", markersize=3, label=c.label)
        axis.fill_between(xs, mean - sem, mean + sem, alpha=0.2)
    axis.set_xlabel("Gaussian noise σ (pixel range [0, 1])")
    axis.set_ylabel("accuracy (mean ± SEM over seeds)")
    axis.set_ylim(0, 1)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=7)
    axis.set_title("Accuracy under Gaussian noise (cf. the paper's Fig. 4)", fontsize=9)
    paths.append(_save(figure, directory, "noise_curves.png"))

    norms = [n for n in NORMS if any(r.get(f"{n}_median") is not None for r in finished)]
    if norms:
        figure, axes = plt.subplots(1, len(norms), figsize=(5.5 * len(norms), 4.2), squeeze=False)
        for axis, norm in zip(axes[0], norms):
            for position, c in enumerate(conditions):
                values = [r[f"{norm}_median"] for r in finished if r["condition"] == c.name
                          and r.get(f"{norm}_median") is not None and math.isfinite(r[f"{norm}_median"])]
                axis.scatter([position] * len(values), values, s=12, color="gray", zorder=3)
                summary = summaries[c.name][f"{norm}_median"]
                if summary["mean"] is not None:
                    axis.errorbar(position, summary["mean"], yerr=summary["sem"] or 0.0, fmt="_", markersize=18,
                                  capsize=4, color="C0", zorder=4)
            axis.set_xticks(range(len(conditions)))
            axis.set_xticklabels([c.label for c in conditions], rotation=45, ha="right", fontsize=7)
            axis.set_ylabel(f"median minimal {NORM_TITLES[norm]} perturbation")
            axis.grid(alpha=0.3, axis="y")
            axis.set_title(f"{NORM_TITLES[norm]}: each seed (dots), mean ± SEM (cf. Fig. 5{' and 7' if norm in ('l1', 'l0') else ''})",
                           fontsize=9)
        paths.append(_save(figure, directory, "adversarial.png"))

    layers = sorted({layer for r in finished for layer in r["gamma"]})
    regularized = [c for c in conditions if c.alpha > 0]
    if layers and regularized:
        table = np.array([[np.mean([r["gamma"][layer] for r in finished if r["condition"] == c.name]) for layer in layers]
                          for c in regularized])
        figure, axis = plt.subplots(figsize=(1.2 * len(layers) + 3, 0.45 * len(regularized) + 1.5))
        image = axis.imshow(table, cmap="viridis", vmin=0, vmax=max(1e-6, table.max()))
        for i in range(table.shape[0]):
            for j in range(table.shape[1]):
                axis.text(j, i, f"{table[i, j]:.2f}", ha="center", va="center", fontsize=7, color="white")
        axis.set_xticks(range(len(layers)))
        axis.set_xticklabels(layers, rotation=30, ha="right", fontsize=7)
        axis.set_yticks(range(len(regularized)))
        axis.set_yticklabels([c.label for c in regularized], fontsize=7)
        figure.colorbar(image, ax=axis, label="gamma (mean over seeds)")
        axis.set_title("Layer weights gamma at the end of training (cf. Table 1)", fontsize=9)
        paths.append(_save(figure, directory, "gamma.png"))

    diagnosed = [r for r in finished if r.get("diagnostics")]
    effort_norms = [n for n in NORMS if any(r["diagnostics"].get(n, {}).get("effort_curve") for r in diagnosed)]
    if effort_norms:
        figure, axes = plt.subplots(1, len(effort_norms), figsize=(5.0 * len(effort_norms), 3.8), squeeze=False)
        for axis, norm in zip(axes[0], effort_norms):
            for c in conditions:
                rows = [r["diagnostics"][norm] for r in diagnosed if r["condition"] == c.name and norm in r["diagnostics"]]
                efforts = sorted({int(e) for d in rows for e in d["effort_curve"]})
                if not efforts:
                    continue
                means = _mean_effort_curve(rows, efforts)
                axis.plot(efforts, [np.nan if m is None else m for m in means], marker="o", label=c.label)
            axis.set_xscale("log")
            axis.set_xlabel("APGD-CE iterations (attack effort)")
            axis.set_ylabel(f"median minimal {NORM_TITLES[norm]} distance (mean over seeds)")
            axis.grid(alpha=0.3)
            axis.set_title(f"{NORM_TITLES[norm]}: the curve must level off (gradient-masking check)", fontsize=9)
        axes[0][0].legend(fontsize=7)
        paths.append(_save(figure, directory, "effort.png"))

    lengths = {}
    for c in conditions:
        parsed = conditions_lib.training_length(c.name)
        if parsed:
            lengths.setdefault(parsed[0], []).append((parsed[1], c))
    if lengths:
        shown = [m for m in ("clean", "noise_mean", "linf_median", "l2_median") if any(r.get(m) is not None for r in finished)]
        figure, axes = plt.subplots(1, len(shown), figsize=(4.2 * len(shown), 3.8), squeeze=False)
        for axis, name in zip(axes[0], shown):
            for base, entries in lengths.items():
                entries.sort(key=lambda entry: entry[0])
                mean = [summaries[c.name][name]["mean"] for _, c in entries]
                sem = [summaries[c.name][name]["sem"] or 0.0 for _, c in entries]
                label = entries[0][1].label.rsplit(", ", 1)[0]
                axis.errorbar([e for e, _ in entries], [np.nan if m is None else m for m in mean], yerr=sem,
                              marker="o", capsize=3, label=label)
            axis.set_xscale("log", base=2)
            ticks = sorted({e for entries in lengths.values() for e, _ in entries})
            axis.set_xticks(ticks, [str(t) for t in ticks])
            axis.set_xlabel("training epochs")
            axis.set_ylabel(f"{_title(name)} (mean ± SEM)")
            axis.grid(alpha=0.3)
        axes[0][0].legend(fontsize=7)
        figure.suptitle("Each metric against training length", fontsize=9)
        paths.append(_save(figure, directory, "epochs.png"))

    aligned = [r for r in finished if r.get("alignment") is not None]
    shown = [m for m in ("noise_mean", "linf_median", "l2_median") if any(r.get(m) is not None for r in aligned)]
    if aligned and shown:
        figure, axes = plt.subplots(1, len(shown), figsize=(4.4 * len(shown), 3.8), squeeze=False)
        for axis, name in zip(axes[0], shown):
            for index, c in enumerate(conditions):
                rows = [r for r in aligned if r["condition"] == c.name and r.get(name) is not None]
                axis.scatter([r["alignment"] for r in rows], [r[name] for r in rows], s=16, color=f"C{index % 10}",
                             label=c.label)
            axis.set_xlabel("V1 alignment (best layer, normalised)")
            axis.set_ylabel(_title(name))
            axis.grid(alpha=0.3)
        axes[0][0].legend(fontsize=6)
        figure.suptitle("Brain alignment against robustness, one dot per run (SIMULATED V1)", fontsize=9)
        paths.append(_save(figure, directory, "alignment.png"))

    sweep = [c for c in conditions if c.name == "none" or c.name.startswith("neural_model_alpha")]
    if len(sweep) >= 2 and any(c.name != "none" for c in sweep):
        sweep.sort(key=lambda c: c.alpha)
        alphas = [c.alpha for c in sweep]
        medians = [n for n in NORMS if summaries[sweep[0].name].get(f"{n}_median", {}).get("n")]
        panels = [("accuracy", [("clean", "clean"), *((("noise_mean", "noise (mean over σ)"),
                                                       (f"noise_{max(sigmas):g}", f"σ = {max(sigmas):g}")) if sigmas else ())])]
        panels += [(f"median minimal {NORM_TITLES[n]} perturbation", [(f"{n}_median", NORM_TITLES[n])]) for n in medians]
        figure, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 4.0), squeeze=False)
        for axis, (ylabel, lines_) in zip(axes[0], panels):
            for metric_name, label in lines_:
                mean = [summaries[c.name][metric_name]["mean"] for c in sweep]
                sem = [summaries[c.name][metric_name]["sem"] or 0.0 for c in sweep]
                axis.errorbar(alphas, [np.nan if m is None else m for m in mean], yerr=sem, marker="o", capsize=3,
                              label=label)
            axis.set_xscale("symlog", linthresh=1.0)
            axis.set_xlabel("alpha (0 = None)")
            axis.set_ylabel(f"{ylabel} (mean ± SEM)")
            axis.grid(alpha=0.3)
            axis.legend(fontsize=7)
        figure.suptitle("Against alpha (Neural (model) target)", fontsize=9)
        paths.append(_save(figure, directory, "alpha.png"))
    return paths
