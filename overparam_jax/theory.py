r"""Theorem conditions and bounds of ACGH19 (THEORY.md §5) as plain functions.

Setting: whitened :math:`\ell_2` with target :math:`\Phi`, depth ``N``, deficiency margin
``c`` (:func:`overparam_jax.deficiency_margin`). Constants marked *reconstructed* in
THEORY.md are implemented exactly as written there and checked numerically by
``overparam-jax verify``; a violation would be reported, never hidden.

* Theorem 1 (reconstructed constants): if the init is δ-balanced with
  :math:`\delta \le c^2 / (256 N^3 \|\Phi\|_F^{2(N-1)/N})` and
  :math:`\eta \le c^{(4N-2)/N} / (6144 N^3 \|\Phi\|_F^{(6N-4)/N})`, then
  :math:`\ell(t) \le \ell(0)\,(1 - \eta c^{2(N-1)/N})^t`.
* Descent lemma: :math:`\ell(t+1) \le \ell(t) - \tfrac{\eta}{2}\,
  \sigma_{\min}(W_e(t))^{2(N-1)/N} \|\nabla\ell(W_e(t))\|_F^2`.

References:
    [ACGH19] Arora, Cohen, Golowich, Hu. A Convergence Analysis of Gradient Descent for
    Deep Linear Neural Networks. ICLR 2019, Theorem 1 and Lemma 1.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

__all__ = [
    "Theorem1Conditions",
    "descent_lemma_bound",
    "iterations_to_reach",
    "theorem1_conditions",
    "theorem1_loss_bound",
    "wilson_interval",
]


class Theorem1Conditions(NamedTuple):
    r"""The largest δ and η Theorem 1 allows, and its guaranteed per-step contraction.

    Attributes:
        delta_max: :math:`c^2 / (256 N^3 \|\Phi\|_F^{2(N-1)/N})`.
        eta_max: :math:`c^{(4N-2)/N} / (6144 N^3 \|\Phi\|_F^{(6N-4)/N})`.
        rate_per_unit_eta: :math:`c^{2(N-1)/N}`; the loss contracts by
            :math:`1 - \eta\,c^{2(N-1)/N}` per step.
    """

    delta_max: float
    eta_max: float
    rate_per_unit_eta: float


def theorem1_conditions(margin: float, phi_norm: float, depth: int) -> Theorem1Conditions:
    r"""Theorem 1's bounds on δ and η for margin ``c``, :math:`\|\Phi\|_F` and depth ``N``.

    Examples:
        >>> cond = theorem1_conditions(0.5, 1.0, 1)
        >>> round(cond.delta_max, 6), cond.rate_per_unit_eta
        (0.000977, 1.0)
    """
    if not margin > 0:
        raise ValueError(f"`margin` must be positive (a deficiency margin c > 0), got {margin}.")
    if not phi_norm > 0:
        raise ValueError(f"`phi_norm` must be positive, got {phi_norm}.")
    if depth < 1:
        raise ValueError(f"`depth` must be >= 1, got {depth}.")
    N, c, f = depth, float(margin), float(phi_norm)
    return Theorem1Conditions(
        delta_max=c**2 / (256 * N**3 * f ** (2 * (N - 1) / N)),
        eta_max=c ** ((4 * N - 2) / N) / (6144 * N**3 * f ** ((6 * N - 4) / N)),
        rate_per_unit_eta=c ** (2 * (N - 1) / N),
    )


def theorem1_loss_bound(loss0: float, eta: float, margin: float, depth: int, steps) -> np.ndarray:
    r""":math:`\ell(0)\,(1 - \eta c^{2(N-1)/N})^t` at the given step counts ``t``."""
    rate = eta * margin ** (2 * (depth - 1) / depth)
    return loss0 * np.power(1.0 - rate, np.asarray(steps, dtype=float))


def iterations_to_reach(loss0: float, epsilon: float, eta: float, margin: float, depth: int) -> float:
    r"""Theorem 1's iteration count :math:`T = \ln(\ell(0)/\epsilon) / (\eta c^{2(N-1)/N})`."""
    return math.log(loss0 / epsilon) / (eta * margin ** (2 * (depth - 1) / depth))


def descent_lemma_bound(loss, sigma_min, grad_norm_sq, eta: float, depth: int) -> np.ndarray:
    r"""The descent lemma's bound on :math:`\ell(t+1)`:
    :math:`\ell(t) - \tfrac{\eta}{2}\sigma_{\min}^{2(N-1)/N}\|\nabla\ell\|_F^2` (elementwise)."""
    exponent = 2 * (depth - 1) / depth
    return np.asarray(loss) - 0.5 * eta * np.asarray(sigma_min) ** exponent * np.asarray(grad_norm_sq)


def wilson_interval(successes: int, trials: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """The Wilson score interval for a binomial proportion (95% by default)."""
    if trials <= 0:
        raise ValueError(f"`trials` must be positive, got {trials}.")
    p = successes / trials
    denom = 1 + z**2 / trials
    centre = (p + z**2 / (2 * trials)) / denom
    half = z * math.sqrt(p * (1 - p) / trials + z**2 / (4 * trials**2)) / denom
    return centre - half, centre + half
