r"""Deep linear networks: parameters, the end-to-end matrix, initializations, balancedness.

Conventions (THEORY.md §1): a depth-N linear network is ``params = (W_1, ..., W_N)``,
input side first, with ``W_j`` of shape ``(d_j, d_{j-1})`` and ``dims = (d_0, ..., d_N)``.
The end-to-end matrix is

.. math:: W_e = W_{1:N} = W_N W_{N-1} \cdots W_1 \in \mathbb{R}^{d_N \times d_0},

and partial products are ``W_{j:i} = W_j ... W_i`` (the empty product is the identity).

Weights (``params``, ``W_e``, ``grad_W_e``) are checked for shape and dtype but not for
NaN/Inf: they are what the dynamics move, and non-finite entries propagate to the result
as in IEEE arithmetic (the trajectories report them as divergence). Data that define a
problem (the matrix ``A`` to factor, the target ``Phi``) must be finite.

References:
    [ACH18] Arora, Cohen, Hazan. On the Optimization of Deep Networks: Implicit
    Acceleration by Overparameterization. ICML 2018.
    [ACGH19] Arora, Cohen, Golowich, Hu. A Convergence Analysis of Gradient Descent for
    Deep Linear Neural Networks. ICLR 2019.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp

from overparam_jax._validation import (
    float_dtype,
    require_finite,
    require_float_array,
    require_key,
    require_finite_scalar,
    require_positive,
    require_shape,
    validate_dims,
    validate_params,
)

Params = tuple[jax.Array, ...]

__all__ = [
    "Params",
    "balanced_factorization",
    "balancedness",
    "deficiency_margin",
    "end_to_end",
    "init_balanced",
    "init_gaussian",
    "init_identity",
    "layer_gradients",
    "network_dims",
]


def network_dims(params: Sequence[jax.Array]) -> tuple[int, ...]:
    """Return ``dims = (d_0, ..., d_N)`` of a conforming ``params`` chain.

    Raises:
        ValueError / TypeError: if the shapes do not chain or a layer is not a float matrix.
    """
    return validate_params(params)


def _chain(matrices: Sequence[jax.Array]) -> jax.Array:
    """Product of a list of matrices, left to right, in the cheapest order."""
    if len(matrices) == 1:
        return matrices[0]
    if len(matrices) == 2:
        return matrices[0] @ matrices[1]
    return jnp.linalg.multi_dot(list(matrices))


def end_to_end(params: Sequence[jax.Array]) -> jax.Array:
    r"""The end-to-end matrix :math:`W_e = W_N \cdots W_1` of shape ``(d_N, d_0)``.

    Uses ``jnp.linalg.multi_dot``, which picks the cheapest association order: with a
    single output (``d_N = 1``) the chain becomes vector-matrix products costing
    :math:`O(N h^2)` instead of :math:`O(N h^3)` for hidden width ``h``.

    Examples:
        >>> import jax.numpy as jnp
        >>> end_to_end((jnp.ones((3, 2)), jnp.ones((1, 3)))).shape
        (1, 2)
    """
    validate_params(params)
    return _chain(tuple(params)[::-1])


def layer_gradients(params: Sequence[jax.Array], grad_W_e: jax.Array) -> Params:
    r"""Closed-form layer gradients of :math:`\phi(W_1..W_N) = \ell(W_N \cdots W_1)`.

    .. math:: \frac{\partial \phi}{\partial W_j} = W_{N:j+1}^\top \, \nabla\ell(W_e) \,
              W_{j-1:1}^\top   \qquad \text{(THEORY.md §2)}

    Args:
        params: ``(W_1, ..., W_N)``.
        grad_W_e: :math:`\nabla \ell(W_e)`, shape ``(d_N, d_0)``.

    Returns:
        ``(dphi/dW_1, ..., dphi/dW_N)`` with the shapes of ``params``.
    """
    dims = validate_params(params)
    require_float_array("grad_W_e", grad_W_e, ndim=2)
    require_shape("grad_W_e", grad_W_e, (dims[-1], dims[0]), "(d_N, d_0)")
    params = tuple(params)
    grads = []
    for j in range(len(params)):
        left = [W.T for W in params[j + 1 :]]  # W_{N:j+1}^T = W_{j+1}^T ... W_N^T
        right = [W.T for W in params[:j]]  # W_{j-1:1}^T = W_1^T ... W_{j-1}^T
        grads.append(_chain(left + [grad_W_e] + right))
    return tuple(grads)


def _layer_diagonal(values: jax.Array, shape: tuple[int, int]) -> jax.Array:
    """Zero-padded ``shape`` matrix with ``values`` on its leading diagonal."""
    r = values.shape[0]
    return jnp.zeros(shape, values.dtype).at[jnp.arange(r), jnp.arange(r)].set(values)


def balanced_factorization(A: jax.Array, dims: Sequence[int]) -> Params:
    r"""Exactly balanced weights whose product is exactly ``A`` (ACGH19, Procedure 1).

    With the thin SVD :math:`A = U \Sigma V^\top` (``r = min(d_0, d_N)`` slots), set

    .. math:: W_1 \simeq \Sigma^{1/N} V^\top, \quad W_j \simeq \Sigma^{1/N}\ (1<j<N),
              \quad W_N \simeq U \Sigma^{1/N},

    where :math:`\simeq` zero-pads to each layer's shape. Then :math:`W_N \cdots W_1 = A`
    and :math:`W_{j+1}^\top W_{j+1} = W_j W_j^\top` for all ``j`` (THEORY.md §7).

    Args:
        A: the end-to-end matrix, shape ``(d_N, d_0)``.
        dims: ``(d_0, ..., d_N)``; every hidden width must be ``>= min(d_0, d_N)``.

    Returns:
        ``params = (W_1, ..., W_N)`` in the dtype of ``A``.

    References:
        [ACGH19] Procedure 1.
    """
    dims = validate_dims(dims)
    require_float_array("A", A, ndim=2)
    require_shape("A", A, (dims[-1], dims[0]), "(d_N, d_0) from `dims`")
    require_finite("A", A)
    r = min(dims[0], dims[-1])
    for j, d in enumerate(dims[1:-1], start=1):
        if d < r:
            raise ValueError(
                f"`dims[{j}]` = {d} is below min(d_0, d_N) = {r}; a balanced factorization of "
                "an arbitrary end-to-end matrix needs every hidden width >= min(d_0, d_N)."
            )
    N = len(dims) - 1
    if N == 1:
        return (A,)
    U, sigma, Vt = jnp.linalg.svd(A, full_matrices=False)
    # Singular values are >= 0, but XLA flushes subnormals to zero and the SVD of a matrix
    # of subnormals returns them negated (a NaN root); such an A is zero to XLA anyway.
    root = jnp.maximum(sigma, 0) ** (1.0 / N)
    first = jnp.zeros((dims[1], dims[0]), A.dtype).at[:r, :].set(root[:, None] * Vt)
    last = jnp.zeros((dims[-1], dims[-2]), A.dtype).at[:, :r].set(U * root[None, :])
    middle = [_layer_diagonal(root, (dims[j], dims[j - 1])) for j in range(2, N)]
    return (first, *middle, last)


def _default_dtype(dtype):
    return float_dtype("dtype", dtype)


def init_balanced(key: jax.Array, dims: Sequence[int], *, std: float, dtype=None) -> Params:
    r"""Balanced init: sample ``A`` with i.i.d. :math:`N(0, \mathrm{std}^2)` entries, then
    :func:`balanced_factorization` (ACGH19 §3.3 / Procedure 1).

    ``std >= 0`` (finite) may be a traced value (vmap over init scales). ``key`` is one
    ``jax.random.key``; ``dtype`` a real floating dtype (default float64, float32 without x64).

    Examples:
        >>> import jax
        >>> params = init_balanced(jax.random.key(0), (4, 8, 8, 1), std=0.1)
        >>> [W.shape for W in params]
        [(8, 4), (8, 8), (1, 8)]
    """
    require_key("key", key)
    dims = validate_dims(dims)
    require_positive("std", std, allow_zero=True)
    A = std * jax.random.normal(key, (dims[-1], dims[0]), _default_dtype(dtype))
    return balanced_factorization(A, dims)


def init_gaussian(key: jax.Array, dims: Sequence[int], *, std: float, dtype=None) -> Params:
    r"""Layer-wise independent Gaussian init: entries of each ``W_j`` i.i.d.
    :math:`N(0, \mathrm{std}^2)` (THEORY.md §7). ``std >= 0`` (finite) may be traced."""
    require_key("key", key)
    dims = validate_dims(dims)
    require_positive("std", std, allow_zero=True)
    keys = jax.random.split(key, len(dims) - 1)
    dtype = _default_dtype(dtype)
    return tuple(
        std * jax.random.normal(k, (dims[j + 1], dims[j]), dtype) for j, k in enumerate(keys)
    )


def init_identity(dims: Sequence[int], *, scale: float = 1.0, dtype=None) -> Params:
    """Identity (residual) init: every layer ``W_j = scale * I`` (square layers only).

    Exactly balanced for any ``scale`` (THEORY.md §7).
    """
    dims = validate_dims(dims)
    if len(set(dims)) != 1:
        raise ValueError(f"`dims` must all be equal for an identity init, got {dims}.")
    require_finite_scalar("scale", scale)
    eye = scale * jnp.eye(dims[0], dtype=_default_dtype(dtype))
    return tuple(eye for _ in dims[1:])


def balancedness(params: Sequence[jax.Array]) -> jax.Array:
    r"""Distance from balance :math:`\max_j \|W_{j+1}^\top W_{j+1} - W_j W_j^\top\|_F`.

    Zero for depth 1. Weights are δ-balanced iff this is at most δ (THEORY.md §3).
    """
    validate_params(params)
    params = tuple(params)
    if len(params) == 1:
        return jnp.zeros((), params[0].dtype)
    gaps = [
        jnp.linalg.norm(params[j + 1].T @ params[j + 1] - params[j] @ params[j].T)
        for j in range(len(params) - 1)
    ]
    return jnp.max(jnp.stack(gaps))


def deficiency_margin(W_e: jax.Array, Phi: jax.Array) -> jax.Array:
    r"""Deficiency margin :math:`c = \sigma_{\min}(\Phi) - \|W_e - \Phi\|_F` (ACGH19 Def. 2).

    ``W_e`` has a deficiency margin ``c > 0`` w.r.t. the target ``Phi`` iff the returned
    value is positive; then every matrix at least as close to ``Phi`` has
    :math:`\sigma_{\min} \ge c` (THEORY.md §5).
    """
    require_float_array("Phi", Phi, ndim=2)
    require_float_array("W_e", W_e, ndim=2)
    require_shape("W_e", W_e, Phi.shape, "(the shape of `Phi`)")
    require_finite("Phi", Phi)
    sigma_min = jnp.linalg.svd(Phi, compute_uv=False)[-1]
    return sigma_min - jnp.linalg.norm(W_e - Phi)
