"""Checks of the trajectories: balancedness under GD/GF, integrator orders, GD → GF and
GD → end-to-end dynamics at O(η) (THEORY.md §3, §4, §6)."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from overparam_jax.dynamics import end_to_end_descent, gradient_descent, gradient_flow
from overparam_jax.losses import lp_loss, overparameterized, whitened_l2_loss
from overparam_jax.networks import end_to_end, init_balanced, init_gaussian
from overparam_jax.verify.registry import Measurement, VerifyConfig, register


def _planted_l4(seed: int, d_in: int = 5, d_out: int = 2, m: int = 40):
    """ℓ4 regression with small inputs (non-stiff flow: gradients O(1))."""
    kx, kw = jax.random.split(jax.random.key(seed))
    X = 0.4 * jax.random.normal(kx, (m, d_in), jnp.float64)
    Y = 0.5 * X @ jax.random.normal(kw, (d_in, d_out), jnp.float64)
    return functools.partial(lp_loss, X=X, Y=Y, p=4.0)


def _slope(xs, ys) -> float:
    """Least-squares slope of log(ys) against log(xs)."""
    return float(np.polyfit(np.log(np.asarray(xs)), np.log(np.asarray(ys)), 1)[0])


def _log_log_plot(xs, ys, xlabel, ylabel, slope):
    def plot(ax):
        ax.loglog(xs, ys, "o-", label=f"measured (slope {slope:.2f})")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.legend()

    return plot


@register(
    "gd-balance-identity",
    section="§3",
    claim="one GD step changes W_{j+1}^T W_{j+1} - W_j W_j^T by exactly eta^2 (G_{j+1}^T G_{j+1} - G_j G_j^T)",
    threshold=1e-10,
)
def check_gd_balance_identity(config: VerifyConfig, *, descend=gradient_descent) -> Measurement:
    loss = _planted_l4(config.seed)
    params = init_gaussian(jax.random.key(config.seed + 1), (5, 4, 3, 2), std=0.6, dtype=jnp.float64)
    eta = 0.05
    after = descend(loss, params, learning_rate=eta, num_steps=1).final
    grads = jax.grad(overparameterized(loss))(params)
    worst = 0.0
    for j in range(len(params) - 1):
        diff = lambda ps: ps[j + 1].T @ ps[j + 1] - ps[j] @ ps[j].T
        predicted = eta**2 * (grads[j + 1].T @ grads[j + 1] - grads[j] @ grads[j].T)
        worst = max(worst, float(jnp.linalg.norm(diff(after) - diff(params) - predicted) / jnp.linalg.norm(predicted)))
    return Measurement(worst, {"eta": eta, "dims": [5, 4, 3, 2]})


@register(
    "gd-balance-drift-order",
    section="§3",
    claim="under GD, balancedness drift at a fixed time T = eta*t is O(eta): |log-log slope - 1| <= 0.2",
    threshold=0.2,
)
def check_gd_balance_drift(config: VerifyConfig, *, descend=gradient_descent) -> Measurement:
    loss = _planted_l4(config.seed)
    params = init_balanced(jax.random.key(config.seed + 2), (5, 4, 4, 2), std=0.8, dtype=jnp.float64)
    etas = [0.02, 0.01, 0.005, 0.0025]
    drifts = [float(descend(loss, params, learning_rate=e, num_steps=round(1.0 / e)).balancedness[-1]) for e in etas]
    slope = _slope(etas, drifts)
    return Measurement(abs(slope - 1.0), {"slope": slope, "etas": etas, "drifts": drifts, "T": 1.0},
                       _log_log_plot(etas, drifts, "learning rate η", "balancedness at T = 1", slope))


@register(
    "gf-balance-conserved",
    section="§3",
    claim="under gradient flow (RK4, dt = 0.005, T = 4) balancedness stays <= 1e-9 relative",
    threshold=1e-9,
)
def check_gf_balance(config: VerifyConfig, *, flow=gradient_flow) -> Measurement:
    Phi = jax.random.normal(jax.random.key(config.seed + 3), (3, 4), jnp.float64) / 2
    loss = functools.partial(whitened_l2_loss, Phi=Phi)
    params = init_balanced(jax.random.key(config.seed + 4), (4, 4, 4, 3), std=0.3, dtype=jnp.float64)
    traj = flow(loss, params, t_final=4.0, dt=0.005, save_every=50)
    scale = max(float(jnp.linalg.norm(W) ** 2) for W in traj.final)
    drift = np.asarray(traj.balancedness) / scale

    def plot(ax):
        ax.semilogy(np.asarray(traj.time), np.maximum(drift, 1e-18))
        ax.set_xlabel("time t")
        ax.set_ylabel("balancedness / max ||W_j||²")

    return Measurement(float(drift.max()), {"loss_start": float(traj.loss[0]), "loss_end": float(traj.loss[-1])}, plot)


def _depth_one_flow_errors(method, dts, seed, flow):
    Phi = jax.random.normal(jax.random.key(seed), (3, 4), jnp.float64)
    W0 = jax.random.normal(jax.random.key(seed + 1), (3, 4), jnp.float64)
    loss = functools.partial(whitened_l2_loss, Phi=Phi)
    exact = Phi + (W0 - Phi) * np.exp(-1.0)  # W(t) = Φ + (W(0) − Φ) e^{−t}
    return [float(jnp.linalg.norm(flow(loss, (W0,), t_final=1.0, dt=dt, method=method).final[0] - exact)) for dt in dts]


def _register_order_check(method: str, order: float, tolerance: float, dts: list[float]):
    @register(
        f"integrator-order-{method}",
        section="§6",
        claim=f"{method} on depth-1 whitened l2 vs W(t) = Phi + (W0 - Phi)e^-t: |slope - {order:g}| <= {tolerance}",
        threshold=tolerance,
    )
    def check(config: VerifyConfig, *, flow=gradient_flow) -> Measurement:
        errors = _depth_one_flow_errors(method, dts, config.seed + 5, flow)
        slope = _slope(dts, errors)
        return Measurement(abs(slope - order), {"slope": slope, "dts": dts, "errors": errors},
                           _log_log_plot(dts, errors, "dt", "error at t = 1", slope))

    return check


check_euler_order = _register_order_check("euler", 1.0, 0.2, [0.1, 0.05, 0.025, 0.0125])
check_rk4_order = _register_order_check("rk4", 4.0, 0.3, [0.2, 0.1, 0.05, 0.025])


@register(
    "gd-tracks-gradient-flow",
    section="§6",
    claim="GD after t steps is within O(eta) of gradient flow at time eta*t: |slope - 1| <= 0.2",
    threshold=0.2,
)
def check_gd_tracks_gf(config: VerifyConfig, *, descend=gradient_descent) -> Measurement:
    loss = _planted_l4(config.seed)
    params = init_balanced(jax.random.key(config.seed + 6), (5, 4, 4, 2), std=0.8, dtype=jnp.float64)
    reference = end_to_end(gradient_flow(loss, params, t_final=1.0, dt=1e-3).final)
    etas = [0.004, 0.002, 0.001, 0.0005]
    gaps = [float(jnp.linalg.norm(end_to_end(descend(loss, params, learning_rate=e, num_steps=round(1.0 / e)).final) - reference))
            for e in etas]
    slope = _slope(etas, gaps)
    return Measurement(abs(slope - 1.0), {"slope": slope, "etas": etas, "gaps": gaps},
                       _log_log_plot(etas, gaps, "learning rate η", "||W_e(GD) − W_e(GF)|| at T = 1", slope))


@register(
    "gd-tracks-end-to-end",
    section="§4",
    claim="GD on a balanced depth-3 net tracks the discrete end-to-end update with an O(eta) gap: |slope - 1| <= 0.2",
    threshold=0.2,
)
def check_gd_tracks_end_to_end(config: VerifyConfig, *, end_to_end_update=end_to_end_descent) -> Measurement:
    loss = _planted_l4(config.seed)
    params = init_balanced(jax.random.key(config.seed + 7), (5, 4, 4, 2), std=0.8, dtype=jnp.float64)
    etas = [0.004, 0.002, 0.001, 0.0005]
    gaps = []
    for e in etas:
        n = round(1.0 / e)
        net = gradient_descent(loss, params, learning_rate=e, num_steps=n, save_every=n // 10, record_end_to_end=True)
        e2e = end_to_end_update(loss, end_to_end(params), depth=3, learning_rate=e, num_steps=n,
                                save_every=n // 10, record_end_to_end=True)
        gaps.append(float(jnp.max(jnp.linalg.norm(net.end_to_end - e2e.end_to_end, axis=(1, 2)))))
    slope = _slope(etas, gaps)
    return Measurement(abs(slope - 1.0), {"slope": slope, "etas": etas, "gaps": gaps},
                       _log_log_plot(etas, gaps, "learning rate η", "max gap ||W_e(GD) − W_e(end-to-end)||", slope))
