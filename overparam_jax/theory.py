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
* Theorem 2 (single output, reconstructed constants): a balanced init whose end-to-end
  row :math:`w \sim N(0, s^2 I_{d_0})` with :math:`s \le \|\Phi\|_2/\sqrt{a d_0^2}`, GD at
  its η for its T(ε) iterations, reaches ε with probability at least
  :math:`(1 - 2e^{-d_0/16})(3 - 4F(2\sqrt{2/a}))/2` (:func:`theorem2_conditions`).
* The exact probability that such a ``w`` has a deficiency margin above ``c``
  (:func:`margin_probability_exact`), a one-dimensional integral.
* Closed-form gradient flow from an aligned balanced init on whitened :math:`\ell_2`
  (THEORY.md §4): every singular value follows
  :math:`\dot\sigma = -N\sigma^{2-2/N}(\sigma - \varphi)` — logistic at N = 2
  (:func:`logistic_sigma`), a quadrature otherwise (:func:`aligned_flow_time`,
  :func:`aligned_flow_sigma`).

References:
    [ACGH19] Arora, Cohen, Golowich, Hu. A Convergence Analysis of Gradient Descent for
    Deep Linear Neural Networks. ICLR 2019, Theorems 1 and 2, Lemma 1, Procedure 1.
    [ACH18] Arora, Cohen, Hazan. ICML 2018, Theorem 1 (the end-to-end dynamics).
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import numpy as np

from overparam_jax._validation import (
    require_finite_scalar,
    require_int,
    require_positive,
    require_real_values,
)

__all__ = [
    "Theorem1Conditions",
    "aligned_flow_sigma",
    "aligned_flow_time",
    "logistic_sigma",
    "Theorem2Conditions",
    "descent_lemma_bound",
    "iterations_to_reach",
    "margin_probability_exact",
    "theorem1_conditions",
    "theorem1_loss_bound",
    "theorem2_conditions",
    "theorem2_probability_bound",
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


class Theorem2Conditions(NamedTuple):
    r"""Theorem 2's conditions and guarantee at init scale ``s`` (reconstructed constants).

    Attributes:
        std_max: :math:`s_{\max} = \|\Phi\|_2 / \sqrt{a d_0^2}`, the largest init scale.
        margin: :math:`c_0 = s^2 d_0 / (2\|\Phi\|_2)`, the initial deficiency margin the proof
            works with (the event it shows to have probability at least ``probability``).
        eta_max: :math:`(s^2 d_0)^{4-2/N} / (10^5 N^3 \|\Phi\|_2^{10-6/N})` (Theorem 1 at
            margin :math:`c_0`; the proof bounds :math:`2^{4-2/N} \cdot 6144` by :math:`10^5`).
        horizon: :math:`\tau = \eta\,T(\epsilon) = 4[\ln 4\,(\|\Phi\|_2/(s^2 d_0))^{2-2/N}
            + \|\Phi\|_2^{2/N-2} \ln(\|\Phi\|_2^2/(8\epsilon))]`, the continuous time GD
            covers in :math:`T(\epsilon)` steps (the same for every η); the second logarithm is
            taken as 0 for :math:`\epsilon \ge \|\Phi\|_2^2/8`.
        num_steps: :math:`T(\epsilon) = \tau / \eta_{\max}`, iterations at ``eta_max``.
        probability: :func:`theorem2_probability_bound` of ``a`` and ``d_0``.
    """

    std_max: float
    margin: float
    eta_max: float
    horizon: float
    num_steps: float
    probability: float


def theorem2_probability_bound(a: float, d_0: int) -> float:
    r"""Theorem 2's probability bound (reconstructed): :math:`(1 - 2e^{-d_0/16})
    (3 - 4F(2\sqrt{2/a}))/2`, with :math:`F` the standard normal CDF.

    ACGH19 state that ``d_0 >= 100`` and ``a >= 100`` give more than 0.25.

    Examples:
        >>> round(theorem2_probability_bound(100.0, 100), 4)
        0.2762
    """
    require_positive("a", a)
    require_int("d_0", d_0, minimum=1)
    return (1 - 2 * math.exp(-d_0 / 16)) * (3 - 4 * _normal_cdf(2 * math.sqrt(2 / a))) / 2


def theorem2_conditions(
    std: float, phi_norm: float, d_0: int, depth: int, epsilon: float, *, a: float
) -> Theorem2Conditions:
    r"""Theorem 2's learning rate, horizon and probability for init scale ``std`` (ACGH19).

    Setting: :math:`d_N = 1`, whitened :math:`\ell_2` with target :math:`\Phi` of norm
    ``phi_norm``, a balanced init (Procedure 1) whose end-to-end row has i.i.d.
    :math:`N(0, s^2)` entries with :math:`s \le \|\Phi\|_2 / \sqrt{a d_0^2}`. Then with
    probability at least ``probability`` GD at any :math:`\eta \le` ``eta_max`` has
    :math:`\ell(T) \le \epsilon` for :math:`T \ge` ``horizon / eta``. The formulas for η and T
    are reconstructed from the proof (Theorem 1 applied at margin :math:`c_0`, then again once
    the margin reaches :math:`\|\Phi\|_2/2`); see :class:`Theorem2Conditions`.

    Args:
        std: the init scale ``s > 0``, at most ``std_max``.
        phi_norm: :math:`\|\Phi\|_2 > 0`.
        d_0: the input dimension.
        depth: ``N >= 1``.
        epsilon: the target loss ``> 0``.
        a: the theorem's constant ``a > 0``.

    Raises:
        ValueError: a non-positive argument, or ``std > std_max`` (the theorem does not apply).

    Examples:
        >>> cond = theorem2_conditions(1e-3, 1.0, 100, 2, 1e-6, a=100.0)
        >>> cond.std_max, f"{cond.eta_max:.3g}", round(cond.horizon)
        (0.001, '1.25e-18', 55499)
    """
    for name, value in (("std", std), ("phi_norm", phi_norm), ("epsilon", epsilon), ("a", a)):
        require_positive(name, value)
    require_int("d_0", d_0, minimum=1)
    require_int("depth", depth, minimum=1)
    N, s, f = depth, float(std), float(phi_norm)
    std_max = f / math.sqrt(a * d_0**2)
    if s > std_max * (1 + 1e-12):
        raise ValueError(f"`std` = {s} exceeds Theorem 2's std_max = ||Phi||_2/sqrt(a d_0^2) = {std_max}.")
    exponent = 2 - 2 / N
    eta_max = (s**2 * d_0) ** (4 - 2 / N) / (1e5 * N**3 * f ** (10 - 6 / N))
    # Phase 2 (margin ||Φ||/2 → loss ε) is only needed for ε < ||Φ||²/8, where the loss is ||Φ||²/8.
    second_phase = max(0.0, math.log(f**2 / (8 * epsilon)))
    horizon = 4 * (math.log(4) * (f / (s**2 * d_0)) ** exponent + f ** (-exponent) * second_phase)
    return Theorem2Conditions(
        std_max=std_max,
        margin=s**2 * d_0 / (2 * f),
        eta_max=eta_max,
        horizon=horizon,
        num_steps=horizon / eta_max,
        probability=theorem2_probability_bound(a, d_0),
    )


_QUADRATURE_NODES = 128
_CHI_WINDOW = 10.0  # the χ_k mass outside √k ± 10 is below 2 e^{-40} (Gaussian concentration)


def margin_probability_exact(std: float, d_0: int, phi_norm: float, *, margin: float = 0.0) -> float:
    r"""Exact :math:`P(\text{deficiency margin of } w > c)` for :math:`w \sim N(0, s^2 I_{d_0})`
    and a target row :math:`\Phi` of norm :math:`f` (:math:`d_N = 1`, ACGH19 Def. 2).

    This is the end-to-end row of ACGH19's balanced init (Procedure 1). The margin
    :math:`f - \|w - \Phi\|` exceeds ``c`` iff :math:`w` lies in the ball of radius
    :math:`\rho = f - c` around :math:`\Phi`. Split :math:`w` into
    :math:`z = w \cdot \Phi / f \sim N(0, s^2)` and :math:`R = \|w\|^2 - z^2 \sim s^2
    \chi^2_{d_0 - 1}`, independent; the event is :math:`R < \rho^2` and
    :math:`|z - f| < \sqrt{\rho^2 - R}`, so with :math:`y = \sqrt{R}/s \sim \chi_{d_0-1}`,
    :math:`u = f/s`, :math:`r(y) = \sqrt{(\rho/s)^2 - y^2}`,

    .. math:: P = \int_0^{\rho/s} p_{\chi_{d_0-1}}(y)\,
              \bigl[F(u + r(y)) - F(u - r(y))\bigr]\,dy,

    computed by Gauss-Legendre quadrature in :math:`y = (\rho/s)\sin\varphi` (smooth at
    :math:`r = 0`) over the :math:`\chi` density's window :math:`\sqrt{d_0-1} \pm 10`.
    For ``margin = 0`` and small ``s`` it is close to :math:`F(-s(d_0-1)/(2f))`, which tends
    to 1/2 as :math:`s \to 0`. NumPy and ``math`` only.

    Args:
        std: ``s > 0``.
        d_0: the dimension of ``w``, ``>= 1``.
        phi_norm: :math:`f = \|\Phi\|_2 > 0`.
        margin: ``c``; the probability is 0 for ``c >= f``.

    Examples:
        >>> round(margin_probability_exact(1e-3, 100, 1.0), 4)
        0.4803
    """
    require_positive("std", std)
    require_int("d_0", d_0, minimum=1)
    require_positive("phi_norm", phi_norm)
    require_finite_scalar("margin", margin)
    s, f, k = float(std), float(phi_norm), d_0 - 1
    rho = f - float(margin)
    if rho <= 0:
        return 0.0
    u, v = f / s, rho / s  # the centre and the radius in units of s
    if k == 0:  # R = 0: P(|z - f| < ρ)
        return _normal_interval(u - v, u + v).item()
    y_low, y_high = max(0.0, math.sqrt(k) - _CHI_WINDOW), min(v, math.sqrt(k) + _CHI_WINDOW)
    if y_low >= y_high:
        return 0.0
    nodes, weights = _gauss_legendre(_QUADRATURE_NODES)
    lo, hi = math.asin(y_low / v), math.asin(y_high / v)
    angle = lo + (hi - lo) * (nodes + 1) / 2
    y, r = v * np.sin(angle), v * np.cos(angle)  # dy = r dφ
    log_density = (k - 1) * np.log(y) - y**2 / 2 - (k / 2 - 1) * math.log(2) - math.lgamma(k / 2)
    near = (u - v) + y**2 / (v + r)  # u − r without cancellation
    integrand = np.exp(log_density) * _normal_interval(near, u + r) * r
    return float((hi - lo) / 2 * np.sum(weights * integrand))


@functools.lru_cache(maxsize=4)
def _gauss_legendre(n: int) -> tuple[np.ndarray, np.ndarray]:
    return np.polynomial.legendre.leggauss(n)


_erfc = np.vectorize(math.erfc, otypes=[float])


def _normal_cdf(x: float) -> float:
    return 0.5 * math.erfc(-x / math.sqrt(2))


def _normal_interval(low, high) -> np.ndarray:
    """:math:`F(high) - F(low)` elementwise for ``low <= high``, accurate in both tails."""
    low, high = np.asarray(low, float), np.asarray(high, float)
    upper = lambda x: 0.5 * _erfc(x / math.sqrt(2))  # 1 − F(x)
    lower = lambda x: 0.5 * _erfc(-x / math.sqrt(2))  # F(x)
    return np.where(low >= 0, upper(low) - upper(high), lower(high) - lower(low))


def _require_broadcast(*named: tuple[str, object]) -> dict[str, np.ndarray]:
    """The named values as finite real arrays; raise unless their shapes broadcast together."""
    arrays = {name: require_real_values(name, value) for name, value in named}
    try:
        np.broadcast_shapes(*(a.shape for a in arrays.values()))
    except ValueError:
        shapes = ", ".join(f"`{name}` {a.shape}" for name, a in arrays.items())
        raise ValueError(f"The shapes of {shapes} must broadcast together.") from None
    return arrays


# --------------------------------------------------------------------------------------
# Aligned balanced gradient flow: σ̇ = -N σ^{2-2/N} (σ - φ), by quadrature (NumPy only)
# --------------------------------------------------------------------------------------

_PANEL_WIDTH = 2.0  # in x = ln(s/φ); the integrand's poles are at x = 2πik, k ≠ 0
_NODES, _WEIGHTS = np.polynomial.legendre.leggauss(20)
_NEWTON_RTOL = 1e-13  # on σ; round-off in t(y) leaves iterates jittering by ~1e-14
_NEWTON_MAX_ITER = 200


def _excess_integrand(x: np.ndarray, a: np.ndarray) -> np.ndarray:
    r""":math:`h(x) = e^x (e^{-ax} - 1) / (1 - e^x)`, with :math:`h(0) = a`, to full relative
    precision through ``expm1`` (smooth, and positive for a > 0)."""
    at_zero = x == 0
    safe = np.where(at_zero, 1.0, x)
    return np.where(at_zero, a, np.exp(safe) * np.expm1(-a * safe) / -np.expm1(safe))


def _excess_integral(x0: np.ndarray, width: np.ndarray, a: np.ndarray) -> np.ndarray:
    r""":math:`\int_{x_0}^{x_0 + w} h(x)\,dx` by composite 20-point Gauss–Legendre, every
    interval cut into the same number of equal panels of width ≤ 2. The nearest poles of
    h are at distance 2π from the real axis, so each panel is exact to round-off."""
    panels = max(1, int(np.ceil(np.max(np.abs(width)) / _PANEL_WIDTH)))
    half = width / (2 * panels)
    mid = x0[..., None] + half[..., None] * (2 * np.arange(panels) + 1)
    x = mid[..., None] + half[..., None, None] * _NODES
    return half * np.sum(_WEIGHTS * _excess_integrand(x, a[..., None, None]), axis=(-2, -1))


def _time_of_gap(y, sigma0, phi, N):
    r"""``(t, σ)`` at the log-gap :math:`y = \ln((\sigma_0 - \varphi)/(\sigma - \varphi)) \ge 0`.

    With :math:`a = 2 - 2/N`, splitting off the endpoint singularity at :math:`s = \varphi`
    (:math:`1/(s^a(\varphi - s)) = \varphi^{-a}/(\varphi - s) + (s^{-a} - \varphi^{-a})/(\varphi - s)`)
    and substituting :math:`s = \varphi e^x` in the smooth remainder,

    .. math:: t = \frac{\varphi^{-a}}{N}\Bigl(y + \int_{\ln(\sigma_0/\varphi)}^{\ln(\sigma/\varphi)} h(x)\,dx\Bigr).

    The interval's width :math:`\ln(\sigma/\sigma_0)` is formed from
    :math:`\sigma - \sigma_0 = -(\varphi - \sigma_0)\,\mathrm{expm1}(-y)`, not as a difference
    of logarithms (which loses digits when σ is near σ0).
    """
    a = 2.0 - 2.0 / N
    moved = -(phi - sigma0) * np.expm1(-y)  # σ - σ0
    width = np.log1p(moved / sigma0)
    return phi ** (-a) / N * (y + _excess_integral(np.log(sigma0 / phi), width, a)), sigma0 + moved


def _as_arrays(**named) -> list[np.ndarray]:
    """The named arguments as finite real float64 arrays, broadcast together."""
    arrays = _require_broadcast(*named.items())
    return np.broadcast_arrays(*(a.astype(np.float64) for a in arrays.values()))


def _validate_reference(sigma0, phi, N, *, distinct: bool = True) -> None:
    for name, value in (("sigma0", sigma0), ("phi", phi), ("depth", N)):
        if not np.all(value > 0):
            raise ValueError(f"`{name}` must be positive, but has minimum {np.min(value)}.")
    if distinct and np.any(sigma0 == phi):
        raise ValueError("`sigma0` must differ from `phi` (σ stays at φ: nothing to solve).")


def aligned_flow_time(sigma, sigma0, phi, depth) -> np.ndarray:
    r"""The time at which :math:`\dot\sigma = -N\sigma^{2-2/N}(\sigma - \varphi)` from
    :math:`\sigma_0` reaches :math:`\sigma` (NumPy only; arguments broadcast).

    .. math:: t(\sigma) = \int_{\sigma_0}^{\sigma} \frac{ds}{N\,s^{2-2/N}\,(\varphi - s)}

    Evaluated by splitting off the logarithmic endpoint singularity at :math:`s = \varphi`
    in closed form and integrating the smooth remainder in :math:`x = \ln(s/\varphi)` by
    composite Gauss–Legendre (see :func:`_time_of_gap`): relative accuracy ~1e-15 for
    :math:`\sigma_0 < \varphi` and ~1e-13 from above (:math:`\sigma_0 = 30\varphi`, where
    the two terms partly cancel), for any real depth N > 0.

    Args:
        sigma: target values, strictly between ``sigma0`` (inclusive) and ``phi``.
        sigma0: the initial value, ``> 0`` and ``!= phi``.
        phi: the target singular value ``> 0``.
        depth: N > 0.

    Raises:
        ValueError: a ``sigma`` outside ``[sigma0, phi)`` (or ``(phi, sigma0]``), or
            non-positive arguments.

    Examples:
        >>> t = aligned_flow_time(0.5, 0.01, 1.0, 2.0)  # logistic: ln((φ - σ0)/σ0) / (2φ)
        >>> bool(abs(t - np.log(99) / 2) < 1e-14)
        True
    """
    sigma, sigma0, phi, N = _as_arrays(sigma=sigma, sigma0=sigma0, phi=phi, depth=depth)
    _validate_reference(sigma0, phi, N)
    fraction = (sigma - sigma0) / (phi - sigma0)  # in [0, 1); round-off below 0 is forgiven
    if not np.all((fraction >= -8 * np.finfo(np.float64).eps) & (fraction < 1)):
        raise ValueError("`sigma` must lie between `sigma0` (inclusive) and `phi` (exclusive).")
    y = np.log1p(np.maximum((sigma - sigma0) / (phi - sigma), 0.0))  # differences exact near 0
    return _time_of_gap(y, sigma0, phi, N)[0]


def aligned_flow_sigma(t, sigma0, phi, depth) -> np.ndarray:
    r""":math:`\sigma(t)` solving :math:`\dot\sigma = -N\sigma^{2-2/N}(\sigma - \varphi)`,
    :math:`\sigma(0) = \sigma_0` (NumPy only; arguments broadcast).

    Inverts :func:`aligned_flow_time` by Newton's method on the log-gap
    :math:`y = \ln((\sigma_0 - \varphi)/(\sigma - \varphi))`, where
    :math:`dt/dy = 1/(N\sigma^{2-2/N})` is explicit and :math:`t(y)` is concave (for
    :math:`\sigma_0 < \varphi`) or convex (for :math:`\sigma_0 > \varphi`): from
    :math:`y = 0` the iterates converge monotonically (after one step, in the convex
    case). Iterates stop when the update moves σ by at most 1e-13 relative.

    Args:
        t: times ``>= 0``.
        sigma0: the initial value, ``> 0`` and ``!= phi``.
        phi: the target singular value ``> 0``.
        depth: N > 0 (any real; N = 2 is the logistic curve, N = 1 the exponential).

    Raises:
        ValueError: negative times or non-positive arguments.
        RuntimeError: no convergence (not observed).

    Examples:
        >>> s = aligned_flow_sigma(1.0, 0.01, 1.0, 2.0)
        >>> bool(abs(s - logistic_sigma(1.0, 0.01, 1.0)) < 1e-14)
        True
    """
    t, sigma0, phi, N = _as_arrays(t=t, sigma0=sigma0, phi=phi, depth=depth)
    _validate_reference(sigma0, phi, N)
    if np.any(t < 0):
        raise ValueError("`t` must be >= 0.")
    a = 2.0 - 2.0 / N
    y = np.zeros_like(t)
    for _ in range(_NEWTON_MAX_ITER):
        tau, sigma = _time_of_gap(y, sigma0, phi, N)
        step = (t - tau) * N * sigma**a
        y = y + step
        if np.all(np.abs((phi - sigma) * step) <= _NEWTON_RTOL * sigma):
            return sigma0 - (phi - sigma0) * np.expm1(-y)
    raise RuntimeError("aligned_flow_sigma: Newton's method did not converge.")


def logistic_sigma(t, sigma0, phi) -> np.ndarray:
    r"""The depth-2 closed form :math:`\sigma(t) = \varphi / (1 + (\varphi/\sigma_0 - 1)e^{-2\varphi t})`
    of :math:`\dot\sigma = -2\sigma(\sigma - \varphi)` (positive ``sigma0`` and ``phi``,
    times ``t >= 0``; arguments broadcast).

    Examples:
        >>> float(logistic_sigma(0.0, 0.25, 1.0)), float(logistic_sigma(50.0, 0.25, 1.0))
        (0.25, 1.0)
    """
    t, sigma0, phi = _as_arrays(t=t, sigma0=sigma0, phi=phi)
    _validate_reference(sigma0, phi, 2.0, distinct=False)
    if np.any(t < 0):
        raise ValueError("`t` must be >= 0.")
    return phi / (1.0 + (phi / sigma0 - 1.0) * np.exp(-2.0 * phi * t))
