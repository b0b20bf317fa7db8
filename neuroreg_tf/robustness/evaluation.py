"""Evaluate one or several trained classifiers: clean accuracy, Gaussian noise, adversarial distances.

``evaluate_models`` is what ``evaluate.py`` and the demo call; it loads models, runs the evaluations on
the same examples for every model and writes ``robustness.json``, the plots and the tables.
"""

from __future__ import annotations

import hashlib
import json
import os

import numpy as np

from neuroreg_tf import workdir as workdir_files
from neuroreg_tf.config import ConfigChecker
from neuroreg_tf.data import known_datasets
from neuroreg_tf.errors import ConfigError
from neuroreg_tf.fileio import read_json, write_json_atomic
from neuroreg_tf.progress import Reporter, print_line, reporter
from neuroreg_tf.robustness import adversarial as adversarial_lib
from neuroreg_tf.robustness import noise as noise_lib
from neuroreg_tf.robustness import report as report_lib
from neuroreg_tf.robustness.loading import artifact_fingerprint, load_classifier
from neuroreg_tf.robustness.settings import NORMS

CONFIG_FILENAME = workdir_files.CONFIG


def check_noise_settings(config, prefix: str = "config") -> None:
    """Checks ``noise.sigmas`` (finite, >= 0) and ``noise.seeds`` (integers >= 0) of a config.

    Raises:
        ConfigError: naming the bad key.
    """
    check = ConfigChecker(config, prefix)
    check.numbers("sigmas", minimum=0)
    check.integers("seeds", minimum=0)


def check_config(config) -> None:
    """Refuses an evaluation config (``configs/evaluate.py``) that cannot work.

    Raises:
        ConfigError: naming the first bad key, what it accepts and what it received.
    """
    check = ConfigChecker(config)
    try:
        parse_model_specs(config.models)
    except ValueError as error:
        raise ConfigError(f"config.models: {error}") from None
    if config.dataset:
        check.choice("dataset", known_datasets())
    check.integer("num_examples", minimum=0)
    check.integer("batch_size", minimum=1)
    check_noise_settings(config.noise, "config.noise")
    check.integer("adversarial.num_examples", minimum=1)
    check.subset("adversarial.norms", NORMS)
    try:
        arguments = adversarial_lib.arguments_from_config(config.adversarial)
    except ConfigError as error:
        raise ConfigError(f"config.adversarial: {error}") from None
    problem = arguments["settings"].attacks_missing(arguments["norms"])
    if problem:
        raise ConfigError(f"config.adversarial.norms: {problem}")


def parse_model_specs(spec) -> list[tuple[str, str]]:
    """Parses models given as ``"label=path,label=path"`` (or plain paths) into (label, path) pairs.

    Args:
        spec: A comma-separated string of ``label=path`` items or plain paths (whose label is then
            the path's last component), or a sequence of such strings, or a mapping label -> path.

    Returns:
        A list of (label, path) pairs, in the given order.

    Raises:
        ValueError: If no model is given, an item is malformed, or two models share a label.
    """
    if isinstance(spec, dict):
        items = [f"{label}={path}" for label, path in spec.items()]
    elif isinstance(spec, str):
        items = spec.split(",")
    else:
        items = list(spec)
    pairs = []
    for item in items:
        item = item.strip()
        if not item:
            continue
        if "=" in item:
            label, path = (part.strip() for part in item.split("=", 1))
        else:
            path = item
            label = os.path.basename(os.path.normpath(path))
        if not label or not path:
            raise ValueError(
                "Expected models as 'label=path' items separated by commas, e.g. "
                f"'None=runs/demo/none,Neural=runs/demo/neural'. Received: models={spec!r}"
            )
        pairs.append((label, path))
    if not pairs:
        raise ValueError(
            "Expected at least one model, as 'label=path' items separated by commas, e.g. "
            f"'None=runs/demo/none,Neural=runs/demo/neural'. Received: models={spec!r}"
        )
    labels = [label for label, _ in pairs]
    if len(set(labels)) != len(labels):
        raise ValueError(f"Expected distinct model labels. Received: models={spec!r}")
    return pairs


def find_run_config(path) -> dict | None:
    """Returns the training run's resolved config (``config.json``) for a model path, or None.

    Looks in ``path`` itself and its parent, so a workdir, its ``export/`` folder and its ``.keras``
    files all lead to the workdir's config.
    """
    path = os.path.abspath(os.fspath(path))
    candidates = [path, os.path.dirname(path)]
    for directory in candidates:
        config_path = os.path.join(directory, CONFIG_FILENAME)
        if os.path.isfile(config_path):
            with open(config_path) as handle:
                return json.load(handle)
    return None


def dataset_from_run(path) -> tuple[str, str | None]:
    """Returns (dataset name, data_dir or None) recorded in the training run that produced ``path``.

    Raises:
        ValueError: If no ``config.json`` with ``data.dataset`` is found next to ``path``.
    """
    config = find_run_config(path)
    data = (config or {}).get("data") or {}
    if not data.get("dataset"):
        raise ValueError(
            f"Cannot tell which dataset {path!r} was trained on: expected a training workdir with "
            f"{CONFIG_FILENAME} holding data.dataset. Set the dataset explicitly "
            f"(--config.dataset=fashion_mnist). Received: path={path!r}"
        )
    return data["dataset"], data.get("data_dir") or None


def load_examples(
    dataset: str,
    split: str = "test",
    num_examples: int | None = None,
    data_dir: str | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Loads the first ``num_examples`` examples of a dataset split as NumPy arrays.

    Args:
        dataset: A dataset name known to ``neuroreg_tf.data.load_classification``, e.g.
            ``"fashion_mnist"``.
        split: The split, e.g. ``"test"``.
        num_examples: How many examples to take from the start of the split; None or 0 for all.
        data_dir: The tfds data directory, or None for the default.

    Returns:
        (x, y): float32 images in [0, 1], shape (n, h, w, 1), and int64 labels, shape (n,).
    """
    from neuroreg_tf import data as data_lib

    return data_lib.split_arrays(dataset, split, data_dir=data_dir, limit=num_examples or None)


def _load_models(models):
    if isinstance(models, str):
        pairs = parse_model_specs(models)
    elif isinstance(models, dict):
        pairs = list(models.items())
    else:
        pairs = list(models)
    loaded = []
    for label, model in pairs:
        if isinstance(model, (str, os.PathLike)):
            loaded.append((label, os.fspath(model), load_classifier(model)))
        else:
            loaded.append((label, None, model))
    return loaded


def evaluate_models(
    models,
    x,
    y,
    *,
    sigmas=noise_lib.DEFAULT_SIGMAS,
    seeds=noise_lib.DEFAULT_SEEDS,
    batch_size=256,
    adversarial=None,
    workdir=None,
    metadata=None,
    overwrite: bool = False,
    progress: Reporter = print_line,
    config: dict | None = None,
):
    """Evaluates several classifiers on the same examples and (optionally) writes the report.

    Args:
        models: The models: a ``"label=path,..."`` string, a mapping label -> path or model, or a
            sequence of (label, path or model) pairs. Paths go through ``load_classifier``; models are
            Keras models or callables mapping images to logits.
        x: Images, float32 in [0, 1], shape (n, h, w, c).
        y: Integer labels, shape (n,).
        sigmas: Gaussian noise levels (see ``noise_robustness``).
        seeds: Noise seeds.
        batch_size: Images per forward pass.
        adversarial: None to skip adversarial evaluation, or the keyword arguments of
            ``adversarial.adversarial_evaluation`` (``norms``, ``num_examples``, ``settings``;
            ``adversarial.arguments_from_config`` makes them from a config section).
        workdir: If given, ``robustness.json``, the plots and per-sample CSV files are written there.
            The workdir is claimed first (``workdir.claim``) with the evaluation's identity (its
            settings, the examples' and every model artifact's checksums): a finished
            evaluation of the same is reused, one of anything else refused unless ``overwrite``.
        metadata: Extra top-level entries for the report (dataset, split, ...).
        overwrite: Replace what ``workdir`` holds instead of refusing.
        progress: Reporter of one-line progress messages (None: silent).
        config: the calling script's resolved config, written to ``evaluate_config.json`` as
            soon as the workdir is claimed (before any result), as every script writes its config.

    Returns:
        The report dict (see ``neuroreg_tf.robustness.report``); with a workdir, also
        ``report["files"]``, the paths written.
    """
    settings = dict(sigmas=sigmas, seeds=seeds, batch_size=batch_size, adversarial=adversarial,
                    workdir=workdir, metadata=metadata, overwrite=overwrite, progress=progress, config=config)
    if workdir is None:
        return _evaluate_models(models, x, y, **settings)
    with workdir_files.locked(workdir, "evaluation", progress=progress):
        return _evaluate_models(models, x, y, **settings)


def _evaluate_models(models, x, y, *, sigmas, seeds, batch_size, adversarial, workdir, metadata,
                     overwrite, progress, config):
    """``evaluate_models`` once the workdir (if any) is held."""
    report_line = reporter(progress)
    loaded = _load_models(models)
    if workdir is not None:
        identity = evaluation_identity(loaded, x, y, sigmas, seeds, batch_size, adversarial, metadata)
        status = workdir_files.claim(
            workdir, identity, what="evaluation", finished_marker=workdir_files.ROBUSTNESS_JSON,
            overwrite=overwrite,
        )
        if status == workdir_files.FINISHED:
            report_line(f"{workdir} already holds this evaluation (same models, examples and settings); reusing it.")
            report = read_json(workdir_files.path(workdir, workdir_files.ROBUSTNESS_JSON), "the evaluation report")
            report_line("\n" + report_lib.format_noise_table(report["models"]))
            if adversarial is not None:
                report_line("\n" + report_lib.format_adversarial_table(report["models"]))
            return report
        if config is not None:
            write_json_atomic(workdir_files.path(workdir, workdir_files.EVALUATE_CONFIG), config)
    results = []
    adversarial_outputs = {}
    for label, path, model in loaded:
        report_line(f"evaluating {label}" + (f" ({path})" if path else ""))
        result = {"label": label}
        if path is not None:
            result["path"] = path
        result["clean_accuracy"] = noise_lib.clean_accuracy(model, x, y, batch_size=batch_size)
        result["noise"] = noise_lib.noise_robustness(
            model, x, y, sigmas=sigmas, seeds=seeds, batch_size=batch_size, progress=progress
        )
        report_line(f"{label}: clean accuracy {result['clean_accuracy']:.4f}")
        if adversarial is not None:
            summary, per_sample = adversarial_lib.adversarial_evaluation(
                model, x, y, progress=progress, **dict(adversarial)
            )
            result["adversarial"] = summary
            adversarial_outputs[label] = per_sample
        results.append(result)

    report = report_lib.build_report(
        results,
        num_examples=int(len(x)),
        sigmas=[float(sigma) for sigma in sigmas],
        noise_seeds=[int(seed) for seed in seeds],
        **(metadata or {}),
    )
    report_line("\n" + report_lib.format_noise_table(results))
    if adversarial is not None:
        report_line("\n" + report_lib.format_adversarial_table(results))
    if workdir is not None:
        report["files"] = write_outputs(report, workdir, adversarial_outputs)
        report_line(f"wrote {', '.join(report['files'])}")
    return report


def evaluation_identity(loaded, x, y, sigmas, seeds, batch_size, adversarial, metadata) -> dict:
    """What an evaluation depends on: the models' artifacts, the examples and every setting."""
    models = []
    for label, path, model in loaded:
        if path is not None:
            fingerprint = artifact_fingerprint(path)
        elif hasattr(model, "get_weights"):
            weights = hashlib.sha256()
            for array in model.get_weights():
                weights.update(np.ascontiguousarray(array).tobytes())
            fingerprint = weights.hexdigest()
        else:
            raise ValueError(
                "An evaluation written to a workdir needs models given as paths or Keras models "
                f"(their files or weights are its identity). Received: {type(model).__name__} "
                f"labelled {label!r}"
            )
        models.append({"label": label, "artifact": fingerprint})
    examples = hashlib.sha256(np.ascontiguousarray(x).tobytes() + np.ascontiguousarray(y).tobytes())
    return {
        "kind": "evaluation",
        "models": models,
        "examples": examples.hexdigest(),
        **settings_identity(sigmas, seeds, batch_size, adversarial),
        "metadata": metadata or {},
    }


def settings_identity(sigmas, seeds, batch_size, adversarial) -> dict:
    """The part of an evaluation's identity that its settings make (``evaluation_identity``), as
    written to ``identity.json``: what a study compares to tell an evaluation of other settings."""
    settings = None
    if adversarial is not None:
        settings = {key: value for key, value in dict(adversarial).items() if key != "settings"}
        settings["settings"] = adversarial["settings"].as_identity() if adversarial.get("settings") else None
    identity = {
        "sigmas": [float(s) for s in sigmas],
        "seeds": [int(s) for s in seeds],
        "batch_size": int(batch_size),
        "adversarial": settings,
    }
    return json.loads(json.dumps(identity))  # tuples as lists, as identity.json holds them


def write_outputs(report: dict, workdir: str, adversarial_outputs: dict | None = None) -> list[str]:
    """Writes robustness.json, the noise plot and (when present) the adversarial CSV and plots.

    Returns:
        The list of written paths.
    """
    os.makedirs(workdir, exist_ok=True)
    files = [
        report_lib.plot_noise(
            report["models"],
            os.path.join(workdir, report_lib.NOISE_PLOT_FILENAME),
            title=report.get("dataset"),
        )
    ]
    if adversarial_outputs:
        files.extend(report_lib.write_adversarial_outputs(adversarial_outputs, workdir))
    json_path = os.path.join(workdir, report_lib.JSON_FILENAME)
    files.insert(0, json_path)
    report_lib.write_json({**report, "files": files}, json_path)
    return files
