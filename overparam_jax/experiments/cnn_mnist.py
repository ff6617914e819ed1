r"""E3 of THEORY.md §8: a ConvNet on MNIST, accelerated by linear overparameterization [ACH18].

The network is the TensorFlow MNIST convolutional tutorial (``tutorials/image/mnist/
convolutional.py``), written as pure functions over a params pytree. Images are
:math:`x \in [-\tfrac12, \tfrac12]^{28\times28\times1}` (pixel :math:`(p - 127.5)/255`, as the
tutorial) in NHWC layout::

    conv 5×5×32 (SAME) → ReLU → maxpool 2×2 → conv 5×5×64 (SAME) → ReLU → maxpool 2×2
    → flatten (7·7·64 = 3136) → dense 3136→512 → ReLU → dropout(keep 0.5) → dense 512→10

Params: ``{"conv1": {"kernel", "bias"}, "conv2": {...}, "fc1": {"factors", "bias"},
"fc2": {...}}``; kernels are HWIO, a dense layer is an affine map
:math:`h \mapsto W_{1:N} h + b` whose matrix is the product of its ``factors``
:math:`(W_1, \dots, W_N)`, input side first, :math:`W_j` of shape :math:`(d_j, d_{j-1})`,
:math:`W_{1:N} = W_N \cdots W_1` (THEORY.md §1). The baseline has ``dense_depth = 1``.

**Overparameterization** (``dense_depth = 2``): each dense layer becomes two matrices in a
row with no non-linearity between them — fc1 is :math:`W_2 W_1` with
:math:`W_1 \in \mathbb R^{512\times3136}` followed by an added
:math:`W_2 \in \mathbb R^{512\times512}`; fc2 is :math:`W_2 W_1` with
:math:`W_1 \in \mathbb R^{10\times512}` and an added :math:`W_2 \in \mathbb R^{10\times10}`.
One bias per pair, after the product, so the set of functions is exactly the baseline's
(no gain in expressiveness). It has 262 244 (+15.8 %) more parameters.

**Initialization** (the tutorial's): weights :math:`0.1\cdot\mathcal N(0,1)` truncated at
two standard deviations (``tf.truncated_normal(stddev=0.1)``); conv1 bias 0, the other
biases 0.1. The added matrices (the paper only says the added layers are linear) start
either at the identity (``added_init="identity"``: with the same key the twin starts as
*the same function* as the baseline) or from the tutorial's own truncated normal
(``"truncated_normal"``: what adding a layer to the tutorial's code gives without any
further choice, so the likeliest reconstruction of the paper's twin; then
:math:`W_2W_2^\top` has eigenvalues spread over :math:`[0, \approx 16]` with mean
:math:`\approx 4`, and the twin starts as another function).

**Objective** (the tutorial's): the mean softmax cross-entropy of the batch ("data loss")
plus :math:`\lambda\,R` with :math:`\lambda = 5\cdot10^{-4}` and, as ``tf.nn.l2_loss(x) =
\sum x^2/2`` on fc1's and fc2's weights *and biases*,

.. math::
    R = \tfrac12\bigl(\|W^{fc1}\|_F^2 + \|b^{fc1}\|^2 + \|W^{fc2}\|_F^2 + \|b^{fc2}\|^2\bigr).

For the twin, ``l2_target="product"`` (default) puts :math:`R` on the end-to-end matrices
:math:`W_{1:2}`, so both nets minimize the *same* objective as a function of the network
they compute and any speed-up is due to the parameterization alone; ``"factors"`` decays
every matrix, :math:`\tfrac12\sum_j\|W_j\|_F^2` (plain weight decay, which changes the
objective: at the identity start it adds :math:`\tfrac12\lambda(512 + 10) \approx 0.13`).
Which one [ACH18] used is not stated in the text available to us **(reconstructed)**.
Both the objective and the data loss are recorded at every step.

**The twin's effective step.** Through its factors the end-to-end matrix :math:`W = W_2W_1`
of a twin's dense layer moves, to first order in :math:`\eta`, by
:math:`\Delta W = -\eta\,(W_2W_2^\top G + G\,W_1^\top W_1)` with :math:`G = \nabla_W` the
baseline's gradient (THEORY.md §4). With :math:`W_2 = I` at init that is
:math:`-\eta\,G\,P` with :math:`P = I + W_1^\top W_1`: the step is multiplied by
:math:`1 + \sigma_i^2` along the :math:`i`-th right singular vector of :math:`W_1`
(singular value :math:`\sigma_i`) and left as it is in the other :math:`d_0 - d_1`
input directions (2624 of fc1's 3136). The arm ``baseline_preconditioned`` is the
baseline trained with exactly this step frozen at init — each dense weight gradient
(cross-entropy and L2 term) replaced by :math:`G\,(I + W(0)^\top W(0))` before the momentum
— so that the twin's speed-up over it is what the *larger effective step at init* does
not explain. (A single learning-rate factor cannot be faithful: the twin's factor is
:math:`1+\sigma_i^2 \approx 10\text{–}48` in 512 directions and 1 in the other 2624; the
report gives the candidates — the mean of :math:`1+\sigma_i^2`, the trace
:math:`\operatorname{tr}P/d_0`, and :math:`\langle G, GP\rangle/\|G\|^2` on the first batch's
gradient — for each seed.)

**Optimizer** (the tutorial's): SGD with heavy-ball momentum 0.9 (``optax.sgd``, the same
update as ``tf.train.MomentumOptimizer``: :math:`v \leftarrow 0.9 v + g`,
:math:`\theta \leftarrow \theta - \eta_t v`), batch 64,
:math:`\eta_t = 0.01\cdot 0.95^{\lfloor 64 t / n \rfloor}` (staircase decay once per epoch
of :math:`n` training examples), dropout 0.5 on the fc1 activations during training only.

**Data** (the tutorial's split): the first 5 000 training images are held out for
validation, the other :math:`n = 55\,000` are trained on. Unlike the tutorial, which walks
the data in file order, batches are drawn from a fresh random permutation of the training
set each epoch.

**Protocol** (issue #18): the *arms* (:data:`ARMS`: ``baseline``, ``twin``,
``twin_random_init``, ``baseline_preconditioned``) are each trained for 2 epochs
(:math:`\lfloor 2n/64\rfloor = 1718` steps) on the *seeds* 0, 1, 2 (the two *variants*,
``twin_random_init`` and ``baseline_preconditioned``, on only the first ``variant_seeds``
of them where a time budget asks for it; each comparison then reads the seeds both of its
arms have). ``baseline_preconditioned`` is issue #18's "baseline with fc1's learning rate
raised to the twin's effective step :math:`1 + \sigma^2`" made exact: the factor is applied
per singular direction, as the twin gets it, not as one number. Everything random
(init, permutations, dropout) comes from ``jax.random.key(seed)``; within a seed every arm
gets the same conv kernels and first dense factors, the same batches and the same dropout
masks, so the arms are a paired comparison. Training runs in float32 whatever
``jax_enable_x64`` says. Earlier runs (the 10-epoch run of the tutorial's protocol) are
re-read from their results documents (``references``) and reported in the same metric.

**Metric** (:func:`analyze`, a pure function of a results document): batch losses are
smoothed by a *centered* moving average over ``smoothing_window`` steps
(:math:`2\lfloor w/2\rfloor + 1` batches, shrinking at the ends; centered so that both
curves are read without lag); for fixed levels :data:`LEVELS` of the cross-entropy and of
the objective (cross-entropy + L2 term) the speed-up of an arm over its reference is
*first hit to first hit*, :math:`t_{\rm ref}(\ell) / t_{\rm arm}(\ell)` with
:math:`t(\ell)` the first step at which the smoothed curve is :math:`\le \ell`. A level first
reached within the first :math:`\lfloor w/2\rfloor` steps is not resolved by the smoothing
and gets no ratio; a level only one of the two reaches in the run gets a bound. Medians
and ranges are over seeds. The *crossing* of two curves is read from their smoothed
difference: the first step at which the arm is below its reference and the last at
which it is above.

**Pipeline**: the uint8 images stay on the device as one array; the jitted step (buffers
donated) takes a ``(64,)`` vector of indices and gathers, normalizes and trains inside
the compiled function.

**Public**: the configuration (:data:`ARMS`, :class:`CNNConfig`, :func:`quick_config`,
:func:`validate_config`), the network (:func:`init_params`, :func:`preprocess`, :func:`apply`,
:func:`l2_penalty`, :func:`learning_rate_schedule`), :func:`run_cnn_experiment` (each net
trained through :func:`~overparam_jax.runner.run_chunks`) with its :class:`CNNResult`, the
metric (:data:`LEVELS`, :func:`analyze`, :func:`load_reference`), the README paragraph
(:func:`readme_paragraph`) and ``EXPERIMENT`` (``overparam-jax reproduce cnn``); the rest
of the report is private.

References:
    [ACH18] Arora, Cohen, Hazan. On the Optimization of Deep Networks: Implicit
    Acceleration by Overparameterization. ICML 2018, §8 (the convolutional network).
    TensorFlow, ``tensorflow/models`` ``tutorials/image/mnist/convolutional.py`` (2016-17).
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import textwrap
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from overparam_jax.analysis import first_hit, moving_average, significant
from overparam_jax.checkpoint import CheckpointDir, array_digest
from overparam_jax.datasets import MNIST, load_mnist
from overparam_jax.experiments import Experiment, Option
from overparam_jax.experiments.report import (
    band,
    figure_panels,
    load_average,
    markdown,
    markdown_table,
    write_outputs,
)
from overparam_jax.networks import end_to_end
from overparam_jax.runner import ProgressFn, on_host, run_chunks

__all__ = [
    "ARMS", "EXPERIMENT", "LEVELS", "CNNConfig", "CNNResult", "CNNRun", "analyze", "apply", "init_params",
    "l2_penalty", "learning_rate_schedule", "load_reference", "preprocess", "quick_config", "readme_paragraph",
    "run_cnn_experiment", "validate_config",
]

_Net = dict[str, dict[str, Any]]  # the params pytree of the module docstring

_DTYPE = jnp.float32
_IMAGE_SIZE = 28
_NUM_LABELS = 10
_FC1_IN = (_IMAGE_SIZE // 4) * (_IMAGE_SIZE // 4) * 64  # 3136
_FC1_OUT = 512
_INIT_STD = 0.1  # tf.truncated_normal(stddev=0.1), truncated at 2 std
_BIAS_INIT = {"conv1": 0.0, "conv2": 0.1, "fc1": 0.1, "fc2": 0.1}
_L2_TARGETS = ("product", "factors")
_ADDED_INITS = ("identity", "truncated_normal")
_DENSE = ("fc1", "fc2")


class Arm(NamedTuple):
    """One way of training the net: its dense depth, how its added matrices start, and
    whether its dense weight gradients are preconditioned by the twin's step at init."""

    dense_depth: int
    added_init: str
    preconditioned: bool
    description: str


ARMS: dict[str, Arm] = {
    "baseline": Arm(1, "identity", False, "the tutorial's net"),
    "twin": Arm(2, "identity", False, "dense layers W₂W₁, the added W₂ = I (same initial function)"),
    "twin_random_init": Arm(2, "truncated_normal", False,
                            "dense layers W₂W₁, the added W₂ from the tutorial's init (0.1·N(0,1) truncated at ±2)"),
    "baseline_preconditioned": Arm(1, "identity", True,
                                   "the baseline with each dense weight gradient G replaced by "
                                   "G(I + W(0)ᵀW(0)), the twin's end-to-end step at init"),
}
_OLD_NAMES = {"baseline": "baseline", "overparameterized": "twin"}  # documents before issue #18

# Loss levels of the first-hit speed-ups (cross-entropy and objective): 1-1.5-2-3-5-7 per decade.
LEVELS = (5.0, 3.0, 2.0, 1.5, 1.0, 0.7, 0.5, 0.3, 0.2, 0.15, 0.1, 0.07, 0.05, 0.03, 0.02)
_SERIES = {"loss": "objective (cross-entropy + L2)", "data_loss": "cross-entropy"}


# --------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------


class CNNConfig(NamedTuple):
    """Hyperparameters of E3; the training defaults are the TensorFlow tutorial's, the
    protocol (2 epochs, four arms, three seeds) issue #18's.

    Attributes:
        num_epochs: epochs over the training set (``num_steps = num_epochs * n // batch``).
        num_steps: if set, overrides ``num_epochs``.
        batch_size: examples per SGD step.
        learning_rate: initial :math:`\\eta_0`.
        decay_rate: :math:`\\eta` is multiplied by this once per epoch (staircase).
        momentum: heavy-ball momentum.
        weight_decay: :math:`\\lambda` of the L2 term (0 disables it).
        keep_prob: dropout keep probability on the fc1 activations.
        l2_target: ``"product"`` or ``"factors"``: what the L2 term of a twin penalizes.
        arms: which of :data:`ARMS` to train, in this order (one must be ``"baseline"``
            for the comparisons).
        seeds: integer seeds of ``jax.random.key``; ``baseline`` and ``twin`` are trained
            on each.
        variant_seeds: the other arms (the variants) are trained on the first this many of
            ``seeds`` (``None``: on all), to fit a time budget.
        validation_size: leading training images held out for validation.
        train_subset: if set, train on only the first this many remaining images.
        test_subset: if set, evaluate on only the first this many test images.
        eval_batch_size: batch size of the (jitted) accuracy evaluation.
        log_every: steps between progress reports (the curves keep every step).
        checkpoint_every: steps between checkpoints (when checkpointing). Every progress
            report and evaluation is a checkpoint too: they all end a chunk.
        smoothing_window: the moving-average window of the metric and the figures.
        references: results documents of earlier E3 runs (paths) to re-analyse in this
            run's metric and report beside it (:func:`load_reference`).
        data_dir: where :func:`~overparam_jax.load_mnist` looks first (``None``: the usual
            places). Where the images are, not what is computed: left out of the results and
            of the stages' checkpoint fingerprints (which hold a digest of the images).
    """

    num_epochs: int = 2
    num_steps: int | None = None
    batch_size: int = 64
    learning_rate: float = 0.01
    decay_rate: float = 0.95
    momentum: float = 0.9
    weight_decay: float = 5e-4
    keep_prob: float = 0.5
    l2_target: str = "product"
    arms: tuple[str, ...] = ("baseline", "twin", "twin_random_init", "baseline_preconditioned")
    seeds: tuple[int, ...] = (0, 1, 2)
    variant_seeds: int | None = None
    validation_size: int = 5000
    train_subset: int | None = None
    test_subset: int | None = None
    eval_batch_size: int = 500
    log_every: int = 50
    checkpoint_every: int = 500
    smoothing_window: int = 100
    references: tuple[str, ...] = ()
    data_dir: str | None = None


def quick_config(**overrides: Any) -> CNNConfig:
    """A smoke run for ``--quick``: baseline and twin on seeds 0 and 1, the variants on seed
    0 (as the full run's ``--variant-seeds 1``), 40 steps of batch 32 (two epochs of 640
    images), small evaluations; < 90 s on 2 cores."""
    return CNNConfig(
        num_steps=40, batch_size=32, train_subset=640, validation_size=200, test_subset=500,
        eval_batch_size=250, log_every=10, checkpoint_every=20, smoothing_window=10, seeds=(0, 1),
        variant_seeds=1,
    )._replace(**overrides)


def _parse_list(flag: str, text: str) -> tuple[str, ...]:
    items = tuple(s.strip() for s in text.split(","))
    if not all(items):
        raise ValueError(f"{flag} must be a comma-separated list, got {text!r}")
    return items


def _configure(*, quick: bool = False, steps: int | None = None, seeds: int | None = None,
               seed: int | None = None, epochs: int | None = None, arms: str | None = None,
               variant_seeds: int | None = None,
               data_dir: str | None = None, l2_on: str | None = None, weight_decay: float | None = None,
               references: list[str] | None = None) -> CNNConfig:
    """The configuration of ``reproduce cnn [--quick] [--steps N | --epochs E] [--seeds S]
    [--seed S0] [--arms A,B] [--variant-seeds K] [--reference DOC]...``: seeds ``S0 .. S0+S-1``,
    the variants on the first ``K`` of them."""
    for flag, value in (("--steps", steps), ("--seeds", seeds), ("--epochs", epochs),
                        ("--variant-seeds", variant_seeds)):
        if value is not None and value < 1:
            raise ValueError(f"{flag} must be a positive integer, got {value}")
    if seed is not None and seed < 0:
        raise ValueError(f"--seed must be a non-negative integer, got {seed}")
    if weight_decay is not None and not weight_decay >= 0:
        raise ValueError(f"--weight-decay must be non-negative, got {weight_decay}")
    config = quick_config() if quick else CNNConfig()
    if seeds is not None or seed is not None:
        first, count = seed or 0, seeds if seeds is not None else len(config.seeds)
        config = config._replace(seeds=tuple(range(first, first + count)))
    if epochs is not None:  # --epochs replaces a quick run's step count (unless --steps is given)
        config = config._replace(num_epochs=epochs, num_steps=None)
    given = {"num_steps": steps, "variant_seeds": variant_seeds, "data_dir": data_dir, "l2_target": l2_on, "weight_decay": weight_decay,
             "arms": None if arms is None else _parse_list("--arms", arms),
             "references": tuple(references) if references else None}
    config = config._replace(**{k: v for k, v in given.items() if v is not None})
    validate_config(config)
    return config


def validate_config(config: CNNConfig, data: MNIST | None = None) -> None:
    """Raise ``ValueError``/``TypeError`` naming the field if ``config`` is unusable, or
    (when given) ``data`` is not MNIST-shaped uint8 or too small for ``config``'s split."""
    if not isinstance(config, CNNConfig):
        raise TypeError(f"`config` must be a CNNConfig, but is {type(config).__name__}.")
    for name in ("num_epochs", "batch_size", "eval_batch_size", "log_every", "checkpoint_every",
                 "smoothing_window"):
        value = getattr(config, name)
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
            raise ValueError(f"`{name}` must be a positive int, but is {value!r}.")
    for name in ("num_steps", "train_subset", "test_subset"):
        value = getattr(config, name)
        if value is not None and (not isinstance(value, (int, np.integer)) or value < 1):
            raise ValueError(f"`{name}` must be a positive int or None, but is {value!r}.")
    if not isinstance(config.validation_size, (int, np.integer)) or config.validation_size < 0:
        raise ValueError(f"`validation_size` must be an int >= 0, but is {config.validation_size!r}.")
    for name in ("learning_rate", "decay_rate"):
        if not (getattr(config, name) > 0):
            raise ValueError(f"`{name}` must be positive, but is {getattr(config, name)}.")
    if not (0 <= config.momentum < 1):
        raise ValueError(f"`momentum` must be in [0, 1), but is {config.momentum}.")
    if not (config.weight_decay >= 0):
        raise ValueError(f"`weight_decay` must be non-negative, but is {config.weight_decay}.")
    if not (0 < config.keep_prob <= 1):
        raise ValueError(f"`keep_prob` must be in (0, 1], but is {config.keep_prob}.")
    if config.l2_target not in _L2_TARGETS:
        raise ValueError(f"`l2_target` must be one of {_L2_TARGETS}, but is {config.l2_target!r}.")
    arms = tuple(config.arms)
    if not arms or set(arms) - set(ARMS) or len(set(arms)) != len(arms):
        raise ValueError(f"`arms` must be distinct names among {tuple(ARMS)}, but is {arms!r}.")
    seeds = tuple(config.seeds)
    if (not seeds or len(set(seeds)) != len(seeds)
            or not all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s >= 0 for s in seeds)):
        raise ValueError(f"`seeds` must be distinct non-negative ints, but is {seeds!r}.")
    k = config.variant_seeds
    if k is not None and (not isinstance(k, (int, np.integer)) or isinstance(k, bool) or not 1 <= k <= len(seeds)):
        raise ValueError(f"`variant_seeds` must be None or an int from 1 to the number of seeds "
                         f"({len(seeds)}), but is {k!r}.")
    if isinstance(config.references, str) or not all(isinstance(r, str) for r in config.references):
        raise TypeError(f"`references` must be a tuple of paths, but is {config.references!r}.")
    if data is None:
        return
    n_train, n_test = data.train_images.shape[0], data.test_images.shape[0]
    expected = {
        "train_images": (n_train, _IMAGE_SIZE, _IMAGE_SIZE), "train_labels": (n_train,),
        "test_images": (n_test, _IMAGE_SIZE, _IMAGE_SIZE), "test_labels": (n_test,),
    }
    for field, shape in expected.items():
        arr = getattr(data, field)
        if tuple(arr.shape) != shape or arr.dtype != np.uint8:
            raise ValueError(
                f"`data.{field}` must be uint8 of shape {shape}, but is {arr.dtype} {tuple(arr.shape)}."
            )
    if config.test_subset is not None and config.test_subset > n_test:
        raise ValueError(f"`test_subset` ({config.test_subset}) exceeds the {n_test} test images.")
    available = n_train - config.validation_size
    train_size = config.train_subset if config.train_subset is not None else available
    if train_size > available or train_size < config.batch_size:
        raise ValueError(
            f"`train_subset` ({config.train_subset}) must be between `batch_size` "
            f"({config.batch_size}) and the {available} training images left after "
            f"`validation_size` ({config.validation_size})."
        )


def _results_config(config: CNNConfig) -> dict[str, Any]:
    """The configuration as reported: without ``data_dir`` and ``references`` (where files
    are; the references are reported with their digests)."""
    return {k: v for k, v in config._asdict().items() if k not in ("data_dir", "references")}


def _training_config(config: CNNConfig) -> dict[str, Any]:
    """What one net's training depends on (its checkpoint fingerprint, with the arm, the
    seed and the images): not the list of arms and seeds, nor the report's smoothing."""
    return {k: v for k, v in _results_config(config).items()
            if k not in ("arms", "seeds", "variant_seeds", "smoothing_window")}


def load_reference(path: str | Path) -> dict[str, Any]:
    """An earlier E3 results document (``cnn_results.json`` of any version), read back.

    Returns:
        ``{"name", "source", "sha256", "document"}``: the name says what was run
        (``"10epochs"``, ``"2epochs_no_l2"``), the source where it was read.

    Raises:
        OSError: the file cannot be read.
        ValueError: it is not JSON, or not an E3 results document.
    """
    path = Path(path)
    raw = path.read_bytes()
    try:
        document = json.loads(raw)
    except ValueError as e:
        raise ValueError(f"reference {path} is not JSON ({e})") from None
    if not isinstance(document, dict) or document.get("experiment") != "E3 cnn_mnist" or "runs" not in document:
        raise ValueError(f"reference {path} is not an E3 results document (cnn_results.json)")
    config = document["config"]
    epochs = round(document["num_steps"] * config["batch_size"] / document["train_size"])
    name = f"{epochs}epochs" + ("" if config["weight_decay"] > 0 else "_no_l2")
    return {"name": name, "source": path.as_posix(), "sha256": hashlib.sha256(raw).hexdigest(), "document": document}


def _load(config: CNNConfig) -> MNIST:
    """MNIST from ``config.data_dir`` (or the usual places), checked against ``config``; the
    references are read once here so that a bad path fails before any training."""
    for path in config.references:
        load_reference(path)
    data = load_mnist(config.data_dir)
    validate_config(config, data)
    return data
# --------------------------------------------------------------------------------------
# The network
# --------------------------------------------------------------------------------------


@functools.partial(jax.jit, static_argnames=("dense_depth", "added_init"))
def init_params(key: jax.Array, *, dense_depth: int = 1, added_init: str = "identity") -> _Net:
    """The tutorial's initial weights; with ``dense_depth > 1``, added matrices after them.

    Args:
        key: a JAX PRNG key. The same key gives the same conv kernels, biases and first
            dense factors at every depth and for both ``added_init``: with ``"identity"``
            the nets start as the same function.
        dense_depth: matrices per dense layer (1: the tutorial's net, 2: the twin).
        added_init: the added matrices' start: ``"identity"``, or ``"truncated_normal"``
            (the tutorial's ``0.1·N(0,1)`` truncated at ±2, from keys folded out of the
            layer's key, so the first factor is unchanged).

    Returns:
        The params pytree described in the module docstring, float32.

    Examples:
        >>> import jax
        >>> p = init_params(jax.random.key(0), dense_depth=2)
        >>> [w.shape for w in p["fc1"]["factors"]]
        [(512, 3136), (512, 512)]
    """
    if not isinstance(dense_depth, (int, np.integer)) or dense_depth < 1:
        raise ValueError(f"`dense_depth` must be an int >= 1, but is {dense_depth!r}.")
    if added_init not in _ADDED_INITS:
        raise ValueError(f"`added_init` must be one of {_ADDED_INITS}, but is {added_init!r}.")
    k1, k2, k3, k4 = jax.random.split(key, 4)

    def normal(k, shape):
        return _INIT_STD * jax.random.truncated_normal(k, -2.0, 2.0, shape, dtype=_DTYPE)

    def added(k, j, d):
        if added_init == "identity":
            return jnp.eye(d, dtype=_DTYPE)
        return normal(jax.random.fold_in(k, j), (d, d))

    def dense(k, d_in, d_out, name):
        factors = (normal(k, (d_out, d_in)),) + tuple(added(k, j, d_out) for j in range(1, dense_depth))
        return {"factors": factors, "bias": jnp.full((d_out,), _BIAS_INIT[name], _DTYPE)}

    return {
        "conv1": {"kernel": normal(k1, (5, 5, 1, 32)), "bias": jnp.full((32,), _BIAS_INIT["conv1"], _DTYPE)},
        "conv2": {"kernel": normal(k2, (5, 5, 32, 64)), "bias": jnp.full((64,), _BIAS_INIT["conv2"], _DTYPE)},
        "fc1": dense(k3, _FC1_IN, _FC1_OUT, "fc1"),
        "fc2": dense(k4, _FC1_OUT, _NUM_LABELS, "fc2"),
    }


def _count_params(params: _Net) -> int:
    """Number of trainable scalars in ``params``."""
    return int(sum(math.prod(leaf.shape) for leaf in jax.tree_util.tree_leaves(params)))


def preprocess(images: jax.Array) -> jax.Array:
    """uint8 ``(B, 28, 28)`` pixels → float32 ``(B, 28, 28, 1)`` in [-0.5, 0.5], as the tutorial."""
    x = (images.astype(_DTYPE) - 127.5) / 255.0
    return x[..., None]


def _conv_relu_pool(x: jax.Array, layer: dict[str, Any]) -> jax.Array:
    y = jax.lax.conv_general_dilated(
        x, layer["kernel"], window_strides=(1, 1), padding="SAME",
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
    )
    y = jax.nn.relu(y + layer["bias"].reshape(1, 1, 1, -1))
    return jax.lax.reduce_window(
        y, -jnp.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "SAME"
    )


def _dense(h: jax.Array, layer: dict[str, Any]) -> jax.Array:
    for W in layer["factors"]:  # input side first: h W_1^T W_2^T ... (never forms W_{1:N})
        h = h @ W.T
    return h + layer["bias"].reshape(1, -1)


def apply(
    params: _Net, x: jax.Array, *, dropout_key: jax.Array | None = None, keep_prob: float = 0.5
) -> jax.Array:
    """Logits ``(B, 10)`` of the net on preprocessed images ``x`` ``(B, 28, 28, 1)``.

    With ``dropout_key`` (training) each fc1 activation is kept with probability
    ``keep_prob`` and scaled by ``1/keep_prob`` (``tf.nn.dropout``); without it (evaluation)
    there is no dropout.
    """
    h = _conv_relu_pool(x, params["conv1"])
    h = _conv_relu_pool(h, params["conv2"])
    h = h.reshape(h.shape[0], -1)  # row-major (H, W, C), as tf.reshape of NHWC
    h = jax.nn.relu(_dense(h, params["fc1"]))
    if dropout_key is not None:
        keep = jax.random.bernoulli(dropout_key, keep_prob, h.shape)
        h = jnp.where(keep, h / jnp.asarray(keep_prob, h.dtype), jnp.zeros((), h.dtype))
    return _dense(h, params["fc2"])


def l2_penalty(params: _Net, *, l2_target: str = "product") -> jax.Array:
    r"""The tutorial's :math:`R` = ``sum(tf.nn.l2_loss)`` over fc1/fc2 weights and biases.

    ``"product"`` penalizes each end-to-end matrix :math:`\tfrac12\|W_{1:N}\|_F^2`
    (:func:`overparam_jax.end_to_end` of the layer's ``factors``, stored input side first
    as ``(d_j, d_{j-1})``), ``"factors"`` each factor :math:`\tfrac12\sum_j\|W_j\|_F^2`
    (identical at depth 1).
    """
    if l2_target not in _L2_TARGETS:
        raise ValueError(f"`l2_target` must be one of {_L2_TARGETS}, but is {l2_target!r}.")
    total = jnp.zeros((), _DTYPE)
    for name in ("fc1", "fc2"):
        layer = params[name]
        mats = [end_to_end(layer["factors"])] if l2_target == "product" else list(layer["factors"])
        for M in mats + [layer["bias"]]:
            total = total + 0.5 * jnp.sum(jnp.square(M))
    return total


def _batch_loss(params: _Net, x: jax.Array, labels: jax.Array, dropout_key: jax.Array | None, *,
                weight_decay: float, keep_prob: float, l2_target: str) -> tuple[jax.Array, jax.Array]:
    """``(objective, data_loss)``: mean cross-entropy plus ``weight_decay * l2_penalty``."""
    logits = apply(params, x, dropout_key=dropout_key, keep_prob=keep_prob)
    data = jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, labels.astype(jnp.int32)))
    if weight_decay == 0:
        return data, data
    return data + jnp.asarray(weight_decay, _DTYPE) * l2_penalty(params, l2_target=l2_target), data


def learning_rate_schedule(config: CNNConfig, train_size: int) -> Callable[[jax.Array], jax.Array]:
    r""":math:`\eta_t = \eta_0\,\rho^{\lfloor B t / n\rfloor}` (``tf.train.exponential_decay``,
    ``staircase=True``, decay step ``n`` = ``train_size`` examples), in float32.

    Examples:
        >>> schedule = learning_rate_schedule(CNNConfig(), 55_000)  # the first decay at t = 860
        >>> [round(float(schedule(t)), 6) for t in (0, 859, 860)]
        [0.01, 0.01, 0.0095]
    """
    lr = jnp.asarray(config.learning_rate, _DTYPE)
    rho = jnp.asarray(config.decay_rate, _DTYPE)

    def schedule(count):
        epoch = (jnp.asarray(count) * config.batch_size) // train_size  # exact integer arithmetic
        return lr * rho ** epoch.astype(_DTYPE)

    return schedule


# --------------------------------------------------------------------------------------
# Training: data, batches, the jitted step, evaluation, one net through run_chunks
# --------------------------------------------------------------------------------------


def _split(config: CNNConfig, data: MNIST):
    """``((train images, labels), (validation ...), (test ...))`` of the tutorial's split."""
    v = config.validation_size
    n = config.train_subset if config.train_subset is not None else data.train_images.shape[0] - v
    t = config.test_subset if config.test_subset is not None else data.test_images.shape[0]
    return (
        (data.train_images[v : v + n], data.train_labels[v : v + n]),
        (data.train_images[:v], data.train_labels[:v]),
        (data.test_images[:t], data.test_labels[:t]),
    )


def _batch_indices(key: jax.Array, train_size: int, batch_size: int, num_steps: int) -> np.ndarray:
    """``(num_steps, batch_size)`` int32: consecutive epochs, each a fresh permutation."""
    epochs = math.ceil(num_steps * batch_size / train_size)
    perms = [jax.random.permutation(jax.random.fold_in(key, e), train_size) for e in range(epochs)]
    flat = np.concatenate([np.asarray(p, dtype=np.int32) for p in perms])
    return flat[: num_steps * batch_size].reshape(num_steps, batch_size)


def _eval_steps(train_size: int, batch_size: int, num_steps: int) -> list[int]:
    """0, the first step count at which each epoch (of ``train_size`` examples) is done, the end."""
    steps = {0, num_steps}
    e = 1
    while (s := -(-e * train_size // batch_size)) < num_steps:
        steps.add(s)
        e += 1
    return sorted(steps)


def _chunk_sizes(config: CNNConfig, eval_at: list[int], num_steps: int) -> list[int]:
    """Chunks ending at every progress report, checkpoint and evaluation (the first, of
    size 0, is the evaluation of the initial net)."""
    ends = {*eval_at, *range(config.log_every, num_steps, config.log_every),
            *range(config.checkpoint_every, num_steps, config.checkpoint_every)}
    return np.diff([0, *sorted(ends)]).tolist()


@jax.jit
def _count_correct(params: _Net, images: jax.Array, labels: jax.Array, mask: jax.Array) -> jax.Array:
    logits = apply(params, preprocess(images))
    hit = (jnp.argmax(logits, axis=-1) == labels.astype(jnp.int32)) & mask
    return jnp.sum(hit.astype(jnp.int32))


def _accuracy(params: _Net, images: np.ndarray, labels: np.ndarray, batch_size: int) -> float:
    """Fraction classified right (dropout off); NaN for no images."""
    n = images.shape[0]
    if n == 0:
        return float("nan")
    correct = 0
    for start in range(0, n, batch_size):
        stop = min(start + batch_size, n)
        pad = batch_size - (stop - start)  # every call has one shape: one compile
        img = np.concatenate([images[start:stop], np.zeros((pad, *images.shape[1:]), images.dtype)])
        lab = np.concatenate([labels[start:stop], np.zeros((pad,), labels.dtype)])
        mask = np.arange(batch_size) < stop - start
        correct += int(_count_correct(params, img, lab, mask))
    return correct / n


def _step_key(config: CNNConfig, train_size: int, preconditioned: bool) -> tuple:
    """What the compiled train step depends on (so equal runs share one compilation)."""
    return (train_size, config.batch_size, config.learning_rate, config.decay_rate,
            config.momentum, config.weight_decay, config.keep_prob, config.l2_target, preconditioned)


def _precondition(grads: _Net, initial: dict[str, jax.Array]) -> _Net:
    r"""Each dense weight gradient :math:`G` replaced by :math:`G\,(I + W(0)^\top W(0))`,
    computed as :math:`G + (G\,W(0)^\top)\,W(0)` (no :math:`d_0 \times d_0` matrix)."""
    out = dict(grads)
    for name in _DENSE:
        (G,) = grads[name]["factors"]
        W0 = initial[name]
        out[name] = {**grads[name], "factors": (G + (G @ W0.T) @ W0,)}
    return out


@functools.lru_cache(maxsize=8)
def _make_train_step(key: tuple):
    train_size, batch_size, learning_rate, decay_rate, momentum, weight_decay, keep_prob, l2_target, \
        preconditioned = key
    config = CNNConfig(batch_size=batch_size, learning_rate=learning_rate, decay_rate=decay_rate)
    optimizer = optax.sgd(learning_rate_schedule(config, train_size), momentum=momentum)

    def step(params, opt_state, images, labels, idx, dropout_key, initial):
        x = preprocess(jnp.take(images, idx, axis=0))  # the batch is gathered on the device
        y = jnp.take(labels, idx, axis=0)
        grad_fn = jax.value_and_grad(_batch_loss, has_aux=True)
        (loss, data_loss), grads = grad_fn(
            params, x, y, dropout_key, weight_decay=weight_decay, keep_prob=keep_prob,
            l2_target=l2_target,
        )
        if preconditioned:  # before the momentum, as the twin's step at init (module docstring)
            grads = _precondition(grads, initial)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss, data_loss

    return optimizer, jax.jit(step, donate_argnums=(0, 1))


class CNNRun(NamedTuple):
    """The record of training one net. Step ``t`` is the batch seen before update ``t+1``.

    Attributes:
        arm: which of :data:`ARMS`.
        seed: the integer seed.
        param_count: number of trainable scalars.
        loss: ``(num_steps,)`` batch objective, cross-entropy + :math:`\\lambda R`.
        data_loss: ``(num_steps,)`` batch cross-entropy alone (dropout on, as trained).
        eval_step: ``(E,)`` number of updates done at each evaluation (0 = init, then
            after every epoch, and at the end).
        test_accuracy: ``(E,)`` accuracy on the test images (dropout off).
        validation_accuracy: ``(E,)`` on the held-out images (empty if none).
        first_step_seconds: wall time of the first step: compilation (unless an equal run
            in this process compiled it already) plus one step.
        train_seconds: wall time of the other ``num_steps - 1`` steps (evaluations excluded).
        eval_seconds: wall time of the evaluations.
    """

    arm: str
    seed: int
    param_count: int
    loss: np.ndarray
    data_loss: np.ndarray
    eval_step: np.ndarray
    test_accuracy: np.ndarray
    validation_accuracy: np.ndarray
    first_step_seconds: float
    train_seconds: float
    eval_seconds: float

    @property
    def steps_per_second(self) -> float:
        """Steady-state training steps per second (first step excluded)."""
        n = len(self.loss) - 1
        return n / self.train_seconds if n > 0 and self.train_seconds > 0 else float("nan")


class _Seed(NamedTuple):
    """What every arm of one seed shares: the init key, the batches, the dropout key."""

    seed: int
    init_key: jax.Array
    batch_idx: np.ndarray
    dropout_key: jax.Array


def _seed_streams(seed: int, train_size: int, batch_size: int, num_steps: int) -> _Seed:
    init_key, shuffle_key, dropout_key = jax.random.split(jax.random.key(seed), 3)
    return _Seed(seed, init_key, _batch_indices(shuffle_key, train_size, batch_size, num_steps), dropout_key)


def _initial_weights(params: _Net) -> dict[str, jax.Array]:
    """Each dense layer's first factor: the baseline's :math:`W(0)`, the twin's :math:`W_1(0)`."""
    return {name: params[name]["factors"][0] for name in _DENSE}


def _train_one(arm: str, config: CNNConfig, splits, streams: _Seed, progress: ProgressFn | None,
               checkpoint: Path | None) -> CNNRun:
    """Train one arm on one seed, a chunk at a time (:func:`~overparam_jax.runner.run_chunks`).

    The carry is ``(params, opt_state)``; step ``s`` uses the batch ``batch_idx[s]`` and the
    dropout key ``fold_in(dropout_key, s)``, so the run is the same, bit for bit, however it
    is chunked and wherever it resumes. A chunk records its per-step losses, the
    evaluation when it ends at one, and its wall times."""
    (tr_x, tr_y), (va_x, va_y), (te_x, te_y) = splits
    spec = ARMS[arm]
    train_size, num_steps = tr_x.shape[0], streams.batch_idx.shape[0]
    params = init_params(streams.init_key, dense_depth=spec.dense_depth, added_init=spec.added_init)
    initial = _initial_weights(params) if spec.preconditioned else {}
    initial = jax.tree_util.tree_map(jnp.copy, initial)  # params' buffers are donated to the step
    optimizer, step_fn = _make_train_step(_step_key(config, train_size, spec.preconditioned))
    images, labels = jax.device_put(tr_x), jax.device_put(tr_y)  # stays on the device
    eval_at = _eval_steps(train_size, config.batch_size, num_steps)
    compiled = False  # the first step of this process (compilation + one step) is timed apart

    def evaluate(params, done: int) -> dict[str, Any]:
        validation = _accuracy(params, va_x, va_y, config.eval_batch_size) if va_x.shape[0] else None
        return {"step": done, "test_accuracy": _accuracy(params, te_x, te_y, config.eval_batch_size),
                "validation_accuracy": validation}

    def advance(carry, start: int, size: int):
        nonlocal compiled
        params, opt_state = carry
        losses, data_losses, seconds = [], [], {"first_step": 0.0, "train": 0.0, "eval": 0.0}
        t = time.perf_counter()
        for s in range(start, start + size):
            key = jax.random.fold_in(streams.dropout_key, s)
            params, opt_state, loss, data_loss = step_fn(
                params, opt_state, images, labels, streams.batch_idx[s], key, initial)
            losses.append(loss)
            data_losses.append(data_loss)
            if not compiled:
                jax.block_until_ready(loss)
                seconds["first_step"], compiled = time.perf_counter() - t, True
                t = time.perf_counter()
        # One transfer per step's scalar (jnp.stack would compile anew for every chunk length).
        records = {"loss": np.asarray(on_host(losses), np.float32),
                   "data_loss": np.asarray(on_host(data_losses), np.float32), "evaluation": None}
        seconds["train"] = time.perf_counter() - t  # on_host blocks: the clock is honest
        if start + size in eval_at:
            t = time.perf_counter()
            records["evaluation"] = evaluate(params, start + size)
            seconds["eval"] = time.perf_counter() - t
        return (params, opt_state), {**records, "seconds": seconds}

    def metrics(records) -> dict[str, float]:
        figures = {"loss": float(records["loss"][-1])} if len(records["loss"]) else {}
        if records["evaluation"] is not None:
            figures["test_accuracy"] = records["evaluation"]["test_accuracy"]
        return figures

    fingerprint = None if checkpoint is None else {  # the images, not where they were read
        "arm": arm, "seed": streams.seed, "config": _training_config(config), "data": array_digest(splits)}
    (params, _), chunks = run_chunks(
        advance, (params, optimizer.init(params)), _chunk_sizes(config, eval_at, num_steps),
        checkpoint=checkpoint, fingerprint=fingerprint, progress=progress,
        stage=f"{arm} seed {streams.seed}", metrics=metrics,
    )
    evals = [c["evaluation"] for c in chunks if c["evaluation"] is not None]
    seconds = {k: sum(c["seconds"][k] for c in chunks) for k in ("first_step", "train", "eval")}
    return CNNRun(
        arm=arm,
        seed=streams.seed,
        param_count=_count_params(params),
        loss=np.concatenate([c["loss"] for c in chunks]).astype(np.float64),
        data_loss=np.concatenate([c["data_loss"] for c in chunks]).astype(np.float64),
        eval_step=np.asarray([e["step"] for e in evals]),
        test_accuracy=np.asarray([e["test_accuracy"] for e in evals]),
        validation_accuracy=np.asarray([e["validation_accuracy"] for e in evals
                                        if e["validation_accuracy"] is not None]),
        first_step_seconds=seconds["first_step"],
        train_seconds=seconds["train"],
        eval_seconds=seconds["eval"],
    )


@functools.partial(jax.jit, static_argnames=("keep_prob",))
def _first_gradients(params: _Net, x: jax.Array, labels: jax.Array, dropout_key: jax.Array, *,
                     keep_prob: float) -> dict[str, jax.Array]:
    """The baseline's cross-entropy gradient of each dense weight on one batch."""
    grads = jax.grad(lambda p: _batch_loss(p, x, labels, dropout_key, weight_decay=0.0, keep_prob=keep_prob,
                                           l2_target="product")[0])(params)
    return {name: grads[name]["factors"][0] for name in _DENSE}


def _quantiles(values: np.ndarray) -> dict[str, float]:
    q = np.quantile(values, [0.0, 0.1, 0.5, 0.9, 1.0])
    return dict(zip(("min", "p10", "median", "p90", "max"), (float(v) for v in q)))


def _initial_analysis(config: CNNConfig, splits, streams: _Seed) -> dict[str, Any]:
    r"""The twin's effective step at init, for one seed: per dense layer, the singular
    values :math:`\sigma_i` of :math:`W(0)` (the baseline's matrix = the twin's :math:`W_1`)
    and three ways to make one learning-rate factor of :math:`P = I + W(0)^\top W(0)`: the
    mean of :math:`1 + \sigma_i^2` over the :math:`d_1` singular directions, the trace
    :math:`\operatorname{tr}P / d_0 = 1 + \sum\sigma_i^2/d_0`, and
    :math:`\langle G, GP\rangle / \|G\|^2` for the gradient :math:`G` of the first batch
    (step 0's batch and dropout mask; for the cross-entropy and for the objective, whose
    gradient is :math:`G + \lambda W(0)` at depth 1)."""
    params = init_params(streams.init_key)
    (tr_x, tr_y), _, _ = splits
    idx = streams.batch_idx[0]
    grads = _first_gradients(params, preprocess(jnp.asarray(tr_x[idx])), jnp.asarray(tr_y[idx]),
                             jax.random.fold_in(streams.dropout_key, 0), keep_prob=config.keep_prob)
    out: dict[str, Any] = {"seed": streams.seed}
    for name in _DENSE:
        W0 = np.asarray(params[name]["factors"][0], np.float64)
        sigma = np.linalg.svd(W0, compute_uv=False)
        factor = {}
        for series, G in (("data_loss", np.asarray(grads[name], np.float64)),
                          ("loss", np.asarray(grads[name], np.float64) + config.weight_decay * W0)):
            factor[series] = float(1 + np.sum((G @ W0.T) ** 2) / np.sum(G**2))
        out[name] = {
            "shape": list(W0.shape),
            "singular_values": _quantiles(sigma),
            "mean_1_plus_sigma2": float(np.mean(1 + sigma**2)),
            "median_1_plus_sigma2": float(np.median(1 + sigma**2)),
            "trace_factor": float(1 + np.sum(sigma**2) / W0.shape[1]),
            "gradient_factor": factor,
        }
    return out


def _arms_on(config: CNNConfig, index: int) -> tuple[str, ...]:
    """The arms trained on the ``index``-th seed: all of ``config.arms`` on the first
    ``variant_seeds`` seeds, only ``baseline`` and ``twin`` on the others."""
    if config.variant_seeds is None or index < config.variant_seeds:
        return tuple(config.arms)
    return tuple(a for a in config.arms if a in ("baseline", "twin"))


def _named(references: tuple[dict[str, Any], ...]) -> tuple[dict[str, Any], ...]:
    """The references with distinct names (``_2``, ``_3``, ... after a repeated one)."""
    seen: dict[str, int] = {}
    out = []
    for ref in references:
        seen[ref["name"]] = seen.get(ref["name"], 0) + 1
        out.append(ref if seen[ref["name"]] == 1 else {**ref, "name": f"{ref['name']}_{seen[ref['name']]}"})
    return tuple(out)


class CNNResult(NamedTuple):
    """The runs of E3 (every arm on every seed — the variants on the first
    ``config.variant_seeds`` — in the order of ``config.arms`` within ``config.seeds``), the
    initial spectra per seed, and the references read back.

    Attributes:
        config: the configuration.
        train_size: examples trained on.
        num_steps: training steps per net.
        runs: one :class:`CNNRun` per (seed, arm).
        initial: per seed, :func:`_initial_analysis`'s dict.
        references: :func:`load_reference` of each of ``config.references``.
        wall_seconds: wall time of this call (the part done by it, if resumed).
    """

    config: CNNConfig
    train_size: int
    num_steps: int
    runs: tuple[CNNRun, ...]
    initial: tuple[dict[str, Any], ...]
    references: tuple[dict[str, Any], ...]
    wall_seconds: float

    def run(self, arm: str, seed: int | None = None) -> CNNRun:
        """The run of ``arm`` on ``seed`` (default: the first seed)."""
        seed = self.config.seeds[0] if seed is None else seed
        for r in self.runs:
            if r.arm == arm and r.seed == seed:
                return r
        raise KeyError(f"no run of arm {arm!r} on seed {seed}")


def run_cnn_experiment(
    config: CNNConfig,
    data: MNIST,
    *,
    progress: ProgressFn | None = None,
    checkpoint: CheckpointDir | None = None,
) -> CNNResult:
    """Train every arm of ``config.arms`` on every seed of ``config.seeds`` (the variants,
    arms other than ``baseline`` and ``twin``, on the first ``config.variant_seeds``).

    Args:
        config: hyperparameters; ``CNNConfig()`` is the protocol of issue #18 (2 epochs,
            1718 steps, four arms, seeds 0-2), ``CNNConfig(num_epochs=10, arms=("baseline",
            "twin"), seeds=(0,))`` the tutorial's 10 epochs, :func:`quick_config` a smoke run.
        data: MNIST from :func:`overparam_jax.load_mnist` (uint8).
        progress: called with a :class:`~overparam_jax.runner.Progress` (stage: ``"<arm>
            seed <s>"``; metrics: the last batch ``loss``, and ``test_accuracy`` after an
            evaluation) after every chunk: every ``config.log_every`` and
            ``config.checkpoint_every`` steps and after each evaluation.
        checkpoint: if given, each net saves its state in its stage ``cnn_<arm>_seed<s>``
            after every chunk, and a rerun with the same folder resumes where it stopped
            (same result, bit for bit).

    Returns:
        A :class:`CNNResult`.

    Raises:
        ValueError / TypeError: a bad configuration or data, naming the argument.
        OSError / ValueError: a reference cannot be read or is not an E3 document.
    """
    start = time.perf_counter()
    validate_config(config, data)
    references = _named(tuple(load_reference(path) for path in config.references))
    splits = _split(config, data)
    train_size = splits[0][0].shape[0]
    num_steps = config.num_steps or config.num_epochs * train_size // config.batch_size
    if num_steps < 1:
        raise ValueError(f"`num_epochs` ({config.num_epochs}) gives no training step.")
    runs, initial = [], []
    for i, seed in enumerate(config.seeds):
        streams = _seed_streams(seed, train_size, config.batch_size, num_steps)
        initial.append(_initial_analysis(config, splits, streams))
        for arm in _arms_on(config, i):
            stage = None if checkpoint is None else checkpoint.stage(f"cnn_{arm}_seed{seed}")
            runs.append(_train_one(arm, config, splits, streams, progress, stage))
    return CNNResult(config, train_size, num_steps, tuple(runs), tuple(initial), references,
                     time.perf_counter() - start)


# --------------------------------------------------------------------------------------
# The metric: first-hit speed-ups and crossings, read from a results document
# --------------------------------------------------------------------------------------

# What the paper shows, as the audit of issue #18 read ACH18 §8's figure.
_PAPER = {"crossing_step": 500,
          "crossing": "the overparameterized net's batch loss above the baseline's early, below it after "
                      "about 500 steps (ACH18 §8, read off the figure by the audit of issue #18)"}


def _runs_of(document: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The runs of a results document, each with its ``arm`` and ``seed``; documents written
    before issue #18 (one seed, ``runs`` a dict of ``baseline``/``overparameterized``) too."""
    runs = document["runs"]
    if isinstance(runs, Mapping):
        seed = document["config"]["seed"]
        return [{**r, "arm": _OLD_NAMES[name], "seed": seed} for name, r in runs.items()]
    return [dict(r) for r in runs]


def _curve(values: Any) -> np.ndarray:
    """A curve as read back from JSON (non-finite values are the strings "nan", "inf")."""
    return np.asarray([float(v) for v in values], np.float64)


def _spread(values: Any) -> dict[str, float] | None:
    """Median, min, max and count of the values that are not ``None`` (``None`` if none)."""
    vals = [float(v) for v in values if v is not None]
    if not vals:
        return None
    return {"median": float(np.median(vals)), "min": min(vals), "max": max(vals), "n": len(vals)}


def _hit(curve: np.ndarray, level: float) -> int | None:
    step = int(first_hit(np.arange(len(curve)), curve, level))
    return None if step < 0 else step


def _level_row(level: float, ref: dict[int, np.ndarray], arm: dict[int, np.ndarray], seeds: list[int],
               resolved_from: int, num_steps: int) -> dict[str, Any] | None:
    """First hits of ``level`` by both nets on each seed, their ratio where both are
    resolved, and a bound where only one net reaches the level on every seed."""
    per_seed = []
    for s in seeds:
        t_ref, t_arm = _hit(ref[s], level), _hit(arm[s], level)
        resolved = all(t is None or t >= max(resolved_from, 1) for t in (t_ref, t_arm))
        speedup = t_ref / t_arm if resolved and t_ref is not None and t_arm is not None else None
        per_seed.append({"seed": s, "reference_step": t_ref, "arm_step": t_arm, "speedup": speedup})
    if all(p["reference_step"] is None and p["arm_step"] is None for p in per_seed):
        return None
    steps = lambda key: [p[key] for p in per_seed]
    unresolved = any(t is not None and t < max(resolved_from, 1) for p in per_seed
                     for t in (p["reference_step"], p["arm_step"]))
    only = lambda hits, misses: (not unresolved and all(t is not None for t in steps(hits))
                                 and all(t is None for t in steps(misses)))
    return {
        "level": level,
        "unresolved": unresolved,
        "reference_step": _spread(steps("reference_step")),
        "arm_step": _spread(steps("arm_step")),
        "speedup": _spread(steps("speedup")),
        # Only the arm gets there: its ratio is more than num_steps / t_arm on every seed.
        "lower_bound": min(num_steps / t for t in steps("arm_step")) if only("arm_step", "reference_step") else None,
        "upper_bound": max(t / num_steps for t in steps("reference_step")) if only("reference_step", "arm_step") else None,
        "seeds": per_seed,
    }


def _crossing(ref: dict[int, np.ndarray], arm: dict[int, np.ndarray], seeds: list[int]) -> dict[str, Any]:
    """Where the arm's smoothed curve is below its reference's: the first step below, the
    last step above, the share of steps below (per seed, and their spread)."""
    per_seed = []
    for s in seeds:
        d = arm[s] - ref[s]
        below, above = d < 0, d > 0
        per_seed.append({
            "seed": s,
            "first_below": int(np.argmax(below)) if below.any() else None,
            "last_above": int(len(d) - 1 - np.argmax(above[::-1])) if above.any() else None,
            "share_below": float(np.mean(below)),
        })
    return {key: _spread([p[key] for p in per_seed]) for key in ("first_below", "last_above", "share_below")} | {
        "seeds": per_seed}


def _comparison_summary(rows: list[dict[str, Any]], num_seeds: int) -> dict[str, Any]:
    """The levels with a ratio on every seed (their medians' range, the deepest of them) and
    the deepest level only one of the two nets reaches."""
    common = [r for r in rows if r["speedup"] is not None and r["speedup"]["n"] == num_seeds]
    medians = [r["speedup"]["median"] for r in common]
    out: dict[str, Any] = {"levels": [r["level"] for r in common]}
    if common:
        lo, hi = int(np.argmin(medians)), int(np.argmax(medians))
        out.update(median_min=medians[lo], level_at_min=common[lo]["level"], median_max=medians[hi],
                   level_at_max=common[hi]["level"], deepest_level=common[-1]["level"],
                   deepest_speedup=common[-1]["speedup"])
    for bound in ("lower_bound", "upper_bound"):
        bounded = [r for r in rows if r[bound] is not None]
        out[bound] = None if not bounded else {
            "levels": [r["level"] for r in bounded], "first_level": bounded[0]["level"],
            "first_value": bounded[0][bound], "deepest_level": bounded[-1]["level"],
            "deepest_value": bounded[-1][bound],
            "first_step": (bounded[0]["arm_step"] if bound == "lower_bound" else bounded[0]["reference_step"]),
        }
    return out


def _final(curve: np.ndarray, window: int) -> float:
    return float(np.mean(curve[-window:]))


def _arm_summary(runs: list[dict[str, Any]], window: int) -> dict[str, Any]:
    """Parameters, speed, initial and final losses (mean of the last ``window`` steps) and
    accuracies of one arm, spread over its seeds."""
    losses = [(_curve(r["loss"]), _curve(r["data_loss"])) for r in runs]
    final = {"loss": [_final(t, window) for t, _ in losses], "data_loss": [_final(d, window) for _, d in losses]}
    final["l2_term"] = [t - d for t, d in zip(final["loss"], final["data_loss"])]
    test = [[100 * float(x) for x in r["test_accuracy"]] for r in runs]  # in percent
    return {
        "param_count": int(runs[0]["param_count"]),
        "seeds": [int(r["seed"]) for r in runs],
        "steps_per_second": _spread([r["steps_per_second"] for r in runs]),
        "seconds": float(sum(r["first_step_seconds"] + r["train_seconds"] + r["eval_seconds"] for r in runs)),
        "initial": {"loss": _spread([t[0] for t, _ in losses]), "data_loss": _spread([d[0] for _, d in losses]),
                    "l2_term": _spread([t[0] - d[0] for t, d in losses])},
        "final": {k: _spread(v) for k, v in final.items()},
        "eval_step": [int(s) for s in runs[0]["eval_step"]],
        "test_accuracy": [_spread(column) for column in zip(*test)],
        "final_test_accuracy": _spread([t[-1] for t in test]),
        "final_validation_accuracy": _spread([100 * float(r["validation_accuracy"][-1]) for r in runs
                                              if len(r["validation_accuracy"])]),
    }


def _comparisons(arms: list[str]) -> list[tuple[str, str]]:
    """(arm, reference) pairs: every arm against the baseline, and the twin against the
    preconditioned baseline (what the larger effective step at init does not explain)."""
    pairs = [(a, "baseline") for a in arms if a != "baseline" and "baseline" in arms]
    if {"twin", "baseline_preconditioned"} <= set(arms):
        pairs.append(("twin", "baseline_preconditioned"))
    return pairs


def _initial_summary(initial: list[dict[str, Any]]) -> dict[str, Any]:
    """The spectra of W(0) over the seeds: the extreme singular values, and the spread of
    each one-number learning-rate factor."""
    out: dict[str, Any] = {}
    for name in _DENSE:
        layers = [i[name] for i in initial]
        d_out, d_in = layers[0]["shape"]
        lo = min(x["singular_values"]["min"] for x in layers)
        hi = max(x["singular_values"]["max"] for x in layers)
        out[name] = {
            "d_out": d_out, "d_in": d_in, "other_directions": d_in - d_out,
            "sigma_min": lo, "sigma_max": hi, "one_plus_sigma2_min": 1 + lo**2, "one_plus_sigma2_max": 1 + hi**2,
            "sigma_median": _spread([x["singular_values"]["median"] for x in layers]),
            **{k: _spread([x[k] for x in layers]) for k in ("mean_1_plus_sigma2", "median_1_plus_sigma2",
                                                              "trace_factor")},
            "gradient_factor": {s: _spread([x["gradient_factor"][s] for x in layers]) for s in _SERIES},
        }
    return out


def analyze(document: Mapping[str, Any]) -> dict[str, Any]:
    """The metrics of a results document (as read back from ``cnn_results.json``, any version).

    Every curve is smoothed by a centered moving average over ``w = min(smoothing_window,
    num_steps // 10)`` steps (:func:`~overparam_jax.analysis.moving_average`,
    ``2⌊w/2⌋ + 1`` batches, fewer at the ends). Then, for each arm against its reference
    (:func:`_comparisons`), each series (``"data_loss"``, and ``"loss"`` when there is an
    L2 term) and each of :data:`LEVELS` that either reaches: the first hits, their ratio
    ``t_ref / t_arm`` per seed when both are at steps ``>= ⌊w/2⌋`` (earlier ones are
    ``unresolved``), the spread over seeds, and a bound when only one net reaches it;
    the crossing of the smoothed curves; per arm, the final losses and accuracies. A
    comparison is paired by seed: it reads the seeds both arms were trained on.

    Args:
        document: a results document: ``config``, ``num_steps``, ``runs`` (a list of runs
            with ``arm`` and ``seed``, or the older dict of ``baseline`` and
            ``overparameterized``), optionally ``initial``.

    Returns:
        A JSON-ready dict: ``smoothing``, ``num_steps``, ``epochs``, ``weight_decay``,
        ``seeds``, ``num_seeds`` (all seeds of the document), ``levels``, ``series``, ``arms``
        (per arm: :func:`_arm_summary`, with its ``seeds``), ``comparisons`` (per pair: its
        ``seeds``, and per series ``rows``, ``summary``, ``crossing``, the ratio of the
        median final values over those seeds) and, when the document has them, the
        ``initial`` spectra.
    """
    config, num_steps = document["config"], int(document["num_steps"])
    window = max(1, min(int(config["smoothing_window"]), num_steps // 10))
    half = window // 2
    runs = _runs_of(document)
    arms = [a for a in ARMS if any(r["arm"] == a for r in runs)]
    seeds = sorted({int(r["seed"]) for r in runs})
    series = ("loss", "data_loss") if config["weight_decay"] > 0 else ("data_loss",)
    by_arm = {a: sorted((r for r in runs if r["arm"] == a), key=lambda r: r["seed"]) for a in arms}
    smooth = {(a, s): {k: moving_average(_curve(r[k]), window, centered=True) for k in series}
              for a in arms for r in by_arm[a] for s in [int(r["seed"])]}
    summaries = {a: _arm_summary(by_arm[a], window) for a in arms}
    finals = {(a, int(r["seed"])): {k: _final(_curve(r[k]), window) for k in series} for a in arms for r in by_arm[a]}
    comparisons = []
    for arm, ref in _comparisons(arms):
        common = sorted(set(summaries[arm]["seeds"]) & set(summaries[ref]["seeds"]))  # paired by seed
        entry: dict[str, Any] = {"arm": arm, "reference": ref, "seeds": common, "series": {}}
        for k in series:
            r_curves = {s: smooth[(ref, s)][k] for s in common}
            a_curves = {s: smooth[(arm, s)][k] for s in common}
            rows = [row for level in LEVELS
                    if (row := _level_row(level, r_curves, a_curves, common, half, num_steps)) is not None]
            final_ratio = (float(np.median([finals[(arm, s)][k] for s in common]))
                           / float(np.median([finals[(ref, s)][k] for s in common])))
            entry["series"][k] = {"rows": rows, "summary": _comparison_summary(rows, len(common)),
                                  "crossing": _crossing(r_curves, a_curves, common), "final_ratio": final_ratio}
        comparisons.append(entry)
    out = {
        "smoothing": {"method": "centered moving average", "window": window, "batches": 2 * half + 1,
                      "resolved_from_step": half},
        "num_steps": num_steps,
        "epochs": num_steps * int(config["batch_size"]) / int(document["train_size"]),
        "weight_decay": config["weight_decay"],
        "seeds": seeds,
        "num_seeds": len(seeds),
        "levels": list(LEVELS),
        "series": list(series),
        "arms": summaries,
        "comparisons": comparisons,
    }
    if "baseline" in summaries and "twin" in summaries:
        extra = summaries["twin"]["param_count"] - summaries["baseline"]["param_count"]
        out["extra_parameters"] = {"count": extra, "percent": 100 * extra / summaries["baseline"]["param_count"]}
    if "initial" in document:
        out["initial"] = _initial_summary(document["initial"])
    return out


def _comparison(analysis: Mapping[str, Any], arm: str, reference: str = "baseline") -> dict[str, Any] | None:
    for c in analysis["comparisons"]:
        if c["arm"] == arm and c["reference"] == reference:
            return c
    return None


# --------------------------------------------------------------------------------------
# Report: the document, the summary, the figures, the README paragraph
# --------------------------------------------------------------------------------------

_COLORS = {"baseline": "tab:blue", "twin": "tab:red", "twin_random_init": "tab:orange",
           "baseline_preconditioned": "tab:green"}


def _document(result: CNNResult) -> dict[str, Any]:
    """The JSON document: configuration, every step's losses (6 significant digits),
    accuracies, the initial spectra, timing, :func:`analyze` of it and of each reference."""
    from overparam_jax.results import json_safe

    def run_dict(r: CNNRun) -> dict[str, Any]:
        return {**r._asdict(), "loss": significant(r.loss), "data_loss": significant(r.data_loss),
                "steps_per_second": r.steps_per_second}

    net_seconds = sum(r.first_step_seconds + r.train_seconds + r.eval_seconds for r in result.runs)
    document = json.loads(json.dumps(json_safe({  # as it will be read back
        "experiment": "E3 cnn_mnist",
        "protocol": "issue 18: arms x seeds, first-hit speed-ups at fixed levels",
        "config": _results_config(result.config),
        "train_size": result.train_size,
        "num_steps": result.num_steps,
        "runs": [run_dict(r) for r in result.runs],
        "initial": list(result.initial),
        "timing": {"net_seconds": net_seconds, "net_minutes": net_seconds / 60,
                   "wall_seconds": result.wall_seconds, "load_average": load_average()},
        "paper": _PAPER,
    })))
    document["analysis"] = analyze(document)
    document["references"] = [
        {"name": ref["name"], "source": ref["source"], "sha256": ref["sha256"],
         **{k: ref["document"].get(k) for k in ("config", "train_size", "num_steps", "metadata")},
         "analysis": json.loads(json.dumps(json_safe(analyze(ref["document"]))))}
        for ref in result.references]
    return document


# ---- the markdown summary ------------------------------------------------------------


def _mr(spread: Mapping[str, float] | None, spec: str = ".4g", scale: float = 1.0) -> str:
    """``median [min–max]`` (just the value when they agree; ``—`` for none)."""
    if spread is None:
        return "—"
    m, lo, hi = (format(scale * spread[k], spec) for k in ("median", "min", "max"))
    return m if lo == hi else f"{m} [{lo}–{hi}]"


def _steps_cell(spread: Mapping[str, float] | None, num_seeds: int) -> str:
    """First hits over seeds, with how many seeds reached the level when not all did."""
    cell = _mr(spread, ".0f")
    return cell if spread is None or spread["n"] == num_seeds else f"{cell} ({spread['n']}/{num_seeds} seeds)"


def _seed_list(comparison: Mapping[str, Any]) -> str:
    """``0``, ``0–2`` (consecutive) or ``0, 2, 5``: the seeds of a comparison."""
    s = comparison["seeds"]
    if len(s) > 2 and s == list(range(s[0], s[-1] + 1)):
        return f"{s[0]}–{s[-1]}"
    return ", ".join(map(str, s))


def _speedup_cell(row: Mapping[str, Any], num_seeds: int) -> str:
    if row["unresolved"]:
        return "unresolved"
    if row["lower_bound"] is not None:
        return f"> {row['lower_bound']:.3g}"
    if row["upper_bound"] is not None:
        return f"< {row['upper_bound']:.3g}"
    if row["speedup"] is None:
        return "—"
    partial = "" if row["speedup"]["n"] == num_seeds else f" ({row['speedup']['n']}/{num_seeds} seeds)"
    return _mr(row["speedup"], ".3g") + partial


def _analysis_sections(analysis: Mapping[str, Any], title: str, level: str = "##") -> list:
    """The tables of one analysis: arms, first-hit speed-ups per comparison, crossings,
    accuracies after each epoch."""
    n, arms = analysis["num_seeds"], analysis["arms"]
    spread = "" if n == 1 else f" (median [min–max] over {n} seeds)"
    blocks: list = [
        f"{level} {title}: the arms{spread}",
        markdown_table(
            ["arm", "seeds", "parameters", "steps/s", "final objective", "final cross-entropy", "final L2 term",
             "final test acc."],
            [[a, ", ".join(map(str, s["seeds"])), f"{s['param_count']:,}", _mr(s["steps_per_second"], ".2f"), _mr(s["final"]["loss"]),
              _mr(s["final"]["data_loss"]), _mr(s["final"]["l2_term"]),
              _mr(s["final_test_accuracy"], ".2f") + " %"] for a, s in arms.items()], "lrrrrrrr"),
    ]
    for c in analysis["comparisons"]:
        n = len(c["seeds"])
        for k, entry in c["series"].items():
            over = "" if n == 1 else f" (median [min–max] over seeds {_seed_list(c)})"
            blocks += [f"{level}# {title}: {c['arm']} vs {c['reference']}, {_SERIES[k]}: first hits{over}",
                       markdown_table(
                           ["level", f"{c['reference']} first hit", f"{c['arm']} first hit", "speed-up"],
                           [[f"{row['level']:g}", _steps_cell(row["reference_step"], n),
                             _steps_cell(row["arm_step"], n), _speedup_cell(row, n)] for row in entry["rows"]],
                           "rrrr")]
    crossing_rows = [[f"{c['arm']} vs {c['reference']}", _SERIES[k], _mr(e["crossing"]["first_below"], ".0f"),
                      _mr(e["crossing"]["last_above"], ".0f"), _mr(e["crossing"]["share_below"], ".1f", 100) + " %",
                      f"{e['final_ratio']:.3g}"]
                     for c in analysis["comparisons"] for k, e in c["series"].items()]
    if crossing_rows:
        blocks += [f"{level}# {title}: crossings of the smoothed curves",
                   markdown_table(["arm vs reference", "series", "first step below", "last step above",
                                   "steps below", "final ratio"], crossing_rows, "llrrrr")]
    first = next(iter(arms.values()))
    blocks += [f"{level}# {title}: test accuracy after each epoch{spread}",
               markdown_table(["updates", *arms], [[str(step), *(_mr(s["test_accuracy"][i], ".2f") + " %"
                                                                   for s in arms.values())]
                                                  for i, step in enumerate(first["eval_step"])],
                              "r" * (1 + len(arms)))]
    return blocks


def _initial_table(document: Mapping[str, Any]) -> list[str]:
    rows = []
    for i in document["initial"]:
        for name in _DENSE:
            x = i[name]
            sv = x["singular_values"]
            rows.append([str(i["seed"]), name, *(f"{sv[k]:.3g}" for k in ("min", "p10", "median", "p90", "max")),
                         f"{x['mean_1_plus_sigma2']:.3g}", f"{x['trace_factor']:.3g}",
                         f"{x['gradient_factor']['data_loss']:.3g}", f"{x['gradient_factor']['loss']:.3g}"])
    return markdown_table(["seed", "layer", "σ min", "σ p10", "σ median", "σ p90", "σ max", "mean 1+σ²",
                           "tr P / d₀", "⟨G,GP⟩/‖G‖² cross-entropy", "⟨G,GP⟩/‖G‖² objective"], rows, "rlrrrrrrrrr")


def _summary_markdown(document: Mapping[str, Any]) -> str:
    """The markdown report of a document made by :func:`_document`."""
    c, a = document["config"], document["analysis"]
    sm = a["smoothing"]
    arms = "\n".join(f"- `{name}`: {ARMS[name].description}" for name in c["arms"])
    blocks: list = [
        "# E3: MNIST ConvNet, baseline vs linearly overparameterized dense layers [ACH18]",
        (f"TensorFlow-tutorial ConvNet, {document['num_steps']} steps ({a['epochs']:.3g} epochs of "
        f"{document['train_size']} images) of SGD (momentum {c['momentum']}, batch {c['batch_size']}, lr "
        f"{c['learning_rate']} × {c['decay_rate']} per epoch), dropout keep {c['keep_prob']}, L2 "
        f"{c['weight_decay']:g} on the dense layers (twins: on the "
        f"{'end-to-end products' if c['l2_target'] == 'product' else 'factors'}), seeds "
        f"{', '.join(map(str, c['seeds']))}. Within a seed every arm has the same conv kernels and first "
        "dense factors, batches and dropout masks."
        + ("" if c.get("variant_seeds") is None or c["variant_seeds"] >= len(c["seeds"]) else
           f" To fit the time budget the variants (the arms other than baseline and twin) ran on only the first "
           f"{c['variant_seeds']} of the seeds; each comparison reads the seeds both of its arms ran on.")
        + " The arms:"),
        arms,
        (f"Metric: batch losses smoothed by a centered moving average over {sm['batches']} steps; the speed-up "
        "at a level is first hit to first hit (the reference's first step at or below it over the arm's); "
        f"hits before step {sm['resolved_from_step']} are not resolved by the smoothing; `> x`: only the arm "
        "reaches the level, on every seed, so the ratio exceeds x (the run's length over its first hit); "
        "`< x` the other way round."),
        "## The twin's effective step at init",
        ("The end-to-end step of a twin with W₂ = I is G(I + W₁ᵀW₁): multiplied by 1 + σ² along each right "
        "singular vector of W₁ (= the baseline's W(0)) and unchanged in the other input directions. "
        "Candidates for one learning-rate factor: the mean of 1 + σ² over the singular directions, "
        "tr P / d₀, and ⟨G, GP⟩/‖G‖² for the gradient of the first batch."),
        _initial_table(document),
        *_analysis_sections(a, "This run"),
    ]
    for ref in document["references"]:
        rc = ref["config"]
        blocks += [f"## Reference `{ref['name']}` in this metric",
                   (f"Read from `{ref['source']}` (sha256 {ref['sha256'][:16]}…): {ref['num_steps']} steps, "
                   f"L2 {rc['weight_decay']:g}, seed(s) {', '.join(map(str, ref['analysis']['seeds']))}, "
                   f"written {ref['metadata'].get('utc_time', '?') if ref.get('metadata') else '?'}."),
                   *_analysis_sections(ref["analysis"], f"`{ref['name']}`", "###")]
    t = document["timing"]
    blocks.append(
        "Times: " + "; ".join(f"{name} {s['seconds']:.0f} s" for name, s in a["arms"].items())
        + f" (all seeds; training, evaluation and compilation); {t['net_minutes']:.1f} min in all "
        f"({document['metadata']['backend'] if 'metadata' in document else jax.default_backend()}, "
        f"load average {t['load_average'][1]:.2f} at the end).")
    return markdown(*blocks)


# ---- figures ---------------------------------------------------------------------------


def _loss_figure(document: Mapping[str, Any], analysis: Mapping[str, Any], title: str):
    """Top: the smoothed batch losses of every arm (median over seeds, min–max band), log y;
    bottom: each arm over the baseline (ratio of the smoothed curves; below 1: ahead)."""
    window = analysis["smoothing"]["window"]
    runs = _runs_of(document)
    panels = [("loss", "objective: cross-entropy + L2"), ("data_loss", "cross-entropy (without L2)")]
    if analysis["weight_decay"] > 0:
        panels.append(("l2", f"L2 term  λR  (λ = {analysis['weight_decay']:g})"))
    else:
        panels = panels[1:]
    fig, axes = figure_panels(
        2, len(panels), panel_size=(5, 4), sharex=True, xlabel="step",
        title=f"{title} (centered mean over {analysis['smoothing']['batches']} steps; "
              f"median and range over {analysis['num_seeds']} seed(s))")

    def series(r, key):
        if key == "l2":
            return _curve(r["loss"]) - _curve(r["data_loss"])
        return _curve(r[key])

    for j, (key, name) in enumerate(panels):
        top, bottom = axes[0, j], axes[1, j]
        base = {int(r["seed"]): moving_average(series(r, key), window, centered=True)
                for r in runs if r["arm"] == "baseline"}
        for arm in analysis["arms"]:
            mine = sorted((r for r in runs if r["arm"] == arm), key=lambda r: r["seed"])
            curves = np.array([moving_average(series(r, key), window, centered=True) for r in mine])
            steps = np.arange(curves.shape[1])
            label = f"{arm} ({analysis['arms'][arm]['param_count']:,} params)"
            band(top, steps, curves, color=_COLORS[arm], label=label)
            if arm != "baseline" and base:
                ratio = np.array([c / base[int(r["seed"])] for c, r in zip(curves, mine)])
                band(bottom, steps, ratio, color=_COLORS[arm], label=f"{arm} / baseline")
        top.set_yscale("log")
        top.set_title(name)
        bottom.axhline(1.0, color="black", lw=0.8)
        bottom.set_yscale("log")
        bottom.set_title("ratio to the baseline")
    axes[0, 0].set_ylabel("batch loss (smoothed)")
    axes[1, 0].set_ylabel("arm / baseline")
    axes[0, 0].legend(fontsize=8)
    if len(analysis["arms"]) > 1:
        axes[1, 0].legend(fontsize=8)
    return fig


# ---- the README paragraph -------------------------------------------------------------


def _x(value: float) -> str:
    """A speed-up as printed: two decimals below 10, none above."""
    return f"{value:.2f}×" if value < 10 else f"{value:.0f}×"


def _xr(spread: Mapping[str, float]) -> str:
    """``median× [min–max×]`` of a speed-up's spread over seeds."""
    lo, hi = _x(spread["min"]), _x(spread["max"])
    return _x(spread["median"]) + ("" if lo == hi else f" [{lo.rstrip('×')}–{hi}]")


def _levels_text(entry: Mapping[str, Any], series: str, num_steps: int) -> list[str]:
    """One comparison on one series as clauses with the arm as subject: the range of the
    median speed-ups over the levels both reach and the deepest of them, then where only
    one of the two gets."""
    s, name = entry["summary"], _SERIES[series]
    clauses = []
    if len(s["levels"]) == 1:
        clauses.append(f"reaches the {name} level {s['levels'][0]:g} with a speed-up of {_xr(s['deepest_speedup'])}")
    elif s["levels"]:
        lo, hi = _x(s["median_min"]), _x(s["median_max"])
        clauses.append(f"reaches the {name} levels from {s['levels'][0]:g} down to {s['levels'][-1]:g} with speed-ups "
                       f"{lo if lo == hi else lo.rstrip('×') + '–' + hi} ({_xr(s['deepest_speedup'])} at "
                       f"{s['deepest_level']:g})")
    if s["lower_bound"] is not None:
        lb = s["lower_bound"]
        deeper = "" if lb["deepest_level"] == lb["first_level"] else f" (and the levels down to {lb['deepest_level']:g})"
        clauses.append(f"alone reaches the {name} level {lb['first_level']:g}{deeper}, from step "
                       f"{lb['first_step']['median']:.0f} on (> {_x(lb['first_value'])})")
    if s["upper_bound"] is not None:
        clauses.append(f"does not reach the {name} level {s['upper_bound']['first_level']:g} in {num_steps} steps "
                       "(the reference does)")
    return clauses or [f"reaches no {name} level that the reference also reaches in {num_steps} steps"]


def _crossing_text(entry: Mapping[str, Any], resolved_from: int) -> str:
    """Where the smoothed curves cross, as the end of "<arm>'s <series> is ..."."""
    c = entry["crossing"]
    fb, la = c["first_below"], c["last_above"]
    if fb is None:
        return "above the baseline's throughout"
    if la is None or la["max"] < resolved_from:
        return "below the baseline's from the start"
    if fb["max"] < resolved_from:
        return f"below the baseline's from the start, above it at times until step {_mr(la, '.0f')}"
    if la["max"] < fb["min"]:  # one clean crossing on every seed
        return f"above the baseline's until step {_mr(la, '.0f')} and below it from step {_mr(fb, '.0f')} on"
    return f"above the baseline's until step {_mr(fb, '.0f')}, last above it at step {_mr(la, '.0f')}"


def _series_clauses(comparison: Mapping[str, Any], series: list[str], num_steps: int) -> str:
    return "; ".join(c for k in series for c in _levels_text(comparison["series"][k], k, num_steps))


def _reference_text(ref: Mapping[str, Any]) -> str:
    """The paragraph of an earlier run read back in this metric."""
    a, rc = ref["analysis"], ref["config"]
    base, twin = a["arms"]["baseline"], a["arms"]["twin"]
    setting = f"L2 {rc['weight_decay']:g} on the end-to-end products" if rc["weight_decay"] > 0 else "no L2"
    seeds = ", ".join(map(str, a["seeds"]))
    text = (f"**{a['epochs']:.0f} epochs, {setting}** (an earlier run, seed {seeds}: `{ref['source']}`). Test "
            f"accuracy {base['final_test_accuracy']['median']:.2f} % (baseline) and "
            f"{twin['final_test_accuracy']['median']:.2f} % (twin). ")
    comp = _comparison(a, "twin")
    series = [k for k in ("data_loss", "loss") if k in a["series"]]
    text += f"The twin {_series_clauses(comp, series, a['num_steps'])}. "
    ce = comp["series"]["data_loss"]
    final = _final_text(twin, base, ce["final_ratio"], "loss" in comp["series"])
    return text + final[0].upper() + final[1:] + "."


def _final_text(arm: Mapping[str, Any], base: Mapping[str, Any], final_ratio: float, l2: bool) -> str:
    """"its cross-entropy ends at x against the baseline's y (r×), its objective ..." (medians)."""
    text = (f"its cross-entropy ends at {arm['final']['data_loss']['median']:.3g} against the baseline's "
            f"{base['final']['data_loss']['median']:.3g} ({final_ratio:.2f}×)")
    if l2:
        text += (f", its objective at {arm['final']['loss']['median']:.3g} against "
                 f"{base['final']['loss']['median']:.3g}, of which the L2 term is "
                 f"{arm['final']['l2_term']['median']:.3g} and {base['final']['l2_term']['median']:.3g} (both "
                 f"start at {base['initial']['l2_term']['median']:.3g})")
    return text


def _on_seeds(comparison: Mapping[str, Any], analysis: Mapping[str, Any]) -> str:
    """" (seed 0 only)" where a comparison reads fewer seeds than the run has, else ""."""
    s = comparison["seeds"]
    if s == analysis["seeds"]:
        return ""
    return f" (seed {s[0]} only)" if len(s) == 1 else f" (seeds {_seed_list(comparison)} only)"


def _main_text(document: Mapping[str, Any]) -> str:
    """The paragraph of this run: the twin, the preconditioned baseline, the random init."""
    a, c = document["analysis"], document["config"]
    arms, n, steps = a["arms"], a["num_seeds"], a["num_steps"]
    resolved = a["smoothing"]["resolved_from_step"]
    setting = f"L2 {c['weight_decay']:g} on the end-to-end products" if c["weight_decay"] > 0 else "no L2"
    seeds = f"seeds {c['seeds'][0]}–{c['seeds'][-1]}" if n > 1 else f"seed {c['seeds'][0]}"
    series = [k for k in ("data_loss", "loss") if k in a["series"]]
    text = f"**{a['epochs']:.0f} epochs, {n} seeds ({seeds}), {setting}.** "
    if "baseline" in arms and "twin" in arms:
        comp = _comparison(a, "twin")
        text += (f"Test accuracy {_mr(arms['baseline']['final_test_accuracy'], '.2f')} % (baseline) and "
                 f"{_mr(arms['twin']['final_test_accuracy'], '.2f')} % (twin). The twin "
                 f"{_series_clauses(comp, series, steps)}; its "
                 + " and its ".join(f"{_SERIES[k]} is {_crossing_text(comp['series'][k], resolved)}" for k in series)
                 + "; " + _final_text(arms["twin"], arms["baseline"], comp["series"]["data_loss"]["final_ratio"],
                                      "loss" in series) + ". ")
    if "initial" in a:
        f1 = a["initial"]["fc1"]
        text += (f"At init the singular values of W₁ (fc1, {f1['d_out']}×{f1['d_in']}) lie between "
                 f"{f1['sigma_min']:.2f} and {f1['sigma_max']:.2f} (all seeds), so with W₂ = I the twin's step on "
                 f"the product is 1 + σ² = {f1['one_plus_sigma2_min']:.1f} to {f1['one_plus_sigma2_max']:.1f} "
                 f"times the baseline's along W₁'s {f1['d_out']} singular directions (mean "
                 f"{_mr(f1['mean_1_plus_sigma2'], '.1f')}) and the same in the other {f1['other_directions']} of "
                 f"{f1['d_in']} input directions (trace average {_mr(f1['trace_factor'], '.2f')}; on the first "
                 f"batch's cross-entropy gradient, ⟨G, GP⟩/‖G‖² = {_mr(f1['gradient_factor']['data_loss'], '.2f')}). ")
    if "baseline_preconditioned" in arms:
        comp = _comparison(a, "baseline_preconditioned")
        text += (f"The baseline given exactly that step{_on_seeds(comp, a)}, frozen at init (each dense weight "
                 "gradient G replaced by G(I + W(0)ᵀW(0)) before the momentum), "
                 f"{_series_clauses(comp, series, steps)}; its "
                 + " and its ".join(f"{_SERIES[k]} is {_crossing_text(comp['series'][k], resolved)}" for k in series)
                 + ". ")
        rest = _comparison(a, "twin", "baseline_preconditioned")
        if rest is not None:
            text += (f"What that step does not explain, the twin against the preconditioned baseline{_on_seeds(rest, a)}: "
                     f"{_series_clauses(rest, series, steps)}. ")
    if "twin_random_init" in arms:
        comp = _comparison(a, "twin_random_init")
        text += ("With the added matrices drawn from the tutorial's init (0.1·N(0, 1) truncated at ±2) instead of "
                 f"I{_on_seeds(comp, a)}, the twin starts as another function; its "
                 + " and its ".join(f"{_SERIES[k]} is {_crossing_text(comp['series'][k], resolved)}" for k in series)
                 + f" (the paper: above early, below after ≈ {document['paper']['crossing_step']} steps), and it "
                 f"{_series_clauses(comp, series, steps)}.")
    return text


def readme_paragraph(document: Mapping[str, Any]) -> str:
    """The README's E3 paragraph, from the results document (``cnn_results.json`` as read
    back): every number in it is printed from ``document``."""
    arms, sm = document["analysis"]["arms"], document["analysis"]["smoothing"]
    intro = ("`reproduce cnn` — ACH18's MNIST ConvNet (the TensorFlow tutorial network) and its twin whose "
             "dense layers are products of two matrices")
    if "extra_parameters" in document["analysis"]:
        extra = document["analysis"]["extra_parameters"]["percent"]
        intro += f" ({arms['baseline']['param_count']:,} and {arms['twin']['param_count']:,} parameters, +{extra:.1f} %)"
    intro += (", trained from the same initial weights on the same batches and dropout masks. Speed-ups are "
              "first hit to first hit: the ratio of the steps at which two nets first reach a fixed level of "
              "the cross-entropy or of the objective (cross-entropy + L2 term), on batch losses smoothed by a "
              f"centered mean over {sm['batches']} steps (a level reached before step "
              f"{sm['resolved_from_step']} is not resolved); medians over seeds, ranges in brackets.")
    t = document["timing"]
    speeds = "; ".join(f"{name} {_mr(s['steps_per_second'], '.2f')}" for name, s in arms.items())
    paragraphs = [
        intro,
        *(_reference_text(ref) for ref in document["references"]),
        _main_text(document),
        (f"This run: {t['net_minutes']:.0f} min of training and evaluation (steps/s: {speeds}). Summary: "
         "[docs/figures/cnn_summary.md](docs/figures/cnn_summary.md)."),
    ]
    text = "\n\n".join(textwrap.fill(p, width=100, initial_indent="  ", subsequent_indent="  ",
                                     break_on_hyphens=False, break_long_words=False) for p in paragraphs)
    figures = ["![smoothed batch losses of the arms and their ratios to the baseline](docs/figures/cnn_loss.png)",
               *(f"![the earlier run {ref['name']} in this metric](docs/figures/cnn_{ref['name']}_loss.png)"
                 for ref in document["references"])]
    return "- " + text[2:] + "\n\n" + "\n".join("  " + f for f in figures) + "\n"


# ---- writing ---------------------------------------------------------------------------


def _write_outputs(result: CNNResult, out_dir: str | Path) -> dict[str, Path]:
    """Write ``cnn_results.json``, ``cnn_summary.md``, ``cnn_loss.png`` (this run) and
    ``cnn_<reference>_loss.png`` (each reference, in this metric) into ``out_dir``."""
    document = _document(result)
    figures = {"loss": (_loss_figure(document, document["analysis"], "E3: the arms of this run"),
                        "E3: smoothed batch losses of the arms and their ratios to the baseline")}
    for ref_doc, ref in zip(result.references, document["references"]):
        figures[f"{ref['name']}_loss"] = (
            _loss_figure(ref_doc["document"], ref["analysis"], f"E3: the earlier run {ref['name']}"),
            f"E3: the earlier run {ref['name']} ({ref['source']}) in this run's metric")
    return write_outputs(out_dir, "cnn", document=document, summary=_summary_markdown(document), figures=figures)


def _summary_lines(result: CNNResult) -> list[str]:
    """Per run: arm, seed, parameters, steady-state steps/s, final test accuracy."""
    lines = [f"{r.arm:24s} seed {r.seed}  {r.param_count:>9,} parameters  {r.steps_per_second:6.2f} steps/s  "
             f"final test accuracy {100 * r.test_accuracy[-1]:.2f} %" for r in result.runs]
    counts = {r.arm: r.param_count for r in result.runs}
    if "baseline" in counts and "twin" in counts:
        extra = counts["twin"] - counts["baseline"]
        lines.append(f"overparameterization adds {extra:,} parameters (+{100 * extra / counts['baseline']:.1f} %)")
    return lines


EXPERIMENT = Experiment(
    name="cnn",
    help="E3: the TensorFlow-tutorial MNIST ConvNet vs its linearly overparameterized twin",
    description="Train the MNIST ConvNet of the TensorFlow tutorial and the arms beside it (ACH18): its twin "
    "whose dense layers are products of two matrices (added matrix I, or from the tutorial's init) and the "
    "baseline preconditioned by the twin's step at init, on several seeds (same init, batches and dropout "
    "within a seed); report first-hit speed-ups at fixed loss levels, also for earlier runs given with "
    "--reference; write cnn_results.json, cnn_summary.md and cnn_*loss.png. Default: 2 epochs (1718 steps), "
    "the four arms, seeds 0-2. --quick: 40 steps of batch 32 on 640 images, seeds 0 and 1 "
    "(the variants on seed 0 only).",
    options=(
        Option(("--epochs",), {"dest": "epochs", "type": int, "metavar": "E",
                               "help": "epochs per net (default 2; --steps overrides)"}),
        Option(("--arms",), {"dest": "arms", "metavar": "A,B,...",
                             "help": f"which arms to train, comma-separated, among {', '.join(ARMS)} "
                             "(default: all four)"}),
        Option(("--variant-seeds",), {"dest": "variant_seeds", "type": int, "metavar": "K",
                                      "help": "train the variants (arms other than baseline and twin) on only "
                                      "the first K seeds (default: on all)"}),
        Option(("--reference",), {"dest": "references", "action": "append", "metavar": "JSON",
                                  "help": "an earlier cnn_results.json to report in this run's metric "
                                  "(repeatable)"}),
        Option(("--data-dir",), {"dest": "data_dir", "metavar": "DIR",
                                 "help": "folder with the four MNIST files (else $OVERPARAM_JAX_DATA, "
                                 "the cache, download)"}),
        Option(("--l2-on",), {"dest": "l2_on", "choices": _L2_TARGETS,
                              "help": "twins' L2 term on the end-to-end products (default) or on every factor"}),
        Option(("--weight-decay",), {"dest": "weight_decay", "type": float, "metavar": "LAMBDA",
                                     "help": "coefficient of the L2 term (default 5e-4, the tutorial's; "
                                     "0 disables it)"}),
    ),
    common=("steps", "seeds", "seed"),
    configure=_configure,
    load=_load,
    run=run_cnn_experiment,
    write_outputs=_write_outputs,
    summary_lines=_summary_lines,
)
