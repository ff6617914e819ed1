"""Tests of overparam_jax.networks against independent NumPy references."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from overparam_jax import (
    balanced_factorization,
    balancedness,
    deficiency_margin,
    end_to_end,
    init_balanced,
    init_gaussian,
    init_identity,
    layer_gradients,
    lp_loss,
    network_dims,
    overparameterized,
)
from tests import references

# float64 identities: a handful of matmuls/SVDs of O(1) entries, error ~ 1e-15 * size.
FLOAT64_IDENTITY_RTOL = 1e-12
# float32 round-off on the same identities (eps ~ 1.2e-7 times a small growth factor).
FLOAT32_IDENTITY_RTOL = 1e-5

# dims cases: depths 1-6, square, non-square, d_N = 1, hidden widths between min(d_0, d_N)
# and max(d_0, d_N), and below d_0.
FACTORIZATION_DIMS = [
    (4, 4),
    (5, 3),
    (6, 6, 6),
    (7, 3, 2),
    (8, 1, 1),
    (2, 5, 9),
    (9, 4, 6, 1),
    (6, 6, 6, 6, 6),
    (10, 3, 7, 4, 3),
    (12, 2, 5, 3, 8, 2),
    (5, 1, 1, 1, 1, 1, 1),
]


def random_params(key, dims, dtype=jnp.float64):
    keys = jax.random.split(key, len(dims) - 1)
    return tuple(
        jax.random.normal(k, (dims[j + 1], dims[j]), dtype) / np.sqrt(dims[j])
        for j, k in enumerate(keys)
    )


@pytest.mark.parametrize("dims", [(3, 4), (3, 4, 2), (5, 1, 1, 1), (4, 6, 6, 6, 6, 2)])
def test_end_to_end_matches_numpy_product(dims):
    params = random_params(jax.random.key(0), dims)
    np.testing.assert_allclose(
        end_to_end(params), references.product(params), rtol=FLOAT64_IDENTITY_RTOL
    )


def test_end_to_end_single_output_chain_is_vector_matrix():
    """d_N = 1: multi_dot must chain vector-matrix products, O(N h^2) FLOPs not O(N h^3)."""
    h, d0, N = 64, 10, 6
    params = random_params(jax.random.key(1), (d0,) + (h,) * (N - 1) + (1,))
    flops = jax.jit(end_to_end).lower(params).compile().cost_analysis()["flops"]
    vector_chain = 2 * ((N - 2) * h * h + h + h * d0)  # row vector times each matrix
    matrix_chain = 2 * ((N - 2) * h * h * d0 + h * h * d0)  # W_{N-1}...W_1 first
    assert flops <= 1.05 * vector_chain
    assert flops < matrix_chain / 5


@pytest.mark.parametrize("dims", [(3, 2), (4, 3, 2), (5, 2, 3, 1), (3, 5, 2, 4, 2)])
@pytest.mark.parametrize("p", [2.0, 4.0])
def test_layer_gradients_autodiff_vs_hand_formula(dims, p):
    key_p, key_x, key_y = jax.random.split(jax.random.key(2), 3)
    params = random_params(key_p, dims)
    X = jax.random.normal(key_x, (15, dims[0]))
    Y = jax.random.normal(key_y, (15, dims[-1]))
    loss_fn = functools.partial(lp_loss, X=X, Y=Y, p=p)
    auto = jax.jit(jax.grad(overparameterized(loss_fn)))(params)
    G = references.lp_loss_gradient(references.product(params), X, Y, p)
    closed = layer_gradients(params, jnp.asarray(G))
    for j, (a, c) in enumerate(zip(auto, closed)):
        ref = references.layer_gradient(params, G, j)
        np.testing.assert_allclose(a, ref, rtol=FLOAT64_IDENTITY_RTOL, atol=1e-14)
        np.testing.assert_allclose(c, ref, rtol=FLOAT64_IDENTITY_RTOL, atol=1e-14)


@pytest.mark.parametrize("dims", FACTORIZATION_DIMS)
def test_balanced_factorization_is_exact_and_balanced(dims):
    A = jax.random.normal(jax.random.key(3), (dims[-1], dims[0]))
    params = jax.jit(balanced_factorization, static_argnums=1)(A, dims)
    assert network_dims(params) == dims
    scale = np.linalg.norm(A)
    np.testing.assert_allclose(references.product(params), A, atol=FLOAT64_IDENTITY_RTOL * scale)
    gaps = [
        np.linalg.norm(np.asarray(params[j + 1]).T @ params[j + 1] - params[j] @ np.asarray(params[j]).T)
        for j in range(len(params) - 1)
    ]
    assert max(gaps, default=0.0) <= FLOAT64_IDENTITY_RTOL * scale
    assert float(balancedness(params)) <= FLOAT64_IDENTITY_RTOL * scale


def test_balanced_factorization_of_rank_deficient_and_zero_matrices():
    u, v = np.arange(1.0, 4.0)[:, None], np.arange(1.0, 6.0)[None, :]
    for A in (jnp.asarray(u @ v), jnp.zeros((3, 5))):
        params = balanced_factorization(A, (5, 4, 4, 3))
        np.testing.assert_allclose(references.product(params), A, atol=1e-12 * (1 + np.linalg.norm(A)))
        assert float(balancedness(params)) <= 1e-12 * (1 + np.linalg.norm(A))


def test_balanced_factorization_float32_keeps_dtype():
    A = jax.random.normal(jax.random.key(4), (3, 5), jnp.float32)
    params = balanced_factorization(A, (5, 4, 4, 3))
    assert all(W.dtype == jnp.float32 for W in params)
    np.testing.assert_allclose(end_to_end(params), A, atol=FLOAT32_IDENTITY_RTOL * np.linalg.norm(A))


def test_init_balanced_end_to_end_statistics():
    """End-to-end entries of init_balanced are N(0, std^2): sample std over many entries."""
    params = init_balanced(jax.random.key(5), (200, 120, 120, 100), std=0.3)
    W_e = np.asarray(end_to_end(params))
    # 20000 i.i.d. entries: the sample std has relative standard error ~ 1/sqrt(2*20000).
    assert abs(W_e.std() / 0.3 - 1) < 5 / np.sqrt(2 * W_e.size)
    assert float(balancedness(params)) < 1e-12 * np.linalg.norm(W_e)


def test_init_gaussian_shapes_statistics_and_keys():
    params = init_gaussian(jax.random.key(6), (300, 200, 100), std=0.5)
    assert [W.shape for W in params] == [(200, 300), (100, 200)]
    for W in params:
        assert abs(np.asarray(W).std() / 0.5 - 1) < 5 / np.sqrt(2 * W.size)
    again = init_gaussian(jax.random.key(6), (300, 200, 100), std=0.5)
    assert all(np.array_equal(a, b) for a, b in zip(params, again))
    other = init_gaussian(jax.random.key(7), (300, 200, 100), std=0.5)
    assert not np.array_equal(params[0], other[0])


def test_init_gaussian_std_can_be_vmapped():
    stds = jnp.array([0.1, 1.0, 10.0])
    batch = jax.vmap(lambda s: init_gaussian(jax.random.key(0), (4, 3, 2), std=s))(stds)
    np.testing.assert_allclose(batch[0][1] / batch[0][0], 10.0 * np.ones((3, 4)))


def test_init_identity_is_balanced_and_scaled():
    params = init_identity((4, 4, 4, 4), scale=0.5)
    np.testing.assert_allclose(end_to_end(params), 0.125 * np.eye(4))
    assert float(balancedness(params)) == 0.0


def test_near_zero_gaussian_init_is_approximately_balanced():
    """δ of a Gaussian init scales like std^2 (THEORY.md §3): ratio over a decade is 100."""
    deltas = [float(balancedness(init_gaussian(jax.random.key(8), (6, 6, 6, 6), std=s))) for s in (1e-2, 1e-3)]
    np.testing.assert_allclose(deltas[0] / deltas[1], 100.0, rtol=1e-10)


def test_balancedness_depth_one_is_zero_and_matches_reference():
    W = jnp.ones((3, 2))
    assert float(balancedness((W,))) == 0.0
    params = random_params(jax.random.key(9), (3, 4, 5, 2))
    ref = max(
        np.linalg.norm(np.asarray(params[j + 1]).T @ params[j + 1] - params[j] @ np.asarray(params[j]).T)
        for j in range(2)
    )
    np.testing.assert_allclose(balancedness(params), ref, rtol=FLOAT64_IDENTITY_RTOL)


def test_deficiency_margin_matches_svd_reference():
    Phi = jnp.diag(jnp.array([3.0, 2.0, 1.0]))
    W_e = Phi + 0.1 * jnp.ones((3, 3))
    expected = 1.0 - np.linalg.norm(0.1 * np.ones((3, 3)))
    np.testing.assert_allclose(deficiency_margin(W_e, Phi), expected, rtol=1e-14)
    # Every matrix at least as close to Phi has sigma_min >= c (THEORY.md §5).
    c = float(deficiency_margin(W_e, Phi))
    rng = np.random.default_rng(0)
    for _ in range(20):
        D = rng.normal(size=(3, 3))
        W = np.asarray(Phi) + D / np.linalg.norm(D) * np.linalg.norm(W_e - Phi)
        assert np.linalg.svd(W, compute_uv=False)[-1] >= c - 1e-12


# ---- bad input -----------------------------------------------------------------------


def test_nonconforming_chain_names_the_layer():
    params = (jnp.ones((3, 7)), jnp.ones((5, 4)))
    with pytest.raises(ValueError, match=r"params\[1\] has shape \(5, 4\); expected \(5, 3\)"):
        end_to_end(params)


@pytest.mark.parametrize(
    "params, error, match",
    [
        ((), ValueError, "at least one layer"),
        (jnp.ones((3, 3)), TypeError, "tuple or list"),
        ((jnp.ones(3),), ValueError, r"rank 2"),
        ((jnp.ones((3, 3), jnp.int32),), TypeError, "floating dtype"),
        ((jnp.ones((0, 3)),), ValueError, "empty"),
        ((jnp.ones((3, 3), jnp.float32), jnp.ones((3, 3))), TypeError, "one dtype"),
    ],
)
def test_bad_params(params, error, match):
    with pytest.raises(error, match=match):
        end_to_end(params)


@pytest.mark.parametrize(
    "dims, error, match",
    [
        ((3,), ValueError, "at least 2 entries"),
        ((3, 0, 2), ValueError, r"dims\[1\]` must be positive"),
        ((3, -1), ValueError, "must be positive"),
        ((3, 2.5), TypeError, "must be an int"),
        (7, TypeError, "sequence of ints"),
    ],
)
def test_bad_dims(dims, error, match):
    with pytest.raises(error, match=match):
        init_gaussian(jax.random.key(0), dims, std=1.0)


def test_balanced_factorization_bad_input():
    with pytest.raises(ValueError, match=r"`A` must have shape \(2, 4\)"):
        balanced_factorization(jnp.ones((3, 4)), (4, 3, 2))
    with pytest.raises(ValueError, match=r"dims\[1\]` = 1 is below min\(d_0, d_N\) = 2"):
        balanced_factorization(jnp.ones((2, 4)), (4, 1, 2))


def test_init_identity_needs_square_layers():
    with pytest.raises(ValueError, match="all be equal"):
        init_identity((3, 4, 3))


def test_deficiency_margin_shape_mismatch():
    with pytest.raises(ValueError, match=r"`W_e` must have shape \(2, 3\)"):
        deficiency_margin(jnp.ones((3, 2)), jnp.ones((2, 3)))


def test_layer_gradients_shape_mismatch():
    with pytest.raises(ValueError, match=r"`grad_W_e` must have shape \(2, 3\)"):
        layer_gradients((jnp.ones((4, 3)), jnp.ones((2, 4))), jnp.ones((3, 2)))
