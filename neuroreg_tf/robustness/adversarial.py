"""Adversarial robustness scores as in the paper: median minimal perturbation per norm.

``adversarial_evaluation`` runs ``search.minimal_perturbation`` for each norm on the first
``num_examples`` examples (the same subset for every model) and returns the summary that goes into
``robustness.json`` plus the per-sample values that go into the CSV file.
"""

from __future__ import annotations

import numpy as np

from neuroreg_tf.progress import Reporter, print_line, reporter
from neuroreg_tf.robustness import diagnostics as diagnostics_lib
from neuroreg_tf.robustness import scoring, search
from neuroreg_tf.robustness.settings import EPSILON_NORMS, AttackSettings, check_norm

# The keys of an evaluation config's ``adversarial`` section that are not `AttackSettings`.
EVALUATION_KEYS = ("enabled", "num_examples", "norms", "diagnostics")


def arguments_from_config(section) -> dict:
    """``adversarial_evaluation``'s keyword arguments from a config's ``adversarial`` section.

    The section holds ``enabled``, ``num_examples`` (0: all), ``norms`` and every
    ``AttackSettings`` field (see ``configs/evaluate.py``); unknown keys raise ``ConfigError``.
    """
    section = dict(section)
    arguments = {
        "norms": tuple(section.get("norms", ("linf", "l2"))),
        "num_examples": section.get("num_examples") or None,
        "settings": AttackSettings.from_mapping(section, ignore=EVALUATION_KEYS),
    }
    if section.get("diagnostics"):  # absent when off: an evaluation's identity is as before
        arguments["diagnostics"] = True
    return arguments


def adversarial_evaluation(
    model,
    x,
    y,
    *,
    norms=("linf", "l2"),
    num_examples: int | None = 100,
    settings: AttackSettings | None = None,
    diagnostics: bool = False,
    progress: Reporter = print_line,
):
    """Median minimal adversarial perturbation per norm, with quartiles, success curve and counts.

    Args:
        model: A Keras model or a callable mapping images in [0, 1] to logits.
        x: Images, float32 in [0, 1], (n, h, w, c).
        y: Integer labels, (n,).
        norms: Norms to evaluate, from ``settings.NORMS`` ("linf", "l2", "l1", "l0"; L1 and L0
            need a Foolbox minimum-norm attack in ``settings.foolbox``).
        num_examples: Evaluate the first ``num_examples`` examples (None: all).
        settings: The attacks and the search (``AttackSettings``).
        diagnostics: Also run the gradient-masking checks (``diagnostics.diagnose``) per L-inf and
            L2 norm, into ``summary[norm]["diagnostics"]`` (they compare budget attacks, which
            exist for those norms).
        progress: Reporter of one-line progress messages (None: silent).

    Returns:
        (summary, per_sample): ``summary[norm]`` is ``scoring.summarize_distances``'s dict plus
        ``success_curve`` ({``epsilon``, ``fraction``}) and ``seconds``; ``per_sample`` has
        ``index``, ``label``, ``clean_correct`` and, per norm, ``distance`` and ``attack`` arrays.
    """
    report = reporter(progress)
    if isinstance(norms, str):
        norms = (norms,)
    if not norms:
        raise ValueError(f"Expected at least one norm ('linf', 'l2'). Received: norms={norms!r}")
    for norm in norms:
        check_norm(norm)
    problem = (settings or AttackSettings()).attacks_missing(norms)
    if problem:
        raise ValueError(problem)
    if num_examples is not None and (int(num_examples) != num_examples or num_examples < 1):
        raise ValueError(
            f"Expected num_examples to be a positive integer or None. Received: {num_examples!r}"
        )
    count = len(x) if num_examples is None else min(int(num_examples), len(x))
    x, y = x[:count], y[:count]
    summary = {}
    per_sample = {"index": np.arange(count), "label": np.asarray(y)}
    # Every verified adversarial is a start for the attacks that refine one (Brendel & Bethge),
    # whatever norm found it: a sample one norm's attacks missed starts from another's adversarial.
    starting_points = None
    for norm in norms:
        result = search.minimal_perturbation(model, x, y, norm, settings=settings, starting_points=starting_points,
                                             progress=progress)
        broken = np.isfinite(result.distances) & result.clean_correct
        if starting_points is None:
            starting_points = np.array(result.adversarials)
        else:
            starting_points[broken] = result.adversarials[broken]
        norm_summary = result.summary()
        epsilons = scoring.epsilon_grid(result.distances)
        norm_summary["success_curve"] = {
            "epsilon": epsilons.tolist(),
            "fraction": scoring.success_curve(result.distances, epsilons).tolist(),
        }
        norm_summary["seconds"] = float(sum(result.seconds.values()))
        if diagnostics and norm in EPSILON_NORMS:
            norm_summary["diagnostics"] = diagnostics_lib.diagnose(model, x, y, norm, progress=progress)
        summary[norm] = norm_summary
        per_sample["clean_correct"] = result.clean_correct
        per_sample[norm] = {"distance": result.distances, "attack": result.best_attack}
        report(
            f"{norm}: median minimal perturbation {norm_summary['median']:.5g} "
            f"(q25 {norm_summary['q25']:.5g}, q75 {norm_summary['q75']:.5g}) over {count} samples, "
            f"{norm_summary['n_clean_misclassified']} misclassified clean, "
            f"{norm_summary['n_not_found']} not broken, {norm_summary['seconds']:.1f} s"
        )
    return summary, per_sample
