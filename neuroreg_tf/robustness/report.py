"""Robustness reports: ``robustness.json``, plots and a printed table, for one or several models.

The report is a dict (the JSON document)::

    {
      "dataset": ..., "split": ..., "num_examples": ..., "sigmas": [...], "noise_seeds": [...],
      "models": [
        {"label": ..., "path": ..., "clean_accuracy": ...,
         "noise": [{"sigma", "accuracy", "sem", "accuracies_per_seed"}, ...],
         "adversarial": {"linf": {...}, "l2": {...}}},          # only when run
        ...
      ],
      "clean_accuracy": ..., "noise": [...], "adversarial": {...}  # copies, only for a single model
    }
"""

from __future__ import annotations

import math
import os

import numpy as np

from neuroreg_tf import workdir as workdir_files
from neuroreg_tf.fileio import write_json_atomic
from neuroreg_tf.robustness import scoring
from neuroreg_tf.robustness.settings import NORM_TITLES

JSON_FILENAME = workdir_files.ROBUSTNESS_JSON
NOISE_PLOT_FILENAME = workdir_files.NOISE_PLOT
ADVERSARIAL_PLOT_FILENAME = workdir_files.ADVERSARIAL_PLOT
ADVERSARIAL_CSV_FILENAME = workdir_files.ADVERSARIAL_CSV


def _jsonable(value):
    if isinstance(value, dict):
        return {str(key): _jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(item) for item in value]
    if isinstance(value, np.ndarray):
        return [_jsonable(item) for item in value.tolist()]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        value = float(value)
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        if math.isnan(value):
            return None
        return value
    if isinstance(value, np.bool_):
        return bool(value)
    return value


def build_report(model_results: list[dict], **metadata) -> dict:
    """Assembles the report dict from per-model results.

    Args:
        model_results: A list of per-model dicts, each with at least ``label``, ``clean_accuracy``
            and ``noise``; optionally ``path`` and ``adversarial``.
        **metadata: Top-level entries such as ``dataset``, ``split``, ``num_examples``.

    Returns:
        The report dict described in this module's docstring.
    """
    report = dict(metadata)
    report["models"] = list(model_results)
    if len(model_results) == 1:
        only = model_results[0]
        for key in ("clean_accuracy", "noise", "adversarial"):
            if key in only:
                report[key] = only[key]
    return report


def write_json(report: dict, path: str) -> str:
    """Writes ``report`` as JSON, atomically (infinite distances as the string "inf")."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    write_json_atomic(path, _jsonable(report))
    return path


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def plot_noise(model_results: list[dict], path: str, title: str | None = None) -> str:
    """Plots accuracy vs noise sigma with SEM error bars, one line per model, and saves a PNG.

    Args:
        model_results: Per-model dicts with ``label`` and ``noise`` (see ``build_report``).
        path: Where to write the PNG.
        title: Optional figure title.

    Returns:
        ``path``.
    """
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(5.5, 4.0))
    for result in model_results:
        noise = sorted(result["noise"], key=lambda entry: entry["sigma"])
        axes.errorbar(
            [entry["sigma"] for entry in noise],
            [entry["accuracy"] for entry in noise],
            yerr=[entry["sem"] or 0.0 for entry in noise],
            marker="o",
            markersize=4,
            capsize=3,
            label=result["label"],
        )
    axes.set_xlabel("Gaussian noise sigma (pixel range [0, 1])")
    axes.set_ylabel("accuracy")
    axes.set_ylim(0.0, 1.0)
    axes.grid(alpha=0.3)
    axes.legend()
    if title:
        axes.set_title(title)
    figure.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def format_noise_table(model_results: list[dict]) -> str:
    """Returns a plain-text table: one row per model, clean accuracy then accuracy +- SEM per sigma > 0."""
    sigmas = sorted(
        {
            entry["sigma"]
            for result in model_results
            for entry in result["noise"]
            if entry["sigma"] > 0
        }
    )  # sigma 0 is the clean column
    label_width = max([len("model")] + [len(str(result["label"])) for result in model_results])
    header = [f"{'model':<{label_width}}", f"{'clean':>7}"] + [
        f"{'s=' + format(s, 'g'):>14}" for s in sigmas
    ]
    lines = ["  ".join(header)]
    for result in model_results:
        by_sigma = {entry["sigma"]: entry for entry in result["noise"]}
        cells = [f"{result['label']:<{label_width}}", f"{result['clean_accuracy']:>7.3f}"]
        for sigma in sigmas:
            entry = by_sigma.get(sigma)
            spread = "" if entry is None or entry["sem"] is None else f"+-{entry['sem']:.3f}"
            cell = f"{entry['accuracy']:.3f}{spread}" if entry else "-"
            cells.append(f"{cell:>14}")
        lines.append("  ".join(cells))
    return "\n".join(lines)


def _format_distance(value):
    if value is None:
        return "-"
    return "inf" if math.isinf(value) else f"{value:.4g}"


def format_adversarial_table(model_results: list[dict]) -> str:
    """Returns a plain-text table of median minimal perturbations [q25, q75] per model and norm."""
    norms = [
        norm for norm in NORM_TITLES if any(norm in r.get("adversarial", {}) for r in model_results)
    ]
    label_width = max([len("model")] + [len(str(result["label"])) for result in model_results])
    header = [f"{'model':<{label_width}}"]
    for norm in norms:
        header.append(f"{NORM_TITLES[norm] + ' median [q25, q75]':>32}")
    header += [f"{'n':>5}", f"{'clean wrong':>11}", f"{'unbroken':>9}"]
    lines = ["  ".join(header)]
    for result in model_results:
        adversarial = result.get("adversarial", {})
        cells = [f"{result['label']:<{label_width}}"]
        for norm in norms:
            entry = adversarial.get(norm)
            cell = (
                f"{_format_distance(entry['median'])} [{_format_distance(entry['q25'])}, "
                f"{_format_distance(entry['q75'])}]"
                if entry
                else "-"
            )
            cells.append(f"{cell:>32}")
        first = next((adversarial[norm] for norm in norms if norm in adversarial), None)
        unbroken = "/".join(
            str(adversarial[norm]["n_not_found"]) for norm in norms if norm in adversarial
        )
        cells += [
            f"{first['n'] if first else '-':>5}",
            f"{first['n_clean_misclassified'] if first else '-':>11}",
            f"{unbroken or '-':>9}",
        ]
        lines.append("  ".join(cells))
    lines.append(
        "median [q25, q75]: the median (and quartiles) over all n samples of the smallest "
        "perturbation that flips the label (the paper's score); clean wrong: samples misclassified "
        "without perturbation, counted as 0; unbroken (per norm): samples no attack flipped, "
        "counted as inf."
    )
    return "\n".join(lines)


def write_adversarial_csv(per_sample_by_label: dict, path: str) -> str:
    """Writes one row per (model, sample): label, clean correctness, distance and attack per norm."""
    import csv

    norms = [
        norm
        for norm in NORM_TITLES
        if any(norm in values for values in per_sample_by_label.values())
    ]
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        header = ["model", "index", "label", "clean_correct"]
        for norm in norms:
            header += [f"{norm}_distance", f"{norm}_attack"]
        writer.writerow(header)
        for model_label, values in per_sample_by_label.items():
            for row, index in enumerate(values["index"]):
                cells = [
                    model_label,
                    int(index),
                    int(values["label"][row]),
                    bool(values["clean_correct"][row]),
                ]
                for norm in norms:
                    if norm in values:
                        distance = float(values[norm]["distance"][row])
                        cells += [
                            repr(distance) if math.isfinite(distance) else "inf",
                            values[norm]["attack"][row],
                        ]
                    else:
                        cells += ["", ""]
                writer.writerow(cells)
    return path


def plot_adversarial(per_sample_by_label: dict, path: str) -> str:
    """Plots, per norm, the fraction of samples broken vs perturbation budget, one line per model.

    The median minimal perturbation is where a curve crosses 0.5 (dashed line). Budgets are on a log
    axis; misclassified clean images count as broken at every budget.

    Returns:
        ``path``.
    """
    plt = _pyplot()
    norms = [
        norm
        for norm in NORM_TITLES
        if any(norm in values for values in per_sample_by_label.values())
    ]
    figure, axes_list = plt.subplots(1, len(norms), figsize=(5.0 * len(norms), 4.0), squeeze=False)
    for axes, norm in zip(axes_list[0], norms):
        everything = np.concatenate(
            [values[norm]["distance"] for values in per_sample_by_label.values() if norm in values]
        )
        epsilons = scoring.epsilon_grid(everything, points=200)[1:]
        for label, values in per_sample_by_label.items():
            if norm not in values:
                continue
            distances = values[norm]["distance"]
            median = scoring.quantile(distances, 0.5)
            axes.plot(
                epsilons,
                scoring.success_curve(distances, epsilons),
                label=f"{label} (median {_format_distance(median)})",
            )
        axes.axhline(0.5, color="gray", linestyle="--", linewidth=0.8)
        if epsilons.size and epsilons[0] > 0:
            axes.set_xscale("log")
        axes.set_xlabel(f"{NORM_TITLES[norm]} perturbation budget")
        axes.set_ylabel("fraction of samples misclassified")
        axes.set_ylim(0.0, 1.0)
        axes.grid(alpha=0.3)
        axes.legend(fontsize="small")
        axes.set_title(f"Minimal {NORM_TITLES[norm]} adversarial perturbation")
    figure.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def write_adversarial_outputs(per_sample_by_label: dict, workdir: str) -> list[str]:
    """Writes the per-sample CSV and the success-curve plot; returns their paths."""
    return [
        write_adversarial_csv(per_sample_by_label, os.path.join(workdir, ADVERSARIAL_CSV_FILENAME)),
        plot_adversarial(per_sample_by_label, os.path.join(workdir, ADVERSARIAL_PLOT_FILENAME)),
    ]
