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

from overparam_jax._validation import require_int, require_positive, require_real_values

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
    require_positive("margin", margin)  # a deficiency margin c > 0
    require_positive("phi_norm", phi_norm)
    require_int("depth", depth, minimum=1)
    N, c, f = depth, float(margin), float(phi_norm)
    return Theorem1Conditions(
        delta_max=c**2 / (256 * N**3 * f ** (2 * (N - 1) / N)),
        eta_max=c ** ((4 * N - 2) / N) / (6144 * N**3 * f ** ((6 * N - 4) / N)),
        rate_per_unit_eta=c ** (2 * (N - 1) / N),
    )


def theorem1_loss_bound(loss0: float, eta: float, margin: float, depth: int, steps) -> np.ndarray:
    r""":math:`\ell(0)\,(1 - \eta c^{2(N-1)/N})^t` at the given step counts ``t``.

    ``loss0`` and ``steps`` may be arrays (broadcast together); ``eta >= 0``, ``margin > 0``
    and the integer ``depth >= 1`` are scalars.
    """
    _require_broadcast(("loss0", loss0), ("steps", steps))
    require_positive("eta", eta, allow_zero=True)
    require_positive("margin", margin)
    require_int("depth", depth, minimum=1)
    rate = eta * margin ** (2 * (depth - 1) / depth)
    return loss0 * np.power(1.0 - rate, np.asarray(steps, dtype=float))


def iterations_to_reach(loss0: float, epsilon: float, eta: float, margin: float, depth: int) -> float:
    r"""Theorem 1's iteration count :math:`T = \ln(\ell(0)/\epsilon) / (\eta c^{2(N-1)/N})`,
    for positive ``loss0``, ``epsilon``, ``eta``, ``margin`` and an integer ``depth >= 1``."""
    for name, value in (("loss0", loss0), ("epsilon", epsilon), ("eta", eta), ("margin", margin)):
        require_positive(name, value)
    require_int("depth", depth, minimum=1)
    return math.log(loss0 / epsilon) / (eta * margin ** (2 * (depth - 1) / depth))


def descent_lemma_bound(loss, sigma_min, grad_norm_sq, eta: float, depth: int) -> np.ndarray:
    r"""The descent lemma's bound on :math:`\ell(t+1)`:
    :math:`\ell(t) - \tfrac{\eta}{2}\sigma_{\min}^{2(N-1)/N}\|\nabla\ell\|_F^2` (elementwise).

    ``loss``, ``sigma_min >= 0`` and ``grad_norm_sq`` broadcast together; ``eta >= 0`` and
    the integer ``depth >= 1`` are scalars.
    """
    arrays = _require_broadcast(("loss", loss), ("sigma_min", sigma_min), ("grad_norm_sq", grad_norm_sq))
    if np.any(arrays["sigma_min"] < 0):
        raise ValueError(f"`sigma_min` must be >= 0 (singular values), but has min {np.min(sigma_min)}.")
    require_positive("eta", eta, allow_zero=True)
    require_int("depth", depth, minimum=1)
    exponent = 2 * (depth - 1) / depth
    return np.asarray(loss) - 0.5 * eta * np.asarray(sigma_min) ** exponent * np.asarray(grad_norm_sq)


def wilson_interval(successes: int, trials: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """The Wilson score interval for a binomial proportion (95% by default):
    ``0 <= successes <= trials`` integers, ``trials >= 1``, ``z > 0``."""
    require_int("trials", trials)
    if trials <= 0:
        raise ValueError(f"`trials` must be positive, got {trials}.")
    require_int("successes", successes, minimum=0)
    if successes > trials:
        raise ValueError(f"`successes` must be <= `trials` ({trials}), got {successes}.")
    require_positive("z", z)
    p = successes / trials
    denom = 1 + z**2 / trials
    centre = (p + z**2 / (2 * trials)) / denom
    half = z * math.sqrt(p * (1 - p) / trials + z**2 / (4 * trials**2)) / denom
    return centre - half, centre + half


def _require_broadcast(*named: tuple[str, object]) -> dict[str, np.ndarray]:
    """The named values as finite real arrays; raise unless their shapes broadcast together."""
    arrays = {name: require_real_values(name, value) for name, value in named}
    try:
        np.broadcast_shapes(*(a.shape for a in arrays.values()))
    except ValueError:
        shapes = ", ".join(f"`{name}` {a.shape}" for name, a in arrays.items())
        raise ValueError(f"The shapes of {shapes} must broadcast together.") from None
    return arrays
