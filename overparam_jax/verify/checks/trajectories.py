"""Checks of the trajectories: balancedness under GD/GF, integrator orders, GD → GF and
GD → end-to-end dynamics at O(η) (THEORY.md §3, §4, §6)."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from typing import NamedTuple

from overparam_jax.dynamics import end_to_end_descent, gradient_descent, gradient_flow
from overparam_jax.losses import lp_loss, overparameterized, whitened_l2_loss
from overparam_jax.networks import balanced_factorization, balancedness, end_to_end
from overparam_jax.verify.mutants import frozen, mis_stepped, relabelled_flow
from overparam_jax.verify.registry import (
    Measurement,
    VerifyConfig,
    check_rng,
    mutant,
    normal,
    register,
)


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


class _BalanceRecords(NamedTuple):
    balancedness: jax.Array


def _layerwise_rate_descent(rates: tuple[float, ...]):
    """GD with a different learning rate per layer (``rates[j] * learning_rate``): a
    plausible bug (a per-layer scale) that breaks the conservation of the balance gaps,
    so balancedness drifts at O(1) over a fixed time instead of O(eta). Records only
    balancedness, like the library's trajectories, every ``save_every`` steps."""

    def descend(loss_fn, params, *, learning_rate, num_steps, save_every=1, **_):
        phi = overparameterized(loss_fn)

        def step(ps, _):
            grads = jax.grad(phi)(ps)
            return tuple(W - learning_rate * r * g for W, g, r in zip(ps, grads, rates)), None

        def record(ps, _):
            ps, _ = jax.lax.scan(step, ps, None, length=save_every)
            return ps, balancedness(ps)

        _, deltas = jax.lax.scan(record, tuple(params), None, length=num_steps // save_every)
        return _BalanceRecords(jnp.concatenate([balancedness(params)[None], deltas]))

    return descend


@register(
    "gd-balance-identity",
    section="§3",
    claim="one GD step changes W_{j+1}^T W_{j+1} - W_j W_j^T by exactly eta^2 (G_{j+1}^T G_{j+1} - G_j G_j^T)",
    regime="depth 3, dims (5, 4, 3, 2), random (unbalanced) layers, l4 loss, eta = 0.05; relative error "
    "of the change, float64 round-off",
    threshold=1e-10,
    mutants=[
        mutant("weight-decay", "GD with a hidden weight decay 0.5 (breaks the first-order cancellation)",
               descend=functools.partial(gradient_descent, weight_decay=0.5)),
        mutant("gd-at-2-eta", "GD stepping 2 eta", descend=mis_stepped(gradient_descent, 2.0)),
    ],
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
    regime="depth 3 from a balanced init, l4 loss, eta = 0.02 .. 0.0025 at T = 1 (50-400 steps)",
    threshold=0.2,
    mutants=[
        mutant("layerwise-rates", "GD with the first layer at twice the learning rate (gaps not conserved)",
               descend=_layerwise_rate_descent((2.0, 1.0, 1.0))),
        mutant("frozen-gd", "GD that never moves", descend=frozen(gradient_descent)),
    ],
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


_CONSERVATION_TOL = 1e-9  # RK4 (dt = 0.005, T = 4) conserves the quadratic gaps to ~dt^4 relative
_MOTION_TOL = 1e-3  # the flow must cut the loss at least 1000-fold over T


def _unbalanced_with_margin(config: VerifyConfig, dims, Phi):
    """A balanced factorization of W_e = Phi + E/(2||E||) (deficiency margin sigma_min(Phi)
    - 1/2 > 0 for the targets used), then unbalanced by M = I + E' and M^{-1} between the
    first two layers: the same W_e with balance gaps of order one."""
    rng = check_rng(config, 14)
    E = normal(rng, Phi.shape)
    params = balanced_factorization(Phi + 0.5 * E / jnp.linalg.norm(E), dims)
    M = jnp.eye(dims[1], dtype=jnp.float64) + 0.5 * normal(rng, (dims[1], dims[1])) / dims[1]
    return (M @ params[0], jnp.linalg.solve(M.T, params[1].T).T) + params[2:]


def _gaps(params):
    return [params[j + 1].T @ params[j + 1] - params[j] @ params[j].T for j in range(len(params) - 1)]


@register(
    "gf-balance-conserved",
    section="§3",
    claim="under gradient flow the balance gaps W_{j+1}^T W_{j+1} - W_j W_j^T are conserved (not only zero "
    "stays zero) while the flow moves: worst of max_t |delta(t) - delta(0)| / delta(0) and "
    "||D_j(T) - D_j(0)|| / ||D_j(0)|| over 1e-9, and l(T)/l(0) over 1e-3",
    regime="depth 3, dims (4, 4, 4, 3), whitened l2, unbalanced init with gaps of order one and a deficiency "
    "margin; RK4 dt = 0.005 to T = 4, over which the loss falls by orders of magnitude",
    threshold=1.0,
    mutants=[
        mutant("frozen-flow", "a flow that never moves", flow=frozen(gradient_flow)),
        mutant("euler-sold-as-rk4", "Euler integration (does not conserve the quadratic gaps)",
               flow=relabelled_flow("euler")),
    ],
)
def check_gf_balance(config: VerifyConfig, *, flow=gradient_flow) -> Measurement:
    Phi = normal(check_rng(config, 13), (3, 4))
    Phi = Phi / jnp.linalg.svd(Phi, compute_uv=False)[-1]  # sigma_min(Phi) = 1
    loss = functools.partial(whitened_l2_loss, Phi=Phi)
    params = _unbalanced_with_margin(config, (4, 4, 4, 3), Phi)
    traj = flow(loss, params, t_final=4.0, dt=0.005, save_every=20)
    delta = np.asarray(traj.balancedness)
    record_drift = float(np.max(np.abs(delta - delta[0])) / delta[0])
    gap_drift = max(float(jnp.linalg.norm(b - a) / jnp.linalg.norm(a))
                    for a, b in zip(_gaps(params), _gaps(traj.final)))
    loss_ratio = float(traj.loss[-1] / traj.loss[0])
    layer_moves = [float(jnp.linalg.norm(b - a) / jnp.linalg.norm(a)) for a, b in zip(params, traj.final)]

    def plot(ax):
        ax.semilogy(np.asarray(traj.time), np.maximum(np.abs(delta - delta[0]) / delta[0], 1e-18),
                    label="|delta(t) - delta(0)| / delta(0)")
        ax.semilogy(np.asarray(traj.time), np.asarray(traj.loss) / float(traj.loss[0]), label="l(t) / l(0)")
        ax.set_xlabel("time t")
        ax.legend()

    worst = max(record_drift / _CONSERVATION_TOL, gap_drift / _CONSERVATION_TOL, loss_ratio / _MOTION_TOL)
    return Measurement(worst, {"delta_0": float(delta[0]), "max_record_drift": record_drift,
                               "max_gap_drift": gap_drift, "loss_ratio": loss_ratio,
                               "layer_relative_moves": layer_moves}, plot)


def _depth_one_flow_errors(method, dts, config, flow):
    rng = check_rng(config, 15)
    Phi, W0 = normal(rng, (3, 4)), normal(rng, (3, 4))
    loss = functools.partial(whitened_l2_loss, Phi=Phi)
    exact = Phi + (W0 - Phi) * np.exp(-1.0)  # W(t) = Φ + (W(0) − Φ) e^{−t}
    return [float(jnp.linalg.norm(flow(loss, (W0,), t_final=1.0, dt=dt, method=method).final[0] - exact)) for dt in dts]


def _register_order_check(method: str, order: float, tolerance: float, dts: list[float], wrong: str):
    @register(
        f"integrator-order-{method}",
        section="§6",
        claim=f"{method} on depth-1 whitened l2 vs W(t) = Phi + (W0 - Phi)e^-t: |slope - {order:g}| <= {tolerance}",
        regime=f"3x4 target, T = 1, dt = {dts[0]:g} .. {dts[-1]:g}; error at T vs the closed form",
        threshold=tolerance,
        mutants=[mutant(f"{wrong}-sold-as-{method}", f"{wrong} integration whatever method is asked",
                        flow=relabelled_flow(wrong))],
    )
    def check(config: VerifyConfig, *, flow=gradient_flow) -> Measurement:
        errors = _depth_one_flow_errors(method, dts, config, flow)
        slope = _slope(dts, errors)
        return Measurement(abs(slope - order), {"slope": slope, "dts": dts, "errors": errors},
                           _log_log_plot(dts, errors, "dt", "error at t = 1", slope))

    return check


check_euler_order = _register_order_check("euler", 1.0, 0.2, [0.1, 0.05, 0.025, 0.0125], "rk4")
check_rk4_order = _register_order_check("rk4", 4.0, 0.3, [0.2, 0.1, 0.05, 0.025], "euler")


@register(
    "gd-tracks-gradient-flow",
    section="§6",
    claim="GD after t steps is within O(eta) of gradient flow at time eta*t: |slope - 1| <= 0.2",
    regime="depth 3 balanced init, l4 loss, eta = 0.004 .. 0.0005 at T = 1, vs RK4 with dt = 1e-3",
    threshold=0.2,
    mutants=[
        mutant("gd-at-2-eta", "GD stepping 2 eta", descend=mis_stepped(gradient_descent, 2.0)),
        mutant("frozen-gd", "GD that never moves", descend=frozen(gradient_descent)),
    ],
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


def _depth_ignored(loss_fn, W_e, *, depth, **kwargs):
    """An end-to-end update that forgets the depth (always the linear model)."""
    return end_to_end_descent(loss_fn, W_e, depth=1.0, **kwargs)


@register(
    "gd-tracks-end-to-end",
    section="§4",
    claim="GD on a balanced depth-3 net tracks the discrete end-to-end update with an O(eta) gap: |slope - 1| <= 0.2",
    regime="depth 3 balanced init, l4 loss, eta = 0.004 .. 0.0005, max gap over t = 0.1 .. 1",
    threshold=0.2,
    mutants=[
        mutant("depth-ignored", "the update at depth 1 whatever depth is asked", end_to_end_update=_depth_ignored),
        mutant("update-at-2-eta", "the update stepping 2 eta", end_to_end_update=mis_stepped(end_to_end_descent, 2.0)),
    ],
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
