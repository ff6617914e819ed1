"""Tests of overparam_jax.preconditioner (THEORY.md §4) against independent references.

References (tests/references_preconditioner.py) follow the definition — the sum over j of
fractional powers of the Gram matrices, np.kron, term-by-term eigenvalue sums, the network
velocity by the hand formula, finite differences — not the closed form through Λ. Only
for non-integer depth, where the closed form is the definition, is Λ evaluated (in
50-digit decimal arithmetic) and applied in NumPy's singular basis.

The verify checks built on this module, and the wrong implementations they must catch,
run in tests/test_verify_self_test.py.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from overparam_jax import (
    balanced_factorization,
    balancedness,
    end_to_end,
    end_to_end_field,
    end_to_end_velocity,
    field_jacobian,
    gradient_field_asymmetry,
    init_balanced,
    lp_loss,
    preconditioner_apply,
    preconditioner_eigenvalues,
    preconditioner_matrix,
    single_output_velocity,
    whitened_l2_loss,
)
from tests import references_preconditioner as ref

# float64 identities through one SVD, a Gram eigh or a jvp and a handful of matmuls of
# O(1) matrices: round-off ~ 1e-16 * size * condition; measured <= 2e-15 in every case here.
FLOAT64_IDENTITY_RTOL = 1e-10
# Plain float64 round-off of an identity, added to a derived error bound (measured <= 2e-15).
ROUND_OFF = 1e-13
# Λ against the term-by-term sum / 50-digit decimal: a few ulps, plus the error of
# pow(x, y), ~eps |y log x| (<= ~400 eps for singular values in [1e-150, 1e150]).
LAMBDA_RTOL = 1e-13
# Algebraic identities of one evaluation (linearity, self-adjointness) at fixed W: only
# the final matmuls' round-off, ~1e-16 * size.
ALGEBRA_RTOL = 1e-12
# float32: SVD backward error eps32 ~ 1.2e-7 amplified by the sensitivity of P_W to W
# (~ size * cond(W) <= ~30 here); measured <= 5e-7 against float64.
FLOAT32_RTOL = 1e-5
# jax.jacfwd vs central differences with step 1e-5: truncation ~step^2 |F'''| ~ 1e-10,
# round-off ~eps |F| / step ~ 1e-11; measured <= 1e-10.
FD_STEP = 1e-5
FD_JACOBIAN_RTOL = 1e-8
# Asymmetry that is exactly zero in exact arithmetic (depth 1; N = 2, d_N = 1, whitened
# l2): round-off of the Jacobian entries, measured <= 1e-15.
SYMMETRIC_JACOBIAN_TOL = 1e-12
# "Not a gradient field": THEORY.md §4 / the verify check's threshold; measured >= 0.048.
ASYMMETRY_FLOOR = 1e-2
# Near the N = 2, d_N = 1 whitened exception the asymmetry grows from 0 with N - 2, so
# the contrast only has to be far above round-off (1e-12); measured >= 1.3e-2.
CONTRAST_FLOOR = 1e-3

NUM_SAMPLES = 20


# --------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------


def rel(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def regression_data(seed, d_0, d_N):
    rng = np.random.default_rng(seed)
    return (jnp.asarray(rng.standard_normal((NUM_SAMPLES, d_0))),
            jnp.asarray(rng.standard_normal((NUM_SAMPLES, d_N))))


def make_loss(name, X, Y):
    if name == "l2":
        return functools.partial(lp_loss, X=X, Y=Y, p=2.0)
    if name == "l4":
        return functools.partial(lp_loss, X=X, Y=Y, p=4.0)
    return functools.partial(whitened_l2_loss, Phi=Y.T @ X / X.shape[0])


def exactly_low_rank(seed, shape, rank):
    """A rank-`rank` matrix supported on its top-left (rank, rank + 1) block.

    Householder bidiagonalization keeps the zero rows/columns exactly zero, so the zero
    singular values are computed as exact zeros — also for the product of the balanced
    layers. (A generic low-rank matrix gets ~1e-16 instead: see
    test_generic_rank_deficient_is_limited_by_fractional_powers.)
    """
    rng = np.random.default_rng(seed)
    A = np.zeros(shape)
    A[:rank, : min(rank + 1, shape[1])] = rng.standard_normal((rank, min(rank + 1, shape[1])))
    return jnp.asarray(A)


# --------------------------------------------------------------------------------------
# Theorem 1: closed form == autodiff velocity == explicit matrix, from balanced weights
# --------------------------------------------------------------------------------------

# (dims, rank of the end-to-end matrix or None for a Gaussian one): depths 1-6, square
# and not, d_N = 1, hidden widths below d_0, rank-deficient end-to-end matrices.
VELOCITY_CASES = [
    ((3, 5), None),
    ((4, 4, 4), None),
    ((5, 3, 3, 2), None),  # hidden width 3 < d_0 = 5, >= min(d_0, d_N)
    ((6, 4, 4, 4, 1), None),  # d_N = 1
    ((3, 6, 6, 6, 6, 4), None),  # d_N > d_0
    ((5, 4, 4, 4, 4, 4, 4), None),  # depth 6
    ((5, 4, 4, 4), 1),  # rank 1 in 4 x 5
    ((5, 4, 4, 4, 4, 4, 4), 2),  # rank 2 in 4 x 5, depth 6
]


@functools.partial(jax.jit, static_argnums=0)
def _velocities(dims, A, X, Y):
    """For l2, l4 and whitened l2: W_e, G, autodiff velocity, closed form, explicit matrix."""
    N = len(dims) - 1
    params = balanced_factorization(A, dims)
    W_e = end_to_end(params)
    matrix = preconditioner_matrix(W_e, N)
    out = []
    for name in ("l2", "l4", "whitened"):
        loss = make_loss(name, X, Y)
        G = jax.grad(loss)(W_e)
        out.append((G, end_to_end_velocity(params, loss), -preconditioner_apply(W_e, G, float(N)),
                    -(matrix @ G.ravel()).reshape(W_e.shape)))
    return params, W_e, out


@pytest.mark.parametrize("dims,rank", VELOCITY_CASES)
def test_autodiff_velocity_equals_closed_form_and_kronecker(dims, rank):
    N = len(dims) - 1
    X, Y = regression_data(N, dims[0], dims[-1])
    shape = (dims[-1], dims[0])
    if rank:
        A = exactly_low_rank(N, shape, rank)
    else:
        A = jnp.asarray(np.random.default_rng(N).standard_normal(shape))
    params, W_e, out = _velocities(dims, A, X, Y)
    if rank:
        sigma = np.linalg.svd(np.asarray(W_e), compute_uv=False)
        assert np.count_nonzero(sigma) == rank  # exactly rank-deficient, as intended
    assert float(balancedness(params)) <= FLOAT64_IDENTITY_RTOL * float(jnp.linalg.norm(W_e))
    for G, v_auto, v_closed, v_matrix in out:
        assert rel(v_closed, v_auto) <= FLOAT64_IDENTITY_RTOL
        assert rel(v_matrix, v_auto) <= FLOAT64_IDENTITY_RTOL
        # independent references: hand-formula network velocity, sum over j of powers
        assert rel(v_auto, ref.network_velocity(params, G)) <= FLOAT64_IDENTITY_RTOL
        assert rel(v_closed, -ref.preconditioner_apply(W_e, G, N)) <= FLOAT64_IDENTITY_RTOL


def test_weight_decay_adds_minus_lambda_N_W_e():
    dims, lam = (5, 3, 3, 2), 0.3
    X, Y = regression_data(0, 5, 2)
    loss = make_loss("l4", X, Y)

    @jax.jit
    def velocities(key):
        params = init_balanced(key, dims, std=1.0)
        W_e = end_to_end(params)
        return (params, W_e, jax.grad(loss)(W_e),
                end_to_end_velocity(params, loss, weight_decay=lam),
                end_to_end_field(W_e, loss, 3.0, weight_decay=lam),
                end_to_end_field(W_e, loss, 3.0))

    params, W_e, G, v_auto, v_field, no_decay = velocities(jax.random.key(0))
    v_ref = ref.network_velocity(params, G, weight_decay=lam)
    assert rel(v_auto, v_ref) <= FLOAT64_IDENTITY_RTOL
    assert rel(v_field, v_auto) <= FLOAT64_IDENTITY_RTOL
    np.testing.assert_allclose(v_field - no_decay, -lam * 3 * W_e, rtol=ALGEBRA_RTOL, atol=1e-14)


def test_zero_end_to_end_matrix():
    """W_e = 0: a saddle for N > 1 (P_W = 0), the identity for N = 1; no NaN anywhere."""
    W, G = jnp.zeros((2, 4)), jnp.asarray(np.random.default_rng(0).standard_normal((2, 4)))
    for N in (2.0, 2.5, 3.0, 6.0):
        assert np.all(np.asarray(preconditioner_apply(W, G, N)) == 0)
        assert np.all(np.asarray(preconditioner_eigenvalues(W, N)) == 0)
    assert np.all(np.asarray(preconditioner_apply(W, G, 1.0)) == np.asarray(G))
    assert np.all(np.asarray(preconditioner_eigenvalues(W, 1.0)) == 1)
    np.testing.assert_array_equal(preconditioner_matrix(W, 1), np.eye(8))
    np.testing.assert_array_equal(preconditioner_matrix(W, 3), np.zeros((8, 8)))
    X, Y = regression_data(1, 4, 2)
    loss = make_loss("l4", X, Y)
    w = jnp.zeros((1, 4))

    @jax.jit
    def at_zero(W, w, G):
        params = balanced_factorization(W, (4, 5, 2))
        rank_one = W.at[0, 0].set(2.0)
        return (
            end_to_end_velocity(params, loss),
            end_to_end_field(W, loss, 2.0),
            single_output_velocity(w, G[:1], 3.0),
            single_output_velocity(w, G[:1], 1.0),
            # derivatives through the zero branches stay finite (the double-where)
            jax.grad(lambda N: jnp.sum(preconditioner_apply(rank_one, G, N)))(2.5),
            jax.grad(lambda v: jnp.sum(single_output_velocity(v, G[:1], 3.0)))(w),
        )

    v_net, v_field, v_single, v_single_1, d_depth, d_w = at_zero(W, w, G)
    assert np.all(np.asarray(v_net) == 0) and np.all(np.asarray(v_field) == 0)
    assert np.all(np.asarray(v_single) == 0)
    np.testing.assert_array_equal(v_single_1, -G[:1])
    assert np.isfinite(float(d_depth)) and np.all(np.isfinite(np.asarray(d_w)))


@pytest.mark.parametrize("N", [3, 6])
def test_generic_rank_deficient_is_limited_by_fractional_powers(N):
    """A generic rank-1 A = u v^T has computed singular values ~1e-16 instead of 0, in
    balanced_factorization's SVD and again in the closed form's SVD of the product.
    Λ_rs with one zero partner has the term σ_s^{2/N}: a perturbation of the zero by
    n eps σ_max moves P_W by ~(n eps)^{2/N} relative — the accuracy limit of any method
    (THEORY.md §4). Measured: 8e-16, 2e-12, 7e-10, 9e-8 for N = 2, 3, 4, 6."""
    rng = np.random.default_rng(5)
    A = jnp.asarray(rng.standard_normal((4, 1)) @ rng.standard_normal((1, 5)))
    dims = (5,) + (4,) * N
    X, Y = regression_data(5, 5, 4)
    loss = make_loss("l4", X, Y)

    @jax.jit
    def velocities(A):
        params = balanced_factorization(A, dims)
        W_e = end_to_end(params)
        G = jax.grad(loss)(W_e)
        return end_to_end_velocity(params, loss), -preconditioner_apply(W_e, G, float(N))

    v_auto, v_closed = velocities(A)
    limit = (A.size * np.finfo(np.float64).eps) ** (2 / N) + ROUND_OFF
    assert rel(v_closed, v_auto) <= limit


# --------------------------------------------------------------------------------------
# Eigen-structure
# --------------------------------------------------------------------------------------

# (shape, rank or None): square, wide, tall, single output, exactly rank-deficient.
# (The same shapes as the verify checks and the property tests: each shape compiles once.)
MATRIX_CASES = [((3, 3), None), ((2, 4), None), ((4, 2), None), ((1, 5), None), ((3, 4), 1),
                ((3, 4), 2), ((4, 2), 1)]


def matrix_case(shape, rank, seed=0):
    if rank:
        return exactly_low_rank(seed, shape, rank)
    return jnp.asarray(np.random.default_rng(seed).standard_normal(shape))


@pytest.mark.parametrize("shape,rank", MATRIX_CASES)
def test_spectrum_of_explicit_matrix_is_lambda(shape, rank):
    W = matrix_case(shape, rank)
    sigma = np.linalg.svd(np.asarray(W), compute_uv=False)
    for N in (1, 2, 3, 5):
        P = np.asarray(preconditioner_matrix(W, N))
        Lam = np.asarray(preconditioner_eigenvalues(W, float(N)))
        np.testing.assert_allclose(Lam, ref.eigenvalue_grid(W, N), rtol=LAMBDA_RTOL)
        np.testing.assert_allclose(P, ref.preconditioner_matrix(W, N),
                                   atol=FLOAT64_IDENTITY_RTOL * np.abs(P).max())
        eig = np.linalg.eigvalsh(P)
        scale = Lam.max()
        np.testing.assert_allclose(eig, np.sort(Lam.ravel()), atol=FLOAT64_IDENTITY_RTOL * scale)
        assert eig[0] >= -FLOAT64_IDENTITY_RTOL * scale  # PSD
        if rank is None:  # full rank: λ_min >= σ_min^{2(N-1)/N}
            assert eig[0] >= sigma[-1] ** (2 * (N - 1) / N) * (1 - FLOAT64_IDENTITY_RTOL)
            assert Lam.min() >= sigma[-1] ** (2 * (N - 1) / N) * (1 - LAMBDA_RTOL)


@pytest.mark.parametrize("shape,rank", [((3, 3), None), ((2, 4), None), ((3, 4), 2)])
def test_eigenvectors_are_outer_products_of_singular_vectors(shape, rank):
    """P_W(u_r v_s^T) = Λ_rs u_r v_s^T for every pair, with NumPy's full SVD."""
    W = matrix_case(shape, rank, seed=1)
    U, _, Vt = np.linalg.svd(np.asarray(W), full_matrices=True)
    for N in (2.0, 3.0, 2.5):
        Lam = np.asarray(preconditioner_eigenvalues(W, N))
        for r in range(shape[0]):
            for s in range(shape[1]):
                E = np.outer(U[:, r], Vt[s])
                out = np.asarray(preconditioner_apply(W, jnp.asarray(E), N))
                np.testing.assert_allclose(out, Lam[r, s] * E,
                                           atol=FLOAT64_IDENTITY_RTOL * Lam.max())


@pytest.mark.parametrize("gap", [1e-4, 1e-8, 1e-12, 1e-15])
def test_lambda_is_stable_when_singular_values_nearly_coincide(gap):
    """The ratio (σ_r² - σ_s²)/(σ_r^{2/N} - σ_s^{2/N}) cancels catastrophically as the gap
    closes (relative error 1e-4..0.17 at gap 1e-12..1e-15, measured below as a contrast);
    the expm1 form stays at round-off, also for non-integer depth."""
    s = np.array([1.0 + gap, 1.0])
    W = jnp.diag(jnp.asarray(s))
    for N in (2.0, 3.0, 6.0, 2.5, 3.7):
        Lam = float(preconditioner_eigenvalues(W, N)[0, 1])
        expected = ref.eigenvalue(s[0], s[1], N)
        assert abs(Lam - expected) <= LAMBDA_RTOL * expected
    naive = (s[0] ** 2 - s[1] ** 2) / (s[0] ** (2 / 3) - s[1] ** (2 / 3))
    if gap <= 1e-12:
        assert abs(naive - ref.eigenvalue(s[0], s[1], 3)) > 1e-5 * naive  # the contrast


@pytest.mark.parametrize("sigmas", [(1e-150, 1e150), (1e-5, 3.0), (0.3, 7.0), (0.0, 2.0)])
def test_lambda_over_a_wide_range_and_with_zero(sigmas):
    W = jnp.diag(jnp.asarray(sigmas))
    s = sorted(sigmas, reverse=True)  # the SVD's order
    for N in (1.0, 2.0, 3.0, 6.0, 2.5, 1.5):
        Lam = np.asarray(preconditioner_eigenvalues(W, N))
        expected = np.array([[ref.eigenvalue(a, b, N) for b in s] for a in s])
        np.testing.assert_allclose(Lam, expected, rtol=LAMBDA_RTOL)


def test_scipy_fractional_matrix_power_reference_agrees():
    """A second, algorithmically unrelated reference (Schur-Padé powers) for full rank."""
    rng = np.random.default_rng(3)
    W, G = rng.standard_normal((3, 3)), rng.standard_normal((3, 3))
    for N in (2, 3, 5):
        expected = ref.preconditioner_apply(W, G, N, power=ref.scipy_gram_power)
        out = preconditioner_apply(jnp.asarray(W), jnp.asarray(G), N)
        assert rel(out, expected) <= FLOAT64_IDENTITY_RTOL


# --------------------------------------------------------------------------------------
# Single output
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("dims", [(4, 1), (6, 4, 4, 1), (7, 3, 8, 5, 2, 1)])
def test_single_output_form_equals_general_and_autodiff(dims):
    N = len(dims) - 1
    X, Y = regression_data(N, dims[0], 1)
    loss = make_loss("l4", X, Y)

    @jax.jit
    def velocities(key):
        params = init_balanced(key, dims, std=1.0)
        w = end_to_end(params)
        G = jax.grad(loss)(w)
        return (w, G, single_output_velocity(w, G, float(N)), -preconditioner_apply(w, G, float(N)),
                end_to_end_velocity(params, loss),
                single_output_velocity(w.ravel(), G.ravel(), float(N)))

    w, G, v_single, v_general, v_auto, v_flat = velocities(jax.random.key(N))
    assert v_single.shape == (1, dims[0]) and v_flat.shape == (dims[0],)
    assert rel(v_single, v_general) <= FLOAT64_IDENTITY_RTOL
    assert rel(v_single, v_auto) <= FLOAT64_IDENTITY_RTOL
    assert rel(v_single.ravel(), ref.single_output_velocity(w, G, N)) <= FLOAT64_IDENTITY_RTOL
    np.testing.assert_allclose(v_flat, v_single.ravel(), rtol=ALGEBRA_RTOL)


# --------------------------------------------------------------------------------------
# Off balance, the identity fails
# --------------------------------------------------------------------------------------

OFF_BALANCE_EPS = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1)


@pytest.mark.parametrize("dims", [(4, 4, 4, 4)])
def test_off_balance_mismatch_grows_linearly_in_delta(dims):
    """Insert M = I + eps E and M^{-1} between layers 1 and 2: W_e is unchanged (to
    1e-15) and balancedness becomes delta ~ eps. Measured (l4, this case): mismatch
    6.2e-6 .. 6.1e-3 for delta 5.2e-4 .. 0.51, log-log slope 1.0018, local slopes
    1.00002 .. 1.0099 (the verify check's (5, 3, 3, 2) case: fitted 0.994)."""
    X, Y = regression_data(3, dims[0], dims[-1])
    loss = make_loss("l4", X, Y)
    rng = np.random.default_rng(3)
    A = jnp.asarray(rng.standard_normal((dims[-1], dims[0])))
    E = jnp.asarray(rng.standard_normal((dims[1], dims[1])))
    E = E / jnp.linalg.norm(E)

    @jax.jit
    def mismatch(eps):
        params = balanced_factorization(A, dims)
        W_e = end_to_end(params)
        closed = -preconditioner_apply(W_e, jax.grad(loss)(W_e), float(len(dims) - 1))
        M = jnp.eye(dims[1]) + eps * E
        ps = (M @ params[0], jnp.linalg.solve(M.T, params[1].T).T) + params[2:]
        return (balancedness(ps), jnp.linalg.norm(end_to_end(ps) - W_e),
                jnp.linalg.norm(end_to_end_velocity(ps, loss) - closed) / jnp.linalg.norm(closed))

    _, _, at_zero = mismatch(0.0)
    assert float(at_zero) <= FLOAT64_IDENTITY_RTOL
    deltas, moved, mismatches = map(np.asarray, zip(*[mismatch(eps) for eps in OFF_BALANCE_EPS]))
    assert np.all(moved <= 1e-13)  # only the balance changed
    assert np.all(np.diff(mismatches) > 0)  # monotone growth
    slope = np.polyfit(np.log(deltas), np.log(mismatches), 1)[0]
    assert abs(slope - 1) <= 0.05  # linear in delta


# --------------------------------------------------------------------------------------
# Theorem 2: not a gradient field
# --------------------------------------------------------------------------------------


@functools.cache
def field_case(shape, loss_name):
    """(W, jax loss, NumPy gradient of the loss); cached so the Jacobian compiles once per
    case (the loss object is its static argument, depth is traced)."""
    rng = np.random.default_rng(sum(shape) * 7 + len(loss_name))
    W = jnp.asarray(rng.standard_normal(shape))
    X, Y = regression_data(sum(shape), shape[1], shape[0])
    loss = make_loss(loss_name, X, Y)
    if loss_name == "whitened":
        Phi = np.asarray(Y.T @ X / X.shape[0])
        return W, loss, lambda V: V - Phi
    p = 2 if loss_name == "l2" else 4
    return W, loss, lambda V: ref.lp_loss_gradient(V, X, Y, p)


@pytest.mark.parametrize(
    "shape,loss_name,N",
    [((3, 3), "l4", 3), ((2, 3), "l2", 2), ((3, 2), "whitened", 4), ((1, 4), "l4", 3),
     ((3, 3), "l4", 1)],
)
def test_field_jacobian_matches_finite_differences(shape, loss_name, N):
    W, loss, np_grad = field_case(shape, loss_name)
    J = np.asarray(field_jacobian(W, loss, float(N)))
    J_fd = ref.finite_difference_jacobian(
        lambda V: ref.preconditioner_apply(V, np_grad(V), N), W, FD_STEP
    )
    assert rel(J, J_fd) <= FD_JACOBIAN_RTOL
    asym_fd = np.linalg.norm(J_fd - J_fd.T) / np.linalg.norm(J_fd)
    assert abs(float(gradient_field_asymmetry(W, loss, float(N))) - asym_fd) <= FD_JACOBIAN_RTOL


@pytest.mark.parametrize("shape,loss_name", [((3, 3), "l4"), ((2, 3), "l2"), ((3, 2), "whitened"),
                                             ((1, 4), "l4"), ((1, 4), "whitened")])
def test_depth_one_field_is_a_gradient_field(shape, loss_name):
    W, loss, _ = field_case(shape, loss_name)
    assert float(gradient_field_asymmetry(W, loss, 1.0)) <= SYMMETRIC_JACOBIAN_TOL


@pytest.mark.parametrize(
    "shape,loss_name,depths",
    [((3, 3), "l4", (3, 4, 6)), ((1, 4), "l4", (2, 3, 6)), ((2, 3), "l2", (2, 3)),
     ((3, 2), "whitened", (2, 3))],
)
def test_deeper_field_is_not_a_gradient_field(shape, loss_name, depths):
    """Measured: l4 0.16-0.30 (depths 2-6); l2 with d_N >= 2, 0.048-0.11."""
    W, loss, _ = field_case(shape, loss_name)
    for N in depths:
        assert float(gradient_field_asymmetry(W, loss, float(N))) >= ASYMMETRY_FLOOR


def test_depth_two_single_output_whitened_l2_is_the_exception():
    """F(w) = 2||w|| w - ||w|| Phi - (w.Phi) w/||w|| = grad(2/3 ||w||^3 - ||w|| w.Phi)."""
    W, loss, _ = field_case((1, 4), "whitened")
    assert float(gradient_field_asymmetry(W, loss, 2.0)) <= SYMMETRIC_JACOBIAN_TOL  # 4e-17
    for N in (2.5, 3.0, 4.0):  # only N = 2: measured 1.3e-2, 2.3e-2, 3.8e-2
        assert float(gradient_field_asymmetry(W, loss, N)) >= CONTRAST_FLOOR
    W4, loss4, _ = field_case((1, 4), "l4")
    assert float(gradient_field_asymmetry(W4, loss4, 2.0)) >= ASYMMETRY_FLOOR  # only l2: 0.16


def test_field_jacobian_rejects_points_where_the_svd_is_not_differentiable():
    loss = functools.partial(whitened_l2_loss, Phi=jnp.ones((3, 3)))
    with pytest.raises(ValueError, match="`W_e` must have full rank and distinct singular values"):
        field_jacobian(jnp.eye(3), loss, 3.0)  # repeated singular values
    with pytest.raises(ValueError, match="`W_e` must have full rank"):
        field_jacobian(jnp.diag(jnp.array([2.0, 1.0, 0.0])), loss, 3.0)
    with pytest.raises(ValueError, match="`W_e` must have full rank"):
        loss_1 = functools.partial(whitened_l2_loss, Phi=jnp.ones((1, 3)))
        gradient_field_asymmetry(jnp.zeros((1, 3)), loss_1, 2.0)


# --------------------------------------------------------------------------------------
# Algebraic properties (hypothesis)
# --------------------------------------------------------------------------------------

SHAPES = [(1, 5), (3, 3), (2, 4), (4, 2)]


@st.composite
def operator_inputs(draw, depths=(1.0, 2.0, 3.0, 4.0, 2.5, 0.5)):
    shape = draw(st.sampled_from(SHAPES))
    depth = draw(st.sampled_from(depths))
    rank_deficient = draw(st.booleans())
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    W = exactly_low_rank(int(rng.integers(1000)), shape, 1) if rank_deficient else jnp.asarray(
        rng.standard_normal(shape) * rng.uniform(0.1, 3))
    G, H = (jnp.asarray(rng.standard_normal(shape)) for _ in range(2))
    a, b = rng.standard_normal(2)
    return W, G, H, depth, a, b


def _finite_depth(W, depth):
    """Depths below 1 are unbounded on rank-deficient W (Λ = +inf on the null block)."""
    return depth >= 1 or np.linalg.matrix_rank(np.asarray(W)) == min(W.shape)


@given(operator_inputs())
def test_preconditioner_is_linear_in_G(args):
    W, G, H, N, a, b = args
    if not _finite_depth(W, N):
        return
    lhs = preconditioner_apply(W, a * G + b * H, N)
    rhs = a * preconditioner_apply(W, G, N) + b * preconditioner_apply(W, H, N)
    scale = abs(a) * np.linalg.norm(preconditioner_apply(W, G, N)) + abs(b) * np.linalg.norm(
        preconditioner_apply(W, H, N))
    assert np.linalg.norm(np.asarray(lhs - rhs)) <= ALGEBRA_RTOL * max(scale, 1e-300)


@given(operator_inputs())
def test_preconditioner_is_self_adjoint_and_psd(args):
    W, G, H, N, _, _ = args
    if not _finite_depth(W, N):
        return
    PG, PH = preconditioner_apply(W, G, N), preconditioner_apply(W, H, N)
    bound = ALGEBRA_RTOL * float(np.asarray(preconditioner_eigenvalues(W, N)).max()) * float(
        jnp.linalg.norm(G) * jnp.linalg.norm(H))
    assert abs(float(jnp.vdot(PG, H) - jnp.vdot(G, PH))) <= bound
    assert float(jnp.vdot(PG, G)) >= -bound


@given(operator_inputs(depths=(1.0, 2.0, 3.0, 4.0)))
def test_preconditioner_matches_definition_and_depth_one_is_identity(args):
    W, G, _, N, _, _ = args
    out = preconditioner_apply(W, G, N)
    assert rel(out, ref.preconditioner_apply(W, G, int(N))) <= FLOAT64_IDENTITY_RTOL
    explicit = (preconditioner_matrix(W, int(N)) @ G.ravel()).reshape(W.shape)
    assert rel(out, explicit) <= FLOAT64_IDENTITY_RTOL
    if N == 1:
        assert np.array_equal(np.asarray(out), np.asarray(G))  # bit for bit


# --------------------------------------------------------------------------------------
# dtype, vmap, jit
# --------------------------------------------------------------------------------------


def test_float32():
    rng = np.random.default_rng(4)
    for shape in [(3, 4), (1, 5)]:
        W, G = rng.standard_normal(shape), rng.standard_normal(shape)
        for N in (2.0, 3.0, 5.0):
            with jax.default_matmul_precision("highest"):  # no TF32 on GPU
                W32, G32 = jnp.asarray(W, jnp.float32), jnp.asarray(G, jnp.float32)
                out = preconditioner_apply(W32, G32, N)
                Lam = preconditioner_eigenvalues(jnp.asarray(W, jnp.float32), N)
            assert out.dtype == jnp.float32 and Lam.dtype == jnp.float32
            assert rel(out, preconditioner_apply(jnp.asarray(W), jnp.asarray(G), N)) <= FLOAT32_RTOL
    zero = preconditioner_apply(jnp.zeros((2, 3), jnp.float32), jnp.ones((2, 3), jnp.float32), 3.0)
    assert zero.dtype == jnp.float32 and np.all(np.asarray(zero) == 0)


def test_vmap_over_traced_non_integer_depth():
    rng = np.random.default_rng(6)
    W, G = jnp.asarray(rng.standard_normal((3, 4))), jnp.asarray(rng.standard_normal((3, 4)))
    depths = jnp.array([1.0, 1.5, 2.0, 3.0, 3.7])
    X, Y = regression_data(6, 4, 3)
    loss = make_loss("l4", X, Y)

    @jax.jit  # one compile (an eager vmap would compile every batched primitive)
    def sweep(W, G, depths):
        return (jax.vmap(preconditioner_apply, in_axes=(None, None, 0))(W, G, depths),
                jax.vmap(preconditioner_eigenvalues, in_axes=(None, 0))(W, depths),
                jax.vmap(lambda N: end_to_end_field(W, loss, N, weight_decay=0.1))(depths))

    batched, Lams, fields = sweep(W, G, depths)
    U, s, Vt = np.linalg.svd(np.asarray(W), full_matrices=True)
    s_rows, s_cols = s, np.concatenate([s, [0.0]])
    for out, N in zip(batched, depths.tolist()):
        Lam = np.array([[ref.eigenvalue(a, b, N) for b in s_cols] for a in s_rows])
        expected = U @ (Lam * (U.T @ np.asarray(G) @ Vt.T)) @ Vt  # decimal Λ, NumPy SVD
        assert rel(out, expected) <= FLOAT64_IDENTITY_RTOL
        np.testing.assert_allclose(out, preconditioner_apply(W, G, N), rtol=ALGEBRA_RTOL)
    assert Lams.shape == (5, 3, 4)
    np.testing.assert_allclose(Lams[3], preconditioner_eigenvalues(W, 3.0), rtol=ALGEBRA_RTOL)
    np.testing.assert_allclose(fields[3], end_to_end_field(W, loss, 3.0, weight_decay=0.1),
                               rtol=ALGEBRA_RTOL)


def test_vmap_over_matrices():
    rng = np.random.default_rng(7)
    Ws = jnp.asarray(rng.standard_normal((4, 2, 3)))
    Gs = jnp.asarray(rng.standard_normal((4, 2, 3)))
    batched = jax.jit(jax.vmap(preconditioner_apply, in_axes=(0, 0, None)))(Ws, Gs, 3.0)
    for W, G, out in zip(Ws, Gs, batched):
        assert rel(out, ref.preconditioner_apply(W, G, 3)) <= FLOAT64_IDENTITY_RTOL
    ws = Ws[:, :1]
    v = jax.jit(jax.vmap(single_output_velocity, in_axes=(0, 0, None)))(ws, Gs[:, :1], 2.0)
    assert rel(v[2], -preconditioner_apply(ws[2], Gs[2, :1], 2.0)) <= FLOAT64_IDENTITY_RTOL


def test_jit_second_call_does_not_recompile():
    rng = np.random.default_rng(8)
    f = jax.jit(preconditioner_apply)
    args = [(jnp.asarray(rng.standard_normal((3, 5))), jnp.asarray(rng.standard_normal((3, 5))), N)
            for N in (2.0, 3.5)]
    for W, G, N in args:
        assert rel(f(W, G, N), preconditioner_apply(W, G, N)) <= ALGEBRA_RTOL
    assert f._cache_size() == 1
    g = jax.jit(single_output_velocity)
    g(args[0][0][:1], args[0][1][:1], 2.0)
    g(args[1][0][:1], args[1][1][:1], 4.0)
    assert g._cache_size() == 1


# --------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------


def test_errors_name_the_argument():
    W, G = jnp.ones((2, 3)), jnp.ones((2, 3))
    loss = functools.partial(whitened_l2_loss, Phi=jnp.ones((2, 3)))
    expected = r"`G` must have shape \(2, 3\) \(the shape of `W_e`\), but has shape \(3, 2\)"
    with pytest.raises(ValueError, match=expected):
        preconditioner_apply(W, G.T, 2.0)
    with pytest.raises(ValueError, match="`W_e` must have rank 2, but has shape"):
        preconditioner_apply(jnp.ones(3), jnp.ones(3), 2.0)
    with pytest.raises(ValueError, match="`G` must have rank 2"):
        preconditioner_apply(W, jnp.ones((1, 2, 3)), 2.0)
    with pytest.raises(ValueError, match="`depth` must be positive, but is 0.0"):
        preconditioner_apply(W, G, 0.0)
    with pytest.raises(ValueError, match="`depth` must be positive, but is -1.0"):
        preconditioner_eigenvalues(W, -1)
    with pytest.raises(ValueError, match="`depth` must be positive, but is nan"):
        preconditioner_apply(W, G, float("nan"))
    with pytest.raises(ValueError, match="`depth` must be finite"):
        end_to_end_field(W, loss, float("inf"))
    with pytest.raises(ValueError, match="`depth` must be a scalar"):
        preconditioner_apply(W, G, jnp.array([2.0, 3.0]))
    with pytest.raises(TypeError, match="`depth` must be a real number"):
        preconditioner_apply(W, G, True)
    with pytest.raises(ValueError, match="`W_e` must be finite, but has 1 NaN/Inf entries"):
        preconditioner_apply(W.at[0, 0].set(jnp.nan), G, 2.0)
    with pytest.raises(ValueError, match="`W_e` must be finite"):
        preconditioner_eigenvalues(W.at[1, 2].set(jnp.inf), 2.0)
    with pytest.raises(TypeError, match="`G` must have the dtype of `W_e`"):
        preconditioner_apply(W, G.astype(jnp.float32), 2.0)
    with pytest.raises(TypeError, match="`W_e` must have a real floating dtype"):
        preconditioner_apply(jnp.ones((2, 3), jnp.int32), G, 2.0)


def test_matrix_errors():
    W = jnp.ones((2, 3))
    message = "`depth` must be an integer >= 1 for preconditioner_matrix, but is"
    with pytest.raises(ValueError, match=f"{message} 2.5"):
        preconditioner_matrix(W, 2.5)
    with pytest.raises(ValueError, match=f"{message} 0.0"):
        preconditioner_matrix(W, 0)
    with pytest.raises(ValueError, match="`depth` must be a concrete integer scalar"):
        jax.jit(preconditioner_matrix)(W, 2)
    with pytest.raises(ValueError, match="`W_e` must have rank 2"):
        preconditioner_matrix(jnp.ones(4), 2)
    with pytest.raises(ValueError, match="`W_e` must be finite"):
        preconditioner_matrix(W.at[0, 0].set(jnp.nan), 2)


def test_single_output_and_velocity_errors():
    w, g = jnp.ones((1, 3)), jnp.ones((1, 3))
    expected = (r"`w` must have shape \(1, d_0\) or \(d_0,\) \(a single output\), "
                r"but has shape \(2, 3\)")
    with pytest.raises(ValueError, match=expected):
        single_output_velocity(jnp.ones((2, 3)), jnp.ones((2, 3)), 2.0)
    with pytest.raises(ValueError, match=r"`grad` must have shape \(1, 3\) \(the shape of `w`\)"):
        single_output_velocity(w, jnp.ones(3), 2.0)
    with pytest.raises(ValueError, match="`depth` must be positive"):
        single_output_velocity(w, g, -2.0)
    with pytest.raises(ValueError, match="`w` must be finite"):
        single_output_velocity(w.at[0, 1].set(jnp.nan), g, 2.0)
    loss = functools.partial(whitened_l2_loss, Phi=jnp.ones((1, 3)))
    params = (jnp.ones((2, 3)), jnp.ones((1, 2)))
    with pytest.raises(ValueError, match="`weight_decay` must be non-negative, but is -0.1"):
        end_to_end_velocity(params, loss, weight_decay=-0.1)
    with pytest.raises(ValueError, match="`weight_decay` must be non-negative"):
        end_to_end_field(w, loss, 2.0, weight_decay=-1.0)
    with pytest.raises(ValueError, match="`weight_decay` must be a scalar"):
        end_to_end_field(w, loss, 2.0, weight_decay=jnp.ones(2))
    with pytest.raises(TypeError, match="`loss_fn` must be callable"):
        end_to_end_velocity(params, "l2")
    with pytest.raises(ValueError, match=r"params\[1\] has shape \(1, 3\)"):
        end_to_end_velocity((jnp.ones((2, 3)), jnp.ones((1, 3))), loss)
    with pytest.raises(ValueError, match="`W_e` must have rank 2"):
        field_jacobian(jnp.ones(3), loss, 2.0)
