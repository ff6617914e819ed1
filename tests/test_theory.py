"""theory.py: the theorem's constants written out by hand, and the Wilson interval vs SciPy."""

import math

import numpy as np
import pytest
from scipy.stats import binomtest

from overparam_jax.theory import (
    descent_lemma_bound,
    iterations_to_reach,
    theorem1_conditions,
    theorem1_loss_bound,
    wilson_interval,
)


def test_theorem1_constants_for_depth_three():
    c, f, N = 0.3, 2.0, 3
    cond = theorem1_conditions(c, f, N)
    assert math.isclose(cond.delta_max, 0.09 / (256 * 27 * 2.0 ** (4 / 3)), rel_tol=1e-14)
    assert math.isclose(cond.eta_max, 0.3 ** (10 / 3) / (6144 * 27 * 2.0 ** (14 / 3)), rel_tol=1e-14)
    assert math.isclose(cond.rate_per_unit_eta, 0.3 ** (4 / 3), rel_tol=1e-14)


def test_depth_one_theorem_is_plain_gd_contraction():
    cond = theorem1_conditions(0.5, 1.0, 1)
    assert cond.rate_per_unit_eta == 1.0
    np.testing.assert_allclose(theorem1_loss_bound(2.0, 0.1, 0.5, 1, [0, 1, 2]), [2.0, 1.8, 1.62])


def test_iterations_to_reach_inverts_the_exponential_bound():
    T = iterations_to_reach(1.0, 1e-6, 1e-3, 0.5, 2)
    assert math.isclose(math.exp(-1e-3 * 0.5 * T), 1e-6, rel_tol=1e-12)


def test_descent_lemma_bound():
    np.testing.assert_allclose(descent_lemma_bound([1.0], [0.25], [2.0], 0.1, 2), [1.0 - 0.05 * 0.25 * 2.0])


@pytest.mark.parametrize("k, n", [(0, 10), (4878, 10000), (37, 40), (100, 100)])
def test_wilson_interval_matches_scipy(k, n):
    ci = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    np.testing.assert_allclose(wilson_interval(k, n), (ci.low, ci.high), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("args, match", [
    ((0.0, 1.0, 2), "`margin` must be positive"),
    ((0.1, 0.0, 2), "`phi_norm` must be positive"),
    ((0.1, 1.0, 0), "`depth` must be >= 1"),
])
def test_theorem1_conditions_bad_input(args, match):
    with pytest.raises(ValueError, match=match):
        theorem1_conditions(*args)
