"""The necessity checks (ACGH19 Claims 4 and 5) rest on independent NumPy references for
their constructions. PASS on the library and FAIL on each mutant: test_verify_self_test."""

import functools

import numpy as np
import pytest

from overparam_jax.networks import balanced_factorization, balancedness
from overparam_jax.verify.checks import necessity

ROUND_OFF = 1e-12  # float64 identities on O(1) numbers


# --------------------------------------------------------------------------- Claim 4 reference


def scalar_gd(layers, eta, num_steps):
    """Plain NumPy GD on l = (a_N ... a_1 - 1)^2 / 2, written from the partial derivatives
    (dl/da_j = r * prod_{k != j} a_k), not from the module's s_j form. Returns the losses
    of the finite states and the layers at every step."""
    a = np.array(layers, np.float64)
    losses, history = [], []
    with np.errstate(over="ignore", invalid="ignore"):
        for _ in range(num_steps + 1):
            r = np.prod(a) - 1
            if not np.isfinite(0.5 * r * r) or not np.all(np.isfinite(a)):
                break
            losses.append(0.5 * r * r)
            history.append(a.copy())
            others = np.array([np.prod(np.delete(a, j)) for j in range(a.size)])
            a = a - eta * r * others
    return np.array(losses), np.array(history)


@pytest.mark.parametrize("depth", [2, 4, 6])
@pytest.mark.parametrize("eta", [1e-6, 1e-4, 1e-2, 0.3, 1.0])
@pytest.mark.parametrize("c", [0.01, 0.3, 0.7, 0.99])
def test_claim4_construction_fails_forever_in_numpy(depth, eta, c):
    """The construction's first entries, iterated by plain NumPy GD: the loss never goes
    below l(0) = (1 - c)^2 / 2, grows >= 4^N-fold per step from t = 1 until it overflows,
    and every layer changes sign at every step from t = 1 on (the paper's alternating signs)."""
    layers = [float(np.asarray(W)[0, 0]) for W in necessity.claim4_init(eta, c, (1,) * (depth + 1))]
    assert np.prod(layers) == pytest.approx(c, rel=ROUND_OFF)  # margin exactly c w.r.t. Phi = 1
    losses, history = scalar_gd(layers, eta, 50)
    assert losses.size < 50  # overflowed: diverged
    assert losses.min() == losses[0] == pytest.approx((1 - c) ** 2 / 2, rel=ROUND_OFF)
    assert np.all(losses[2:] / losses[1:-1] >= 4.0**depth)
    assert np.all(np.sign(history[2:]) == -np.sign(history[1:-1]))


def test_claim4_lemma_invariant_region():
    """The lemma on random states: r > 0 and every s_j >= 3 stay so after one step, with
    r' > 2^N r and every layer flipping sign (states outside the region are redrawn)."""
    rng = np.random.default_rng(0)
    for depth in (2, 4, 6):
        tested = 0
        for _ in range(1000):
            eta, w = 10.0 ** rng.uniform(-4, 0), 1 + 10.0 ** rng.uniform(0, 8)
            s = 3 + rng.exponential(5.0, depth)  # targets for s_j = eta r w / a_j^2
            a = np.sqrt(eta * (w - 1) * w / s) * rng.choice([-1, 1], depth)
            a[-1] = w / np.prod(a[:-1])  # exact product w; s_N follows
            r = np.prod(a) - 1
            if np.min(eta * r * np.prod(a) / a**2) < 3:
                continue
            tested += 1
            a_next = a - eta * r * np.prod(a) / a
            r_next = np.prod(a_next) - 1
            assert r_next > 2**depth * r
            assert np.min(eta * r_next * np.prod(a_next) / a_next**2) >= 3
            assert np.all(np.sign(a_next) == -np.sign(a))
        assert tested >= 200, tested


def test_claim4_init_depends_on_eta_and_fails_only_where_built():
    """Order of quantifiers: the init built for eta = 0.3 converges at eta = 1e-3 (it is
    not a counterexample there), while the one built for 1e-3 fails there."""
    dims = (1, 1, 1)
    eta_small = 1e-3
    for built_for, should_fail in ((0.3, False), (eta_small, True)):
        layers = [float(np.asarray(W)[0, 0]) for W in necessity.claim4_init(built_for, 0.5, dims)]
        losses, _ = scalar_gd(layers, eta_small, 20000)
        assert (losses.min() >= losses[0]) == should_fail
    K = [necessity.claim4_scale(eta, 0.5, 4) for eta in (1e-4, 1e-3, 1e-2)]
    assert K[0] > K[1] > K[2]
    assert K[0] / K[1] == pytest.approx(10 ** (5 / 6), rel=1e-9)  # K ~ eta^-(N+1)/(2N-2)


def test_claim4_region_certificate_matches_numpy_step():
    eta, c = 1e-2, 0.5
    params = necessity.claim4_init(eta, c, (2, 2, 2, 2, 2))
    cert = necessity._region_certificate(params, eta)
    _, history = scalar_gd([float(np.asarray(W)[0, 0]) for W in params], eta, 1)
    a1 = history[1]
    w1 = np.prod(a1)
    assert cert["holds"] and cert["min_s1"] >= 3
    assert cert["r1"] == pytest.approx(w1 - 1, rel=1e-12)
    assert cert["min_s1"] == pytest.approx(np.min(eta * (w1 - 1) * w1 / a1**2), rel=1e-12)


def test_claim4_certificate_rejects_non_diagonal_or_off_target_layers():
    eye = np.eye(2)
    assert not necessity._region_certificate((eye + 0.1, eye), 0.1)["holds"]
    assert not necessity._region_certificate((np.diag([5.0, 2.0]), np.diag([0.1, 1.0])), 0.1)["holds"]


@pytest.mark.parametrize("depth", [2, 3, 4])
def test_numpy_procedure_one_matches_the_library(depth):
    W_e = np.random.default_rng(1).standard_normal((3, 3))
    twin = necessity._balanced_twin(W_e, depth)
    library = balanced_factorization(W_e, (3,) * (depth + 1))
    np.testing.assert_allclose(necessity._product(twin), W_e, atol=ROUND_OFF)
    np.testing.assert_allclose(necessity._product(library), W_e, atol=ROUND_OFF)
    assert float(balancedness(tuple(twin))) <= ROUND_OFF


@pytest.mark.parametrize("depth", [2, 4])
@pytest.mark.parametrize("c", [0.1, 0.5, 0.9])
def test_claim4_twin_converges_in_numpy_within_the_checks_horizon(depth, c):
    """The balanced twin (all layers c^(1/N)) under plain NumPy GD at the grid's smallest and
    largest eta reaches l(T)/l(0) <= 1e-10 within T = 10/eta_min, and at eta/10 it does not."""
    etas, _ = necessity._c4_grid(necessity.VerifyConfig())
    T = int(np.ceil(necessity._C4_HORIZON / etas.min()))
    for eta, converges in ((etas.min(), True), (etas.max(), True), (etas.min() / 10, False)):
        a, l0 = np.full(depth, c ** (1 / depth)), (1 - c) ** 2 / 2
        for _ in range(T):
            w = np.prod(a)
            a = a - eta * (w - 1) * w / a
        assert (0.5 * (np.prod(a) - 1) ** 2 / l0 <= necessity._C4_TWIN_TOLERANCE) == converges


def test_claim4_scale_rejects_invalid_arguments():
    for args in ((0.0, 0.5, 2), (2.0, 0.5, 2), (0.1, 1.0, 2), (0.1, 0.5, 3)):
        with pytest.raises(ValueError, match="even depth"):
            necessity.claim4_scale(*args)


def test_claim4_details(verify_results):
    details = verify_results["claim4-no-balance-fails"].details
    assert details["grid_points"] == 72 and not details["stopped_early"]
    assert details["min_certificate_s1 (lemma needs >= 3)"] >= 3
    for p in details["points"]:
        assert p["margin"] == pytest.approx(p["c"], abs=1e-9)
        delta_max = p["c"] ** 2 / (256 * p["depth"] ** 3)  # Theorem 1's delta (||Phi||_F = 1 for d = 1)
        assert p["balancedness"] >= 1e6 * delta_max and p["twin_balancedness"] <= 1e-12


# --------------------------------------------------------------------------- Claim 5 reference


def matrix_gd_losses(Phi, depth, eta, num_steps):
    """Plain NumPy GD on the layers from W_j = I with the hand gradient
    W_{N:j+1}^T (W_e - Phi) W_{j-1:1}^T (no eigen-reduction, no autodiff)."""
    Ws = [np.eye(Phi.shape[0]) for _ in range(depth)]
    chain = lambda ms: functools.reduce(lambda acc, W: W @ acc, ms, np.eye(Phi.shape[0]))
    losses = []
    for _ in range(num_steps + 1):
        G = chain(Ws) - Phi
        losses.append(0.5 * np.sum(G**2))
        Ws = [Ws[j] - eta * chain(Ws[j + 1:]).T @ G @ chain(Ws[:j]).T for j in range(depth)]
    return np.array(losses), Ws


@pytest.mark.parametrize("depth", [2, 4])
def test_claim5_scalar_reduction_matches_matrix_gd(depth):
    """On the float horizon (N = 2: before a round-off seed can leave the strict saddle)."""
    Phi = necessity.reflection_target(np.random.default_rng(3), 3)
    etas = [0.01, 0.2]
    reduced = necessity.scalar_reduction_losses(Phi, depth, etas, 300)
    for eta, row in zip(etas, reduced):
        horizon = necessity.float_horizon(eta, depth, 300)
        losses, Ws = matrix_gd_losses(Phi, depth, eta, horizon)
        np.testing.assert_allclose(row[: horizon + 1], losses, rtol=1e-11)
        # N = 2: a round-off seed may grow to ~sqrt(eps) by the horizon (its definition)
        bound = 10 * np.sqrt(np.finfo(np.float64).eps) if depth == 2 else 1e-12
        assert max(np.linalg.norm(W - Ws[0]) + np.linalg.norm(W - W.T) for W in Ws) <= bound


def nudged_negative_direction(depth, eta, num_steps):
    """Scalar GD along the eigenvector of -1: l = (a_N ... a_1 + 1)^2 / 2 from a = (1, ..., 1)
    with the last entry nudged by machine epsilon (a round-off seed breaking the layers' equality)."""
    a = np.ones(depth)
    a[-1] += np.finfo(np.float64).eps
    losses = np.empty(num_steps + 1)
    for t in range(num_steps + 1):
        w = np.prod(a)
        losses[t] = 0.5 * (w + 1) ** 2
        a = a - eta * (w + 1) * w / a
    return losses


@pytest.mark.parametrize("eta", [0.01, 0.2])
def test_claim5_round_off_escapes_the_strict_saddle_only_at_depth_two(eta):
    """N = 2: an eps seed stays invisible up to float_horizon, then GD leaves the plateau below
    1/2 (for eta = 0.2 down to the global minimum); N = 4 (degenerate saddle): no escape in 1e5 steps."""
    horizon = necessity.float_horizon(eta, 2, 10**9)
    two = nudged_negative_direction(2, eta, 3000)
    assert two[: horizon + 1].min() >= 0.5 * (1 - necessity._C5_ROUND_OFF)
    assert two.min() < 0.5 * (1 - 1e-6)
    if eta == 0.2:
        assert two[-1] <= 1e-20
    four = nudged_negative_direction(4, eta, 100000)
    assert four.min() >= 0.5


def test_claim5_floor_is_the_distance_to_the_psd_cone():
    """Every PSD W has l(W) >= lambda^2/2 = 1/2 for eigenvalues (1, 1, -1), with equality at the
    projection Q diag(1, 1, 0) Q^T (random PSD matrices, NumPy)."""
    rng = np.random.default_rng(4)
    Phi = necessity.reflection_target(rng, 3)
    mu, Q = np.linalg.eigh(Phi)
    projection = Q @ np.diag(np.maximum(mu, 0)) @ Q.T
    assert 0.5 * np.sum((projection - Phi) ** 2) == pytest.approx(0.5, rel=ROUND_OFF)
    for _ in range(500):
        A = rng.standard_normal((3, 3))
        assert 0.5 * np.sum((A @ A.T - Phi) ** 2) >= 0.5 - ROUND_OFF


@pytest.mark.parametrize("depth", [2, 4])
def test_claim5_regimes_follow_the_scalar_reduction(depth):
    """eta < 2/N: l -> 1/2; eta > 1: divergence; 2/N < eta < 1 (N = 4): the eigenvalue-1
    direction, nudged by 1e-12, leaves x = 1 while the loss stays >= 1/2."""
    Phi = np.diag([1.0, 1.0 + 1e-12, -1.0])
    etas = np.array([0.05, 0.45, 0.75, 1.1])
    losses = necessity.scalar_reduction_losses(Phi, depth, etas, 20000)
    for eta, row in zip(etas, losses):
        regime = necessity.c5_regime(eta, depth)
        finite = row[np.isfinite(row)]
        assert finite.min() >= 0.5 * (1 - ROUND_OFF)
        if regime == "converges":
            assert abs(finite[-1] - 0.5) <= 1e-5
        elif regime == "diverges":
            assert finite.size < row.size
        else:
            assert np.ptp(finite[-100:]) > 1e-3  # keeps oscillating, neither converges nor diverges


def test_claim5_odd_depth_can_reach_the_optimum():
    """Outside the claim (N odd): at N = 3 and eta = 0.6 the eigenvalue -1 direction crosses 0
    and GD from the identity reaches l = 0; at eta = 0.1 it stalls like the even case."""
    Phi = np.diag([1.0, 1.0, -1.0])
    losses = necessity.scalar_reduction_losses(Phi, 3, [0.1, 0.6], 4000)
    assert losses[0].min() >= 0.5 * (1 - ROUND_OFF)
    assert losses[1, -1] <= 1e-20


def test_claim5_details(verify_results):
    details = verify_results["claim5-no-margin-stalls"].details
    assert details["scalar_reduction_max_deviation / l(0) (converging eta)"] <= 1e-12
    assert details["max_layer_asymmetry (converging eta)"] <= 1e-12
    assert not details["stopped_early"]
    regimes = {(r["depth"], r["regime"]) for r in details["rows"]}
    assert {(2, "converges"), (2, "diverges"), (4, "converges"), (4, "diverges"), (4, "unstable")} <= regimes
    assert details["odd_depth_3_scalar_reduction"]["eta=0.75"] < 1
    for eta, escape in details["round_off_escape (N=2, one layer nudged by eps)"].items():
        if necessity.c5_regime(float(eta.split("=")[1]), 2) == "converges":  # the horizon is conservative
            assert escape["float_horizon"] < escape["first_step_below_floor"] < 2 * escape["float_horizon"]
