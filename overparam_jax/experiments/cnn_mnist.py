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

from overparam_jax.checkpoint import CheckpointDir, load_checkpoint, save_checkpoint
from overparam_jax.datasets import MNIST
from overparam_jax.results import json_safe

__all__ = [
    "CNNConfig",
    "CNNResult",
    "CNNRun",
    "Progress",
    "apply",
    "batch_loss",
    "count_params",
    "end_to_end_weight",
    "init_params",
    "l2_penalty",
    "learning_rate_schedule",
    "loss_figure",
    "preprocess",
    "quick_config",
    "result_to_dict",
    "run_cnn_experiment",
    "smooth",
    "summary_markdown",
    "validate_config",
    "write_outputs",
]

Params = dict[str, dict[str, Any]]

_DTYPE = jnp.float32
_IMAGE_SIZE = 28
_NUM_LABELS = 10
_FC1_IN = (_IMAGE_SIZE // 4) * (_IMAGE_SIZE // 4) * 64  # 3136
_FC1_OUT = 512
_INIT_STD = 0.1  # tf.truncated_normal(stddev=0.1), truncated at 2 std
_BIAS_INIT = {"conv1": 0.0, "conv2": 0.1, "fc1": 0.1, "fc2": 0.1}
_L2_TARGETS = ("product", "factors")
NETS = ("baseline", "overparameterized")


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
        checkpoint_every: steps between checkpoints (when checkpointing; also after
            every evaluation).
        smoothing_window: trailing moving-average window of the summary and figure.
        seed: integer seed of ``jax.random.key``.
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


def quick_config(**overrides: Any) -> CNNConfig:
    """A short run for ``--quick``: 120 steps of batch 32 (two epochs of 1 920 images), < 90 s on 2 cores."""
    base = dict(
        num_steps=120, batch_size=32, train_subset=1920, validation_size=500, test_subset=1000,
        eval_batch_size=250, log_every=10, checkpoint_every=20, smoothing_window=10,
    )
    return CNNConfig(**{**base, **overrides})


class Progress(NamedTuple):
    """What the progress callback receives: ``net`` has done ``step`` of ``num_steps``."""

    net: str
    step: int
    num_steps: int
    loss: float  # the objective (with L2) of the last batch
    data_loss: float  # its cross-entropy alone
    test_accuracy: float | None  # set right after an evaluation


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


class CNNResult(NamedTuple):
    """Both runs of E3 and the configuration (``train_size`` examples trained on)."""

    config: CNNConfig
    train_size: int
    num_steps: int
    baseline: CNNRun
    overparameterized: CNNRun


# --------------------------------------------------------------------------------------
# The network
# --------------------------------------------------------------------------------------


def _require_depth(dense_depth: int) -> None:
    if not isinstance(dense_depth, (int, np.integer)) or dense_depth < 1:
        raise ValueError(f"`dense_depth` must be an int >= 1, but is {dense_depth!r}.")


@functools.partial(jax.jit, static_argnames=("dense_depth",))
def init_params(key: jax.Array, *, dense_depth: int = 1) -> Params:
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
    _require_depth(dense_depth)
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


def count_params(params: Params) -> int:
    """Number of trainable scalars in ``params`` (arrays or ``jax.eval_shape`` structs)."""
    return int(sum(math.prod(leaf.shape) for leaf in jax.tree_util.tree_leaves(params)))


def end_to_end_weight(layer: dict[str, Any]) -> jax.Array:
    r"""The matrix :math:`W_{1:N} = W_N \cdots W_1` of a dense layer, shape ``(d_N, d_0)``."""
    factors = layer["factors"]
    return factors[0] if len(factors) == 1 else jnp.linalg.multi_dot(factors[::-1])


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
    params: Params, x: jax.Array, *, dropout_key: jax.Array | None = None, keep_prob: float = 0.5
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


def l2_penalty(params: Params, *, l2_target: str = "product") -> jax.Array:
    r"""The tutorial's :math:`R` = ``sum(tf.nn.l2_loss)`` over fc1/fc2 weights and biases.

    ``"product"`` penalizes each end-to-end matrix :math:`\tfrac12\|W_{1:N}\|_F^2`,
    ``"factors"`` each factor :math:`\tfrac12\sum_j\|W_j\|_F^2` (identical at depth 1).
    """
    if l2_target not in _L2_TARGETS:
        raise ValueError(f"`l2_target` must be one of {_L2_TARGETS}, but is {l2_target!r}.")
    total = jnp.zeros((), _DTYPE)
    for name in ("fc1", "fc2"):
        layer = params[name]
        mats = [end_to_end_weight(layer)] if l2_target == "product" else list(layer["factors"])
        for M in mats + [layer["bias"]]:
            total = total + 0.5 * jnp.sum(jnp.square(M))
    return total


def batch_loss(
    params: Params,
    x: jax.Array,
    labels: jax.Array,
    dropout_key: jax.Array | None,
    *,
    weight_decay: float,
    keep_prob: float = 0.5,
    l2_target: str = "product",
) -> tuple[jax.Array, jax.Array]:
    """``(objective, data_loss)``: mean cross-entropy plus ``weight_decay * l2_penalty``."""
    logits = apply(params, x, dropout_key=dropout_key, keep_prob=keep_prob)
    data = jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, labels.astype(jnp.int32)))
    if weight_decay == 0:
        return data, data
    return data + jnp.asarray(weight_decay, _DTYPE) * l2_penalty(params, l2_target=l2_target), data


def learning_rate_schedule(config: CNNConfig, train_size: int) -> Callable[[jax.Array], jax.Array]:
    r""":math:`\eta_t = \eta_0\,\rho^{\lfloor B t / n\rfloor}` (``tf.train.exponential_decay``,
    ``staircase=True``, decay step ``n`` = ``train_size`` examples), in float32."""
    lr = jnp.asarray(config.learning_rate, _DTYPE)
    rho = jnp.asarray(config.decay_rate, _DTYPE)

    def schedule(count):
        epoch = (jnp.asarray(count) * config.batch_size) // train_size  # exact integer arithmetic
        return lr * rho ** epoch.astype(_DTYPE)

    return schedule


# --------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------


def validate_config(config: CNNConfig, data: MNIST) -> None:
    """Raise ``ValueError``/``TypeError`` naming the field if ``config`` or ``data`` is unusable."""
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
    n_train = data.train_images.shape[0]
    expected = {
        "train_images": (n_train, _IMAGE_SIZE, _IMAGE_SIZE), "train_labels": (n_train,),
        "test_images": (data.test_images.shape[0], _IMAGE_SIZE, _IMAGE_SIZE),
        "test_labels": (data.test_images.shape[0],),
    }
    for field, shape in expected.items():
        arr = getattr(data, field)
        if tuple(arr.shape) != shape or arr.dtype != np.uint8:
            raise ValueError(
                f"`data.{field}` must be uint8 of shape {shape}, but is {arr.dtype} {tuple(arr.shape)}."
            )
    n_test = data.test_images.shape[0]
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


def _split(config: CNNConfig, data: MNIST):
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


@jax.jit
def _count_correct(params: Params, images: jax.Array, labels: jax.Array, mask: jax.Array) -> jax.Array:
    logits = apply(params, preprocess(images))
    hit = (jnp.argmax(logits, axis=-1) == labels.astype(jnp.int32)) & mask
    return jnp.sum(hit.astype(jnp.int32))


def _accuracy(params: Params, images: np.ndarray, labels: np.ndarray, batch_size: int) -> float:
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
        grad_fn = jax.value_and_grad(batch_loss, has_aux=True)
        (loss, data_loss), grads = grad_fn(
            params, x, y, dropout_key, weight_decay=weight_decay, keep_prob=keep_prob,
            l2_target=l2_target,
        )
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss, data_loss

    return optimizer, jax.jit(step, donate_argnums=(0, 1))


def _on_host(values: list) -> np.ndarray:
    """Per-step scalars (device arrays, or NumPy after a resume) as one float64 array; one
    transfer per value, not ``jnp.stack`` (a new compile for every list length)."""
    return np.asarray([np.asarray(x) for x in values], dtype=np.float64)


def _train_one(
    name: str,
    dense_depth: int,
    config: CNNConfig,
    splits,
    batch_idx: np.ndarray,
    init_key: jax.Array,
    dropout_key: jax.Array,
    progress: Callable[[Progress], None] | None,
    checkpoint: Path | None = None,
) -> CNNRun:
    """Train one net; with ``checkpoint``, save its state every ``config.checkpoint_every``
    steps and after each evaluation, and resume from a saved state. Step ``s`` uses the
    batch ``batch_idx[s]`` and the dropout key ``fold_in(dropout_key, s)``, so a resumed
    run is the uninterrupted one, bit for bit."""
    (tr_x, tr_y), (va_x, va_y), (te_x, te_y) = splits
    train_size, num_steps = tr_x.shape[0], batch_idx.shape[0]
    params = init_params(init_key, dense_depth=dense_depth)
    n_params = count_params(params)
    optimizer, step_fn = _make_train_step(_step_key(config, train_size))
    opt_state = optimizer.init(params)
    images, labels = jax.device_put(tr_x), jax.device_put(tr_y)  # stays on the device

    losses, data_losses = [], []
    eval_at = _eval_steps(train_size, config.batch_size, num_steps)
    eval_step, test_acc, val_acc = [], [], []
    train_seconds = eval_seconds = first_step_seconds = 0.0
    start = 0
    fingerprint = {"net": name, "num_steps": num_steps, "train_size": train_size}
    saved = None if checkpoint is None else load_checkpoint(checkpoint, fingerprint)
    if saved is not None:
        start = saved["step"]
        params, opt_state = saved["params"], saved["opt_state"]
        losses, data_losses = list(saved["loss"]), list(saved["data_loss"])
        eval_step, test_acc, val_acc = saved["eval_step"], saved["test_accuracy"], saved["validation_accuracy"]
        train_seconds, eval_seconds, first_step_seconds = saved["seconds"]
        if progress is not None:
            progress(Progress(name, start, num_steps, float(losses[-1]) if losses else float("nan"),
                              float(data_losses[-1]) if data_losses else float("nan"), None))

    def save(done: int) -> None:
        save_checkpoint(checkpoint, fingerprint, {
            "step": done, "params": params, "opt_state": opt_state,
            "loss": _on_host(losses), "data_loss": _on_host(data_losses),
            "eval_step": eval_step, "test_accuracy": test_acc, "validation_accuracy": val_acc,
            "seconds": (train_seconds, eval_seconds, first_step_seconds),
        })

    def evaluate(done: int) -> float:
        nonlocal eval_seconds
        t = time.perf_counter()
        eval_step.append(done)
        test_acc.append(_accuracy(params, te_x, te_y, config.eval_batch_size))
        if va_x.shape[0]:
            val_acc.append(_accuracy(params, va_x, va_y, config.eval_batch_size))
        eval_seconds += time.perf_counter() - t
        return test_acc[-1]

    if start == 0:
        accuracy = evaluate(0)
        if progress is not None:
            progress(Progress(name, 0, num_steps, float("nan"), float("nan"), accuracy))
    t = time.perf_counter()
    for s in range(start, num_steps):
        key = jax.random.fold_in(dropout_key, s)
        params, opt_state, loss, data_loss = step_fn(params, opt_state, images, labels, batch_idx[s], key)
        losses.append(loss)
        data_losses.append(data_loss)
        done = s + 1
        if s == start:  # compilation (unless cached) + one step, kept out of the steady-state rate
            jax.block_until_ready(loss)
            first_step_seconds += time.perf_counter() - t
            t = time.perf_counter()
        save_now = checkpoint is not None and (done % config.checkpoint_every == 0 or done in eval_at)
        if done % config.log_every == 0 or done in eval_at or save_now:
            last, last_data = float(loss), float(data_loss)  # blocks: the clock is honest
            train_seconds += time.perf_counter() - t
            accuracy = evaluate(done) if done in eval_at else None
            if save_now:  # before reporting: a Ctrl-C in the callback loses nothing
                save(done)
            if progress is not None:
                progress(Progress(name, done, num_steps, last, last_data, accuracy))
            t = time.perf_counter()

    return CNNRun(
        name=name,
        param_count=n_params,
        loss=_on_host(losses),
        data_loss=_on_host(data_losses),
        eval_step=np.asarray(eval_step),
        test_accuracy=np.asarray(test_acc),
        validation_accuracy=np.asarray(val_acc),
        first_step_seconds=first_step_seconds,
        train_seconds=train_seconds,
        eval_seconds=eval_seconds,
    )


def run_cnn_experiment(
    data: MNIST,
    config: CNNConfig = CNNConfig(),
    *,
    progress: Callable[[Progress], None] | None = None,
    nets: tuple[str, ...] = NETS,
    checkpoint: CheckpointDir | None = None,
) -> CNNResult:
    """Train the tutorial ConvNet and its overparameterized twin with the same seed.

    Args:
        data: MNIST from :func:`overparam_jax.load_mnist` (uint8).
        config: hyperparameters; the defaults reproduce the tutorial (10 epochs, 8593 steps).
        progress: called with a :class:`Progress` every ``config.log_every`` steps and after
            each evaluation (the library itself never prints).
        nets: which of ``("baseline", "overparameterized")`` to train (both by default;
            a net left out gets ``None``).
        checkpoint: if given, each net saves its state there every
            ``config.checkpoint_every`` steps and after each evaluation, and a rerun with
            the same folder resumes where it stopped (same result, bit for bit).

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
# Summaries, figure, files
# --------------------------------------------------------------------------------------


def smooth(values: np.ndarray, window: int, *, centered: bool = False) -> np.ndarray:
    """Moving average over ``window`` steps, shrinking at the ends.

    Trailing (default): entry ``t`` is the mean of ``values[max(0, t-window+1) : t+1]``,
    which uses no future step (the milestones). Centered: the mean of
    ``values[max(0, t-h) : t+h+1]`` with ``h = window // 2``, which does not lag (the figure).
    """
    v = np.asarray(values, dtype=np.float64)
    c = np.concatenate([[0.0], np.cumsum(v)])
    t = np.arange(len(v))
    if centered:
        lo, hi = np.maximum(0, t - window // 2), np.minimum(len(v), t + window // 2 + 1)
    else:
        lo, hi = np.maximum(0, t + 1 - window), t + 1
    return (c[hi] - c[lo]) / (hi - lo)


def _first_below(curve: np.ndarray, level: float) -> int | None:
    hit = np.nonzero(curve <= level)[0]
    return int(hit[0]) if hit.size else None


def _window(result: CNNResult) -> int:
    return max(1, min(result.config.smoothing_window, result.num_steps // 10))


def _runs(result: CNNResult) -> list[CNNRun]:
    return [r for r in (result.baseline, result.overparameterized) if r is not None]


_DATA_LEVELS = (1.0, 0.3, 0.1, 0.05, 0.03, 0.02, 0.01)


def _milestones(result: CNNResult) -> dict[str, Any]:
    """Steps to first reach loss levels (smoothed), fixed and relative to the baseline."""
    w = _window(result)
    out: dict[str, Any] = {"smoothing_window": w, "fixed_levels": [], "baseline_levels": {}}
    runs = _runs(result)
    for level in _DATA_LEVELS:
        out["fixed_levels"].append(
            {"series": "data_loss", "level": level,
             **{r.name: _first_below(smooth(r.data_loss, w), level) for r in runs}}
        )
    if result.baseline is not None and result.overparameterized is not None:
        for series in ("loss", "data_loss"):
            b = smooth(getattr(result.baseline, series), w)
            o = smooth(getattr(result.overparameterized, series), w)
            rows = []
            for frac in (0.1, 0.25, 0.5, 1.0):
                s_b = max(0, round(frac * result.num_steps) - 1)
                level = float(b[s_b])
                s_o = _first_below(o, level)
                rows.append({"fraction": frac, "baseline_step": s_b, "level": level,
                             "overparameterized_step": s_o})
            out["baseline_levels"][series] = rows
    return out


def _fmt_step(s: int | None) -> str:
    return "—" if s is None else str(s)


def summary_markdown(result: CNNResult) -> str:
    """A markdown report: parameter counts, steps to loss levels, accuracies, timing."""
    c, runs = result.config, _runs(result)
    m = _milestones(result)
    w = m["smoothing_window"]
    lines = [
        "# E3: MNIST ConvNet, baseline vs linearly overparameterized dense layers [ACH18]",
        "",
        f"TensorFlow-tutorial ConvNet, {result.num_steps} steps of SGD (momentum {c.momentum}, "
        f"batch {c.batch_size}, lr {c.learning_rate} × {c.decay_rate} per epoch of "
        f"{result.train_size} images), dropout keep {c.keep_prob}, L2 {c.weight_decay:g} on the "
        f"dense layers (twin: on the {'end-to-end products' if c.l2_target == 'product' else 'factors'}), "
        f"seed {c.seed}. Same initial function, batches and dropout masks for both nets; "
        "the twin's added matrices start at the identity.",
        "",
        "| net | parameters | first step (s) | steps/s | final test acc. | best test acc. | final val. acc. |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in runs:
        val = f"{100 * r.validation_accuracy[-1]:.2f} %" if r.validation_accuracy.size else "—"
        lines.append(
            f"| {r.name} | {r.param_count:,} | {r.first_step_seconds:.1f} | {r.steps_per_second:.2f} | "
            f"{100 * r.test_accuracy[-1]:.2f} % | {100 * np.max(r.test_accuracy):.2f} % | {val} |"
        )
    if len(runs) == 2:
        extra = runs[1].param_count - runs[0].param_count
        lines += ["", f"The twin has {extra:,} more parameters (+{100 * extra / runs[0].param_count:.1f} %)."]
    lines += [
        "",
        f"## Steps to first reach a cross-entropy level (without L2; trailing mean over {w} steps)",
        "",
        "| level | " + " | ".join(r.name for r in runs) + (" | ratio |" if len(runs) == 2 else ""),
        "|---:|" + "---:|" * len(runs) + ("---:|" if len(runs) == 2 else ""),
    ]
    for row in m["fixed_levels"]:
        cells = [_fmt_step(row[r.name]) for r in runs]
        ratio = ""
        if len(runs) == 2:
            b, o = row[runs[0].name], row[runs[1].name]
            ratio = f" {b / o:.2f} |" if b is not None and o not in (None, 0) else " — |"
        lines.append(f"| {row['level']:g} | " + " | ".join(cells) + " |" + ratio)
    for series, title in (("loss", "objective (with L2)"), ("data_loss", "cross-entropy (without L2)")):
        rows = m["baseline_levels"].get(series)
        if not rows:
            continue
        lines += [
            "",
            f"## Steps for the twin to reach the baseline's {title} (trailing mean over {w} steps)",
            "",
            "| baseline at step | its level | twin first reaches it at | speed-up |",
            "|---:|---:|---:|---:|",
        ]
        for row in rows:
            o = row["overparameterized_step"]
            speed = f"{(row['baseline_step'] + 1) / (o + 1):.2f}×" if o is not None else "never"
            lines.append(f"| {row['baseline_step']} | {row['level']:.4g} | {_fmt_step(o)} | {speed} |")
    lines += [
        "",
        f"## Final losses (trailing mean over the last {w} steps)",
        "",
        "| net | objective (with L2) | cross-entropy | L2 term |",
        "|---|---:|---:|---:|",
    ]
    for r in runs:
        tot, dat = float(np.mean(r.loss[-w:])), float(np.mean(r.data_loss[-w:]))
        lines.append(f"| {r.name} | {tot:.4g} | {dat:.4g} | {tot - dat:.4g} |")
    lines += ["", "## Test accuracy after each epoch", "",
              "| updates | " + " | ".join(r.name for r in runs) + " |",
              "|---:|" + "---:|" * len(runs)]
    for i, s in enumerate(runs[0].eval_step):
        lines.append(f"| {s} | " + " | ".join(f"{100 * r.test_accuracy[i]:.2f} %" for r in runs) + " |")
    lines += ["", "Times: " + "; ".join(
        f"{r.name} {r.train_seconds:.0f} s training + {r.eval_seconds:.0f} s evaluation" for r in runs
    ) + f" ({jax.default_backend()}).", ""]
    return "\n".join(lines)


def loss_figure(result: CNNResult):
    """Batch loss vs step for both nets, log y: objective, cross-entropy, and the L2 term."""
    from matplotlib.figure import Figure

    w = _window(result)
    fig = Figure(figsize=(15, 4.2))
    axes = fig.subplots(1, 3, sharex=True)
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
            ax.plot(steps, smooth(v, w, centered=True), color=colors[r.name], lw=1.6,
                    label=f"{r.name} ({r.param_count:,} params)")
        if all(np.all(series(r) > 0) for r in _runs(result)):
            ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel(f"batch loss (faint: raw, bold: centered mean over {w} steps)")
    axes[0].legend()
    fig.suptitle("E3: MNIST ConvNet, dense layers overparameterized by linear layers [ACH18]")
    return fig


def result_to_dict(result: CNNResult) -> dict[str, Any]:
    """Everything as JSON-ready Python objects: config, every step's losses, accuracies.

    Non-finite values (a diverged run) are written as ``null``.
    """

    def run_dict(r: CNNRun) -> dict[str, Any]:
        return {
            "param_count": r.param_count,
            "loss": [float(f"{x:.6g}") for x in r.loss],
            "data_loss": [float(f"{x:.6g}") for x in r.data_loss],
            "eval_step": [int(s) for s in r.eval_step],
            "test_accuracy": [float(a) for a in r.test_accuracy],
            "validation_accuracy": [float(a) for a in r.validation_accuracy],
            "first_step_seconds": r.first_step_seconds,
            "train_seconds": r.train_seconds,
            "eval_seconds": r.eval_seconds,
            "steps_per_second": r.steps_per_second,
        }

    return json_safe({
        "experiment": "E3 cnn_mnist",
        "config": result.config._asdict(),
        "train_size": result.train_size,
        "num_steps": result.num_steps,
        "runs": {r.name: run_dict(r) for r in _runs(result)},
        "milestones": _milestones(result),
    })


def write_outputs(result: CNNResult, out_dir: str | Path) -> dict[str, Path]:
    """Write ``cnn_results.json``, ``cnn_loss.png`` and ``cnn_summary.md`` into ``out_dir``."""
    from overparam_jax.results import atomic_write_text, save_figure, write_json

    out = Path(out_dir)
    paths = {
        "json": write_json(out / "cnn_results.json", result_to_dict(result)),
        "figure": save_figure(
            loss_figure(result), out / "cnn_loss.png",
            caption="E3: batch loss of the MNIST ConvNet and its linearly overparameterized twin",
        ),
        "summary": atomic_write_text(out / "cnn_summary.md", summary_markdown(result)),
    }
    return paths
