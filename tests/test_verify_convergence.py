"""The convergence checks (overparam_jax/verify/checks/convergence.py): the pieces they
measure with agree with independent references (hand-computed constants, SVDs, the
library's own measures). PASS on the library and FAIL on each mutant: test_verify_self_test."""

import math
from types import SimpleNamespace

import jax.numpy as jnp
import numpy as np
import pytest

from overparam_jax.dynamics import gradient_flow
from overparam_jax.networks import balancedness, deficiency_margin, end_to_end
from overparam_jax.theory import theorem1_loss_bound
from overparam_jax.verify.checks import convergence as cv
from overparam_jax.verify.registry import VerifyConfig, get_check, run_check

ROUND_OFF = 1e-12  # float64 identities on O(1) matrices


def test_theorem1_hypotheses_hold_at_their_bounds(verify_results):
    """Every case runs with c > 0, δ(0) at δ_max (within the rounding headroom) and η = η_max,
    for at least the theorem's T steps, and every conclusion holds."""
    cases = verify_results["theorem1-linear-convergence"].details["cases"]
    assert [c["case"] for c in cases] == [c.label for c in cv._T1_CASES]
    for case in cases:
        assert case["c > 0"] and case["c (min over seeds)"] > 0.49 * case["sigma_min(Phi)"]
        assert 1 - 1e-8 <= case["delta(0)/delta_max"] <= 1
        assert case["eta/eta_max"] == 1
        assert case["steps_run"] >= case["theorem_T"]
        assert all(0 <= v <= 1 for v in case["parts"].values()), case["parts"]
        assert max(case["l(T)/l(0)"]) <= cv._EPSILON_FRACTION


def test_theorem1_gd_error_is_first_order(verify_results):
    """The tolerance's premise: GD's gap to the flow at η is (η/h) times the gap at h, so the
    normalized gap is 1/_TRACKING_SAFETY = 0.1 up to the O(h) correction."""
    for case in verify_results["theorem1-linear-convergence"].details["cases"]:
        assert case["parts"]["gd_vs_gf"] == pytest.approx(1 / cv._TRACKING_SAFETY, rel=0.05)


def test_theorem1_constants_and_horizon_by_hand(verify_results):
    """The first case (N = 2, Φ 1x3, c = 1/2, ||Φ||_F = 1) against hand-computed constants:
    δ_max = c²/(256·8), η_max = c³/(6144·8), T = ln 10 / (η c)."""
    case = verify_results["theorem1-linear-convergence"].details["cases"][0]
    c = 0.5
    assert case["delta_max"] == pytest.approx(c**2 / 2048, rel=ROUND_OFF)
    assert case["eta"] == pytest.approx(c**3 / 49152, rel=ROUND_OFF)
    assert case["theorem_T"] == pytest.approx(math.log(10) / (c**3 / 49152 * c), rel=ROUND_OFF)
    assert case["theorem_T"] == pytest.approx(1.8108266e6, rel=1e-7)


def test_theorem1_rk4_reference_is_far_more_accurate_than_the_tolerance(verify_results):
    """RK4 with 20 steps per record vs 40: the reference's own error is < 1% of the tolerance."""
    case_info = verify_results["theorem1-linear-convergence"].details["cases"][1]  # N = 3, the longest horizon
    case = cv._T1_CASES[1]
    Phi, loss, directions = cv._problem(VerifyConfig(), case.stream, (1, 3))
    W_e = cv._at_distance(Phi, directions[:1], 0.5 * cv._sigma_min(Phi))
    params = tuple(jnp.asarray(W[0]) for W in cv._batched_init(cv._theorem1_init, W_e, case.dims, 1e-5))
    tau = case_info["eta"] * case_info["steps_run"]
    coarse = gradient_flow(loss, params, t_final=tau, dt=tau / 1000, save_every=20).loss
    fine = gradient_flow(loss, params, t_final=tau, dt=tau / 2000, save_every=40).loss
    assert float(np.max(np.abs(coarse / fine - 1))) < 0.01 * case_info["gd_vs_gf_tolerance (relative loss)"]


def test_theorem1_overshooting_init_fails_the_conclusion_not_only_the_hypothesis():
    """δ(0) = 1e10 δ_max makes GD diverge: Lemma 1 and the bound themselves fail."""
    check = get_check("theorem1-linear-convergence")
    result = run_check(check, init=cv._overshooting_init)
    parts = result.details["cases"][0]["parts"]
    assert not result.passed
    assert parts["hypotheses"] > 1e9
    assert parts["descent_lemma"] > 1 and parts["bound_prefix"] > 1


@pytest.mark.parametrize("shape", [(1, 3), (2, 3), (3, 3), (3, 2)])
def test_best_conditioned_target(shape):
    Phi = cv._best_conditioned_target(np.random.default_rng(0), *shape)
    s = np.linalg.svd(Phi, compute_uv=False)
    r = min(shape)
    np.testing.assert_allclose(s, np.full(r, 1 / math.sqrt(r)), rtol=ROUND_OFF)
    assert np.linalg.norm(Phi) == pytest.approx(1.0, rel=ROUND_OFF)


def test_claim5_target():
    Phi = cv._symmetric_target_with_negative_eigenvalue(np.random.default_rng(1))
    np.testing.assert_allclose(Phi, Phi.T, atol=ROUND_OFF)
    np.testing.assert_allclose(np.linalg.eigvalsh(Phi), [-1.0, 1.0, 1.0], atol=ROUND_OFF)


@pytest.mark.parametrize("dims", [(3, 2, 1), (3, 2, 2, 1), (3, 2, 2), (3, 2, 2, 2, 1)])
def test_unbalanced_init_has_the_product_and_the_gap(dims):
    """The init keeps W_e exactly and has balancedness exactly δ (library balancedness);
    the host measures agree with the library's."""
    rng = np.random.default_rng(2)
    Phi = cv._best_conditioned_target(rng, dims[-1], dims[0])
    W_e = cv._at_distance(Phi, rng.standard_normal((2,) + Phi.shape), 0.3)
    delta = 1e-4
    params = cv._batched_init(cv._theorem1_init, W_e, dims, delta)
    for i in range(2):
        layers = tuple(jnp.asarray(W[i]) for W in params)
        np.testing.assert_allclose(end_to_end(layers), W_e[i], atol=ROUND_OFF)
        assert float(balancedness(layers)) == pytest.approx(delta, rel=1e-9)
        assert float(deficiency_margin(end_to_end(layers), jnp.asarray(Phi))) == pytest.approx(
            cv._sigma_min(Phi) - 0.3, rel=ROUND_OFF)
    np.testing.assert_allclose(cv._host_balancedness(params), delta, rtol=1e-9)
    np.testing.assert_allclose(cv._host_margin(params, Phi), cv._sigma_min(Phi) - 0.3, rtol=ROUND_OFF)


def test_rate_violation_is_the_bound_in_log_form():
    """≤ 1 exactly where ℓ(t) ≤ theorem1_loss_bound; inf where the loss did not decrease."""
    rng = np.random.default_rng(3)
    eta, c, N, steps = 1e-3, 0.5, 3, np.arange(1, 201)
    bound = theorem1_loss_bound(2.0, eta, c, N, steps)
    losses = np.concatenate([[2.0], bound * np.exp(rng.uniform(-0.01, 0.01, steps.size))])
    violation = cv._rate_violation(losses[None], steps, eta, c, N)[0]
    np.testing.assert_array_equal(violation <= 1, losses[1:] <= bound * (1 + 1e-15))
    assert np.isinf(cv._rate_violation(np.array([[1.0, 1.0, 1.1]]), np.arange(1, 3), eta, c, N)).all()


def test_descent_lemma_violation_is_one_on_the_bound():
    """A trajectory that decreases by exactly the lemma's guarantee scores 1; half of it, 2."""
    eta, N, sigma = 0.01, 2, 0.7
    loss = np.array([1.0])
    guaranteed = 0.5 * eta * sigma ** (2 * (N - 1) / N) * 2 * loss[0]
    for fraction, expected in ((1.0, 1.0), (0.5, 2.0)):
        traj = SimpleNamespace(loss=np.array([[1.0, 1.0 - fraction * guaranteed]]),
                               sigma_min=np.array([[sigma, sigma]]))
        assert cv._descent_lemma_violation(traj, eta, N)[0, 0] == pytest.approx(expected, rel=1e-12)


def test_gf_corollary_init_is_below_the_rank_deficient_floor(verify_results):
    details = verify_results["gf-corollary"].details
    assert details["l(0)"] < details["rank-deficient floor 1/2 sigma_min(Phi)^2"]
    assert details["identity control stalls at >= 1/2"]
    for N in cv._CLAIM5_DEPTHS:
        assert details[f"depth {N}"]["identity control: loss moved by"] > 1  # the control moves


def test_margin_converges_control_moves_and_stalls(verify_results):
    details = verify_results["margin-converges"].details
    assert details["margin"] == pytest.approx(0.5, rel=ROUND_OFF)
    for N in cv._CLAIM5_DEPTHS:
        assert details[f"depth {N}"]["identity control: loss moved by"] > 1
        assert details[f"depth {N}"]["identity control: min loss"] >= 0.5 * (1 - cv._FLOOR_ROUNDING)


def test_full_config_lists_depth_four():
    assert {c.depth for c in cv._T1_CASES_FULL} == {2, 3, 4}
    assert {c.depth for c in cv._T1_CASES} == {2, 3}

