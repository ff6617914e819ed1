"""Tests of overparam_jax.losses against NumPy references."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from overparam_jax import end_to_end, lp_loss, overparameterized, whitened_l2_loss
from tests import references

FLOAT64_RTOL = 1e-12  # sums of O(100) products of O(1) numbers in float64


@pytest.mark.parametrize("p", [1.0, 1.5, 2.0, 3.0, 4.0])
@pytest.mark.parametrize("shape", [(7, 1), (4, 3)])
@pytest.mark.parametrize("divide_by_p", [False, True])
def test_lp_loss_matches_numpy(p, shape, divide_by_p):
    d_out, d_in = shape
    rng = np.random.default_rng(0)
    W, X, Y = rng.normal(size=(d_out, d_in)), rng.normal(size=(30, d_in)), rng.normal(size=(30, d_out))
    got = jax.jit(functools.partial(lp_loss, p=p, divide_by_p=divide_by_p))(W, X, Y)
    np.testing.assert_allclose(got, references.lp_loss(W, X, Y, p, divide_by_p), rtol=FLOAT64_RTOL)


@pytest.mark.parametrize("p", [2.0, 4.0])
def test_lp_loss_gradient_matches_closed_form(p):
    rng = np.random.default_rng(1)
    W, X, Y = rng.normal(size=(2, 5)), rng.normal(size=(40, 5)), rng.normal(size=(40, 2))
    got = jax.grad(lp_loss)(jnp.asarray(W), X, Y, p=p)
    np.testing.assert_allclose(got, references.lp_loss_gradient(W, X, Y, p), rtol=FLOAT64_RTOL)


def test_lp_loss_float32_keeps_dtype():
    W = jnp.ones((1, 3), jnp.float32)
    X, Y = jnp.ones((5, 3), jnp.float32), jnp.zeros((5, 1), jnp.float32)
    out = lp_loss(W, X, Y, p=4)
    assert out.dtype == jnp.float32 and float(out) == 81.0


def test_whitened_l2_loss_value():
    Phi = jnp.array([[1.0, 2.0], [3.0, 4.0]])
    assert float(whitened_l2_loss(Phi + 1.0, Phi)) == 2.0


def test_overparameterized_is_loss_of_product():
    rng = np.random.default_rng(2)
    params = (jnp.asarray(rng.normal(size=(3, 2))), jnp.asarray(rng.normal(size=(2, 3))))
    Phi = jnp.asarray(rng.normal(size=(2, 2)))
    phi = overparameterized(functools.partial(whitened_l2_loss, Phi=Phi))
    expected = 0.5 * np.sum((references.product(params) - np.asarray(Phi)) ** 2)
    np.testing.assert_allclose(phi(params), expected, rtol=FLOAT64_RTOL)
    np.testing.assert_allclose(phi(params), whitened_l2_loss(end_to_end(params), Phi))


# ---- bad input -----------------------------------------------------------------------


def test_lp_loss_rejects_p_below_one():
    with pytest.raises(ValueError, match=r"`p` must be >= 1, got 0.5"):
        lp_loss(jnp.ones((1, 2)), jnp.ones((3, 2)), jnp.ones((3, 1)), p=0.5)


def test_lp_loss_rejects_row_mismatch():
    with pytest.raises(ValueError, match=r"same number of rows.*X \(3, 2\) and Y \(4, 1\)"):
        lp_loss(jnp.ones((1, 2)), jnp.ones((3, 2)), jnp.ones((4, 1)))


def test_lp_loss_rejects_wrong_weight_shape():
    with pytest.raises(ValueError, match=r"`W_e` must have shape \(1, 2\)"):
        lp_loss(jnp.ones((2, 1)), jnp.ones((3, 2)), jnp.ones((3, 1)))


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_lp_loss_rejects_non_finite_data(bad):
    X = np.ones((3, 2))
    X[1, 0] = bad
    with pytest.raises(ValueError, match=r"`X` must be finite, but has 1 NaN/Inf"):
        lp_loss(jnp.ones((1, 2)), X, jnp.ones((3, 1)))


def test_whitened_l2_loss_rejects_shape_mismatch():
    with pytest.raises(ValueError, match=r"`W_e` must have shape \(2, 3\)"):
        whitened_l2_loss(jnp.ones((3, 2)), jnp.ones((2, 3)))


def test_overparameterized_rejects_non_callable():
    with pytest.raises(TypeError, match="`loss_fn` must be callable"):
        overparameterized(3.0)
