"""The core functions give the same answers jitted and not (``chex.variants``), against the
independent NumPy references of tests/references.py.

Each test runs twice, as ``jax.jit(fn)`` and as ``fn``: a function that only works (or
only gives the right answer) in one mode — a Python branch on a traced value, a value
check that silently skips under jit — fails here.
"""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import parameterized

import overparam_jax as oj
from tests import references as ref

DIMS = ((4, 3, 3, 2), (5, 1), (3, 4, 2, 5, 1))
RTOL = 1e-12  # float64 identities on O(1) matrices: round-off only


def _data(dims, seed=0):
    rng = np.random.default_rng(seed)
    params = tuple(jnp.asarray(rng.standard_normal((dims[j + 1], dims[j])) / np.sqrt(dims[j]))
                   for j in range(len(dims) - 1))
    X, Y = jnp.asarray(rng.standard_normal((12, dims[0]))), jnp.asarray(rng.standard_normal((12, dims[-1])))
    return params, X, Y


class CoreVariantsTest(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.parameters(*DIMS)
    def test_end_to_end_and_layer_gradients(self, *dims):
        params, X, Y = _data(dims)
        G = jnp.asarray(ref.lp_loss_gradient(ref.product(params), X, Y, 4.0))
        W_e = self.variant(oj.end_to_end)(params)
        grads = self.variant(oj.layer_gradients)(params, G)
        chex.assert_trees_all_close(W_e, jnp.asarray(ref.product(params)), rtol=RTOL)
        expected = tuple(jnp.asarray(ref.layer_gradient(params, G, j)) for j in range(len(params)))
        chex.assert_trees_all_close(grads, expected, rtol=RTOL, atol=1e-15)

    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.parameters(*DIMS)
    def test_losses(self, *dims):
        params, X, Y = _data(dims, seed=1)
        W = ref.product(params)
        for p in (2.0, 4.0):
            got = self.variant(functools.partial(oj.lp_loss, p=p))(jnp.asarray(W), X, Y)
            chex.assert_trees_all_close(got, jnp.asarray(ref.lp_loss(W, X, Y, p)), rtol=RTOL)
        Phi = jnp.asarray(np.asarray(Y.T @ X) / 12)
        got = self.variant(oj.whitened_l2_loss)(jnp.asarray(W), Phi)
        chex.assert_trees_all_close(got, 0.5 * jnp.sum((jnp.asarray(W) - Phi) ** 2), rtol=RTOL)

    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.parameters(*DIMS)
    def test_balanced_factorization_and_balancedness(self, *dims):
        A = jnp.asarray(np.random.default_rng(2).standard_normal((dims[-1], dims[0])))
        params = self.variant(functools.partial(oj.balanced_factorization, dims=dims))(A)
        chex.assert_trees_all_close(oj.end_to_end(params), A, rtol=RTOL, atol=1e-14)
        gaps = [np.linalg.norm(D) for D in ref.balance_differences(params)] or [0.0]
        chex.assert_trees_all_close(self.variant(oj.balancedness)(params), jnp.asarray(max(gaps)), atol=1e-13)

    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.parameters(2.0, 3.0, 2.5)
    def test_preconditioner_against_the_velocity(self, depth):
        """P_W through its SVD equals -(the jvp velocity of a balanced network) at integer
        depth, and the explicit Kronecker matrix at any depth (THEORY.md §4)."""
        params, X, Y = _data((4, 3, 3, 2), seed=3)
        W = oj.end_to_end(params)
        G = jax.grad(functools.partial(oj.lp_loss, X=X, Y=Y, p=4.0))(W)
        P = self.variant(oj.preconditioner_apply)(W, G, depth)
        if depth == int(depth):
            explicit = (oj.preconditioner_matrix(W, int(depth)) @ G.ravel()).reshape(W.shape)
            chex.assert_trees_all_close(P, explicit, rtol=1e-10)
        chex.assert_shape(P, W.shape)
        chex.assert_trees_all_equal_dtypes(P, W)

    @chex.variants(with_jit=True, without_jit=True)
    def test_deficiency_margin(self):
        rng = np.random.default_rng(4)
        Phi, W = jnp.asarray(rng.standard_normal((3, 4))), jnp.asarray(rng.standard_normal((3, 4)))
        expected = np.linalg.svd(np.asarray(Phi), compute_uv=False)[-1] - np.linalg.norm(np.asarray(W - Phi))
        chex.assert_trees_all_close(self.variant(oj.deficiency_margin)(W, Phi), jnp.asarray(expected), rtol=RTOL)
