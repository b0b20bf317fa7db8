"""Adversarial robustness scores as in the paper: median minimal perturbation per norm.

`adversarial_evaluation` runs `minimal_perturbation` for each norm on the first ``num_examples``
examples (the same subset for every model) and returns the summary that goes into
``robustness.json`` plus the per-sample values that go into the CSV file.
"""

import sys

import numpy as np

from neuroreg_tf.robustness import minimal

SUCCESS_CURVE_POINTS = 40


def _print_progress(message):
    print(message, file=sys.stderr, flush=True)


def epsilon_grid(distances, points=SUCCESS_CURVE_POINTS):
    """A geometric grid of budgets spanning the finite, positive `distances` (for success curves)."""
    distances = np.asarray(distances, np.float64)
    positive = distances[np.isfinite(distances) & (distances > 0)]
    if positive.size == 0:
        return np.array([0.0])
    return np.concatenate(
        [[0.0], np.geomspace(positive.min() / 2, positive.max() * 1.25, points - 1)]
    )


def adversarial_evaluation(
    model,
    x,
    y,
    *,
    norms=("linf", "l2"),
    num_examples=100,
    seed=0,
    batch_size=500,
    step_fractions=(0.25,),
    iterations=(20,),
    losses=("margin",),
    target_ranks=(2, 3),
    search_steps=10,
    carlini_wagner=True,
    cw_max_iterations=100,
    cw_binary_search_steps=5,
    cw_learning_rate=0.1,
    cw_initial_const=1.0,
    momentum=False,
    spsa=False,
    progress=_print_progress,
):
    """Median minimal adversarial perturbation per norm, with quartiles, success curve and counts.

    Args:
        model: A Keras model or a callable mapping images in [0, 1] to logits.
        x: Images, float32 in [0, 1], (n, h, w, c).
        y: Integer labels, (n,).
        norms: Norms to evaluate, from "linf" and "l2".
        num_examples: Evaluate the first `num_examples` examples (0 or None: all).
        seed: Seed of random attacks (SPSA); the default attacks are deterministic.
        batch_size: Images per attack call.
        step_fractions: PGD step sizes as fractions of epsilon.
        iterations: PGD iteration counts.
        losses: PGD objectives ("margin", "ce").
        target_ranks: Multi-targeted margin PGD toward these ranks of wrong classes.
        search_steps: Bisection steps on epsilon per sample and attack.
        carlini_wagner: Include Carlini & Wagner for L2.
        cw_max_iterations: C&W iterations per constant.
        cw_binary_search_steps: C&W binary-search steps.
        cw_learning_rate: C&W learning rate.
        cw_initial_const: C&W initial trade-off constant.
        momentum: Include the momentum iterative method.
        spsa: Include SPSA for L-inf (slow).
        progress: Called with one-line progress messages, or None.

    Returns:
        (summary, per_sample): ``summary[norm]`` is `minimal.summarize_distances`'s dict plus
        ``success_curve`` ({``epsilon``, ``fraction``}) and ``seconds``; ``per_sample`` has
        ``index``, ``label``, ``clean_correct`` and, per norm, ``distance`` and ``attack`` arrays.
    """
    if isinstance(norms, str):
        norms = (norms,)
    if not norms:
        raise ValueError(f"Expected at least one norm ('linf', 'l2'). Received: norms={norms!r}")
    count = len(x) if not num_examples else min(int(num_examples), len(x))
    x, y = x[:count], y[:count]
    summary = {}
    per_sample = {"index": np.arange(count), "label": np.asarray(y)}
    for norm in norms:
        result = minimal.minimal_perturbation(
            model,
            x,
            y,
            norm,
            step_fractions=tuple(step_fractions),
            iterations=tuple(iterations),
            losses=tuple(losses),
            target_ranks=tuple(target_ranks),
            search_steps=search_steps,
            carlini_wagner=carlini_wagner,
            cw_max_iterations=cw_max_iterations,
            cw_binary_search_steps=cw_binary_search_steps,
            cw_learning_rate=cw_learning_rate,
            cw_initial_const=cw_initial_const,
            momentum=momentum,
            spsa=spsa,
            seed=seed,
            batch_size=batch_size,
            progress=progress,
        )
        norm_summary = result.summary()
        epsilons = epsilon_grid(result.distances)
        norm_summary["success_curve"] = {
            "epsilon": epsilons.tolist(),
            "fraction": minimal.success_curve(result.distances, epsilons).tolist(),
        }
        norm_summary["seconds"] = float(sum(result.seconds.values()))
        summary[norm] = norm_summary
        per_sample["clean_correct"] = result.clean_correct
        per_sample[norm] = {"distance": result.distances, "attack": result.best_attack}
        if progress is not None:
            progress(
                f"{norm}: median minimal perturbation {norm_summary['median']:.5g} "
                f"(q25 {norm_summary['q25']:.5g}, q75 {norm_summary['q75']:.5g}) over {count} samples, "
                f"{norm_summary['n_clean_misclassified']} misclassified clean, "
                f"{norm_summary['n_not_found']} not broken, {norm_summary['seconds']:.1f} s"
            )
    return summary, per_sample
