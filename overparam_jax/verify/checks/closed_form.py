r"""Closed-form trajectories at depth > 1, and the singular-value dynamics (THEORY.md §4, §6, §7).

**Aligned balanced init on whitened ℓ2.** With :math:`\ell(W) = \tfrac12\|W - \Phi\|_F^2`,
:math:`\Phi = U\,\mathrm{diag}(\varphi_r)\,V^\top` and an end-to-end init with the same
singular vectors, :math:`W_e(0) = U\,\mathrm{diag}(\sigma_r(0))\,V^\top`, factorized into
balanced layers (ACGH19 Procedure 1), the gradient :math:`\nabla\ell = W_e - \Phi` lies in
:math:`\mathrm{span}\{u_r v_r^\top\}`, on which :math:`P_{W_e}` acts by
:math:`\Lambda_{rr} = N\sigma_r^{2(N-1)/N}` (THEORY.md §4). So gradient flow keeps
:math:`U, V` fixed and moves every singular value by the scalar ODE

.. math:: \dot\sigma = -N\,\sigma^{2-2/N}\,(\sigma - \varphi).

For N = 2 it is logistic, :math:`\sigma(t) = \varphi / (1 + (\varphi/\sigma_0 - 1)e^{-2\varphi t})`;
for other N it is solved by the quadrature
:math:`t(\sigma) = \int_{\sigma_0}^{\sigma} ds \,/\, (N s^{2-2/N}(\varphi - s))`, inverted
for :math:`\sigma(t)` (:func:`overparam_jax.theory.aligned_flow_time`, ``aligned_flow_sigma``: NumPy only,
the independent side of the checks below). From a small init
:math:`\sigma_r(0) = s`, the modes are learned one at a time ("incremental learning"):
mode r jumps to :math:`\varphi_r` near :math:`t \approx s^{-(N-2)/N}/((N-2)\varphi_r)` for
N ≥ 3 and :math:`\ln(\varphi_r/s)/(2\varphi_r)` for N = 2.

**Singular-value dynamics** [ACHL19, Thm 3]. Along the end-to-end dynamics of a balanced
network (any loss), :math:`\dot\sigma_r = -N(\sigma_r^2)^{1-1/N}\langle\nabla\ell(W_e),
u_r v_r^\top\rangle`.

Checks:

* ``aligned-flow-closed-form`` — RK4 on the network vs the closed form, and U, V fixed.
* ``aligned-integrator-order`` — Euler and RK4 orders against the closed form at depth ≥ 2.
* ``aligned-gd-tracks-flow`` — GD after t steps vs the closed form at time ηt: O(η).
* ``incremental-learning`` — the jump times of the network's modes vs the quadrature.
* ``singular-value-dynamics`` — [ACHL19, Thm 3] against ``jax.jvp`` through the SVD.

References:
    [ACH18] Arora, Cohen, Hazan. On the Optimization of Deep Networks: Implicit
    Acceleration by Overparameterization. ICML 2018. Theorem 1.
    [ACGH19] Arora, Cohen, Golowich, Hu. A Convergence Analysis of Gradient Descent for
    Deep Linear Neural Networks. ICLR 2019. Procedure 1.
    [ACHL19] Arora, Cohen, Hu, Luo. Implicit Regularization in Deep Matrix
    Factorization. NeurIPS 2019. Theorem 3.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from overparam_jax.dynamics import gradient_descent, gradient_flow
from overparam_jax.losses import lp_loss, whitened_l2_loss
from overparam_jax.networks import balanced_factorization, end_to_end
from overparam_jax.preconditioner import end_to_end_field, end_to_end_velocity
from overparam_jax.theory import aligned_flow_sigma, aligned_flow_time, logistic_sigma
from overparam_jax.verify.mutants import relabelled_flow
from overparam_jax.verify.registry import (
    Measurement,
    VerifyConfig,
    check_rng,
    mutant,
    normal,
    register,
)


def _reference_sigma(t, sigma0, phi, depth: int) -> np.ndarray:
    """The logistic form at N = 2, the quadrature otherwise."""
    return logistic_sigma(t, sigma0, phi) if depth == 2 else aligned_flow_sigma(t, sigma0, phi, depth)


def _mode_rate(sigma, phi, depth):
    r""":math:`|f'(\sigma)|` for :math:`f(\sigma) = -N\sigma^a(\sigma - \varphi)`, a = 2 - 2/N:
    the local rate of the mode ODE (:math:`N\varphi^a` at the fixed point)."""
    a = 2.0 - 2.0 / depth
    return np.abs(depth * ((a + 1) * sigma**a - a * phi * sigma ** (a - 1)))


# --------------------------------------------------------------------------------------
# The aligned problem, shared by the trajectory checks (and by their compiled programs)
# --------------------------------------------------------------------------------------

_PHI = np.array([1.0, 0.5, 0.25])  # the target's singular values φ_r
_SIGMA0 = np.array([0.01, 0.8, 0.005])  # two modes grow 100x and 50x, one decays onto φ
_DT = 0.02  # the finest step of every run (flows and GD); others are multiples
_STEP_FACTORS = (1, 2, 4, 8)  # dt (or eta) = factor * _DT, the same number of steps
_COMPARE_EVERY = 5  # aligned-flow-closed-form compares every 5th step (0.1 time units)
_COMMON_STRIDE = 40  # order checks compare every 40 finest steps (0.8): on a step of every factor


class _Setting(NamedTuple):
    """Per depth: ``dims``, the horizon ``T`` (every mode of both inits converged) and
    the small init ``s`` of the incremental-learning check."""

    dims: tuple[int, ...]
    horizon: float
    small_init: float


# square; d_N < d_0 with hidden widths above min(d_0, d_N); d_N > d_0.
_SETTINGS = {
    2: _Setting((3, 3, 3), 30.0, 1e-6),
    3: _Setting((5, 6, 4, 3), 100.0, 1e-4),
    4: _Setting((3, 4, 4, 4, 4), 70.0, 1e-3),
    5: _Setting((4, 5, 5, 5, 5, 3), 60.0, 1e-2),
}


class _Aligned(NamedTuple):
    """Whitened ℓ2 with target Φ = U[:, :k] diag(φ) V[:, :k]^T (U, V square orthogonal)."""

    depth: int
    setting: _Setting
    U: np.ndarray
    V: np.ndarray
    loss: Callable[[jax.Array], jax.Array]


def _orthogonal(rng: np.random.Generator, d: int) -> np.ndarray:
    Q, R = np.linalg.qr(rng.standard_normal((d, d)))
    return Q * np.sign(np.diag(R))


@functools.cache
def _aligned_problem(config: VerifyConfig, depth: int) -> _Aligned:
    """Cached, so that every check (and mutant) reuses one loss object per depth, and the
    library's programs compiled for it (they are keyed by the loss function)."""
    setting = _SETTINGS[depth]
    rng = check_rng(config, 700 + depth)
    U, V = _orthogonal(rng, setting.dims[-1]), _orthogonal(rng, setting.dims[0])
    k = _PHI.size
    Phi = jnp.asarray((U[:, :k] * _PHI) @ V[:, :k].T, jnp.float64)
    return _Aligned(depth, setting, U, V, functools.partial(whitened_l2_loss, Phi=Phi))


def _depths(config: VerifyConfig, default: tuple[int, ...]) -> tuple[int, ...]:
    """``default``, or every depth of :data:`_SETTINGS` with ``--full``."""
    return tuple(_SETTINGS) if config.full else default


@functools.cache
def _compiled_factorization(factorize: Callable) -> Callable:
    """``factorize`` jitted (dims static): eager SVDs compile op by op, far slower."""
    return jax.jit(factorize, static_argnums=1)


class _Run(NamedTuple):
    """``times`` (R,) as requested (step * dt); ``sigma`` (R, k) = diag(U^T W_e V);
    ``leak`` (R,) the rest of U^T W_e V, relative to ||W_e||_F."""

    times: np.ndarray
    sigma: np.ndarray
    leak: np.ndarray


def _modes(problem: _Aligned, W_e: jax.Array) -> tuple[np.ndarray, np.ndarray]:
    M = np.einsum("ia,tij,jb->tab", problem.U, np.asarray(W_e), problem.V)
    k = _PHI.size
    sigma = np.diagonal(M, axis1=1, axis2=2)[:, :k].copy()
    off = M.copy()
    off[:, np.arange(k), np.arange(k)] = 0.0
    return sigma, np.linalg.norm(off, axis=(1, 2)) / np.linalg.norm(M, axis=(1, 2))


def _initial_params(problem: _Aligned, sigma0: np.ndarray, factorize: Callable):
    k = _PHI.size
    W0 = jnp.asarray((problem.U[:, :k] * sigma0) @ problem.V[:, :k].T, jnp.float64)
    return _compiled_factorization(factorize)(W0, problem.setting.dims)


def _num_steps(problem: _Aligned) -> int:
    return round(problem.setting.horizon / _DT)


def _flow_run(problem, sigma0, *, flow, factorize, method="rk4", factor=1) -> _Run:
    """``flow`` for ``T / _DT`` steps of ``dt = factor * _DT``, recording every step (every
    factor runs the same compiled program: dt is traced, the step count static)."""
    dt = factor * _DT
    traj = flow(problem.loss, _initial_params(problem, sigma0, factorize),
                t_final=_num_steps(problem) * dt, dt=dt, method=method, record_end_to_end=True)
    return _Run(dt * np.arange(traj.end_to_end.shape[0]), *_modes(problem, traj.end_to_end))


def _descent_run(problem, sigma0, *, descend, factorize, factor=1) -> _Run:
    """``descend`` for ``T / _DT`` steps at ``eta = factor * _DT``; step k is at time ``eta k``."""
    eta = factor * _DT
    traj = descend(problem.loss, _initial_params(problem, sigma0, factorize),
                   learning_rate=eta, num_steps=_num_steps(problem), record_end_to_end=True)
    return _Run(eta * np.arange(traj.end_to_end.shape[0]), *_modes(problem, traj.end_to_end))


def _every(run: _Run, stride: int, horizon: float) -> _Run:
    """Every ``stride``-th record of ``run`` with 0 < t <= ``horizon``."""
    keep = np.arange(stride, len(run.times), stride)
    keep = keep[run.times[keep] <= horizon * (1 + 1e-12)]
    return _Run(run.times[keep], run.sigma[keep], run.leak[keep])


def _relative_error(run: _Run, reference: np.ndarray) -> np.ndarray:
    """(R, k) |σ_network - σ_closed form| / σ_closed form (NaN/inf if the run broke down)."""
    if run.sigma.shape != reference.shape:
        return np.full(reference.shape, np.inf)
    return np.abs(run.sigma - reference) / reference


def _order_errors(problem: _Aligned, run_at: Callable[..., _Run]) -> list[float]:
    """Max relative σ error of ``run_at(factor=f)`` for each step factor f, at
    t = 0.8, 1.6, ... <= T (records of every factor), against the closed form evaluated once."""
    horizon = problem.setting.horizon
    runs = [_every(run_at(factor=f), _COMMON_STRIDE // f, horizon) for f in _STEP_FACTORS]
    spacing = _COMMON_STRIDE * _DT
    times = spacing * np.arange(1, int(horizon / spacing * (1 + 1e-12)) + 1)
    reference = _reference_sigma(times[:, None], _SIGMA0, _PHI, problem.depth)
    return [float(np.max(_relative_error(run, reference))) for run in runs]


def _step_ticks(ax, steps) -> None:
    """Label the log x axis at the steps themselves."""
    ax.set_xticks(steps, [f"{h:g}" for h in steps])
    ax.minorticks_off()


def _slope(xs, ys) -> float:
    """Least-squares slope of log(ys) against log(xs)."""
    return float(np.polyfit(np.log(np.asarray(xs, float)), np.log(np.asarray(ys, float)), 1)[0])


# --------------------------------------------------------------------------------------
# Wrong implementations (the mutants); each reuses the programs compiled for the library
# --------------------------------------------------------------------------------------


def _scale_in_first_layer(A: jax.Array, dims) -> tuple[jax.Array, ...]:
    """Exact product, unbalanced: W_1 = Σ V^T, then identities, W_N = U (zero-padded)."""
    N = len(dims) - 1
    if N == 1:
        return (A,)
    r = min(dims[0], dims[-1])
    U, sigma, Vt = jnp.linalg.svd(A, full_matrices=False)
    pad = lambda M, shape: jnp.zeros(shape, A.dtype).at[: M.shape[0], : M.shape[1]].set(M)
    eye = jnp.eye(r, dtype=A.dtype)
    middle = [pad(eye, (dims[j], dims[j - 1])) for j in range(2, N)]
    return (pad(sigma[:, None] * Vt, (dims[1], dims[0])), *middle, pad(U, (dims[-1], dims[-2])))


def _layerwise_scale(A: jax.Array, dims) -> tuple[jax.Array, ...]:
    """Every layer carries Σ instead of Σ^{1/N} (the init scale read as per-layer):
    balanced, but the product has singular values σ^N."""
    N = len(dims) - 1
    U, sigma, Vt = jnp.linalg.svd(A, full_matrices=False)
    return balanced_factorization((U * sigma[None, :] ** N) @ Vt, dims)


def _twice_as_fast(flow: Callable) -> Callable:
    """A flow that steps 2 dt while recording dt: it integrates dθ/dt = -2∇φ."""

    @functools.wraps(flow)
    def wrong(loss_fn, params, *, t_final, dt, **kwargs):
        return flow(loss_fn, params, t_final=2 * t_final, dt=2 * dt, **kwargs)

    return wrong


def _doubled_learning_rate(descend: Callable) -> Callable:
    """GD that steps 2 eta when asked for eta."""

    @functools.wraps(descend)
    def wrong(loss_fn, params, *, learning_rate, **kwargs):
        return descend(loss_fn, params, learning_rate=2 * learning_rate, **kwargs)

    return wrong


_EULER_AS_RK4 = mutant("euler-sold-as-rk4", "gradient flow that runs Euler when asked for RK4",
                       flow=relabelled_flow("euler"))
_UNBALANCED = mutant("unbalanced-init", "exact product, but Sigma V^T in W_1 and identities/U "
                     "after it (unbalanced)", factorize=_scale_in_first_layer)


# --------------------------------------------------------------------------------------
# The checks
# --------------------------------------------------------------------------------------

# RK4's local error on y' = μy is (μ dt)^5/120 relative per step. The network integrates
# the layers' singular values s = σ^{1/N}, whose rates are μ = λ/N (λ: the rate of σ), so a
# mode growing through E e-folds of σ (E/N of s) ends with a relative σ error of about
# N (E/N) (λ dt/N)^4/120 = E/N^4 (λ dt)^4/120, and convergence damps it afterwards. Hence
# the bound (λ dt)^4/120 while E <= N^4: here E <= 4.6 (measured: 0.05-0.1 of the bound);
# in incremental-learning E = 13.8 at depth 2 (measured: 0.6 of it).
_RK4_ERROR_COEFFICIENT = 1.0 / 120.0
_LEAK_TOLERANCE = 1e-12  # U^T W_e V stays diagonal to float64 round-off (~1e-15 measured)


def _rk4_bound(sigma: np.ndarray, depth: int, dt: float) -> float:
    """:data:`_RK4_ERROR_COEFFICIENT` (λ dt)^4, λ the fastest mode rate |f'(σ)| over the
    closed-form values ``sigma`` (init included)."""
    return _RK4_ERROR_COEFFICIENT * (float(np.max(_mode_rate(sigma, _PHI, depth))) * dt) ** 4


@register(
    "aligned-flow-closed-form",
    section="§4, §6",
    claim="From an aligned balanced init on whitened l2, RK4 gradient flow on the network keeps U, V "
    "fixed and moves each singular value by sigma' = -N sigma^(2-2/N)(sigma - phi) (logistic at N = 2, "
    "NumPy quadrature at N = 3, 4): max over depths of max(rel. sigma error / (lambda dt)^4/120, "
    "off-diagonal of U^T W_e V / 1e-12)",
    regime="depths 2 (3x3), 3 (3x5, hidden 6, 4), 4 (4x3, hidden 4) [--full: 5]; phi = (1, 0.5, 0.25), "
    "sigma(0) = (0.01, 0.8, 0.005): two modes grow 100x and 50x, one decays from above; dt = 0.02 "
    "to T = 30/100/70, compared every 0.1 time units; lambda = max |d sigma'/d sigma| along the "
    "closed form",
    threshold=1.0,
    mutants=[
        _EULER_AS_RK4,
        _UNBALANCED,
        mutant("flow-twice-as-fast", "a flow that steps 2 dt while recording dt (integrates -2 grad phi)",
               flow=_twice_as_fast(gradient_flow)),
    ],
)
def check_aligned_flow(
    config: VerifyConfig, *, flow=gradient_flow, factorize=balanced_factorization
) -> Measurement:
    r"""RK4 on the layers vs :math:`\dot\sigma_r = -N\sigma_r^{2-2/N}(\sigma_r - \varphi_r)`, U, V fixed.

    The end-to-end dynamics [ACH18, Thm 1] restricted to an aligned init. Measured: max over
    depths of max(max relative σ error / :func:`_rk4_bound`, max off-diagonal leakage of
    :math:`U^\top W_e V` / :data:`_LEAK_TOLERANCE`).
    """
    details, curves, ratios = {}, {}, []
    for depth in _depths(config, (2, 3, 4)):
        problem = _aligned_problem(config, depth)
        full = _flow_run(problem, _SIGMA0, flow=flow, factorize=factorize)
        run = _every(full, _COMPARE_EVERY, problem.setting.horizon)
        reference = _reference_sigma(run.times[:, None], _SIGMA0, _PHI, depth)
        errors = _relative_error(run, reference)
        bound = _rk4_bound(np.vstack([_SIGMA0, reference]), depth, _DT)
        error, leak = float(np.max(errors)), float(np.max(run.leak))
        ratios.append(max(error / bound, leak / _LEAK_TOLERANCE))
        details[f"depth {depth}"] = {"max_rel_sigma_error": error, "rk4_bound": bound, "max_leak": leak,
                                     "sigma_0": full.sigma[0].tolist(), "sigma_T": full.sigma[-1].tolist()}
        curves[depth] = (run.times, np.max(errors, axis=1), bound)

    def plot(ax):
        for (depth, (t, err, bound)), color in zip(curves.items(), ("C0", "C1", "C2", "C3")):
            ax.semilogy(t, np.maximum(err, 1e-17), color=color, label=f"N = {depth}")
            ax.axhline(bound, color=color, ls="--", lw=0.8)
        ax.set_xlabel("time t")
        ax.set_ylabel("max_r |σ_r(net) − σ_r(closed form)| / σ_r")
        ax.legend(title="dashed: (λ dt)^4 / 120")

    return Measurement(max(ratios), details, plot)


@register(
    "aligned-integrator-order",
    section="§6",
    claim="Against the closed form at depth >= 2, Euler on the network is order 1 and RK4 order 4: "
    "max |log-log slope of the max rel. sigma error vs dt - order| <= 0.3",
    regime="the aligned problem of aligned-flow-closed-form at depths 2 and 3 [--full: 2-5]; "
    "dt = 0.02 x (1, 2, 4, 8) over the same number of steps, errors at t = 0.8, 1.6, ... <= T "
    "(RK4 errors 3e-9 .. 1e-4, Euler 2e-2 .. 0.2)",
    threshold=0.3,
    mutants=[
        _EULER_AS_RK4,
        mutant("rk4-sold-as-euler", "gradient flow that runs RK4 when asked for Euler",
               flow=relabelled_flow("rk4")),
        _UNBALANCED,
    ],
)
def check_aligned_order(
    config: VerifyConfig, *, flow=gradient_flow, factorize=balanced_factorization
) -> Measurement:
    r"""Euler (order 1) and RK4 (order 4) on the layers vs the closed form of
    :math:`\dot\sigma_r = -N\sigma_r^{2-2/N}(\sigma_r - \varphi_r)` (THEORY.md §6).

    Measured: max over depths and methods of |log-log slope of error vs dt - order|.
    """
    dts = [f * _DT for f in _STEP_FACTORS]
    slopes, series = {}, {}
    for depth in _depths(config, (2, 3)):
        problem = _aligned_problem(config, depth)
        for method, order in (("euler", 1.0), ("rk4", 4.0)):
            run_at = functools.partial(_flow_run, problem, _SIGMA0, flow=flow, factorize=factorize,
                                       method=method)
            errors = _order_errors(problem, run_at)
            key = f"{method} N={depth}"
            series[key], slopes[key] = errors, (_slope(dts, errors), order)

    def plot(ax):
        for key, errors in series.items():
            ax.loglog(dts, errors, "o-", label=f"{key}: slope {slopes[key][0]:.2f}")
        _step_ticks(ax, dts)
        ax.set_xlabel("dt")
        ax.set_ylabel("max rel. σ error vs closed form")
        ax.legend(fontsize=8)

    deviation = max(abs(s - order) for s, order in slopes.values())
    return Measurement(deviation, {"dts": dts, "errors": series,
                                   "slopes": {k: s for k, (s, _) in slopes.items()}}, plot)


@register(
    "aligned-gd-tracks-flow",
    section="§6",
    claim="GD on the network after t steps is within O(eta) of the closed-form flow at time eta t: "
    "max over depths |log-log slope of the max rel. sigma error vs eta - 1| <= 0.2",
    regime="the aligned problem of aligned-flow-closed-form at depths 2, 3, 4 [--full: 2-5]; "
    "eta = 0.02 x (1, 2, 4, 8) over the same number of steps, errors at t = 0.8, 1.6, ... <= T "
    "(relative errors 2e-2 .. 0.2, through the 100x growth of two modes)",
    threshold=0.2,
    mutants=[
        mutant("gd-at-2-eta", "GD that steps 2 eta when asked for eta",
               descend=_doubled_learning_rate(gradient_descent)),
        _UNBALANCED,
    ],
)
def check_aligned_gd(
    config: VerifyConfig, *, descend=gradient_descent, factorize=balanced_factorization
) -> Measurement:
    r"""GD with step η after t steps vs the closed-form flow at time ηt (THEORY.md §6):
    :math:`\max_t |\sigma_r^{GD}(t) - \sigma_r(\eta t)| / \sigma_r(\eta t) = O(\eta)`.

    Measured: max over depths of |log-log slope of that error vs η - 1|.
    """
    etas = [f * _DT for f in _STEP_FACTORS]
    slopes, series = {}, {}
    for depth in _depths(config, (2, 3, 4)):
        problem = _aligned_problem(config, depth)
        run_at = functools.partial(_descent_run, problem, _SIGMA0, descend=descend, factorize=factorize)
        errors = _order_errors(problem, run_at)
        series[depth], slopes[depth] = errors, _slope(etas, errors)

    def plot(ax):
        for depth, errors in series.items():
            ax.loglog(etas, errors, "o-", label=f"N = {depth}: slope {slopes[depth]:.2f}")
        _step_ticks(ax, etas)
        ax.set_xlabel("learning rate η")
        ax.set_ylabel("max rel. σ error vs closed form at ηt")
        ax.legend()

    deviation = max(abs(s - 1.0) for s in slopes.values())
    return Measurement(deviation, {"etas": etas, "errors": {f"N={d}": e for d, e in series.items()},
                                   "slopes": {f"N={d}": s for d, s in slopes.items()}}, plot)


_INTERPOLATION_POINTS = 6
_PLOT_DOT_STRIDE = 125  # closed-form dots every 2.5 time units


def _crossing_time(times: np.ndarray, sigma: np.ndarray, level: float) -> float:
    """First time σ(t) reaches ``level``: the degree-5 polynomial through ln σ at the 6
    records around the first one at or above ``level``, solved by bisection. inf if never."""
    above = np.nonzero(sigma >= level)[0]
    if above.size == 0:
        return np.inf
    i = int(above[0])
    if i == 0:
        return float(times[0])
    lo = min(max(i - _INTERPOLATION_POINTS // 2, 0), len(times) - _INTERPOLATION_POINTS)
    window = slice(lo, lo + _INTERPOLATION_POINTS)
    origin = times[i]
    coeffs = np.polyfit(times[window] - origin, np.log(sigma[window]), _INTERPOLATION_POINTS - 1)
    a, b = times[i - 1] - origin, 0.0
    for _ in range(60):
        mid = (a + b) / 2
        a, b = (mid, b) if np.polyval(coeffs, mid) < np.log(level) else (a, mid)
    return float(origin + (a + b) / 2)


def _jump_time_reference(depth: int, s: float) -> np.ndarray:
    """t at which σ_r = φ_r / 2 from σ_r(0) = s: closed form at N = 2, quadrature otherwise."""
    if depth == 2:  # invert the logistic curve at σ = φ/2
        return np.log((_PHI - s) / s) / (2 * _PHI)
    return aligned_flow_time(_PHI / 2, s, _PHI, depth)


def _jump_time_asymptote(depth: int, s: float) -> np.ndarray:
    """The small-init asymptotes: s^{-(N-2)/N}/((N-2)φ) for N >= 3, ln(φ/s)/(2φ) for N = 2."""
    if depth == 2:
        return np.log(_PHI / s) / (2 * _PHI)
    return s ** (-(depth - 2) / depth) / ((depth - 2) * _PHI)


# A jump time is off by (relative σ error) / (σ'/σ at the jump) / t_jump. The relative σ
# error stays below the RK4 bound (λ dt)^4/120 of aligned-flow-closed-form (0.6 of it at
# depth 2, where s = 1e-6 means E = 13.8 e-folds; 0.06 at depths 3-5), σ'/σ at σ = φ/2 is
# 1 to 1.7 for the first mode, and t_jump >= 5: at most 3e-9, 4e-9, 2e-8 and 1e-7 at
# depths 2-5. Interpolating ln σ between steps (degree 5) adds ~(λ dt)^6/720 <= 1.5e-9.
_JUMP_TIME_TOLERANCE = 1e-7


@register(
    "incremental-learning",
    section="§4, §7",
    claim="From a small aligned balanced init sigma_r(0) = s, the network's modes are learned one at a "
    "time, largest phi first, each jumping (sigma_r = phi_r/2) when the closed form says: max relative "
    "error of the jump times <= 1e-7",
    regime="phi = (1, 0.5, 0.25); depths 2, 3, 4 with s = 1e-6, 1e-4, 1e-3 [--full: 5 with 1e-2]; RK4, "
    "dt = 0.02, ln sigma interpolated (degree 5) between steps; jumps at t ~ 7-81, spaced by factors "
    "~2 in time; at each jump the next mode is still below 2% of its phi (depths 2-4)",
    threshold=_JUMP_TIME_TOLERANCE,
    mutants=[
        _EULER_AS_RK4,
        _UNBALANCED,
        mutant("layerwise-init-scale", "every layer carries Sigma (the init scale per layer), not Sigma^(1/N)",
               factorize=_layerwise_scale),
    ],
)
def check_incremental_learning(
    config: VerifyConfig, *, flow=gradient_flow, factorize=balanced_factorization
) -> Measurement:
    r"""Jump times :math:`\sigma_r(t_r) = \varphi_r/2` of the network's RK4 flow from
    :math:`\sigma_r(0) = s` vs :math:`t_r = \int_s^{\varphi_r/2} d\sigma / (N\sigma^{2-2/N}(\varphi_r - \sigma))`
    (the logistic curve at N = 2).

    Measured: max over depths and modes of :math:`|t_r^{net} - t_r| / t_r`.
    """
    details, curves, worst = {}, {}, 0.0
    for depth in _depths(config, (2, 3, 4)):
        problem = _aligned_problem(config, depth)
        s = problem.setting.small_init
        sigma0 = np.full(_PHI.size, s)
        run = _flow_run(problem, sigma0, flow=flow, factorize=factorize)
        measured = np.array([_crossing_time(run.times, run.sigma[:, r], _PHI[r] / 2) for r in range(_PHI.size)])
        predicted = _jump_time_reference(depth, s)
        error = np.abs(measured - predicted) / predicted
        worst = max(worst, float(np.max(error)))
        following = [float(np.interp(predicted[r], run.times, run.sigma[:, r + 1]) / _PHI[r + 1])
                     for r in range(_PHI.size - 1)]
        details[f"depth {depth}"] = {
            "s": s, "jump_times": measured.tolist(), "closed_form": predicted.tolist(),
            "asymptote": _jump_time_asymptote(depth, s).tolist(), "relative_errors": error.tolist(),
            "next_mode_sigma_over_phi_at_jump": following,
        }
        dots = run.times[:: _PLOT_DOT_STRIDE]
        curves[depth] = (run.times[::_COMPARE_EVERY], run.sigma[::_COMPARE_EVERY] / _PHI,
                         dots, _reference_sigma(dots[:, None], sigma0, _PHI, depth) / _PHI)

    def plot(ax):
        for (depth, (t, net, dots, ref)), color in zip(curves.items(), ("C0", "C1", "C2", "C3")):
            lines = ax.semilogy(t, net, color=color, lw=1.2)  # one line per mode
            lines[0].set_label(f"N = {depth}, s = {_SETTINGS[depth].small_init:g}")
            ax.semilogy(dots, ref, "o", color=color, ms=3)
            jumps = details[f"depth {depth}"]["jump_times"]
            ax.semilogy(jumps, np.full(len(jumps), 0.5), "kx", ms=5)
        ax.set_xlabel("time t")
        ax.set_ylabel("σ_r(t) / φ_r,  φ = (1, 0.5, 0.25)")
        ax.legend(title="lines: network, dots: closed form, x: jumps", fontsize=8, title_fontsize=8)

    return Measurement(worst, details, plot)


# --------------------------------------------------------------------------------------
# Singular-value dynamics [ACHL19, Thm 3]
# --------------------------------------------------------------------------------------

_NUM_SAMPLES = 20
# (dims, loss) for balanced networks: d_N < d_0 with a hidden width above min(d_0, d_N);
# d_N > d_0 with hidden widths above both; d_N < d_0 at depth 4.
_NETWORK_CASES = (((5, 4, 3), "l2"), ((3, 6, 5, 4), "l4"), ((6, 4, 4, 4, 2), "whitened"))
_NETWORK_CASES_FULL = _NETWORK_CASES + (((4, 4, 4), "l4"), ((2, 3, 3, 3, 3, 5), "l2"))
# (shape (d_N, d_0), loss) for the end-to-end field at non-integer depths.
_FIELD_CASES = (((3, 5), "l4"), ((4, 2), "whitened"))
_FIELD_CASES_FULL = _FIELD_CASES + (((3, 3), "l2"),)
_FIELD_DEPTHS = (1.5, 2.5, 3.7)
# Both sides are one SVD and a few products of O(1) matrices with singular values >= 0.5 and
# gaps >= 0.2: float64 round-off, ~1e-15 relative (measured <= 1.3e-15).
_ROUND_OFF_TOLERANCE = 1e-10


def _spread_matrix(rng: np.random.Generator, shape: tuple[int, int]) -> jax.Array:
    """A matrix with distinct singular values 2 ... 0.5 and random singular vectors."""
    k = min(shape)
    U, V = _orthogonal(rng, shape[0])[:, :k], _orthogonal(rng, shape[1])[:, :k]
    return jnp.asarray((U * np.linspace(2.0, 0.5, k)) @ V.T, jnp.float64)


def _loss(name: str, X: jax.Array, Y: jax.Array, Phi: jax.Array):
    if name == "whitened":
        return functools.partial(whitened_l2_loss, Phi=Phi)
    return functools.partial(lp_loss, X=X, Y=Y, p=2.0 if name == "l2" else 4.0)


def _loss_data(rng: np.random.Generator, shape: tuple[int, int]):
    d_N, d_0 = shape
    return normal(rng, (_NUM_SAMPLES, d_0)), normal(rng, (_NUM_SAMPLES, d_N)), normal(rng, shape)


def _singular_value_jvp(W: jax.Array, velocity: jax.Array) -> jax.Array:
    """d/dt of svd(W(t), compute_uv=False) along dW/dt = velocity (autodiff through the SVD)."""
    return jax.jvp(lambda M: jnp.linalg.svd(M, compute_uv=False), (W,), (velocity,))[1]


def _theorem3(W: np.ndarray, G: np.ndarray, depth: float) -> np.ndarray:
    r""":math:`-N(\sigma_r^2)^{1-1/N} u_r^\top G v_r` with a NumPy SVD of W."""
    U, sigma, Vt = np.linalg.svd(W, full_matrices=False)
    return -depth * (sigma**2) ** (1 - 1 / depth) * np.einsum("ir,ij,rj->r", U, G, Vt)


def _relative_gap(autodiff: np.ndarray, formula: np.ndarray) -> float:
    return float(np.linalg.norm(autodiff - formula) / np.linalg.norm(formula))


@functools.cache
def _network_rates(cases, factorize, velocity) -> Callable:
    """(W_e, ∇ℓ(W_e), σ̇ by jvp) per case, in one program compiled once per set of hooks."""

    @jax.jit
    def rates(inputs):
        out = []
        for (dims, name), (A, X, Y, Phi) in zip(cases, inputs):
            loss = _loss(name, X, Y, Phi)
            params = factorize(A, dims)
            W_e = end_to_end(params)
            out.append((W_e, jax.grad(loss)(W_e), _singular_value_jvp(W_e, velocity(params, loss))))
        return out

    return rates


@functools.cache
def _field_rates(cases, field) -> Callable:
    """(∇ℓ(W), σ̇ by jvp at each of :data:`_FIELD_DEPTHS`) per case, in one program."""

    @jax.jit
    def rates(inputs, depths):
        out = []
        for (_, name), (W, X, Y, Phi) in zip(cases, inputs):
            loss = _loss(name, X, Y, Phi)
            along = lambda N, W=W, loss=loss: _singular_value_jvp(W, field(W, loss, N))
            out.append((jax.grad(loss)(W), jax.vmap(along)(depths)))
        return out

    return rates


def _network_gaps(config, factorize, velocity) -> list[float]:
    """Relative gaps of Theorem 3 on balanced networks, per case."""
    rng = check_rng(config, 750)
    cases = _NETWORK_CASES_FULL if config.full else _NETWORK_CASES
    inputs = [(_spread_matrix(rng, (d[-1], d[0])), *_loss_data(rng, (d[-1], d[0]))) for d, _ in cases]
    results = _network_rates(cases, factorize, velocity)(inputs)
    return [_relative_gap(np.asarray(autodiff), _theorem3(np.asarray(W_e), np.asarray(G), float(len(dims) - 1)))
            for (dims, _), (W_e, G, autodiff) in zip(cases, results)]


def _field_gaps(config, field) -> list[float]:
    """Relative gaps of Theorem 3 on the end-to-end field, per case and non-integer depth."""
    rng = check_rng(config, 751)
    cases = _FIELD_CASES_FULL if config.full else _FIELD_CASES
    inputs = [(_spread_matrix(rng, shape), *_loss_data(rng, shape)) for shape, _ in cases]
    results = _field_rates(cases, field)(inputs, jnp.asarray(_FIELD_DEPTHS, jnp.float64))
    return [_relative_gap(np.asarray(autodiff[i]), _theorem3(np.asarray(W), np.asarray(G), N))
            for (W, *_), (G, autodiff) in zip(inputs, results) for i, N in enumerate(_FIELD_DEPTHS)]


def _field_depth_plus_one(W_e, loss_fn, depth):
    """The end-to-end field with the preconditioner of depth N + 1."""
    return end_to_end_field(W_e, loss_fn, depth + 1.0)


def _field_without_depth_factor(W_e, loss_fn, depth):
    """The field divided by N: the diagonal Λ_rr = σ^{2(N-1)/N} forgets its factor N."""
    return end_to_end_field(W_e, loss_fn, depth) / depth


@register(
    "singular-value-dynamics",
    section="§4",
    claim="[ACHL19 Thm 3] sigma_r' = -N (sigma_r^2)^(1-1/N) <grad l(W_e), u_r v_r^T>: jvp of the singular "
    "values along the network's velocity (balanced, depths 2-4) and along end_to_end_field (N = 1.5, "
    "2.5, 3.7) equals the formula with u_r, v_r from a NumPy SVD (max relative gap)",
    regime="networks 3x5 (hidden 4, l2), 4x3 (hidden 6, 5, l4), 2x6 (hidden 4, 4, 4, whitened l2); "
    "fields 3x5 (l4), 4x2 (whitened l2) [--full: more]; singular values 2 ... 0.5, distinct; "
    "float64 round-off (both sides are one SVD and a few matrix products)",
    threshold=_ROUND_OFF_TOLERANCE,
    mutants=[
        _UNBALANCED,
        mutant("field-depth-plus-one", "the end-to-end field with the preconditioner of depth N + 1",
               field=_field_depth_plus_one),
        mutant("field-without-N", "the end-to-end field divided by N (Lambda_rr without its factor N)",
               field=_field_without_depth_factor),
    ],
)
def check_singular_value_dynamics(
    config: VerifyConfig,
    *,
    factorize=balanced_factorization,
    velocity=end_to_end_velocity,
    field=end_to_end_field,
) -> Measurement:
    r""":math:`\dot\sigma_r = -N(\sigma_r^2)^{1-1/N}\langle\nabla\ell(W_e), u_r v_r^\top\rangle`
    [ACHL19, Thm 3], with :math:`\dot\sigma` from ``jax.jvp`` of the singular values along the
    network's velocity (autodiff, balanced weights) or along :func:`end_to_end_field`.

    Measured: max relative gap ||σ̇_jvp - σ̇_formula|| / ||σ̇_formula|| over all cases.

    Blind spots: only the diagonal Λ_rr of P_W enters σ̇_r (the rate of u_r v_r^T), so a
    preconditioner with wrong off-diagonal eigenvalues Λ_rs (r ≠ s, e.g. the geometric mean
    N(σ_r σ_s)^{(N-1)/N}), or wrong motion of the singular vectors, passes this check; so
    does any error in the null-space blocks of a non-square W_e.
    """
    network, fields = _network_gaps(config, factorize, velocity), _field_gaps(config, field)

    def plot(ax):
        ax.semilogy(range(len(network)), np.maximum(network, 1e-18), "o", label="balanced networks")
        ax.semilogy(range(len(network), len(network) + len(fields)), np.maximum(fields, 1e-18), "s",
                    label="end-to-end field (N = 1.5, 2.5, 3.7 per shape)")
        ax.axhline(_ROUND_OFF_TOLERANCE, color="k", ls="--", lw=0.8, label="threshold")
        ax.set_xlabel("case")
        ax.set_ylabel("||σ̇(jvp) − σ̇(Thm 3)|| / ||σ̇(Thm 3)||")
        ax.legend(fontsize=8)

    return Measurement(max(network + fields), {"network_gaps": network, "field_gaps": fields,
                                               "field_depths": list(_FIELD_DEPTHS)}, plot)
