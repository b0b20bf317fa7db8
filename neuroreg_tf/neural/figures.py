"""Figures like the paper's Fig. 1, titled SIMULATED when the data are simulated."""

from __future__ import annotations

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


def plot_scatter(path, oracle_pairs, data_pairs, model_pairs, *, r_data: float, r_model: float, simulated: bool, max_points: int = 20000, seed: int = 0):
    """Fig. 1D: S_data and S_model against S_oracle over image pairs.

    Args:
        oracle_pairs: S_oracle for each plotted point of ``data_pairs``.
        data_pairs: single-trial S_data values (one per repeat combination).
        model_pairs: (oracle values, model values) for the i < j pairs.
    """
    plt = _pyplot()
    rng = np.random.default_rng(seed)
    take = rng.permutation(np.size(data_pairs))[:max_points]
    figure, axis = plt.subplots(figsize=(4.2, 4.0))
    axis.scatter(np.ravel(oracle_pairs)[take], np.ravel(data_pairs)[take], s=1, alpha=0.15, label=f"S_data, r = {r_data:.2f}")
    axis.scatter(model_pairs[0], model_pairs[1], s=2, alpha=0.5, label=f"S_model, r = {r_model:.2f}")
    axis.set_xlabel("S_oracle")
    axis.set_ylabel("S_data / S_model")
    axis.legend(fontsize=7, markerscale=5)
    axis.set_title(_title("S vs S_oracle (paper: 0.39 vs 0.73)", simulated), fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path
