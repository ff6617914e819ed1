r"""Deep matrix factorization [ACHL19]: matrix completion and sensing by gradient descent on
a depth-N factorization :math:`W_e = W_N \cdots W_1` (every layer ``d × d``, so the model
can express any matrix and the only bias towards low rank is the one GD brings).

* :func:`completion_loss` — :math:`\ell(W) = \tfrac12 \sum_{(i,j) \in \Omega} (W_{ij} - M_{ij})^2`,
  the observed set :math:`\Omega` given as a 0/1 ``mask``;
* :func:`sensing_loss` — :math:`\ell(W) = \tfrac12 \sum_{i=1}^m (\langle A_i, W\rangle - y_i)^2`;
* :func:`effective_rank` — Roy and Vetterli's entropy rank
  :math:`\exp(-\sum_r p_r \ln p_r)`, :math:`p_r = \sigma_r / \sum_s \sigma_s`;
* :func:`unobserved_error` — the relative error on the entries the loss does not see;
* :func:`singular_value_rates` — [ACHL19, Thm 3]: along gradient flow on a balanced
  factorization, :math:`\dot\sigma_r = -N (\sigma_r^2)^{1 - 1/N} \langle \nabla\ell(W_e), u_r v_r^\top \rangle`:
  the larger a singular value, the faster it moves, more so with depth;
* :func:`low_rank_target`, :func:`observation_mask`, :func:`sensing_measurements` — seeded
  problem instances (pure, traceable: ``vmap`` over seeds and numbers of observations);
* :class:`MatrixCompletion`, :class:`MatrixSensing` — a problem as a pytree (its arrays are
  leaves, so runs on different problems batch into one program), with ``loss`` and ``error``;
* :class:`FactorizationDescent` — GD on the layers of a problem's factorization, the step
  rule :func:`overparam_jax.dynamics.simulate` runs; it also records the leading singular
  values, the effective rank and the test error of :math:`W_e` (``Trajectory.extra``);
* :func:`nuclear_norm_completion` — the baseline :math:`\min \|W\|_*` s.t. :math:`W_\Omega = M_\Omega`,
  solved by cvxpy (SCS), an optional dependency (``pip install 'overparam-jax[dmf]'``).

References:
    [ACHL19] Arora, Cohen, Hu, Luo. Implicit Regularization in Deep Matrix Factorization.
    NeurIPS 2019. §3 (setting), §5 and Theorem 3 (singular-value dynamics).
    Roy, Vetterli. The effective rank: a measure of effective dimensionality. EUSIPCO 2007.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from overparam_jax._validation import (
    MAX_ARRAY_ENTRIES,
    float_dtype,
    is_concrete,
    require_depth,
    require_finite,
    require_float_array,
    require_int,
    require_key,
    require_positive,
    require_shape,
)
from overparam_jax.dynamics import GradientDescent, step_rule
from overparam_jax.networks import end_to_end

__all__ = [
    "FactorizationDescent",
    "MatrixCompletion",
    "MatrixSensing",
    "NuclearNormSolution",
    "completion_loss",
    "effective_rank",
    "low_rank_target",
    "nuclear_norm_completion",
    "observation_mask",
    "sensing_loss",
    "sensing_measurements",
    "singular_value_rates",
    "unobserved_error",
]


def _require_mask(mask: Any, target: Any) -> None:
    require_float_array("mask", mask, ndim=2)
    require_shape("mask", mask, target.shape, "(the shape of `target`)")
    if is_concrete(mask) and not np.all(np.isin(np.asarray(mask), (0.0, 1.0))):
        raise ValueError("`mask` must hold only 0 (unobserved) and 1 (observed).")


def _validate_completion(W_e: Any, target: Any, mask: Any) -> None:
    require_float_array("W_e", W_e, ndim=2)
    require_float_array("target", target, ndim=2)
    require_shape("W_e", W_e, target.shape, "(the shape of `target`)")
    require_finite("target", target)
    _require_mask(mask, target)


def completion_loss(W_e: jax.Array, target: jax.Array, mask: jax.Array) -> jax.Array:
    r"""Matrix completion loss [ACHL19, §3]: :math:`\tfrac12 \sum_{(i,j) \in \Omega} (W_{ij} - M_{ij})^2`.

    Args:
        W_e: ``(d_1, d_2)``.
        target: :math:`M`, ``(d_1, d_2)``, finite.
        mask: ``(d_1, d_2)``, 1 on the observed entries :math:`\Omega`, 0 elsewhere.

    Examples:
        >>> import jax.numpy as jnp
        >>> float(completion_loss(jnp.zeros((2, 2)), jnp.ones((2, 2)), jnp.eye(2)))
        1.0
    """
    _validate_completion(W_e, target, mask)
    return 0.5 * jnp.sum(mask * (W_e - target) ** 2)


def unobserved_error(W_e: jax.Array, target: jax.Array, mask: jax.Array) -> jax.Array:
    r"""Relative reconstruction error on the unobserved entries:
    :math:`\|P_{\Omega^c}(W_e - M)\|_F / \|P_{\Omega^c}(M)\|_F` (NaN when every entry is observed).

    Examples:
        >>> import jax.numpy as jnp
        >>> float(unobserved_error(jnp.zeros((2, 2)), jnp.ones((2, 2)), jnp.eye(2)))
        1.0
    """
    _validate_completion(W_e, target, mask)
    hidden = 1.0 - mask
    return jnp.linalg.norm(hidden * (W_e - target)) / jnp.linalg.norm(hidden * target)


def sensing_loss(W_e: jax.Array, measurements: jax.Array, observations: jax.Array) -> jax.Array:
    r"""Matrix sensing loss [ACHL19, §3]: :math:`\tfrac12 \sum_i (\langle A_i, W_e\rangle - y_i)^2`.

    Args:
        W_e: ``(d_1, d_2)``.
        measurements: :math:`A_1..A_m`, ``(m, d_1, d_2)``, finite.
        observations: :math:`y`, ``(m,)``, finite.
    """
    require_float_array("W_e", W_e, ndim=2)
    require_float_array("measurements", measurements, ndim=3)
    require_float_array("observations", observations, ndim=1)
    require_shape("measurements", measurements, (observations.shape[0], *W_e.shape),
                  "(m, d_1, d_2) from `observations` and `W_e`")
    require_finite("measurements", measurements)
    require_finite("observations", observations)
    residual = jnp.einsum("mij,ij->m", measurements, W_e) - observations
    return 0.5 * jnp.sum(residual**2)


def effective_rank(W: jax.Array) -> jax.Array:
    r"""Effective rank (Roy and Vetterli, 2007): :math:`\exp(-\sum_r p_r \ln p_r)` with
    :math:`p_r = \sigma_r(W) / \|\sigma(W)\|_1` (:math:`0 \ln 0 = 0`). Between 1 (rank one)
    and :math:`\min(d_1, d_2)` (all singular values equal); NaN for ``W = 0``.

    Examples:
        >>> import jax.numpy as jnp
        >>> round(float(effective_rank(jnp.diag(jnp.array([1.0, 1.0, 0.0])))), 6)
        2.0
    """
    require_float_array("W", W, ndim=2)
    require_finite("W", W)
    return _entropy_rank(jnp.linalg.svd(W, compute_uv=False))


def _entropy_rank(sigma: jax.Array) -> jax.Array:
    p = sigma / jnp.sum(sigma)
    positive = p > 0
    return jnp.exp(-jnp.sum(jnp.where(positive, p * jnp.log(jnp.where(positive, p, 1.0)), 0.0)))


def singular_value_rates(W_e: jax.Array, grad: jax.Array, depth: float) -> jax.Array:
    r"""[ACHL19, Thm 3]: the rates of the singular values of :math:`W_e` under gradient flow
    on a balanced depth-N factorization,

    .. math:: \dot\sigma_r = -N\,(\sigma_r^2)^{1-1/N}\,\langle \nabla\ell(W_e), u_r v_r^\top\rangle ,

    with :math:`W_e = \sum_r \sigma_r u_r v_r^\top` (descending). Valid where the singular
    values are distinct (there the SVD is differentiable). ``depth`` may be non-integer.

    Args:
        W_e: ``(d_1, d_2)``.
        grad: :math:`\nabla\ell(W_e)`, same shape.
        depth: :math:`N > 0`.

    Returns:
        ``(min(d_1, d_2),)``, in the order of the singular values.
    """
    require_float_array("W_e", W_e, ndim=2)
    require_float_array("grad", grad, ndim=2)
    require_shape("grad", grad, W_e.shape, "(the shape of `W_e`)")
    require_finite("W_e", W_e)
    require_finite("grad", grad)
    require_depth(depth)
    U, sigma, Vt = jnp.linalg.svd(W_e, full_matrices=False)
    along = jnp.einsum("ir,ij,rj->r", U, grad, Vt)
    return -depth * (sigma**2) ** (1 - 1 / depth) * along


# --------------------------------------------------------------------------------------
# Problem instances
# --------------------------------------------------------------------------------------


def low_rank_target(key: jax.Array, shape: tuple[int, int], rank: int, *, dtype=None) -> jax.Array:
    r"""A random rank-``rank`` matrix :math:`M = U V^\top / \sigma_1(U V^\top)` with i.i.d.
    :math:`N(0, 1)` factors ``U (d_1, r)``, ``V (d_2, r)``: largest singular value 1.

    Examples:
        >>> import jax, numpy as np
        >>> M = low_rank_target(jax.random.key(0), (6, 5), 2)
        >>> int(np.linalg.matrix_rank(np.asarray(M))), round(float(np.linalg.norm(np.asarray(M), 2)), 6)
        (2, 1.0)
    """
    require_key("key", key)
    d_1, d_2 = _matrix_shape(shape)
    require_int("rank", rank, minimum=1)
    if rank > min(d_1, d_2):
        raise ValueError(f"`rank` must be <= min(shape) = {min(d_1, d_2)}, got {rank}.")
    k_u, k_v = jax.random.split(key)
    dtype = float_dtype("dtype", dtype)
    product = jax.random.normal(k_u, (d_1, rank), dtype) @ jax.random.normal(k_v, (d_2, rank), dtype).T
    return product / jnp.linalg.norm(product, 2)


def _matrix_shape(shape: Any) -> tuple[int, int]:
    if not isinstance(shape, (tuple, list)) or len(shape) != 2:
        raise ValueError(f"`shape` must be (d_1, d_2), got {shape!r}.")
    for name, d in zip(("shape[0]", "shape[1]"), shape):
        require_int(name, d, minimum=1)
    return int(shape[0]), int(shape[1])


def observation_mask(key: jax.Array, shape: tuple[int, int], num_observations: Any, *, dtype=None) -> jax.Array:
    """A 0/1 mask with ``num_observations`` entries observed, uniformly at random without
    replacement: the first ``num_observations`` positions of one random permutation, so
    masks drawn from the same key are nested (more observations add entries).
    ``num_observations`` may be traced (``vmap`` over it).

    Examples:
        >>> import jax
        >>> small, large = (observation_mask(jax.random.key(0), (4, 5), m) for m in (3, 12))
        >>> int(small.sum()), int(large.sum()), bool((small <= large).all())
        (3, 12, True)
    """
    require_key("key", key)
    d_1, d_2 = _matrix_shape(shape)
    n = d_1 * d_2
    if is_concrete(num_observations):
        require_int("num_observations", num_observations, minimum=0)
        if num_observations > n:
            raise ValueError(f"`num_observations` must be <= d_1 d_2 = {n}, got {num_observations}.")
    order = jax.random.permutation(key, n)
    observed = jnp.zeros(n, float_dtype("dtype", dtype)).at[order].set(jnp.arange(n) < num_observations)
    return observed.reshape(d_1, d_2)


def sensing_measurements(key: jax.Array, target: jax.Array, num_measurements: int) -> tuple[jax.Array, jax.Array]:
    r"""Gaussian sensing: ``A_i`` with i.i.d. :math:`N(0, 1/m)` entries and
    :math:`y_i = \langle A_i, M\rangle` (``m = num_measurements``).

    Returns:
        ``(measurements (m, d_1, d_2), observations (m,))``.
    """
    require_key("key", key)
    require_float_array("target", target, ndim=2)
    require_finite("target", target)
    require_int("num_measurements", num_measurements, minimum=1)
    if num_measurements * target.size > MAX_ARRAY_ENTRIES:
        raise ValueError(f"`num_measurements` ({num_measurements}) asks for more entries than an array can hold.")
    A = jax.random.normal(key, (num_measurements, *target.shape), target.dtype) / np.sqrt(num_measurements)
    return A, jnp.einsum("mij,ij->m", A, target)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class MatrixCompletion:
    """A completion problem: recover ``target`` from the entries where ``mask`` is 1.

    ``loss`` is :func:`completion_loss`, ``error`` is :func:`unobserved_error`. The arrays
    are pytree leaves: a stack of problems (leading run axis) is one batched problem.
    """

    target: jax.Array
    mask: jax.Array

    def loss(self, W_e: jax.Array) -> jax.Array:
        return completion_loss(W_e, self.target, self.mask)

    def error(self, W_e: jax.Array) -> jax.Array:
        return unobserved_error(W_e, self.target, self.mask)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class MatrixSensing:
    r"""A sensing problem: recover ``target`` from :math:`y_i = \langle A_i, M\rangle`.

    ``loss`` is :func:`sensing_loss`; ``error`` is :math:`\|W_e - M\|_F / \|M\|_F`.
    """

    target: jax.Array
    measurements: jax.Array
    observations: jax.Array

    def loss(self, W_e: jax.Array) -> jax.Array:
        return sensing_loss(W_e, self.measurements, self.observations)

    def error(self, W_e: jax.Array) -> jax.Array:
        return jnp.linalg.norm(W_e - self.target) / jnp.linalg.norm(self.target)


@step_rule
class FactorizationDescent(GradientDescent):
    r"""Gradient descent on the layers of a factorization of ``problem``
    (a :class:`MatrixCompletion` or :class:`MatrixSensing`):
    :math:`W_j \leftarrow W_j - \eta\, \partial \ell(W_N \cdots W_1) / \partial W_j`.

    The problem's arrays are leaves like the learning rate, so runs on different problems
    (seeds, numbers of observations) batch into one compiled program. Besides the usual
    records it records, in ``Trajectory.extra``: ``"singular_values"`` (the leading
    ``num_singular_values`` of :math:`W_e`), ``"effective_rank"`` and ``"error"`` (the
    problem's ``error``).
    """

    loss_fn: Any = dataclasses.field(default=None, metadata={"static": True})  # unused: the loss is the problem's
    problem: MatrixCompletion | MatrixSensing | None = None
    num_singular_values: int = dataclasses.field(default=10, metadata={"static": True})

    def end_to_end_loss(self):
        return self.problem.loss

    def observe(self, params) -> dict[str, jax.Array]:
        W_e = end_to_end(params)
        sigma = jnp.linalg.svd(W_e, compute_uv=False)
        return {**GradientDescent.observe(self, params), "singular_values": sigma[: self.num_singular_values],
                "effective_rank": _entropy_rank(sigma), "error": self.problem.error(W_e)}


# --------------------------------------------------------------------------------------
# The convex baseline
# --------------------------------------------------------------------------------------


class NuclearNormSolution(NamedTuple):
    """What :func:`nuclear_norm_completion` returns.

    Attributes:
        matrix: the minimizer found, ``(d_1, d_2)`` float64.
        optimal: SCS reached its tolerance (status ``optimal``); ``False`` when it stopped at
            ``max_iters`` with the status ``optimal_inaccurate``.
        iterations: SCS iterations used.
    """

    matrix: np.ndarray
    optimal: bool
    iterations: int


def nuclear_norm_completion(target: Any, mask: Any, *, tolerance: float = 1e-6,
                            max_iters: int = 20_000) -> NuclearNormSolution:
    r"""The nuclear-norm minimizer :math:`\arg\min \|W\|_*` s.t. :math:`W_{ij} = M_{ij}` on
    :math:`\Omega` (Candès and Recht, 2009), solved by cvxpy with SCS to ``tolerance``
    (absolute and relative) in at most ``max_iters`` iterations. NumPy in, NumPy out (float64).

    Well below the degrees of freedom of the target the problem is degenerate and SCS may
    stop at ``max_iters`` short of its tolerance: the solution is returned with
    ``optimal=False`` (cvxpy's ``optimal_inaccurate``).

    Raises:
        ImportError: cvxpy is not installed (``pip install 'overparam-jax[dmf]'``).
        RuntimeError: the solver failed (infeasible, unbounded or no solution at all).
    """
    try:
        import cvxpy as cp
    except ImportError as error:  # pragma: no cover - depends on the installation
        raise ImportError("The nuclear-norm baseline needs cvxpy: pip install 'overparam-jax[dmf]'.") from error
    require_float_array("target", target, ndim=2)
    require_finite("target", target)
    _require_mask(mask, target)
    require_positive("tolerance", tolerance)
    require_int("max_iters", max_iters, minimum=1)
    if max_iters > 2**31 - 1:
        raise ValueError(f"`max_iters` must be < 2**31 (SCS counts in int32), got {max_iters}.")
    target, mask = np.asarray(target, np.float64), np.asarray(mask, np.float64)
    W = cp.Variable(target.shape)
    problem = cp.Problem(cp.Minimize(cp.normNuc(W)), [cp.multiply(mask, W) == mask * target])
    with warnings.catch_warnings():  # cvxpy warns on optimal_inaccurate: reported in the result
        warnings.simplefilter("ignore", UserWarning)
        problem.solve(solver=cp.SCS, eps_abs=tolerance, eps_rel=tolerance, max_iters=max_iters)
    if problem.status not in (cp.OPTIMAL, cp.OPTIMAL_INACCURATE) or W.value is None:
        raise RuntimeError(f"SCS did not solve the nuclear-norm problem: status {problem.status}.")
    return NuclearNormSolution(np.asarray(W.value), problem.status == cp.OPTIMAL,
                               int(problem.solver_stats.num_iters))
