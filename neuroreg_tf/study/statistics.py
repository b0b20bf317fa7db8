"""Statistics over training seeds: mean and SEM, paired t-tests with effect sizes, Holm's correction.

Runs of two conditions with the same training seed share their initial weights and batch order,
so conditions are compared *paired by seed* (``scipy.stats.ttest_rel``): the test sees the
condition's effect without the seed-to-seed spread. The effect size is Cohen's d_z, the mean of
the paired differences over their standard deviation. With several conditions compared against
one reference on one metric, ``holm`` adjusts the p-values for the multiple comparisons.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
from scipy import stats

TEST_NAME = "paired t-test (scipy.stats.ttest_rel), two-sided"


@dataclasses.dataclass(frozen=True)
class Summary:
    """Mean and standard error of the mean (ddof=1) of the finite values; n counts them and
    n_nonfinite the values left out because they were inf or NaN (e.g. a median over samples no
    attack broke)."""

    mean: float | None
    sem: float | None
    n: int
    n_nonfinite: int


def summarize(values) -> Summary:
    """``Summary`` of ``values``; None entries (missing runs) are left out, non-finite values are
    left out of the mean and counted."""
    present = [v for v in values if v is not None]
    finite = np.asarray([v for v in present if math.isfinite(v)], dtype=np.float64)
    nonfinite = len(present) - int(finite.size)
    if finite.size == 0:
        return Summary(None, None, 0, nonfinite)
    sem = float(stats.sem(finite)) if finite.size > 1 else None  # None: one seed, no spread
    return Summary(float(finite.mean()), sem, int(finite.size), nonfinite)


@dataclasses.dataclass(frozen=True)
class Comparison:
    """A condition against a reference on one metric, paired by training seed.

    Attributes:
        n: seeds with a finite value in both.
        difference: mean of (condition - reference) over those seeds.
        d_z: Cohen's d_z = difference / std(paired differences, ddof=1) (None if they are equal).
        t: the t statistic; p: its two-sided p-value (None for fewer than 2 pairs or no spread).
        p_holm: ``p`` adjusted by Holm's method over the comparisons of one family.
    """

    n: int
    difference: float | None
    d_z: float | None
    t: float | None
    p: float | None
    p_holm: float | None = None


def compare_paired(condition: dict, reference: dict) -> Comparison:
    """Compares two {seed: value} maps on their common seeds with finite values."""
    seeds = sorted(
        seed for seed in set(condition) & set(reference)
        if condition[seed] is not None and reference[seed] is not None
        and math.isfinite(condition[seed]) and math.isfinite(reference[seed])
    )
    if not seeds:
        return Comparison(0, None, None, None, None)
    a = np.asarray([condition[s] for s in seeds], dtype=np.float64)
    b = np.asarray([reference[s] for s in seeds], dtype=np.float64)
    differences = a - b
    difference = float(differences.mean())
    if len(seeds) < 2:
        return Comparison(len(seeds), difference, None, None, None)
    spread = float(differences.std(ddof=1))
    if spread == 0.0:
        return Comparison(len(seeds), difference, None, None, None)
    result = stats.ttest_rel(a, b)
    return Comparison(len(seeds), difference, difference / spread, float(result.statistic), float(result.pvalue))


def holm(p_values) -> list[float | None]:
    """Holm-Bonferroni adjusted p-values (None stays None), in the given order."""
    indexed = sorted((p, i) for i, p in enumerate(p_values) if p is not None)
    adjusted: list[float | None] = [None] * len(p_values)
    running = 0.0
    count = len(indexed)
    for rank, (p, index) in enumerate(indexed):
        running = max(running, min(1.0, (count - rank) * p))
        adjusted[index] = running
    return adjusted
