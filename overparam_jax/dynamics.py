r"""Trajectories: gradient descent, gradient flow and the end-to-end dynamics as ``lax.scan``.

Every method here integrates one of

* gradient descent (GD) on the layers, :math:`W_j \leftarrow W_j - \eta\,(\partial\phi/\partial W_j + \lambda W_j)`;
* gradient flow (GF), :math:`d\theta/dt = -\nabla\phi(\theta)`, by fixed-step Euler or RK4;
* the discrete end-to-end update [ACH18],
  :math:`W_e \leftarrow W_e - \eta\,(P_{W_e}\nabla\ell(W_e) + \lambda N W_e)` (THEORY.md §4);
* any ``optax.GradientTransformation`` on the layers,

and returns a :class:`Trajectory` sampled every ``save_every`` steps, starting at t = 0.

Divergence is data: after each step the new state and its loss are checked; the first
step whose loss or weights are non-finite is recorded in ``diverged_at`` and the run
freezes at its last finite state, so a vmapped sweep never spreads NaNs across cells.

Long runs can report progress and survive interruption: with ``progress=callback`` or
``checkpoint=PATH`` the scan runs in 20 chunks of records, one compiled chunk at a time;
``callback(done_steps, total_steps)`` is called after each, and the state is saved to
``PATH`` after each (:mod:`overparam_jax.checkpoint`), so that the same call resumes
where an interrupted one stopped. The result is identical to the single-scan run.

References:
    [ACH18] Arora, Cohen, Hazan, ICML 2018, Theorem 1 and §7 (discrete end-to-end update).
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from overparam_jax._validation import (
    is_concrete,
    require_float_array,
    require_positive,
    validate_params,
    validate_run_options,
)
from overparam_jax.checkpoint import array_digest, load_checkpoint, save_checkpoint, software_versions
from overparam_jax.losses import LossFn, overparameterized
from overparam_jax.networks import balancedness, end_to_end
from overparam_jax.preconditioner import _validate_depth, preconditioner_apply

__all__ = [
    "Trajectory",
    "end_to_end_descent",
    "gradient_descent",
    "gradient_flow",
    "optax_descent",
]

ProgressFn = Callable[[int, int], None]


class Trajectory(NamedTuple):
    """A run sampled every ``save_every`` steps, t = 0 included (``T = num_steps/save_every + 1``).

    Attributes:
        step: ``(T,)`` int, the iteration index of each record.
        time: ``(T,)`` the continuous time of each record: ``learning_rate * step`` for
            descent methods (the matching gradient-flow time), ``dt * step`` for flows.
        loss: ``(T,)`` :math:`\\ell(W_e)`.
        balancedness: ``(T,)`` :math:`\\max_j \\|W_{j+1}^\\top W_{j+1} - W_j W_j^\\top\\|_F`
            (0 for depth 1 and for the end-to-end dynamics, which assume exact balance).
        norm: ``(T,)`` :math:`\\|W_e\\|_F`.
        sigma_min: ``(T,)`` the smallest singular value of ``W_e`` (the min(d_N, d_0)-th).
        end_to_end: ``(T, d_N, d_0)`` when ``record_end_to_end=True``, else ``None``.
        diverged_at: ``()`` int, first step whose loss or weights were non-finite, else -1.
        final: the final state (``params`` for networks, ``W_e`` for the end-to-end dynamics).
    """

    step: jax.Array
    time: jax.Array
    loss: jax.Array
    balancedness: jax.Array
    norm: jax.Array
    sigma_min: jax.Array
    end_to_end: jax.Array | None
    diverged_at: jax.Array
    final: Any


class _Carry(NamedTuple):
    state: Any  # what the method advances (params, W_e, or (params, opt_state))
    loss: jax.Array  # loss at `state`
    grad: Any  # gradient at `state` (w.r.t. params or W_e)
    diverged_at: jax.Array
    step: jax.Array


class _Method(NamedTuple):
    """A discrete-time method: ``evaluate`` gives (loss, grad) of a state, ``advance`` one step."""

    evaluate: Callable[[Any], tuple[jax.Array, Any]]
    advance: Callable[[Any, jax.Array, Any], Any]  # (state, loss, grad) -> state
    weights: Callable[[Any], Any]  # state -> params (or W_e): checked for finiteness, returned
    end_to_end: Callable[[Any], jax.Array]  # weights -> W_e
    balancedness: Callable[[Any], jax.Array]  # weights -> delta


def _all_finite(tree: Any) -> jax.Array:
    leaves = jax.tree_util.tree_leaves(tree)
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves]))


def _step(method: _Method, carry: _Carry) -> _Carry:
    """One step; freeze (keep the old state) from the first non-finite state on."""
    new_state = method.advance(carry.state, carry.loss, carry.grad)
    new_loss, new_grad = method.evaluate(new_state)
    finite = jnp.isfinite(new_loss) & _all_finite(method.weights(new_state))
    accept = finite & (carry.diverged_at < 0)
    keep = lambda new, old: jax.tree_util.tree_map(lambda n, o: jnp.where(accept, n, o), new, old)
    first_failure = (~finite) & (carry.diverged_at < 0)
    return _Carry(
        state=keep(new_state, carry.state),
        loss=jnp.where(accept, new_loss, carry.loss),
        grad=keep(new_grad, carry.grad),
        diverged_at=jnp.where(first_failure, carry.step + 1, carry.diverged_at),
        step=carry.step + 1,
    )


def _observe(method: _Method, carry: _Carry, record_end_to_end: bool) -> dict[str, jax.Array]:
    """The per-record observables of the current state."""
    weights = method.weights(carry.state)
    W_e = method.end_to_end(weights)
    record = {
        "step": carry.step,
        "loss": carry.loss,
        "balancedness": method.balancedness(weights),
        "norm": jnp.linalg.norm(W_e),
        "sigma_min": jnp.linalg.svd(W_e, compute_uv=False)[-1],
    }
    if record_end_to_end:
        record["end_to_end"] = W_e
    return record


def _network_gradient(loss_fn: LossFn, weight_decay: jax.Array):
    """(loss, grad) of φ + (λ/2) Σ ||W_j||² at params; the recorded loss is φ alone."""
    phi = overparameterized(loss_fn)

    def evaluate(params):
        loss, grad = jax.value_and_grad(phi)(params)
        grad = jax.tree_util.tree_map(lambda g, W: g + weight_decay * W, grad, params)
        return loss, grad

    return evaluate


def _axpy(a, x, y):
    """x + a y over pytrees."""
    return jax.tree_util.tree_map(lambda u, v: u + a * v, x, y)


def _network_method(evaluate, advance) -> _Method:
    return _Method(evaluate, advance, lambda p: p, end_to_end, balancedness)


def _padded_balancedness(params, pairs):
    """Balancedness of a depth-padded network (see :mod:`overparam_jax.sweeps`).

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


def _make_method(kind: str, loss_fn: LossFn, hyper: dict[str, Any], optimizer) -> _Method:
    """The step rule of each method; ``hyper`` holds traced values (eta, lam, depth, dt, ...)."""
    if kind == "gd":
        return _network_method(
            _network_gradient(loss_fn, hyper["lam"]), lambda p, _, g: _axpy(-hyper["eta"], p, g)
        )
    if kind == "padded_gd":  # frozen layers have mask 0 (sweeps over depth)
        masked = lambda g: jax.tree_util.tree_map(jnp.multiply, hyper["mask"], g)
        return _Method(
            _network_gradient(loss_fn, hyper["lam"]),
            lambda p, _, g: _axpy(-hyper["eta"], p, masked(g)),
            lambda p: p,
            end_to_end,
            lambda p: _padded_balancedness(p, hyper["pairs"]),
        )
    if kind == "end_to_end":
        N, eta, lam = hyper["depth"], hyper["eta"], hyper["lam"]
        return _Method(
            jax.value_and_grad(loss_fn),
            lambda W, _, g: W - eta * (preconditioner_apply(W, g, N) + lam * N * W),
            lambda W: W,
            lambda W: W,
            lambda W: jnp.zeros((), W.dtype),  # the update assumes exact balance
        )
    if kind == "optax":
        evaluate = _network_gradient(loss_fn, 0.0)

        def advance(state, _, grad):
            p, opt_state = state
            updates, opt_state = optimizer.update(grad, opt_state, p)
            return optax.apply_updates(p, updates), opt_state

        return _Method(lambda s: evaluate(s[0]), advance, lambda s: s[0], end_to_end, balancedness)
    evaluate, h = _network_gradient(loss_fn, hyper["lam"]), hyper["dt"]
    if kind == "euler":
        return _network_method(evaluate, lambda p, _, g: _axpy(-h, p, g))

    def rk4(p, _, k1):
        k2 = evaluate(_axpy(-h / 2, p, k1))[1]
        k3 = evaluate(_axpy(-h / 2, p, k2))[1]
        k4 = evaluate(_axpy(-h, p, k3))[1]
        slope = jax.tree_util.tree_map(lambda a, b, c, d: (a + 2 * b + 2 * c + d) / 6, k1, k2, k3, k4)
        return _axpy(-h, p, slope)

    return _network_method(evaluate, rk4)


def _start(state, hyper, *, kind, loss_fn, optimizer, record_end_to_end):
    """The initial carry and the t = 0 record."""
    method = _make_method(kind, loss_fn, hyper, optimizer)
    loss, grad = method.evaluate(state)
    carry = _Carry(state, loss, grad, jnp.asarray(-1, jnp.int32), jnp.asarray(0, jnp.int32))
    return carry, _observe(method, carry, record_end_to_end)


def _advance_records(
    carry, hyper, *, kind, loss_fn, optimizer, record_end_to_end, num_records, save_every
):
    """``num_records`` records, each after ``save_every`` steps (a nested ``lax.scan``)."""
    method = _make_method(kind, loss_fn, hyper, optimizer)

    def inner(c, _):
        return _step(method, c), None

    def outer(c, _):
        c, _ = jax.lax.scan(inner, c, None, length=save_every)
        return c, _observe(method, c, record_end_to_end)

    return jax.lax.scan(outer, carry, None, length=num_records)


def _compiled(fn, static: tuple[str, ...], batched: bool):
    """``fn`` jitted with static keyword arguments, vmapped over its two array arguments if batched."""
    if not batched:
        return jax.jit(fn, static_argnames=static)

    def vmapped(state, hyper, **kwargs):
        return jax.vmap(functools.partial(fn, **kwargs))(state, hyper)

    return jax.jit(vmapped, static_argnames=static)


_STATIC = ("kind", "loss_fn", "optimizer", "record_end_to_end")
_COMPILED = {
    (name, batched): _compiled(fn, _STATIC + extra, batched)
    for name, fn, extra in (("start", _start, ()),
                            ("advance", _advance_records, ("num_records", "save_every")))
    for batched in (False, True)
}


def _validate_schedule(num_steps: int, save_every: int) -> int:
    for name, value in (("num_steps", num_steps), ("save_every", save_every)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"`{name}` must be an int, got {value!r}.")
    if num_steps < 0:
        raise ValueError(f"`num_steps` must be >= 0, got {num_steps}.")
    if num_steps > 2**31 - 1:
        raise ValueError(f"`num_steps` must be < 2**31 (steps are counted in int32), got {num_steps}.")
    if save_every < 1:
        raise ValueError(f"`save_every` must be >= 1, got {save_every}.")
    if num_steps % save_every:
        raise ValueError(
            f"`num_steps` ({num_steps}) must be a multiple of `save_every` ({save_every})."
        )
    return num_steps // save_every


def _chunk_sizes(num_records: int, num_chunks: int) -> list[int]:
    base, extra = divmod(num_records, num_chunks)
    return [base + (i < extra) for i in range(num_chunks) if base + (i < extra) > 0]


_TIME_UNIT = {"gd": "eta", "padded_gd": "eta", "end_to_end": "eta", "euler": "dt", "rk4": "dt"}


def _fingerprint(kind, carry, hyper, optimizer, batched, sizes, save_every, record_end_to_end):
    """What a checkpoint of :func:`_simulate` must match: the method, the schedule, the
    software versions, and the bytes of the initial state, its loss and gradient and the
    hyperparameters (which pin down the init, the loss function and its data). An optax
    optimizer is pinned by its first update."""
    probe = None
    if optimizer is not None:
        params, opt_state = carry.state
        update = lambda g, s, p: optimizer.update(g, s, p)[0]
        probe = (jax.vmap(update) if batched else update)(carry.grad, opt_state, params)
    return {
        "kind": kind, "batched": batched, "chunks": list(sizes), "save_every": save_every,
        "record_end_to_end": record_end_to_end,
        "sha256 of the initial state, loss, gradient and hyperparameters": array_digest((carry, hyper)),
        "sha256 of the optimizer's first update": None if probe is None else array_digest(probe),
        "versions": software_versions(),
    }


def _resume(path, fingerprint, carry):
    """The carry and the records saved at ``path`` (placed like ``carry``), or ``carry``
    and no records if there is no checkpoint yet."""
    saved = load_checkpoint(path, fingerprint)
    if saved is None:
        return carry, []
    leaves, treedef = jax.tree_util.tree_flatten(carry)
    restored = [jax.device_put(x, like.sharding) for x, like in
                zip(jax.tree_util.tree_leaves(saved["carry"]), leaves)]
    return jax.tree_util.tree_unflatten(treedef, restored), list(saved["records"])


def _simulate(
    kind: str,
    loss_fn: LossFn,
    state: Any,
    hyper: dict[str, Any],
    *,
    num_steps: int,
    save_every: int,
    record_end_to_end: bool = False,
    optimizer=None,
    progress: ProgressFn | None = None,
    checkpoint: str | os.PathLike | None = None,
    num_chunks: int = 20,
    batched: bool = False,
) -> Trajectory:
    """Run a method from ``state``: one compiled scan, or chunks with ``progress`` callbacks
    and/or a ``checkpoint`` file saved after each chunk (and resumed from, if present).

    Every path runs the same compiled step, so their results are identical. With
    ``batched=True`` every leaf of ``state`` and ``hyper`` has a leading run axis and
    all runs go through one vmapped compiled scan.
    """
    num_records = _validate_schedule(num_steps, save_every)
    static = dict(kind=kind, loss_fn=loss_fn, optimizer=optimizer, record_end_to_end=record_end_to_end)
    carry, first = _COMPILED["start", batched](state, hyper, **static)
    chunked = progress is not None or checkpoint is not None
    sizes = _chunk_sizes(num_records, num_chunks) if chunked else [num_records]
    chunks: list[Any] = []
    if checkpoint is not None:
        fingerprint = _fingerprint(kind, carry, hyper, optimizer, batched, sizes, save_every,
                                   record_end_to_end)
        carry, chunks = _resume(checkpoint, fingerprint, carry)
    done = sum(sizes[: len(chunks)]) * save_every
    if chunks and progress is not None:
        progress(done, num_steps)
    for size in sizes[len(chunks):]:
        carry, records = _COMPILED["advance", batched](
            carry, hyper, num_records=size, save_every=save_every, **static
        )
        chunks.append(records)
        done += size * save_every
        if checkpoint is not None:
            save_checkpoint(checkpoint, fingerprint, {"carry": carry, "records": chunks})
        if progress is not None:
            jax.block_until_ready(records)
            progress(done, num_steps)
    axis = 1 if batched else 0
    stacked = jax.tree_util.tree_map(
        lambda x0, *xs: jnp.concatenate([jnp.expand_dims(x0, axis), *xs], axis=axis), first, *chunks
    )
    unit = hyper[_TIME_UNIT[kind]] if kind in _TIME_UNIT else jnp.ones((), stacked["loss"].dtype)
    unit = jnp.expand_dims(unit, -1) if batched and jnp.ndim(unit) else unit
    method = _make_method(kind, loss_fn, hyper, optimizer)
    return Trajectory(
        step=stacked["step"],
        time=stacked["step"] * unit,
        loss=stacked["loss"],
        balancedness=stacked["balancedness"],
        norm=stacked["norm"],
        sigma_min=stacked["sigma_min"],
        end_to_end=stacked.get("end_to_end"),
        diverged_at=carry.diverged_at,
        final=method.weights(carry.state),
    )


def _as_float(value: Any, like: jax.Array, name: str) -> jax.Array:
    require_positive(name, value, allow_zero=True)
    return jnp.asarray(value, dtype=like.dtype)


def gradient_descent(
    loss_fn: LossFn,
    params: Sequence[jax.Array],
    *,
    learning_rate: float,
    num_steps: int,
    save_every: int = 1,
    weight_decay: float = 0.0,
    record_end_to_end: bool = False,
    progress: ProgressFn | None = None,
    checkpoint: str | os.PathLike | None = None,
) -> Trajectory:
    r"""Full-batch gradient descent on :math:`\phi(W_1..W_N) = \ell(W_N \cdots W_1)`.

    .. math:: W_j(t+1) = W_j(t) - \eta \left(\frac{\partial\phi}{\partial W_j} + \lambda W_j(t)\right)

    Args:
        loss_fn: :math:`\ell`, a function of the end-to-end matrix. Reuse the same object
            across calls to reuse the compiled loop.
        params: ``(W_1, ..., W_N)``.
        learning_rate: :math:`\eta \ge 0` (may be traced, e.g. vmapped).
        num_steps: number of steps (static); a multiple of ``save_every``.
        save_every: record every this many steps (static).
        weight_decay: :math:`\lambda \ge 0` on every layer (may be traced).
        record_end_to_end: also record ``W_e`` at every record.
        progress: optional ``callback(done_steps, total_steps)``; the scan then runs in
            chunks (not traceable, identical result).
        checkpoint: optional file path. The scan runs in chunks and the state is saved
            there (atomically) after each; a call that finds a checkpoint of the same
            computation resumes from it, bit-identical to an uninterrupted run, and one of
            a different computation raises
            :class:`~overparam_jax.checkpoint.CheckpointMismatch`.

    Returns:
        A :class:`Trajectory` with ``time = learning_rate * step``; ``final`` is the params.

    Examples:
        >>> import functools, jax, jax.numpy as jnp
        >>> from overparam_jax import init_balanced, whitened_l2_loss
        >>> loss = functools.partial(whitened_l2_loss, Phi=jnp.eye(2))
        >>> traj = gradient_descent(loss, init_balanced(jax.random.key(0), (2, 2, 2), std=0.1),
        ...                         learning_rate=0.1, num_steps=100, save_every=50)
        >>> traj.loss.shape
        (3,)
    """
    validate_params(params)
    validate_run_options(loss_fn, record_end_to_end, progress)
    params = tuple(params)
    hyper = {
        "eta": _as_float(learning_rate, params[0], "learning_rate"),
        "lam": _as_float(weight_decay, params[0], "weight_decay"),
    }
    return _simulate("gd", loss_fn, params, hyper, num_steps=num_steps, save_every=save_every,
                     record_end_to_end=record_end_to_end, progress=progress,
                     checkpoint=checkpoint)


def end_to_end_descent(
    loss_fn: LossFn,
    W_e: jax.Array,
    *,
    depth: float,
    learning_rate: float,
    num_steps: int,
    save_every: int = 1,
    weight_decay: float = 0.0,
    record_end_to_end: bool = False,
    progress: ProgressFn | None = None,
    checkpoint: str | os.PathLike | None = None,
) -> Trajectory:
    r"""The discrete end-to-end update of a depth-N network [ACH18, THEORY.md §4].

    .. math:: W_e(t+1) = W_e(t) - \eta \left( P_{W_e(t)} \nabla\ell(W_e(t)) + \lambda N W_e(t) \right)

    Depth enters only as a number: ``depth`` may be traced (vmapped) and non-integer.
    GD on a balanced network tracks this update up to O(η).

    Args:
        loss_fn: :math:`\ell`, a function of ``W_e``.
        W_e: the initial end-to-end matrix ``(d_N, d_0)``.
        depth: :math:`N > 0`.
        learning_rate, num_steps, save_every, weight_decay, record_end_to_end, progress,
            checkpoint: as in :func:`gradient_descent`.

    Returns:
        A :class:`Trajectory` (``balancedness`` is 0: the update assumes exact balance);
        ``final`` is ``W_e``.
    """
    require_float_array("W_e", W_e, ndim=2)
    validate_run_options(loss_fn, record_end_to_end, progress)
    _validate_depth(depth)
    hyper = {
        "eta": _as_float(learning_rate, W_e, "learning_rate"),
        "lam": _as_float(weight_decay, W_e, "weight_decay"),
        "depth": jnp.asarray(depth, W_e.dtype),
    }
    return _simulate("end_to_end", loss_fn, W_e, hyper, num_steps=num_steps,
                     save_every=save_every, record_end_to_end=record_end_to_end,
                     progress=progress, checkpoint=checkpoint)


def optax_descent(
    loss_fn: LossFn,
    params: Sequence[jax.Array],
    optimizer: optax.GradientTransformation,
    *,
    num_steps: int,
    save_every: int = 1,
    record_end_to_end: bool = False,
    progress: ProgressFn | None = None,
    checkpoint: str | os.PathLike | None = None,
) -> Trajectory:
    """Any ``optax.GradientTransformation`` (AdaGrad, AdaDelta, Adam, ...) on the layers of φ.

    ``time`` counts steps (an adaptive optimizer has no single learning rate to scale by).
    ``final`` is the params. ``num_steps``, ``save_every``, ``record_end_to_end``,
    ``progress`` and ``checkpoint`` are as in :func:`gradient_descent`.

    Examples:
        >>> import functools, jax, jax.numpy as jnp, optax
        >>> from overparam_jax import init_balanced, whitened_l2_loss
        >>> loss = functools.partial(whitened_l2_loss, Phi=jnp.eye(2))
        >>> p0 = init_balanced(jax.random.key(0), (2, 2, 2), std=0.1)
        >>> optax_descent(loss, p0, optax.adam(1e-2), num_steps=10).loss.shape
        (11,)
    """
    validate_params(params)
    validate_run_options(loss_fn, record_end_to_end, progress)
    params = tuple(params)
    if not isinstance(optimizer, optax.GradientTransformation):
        raise TypeError(
            f"`optimizer` must be an optax.GradientTransformation, got {type(optimizer).__name__}."
        )
    state = (params, optimizer.init(params))
    return _simulate("optax", loss_fn, state, {}, num_steps=num_steps, save_every=save_every,
                     record_end_to_end=record_end_to_end, optimizer=optimizer, progress=progress,
                     checkpoint=checkpoint)


_FLOW_METHODS = ("euler", "rk4")


def gradient_flow(
    loss_fn: LossFn,
    params: Sequence[jax.Array],
    *,
    t_final: float,
    dt: float,
    method: str = "rk4",
    save_every: int = 1,
    weight_decay: float = 0.0,
    record_end_to_end: bool = False,
    progress: ProgressFn | None = None,
    checkpoint: str | os.PathLike | None = None,
) -> Trajectory:
    r"""Gradient flow :math:`d\theta/dt = -\nabla\phi(\theta) - \lambda\theta` by a fixed-step
    integrator (THEORY.md §6): ``"euler"`` (order 1, identical to GD with η = dt) or
    classical ``"rk4"`` (order 4).

    Args:
        loss_fn, params, weight_decay, record_end_to_end, progress, checkpoint: as in
            :func:`gradient_descent`.
        t_final: the final time ``> 0``; ``t_final / dt`` must be a whole number of steps
            (static), a multiple of ``save_every``.
        dt: the step ``> 0``.
        method: ``"euler"`` or ``"rk4"``.

    Returns:
        A :class:`Trajectory` with ``time = dt * step``.
    """
    validate_params(params)
    validate_run_options(loss_fn, record_end_to_end, progress)
    params = tuple(params)
    if method not in _FLOW_METHODS:
        raise ValueError(f"`method` must be one of {_FLOW_METHODS}, got {method!r}.")
    for name, value in (("t_final", t_final), ("dt", dt)):
        if not is_concrete(value):
            raise TypeError(f"`{name}` must be a concrete number (it fixes the number of steps).")
        require_positive(name, value)
    ratio = float(t_final) / float(dt)
    if not math.isfinite(ratio):
        raise ValueError(f"`t_final / dt` must be a finite number of steps, got {t_final} / {dt}.")
    num_steps = round(ratio)
    if abs(ratio - num_steps) > 1e-9 * max(1.0, ratio):
        raise ValueError(f"`t_final / dt` must be a whole number of steps, got {ratio}.")
    hyper = {
        "dt": jnp.asarray(dt, params[0].dtype),
        "lam": _as_float(weight_decay, params[0], "weight_decay"),
    }
    return _simulate(method, loss_fn, params, hyper, num_steps=num_steps, save_every=save_every,
                     record_end_to_end=record_end_to_end, progress=progress,
                     checkpoint=checkpoint)
