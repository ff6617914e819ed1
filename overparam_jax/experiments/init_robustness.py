r"""E2 of THEORY.md §8: balanced vs layer-wise Gaussian initialization across depths [ACGH19].

**Problem.** The gas-sensor Ethanol data (:func:`~overparam_jax.load_gas_ethanol`, 2565 × 128,
as shipped) PCA-whitened by :func:`~overparam_jax.whiten` with labels scaled so that
:math:`\|\Phi\|_F = 1`; the loss is the whitened ℓ2 loss
:math:`\ell(W_e) = \tfrac12\|W_e - \Phi\|_F^2` (:func:`~overparam_jax.whitened_l2_loss`), whose
optimum is :math:`W_e = \Phi` with :math:`\ell = 0` (:math:`d_N = 1`, :math:`d_0 = 128`, so
:math:`\sigma_{\min}(\Phi) = \|\Phi\|_F = 1`).

**Grid.** Depth-N linear networks (N = 3 and 8), hidden widths 32, trained by full-batch GD
from two inits at every std of a log grid: layer-wise Gaussian
(:func:`~overparam_jax.init_gaussian`, entries of every :math:`W_j` i.i.d.
:math:`N(0, \mathrm{std}^2)`) and balanced (:func:`~overparam_jax.init_balanced`, ACGH19
Procedure 1 applied to an end-to-end matrix with i.i.d. :math:`N(0, \mathrm{std}^2)` entries).
Every (init, seed, std) cell is run at every learning rate of a log grid; its result is the
**best learning rate**: the one whose loss first drops to ``target`` (1e-5 above the optimum
0) in the fewest iterations, with a cap of ``max_steps`` (10⁶); a cell where no learning rate
gets there is *not converged*.

**First-hit resolution.** The loss is recorded every ``fine_every`` (10) steps for the first
``fine_steps`` (1000) and every ``coarse_every`` (100) steps after; the iteration count of a
run is the first *recorded* step whose loss is ``<= target``, an upper bound on the true first
hit that is at most one recording interval late.

**Execution.** Per depth, the whole grid — inits × seeds × learning rates × stds — runs first
as one vmapped :func:`~overparam_jax.sweep` per init for ``fine_steps`` steps (both inits share
the compiled program). Runs that are still open continue in chunks of ``chunk_steps`` steps
through :func:`~overparam_jax.runner.run_chunks` (progress, checkpoint and resume per chunk):
each chunk is one batched :func:`~overparam_jax.dynamics.simulate` of
:class:`~overparam_jax.dynamics.GradientDescent` over the open runs from their last state
(compacted, padded to a power of 2 so few shapes compile), and a run stops as soon as its
outcome for the best-learning-rate metric is decided:

* ``converged``: its loss reached ``target`` (a recorded first hit);
* ``diverged``: its loss or weights became non-finite;
* ``dominated``: another learning rate of the same cell already hit the target at a recorded
  step ``<=`` the current one, so this run cannot be the best (its own first hit would be
  later; ties are resolved at record resolution, as the metric is);
* ``certified``: it provably cannot reach the target before the cap (below);
* ``capped``: it ran to ``max_steps`` without reaching the target.

A cell's best learning rate and iteration count are therefore exactly those of running every
learning rate to the cap (at record resolution); only the *other* learning rates' outcomes
are cut short, and each is labelled with why.

**The certificate** (exact arithmetic; a factor ``certificate_slack`` = 2 of margin for
rounding). From the current weights :math:`A_j`, every later weight is
:math:`W_j = A_j + \Delta_j` with :math:`\|\Delta_j\|_2 \le \delta(t)`, so every partial product
is bounded by a polynomial in :math:`\delta` built from the norms of the *current* partial
products :math:`\|A_b \cdots A_a\|_2`, and since
:math:`\partial\phi/\partial W_j = W_{N:j+1}^\top (W_e - \Phi) W_{j-1:1}^\top`, one GD step of
size :math:`\eta` grows :math:`\delta` by at most :math:`\eta\,G(\delta)`; reaching the target
needs :math:`\|W_e\|_2 \ge \|\Phi\|_2 - \sqrt{2\,\mathrm{target}}`, i.e. :math:`\delta \ge
\delta_*`, so at least :math:`\tau / \eta` steps with
:math:`\tau = \int_0^{\delta_*} d\delta / G(\delta)` (:func:`escape_time_lower_bound`). A run
at step ``t`` with :math:`\tau > 2\,\eta\,(\mathrm{max\_steps} - t)` is ``certified`` not to
converge. This settles the layer-wise Gaussian runs at small std and depth 8, whose gradients
vanish like :math:`\mathrm{std}^{N-1}`, without running them to 10⁶ (e.g. τ ≈ 5·10⁵ at std 0.01,
5·10⁷ at std 0.0046), while runs near the edge of the window still run to the cap.

**Recorded along each run** (:class:`~overparam_jax.Trajectory`): the loss and the
balancedness :math:`\max_j\|W_{j+1}^\top W_{j+1} - W_j W_j^\top\|_F` (THEORY.md §3); per cell the
deficiency margin at init, :math:`c = \sigma_{\min}(\Phi) - \|W_e(0) - \Phi\|_F`
(:func:`~overparam_jax.deficiency_margin`, from the sweep's initial weights, computed in
float64: for a Gaussian depth-8 init at small std :math:`W_e(0) \approx 0` and the margin is
below float32 resolution) and at the first hit, where :math:`\|W_e - \Phi\|_F = \sqrt{2\ell}` gives
:math:`c = \sigma_{\min}(\Phi) - \sqrt{2\ell}` exactly.

**Precision.** GD runs in ``dtype`` (float32): at the target the residual
:math:`\|W_e - \Phi\| \approx 4.5\cdot10^{-3}`, ~10⁴ times the float32 error of the product.
The margins are float64, so the experiment needs ``jax_enable_x64`` (``overparam-jax reproduce
init`` enables it; :func:`run_init_experiment` refuses to run without it rather than compute
them in another dtype).

**Public names:** :data:`EXPERIMENT` (configure, load, run, report: what the command line
calls), :class:`InitConfig`, :func:`run_init_experiment`, :class:`InitResult` and its
:class:`DepthResult`, the axis labels :data:`INITS` and :data:`STATUSES`, and the certificate
:func:`escape_time_lower_bound`. The rest of the module is private.

References:
    [ACGH19] Arora, Cohen, Golowich, Hu. A Convergence Analysis of Gradient Descent for Deep
    Linear Neural Networks. ICLR 2019 (Procedure 1: balanced initialization; the experiment
    comparing it with layer-wise independent initialization across depths).
"""

from __future__ import annotations

import functools
import itertools
import math
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from overparam_jax._validation import require_int, require_positive
from overparam_jax.analysis import first_hit, last_finite, max_finite, significant
from overparam_jax.checkpoint import CheckpointDir, array_digest
from overparam_jax.datasets import Whitened, load_gas_ethanol, whiten
from overparam_jax.dynamics import GradientDescent, simulate
from overparam_jax.experiments import Experiment
from overparam_jax.experiments.report import (
    figure_panels,
    format_value,
    load_average,
    log_spaced_indices,
    markdown,
    markdown_table,
    write_outputs,
)
from overparam_jax.losses import whitened_l2_loss
from overparam_jax.networks import balancedness, deficiency_margin, end_to_end
from overparam_jax.runner import ProgressFn, run_chunks
from overparam_jax.sweeps import sweep

__all__ = [
    "EXPERIMENT",
    "INITS",
    "STATUSES",
    "DepthResult",
    "InitConfig",
    "InitResult",
    "escape_time_lower_bound",
    "run_init_experiment",
]

INITS = ("balanced", "gaussian")
STATUSES = ("converged", "diverged", "dominated", "certified", "capped")
_OPEN = -1
_CONVERGED, _DIVERGED, _DOMINATED, _CERTIFIED, _CAPPED = range(len(STATUSES))
_MARGIN_DTYPE = "float64"


def _log_grid(lo: float, hi: float, num: int) -> tuple[float, ...]:
    return tuple(float(f"{x:.6g}") for x in np.logspace(math.log10(lo), math.log10(hi), num))


class InitConfig(NamedTuple):
    """Hyperparameters of E2 (defaults: the full run of ``reproduce init``).

    Attributes:
        depths: network depths N (>= 2).
        hidden_width: width of every hidden layer.
        init_stds: init stds, the x-axis (default 16 values, 10⁻⁵ … 1, three per decade).
        learning_rates: the grid each cell picks its best from (default 9 values,
            10⁻⁴ … 1, two per decade).
        seeds: integer seeds; cell ``(init, seed, std)`` draws from ``jax.random.key(seed)``.
        max_steps: the cap on iterations (10⁶).
        target: the loss level counted as converged (the optimum is 0).
        fine_steps: length of the first, fully vmapped sweep.
        fine_every: its recording interval (the first-hit resolution up to ``fine_steps``).
        chunk_steps: steps per continuation chunk (runs are stopped between chunks).
        coarse_every: recording interval of the continuation (resolution beyond ``fine_steps``).
        certificate_slack: safety factor of the no-convergence certificate (>= 1).
        compact_min_steps: the open runs are compacted into a smaller batch (a power of 2,
            one compilation each) once at most half of the batch is open, if at least this
            many steps remain; otherwise finished runs ride along as padding.
        dtype: float dtype of the GD runs (the margins are float64 regardless).
    """

    depths: tuple[int, ...] = (3, 8)
    hidden_width: int = 32
    init_stds: tuple[float, ...] = _log_grid(1e-5, 1.0, 16)
    learning_rates: tuple[float, ...] = _log_grid(1e-4, 1.0, 9)
    seeds: tuple[int, ...] = (0,)
    max_steps: int = 1_000_000
    target: float = 1e-5
    fine_steps: int = 1_000
    fine_every: int = 10
    chunk_steps: int = 10_000
    coarse_every: int = 100
    certificate_slack: float = 2.0
    compact_min_steps: int = 100_000
    dtype: str = "float32"


# --quick: 5 stds over four decades, 4 learning rates, cap 2·10⁴ steps (< 60 s on 2 cores).
_QUICK = {"init_stds": _log_grid(1e-4, 1.0, 5), "learning_rates": _log_grid(1e-3, 1.0, 4),
          "max_steps": 20_000, "chunk_steps": 5_000}


def _configure(*, quick: bool = False, steps: int | None = None, seeds: int | None = None,
               seed: int | None = None) -> InitConfig:
    """The configuration of ``reproduce init``: the full run, or ``--quick``'s smoke run;
    ``steps`` is the iteration cap (``fine_steps`` shortened to fit), ``seeds`` the number
    of seeds (0, 1, ...)."""
    if seed is not None:
        raise ValueError("E2 takes `seeds` (their number), not `seed`.")
    for flag, value in (("--steps", steps), ("--seeds", seeds)):  # the command line's words
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ValueError(f"{flag} must be a positive integer, got {value}")
    config = InitConfig(**_QUICK) if quick else InitConfig()
    if steps is not None:
        config = config._replace(max_steps=steps, fine_steps=min(config.fine_steps, steps))
    if seeds is not None:
        config = config._replace(seeds=tuple(range(seeds)))
    _validate(config)
    return config


def _validate(config: InitConfig) -> None:
    """Raise ``ValueError``/``TypeError`` naming the first bad field of ``config``."""
    for name in ("hidden_width", "max_steps", "fine_steps", "fine_every", "chunk_steps", "coarse_every",
                 "compact_min_steps"):
        require_int(name, getattr(config, name), minimum=1)
    checks = {"depths": lambda v: require_int("depths", v, minimum=2),
              "seeds": lambda v: require_int("seeds", v),
              "init_stds": lambda v: require_positive("init_stds", v),
              "learning_rates": lambda v: require_positive("learning_rates", v)}
    for name, check in checks.items():
        if len(getattr(config, name)) == 0:
            raise ValueError(f"`{name}` must not be empty.")
        for value in getattr(config, name):
            check(value)
    if len(set(config.depths)) != len(config.depths) or len(set(config.seeds)) != len(config.seeds):
        raise ValueError("`depths` and `seeds` must not repeat a value.")
    require_positive("target", config.target)
    if not config.certificate_slack >= 1:
        raise ValueError(f"`certificate_slack` must be >= 1, but is {config.certificate_slack!r}.")
    for steps, every in (("fine_steps", "fine_every"), ("chunk_steps", "coarse_every")):
        if getattr(config, steps) % getattr(config, every):
            raise ValueError(f"`{steps}` ({getattr(config, steps)}) must be a multiple of `{every}` "
                             f"({getattr(config, every)}).")
    if config.fine_steps > config.max_steps:
        raise ValueError(f"`fine_steps` ({config.fine_steps}) must be <= `max_steps` ({config.max_steps}).")
    if np.dtype(config.dtype).kind != "f":
        raise TypeError(f"`dtype` must be a float dtype, but is {config.dtype!r}.")


def _load_problem(config: InitConfig | None = None) -> Whitened:
    """The whitened gas-sensor Ethanol problem with :math:`\\|\\Phi\\|_F = 1`."""
    X, y = load_gas_ethanol()
    return whiten(X, y, scale_labels=True)


class DepthResult(NamedTuple):
    """Every run of one depth. Run arrays have axes ``(init, seed, learning_rate, std)``,
    cell arrays ``(init, seed, std)``; ``-1`` marks "none" in integer arrays.

    Attributes:
        depth: N.
        first_hit: run array, the first recorded step with loss ``<= target`` (or -1).
        status: run array, index into :data:`STATUSES`.
        stopped_at: run array, the step at which the run ended (hit, divergence, pruning, cap).
        max_balancedness: run array, the largest recorded balancedness up to ``stopped_at``.
        final_loss: run array, the last recorded finite loss up to ``stopped_at``.
        best_iterations: cell array, the smallest ``first_hit`` over learning rates (or -1).
        best_lr_index: cell array, the learning rate achieving it (or -1).
        loss_init: cell array, :math:`\\ell(W_e(0))`.
        balancedness_init: cell array, the balancedness of the initial weights.
        margin_init: cell array, the deficiency margin of :math:`W_e(0)` (float64).
        margin_at_hit: cell array, :math:`\\sigma_{\\min}(\\Phi) - \\sqrt{2\\ell}` at the best
            run's first hit (NaN if not converged).
        curves: per cell ``(init, seed, std)`` a dict ``{"lr_index", "step", "loss",
            "balancedness"}`` of its representative run: the best one if the cell converged,
            else the non-diverged run that ran longest (ties: the lower final loss), else the
            run that diverged last.
        executed_run_steps: GD steps executed over all runs (batch padding included).
        seconds: wall time of this depth (compilation included).
    """

    depth: int
    first_hit: np.ndarray
    status: np.ndarray
    stopped_at: np.ndarray
    max_balancedness: np.ndarray
    final_loss: np.ndarray
    best_iterations: np.ndarray
    best_lr_index: np.ndarray
    loss_init: np.ndarray
    balancedness_init: np.ndarray
    margin_init: np.ndarray
    margin_at_hit: np.ndarray
    curves: list
    executed_run_steps: int
    seconds: float


class InitResult(NamedTuple):
    """The whole experiment: ``config``, problem facts, one :class:`DepthResult` per depth,
    the wall time and the machine's 1-minute load average at the start and at the end."""

    config: InitConfig
    input_dim: int
    phi_norm: float
    phi_sigma_min: float
    label_scale: float
    depths: dict[int, DepthResult]
    seconds: float
    margin_dtype: str
    load_average: tuple[float, float]


# --------------------------------------------------------------------------------------
# The protocol: per depth, the grid sweep, then the open runs in chunks
# --------------------------------------------------------------------------------------


def run_init_experiment(config: InitConfig, problem: Whitened | None = None, *,
                        progress: ProgressFn | None = None,
                        checkpoint: CheckpointDir | None = None) -> InitResult:
    """Run E2: every depth, init, seed, std and learning rate (see the module docstring).

    Args:
        config: the grid and schedule (``InitConfig()`` for the full run,
            ``EXPERIMENT.configure(quick=True)`` for a smoke run).
        problem: the whitened data (default: the gas-sensor Ethanol problem with
            :math:`\\|\\Phi\\|_F = 1`); ``Phi`` must be ``(1, d_0)``.
        progress: optional callback, a :class:`~overparam_jax.runner.Progress` after every
            chunk (stage ``"depth N"``, metric ``"open runs"``).
        checkpoint: if given, the grid sweeps and the open runs after every chunk are
            saved there, and a rerun with the same folder resumes where it stopped (same
            result, bit for bit).

    Returns:
        An :class:`InitResult`.

    Raises:
        ValueError / TypeError: a bad configuration, naming the field, or a bad ``problem``.
        RuntimeError: ``jax_enable_x64`` is off (the margins are float64).
    """
    _validate(config)
    if not jax.config.jax_enable_x64:
        raise RuntimeError("E2 computes the deficiency margins in float64: enable it with "
                           "jax.config.update('jax_enable_x64', True) first (`overparam-jax "
                           "reproduce init` does); GD still runs in `config.dtype`.")
    problem = _load_problem() if problem is None else problem
    if problem.Phi.ndim != 2 or problem.Phi.shape[0] != 1:
        raise ValueError(f"`problem.Phi` must have shape (1, d_0), but has shape {problem.Phi.shape}.")
    start, load_start = time.perf_counter(), load_average()[0]
    depths = {int(d): _run_depth(int(d), config, problem, progress, checkpoint) for d in config.depths}
    return InitResult(
        config=config,
        input_dim=int(problem.Phi.shape[1]),
        phi_norm=float(np.linalg.norm(problem.Phi)),
        phi_sigma_min=_sigma_min(problem.Phi),
        label_scale=float(problem.label_scale),
        depths=depths,
        seconds=time.perf_counter() - start,
        margin_dtype=_MARGIN_DTYPE,
        load_average=(load_start, load_average()[0]),
    )


def _run_depth(depth: int, config: InitConfig, problem: Whitened, progress: ProgressFn | None,
               checkpoint: CheckpointDir | None) -> DepthResult:
    start = time.perf_counter()
    dtype = jnp.dtype(config.dtype)
    loss_fn = functools.partial(whitened_l2_loss, Phi=jnp.asarray(problem.Phi, dtype))
    shape = (len(INITS), len(config.seeds), len(config.learning_rates), len(config.init_stds))
    R = math.prod(shape)  # run ((init * S + seed) * L + lr) * C + std
    stage = lambda name: None if checkpoint is None else checkpoint.stage(f"depth{depth}_{name}")

    # 1. The whole grid for `fine_steps` steps, one sweep per init (one compiled program).
    grids = [sweep(loss_fn, input_dim=problem.Phi.shape[1], output_dim=problem.Phi.shape[0],
                   hidden_width=config.hidden_width, depths=[depth], seeds=config.seeds,
                   learning_rates=config.learning_rates, init_stds=config.init_stds,
                   num_steps=config.fine_steps, save_every=config.fine_every, init=init,
                   dtype=dtype, checkpoint=stage(f"{init}_grid"))
             for init in INITS]
    grid = jax.tree_util.tree_map(  # leaves (S, L, C, 1, ...) per init -> (R, ...)
        lambda *xs: np.concatenate([np.asarray(x)[:, :, :, 0].reshape((-1,) + x.shape[4:]) for x in xs]),
        *[g.trajectory for g in grids])
    steps = np.asarray(grid.step[0])
    loss, bal = np.asarray(grid.loss, np.float64), np.asarray(grid.balancedness, np.float64)

    # 2. Each cell's initial network (the sweep's; one depth, so unpadded): margin, balancedness.
    initial = [tuple(W[:, 0, :, 0] for W in g.initial) for g in grids]  # (S, C, ...) per init
    margin_init = np.stack([_margins(params, problem.Phi) for params in initial])
    bal_init = np.stack([np.asarray(jax.vmap(jax.vmap(balancedness))(p), np.float64) for p in initial])
    loss_init = loss[:, 0].reshape(shape)[:, :, 0]

    # 3. The open runs, in chunks to the cap, each stopped once its outcome is decided.
    carry = {"params": tuple(np.asarray(W) for W in grid.final), "status": np.full(R, _OPEN),
             "first_hit": np.full(R, -1), "stopped_at": np.full(R, -1), "batch": np.asarray(-1)}
    carry = _settle(carry, np.arange(R), steps[1:], loss[:, 1:], np.asarray(grid.diverged_at), config)
    etas = np.broadcast_to(np.asarray(config.learning_rates)[:, None], shape).ravel()
    advance = functools.partial(_advance, config=config, loss_fn=loss_fn, etas=etas, shape=shape,
                                phi_norm=float(np.linalg.norm(problem.Phi, 2)))
    sizes = [config.chunk_steps] * -(-(config.max_steps - config.fine_steps) // config.chunk_steps)
    fingerprint = None if checkpoint is None else {
        "depth": depth, "chunks": sizes, "sha256 of the runs after the sweep": array_digest(carry)}
    carry, chunks = run_chunks(advance, carry, sizes, checkpoint=stage("chunks"), fingerprint=fingerprint,
                               progress=progress, stage=f"depth {depth}",
                               metrics=lambda records: {"open runs": float(records["open"])},
                               until=lambda c: not np.any(c["status"] == _OPEN))
    status, stopped = carry["status"].copy(), carry["stopped_at"].copy()
    capped = status == _OPEN
    status[capped], stopped[capped] = _CAPPED, config.max_steps

    # 4. Every run's records on one grid of steps (NaN where it did not run), up to its stop.
    per, num = config.chunk_steps // config.coarse_every, len(sizes)
    steps = np.concatenate([steps, config.fine_steps + config.coarse_every * np.arange(1, per * num + 1)])
    loss, bal = (np.pad(x, ((0, 0), (0, per * num)), constant_values=np.nan) for x in (loss, bal))
    for k, records in enumerate(chunks):
        columns = steps.size - per * (num - k) + np.arange(per)
        loss[records["runs"][:, None], columns] = records["loss"]
        bal[records["runs"][:, None], columns] = records["balancedness"]
    ran = steps <= stopped[:, None]
    final_loss = last_finite(loss, ran).reshape(shape)

    # 5. Per cell: the best learning rate (the earliest first hit; lowest lr on ties), the
    # margin at its hit, and the run shown (the best, else the one `_shown_run` picks).
    first, status, stopped = (x.reshape(shape) for x in (carry["first_hit"], status, stopped))
    hit = np.where(first >= 0, first, np.iinfo(np.int64).max)
    best_lr = np.where((first >= 0).any(axis=2), np.argmin(hit, axis=2), -1)  # (I, S, C)
    best_it = np.where(best_lr >= 0, hit.min(axis=2), -1)
    shown = best_lr.copy()
    for i, s, c in zip(*np.nonzero(best_lr < 0)):
        shown[i, s, c] = _shown_run(status[i, s, :, c], stopped[i, s, :, c], final_loss[i, s, :, c])
    cell = np.indices(shown.shape)
    shown_runs = np.ravel_multi_index((cell[0], cell[1], shown, cell[2]), shape)  # (I, S, C)
    curves = [[[{"lr_index": int(shown[i, s, c]), "step": steps[ran[r]], "loss": loss[r, ran[r]],
                 "balancedness": bal[r, ran[r]]} for c, r in enumerate(row)]
               for s, row in enumerate(block)] for i, block in enumerate(shown_runs)]
    at_hit = _sigma_min(problem.Phi) - np.sqrt(2.0 * final_loss.ravel()[shown_runs])  # sqrt(2ℓ) = ‖W_e − Φ‖
    return DepthResult(
        depth=depth, first_hit=first, status=status, stopped_at=stopped,
        max_balancedness=max_finite(bal, ran).reshape(shape), final_loss=final_loss,
        best_iterations=best_it, best_lr_index=best_lr, loss_init=loss_init,
        balancedness_init=bal_init, margin_init=margin_init,
        margin_at_hit=np.where(best_lr >= 0, at_hit, np.nan), curves=curves,
        executed_run_steps=R * config.fine_steps + config.chunk_steps * sum(rec["batch"] for rec in chunks),
        seconds=time.perf_counter() - start,
    )


def _margins(params: tuple[jax.Array, ...], Phi: np.ndarray) -> np.ndarray:
    """The deficiency margin of every initial network ``(S, C, ...)``, in float64."""
    wide = jnp.dtype(_MARGIN_DTYPE)
    Phi = jnp.asarray(Phi, wide)
    margin = jax.vmap(jax.vmap(lambda p: deficiency_margin(end_to_end(p), Phi)))
    return np.asarray(margin(tuple(W.astype(wide) for W in params)), np.float64)


def _settle(carry: dict, runs: np.ndarray, steps: np.ndarray, loss: np.ndarray,
            diverged_at: np.ndarray, config: InitConfig) -> dict:
    """The bookkeeping after ``runs`` recorded ``loss`` at ``steps``: a recorded hit of the
    target settles a run as converged (a diverging run freezes at its last finite state,
    so a recorded hit came before any divergence), else a divergence as diverged."""
    hits = first_hit(steps, loss, config.target, max_step=config.max_steps)
    diverged = (hits < 0) & (diverged_at >= 0) & (diverged_at <= config.max_steps)
    status, first, stopped = carry["status"].copy(), carry["first_hit"].copy(), carry["stopped_at"].copy()
    status[runs] = np.where(hits >= 0, _CONVERGED, np.where(diverged, _DIVERGED, _OPEN))
    first[runs] = hits
    stopped[runs] = np.where(hits >= 0, hits, np.where(diverged, diverged_at, -1))
    return {**carry, "status": status, "first_hit": first, "stopped_at": stopped}


def _prune(carry: dict, step: int, etas: np.ndarray, config: InitConfig, shape, phi_norm: float) -> dict:
    """Stop the open runs that are dominated (their cell already hit the target at a step
    ``<= step``) or certified (:func:`escape_time_lower_bound` exceeds the time left)."""
    open_ = carry["status"] == _OPEN
    escape = np.zeros(open_.size)
    if open_.any():
        escape[open_] = escape_time_lower_bound([W[open_] for W in carry["params"]],
                                                phi_norm=phi_norm, target=config.target)
    hit = np.where(carry["first_hit"] >= 0, carry["first_hit"], np.iinfo(np.int64).max).reshape(shape)
    best = np.broadcast_to(hit.min(axis=2, keepdims=True), shape).ravel()
    dominated = open_ & (best <= step)
    certified = open_ & ~dominated & (escape > config.certificate_slack * etas * (config.max_steps - step))
    status, stopped = carry["status"].copy(), carry["stopped_at"].copy()
    status[dominated], status[certified] = _DOMINATED, _CERTIFIED
    stopped[dominated | certified] = step
    return {**carry, "status": status, "stopped_at": stopped}


def _advance(carry: dict, start: int, size: int, *, config: InitConfig, loss_fn, etas: np.ndarray,
             shape, phi_norm: float) -> tuple[dict, dict]:
    """One chunk of :func:`run_chunks`: prune, then ``size`` GD steps of the open runs as one
    batch (a power of 2, or the previous batch when few steps remain) from step
    ``fine_steps + start``. Records: the runs, their loss and balancedness, the batch size
    and the number of runs still open."""
    step = config.fine_steps + start
    carry = _prune(carry, step, etas, config, shape, phi_norm)
    runs = np.flatnonzero(carry["status"] == _OPEN)
    if runs.size == 0:
        nothing = np.zeros((0, size // config.coarse_every))
        return carry, {"runs": runs, "loss": nothing, "balancedness": nothing, "batch": 0, "open": 0}
    batch, previous = 1 << (runs.size - 1).bit_length(), int(carry["batch"])  # a power of 2
    if batch < previous and config.max_steps - step < config.compact_min_steps:
        batch = previous  # not worth a compilation
    take = np.concatenate([runs, np.full(batch - runs.size, runs[0])])
    dtype = carry["params"][0].dtype
    rule = GradientDescent(loss_fn, jnp.asarray(etas[take], dtype), jnp.zeros(batch, dtype))
    traj = simulate(rule, tuple(jnp.asarray(W[take]) for W in carry["params"]), num_steps=size,
                    save_every=config.coarse_every, batched=True)
    n = runs.size
    steps = step + config.coarse_every * np.arange(1, size // config.coarse_every + 1)
    loss, bal = np.asarray(traj.loss[:n, 1:]), np.asarray(traj.balancedness[:n, 1:])  # run dtype
    diverged_at = np.asarray(traj.diverged_at[:n])
    params = tuple(W.copy() for W in carry["params"])
    for W, final in zip(params, traj.final):
        W[runs] = np.asarray(final)[:n]
    carry = _settle({**carry, "params": params, "batch": np.asarray(batch)}, runs, steps,
                    loss.astype(np.float64), np.where(diverged_at >= 0, step + diverged_at, -1), config)
    return carry, {"runs": runs, "loss": loss, "balancedness": bal, "batch": batch,
                   "open": int(np.sum(carry["status"] == _OPEN))}


def _shown_run(status: np.ndarray, stopped: np.ndarray, final_loss: np.ndarray) -> int:
    """The learning rate shown for a cell that did not converge: the non-diverged run that
    ran longest (ties: the lower final loss, then the lower learning rate), else the run
    that diverged last."""
    alive = status != _DIVERGED
    if not alive.any():
        return max(range(status.size), key=lambda l: stopped[l])
    loss = np.nan_to_num(final_loss, nan=np.inf)
    return max(np.flatnonzero(alive).tolist(), key=lambda l: (stopped[l], -loss[l]))


def _sigma_min(Phi: np.ndarray) -> float:
    return float(np.linalg.svd(Phi, compute_uv=False)[-1])


# --------------------------------------------------------------------------------------
# The no-convergence certificate
# --------------------------------------------------------------------------------------


def _partial_product_norms(params: Sequence[np.ndarray]) -> np.ndarray:
    """``m[:, a, b] = ||W_b ... W_a||_2`` for ``1 <= a <= b <= N`` (1-based), and 1 for the
    empty product ``b = a - 1``; ``params`` have a leading run axis."""
    N, B = len(params), params[0].shape[0]
    m = np.zeros((B, N + 2, N + 2))
    for a in range(1, N + 2):
        m[:, a, a - 1] = 1.0
    for a in range(1, N + 1):
        P = None
        for b in range(a, N + 1):
            P = params[b - 1] if P is None else params[b - 1] @ P
            m[:, a, b] = np.linalg.norm(P, ord=2, axis=(1, 2))
    return m


def _chain_polynomials(m: np.ndarray, a: int, N: int) -> list[np.ndarray]:
    r"""Coefficients (in δ, shape ``(B, N + 1)``) of :math:`F_{a..k}(\delta)` for ``k = a-1..N``.

    :math:`F_{a..k}` bounds :math:`\|\prod_{i=a}^{k} (A_i + \Delta_i)\|_2` over all
    :math:`\|\Delta_i\|_2 \le \delta`: expand the product by the last factor that is a
    :math:`\Delta` (position ``l``) and group the :math:`A`'s after it into one product,
    :math:`F_{a..k} = m_{a,k} + \delta \sum_{l=a}^{k} m_{l+1,k} F_{a..l-1}`, with
    :math:`F_{a..a-1} = 1`.
    """
    B = m.shape[0]
    one = np.zeros((B, N + 1))
    one[:, 0] = 1.0
    F = [one]  # F[k - (a - 1)] is F_{a..k}
    for k in range(a, N + 1):
        poly = np.zeros((B, N + 1))
        poly[:, 0] = m[:, a, k]
        for l in range(a, k + 1):
            poly[:, 1:] += m[:, l + 1, k][:, None] * F[l - a][:, :-1]
        F.append(poly)
    return F


def _polyval(coefficients: np.ndarray, delta: np.ndarray) -> np.ndarray:
    """``sum_k c[:, k] delta[:, j]**k`` for coefficients ``(B, K)`` and points ``(B, J)``."""
    out = np.zeros(delta.shape)
    for k in range(coefficients.shape[1] - 1, -1, -1):
        out = out * delta + coefficients[:, k:k + 1]
    return out


def escape_time_lower_bound(params: Sequence[Any], *, phi_norm: float, target: float,
                            num_points: int = 1000) -> np.ndarray:
    r"""A lower bound on :math:`\eta k` over the ``k`` GD steps (any step size :math:`\eta`)
    that the network ``params`` needs to bring the whitened ℓ2 loss to ``target``.

    With :math:`A_j` the current weights, :math:`m_{a,b} = \|A_b \cdots A_a\|_2` and
    :math:`\delta(t) = \max_j \|W_j(t) - A_j\|_2`, every partial product is at most a
    polynomial :math:`F_{a..b}(\delta)` in :math:`\delta` (:func:`_chain_polynomials`), so
    a GD step moves each layer by at most :math:`\eta\,G(\delta)`,

    .. math:: G(\delta) = \max_j F_{j+1..N}(\delta)\,F_{1..j-1}(\delta)\,
              \bigl(F_{1..N}(\delta) + \|\Phi\|_2\bigr),

    because :math:`\partial\phi/\partial W_j = W_{N:j+1}^\top (W_e - \Phi) W_{j-1:1}^\top`.
    Hence :math:`\delta_{k+1} \le \delta_k + \eta G(\delta_k)`, which (``G`` increasing)
    stays below the flow :math:`\delta' = G(\delta)` at time :math:`\eta k`. The target
    needs :math:`\|W_e - \Phi\|_F \le \epsilon = \sqrt{2\,\mathrm{target}}`, so
    :math:`F_{1..N}(\delta) \ge \|W_e\|_2 \ge \|\Phi\|_2 - \epsilon`, i.e.
    :math:`\delta \ge \delta_*`, reached no sooner than

    .. math:: \tau = \int_0^{\delta_*} \frac{d\delta}{G(\delta)},

    evaluated from below by a right-endpoint sum on a geometric grid of ``num_points``
    (:math:`1/G` decreases). Exact arithmetic; 0 when the loss may already be in reach.

    Args:
        params: ``(W_1, ..., W_N)``, each with a leading run axis ``(B, d_j, d_{j-1})``.
        phi_norm: :math:`\|\Phi\|_2 > \epsilon`.
        target: the loss level, > 0.
        num_points: grid points of the integral.

    Returns:
        ``(B,)`` float64 lower bounds on :math:`\eta \times` steps.

    Examples:
        Depth 1 from :math:`W = 0.3\,e_1^\top`: :math:`G(\delta) = 0.3 + \delta + \|\Phi\|_2`,
        so :math:`\tau = \ln\frac{2 - \epsilon}{1.3} = 0.4285` for :math:`\|\Phi\|_2 = 1`;
        the grid's sum is a little below it.

        >>> import numpy as np
        >>> W = np.zeros((1, 1, 3)); W[0, 0, 0] = 0.3
        >>> tau = escape_time_lower_bound([W], phi_norm=1.0, target=1e-5)
        >>> round(float(tau[0]), 3)
        0.427
    """
    params = [np.asarray(W, np.float64) for W in params]
    N, B = len(params), params[0].shape[0]
    p = float(phi_norm)
    reach = p - math.sqrt(2.0 * target)
    if not reach > 0:
        raise ValueError(f"`phi_norm` ({p}) must exceed sqrt(2 * target) = {math.sqrt(2 * target)}.")
    m = _partial_product_norms(params)
    prefix = _chain_polynomials(m, 1, N)  # prefix[k] = F_{1..k}, k = 0..N
    suffix = [_chain_polynomials(m, j + 1, N)[-1] for j in range(1, N + 1)]  # F_{j+1..N}
    whole = prefix[N]
    # delta_*: the smallest delta with F_{1..N}(delta) >= reach (bisection; F increases).
    lo, hi = np.zeros(B), np.ones(B)
    while np.any(small := _polyval(whole, hi[:, None])[:, 0] < reach):
        hi = np.where(small, 2.0 * hi, hi)
    already = whole[:, 0] >= reach
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        below = _polyval(whole, mid[:, None])[:, 0] < reach
        lo, hi = np.where(below, mid, lo), np.where(below, hi, mid)
    grid = lo[:, None] * np.geomspace(1e-12, 1.0, num_points)[None, :]  # lo <= delta_*
    E = _polyval(whole, grid)
    G = np.max(np.stack([_polyval(suffix[j - 1], grid) * _polyval(prefix[j - 1], grid)
                         for j in range(1, N + 1)]), axis=0) * (E + p)
    widths = np.diff(np.concatenate([np.zeros((B, 1)), grid], axis=1), axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):  # G = 0 only where the target is in reach
        tau = np.sum(widths / G, axis=1)
    return np.where(already, 0.0, tau)


# --------------------------------------------------------------------------------------
# The report: the JSON document, the markdown summary, three figures
# --------------------------------------------------------------------------------------


_COLORS = {"balanced": "tab:blue", "gaussian": "tab:red"}
_LABELS = {"balanced": "balanced", "gaussian": "layer-wise Gaussian"}


def _converged_stds(d: DepthResult, i: int) -> tuple[np.ndarray, np.ndarray]:
    """Per std: whether every seed converged, and whether some seed did."""
    conv = d.best_iterations[i] >= 0  # (S, C)
    return conv.all(axis=0), conv.any(axis=0)


def _status_counts(d: DepthResult, i: int) -> dict[str, int]:
    return {name: int(np.sum(d.status[i] == k)) for k, name in enumerate(STATUSES)}


def _shown_max_balancedness(d: DepthResult) -> np.ndarray:
    """``(init, seed, std)``: the largest balancedness along each cell's run shown."""
    return np.array([[[max_finite(cv["balancedness"]) for cv in row] for row in block] for block in d.curves])


def _document(result: InitResult) -> dict[str, Any]:
    """Everything as JSON-ready objects; run arrays keep their axes (init, seed, lr, std)."""
    c = result.config
    depths = {}
    for depth, d in result.depths.items():
        curves = []
        for (i, init), (s, seed), (k, std) in itertools.product(
                enumerate(INITS), enumerate(c.seeds), enumerate(c.init_stds)):
            cv = d.curves[i][s][k]
            idx = log_spaced_indices(cv["step"].size)
            curves.append({"init": init, "seed": seed, "std": std,
                           "learning_rate": c.learning_rates[cv["lr_index"]], "step": cv["step"][idx],
                           "loss": significant(cv["loss"][idx]),
                           "balancedness": significant(cv["balancedness"][idx])})
        depths[str(depth)] = {
            "runs": {
                "axes": ["init", "seed", "learning_rate", "std"],
                "first_hit": d.first_hit,
                "status": np.asarray(STATUSES)[d.status],
                "stopped_at": d.stopped_at,
                "max_balancedness": significant(d.max_balancedness),
                "final_loss": significant(d.final_loss),
            },
            "cells": {
                "axes": ["init", "seed", "std"],
                "best_iterations": d.best_iterations,
                "best_learning_rate": [[[c.learning_rates[k] if k >= 0 else None for k in row]
                                        for row in block] for block in d.best_lr_index],
                "loss_init": significant(d.loss_init, 10),
                "balancedness_init": significant(d.balancedness_init),
                "margin_init": significant(d.margin_init, 10),
                "margin_at_hit": significant(d.margin_at_hit),
                "max_balancedness_shown_run": significant(_shown_max_balancedness(d)),
            },
            "converged_stds": {init: {"all_seeds": int(_converged_stds(d, i)[0].sum()),
                                      "some_seed": int(_converged_stds(d, i)[1].sum()),
                                      "of": len(c.init_stds)} for i, init in enumerate(INITS)},
            "status_counts": {init: _status_counts(d, i) for i, init in enumerate(INITS)},
            "curves": curves,
            "executed_run_steps": d.executed_run_steps,
            "seconds": d.seconds,
        }
    return {
        "experiment": "E2 init_robustness",
        "config": c._asdict(),
        "problem": {"input_dim": result.input_dim, "phi_norm": result.phi_norm,
                    "phi_sigma_min": result.phi_sigma_min, "label_scale": result.label_scale,
                    "loss": "whitened_l2_loss = 0.5 * ||W_e - Phi||_F^2, optimum 0"},
        "inits": list(INITS),
        "statuses": list(STATUSES),
        "margin_dtype": result.margin_dtype,
        "depths": depths,
        "seconds": result.seconds,
        "load_average_1min": {"start": result.load_average[0], "end": result.load_average[1],
                              "cpus": os.cpu_count()},
    }


def _summary(result: InitResult) -> str:
    """A markdown report: protocol, what the paper saw, the converged counts and every cell."""
    c = result.config
    stds, lrs, S = np.asarray(c.init_stds), np.asarray(c.learning_rates), len(c.seeds)
    overview, per_depth = [], []
    for depth, d in result.depths.items():
        max_bal, cells = _shown_max_balancedness(d), [[f"{std:.3g}"] for std in stds]
        for i, init in enumerate(INITS):
            all_ok, some_ok = _converged_stds(d, i)
            converged = d.best_iterations[i] >= 0
            its = d.best_iterations[i][converged]
            used = sorted({float(lrs[k]) for k in d.best_lr_index[i].ravel() if k >= 0})
            overview.append([
                str(depth), init, f"{int(all_ok.sum())} / {len(stds)}", f"{int(some_ok.sum())} / {len(stds)}",
                f"{stds[all_ok].min():.3g} … {stds[all_ok].max():.3g}" if all_ok.any() else "none",
                f"{np.median(its):,.0f}" if its.size else "—", ", ".join(f"{x:.3g}" for x in used) or "—",
                format_value(max_bal[i][converged].max() if converged.any() else None, ".3g")])
            for k, row in enumerate(cells):  # seed 0
                it, li = int(d.best_iterations[i, 0, k]), int(d.best_lr_index[i, 0, k])
                row += ["not converged" if it < 0 else f"{it:,}", format_value(lrs[li] if li >= 0 else None, ".3g"),
                        f"{d.margin_init[i, 0, k]:.3g}", f"{max_bal[i, 0, k]:.3g}"]
        outcomes = "; ".join(f"{init}: " + ", ".join(f"{n} {v}" for n, v in _status_counts(d, i).items() if v)
                             for i, init in enumerate(INITS))
        fewer = d.status.size * c.max_steps / max(d.executed_run_steps, 1)
        per_depth += [
            f"## Depth {depth}: every cell (seed {c.seeds[0]}; iterations at the best learning rate)",
            markdown_table(["std", "balanced: iterations", "lr", "margin at init", "max bal.",
                            "Gaussian: iterations", "lr", "margin at init", "max bal."], cells, "r" * 9),
            [f"Run outcomes (all learning rates, seeds and stds): {outcomes}.",
             f"GD steps executed: {d.executed_run_steps:,} over {d.status.size} runs ({fewer:,.0f}× fewer "
             f"than running every run to the cap); {d.seconds:.0f} s."]]
    return markdown(
        "# E2: balanced vs layer-wise Gaussian initialization across depths [ACGH19]",
        f"Gas-sensor Ethanol data, PCA-whitened ({result.input_dim} directions), labels scaled by "
        f"{result.label_scale:.4g} so that ‖Φ‖_F = {result.phi_norm:.6g}; whitened ℓ2 loss "
        "½‖W_e − Φ‖², optimum 0 at W_e = Φ. Hidden width "
        f"{c.hidden_width}, depths {', '.join(map(str, c.depths))}; full-batch GD in {c.dtype}.",
        [f"* Init stds: {len(stds)} values, {stds.min():.3g} … {stds.max():.3g} (log-spaced); "
         "layer-wise Gaussian = every W_j i.i.d. N(0, std²); balanced = ACGH19 Procedure 1 on an "
         "end-to-end matrix with i.i.d. N(0, std²) entries.",
         f"* Learning rates: {len(lrs)} values, {lrs.min():.3g} … {lrs.max():.3g} (log-spaced); each "
         f"(init, seed, std) cell takes the best. Seeds: {', '.join(map(str, c.seeds))}.",
         f"* Converged = loss ≤ {c.target:g} (the optimum is 0) within {c.max_steps:,} iterations. "
         f"Iterations are the first recorded step with loss ≤ {c.target:g}: recorded every "
         f"{c.fine_every} steps up to {c.fine_steps:,}, every {c.coarse_every} after (an upper "
         "bound, at most one interval late).",
         "* Runs are stopped once their outcome cannot change the cell's best: `dominated` (another "
         "learning rate of the cell already converged earlier), `certified` (a norm bound proves "
         "the loss cannot reach the target before the cap; see the module docstring), besides "
         "`converged`, `diverged` and `capped` (ran to the cap)."],
        "## Paper vs measured",
        "ACGH19 (THEORY.md §8, E2): layer-wise Gaussian init converges only inside a narrow window "
        "of stds that shrinks with depth (at depth 8 most runs fail); balanced init converges "
        "across the whole range, and its balancedness stays small along the trajectory.",
        markdown_table(["depth", "init", f"stds converged ({f'all {S} seeds' if S > 1 else f'seed {c.seeds[0]}'})",
                        "(some seed)", "window", "median iterations", "best lrs used",
                        "max balancedness, best runs"], overview, "rlrrlrlr"),
        *per_depth,
        "Margin = deficiency margin σ_min(Φ) − ‖W_e(0) − Φ‖_F at init (ACGH19; positive margin plus "
        f"approximate balance guarantees convergence), computed in {result.margin_dtype}; "
        "|margin| ≲ 1e-16 is round-off (W_e(0) ≈ 0). Max bal. = the largest "
        "max_j ‖W_{j+1}ᵀW_{j+1} − W_jW_jᵀ‖_F along the run shown (the best learning rate, or the "
        "longest-running one for a cell that did not converge).",
        f"Wall time {result.seconds:.0f} s on {jax.default_backend()} with {os.cpu_count()} CPUs; "
        f"1-minute load average {result.load_average[0]:.1f} at the start, "
        f"{result.load_average[1]:.1f} at the end (other jobs shared the machine when it exceeds "
        "the CPU count).",
    )


def _std_panels(result: InitResult, title: str, ylabel: str, **scales):
    """A figure with one panel per depth, init std (log scale) on the x-axis: the figure and
    ``(axis, (depth, DepthResult))`` pairs."""
    fig, (axes,) = figure_panels(1, len(result.depths), panel_size=(5.2, 4.2), title=title, xlabel="init std",
                                 ylabel=ylabel, xscale="log", sharey=True, **scales)
    return fig, zip(axes, result.depths.items())


def _iterations_figure(result: InitResult):
    """Iterations to converge at the best learning rate vs init std, one panel per depth."""
    c = result.config
    stds = np.asarray(c.init_stds)
    fig, panels = _std_panels(result, "E2: iterations to converge vs init std [ACGH19], whitened "
                              "gas-sensor Ethanol", f"iterations to loss ≤ {c.target:g} (best lr)", yscale="log")
    for ax, (depth, d) in panels:
        for i, init in enumerate(INITS):
            its = d.best_iterations[i].astype(float)  # (S, C)
            conv = its >= 0
            median = np.where(conv.all(axis=0), np.median(its, axis=0), np.nan)  # where every seed converged
            ax.plot(stds, median, "o-", color=_COLORS[init], label=_LABELS[init], ms=5)
            for s in range(its.shape[0]):
                ok = conv[s]
                ax.plot(stds[ok], its[s, ok], ".", color=_COLORS[init], alpha=0.35)
                ax.plot(stds[~ok], np.full((~ok).sum(), c.max_steps), "x", color=_COLORS[init],
                        ms=9, mew=2)
        ax.axhline(c.max_steps, color="0.4", ls="--", lw=1)
        ax.text(stds.min(), c.max_steps * 1.25, "cap: × = not converged", fontsize=8, color="0.3")
        ax.set_title(f"depth {depth}, hidden width {c.hidden_width}")
        if depth == c.depths[0]:
            ax.legend(loc="lower left")
    return fig


def _balancedness_figure(result: InitResult):
    """Balancedness along the representative run of every std (seed 0), depths × inits."""
    from matplotlib import colormaps
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import LogNorm

    stds, depths, floor = np.asarray(result.config.init_stds), list(result.depths), 1e-12
    norm, cmap = LogNorm(stds.min(), stds.max()), colormaps["viridis"]
    fig, axes = figure_panels(
        len(depths), len(INITS), panel_size=(5.5, 3.8), layout="constrained", sharey=True,
        xscale="log", yscale="log", ylabel="balancedness δ",
        title="E2: balancedness δ = max_j ‖W_{j+1}ᵀW_{j+1} − W_jW_jᵀ‖_F along the best-lr run\n"
              f"(dotted: cell not converged, longest run shown; • first hit; δ < {floor:g} drawn at {floor:g})")
    for (row, depth), (i, init) in itertools.product(enumerate(depths), enumerate(INITS)):
        ax, d = axes[row, i], result.depths[depth]
        for k, std in enumerate(stds):
            curve = d.curves[i][0][k]
            steps, bal = curve["step"], np.maximum(curve["balancedness"], floor)
            ok = d.best_iterations[i, 0, k] >= 0
            ax.plot(steps + 1, bal, color=cmap(norm(std)), lw=1.2 if ok else 0.8, ls="-" if ok else ":")
            if ok:
                ax.plot(steps[-1] + 1, bal[-1], "o", color=cmap(norm(std)), ms=3)
        ax.set_title(f"depth {depth}, {_LABELS[init]} init")
    for ax in axes[-1]:
        ax.set_xlabel("iteration + 1")
    fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=axes.ravel().tolist(), label="init std")
    return fig


def _margin_figure(result: InitResult):
    """Deficiency margin at init vs std, filled where the cell converged, one panel per depth."""
    stds = np.asarray(result.config.init_stds)
    fig, panels = _std_panels(result, "E2: deficiency margin at init vs convergence (positive "
                              "margin + balance ⇒ convergence, ACGH19 Thm 1)",
                              "deficiency margin at init  σ_min(Φ) − ‖W_e(0) − Φ‖_F")
    for ax, (depth, d) in panels:
        for (i, init), s in itertools.product(enumerate(INITS), range(len(result.config.seeds))):
            margin, ok = d.margin_init[i, s], d.best_iterations[i, s] >= 0
            style = {"color": _COLORS[init], "ms": 6, "ls": "none"}
            ax.plot(stds[ok], margin[ok], "o", **style,
                    label=f"{_LABELS[init]}, converged" if s == 0 else None)
            ax.plot(stds[~ok], margin[~ok], "o", mfc="none", **style,
                    label=f"{_LABELS[init]}, not converged" if s == 0 else None)
        ax.axhline(0.0, color="0.3", lw=0.8)
        ax.set_yscale("symlog", linthresh=1e-12)
        ax.set_title(f"depth {depth}")
        if depth == result.config.depths[0]:
            ax.legend(fontsize=8, loc="lower left")
    return fig


def _write_outputs(result: InitResult, out_dir: str | Path) -> dict[str, Path]:
    """``init_results.json``, ``init_iterations.png``, ``init_balancedness.png``,
    ``init_margin.png`` and ``init_summary.md`` in ``out_dir``."""
    figures = {
        "iterations": (_iterations_figure(result), "E2: iterations to converge vs init std, per depth"),
        "balancedness": (_balancedness_figure(result), "E2: balancedness along the trajectories"),
        "margin": (_margin_figure(result), "E2: deficiency margin at init vs convergence"),
    }
    return write_outputs(out_dir, "init", document=_document(result), summary=_summary(result),
                         figures=figures)


def _summary_lines(result: InitResult) -> list[str]:
    """What the command line prints: per depth and init, at how many stds every seed converged."""
    of = len(result.config.init_stds)
    return [f"depth {depth} {init:9s}: converged at {int(_converged_stds(d, i)[0].sum())} of {of} stds"
            for depth, d in result.depths.items() for i, init in enumerate(INITS)
            ] + [f"wall time {result.seconds:.0f} s"]


EXPERIMENT = Experiment(
    name="init",
    help="E2: balanced vs layer-wise Gaussian init across depths 3 and 8 (ACGH19)",
    description="Full-batch GD on the whitened gas-sensor Ethanol data (||Phi||_F = 1): depths 3 "
    "and 8, hidden width 32, balanced and layer-wise Gaussian inits over a log grid of stds, each "
    "at its best learning rate from a log grid 1e-4..1; iterations until the loss is within 1e-5 "
    "of the optimum; write init_results.json, init_*.png and init_summary.md. --steps N: the "
    "iteration cap (default 10^6); --seeds S: seeds 0..S-1 (default 1); --quick: 5 stds, 4 "
    "learning rates, cap 20000. GD in float32, deficiency margins in float64 (x64 is enabled).",
    options=(),
    common=("steps", "seeds"),
    configure=_configure,
    load=_load_problem,
    run=run_init_experiment,
    write_outputs=_write_outputs,
    summary_lines=_summary_lines,
    x64=True,
)
