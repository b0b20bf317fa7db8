"""Figures like the paper's Fig. 1, titled SIMULATED when the data are simulated."""

from __future__ import annotations

import dataclasses
import os

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _title(text: str, simulated: bool) -> str:
    return f"SIMULATED data -- {text}" if simulated else text


def cluster_order(matrix) -> np.ndarray:
    """An image order that groups similar images (average-linkage clustering)."""
    from scipy.cluster import hierarchy
    from scipy.spatial.distance import squareform

    distance = np.clip(1.0 - np.asarray(matrix, dtype=np.float64), 0.0, None)
    distance = (distance + distance.T) / 2.0
    np.fill_diagonal(distance, 0.0)
    return hierarchy.leaves_list(hierarchy.linkage(squareform(distance, checks=False), "average"))


def plot_similarity_matrices(path, oracle_per_scan, model_per_scan=None, *, simulated: bool, max_scans: int = 4):
    """Fig. 1A/B: S_oracle (and S_model) of each scan, all in one image order."""
    plt = _pyplot()
    oracle_per_scan = list(oracle_per_scan)[:max_scans]
    rows = [("S_oracle (Eq 3)", oracle_per_scan)]
    if model_per_scan is not None:
        rows.append(("S_model (Eq 6)", list(model_per_scan)[:max_scans]))
    order = cluster_order(np.mean(oracle_per_scan, axis=0))
    n_cols = len(oracle_per_scan)
    figure, axes = plt.subplots(len(rows), n_cols, figsize=(2.6 * n_cols, 2.6 * len(rows)), squeeze=False)
    for row, (name, matrices) in enumerate(rows):
        for col, matrix in enumerate(matrices):
            shown = np.array(matrix, dtype=np.float64)
            np.fill_diagonal(shown, np.nan)
            limit = np.nanpercentile(np.abs(shown), 99)
            axes[row, col].imshow(shown[np.ix_(order, order)], cmap="RdBu_r", vmin=-limit, vmax=limit)
            axes[row, col].set_title(f"{name}, scan {col + 1}", fontsize=8)
            axes[row, col].set_xticks([])
            axes[row, col].set_yticks([])
    figure.suptitle(_title("similarity of the oracle images across scans (one image order)", simulated), fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def plot_fluctuations(path, delta_scan, delta_repeat, *, simulated: bool):
    """Fig. 1C: histograms of the fluctuation across scans (Eq 4) and repeats (Eq 5)."""
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(4.5, 3.2))
    edges = np.linspace(-1, 1, 81)
    axis.hist(delta_repeat, bins=edges, density=True, alpha=0.6, label=f"across repeats (std {np.std(delta_repeat):.3f})")
    axis.hist(delta_scan, bins=edges, density=True, alpha=0.6, label=f"across scans (std {np.std(delta_scan):.3f})")
    axis.set_xlabel("fluctuation of S")
    axis.set_ylabel("density")
    axis.legend(fontsize=7)
    axis.set_title(_title("Eq 4 vs Eq 5", simulated), fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


@dataclasses.dataclass
class ScatterPanel:
    """One scan's Fig. 1D panel.

    Attributes:
        title: what the panel shows (scan number and source).
        oracle_pairs: S_oracle for each plotted point of ``data_pairs``.
        data_pairs: single-trial S_data values (one per repeat combination).
        model_pairs: (oracle values, model values) for the i < j pairs.
        r_data: r(S_data, S_oracle) of this scan, as in the report's ``scans``.
        r_model: r(S_model, S_oracle) of this scan.
    """

    title: str
    oracle_pairs: np.ndarray
    data_pairs: np.ndarray
    model_pairs: tuple
    r_data: float
    r_model: float


def scatter_labels(panel: ScatterPanel) -> tuple[str, str]:
    """The legend entries of a panel: its own r values, data first."""
    return f"S_data, r = {panel.r_data:.2f}", f"S_model, r = {panel.r_model:.2f}"


def plot_scatter(path, panels, *, r_data: float, r_model: float, simulated: bool, max_points: int = 20000, seed: int = 0):
    """Fig. 1D: S_data and S_model against S_oracle over image pairs, one labelled panel per scan.

    Each panel's legend gives that scan's numbers (the report's ``scans[h]``); the title gives
    the averages over scans the report states (``r_data_vs_oracle``, ``r_model_vs_oracle``).

    Returns:
        (path, labels): ``labels`` holds the title and each panel's title and legend entries.
    """
    plt = _pyplot()
    rng = np.random.default_rng(seed)
    n_cols = min(len(panels), 4)
    n_rows = int(np.ceil(len(panels) / n_cols))
    figure, axes = plt.subplots(n_rows, n_cols, figsize=(4.0 * n_cols, 3.9 * n_rows), squeeze=False)
    labels = {"title": _title(f"mean over {len(panels)} scan(s): r(S_data, S_oracle) = {r_data:.2f}, "
                              f"r(S_model, S_oracle) = {r_model:.2f} (paper: 0.39, 0.73)", simulated), "panels": []}
    for axis, panel in zip(axes.reshape(-1), panels):
        take = rng.permutation(np.size(panel.data_pairs))[:max_points]
        data_label, model_label = scatter_labels(panel)
        axis.scatter(np.ravel(panel.oracle_pairs)[take], np.ravel(panel.data_pairs)[take], s=1, alpha=0.15, label=data_label)
        axis.scatter(panel.model_pairs[0], panel.model_pairs[1], s=2, alpha=0.5, label=model_label)
        axis.set_xlabel("S_oracle")
        axis.set_ylabel("S_data / S_model")
        axis.legend(fontsize=7, markerscale=5)
        axis.set_title(panel.title, fontsize=7)
        labels["panels"].append({"title": panel.title, "legend": [data_label, model_label]})
    for axis in axes.reshape(-1)[len(panels):]:
        axis.axis("off")
    figure.suptitle(labels["title"], fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path, labels


def _short_source(source: str) -> str:
    """``/data/static1.zip:static1`` -> ``static1``; ``/data/scan.h5`` -> ``scan.h5``."""
    source = str(source).split(".zip:")[0].rstrip("/")
    return os.path.basename(source[:-4] if source.endswith(".zip") else source)


def plot_build_figures(figure_dir, scans, per_scan, extras, report, oracle_ids, unavailable, *, simulated: bool,
                       fit_models: bool):
    """A target build's Fig. 1A/B, 1C and 1D (what the scans support) in ``figure_dir``.

    Args:
        figure_dir: where the PNGs go.
        scans: the build's ``ScanAnalysis`` objects.
        per_scan, extras: ``fig1d.scan_metrics`` of each scan.
        report: the build's report (``fig1d.measure``).
        oracle_ids: the repeated images every scan saw.
        unavailable: what the build could not measure.
        simulated: title the figures SIMULATED.
        fit_models: whether the scans have predictive models.

    Returns:
        (paths written, the Fig. 1D panel labels or None).
    """
    from neuroreg_tf import similarity
    from neuroreg_tf.neural import fig1d, statistics, target_kinds

    os.makedirs(figure_dir, exist_ok=True)
    paths, labels = [], None
    if "fig1ab_similarity_matrices" not in unavailable:
        ids = oracle_ids if len(scans) >= 2 else scans[0].oracle_ids
        if ids.size >= fig1d.MIN_SHARED:
            paths.append(
                plot_similarity_matrices(
                    os.path.join(figure_dir, "fig1ab_similarity_matrices.png"),
                    [target_kinds.oracle_similarity_on(s, ids) for s in scans],
                    [target_kinds.model_similarity_on(s, ids) for s in scans] if fit_models else None,
                    simulated=simulated,
                )
            )
    if len(scans) >= 2 and report.get("fluctuation_std_across_scans") is not None:
        delta_scan, delta_repeat = statistics.scan_and_repeat_fluctuations(
            fig1d.shared_repeats(scans, oracle_ids), [s.weights for s in scans])
        paths.append(plot_fluctuations(os.path.join(figure_dir, "fig1c_fluctuations.png"), delta_scan, delta_repeat,
                                       simulated=simulated))
    if fit_models:
        panels = []
        for h, (scan, metrics, extra) in enumerate(zip(scans, per_scan, extras)):
            if metrics["r_data_vs_oracle"] is None or "model_oracle" not in extra:
                continue
            n_repeats = scan.repeated.shape[1]
            panels.append(
                ScatterPanel(
                    title=f"scan {h + 1}: {_short_source(metrics['source'])}\n({metrics['n_oracle']} oracle images)",
                    oracle_pairs=np.repeat(extra["oracle_upper"], n_repeats**2),
                    data_pairs=extra["trial_pairs"].reshape(-1),
                    model_pairs=(extra["oracle_upper"], similarity.upper_triangle(extra["model_oracle"])),
                    r_data=metrics["r_data_vs_oracle"],
                    r_model=metrics["r_model_vs_oracle"],
                )
            )
        if panels:
            path, labels = plot_scatter(
                os.path.join(figure_dir, "fig1d_scatter.png"),
                panels,
                r_data=report["r_data_vs_oracle"],
                r_model=report["r_model_vs_oracle"],
                simulated=simulated,
            )
            paths.append(path)
    return paths, labels
