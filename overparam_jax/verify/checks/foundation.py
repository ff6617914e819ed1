"""Checks of the core objects: balanced factorization and layer gradients (THEORY.md §2, §3, §7)."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from overparam_jax.losses import lp_loss, overparameterized
from overparam_jax.networks import (
    balanced_factorization,
    balancedness,
    end_to_end,
    layer_gradients,
)
from overparam_jax.verify.registry import Measurement, VerifyConfig, check_rng, normal, register

# (dims) cases: square, non-square, d_N = 1, hidden widths between min(d_0, d_N) and max.
_FACTORIZATION_DIMS = [
    (5, 5),
    (6, 4, 3),
    (7, 7, 7, 7),
    (8, 3, 5, 2),
    (9, 1, 1, 1),
    (10, 6, 4, 12, 5, 1),
    (4, 6, 6, 6, 6, 6, 3),
]


@register(
    "balanced-factorization",
    section="§7",
    claim="Procedure 1 gives W_N...W_1 = A exactly and exactly balanced weights (depths 1-6)",
    threshold=1e-12,
)
def check_balanced_factorization(
    config: VerifyConfig, *, factorize=balanced_factorization
) -> Measurement:
    """max over cases of max(||W_e - A||, balancedness) / ||A||, float64."""

    @functools.partial(jax.jit, static_argnums=1)
    def errors(A, dims):
        params = factorize(A, dims)
        scale = jnp.linalg.norm(A)
        return jnp.linalg.norm(end_to_end(params) - A) / scale, balancedness(params) / scale

    rng = check_rng(config, 0)
    worst_product, worst_balance = 0.0, 0.0
    for dims in _FACTORIZATION_DIMS:
        product, balance = errors(normal(rng, (dims[-1], dims[0])), dims)
        worst_product, worst_balance = max(worst_product, float(product)), max(worst_balance, float(balance))
    return Measurement(
        max(worst_product, worst_balance),
        {"product_rel_error": worst_product, "balancedness_rel": worst_balance,
         "cases": [list(d) for d in _FACTORIZATION_DIMS]},
    )


@register(
    "layer-gradients",
    section="§2",
    claim="jax.grad of phi equals W_{N:j+1}^T grad_l(W_e) W_{j-1:1}^T for every layer",
    threshold=1e-12,
)
def check_layer_gradients(config: VerifyConfig, *, closed_form=layer_gradients) -> Measurement:
    """Relative gap between autodiff and the closed form, l4 loss, several shapes."""

    @jax.jit
    def gap(params, X, Y):
        loss_fn = functools.partial(lp_loss, X=X, Y=Y, p=4.0)
        auto = jax.grad(overparameterized(loss_fn))(params)
        hand = closed_form(params, jax.grad(loss_fn)(end_to_end(params)))
        return jnp.max(jnp.stack([jnp.linalg.norm(a - h) / jnp.linalg.norm(a) for a, h in zip(auto, hand)]))

    rng = check_rng(config, 1)
    worst = 0.0
    for dims in [(4, 3), (5, 2, 3), (6, 4, 4, 1), (3, 5, 2, 4, 2)]:
        X, Y = normal(rng, (20, dims[0])), normal(rng, (20, dims[-1]))
        params = tuple(normal(rng, (dims[j + 1], dims[j]), 1 / dims[j] ** 0.5) for j in range(len(dims) - 1))
        worst = max(worst, float(gap(params, X, Y)))
    return Measurement(worst, {"loss": "l4"})
