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

**Optimizers and the reference GD**, one :func:`overparam_jax.sweep` each:
``dynamics="optax"`` with ``optimizer=optax.adagrad``, ``optax.adadelta`` or ``optax.adam``
(optax defaults; the learning rates are injected into the optimizer's state, so a grid of
them is one compiled program), and ``dynamics="network"`` for the linear model at its own
rate. Adam on depths 1 and 3 is one sweep: the linear model is laid out as a depth-3 network
with frozen identity layers whose updates are masked to zero (:func:`overparam_jax.pad_to_depth`;
when the two chosen rates differ, the sweep's grid also runs the two cells not reported).
Two of these runs amplify round-off: AdaDelta at its quick-mode rate (0.1) turns locally
unstable after ~220 steps, and Adam on depth 3 passes a loss spike; a one-ulp change of
W(0) moves their float32 curves by ~10⁻³ and by up to 20× at the spike, so they reproduce
bit for bit only with the same programs (same machine, versions and sweep layout).

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

**Running it.** ``overparam-jax reproduce acceleration [--quick] [--steps N] [--seeds S]``,
or :func:`run_acceleration_experiment` with :func:`configure`'s configuration. Every sweep
reports its progress as one stage (:class:`overparam_jax.runner.Progress`) and, with a
:class:`~overparam_jax.checkpoint.CheckpointDir`, keeps its state in its own stage file, so
an interrupted run resumes where it stopped and returns the same result, bit for bit.
Public: :class:`AccelerationConfig`, :func:`configure`, :func:`run_acceleration_experiment`,
:class:`AccelerationResult` with its :class:`Runs`, :data:`EXPERIMENT` (the command line's
description of E1), :data:`LOSSES` and :func:`l2_loss_from_moments`; the rest is private.

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
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from overparam_jax._validation import require_int
from overparam_jax.analysis import first_hit, significant
from overparam_jax.checkpoint import CheckpointDir
from overparam_jax.datasets import load_gas_ethanol
from overparam_jax.experiments import Experiment
from overparam_jax.experiments.report import (
    band,
    figure_panels,
    format_steps,
    format_value,
    load_average,
    markdown,
    markdown_table,
    write_outputs,
)
from overparam_jax.losses import LossFn, lp_loss
from overparam_jax.networks import end_to_end
from overparam_jax.runner import ProgressFn
from overparam_jax.sweeps import SweepResult, sweep

__all__ = [
    "EXPERIMENT",
    "LOSSES",
    "AccelerationConfig",
    "AccelerationResult",
    "Runs",
    "configure",
    "l2_loss_from_moments",
    "run_acceleration_experiment",
]

_DTYPE = jnp.float32
LOSSES: dict[str, float] = {"l2": 2.0, "l4": 4.0}
# The optimizers of protocol step 5 and the depths each runs on (one sweep per optimizer).
_OPTIMIZERS = {"adagrad": (optax.adagrad, (1,)), "adadelta": (optax.adadelta, (1,)),
               "adam": (optax.adam, (1, 3))}
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


# The smoke run of ``--quick`` and the tests (well under a minute on 2 cores).
_QUICK = AccelerationConfig(
    num_steps=1000, save_every=20, seeds=(0, 1), extra_seeds=1, baseline_seeds=1, extra_depths=(4,),
    lr_grid=(1e-3, 3.162e-3, 1e-2), pilot_steps=100, stability_steps=1000,
    stability_candidates=2, optimizer_lr_grid=(1e-2, 1e-1), optimizer_pilot_steps=100,
)


def configure(*, quick: bool = False, steps: int | None = None, seeds: int | None = None,
              seed: None = None) -> AccelerationConfig:
    """The configuration of ``overparam-jax reproduce acceleration [--quick] [--steps N] [--seeds S]``.

    Args:
        quick: the smoke run (1000 steps, 2 seeds, short pilots) instead of the full one.
        steps: every run ``steps`` iterations, recorded about 1000 times; pilot A and the
            optimizer pilot no longer than the run, pilot B (stability) as long as the run.
        seeds: the main depths on seeds ``0 .. seeds-1`` (the extra depths and the
            baselines on at most as many).
        seed: not an option of E1 (``None``).

    Raises:
        ValueError: a value the experiment cannot run with, naming it.

    Examples:
        >>> c = configure(quick=True, steps=1500, seeds=3)
        >>> c.num_steps, c.save_every, c.stability_steps, c.seeds
        (1500, 1, 1500, (0, 1, 2))
    """
    if seed is not None:
        raise ValueError(f"E1 has no --seed (its seeds are 0 .. --seeds - 1), got {seed!r}")
    for flag, value in (("--steps", steps), ("--seeds", seeds)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ValueError(f"{flag} must be a positive integer, got {value}")
    config = _QUICK if quick else AccelerationConfig()
    if steps is not None:
        at_most = max(1, steps // 1000)  # about 1000 records: the largest divisor up to steps / 1000
        config = config._replace(
            num_steps=steps, save_every=max(s for s in range(1, at_most + 1) if steps % s == 0),
            pilot_steps=min(config.pilot_steps, steps), stability_steps=steps,
            optimizer_pilot_steps=min(config.optimizer_pilot_steps, steps),
        )
    if seeds is not None:
        config = config._replace(seeds=tuple(range(seeds)), extra_seeds=min(config.extra_seeds, seeds),
                                 baseline_seeds=min(config.baseline_seeds, seeds))
    _validate(config)
    return config


def _validate(config: AccelerationConfig) -> None:
    """Raise ``ValueError`` (``TypeError`` for a non-integer count) naming the field if
    ``config`` cannot run."""
    c = config
    for name in ("num_steps", "save_every", "extra_seeds", "baseline_seeds", "pilot_steps",
                 "stability_steps", "stability_candidates", "optimizer_pilot_steps"):
        require_int(name, getattr(c, name), minimum=1)
    all_depths = tuple(c.depths) + tuple(c.extra_depths)
    failures = [
        (c.num_steps % c.save_every,
         f"`num_steps` ({c.num_steps}) must be a multiple of `save_every` ({c.save_every})"),
        *[(getattr(c, n) % 10, f"`{n}` must be a multiple of 10, but is {getattr(c, n)}")
          for n in ("pilot_steps", "stability_steps", "optimizer_pilot_steps")],
        (not c.seeds or len(set(c.seeds)) != len(c.seeds),
         f"`seeds` must be distinct integers, at least one, but is {c.seeds!r}"),
        *[(getattr(c, n) > len(c.seeds),
           f"`{n}` ({getattr(c, n)}) must be at most the number of seeds ({len(c.seeds)})")
          for n in ("extra_seeds", "baseline_seeds")],
        (1 not in c.depths, f"`depths` must contain 1 (the linear model), but is {c.depths!r}"),
        (len(set(all_depths)) != len(all_depths) or min(all_depths, default=1) < 1,
         f"depths must be distinct and >= 1, got {all_depths!r}"),
        (not c.losses or not set(c.losses) <= set(LOSSES),
         f"`losses` must be a non-empty subset of {tuple(LOSSES)}, but is {c.losses!r}"),
        (not set(c.optimizer_losses) <= set(c.losses),
         f"`optimizer_losses` {c.optimizer_losses!r} must be among `losses` {c.losses!r}"),
        (not set(c.end_to_end_depths) <= set(c.depths),
         f"`end_to_end_depths` {c.end_to_end_depths!r} must be among `depths` {c.depths!r}"),
        *[(not grid or any(not (g > 0) for g in grid),
           f"`{n}` must be a non-empty sequence of positive numbers, got {grid!r}")
          for n, grid in (("lr_grid", c.lr_grid), ("optimizer_lr_grid", c.optimizer_lr_grid))],
        (not c.init_std > 0, f"`init_std` must be positive, but is {c.init_std}"),
    ]
    for failed, message in failures:
        if failed:
            raise ValueError(message + ".")


# --------------------------------------------------------------------------------------
# Data and losses
# --------------------------------------------------------------------------------------


def _load(config: AccelerationConfig) -> tuple[np.ndarray, np.ndarray]:
    """``X`` (2565, 128) with standardized columns and ``y`` (2565, 1), as NumPy float64."""
    return load_gas_ethanol(standardize=True)


def l2_loss_from_moments(W_e: jax.Array, C: jax.Array, B: jax.Array, c: jax.Array) -> jax.Array:
    r"""ℓ2 through the data moments.

    .. math:: \frac1m\|X W^\top - Y\|_F^2 = \mathrm{tr}(W C W^\top) - 2\,W\cdot B + c

    Args:
        W_e: ``(d_N, d_0)``.
        C: :math:`X^\top X / m`, ``(d_0, d_0)``.
        B: :math:`Y^\top X / m`, ``(d_N, d_0)``.
        c: :math:`\|Y\|_F^2 / m`, a scalar.

    Equal to ``lp_loss(W_e, X, Y, p=2)`` (the talk's form) up to round-off, at ``O(d_0²)``
    per evaluation instead of ``O(m d_0)``.

    Examples:
        >>> X, Y = jnp.array([[1.0, 0.0], [0.0, 2.0]]), jnp.array([[1.0], [1.0]])
        >>> W = jnp.array([[3.0, 1.0]])
        >>> C, B, c = X.T @ X / 2, Y.T @ X / 2, jnp.sum(Y * Y) / 2
        >>> float(l2_loss_from_moments(W, C, B, c)), float(lp_loss(W, X, Y, p=2.0))
        (2.5, 2.5)
    """
    return jnp.sum((W_e @ C) * W_e) - 2 * jnp.sum(W_e * B) + c


def _loss_fn(p: float, X: np.ndarray, Y: np.ndarray) -> LossFn:
    """ℓp of ``W_e`` in float32 (ℓ2 from the moments); one object per loss, so that the
    sweeps of a loss share compiled programs."""
    if p == 2.0:
        m = X.shape[0]
        C, B, c = (jnp.asarray(a, _DTYPE) for a in (X.T @ X / m, Y.T @ X / m, np.sum(Y * Y) / m))
        return functools.partial(l2_loss_from_moments, C=C, B=B, c=c)
    return functools.partial(lp_loss, X=jnp.asarray(X, _DTYPE), Y=jnp.asarray(Y, _DTYPE), p=p)


# --------------------------------------------------------------------------------------
# The runs: every family of runs is one sweep
# --------------------------------------------------------------------------------------


class Runs(NamedTuple):
    """One family of runs (a method on one depth at one learning rate) over its seeds.

    Attributes:
        method: ``"gd"``, ``"adagrad"``, ``"adadelta"``, ``"adam"`` or ``"end_to_end"``.
        depth: the network depth N (for ``"end_to_end"``, the N of the update).
        learning_rate: the step size.
        loss: ``(S, T)`` the recorded losses.
        diverged_at: ``(S,)`` the first non-finite step, -1 where none.
        balancedness: ``(S, T)`` along the run (0 for depth 1 and the end-to-end update).
        final_W_e: ``(S, 1, d_0)`` the final end-to-end row.
    """

    method: str
    depth: int
    learning_rate: float
    loss: np.ndarray
    diverged_at: np.ndarray
    balancedness: np.ndarray
    final_W_e: np.ndarray


def _runs_of(result: SweepResult, method: str, lr_index: int = 0) -> dict[int, Runs]:
    """The families of a sweep at its ``lr_index``-th learning rate, by depth."""
    traj = result.trajectory
    at = lambda x: np.asarray(x)[:, lr_index, 0]  # (seed, lr, scale, depth, ...) -> (seed, depth, ...)
    final = jax.tree_util.tree_map(lambda x: x[:, lr_index, 0], traj.final)
    W_e = np.asarray(final if method == "end_to_end" else jax.vmap(jax.vmap(end_to_end))(tuple(final)))
    lr = float(result.coords["learning_rate"][lr_index])
    return {int(d): Runs(method, int(d), lr, at(traj.loss)[:, k], at(traj.diverged_at)[:, k],
                         at(traj.balancedness)[:, k], W_e[:, k])
            for k, d in enumerate(result.coords["depth"])}


def _joined(first: Runs, rest: Runs) -> Runs:
    """The seeds of ``first`` followed by those of ``rest``."""
    return rest._replace(**{f: np.concatenate([getattr(first, f), getattr(rest, f)])
                            for f in ("loss", "diverged_at", "balancedness", "final_W_e")})


def _stable(loss: np.ndarray, diverged_at: np.ndarray) -> np.ndarray:
    """Per run: finite throughout and below its initial loss at the end."""
    return (diverged_at < 0) & (loss[..., -1] < loss[..., 0]) & np.all(np.isfinite(loss), axis=-1)


class _Loss(NamedTuple):
    """One loss of the experiment: the settings its sweeps share, and where they report
    progress and keep their state."""

    name: str
    loss_fn: LossFn
    input_dim: int
    config: AccelerationConfig
    progress: ProgressFn | None
    checkpoint: CheckpointDir | None

    def sweep(self, stage: str, label: str, *, depths, seeds, learning_rates, num_steps=None,
              save_every=None, **dynamics) -> SweepResult:
        """One sweep from the balanced init of std ``init_std``, hidden width 1, float32,
        reported as stage ``"<loss> <label>"`` and saved in stage file ``<loss>_<stage>``."""
        c, label = self.config, f"{self.name} {label}"
        on_progress = None if self.progress is None else lambda p: self.progress(p._replace(stage=label))
        return sweep(
            self.loss_fn, input_dim=self.input_dim, output_dim=1, hidden_width=1, depths=list(depths),
            seeds=list(seeds), learning_rates=list(learning_rates), init_stds=[c.init_std],
            num_steps=num_steps or c.num_steps, save_every=save_every or c.save_every,
            init="balanced", dtype=_DTYPE, progress=on_progress,
            checkpoint=None if self.checkpoint is None else self.checkpoint.stage(f"{self.name}_{stage}"),
            **dynamics,
        )


def _pilot_gd(ctx: _Loss) -> tuple[dict[str, Any], dict[str, Runs] | None]:
    """Pilots A and B of the protocol (module docstring): the JSON-ready record, and pilot
    B's runs at the chosen rate when they can stand for seed ``seeds[0]`` of the main panel."""
    c = ctx.config
    grid = sorted(c.lr_grid)
    res = ctx.sweep("pilot_a", f"pilot A, depth 1 at {len(grid)} lrs x {len(c.seeds)} seeds", depths=[1],
                    seeds=c.seeds, learning_rates=grid, num_steps=c.pilot_steps,
                    save_every=c.pilot_steps // 10)
    loss = np.asarray(res.trajectory.loss)[:, :, 0, 0]  # (S, L, T)
    div = np.asarray(res.trajectory.diverged_at)[:, :, 0, 0]  # (S, L)
    stable_a = np.all(_stable(loss, div), axis=0)  # (L,)
    if not stable_a.any():
        raise RuntimeError(f"{ctx.name}: no learning rate of the grid is stable for the linear model.")
    lr_linear = max(lr for lr, ok in zip(grid, stable_a) if ok)
    pilot_a = {
        "depth": 1, "seeds": list(c.seeds), "steps": c.pilot_steps, "learning_rates": grid,
        "stable": stable_a.tolist(), "final_loss_median": np.median(loss[..., -1], axis=0).tolist(),
        "diverged_at": div.T.tolist(),
    }
    below = [lr for lr in grid if lr <= lr_linear][::-1][: c.stability_candidates]
    # As long as the main run, pilot B records like it, and its runs at the chosen rate
    # become seed seeds[0] of the main panel (the same computation).
    reusable = c.stability_steps == c.num_steps
    res = ctx.sweep("pilot_b", f"pilot B, depths {list(c.depths)} at {len(below)} lrs", depths=c.depths,
                    seeds=c.seeds[:1], learning_rates=below, num_steps=c.stability_steps,
                    save_every=c.save_every if reusable else c.stability_steps // 10)
    loss_b = np.asarray(res.trajectory.loss)[0, :, 0]  # (L, K, T)
    div_b = np.asarray(res.trajectory.diverged_at)[0, :, 0]  # (L, K)
    stable_b = np.all(_stable(loss_b, div_b), axis=1)  # (L,)
    chosen = next((lr for lr, ok in zip(below, stable_b) if ok), None)
    lr_gd = chosen if chosen is not None else min(below)
    record = {
        "pilot_a": pilot_a,
        "pilot_b": {"depths": list(c.depths), "seed": c.seeds[0], "steps": c.stability_steps,
                    "learning_rates": below, "stable": stable_b.tolist(), "diverged_at": div_b.tolist(),
                    "final_loss": loss_b[..., -1].tolist()},
        "lr_linear": lr_linear, "lr_gd": lr_gd, "lr_gd_stable_in_pilot": chosen is not None,
        "main_seed_0_from_pilot_b": reusable,
    }
    seed_0 = _runs_of(res, "gd", below.index(lr_gd)) if reusable else None
    return record, seed_0


def _pilot_optimizers(ctx: _Loss) -> dict[str, Any]:
    """Protocol step 5: every optimizer over the shared grid on ``seeds[0]``; each picks the
    rate with the lowest finite final loss."""
    c = ctx.config
    grid = sorted(c.optimizer_lr_grid)
    out: dict[str, Any] = {"learning_rates": grid, "seed": c.seeds[0], "steps": c.optimizer_pilot_steps,
                           "runs": {}, "chosen": {}}
    for method, (optimizer, depths) in _OPTIMIZERS.items():
        res = ctx.sweep(f"pilot_{method}", f"optimizer pilot, {method} on depths {list(depths)} at "
                        f"{len(grid)} lrs", depths=depths, seeds=c.seeds[:1], learning_rates=grid,
                        num_steps=c.optimizer_pilot_steps, save_every=c.optimizer_pilot_steps // 10,
                        dynamics="optax", optimizer=optimizer)
        final = np.asarray(res.trajectory.loss)[0, :, 0, :, -1]  # (L, K)
        div = np.asarray(res.trajectory.diverged_at)[0, :, 0]  # (L, K)
        for k, depth in enumerate(depths):
            key = f"{method}_d{depth}"
            score = np.where((div[:, k] < 0) & np.isfinite(final[:, k]), final[:, k], np.inf)
            out["runs"][key] = {"final_loss": final[:, k].tolist(), "diverged_at": div[:, k].tolist()}
            out["chosen"][key] = grid[int(np.argmin(score))] if np.isfinite(score).any() else None
    return out


def _gd(ctx: _Loss, lr: float, depths: Sequence[int], seeds: Sequence[int],
        done: dict[int, Runs] | None = None) -> dict[str, Runs]:
    """GD on ``depths`` × ``seeds`` at one learning rate. ``done``: the runs of the first
    seed, already computed (pilot B's); only the other seeds are run."""
    rest = seeds[0 if done is None else 1:]
    new = {}
    if rest:
        res = ctx.sweep(f"gd_depths_{'_'.join(map(str, depths))}",
                        f"GD, depths {list(depths)} x {len(rest)} seeds", depths=depths, seeds=rest,
                        learning_rates=[lr])
        new = _runs_of(res, "gd")
    if done is not None:
        new = {d: _joined(done[d], new[d]) if d in new else done[d] for d in depths}
    return {f"gd_depth_{d}": runs for d, runs in new.items()}


def _baselines(ctx: _Loss, record: dict[str, Any]) -> dict[str, Runs]:
    """Protocol steps 4 and 5 at full length on the first ``baseline_seeds`` seeds: the linear
    model at its own rate (if GD's is lower) and each optimizer at its chosen rate."""
    seeds = ctx.config.seeds[: ctx.config.baseline_seeds]
    out = {}
    if record["lr_linear"] != record["lr_gd"]:
        res = ctx.sweep("gd_d1_own_lr", f"GD, depth 1 at its own lr x {len(seeds)} seeds", depths=[1],
                        seeds=seeds, learning_rates=[record["lr_linear"]])
        out["gd_d1_own_lr"] = _runs_of(res, "gd")[1]
    chosen = record.get("optimizers", {}).get("chosen", {})
    for method, (optimizer, depths) in _OPTIMIZERS.items():
        lrs = {d: chosen[f"{method}_d{d}"] for d in depths if chosen.get(f"{method}_d{d}") is not None}
        if lrs:
            grid = sorted(set(lrs.values()))
            res = ctx.sweep(method, f"{method}, depths {list(lrs)} x {len(seeds)} seeds", depths=list(lrs),
                            seeds=seeds, learning_rates=grid, dynamics="optax", optimizer=optimizer)
            for d, lr in lrs.items():
                out[f"{method}_d{d}"] = _runs_of(res, method, grid.index(lr))[d]
    return out


def _end_to_end(ctx: _Loss, lr: float) -> dict[str, Runs]:
    """The discrete end-to-end update of every ``end_to_end_depths`` from the same W_e(0)."""
    depths, seeds = ctx.config.end_to_end_depths, ctx.config.seeds[: ctx.config.baseline_seeds]
    if not depths:
        return {}
    res = ctx.sweep("end_to_end", f"end-to-end update, depths {list(depths)} x {len(seeds)} seeds",
                    depths=depths, seeds=seeds, learning_rates=[lr], dynamics="end_to_end")
    return {f"end_to_end_d{d}": runs for d, runs in _runs_of(res, "end_to_end").items()}


# --------------------------------------------------------------------------------------
# Checks
# --------------------------------------------------------------------------------------


def _float64_gap(X: np.ndarray, Y: np.ndarray, p: float, families: Sequence[Runs]) -> float:
    """Largest relative gap between recorded float32 final losses and ``lp_loss`` in float64."""
    if not families:
        return float("nan")
    W = np.concatenate([np.asarray(r.final_W_e, np.float64).reshape(-1, X.shape[1]) for r in families])
    exact = np.mean(np.abs(X @ W.T - Y) ** p, axis=0)
    recorded = np.concatenate([np.asarray(r.loss[:, -1], np.float64) for r in families])
    ok = np.isfinite(recorded) & np.isfinite(exact)
    return float(np.max(np.abs(recorded[ok] - exact[ok]) / exact[ok])) if ok.any() else float("nan")


def _end_to_end_gap(runs: dict[str, Runs], save_every: int) -> dict[str, Any]:
    """Per end-to-end depth: max over seeds and over the records before either run diverged
    of |ℓ_e2e − ℓ_net| / ℓ_net."""
    out = {}
    never = np.iinfo(np.int64).max
    for e2e in runs.values():
        if e2e.method != "end_to_end":
            continue
        n = e2e.loss.shape[0]
        net = runs[f"gd_depth_{e2e.depth}"]
        steps = np.arange(e2e.loss.shape[-1]) * save_every
        first = np.stack([net.diverged_at[:n], e2e.diverged_at]).astype(np.int64)
        until = np.min(np.where(first < 0, never, first), axis=0)  # (S_b,)
        gap = np.where(steps[None, :] < until[:, None],
                       np.abs(e2e.loss - net.loss[:n]) / np.abs(net.loss[:n]), 0.0)
        out[f"depth_{e2e.depth}"] = {
            "max_relative_gap": float(np.max(gap)),
            "max_relative_gap_per_seed": np.max(gap, axis=-1).tolist(),
            "compared_until_step": [None if u == never else int(u) for u in until],
        }
    return out


def _checks(X, Y, p: float, runs: dict[str, Runs], save_every: int) -> dict[str, Any]:
    """What one loss's runs are checked for (``checks`` in the JSON)."""
    gd = [r for key, r in runs.items() if key.startswith("gd_depth_")]
    others = [r for key, r in runs.items() if not key.startswith("gd_depth_")]
    return {
        "float64_reevaluation": {"gd": _float64_gap(X, Y, p, gd), "baselines": _float64_gap(X, Y, p, others)},
        "end_to_end_vs_network": _end_to_end_gap(runs, save_every),
        "balancedness_at_init": float(max(np.max(r.balancedness[:, 0]) for r in gd)),
        "balancedness_max_along_gd": {f"depth_{r.depth}": float(np.max(r.balancedness)) for r in gd},
    }


# --------------------------------------------------------------------------------------
# The experiment
# --------------------------------------------------------------------------------------


def _protocol_runs(ctx: _Loss, seconds: dict[str, float]) -> tuple[dict[str, Any], dict[str, Runs]]:
    """The protocol on one loss, in order: its record and every family of runs. Each step
    that runs something is timed into ``seconds``."""
    c = ctx.config

    def timed(step: str, compute):
        start = time.perf_counter()
        value = compute()
        if value:
            seconds[f"{ctx.name}_{step}"] = time.perf_counter() - start
        return value

    record, seed_0 = timed("pilots_gd", lambda: _pilot_gd(ctx))
    if ctx.name in c.optimizer_losses:
        record["optimizers"] = timed("pilot_optimizers", lambda: _pilot_optimizers(ctx))
    lr = record["lr_gd"]
    runs = timed("gd", lambda: _gd(ctx, lr, c.depths, c.seeds, seed_0))
    if c.extra_depths:
        runs |= timed("gd_extra_depths", lambda: _gd(ctx, lr, c.extra_depths, c.seeds[: c.extra_seeds]))
    runs |= timed("baselines", lambda: _baselines(ctx, record))
    runs |= timed("end_to_end", lambda: _end_to_end(ctx, lr))
    return record, runs


class AccelerationResult(NamedTuple):
    """Everything E1 measured.

    Attributes:
        config: the :class:`AccelerationConfig`.
        steps: ``(T,)`` the recorded iterations (0, save_every, ..., num_steps).
        protocol: per loss, the pilots and the chosen learning rates (JSON-ready).
        runs: per loss, every family of runs (:class:`Runs`) by key: ``gd_depth_<N>`` (main
            and extra depths), ``gd_d1_own_lr``, ``<optimizer>_d<N>``, ``end_to_end_d<N>``.
        checks: per loss, the float64 re-evaluation, the end-to-end gaps, balancedness.
        seconds: wall time of each stage and in total.
        load_average: the machine's load averages at the start and at the end
            (:func:`~overparam_jax.experiments.report.load_average`).
    """

    config: AccelerationConfig
    steps: np.ndarray
    protocol: dict[str, Any]
    runs: dict[str, dict[str, Runs]]
    checks: dict[str, Any]
    seconds: dict[str, float]
    load_average: dict[str, list[float]]


def run_acceleration_experiment(
    config: AccelerationConfig = AccelerationConfig(), data: tuple[np.ndarray, np.ndarray] | None = None,
    *, progress: ProgressFn | None = None, checkpoint: CheckpointDir | None = None,
) -> AccelerationResult:
    """Run E1: per loss, the pilots, the GD sweeps, the baselines and the checks (module docstring).

    Args:
        config: the configuration (:func:`configure`).
        data: ``(X, Y)`` as :func:`overparam_jax.load_gas_ethanol` returns them standardized
            (loaded when ``None``).
        progress: called with a :class:`~overparam_jax.runner.Progress` after every chunk of
            every sweep; its ``stage`` names the sweep.
        checkpoint: every sweep keeps its state in a stage file of this folder; a rerun with
            the same folder resumes and returns the same result, bit for bit.
    """
    _validate(config)
    X, Y = _load(config) if data is None else data
    load_start, t_all = load_average(), time.perf_counter()
    protocol, runs, checks, seconds = {}, {}, {}, {}
    for name in config.losses:
        ctx = _Loss(name, _loss_fn(LOSSES[name], X, Y), X.shape[1], config, progress, checkpoint)
        protocol[name], runs[name] = _protocol_runs(ctx, seconds)
        checks[name] = _checks(X, Y, LOSSES[name], runs[name], config.save_every)
    seconds["total"] = time.perf_counter() - t_all
    steps = np.arange(0, config.num_steps + 1, config.save_every)
    return AccelerationResult(config, steps, protocol, runs, checks, seconds,
                              {"start": load_start, "end": load_average()})


# --------------------------------------------------------------------------------------
# Report: tables and claims, the JSON document, the markdown summary, figures
# --------------------------------------------------------------------------------------


_LABELS = {
    "gd_d1_own_lr": "GD depth 1 (linear), its own largest stable lr",
    "adagrad_d1": "AdaGrad, depth 1",
    "adadelta_d1": "AdaDelta, depth 1",
    "adam_d1": "Adam, depth 1",
    "adam_d3": "Adam, depth 3",
}
_ELL = {name: f"ℓ{int(p)}" for name, p in LOSSES.items()}  # "l4" -> "ℓ4"


def _label(key: str) -> str:
    if key.startswith("gd_depth_"):
        return f"GD depth {key.rsplit('_', 1)[1]}"
    if key.startswith("end_to_end_d"):
        return f"end-to-end update, N = {key.rsplit('_d', 1)[1]}"
    return _LABELS.get(key, key)


def _milestone_steps(config: AccelerationConfig) -> list[int]:
    return [round(f * config.num_steps / config.save_every) * config.save_every
            for f in _MILESTONE_FRACTIONS]


def _table(result: AccelerationResult, name: str) -> dict[str, dict[str, Any]]:
    """Per run family: milestone losses (median over seeds), iterations to reach depth 1's
    final loss (same seed), final-loss ratio to depth 1."""
    runs, c = result.runs[name], result.config
    ref = runs["gd_depth_1"].loss[:, -1]  # depth-1 final loss, per seed
    rows = {}
    for key, r in runs.items():
        n = r.loss.shape[0]
        hits = [int(first_hit(result.steps, r.loss[i], ref[i])) if r.diverged_at[i] < 0 else -1
                for i in range(n)]
        diverged = r.diverged_at[r.diverged_at >= 0]
        rows[key] = {
            "label": _label(key), "method": r.method, "depth": r.depth, "learning_rate": r.learning_rate,
            "seeds": n, "diverged": int(diverged.size),
            "first_divergence": int(np.min(diverged)) if diverged.size else None,
            "milestones": {str(m): float(np.median(r.loss[:, m // c.save_every]))
                           for m in _milestone_steps(c)},
            "final_median": float(np.median(r.loss[:, -1])),
            "final_ratio_to_depth1": float(np.median(ref[:n] / r.loss[:, -1])),
            "iterations_to_depth1_final": [h if h >= 0 else None for h in hits],
            "iterations_to_depth1_final_median": float(np.median(hits)) if min(hits) >= 0 else None,
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
            if row is not None:
                it = row["iterations_to_depth1_final_median"]
                per_depth[f"depth_{d}"] = {"iterations_to_depth1_final": it,
                                           "speed_up": None if not it else T / it,
                                           "final_ratio_to_depth1": row["final_ratio_to_depth1"]}
        out["l2_no_speed_up"] = {
            "statement": "with l2, depth brings no speed-up: depths 2 and 3 reach depth 1's "
                         "final loss no earlier than 0.8 of the run (speed-up <= 1.25), or never",
            **per_depth,
            "holds": all(v["iterations_to_depth1_final"] is None
                         or v["iterations_to_depth1_final"] >= 0.8 * T for v in per_depth.values()),
        }
    return out


_PROTOCOL = [
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
]


def _document(result: AccelerationResult) -> dict[str, Any]:
    """Everything as JSON-ready objects: configuration, protocol, all curves, tables, checks."""
    c = result.config
    tables = {name: _table(result, name) for name in result.runs}
    curves = {name: {key: {"label": _label(key), "method": r.method, "depth": r.depth,
                           "learning_rate": r.learning_rate, "diverged_at": r.diverged_at,
                           "loss": significant(r.loss)}
                     for key, r in runs.items()}
              for name, runs in result.runs.items()}
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
        "protocol": {"description": _PROTOCOL, **result.protocol},
        "steps": result.steps,
        "curves": curves,
        "milestone_steps": _milestone_steps(c),
        "tables": tables,
        "claims": _claims(result, tables),
        "checks": result.checks,
        "seconds": result.seconds,
        "load_average": result.load_average,
    }


def _details(d: dict[str, Any]) -> str:
    """``{"a": 1.0, "b": {"c": None}}`` as ``"a 1, b (c —)"``."""
    return ", ".join(f"{k} ({_details(v)})" if isinstance(v, dict) else f"{k} {format_value(v)}"
                     for k, v in d.items())


def _milestone_row(row: dict[str, Any], config: AccelerationConfig) -> list[str]:
    it, first = row["iterations_to_depth1_final_median"], row["first_divergence"]
    diverged = f"{row['diverged']}/{row['seeds']}" + (f" (first at {first})" if first is not None else "")
    return [row["label"], f"{row['learning_rate']:g}",
            *(format_value(row["milestones"][str(m)]) for m in _milestone_steps(config)),
            format_value(None if it is None else int(it)), f"{config.num_steps / it:.2f}×" if it else "—",
            f"{row['final_ratio_to_depth1']:.3g}", diverged]


def _check_line(name: str, check: dict[str, Any]) -> str:
    gaps = {k: v["max_relative_gap"] for k, v in check["end_to_end_vs_network"].items()}
    along = {k: v for k, v in check["balancedness_max_along_gd"].items() if k != "depth_1"}
    float64 = check["float64_reevaluation"]
    return (f"- {_ELL[name]}: end-to-end update vs network, max relative loss gap {_details(gaps)} (up to "
            f"the first divergence of either); float32 final losses vs float64 lp_loss: GD "
            f"{float64['gd']:.2g}, baselines {float64['baselines']:.2g}; balancedness at init "
            f"{check['balancedness_at_init']:.2g}, largest along GD {_details(along)} "
            "(the end-to-end update assumes 0).")


def _summary_markdown(result: AccelerationResult, document: dict[str, Any]) -> str:
    """A markdown report: setup, protocol, milestone tables, measured claims, checks, times."""
    c, miles, la = result.config, document["milestone_steps"], result.load_average
    learning_rates = []
    for name, rec in result.protocol.items():
        chosen = rec.get("optimizers", {}).get("chosen", {})
        note = "" if rec["lr_gd_stable_in_pilot"] else " (none stable; smallest tried)"
        learning_rates.append([_ELL[name], f"{rec['lr_linear']:g}", f"{rec['lr_gd']:g}{note}",
                               ", ".join(f"{_label(k)}: {format_value(v)}" for k, v in chosen.items()) or "—"])
    header = ["run", "lr", *(f"loss @ {format_steps(m)}" for m in miles), "reaches depth 1's final loss at",
              "speed-up", "depth 1 final / final", "diverged"]
    milestone_tables = [block for name, rows in document["tables"].items() for block in (
        f"## {_ELL[name]}: loss at milestones, and iterations to reach depth 1's final loss",
        markdown_table(header, [_milestone_row(row, c) for row in rows.values()], "lr" + "r" * (len(miles) + 4)))]
    claims = [f"- {cl['statement']}: {'**holds**' if cl['holds'] else '**does not hold**'} — "
              + _details({k: v for k, v in cl.items() if k not in ("statement", "holds")})
              for cl in document["claims"].values()]
    return markdown(
        "# E1: acceleration by depth, UCI gas-sensor Ethanol [ACH18]",
        f"Full-batch GD, {c.num_steps:,} iterations, float32, on X (2565 × 128, every column "
        "**standardized** to mean 0 and std 1) and the shipped standardized target. Losses "
        "ℓp(W) = (1/m) Σ |W x − y|^p without a 1/p factor (the talk's form). Depth N = N "
        f"matrices with hidden width 1 (depth 1 = the linear model); balanced init with "
        f"W_e(0) entries N(0, {c.init_std:g}²), the same W_e(0) for every depth and method of a "
        f"seed. GD: seeds {list(c.seeds)} (extra depths {list(c.extra_depths)}: seeds "
        f"{list(c.seeds[:c.extra_seeds])}); optimizers, reference GD and end-to-end update: "
        f"seeds {list(c.seeds[:c.baseline_seeds])}. Tables give medians over seeds; "
        f"iterations are resolved to {c.save_every} steps.",
        "## Learning rates (protocol in the module docstring and the JSON)",
        markdown_table(["loss", "linear model's largest stable lr (pilot A)",
                        f"lr stable for depths {list(c.depths)} (pilot B), used for every depth",
                        "optimizers (shared grid, best pilot loss)"], learning_rates, "lrrl"),
        *milestone_tables,
        "## ACH18's observations, measured", claims,
        "## Checks", [_check_line(name, check) for name, check in result.checks.items()],
        f"Wall time {result.seconds['total']:.0f} s ({jax.default_backend()}, {os.cpu_count()} CPUs; "
        f"load average at start {la['start'][0]:.1f}, at end {la['end'][0]:.1f}); "
        + ", ".join(f"{k} {v:.0f} s" for k, v in result.seconds.items() if k != "total") + ".",
    )


def _clip(ax, drawn: Sequence[np.ndarray]) -> None:
    """Clip the y-axis to the part of the curves after the first 1 % of the run (the initial
    drop from ℓ(0) would otherwise flatten every difference that matters)."""
    values = np.concatenate([d.reshape(-1, d.shape[-1]) for d in drawn])
    start = max(1, values.shape[-1] // 100)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        hi = np.nanmax(np.nanmedian(values[:, start:start + 1], axis=1))
        lo = np.nanmin(values)
    if np.isfinite(hi) and np.isfinite(lo) and hi > lo > 0:
        ax.set_ylim(0.95 * lo, 1.3 * hi)


def _loss_figure(title: str, ylabel: str, panels: Sequence[Sequence[tuple[str, Any]]]):
    """Rows of loss-vs-iteration panels, log y (:func:`_clip`); each panel ``(title, draw)``,
    where ``draw(ax)`` draws its curves and returns them."""
    fig, axes = figure_panels(len(panels), len(panels[0]), panel_size=(6.2, 4.6), title=title,
                              xlabel="iteration", ylabel=ylabel, yscale="log")
    for ax, (panel_title, draw) in zip(axes.flat, [panel for row in panels for panel in row]):
        ax.set_title(panel_title)
        _clip(ax, draw(ax))
        ax.legend(fontsize=8)
    return fig


def _draw(ax, result: AccelerationResult, runs: Runs, color, label: str, **style) -> np.ndarray:
    return band(ax, result.steps, runs.loss, color=color, label=label, diverged_at=runs.diverged_at, **style)


def _per_loss_figure(result: AccelerationResult, title: str, draw):
    """One panel per loss (titled with its GD learning rate); ``draw(ax, name)``."""
    panels = [(f"{_ELL[name]} loss, GD lr {result.protocol[name]['lr_gd']:g}",
               functools.partial(draw, name=name)) for name in result.runs]
    return _loss_figure(title, "training loss (median, band: min–max over seeds; × = diverged)", [panels])


def _depth_figure(result: AccelerationResult):
    """Loss vs iteration per loss, one line per main depth (seed band), end-to-end dashed."""
    colors = {1: "tab:blue", 2: "tab:orange", 3: "tab:green"}
    dashes = {2: (0, (4, 3)), 3: (0, (1, 2))}

    def draw(ax, name):
        runs = result.runs[name]
        drawn = [_draw(ax, result, runs[f"gd_depth_{d}"], colors.get(d),
                       f"depth {d}" + (" (linear)" if d == 1 else "")) for d in result.config.depths]
        for r in runs.values():
            if r.method == "end_to_end":
                _draw(ax, result, r, "black", f"end-to-end update, N = {r.depth}",
                      ls=dashes.get(r.depth, (0, (6, 2, 1, 2))), lw=1.1)
        return drawn

    return _per_loss_figure(
        result, "E1: gas-sensor Ethanol, depth-N linear networks of hidden width 1, same lr [ACH18]", draw)


def _extra_depths_figure(result: AccelerationResult):
    """Loss vs iteration per loss for every GD depth, main and extra."""
    from matplotlib import colormaps

    def draw(ax, name):
        gd = [r for key, r in result.runs[name].items() if key.startswith("gd_depth_")]
        drawn = []
        for i, r in enumerate(gd):
            n, div = r.loss.shape[0], int(np.sum(r.diverged_at >= 0))
            label = f"depth {r.depth}, {n} seed{'s' if n > 1 else ''}" + (f", {div} diverged" if div else "")
            drawn.append(_draw(ax, result, r, colormaps["viridis"](i / max(1, len(gd) - 1)), label))
        return drawn

    return _per_loss_figure(
        result, "E1: every depth at the same learning rate (a run is drawn up to its divergence, ×)", draw)


def _optimizer_figure(result: AccelerationResult, names: Sequence[str]):
    """Per loss with optimizers: GD depths vs AdaGrad/AdaDelta (left); Adam depth 1 vs 3 (right)."""
    colors = {"gd_depth_1": "tab:blue", "gd_depth_2": "tab:orange", "gd_depth_3": "tab:green",
              "gd_d1_own_lr": "tab:cyan", "adagrad_d1": "tab:red", "adadelta_d1": "tab:purple",
              "adam_d1": "tab:brown", "adam_d3": "tab:pink"}
    sides = (("GD on depths 1–3 vs AdaGrad, AdaDelta",
              ("gd_depth_1", "gd_depth_2", "gd_depth_3", "gd_d1_own_lr", "adagrad_d1", "adadelta_d1")),
             ("Adam with and without overparameterization", ("adam_d1", "adam_d3")))

    def draw(ax, runs, keys):
        return [_draw(ax, result, runs[k], colors[k], f"{_label(k)} (lr {runs[k].learning_rate:g})")
                for k in keys if k in runs]

    panels = [[(f"{_ELL[name]}: {title}", functools.partial(draw, runs=result.runs[name], keys=keys))
               for title, keys in sides] for name in names]
    return _loss_figure("E1: overparameterization vs adaptive optimizers (each at its best lr of one shared grid)",
                        "training loss", panels)


def _write_outputs(result: AccelerationResult, out_dir: str | Path) -> dict[str, Path]:
    """Write ``acceleration_results.json``, the PNGs and ``acceleration_summary.md``."""
    document = _document(result)
    figures = {
        "depths": (_depth_figure(result),
                   "E1: loss vs iteration, depths 1-3 at one lr, end-to-end update dashed"),
        "extra_depths": (_extra_depths_figure(result), "E1: loss vs iteration for every depth at one lr"),
    }
    with_optimizers = [name for name, runs in result.runs.items()
                       if any(r.method in _OPTIMIZERS for r in runs.values())]
    if with_optimizers:
        figures["optimizers"] = (_optimizer_figure(result, with_optimizers),
                                 "E1: overparameterized GD vs AdaGrad, AdaDelta, Adam")
    return write_outputs(out_dir, "acceleration", document=document,
                         summary=_summary_markdown(result, document), figures=figures)


def _summary_lines(result: AccelerationResult) -> list[str]:
    """The chosen learning rates, the measured claims and the wall time."""
    lines = [f"{name}: lr (every depth) {rec['lr_gd']:g}, linear model's largest stable lr "
             f"{rec['lr_linear']:g}" for name, rec in result.protocol.items()]
    tables = {name: _table(result, name) for name in result.runs}
    lines += [f"{'HOLDS' if cl['holds'] else 'DOES NOT HOLD'}: {cl['statement']}"
              for cl in _claims(result, tables).values()]
    return lines + [f"wall time {result.seconds['total']:.0f} s"]


EXPERIMENT = Experiment(
    name="acceleration",
    help="E1: acceleration by depth, GD on depth-1/2/3 linear networks, UCI gas-sensor data",
    description="Full-batch GD (float32) on the standardized gas-sensor Ethanol data with l2 and l4 "
    "losses: depths 1-3 (and 4-8) of hidden width 1 at one learning rate chosen by a recorded pilot "
    "protocol, AdaGrad/AdaDelta/Adam baselines and the discrete end-to-end update (ACH18); write "
    "acceleration_results.json, acceleration_*.png and acceleration_summary.md. --steps: GD iterations "
    "per run (default 10^6; --quick 1000); --seeds: seeds of the main depths (default 5; --quick 2).",
    options=(),
    common=("steps", "seeds"),
    configure=configure,
    load=_load,
    run=run_acceleration_experiment,
    write_outputs=_write_outputs,
    summary_lines=_summary_lines,
)
