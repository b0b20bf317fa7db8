"""Small fixes that make CleverHans 4.0.0's TF2 attacks work with Keras 3 and NumPy 2.

What is broken upstream, and what this module does about it (no vendored copies: each fix overrides
only the broken piece and reuses the rest of CleverHans):

* Sanity checks (``fast_gradient_method``, ``projected_gradient_descent``, ``basic_iterative_method``,
  ``madry_et_al``, ``momentum_iterative_method``): upstream evaluates ``np.all(asserts)`` on a ragged
  list of tensors and scalars, which NumPy 2 rejects, so ``sanity_checks=True`` crashes (and it is the
  default of BIM, Madry et al. and MIM). The wrappers here run the same checks one by one, raise a
  ``ValueError`` that says what failed, and call CleverHans with ``sanity_checks=False``.
* ``CarliniWagnerL2``: (1) it resets Adam through ``optimizer.variables()``, a property in Keras 3
  (which also lists the learning rate, so zeroing all of it would stop the attack), and a Keras 3
  optimizer cannot be reused for the next batch's new variable;
  (2) its trade-off constant ``const`` has the input's shape instead of one value per example
  (upstream issue #1205), so constants of different examples mix through broadcasting, and RGB
  batches whose size differs from 3 fail; (3) passing true labels ``y`` silently makes the attack
  targeted (``targeted = y is not None``) and ``attack`` does not slice ``y`` per batch; (4) the
  binary search judges success by the best-ever result rather than the current constant's, and the
  ``confidence`` margin is added to every logit, which changes nothing. The subclass below keeps the
  upstream loss, tanh reparametrisation and gradient step and replaces the per-batch search.
* ``spsa``: ``SPSAAdam`` passes ``lr=`` to the Keras 3 Adam, which only accepts ``learning_rate``; the
  attack also accepts only one image per call. The fixed ``SPSAAdam`` and the ``spsa`` function here
  run any number of images (one at a time, as SPSA needs its batch dimension for the perturbation
  samples), with an optional seed.
"""

from __future__ import annotations

import functools
import inspect

import keras
import numpy as np
import tensorflow as tf
from cleverhans.tf2.attacks import basic_iterative_method as _bim
from cleverhans.tf2.attacks import carlini_wagner_l2 as _cw
from cleverhans.tf2.attacks import fast_gradient_method as _fgm
from cleverhans.tf2.attacks import madry_et_al as _madry
from cleverhans.tf2.attacks import momentum_iterative_method as _mim
from cleverhans.tf2.attacks import projected_gradient_descent as _pgd
from cleverhans.tf2.attacks import spsa as _spsa


def _as_float(value):
    return np.asarray(value, dtype=np.float64)


def check_attack_arguments(x, *, clip_min=None, clip_max=None, eps=None, eps_iter=None, norm=None):
    """The sanity checks CleverHans means to run, one by one, with clear errors.

    Args:
        x: The clean input batch.
        clip_min: Smallest valid input value, or None.
        clip_max: Largest valid input value, or None.
        eps: The attack budget, or None.
        eps_iter: The step size, or None.
        norm: The norm (np.inf, 1 or 2), or None.

    Raises:
        ValueError: If the input lies outside [clip_min, clip_max], the step exceeds the budget, or
            an L-inf budget cannot fit inside the valid range.
    """
    x = np.asarray(x)
    if clip_min is not None and np.any(x < _as_float(clip_min)):
        raise ValueError(
            f"Expected attack inputs >= clip_min={clip_min}. Received: x with minimum {x.min():.6g}"
        )
    if clip_max is not None and np.any(x > _as_float(clip_max)):
        raise ValueError(
            f"Expected attack inputs <= clip_max={clip_max}. Received: x with maximum {x.max():.6g}"
        )
    if eps is not None and eps_iter is not None and np.any(_as_float(eps_iter) > _as_float(eps)):
        raise ValueError(
            f"Expected the step size not to exceed the budget. Received: eps_iter={eps_iter}, eps={eps}"
        )
    if norm == np.inf and eps is not None and clip_min is not None and clip_max is not None:
        if np.any(_as_float(eps) + _as_float(clip_min) > _as_float(clip_max)):
            raise ValueError(
                "Expected an L-inf budget that fits in the valid range (eps + clip_min <= clip_max). "
                f"Received: eps={eps}, clip_min={clip_min}, clip_max={clip_max}"
            )


def _with_numpy2_sanity_checks(attack):
    signature = inspect.signature(attack)

    @functools.wraps(attack)
    def checked_attack(*args, **kwargs):
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        arguments = dict(bound.arguments)
        if arguments.pop("sanity_checks"):
            check_attack_arguments(
                arguments["x"],
                clip_min=arguments.get("clip_min"),
                clip_max=arguments.get("clip_max"),
                eps=arguments.get("eps"),
                eps_iter=arguments.get("eps_iter"),
                norm=arguments.get("norm"),
            )
        return attack(**arguments, sanity_checks=False)

    checked_attack.__doc__ = (
        f"CleverHans' `{attack.__name__}` with NumPy-2-safe sanity checks (see module docstring).\n\n"
        + (attack.__doc__ or "")
    )
    return checked_attack


fast_gradient_method = _with_numpy2_sanity_checks(_fgm.fast_gradient_method)
projected_gradient_descent = _with_numpy2_sanity_checks(_pgd.projected_gradient_descent)
basic_iterative_method = _with_numpy2_sanity_checks(_bim.basic_iterative_method)
madry_et_al = _with_numpy2_sanity_checks(_madry.madry_et_al)
momentum_iterative_method = _with_numpy2_sanity_checks(_mim.momentum_iterative_method)


def _integer_labels(y, num_classes):
    y = np.asarray(y)
    if y.ndim == 2:
        y = np.argmax(y, axis=1)
    y = y.astype(np.int64)
    if y.ndim != 1 or np.any(y < 0) or np.any(y >= num_classes):
        raise ValueError(
            f"Expected integer labels in [0, {num_classes}) or one-hot rows, one per image. "
            f"Received: y with shape {np.shape(y)}"
        )
    return y


def _reset_optimizer_state(optimizer):
    """Zeroes a Keras 3 optimizer's step count and moments, keeping its learning rate.

    Upstream calls ``optimizer.variables()``; in Keras 3 ``variables`` is a property, and it also
    lists the learning rate, which must not be zeroed.
    """
    for variable in optimizer.variables:
        if variable.name != "learning_rate":
            variable.assign(tf.zeros_like(variable))


class CarliniWagnerL2(_cw.CarliniWagnerL2):
    """CleverHans' Carlini & Wagner L2 attack, fixed for Keras 3 and per-example constants.

    Same constructor as upstream plus an honoured ``targeted`` flag: ``y`` are true labels for an
    untargeted attack (the default) or target labels when ``targeted=True``; without ``y`` the
    model's predictions are the labels to move away from. ``attack(x, y=None)`` takes any number of
    images (the last batch may be smaller) and returns, per image, the smallest-L2 adversarial found,
    or the unchanged image where none was found.
    """

    def __init__(self, model_fn, y=None, targeted=False, **kwargs):
        super().__init__(model_fn, y=y, **kwargs)
        self.targeted = bool(targeted)

    def attack(self, x, y=None):
        """Returns adversarial examples (NumPy, same shape as ``x``) for images ``x``.

        Args:
            x: Images, shape (n, h, w, c), within [clip_min, clip_max].
            y: Labels for the whole ``x`` (integers or one-hot); overrides the constructor's ``y``.
        """
        x = np.asarray(x, dtype=np.float32)
        labels = self.y if y is None else y
        if self.targeted and labels is None:
            raise ValueError(f"Expected target labels `y` for a targeted attack. Received: y={y!r}")
        adversarials = np.empty_like(x)
        for start in range(0, len(x), self.batch_size):
            stop = start + self.batch_size
            batch_labels = None if labels is None else np.asarray(labels)[start:stop]
            adversarials[start:stop] = self._attack(x[start:stop], batch_labels)
        return adversarials

    def _is_adversarial(self, logits, labels, num_classes):
        margin = self.confidence * np.eye(num_classes, dtype=np.float32)[labels]
        if self.targeted:
            return np.argmax(logits - margin, axis=1) == labels
        return np.argmax(logits + margin, axis=1) != labels

    def _attack(self, x, y=None):
        check_attack_arguments(x, clip_min=self.clip_min, clip_max=self.clip_max)
        x = tf.convert_to_tensor(x, tf.float32)
        logits = self.model_fn(x)
        num_classes = int(logits.shape[-1])
        labels = (
            np.argmax(np.asarray(logits), axis=1) if y is None else _integer_labels(y, num_classes)
        )
        if len(labels) != x.shape[0]:
            raise ValueError(
                f"Expected one label per image ({x.shape[0]}). Received: {len(labels)} labels"
            )
        one_hot = tf.one_hot(labels, num_classes, dtype=tf.float32)
        unit_x = tf.clip_by_value((x - self.clip_min) / (self.clip_max - self.clip_min), 0.0, 1.0)
        tanh_x = tf.atanh((unit_x * 2.0 - 1.0) * 0.999999)

        batch_size = x.shape[0]
        lower_bound = np.zeros(batch_size, np.float32)
        upper_bound = np.full(batch_size, 1e10, np.float32)
        const = np.full(batch_size, self.initial_const, np.float32)
        best_l2 = np.full(batch_size, np.inf, np.float32)
        best_attack = x.numpy().copy()

        modifier = tf.Variable(tf.zeros_like(x), trainable=True)
        # One Adam per batch: a Keras 3 optimizer is built for one fixed list of variables.
        self.optimizer = keras.optimizers.Adam(self.learning_rate)
        self.optimizer.build([modifier])
        attack_step = tf.function(self.attack_step, autograph=False)
        for outer_step in range(self.binary_search_steps):
            modifier.assign(tf.zeros_like(x))
            _reset_optimizer_state(self.optimizer)
            if self.binary_search_steps >= 10 and outer_step == self.binary_search_steps - 1:
                const = upper_bound.copy()
            succeeded = np.zeros(batch_size, bool)
            previous_loss = None
            check_every = (self.max_iterations // 10) or 1
            for iteration in range(self.max_iterations):
                x_new, loss, logits, l2_squared = attack_step(
                    tanh_x, one_hot, modifier, tf.constant(const)
                )
                if self.abort_early and iteration % check_every == 0:
                    if previous_loss is not None and loss > previous_loss * 0.9999:
                        break
                    previous_loss = loss
                success = self._is_adversarial(logits.numpy(), labels, num_classes)
                succeeded |= success
                improved = success & (l2_squared.numpy() < best_l2)
                if np.any(improved):
                    best_l2[improved] = l2_squared.numpy()[improved]
                    best_attack[improved] = x_new.numpy()[improved]
            upper_bound = np.where(succeeded, np.minimum(upper_bound, const), upper_bound)
            lower_bound = np.where(succeeded, lower_bound, np.maximum(lower_bound, const))
            const = np.where(upper_bound < 1e9, (lower_bound + upper_bound) / 2.0, const * 10.0)
            const = const.astype(np.float32)
        return best_attack


def carlini_wagner_l2(model_fn, x, y=None, targeted=False, **kwargs):
    """Runs the fixed ``CarliniWagnerL2`` on ``x`` and returns the adversarial examples (NumPy).

    Args:
        model_fn: A callable mapping an image batch to logits.
        x: Images, shape (n, h, w, c).
        y: True labels (untargeted) or target labels (``targeted=True``); default: predictions.
        targeted: Whether to reach the labels ``y`` instead of leaving them.
        **kwargs: Other ``CarliniWagnerL2`` arguments (batch_size, max_iterations, ...).
    """
    return CarliniWagnerL2(model_fn, targeted=targeted, **kwargs).attack(x, y)


class SPSAAdam(_spsa.SPSAAdam):
    """CleverHans' SPSA optimizer with the Keras 3 Adam constructor (``learning_rate``, not ``lr``)."""

    def __init__(
        self, lr=0.01, delta=0.01, num_samples=128, num_iters=1, compare_to_analytic_grad=False
    ):
        keras.optimizers.Adam.__init__(self, learning_rate=lr)
        if num_samples % 2:
            raise ValueError(
                "Expected an even number of SPSA samples (they are mirrored +/- delta). "
                f"Received: num_samples={num_samples}"
            )
        self.lr = lr
        self._delta = delta
        self._num_samples = num_samples // 2
        self._num_iters = num_iters
        self._compare_to_analytic_grad = compare_to_analytic_grad


def spsa(
    model_fn,
    x,
    y,
    eps,
    nb_iter,
    clip_min=0.0,
    clip_max=1.0,
    targeted=False,
    early_stop_loss_threshold=None,
    learning_rate=0.01,
    delta=0.01,
    spsa_samples=128,
    spsa_iters=1,
    seed=None,
):
    """CleverHans' SPSA L-inf attack for any number of images, with the fixed optimizer.

    Args:
        model_fn: A callable mapping an image batch to logits.
        x: Images, shape (n, h, w, c), within [clip_min, clip_max].
        y: Integer labels, shape (n,): true labels, or targets when ``targeted=True``.
        eps: The L-inf budget: a scalar or one value per image.
        nb_iter: Optimisation steps per image.
        clip_min: Smallest valid pixel value.
        clip_max: Largest valid pixel value.
        targeted: Whether to reach ``y`` instead of leaving it.
        early_stop_loss_threshold: Stop an image's optimisation once its loss is below this value.
        learning_rate: Adam learning rate.
        delta: SPSA perturbation size.
        spsa_samples: Perturbation samples per gradient estimate (even).
        spsa_iters: Gradient estimates averaged per step.
        seed: If given, ``tf.random.set_seed(seed)`` is called first, which makes the attack
            deterministic (SPSA's random draws come from TensorFlow's global generator).

    Returns:
        The adversarial images as a NumPy array shaped like ``x``.
    """
    x = np.asarray(x, dtype=np.float32)
    check_attack_arguments(x, clip_min=clip_min, clip_max=clip_max)
    y = np.asarray(y)
    eps = np.broadcast_to(np.asarray(eps, np.float32), (len(x),))
    if seed is not None:
        tf.random.set_seed(seed)

    def margin_loss(images, label):
        logits = model_fn(images)
        sign = 1.0 if targeted else -1.0
        return sign * _spsa.margin_logit_loss(logits, label, nb_classes=logits.shape[-1])

    adversarials = np.empty_like(x)
    for index in range(len(x)):
        optimizer = SPSAAdam(
            lr=learning_rate, delta=delta, num_samples=spsa_samples, num_iters=spsa_iters
        )
        adversarial = _spsa.projected_optimization(
            margin_loss,
            tf.constant(x[index : index + 1]),
            tf.constant(y[index : index + 1]),
            float(eps[index]),
            nb_iter,
            optimizer,
            clip_min,
            clip_max,
            early_stop_loss_threshold,
        )
        adversarials[index] = adversarial.numpy()[0]
    return adversarials
