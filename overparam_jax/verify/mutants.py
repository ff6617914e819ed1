"""Generic wrong implementations that checks declare as their mutants.

Each wraps a library dynamics function (``gradient_descent``, ``gradient_flow``,
``end_to_end_descent``, ``optax_descent``: anything taking ``loss_fn`` first) and keeps
its signature, so it can be injected through a check's hook. The bug is planted in the
gradient the method follows, never in the loss it records, so a check sees exactly what
a researcher would see from a buggy optimizer: honest loss values along a wrong path.

* :func:`frozen` — a method that never moves (zero gradient).
* :func:`mis_stepped` — a method whose step is ``factor`` times the stated one
  (``factor = -1``: gradient ascent).
* :func:`relabelled_flow` — gradient flow that runs another integrator than the one asked.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax

from overparam_jax.dynamics import gradient_flow

__all__ = ["frozen", "gradient_scaled", "mis_stepped", "relabelled_flow"]


@functools.lru_cache(maxsize=None)
def gradient_scaled(loss_fn: Callable, factor: float) -> Callable:
    r"""A loss with the value of ``loss_fn`` and ``factor`` times its gradient.

    .. math:: \tilde\ell(W) = \mathrm{sg}(\ell(W)) + f\,(\ell(W) - \mathrm{sg}(\ell(W)))

    (``sg`` = stop-gradient). Cached per ``(loss_fn, factor)``, so the compiled loops of
    the library, keyed by the loss object, are reused across calls.
    """

    def scaled(W):
        value = loss_fn(W)
        fixed = jax.lax.stop_gradient(value)
        return fixed + factor * (value - fixed)

    return scaled


def mis_stepped(run: Callable, factor: float) -> Callable:
    """``run`` following ``factor`` times the gradient: GD at ``factor * learning_rate``,
    a flow at ``factor`` times its speed; ``factor = 0`` freezes it, ``-1`` ascends."""

    @functools.wraps(run)
    def wrong(loss_fn, *args, **kwargs):
        return run(gradient_scaled(loss_fn, float(factor)), *args, **kwargs)

    return wrong


def frozen(run: Callable) -> Callable:
    """``run`` with a zero gradient: the state never moves, the loss is still recorded."""
    return mis_stepped(run, 0.0)


def relabelled_flow(actual: str) -> Callable:
    """:func:`~overparam_jax.gradient_flow` that integrates with ``actual`` whatever
    ``method`` it is asked for (e.g. Euler sold as RK4)."""

    def wrong(loss_fn, params, *, method="rk4", **kwargs):
        return gradient_flow(loss_fn, params, method=actual, **kwargs)

    return wrong
