"""The landscape checks (overparam_jax/verify/checks/landscape.py) against independent
NumPy references (their power, PASS on the library and FAIL on each mutant, is asserted in
test_verify_self_test.py).

References here use no overparam_jax code:
* the depth-2 Hessian at zero by central finite differences of a NumPy φ, and as the
  explicit block matrix ``H[(W_1)_{cb}, (W_2)_{ac}] = G_{ab}``;
* φ along a NumPy balanced factorization, against the exact polynomial
  ``φ(0) − φ(tV) = ||G||_F t^N − a t^{2N}``;
* ``E||D||_F²`` by exact enumeration over a three-point law with the Gaussian's first
  four moments (``E||D||²`` is a degree-4 polynomial in the entries, each entry to a
  power ≤ 4), by enumeration over Rademacher signs (fourth moment s⁴), and by a NumPy
  Monte Carlo of Gaussian and uniform entries.
"""

from __future__ import annotations

import itertools
import math

import jax
import numpy as np
import pytest

from overparam_jax.losses import overparameterized
from overparam_jax.verify.checks import landscape
from overparam_jax.verify.registry import VerifyConfig
from tests.references import product


# Float64 identities: an eigen-decomposition or a short polynomial evaluation, ~1e-15
# relative; 1e-12 leaves room for the condition of the small problems.
IDENTITY_RTOL = 1e-12
# Central second differences of a quartic with step h: truncation ~h² (|4th derivative|
# ~ 1) plus round-off ~eps φ / h², both ~1e-8 at h = 1e-4.
FD_STEP, FD_ATOL = 1e-4, 1e-6
# z-score bound of NumPy Monte Carlo tests: 5 sigma (two-sided p ~ 6e-7 per comparison).
MC_Z = 5.0


# --------------------------------------------------------------------------- references


def np_phi(params, X, Y):
    """φ = (1/m) ||X W_eᵀ − Y||_F² with W_e = W_N ⋯ W_1, in NumPy."""
    W_e = product(params)
    return float(np.sum((X @ W_e.T - Y) ** 2) / X.shape[0])


def np_gradient_at_zero(X, Y):
    """∇ℓ(0) = −(2/m) Yᵀ X for ℓ2."""
    return -2.0 * Y.T @ X / X.shape[0]


def unflatten(v, dims):
    """Row-major flat vector → (W_1, ..., W_N) with W_j of shape (d_j, d_{j-1})."""
    out, i = [], 0
    for j in range(len(dims) - 1):
        size = dims[j + 1] * dims[j]
        out.append(v[i : i + size].reshape(dims[j + 1], dims[j]))
        i += size
    return out


def fd_hessian(f, n, h=FD_STEP):
    """Central finite-difference Hessian of f: R^n → R at 0."""
    H = np.zeros((n, n))
    e = np.eye(n) * h
    for i in range(n):
        for j in range(i, n):
            H[i, j] = H[j, i] = (f(e[i] + e[j]) - f(e[i] - e[j]) - f(e[j] - e[i]) + f(-e[i] - e[j])) / (4 * h * h)
    return H


def explicit_depth2_hessian(G, d_1):
    """H at 0 for depth 2: ∂²φ/∂(W_1)_{cb}∂(W_2)_{ac} = G_{ab}, all other entries 0."""
    d_2, d_0 = G.shape
    n1 = d_1 * d_0
    H = np.zeros((n1 + d_2 * d_1,) * 2)
    for c, b, a in itertools.product(range(d_1), range(d_0), range(d_2)):
        i, k = c * d_0 + b, n1 + a * d_1 + c
        H[i, k] = H[k, i] = G[a, b]
    return H


def np_balanced_factorization(A, dims):
    """Procedure 1 in NumPy: W_1 ≃ Σ^{1/N} Vᵀ, W_j ≃ Σ^{1/N}, W_N ≃ U Σ^{1/N}."""
    N, r = len(dims) - 1, min(dims[0], dims[-1])
    U, sigma, Vt = np.linalg.svd(A, full_matrices=False)
    root = sigma ** (1.0 / N)
    layers = []
    for j in range(N):
        W = np.zeros((dims[j + 1], dims[j]))
        if j == 0:
            W[:r, :] = root[:, None] * Vt
        elif j == N - 1:
            W[:, :r] = U * root[None, :]
        else:
            W[np.arange(r), np.arange(r)] = root
        layers.append(W)
    return layers


def gap_square_general(n, h, m, s, kurtosis):
    """E||AᵀA − BBᵀ||_F² for independent A (n×h), B (h×m) with i.i.d. entries of mean 0,
    variance s² and fourth moment kurtosis·s⁴ (re-derived independently of the module):
    E||AᵀA||² = h n (kurtosis + n − 1) s⁴ + h(h − 1) n s⁴, likewise for B, cross = n m h s⁴."""
    AtA = h * n * (kurtosis + n - 1) + h * (h - 1) * n
    BBt = h * m * (kurtosis + m - 1) + h * (h - 1) * m
    return s**4 * (AtA + BBt - 2 * n * m * h)


def enumerate_gap_square(n, h, m, values, weights):
    """Exact E||AᵀA − BBᵀ||_F² when every entry takes ``values`` with ``weights``."""
    k = n * h + h * m
    grid = np.array(list(itertools.product(range(len(values)), repeat=k)))
    entries = np.asarray(values)[grid]
    prob = np.prod(np.asarray(weights)[grid], axis=1)
    A = entries[:, : n * h].reshape(-1, n, h)
    B = entries[:, n * h :].reshape(-1, h, m)
    D = np.swapaxes(A, 1, 2) @ A - B @ np.swapaxes(B, 1, 2)
    return float(np.sum(prob * np.sum(D**2, axis=(1, 2))))


# --------------------------------------------------------------------------- strict saddle


@pytest.mark.parametrize("dims", [(3, 2, 2), (2, 3, 3), (4, 3, 2)])
def test_depth2_hessian_at_zero_is_the_explicit_block_matrix(dims):
    rng = np.random.default_rng(1)
    X, Y = rng.standard_normal((7, dims[0])), rng.standard_normal((7, dims[-1]))
    n = dims[1] * (dims[0] + dims[2])
    H_fd = fd_hessian(lambda v: np_phi(unflatten(v, dims), X, Y), n)
    H = explicit_depth2_hessian(np_gradient_at_zero(X, Y), dims[1])
    np.testing.assert_allclose(H_fd, H, atol=FD_ATOL)


@pytest.mark.parametrize("dims", [(3, 2, 2), (2, 3, 3), (4, 3, 2), (2, 5, 3)])
def test_saddle_spectrum_matches_the_explicit_block_matrix(dims):
    G = np.random.default_rng(2).standard_normal((dims[2], dims[0]))
    eig = np.linalg.eigvalsh(explicit_depth2_hessian(G, dims[1]))
    spectrum = landscape.saddle_spectrum(G, dims[1])
    np.testing.assert_allclose(spectrum, eig, atol=IDENTITY_RTOL * np.linalg.norm(G, 2))
    assert spectrum[0] == pytest.approx(-np.linalg.norm(G, 2), rel=IDENTITY_RTOL)


def test_library_hessian_at_zero_matches_the_explicit_block_matrix():
    X, Y, G = landscape._regression(VerifyConfig(), 500, 4, 2)
    hessian = jax.jit(lambda X, Y: landscape._flat_hessian_at_zero(
        jax.hessian, landscape._l2_objective(overparameterized, X, Y), (4, 3, 2)))
    np.testing.assert_allclose(np.asarray(hessian(X, Y)), explicit_depth2_hessian(np.asarray(G), 3), atol=1e-13)
    np.testing.assert_allclose(G, np_gradient_at_zero(np.asarray(X), np.asarray(Y)), rtol=IDENTITY_RTOL)


# --------------------------------------------------------------------------- non-strict saddle


@pytest.mark.parametrize("dims", [(3, 2, 2, 2), (2, 2, 2, 2, 2)])
def test_hessian_vanishes_at_zero_from_depth_3(dims):
    # Perturbing two entries leaves at least one of N >= 3 layers zero: φ stays φ(0)
    # exactly, so every central second difference is exactly 0.
    rng = np.random.default_rng(3)
    X, Y = rng.standard_normal((7, dims[0])), rng.standard_normal((7, dims[-1]))
    n = sum(dims[j] * dims[j + 1] for j in range(len(dims) - 1))
    assert np.all(fd_hessian(lambda v: np_phi(unflatten(v, dims), X, Y), n) == 0)


@pytest.mark.parametrize("dims", [(4, 3, 2), (4, 3, 3, 2), (4, 3, 3, 3, 2), (2, 3, 3, 3, 3, 3)])
def test_decrease_along_balanced_direction_is_the_exact_polynomial(dims):
    rng = np.random.default_rng(4)
    X, Y = rng.standard_normal((20, dims[0])), rng.standard_normal((20, dims[-1]))
    G = np_gradient_at_zero(X, Y)
    kappa, U = np.linalg.norm(G), G / np.linalg.norm(G)
    V = np_balanced_factorization(-U, dims)
    a = np.sum(U * (U @ X.T @ X / X.shape[0]))
    N, t = len(dims) - 1, 0.7
    decrease = np_phi([np.zeros_like(W) for W in V], X, Y) - np_phi([t * W for W in V], X, Y)
    assert decrease == pytest.approx(kappa * t**N - a * t ** (2 * N), rel=IDENTITY_RTOL)


@pytest.mark.parametrize("N", [2, 3, 4])
def test_order_fit_recovers_exponent_and_coefficient_of_a_power_law(N):
    t = landscape._window(N)
    slope, kappa = landscape._order_fit(t, 1.7 * t**N, N)
    assert slope == pytest.approx(N, rel=1e-12) and kappa == pytest.approx(1.7, rel=1e-12)
    assert landscape._order_fit(t, -(t**N), N)[1] == pytest.approx(-1.0)  # φ rising: κ̂ < 0
    assert math.isnan(landscape._order_fit(t, 0 * t, N)[0])  # flat: NaN, a FAIL


# --------------------------------------------------------------------------- Gaussian init


def test_gaussian_four_moment_law_matches_module_formula_exactly():
    # {−√3 s, 0, √3 s} with weights {1/6, 2/3, 1/6}: variance s², fourth moment 3 s⁴.
    s = 0.7
    values, weights = (-math.sqrt(3) * s, 0.0, math.sqrt(3) * s), (1 / 6, 2 / 3, 1 / 6)
    for n, h, m in [(2, 2, 2), (3, 2, 1), (1, 2, 3), (2, 3, 2), (3, 1, 2)]:
        exact = enumerate_gap_square(n, h, m, values, weights)
        assert landscape.expected_gap_square(n, h, m, s) == pytest.approx(exact, rel=IDENTITY_RTOL)
        assert gap_square_general(n, h, m, s, 3.0) == pytest.approx(exact, rel=IDENTITY_RTOL)


def test_rademacher_enumeration_confirms_the_fourth_moment_term():
    for n, h, m in [(2, 2, 2), (3, 2, 1), (2, 3, 2), (1, 3, 3)]:
        exact = enumerate_gap_square(n, h, m, (-1.3, 1.3), (0.5, 0.5))
        assert gap_square_general(n, h, m, 1.3, 1.0) == pytest.approx(exact, rel=IDENTITY_RTOL)


@pytest.mark.parametrize("law, kurtosis", [("normal", 3.0), ("uniform", 9 / 5)])
@pytest.mark.parametrize("n, h, m", [(2, 2, 3), (5, 2, 2), (8, 16, 4)])
def test_numpy_monte_carlo_matches_formula(law, kurtosis, n, h, m):
    rng, s, draws = np.random.default_rng([5, n, h, m]), 0.3, 100_000
    draw = ((lambda shape: s * rng.standard_normal(shape)) if law == "normal"
            else (lambda shape: rng.uniform(-math.sqrt(3) * s, math.sqrt(3) * s, shape)))
    A, B = draw((draws, n, h)), draw((draws, h, m))
    sq = np.sum((np.swapaxes(A, 1, 2) @ A - B @ np.swapaxes(B, 1, 2)) ** 2, axis=(1, 2))
    z = (sq.mean() - gap_square_general(n, h, m, s, kurtosis)) / (sq.std(ddof=1) / math.sqrt(draws))
    assert abs(z) < MC_Z


def test_cases_make_the_fourth_moment_visible():
    # A uniform law of the same variance moves E||D||² by >= 25% on some gap of the small
    # chain, far beyond its Monte Carlo resolution (z_crit * SE / mean ~ 6% at 4096 draws).
    dims = landscape._INIT_CASES[0][0]
    shifts = [1 - gap_square_general(dims[j + 2], dims[j + 1], dims[j], 1.0, 9 / 5)
              / gap_square_general(dims[j + 2], dims[j + 1], dims[j], 1.0, 3.0) for j in range(len(dims) - 2)]
    assert max(shifts) > 0.25


def test_relative_balancedness_falls_like_inverse_square_root_of_width():
    rel = landscape._relative_balancedness_by_width()
    assert rel["slope"] == pytest.approx(-0.5, abs=0.02)
    for h, r in zip(rel["widths"], rel["relative_delta"]):
        assert r == pytest.approx(math.sqrt(2 * (h + 1)) / h, rel=IDENTITY_RTOL)


# --------------------------------------------------------------------------- the checks


def test_strict_saddle_reports_lambda_min(verify_results):
    for case in verify_results["strict-saddle-depth-2"].details["cases"]:
        assert case["lambda_min_ratio"] == pytest.approx(1.0, rel=1e-12)


def test_non_strict_saddle_reports_each_error(verify_results):
    details = verify_results["non-strict-saddle"].details
    assert details["hessian_norm_3"] == details["hessian_norm_4"] == 0.0
    for N in (2, 3, 4):
        assert details[f"slope_error_{N}"] < 1e-4 and details[f"kappa_error_{N}"] < 1e-4
    assert details["control_lambda_min_2"] < 1e-12


def test_gaussian_init_details_show_theorem1_is_out_of_reach(verify_results):
    details = verify_results["gaussian-init-balancedness"].details
    near_zero = [r for r in details["cases"] if r["dims"][-1] == 1 and r["std"] <= 1e-2]
    assert near_zero
    for row in near_zero:
        # δ exceeds Theorem 1's δ_max by at least a million wherever a margin exists at all.
        assert row["theorem1"]["median_log10_delta_over_delta_max"] > 6
        assert 0.3 < row["theorem1"]["fraction_with_margin"] < 0.7
        # relative balancedness does not improve with the std
        assert 0.1 < row["median_relative_delta"] < 0.3
