r"""Checks of ACGH19's probability statements for the balanced init with one output (THEORY.md §5).

Setting: :math:`d_N = 1`, whitened :math:`\ell_2` with a target row :math:`\Phi`, and the balanced
init of Procedure 1, whose end-to-end row is :math:`w \sim N(0, s^2 I_{d_0})`.

* ``margin-probability-exact``: the Monte Carlo frequency of a positive deficiency margin,
  :math:`P(\|w - \Phi\| < \|\Phi\|)`, against its exact value
  (:func:`~overparam_jax.theory.margin_probability_exact`, a 1-D integral) over a range of ``s``
  on which it falls from about 1/2 to about 0, with simultaneous Wilson intervals.
* ``theorem2-constant-probability``: Theorem 2's own event — the loss at the theorem's horizon is
  at most ε — estimated over random inits, its Wilson lower end against the (reconstructed)
  probability bound. At the theorem's learning rate GD would need ~1e22 steps, so the statement is
  tested in its η → 0 limit, gradient flow over the continuous-time horizon τ = ηT(ε).

Both use the stream range 300–399 of :func:`~overparam_jax.verify.registry.check_rng` and JAX keys
``config.seed + 300 ...`` for the library's samplers.

References:
    [ACGH19] Arora, Cohen, Golowich, Hu. A Convergence Analysis of Gradient Descent for Deep Linear
    Neural Networks. ICLR 2019, Definition 2, Theorem 2, Procedure 1.
"""

from __future__ import annotations

import functools
import math
from statistics import NormalDist
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from overparam_jax.dynamics import gradient_flow
from overparam_jax.losses import overparameterized, whitened_l2_loss
from overparam_jax.networks import (
    balanced_factorization,
    balancedness,
    deficiency_margin,
    end_to_end,
    init_balanced,
    init_gaussian,
)
from overparam_jax.theory import (
    margin_probability_exact,
    theorem2_conditions,
    wilson_interval,
)
from overparam_jax.verify.mutants import frozen, mis_stepped
from overparam_jax.verify.registry import (
    Measurement,
    VerifyConfig,
    check_rng,
    mutant,
    normal,
    register,
)

FAMILY_ALPHA = 1e-3  # each check's intervals hold simultaneously with probability >= 1 - this


def _simultaneous_z(comparisons: int) -> float:
    """Two-sided z for ``comparisons`` intervals holding together with probability at least
    ``1 - FAMILY_ALPHA`` (Bonferroni)."""
    return NormalDist().inv_cdf(1 - FAMILY_ALPHA / (2 * comparisons))


# --------------------------------------------------------------------------- exact margin probability

_EXACT_STREAM = 300
_EXACT_D0 = 100
_EXACT_DIMS = (_EXACT_D0, 2, 2, 1)  # depth 3; Procedure 1 needs hidden widths >= min(d_0, d_N) = 1
# s = x ||Φ|| / (d_0 - 1): P ≈ F(-x/2) falls from 0.48 (x = 0.1, Theorem 2's s at a = 100) to 1e-3.
_EXACT_X = (0.1, 0.5, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0)


@functools.partial(jax.jit, static_argnames=("init", "dims", "samples"))
def _margin_counts(key, stds, Phi, *, init, dims, samples):
    """For each std, how many of ``samples`` inits have a positive deficiency margin w.r.t. Φ."""
    keys = jax.random.split(key, stds.shape[0] * samples)
    margin = lambda k, s: deficiency_margin(end_to_end(init(k, dims, std=s, dtype=stds.dtype)), Phi)
    positive = jax.vmap(margin)(keys, jnp.repeat(stds, samples)) > 0
    return jnp.sum(positive.reshape(stds.shape[0], samples), axis=1)


def _deviation(exact: float, hits: int, trials: int, z: float) -> float:
    """``|exact - freq|`` over the Wilson half-width on the side of ``exact``: at most 1 iff
    ``exact`` lies in the interval."""
    low, high = wilson_interval(hits, trials, z)
    freq = hits / trials
    return (exact - freq) / (high - freq) if exact >= freq else (freq - exact) / (freq - low)


def _std_as_variance(key, dims, *, std, dtype=None):
    """Balanced init sampled at std² (the std used as a variance)."""
    return init_balanced(key, dims, std=std**2, dtype=dtype)


def _std_times_sqrt_d0(key, dims, *, std, dtype=None):
    """Balanced init sampled at std·√d_0 (a per-entry std mistaken for a per-row norm)."""
    return init_balanced(key, dims, std=std * math.sqrt(dims[0]), dtype=dtype)


def _square_root_layers(key, dims, *, std, dtype=None):
    """Procedure 1 with Σ^{1/2} on every layer whatever the depth (the depth-2 root): the
    end-to-end matrix has singular values σ^{N/2} instead of σ."""
    A = end_to_end(init_balanced(key, dims, std=std, dtype=dtype))
    U, sigma, Vt = jnp.linalg.svd(A, full_matrices=False)
    return balanced_factorization((U * sigma[None, :] ** ((len(dims) - 1) / 2)) @ Vt, dims)


@register(
    "margin-probability-exact",
    section="§5",
    claim="ACGH19 Procedure 1 / Def. 2 (d_N = 1): with end-to-end row w ~ N(0, s^2 I), "
          "P(deficiency margin > 0) = P(||w - Phi|| < ||Phi||) equals its exact value (1-D integral "
          "over the chi_{d_0-1} density of a difference of normal CDFs); measured: the worst "
          "|MC frequency - exact| over the simultaneous Wilson half-width (<= 1: exact inside every "
          "interval)",
    regime="d_0 = 100, depth 3 (dims 100-2-2-1), ||Phi|| ~ 10 (unnormalized Gaussian row), "
           "8 values s = x ||Phi||/(d_0 - 1), x = 0.1 .. 6, on which P falls from 0.48 (x = 0.1 is "
           "Theorem 2's s at a = 100) to 1.3e-3; 10 000 inits per s (full: 40 000); Wilson intervals "
           "at family-wise level 1e-3 (Bonferroni over the 8 s)",
    threshold=1.0,
    mutants=[
        mutant("layerwise-gaussian", "layer-wise i.i.d. N(0, std^2) layers instead of Procedure 1",
               init=init_gaussian),
        mutant("std-as-variance", "the end-to-end entries sampled with std^2", init=_std_as_variance),
        mutant("std-times-sqrt-d0", "the end-to-end entries sampled with std * sqrt(d_0)",
               init=_std_times_sqrt_d0),
        mutant("square-root-layers", "Procedure 1 with Sigma^{1/2} per layer at depth 3 "
               "(end-to-end sigma^{3/2})", init=_square_root_layers),
    ],
)
def check_margin_probability_exact(config: VerifyConfig, *, init=init_balanced) -> Measurement:
    samples = 40_000 if config.full else 10_000
    Phi = normal(check_rng(config, _EXACT_STREAM), (1, _EXACT_D0))
    f = float(jnp.linalg.norm(Phi))
    stds = np.asarray(_EXACT_X) * f / (_EXACT_D0 - 1)
    hits = np.asarray(_margin_counts(jax.random.key(config.seed + _EXACT_STREAM), jnp.asarray(stds), Phi,
                                     init=init, dims=_EXACT_DIMS, samples=samples))
    z = _simultaneous_z(len(stds))
    exact = [margin_probability_exact(float(s), _EXACT_D0, f) for s in stds]
    rows = []
    for x, s, p, k in zip(_EXACT_X, stds, exact, hits.tolist()):
        low, high = wilson_interval(k, samples, z)
        rows.append({"x = s (d_0 - 1)/||Phi||": x, "s": float(s), "exact": p, "frequency": k / samples,
                     "wilson": [low, high], "deviation / half-width": _deviation(p, k, samples, z),
                     "small-s approximation F(-x/2)": NormalDist().cdf(-x / 2)})
    worst = max(r["deviation / half-width"] for r in rows)
    details = {"d_0": _EXACT_D0, "dims": list(_EXACT_DIMS), "phi_norm": f, "samples_per_s": samples,
               "z (family-wise 1e-3)": z, "points": rows}
    return Measurement(worst, details, _margin_plot(rows, f))


def _margin_plot(rows, phi_norm: float):
    def plot(ax):
        s = np.array([r["s"] for r in rows])
        grid = np.geomspace(s.min() / 3, s.max() * 1.5, 80)
        ax.semilogx(grid, [margin_probability_exact(float(g), _EXACT_D0, phi_norm) for g in grid], "k-",
                    label="exact P(margin > 0)")
        ax.semilogx(grid, [NormalDist().cdf(-g * (_EXACT_D0 - 1) / (2 * phi_norm)) for g in grid], "k:",
                    label="F(-s(d_0-1)/(2||Phi||)) (small s)")
        freq = np.array([r["frequency"] for r in rows])
        low, high = np.array([r["wilson"] for r in rows]).T
        ax.errorbar(s, freq, yerr=[freq - low, high - freq], fmt="o", capsize=3,
                    label="Monte Carlo, simultaneous Wilson intervals")
        ax.set_xlabel("init std s (end-to-end entries)")
        ax.set_ylabel("P(deficiency margin > 0)")
        ax.set_title(f"balanced init, d_0 = {_EXACT_D0}, ||Phi|| = {phi_norm:.2f}")
        ax.legend(loc="upper right", fontsize="small")

    return plot


# --------------------------------------------------------------------------- Theorem 2

_T2_STREAM = 310
_T2_D0 = 100
_T2_A = 100.0  # ACGH19: "d_0 >= 100, a >= 100" gives a probability above 0.25
_T2_DEPTHS = (2, 3)
_T2_EPSILON = 1e-6  # ε = this · ||Φ||² (ℓ(0) ≈ ||Φ||²/2)
_CHUNK_STEPS = 128  # RK4 steps per call of the flow (one dt per call)
_CHUNK_RECORDS = 32
_STABILITY = 0.5  # dt <= this / L, L a bound on the Hessian of φ (RK4 is stable up to dt λ = 2.78)
_SPEED = 0.5  # a chunk moves each run by at most about this fraction of its norm
_MAX_CHUNKS = 400
_ASCENT_TOLERANCE = 1e-9  # a loss rise above this · ℓ(0) within a chunk: not a gradient flow
_RETRIES = 3  # a chunk with a rise or a non-finite run is retried at dt/4, dt/16, dt/64


@functools.lru_cache(maxsize=4)
def _theorem2_problem(config: VerifyConfig):
    """Φ (a unit row in R^100) and its loss; cached so repeated runs reuse the compiled flow."""
    Phi = normal(check_rng(config, _T2_STREAM), (1, _T2_D0))
    Phi = Phi / jnp.linalg.norm(Phi)
    return Phi, functools.partial(whitened_l2_loss, Phi=Phi)


@functools.partial(jax.jit, static_argnames=("init", "dims", "samples"))
def _sample_inits(key, std, Phi, *, init, dims, samples):
    """``samples`` inits, their deficiency margins w.r.t. Φ and balancedness / ||θ||²."""
    params = jax.vmap(lambda k: init(k, dims, std=std, dtype=std.dtype))(jax.random.split(key, samples))
    margins = jax.vmap(lambda p: deficiency_margin(end_to_end(p), Phi))(params)
    size = jax.vmap(lambda p: sum(jnp.sum(W**2) for W in p))(params)
    relative_balancedness = jax.vmap(balancedness)(params) / jnp.maximum(size, jnp.finfo(std.dtype).tiny)
    return params, margins, relative_balancedness


@jax.jit
def _flow_scales(params, Phi):
    """Per run: (loss, ||θ||, ||∇φ(θ)||, L) with L = Σ_j Π_{k≠j} ||W_k||² + 2||W_e − Φ|| Σ_{j<k}
    Π_{l≠j,k} ||W_l|| (Frobenius norms), a bound on the spectral norm of the Hessian of φ."""
    phi = overparameterized(functools.partial(whitened_l2_loss, Phi=Phi))

    def one(p):
        loss, grad = jax.value_and_grad(phi)(p)
        norms, N = [jnp.linalg.norm(W) for W in p], len(p)
        others = lambda skip: functools.reduce(jnp.multiply, [norms[i] for i in range(N) if i not in skip], 1.0)
        gauss_newton = sum(others((j,)) ** 2 for j in range(N))
        residual = sum(others((j, k)) for j in range(N) for k in range(j + 1, N))
        L = gauss_newton + 2 * jnp.linalg.norm(end_to_end(p) - Phi) * residual
        size = jnp.sqrt(sum(n**2 for n in norms))
        speed = jnp.sqrt(sum(jnp.sum(g**2) for g in grad))
        return loss, size, speed, L

    return jax.vmap(one)(params)


class _FlowRuns(NamedTuple):
    """Gradient flow of a batch of runs up to the horizon (see :func:`_flow_to_horizon`)."""

    hit_time: np.ndarray  # (M,) first recorded time with ℓ <= ε (inf: never)
    status: np.ndarray  # (M,) "converged", "stationary", "diverged", "ascended" or "running"
    end_time: float  # how far the batch was integrated (the horizon unless every run settled)
    chunks: int
    curve_times: np.ndarray  # (R,) record times
    curve_losses: np.ndarray  # (M_plot, R) ℓ(t)/ℓ(0), NaN once a run has settled


def _flow_to_horizon(flow, loss, Phi, params, horizon: float, epsilon: float, plot_runs: int = 24) -> _FlowRuns:
    r"""Integrate every run with ``flow`` until its loss is at most ε or the time reaches ``horizon``.

    The flow is called in chunks of ``_CHUNK_STEPS`` steps, each with one step size for the batch
    (:func:`_chunk_step`). A run settles when its loss reaches ε (gradient flow never raises the
    loss, so then ℓ(τ) <= ε), when its state is bitwise unchanged over a whole chunk (stationary: it
    stays so until τ), or when it becomes non-finite or its loss rises — which no gradient flow does,
    so such a chunk is first retried with a 4x smaller step, ``_RETRIES`` times. Settled runs are
    parked at θ = 0, a fixed point of the flow, so they cost nothing in the vmapped batch.
    """
    M = params[0].shape[0]
    status, hit = np.full(M, "running", dtype=object), np.full(M, np.inf)
    loss0 = np.asarray(_flow_scales(params, Phi)[0])
    t, chunks, times, curves = 0.0, 0, [0.0], [np.ones(plot_runs)]
    while t < horizon * (1 - 1e-12) and np.any(status == "running") and chunks < _MAX_CHUNKS:
        active = status == "running"
        dt = _chunk_step(params, Phi, active, horizon - t)
        for _ in range(_RETRIES + 1):
            run = functools.partial(flow, loss, t_final=_CHUNK_STEPS * dt, dt=dt,
                                    save_every=_CHUNK_STEPS // _CHUNK_RECORDS)
            traj = jax.vmap(run)(params)
            losses = np.asarray(traj.loss)
            diverged = np.asarray(traj.diverged_at) >= 0
            ascended = np.max(losses[:, 1:] - losses[:, :1], axis=1) > _ASCENT_TOLERANCE * loss0
            if not np.any(active & (diverged | ascended)):
                break
            dt /= 4
        record_times = t + dt * (_CHUNK_STEPS // _CHUNK_RECORDS) * np.arange(1, _CHUNK_RECORDS + 1)
        below = losses[:, 1:] <= epsilon
        first = np.where(below.any(axis=1), record_times[np.argmax(below, axis=1)], np.inf)
        unchanged = np.all([np.all(np.asarray(a) == np.asarray(b), axis=(1, 2))
                            for a, b in zip(traj.final, params)], axis=0)
        for name, mask in (("converged", np.isfinite(first)), ("diverged", diverged),
                           ("ascended", ascended), ("stationary", unchanged)):  # in this precedence
            status[active & mask & (status == "running")] = name
        hit[status == "converged"] = np.minimum(hit, first)[status == "converged"]
        times.extend(record_times)
        curves.extend(np.where(active[:plot_runs, None], losses[:plot_runs, 1:] / loss0[:plot_runs, None], np.nan).T)
        park = jnp.asarray(status != "running")
        params = tuple(jnp.where(park[:, None, None], 0.0, W) for W in traj.final)
        t, chunks = t + _CHUNK_STEPS * dt, chunks + 1
    return _FlowRuns(hit, status, t, chunks, np.asarray(times), np.asarray(curves).T)


def _chunk_step(params, Phi, active, time_left: float) -> float:
    """``dt = min(_STABILITY / max L, _SPEED · min ||θ||/||∇φ|| / steps, time_left / steps)`` over the
    ``active`` runs (:func:`_flow_scales`): stable, and no run moves by more than about ``_SPEED``
    of its norm in one chunk."""
    _, size, speed, L = (np.asarray(x)[active] for x in _flow_scales(params, Phi))
    with np.errstate(divide="ignore", invalid="ignore"):
        room = np.where(speed > 0, size / speed, np.inf)  # the time to move by about its own norm
        stable = _STABILITY / np.max(L)
    return float(min(stable, _SPEED * np.min(room) / _CHUNK_STEPS, time_left / _CHUNK_STEPS))


def _zero_init(key, dims, *, std, dtype=None):
    """Every layer zero (std ignored): the stationary point θ = 0."""
    return init_balanced(key, dims, std=0.0, dtype=dtype)


@register(
    "theorem2-constant-probability",
    section="§5",
    claim="ACGH19 Thm 2 (d_N = 1; eta, T(eps) and the bound p = (1 - 2e^{-d_0/16})(3 - 4F(2 sqrt(2/a)))/2 "
          "reconstructed): balanced init (Procedure 1) with s = ||Phi||/sqrt(a d_0^2) reaches "
          "l <= eps within the theorem's horizon with probability >= p. At the theorem's eta "
          "(1.25e-18 at N = 2, 1.7e-20 at N = 3) GD would need T ~ 4e22 / 7e25 steps: impossible, so it "
          "is tested in its eta -> 0 limit, gradient flow (RK4) over tau = eta T(eps) (GD at step eta "
          "tracks GF at time eta t to O(eta)). Measured: min over depths of the Wilson lower end of "
          "P(l(tau) <= eps) / p (>= 1 to pass)",
    regime="d_0 = 100, a = 100 (p = 0.276), ||Phi||_2 = 1, s = 1e-3 (= s_max), eps = 1e-6; depths 2 and 3 "
           "with hidden width 1 (tau = 5.5e4 and 1.2e6); 256 inits per depth (full: 1024), Wilson "
           "intervals at family-wise level 1e-3. Runs stop when l <= eps (GF never raises the loss) or "
           "when stationary; the flow's dt adapts per chunk to a Hessian bound (at most 400 chunks). "
           "Not tight: every sampled init reaches eps by t ~ 10-15, thousands (N = 2) to ~1e5 (N = 3) "
           "times before tau (slack reported), and so do a 10x slower flow, layer-wise Gaussian layers, "
           "std^2 and inits with no margin at all; only a flow or an init that cannot leave the saddle "
           "at 0, or that ascends, fails",
    threshold=1.0,
    relation=">=",
    mutants=[
        mutant("frozen-flow", "gradient flow that never moves", flow=frozen(gradient_flow)),
        mutant("gradient-ascent", "gradient flow following +grad phi", flow=mis_stepped(gradient_flow, -1.0)),
        mutant("zero-init", "every layer initialized to zero (the std ignored)", init=_zero_init),
    ],
)
def check_theorem2(config: VerifyConfig, *, init=init_balanced, flow=gradient_flow) -> Measurement:
    """Per depth: sample the inits, flow them to τ, Wilson lower end / bound. Stops after the
    first depth below the bound (the verdict is then determined)."""
    samples = 1024 if config.full else 256
    Phi, loss = _theorem2_problem(config)
    f = float(jnp.linalg.norm(Phi))
    std = f / math.sqrt(_T2_A * _T2_D0**2)
    epsilon = _T2_EPSILON * f**2
    z = _simultaneous_z(len(_T2_DEPTHS))
    rows, runs = [], {}
    for depth in _T2_DEPTHS:
        cond = theorem2_conditions(std, f, _T2_D0, depth, epsilon, a=_T2_A)
        dims = (_T2_D0,) + (1,) * depth
        key = jax.random.key(config.seed + _T2_STREAM + depth)
        params, margins, unbalance = _sample_inits(key, jnp.asarray(std, jnp.float64), Phi, init=init,
                                                   dims=dims, samples=samples)
        run = _flow_to_horizon(flow, loss, Phi, params, cond.horizon, epsilon)
        runs[depth] = (run, cond)
        rows.append(_theorem2_row(depth, dims, cond, std, f, np.asarray(margins), float(jnp.max(unbalance)), run, z))
        if rows[-1]["wilson_low / bound"] < 1:
            break
    value = min(r["wilson_low / bound"] for r in rows)
    details = {"d_0": _T2_D0, "a": _T2_A, "phi_norm": f, "std": std, "epsilon": epsilon,
               "samples_per_depth": samples, "z (family-wise 1e-3)": z,
               "stopped_early": len(rows) < len(_T2_DEPTHS), "depths": rows}
    return Measurement(value, details, _theorem2_plot(runs, epsilon))


def _theorem2_row(depth, dims, cond, std, phi_norm, margins, unbalance, run: _FlowRuns, z) -> dict:
    """What one depth measured: hypotheses, the event's frequency against the bound, the slack, and
    (information) the proof's own sufficient event, exact and Monte Carlo."""
    M = margins.shape[0]
    converged = int(np.sum(run.status == "converged"))
    low, high = wilson_interval(converged, M, z)
    sufficient = int(np.sum(margins >= cond.margin))
    hits = run.hit_time[np.isfinite(run.hit_time)]
    return {
        "depth": depth, "dims": list(dims),
        "hypotheses": {"d_N": dims[-1], "d_0 (>= 100)": dims[0], "s": std, "s_max": cond.std_max,
                       "max over inits of balancedness / ||theta||^2": unbalance},
        "eta_max": cond.eta_max, "T(eps) steps at eta_max": cond.num_steps, "horizon tau = eta T": cond.horizon,
        "probability_bound": cond.probability,
        "converged": converged, "samples": M, "frequency": converged / M, "wilson": [low, high],
        "wilson_low / bound": low / cond.probability,
        "frequency / bound": converged / M / cond.probability,
        "status_counts": {k: int(np.sum(run.status == k)) for k in ("converged", "stationary", "diverged",
                                                                     "ascended", "running")},
        "integrated_to": run.end_time, "chunks": run.chunks,
        "chunk_budget_exhausted": run.chunks >= _MAX_CHUNKS and run.end_time < cond.horizon * (1 - 1e-12),
        "time_needed_median": float(np.median(hits)) if hits.size else None,
        "time_needed_max": float(np.max(hits)) if hits.size else None,
        "horizon / time_needed_max": cond.horizon / float(np.max(hits)) if hits.size else None,
        "proof_event (margin >= s^2 d_0 / (2||Phi||))": {
            "margin c0": cond.margin,
            "exact": margin_probability_exact(std, dims[0], phi_norm, margin=cond.margin),
            "frequency": sufficient / M, "wilson": list(wilson_interval(sufficient, M, z)),
        },
        "exact P(margin > 0)": margin_probability_exact(std, dims[0], phi_norm),
        "frequency of margin > 0": float(np.mean(margins > 0)),
    }


def _theorem2_plot(runs, epsilon):
    def plot(ax):
        for (depth, (run, cond)), color in zip(runs.items(), ("C0", "C1")):
            t = np.maximum(run.curve_times, 1e-2)
            for i, curve in enumerate(run.curve_losses):
                ax.loglog(t, curve, color=color, alpha=0.4, lw=0.8,
                          label=f"N = {depth}: l(t)/l(0), {len(run.curve_losses)} runs" if i == 0 else None)
            ax.axvline(cond.horizon, color=color, ls="--", label=f"N = {depth}: horizon tau = {cond.horizon:.3g}")
        ax.axhline(2 * epsilon, color="k", ls=":", label="eps / l(0) (l(0) ~ ||Phi||^2/2)")
        ax.set_xlabel("gradient-flow time t (= eta x iterations)")
        ax.set_ylabel("l(t) / l(0)")
        ax.set_title("Theorem 2 in the eta -> 0 limit (runs stop at l <= eps)")
        ax.legend(fontsize="small")

    return plot
