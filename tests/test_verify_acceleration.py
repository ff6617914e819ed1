"""The ``lp-acceleration`` check: its family, predictions and power (THEORY.md §4).

Independent references, in NumPy (tests/references*.py, no library code): the exact
optimum ℓ* of the family (stationary point of a convex loss, and SciPy's minimizer); its
stability edges (Hessian of ℓ by finite differences, the Kronecker P_W, the Hessian of
the depth-2 network's φ); the predicted speedup κ^(2−2/N) from those; and the iteration
counts the check measured, against scalar recursions per singular direction (the family
keeps W_e diagonal in its singular bases). PASS and FAIL on mutants: test_verify_self_test.py.
"""

import math

import jax.numpy as jnp
import numpy as np
import pytest
import scipy.optimize

from overparam_jax.verify.checks import acceleration as A
from overparam_jax.verify.registry import VerifyConfig
from tests import references, references_preconditioner

BETA, H, D, EPS = A._BETA, A._HALF_GAP, A._A_START_ERROR, A._EPSILON
# float64 sums of a few O(1) terms (the loss at the optimum, its gradient there).
FLOAT64_RTOL = 1e-13
# Central differences of an exact gradient, step 1e-5: truncation ~ step^2 * |ℓ''''| ~ 1e-9
# relative, round-off ~ eps/step ~ 1e-11.
FD_STEP, FD_RTOL = 1e-5, 1e-7
# SciPy's BFGS on a quartic with a flat (zero-curvature) direction stops ~1e-12 above ℓ*.
SCIPY_ATOL = 1e-10


def _rotation():
    return np.asarray(A._rotation(VerifyConfig()))


def _data(kappa, V):
    """The documented family, built here in NumPy: X, Y, W*, W(0)."""
    X = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]]) @ V.T
    Y = np.array([[kappa * BETA, 0.0], [0.0, BETA + H], [0.0, BETA - H]])
    u0 = math.sqrt(EPS / 10) / (2 * H)
    return X, Y, np.diag([kappa * BETA, BETA]) @ V.T, np.diag([kappa * BETA - D, BETA + u0]) @ V.T


def _loss(W, X, Y):
    return references.lp_loss(W, X, Y, 4)


def _hessian(grad, x):
    """Central-difference Jacobian of ``grad`` (flat vector in, flat vector out)."""
    cols = []
    for i in range(x.size):
        e = np.zeros_like(x)
        e[i] = FD_STEP
        cols.append((grad(x + e) - grad(x - e)) / (2 * FD_STEP))
    Hm = np.stack(cols, axis=1)
    return 0.5 * (Hm + Hm.T)


def _loss_hessian(W, X, Y):
    return _hessian(lambda w: references.lp_loss_gradient(w.reshape(2, 2), X, Y, 4).ravel(), W.ravel())


def _network_hessian(W1, W2, X, Y):
    """Hessian of φ(W1, W2) = ℓ(W2 W1) over (vec W1, vec W2)."""

    def grad(x):
        A1, A2 = x[:4].reshape(2, 2), x[4:].reshape(2, 2)
        G = references.lp_loss_gradient(A2 @ A1, X, Y, 4)
        return np.concatenate([(A2.T @ G).ravel(), (G @ A1.T).ravel()])

    return _hessian(grad, np.concatenate([W1.ravel(), W2.ravel()]))


@pytest.mark.parametrize("kappa", [8.0, 256.0])
def test_family_matches_the_check(kappa):
    V = _rotation()
    assert np.allclose(V @ V.T, np.eye(2), atol=1e-15)
    family = A._family(jnp.asarray(kappa), jnp.asarray(V))
    X, Y, _, W0 = _data(kappa, V)
    np.testing.assert_allclose(family.X, X, atol=1e-15)
    np.testing.assert_allclose(family.Y, Y, atol=0)
    np.testing.assert_allclose(family.W_e, W0, rtol=1e-15, atol=1e-15)


@pytest.mark.parametrize("kappa", [8.0, 256.0])
def test_optimum_is_exact(kappa):
    """ℓ is convex; W* is stationary, so ℓ(W*) = 2h⁴/3 is the global minimum (and SciPy agrees)."""
    X, Y, W_star, W0 = _data(kappa, _rotation())
    assert math.isclose(_loss(W_star, X, Y), A._OPTIMUM, rel_tol=FLOAT64_RTOL)
    assert A._OPTIMUM == 2 * H**4 / 3
    assert np.max(np.abs(references.lp_loss_gradient(W_star, X, Y, 4))) < FLOAT64_RTOL * kappa**3
    result = scipy.optimize.minimize(lambda w: _loss(w.reshape(2, 2), X, Y), W0.ravel(),
                                     jac=lambda w: references.lp_loss_gradient(w.reshape(2, 2), X, Y, 4).ravel(),
                                     method="BFGS", options={"gtol": 1e-14})
    assert A._OPTIMUM - 1e-15 <= result.fun <= A._OPTIMUM + SCIPY_ATOL


def test_diagonal_stays_diagonal():
    """At any W = diag(a, b) Vᵀ the gradient is diag(·) Vᵀ: the off-diagonal partials vanish."""
    V = _rotation()
    X, Y, _, _ = _data(32.0, V)
    for a, b in [(3.0, 0.2), (31.9, 1.3), (-2.0, 0.7)]:
        G = references.lp_loss_gradient(np.diag([a, b]) @ V.T, X, Y, 4) @ V
        assert abs(G[0, 1]) + abs(G[1, 0]) < FLOAT64_RTOL * np.max(np.abs(G))


def _edges(kappa, depth):
    """(GD edge, end-to-end update edge, its a-direction eigenvalue Λ_aa) at the optimum, in NumPy."""
    V = _rotation()
    X, Y, W_star, _ = _data(kappa, V)
    Hm = _loss_hessian(W_star, X, Y)
    P = references_preconditioner.preconditioner_matrix(W_star, depth)
    a_direction = np.outer([1.0, 0.0], V[:, 0]).ravel()
    return (2 / np.linalg.eigvalsh(Hm).max(), 2 / np.linalg.eigvals(P @ Hm).real.max(),
            a_direction @ P @ a_direction)


@pytest.mark.parametrize("kappa", [8.0, 64.0])
@pytest.mark.parametrize("depth", [2, 3])
def test_stability_edges_and_predicted_speedup(kappa, depth):
    """GD: η < 2/c = 1 with c = 8h²; depth N: η N β^(2−2/N) c < 2; a-direction step
    η N Y^(2−2/N); so k = κ^(2−2/N) at the edges."""
    gd_edge, update_edge, lam_a = _edges(kappa, depth)
    assert math.isclose(gd_edge, 2 / (8 * H**2), rel_tol=FD_RTOL)
    assert math.isclose(update_edge, 2 / (depth * BETA ** (2 - 2 / depth) * 8 * H**2), rel_tol=FD_RTOL)
    assert math.isclose(update_edge * lam_a / gd_edge, kappa ** (2 - 2 / depth), rel_tol=FD_RTOL)


@pytest.mark.parametrize("kappa", [16.0, 256.0])
def test_network_edge_equals_the_update_edge(kappa):
    """The balanced depth-2 network at the optimum: λ_max of φ's Hessian is N β^(2−2/N) c."""
    X, Y, _, _ = _data(kappa, _rotation())
    V = _rotation()
    W1, W2 = np.diag(np.sqrt([kappa * BETA, BETA])) @ V.T, np.diag(np.sqrt([kappa * BETA, BETA]))
    assert np.allclose(W2.T @ W2, W1 @ W1.T)
    network_edge = 2 / np.linalg.eigvalsh(_network_hessian(W1, W2, X, Y)).max()
    _, update_edge, _ = _edges(kappa, 2)
    assert math.isclose(network_edge, update_edge, rel_tol=FD_RTOL)


@pytest.mark.parametrize("depth", [2, 3])
def test_a_step_is_stable_from_the_start(depth):
    """At the update's edge and the largest κ, (4/3) γ e0² < 1/4 (γ = η N a(0)^(2−2/N)):
    the a-direction's own step is monotone, so the edge is set by the b-direction alone."""
    kappa = max(A._UPDATE_MEMBERS[depth])
    _, update_edge, _ = _edges(kappa, depth)
    gamma = update_edge * depth * (kappa * BETA - D) ** (2 - 2 / depth)
    assert 4 / 3 * gamma * D**2 < 0.25


# --------------------------------------------------------------------------------------
# The check on the library: its measured counts against scalar recursions
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def library(verify_results):
    return verify_results["lp-acceleration"]


def test_passes_on_the_library(library):
    assert library.passed, (library.measured, library.details)
    rows = library.details["methods"]
    assert [(r["method"], r["depth"]) for r in rows] == [
        ("end-to-end update", 2), ("end-to-end update", 3), ("GD on the network", 2)]
    for row in rows:
        assert not any(row["best_eta_on_grid_edge"])
        assert abs(row["slope"] - row["predicted_slope"]) <= A._SLOPE_TOLERANCE
        assert row["speedup_k"][-1] >= A._K_REQUIRED
    assert not library.details["linear_model"]["on_edge"]


def _directional_count(kappa, eta, step_a, step_b, save_every, limit):
    """First record (a multiple of ``save_every``) with ℓ − ℓ* ≤ ε, iterating the two
    singular values by ``step_*(σ, ℓ'(σ))``; ℓ = ℓ_a(σ_a) + ℓ_b(σ_b) (off-diagonals stay 0)."""
    Yt = kappa * BETA
    la = lambda s: (s - Yt) ** 4 / 3
    dla = lambda s: 4 / 3 * (s - Yt) ** 3
    lb_excess = lambda s: ((s - BETA - H) ** 4 + (s - BETA + H) ** 4 - 2 * H**4) / 3
    dlb = lambda s: 4 / 3 * ((s - BETA - H) ** 3 + (s - BETA + H) ** 3)
    a, b = Yt - D, BETA + math.sqrt(EPS / 10) / (2 * H)
    for t in range(limit + 1):
        if la(a) + lb_excess(b) <= EPS:
            return save_every * math.ceil(t / save_every)
        a, b = step_a(a, dla(a), eta), step_b(b, dlb(b), eta)
    return math.inf


def _update_step(depth):
    return lambda s, g, eta: s - eta * depth * abs(s) ** (2 - 2 / depth) * g


def _network_step(s, g, eta):
    """Depth-2 GD on equal layer scalars u = √σ: u ← u − η u ℓ'(u²)."""
    u = math.sqrt(s)
    u = u - eta * u * g
    return u * u


def test_linear_counts_match_the_scalar_recursion(library):
    lin = library.details["linear_model"]
    gd = lambda s, g, eta: s - eta * g
    for kappa, eta, count in zip(lin["kappas"], lin["best_learning_rates"], lin["iterations"]):
        expected = _directional_count(kappa, eta, gd, gd, A._LINEAR_SAVE, A._LINEAR_STEPS)
        assert abs(count - expected) <= A._LINEAR_SAVE, (kappa, count, expected)


def test_update_and_network_counts_match_the_scalar_recursions(library):
    for row in library.details["methods"]:
        step = _update_step(row["depth"]) if row["method"] == "end-to-end update" else _network_step
        for kappa, eta, count in zip(row["kappas"], row["best_learning_rates"], row["iterations"]):
            expected = _directional_count(kappa, eta, step, step, A._FAST_SAVE, A._FAST_STEPS)
            assert abs(count - expected) <= A._FAST_SAVE, (row["method"], row["depth"], kappa, count, expected)
