"""Studies: conditions x training seeds, every run evaluated the same way, one report.

A study answers "does neural regularization help, and which aspects of the neural
representation make it work?" with several training seeds, every control, error bars and paired
tests. Modules, in the order a study runs:

* ``conditions``: what a condition is (a target, alpha, the similarity loss) and the standard ones
  (None, Neural (model/data), Shuffle, Random, Ground truth, Gabor V1, Pixel, CKA, VGG), the
  alpha sweep and the simulator ablations.
* ``plan``: the study config checked and turned into target builds and runs
  (``<workdir>/targets/<name>/``, ``<workdir>/runs/<condition>/seed_<k>/``), and the shards.
* ``runner``: builds the targets once, runs every run (train, then evaluate) in worker processes,
  records failures, reports progress; interrupted studies continue where they stopped.
* ``statistics``: mean +- SEM over seeds, paired t-tests (``scipy.stats.ttest_rel``) with effect
  sizes and Holm-adjusted p-values.
* ``report``: ``study.json``, ``study.csv``, ``report.md`` and the figures.
"""
