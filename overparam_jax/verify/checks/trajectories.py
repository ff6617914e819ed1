"""Checks of the trajectories: balancedness under GD/GF, integrator orders, GD → GF and
GD → end-to-end dynamics at O(η) (THEORY.md §3, §4, §6)."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from overparam_jax.dynamics import end_to_end_descent, gradient_descent, gradient_flow
from overparam_jax.losses import lp_loss, overparameterized, whitened_l2_loss
from overparam_jax.networks import balanced_factorization, end_to_end
from overparam_jax.verify.registry import Measurement, VerifyConfig, check_rng, normal, register


def _planted_l4(config: VerifyConfig, d_in: int = 5, d_out: int = 2, m: int = 40):
    """ℓ4 regression with small inputs (non-stiff flow: gradients O(1))."""
    rng = check_rng(config, 10)
    X = normal(rng, (m, d_in), 0.4)
    Y = 0.5 * X @ normal(rng, (d_in, d_out))
    return functools.partial(lp_loss, X=X, Y=Y, p=4.0)


def _balanced(config: VerifyConfig, stream: int, dims, std: float):
    """ACGH19's balanced init (Gaussian end-to-end matrix, then Procedure 1), host-sampled."""
    return balanced_factorization(normal(check_rng(config, stream), (dims[-1], dims[0]), std), dims)


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
    loss = _planted_l4(config)
    rng, dims = check_rng(config, 11), (5, 4, 3, 2)
    params = tuple(normal(rng, (dims[j + 1], dims[j]), 0.6) for j in range(3))
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
    loss = _planted_l4(config)
    params = _balanced(config, 12, (5, 4, 4, 2), 0.8)
    etas = [0.02, 0.01, 0.005, 0.0025]
    traj = _at_time_one(descend, loss, params, etas)
    drifts = [float(traj.balancedness[i, k[-1]]) for i, k in enumerate(_record_indices(etas))]
    slope = _slope(etas, drifts)
    return Measurement(abs(slope - 1.0), {"slope": slope, "etas": etas, "drifts": drifts, "T": 1.0},
                       _log_log_plot(etas, drifts, "learning rate η", "balancedness at T = 1", slope))


_TIMES = np.arange(1, 11) / 10  # compare runs at t = 0.1, 0.2, ..., 1


def _record_indices(etas) -> list[np.ndarray]:
    """For each η, the record indices at the times ``_TIMES`` of a run from :func:`_at_time_one`."""
    return [np.round(_TIMES * 10 * max(etas) / e).astype(int) for e in etas]


def _at_time_one(descend, loss, params, etas, **kwargs):
    """One vmapped run over ``etas`` (one compile), long enough for the smallest η to reach
    T = η t = 1, recorded every 0.1/max(η) steps (every η passes t = 0.1, ..., 1 on a record)."""
    save_every = round(0.1 / max(etas))
    num_steps = round(1.0 / min(etas))
    run = lambda e: descend(loss, params, learning_rate=e, num_steps=num_steps, save_every=save_every, **kwargs)
    return jax.vmap(run)(jnp.asarray(etas, jnp.float64))


@register(
    "gf-balance-conserved",
    section="§3",
    claim="under gradient flow (RK4, dt = 0.005, T = 4) balancedness stays <= 1e-9 relative",
    threshold=1e-9,
)
def check_gf_balance(config: VerifyConfig, *, flow=gradient_flow) -> Measurement:
    Phi = normal(check_rng(config, 13), (3, 4), 0.5)
    loss = functools.partial(whitened_l2_loss, Phi=Phi)
    params = _balanced(config, 14, (4, 4, 4, 3), 0.3)
    traj = flow(loss, params, t_final=4.0, dt=0.005, save_every=50)
    scale = max(float(jnp.linalg.norm(W) ** 2) for W in traj.final)
    drift = np.asarray(traj.balancedness) / scale

    def plot(ax):
        ax.semilogy(np.asarray(traj.time), np.maximum(drift, 1e-18))
        ax.set_xlabel("time t")
        ax.set_ylabel("balancedness / max ||W_j||²")

    return Measurement(float(drift.max()), {"loss_start": float(traj.loss[0]), "loss_end": float(traj.loss[-1])}, plot)


def _depth_one_flow_errors(method, dts, config, flow):
    rng = check_rng(config, 15)
    Phi, W0 = normal(rng, (3, 4)), normal(rng, (3, 4))
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
        errors = _depth_one_flow_errors(method, dts, config, flow)
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
    loss = _planted_l4(config)
    params = _balanced(config, 16, (5, 4, 4, 2), 0.8)
    reference = end_to_end(gradient_flow(loss, params, t_final=1.0, dt=1e-3).final)
    etas = [0.004, 0.002, 0.001, 0.0005]
    traj = _at_time_one(descend, loss, params, etas, record_end_to_end=True)
    gaps = [float(jnp.linalg.norm(traj.end_to_end[i, k[-1]] - reference)) for i, k in enumerate(_record_indices(etas))]
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
    loss = _planted_l4(config)
    params = _balanced(config, 17, (5, 4, 4, 2), 0.8)
    etas = [0.004, 0.002, 0.001, 0.0005]
    net = _at_time_one(gradient_descent, loss, params, etas, record_end_to_end=True)
    update = functools.partial(end_to_end_update, depth=3.0)
    e2e = _at_time_one(lambda f, W, **kw: update(f, W, **kw), loss, end_to_end(params), etas, record_end_to_end=True)
    gaps = [float(jnp.max(jnp.linalg.norm(net.end_to_end[i, k] - e2e.end_to_end[i, k], axis=(1, 2))))
            for i, k in enumerate(_record_indices(etas))]
    slope = _slope(etas, gaps)
    return Measurement(abs(slope - 1.0), {"slope": slope, "etas": etas, "gaps": gaps},
                       _log_log_plot(etas, gaps, "learning rate η", "max over t = 0.1..1 of ||W_e(GD) − W_e(end-to-end)||", slope))
