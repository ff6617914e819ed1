"""Trajectories (GD, GF, end-to-end, optax) against hand-written updates and closed forms."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from overparam_jax import (
    end_to_end,
    init_balanced,
    init_gaussian,
    lp_loss,
    whitened_l2_loss,
)
from overparam_jax.dynamics import (
    _COMPILED,
    end_to_end_descent,
    gradient_descent,
    gradient_flow,
    optax_descent,
)
from tests import references

FLOAT64_RTOL = 1e-12  # a few steps of float64 matmuls on O(1) matrices


def regression_problem(d_in=5, d_out=2, m=40, seed=0):
    """A planted linear regression with small inputs, so that gradient flow is not stiff."""
    kx, kw = jax.random.split(jax.random.key(seed))
    X = 0.4 * jax.random.normal(kx, (m, d_in))
    Y = 0.5 * X @ jax.random.normal(kw, (d_in, d_out))
    return X, Y


def test_one_gd_step_equals_hand_written_update():
    X, Y = regression_problem()
    loss = functools.partial(lp_loss, X=X, Y=Y, p=4.0)
    params = init_gaussian(jax.random.key(1), (5, 4, 3, 2), std=0.5)
    traj = gradient_descent(loss, params, learning_rate=0.03, num_steps=1)
    expected = references.gd_step(params, X, Y, 4.0, 0.03)
    for got, ref in zip(traj.final, expected):
        np.testing.assert_allclose(got, ref, rtol=FLOAT64_RTOL, atol=1e-15)
    np.testing.assert_allclose(traj.loss[1], references.lp_loss(references.product(expected), X, Y, 4.0), rtol=FLOAT64_RTOL)


def test_trajectory_records_t0_and_every_save():
    X, Y = regression_problem()
    loss = functools.partial(lp_loss, X=X, Y=Y, p=2.0)
    params = init_balanced(jax.random.key(2), (5, 4, 2), std=0.3)
    traj = gradient_descent(loss, params, learning_rate=0.01, num_steps=30, save_every=10, record_end_to_end=True)
    assert traj.loss.shape == (4,) and traj.end_to_end.shape == (4, 2, 5)
    np.testing.assert_array_equal(traj.step, [0, 10, 20, 30])
    np.testing.assert_allclose(traj.time, [0.0, 0.1, 0.2, 0.3])
    np.testing.assert_allclose(traj.end_to_end[0], end_to_end(params))
    np.testing.assert_allclose(traj.loss[0], references.lp_loss(end_to_end(params), X, Y, 2.0), rtol=FLOAT64_RTOL)
    np.testing.assert_allclose(traj.norm[-1], np.linalg.norm(traj.end_to_end[-1]), rtol=FLOAT64_RTOL)
    sv = np.linalg.svd(np.asarray(traj.end_to_end[-1]), compute_uv=False)
    np.testing.assert_allclose(traj.sigma_min[-1], sv[-1], rtol=1e-10)
    assert int(traj.diverged_at) == -1


def test_chunked_progress_run_is_identical_and_reports_progress():
    X, Y = regression_problem()
    loss = functools.partial(lp_loss, X=X, Y=Y, p=4.0)
    params = init_balanced(jax.random.key(3), (5, 4, 4, 2), std=0.3)
    calls = []
    whole = gradient_descent(loss, params, learning_rate=0.02, num_steps=200, save_every=10)
    chunked = gradient_descent(loss, params, learning_rate=0.02, num_steps=200, save_every=10,
                               progress=lambda p: calls.append((p.done, p.total)))
    assert calls[-1] == (200, 200) and len(calls) == 20
    np.testing.assert_array_equal(whole.loss, chunked.loss)
    for a, b in zip(whole.final, chunked.final):
        np.testing.assert_array_equal(a, b)


def test_second_call_does_not_recompile():
    X, Y = regression_problem()
    loss = functools.partial(lp_loss, X=X, Y=Y, p=2.0)
    params = init_balanced(jax.random.key(4), (5, 3, 2), std=0.3)
    gradient_descent(loss, params, learning_rate=0.01, num_steps=20, save_every=5)
    before = _COMPILED["advance", False]._cache_size()
    other = init_balanced(jax.random.key(5), (5, 3, 2), std=0.7)
    gradient_descent(loss, other, learning_rate=0.05, num_steps=20, save_every=5)
    assert _COMPILED["advance", False]._cache_size() == before


def test_balancedness_change_per_gd_step_is_eta_squared_identity():
    """D_j(t+1) - D_j(t) = η² (G_{j+1}^T G_{j+1} - G_j G_j^T) exactly (THEORY.md §3)."""
    X, Y = regression_problem()
    loss = functools.partial(lp_loss, X=X, Y=Y, p=4.0)
    params = init_gaussian(jax.random.key(6), (5, 4, 3, 2), std=0.6)
    eta = 0.05
    after = gradient_descent(loss, params, learning_rate=eta, num_steps=1).final
    G = references.lp_loss_gradient(references.product(params), X, Y, 4.0)
    grads = [references.layer_gradient(params, G, j) for j in range(3)]
    before_d, after_d = references.balance_differences(params), references.balance_differences(after)
    for j in range(2):
        predicted = eta**2 * (grads[j + 1].T @ grads[j + 1] - grads[j] @ grads[j].T)
        change = after_d[j] - before_d[j]
        # Round-off: the D_j are O(1), their difference loses ~1e-16 absolute per entry.
        np.testing.assert_allclose(change, predicted, atol=1e-13)
        assert np.linalg.norm(predicted) > 1e-6  # the identity is not vacuous here


def _balance_drift_at_fixed_time(eta, t_final=1.0):
    X, Y = regression_problem()
    loss = functools.partial(lp_loss, X=X, Y=Y, p=2.0)
    params = init_balanced(jax.random.key(7), (5, 4, 4, 2), std=0.8)
    traj = gradient_descent(loss, params, learning_rate=eta, num_steps=round(t_final / eta))
    return float(traj.balancedness[-1])


def test_balancedness_drift_under_gd_is_first_order_in_eta():
    etas = np.array([0.04, 0.02, 0.01, 0.005])
    drifts = np.array([_balance_drift_at_fixed_time(e) for e in etas])
    slope = np.polyfit(np.log(etas), np.log(drifts), 1)[0]
    assert abs(slope - 1.0) <= 0.2, (slope, drifts)


def test_balancedness_conserved_under_rk4_gradient_flow():
    """Under GF the D_j are conserved; RK4's drift is its local error, O(dt^4) per unit time.

    The problem is whitened ℓ2 with O(1) gradients: on stiff problems (ℓ4 on raw data,
    gradients ~100) the same dt gives drifts ~1e-4 — that is integration error, not a
    violation, and it shrinks 16× per halving of dt.
    """
    Phi = jax.random.normal(jax.random.key(1), (3, 4)) / 2
    loss = functools.partial(whitened_l2_loss, Phi=Phi)
    params = init_balanced(jax.random.key(8), (4, 4, 4, 3), std=0.3)
    traj = gradient_flow(loss, params, t_final=4.0, dt=0.005, save_every=100)
    final_scale = max(float(jnp.linalg.norm(W) ** 2) for W in traj.final)
    assert float(jnp.max(traj.balancedness)) <= 1e-9 * final_scale
    assert float(traj.loss[-1]) < 0.5 * float(traj.loss[0])  # it moved


def _depth_one_whitened_error(method, dt, t_final=1.0):
    """Depth 1, whitened ℓ2: W(t) = Φ + (W(0) - Φ) e^{-t} (THEORY.md §6)."""
    Phi = jax.random.normal(jax.random.key(9), (3, 4))
    W0 = jax.random.normal(jax.random.key(10), (3, 4))
    loss = functools.partial(whitened_l2_loss, Phi=Phi)
    traj = gradient_flow(loss, (W0,), t_final=t_final, dt=dt, method=method)
    exact = Phi + (W0 - Phi) * np.exp(-t_final)
    return float(jnp.linalg.norm(traj.final[0] - exact))


@pytest.mark.parametrize("method, order, tol, dts", [
    ("euler", 1.0, 0.2, [0.1, 0.05, 0.025, 0.0125]),
    ("rk4", 4.0, 0.3, [0.2, 0.1, 0.05, 0.025]),
])
def test_integrator_order_by_slope_fit(method, order, tol, dts):
    errors = [_depth_one_whitened_error(method, dt) for dt in dts]
    slope = np.polyfit(np.log(dts), np.log(errors), 1)[0]
    assert abs(slope - order) <= tol, (slope, errors)


def test_rk4_matches_scipy_on_depth_three_l4():
    """RK4 vs SciPy's DOP853 (rtol 1e-12). Inputs scaled to keep the flow non-stiff: with
    unit-variance inputs the same dt leaves a 16×-per-halving truncation error ~1e-4."""
    kx, kw = jax.random.split(jax.random.key(11))
    X = 0.4 * jax.random.normal(kx, (20, 3))
    Y = 0.5 * X @ jax.random.normal(kw, (3, 2))
    loss = functools.partial(lp_loss, X=X, Y=Y, p=4.0)
    params = init_balanced(jax.random.key(12), (3, 3, 3, 2), std=0.7)
    t_final = 1.0
    traj = gradient_flow(loss, params, t_final=t_final, dt=2e-3, save_every=100)

    def grad_fn(ps):
        G = references.lp_loss_gradient(references.product(ps), np.asarray(X), np.asarray(Y), 4.0)
        return [references.layer_gradient(ps, G, j) for j in range(len(ps))]

    ref = references.solve_gradient_flow(grad_fn, [np.asarray(W) for W in params], t_final)
    err = max(np.linalg.norm(np.asarray(a) - b) / np.linalg.norm(b) for a, b in zip(traj.final, ref))
    assert err <= 1e-8, err


def _gd_vs_end_to_end_gap(eta, t_final=1.0):
    X, Y = regression_problem()
    loss = functools.partial(lp_loss, X=X, Y=Y, p=4.0)
    params = init_balanced(jax.random.key(12), (5, 4, 4, 2), std=0.8)
    n = round(t_final / eta)
    net = gradient_descent(loss, params, learning_rate=eta, num_steps=n, record_end_to_end=True)
    e2e = end_to_end_descent(loss, end_to_end(params), depth=3, learning_rate=eta, num_steps=n,
                             record_end_to_end=True)
    return float(jnp.max(jnp.linalg.norm(net.end_to_end - e2e.end_to_end, axis=(1, 2))))


def test_gd_tracks_end_to_end_descent_at_first_order():
    """Gap over t ≤ 1 halves with η (measured slope ≈ 1.07; at η ≥ 0.01 the O(η²) term
    still dominates: ratios 3.9, 3.1 per halving)."""
    etas = np.array([0.004, 0.002, 0.001, 0.0005])
    gaps = np.array([_gd_vs_end_to_end_gap(e) for e in etas])
    slope = np.polyfit(np.log(etas), np.log(gaps), 1)[0]
    assert abs(slope - 1.0) <= 0.2, (slope, gaps)


def test_end_to_end_descent_depth_one_is_plain_gd():
    X, Y = regression_problem()
    loss = functools.partial(lp_loss, X=X, Y=Y, p=4.0)
    W0 = jax.random.normal(jax.random.key(13), (2, 5)) * 0.3
    e2e = end_to_end_descent(loss, W0, depth=1, learning_rate=0.01, num_steps=3)
    W = np.asarray(W0)
    for _ in range(3):
        W = W - 0.01 * references.lp_loss_gradient(W, X, Y, 4.0)
    np.testing.assert_allclose(e2e.final, W, rtol=FLOAT64_RTOL)


def test_weight_decay_step_matches_hand_update():
    Phi = jax.random.normal(jax.random.key(14), (2, 3))
    loss = functools.partial(whitened_l2_loss, Phi=Phi)
    params = init_gaussian(jax.random.key(15), (3, 4, 2), std=0.5)
    lam, eta = 0.1, 0.05
    after = gradient_descent(loss, params, learning_rate=eta, weight_decay=lam, num_steps=1).final
    G = references.product(params) - np.asarray(Phi)
    for j, W in enumerate(params):
        expected = np.asarray(W) - eta * (references.layer_gradient(params, G, j) + lam * np.asarray(W))
        np.testing.assert_allclose(after[j], expected, rtol=FLOAT64_RTOL)


def test_optax_sgd_equals_gradient_descent():
    X, Y = regression_problem()
    loss = functools.partial(lp_loss, X=X, Y=Y, p=4.0)
    params = init_balanced(jax.random.key(16), (5, 4, 2), std=0.5)
    gd = gradient_descent(loss, params, learning_rate=0.01, num_steps=20, save_every=5)
    sgd = optax_descent(loss, params, optax.sgd(0.01), num_steps=20, save_every=5)
    np.testing.assert_allclose(sgd.loss, gd.loss, rtol=FLOAT64_RTOL)
    adam = optax_descent(loss, params, optax.adam(1e-2), num_steps=50, save_every=50)
    assert float(adam.loss[-1]) < float(adam.loss[0])


def test_divergence_is_recorded_and_frozen():
    X, Y = regression_problem()
    loss = functools.partial(lp_loss, X=X, Y=Y, p=4.0)
    params = init_balanced(jax.random.key(17), (5, 4, 2), std=0.5)
    traj = gradient_descent(loss, params, learning_rate=10.0, num_steps=50, save_every=10)
    k = int(traj.diverged_at)
    assert 0 < k <= 50
    assert np.all(np.isfinite(traj.loss)) and all(np.all(np.isfinite(W)) for W in traj.final)
    # Frozen at the last finite state: the state after k - 1 steps.
    before = gradient_descent(loss, params, learning_rate=10.0, num_steps=k - 1)
    for a, b in zip(traj.final, before.final):
        np.testing.assert_array_equal(a, b)


def test_float32_runs_keep_dtype():
    X, Y = (x.astype(jnp.float32) for x in regression_problem())
    loss = functools.partial(lp_loss, X=X, Y=Y, p=2.0)
    params = init_balanced(jax.random.key(18), (5, 3, 2), std=0.3, dtype=jnp.float32)
    traj = gradient_descent(loss, params, learning_rate=0.01, num_steps=10)
    assert traj.loss.dtype == jnp.float32 and traj.final[0].dtype == jnp.float32


# ---- bad input -----------------------------------------------------------------------


@pytest.fixture
def simple():
    loss = functools.partial(whitened_l2_loss, Phi=jnp.eye(2))
    return loss, init_balanced(jax.random.key(0), (2, 2, 2), std=0.1)


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(num_steps=10, save_every=3), ValueError, r"`num_steps` \(10\) must be a multiple of `save_every` \(3\)"),
    (dict(num_steps=-1), ValueError, "`num_steps` must be >= 0"),
    (dict(num_steps=10, save_every=0), ValueError, "`save_every` must be >= 1"),
    (dict(num_steps=2.5), TypeError, "`num_steps` must be an int"),
    (dict(num_steps=10, learning_rate=-0.1), ValueError, "`learning_rate` must be non-negative"),
    (dict(num_steps=10, weight_decay=-1.0), ValueError, "`weight_decay` must be non-negative"),
])
def test_gradient_descent_bad_input(simple, kwargs, error, match):
    loss, params = simple
    kwargs = {"learning_rate": 0.1, **kwargs}
    with pytest.raises(error, match=match):
        gradient_descent(loss, params, **kwargs)


@pytest.mark.parametrize("kwargs, match", [
    (dict(t_final=1.0, dt=-0.1), "`dt` must be positive"),
    (dict(t_final=0.0, dt=0.1), "`t_final` must be positive"),
    (dict(t_final=1.0, dt=0.3), "whole number of steps"),
    (dict(t_final=1.0, dt=0.1, method="midpoint"), r"`method` must be one of \('euler', 'rk4'\)"),
])
def test_gradient_flow_bad_input(simple, kwargs, match):
    loss, params = simple
    with pytest.raises(ValueError, match=match):
        gradient_flow(loss, params, **kwargs)


def test_end_to_end_descent_bad_depth(simple):
    loss, _ = simple
    with pytest.raises(ValueError, match="`depth` must be positive"):
        end_to_end_descent(loss, jnp.eye(2), depth=0, learning_rate=0.1, num_steps=1)


def test_optax_descent_rejects_non_optimizer(simple):
    loss, params = simple
    with pytest.raises(TypeError, match="optax.GradientTransformation"):
        optax_descent(loss, params, "adam", num_steps=1)
