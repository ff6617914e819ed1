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

Each method is a *step rule*: a small frozen dataclass registered as a pytree, whose
hyper-parameters (learning rate, weight decay, step, depth) are leaves — traced, so they
can be vmapped — and whose loss function (and optax optimizer) are static fields, part of
the compiled program. :class:`GradientDescent`, :class:`EndToEndUpdate`,
:class:`OptaxRule`, :class:`Euler` and :class:`RK4` here (the padded GD of a depth sweep
lives with the sweep, :mod:`overparam_jax.sweeps`); each has ``init`` (weights to state),
``evaluate`` (loss and gradient of a state), ``step`` (one step from a state and its
gradient) and ``observe`` (the recorded quantities of a state). :func:`simulate` runs any
rule as one compiled ``lax.scan`` — or, with ``progress=callback`` or ``checkpoint=PATH``,
in 20 chunks through :func:`overparam_jax.runner.run_chunks`, reporting progress and
saving its state after each so that the same call resumes where an interrupted one
stopped. Every path runs the same compiled step, so the results are identical.

References:
    [ACH18] Arora, Cohen, Hazan, ICML 2018, Theorem 1 and §7 (discrete end-to-end update).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
from collections.abc import Sequence
from typing import Any, NamedTuple

import chex
import jax
import jax.numpy as jnp
import optax

from overparam_jax._validation import (
    is_concrete,
    require_depth,
    require_float_array,
    require_positive,
    validate_params,
    validate_run_options,
)
from overparam_jax.checkpoint import array_digest, software_versions
from overparam_jax.losses import LossFn, overparameterized
from overparam_jax.networks import balancedness, end_to_end
from overparam_jax.preconditioner import preconditioner_apply
from overparam_jax.runner import ProgressFn, chunk_sizes, on_host, run_chunks

__all__ = [
    "EndToEndUpdate",
    "Euler",
    "GradientDescent",
    "OptaxRule",
    "RK4",
    "Trajectory",
    "end_to_end_descent",
    "gradient_descent",
    "gradient_flow",
    "optax_descent",
    "simulate",
    "step_rule",
]


class Trajectory(NamedTuple):
    """A run sampled every ``save_every`` steps, t = 0 included (``T = num_steps/save_every + 1``).

    Attributes:
        step: ``(T,)`` int, the iteration index of each record.
        time: ``(T,)`` the continuous time of each record: ``learning_rate * step`` for
            descent methods (the matching gradient-flow time), ``dt * step`` for flows,
            ``step`` for optax optimizers.
        loss: ``(T,)`` :math:`\\ell(W_e)`.
        balancedness: ``(T,)`` :math:`\\max_j \\|W_{j+1}^\\top W_{j+1} - W_j W_j^\\top\\|_F`
            (0 for depth 1 and for the end-to-end dynamics, which assume exact balance).
        norm: ``(T,)`` :math:`\\|W_e\\|_F`.
        sigma_min: ``(T,)`` the smallest singular value of ``W_e`` (the min(d_N, d_0)-th).
        end_to_end: ``(T, d_N, d_0)`` when ``record_end_to_end=True``, else ``None``.
        diverged_at: ``()`` int, first step whose loss or weights were non-finite, else -1.
        final: the final weights (``params`` for networks, ``W_e`` for the end-to-end dynamics).
        extra: the rule's own records beyond these, name -> ``(T, ...)`` (e.g. the singular
            values of :class:`~overparam_jax.factorization.FactorizationDescent`); ``{}`` for
            the rules here.
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
    extra: dict[str, jax.Array] = {}


# --------------------------------------------------------------------------------------
# Step rules
# --------------------------------------------------------------------------------------


def step_rule(cls):
    """Make ``cls`` a step rule: a frozen dataclass registered as a JAX pytree.

    Fields declared with ``dataclasses.field(metadata={"static": True})`` (the loss
    function, an optax optimizer, ...) are part of the compiled program; every other field
    is a leaf, traced and vmappable (learning rate, weight decay, dt, depth, masks).
    """
    return jax.tree_util.register_dataclass(dataclasses.dataclass(frozen=True)(cls))


def static_field():
    """A step-rule field that is part of the compiled program, not a traced leaf."""
    return dataclasses.field(metadata={"static": True})


def _axpy(a, x, y):
    """x + a y over pytrees."""
    return jax.tree_util.tree_map(lambda u, v: u + a * v, x, y)


class _OnLayers:
    r"""Shared behaviour of the rules whose state is the layers ``(W_1, ..., W_N)`` and
    whose objective is :math:`\phi + \tfrac{\lambda}{2}\sum_j \|W_j\|_F^2` (the recorded
    loss is :math:`\phi` alone). Subclasses have ``loss_fn`` and ``weight_decay`` fields."""

    def init(self, params):
        return tuple(params)

    def step(self, params, grad):
        """One explicit step of size ``time_unit`` along the gradient."""
        return _axpy(-self.time_unit, params, grad)

    def end_to_end_loss(self) -> LossFn:
        """:math:`\\ell`, the function of ``W_e`` that φ composes (``loss_fn``; a rule whose loss
        reads traced data, such as :class:`~overparam_jax.factorization.FactorizationDescent`,
        builds it from its leaves)."""
        return self.loss_fn

    def evaluate(self, params):
        loss, grad = jax.value_and_grad(overparameterized(self.end_to_end_loss()))(params)
        return loss, _axpy(self.weight_decay, grad, params)

    def weights(self, state):
        return state

    def observe(self, state) -> dict[str, jax.Array]:
        params = self.weights(state)
        return {"balancedness": balancedness(params), **_matrix_records(end_to_end(params))}


def _matrix_records(W_e: jax.Array) -> dict[str, jax.Array]:
    return {"norm": jnp.linalg.norm(W_e), "sigma_min": jnp.linalg.svd(W_e, compute_uv=False)[-1],
            "end_to_end": W_e}


@step_rule
class GradientDescent(_OnLayers):
    r"""Gradient descent on the layers:
    :math:`W_j \leftarrow W_j - \eta\,(\partial\phi/\partial W_j + \lambda W_j)`."""

    loss_fn: LossFn = static_field()
    learning_rate: jax.Array = 0.0
    weight_decay: jax.Array = 0.0

    @property
    def time_unit(self):
        return self.learning_rate


@step_rule
class _FixedStepFlow(_OnLayers):
    """Gradient flow :math:`d\\theta/dt = -\\nabla\\phi(\\theta)` integrated with a fixed step ``dt``."""

    loss_fn: LossFn = static_field()
    dt: jax.Array = 0.0
    weight_decay: jax.Array = 0.0

    @property
    def time_unit(self):
        return self.dt


@step_rule
class Euler(_FixedStepFlow):
    r"""Gradient flow by explicit Euler with step ``dt`` (GD with η = dt; order 1)."""


@step_rule
class RK4(_FixedStepFlow):
    r"""Gradient flow by the classical Runge–Kutta method with step ``dt`` (order 4)."""

    def step(self, params, k1):
        h = self.time_unit
        k2 = self.evaluate(_axpy(-h / 2, params, k1))[1]
        k3 = self.evaluate(_axpy(-h / 2, params, k2))[1]
        k4 = self.evaluate(_axpy(-h, params, k3))[1]
        slope = jax.tree_util.tree_map(lambda a, b, c, d: (a + 2 * b + 2 * c + d) / 6, k1, k2, k3, k4)
        return _axpy(-h, params, slope)


@step_rule
class EndToEndUpdate:
    r"""The discrete end-to-end update [ACH18, THEORY.md §4] on :math:`W_e`:
    :math:`W_e \leftarrow W_e - \eta\,(P_{W_e}\nabla\ell(W_e) + \lambda N W_e)`; depth N may
    be traced and non-integer."""

    loss_fn: LossFn = static_field()
    depth: jax.Array = 1.0
    learning_rate: jax.Array = 0.0
    weight_decay: jax.Array = 0.0

    def init(self, W_e):
        return W_e

    def evaluate(self, W_e):
        return jax.value_and_grad(self.loss_fn)(W_e)

    def step(self, W_e, grad):
        N = self.depth
        return W_e - self.learning_rate * (preconditioner_apply(W_e, grad, N) + self.weight_decay * N * W_e)

    def weights(self, W_e):
        return W_e

    def observe(self, W_e) -> dict[str, jax.Array]:
        # The update assumes exact balance: balancedness is 0 by definition.
        return {"balancedness": jnp.zeros((), W_e.dtype), **_matrix_records(W_e)}

    @property
    def time_unit(self):
        return self.learning_rate


@step_rule
class OptaxRule(_OnLayers):
    """Any ``optax.GradientTransformation`` on the layers of φ; the state is
    ``(params, opt_state)`` and time counts steps."""

    loss_fn: LossFn = static_field()
    optimizer: optax.GradientTransformation = static_field()

    weight_decay = 0.0  # the optimizer carries any decay it wants

    def init(self, params):
        params = tuple(params)
        return params, self.optimizer.init(params)

    def evaluate(self, state):
        return _OnLayers.evaluate(self, state[0])

    def step(self, state, grad):
        params, opt_state = state
        updates, opt_state = self.optimizer.update(grad, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    def weights(self, state):
        return state[0]

    @property
    def time_unit(self):
        return 1.0


# --------------------------------------------------------------------------------------
# simulate: any rule as one compiled scan, or in chunks through the runner
# --------------------------------------------------------------------------------------


class _Carry(NamedTuple):
    state: Any  # what the rule advances (params, W_e, or (params, opt_state))
    loss: jax.Array  # loss at `state`
    grad: Any  # gradient at `state`
    diverged_at: jax.Array
    step: jax.Array


def _all_finite(tree: Any) -> jax.Array:
    leaves = jax.tree_util.tree_leaves(tree)
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves]))


def _step(rule, carry: _Carry, check_finite: bool) -> _Carry:
    """One step; with ``check_finite``, freeze (keep the old state) from the first
    non-finite state on and record where that happened."""
    new_state = rule.step(carry.state, carry.grad)
    new_loss, new_grad = rule.evaluate(new_state)
    if not check_finite:
        return carry._replace(state=new_state, loss=new_loss, grad=new_grad, step=carry.step + 1)
    finite = jnp.isfinite(new_loss) & _all_finite(rule.weights(new_state))
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


_STANDARD_RECORDS = ("step", "loss", "balancedness", "norm", "sigma_min", "end_to_end")


def _observe(rule, carry: _Carry, record_end_to_end: bool) -> dict[str, jax.Array]:
    record = {"step": carry.step, "loss": carry.loss, **rule.observe(carry.state)}
    if not record_end_to_end:
        del record["end_to_end"]
    return record


def _start(rule, initial, record_end_to_end):
    """The initial carry and the t = 0 record."""
    state = rule.init(initial)
    # A rule's contract: its state holds the weights it started from, shapes and dtypes kept.
    chex.assert_trees_all_equal_shapes_and_dtypes(rule.weights(state), initial)
    loss, grad = rule.evaluate(state)
    carry = _Carry(state, loss, grad, jnp.asarray(-1, jnp.int32), jnp.asarray(0, jnp.int32))
    return carry, _observe(rule, carry, record_end_to_end)


def _advance(rule, carry, num_records, save_every, record_end_to_end, check_finite):
    """``num_records`` records, each after ``save_every`` steps (a nested ``lax.scan``)."""

    def inner(c, _):
        return _step(rule, c, check_finite), None

    def outer(c, _):
        c, _ = jax.lax.scan(inner, c, None, length=save_every)
        return c, _observe(rule, c, record_end_to_end)

    return jax.lax.scan(outer, carry, None, length=num_records)


def _first_update(rule, carry):
    """The first step's new state: pins the rule's step (and an optax optimizer) in a
    checkpoint's fingerprint."""
    return rule.step(carry.state, carry.grad)


def _compiled(fn, static: tuple[str, ...], batched: bool):
    """``fn(rule, x, ...)`` jitted (static keyword arguments), vmapped over ``rule`` and
    ``x`` (every leaf with a leading run axis) if ``batched``."""
    if not batched:
        return jax.jit(fn, static_argnames=static)

    def vmapped(rule, x, **kwargs):
        return jax.vmap(functools.partial(fn, **kwargs))(rule, x)

    return jax.jit(vmapped, static_argnames=static)


_COMPILED = {
    (name, batched): _compiled(fn, static, batched)
    for name, fn, static in (("start", _start, ("record_end_to_end",)),
                             ("advance", _advance, ("num_records", "save_every", "record_end_to_end",
                                                    "check_finite")),
                             ("first_update", _first_update, ()))
    for batched in (False, True)
}


def _num_records(num_steps: int, save_every: int) -> int:
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


def _fingerprint(rule, carry, batched, sizes, save_every, record_end_to_end):
    """What a checkpoint of :func:`simulate` must match: the rule, the schedule, the
    software versions, the bytes of the initial state, its loss and gradient and the rule's
    leaves (which pin down the init, the hyper-parameters, the loss function and its data),
    and of the first step's result (which pins the step, and an optax optimizer)."""
    first = _COMPILED["first_update", batched](rule, carry)
    carry, rule, first = on_host((carry, rule, first))  # whole, also under jax.distributed
    return {
        "rule": type(rule).__name__, "batched": batched, "chunks": list(sizes),
        "save_every": save_every, "record_end_to_end": record_end_to_end,
        "sha256 of the initial state, loss, gradient and hyperparameters": array_digest((carry, rule)),
        "sha256 of the first step": array_digest(first),
        "versions": software_versions(),
    }


def simulate(
    rule,
    initial: Any,
    *,
    num_steps: int,
    save_every: int = 1,
    record_end_to_end: bool = False,
    progress: ProgressFn | None = None,
    checkpoint: str | os.PathLike | None = None,
    num_chunks: int = 20,
    batched: bool = False,
    check_finite: bool = True,
) -> Trajectory:
    """Run the step rule ``rule`` from ``initial`` (its weights) for ``num_steps`` steps.

    One compiled ``lax.scan``; or, with ``progress`` or ``checkpoint``, ``num_chunks``
    chunks through :func:`overparam_jax.runner.run_chunks` (progress after each, state
    saved after each and resumed from). Every path runs the same compiled step, so the
    results are identical. With ``batched=True`` every leaf of ``rule`` and ``initial`` has
    a leading run axis and all runs go through one vmapped program (how a sweep runs).

    Args:
        rule: a step rule (:class:`GradientDescent`, :class:`EndToEndUpdate`, ...).
        initial: the weights the rule starts from (``params`` or ``W_e``).
        num_steps: number of steps (static); a multiple of ``save_every``.
        save_every: record every this many steps (static).
        record_end_to_end: also record ``W_e`` at every record.
        progress: optional callback receiving a :class:`~overparam_jax.runner.Progress`
            after every chunk.
        checkpoint: optional file for the state (see :func:`~overparam_jax.runner.run_chunks`).
        num_chunks: chunks of a chunked run.
        batched: ``rule`` and ``initial`` carry a leading run axis.
        check_finite: after every step, check that the loss and weights are finite and
            freeze a run at its last finite state (``diverged_at`` records where). False
            skips the check and the freezing: faster (benchmarks/RESULTS.md), but a run that
            blows up carries inf/NaN and ``diverged_at`` stays -1.

    Returns:
        A :class:`Trajectory` (fields with a leading run axis if ``batched``).
    """
    num_records = _num_records(num_steps, save_every)
    if batched:  # every hyper-parameter and weight carries the run axis
        runs = jax.tree_util.tree_leaves(initial)[0].shape[:1]
        chex.assert_tree_shape_prefix((rule, initial), runs)
    carry, first = _COMPILED["start", batched](rule, initial, record_end_to_end=record_end_to_end)
    advance = functools.partial(_COMPILED["advance", batched], rule, save_every=save_every,
                                record_end_to_end=record_end_to_end, check_finite=check_finite)
    if progress is None and checkpoint is None:
        carry, records = advance(carry, num_records=num_records)
        chunks = [records]
    else:
        sizes = chunk_sizes(num_records, num_chunks)
        fingerprint = None if checkpoint is None else _fingerprint(
            rule, carry, batched, sizes, save_every, record_end_to_end)
        last_loss = (lambda rec: {"loss": float(rec["loss"][-1])}) if not batched else None
        carry, chunks = run_chunks(lambda c, _, size: advance(c, num_records=size), carry, sizes,
                                   checkpoint=checkpoint, fingerprint=fingerprint, progress=progress,
                                   steps_per_unit=save_every, metrics=last_loss)
    axis = 1 if batched else 0
    stacked = jax.tree_util.tree_map(
        lambda x0, *xs: jnp.concatenate([jnp.expand_dims(x0, axis), *xs], axis=axis), first, *chunks
    )
    unit = jnp.asarray(rule.time_unit, stacked["loss"].dtype)
    unit = jnp.expand_dims(unit, -1) if batched and jnp.ndim(unit) else unit
    weights = jax.vmap(lambda r, s: r.weights(s))(rule, carry.state) if batched else rule.weights(carry.state)
    return Trajectory(
        step=stacked["step"],
        time=stacked["step"] * unit,
        loss=stacked["loss"],
        balancedness=stacked["balancedness"],
        norm=stacked["norm"],
        sigma_min=stacked["sigma_min"],
        end_to_end=stacked.get("end_to_end"),
        diverged_at=carry.diverged_at,
        final=weights,
        extra={k: v for k, v in stacked.items() if k not in _STANDARD_RECORDS},
    )


# --------------------------------------------------------------------------------------
# The public runners
# --------------------------------------------------------------------------------------


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
        progress: optional callback, called with a :class:`~overparam_jax.runner.Progress`
            (steps done, total, the last loss) after each of 20 chunks; the scan then runs
            in chunks (not traceable, identical result).
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
    rule = GradientDescent(loss_fn, _as_float(learning_rate, params[0], "learning_rate"),
                           _as_float(weight_decay, params[0], "weight_decay"))
    return simulate(rule, params, num_steps=num_steps, save_every=save_every,
                    record_end_to_end=record_end_to_end, progress=progress, checkpoint=checkpoint)


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
        learning_rate, num_steps, save_every, weight_decay, record_end_to_end, progress, checkpoint:
            as in :func:`gradient_descent`.

    Returns:
        A :class:`Trajectory` (``balancedness`` is 0: the update assumes exact balance);
        ``final`` is ``W_e``.
    """
    require_float_array("W_e", W_e, ndim=2)
    validate_run_options(loss_fn, record_end_to_end, progress)
    require_depth(depth)
    rule = EndToEndUpdate(loss_fn, jnp.asarray(depth, W_e.dtype), _as_float(learning_rate, W_e, "learning_rate"),
                          _as_float(weight_decay, W_e, "weight_decay"))
    return simulate(rule, W_e, num_steps=num_steps, save_every=save_every,
                    record_end_to_end=record_end_to_end, progress=progress, checkpoint=checkpoint)


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
    return simulate(OptaxRule(loss_fn, optimizer), params, num_steps=num_steps, save_every=save_every,
                    record_end_to_end=record_end_to_end, progress=progress, checkpoint=checkpoint)


_FLOW_METHODS = {"euler": Euler, "rk4": RK4}


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
    if not isinstance(method, str) or method not in _FLOW_METHODS:
        raise ValueError(f"`method` must be one of {tuple(_FLOW_METHODS)}, got {method!r}.")
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
    rule = _FLOW_METHODS[method](loss_fn, jnp.asarray(dt, params[0].dtype),
                                 _as_float(weight_decay, params[0], "weight_decay"))
    return simulate(rule, params, num_steps=num_steps, save_every=save_every,
                    record_end_to_end=record_end_to_end, progress=progress, checkpoint=checkpoint)
