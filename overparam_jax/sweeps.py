r"""Sweeps: a whole grid of runs — seeds × learning rates × init scales × depths — in one
compiled, vmapped ``lax.scan``, sharded over devices when there are several.

**Depth as a vmapped axis.** Runs must share array shapes to be batched, so every
network is laid out as the deepest one, with layer shapes
``[(h, d_0), (h, h) × (D-2), (d_N, h)]`` for maximal depth ``D`` and hidden width ``h``.
A depth-``N`` network (``2 <= N <= D``) puts ``W_1 .. W_{N-1}`` in the first positions,
frozen identity matrices ``I_h`` in the next ``D - N``, and ``W_N`` last:

.. math:: W_N \, I_h \cdots I_h \, W_{N-1} \cdots W_1 = W_N \cdots W_1 .

Frozen layers get a zero gradient mask, so GD on the padded network is GD on the
depth-``N`` network; identity products are exact in floating point, so the runs agree
with the unpadded ones to round-off of the chain order. Depth 1 (the linear model)
needs ``h >= d_N``: ``W`` sits in the first ``d_N`` rows of position 1 (the other rows
frozen at zero) and position ``D`` is the frozen ``[I_{d_N}, 0]``.

**What shares one compile.** All cells of a sweep (every seed, learning rate, init scale
and depth ``<= D``) run in a single compiled program for a given
``(loss_fn, input_dim, hidden_width, output_dim, max(depths), num_steps, save_every,
dtype)``. For the end-to-end dynamics depth is a traced number, and any depths share it.

**Sharding.** With more than one device (GPUs, TPU cores, or
``XLA_FLAGS=--xla_force_host_platform_device_count=4`` on CPU) the flattened run axis —
seed-major, so whole seeds when their number divides evenly — is split over a
``jax.sharding.Mesh``; JAX's SPMD partitioner does the rest. If the number of runs does
not divide evenly, the last run is repeated to fill the devices (:func:`shard_runs`) and
the copies are dropped from the result. One CPU device already spreads a program's matrix
products over the cores: splitting a sweep over two CPU devices
(``jax_num_cpu_devices``) ran it 1.3× slower on a 2-core machine.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from overparam_jax._validation import (
    MAX_ARRAY_ENTRIES,
    float_dtype,
    require_int,
    require_positive,
    validate_params,
    validate_run_options,
)
from overparam_jax.dynamics import EndToEndUpdate, GradientDescent, OptaxRule, Trajectory, simulate, step_rule
from overparam_jax.losses import LossFn
from overparam_jax.networks import end_to_end, init_balanced, init_gaussian
from overparam_jax.runner import ProgressFn, on_host

__all__ = [
    "SWEEP_AXES",
    "PaddedGradientDescent",
    "PaddedOptax",
    "SweepResult",
    "pad_to_depth",
    "shard_runs",
    "sweep",
]

SWEEP_AXES = ("seed", "learning_rate", "init_std", "depth")
InitFn = Callable[..., tuple[jax.Array, ...]]
_INITS: dict[str, InitFn] = {"balanced": init_balanced, "gaussian": init_gaussian}
_DYNAMICS = ("network", "end_to_end", "optax")


class SweepResult(NamedTuple):
    """The runs of a grid.

    Attributes:
        trajectory: a :class:`Trajectory` whose fields have leading axes
            ``(seed, learning_rate, init_std, depth)`` before their own (time, ...) axes;
            ``final`` holds the padded params (network, optax) or ``W_e`` (end-to-end).
        coords: the values along each axis, keyed by the names in :data:`SWEEP_AXES`.
        initial: the weights every run started from, with the same leading axes: the
            padded params (network, optax; a depth-N network inside a deeper layout, see
            :func:`pad_to_depth`) or ``W_e`` (end-to-end).
        axes: :data:`SWEEP_AXES`.
    """

    trajectory: Trajectory
    coords: dict[str, np.ndarray]
    initial: Any = None
    axes: tuple[str, ...] = SWEEP_AXES


class _Padding(NamedTuple):
    params: tuple[jax.Array, ...]
    mask: tuple[jax.Array, ...]
    pairs: tuple[jax.Array, jax.Array]


def _network_dims(input_dim: int, hidden_width: int, output_dim: int, depth: int) -> tuple[int, ...]:
    return (input_dim,) + (hidden_width,) * (depth - 1) + (output_dim,)


def pad_to_depth(
    params: Sequence[jax.Array], max_depth: int, *, hidden_width: int | None = None
) -> _Padding:
    """Lay a depth-N network out as a depth-``max_depth`` one (see the module docstring).

    The values are copied as they are (NaN/Inf included); ``params`` must chain and, to be
    padded with identity layers, have equal hidden widths.

    Args:
        params: ``(W_1, ..., W_N)`` with hidden width ``h`` (all hidden widths equal).
        max_depth: ``D >= N``.
        hidden_width: the padded width ``h``; needed only to pad depth 1 (``h >= d_N``).

    Returns:
        ``(params, mask, pairs)``: the padded layers, their 0/1 gradient masks, and the
        boolean masks selecting the real consecutive pairs for the balancedness.
    """
    dims = validate_params(params)
    require_int("max_depth", max_depth)
    if hidden_width is not None:
        require_int("hidden_width", hidden_width)
    params = tuple(params)
    N, D = len(params), max_depth
    if D > N >= 2 and len(set(dims[1:-1])) > 1:
        raise ValueError(
            f"`params` must have equal hidden widths to be padded with identity layers, but "
            f"has dims {dims}."
        )
    if D < N:
        raise ValueError(f"`max_depth` ({D}) must be >= the depth of `params` ({N}).")
    dtype = params[0].dtype
    if D == 1:
        false = jnp.zeros((0,), bool)
        return _Padding(params, (jnp.ones_like(params[0]),), (false, false))
    if N == 1:
        (W,) = params
        d_N, d_0 = W.shape
        h = hidden_width
        if h is None or h < d_N:
            raise ValueError(f"`hidden_width` must be >= d_N = {d_N} to pad depth 1, got {h}.")
        first = jnp.zeros((h, d_0), dtype).at[:d_N].set(W)
        first_mask = jnp.zeros((h, d_0), dtype).at[:d_N].set(1)
        last = jnp.eye(d_N, h, dtype=dtype)
        layers = (first,) + (jnp.eye(h, dtype=dtype),) * (D - 2) + (last,)
        mask = (first_mask,) + tuple(jnp.zeros_like(W_) for W_ in layers[1:])
    else:
        h = params[0].shape[0]
        identities = (jnp.eye(h, dtype=dtype),) * (D - N)
        layers = params[:-1] + identities + params[-1:]
        mask = tuple(jnp.ones_like(W_) for W_ in params[:-1])
        mask += tuple(jnp.zeros_like(W_) for W_ in identities) + (jnp.ones_like(params[-1]),)
    positions = np.arange(D - 1)
    adjacent = jnp.asarray(positions <= N - 3)
    to_last = jnp.asarray(positions == N - 2)
    return _Padding(layers, mask, (adjacent, to_last))


def _padded_balancedness(params, pairs):
    """Balancedness of a depth-padded network.

    ``pairs = (adjacent, to_last)`` are boolean masks over positions ``i = 0..D-2``: which
    gaps ``||W_{i+1}^T W_{i+1} - W_i W_i^T||`` and ``||W_D^T W_D - W_i W_i^T||`` join two
    consecutive *real* layers (frozen identity layers sit between them).
    """
    if len(params) == 1:  # a sweep of depth 1 only: no pair of layers
        return jnp.zeros((), params[0].dtype)
    adjacent, to_last = pairs
    outer = [W @ W.T for W in params[:-1]]
    inner_next = [W.T @ W for W in params[1:]]
    gaps_adjacent = jnp.stack([jnp.linalg.norm(b - a) for a, b in zip(outer, inner_next)])
    gaps_last = jnp.stack([jnp.linalg.norm(inner_next[-1] - a) for a in outer])
    zero = jnp.zeros_like(gaps_last)
    return jnp.maximum(
        jnp.max(jnp.where(adjacent, gaps_adjacent, zero)), jnp.max(jnp.where(to_last, gaps_last, zero))
    )


@step_rule
class PaddedGradientDescent(GradientDescent):
    """Gradient descent on a depth-padded network (:func:`pad_to_depth`): the frozen layers
    have gradient mask 0, so this is GD on the depth-N network inside it, and the recorded
    balancedness is over its real consecutive layers."""

    mask: tuple[jax.Array, ...] = ()
    pairs: tuple[jax.Array, jax.Array] = ()

    def step(self, params, grad):
        return GradientDescent.step(self, params, jax.tree_util.tree_map(jnp.multiply, self.mask, grad))

    def observe(self, params):
        return {**GradientDescent.observe(self, params), "balancedness": _padded_balancedness(params, self.pairs)}


@step_rule
class PaddedOptax(OptaxRule):
    """An optax optimizer on a depth-padded network: its learning rate is a traced leaf
    (set in the state of an ``optax.inject_hyperparams`` optimizer, so one compiled program
    serves the whole learning-rate axis) and its updates are masked on the frozen layers."""

    learning_rate: jax.Array = 0.0
    mask: tuple[jax.Array, ...] = ()
    pairs: tuple[jax.Array, jax.Array] = ()

    def init(self, params):
        params, opt_state = OptaxRule.init(self, params)
        hyperparams = {**opt_state.hyperparams, "learning_rate": self.learning_rate}
        return params, opt_state._replace(hyperparams=hyperparams)

    def step(self, state, grad):
        params, opt_state = state
        updates, opt_state = self.optimizer.update(grad, opt_state, params)
        updates = jax.tree_util.tree_map(jnp.multiply, self.mask, updates)
        return optax.apply_updates(params, updates), opt_state

    def observe(self, state):
        return {**OptaxRule.observe(self, state), "balancedness": _padded_balancedness(state[0], self.pairs)}


@functools.lru_cache(maxsize=None)
def _injected(optimizer: Callable[..., optax.GradientTransformation]) -> optax.GradientTransformation:
    """``optimizer(learning_rate=...)`` with its learning rate in its state (traced), one
    object per factory so that sweeps of the same optimizer share their compiled program."""
    return optax.inject_hyperparams(optimizer)(learning_rate=0.0)


def _stack_trees(trees: Sequence[Any]) -> Any:
    return jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *trees)


def _validate_axis(name: str, values: Sequence[Any], *, positive: bool = True) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"`{name}` must be a non-empty 1-D sequence, got shape {arr.shape}.")
    if positive:
        for v in arr:
            require_positive(name, v, allow_zero=(name == "learning_rates"))
    return arr


def _validate_grid(seeds, learning_rates, init_stds, depths, init, dynamics):
    seeds = _validate_axis("seeds", seeds, positive=False)
    if not np.issubdtype(seeds.dtype, np.integer):
        raise TypeError(f"`seeds` must be integers, got dtype {seeds.dtype}.")
    learning_rates = _validate_axis("learning_rates", learning_rates)
    init_stds = _validate_axis("init_stds", init_stds)
    depths = _validate_axis("depths", depths)
    if not np.issubdtype(depths.dtype, np.integer):
        raise TypeError(f"`depths` must be integers, got {depths.tolist()}.")
    if isinstance(init, str) and init not in _INITS:
        raise ValueError(f"`init` must be one of {sorted(_INITS)} or a callable, got {init!r}.")
    if not isinstance(init, str) and not callable(init):
        raise TypeError(f"`init` must be one of {sorted(_INITS)} or a callable, got {init!r}.")
    if dynamics not in _DYNAMICS:
        raise ValueError(f"`dynamics` must be one of {_DYNAMICS}, got {dynamics!r}.")
    return seeds, learning_rates, init_stds, depths


def _initial_states(init_fn, keys, scales, depths, dims_of, dtype):
    """Per depth (a static Python loop over shapes), vmapped over seeds × scales."""

    def one(depth):
        sample = lambda k, s: init_fn(k, dims_of(depth), std=s, dtype=dtype)
        return jax.vmap(lambda k: jax.vmap(lambda s: sample(k, s))(scales))(keys)

    return [one(int(d)) for d in depths]


@functools.partial(
    jax.jit,
    static_argnames=("init_fn", "input_dim", "hidden_width", "output_dim", "depths", "dynamics", "dtype"),
)
def _grid_state(seeds, learning_rates, init_stds, weight_decay, *, init_fn, input_dim,
                hidden_width, output_dim, depths, dynamics, dtype):
    """The initial state and hyperparameters of every run, flattened seed-major.

    One compiled program per grid shape: the inits, the depth padding and the gathers
    would otherwise run op by op (dozens of small compiles on the first call and as many
    dispatches on every call).
    """
    S, L, C, K = len(seeds), len(learning_rates), len(init_stds), len(depths)
    D = max(depths)
    keys = jax.vmap(jax.random.key)(seeds)
    dims_of = lambda depth: _network_dims(input_dim, hidden_width, output_dim, depth)
    inits = _initial_states(init_fn, keys, init_stds, depths, dims_of, dtype)  # K × (S, C, ...)
    if dynamics != "end_to_end":
        pad = jax.vmap(jax.vmap(lambda p: pad_to_depth(p, D, hidden_width=hidden_width)))
        per_depth = [pad(p) for p in inits]
    else:
        per_depth = [jax.vmap(jax.vmap(end_to_end))(p) for p in inits]
    grid = _stack_trees(per_depth)  # leaves (K, S, C, ...)
    # Flatten the grid seed-major: run r = ((s * L + l) * C + c) * K + k.
    s_idx, l_idx, c_idx, k_idx = (jnp.asarray(i.ravel()) for i in np.indices((S, L, C, K)))
    grid = jax.tree_util.tree_map(lambda x: x[k_idx, s_idx, c_idx], grid)
    etas = learning_rates[l_idx]
    lam = jnp.broadcast_to(weight_decay, etas.shape)
    if dynamics != "end_to_end":
        return grid.params, {"eta": etas, "lam": lam, "mask": grid.mask, "pairs": grid.pairs}
    depth = jnp.asarray(depths, dtype)[k_idx]
    return grid, {"eta": etas, "lam": lam, "depth": depth}


def shard_runs(tree: Any) -> tuple[Any, int]:
    """Split the leading run axis of every leaf of ``tree`` over all devices — of every
    process under ``jax.distributed`` (each process must pass the same ``tree``).

    With ``k > 1`` devices the axis is padded to a multiple of ``k`` by repeating the
    last run, so every device gets the same number of runs; slice results with ``[:n]``.
    With one device ``tree`` is returned as it is.

    Returns:
        ``(tree, n)``: the placed (possibly padded) tree and the number of real runs.
    """
    devices = jax.devices()
    n = jax.tree_util.tree_leaves(tree)[0].shape[0]
    if len(devices) < 2:
        return tree, n
    extra = -n % len(devices)
    if extra:
        tree = jax.tree_util.tree_map(
            lambda x: jnp.concatenate([x, jnp.repeat(x[-1:], extra, axis=0)]), tree
        )
    if jax.process_count() > 1:  # a global array is built from the same host value everywhere
        tree = jax.tree_util.tree_map(np.asarray, tree)
    mesh = Mesh(np.asarray(devices), ("runs",))
    return jax.device_put(tree, NamedSharding(mesh, PartitionSpec("runs"))), n


def sweep(
    loss_fn: LossFn,
    *,
    input_dim: int,
    output_dim: int,
    hidden_width: int,
    depths: Sequence[int],
    seeds: Sequence[int],
    learning_rates: Sequence[float],
    init_stds: Sequence[float],
    num_steps: int,
    save_every: int = 1,
    init: str | InitFn = "balanced",
    dynamics: str = "network",
    optimizer: Callable[..., optax.GradientTransformation] | None = None,
    weight_decay: float = 0.0,
    record_end_to_end: bool = False,
    dtype=None,
    progress: ProgressFn | None = None,
    checkpoint: str | os.PathLike | None = None,
    check_finite: bool = True,
) -> SweepResult:
    r"""Run the grid seeds × learning rates × init scales × depths as one compiled program.

    Each cell is full-batch GD on the depth-N network with dims
    ``(input_dim, hidden_width, ..., hidden_width, output_dim)`` from ``init`` at std
    ``init_std`` (``dynamics="network"``), or the discrete end-to-end update from the
    end-to-end matrix of that init (``dynamics="end_to_end"``, THEORY.md §4). A cell that
    diverges reports ``diverged_at`` and does not affect the others.

    Args:
        loss_fn: :math:`\ell(W_e)`.
        input_dim, output_dim, hidden_width: ``d_0``, ``d_N`` and the hidden width.
        depths: network depths N >= 1 (integers).
        seeds: integer seeds; run ``(seed, ...)`` initializes from ``jax.random.key(seed)``.
        learning_rates: step sizes η >= 0.
        init_stds: init stds > 0.
        num_steps, save_every, weight_decay, record_end_to_end, progress, checkpoint: as in
            :func:`overparam_jax.gradient_descent` (a checkpoint saves the whole grid's
            state after each of the 20 chunks; a rerun of the same sweep resumes from it).
        init: ``"balanced"``, ``"gaussian"`` or ``init_fn(key, dims, *, std, dtype)``.
        dynamics: ``"network"`` (GD), ``"end_to_end"`` (the discrete end-to-end update) or
            ``"optax"`` (``optimizer`` on the network).
        optimizer: with ``dynamics="optax"``, an optax optimizer factory taking
            ``learning_rate`` (``optax.adam``, ``optax.adagrad``, ...); the grid's learning
            rates are injected into its state (``optax.inject_hyperparams``), so the whole
            grid is one compiled program. Any weight decay belongs in the optimizer.
        dtype: float dtype (default: float64 with x64 enabled, else float32).
        check_finite: as in :func:`overparam_jax.dynamics.simulate` (False: no divergence
            detection, a little faster).

    Returns:
        A :class:`SweepResult`; trajectory fields have shape
        ``(len(seeds), len(learning_rates), len(init_stds), len(depths), T, ...)``.
    """
    seeds, learning_rates, init_stds, depths = _validate_grid(
        seeds, learning_rates, init_stds, depths, init, dynamics
    )
    if (dynamics == "optax") != (optimizer is not None):
        raise ValueError("`optimizer` (an optax factory such as optax.adam) goes with dynamics='optax' "
                         f"and only with it; got dynamics={dynamics!r}, optimizer={optimizer!r}.")
    if optimizer is not None and not callable(optimizer):
        raise TypeError(f"`optimizer` must be an optax optimizer factory, got {type(optimizer).__name__}.")
    if dynamics == "optax" and weight_decay:
        raise ValueError("`weight_decay` does not apply to dynamics='optax': put it in the optimizer.")
    validate_run_options(loss_fn, record_end_to_end, progress)
    for name, value in (("input_dim", input_dim), ("hidden_width", hidden_width),
                        ("output_dim", output_dim)):
        require_int(name, value, minimum=1)
    if int(hidden_width) * max(int(hidden_width), int(input_dim), int(output_dim)) > MAX_ARRAY_ENTRIES:
        raise ValueError(
            f"`hidden_width` ({hidden_width}) with `input_dim` ({input_dim}) and `output_dim` "
            f"({output_dim}) asks for layers larger than an array can hold."
        )
    require_positive("weight_decay", weight_decay, allow_zero=True)
    dtype = float_dtype("dtype", dtype)
    init_fn = _INITS[init] if isinstance(init, str) else init
    D = int(depths.max())
    if dynamics != "end_to_end" and 1 in depths and D > 1 and hidden_width < output_dim:
        raise ValueError(
            f"`hidden_width` ({hidden_width}) must be >= `output_dim` ({output_dim}) to sweep "
            "depth 1 beside deeper networks (the linear model is embedded in the padded layers)."
        )
    if init == "balanced" and D > 1 and hidden_width < min(input_dim, output_dim):
        raise ValueError(
            f"`hidden_width` ({hidden_width}) must be >= min(`input_dim`, `output_dim`) = "
            f"{min(input_dim, output_dim)} for the balanced init of depths >= 2."
        )
    S, L, C, K = len(seeds), len(learning_rates), len(init_stds), len(depths)
    state, hyper = _grid_state(
        jnp.asarray(seeds), jnp.asarray(learning_rates, dtype), jnp.asarray(init_stds, dtype),
        jnp.asarray(weight_decay, dtype), init_fn=init_fn, input_dim=input_dim,
        hidden_width=hidden_width, output_dim=output_dim, depths=tuple(int(d) for d in depths),
        dynamics=dynamics, dtype=dtype,
    )
    rule = _grid_rule(dynamics, loss_fn, optimizer, hyper)
    initial = state
    (state, rule), n = shard_runs((state, rule))
    traj = simulate(rule, state, num_steps=num_steps, save_every=save_every,
                    record_end_to_end=record_end_to_end, progress=progress, checkpoint=checkpoint,
                    batched=True, check_finite=check_finite)
    if jax.process_count() > 1:  # every process returns every run
        traj = jax.tree_util.tree_map(jnp.asarray, on_host(traj))
    traj = jax.tree_util.tree_map(lambda x: x[:n], traj)
    traj = jax.tree_util.tree_map(lambda x: x.reshape((S, L, C, K) + x.shape[1:]), traj)
    coords = {"seed": seeds, "learning_rate": learning_rates, "init_std": init_stds, "depth": depths}
    initial = jax.tree_util.tree_map(lambda x: x.reshape((S, L, C, K) + x.shape[1:]), initial)
    return SweepResult(traj, coords, initial)


def _grid_rule(dynamics: str, loss_fn: LossFn, optimizer, hyper: dict[str, Any]):
    """The step rule of every run (its hyper-parameters with a leading run axis)."""
    if dynamics == "network":
        return PaddedGradientDescent(loss_fn, hyper["eta"], hyper["lam"], hyper["mask"], hyper["pairs"])
    if dynamics == "optax":
        return PaddedOptax(loss_fn, _injected(optimizer), hyper["eta"], hyper["mask"], hyper["pairs"])
    return EndToEndUpdate(loss_fn, hyper["depth"], hyper["eta"], hyper["lam"])
