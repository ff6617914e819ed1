"""Checks of the end-to-end dynamics (THEORY.md §4, [ACH18] Theorems 1 and 2).

The closed-form preconditioner P_W (one SVD) against the velocity of the actual network
obtained by differentiation alone, against the explicit Kronecker matrix and its
spectrum; the single-output form; what happens off balance; and the Jacobian-asymmetry
witness that the end-to-end field is not a gradient field. Everything in float64.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from overparam_jax.losses import lp_loss, whitened_l2_loss
from overparam_jax.networks import balanced_factorization, balancedness, end_to_end
from overparam_jax.preconditioner import (
    end_to_end_field,
    end_to_end_velocity,
    gradient_field_asymmetry,
    preconditioner_apply,
    preconditioner_eigenvalues,
    preconditioner_matrix,
    single_output_velocity,
)
from overparam_jax.verify.registry import Measurement, VerifyConfig, mutant, register

_NUM_SAMPLES = 20

# (dims, loss, rank-deficient?) for the velocity identity: depths 1-6, square and not,
# d_N = 1, hidden widths below d_0, and an exactly rank-1 end-to-end matrix.
_VELOCITY_CASES = [
    ((4, 3), "l4", False),
    ((5, 3, 3, 2), "l4", False),
    ((6, 4, 4, 4, 1), "l2", False),
    ((5, 4, 4, 4, 4, 4, 4), "whitened", False),
    ((5, 4, 4, 4), "l4", True),
]
_VELOCITY_CASES_FULL = _VELOCITY_CASES + [
    ((4, 4, 4), "l2", False),
    ((3, 6, 6, 6, 6, 4), "l4", False),
    ((5, 4, 4, 4, 4, 4, 4), "l4", True),
    ((8, 8, 8, 8, 1), "whitened", False),
]

# (d_N, d_0, exactly rank-deficient?) for the Kronecker and spectrum checks.
_MATRIX_SHAPES = [(3, 3, False), (2, 4, False), (4, 2, False), (1, 5, False), (3, 4, True)]


def _loss(name: str, X: jax.Array, Y: jax.Array):
    if name == "l2":
        return functools.partial(lp_loss, X=X, Y=Y, p=2.0)
    if name == "l4":
        return functools.partial(lp_loss, X=X, Y=Y, p=4.0)
    return functools.partial(whitened_l2_loss, Phi=Y.T @ X / X.shape[0])


def _end_to_end_matrix(
    rng: np.random.Generator, shape: tuple[int, int], rank_deficient: bool
) -> jax.Array:
    """A Gaussian matrix, or an exactly rank-1 one (only its first row non-zero).

    Householder bidiagonalization leaves the zero rows of the rank-1 matrix (and of the
    balanced layers' product) exactly zero, so its zero singular values are computed as
    exact zeros and the identity is tested to round-off. A generic rank-deficient matrix
    gets singular values ~1e-16 instead of 0, which the fractional powers turn into
    ~(1e-16)^(2/N) (see the preconditioner module docstring).
    """
    A = rng.standard_normal(shape)
    if rank_deficient:
        A[1:] = 0.0
    return jnp.asarray(A, jnp.float64)


def _regression_data(
    rng: np.random.Generator, dims: tuple[int, ...]
) -> tuple[jax.Array, jax.Array]:
    X = rng.standard_normal((_NUM_SAMPLES, dims[0]))
    Y = rng.standard_normal((_NUM_SAMPLES, dims[-1]))
    return jnp.asarray(X, jnp.float64), jnp.asarray(Y, jnp.float64)


def _rng(config: VerifyConfig, offset: int) -> np.random.Generator:
    """Data come from a seeded NumPy generator: no per-shape compile of jax.random."""
    return np.random.default_rng([config.seed, offset])


def _relative(a: jax.Array, b: jax.Array) -> float:
    return float(jnp.linalg.norm(a - b) / jnp.linalg.norm(b))


# --------------------------------------------------------------------------------------
# Wrong implementations the checks below must catch (their mutants)
# --------------------------------------------------------------------------------------


def _off_by_one_depth(W_e, G, depth):
    """P_W computed for depth N + 1."""
    return preconditioner_apply(W_e, G, depth + 1.0)


def _shifted_exponents(W_e, G, depth):
    """sum_j [WW^T]^{j/N} G [W^TW]^{(N-j)/N}: the left exponents one step too high."""
    U, sigma, Vt = jnp.linalg.svd(W_e, full_matrices=True)
    d_N, d_0 = W_e.shape
    rows = jnp.zeros(d_N, W_e.dtype).at[: sigma.size].set(sigma)
    cols = jnp.zeros(d_0, W_e.dtype).at[: sigma.size].set(sigma)
    j = jnp.arange(1, int(depth) + 1, dtype=W_e.dtype)
    j = j[None, None, :]
    grid = jnp.sum(rows[:, None, None] ** (2 * j / depth) * cols[None, :, None] ** (2 * (depth - j) / depth), axis=-1)
    return U @ (grid * (U.T @ G @ Vt.T)) @ Vt


def _swapped_kronecker(W_e, depth):
    """The column-major-vec mistake: sum_j [W^TW]^.. (x) [WW^T]^.., factors swapped."""
    d_N, d_0 = W_e.shape
    P = preconditioner_matrix(W_e, depth)
    return P.reshape(d_N, d_0, d_N, d_0).transpose(1, 0, 3, 2).reshape(d_N * d_0, d_N * d_0)


def _geometric_mean_eigenvalues(W_e, depth):
    """A plausible wrong closed form, N (sigma_r sigma_s)^{(N-1)/N}: right on the diagonal only."""
    d_N, d_0 = W_e.shape
    sigma = jnp.linalg.svd(W_e, compute_uv=False)
    rows, cols = jnp.pad(sigma, (0, d_N - sigma.size)), jnp.pad(sigma, (0, d_0 - sigma.size))
    return depth * jnp.outer(rows, cols) ** ((depth - 1) / depth)


def _single_output_N_not_N_minus_1(w, grad, depth):
    """The projection weighted by N instead of N - 1."""
    norm2 = jnp.sum(w * w)
    return -(norm2 ** (1 - 1 / depth)) * (grad + depth * (jnp.sum(grad * w) / norm2) * w)


def _velocity_assuming_balance(params, loss):
    """The closed form in place of differentiation: blind to balance by construction."""
    W_e = end_to_end(params)
    return -preconditioner_apply(W_e, jax.grad(loss)(W_e), float(len(params)))


def _decay_sign_flipped_field(W_e, loss, depth, *, weight_decay=0.0):
    """The field with its weight-decay term -lam N W_e added with the wrong sign."""
    return end_to_end_field(W_e, loss, depth) + weight_decay * depth * W_e


def _asymmetry_at_depth(depth: float):
    """The Jacobian asymmetry witness evaluated at a fixed wrong depth."""
    return lambda W, loss, N: gradient_field_asymmetry(W, loss, depth)


def _balanced_velocities(velocity, closed_form, dims, loss_name, rank_deficient, rng):
    """(autodiff velocity, closed-form velocity) from the balanced factorization of a
    random end-to-end matrix; one compiled function per case."""
    A = _end_to_end_matrix(rng, (dims[-1], dims[0]), rank_deficient)
    X, Y = _regression_data(rng, dims)

    @jax.jit
    def both(A, X, Y):
        params = balanced_factorization(A, dims)
        loss = _loss(loss_name, X, Y)
        W_e = end_to_end(params)
        return velocity(params, loss), closed_form(W_e, jax.grad(loss)(W_e), float(len(dims) - 1))

    return both(A, X, Y)


@register(
    "end-to-end-closed-form",
    section="§4",
    claim="From balanced weights, jvp(end_to_end, -grad phi) equals -P_W(grad l(W_e)) through "
    "one SVD (depths 1-6, l2/l4/whitened l2, d_N = 1, rank-1 W_e), and -P_W(grad l) - lam N W_e "
    "(end_to_end_field) with weight decay lam on every layer",
    regime="5 cases (9 with --full): depths 1-6, l2/l4/whitened l2, d_N = 1, hidden widths below "
    "d_0, an exactly rank-1 W_e; plus depth 3 with weight decay 0.3 against end_to_end_field; "
    "relative gap, float64 round-off",
    threshold=1e-10,
    mutants=[
        mutant("depth-plus-one", "P_W computed for depth N + 1", preconditioner=_off_by_one_depth),
        mutant("shifted-exponents", "[WW^T]^{j/N} instead of [WW^T]^{(j-1)/N}",
               preconditioner=_shifted_exponents),
        mutant("decay-sign", "the field's weight-decay term -lam N W_e with the wrong sign",
               field=_decay_sign_flipped_field),
    ],
)
def check_closed_form_velocity(
    config: VerifyConfig, *, preconditioner=preconditioner_apply, velocity=end_to_end_velocity,
    field=end_to_end_field,
) -> Measurement:
    """max relative gap between the autodiff velocity and the closed form, float64; plus one
    case with weight decay lam on every layer, where the velocity gains -lam N W_e."""
    rng = _rng(config, 30)
    cases = _VELOCITY_CASES_FULL if config.full else _VELOCITY_CASES

    def closed_form(W_e, G, depth):
        return -preconditioner(W_e, G, depth)

    errors = []
    for dims, loss_name, rank_deficient in cases:
        auto, closed = _balanced_velocities(
            velocity, closed_form, dims, loss_name, rank_deficient, rng
        )
        errors.append(_relative(closed, auto))
    decay_error = _weight_decay_gap(velocity, field, rng)
    return Measurement(
        max(max(errors), decay_error),
        {"cases": [[list(d), name, "rank-1" if r else "full rank"] for d, name, r in cases],
         "relative_errors": errors, "weight_decay_case_relative_error": decay_error},
    )


def _weight_decay_gap(velocity, field, rng, lam: float = 0.3) -> float:
    """Depth 3, l4: jvp velocity with weight decay lam vs -P_W(grad) - lam N W_e."""
    dims = (4, 3, 3, 2)
    A = _end_to_end_matrix(rng, (dims[-1], dims[0]), False)
    params = balanced_factorization(A, dims)
    loss = _loss("l4", *_regression_data(rng, dims))
    return _relative(field(A, loss, 3.0, weight_decay=lam), velocity(params, loss, weight_decay=lam))



def _matrix_cases(config: VerifyConfig, offset: int):
    rng = _rng(config, offset)
    depths = (2, 3, 5) if not config.full else (1, 2, 3, 4, 5, 6)
    for d_N, d_0, rank_deficient in _MATRIX_SHAPES:
        W = _end_to_end_matrix(rng, (d_N, d_0), rank_deficient)
        G = jnp.asarray(rng.standard_normal((d_N, d_0)), jnp.float64)
        for N in depths:
            yield W, G, N


@register(
    "end-to-end-kronecker",
    section="§4",
    claim="The SVD closed form of P_W equals the explicit Kronecker sum "
    "sum_j [WW^T]^{(j-1)/N} (x) [W^TW]^{(N-j)/N} (row-major vec, eigh powers)",
    regime="5 shapes (square, wide, tall, d_N = 1, rank-deficient) x depths 2, 3, 5 (1-6 with "
    "--full); relative gap, float64 round-off",
    threshold=1e-10,
    mutants=[
        mutant("swapped-kronecker", "Kronecker factors swapped (the column-major vec convention)",
               matrix=_swapped_kronecker),
        mutant("depth-plus-one", "closed form computed for depth N + 1", preconditioner=_off_by_one_depth),
    ],
)
def check_kronecker(
    config: VerifyConfig, *, preconditioner=preconditioner_apply, matrix=preconditioner_matrix
) -> Measurement:
    """max relative gap ||P_W(G) - reshape(P vec G)|| / ||P vec G|| over shapes and depths."""
    errors = []
    for W, G, N in _matrix_cases(config, 31):
        explicit = (matrix(W, N) @ G.ravel()).reshape(W.shape)
        errors.append(_relative(preconditioner(W, G, float(N)), explicit))
    return Measurement(max(errors), {"shapes": [list(s) for s in _MATRIX_SHAPES]})


@register(
    "preconditioner-spectrum",
    section="§4",
    claim="The eigenvalues of the explicit P_W are the closed-form Lambda_rs "
    "(sigma_r^2 - sigma_s^2)/(sigma_r^{2/N} - sigma_s^{2/N}), zero-padded sigma",
    regime="the same shapes and depths; max eigenvalue gap / max eigenvalue, float64 round-off",
    threshold=1e-10,
    mutants=[
        mutant("geometric-mean", "Lambda_rs = N (sigma_r sigma_s)^{(N-1)/N}: right on the diagonal only",
               eigenvalues=_geometric_mean_eigenvalues),
    ],
)
def check_spectrum(
    config: VerifyConfig, *, eigenvalues=preconditioner_eigenvalues, matrix=preconditioner_matrix
) -> Measurement:
    """max |eigvalsh(P) - sort(Lambda)| / max(Lambda) over shapes and depths."""
    errors = []
    for W, _, N in _matrix_cases(config, 32):
        explicit = np.linalg.eigvalsh(np.asarray(matrix(W, N)))
        closed = np.sort(np.asarray(eigenvalues(W, float(N))).ravel())
        errors.append(float(np.max(np.abs(explicit - closed)) / np.max(np.abs(closed))))
    return Measurement(max(errors), {})


def _scaled_matrix(factor: float):
    return lambda W, N: factor * preconditioner_matrix(W, N)


@register(
    "preconditioner-extreme-eigenvalues",
    section="§4",
    claim="Two-sided spectrum bounds of the explicit P_W at full-rank W: lambda_max = N sigma_max^{2(N-1)/N}; "
    "lambda_min = N sigma_min^{2(N-1)/N} if W is square and sigma_min^{2(N-1)/N} if not (so ACGH19's "
    "lambda_min >= sigma_min^{2(N-1)/N} is tight exactly for non-square W); max relative error",
    regime="4 full-rank shapes (square, wide, tall, d_N = 1) x depths 2, 3, 5 (1-6 with --full); "
    "eigvalsh of the Kronecker matrix vs singular values, float64 round-off",
    threshold=1e-10,
    mutants=[
        mutant("half-P", "P_W half as large", matrix=_scaled_matrix(0.5)),
        mutant("twice-P", "P_W twice as large", matrix=_scaled_matrix(2.0)),
    ],
)
def check_extreme_eigenvalues(config: VerifyConfig, *, matrix=preconditioner_matrix) -> Measurement:
    """max over full-rank cases of the relative errors of lambda_min and lambda_max."""
    rows = []
    for W, _, N in _matrix_cases(config, 33):
        sigma = np.linalg.svd(np.asarray(W), compute_uv=False)
        if sigma[-1] == 0:
            continue
        exponent = 2 * (N - 1) / N
        lam = np.linalg.eigvalsh(np.asarray(matrix(W, N)))
        predicted_min = (N if W.shape[0] == W.shape[1] else 1) * sigma[-1] ** exponent
        predicted_max = N * sigma[0] ** exponent
        rows.append({"shape": list(W.shape), "depth": N,
                     "lambda_min_rel_error": float(abs(lam[0] / predicted_min - 1)),
                     "lambda_max_rel_error": float(abs(lam[-1] / predicted_max - 1)),
                     "lambda_min_over_sigma_min_power": float(lam[0] / sigma[-1] ** exponent)})
    worst = max(max(r["lambda_min_rel_error"], r["lambda_max_rel_error"]) for r in rows)
    return Measurement(worst, {"cases": rows})


@register(
    "single-output-form",
    section="§4",
    claim="d_N = 1: the autodiff velocity equals -||w||^{2-2/N}(grad + (N-1) Pr_w(grad))",
    regime="depths 1, 2, 5 (and 3, 4 with --full), l2/l4/whitened l2, balanced inits; relative gap",
    threshold=1e-10,
    mutants=[
        mutant("projection-weight-N", "Pr_w weighted by N instead of N - 1",
               single_output=_single_output_N_not_N_minus_1),
    ],
)
def check_single_output(
    config: VerifyConfig, *, single_output=single_output_velocity, velocity=end_to_end_velocity
) -> Measurement:
    """max relative gap over depths 1-5 and l2/l4/whitened l2, balanced inits."""
    rng = _rng(config, 34)
    cases = [((4, 1), "l4"), ((7, 1, 1), "whitened"), ((5, 5, 5, 5, 5, 1), "l2")]
    if config.full:
        cases += [((6, 4, 4, 1), "l4"), ((9, 3, 2, 4, 1), "whitened")]
    errors = []
    for dims, loss_name in cases:
        auto, closed = _balanced_velocities(velocity, single_output, dims, loss_name, False, rng)
        errors.append(_relative(closed, auto))
    return Measurement(
        max(errors), {"cases": [[list(d), n] for d, n in cases], "relative_errors": errors}
    )


_OFF_BALANCE_EPS = (1e-4, 1e-3, 1e-2, 3e-2, 1e-1)


@register(
    "off-balance-mismatch",
    section="§3-§4",
    claim="Off balance the identity fails: with W_e held fixed and balancedness delta, "
    "|v_autodiff + P_W(grad)| / |P_W(grad)| grows with delta (smallest local log-log slope; "
    "about 1, i.e. linear)",
    regime="depth 3, dims (5, 3, 3, 2), l4 loss, eps = 1e-4 .. 1e-1 (delta over three decades)",
    threshold=0.5,
    relation=">=",
    mutants=[
        mutant("closed-form-as-velocity", "the velocity taken from the closed form, which assumes balance",
               velocity=_velocity_assuming_balance),
    ],
)
def check_off_balance(
    config: VerifyConfig, *, preconditioner=preconditioner_apply, velocity=end_to_end_velocity
) -> Measurement:
    """Insert M = I + eps E and M^{-1} between layers 1 and 2 (W_e unchanged, balance broken)."""
    dims = (5, 3, 3, 2)
    rng = _rng(config, 35)
    A = _end_to_end_matrix(rng, (dims[-1], dims[0]), False)
    X, Y = _regression_data(rng, dims)
    E = rng.standard_normal((dims[1], dims[1]))
    E = jnp.asarray(E / np.linalg.norm(E), jnp.float64)
    depth = float(len(dims) - 1)

    @jax.jit
    def perturbed(eps, A, X, Y, E):
        params = balanced_factorization(A, dims)
        loss = _loss("l4", X, Y)
        M = jnp.eye(dims[1], dtype=jnp.float64) + eps * E
        ps = (M @ params[0], jnp.linalg.solve(M.T, params[1].T).T) + params[2:]
        W_e = end_to_end(params)
        closed = -preconditioner(W_e, jax.grad(loss)(W_e), depth)
        mismatch = jnp.linalg.norm(velocity(ps, loss) - closed) / jnp.linalg.norm(closed)
        return balancedness(ps), mismatch

    measured = [perturbed(eps, A, X, Y, E) for eps in _OFF_BALANCE_EPS]
    deltas, mismatches = map(np.asarray, zip(*measured))
    local_slopes = np.diff(np.log(mismatches)) / np.diff(np.log(deltas))
    fitted = float(np.polyfit(np.log(deltas), np.log(mismatches), 1)[0])

    def plot(ax):
        ax.loglog(deltas, mismatches, "o-", label="|v_autodiff + P_W(grad)| / |P_W(grad)|")
        ax.set_xlabel("balancedness delta")
        ax.set_ylabel("relative mismatch")
        ax.set_title(f"off balance: log-log slope {fitted:.3f}")
        ax.legend()

    return Measurement(
        float(np.min(local_slopes)),
        {"deltas": deltas.tolist(), "mismatches": mismatches.tolist(),
         "local_slopes": local_slopes.tolist(), "fitted_slope": fitted},
        plot,
    )


# (shape (d_N, d_0), loss, depth) where F = P_W grad l is not a gradient field: square,
# single output and tall; l4 at depth 3, l2 (d_N >= 2) at depth 2. Each SVD Jacobian
# takes ~1-2 s to compile on 2 cores.
_ASYMMETRIC_CASES = [((3, 3), "l4", 3), ((1, 4), "l4", 3), ((3, 2), "l2", 2)]
_ASYMMETRIC_CASES_FULL = _ASYMMETRIC_CASES + [
    ((2, 3), "l4", 4),
    ((4, 4), "l4", 6),
    ((2, 5), "l2", 3),
]


def _asymmetric_cases(config: VerifyConfig):
    return _ASYMMETRIC_CASES_FULL if config.full else _ASYMMETRIC_CASES


@functools.lru_cache(maxsize=4)
def _field_cases(config: VerifyConfig) -> tuple[tuple[jax.Array, object, int], ...]:
    """(W, loss, depth) per case; cached so that the depth-1 check reuses the compiled
    Jacobians of the same loss objects (depth is traced)."""
    rng = _rng(config, 36)
    out = []
    for shape, loss_name, N in _asymmetric_cases(config):
        W = jnp.asarray(rng.standard_normal(shape), jnp.float64)
        out.append((W, _loss(loss_name, *_regression_data(rng, (shape[1], shape[0]))), N))
    return tuple(out)


@register(
    "not-a-gradient-field",
    section="§4",
    claim="For N >= 2 the end-to-end field F(W) = P_W grad l(W) has a non-symmetric Jacobian "
    "||J - J^T||/||J|| (l4 at depth >= 3, and l2 with d_N >= 2): no regularizer reproduces depth",
    regime="3 cases (6 with --full): 3x3 and 1x4 l4 at depth 3, 3x2 l2 at depth 2; jax.jacfwd "
    "through the thin SVD at full-rank W with distinct singular values",
    threshold=1e-2,
    relation=">=",
    mutants=[
        mutant("depth-1-field", "the field evaluated at depth 1 (plain gradient)", asymmetry=_asymmetry_at_depth(1.0)),
    ],
)
def check_not_gradient_field(
    config: VerifyConfig, *, asymmetry=gradient_field_asymmetry
) -> Measurement:
    """min relative Jacobian asymmetry over the cases (jax.jacfwd through the thin SVD)."""
    values = [float(asymmetry(W, loss, float(N))) for W, loss, N in _field_cases(config)]
    return Measurement(
        min(values),
        {"cases": [[list(s), n, N] for s, n, N in _asymmetric_cases(config)],
         "asymmetries": values},
    )


@register(
    "depth-1-gradient-field",
    section="§4",
    claim="At depth 1 the field is grad l, a gradient field: Jacobian asymmetry is round-off",
    regime="the same W and losses as not-a-gradient-field, at depth 1",
    threshold=1e-12,
    mutants=[
        mutant("depth-3-field", "the field evaluated at depth 3", asymmetry=_asymmetry_at_depth(3.0)),
    ],
)
def check_depth_one_symmetric(
    config: VerifyConfig, *, asymmetry=gradient_field_asymmetry
) -> Measurement:
    """max relative Jacobian asymmetry at depth 1 over the same shapes and losses."""
    values = [float(asymmetry(W, loss, 1.0)) for W, loss, _ in _field_cases(config)]
    return Measurement(max(values), {"asymmetries": values})


@register(
    "depth-2-single-output-exception",
    section="§4",
    claim="Known exception: N = 2, d_N = 1, whitened l2 is a gradient field "
    "(F = grad(2/3 ||w||^3 - ||w|| w.Phi)); Jacobian asymmetry is round-off",
    regime="N = 2, d_N = 1, whitened l2, d_0 = 3 and 6",
    threshold=1e-12,
    mutants=[
        mutant("depth-3-field", "the field evaluated at depth 3", asymmetry=_asymmetry_at_depth(3.0)),
    ],
)
def check_depth_two_exception(
    config: VerifyConfig, *, asymmetry=gradient_field_asymmetry
) -> Measurement:
    """max relative Jacobian asymmetry, N = 2, d_N = 1, whitened l2, several d_0."""
    rng = _rng(config, 38)
    values = []
    for d_0 in (3, 6):
        W = jnp.asarray(rng.standard_normal((1, d_0)), jnp.float64)
        loss = _loss("whitened", *_regression_data(rng, (d_0, 1)))
        values.append(float(asymmetry(W, loss, 2.0)))
    return Measurement(max(values), {"d_0": [3, 6], "asymmetries": values})
