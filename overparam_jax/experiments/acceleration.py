r"""E1 of THEORY.md §8: acceleration by depth on the UCI gas-sensor Ethanol data [ACH18].

**Data.** :func:`overparam_jax.load_gas_ethanol` with ``standardize=True``: ``X`` of shape
``(2565, 128)`` with every column at zero mean and unit standard deviation (the raw sensor
columns span stds from 0.5 to 4·10⁴; the papers' own preprocessing is not known), ``y`` of
shape ``(2565, 1)`` as shipped (standardized). Standardized, ``X^T X / m`` still has a
condition number of about 5·10⁹ (nearly collinear sensors).

**Losses** (the talk's form, no ``1/p``): :math:`\ell_p(W) = \frac1m \sum_i |W x_i - y_i|^p`
for ``p = 2`` and ``p = 4``. ℓ4 is evaluated by :func:`overparam_jax.lp_loss`. ℓ2 is evaluated
from the data moments, :math:`\ell_2(W) = W C W^\top - 2\,W\cdot B + c` with
:math:`C = X^\top X/m`, :math:`B = Y^\top X/m`, :math:`c = \|Y\|_F^2/m`
(:func:`l2_loss_from_moments`): the same function and gradient (an algebraic identity),
at ``d_0² = 16 384`` instead of ``4 m d_0 = 1.3·10⁶`` flops per run-step. Both are checked:
the final weights of every run are re-evaluated with ``lp_loss`` in float64 and the largest
relative gap to the recorded float32 loss is stored (``checks.float64_reevaluation``).

**Networks and dynamics.** Depth ``N`` means ``N`` matrices with hidden width 1, so
``W_e = W_N \cdots W_1`` is a ``(1, 128)`` row; depth 1 is the linear model. Full-batch GD
on every depth (main panel 1, 2, 3; extra panel 4–8) runs in one compiled, vmapped
:func:`overparam_jax.sweep` per loss (depth padded with frozen identity layers), in
**float32**. The init is balanced (``init="balanced"``, ACGH19 Procedure 1): for each seed
the end-to-end row :math:`W_e(0)` has i.i.d. :math:`N(0, \sigma^2)` entries and is the
*same* for every depth and method, and with hidden width 1 and ``d_N = 1`` the factors are
exactly balanced (``|W_1| = |W_2| = \dots = |W_e|^{1/N}``), which the end-to-end update
assumes.

**Learning rate and init protocol** (the paper's values are not known). One protocol for
both losses, decided before the main runs and never adjusted per depth:

1. ``init_std`` σ = 0.01 is fixed a priori (``|W_e(0)| ≈ 0.11``, against a least-squares
   solution of norm 75): "small".
2. Pilot A — the linear model alone: GD at every learning rate of a log grid (half
   decades) for ``pilot_steps`` steps, all seeds. Stable means every seed stayed finite
   and ended below its initial loss. ``lr_linear`` = the largest stable grid value.
3. Pilot B — the same rate for every depth: the largest grid values up to ``lr_linear``
   are run for depths ``depths`` (1, 2, 3), seed ``seeds[0]``, for ``stability_steps``
   steps, by default the whole run; the GD learning rate is the largest at which every
   depth stays finite and decreases. Deeper networks lose stability late: along ``W_e``
   their effective step grows as :math:`N\|W_e\|^{2-2/N}` while ``W_e`` grows. On ℓ4
   with σ = 0.01, depth 3 at the linear model's largest stable rate (10⁻³) diverges after
   ~6.6·10⁴ steps, and at the next grid value (3.16·10⁻⁴) after ~7·10⁵ steps in every
   seed — which a first version of this protocol, with a 10⁵-step pilot B, chose. The
   extra depths 4–8 get the chosen rate too; whether they diverge is reported, not tuned
   for. When pilot B is as long as the run (the default), its runs at the chosen rate
   *are* seed ``seeds[0]`` of the main panel (the same computation, not repeated), and
   the main sweep runs the other seeds.
4. Because step 3 can leave the linear model below its own best rate, the linear model
   is also run at ``lr_linear`` ("GD depth 1, own lr") as a fair reference.
5. Optimizers (AdaGrad, AdaDelta, Adam on the linear model; Adam on depth 3), on the
   losses in ``optimizer_losses``: each at the learning rate of one shared log grid
   whose pilot (``optimizer_pilot_steps`` steps, seed ``seeds[0]``) ends at the lowest
   finite loss.

Pilots, choices and every pilot loss are stored in the JSON (``protocol``).

**Baselines in one program.** The optimizers and the reference GD run through
:func:`overparam_jax.optax_descent`, vmapped over runs: one ``optax.GradientTransformation``
holds SGD, AdaGrad, AdaDelta and Adam states and a traced index picks the update of each
run (:func:`baseline_transformation`), so every baseline shares one compiled program and
one data matmul per step. Linear-model runs are laid out as depth-3 networks with frozen
identity layers (:func:`overparam_jax.pad_to_depth`) when Adam on depth 3 runs beside them;
updates of frozen layers are masked to zero.

**Discrete end-to-end update** (THEORY.md §4): :math:`W_e \leftarrow W_e - \eta P_{W_e}
\nabla\ell(W_e)` at the GD learning rate, for depths 2 and 3, from the same
:math:`W_e(0)`, by ``sweep(dynamics="end_to_end")`` (for ``d_N = 1`` the library applies
the rank-one closed form :math:`P_w g = \|w\|^{2-2/N}(g + (N-1)\mathrm{Pr}_w g)`). Its
loss curves are compared with the networks' up to the first divergence of either
(``checks.end_to_end_vs_network``); the largest balancedness along GD is recorded beside
it, since the update assumes exact balance.

**Reported.** Loss curves every ``save_every`` steps (t = 0 included) for every run; the
loss at 10 %, 25 %, 50 % and 100 % of the run (10⁵, 2.5·10⁵, 5·10⁵, 10⁶ in full mode),
medians over seeds; for every run, the first recorded iteration at which it reaches the
final loss of depth 1 (GD, same seed); the ACH18 observations as measured numbers
(``claims``); wall times and the machine's load average.

References:
    [ACH18] Arora, Cohen, Hazan. On the Optimization of Deep Networks: Implicit
    Acceleration by Overparameterization. ICML 2018, §7 and Figures 2–4.
    Vergara et al. 2012 (UCI dataset 270), see :func:`overparam_jax.load_gas_ethanol`.
"""

from __future__ import annotations

import functools
import os
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from overparam_jax.checkpoint import CheckpointDir
from overparam_jax.datasets import load_gas_ethanol
from overparam_jax.dynamics import Trajectory, optax_descent
from overparam_jax.losses import LossFn, lp_loss
from overparam_jax.networks import end_to_end, init_balanced
from overparam_jax.sweeps import pad_to_depth, shard_runs, sweep

__all__ = [
    "AccelerationConfig",
    "AccelerationResult",
    "BASELINE_METHODS",
    "LOSSES",
    "Progress",
    "baseline_transformation",
    "depth_figure",
    "extra_depths_figure",
    "l2_loss_from_moments",
    "optimizer_figure",
    "quick_config",
    "result_to_dict",
    "run_acceleration_experiment",
    "summary_markdown",
    "validate_config",
    "with_steps",
    "write_outputs",
]

_DTYPE = jnp.float32
LOSSES: dict[str, float] = {"l2": 2.0, "l4": 4.0}
BASELINE_METHODS = ("gd", "adagrad", "adadelta", "adam")
_OPTIMIZERS = (("adagrad", 1), ("adadelta", 1), ("adam", 1), ("adam", 3))
_MILESTONE_FRACTIONS = (0.1, 0.25, 0.5, 1.0)


def _half_decades(lo: int, hi: int) -> tuple[float, ...]:
    """10^lo, 10^(lo+1/2), ..., 10^hi."""
    return tuple(float(f"{10 ** (k / 2):.4g}") for k in range(2 * lo, 2 * hi + 1))


class AccelerationConfig(NamedTuple):
    """Hyperparameters of E1 (full mode by default).

    Attributes:
        num_steps: GD iterations of every run.
        save_every: record the loss every this many steps (``num_steps`` is a multiple).
        seeds: integer seeds of the main GD runs (the init of each depth; ≥ 5 for a band).
        extra_seeds: how many of the first ``seeds`` the extra depths run on.
        baseline_seeds: how many of the first ``seeds`` the optimizers, the reference GD
            and the end-to-end update run on.
        depths: the main panel (depth 1 = the linear model); must contain 1.
        extra_depths: the extra panel (a second sweep; may be empty).
        losses: which of :data:`LOSSES` to run.
        optimizer_losses: losses with the optimizer comparison (the paper's is on ℓ4).
        end_to_end_depths: depths of the discrete end-to-end update.
        init_std: σ of the end-to-end init entries.
        lr_grid: the log grid of the GD pilots.
        pilot_steps: length of pilot A (linear model, all seeds).
        stability_steps: length of pilot B (main depths, ``seeds[0]``); the whole run by
            default, since deeper networks can lose stability late.
        stability_candidates: how many of the largest grid values ≤ ``lr_linear`` pilot B tries.
        optimizer_lr_grid: the shared log grid of the optimizers.
        optimizer_pilot_steps: length of the optimizer pilot (``seeds[0]``).
    """

    num_steps: int = 1_000_000
    save_every: int = 1000
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    extra_seeds: int = 1
    baseline_seeds: int = 1
    depths: tuple[int, ...] = (1, 2, 3)
    extra_depths: tuple[int, ...] = (4, 5, 6, 7, 8)
    losses: tuple[str, ...] = ("l2", "l4")
    optimizer_losses: tuple[str, ...] = ("l4",)
    end_to_end_depths: tuple[int, ...] = (2, 3)
    init_std: float = 0.01
    lr_grid: tuple[float, ...] = _half_decades(-5, 0)
    pilot_steps: int = 2_000
    stability_steps: int = 1_000_000
    stability_candidates: int = 3
    optimizer_lr_grid: tuple[float, ...] = _half_decades(-4, 1)
    optimizer_pilot_steps: int = 20_000


def quick_config(**overrides: Any) -> AccelerationConfig:
    """A smoke run for ``--quick`` and the tests (well under a minute on 2 cores)."""
    base = dict(
        num_steps=1000, save_every=20, seeds=(0, 1), extra_seeds=1, baseline_seeds=1, extra_depths=(4,),
        lr_grid=(1e-3, 3.162e-3, 1e-2), pilot_steps=100, stability_steps=1000,
        stability_candidates=2, optimizer_lr_grid=(1e-2, 1e-1), optimizer_pilot_steps=100,
    )
    return AccelerationConfig(**{**base, **overrides})


def _save_every_for(num_steps: int, records: int = 1000) -> int:
    """The largest divisor of ``num_steps`` that is at most ``num_steps // records`` (≥ 1)."""
    for s in range(max(1, num_steps // records), 0, -1):
        if num_steps % s == 0:
            return s
    return 1


def with_steps(config: AccelerationConfig, num_steps: int) -> AccelerationConfig:
    """``config`` for ``num_steps`` iterations: about 1000 records, pilots A and of the
    optimizers no longer than the run, pilot B (stability) as long as the run."""
    return config._replace(
        num_steps=num_steps,
        save_every=_save_every_for(num_steps),
        pilot_steps=min(config.pilot_steps, num_steps),
        stability_steps=num_steps,
        optimizer_pilot_steps=min(config.optimizer_pilot_steps, num_steps),
    )


def validate_config(config: AccelerationConfig) -> None:
    """Raise ``ValueError`` naming the field if ``config`` cannot run."""
    ints = ("num_steps", "save_every", "extra_seeds", "baseline_seeds", "pilot_steps", "stability_steps",
            "stability_candidates", "optimizer_pilot_steps")
    for name in ints:
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"`{name}` must be a positive integer, but is {value!r}.")
    if config.num_steps % config.save_every:
        raise ValueError(
            f"`num_steps` ({config.num_steps}) must be a multiple of `save_every` ({config.save_every})."
        )
    for name in ("pilot_steps", "stability_steps", "optimizer_pilot_steps"):
        if getattr(config, name) % 10:
            raise ValueError(f"`{name}` must be a multiple of 10, but is {getattr(config, name)}.")
    if not config.seeds or len(set(config.seeds)) != len(config.seeds):
        raise ValueError(f"`seeds` must be distinct integers, at least one, but is {config.seeds!r}.")
    for name in ("extra_seeds", "baseline_seeds"):
        if getattr(config, name) > len(config.seeds):
            raise ValueError(
                f"`{name}` ({getattr(config, name)}) must be at most the number of seeds "
                f"({len(config.seeds)})."
            )
    if 1 not in config.depths:
        raise ValueError(f"`depths` must contain 1 (the linear model), but is {config.depths!r}.")
    all_depths = tuple(config.depths) + tuple(config.extra_depths)
    if len(set(all_depths)) != len(all_depths) or min(all_depths) < 1:
        raise ValueError(f"depths must be distinct and >= 1, got {all_depths!r}.")
    unknown = set(config.losses) - set(LOSSES)
    if unknown or not config.losses:
        raise ValueError(f"`losses` must be a non-empty subset of {tuple(LOSSES)}, but is {config.losses!r}.")
    if not set(config.optimizer_losses) <= set(config.losses):
        raise ValueError(
            f"`optimizer_losses` {config.optimizer_losses!r} must be among `losses` {config.losses!r}."
        )
    if not set(config.end_to_end_depths) <= set(config.depths):
        raise ValueError(
            f"`end_to_end_depths` {config.end_to_end_depths!r} must be among `depths` {config.depths!r}."
        )
    for name in ("lr_grid", "optimizer_lr_grid"):
        grid = getattr(config, name)
        if not grid or any(not (g > 0) for g in grid):
            raise ValueError(f"`{name}` must be a non-empty sequence of positive numbers, got {grid!r}.")
    if not config.init_std > 0:
        raise ValueError(f"`init_std` must be positive, but is {config.init_std}.")


# --------------------------------------------------------------------------------------
# Losses
# --------------------------------------------------------------------------------------


def l2_loss_from_moments(W_e: jax.Array, C: jax.Array, B: jax.Array, c: jax.Array) -> jax.Array:
    r"""ℓ2 through the data moments: :math:`\frac1m\|X W^\top - Y\|_F^2 = \mathrm{tr}(W C W^\top) - 2\,W\cdot B + c`.

    Args:
        W_e: ``(d_N, d_0)``.
        C: :math:`X^\top X / m`, ``(d_0, d_0)``.
        B: :math:`Y^\top X / m`, ``(d_N, d_0)``.
        c: :math:`\|Y\|_F^2 / m`, a scalar.

    Equal to ``lp_loss(W_e, X, Y, p=2)`` (the talk's form) up to round-off, at ``O(d_0²)``
    per evaluation instead of ``O(m d_0)``.
    """
    return jnp.sum((W_e @ C) * W_e) - 2 * jnp.sum(W_e * B) + c


class _Problem(NamedTuple):
    name: str
    p: float
    loss_fn: LossFn  # float32, reused across calls so compiled programs are reused
    X64: np.ndarray
    Y64: np.ndarray


def _problems(names: Sequence[str]) -> dict[str, _Problem]:
    X, Y = load_gas_ethanol(standardize=True)
    m = X.shape[0]
    out = {}
    for name in names:
        p = LOSSES[name]
        if p == 2.0:
            moments = (X.T @ X / m, Y.T @ X / m, np.sum(Y * Y) / m)
            C, B, c = (jnp.asarray(a, _DTYPE) for a in moments)
            loss_fn = functools.partial(l2_loss_from_moments, C=C, B=B, c=c)
        else:
            loss_fn = functools.partial(lp_loss, X=jnp.asarray(X, _DTYPE), Y=jnp.asarray(Y, _DTYPE), p=p)
        out[name] = _Problem(name, p, loss_fn, X, Y)
    return out


# --------------------------------------------------------------------------------------
# Baselines: one optax transformation for every method, chosen by a traced index
# --------------------------------------------------------------------------------------


def baseline_transformation(
    method: jax.Array, learning_rate: jax.Array, mask: Sequence[jax.Array]
) -> optax.GradientTransformation:
    r"""SGD (= GD), AdaGrad, AdaDelta or Adam (optax defaults), picked by ``method``.

    ``method`` indexes :data:`BASELINE_METHODS`; it and ``learning_rate`` may be traced, so
    runs of different methods share one vmapped program. Every method's update is computed
    and the chosen one is returned, multiplied by ``mask`` (0 on frozen layers).
    """
    inner = (optax.sgd(learning_rate), optax.adagrad(learning_rate),
             optax.adadelta(learning_rate), optax.adam(learning_rate))

    def init(params):
        return tuple(o.init(params) for o in inner)

    def update(grads, state, params=None):
        results = [o.update(grads, s, params) for o, s in zip(inner, state)]
        chosen = jax.tree_util.tree_map(lambda *us: jnp.stack(us)[method], *[u for u, _ in results])
        return jax.tree_util.tree_map(jnp.multiply, chosen, tuple(mask)), tuple(s for _, s in results)

    return optax.GradientTransformation(init, update)


class _Spec(NamedTuple):
    """One baseline: ``method`` on a depth-``depth`` network, or (``"end_to_end"``) the
    discrete end-to-end update of depth ``depth``."""

    key: str
    method: str
    depth: int
    learning_rate: float


def _baseline_runs(
    problem: _Problem, specs: Sequence[_Spec], seeds: Sequence[int], *, init_std: float,
    num_steps: int, save_every: int,
) -> Trajectory:
    """Every (spec, seed) as one vmapped ``optax_descent``; fields have leading axes (spec, seed)."""
    D = max(s.depth for s in specs)
    params, masks, methods, lrs = [], [], [], []
    for spec in specs:
        for seed in seeds:
            p0 = init_balanced(jax.random.key(seed), (128,) + (1,) * spec.depth, std=init_std,
                               dtype=_DTYPE)
            padded = pad_to_depth(p0, D, hidden_width=1)
            params.append(padded.params)
            masks.append(padded.mask)
            methods.append(BASELINE_METHODS.index(spec.method))
            lrs.append(spec.learning_rate)
    stack = lambda trees: jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *trees)

    def one(p, mask, method, lr):
        opt = baseline_transformation(method, lr, mask)
        return optax_descent(problem.loss_fn, p, opt, num_steps=num_steps, save_every=save_every)

    runs, n = shard_runs((stack(params), stack(masks), jnp.asarray(methods), jnp.asarray(lrs, _DTYPE)))
    traj = jax.vmap(one)(*runs)
    shape = (len(specs), len(seeds))
    return jax.tree_util.tree_map(lambda x: x[:n].reshape(shape + x.shape[1:]), traj)


# --------------------------------------------------------------------------------------
# The experiment
# --------------------------------------------------------------------------------------


class Progress(NamedTuple):
    """What the progress callback receives: ``stage`` has done ``done`` of ``total`` steps.

    A stage without inner progress reports ``done = 0`` when it starts and ``total`` when
    it ends.
    """

    stage: str
    done: int
    total: int


ProgressFn = Callable[[Progress], None]


class _GD(NamedTuple):
    lr: float
    depths: tuple[int, ...]
    loss: np.ndarray  # (S, K, T)
    diverged_at: np.ndarray  # (S, K)
    balancedness_t0: float
    balancedness_max: np.ndarray  # (S, K)
    final_W_e: np.ndarray  # (S, K, 1, d_0)


class _Baselines(NamedTuple):
    specs: tuple[_Spec, ...]
    loss: np.ndarray  # (B, S_b, T)
    diverged_at: np.ndarray  # (B, S_b)
    final_W_e: np.ndarray  # (B, S_b, 1, d_0)


class AccelerationResult(NamedTuple):
    """Everything E1 measured.

    Attributes:
        config: the :class:`AccelerationConfig`.
        steps: ``(T,)`` the recorded iterations (0, save_every, ..., num_steps).
        protocol: per loss, the pilots and the chosen learning rates (JSON-ready).
        gd: per loss, the GD sweep of the main depths (seeds × depths).
        gd_extra: per loss, the GD sweep of the extra depths (first ``extra_seeds`` seeds).
        baselines: per loss, the optimizers, the reference GD and the end-to-end runs.
        checks: per loss, the float64 re-evaluation, preconditioner forms and e2e gaps.
        seconds: wall time of each stage and in total.
        load_average: ``os.getloadavg()`` at the start and at the end.
    """

    config: AccelerationConfig
    steps: np.ndarray
    protocol: dict[str, Any]
    gd: dict[str, _GD]
    gd_extra: dict[str, _GD]
    baselines: dict[str, _Baselines]
    checks: dict[str, Any]
    seconds: dict[str, float]
    load_average: dict[str, list[float]]


def _stable(loss: np.ndarray, diverged_at: np.ndarray) -> np.ndarray:
    """Per leading index: finite throughout and below the initial loss at the end (all seeds)."""
    ok = (diverged_at < 0) & (loss[..., -1] < loss[..., 0]) & np.all(np.isfinite(loss), axis=-1)
    return ok


def _stage(checkpoint: CheckpointDir | None, name: str) -> Path | None:
    return None if checkpoint is None else checkpoint.stage(name)


def _memo(checkpoint: CheckpointDir | None, name: str, compute):
    return compute() if checkpoint is None else checkpoint.memo(name, compute)


def _sweep_loss(problem, *, depths, seeds, learning_rates, init_std, num_steps, save_every, progress,
                checkpoint):
    res = sweep(
        problem.loss_fn, input_dim=128, output_dim=1, hidden_width=1, depths=list(depths),
        seeds=list(seeds), learning_rates=list(learning_rates), init_scales=[init_std],
        num_steps=num_steps, save_every=save_every, init="balanced", dynamics="network",
        dtype=_DTYPE, progress=progress, checkpoint=checkpoint,
    )
    return res.trajectory  # leading axes (seed, lr, scale, depth)


def _gd_from(traj: Trajectory, lr: float, depths: Sequence[int], lr_index: int = 0) -> _GD:
    """The runs at ``learning_rates[lr_index]`` of a sweep trajectory (axes seed, lr, scale, depth)."""
    pick = lambda x: np.asarray(x)[:, lr_index, 0]
    padded = jax.tree_util.tree_map(lambda x: x[:, lr_index, 0], traj.final)
    bal = pick(traj.balancedness)
    return _GD(
        lr=lr, depths=tuple(depths), loss=pick(traj.loss), diverged_at=pick(traj.diverged_at),
        balancedness_t0=float(np.max(bal[..., 0])), balancedness_max=np.max(bal, axis=-1),
        final_W_e=np.asarray(jax.vmap(jax.vmap(end_to_end))(tuple(padded))),
    )


def _gd_sweep(problem, config, lr, depths, seeds, report, checkpoint=None, done: _GD | None = None) -> _GD:
    """GD on ``depths`` × ``seeds`` at one learning rate: one compiled, vmapped sweep.

    ``done``: the runs of the first seeds, already computed (pilot B's runs at the chosen
    rate); only the other seeds are run, and the result holds all of them in order.
    """
    n_done = 0 if done is None else done.loss.shape[0]
    if n_done == len(seeds):
        return done
    rest = seeds[n_done:]
    traj = _sweep_loss(problem, depths=depths, seeds=rest, learning_rates=[lr],
                       init_std=config.init_std, num_steps=config.num_steps,
                       save_every=config.save_every,
                       progress=report(f"{problem.name} GD, depths {list(depths)} × {len(rest)} seeds"),
                       checkpoint=_stage(checkpoint, f"{problem.name}_gd_depths_{'_'.join(map(str, depths))}"))
    new = _gd_from(traj, lr, depths)
    if done is None:
        return new
    joined = {f: np.concatenate([getattr(done, f), getattr(new, f)])
              for f in ("loss", "diverged_at", "balancedness_max", "final_W_e")}
    return new._replace(balancedness_t0=max(done.balancedness_t0, new.balancedness_t0), **joined)


def _pilot_gd(
    problem: _Problem, config: AccelerationConfig, report, checkpoint=None
) -> tuple[dict[str, Any], _GD | None]:
    """Pilots A and B of the protocol (module docstring): the JSON-ready record, and pilot
    B's runs at the chosen rate when they can stand for seed ``seeds[0]`` of the main panel."""
    grid = sorted(config.lr_grid)
    a_every = config.pilot_steps // 10
    # Depth 2 rides along: `sweep` fails for a maximal depth of 1 (an empty balancedness
    # stack in the padded GD); only depth 1 decides.
    traj = _sweep_loss(problem, depths=[1, 2], seeds=config.seeds, learning_rates=grid,
                       init_std=config.init_std, num_steps=config.pilot_steps, save_every=a_every,
                       progress=report(f"{problem.name} pilot A (lr grid, depth 1)"),
                       checkpoint=_stage(checkpoint, f"{problem.name}_pilot_a"))
    loss = np.asarray(traj.loss)[:, :, 0, 0]  # (S, L, T)
    div = np.asarray(traj.diverged_at)[:, :, 0, 0]  # (S, L)
    stable_a = np.all(_stable(loss, div), axis=0)  # (L,)
    if not stable_a.any():
        raise RuntimeError(f"{problem.name}: no learning rate of the grid is stable for the linear model.")
    lr_linear = max(lr for lr, ok in zip(grid, stable_a) if ok)
    pilot_a = {
        "depth": 1, "seeds": list(config.seeds), "steps": config.pilot_steps,
        "learning_rates": grid, "stable": stable_a.tolist(),
        "final_loss_median": np.median(loss[..., -1], axis=0).tolist(),
        "diverged_at": div.T.tolist(),
    }
    below = [lr for lr in grid if lr <= lr_linear][::-1][: config.stability_candidates]
    # As long as the main run, pilot B records like it, and its runs at the chosen rate
    # become seed seeds[0] of the main panel (the same computation).
    reusable = config.stability_steps == config.num_steps
    b_every = config.save_every if reusable else config.stability_steps // 10
    traj = _sweep_loss(problem, depths=config.depths, seeds=config.seeds[:1], learning_rates=below,
                       init_std=config.init_std, num_steps=config.stability_steps, save_every=b_every,
                       progress=report(f"{problem.name} pilot B (same lr, depths {list(config.depths)})"),
                       checkpoint=_stage(checkpoint, f"{problem.name}_pilot_b"))
    loss_b = np.asarray(traj.loss)[0, :, 0]  # (L, K, T)
    div_b = np.asarray(traj.diverged_at)[0, :, 0]  # (L, K)
    stable_b = np.all(_stable(loss_b, div_b), axis=1)  # (L,)
    chosen = next((lr for lr, ok in zip(below, stable_b) if ok), None)
    pilot_b = {
        "depths": list(config.depths), "seed": config.seeds[0], "steps": config.stability_steps,
        "learning_rates": below, "stable": stable_b.tolist(), "diverged_at": div_b.tolist(),
        "final_loss": loss_b[..., -1].tolist(),
    }
    lr_gd = chosen if chosen is not None else min(below)
    record = {
        "pilot_a": pilot_a, "pilot_b": pilot_b, "lr_linear": lr_linear, "lr_gd": lr_gd,
        "lr_gd_stable_in_pilot": chosen is not None, "main_seed_0_from_pilot_b": reusable,
    }
    return record, (_gd_from(traj, lr_gd, config.depths, below.index(lr_gd)) if reusable else None)


def _pilot_optimizers(problem: _Problem, config: AccelerationConfig, report,
                      checkpoint=None) -> dict[str, Any]:
    grid = sorted(config.optimizer_lr_grid)
    specs = [_Spec(f"{m}_d{d}", m, d, lr) for m, d in _OPTIMIZERS for lr in grid]
    callback = report(f"{problem.name} optimizer pilot ({len(specs)} runs, no inner progress)")
    _call(callback, 0, config.optimizer_pilot_steps)
    traj = _memo(checkpoint, f"{problem.name}_pilot_optimizers", lambda: _baseline_runs(
        problem, specs, config.seeds[:1], init_std=config.init_std,
        num_steps=config.optimizer_pilot_steps, save_every=config.optimizer_pilot_steps // 10))
    _call(callback, config.optimizer_pilot_steps, config.optimizer_pilot_steps)
    final = np.asarray(traj.loss)[:, 0, -1].reshape(len(_OPTIMIZERS), len(grid))
    div = np.asarray(traj.diverged_at)[:, 0].reshape(len(_OPTIMIZERS), len(grid))
    out: dict[str, Any] = {"learning_rates": grid, "seed": config.seeds[0],
                           "steps": config.optimizer_pilot_steps, "runs": {}, "chosen": {}}
    for i, (m, d) in enumerate(_OPTIMIZERS):
        key = f"{m}_d{d}"
        score = np.where((div[i] < 0) & np.isfinite(final[i]), final[i], np.inf)
        out["runs"][key] = {"final_loss": final[i].tolist(), "diverged_at": div[i].tolist()}
        out["chosen"][key] = grid[int(np.argmin(score))] if np.isfinite(score).any() else None
    return out


def _e2e_sweep(problem: _Problem, config: AccelerationConfig, lr: float, report,
               checkpoint=None) -> _Baselines:
    """The discrete end-to-end update of every ``end_to_end_depths`` from the same W_e(0)."""
    depths, seeds = config.end_to_end_depths, config.seeds[: config.baseline_seeds]
    res = sweep(
        problem.loss_fn, input_dim=128, output_dim=1, hidden_width=1, depths=list(depths),
        seeds=list(seeds), learning_rates=[lr], init_scales=[config.init_std],
        num_steps=config.num_steps, save_every=config.save_every, init="balanced",
        dynamics="end_to_end", dtype=_DTYPE,
        progress=report(f"{problem.name} end-to-end update, depths {list(depths)} × {len(seeds)} seeds"),
        checkpoint=_stage(checkpoint, f"{problem.name}_end_to_end"),
    )
    traj = res.trajectory  # axes (seed, lr, scale, depth, ...)
    move = lambda x: np.moveaxis(np.asarray(x)[:, 0, 0], 1, 0)  # (depth, seed, ...)
    specs = tuple(_Spec(f"end_to_end_d{N}", "end_to_end", N, lr) for N in depths)
    return _Baselines(specs, move(traj.loss), move(traj.diverged_at), move(traj.final))


def _call(callback, done: int, total: int) -> None:
    if callback is not None:
        callback(done, total)


def _baseline_specs(config: AccelerationConfig, name: str, protocol: dict[str, Any]) -> list[_Spec]:
    lr_gd, lr_linear = protocol["lr_gd"], protocol["lr_linear"]
    specs = [_Spec("gd_d1_own_lr", "gd", 1, lr_linear)] if lr_linear != lr_gd else []
    if name in config.optimizer_losses:
        for key, lr in protocol["optimizers"]["chosen"].items():
            if lr is not None:
                m, d = key.rsplit("_d", 1)
                specs.append(_Spec(key, m, int(d), lr))
    return specs


def _float64_gap(problem: _Problem, W_e: np.ndarray, recorded: np.ndarray) -> float:
    """Largest relative gap between recorded float32 final losses and ``lp_loss`` in float64."""
    W = np.asarray(W_e, np.float64).reshape(-1, W_e.shape[-1])
    r = problem.X64 @ W.T - problem.Y64  # (m, runs)
    exact = np.mean(np.abs(r) ** problem.p, axis=0)
    rec = np.asarray(recorded, np.float64).reshape(-1)
    ok = np.isfinite(rec) & np.isfinite(exact)
    return float(np.max(np.abs(rec[ok] - exact[ok]) / exact[ok])) if ok.any() else float("nan")


def _e2e_gap(gd: _GD, base: _Baselines, n_seeds: int, save_every: int) -> dict[str, Any]:
    """Per end-to-end depth: max over seeds and over the records before either run diverged
    of |ℓ_e2e − ℓ_net| / ℓ_net."""
    out = {}
    for b, spec in enumerate(base.specs):
        if spec.method != "end_to_end":
            continue
        k = gd.depths.index(spec.depth)
        net, e2e = gd.loss[:n_seeds, k], base.loss[b]
        steps = np.arange(net.shape[-1]) * save_every
        first = np.stack([gd.diverged_at[:n_seeds, k], base.diverged_at[b]]).astype(np.int64)
        until = np.min(np.where(first < 0, np.iinfo(np.int64).max, first), axis=0)  # (S_b,)
        gap = np.where(steps[None, :] < until[:, None], np.abs(e2e - net) / np.abs(net), 0.0)
        out[f"depth_{spec.depth}"] = {
            "max_relative_gap": float(np.max(gap)),
            "max_relative_gap_per_seed": np.max(gap, axis=-1).tolist(),
            "compared_until_step": [None if u == np.iinfo(np.int64).max else int(u) for u in until],
        }
    return out


def run_acceleration_experiment(
    config: AccelerationConfig = AccelerationConfig(), *, progress: ProgressFn | None = None,
    checkpoint: CheckpointDir | None = None,
) -> AccelerationResult:
    """Run E1: pilots, the GD sweeps, the baselines and the checks (module docstring).

    With ``checkpoint``, every sweep saves its state there after each of its chunks and
    the optax programs (one piece each) after they finish; a rerun with the same folder
    resumes and returns the same result, bit for bit.
    """
    validate_config(config)
    load_start = list(os.getloadavg())
    seconds: dict[str, float] = {}
    t_all = time.perf_counter()

    def report(stage: str):
        """The ``(done, total)`` callback of a stage; ``None`` without ``progress`` (so sweeps
        run as one scan instead of chunks)."""
        if progress is None:
            return None
        return lambda done, total: progress(Progress(stage, done, total))

    problems = _problems(config.losses)
    S_b = config.baseline_seeds
    protocol, gd, gd_extra, baselines, checks = {}, {}, {}, {}, {}
    for name, problem in problems.items():
        t = time.perf_counter()
        record, seed_0 = _pilot_gd(problem, config, report, checkpoint)
        seconds[f"{name}_pilots_gd"] = time.perf_counter() - t
        if name in config.optimizer_losses:
            t = time.perf_counter()
            record["optimizers"] = _pilot_optimizers(problem, config, report, checkpoint)
            seconds[f"{name}_pilot_optimizers"] = time.perf_counter() - t
        protocol[name] = record

        t = time.perf_counter()
        gd[name] = _gd_sweep(problem, config, record["lr_gd"], config.depths, config.seeds, report,
                             checkpoint, done=seed_0)
        seconds[f"{name}_gd"] = time.perf_counter() - t
        if config.extra_depths:
            t = time.perf_counter()
            gd_extra[name] = _gd_sweep(problem, config, record["lr_gd"], config.extra_depths,
                                       config.seeds[: config.extra_seeds], report, checkpoint)
            seconds[f"{name}_gd_extra_depths"] = time.perf_counter() - t

        parts = []
        specs = _baseline_specs(config, name, record)
        if specs:
            t = time.perf_counter()
            callback = report(f"{name} baselines ({len(specs)} methods × {S_b} seeds, one program, "
                              "no inner progress)")
            _call(callback, 0, config.num_steps)
            btraj = _memo(checkpoint, f"{name}_baselines", lambda: _baseline_runs(
                problem, specs, config.seeds[:S_b], init_std=config.init_std,
                num_steps=config.num_steps, save_every=config.save_every))
            _call(callback, config.num_steps, config.num_steps)
            final_W = jax.vmap(jax.vmap(end_to_end))(tuple(btraj.final))
            parts.append(_Baselines(tuple(specs), np.asarray(btraj.loss),
                                    np.asarray(btraj.diverged_at), np.asarray(final_W)))
            seconds[f"{name}_baselines"] = time.perf_counter() - t
        if config.end_to_end_depths:
            t = time.perf_counter()
            parts.append(_e2e_sweep(problem, config, record["lr_gd"], report, checkpoint))
            seconds[f"{name}_end_to_end"] = time.perf_counter() - t
        baselines[name] = b = _Baselines(
            specs=tuple(sp for part in parts for sp in part.specs),
            **{field: np.concatenate([getattr(part, field) for part in parts])
               for field in ("loss", "diverged_at", "final_W_e")},
        )
        sweeps = [gd[name]] + ([gd_extra[name]] if name in gd_extra else [])
        checks[name] = {
            "float64_reevaluation": {
                "gd": max(_float64_gap(problem, g.final_W_e, g.loss[..., -1]) for g in sweeps),
                "baselines": _float64_gap(problem, b.final_W_e, b.loss[..., -1]),
            },
            "end_to_end_vs_network": _e2e_gap(gd[name], b, S_b, config.save_every),
            "balancedness_at_init": max(g.balancedness_t0 for g in sweeps),
            "balancedness_max_along_gd": {
                f"depth_{d}": float(np.max(g.balancedness_max[:, k]))
                for g in sweeps for k, d in enumerate(g.depths)
            },
        }
    seconds["total"] = time.perf_counter() - t_all
    steps = np.arange(0, config.num_steps + 1, config.save_every)
    return AccelerationResult(config, steps, protocol, gd, gd_extra, baselines, checks, seconds,
                              {"start": load_start, "end": list(os.getloadavg())})


# --------------------------------------------------------------------------------------
# Summaries
# --------------------------------------------------------------------------------------


_LABELS = {
    "gd_d1_own_lr": "GD depth 1 (linear), its own largest stable lr",
    "adagrad_d1": "AdaGrad, depth 1",
    "adadelta_d1": "AdaDelta, depth 1",
    "adam_d1": "Adam, depth 1",
    "adam_d3": "Adam, depth 3",
}


def _label(key: str) -> str:
    if key.startswith("gd_depth_"):
        return f"GD depth {key.rsplit('_', 1)[1]}"
    if key.startswith("end_to_end_d"):
        return f"end-to-end update, N = {key.rsplit('_d', 1)[1]}"
    return _LABELS.get(key, key)


def _series(result: AccelerationResult, name: str) -> dict[str, dict[str, Any]]:
    """Every run family of one loss: ``{key: {"lr", "loss": (S, T), "diverged_at": (S,)}}``."""
    out = {}
    for g in [result.gd[name]] + ([result.gd_extra[name]] if name in result.gd_extra else []):
        for k, d in enumerate(g.depths):
            out[f"gd_depth_{d}"] = {"lr": g.lr, "loss": g.loss[:, k], "diverged_at": g.diverged_at[:, k],
                                    "method": "gd", "depth": d}
    b = result.baselines[name]
    for i, spec in enumerate(b.specs):
        out[spec.key] = {"lr": spec.learning_rate, "loss": b.loss[i], "diverged_at": b.diverged_at[i],
                         "method": spec.method, "depth": spec.depth}
    return out


def _first_reach(curve: np.ndarray, steps: np.ndarray, level: float) -> int | None:
    hit = np.nonzero(curve <= level)[0]
    return int(steps[hit[0]]) if hit.size else None


def _milestone_steps(config: AccelerationConfig) -> list[int]:
    return [int(round(f * config.num_steps / config.save_every)) * config.save_every
            for f in _MILESTONE_FRACTIONS]


def _table(result: AccelerationResult, name: str) -> dict[str, dict[str, Any]]:
    """Per run family: milestone losses (median over seeds), iterations to reach depth 1's
    final loss (same seed), final-loss ratio to depth 1."""
    steps, config = result.steps, result.config
    series = _series(result, name)
    ref = series["gd_depth_1"]["loss"][:, -1]  # depth-1 final loss, per seed
    rows = {}
    for key, s in series.items():
        loss = s["loss"]
        n = loss.shape[0]
        reach = [_first_reach(loss[i], steps, ref[i]) if s["diverged_at"][i] < 0 else None
                 for i in range(n)]
        reached = [r for r in reach if r is not None]
        final = loss[:, -1]
        rows[key] = {
            "label": _label(key), "method": s["method"], "depth": s["depth"],
            "learning_rate": s["lr"], "seeds": n,
            "diverged": int(np.sum(s["diverged_at"] >= 0)),
            "first_divergence": (int(np.min(s["diverged_at"][s["diverged_at"] >= 0]))
                                 if np.any(s["diverged_at"] >= 0) else None),
            "milestones": {str(m): float(np.median(loss[:, m // config.save_every]))
                           for m in _milestone_steps(config)},
            "final_median": float(np.median(final)),
            "final_ratio_to_depth1": float(np.median(ref[:n] / final)),
            "iterations_to_depth1_final": reach,
            "iterations_to_depth1_final_median": (
                float(np.median(reached)) if len(reached) == n else None),
        }
    return rows


def _claims(result: AccelerationResult, tables: dict[str, Any]) -> dict[str, Any]:
    """ACH18's observations as measured numbers (see THEORY.md §8, E1)."""
    T = result.config.num_steps
    out: dict[str, Any] = {}
    if "l4" in tables and "gd_depth_3" in tables["l4"]:
        row = tables["l4"]["gd_depth_3"]
        it = row["iterations_to_depth1_final_median"]
        out["l4_depth3"] = {
            "statement": "with l4, depth 3 reaches depth 1's final loss in at most half the "
                         "iterations and ends at least 3x lower (medians over seeds)",
            "iterations_to_depth1_final": it,
            "fraction_of_run": None if it is None else it / T,
            "final_ratio_to_depth1": row["final_ratio_to_depth1"],
            "holds": bool(it is not None and it <= T / 2 and row["final_ratio_to_depth1"] >= 3),
        }
    if "l2" in tables:
        per_depth = {}
        for d in (2, 3):
            row = tables["l2"].get(f"gd_depth_{d}")
            if row is None:
                continue
            it = row["iterations_to_depth1_final_median"]
            per_depth[f"depth_{d}"] = {
                "iterations_to_depth1_final": it,
                "speed_up": None if not it else T / it,
                "final_ratio_to_depth1": row["final_ratio_to_depth1"],
            }
        out["l2_no_speed_up"] = {
            "statement": "with l2, depth brings no speed-up: depths 2 and 3 reach depth 1's "
                         "final loss no earlier than 0.8 of the run (speed-up <= 1.25), or never",
            **per_depth,
            "holds": all(v["iterations_to_depth1_final"] is None
                         or v["iterations_to_depth1_final"] >= 0.8 * T for v in per_depth.values()),
        }
    return out


def _fmt(x: Any) -> str:
    if x is None:
        return "—"
    if isinstance(x, float):
        return f"{x:.4g}"
    return str(x)


def _fmt_steps(n: int) -> str:
    if n >= 1000 and n % 1000 == 0:
        k = n // 1000
        return f"{k // 1000}·10⁶" if k % 1000 == 0 else f"{k}k"
    return str(n)


def summary_markdown(result: AccelerationResult) -> str:
    """A markdown report: setup, protocol, milestone tables, measured claims, checks, times."""
    c = result.config
    tables = {name: _table(result, name) for name in result.gd}
    claims = _claims(result, tables)
    miles = _milestone_steps(c)
    lines = [
        "# E1: acceleration by depth, UCI gas-sensor Ethanol [ACH18]",
        "",
        f"Full-batch GD, {c.num_steps:,} iterations, float32, on X (2565 × 128, every column "
        "**standardized** to mean 0 and std 1) and the shipped standardized target. Losses "
        "ℓp(W) = (1/m) Σ |W x − y|^p without a 1/p factor (the talk's form). Depth N = N "
        f"matrices with hidden width 1 (depth 1 = the linear model); balanced init with "
        f"W_e(0) entries N(0, {c.init_std:g}²), the same W_e(0) for every depth and method of a "
        f"seed. GD: seeds {list(c.seeds)} (extra depths {list(c.extra_depths)}: seeds "
        f"{list(c.seeds[:c.extra_seeds])}); optimizers, reference GD and end-to-end update: "
        f"seeds {list(c.seeds[:c.baseline_seeds])}. Tables give medians over seeds; "
        f"iterations are resolved to {c.save_every} steps.",
        "",
        "## Learning rates (protocol in the module docstring and the JSON)",
        "",
        "| loss | linear model's largest stable lr (pilot A) | lr stable for depths "
        f"{list(c.depths)} (pilot B), used for every depth | optimizers (shared grid, best pilot loss) |",
        "|---|---:|---:|---|",
    ]
    for name, rec in result.protocol.items():
        opt = rec.get("optimizers", {}).get("chosen", {})
        opt_s = ", ".join(f"{_label(k)}: {_fmt(v)}" for k, v in opt.items()) or "—"
        note = "" if rec["lr_gd_stable_in_pilot"] else " (none stable; smallest tried)"
        lines.append(f"| ℓ{int(LOSSES[name])} | {rec['lr_linear']:g} | {rec['lr_gd']:g}{note} | {opt_s} |")
    for name, rows in tables.items():
        lines += [
            "",
            f"## ℓ{int(LOSSES[name])}: loss at milestones, and iterations to reach depth 1's final loss",
            "",
            "| run | lr | " + " | ".join(f"loss @ {_fmt_steps(m)}" for m in miles)
            + " | reaches depth 1's final loss at | speed-up | depth 1 final / final | diverged |",
            "|---|---:|" + "---:|" * len(miles) + "---:|---:|---:|---:|",
        ]
        for key, r in rows.items():
            it = r["iterations_to_depth1_final_median"]
            speed = f"{c.num_steps / it:.2f}×" if it else "—"
            lines.append(
                f"| {r['label']} | {r['learning_rate']:g} | "
                + " | ".join(f"{r['milestones'][str(m)]:.4g}" for m in miles)
                + f" | {_fmt(None if it is None else int(it))} | {speed} | "
                f"{r['final_ratio_to_depth1']:.3g} | {r['diverged']}/{r['seeds']}"
                + (f" (first at {r['first_divergence']})" if r["first_divergence"] is not None else "")
                + " |"
            )
    lines += ["", "## ACH18's observations, measured", ""]
    for key, cl in claims.items():
        verdict = "**holds**" if cl["holds"] else "**does not hold**"
        detail = {k: v for k, v in cl.items() if k not in ("statement", "holds")}
        lines.append(f"- {cl['statement']}: {verdict} — {_fmt_dict(detail)}")
    lines += ["", "## Checks", ""]
    for name, ch in result.checks.items():
        gaps = {k: v["max_relative_gap"] for k, v in ch["end_to_end_vs_network"].items()}
        lines.append(
            f"- ℓ{int(LOSSES[name])}: end-to-end update vs network, max relative loss gap "
            f"{_fmt_dict(gaps)} (up to the first divergence of either); "
            f"float32 final losses vs float64 lp_loss: GD {ch['float64_reevaluation']['gd']:.2g}, "
            f"baselines {ch['float64_reevaluation']['baselines']:.2g}; balancedness at init "
            f"{ch['balancedness_at_init']:.2g}, largest along GD "
            f"{_fmt_dict({k: v for k, v in ch['balancedness_max_along_gd'].items() if k != 'depth_1'})} "
            "(the end-to-end update assumes 0)."
        )
    la = result.load_average
    lines += [
        "",
        f"Wall time {result.seconds['total']:.0f} s ({jax.default_backend()}, "
        f"{os.cpu_count()} CPUs; load average at start {la['start'][0]:.1f}, at end {la['end'][0]:.1f}); "
        + ", ".join(f"{k} {v:.0f} s" for k, v in result.seconds.items() if k != "total") + ".",
        "",
    ]
    return "\n".join(lines)


def _fmt_dict(d: dict[str, Any]) -> str:
    return ", ".join(f"{k} ({_fmt_dict(v)})" if isinstance(v, dict) else f"{k} {_fmt(v)}"
                     for k, v in d.items())


# --------------------------------------------------------------------------------------
# Figures
# --------------------------------------------------------------------------------------


def _band(ax, steps, series, color, label, *, ls="-", lw=1.6) -> np.ndarray:
    """Median line and min–max band over seeds; a seed is drawn up to its divergence,
    marked with ×. Returns the drawn curves (NaN after divergence)."""
    loss = np.array(series["loss"], dtype=np.float64)
    for i, at in enumerate(series["diverged_at"]):
        if at >= 0:
            last = np.searchsorted(steps, at) - 1  # the last record before the divergence
            ax.plot(steps[last], loss[i, last], marker="x", color=color, ms=7, mew=2)
            loss[i, last + 1:] = np.nan
    with warnings.catch_warnings():  # records after every seed diverged are all-NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        med = np.nanmedian(loss, axis=0)
        lo, hi = np.nanmin(loss, axis=0), np.nanmax(loss, axis=0)
    ax.plot(steps, med, color=color, lw=lw, ls=ls, label=label)
    if loss.shape[0] > 1:
        ax.fill_between(steps, lo, hi, color=color, alpha=0.2, lw=0)
    return loss


def _style(ax, title, drawn: Sequence[np.ndarray]):
    """Log y, clipped to the part after the first 1 % of the run (the initial drop from
    ℓ(0) would otherwise flatten every difference that matters)."""
    ax.set_yscale("log")
    ax.set_xlabel("iteration")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    values = np.concatenate([d.reshape(-1, d.shape[-1]) for d in drawn])
    start = max(1, values.shape[-1] // 100)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        hi = np.nanmax(np.nanmedian(values[:, start:start + 1], axis=1))
        lo = np.nanmin(values)
    if np.isfinite(hi) and np.isfinite(lo) and hi > lo > 0:
        ax.set_ylim(0.95 * lo, 1.3 * hi)


def depth_figure(result: AccelerationResult):
    """Loss vs iteration per loss, one line per main depth (seed band), end-to-end dashed."""
    from matplotlib.figure import Figure

    names = list(result.gd)
    fig = Figure(figsize=(6.2 * len(names), 4.6))
    axes = np.atleast_1d(fig.subplots(1, len(names)))
    colors = {1: "tab:blue", 2: "tab:orange", 3: "tab:green"}
    for ax, name in zip(axes, names):
        series, drawn = _series(result, name), []
        for d in result.config.depths:
            drawn.append(_band(ax, result.steps, series[f"gd_depth_{d}"], colors.get(d),
                               f"depth {d}" + (" (linear)" if d == 1 else "")))
        dashes = {2: (0, (4, 3)), 3: (0, (1, 2))}
        for key, s in series.items():
            if s["method"] == "end_to_end":
                _band(ax, result.steps, s, "black", f"end-to-end update, N = {s['depth']}",
                      ls=dashes.get(s["depth"], (0, (6, 2, 1, 2))), lw=1.1)
        _style(ax, f"ℓ{int(LOSSES[name])} loss, GD lr {result.gd[name].lr:g}", drawn)
        ax.legend(fontsize=8)
    axes[0].set_ylabel("training loss (median, band: min–max over seeds; × = diverged)")
    fig.suptitle("E1: gas-sensor Ethanol, depth-N linear networks of hidden width 1, same lr [ACH18]")
    return fig


def extra_depths_figure(result: AccelerationResult):
    """Loss vs iteration per loss for every GD depth, main and extra."""
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    names = list(result.gd)
    fig = Figure(figsize=(6.2 * len(names), 4.6))
    axes = np.atleast_1d(fig.subplots(1, len(names)))
    cmap = colormaps["viridis"]
    for ax, name in zip(axes, names):
        rows = [(s, key) for key, s in _series(result, name).items() if key.startswith("gd_depth_")]
        drawn = []
        for i, (s, key) in enumerate(rows):
            div, n = int(np.sum(s["diverged_at"] >= 0)), s["loss"].shape[0]
            label = f"depth {s['depth']}, {n} seed{'s' if n > 1 else ''}" + (f", {div} diverged" if div else "")
            drawn.append(_band(ax, result.steps, s, cmap(i / max(1, len(rows) - 1)), label))
        _style(ax, f"ℓ{int(LOSSES[name])} loss, GD lr {result.gd[name].lr:g}", drawn)
        ax.legend(fontsize=8)
    axes[0].set_ylabel("training loss (median, band: min–max over seeds; × = diverged)")
    fig.suptitle("E1: every depth at the same learning rate (a run is drawn up to its divergence, ×)")
    return fig


def optimizer_figure(result: AccelerationResult):
    """Per loss with optimizers: GD depths vs AdaGrad/AdaDelta (left); Adam depth 1 vs 3 (right)."""
    from matplotlib.figure import Figure

    names = [n for n in result.gd if any(s.method in ("adagrad", "adadelta", "adam")
                                         for s in result.baselines[n].specs)]
    fig = Figure(figsize=(12.4, 4.6 * max(1, len(names))))
    axes = np.atleast_2d(fig.subplots(max(1, len(names)), 2))
    for row, name in zip(axes, names):
        series = _series(result, name)
        left, right = row
        colors = {"gd_depth_1": "tab:blue", "gd_depth_2": "tab:orange", "gd_depth_3": "tab:green",
                  "gd_d1_own_lr": "tab:cyan", "adagrad_d1": "tab:red", "adadelta_d1": "tab:purple",
                  "adam_d1": "tab:brown", "adam_d3": "tab:pink"}
        drawn_left, drawn_right = [], []
        for key in ("gd_depth_1", "gd_depth_2", "gd_depth_3", "gd_d1_own_lr", "adagrad_d1", "adadelta_d1"):
            if key in series:
                s = series[key]
                drawn_left.append(_band(left, result.steps, s, colors[key], f"{_label(key)} (lr {s['lr']:g})"))
        for key in ("adam_d1", "adam_d3"):
            if key in series:
                s = series[key]
                drawn_right.append(_band(right, result.steps, s, colors[key], f"{_label(key)} (lr {s['lr']:g})"))
        _style(left, f"ℓ{int(LOSSES[name])}: GD on depths 1–3 vs AdaGrad, AdaDelta", drawn_left)
        _style(right, f"ℓ{int(LOSSES[name])}: Adam with and without overparameterization", drawn_right)
        left.legend(fontsize=8)
        right.legend(fontsize=8)
        left.set_ylabel("training loss")
    fig.suptitle("E1: overparameterization vs adaptive optimizers (each at its best lr of one shared grid)")
    return fig


# --------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------


def _round(a: np.ndarray) -> list:
    return [float(f"{x:.6g}") if np.isfinite(x) else float(x) for x in np.asarray(a, np.float64).ravel()]


def result_to_dict(result: AccelerationResult) -> dict[str, Any]:
    """Everything as JSON-ready objects: configuration, protocol, all curves, tables, checks."""
    tables = {name: _table(result, name) for name in result.gd}
    curves = {}
    for name in result.gd:
        curves[name] = {
            key: {"label": _label(key), "method": s["method"], "depth": s["depth"],
                  "learning_rate": s["lr"], "diverged_at": [int(v) for v in s["diverged_at"]],
                  "loss": [_round(row) for row in s["loss"]]}
            for key, s in _series(result, name).items()
        }
    c = result.config
    return {
        "experiment": "E1 acceleration by depth (ACH18), UCI gas-sensor Ethanol",
        "config": c._asdict(),
        "data": {"name": "gas_ethanol", "shape": [2565, 128], "preprocessing":
                 "every column of X standardized to mean 0, std 1 (load_gas_ethanol(standardize=True)); "
                 "y as shipped (standardized)"},
        "loss_form": "l_p(W) = (1/m) sum_i |W x_i - y_i|^p, no 1/p factor (the talk's form); l2 evaluated "
                     "from the data moments C = X^T X/m, B = Y^T X/m, c = |Y|^2/m",
        "dtype": "float32",
        "network": {"hidden_width": 1, "init": "balanced", "init_std": c.init_std,
                    "seeds": list(c.seeds), "extra_depth_seeds": list(c.seeds[:c.extra_seeds]),
                    "baseline_seeds": list(c.seeds[:c.baseline_seeds])},
        "protocol": {
            "description": [
                "init_std fixed a priori (small: |W_e(0)| ~ 0.11 against |w_ls| ~ 75)",
                "pilot A: GD on the linear model at every lr of lr_grid, all seeds, pilot_steps; "
                "stable = finite throughout and final < initial loss for every seed; lr_linear = largest stable",
                "pilot B: depths `depths` at the stability_candidates largest grid values <= lr_linear, "
                "seeds[0], stability_steps; lr_gd = largest at which every depth is stable; used for every depth; "
                "when stability_steps = num_steps its runs at lr_gd are the main panel's seeds[0]",
                "reference: the linear model also runs at lr_linear when lr_gd < lr_linear",
                "optimizers: one shared grid optimizer_lr_grid, pilot of optimizer_pilot_steps on seeds[0]; "
                "each method takes the lr with the lowest finite final pilot loss",
                "end-to-end update: at lr_gd",
            ],
            **result.protocol,
        },
        "steps": [int(s) for s in result.steps],
        "curves": curves,
        "milestone_steps": _milestone_steps(c),
        "tables": tables,
        "claims": _claims(result, tables),
        "checks": result.checks,
        "seconds": result.seconds,
        "load_average": result.load_average,
    }


def write_outputs(result: AccelerationResult, out_dir: str | Path) -> dict[str, Path]:
    """Write ``acceleration_results.json``, the three PNGs and ``acceleration_summary.md``."""
    from overparam_jax.results import atomic_write_text, save_figure, write_json

    out = Path(out_dir)
    paths = {
        "json": write_json(out / "acceleration_results.json", result_to_dict(result)),
        "depths": save_figure(depth_figure(result), out / "acceleration_depths.png",
                              caption="E1: loss vs iteration, depths 1-3 at one lr, end-to-end update dashed"),
        "extra_depths": save_figure(extra_depths_figure(result), out / "acceleration_extra_depths.png",
                                    caption="E1: loss vs iteration for every depth at one lr"),
        "summary": atomic_write_text(out / "acceleration_summary.md", summary_markdown(result)),
    }
    if any(s.method in ("adagrad", "adadelta", "adam") for b in result.baselines.values() for s in b.specs):
        paths["optimizers"] = save_figure(
            optimizer_figure(result), out / "acceleration_optimizers.png",
            caption="E1: overparameterized GD vs AdaGrad, AdaDelta, Adam")
    return paths
