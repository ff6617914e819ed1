"""Checks of the talk's motivation: critical points at zero and approximate balance of
near-zero inits (THEORY.md §3, §7)."""

from __future__ import annotations

import functools

import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np

from overparam_jax.losses import lp_loss, overparameterized
from overparam_jax.networks import balancedness, init_gaussian, init_identity
from overparam_jax.verify.registry import Measurement, VerifyConfig, check_rng, normal, register


def _hessian_at_zero(depth: int, config: VerifyConfig, hessian=jax.hessian) -> np.ndarray:
    """The Hessian of φ at all-zero weights (dims 3 → 3 → ... → 2, ℓ2 loss), as a matrix."""
    rng = check_rng(config, 50)
    X, Y = normal(rng, (20, 3)), normal(rng, (20, 2))  # ∇ℓ(0) = −2 Yᵀ X / m ≠ 0
    phi = overparameterized(functools.partial(lp_loss, X=X, Y=Y, p=2.0))
    dims = (3,) + (3,) * (depth - 1) + (2,)
    zeros = tuple(jnp.zeros((dims[j + 1], dims[j]), jnp.float64) for j in range(depth))
    flat, unravel = jax.flatten_util.ravel_pytree(zeros)
    H = jax.jit(hessian(lambda v: phi(unravel(v))))(flat)
    return np.asarray(H)


@register(
    "strict-saddle-depth-2",
    section="§2",
    claim="At all-zero weights phi has a strict saddle for depth 2 (grad l(0) != 0): the Hessian from "
          "jax.hessian has a negative eigenvalue (lambda_min / ||H||)",
    threshold=-1e-3,
)
def check_strict_saddle(config: VerifyConfig, *, hessian=jax.hessian) -> Measurement:
    H = _hessian_at_zero(2, config, hessian)
    eigenvalues = np.linalg.eigvalsh((H + H.T) / 2)
    scale = float(np.linalg.norm(H))
    return Measurement(float(eigenvalues[0]) / scale, {"lambda_min": float(eigenvalues[0]),
                                                       "lambda_max": float(eigenvalues[-1]), "norm": scale})


@register(
    "non-strict-saddle-depth-3",
    section="§2",
    claim="For depth >= 3 the Hessian of phi vanishes at zero (a non-strict saddle): max |H| at depths 3 and 4",
    threshold=1e-12,
)
def check_non_strict_saddle(config: VerifyConfig, *, hessian=jax.hessian) -> Measurement:
    worst = max(float(np.max(np.abs(_hessian_at_zero(d, config, hessian)))) for d in (3, 4))
    return Measurement(worst, {"depths": [3, 4]})


@register(
    "near-zero-init-balance",
    section="§3",
    claim="Near-zero Gaussian init is only approximately balanced: delta shrinks like std^2 "
          "(|log-log slope - 2|, std 1e-1..1e-4, an independent draw per std); identity init is exactly balanced",
    threshold=0.1,
)
def check_near_zero_balance(config: VerifyConfig, *, init=init_gaussian) -> Measurement:
    stds = np.array([1e-1, 1e-2, 1e-3, 1e-4])
    keys = jax.random.split(jax.random.key(config.seed + 600), len(stds))
    deltas = np.array([float(balancedness(init(k, (8, 8, 8, 8), std=float(s), dtype=jnp.float64)))
                       for k, s in zip(keys, stds)])
    slope = float(np.polyfit(np.log(stds), np.log(deltas), 1)[0])
    identity_delta = float(balancedness(init_identity((5, 5, 5, 5), scale=1.7)))

    def plot(ax):
        ax.loglog(stds, deltas, "o-", label=f"Gaussian init (slope {slope:.3f})")
        ax.set_xlabel("init std")
        ax.set_ylabel("balancedness δ")
        ax.legend()

    return Measurement(max(abs(slope - 2.0), identity_delta),
                       {"slope": slope, "stds": stds.tolist(), "deltas": deltas.tolist(),
                        "identity_init_delta": identity_delta}, plot)
