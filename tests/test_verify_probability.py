"""The probability checks (verify/checks/probability.py) and the formulas they rest on (theory.py).

References are independent of the library: the exact margin probability against SciPy (a
different representation: conditioning on w·Φ instead of on the orthogonal part) and against a
plain NumPy Monte Carlo; Theorem 2's constants written out by hand; the flow driver against the
closed-form depth-1 gradient flow.
"""

import functools
import itertools
import math

import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate, stats

from overparam_jax.dynamics import gradient_flow
from overparam_jax.losses import whitened_l2_loss
from overparam_jax.theory import (
    margin_probability_exact,
    theorem2_conditions,
    theorem2_probability_bound,
)
from overparam_jax.verify.checks import probability

# SciPy's quad on a smooth integrand; the library's Gauss-Legendre rule agrees to ~2e-12.
QUADRATURE_TOLERANCE = 1e-10
MC_SIGMAS = 5.0  # a Monte Carlo frequency within 5 binomial standard deviations of the exact value


def scipy_margin_probability(s, d_0, f, margin=0.0):
    r"""P(||w - Φ|| < f - c) for w ~ N(0, s² I_{d_0}), conditioning on t = w·Φ/(f s) ~ N(0, 1):
    :math:`\int \varphi(t)\, F_{\chi^2_{d_0-1}}(((f-c)^2 - (st - f)^2)/s^2)\,dt` (SciPy quad, split
    around the scale t0 ~ s(d_0 - 1)/(2f) where the integrand turns on)."""
    rho, k = f - margin, d_0 - 1

    def integrand(t):
        if k == 0:
            return stats.norm.pdf(t)
        x = (rho - f) * (rho + f) / s**2 + 2 * f * t / s - t**2  # ((f-c)^2 - (st-f)^2)/s^2, no cancellation
        return stats.norm.pdf(t) * stats.chi2.cdf(x, k)

    low, high = max((f - rho) / s, -40.0), min((f + rho) / s, 40.0)
    t0 = (f**2 - rho**2) / (2 * f * s) + s * k / (2 * f)
    cuts = [low] + [c for c in (t0 / 4, t0, 4 * t0, 16 * t0, 64 * t0) if low < c < high] + [high]
    return sum(integrate.quad(integrand, a, b, limit=500, epsabs=1e-15, epsrel=1e-13)[0]
               for a, b in itertools.pairwise(cuts))


@pytest.mark.parametrize("d_0", [1, 2, 3, 20, 100, 1000])
@pytest.mark.parametrize("x", [1e-5, 1e-2, 0.1, 0.5, 2.0])
@pytest.mark.parametrize("f, margin_fraction", [(1.0, 0.0), (2.5, 0.3), (0.7, -0.5)])
def test_margin_probability_exact_matches_scipy(d_0, x, f, margin_fraction):
    s = x * f
    exact = margin_probability_exact(s, d_0, f, margin=margin_fraction * f)
    assert abs(exact - scipy_margin_probability(s, d_0, f, margin_fraction * f)) <= QUADRATURE_TOLERANCE


@pytest.mark.parametrize("s, d_0, f, margin", [
    (0.01, 100, 1.0, 0.0),      # Theorem 2's scale x 10: P ~ 0.31
    (0.05, 100, 1.0, 0.0),      # P ~ 1e-2
    (0.3, 5, 2.0, 0.0),
    (1e-3, 100, 1.0, 5e-5),     # the proof's event: margin >= s^2 d_0 / (2||Phi||)
    (0.4, 10, 3.0, 1.0),
    (0.5, 1, 1.0, -0.2),
])
def test_margin_probability_exact_matches_numpy_monte_carlo(s, d_0, f, margin):
    rng = np.random.default_rng(12345)
    Phi = rng.standard_normal(d_0)
    Phi *= f / np.linalg.norm(Phi)
    n, batches = 50_000, 4
    hits = sum(np.sum(f - np.linalg.norm(s * rng.standard_normal((n, d_0)) - Phi, axis=1) > margin)
               for _ in range(batches))
    n *= batches
    freq = hits / n
    exact = margin_probability_exact(s, d_0, f, margin=margin)
    assert abs(freq - exact) <= MC_SIGMAS * math.sqrt(exact * (1 - exact) / n) + 1 / n


def test_margin_probability_limits():
    # d_0 = 1: P(|z - f| < f) = F(2f/s) - 1/2 exactly.
    assert math.isclose(margin_probability_exact(0.3, 1, 1.0), stats.norm.cdf(2 / 0.3) - 0.5, rel_tol=1e-14)
    # s -> 0: 1/2 (w·Φ > 0), approached as F(-s(d_0 - 1)/(2f)).
    assert abs(margin_probability_exact(1e-9, 100, 1.0) - 0.5) < 1e-7
    assert math.isclose(margin_probability_exact(1e-3, 100, 1.0), stats.norm.cdf(-1e-3 * 99 / 2), rel_tol=1e-6)
    # a margin of ||Phi|| or more is impossible; a huge s empties the ball.
    assert margin_probability_exact(0.1, 10, 1.0, margin=1.0) == 0.0
    assert margin_probability_exact(10.0, 1000, 1.0) == 0.0
    # scale invariance: only f/s and c/f matter.
    assert math.isclose(margin_probability_exact(0.02, 50, 1.0, margin=0.1),
                        margin_probability_exact(0.06, 50, 3.0, margin=0.3), rel_tol=1e-12)


@pytest.mark.parametrize("args, kwargs, match", [
    ((0.0, 10, 1.0), {}, "`std` must be positive"),
    ((0.1, 0, 1.0), {}, "`d_0` must be >= 1"),
    ((0.1, 10, -1.0), {}, "`phi_norm` must be positive"),
    ((0.1, 10, 1.0), {"margin": math.inf}, "`margin` must be finite"),
])
def test_margin_probability_exact_bad_input(args, kwargs, match):
    with pytest.raises(ValueError, match=match):
        margin_probability_exact(*args, **kwargs)


def test_theorem2_probability_bound_by_hand():
    bound = (1 - 2 * math.exp(-100 / 16)) * (3 - 4 * stats.norm.cdf(2 * math.sqrt(2 / 100))) / 2
    assert math.isclose(theorem2_probability_bound(100.0, 100), bound, rel_tol=1e-14)
    assert bound > 0.25  # ACGH19: "greater than 0.25 ... d_0 >= 100, a >= 100"
    assert theorem2_probability_bound(1e4, 1000) > theorem2_probability_bound(100.0, 100)


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_theorem2_conditions_by_hand(depth):
    s, f, d_0, eps, a = 1e-3, 2.0, 100, 1e-5, 100.0
    std_max = 2.0 / math.sqrt(100 * 100**2)
    cond = theorem2_conditions(s, f, d_0, depth, eps, a=a)
    N, c = depth, s**2 * d_0 / (2 * f)
    eta = (s**2 * d_0) ** (4 - 2 / N) / (1e5 * N**3 * f ** (10 - 6 / N))
    # Theorem 1 at margin c: the proof's bound 2^(4-2/N) 6144 < 1e5 makes this eta admissible there.
    assert eta <= c ** ((4 * N - 2) / N) / (6144 * N**3 * f ** ((6 * N - 4) / N))
    tau = 4 * (math.log(4) * (f / (s**2 * d_0)) ** (2 - 2 / N) + f ** (2 / N - 2) * math.log(f**2 / (8 * eps)))
    assert math.isclose(cond.std_max, std_max, rel_tol=1e-14)
    assert math.isclose(cond.margin, c, rel_tol=1e-14)
    assert math.isclose(cond.eta_max, eta, rel_tol=1e-12)
    assert math.isclose(cond.horizon, tau, rel_tol=1e-12)
    assert math.isclose(cond.num_steps * cond.eta_max, tau, rel_tol=1e-12)
    assert cond.probability == theorem2_probability_bound(a, d_0)


def test_theorem2_conditions_refuse_a_large_std():
    with pytest.raises(ValueError, match="exceeds Theorem 2's std_max"):
        theorem2_conditions(2e-3, 1.0, 100, 2, 1e-6, a=100.0)
    with pytest.raises(ValueError, match="`epsilon` must be positive"):
        theorem2_conditions(1e-3, 1.0, 100, 2, 0.0, a=100.0)


def test_theorem2_horizon_without_the_second_phase():
    """For eps >= ||Phi||^2/8 the margin ||Phi||/2 already gives l <= eps: only phase 1 counts."""
    cond = theorem2_conditions(1e-3, 1.0, 100, 3, 0.2, a=100.0)
    assert math.isclose(cond.horizon, 4 * math.log(4) * (1 / 1e-4) ** (4 / 3), rel_tol=1e-12)


def test_deviation_is_one_at_the_wilson_ends():
    low, high = probability.wilson_interval(30, 100, 3.0)
    assert math.isclose(probability._deviation(high, 30, 100, 3.0), 1.0, rel_tol=1e-12)
    assert math.isclose(probability._deviation(low, 30, 100, 3.0), 1.0, rel_tol=1e-12)
    assert probability._deviation(0.3, 30, 100, 3.0) == 0.0
    assert probability._deviation(0.9, 30, 100, 3.0) > 1


def test_flow_driver_matches_depth_one_closed_form():
    """Depth 1: l(t) = l(0) e^{-2t}, so l <= eps first at t* = ln(l(0)/eps)/2; the driver reports
    the first record at or after t*, within one record spacing."""
    rng = np.random.default_rng(0)
    Phi = jnp.asarray(rng.standard_normal((1, 5)))
    loss = functools.partial(whitened_l2_loss, Phi=Phi)
    W0 = jnp.asarray(rng.standard_normal((3, 1, 5)))
    loss0 = 0.5 * np.sum((np.asarray(W0) - np.asarray(Phi)) ** 2, axis=(1, 2))
    eps = 1e-8
    run = probability._flow_to_horizon(gradient_flow, loss, Phi, (W0,), 100.0, eps, plot_runs=3)
    t_star = np.log(loss0 / eps) / 2
    spacing = np.max(np.diff(run.curve_times))
    assert list(run.status) == ["converged"] * 3
    assert np.all(run.hit_time >= t_star - 1e-9) and np.all(run.hit_time <= t_star + spacing)


def test_flow_driver_stops_stationary_runs_and_respects_the_horizon():
    Phi = jnp.ones((1, 4)) / 2
    loss = functools.partial(whitened_l2_loss, Phi=Phi)
    # run 0: θ = 0, a stationary saddle at depth 2; run 1: small, escapes only after t ~ 10.
    params = (jnp.zeros((2, 1, 4)).at[1].set(1e-3), jnp.zeros((2, 1, 1)).at[1].set(1e-3))
    run = probability._flow_to_horizon(gradient_flow, loss, Phi, params, 2.0, 1e-6, plot_runs=2)
    assert list(run.status) == ["stationary", "running"]
    assert math.isclose(run.end_time, 2.0, rel_tol=1e-12)
    assert np.all(np.isinf(run.hit_time))


def test_margin_check_spans_the_range_where_the_probability_falls(verify_results):
    exact = [p["exact"] for p in verify_results["margin-probability-exact"].details["points"]]
    assert exact[0] > 0.47 and exact[-1] < 2e-3  # from about 1/2 down to about 0
    assert all(a > b for a, b in itertools.pairwise(exact))


def test_theorem2_check_reports_hypotheses_slack_and_the_proof_event(verify_results):
    for row in verify_results["theorem2-constant-probability"].details["depths"]:
        assert row["hypotheses"]["s"] <= row["hypotheses"]["s_max"]
        assert row["hypotheses"]["max over inits of balancedness / ||theta||^2"] < 1e-12
        assert row["horizon / time_needed_max"] > 100  # every run settles long before tau
        proof = row["proof_event (margin >= s^2 d_0 / (2||Phi||))"]
        low, high = proof["wilson"]
        assert low <= proof["exact"] <= high
