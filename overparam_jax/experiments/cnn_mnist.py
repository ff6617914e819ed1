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
(no gain in expressiveness); the added matrices start at the identity, so with the same
key the twin starts as *the same function* as the baseline (our documented choice: the
paper only says the added layers are linear). It has 262 244 (+15.8 %) more parameters.

**Initialization** (the tutorial's): weights :math:`0.1\cdot\mathcal N(0,1)` truncated at
two standard deviations (``tf.truncated_normal(stddev=0.1)``); conv1 bias 0, the other
biases 0.1.

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

**Optimizer** (the tutorial's): SGD with heavy-ball momentum 0.9 (``optax.sgd``, the same
update as ``tf.train.MomentumOptimizer``: :math:`v \leftarrow 0.9 v + g`,
:math:`\theta \leftarrow \theta - \eta_t v`), batch 64,
:math:`\eta_t = 0.01\cdot 0.95^{\lfloor 64 t / n \rfloor}` (staircase decay once per epoch
of :math:`n` training examples), dropout 0.5 on the fc1 activations during training only.

**Data** (the tutorial's split): the first 5 000 training images are held out for
validation, the other :math:`n = 55\,000` are trained on for 10 epochs,
:math:`\lfloor 10 n / 64 \rfloor = 8593` steps (the "≈ 8600" of THEORY.md; with all 60 000
images it would be 9375). Unlike the tutorial, which walks the data in file order, batches
are drawn from a fresh random permutation of the training set each epoch.

**Determinism**: everything random (init, permutations, dropout) comes from
``jax.random.key(seed)``. Both nets get the same initial weights (the twin's
:math:`W_1` equal the baseline's matrices), the same batches and the same dropout masks,
so their curves are a paired comparison. Training runs in float32 whatever
``jax_enable_x64`` says.

**Pipeline**: the uint8 images stay on the device as one array; the jitted step (buffers
donated) takes a ``(64,)`` vector of indices and gathers, normalizes and trains inside
the compiled function.

**Public**: the configuration (:class:`CNNConfig`, :func:`quick_config`,
:func:`validate_config`), the network (:func:`init_params`, :func:`preprocess`, :func:`apply`,
:func:`l2_penalty`, :func:`learning_rate_schedule`), :func:`run_cnn_experiment` (each net
trained through :func:`~overparam_jax.runner.run_chunks`) with its :class:`CNNResult`, and
``EXPERIMENT`` (``overparam-jax reproduce cnn``); the report below it is private.

References:
    [ACH18] Arora, Cohen, Hazan. On the Optimization of Deep Networks: Implicit
    Acceleration by Overparameterization. ICML 2018, §8 (the convolutional network).
    TensorFlow, ``tensorflow/models`` ``tutorials/image/mnist/convolutional.py`` (2016-17).
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable
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
    figure_panels,
    format_percent,
    format_value,
    markdown,
    markdown_table,
    write_outputs,
)
from overparam_jax.networks import end_to_end
from overparam_jax.runner import ProgressFn, on_host, run_chunks

__all__ = [
    "EXPERIMENT", "NETS", "CNNConfig", "CNNResult", "CNNRun", "apply", "init_params", "l2_penalty",
    "learning_rate_schedule", "preprocess", "quick_config", "run_cnn_experiment", "validate_config",
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
NETS = ("baseline", "overparameterized")  # dense_depth 1 and 2


# --------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------


class CNNConfig(NamedTuple):
    """Hyperparameters of E3; the defaults are the TensorFlow tutorial's.

    Attributes:
        num_epochs: epochs over the training set (``num_steps = num_epochs * n // batch``).
        num_steps: if set, overrides ``num_epochs``.
        batch_size: examples per SGD step.
        learning_rate: initial :math:`\\eta_0`.
        decay_rate: :math:`\\eta` is multiplied by this once per epoch (staircase).
        momentum: heavy-ball momentum.
        weight_decay: :math:`\\lambda` of the L2 term (0 disables it).
        keep_prob: dropout keep probability on the fc1 activations.
        l2_target: ``"product"`` or ``"factors"``: what the L2 term of the twin penalizes.
        validation_size: leading training images held out for validation.
        train_subset: if set, train on only the first this many remaining images.
        test_subset: if set, evaluate on only the first this many test images.
        eval_batch_size: batch size of the (jitted) accuracy evaluation.
        log_every: steps between progress reports (the curves keep every step).
        checkpoint_every: steps between checkpoints (when checkpointing). Every progress
            report and evaluation is a checkpoint too: they all end a chunk.
        smoothing_window: trailing moving-average window of the summary and figure.
        seed: integer seed of ``jax.random.key``.
        data_dir: where :func:`~overparam_jax.load_mnist` looks first (``None``: the usual
            places). Where the images are, not what is computed: left out of the results and
            of the stages' checkpoint fingerprints (which hold a digest of the images).
    """

    num_epochs: int = 10
    num_steps: int | None = None
    batch_size: int = 64
    learning_rate: float = 0.01
    decay_rate: float = 0.95
    momentum: float = 0.9
    weight_decay: float = 5e-4
    keep_prob: float = 0.5
    l2_target: str = "product"
    validation_size: int = 5000
    train_subset: int | None = None
    test_subset: int | None = None
    eval_batch_size: int = 500
    log_every: int = 50
    checkpoint_every: int = 500
    smoothing_window: int = 100
    seed: int = 0
    data_dir: str | None = None


def quick_config(**overrides: Any) -> CNNConfig:
    """A short run for ``--quick``: 120 steps of batch 32 (two epochs of 1 920 images), < 90 s on 2 cores."""
    return CNNConfig(
        num_steps=120, batch_size=32, train_subset=1920, validation_size=500, test_subset=1000,
        eval_batch_size=250, log_every=10, checkpoint_every=20, smoothing_window=10,
    )._replace(**overrides)


def _configure(*, quick: bool = False, steps: int | None = None, seeds: int | None = None,
               seed: int | None = None, data_dir: str | None = None, l2_on: str | None = None,
               weight_decay: float | None = None) -> CNNConfig:
    """The configuration of ``reproduce cnn [--quick] [--steps N] [--seed S] ...``."""
    if seeds is not None:
        raise ValueError("E3 trains one seed (--seed), not several")
    if steps is not None and steps < 1:
        raise ValueError(f"--steps must be a positive integer, got {steps}")
    if weight_decay is not None and not weight_decay >= 0:
        raise ValueError(f"--weight-decay must be non-negative, got {weight_decay}")
    given = {"num_steps": steps, "seed": seed, "data_dir": data_dir, "l2_target": l2_on,
             "weight_decay": weight_decay}
    config = (quick_config if quick else CNNConfig)(**{k: v for k, v in given.items() if v is not None})
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
        if not isinstance(value, (int, np.integer)) or value < 1:
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
    """The configuration as reported and fingerprinted: without ``data_dir``."""
    return {k: v for k, v in config._asdict().items() if k != "data_dir"}


def _load(config: CNNConfig) -> MNIST:
    """MNIST from ``config.data_dir`` (or the usual places), checked against ``config``."""
    data = load_mnist(config.data_dir)
    validate_config(config, data)
    return data


# --------------------------------------------------------------------------------------
# The network
# --------------------------------------------------------------------------------------


@functools.partial(jax.jit, static_argnames=("dense_depth",))
def init_params(key: jax.Array, *, dense_depth: int = 1) -> _Net:
    """The tutorial's initial weights; with ``dense_depth > 1`` the added matrices are ``I``.

    Args:
        key: a JAX PRNG key. The same key gives the same conv kernels, biases and first
            dense factors at every depth, so the nets start as the same function.
        dense_depth: matrices per dense layer (1: the tutorial's net, 2: the twin).

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
    k1, k2, k3, k4 = jax.random.split(key, 4)

    def normal(k, shape):
        return _INIT_STD * jax.random.truncated_normal(k, -2.0, 2.0, shape, dtype=_DTYPE)

    def dense(k, d_in, d_out, name):
        factors = (normal(k, (d_out, d_in)),) + (jnp.eye(d_out, dtype=_DTYPE),) * (dense_depth - 1)
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


def _step_key(config: CNNConfig, train_size: int) -> tuple:
    """What the compiled train step depends on (so equal runs share one compilation)."""
    return (train_size, config.batch_size, config.learning_rate, config.decay_rate,
            config.momentum, config.weight_decay, config.keep_prob, config.l2_target)


@functools.lru_cache(maxsize=8)
def _make_train_step(key: tuple):
    train_size, batch_size, learning_rate, decay_rate, momentum, weight_decay, keep_prob, l2_target = key
    config = CNNConfig(batch_size=batch_size, learning_rate=learning_rate, decay_rate=decay_rate)
    optimizer = optax.sgd(learning_rate_schedule(config, train_size), momentum=momentum)

    def step(params, opt_state, images, labels, idx, dropout_key):
        x = preprocess(jnp.take(images, idx, axis=0))  # the batch is gathered on the device
        y = jnp.take(labels, idx, axis=0)
        grad_fn = jax.value_and_grad(_batch_loss, has_aux=True)
        (loss, data_loss), grads = grad_fn(
            params, x, y, dropout_key, weight_decay=weight_decay, keep_prob=keep_prob,
            l2_target=l2_target,
        )
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss, data_loss

    return optimizer, jax.jit(step, donate_argnums=(0, 1))


class CNNRun(NamedTuple):
    """The record of training one net. Step ``t`` is the batch seen before update ``t+1``.

    Attributes:
        name: ``"baseline"`` or ``"overparameterized"``.
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

    name: str
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


def _train_one(name: str, dense_depth: int, config: CNNConfig, splits, batch_idx: np.ndarray,
               init_key: jax.Array, dropout_key: jax.Array, progress: ProgressFn | None,
               checkpoint: Path | None) -> CNNRun:
    """Train one net, a chunk at a time (:func:`~overparam_jax.runner.run_chunks`).

    The carry is ``(params, opt_state)``; step ``s`` uses the batch ``batch_idx[s]`` and the
    dropout key ``fold_in(dropout_key, s)``, so the run is the same, bit for bit, however it
    is chunked and wherever it resumes. A chunk records its per-step losses, the
    evaluation when it ends at one, and its wall times."""
    (tr_x, tr_y), (va_x, va_y), (te_x, te_y) = splits
    train_size, num_steps = tr_x.shape[0], batch_idx.shape[0]
    params = init_params(init_key, dense_depth=dense_depth)
    optimizer, step_fn = _make_train_step(_step_key(config, train_size))
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
            key = jax.random.fold_in(dropout_key, s)
            params, opt_state, loss, data_loss = step_fn(params, opt_state, images, labels, batch_idx[s], key)
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
        "net": name, "config": _results_config(config), "data": array_digest(splits)}
    (params, _), chunks = run_chunks(
        advance, (params, optimizer.init(params)), _chunk_sizes(config, eval_at, num_steps),
        checkpoint=checkpoint, fingerprint=fingerprint, progress=progress, stage=name,
        metrics=metrics,
    )
    evals = [c["evaluation"] for c in chunks if c["evaluation"] is not None]
    seconds = {k: sum(c["seconds"][k] for c in chunks) for k in ("first_step", "train", "eval")}
    return CNNRun(
        name=name,
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


class CNNResult(NamedTuple):
    """Both runs of E3 and the configuration (``train_size`` examples trained on; a net
    left out of ``nets`` is ``None``)."""

    config: CNNConfig
    train_size: int
    num_steps: int
    baseline: CNNRun | None
    overparameterized: CNNRun | None


def run_cnn_experiment(
    config: CNNConfig,
    data: MNIST,
    *,
    progress: ProgressFn | None = None,
    checkpoint: CheckpointDir | None = None,
    nets: tuple[str, ...] = NETS,
) -> CNNResult:
    """Train the tutorial ConvNet and its overparameterized twin with the same seed.

    Args:
        config: hyperparameters; ``CNNConfig()`` reproduces the tutorial (10 epochs, 8593
            steps), :func:`quick_config` is a smoke run.
        data: MNIST from :func:`overparam_jax.load_mnist` (uint8).
        progress: called with a :class:`~overparam_jax.runner.Progress` (stage: the net's
            name; metrics: the last batch ``loss``, and ``test_accuracy`` after an
            evaluation) after every chunk: every ``config.log_every`` and
            ``config.checkpoint_every`` steps and after each evaluation.
        checkpoint: if given, each net saves its state in its stage ``cnn_<net>`` after
            every chunk, and a rerun with the same folder resumes where it stopped (same
            result, bit for bit).
        nets: which of ``("baseline", "overparameterized")`` to train (both by default).

    Returns:
        A :class:`CNNResult`.

    Raises:
        ValueError / TypeError: a bad configuration or data, naming the argument.
    """
    validate_config(config, data)
    unknown = set(nets) - set(NETS)
    if unknown or not nets:
        raise ValueError(f"`nets` must be a non-empty subset of {NETS}, but is {nets!r}.")
    splits = _split(config, data)
    train_size = splits[0][0].shape[0]
    num_steps = config.num_steps or config.num_epochs * train_size // config.batch_size
    if num_steps < 1:
        raise ValueError(f"`num_epochs` ({config.num_epochs}) gives no training step.")
    init_key, shuffle_key, dropout_key = jax.random.split(jax.random.key(config.seed), 3)
    batch_idx = _batch_indices(shuffle_key, train_size, config.batch_size, num_steps)
    runs = {
        name: _train_one(name, depth, config, splits, batch_idx, init_key, dropout_key, progress,
                         None if checkpoint is None else checkpoint.stage(f"cnn_{name}"))
        if name in nets else None
        for name, depth in zip(NETS, (1, 2))
    }
    return CNNResult(config, train_size, num_steps, runs["baseline"], runs["overparameterized"])


# --------------------------------------------------------------------------------------
# Report: milestones, summary, figure, JSON
# --------------------------------------------------------------------------------------


def _first_step(curve: np.ndarray, level: float) -> int | None:
    """The first step whose value is ``<= level`` (``None``: never)."""
    step = int(first_hit(np.arange(len(curve)), curve, level))
    return None if step < 0 else step


def _window(result: CNNResult) -> int:
    return max(1, min(result.config.smoothing_window, result.num_steps // 10))


def _runs(result: CNNResult) -> list[CNNRun]:
    return [r for r in (result.baseline, result.overparameterized) if r is not None]


_DATA_LEVELS = (1.0, 0.3, 0.1, 0.05, 0.03, 0.02, 0.01)


def _milestones(result: CNNResult) -> dict[str, Any]:
    """Steps to first reach loss levels (smoothed), fixed and relative to the baseline."""
    w, runs = _window(result), _runs(result)
    smoothed = {r.name: moving_average(r.data_loss, w) for r in runs}
    fixed = [{"series": "data_loss", "level": level, **{n: _first_step(v, level) for n, v in smoothed.items()}}
             for level in _DATA_LEVELS]
    out: dict[str, Any] = {"smoothing_window": w, "fixed_levels": fixed, "baseline_levels": {}}
    if result.baseline is not None and result.overparameterized is not None:
        for series in ("loss", "data_loss"):
            b = moving_average(getattr(result.baseline, series), w)
            o = moving_average(getattr(result.overparameterized, series), w)
            steps = {frac: max(0, round(frac * result.num_steps) - 1) for frac in (0.1, 0.25, 0.5, 1.0)}
            out["baseline_levels"][series] = [
                {"fraction": frac, "baseline_step": s, "level": float(b[s]),
                 "overparameterized_step": _first_step(o, float(b[s]))} for frac, s in steps.items()]
    return out


def _summary_markdown(result: CNNResult, milestones: dict[str, Any]) -> str:
    """A markdown report: parameter counts, steps to loss levels, accuracies, timing."""
    c, runs, w = result.config, _runs(result), milestones["smoothing_window"]
    names, both = [r.name for r in runs], len(runs) == 2
    levels = []
    for row in milestones["fixed_levels"]:
        b, o = row[names[0]], row[names[-1]]
        ratio = [f"{b / o:.2f}" if b is not None and o not in (None, 0) else "—"] if both else []
        levels.append([f"{row['level']:g}", *(format_value(row[n]) for n in names), *ratio])
    twin = []
    for series, title in (("loss", "objective (with L2)"), ("data_loss", "cross-entropy (without L2)")):
        if series in milestones["baseline_levels"]:
            twin += [f"## Steps for the twin to reach the baseline's {title} (trailing mean over {w} steps)",
                     markdown_table(["baseline at step", "its level", "twin first reaches it at", "speed-up"],
                                    [_twin_row(row) for row in milestones["baseline_levels"][series]], "rrrr")]
    final = [(r.name, float(np.mean(r.loss[-w:])), float(np.mean(r.data_loss[-w:]))) for r in runs]
    return markdown(
        "# E3: MNIST ConvNet, baseline vs linearly overparameterized dense layers [ACH18]",
        f"TensorFlow-tutorial ConvNet, {result.num_steps} steps of SGD (momentum {c.momentum}, "
        f"batch {c.batch_size}, lr {c.learning_rate} × {c.decay_rate} per epoch of "
        f"{result.train_size} images), dropout keep {c.keep_prob}, L2 {c.weight_decay:g} on the "
        f"dense layers (twin: on the {'end-to-end products' if c.l2_target == 'product' else 'factors'}), "
        f"seed {c.seed}. Same initial function, batches and dropout masks for both nets; "
        "the twin's added matrices start at the identity.",
        markdown_table(["net", "parameters", "first step (s)", "steps/s", "final test acc.", "best test acc.",
                        "final val. acc."],
                       [[r.name, f"{r.param_count:,}", f"{r.first_step_seconds:.1f}", f"{r.steps_per_second:.2f}",
                         format_percent(r.test_accuracy[-1]), format_percent(np.max(r.test_accuracy)),
                         format_percent(r.validation_accuracy[-1]) if r.validation_accuracy.size else "—"]
                        for r in runs], "lrrrrrr"),
        _extra_parameters(runs, "The twin has {extra:,} more parameters (+{percent:.1f} %).") if both else [],
        f"## Steps to first reach a cross-entropy level (without L2; trailing mean over {w} steps)",
        markdown_table(["level", *names, *["ratio"] * both], levels, "r" * (1 + len(names) + both)),
        *twin,
        f"## Final losses (trailing mean over the last {w} steps)",
        markdown_table(["net", "objective (with L2)", "cross-entropy", "L2 term"],
                       [[n, f"{t:.4g}", f"{d:.4g}", f"{t - d:.4g}"] for n, t, d in final], "lrrr"),
        "## Test accuracy after each epoch",
        markdown_table(["updates", *names], [[str(s), *(format_percent(r.test_accuracy[i]) for r in runs)]
                                             for i, s in enumerate(runs[0].eval_step)], "r" * (1 + len(runs))),
        "Times: " + "; ".join(f"{r.name} {r.train_seconds:.0f} s training + {r.eval_seconds:.0f} s evaluation"
                              for r in runs) + f" ({jax.default_backend()}).",
    )


def _twin_row(row: dict[str, Any]) -> list[str]:
    b, o = row["baseline_step"], row["overparameterized_step"]
    return [str(b), f"{row['level']:.4g}", format_value(o), "never" if o is None else f"{(b + 1) / (o + 1):.2f}×"]


def _extra_parameters(runs: list[CNNRun], template: str) -> str:
    extra = runs[1].param_count - runs[0].param_count
    return template.format(extra=extra, percent=100 * extra / runs[0].param_count)


def _loss_figure(result: CNNResult):
    """Batch loss vs step for both nets, log y: objective, cross-entropy, and the L2 term."""
    w = _window(result)
    fig, (axes,) = figure_panels(
        1, 3, panel_size=(5, 4.2), sharex=True, xlabel="step",
        ylabel=f"batch loss (faint: raw, bold: centered mean over {w} steps)",
        title="E3: MNIST ConvNet, dense layers overparameterized by linear layers [ACH18]")
    colors = {"baseline": "tab:blue", "overparameterized": "tab:red"}
    panels = (
        ("objective: cross-entropy + L2", lambda r: r.loss),
        ("cross-entropy (without L2)", lambda r: r.data_loss),
        (f"L2 term  λR  (λ = {result.config.weight_decay:g})", lambda r: r.loss - r.data_loss),
    )
    for ax, (title, series) in zip(axes, panels):
        for r in _runs(result):
            v = series(r)
            steps = np.arange(len(v))
            ax.plot(steps, v, color=colors[r.name], alpha=0.25, lw=0.5)
            ax.plot(steps, moving_average(v, w, centered=True), color=colors[r.name], lw=1.6,
                    label=f"{r.name} ({r.param_count:,} params)")
        if all(np.all(series(r) > 0) for r in _runs(result)):
            ax.set_yscale("log")
        ax.set_title(title)
    axes[0].legend()
    return fig


def _document(result: CNNResult, milestones: dict[str, Any]) -> dict[str, Any]:
    """The JSON document: configuration, every step's losses (6 significant digits), accuracies."""

    def run_dict(r: CNNRun) -> dict[str, Any]:
        fields = {k: v for k, v in r._asdict().items() if k != "name"}
        return {**fields, "loss": significant(r.loss), "data_loss": significant(r.data_loss),
                "steps_per_second": r.steps_per_second}

    return {
        "experiment": "E3 cnn_mnist",
        "config": _results_config(result.config),
        "train_size": result.train_size,
        "num_steps": result.num_steps,
        "runs": {r.name: run_dict(r) for r in _runs(result)},
        "milestones": milestones,
    }


def _write_outputs(result: CNNResult, out_dir: str | Path) -> dict[str, Path]:
    """Write ``cnn_results.json``, ``cnn_loss.png`` and ``cnn_summary.md`` into ``out_dir``."""
    milestones = _milestones(result)
    caption = "E3: batch loss of the MNIST ConvNet and its linearly overparameterized twin"
    return write_outputs(out_dir, "cnn", document=_document(result, milestones),
                         summary=_summary_markdown(result, milestones),
                         figures={"loss": (_loss_figure(result), caption)})


def _summary_lines(result: CNNResult) -> list[str]:
    """Per net: parameters, steady-state steps/s, final test accuracy; then the extra parameters."""
    runs = _runs(result)
    lines = [f"{r.name:18s} {r.param_count:>9,} parameters  {r.steps_per_second:6.2f} steps/s  "
             f"final test accuracy {100 * r.test_accuracy[-1]:.2f} %" for r in runs]
    if len(runs) == 2:
        lines.append(_extra_parameters(runs, "overparameterization adds {extra:,} parameters (+{percent:.1f} %)"))
    return lines


EXPERIMENT = Experiment(
    name="cnn",
    help="E3: the TensorFlow-tutorial MNIST ConvNet vs its linearly overparameterized twin",
    description="Train the MNIST ConvNet of the TensorFlow tutorial and its twin whose dense "
    "layers are products of two matrices (ACH18), same seed, batches and dropout; write "
    "cnn_results.json, cnn_loss.png and cnn_summary.md. --quick: 120 steps of batch 32 on "
    "1 920 images; --steps: training steps per net (default: 10 epochs, 8593 steps).",
    options=(
        Option(("--data-dir",), {"dest": "data_dir", "metavar": "DIR",
                                 "help": "folder with the four MNIST files (else $OVERPARAM_JAX_DATA, "
                                 "the cache, download)"}),
        Option(("--l2-on",), {"dest": "l2_on", "choices": _L2_TARGETS,
                              "help": "twin's L2 term on the end-to-end products (default) or on every factor"}),
        Option(("--weight-decay",), {"dest": "weight_decay", "type": float, "metavar": "LAMBDA",
                                     "help": "coefficient of the L2 term (default 5e-4, the tutorial's; "
                                     "0 disables it)"}),
    ),
    common=("steps", "seed"),
    configure=_configure,
    load=_load,
    run=run_cnn_experiment,
    write_outputs=_write_outputs,
    summary_lines=_summary_lines,
)
