"""Deep matrix factorization (overparam_jax.factorization) against independent references:
NumPy loops, closed forms, autodiff through the SVD and the convex solver."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.stats import entropy

from overparam_jax.dynamics import simulate
from overparam_jax.factorization import (
    FactorizationDescent,
    MatrixCompletion,
    MatrixSensing,
    completion_loss,
    effective_rank,
    low_rank_target,
    nuclear_norm_completion,
    observation_mask,
    sensing_loss,
    sensing_measurements,
    singular_value_rates,
    unobserved_error,
)
from overparam_jax.networks import balanced_factorization, end_to_end, init_balanced
from overparam_jax.preconditioner import end_to_end_field, end_to_end_velocity

# Float64 identities: a few sums and products of O(1) numbers.
ROUND_OFF = 1e-12
# Autodiff through the SVD vs the formula: one SVD each of O(1) matrices with gaps >= 0.2.
SVD_ROUND_OFF = 1e-9


def _problem(seed=0, shape=(6, 5), rank=2, m=12):
    key = jax.random.key(seed)
    M = low_rank_target(jax.random.fold_in(key, 0), shape, rank)
    return M, observation_mask(jax.random.fold_in(key, 1), shape, m)


def test_completion_loss_and_gradient_match_a_loop_over_the_observed_entries():
    M, mask = _problem()
    W = jax.random.normal(jax.random.key(3), M.shape)
    Mn, Wn, obs = np.asarray(M), np.asarray(W), np.argwhere(np.asarray(mask) == 1)
    expected = 0.5 * sum((Wn[i, j] - Mn[i, j]) ** 2 for i, j in obs)
    assert float(completion_loss(W, M, mask)) == pytest.approx(expected, rel=ROUND_OFF)
    grad = np.zeros_like(Wn)
    for i, j in obs:
        grad[i, j] = Wn[i, j] - Mn[i, j]
    np.testing.assert_allclose(jax.grad(completion_loss)(W, M, mask), grad, atol=ROUND_OFF)


def test_sensing_with_entry_measurements_is_completion():
    """A_k = e_i e_j^T for the observed (i, j): sensing and completion are the same loss."""
    M, mask = _problem()
    obs = np.argwhere(np.asarray(mask) == 1)
    A = np.zeros((len(obs), *M.shape))
    A[np.arange(len(obs)), obs[:, 0], obs[:, 1]] = 1.0
    y = np.asarray(M)[obs[:, 0], obs[:, 1]]
    W = jax.random.normal(jax.random.key(4), M.shape)
    assert float(sensing_loss(W, jnp.asarray(A), jnp.asarray(y))) == pytest.approx(
        float(completion_loss(W, M, mask)), rel=ROUND_OFF)


def test_sensing_measurements_observe_the_target_with_variance_one_over_m():
    M = low_rank_target(jax.random.key(0), (8, 8), 2)
    A, y = sensing_measurements(jax.random.key(1), M, 400)
    np.testing.assert_allclose(y, np.einsum("mij,ij->m", np.asarray(A), np.asarray(M)), rtol=1e-12)
    # 25,600 entries of variance 1/400: the sample variance is within 5 standard errors.
    var = float(np.var(np.asarray(A)))
    assert abs(var * 400 - 1) < 5 * np.sqrt(2 / A.size)
    assert float(MatrixSensing(M, A, y).loss(M)) == pytest.approx(0.0, abs=1e-20)


def test_unobserved_error_matches_numpy_and_is_nan_when_all_observed():
    M, mask = _problem()
    W = jax.random.normal(jax.random.key(5), M.shape)
    hidden = 1 - np.asarray(mask)
    expected = np.linalg.norm(hidden * (np.asarray(W) - M)) / np.linalg.norm(hidden * M)
    assert float(unobserved_error(W, M, mask)) == pytest.approx(expected, rel=ROUND_OFF)
    assert np.isnan(float(unobserved_error(W, M, jnp.ones_like(M))))


@pytest.mark.parametrize("sigma", [[1.0], [1.0, 1.0, 1.0], [3.0, 1.0, 0.5], [2.0, 1e-3, 0.0]])
def test_effective_rank_is_exp_of_the_entropy_of_the_normalized_singular_values(sigma):
    rng = np.random.default_rng(0)
    U, _ = np.linalg.qr(rng.normal(size=(5, 5)))
    V, _ = np.linalg.qr(rng.normal(size=(4, 4)))
    W = U[:, : len(sigma)] @ np.diag(sigma) @ V[:, : len(sigma)].T
    p = np.asarray(sigma) / np.sum(sigma)
    assert float(effective_rank(jnp.asarray(W))) == pytest.approx(np.exp(entropy(p)), rel=1e-10)


def test_effective_rank_limits():
    assert float(effective_rank(jnp.eye(4))) == pytest.approx(4.0, rel=ROUND_OFF)
    assert float(effective_rank(jnp.outer(jnp.arange(1.0, 4.0), jnp.ones(3)))) == pytest.approx(1.0, rel=1e-7)


def test_low_rank_target_has_the_rank_and_unit_spectral_norm_and_is_seeded():
    M = low_rank_target(jax.random.key(7), (9, 7), 3)
    sigma = np.linalg.svd(np.asarray(M), compute_uv=False)
    assert sigma[0] == pytest.approx(1.0, rel=ROUND_OFF)
    assert np.linalg.matrix_rank(np.asarray(M)) == 3
    np.testing.assert_array_equal(M, low_rank_target(jax.random.key(7), (9, 7), 3))
    assert not np.allclose(M, low_rank_target(jax.random.key(8), (9, 7), 3))


def test_observation_masks_count_exactly_nest_and_are_uniform():
    key = jax.random.key(0)
    ms = jnp.asarray([0, 5, 17, 30])
    masks = np.asarray(jax.jit(jax.vmap(lambda m: observation_mask(key, (5, 6), m)))(ms))
    assert masks.sum(axis=(1, 2)).tolist() == [0, 5, 17, 30]
    assert np.all(np.diff(masks, axis=0) >= 0)  # nested
    # Uniform: each of 30 entries is observed in a fraction 10/30 of 3,000 draws (binomial).
    draws = np.asarray(jax.vmap(lambda k: observation_mask(k, (5, 6), 10))(jax.random.split(key, 3000)))
    freq = draws.mean(axis=0)
    assert np.max(np.abs(freq - 1 / 3)) < 5 * np.sqrt((1 / 3) * (2 / 3) / 3000)


def test_singular_value_rates_match_autodiff_through_the_svd_along_the_end_to_end_field():
    """[ACHL19 Thm 3] against jax.jvp of the singular values along P_W grad l (an independent path)."""
    rng = np.random.default_rng(1)
    U, _ = np.linalg.qr(rng.normal(size=(4, 4)))
    V, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    W = jnp.asarray(U[:, :3] @ np.diag([2.0, 1.2, 0.5]) @ V.T)
    M, mask = jnp.asarray(rng.normal(size=(4, 3))), jnp.asarray((rng.random((4, 3)) < 0.6) * 1.0)
    loss = functools.partial(completion_loss, target=M, mask=mask)
    for depth in (1.0, 2.0, 3.0, 2.5):
        velocity = end_to_end_field(W, loss, depth)
        autodiff = jax.jvp(lambda A: jnp.linalg.svd(A, compute_uv=False), (W,), (velocity,))[1]
        formula = singular_value_rates(W, jax.grad(loss)(W), depth)
        np.testing.assert_allclose(formula, autodiff, rtol=SVD_ROUND_OFF, atol=SVD_ROUND_OFF)


def test_singular_value_rates_match_a_balanced_network_velocity():
    rng = np.random.default_rng(2)
    U, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    A = jnp.asarray(U @ np.diag([1.5, 1.0, 0.6]) @ U[::-1].T)
    M, mask = jnp.asarray(rng.normal(size=(3, 3))), jnp.asarray((rng.random((3, 3)) < 0.7) * 1.0)
    loss = functools.partial(completion_loss, target=M, mask=mask)
    for depth in (2, 3, 4):
        params = balanced_factorization(A, (3,) * (depth + 1))
        velocity = end_to_end_velocity(params, loss)
        autodiff = jax.jvp(lambda B: jnp.linalg.svd(B, compute_uv=False), (A,), (velocity,))[1]
        formula = singular_value_rates(A, jax.grad(loss)(A), depth)
        np.testing.assert_allclose(formula, autodiff, rtol=SVD_ROUND_OFF, atol=SVD_ROUND_OFF)


def test_factorization_descent_is_hand_written_gd_and_records_the_problem():
    M, mask = _problem(shape=(4, 4), m=9)
    params = init_balanced(jax.random.key(2), (4, 4, 4), std=0.5)
    eta = 0.05
    traj = simulate(FactorizationDescent(learning_rate=jnp.asarray(eta), problem=MatrixCompletion(M, mask),
                                         num_singular_values=3), params, num_steps=3)
    W1, W2 = (np.asarray(W) for W in params)
    Mn, Pn = np.asarray(M), np.asarray(mask)
    for _ in range(3):  # d/dW1 = W2^T G, d/dW2 = G W1^T with G = mask * (W2 W1 - M)
        G = Pn * (W2 @ W1 - Mn)
        W1, W2 = W1 - eta * W2.T @ G, W2 - eta * G @ W1.T
    np.testing.assert_allclose(traj.final[0], W1, rtol=1e-12)
    np.testing.assert_allclose(traj.final[1], W2, rtol=1e-12)
    final = W2 @ W1
    assert traj.extra["singular_values"].shape == (4, 3)
    np.testing.assert_allclose(traj.extra["singular_values"][-1], np.linalg.svd(final, compute_uv=False)[:3],
                               rtol=1e-10)
    assert float(traj.extra["error"][-1]) == pytest.approx(
        np.linalg.norm((1 - Pn) * (final - Mn)) / np.linalg.norm((1 - Pn) * Mn), rel=1e-10)
    assert float(traj.extra["effective_rank"][-1]) == pytest.approx(float(effective_rank(jnp.asarray(final))),
                                                                    rel=1e-10)


def test_depth_one_descent_never_moves_the_unobserved_entries():
    M, mask = _problem(shape=(5, 5), m=10)
    W0 = 0.1 * jax.random.normal(jax.random.key(9), M.shape)
    traj = simulate(FactorizationDescent(learning_rate=jnp.asarray(0.5), problem=MatrixCompletion(M, mask)),
                    (W0,), num_steps=50)
    hidden = np.asarray(mask) == 0
    np.testing.assert_array_equal(np.asarray(traj.final[0])[hidden], np.asarray(W0)[hidden])
    np.testing.assert_allclose(np.asarray(traj.final[0])[~hidden], np.asarray(M)[~hidden], atol=1e-12)


def test_problems_batch_into_one_program():
    Ms, masks = zip(*(_problem(seed=s, m=m) for s, m in ((0, 10), (1, 20))))
    problem = MatrixCompletion(jnp.stack(Ms), jnp.stack(masks))
    params = jax.vmap(lambda k: init_balanced(k, (5, 5, 6), std=0.1))(jax.random.split(jax.random.key(0), 2))
    rule = FactorizationDescent(learning_rate=jnp.full(2, 0.1), weight_decay=jnp.zeros(2), problem=problem)
    batched = simulate(rule, params, num_steps=20, batched=True)
    for i in range(2):
        one = simulate(FactorizationDescent(learning_rate=jnp.asarray(0.1), problem=MatrixCompletion(Ms[i], masks[i])),
                       tuple(W[i] for W in params), num_steps=20)
        np.testing.assert_allclose(batched.loss[i], one.loss, rtol=1e-12)


# --------------------------------------------------------------------------------------
# The nuclear-norm baseline (cvxpy)
# --------------------------------------------------------------------------------------

cvxpy = pytest.importorskip("cvxpy", reason="cvxpy (the [dmf] extra) is not installed")
SOLVER = 1e-5  # SCS at its default tolerance 1e-6: solutions to ~1e-6 on O(1) entries


def test_nuclear_norm_of_one_observed_entry_is_that_entry_alone():
    """min ||W||_* s.t. W_00 = 1: ||W||_* >= ||W||_F >= 1, equality only at e_0 e_0^T."""
    W, optimal, _ = nuclear_norm_completion(np.ones((2, 3)), np.array([[1.0, 0, 0], [0, 0, 0]]))
    assert optimal
    np.testing.assert_allclose(W, [[1, 0, 0], [0, 0, 0]], atol=SOLVER)


def test_nuclear_norm_completes_the_two_by_two_all_ones():
    """W = [[1, 1], [1, c]]: ||W||_* = sqrt((1 - c)^2 + 4) for c <= 1 and 1 + c above: c = 1."""
    W = nuclear_norm_completion(np.ones((2, 2)), np.array([[1.0, 1], [1, 0]])).matrix
    assert W[1, 1] == pytest.approx(1.0, abs=SOLVER)


def test_nuclear_norm_recovers_a_low_rank_matrix_from_many_entries_and_beats_any_completion():
    M, mask = _problem(shape=(12, 12), rank=1, m=100)
    W = nuclear_norm_completion(M, mask).matrix
    np.testing.assert_allclose(W, M, atol=1e-4)  # far above the 23 degrees of freedom
    M, mask = _problem(shape=(10, 10), rank=3, m=40)  # below them: not the target, but the least norm
    W = nuclear_norm_completion(M, mask).matrix
    observed = np.asarray(mask) == 1
    np.testing.assert_allclose(W[observed], np.asarray(M)[observed], atol=SOLVER)
    nuc = lambda A: np.linalg.svd(A, compute_uv=False).sum()  # noqa: E731
    assert nuc(W) <= nuc(np.asarray(M)) + SOLVER


# --------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("call, match", [
    (lambda: completion_loss(jnp.zeros((2, 3)), jnp.zeros((2, 2)), jnp.zeros((2, 2))), "W_e"),
    (lambda: completion_loss(jnp.zeros((2, 2)), jnp.zeros((2, 2)), 0.5 * jnp.ones((2, 2))), "only 0"),
    (lambda: completion_loss(jnp.zeros((2, 2)), jnp.full((2, 2), jnp.nan), jnp.ones((2, 2))), "finite"),
    (lambda: sensing_loss(jnp.zeros((2, 2)), jnp.zeros((3, 2, 3)), jnp.zeros(3)), "measurements"),
    (lambda: low_rank_target(jax.random.key(0), (3, 4), 4), "rank"),
    (lambda: low_rank_target(jax.random.key(0), (3,), 1), "shape"),
    (lambda: observation_mask(jax.random.key(0), (3, 4), 13), "num_observations"),
    (lambda: observation_mask(jax.random.key(0), (3, 4), -1), "num_observations"),
    (lambda: singular_value_rates(jnp.zeros((2, 2)), jnp.zeros((2, 3)), 2.0), "grad"),
])
def test_bad_input_raises_naming_the_argument(call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call()
