"""The closed-form trajectories at depth > 1 (overparam_jax.verify.checks.closed_form).

The quadrature reference is checked against independent references: scipy's DOP853 on
the mode ODE, the logistic curve (N = 2), the exponential (N = 1), a closed-form
antiderivative (N = 4) and the small-init asymptote of the jump time. That every check
of the module passes on the library and FAILs on each of its mutants is asserted in
tests/test_verify_self_test.py.
"""

import numpy as np
import pytest
from scipy.integrate import solve_ivp

from overparam_jax.theory import (
    aligned_flow_sigma,
    aligned_flow_time,
    logistic_sigma,
)

# DOP853 at rtol = atol = 1e-13 on ln σ is accurate to ~1e-12 relative; the closed forms
# below are evaluated to round-off, so the reference must match them to ~1e-13.
IVP_TOLERANCE = 1e-10
CLOSED_FORM_TOLERANCE = 1e-13

# (σ0, φ): from small and tiny inits up to φ, from above, and from nearby.
MODE_CASES = [(1e-2, 1.0), (1e-6, 0.25), (1.5, 0.5), (0.3, 0.31)]


def _solve_ivp_sigma(times, sigma0, phi, depth):
    """σ(t) for σ' = -N σ^{2-2/N}(σ - φ), integrated in ln σ (smooth even from tiny σ0)."""
    a = 2.0 - 2.0 / depth
    rhs = lambda t, z: [-depth * np.exp(z[0]) ** (a - 1) * (np.exp(z[0]) - phi)]
    sol = solve_ivp(rhs, (0.0, times[-1]), [np.log(sigma0)], method="DOP853",
                    rtol=1e-13, atol=1e-13, t_eval=times)
    assert sol.success, sol.message
    return np.exp(sol.y[0])


@pytest.mark.parametrize("depth", [2.0, 3.0, 4.0, 1.5, 2.5, 3.7])
@pytest.mark.parametrize("sigma0, phi", MODE_CASES)
def test_reference_matches_solve_ivp(depth, sigma0, phi):
    times = np.linspace(0.1, 80.0, 30)
    ours = aligned_flow_sigma(times, sigma0, phi, depth)
    theirs = _solve_ivp_sigma(times, sigma0, phi, depth)
    assert np.max(np.abs(ours - theirs) / theirs) < IVP_TOLERANCE


@pytest.mark.parametrize("sigma0, phi", MODE_CASES)
def test_reference_is_the_logistic_curve_at_depth_2(sigma0, phi):
    times = np.linspace(0.0, 60.0, 41)
    expected = logistic_sigma(times, sigma0, phi)
    assert np.max(np.abs(aligned_flow_sigma(times, sigma0, phi, 2.0) - expected) / expected) < CLOSED_FORM_TOLERANCE
    # and the forward quadrature inverts it: 2φ t = ln(σ(φ - σ0) / (σ0(φ - σ)))
    inside = np.abs(expected - phi) > 1e-6 * phi
    t = aligned_flow_time(expected[inside], sigma0, phi, 2.0)
    assert np.max(np.abs(t[1:] - times[inside][1:]) / times[inside][1:]) < 1e-9  # σ -> t amplifies by 1/(φ - σ)


@pytest.mark.parametrize("sigma0, phi", MODE_CASES)
def test_reference_is_the_exponential_at_depth_1(sigma0, phi):
    times = np.linspace(0.0, 30.0, 31)
    expected = sigma0 - (phi - sigma0) * np.expm1(-times)  # φ + (σ0 - φ)e^{-t}, no cancellation
    assert np.max(np.abs(aligned_flow_sigma(times, sigma0, phi, 1.0) - expected) / expected) < CLOSED_FORM_TOLERANCE


def _depth_4_time(sigma, sigma0, phi):
    """N = 4 in closed form: s = u^2 turns ds / (s^{3/2}(φ - s)) into 2 du / (u^2 (φ - u^2)), so
    t = (1/(2φ)) [1/√σ0 - 1/√σ + (artanh p - artanh q) / √φ], p = √(σ/φ), q = √(σ0/φ),
    for σ0 < σ < φ; both differences rewritten without cancellation when σ is near σ0."""
    root, root0 = np.sqrt(sigma), np.sqrt(sigma0)
    p, q = root / np.sqrt(phi), root0 / np.sqrt(phi)
    gap = sigma - sigma0  # exact: the test's σ lie within a factor 2 of σ0 or far from it
    inverse_roots = gap / (root * root0 * (root + root0))
    artanh = np.arctanh(gap / (phi * (p + q)) / (1 - p * q))
    return (inverse_roots + artanh / np.sqrt(phi)) / (2 * phi)


@pytest.mark.parametrize("sigma0", [1e-8, 1e-3, 0.3])
def test_quadrature_matches_the_depth_4_antiderivative(sigma0):
    phi = 0.7
    sigma = sigma0 + (phi - sigma0) * np.array([1e-6, 0.01, 0.3, 0.5, 0.9, 0.999])
    expected = _depth_4_time(sigma, sigma0, phi)
    assert np.max(np.abs(aligned_flow_time(sigma, sigma0, phi, 4.0) - expected) / expected) < CLOSED_FORM_TOLERANCE


@pytest.mark.parametrize("depth", [3, 4, 6])
@pytest.mark.parametrize("s", [1e-6, 1e-9, 1e-12])
def test_jump_time_approaches_its_small_init_asymptote(depth, s):
    """t(φ/2) = s^{-(N-2)/N} / ((N-2) φ) (1 + O(s^{(N-2)/N})) as s -> 0."""
    phi = np.array([1.0, 0.5, 0.25])
    asymptote = s ** (-(depth - 2) / depth) / ((depth - 2) * phi)
    relative = np.abs(aligned_flow_time(phi / 2, s, phi, depth) / asymptote - 1)
    assert np.all(relative < 3 * s ** ((depth - 2) / depth))


def test_reference_limits():
    assert aligned_flow_sigma(0.0, 0.01, 1.0, 3.0) == 0.01
    assert aligned_flow_sigma(0.0, 1.5, 0.5, 3.0) == 1.5
    assert aligned_flow_time(0.01, 0.01, 1.0, 3.0) == 0.0
    assert abs(aligned_flow_sigma(200.0, 0.01, 1.0, 3.0) - 1.0) < 1e-15  # converged to φ
    # monotone towards φ from both sides
    t = np.linspace(0.0, 10.0, 50)
    assert np.all(np.diff(aligned_flow_sigma(t, 0.01, 1.0, 3.0)) > 0)
    assert np.all(np.diff(aligned_flow_sigma(t, 1.5, 0.5, 3.0)) < 0)


def test_reference_errors():
    with pytest.raises(ValueError, match="between `sigma0`"):
        aligned_flow_time(1.2, 0.01, 1.0, 3.0)
    with pytest.raises(ValueError, match="differ from `phi`"):
        aligned_flow_sigma(1.0, 1.0, 1.0, 3.0)
    with pytest.raises(ValueError, match="positive"):
        aligned_flow_sigma(1.0, 0.1, 1.0, 0.0)
    with pytest.raises(ValueError, match=">= 0"):
        aligned_flow_sigma(-1.0, 0.1, 1.0, 3.0)
