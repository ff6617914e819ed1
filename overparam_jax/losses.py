r"""Losses on the end-to-end matrix and the overparameterized objective φ.

* :func:`lp_loss` — :math:`\ell_p(W) = \frac{1}{m}\sum_i \|W x_i - y_i\|_p^p` (the talk's
  form, the default) or, with ``divide_by_p=True``, ACH18's
  :math:`\frac{1}{pm}\sum_i \|W x_i - y_i\|_p^p`.
* :func:`whitened_l2_loss` — :math:`\tfrac12 \|W - \Phi\|_F^2` (ACGH19), equal to
  :math:`\ell_2` up to a constant when :math:`X^\top X / m = I` and
  :math:`\Phi = Y^\top X / m` (THEORY.md §2).
* :func:`overparameterized` — :math:`\phi(W_1, \dots, W_N) = \ell(W_N \cdots W_1)`.

Data conventions: ``X`` is ``(m, d_0)``, ``Y`` is ``(m, d_N)``, predictions ``X @ W.T``.
The data (``X``, ``Y``, ``Phi``) must be finite; ``W_e``, the variable, is not checked for
NaN/Inf (a non-finite ``W_e`` gives a non-finite loss, which the trajectories report as
divergence).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp

from overparam_jax._validation import (
    is_concrete,
    require_finite,
    require_float_array,
    require_positive,
    require_regression_data,
    require_shape,
)
from overparam_jax.networks import end_to_end

LossFn = Callable[[jax.Array], jax.Array]

__all__ = ["LossFn", "lp_loss", "overparameterized", "whitened_l2_loss"]


def _validate_regression(W_e: jax.Array, X: jax.Array, Y: jax.Array) -> None:
    require_float_array("W_e", W_e, ndim=2)
    require_regression_data(X, Y)
    require_shape("W_e", W_e, (Y.shape[1], X.shape[1]), "(d_N, d_0) from `Y` and `X`")
    require_finite("X", X)
    require_finite("Y", Y)


def _abs_power(r: jax.Array, p: float) -> jax.Array:
    """|r|^p; integer p uses repeated multiplication (``lax.integer_pow``), not exp(p log|r|)."""
    if is_concrete(p) and float(p).is_integer():
        k = int(p)
        return (r if k % 2 == 0 else jnp.abs(r)) ** k
    return jnp.abs(r) ** p


def lp_loss(
    W_e: jax.Array, X: jax.Array, Y: jax.Array, *, p: float = 2.0, divide_by_p: bool = False
) -> jax.Array:
    r""":math:`\ell_p` regression loss of the linear map ``W_e`` (THEORY.md §2).

    .. math:: \ell_p(W) = \frac{1}{m} \sum_{i=1}^m \|W x_i - y_i\|_p^p
              \quad (\times \tfrac1p \text{ if } \texttt{divide\_by\_p})

    Args:
        W_e: ``(d_N, d_0)``.
        X: inputs ``(m, d_0)``, samples as rows.
        Y: targets ``(m, d_N)``.
        p: the exponent, finite and ``p >= 1`` (may be traced; checked when concrete).
        divide_by_p: include ACH18's ``1/p`` factor. Default ``False`` (the talk's form).

    Examples:
        >>> import jax.numpy as jnp
        >>> float(lp_loss(jnp.zeros((1, 2)), jnp.ones((4, 2)), 2 * jnp.ones((4, 1)), p=4))
        16.0
    """
    _validate_regression(W_e, X, Y)
    require_positive("p", p)  # a real, finite scalar
    if is_concrete(p) and not float(p) >= 1.0:
        raise ValueError(f"`p` must be >= 1, got {p}.")
    # (W_e X^T)^T is X W_e^T, but under vmap over W_e (a sweep) the batched product then
    # comes out run-major, the layout the elementwise work after it wants; the other order
    # makes XLA transpose an (m, runs) array forward and backward, ~3x the step time on CPU
    # (benchmarks/RESULTS.md, "What the sweep's step costs").
    residual = (W_e @ X.T).T - Y
    total = jnp.mean(jnp.sum(_abs_power(residual, p), axis=1))
    return total / p if divide_by_p else total


def whitened_l2_loss(W_e: jax.Array, Phi: jax.Array) -> jax.Array:
    r"""Whitened :math:`\ell_2` loss :math:`\tfrac12 \|W_e - \Phi\|_F^2` (ACGH19, THEORY.md §2).

    Args:
        W_e: ``(d_N, d_0)``.
        Phi: the target ``(d_N, d_0)`` (for whitened data, ``Y^T X / m``).
    """
    require_float_array("W_e", W_e, ndim=2)
    require_float_array("Phi", Phi, ndim=2)
    require_shape("W_e", W_e, Phi.shape, "(the shape of `Phi`)")
    require_finite("Phi", Phi)
    return 0.5 * jnp.sum((W_e - Phi) ** 2)


def overparameterized(loss_fn: LossFn) -> Callable[[Sequence[jax.Array]], jax.Array]:
    r"""The overparameterized objective :math:`\phi(W_1, \dots, W_N) = \ell(W_N \cdots W_1)`.

    Args:
        loss_fn: :math:`\ell`, a function of the end-to-end matrix ``W_e``.

    Returns:
        ``phi(params)``.

    Examples:
        >>> import functools, jax, jax.numpy as jnp
        >>> Phi = jnp.eye(2)
        >>> phi = overparameterized(functools.partial(whitened_l2_loss, Phi=Phi))
        >>> float(phi((jnp.eye(2), jnp.eye(2))))
        0.0
    """
    if not callable(loss_fn):
        raise TypeError(f"`loss_fn` must be callable, got {type(loss_fn).__name__}.")

    def phi(params: Sequence[jax.Array]) -> jax.Array:
        return loss_fn(end_to_end(params))

    return phi
