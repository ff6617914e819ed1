r"""The end-to-end preconditioner :math:`P_W` and the end-to-end velocity (THEORY.md §4).

From balanced weights, gradient flow on :math:`\phi(W_1, \dots, W_N) = \ell(W_N \cdots W_1)`
moves the end-to-end matrix :math:`W_e` (shape ``(d_N, d_0)``) by [ACH18, Thm 1]

.. math:: \frac{dW_e}{dt} = -P_{W_e}\bigl(\nabla\ell(W_e)\bigr) - \lambda N W_e, \qquad
          P_W(G) = \sum_{j=1}^{N} [W W^\top]^{\frac{j-1}{N}} \, G \, [W^\top W]^{\frac{N-j}{N}},

where :math:`\lambda \ge 0` is the weight decay applied to every layer. Sign convention
used throughout: :math:`P_W` itself is positive semi-definite and carries no sign and no
weight decay (:func:`preconditioner_apply`, :func:`preconditioner_matrix`); the minus
sign and the :math:`-\lambda N W_e` term are added only where a *velocity* is formed
(:func:`end_to_end_field`, :func:`end_to_end_velocity`, :func:`single_output_velocity`).

In row-major ``vec`` (``jnp.ravel``) :math:`P_W` is the PSD matrix
:math:`\sum_j [W W^\top]^{(j-1)/N} \otimes [W^\top W]^{(N-j)/N}`. With a *full* SVD
:math:`W = U \Sigma V^\top` and the singular values zero-padded to ``d_N`` values
:math:`\sigma_r` (rows) and ``d_0`` values :math:`\sigma_s` (columns),

.. math:: P_W(G) = U \bigl(\Lambda \odot (U^\top G V)\bigr) V^\top, \qquad
          \Lambda_{rs} = \sum_{j=1}^N \sigma_r^{\frac{2(j-1)}{N}} \sigma_s^{\frac{2(N-j)}{N}}
          = \frac{\sigma_r^2 - \sigma_s^2}{\sigma_r^{2/N} - \sigma_s^{2/N}},

with :math:`\Lambda_{rs} = N \sigma^{2(N-1)/N}` when :math:`\sigma_r = \sigma_s = \sigma`
(and :math:`[A]^0 := I`, so :math:`\Lambda \equiv 1` at depth 1). The last form defines
:math:`P_W` for every real depth ``N > 0``, which is how the end-to-end dynamics sweep
depth as a traced number.

Contents:

* :func:`preconditioner_apply` — :math:`P_W(G)` from one full SVD (any shape and rank,
  traced and non-integer depth, ``vmap``-able).
* :func:`preconditioner_eigenvalues` — the matrix :math:`\Lambda` (``(d_N, d_0)``): the
  eigenvalues of :math:`P_W`, with eigenvectors :math:`\mathrm{vec}(u_r v_s^\top)`.
* :func:`preconditioner_matrix` — the explicit ``(d_N d_0, d_N d_0)`` Kronecker sum,
  a reference for small sizes and integer depth.
* :func:`single_output_velocity` — the ``d_N = 1`` closed form
  :math:`-\|w\|^{2-2/N}(\nabla + (N-1)\,\mathrm{Pr}_w \nabla)`.
* :func:`end_to_end_velocity` — :math:`dW_e/dt` of the actual network by differentiation
  alone (no formula from this module), the independent side of Theorem 1.
* :func:`end_to_end_field` — the closed-form velocity field on :math:`W_e`, the right-hand
  side of the discrete end-to-end update :math:`W_e \leftarrow W_e + \eta\,\mathrm{field}`.
* :func:`field_jacobian`, :func:`gradient_field_asymmetry` — the Jacobian of
  :math:`F(W) = P_W(\nabla\ell(W))` and the witness :math:`\|J - J^\top\|_F/\|J\|_F` that
  F is not a gradient field for depth ``N >= 2`` [ACH18, Thm 2].

Numerics: :math:`\Lambda` is evaluated with :math:`a = \sigma_{\max}^{2/N}`,
:math:`b = \sigma_{\min}^{2/N}`, :math:`t = \log(a/b)` as
:math:`a^{N-1} \cdot \mathrm{expm1}(-Nt)/\mathrm{expm1}(-t)`, which has no cancellation when
:math:`\sigma_r \approx \sigma_s` (the ratio form loses all digits there) and no overflow.
Zero singular values are handled by ``jnp.where`` with safe operands (no NaN values or
derivatives). The map :math:`W \mapsto P_W` is not Lipschitz at rank-deficient ``W`` for
``N >= 3`` (fractional powers of zero): a singular value that is zero in exact arithmetic
but computed as :math:`\epsilon \sigma_{\max}` perturbs :math:`\Lambda` by
:math:`\sim \epsilon^{2/N}` relative (about ``5e-6`` at depth 6 in float64). Exact zeros
(padding, exactly rank-deficient structure) are exact.

References:
    [ACH18] Arora, Cohen, Hazan. On the Optimization of Deep Networks: Implicit
    Acceleration by Overparameterization. ICML 2018. Theorem 1 (end-to-end dynamics),
    Claim 1 (single output), Theorem 2 (not a gradient field).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from overparam_jax._validation import (
    is_concrete,
    require_depth,
    require_finite,
    require_float_array,
    require_positive,
    require_real_scalar,
    require_shape,
    validate_params,
)
from overparam_jax.losses import LossFn, overparameterized
from overparam_jax.networks import end_to_end

__all__ = [
    "end_to_end_field",
    "end_to_end_velocity",
    "field_jacobian",
    "gradient_field_asymmetry",
    "preconditioner_apply",
    "preconditioner_eigenvalues",
    "preconditioner_matrix",
    "single_output_velocity",
]


# --------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------


def _validate_matrix_and_direction(W_e: Any, G: Any) -> None:
    require_float_array("W_e", W_e, ndim=2)
    require_float_array("G", G, ndim=2)
    require_shape("G", G, tuple(W_e.shape), "(the shape of `W_e`)")
    if np.dtype(G.dtype) != np.dtype(W_e.dtype):
        raise TypeError(f"`G` must have the dtype of `W_e` ({W_e.dtype}), but has {G.dtype}.")
    require_finite("W_e", W_e)
    require_finite("G", G)


def _validate_loss_fn(loss_fn: Any) -> None:
    if not callable(loss_fn):
        raise TypeError(f"`loss_fn` must be callable, got {type(loss_fn).__name__}.")


def _validate_weight_decay(weight_decay: Any) -> None:
    if tuple(np.shape(weight_decay)) != ():
        raise ValueError(
            f"`weight_decay` must be a scalar, but has shape {tuple(np.shape(weight_decay))}."
        )
    require_positive("weight_decay", weight_decay, allow_zero=True)


# --------------------------------------------------------------------------------------
# The eigenvalues Λ and the closed form
# --------------------------------------------------------------------------------------


def _zero_power_limit(N: jax.Array) -> jax.Array:
    r"""The limit of :math:`\sigma^{2(N-1)/N}` as :math:`\sigma \to 0^+`.

    0 for ``N > 1``; 1 for ``N = 1`` (:math:`[A]^0 := I`, also on the null space);
    :math:`+\infty` for ``0 < N < 1`` (a negative power of zero).
    """
    one = jnp.ones((), N.dtype)
    return jnp.where(N > 1, jnp.zeros((), N.dtype), jnp.where(N == 1, one, jnp.inf * one))


def _eigenvalue_grid(sigma_rows: jax.Array, sigma_cols: jax.Array, N: jax.Array) -> jax.Array:
    r""":math:`\Lambda_{rs}` for all pairs, shape ``(len(sigma_rows), len(sigma_cols))``.

    With :math:`h = \max(\sigma_r, \sigma_s)`, :math:`l = \min(\sigma_r, \sigma_s)`,
    :math:`a = h^{2/N} \ge b = l^{2/N}` and :math:`t = \log(a/b) \ge 0`:

    .. math:: \Lambda_{rs} = \frac{a^N - b^N}{a - b}
              = a^{N-1}\,\frac{1 - e^{-Nt}}{1 - e^{-t}}
              = h^{2(N-1)/N}\,\frac{\mathrm{expm1}(-N t)}{\mathrm{expm1}(-t)}.

    :math:`t = \tfrac{2}{N}\,\mathrm{log1p}((h - l)/l)` is accurate when :math:`h \approx l`
    (``h - l`` is exact there), the ratio of ``expm1``'s is accurate for every
    :math:`t > 0`, and :math:`e^{-Nt} \le 1` cannot overflow. Limits: the ratio is ``N``
    at :math:`t = 0` (:math:`\sigma_r = \sigma_s`) and 1 at :math:`l = 0`; at
    :math:`h = 0` the value is :func:`_zero_power_limit`. Every branch is selected with
    ``jnp.where`` on safe operands, so neither values nor derivatives become NaN.
    """
    s_r = sigma_rows[:, None]
    s_c = sigma_cols[None, :]
    hi = jnp.maximum(s_r, s_c)
    lo = jnp.minimum(s_r, s_c)
    one = jnp.ones((), hi.dtype)
    hi_pos = hi > 0
    lo_pos = lo > 0
    safe_hi = jnp.where(hi_pos, hi, one)
    safe_lo = jnp.where(lo_pos, lo, one)
    t = (2 / N) * jnp.log1p((safe_hi - safe_lo) / safe_lo)
    ratio_ok = lo_pos & (t > 0) & jnp.isfinite(t)
    safe_t = jnp.where(ratio_ok, t, one)
    ratio = jnp.expm1(-N * safe_t) / jnp.expm1(-safe_t)
    coincide = lo_pos & (t == 0)
    # t == 0: sigma_r = sigma_s, the sum has N equal terms; lo == 0 or t == inf: b/a = 0.
    g = jnp.where(ratio_ok, ratio, jnp.where(coincide, N, one))
    lead = jnp.where(hi_pos, safe_hi ** (2 * (N - 1) / N), _zero_power_limit(N))
    return lead * g


def _padded(sigma: jax.Array, n: int) -> jax.Array:
    """``sigma`` followed by zeros up to length ``n``."""
    return jnp.pad(sigma, (0, n - sigma.shape[0]))


@jax.jit
def _apply_core(W_e: jax.Array, G: jax.Array, N: jax.Array) -> jax.Array:
    d_N, d_0 = W_e.shape
    if d_N == 1 or d_0 == 1:
        # A single row (or column): the rank-one closed form, O(d) instead of a full SVD
        # with a d x d factor. P_W is symmetric under transposition, so d_0 = 1 is the same.
        w, g = (W_e, G) if d_N == 1 else (W_e.T, G.T)
        P = -_single_output_core(w, g, N)
        return jnp.where(N == 1, G, P if d_N == 1 else P.T)
    U, sigma, Vt = jnp.linalg.svd(W_e, full_matrices=True)
    Lam = _eigenvalue_grid(_padded(sigma, d_N), _padded(sigma, d_0), N)
    P = U @ (Lam * (U.T @ G @ Vt.T)) @ Vt
    # Depth 1 is the identity map: return G bit for bit (U U^T G V V^T only to round-off).
    return jnp.where(N == 1, G, P)


@jax.jit
def _eigenvalues_core(W_e: jax.Array, N: jax.Array) -> jax.Array:
    d_N, d_0 = W_e.shape
    sigma = jnp.linalg.svd(W_e, compute_uv=False)
    return _eigenvalue_grid(_padded(sigma, d_N), _padded(sigma, d_0), N)


def preconditioner_apply(W_e: jax.Array, G: jax.Array, depth: float | jax.Array) -> jax.Array:
    r"""Apply the end-to-end preconditioner: :math:`P_{W_e}(G)` (THEORY.md §4).

    .. math:: P_W(G) = \sum_{j=1}^{N} [W W^\top]^{\frac{j-1}{N}} G [W^\top W]^{\frac{N-j}{N}}
              = U \bigl(\Lambda \odot (U^\top G V)\bigr) V^\top,

    from one full SVD :math:`W = U \Sigma V^\top` (``U``: ``d_N x d_N``, ``V``:
    ``d_0 x d_0``) and :math:`\Lambda` of :func:`preconditioner_eigenvalues`. This is
    :math:`P_W` only: it is PSD, and the velocity is :math:`-P_W(\nabla\ell) - \lambda N W`
    (see :func:`end_to_end_field`).
    A single row or column (``d_N = 1`` or ``d_0 = 1``) uses the equivalent rank-one form
    :math:`\|w\|^{2-2/N}(G + (N-1)\,\mathrm{Pr}_w G)` instead (no ``d x d`` SVD factor).

    Args:
        W_e: the end-to-end matrix ``(d_N, d_0)``, any rank (``W_e = 0`` included).
        G: the direction, usually :math:`\nabla\ell(W_e)`; shape and dtype of ``W_e``.
        depth: ``N > 0``; may be traced (``vmap`` over depths) and non-integer, through
            the closed form of :math:`\Lambda`. Depth 1 returns ``G`` exactly. For
            ``0 < N < 1`` the operator is unbounded on rank-deficient ``W_e`` and the
            result is non-finite there. Pass floats to ``jit``-ed callers (a Python int
            and a Python float trace to different types and compile twice).

    Returns:
        :math:`P_{W_e}(G)`, shape and dtype of ``G``.

    Raises:
        ValueError: non-2-D inputs, ``G`` not of the shape of ``W_e``, a concrete
            ``depth <= 0``, or a concrete ``W_e`` or ``G`` with NaN/Inf.
        TypeError: non-float inputs, ``G`` of another dtype than ``W_e``.

    Examples:
        >>> import jax.numpy as jnp
        >>> W = jnp.diag(jnp.array([4.0, 1.0]))
        >>> preconditioner_apply(W, jnp.ones((2, 2)), 2.0).round(5).tolist()  # Λ = [[8, 5], [5, 2]]
        [[8.0, 5.0], [5.0, 2.0]]

    References:
        [ACH18] Theorem 1 and its vectorized form (there with column-first vec).
    """
    _validate_matrix_and_direction(W_e, G)
    require_depth(depth)
    return _apply_core(W_e, G, jnp.asarray(depth, W_e.dtype))


def preconditioner_eigenvalues(W_e: jax.Array, depth: float | jax.Array) -> jax.Array:
    r"""The eigenvalues :math:`\Lambda_{rs}` of :math:`P_{W_e}`, shape ``(d_N, d_0)``.

    With the singular values zero-padded to :math:`\sigma_1..\sigma_{d_N}` (rows) and
    :math:`\sigma_1..\sigma_{d_0}` (columns),

    .. math:: \Lambda_{rs} = \sum_{j=1}^N \sigma_r^{\frac{2(j-1)}{N}} \sigma_s^{\frac{2(N-j)}{N}}
              = \begin{cases}
                \dfrac{\sigma_r^2 - \sigma_s^2}{\sigma_r^{2/N} - \sigma_s^{2/N}}
                    & \sigma_r \ne \sigma_s \\
                N \sigma^{2(N-1)/N} & \sigma_r = \sigma_s = \sigma
                \end{cases}

    and the eigenvector of :math:`\Lambda_{rs}` is :math:`\mathrm{vec}(u_r v_s^\top)`. For a
    full-rank ``W_e``, :math:`\min \Lambda \ge \sigma_{\min}^{2(N-1)/N}`; at depth 1 every
    entry is 1. Evaluated stably (no cancellation at :math:`\sigma_r \approx \sigma_s`);
    ``depth`` may be traced and non-integer.

    Examples:
        >>> import jax.numpy as jnp
        >>> preconditioner_eigenvalues(jnp.array([[4.0, 0.0]]), 2.0).tolist()  # σ = (4), padded (4, 0)
        [[8.0, 4.0]]
    """
    require_float_array("W_e", W_e, ndim=2)
    require_finite("W_e", W_e)
    require_depth(depth)
    return _eigenvalues_core(W_e, jnp.asarray(depth, W_e.dtype))


# --------------------------------------------------------------------------------------
# The explicit Kronecker matrix (reference for small sizes)
# --------------------------------------------------------------------------------------


def _gram_eigh(A: jax.Array) -> tuple[jax.Array, jax.Array]:
    r"""``eigh`` of a symmetric PSD Gram matrix, eigenvalues at or below
    :math:`n \epsilon \lambda_{\max}` set to 0.

    That is the backward error of ``eigh`` (Weyl), so such eigenvalues are
    indistinguishable from 0; left alone, round-off :math:`\sim 10^{-16}\lambda_{\max}` on
    the null space of a rank-deficient Gram matrix would become :math:`10^{-16p}` under
    the power ``p`` (``1e-4`` for ``p = 1/4``, THEORY.md §4). Negative round-off goes too.
    """
    w, Q = jnp.linalg.eigh(A)
    tol = A.shape[0] * jnp.finfo(A.dtype).eps * jnp.max(jnp.abs(w))
    return jnp.where(w > tol, w, jnp.zeros((), w.dtype)), Q


def _psd_power(w: jax.Array, Q: jax.Array, p: jax.Array) -> jax.Array:
    r""":math:`[A]^p = Q \mathrm{diag}(w^p) Q^\top`, with :math:`[A]^0 := I` exactly
    (also on the null space)."""
    out = (Q * (w**p)[None, :]) @ Q.T
    eye = jnp.eye(Q.shape[0], dtype=Q.dtype)
    return jnp.where(p == 0, eye, 0.5 * (out + out.T))


@jax.jit
def _matrix_core(W_e: jax.Array, N: jax.Array) -> jax.Array:
    """The Kronecker sum; ``N`` (integer-valued) is traced, so one compile per shape."""
    w_left, Q_left = _gram_eigh(W_e @ W_e.T)
    w_right, Q_right = _gram_eigh(W_e.T @ W_e)
    depth = N.astype(W_e.dtype)

    def add_term(j, total):  # j = 0..N-1 stands for the paper's j + 1
        left = _psd_power(w_left, Q_left, j / depth)
        right = _psd_power(w_right, Q_right, (depth - 1 - j) / depth)
        return total + jnp.kron(left, right)

    n = W_e.size
    return jax.lax.fori_loop(0, N, add_term, jnp.zeros((n, n), W_e.dtype))


def preconditioner_matrix(W_e: jax.Array, depth: int) -> jax.Array:
    r"""The explicit matrix of :math:`P_{W_e}` for row-major ``vec``, shape ``(d_N d_0,)*2``.

    .. math:: P_W = \sum_{j=1}^{N} [W W^\top]^{\frac{j-1}{N}} \otimes [W^\top W]^{\frac{N-j}{N}}
              \qquad (\mathrm{vec} = \texttt{ravel}),

    so ``(preconditioner_matrix(W, N) @ G.ravel()).reshape(W.shape)`` equals
    :func:`preconditioner_apply`. The fractional powers come from ``eigh`` of the Gram
    matrices (:math:`[A]^0 := I`): an independent route to the closed form, meant as a
    reference for small sizes (it costs :math:`O((d_N d_0)^2)` memory). Gram eigenvalues
    below the ``eigh`` error bound :math:`n\epsilon\lambda_{\max}` count as zero, so a
    singular value below about :math:`\sqrt{n\epsilon}\,\sigma_{\max}` (``~4e-8``
    relative in float64) is read as 0: exact for exactly rank-deficient ``W_e``, but not
    for a full-rank ``W_e`` that ill-conditioned, where :func:`preconditioner_apply`
    stays accurate.

    Args:
        W_e: ``(d_N, d_0)``.
        depth: a concrete integer ``N >= 1`` (the sum over ``j`` is only defined for
            integer depth; use :func:`preconditioner_apply` for real or traced depth).
            It is passed to the compiled core as data: one compile per shape and dtype.

    Raises:
        ValueError: ``depth`` traced, non-integer or < 1; ``W_e`` not 2-D or non-finite.

    Examples:
        >>> import jax.numpy as jnp
        >>> preconditioner_matrix(jnp.array([[2.0, 0.0]]), 2).round(5).tolist()  # diag(Λ) = (4, 2)
        [[4.0, 0.0], [0.0, 2.0]]
    """
    require_float_array("W_e", W_e, ndim=2)
    require_finite("W_e", W_e)
    if not is_concrete(depth) or np.shape(depth) != ():
        raise ValueError(
            "`depth` must be a concrete integer scalar for preconditioner_matrix (the sum over "
            "j needs it); use preconditioner_apply for a traced or non-integer depth."
        )
    require_real_scalar("depth", depth)
    try:
        N = float(np.asarray(depth))
    except OverflowError:  # a Python int beyond the float range
        N = float("inf")
    if not (np.isfinite(N) and N.is_integer() and N >= 1):
        raise ValueError(f"`depth` must be an integer >= 1 for preconditioner_matrix, but is {N}.")
    if N > np.iinfo(np.int32).max:
        raise ValueError(f"`depth` must be at most {np.iinfo(np.int32).max} (an int32 loop count), "
                         f"but is {int(N)}.")
    return _matrix_core(W_e, jnp.asarray(int(N), jnp.int32))


# --------------------------------------------------------------------------------------
# Velocities
# --------------------------------------------------------------------------------------


def _single_output_core(w: jax.Array, g: jax.Array, N: jax.Array) -> jax.Array:
    sq = jnp.sum(w * w)
    nonzero = sq > 0
    safe_sq = jnp.where(nonzero, sq, jnp.ones((), sq.dtype))
    scale = jnp.where(nonzero, safe_sq ** (1 - 1 / N), _zero_power_limit(N))  # ||w||^{2-2/N}
    projection = (jnp.sum(g * w) / safe_sq) * w  # Pr_w(g); 0 at w = 0
    return -scale * (g + (N - 1) * projection)


_single_output_jit = jax.jit(_single_output_core)


def single_output_velocity(
    w: jax.Array, grad: jax.Array, depth: float | jax.Array
) -> jax.Array:
    r"""The single-output (``d_N = 1``) end-to-end velocity [ACH18, Claim 1].

    .. math:: \frac{dw}{dt} = -\|w\|^{2-\frac{2}{N}} \bigl(\nabla\ell(w)
              + (N-1)\,\mathrm{Pr}_w(\nabla\ell(w))\bigr), \qquad
              \mathrm{Pr}_w(v) = \frac{v \cdot w}{\|w\|^2}\, w,

    which is :math:`-P_w(\nabla\ell(w))` for a row vector ``w`` (THEORY.md §4). At
    ``w = 0`` it is 0 for ``N > 1`` and ``-grad`` for ``N = 1`` (non-finite for
    ``N < 1``). Differentiable in ``w`` away from 0.

    Args:
        w: the end-to-end row vector, shape ``(1, d_0)`` (a ``W_e`` with ``d_N = 1``) or
            ``(d_0,)``.
        grad: :math:`\nabla\ell(w)`, shape and dtype of ``w``.
        depth: ``N > 0``, may be traced and non-integer.

    Returns:
        :math:`dw/dt`, shape of ``w``.

    Examples:
        >>> import jax.numpy as jnp
        >>> single_output_velocity(jnp.array([0.0, 2.0]), jnp.array([1.0, 1.0]), 2.0).tolist()
        [-2.0, -4.0]
    """
    require_float_array("w", w)
    if not (w.ndim == 1 or (w.ndim == 2 and w.shape[0] == 1)):
        raise ValueError(
            f"`w` must have shape (1, d_0) or (d_0,) (a single output), but has shape "
            f"{tuple(w.shape)}."
        )
    require_float_array("grad", grad)
    require_shape("grad", grad, tuple(w.shape), "(the shape of `w`)")
    if np.dtype(grad.dtype) != np.dtype(w.dtype):
        raise TypeError(f"`grad` must have the dtype of `w` ({w.dtype}), but has {grad.dtype}.")
    require_finite("w", w)
    require_finite("grad", grad)
    require_depth(depth)
    return _single_output_jit(w, grad, jnp.asarray(depth, w.dtype))


def end_to_end_velocity(
    params: Sequence[jax.Array], loss_fn: LossFn, *, weight_decay: float | jax.Array = 0.0
) -> jax.Array:
    r""":math:`dW_e/dt` under gradient flow on the network, by differentiation alone.

    .. math:: \frac{dW_e}{dt} = \frac{\partial W_{N:1}}{\partial(W_1..W_N)}
              \Bigl[-\nabla\Bigl(\phi + \tfrac{\lambda}{2}\textstyle\sum_j \|W_j\|_F^2\Bigr)\Bigr],

    computed as ``jax.jvp(end_to_end, (params,), (-grad,))``. No closed form enters, so
    this is the independent side of [ACH18, Thm 1]: from balanced weights it equals
    :func:`end_to_end_field` ``= -P_{W_e}(\nabla\ell(W_e)) - \lambda N W_e``; off balance
    it does not.

    Args:
        params: ``(W_1, ..., W_N)``.
        loss_fn: :math:`\ell`, a function of the end-to-end matrix.
        weight_decay: :math:`\lambda \ge 0` on every layer (may be traced).

    Returns:
        :math:`dW_e/dt`, shape ``(d_N, d_0)``.
    """
    validate_params(params)
    for j, W in enumerate(params):
        require_finite(f"params[{j}]", W)
    _validate_loss_fn(loss_fn)
    _validate_weight_decay(weight_decay)
    params = tuple(params)
    phi = overparameterized(loss_fn)

    def objective(ps: tuple[jax.Array, ...]) -> jax.Array:
        return phi(ps) + 0.5 * weight_decay * sum(jnp.sum(W * W) for W in ps)

    grads = jax.grad(objective)(params)
    _, velocity = jax.jvp(end_to_end, (params,), (tuple(-g for g in grads),))
    return velocity


def end_to_end_field(
    W_e: jax.Array,
    loss_fn: LossFn,
    depth: float | jax.Array,
    *,
    weight_decay: float | jax.Array = 0.0,
) -> jax.Array:
    r"""The closed-form end-to-end velocity field on :math:`W_e` (THEORY.md §4).

    .. math:: \mathrm{field}(W_e) = -P_{W_e}\bigl(\nabla\ell(W_e)\bigr) - \lambda N W_e,

    the right-hand side of the end-to-end dynamics and of the discrete end-to-end update
    :math:`W_e \leftarrow W_e + \eta\,\mathrm{field}(W_e)`. ``depth`` enters only as a
    number: it may be traced and non-integer (depth 1 gives plain gradient descent on
    the linear model, bit for bit).

    Args:
        W_e: ``(d_N, d_0)``.
        loss_fn: :math:`\ell`, differentiable in ``W_e``.
        depth: ``N > 0``.
        weight_decay: :math:`\lambda \ge 0` on every layer of the network this stands for.

    Examples:
        >>> import functools, jax.numpy as jnp
        >>> from overparam_jax.losses import whitened_l2_loss
        >>> loss = functools.partial(whitened_l2_loss, Phi=jnp.eye(2))
        >>> end_to_end_field(2 * jnp.eye(2), loss, 1.0).tolist()  # -(W - Phi)
        [[-1.0, -0.0], [-0.0, -1.0]]
    """
    require_float_array("W_e", W_e, ndim=2)
    _validate_loss_fn(loss_fn)
    _validate_weight_decay(weight_decay)
    require_depth(depth)
    G = jax.grad(loss_fn)(W_e)
    N = jnp.asarray(depth, W_e.dtype)
    return -preconditioner_apply(W_e, G, N) - (weight_decay * N) * W_e


# --------------------------------------------------------------------------------------
# The field F(W) = P_W(grad l(W)) is not a gradient field
# --------------------------------------------------------------------------------------


def _differentiable_apply(W: jax.Array, G: jax.Array, N: jax.Array) -> jax.Array:
    r""":math:`P_W(G)` through the *thin* SVD, differentiable for full-rank ``W`` with
    distinct singular values (JAX has no JVP for a non-square full SVD).

    With :math:`k = \min(d_N, d_0)`, :math:`W = U_k \Sigma V_k^\top` and
    :math:`D = \Sigma^{2(N-1)/N}` (the :math:`\Lambda` against a zero-padded partner):

    .. math:: P_W(G) = U_k(\Lambda_{kk} \odot U_k^\top G V_k)V_k^\top
              + U_k D U_k^\top G (I - V_k V_k^\top) + (I - U_k U_k^\top) G V_k D V_k^\top,

    the second term present only when :math:`d_0 > k`, the third only when
    :math:`d_N > k` (full rank leaves no block where both singular values are zero).
    """
    d_N, d_0 = W.shape
    U, sigma, Vt = jnp.linalg.svd(W, full_matrices=False)
    k = sigma.shape[0]
    UtG = U.T @ G  # (k, d_0)
    core = UtG @ Vt.T  # (k, k)
    P = U @ (_eigenvalue_grid(sigma, sigma, N) * core) @ Vt
    D = sigma ** (2 * (N - 1) / N)
    if d_0 > k:
        P = P + (U * D[None, :]) @ (UtG - core @ Vt)
    if d_N > k:
        P = P + (G @ Vt.T - U @ core) @ (D[:, None] * Vt)
    return P


def _require_differentiable_domain(W_e: jax.Array) -> None:
    """Full rank and distinct singular values, checked when ``W_e`` is concrete."""
    if not is_concrete(W_e):
        return
    sigma = np.linalg.svd(np.asarray(W_e), compute_uv=False)
    tol = np.sqrt(np.finfo(np.dtype(W_e.dtype)).eps) * max(float(sigma[0]), np.finfo(float).tiny)
    gaps = -np.diff(sigma)
    if sigma[-1] <= tol or (gaps.size and gaps.min() <= tol):
        found = np.array2string(sigma, precision=3)
        raise ValueError(
            "`W_e` must have full rank and distinct singular values (relative gaps above "
            f"sqrt(eps) = {tol / max(float(sigma[0]), np.finfo(float).tiny):.1e}) to differentiate "
            f"P_W through its SVD, but its singular values are {found}."
        )
    # The derivatives divide by up to the 4th power of a singular value (d/dw of 1/||w||^2):
    # below tiny^(1/4) that overflows, and the Jacobian would come out inf/NaN.
    floor = float(np.finfo(np.dtype(W_e.dtype)).tiny) ** 0.25
    if sigma[-1] < floor:
        raise ValueError(
            f"`W_e` must have singular values of at least {floor:.1e} (tiny^(1/4) of "
            f"{np.dtype(W_e.dtype)}) to differentiate P_W without overflow, but its smallest is "
            f"{sigma[-1]:.3e}."
        )


def field_jacobian(W_e: jax.Array, loss_fn: LossFn, depth: float | jax.Array) -> jax.Array:
    r"""Jacobian of :math:`F(W) = P_W(\nabla\ell(W))` at ``W_e`` in row-major vec.

    ``jax.jacfwd`` of a differentiable evaluation of F: for ``d_N = 1`` the single-output
    form :math:`\|w\|^{2-2/N}(\nabla + (N-1)\mathrm{Pr}_w\nabla)` (differentiable for
    :math:`w \ne 0`); otherwise the thin SVD with the projector terms of the zero-padded
    singular values, valid on full-rank ``W_e`` with distinct singular values (square or
    not). There F is smooth; at repeated or zero singular values the SVD's derivative
    does not exist, so those are rejected when ``W_e`` is concrete.

    The Jacobian is compiled once per shape, dtype and ``loss_fn`` (a static argument,
    compared by identity: build the loss once, not per call); ``depth`` is traced.

    Returns:
        ``J`` of shape ``(d_N d_0, d_N d_0)`` with
        ``J[a, b] = d vec(F)[a] / d vec(W)[b]``.

    Raises:
        ValueError: ``W_e`` not 2-D, non-finite, rank-deficient, with singular values
            closer than :math:`\sqrt{\epsilon}\,\sigma_{\max}` or one below
            :math:`\mathrm{tiny}^{1/4}` (``1.2e-77`` in float64: the derivatives overflow);
            ``depth <= 0``.
    """
    require_float_array("W_e", W_e, ndim=2)
    require_finite("W_e", W_e)
    _validate_loss_fn(loss_fn)
    require_depth(depth)
    _require_differentiable_domain(W_e)
    N = jnp.asarray(depth, W_e.dtype)
    try:
        hash(loss_fn)
    except TypeError:  # not usable as a static argument: trace without the compile cache
        return _jacobian_core.__wrapped__(W_e, N, loss_fn)
    return _jacobian_core(W_e, N, loss_fn)


@functools.partial(jax.jit, static_argnums=2)
def _jacobian_core(W_e: jax.Array, N: jax.Array, loss_fn: LossFn) -> jax.Array:
    """``jacfwd`` of F, compiled once per (shape, dtype, loss_fn); depth is traced."""
    grad_fn = jax.grad(loss_fn)
    if W_e.shape[0] == 1:

        def field(W: jax.Array) -> jax.Array:
            return -_single_output_core(W, grad_fn(W), N)

    else:

        def field(W: jax.Array) -> jax.Array:
            return _differentiable_apply(W, grad_fn(W), N)

    n = W_e.size
    return jax.jacfwd(field)(W_e).reshape(n, n)


def gradient_field_asymmetry(
    W_e: jax.Array, loss_fn: LossFn, depth: float | jax.Array
) -> jax.Array:
    r"""Relative asymmetry :math:`\|J - J^\top\|_F / \|J\|_F` of the Jacobian of
    :math:`F(W) = P_W(\nabla\ell(W))` (THEORY.md §4, [ACH18, Thm 2]).

    A smooth field on a simply connected region is a gradient field iff its Jacobian is
    symmetric. At depth 1, ``J`` is the Hessian of :math:`\ell` and the asymmetry is
    round-off; for ``N >= 2`` it is in general of order one, the numerical witness that
    no regularizer reproduces what depth does. Known exception: ``N = 2``, ``d_N = 1``,
    whitened :math:`\ell_2`, where :math:`F = \nabla(\tfrac23\|w\|^3 - \|w\|\,w\cdot\Phi)`.

    Domain as :func:`field_jacobian` (full rank, distinct singular values).

    Examples:
        >>> import functools, jax.numpy as jnp
        >>> from overparam_jax.losses import whitened_l2_loss
        >>> loss = functools.partial(whitened_l2_loss, Phi=jnp.array([[1.0, 2.0, 0.5]]))
        >>> w = jnp.array([[0.3, -0.2, 0.7]])
        >>> bool(gradient_field_asymmetry(w, loss, 2.0) < 1e-6)  # the exception
        True
    """
    J = field_jacobian(W_e, loss_fn, depth)
    norm = jnp.linalg.norm(J)
    # J = 0 (e.g. a linear loss at depth 1) is symmetric: asymmetry 0, not 0/0.
    safe = jnp.where(norm > 0, norm, jnp.ones((), norm.dtype))
    return jnp.where(norm > 0, jnp.linalg.norm(J - J.T) / safe, jnp.zeros((), norm.dtype))
