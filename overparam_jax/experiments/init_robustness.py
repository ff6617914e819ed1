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
A *cell* is (depth, init, seed, std): ``seeds`` (5) independent draws, each drawn once from
``jax.random.key(seed)`` and scaled over the stds (so a seed's cells along the std axis
share one direction, and the seeds are independent). Every cell is run at every learning
rate of a log grid; its result is the **best learning rate** *for that seed*: the one whose
loss first drops to ``target`` (1e-5 above the optimum 0) in the fewest iterations, with a
cap of ``max_steps`` (10⁶); a cell where no learning rate gets there is *not converged*.
Each seed searches the whole grid (no learning rate is carried over from another seed).

**First-hit resolution.** The loss is recorded at every step (``fine_every`` = 1) for the
first ``fine_steps`` (1000) steps, so first hits up to there are exact, and every
``coarse_every`` (100) steps after; a later first hit is the first *recorded* step with loss
``<= target``, at most one interval late.

**Execution.** Per depth, the whole grid — inits × seeds × learning rates × stds — runs first
as one vmapped :func:`~overparam_jax.sweep` per init for ``fine_steps`` steps (both inits share
the compiled program). Runs that are still open continue in chunks of ``chunk_steps`` steps
through :func:`~overparam_jax.runner.run_chunks` (progress, checkpoint and resume per chunk;
the checkpoint holds only the weights of those runs): each chunk is one batched
:func:`~overparam_jax.dynamics.simulate` of :class:`~overparam_jax.dynamics.GradientDescent`
over the open runs from their last state (compacted, padded to a power of 2 so few shapes
compile), and a run stops as soon as its outcome for the best-learning-rate metric is decided:

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
**Checked by running:** per depth, the ``validate_certified`` (2) certified runs closest to
the threshold (smallest :math:`\tau / (2\eta(\mathrm{max\_steps} - t))`, at most one per cell)
are continued from their certified state to the cap anyway; none may reach the target.

**Recorded along each run** (:class:`~overparam_jax.Trajectory`): the loss and the
balancedness :math:`\max_j\|W_{j+1}^\top W_{j+1} - W_j W_j^\top\|_F` (THEORY.md §3); per cell the
deficiency margin at init, :math:`c = \sigma_{\min}(\Phi) - \|W_e(0) - \Phi\|_F`, in float64
from the sweep's initial weights and, since :math:`d_N = 1` (so :math:`\sigma_{\min}(\Phi) =
\|\Phi\|_F`), in the cancellation-free form
:math:`c = (2\langle W_e, \Phi\rangle - \|W_e\|_F^2) / (\|\Phi\|_F + \|W_e - \Phi\|_F)`: for a
Gaussian depth-8 init at small std :math:`\|W_e(0)\| \sim 10^{-34}`, far below the round-off
of the difference form, and this keeps its sign and digits; at the first hit,
:math:`\|W_e - \Phi\|_F = \sqrt{2\ell}` gives :math:`c = \sigma_{\min}(\Phi) - \sqrt{2\ell}`.

**Analysis** (the report; every number from the run arrays): per std, the fraction of seeds
that converged with its Wilson 95 % interval and the iterations' median and range over the
converged seeds; per seed, the *window* (the stds it converged at) and its width in decades
of std, flagged where an edge is the grid's (a lower bound); the *escape-time exponent*, the
log–log slope of the time :math:`\eta k` (best learning rate × iterations) against std over
the escape-dominated stds (below, :func:`predicted_escape_slope` for the prediction); the
deficiency margin against the outcome; and the balancedness along the best runs.

**Escape-time exponent.** Near the saddle at :math:`W = 0`, with every layer of scale
:math:`u`, the gradient of layer :math:`j` is :math:`W_{N:j+1}^\top(W_e - \Phi)W_{j-1:1}^\top
\approx -W_{N:j+1}^\top \Phi W_{j-1:1}^\top`, of size :math:`u^{N-1}`, so
:math:`\dot u \sim u^{N-1}` and leaving the saddle takes time
:math:`\int_u^{O(1)} dv / v^{N-1} \sim u^{-(N-2)}` (N ≥ 3; :math:`\ln(1/u)` at N = 2). The
layer-wise Gaussian init has :math:`u \propto \mathrm{std}`: time :math:`\propto
\mathrm{std}^{-(N-2)}`. The balanced init's layers are :math:`\Sigma^{1/N}` of an
end-to-end matrix of norm :math:`\propto \mathrm{std}`, so :math:`u \propto
\mathrm{std}^{1/N}` and time :math:`\propto \mathrm{std}^{-(N-2)/N}` — the same exponent as
the balanced end-to-end flow :math:`\dot W_e = -\|W_e\|^{2-2/N}(\nabla + (N-1)\hat W_e\hat
W_e^\top\nabla)` (ACH18), homogeneous of degree :math:`2 - 2/N` near 0. Predicted slopes:
−1 (Gaussian, N = 3), −6 (Gaussian, N = 8), −1/3 (balanced, N = 3), −3/4 (balanced,
N = 8). The measured time adds a descent phase after the escape; a fixed cost :math:`D`
cannot exceed the fastest time :math:`T_{\min}` of that depth and init, so on stds with
:math:`T \ge 10\,T_{\min}` (``escape_dominance``), on the decreasing branch (stds at or below
each seed's fastest), the local slope is within 10 % of the escape's. Where fewer than two
stds qualify, the slope over the decreasing branch is reported instead and labelled biased
toward 0. The lower edge of the window is extrapolated from the fit: the std whose fitted
time equals :math:`\eta\,\mathrm{max\_steps}` at the best learning rate of the smallest
fitted std.

**Precision.** GD runs in ``dtype`` (float32): at the target the residual
:math:`\|W_e - \Phi\| \approx 4.5\cdot10^{-3}`, ~10⁴ times the float32 error of the product.
The margins are float64, so the experiment needs ``jax_enable_x64`` (``overparam-jax reproduce
init`` enables it; :func:`run_init_experiment` refuses to run without it rather than compute
them in another dtype).

**Public names:** :data:`EXPERIMENT` (configure, load, run, report: what the command line
calls), :class:`InitConfig`, :func:`run_init_experiment`, :class:`InitResult` and its
:class:`DepthResult`, the axis labels :data:`INITS` and :data:`STATUSES`, the certificate
:func:`escape_time_lower_bound`, the prediction :func:`predicted_escape_slope`, and
:func:`readme_paragraph` (the README's paragraph from the results JSON). The rest of the
module is private.

References:
    [ACGH19] Arora, Cohen, Golowich, Hu. A Convergence Analysis of Gradient Descent for Deep
    Linear Neural Networks. ICLR 2019 (Procedure 1: balanced initialization; the experiment
    comparing it with layer-wise independent initialization across depths).
    [ACH18] Arora, Cohen, Hazan. On the Optimization of Deep Networks: Implicit Acceleration
    by Overparameterization. ICML 2018 (the end-to-end dynamics).
"""

from __future__ import annotations

import functools
import itertools
import math
import os
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from overparam_jax._validation import require_int, require_positive
from overparam_jax.analysis import first_hit, last_finite, loglog_slope, max_finite, significant
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
from overparam_jax.networks import balancedness, end_to_end
from overparam_jax.runner import ProgressFn, run_chunks
from overparam_jax.sweeps import sweep
from overparam_jax.theory import theorem1_conditions, wilson_interval

__all__ = [
    "EXPERIMENT",
    "INITS",
    "STATUSES",
    "DepthResult",
    "InitConfig",
    "InitResult",
    "escape_time_lower_bound",
    "predicted_escape_slope",
    "readme_paragraph",
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
        seeds: integer seeds; cell ``(init, seed, std)`` draws from ``jax.random.key(seed)``
            (default 5 seeds, each searching the whole learning-rate grid).
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
        validate_certified: per depth, how many certified runs (the closest to the
            certificate's threshold, at most one per cell) are run on to the cap to check it.
        escape_dominance: the escape-time fit uses the stds whose time is at least this
            many times the fastest time of that depth and init (> 1).
        dtype: float dtype of the GD runs (the margins are float64 regardless).
    """

    depths: tuple[int, ...] = (3, 8)
    hidden_width: int = 32
    init_stds: tuple[float, ...] = _log_grid(1e-5, 1.0, 16)
    learning_rates: tuple[float, ...] = _log_grid(1e-4, 1.0, 9)
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    max_steps: int = 1_000_000
    target: float = 1e-5
    fine_steps: int = 1_000
    fine_every: int = 1
    chunk_steps: int = 10_000
    coarse_every: int = 100
    certificate_slack: float = 2.0
    compact_min_steps: int = 100_000
    validate_certified: int = 2
    escape_dominance: float = 10.0
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
    require_int("validate_certified", config.validate_certified, minimum=0)
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
    if list(config.init_stds) != sorted(set(config.init_stds)):
        raise ValueError(f"`init_stds` must increase strictly, but are {config.init_stds!r}.")
    require_positive("target", config.target)
    if not config.certificate_slack >= 1:
        raise ValueError(f"`certificate_slack` must be >= 1, but is {config.certificate_slack!r}.")
    if not config.escape_dominance > 1:
        raise ValueError(f"`escape_dominance` must be > 1, but is {config.escape_dominance!r}.")
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
        certificate_ratio: run array, for a certified run
            :math:`\\tau / (\\eta\\,(\\mathrm{max\\_steps} - t))` at its certification
            (``> certificate_slack``); NaN for the others.
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
        certificate_check: one dict per certified run continued to the cap (see
            :func:`_check_certificates`).
        executed_run_steps: GD steps executed over all runs (batch padding and the
            certificate check included).
        seconds: wall time of this depth (compilation included).
    """

    depth: int
    first_hit: np.ndarray
    status: np.ndarray
    stopped_at: np.ndarray
    max_balancedness: np.ndarray
    final_loss: np.ndarray
    certificate_ratio: np.ndarray
    best_iterations: np.ndarray
    best_lr_index: np.ndarray
    loss_init: np.ndarray
    balancedness_init: np.ndarray
    margin_init: np.ndarray
    margin_at_hit: np.ndarray
    curves: list
    certificate_check: list
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
            chunk (stage ``"depth N"``, metric ``"open runs"``; then stage
            ``"depth N certificate check"``, metric ``"lowest loss"``).
        checkpoint: if given, the grid sweeps, the open runs after every chunk and the
            certificate check are saved there, and a rerun with the same folder resumes
            where it stopped (same result, bit for bit).

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
    phi_norm = float(np.linalg.norm(problem.Phi, 2))

    # 1. The whole grid for `fine_steps` steps, one sweep per init (one compiled program).
    grids = [sweep(loss_fn, input_dim=problem.Phi.shape[1], output_dim=problem.Phi.shape[0],
                   hidden_width=config.hidden_width, depths=[depth], seeds=config.seeds,
                   learning_rates=config.learning_rates, init_stds=config.init_stds,
                   num_steps=config.fine_steps, save_every=config.fine_every, init=init,
                   dtype=dtype, checkpoint=stage(f"{init}_grid"))
             for init in INITS]
    flat = lambda x: np.asarray(x)[:, :, :, 0].reshape((-1,) + x.shape[4:])  # (S, L, C, 1, ...) -> (.., ...)
    fine_loss = np.concatenate([flat(g.trajectory.loss) for g in grids]).astype(np.float64)
    fine_bal = np.concatenate([flat(g.trajectory.balancedness) for g in grids]).astype(np.float64)
    fine_steps = np.asarray(grids[0].trajectory.step[0, 0, 0, 0])
    diverged_at = np.concatenate([flat(g.trajectory.diverged_at) for g in grids])

    # 2. Each cell's initial network (the sweep's; one depth, so unpadded): margin, balancedness.
    initial = [tuple(W[:, 0, :, 0] for W in g.initial) for g in grids]  # (S, C, ...) per init
    margin_init = np.stack([_margins(params, problem.Phi) for params in initial])
    bal_init = np.stack([np.asarray(jax.vmap(jax.vmap(balancedness))(p), np.float64) for p in initial])
    loss_init = fine_loss[:, 0].reshape(shape)[:, :, 0]

    # 3. The runs still open after the sweep (the only weights the continuation keeps), in
    # chunks to the cap, each stopped once its outcome is decided.
    carry = {"status": np.full(R, _OPEN), "first_hit": np.full(R, -1), "stopped_at": np.full(R, -1),
             "certificate_ratio": np.full(R, np.nan), "batch": np.asarray(-1)}
    carry = _settle(carry, np.arange(R), fine_steps[1:], fine_loss[:, 1:], diverged_at, config)
    tracked = np.flatnonzero(carry["status"] == _OPEN)
    carry["params"] = tuple(np.concatenate([flat(W) for W in Ws])[tracked]
                            for Ws in zip(*(g.trajectory.final for g in grids)))
    etas = np.broadcast_to(np.asarray(config.learning_rates)[:, None], shape).ravel()
    advance = functools.partial(_advance, config=config, loss_fn=loss_fn, etas=etas, shape=shape,
                                tracked=tracked, phi_norm=phi_norm)
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

    # 4. The continuation's records of the tracked runs on one grid of steps (NaN where a run
    # did not run), then every run's records up to its stop: the fine part, then these.
    per, num = config.chunk_steps // config.coarse_every, len(sizes)
    coarse_steps = config.fine_steps + config.coarse_every * np.arange(1, per * num + 1)
    coarse_loss, coarse_bal = (np.full((tracked.size, per * num), np.nan) for _ in range(2))
    row = np.full(R, -1)
    row[tracked] = np.arange(tracked.size)
    for k, records in enumerate(chunks):
        columns = k * per + np.arange(per)
        coarse_loss[row[records["runs"]][:, None], columns] = records["loss"]
        coarse_bal[row[records["runs"]][:, None], columns] = records["balancedness"]

    def records_of(r: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Run ``r``'s recorded steps, loss and balancedness up to its stop."""
        steps, loss, bal = fine_steps, fine_loss[r], fine_bal[r]
        if row[r] >= 0:
            steps = np.concatenate([steps, coarse_steps])
            loss, bal = np.concatenate([loss, coarse_loss[row[r]]]), np.concatenate([bal, coarse_bal[row[r]]])
        ran = steps <= stopped[r]
        return steps[ran], loss[ran], bal[ran]

    records = [records_of(r) for r in range(R)]
    final_loss = np.array([last_finite(loss) for _, loss, _ in records]).reshape(shape)
    max_bal = np.array([max_finite(bal) for _, _, bal in records]).reshape(shape)

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
    curves = [[[dict(zip(("step", "loss", "balancedness"), records[r]), lr_index=int(shown[i, s, c]))
                for c, r in enumerate(row_)] for s, row_ in enumerate(block)]
              for i, block in enumerate(shown_runs)]
    at_hit = _sigma_min(problem.Phi) - np.sqrt(2.0 * final_loss.ravel()[shown_runs])  # sqrt(2ℓ) = ‖W_e − Φ‖

    # 6. The certificate, checked by running: certified runs continued to the cap.
    check, check_steps = _check_certificates(depth, config, loss_fn, carry, tracked, etas, shape,
                                             progress, stage("certificate_check"))
    return DepthResult(
        depth=depth, first_hit=first, status=status, stopped_at=stopped,
        max_balancedness=max_bal, final_loss=final_loss,
        certificate_ratio=carry["certificate_ratio"].reshape(shape),
        best_iterations=best_it, best_lr_index=best_lr, loss_init=loss_init,
        balancedness_init=bal_init, margin_init=margin_init,
        margin_at_hit=np.where(best_lr >= 0, at_hit, np.nan), curves=curves, certificate_check=check,
        executed_run_steps=(R * config.fine_steps + check_steps
                            + config.chunk_steps * sum(rec["batch"] for rec in chunks)),
        seconds=time.perf_counter() - start,
    )


def _margins(params: tuple[jax.Array, ...], Phi: np.ndarray) -> np.ndarray:
    r"""The deficiency margin :math:`\sigma_{\min}(\Phi) - \|W_e - \Phi\|_F` of every initial
    network ``(S, C, ...)``, in float64, for a single-output :math:`\Phi` (``(1, d_0)``, so
    :math:`\sigma_{\min}(\Phi) = \|\Phi\|_F`), as
    :math:`(2\langle W_e, \Phi\rangle - \|W_e\|_F^2) / (\|\Phi\|_F + \|W_e - \Phi\|_F)`: the same
    number without the cancellation, so a margin of 1e-34 keeps its sign and digits."""
    wide = jnp.dtype(_MARGIN_DTYPE)
    W_e = np.asarray(jax.vmap(jax.vmap(end_to_end))(tuple(W.astype(wide) for W in params)), np.float64)
    Phi = np.asarray(Phi, np.float64)
    inner = np.einsum("...ij,ij->...", W_e, Phi)
    squared = np.einsum("...ij,...ij->...", W_e, W_e)
    return (2.0 * inner - squared) / (np.linalg.norm(Phi) + np.linalg.norm(W_e - Phi, axis=(-2, -1)))


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


def _prune(carry: dict, step: int, etas: np.ndarray, config: InitConfig, shape, tracked: np.ndarray,
           phi_norm: float) -> dict:
    """Stop the open runs that are dominated (their cell already hit the target at a step
    ``<= step``) or certified (:func:`escape_time_lower_bound` exceeds the time left)."""
    open_ = carry["status"] == _OPEN
    escape = np.zeros(open_.size)
    live = open_[tracked]  # the open runs are tracked ones
    if live.any():
        escape[tracked[live]] = escape_time_lower_bound([W[live] for W in carry["params"]],
                                                        phi_norm=phi_norm, target=config.target)
    hit = np.where(carry["first_hit"] >= 0, carry["first_hit"], np.iinfo(np.int64).max).reshape(shape)
    best = np.broadcast_to(hit.min(axis=2, keepdims=True), shape).ravel()
    dominated = open_ & (best <= step)
    ratio = escape / (etas * (config.max_steps - step))
    certified = open_ & ~dominated & (ratio > config.certificate_slack)
    status, stopped, kept = carry["status"].copy(), carry["stopped_at"].copy(), carry["certificate_ratio"].copy()
    status[dominated], status[certified] = _DOMINATED, _CERTIFIED
    stopped[dominated | certified] = step
    kept[certified] = ratio[certified]
    return {**carry, "status": status, "stopped_at": stopped, "certificate_ratio": kept}


def _advance(carry: dict, start: int, size: int, *, config: InitConfig, loss_fn, etas: np.ndarray,
             shape, tracked: np.ndarray, phi_norm: float) -> tuple[dict, dict]:
    """One chunk of :func:`run_chunks`: prune, then ``size`` GD steps of the open runs as one
    batch (a power of 2, or the previous batch when few steps remain) from step
    ``fine_steps + start``. Records: the runs, their loss and balancedness, the batch size
    and the number of runs still open."""
    step = config.fine_steps + start
    carry = _prune(carry, step, etas, config, shape, tracked, phi_norm)
    live = np.flatnonzero(carry["status"][tracked] == _OPEN)  # positions in `tracked`
    runs = tracked[live]
    if runs.size == 0:
        nothing = np.zeros((0, size // config.coarse_every))
        return carry, {"runs": runs, "loss": nothing, "balancedness": nothing, "batch": 0, "open": 0}
    batch, previous = 1 << (runs.size - 1).bit_length(), int(carry["batch"])  # a power of 2
    if batch < previous and config.max_steps - step < config.compact_min_steps:
        batch = previous  # not worth a compilation
    take = np.concatenate([live, np.full(batch - live.size, live[0])])
    traj = _gd_chunk(loss_fn, etas[tracked[take]],
                     tuple(W[take] for W in carry["params"]), size, config.coarse_every)
    n = runs.size
    steps = step + config.coarse_every * np.arange(1, size // config.coarse_every + 1)
    loss, bal = np.asarray(traj.loss[:n, 1:]), np.asarray(traj.balancedness[:n, 1:])  # run dtype
    diverged_at = np.asarray(traj.diverged_at[:n])
    params = tuple(W.copy() for W in carry["params"])
    for W, final in zip(params, traj.final):
        W[live] = np.asarray(final)[:n]
    carry = _settle({**carry, "params": params, "batch": np.asarray(batch)}, runs, steps,
                    loss.astype(np.float64), np.where(diverged_at >= 0, step + diverged_at, -1), config)
    return carry, {"runs": runs, "loss": loss, "balancedness": bal, "batch": batch,
                   "open": int(np.sum(carry["status"] == _OPEN))}


def _gd_chunk(loss_fn, etas: np.ndarray, params: tuple[np.ndarray, ...], num_steps: int, save_every: int):
    """``num_steps`` GD steps of a batch of runs (leading axis), recorded every ``save_every``."""
    dtype = params[0].dtype
    rule = GradientDescent(loss_fn, jnp.asarray(etas, dtype), jnp.zeros(len(etas), dtype))
    return simulate(rule, tuple(jnp.asarray(W) for W in params), num_steps=num_steps,
                    save_every=save_every, batched=True)


def _check_certificates(depth: int, config: InitConfig, loss_fn, carry: dict, tracked: np.ndarray,
                        etas: np.ndarray, shape, progress: ProgressFn | None,
                        checkpoint) -> tuple[list[dict], int]:
    """Run certified runs on from their certified state to the cap: the
    ``validate_certified`` closest to the certificate's threshold (smallest
    ``certificate_ratio``), at most one per cell, as one batch through :func:`run_chunks`.

    Returns:
        One dict per run checked (its cell, learning rate, where and how tightly it was
        certified, its first hit of the target before the cap — -1 if none, as the
        certificate says —, the lowest loss recorded, the loss at the cap and whether it
        diverged), and the GD steps executed.
    """
    certified = np.flatnonzero(carry["status"] == _CERTIFIED)
    order = certified[np.argsort(carry["certificate_ratio"][certified], kind="stable")]
    chosen, cells = [], set()
    for r in order.tolist():
        i, s, _, c = np.unravel_index(r, shape)
        if (i, s, c) not in cells and len(chosen) < config.validate_certified:
            cells.add((i, s, c))
            chosen.append(r)
    if not chosen:
        return [], 0
    runs = np.asarray(chosen)
    position = np.searchsorted(tracked, runs)
    begin = carry["stopped_at"][runs]  # the step each run was certified at
    every = config.coarse_every
    sizes = [config.chunk_steps] * -(-int(np.max(config.max_steps - begin)) // config.chunk_steps)
    state = {"params": tuple(W[position] for W in carry["params"]), "hit": np.full(runs.size, -1),
             "lowest": np.full(runs.size, np.inf), "last": np.full(runs.size, np.nan),
             "diverged_at": np.full(runs.size, -1)}

    def advance(state: dict, start: int, size: int) -> tuple[dict, dict]:
        traj = _gd_chunk(loss_fn, etas[runs], state["params"], size, every)
        steps = begin[:, None] + start + every * np.arange(1, size // every + 1)[None, :]  # (K, T)
        loss = np.where(steps <= config.max_steps, np.asarray(traj.loss[:, 1:], np.float64), np.nan)
        hits = first_hit(np.arange(loss.shape[1]), np.where(np.isnan(loss), np.inf, loss), config.target)
        hit = np.where((state["hit"] < 0) & (hits >= 0), steps[np.arange(runs.size), np.maximum(hits, 0)],
                       state["hit"])
        diverged = np.asarray(traj.diverged_at)
        diverged_at = np.where((state["diverged_at"] < 0) & (diverged >= 0)
                               & (begin + start + diverged <= config.max_steps),
                               begin + start + diverged, state["diverged_at"])
        with np.errstate(invalid="ignore"):
            lowest = np.fmin(state["lowest"], np.nanmin(np.where(np.isfinite(loss), loss, np.nan), axis=1,
                                                        initial=np.inf))
        last = np.where(np.isfinite(last_finite(loss)), last_finite(loss), state["last"])
        state = {"params": tuple(np.asarray(W) for W in traj.final), "hit": hit, "lowest": lowest,
                 "last": last, "diverged_at": diverged_at}
        return state, {"lowest": float(np.min(lowest))}

    fingerprint = {"depth": depth, "runs": runs.tolist(), "chunks": sizes,
                   "sha256 of the certified runs": array_digest(state)}
    state, chunks = run_chunks(advance, state, sizes, checkpoint=checkpoint, fingerprint=fingerprint,
                               progress=progress, stage=f"depth {depth} certificate check",
                               metrics=lambda records: {"lowest loss": records["lowest"]})
    out = []
    for k, r in enumerate(runs.tolist()):
        i, s, l, c = np.unravel_index(r, shape)
        out.append({"init": INITS[i], "seed": config.seeds[s], "std": config.init_stds[c],
                    "learning_rate": config.learning_rates[l], "certified_at": int(begin[k]),
                    "certificate_ratio": float(carry["certificate_ratio"][r]),
                    "ran_to": config.max_steps, "first_hit": int(state["hit"][k]),
                    "lowest_loss": float(state["lowest"][k]), "loss_at_cap": float(state["last"][k]),
                    "diverged_at": int(state["diverged_at"][k])})
    return out, runs.size * config.chunk_steps * len(chunks)


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
# The analysis: what the report says, as plain numbers (the JSON's "analysis")
# --------------------------------------------------------------------------------------

# "Small" balancedness: 10 % of the weights' own scale at the optimum, where
# ‖W_j‖₂² = ‖Φ‖^(2/N) = 1 for balanced weights (the criterion of the tests, fixed beforehand).
BALANCEDNESS_SMALL = 0.1


def predicted_escape_slope(init: str, depth: int) -> float:
    r"""The saddle-at-zero prediction of :math:`d\log(\text{time}) / d\log(\text{std})`:
    :math:`-(N-2)` for the layer-wise Gaussian init (layer scale :math:`\propto` std) and
    :math:`-(N-2)/N` for the balanced init (layer scale :math:`\propto \mathrm{std}^{1/N}`);
    the derivation is in the module docstring. At N = 2 the escape time grows like
    :math:`\ln(1/\mathrm{std})`, slope 0.

    Examples:
        >>> predicted_escape_slope("gaussian", 8), predicted_escape_slope("balanced", 8)
        (-6.0, -0.75)
    """
    if init not in INITS:
        raise ValueError(f"`init` must be one of {INITS}, but is {init!r}.")
    require_int("depth", depth, minimum=2)
    return -float(depth - 2) if init == "gaussian" else -(depth - 2) / depth


def _round(x, digits: int = 3):
    """``x`` (a number or None) rounded to ``digits`` significant digits, for the JSON."""
    return None if x is None or not np.isfinite(x) else float(significant(float(x), digits))


def _convergence(its: np.ndarray, time_: np.ndarray) -> dict[str, Any]:
    """Per std, over seeds (``its``, ``time_``: ``(S, C)``): converged count, its Wilson 95 %
    interval, and the iterations' and times' median and range over the converged seeds."""
    S, C = its.shape
    conv = its >= 0
    k = conv.sum(axis=0)
    low, high = zip(*(wilson_interval(int(x), S) for x in k))

    def over(f, x):
        return [_round(f(x[conv[:, c], c]), 4) if conv[:, c].any() else None for c in range(C)]

    return {"converged": k.tolist(), "of": S, "wilson_low": [_round(x) for x in low],
            "wilson_high": [_round(x) for x in high], "iterations_median": over(np.median, its),
            "iterations_min": over(np.min, its), "iterations_max": over(np.max, its),
            "time_median": over(np.median, time_), "cells_converged": int(conv.sum()), "cells": int(conv.size)}


def _windows(stds: np.ndarray, its: np.ndarray, seeds: Sequence[int]) -> dict[str, Any]:
    """Per seed, the window (the stds it converged at, from the lowest to the highest) and its
    width in decades, flagged where an edge is the grid's own (the true window is wider);
    and over seeds, the widths' median and range."""
    log = np.log10(stds)
    per_seed = []
    for s, seed in enumerate(seeds):
        conv = its[s] >= 0
        if not conv.any():
            per_seed.append({"seed": seed, "converged": 0, "low": None, "high": None, "width_decades": None,
                             "below_grid": False, "above_grid": False, "contiguous": True})
            continue
        lo, hi = np.flatnonzero(conv)[[0, -1]]
        per_seed.append({"seed": seed, "converged": int(conv.sum()), "low": float(stds[lo]),
                         "high": float(stds[hi]), "width_decades": _round(log[hi] - log[lo]),
                         "below_grid": bool(lo == 0), "above_grid": bool(hi == stds.size - 1),
                         "contiguous": bool(conv[lo:hi + 1].all())})
    widths = [w["width_decades"] for w in per_seed if w["width_decades"] is not None]
    every, some = (its >= 0).all(axis=0), (its >= 0).any(axis=0)
    return {
        "per_seed": per_seed,
        "width_median": _round(np.median(widths)) if widths else None,
        "width_min": min(widths) if widths else None, "width_max": max(widths) if widths else None,
        "seeds_with_window": len(widths),
        "seeds_censored": sum(w["below_grid"] or w["above_grid"] for w in per_seed),
        "seeds_below_grid": sum(w["below_grid"] for w in per_seed),
        "grid_step_decades": _round(float(np.median(np.diff(log)))),
        "grid_span_decades": _round(float(log[-1] - log[0])),
        "every_seed": [float(stds[every][0]), float(stds[every][-1])] if every.any() else None,
        "some_seed": [float(stds[some][0]), float(stds[some][-1])] if some.any() else None,
    }


def _escape_fit(stds: np.ndarray, time_: np.ndarray, lr: np.ndarray, *, init: str, depth: int,
                dominance: float, max_steps: int, seeds: Sequence[int]) -> dict[str, Any]:
    """The escape-time exponent: :func:`~overparam_jax.analysis.loglog_slope` of the time
    :math:`\\eta k` (``time_``, ``(S, C)``, NaN where not converged) against std over the
    escape-dominated stds (time ``>= dominance`` × the fastest time, at or below each
    seed's fastest std), else over that decreasing branch (``"range"`` says which); per-seed
    slopes; and the lower edge of the window extrapolated from the fit."""
    out = {"predicted_slope": _round(predicted_escape_slope(init, depth)), "slope": None, "intercept": None,
           "range": None,
           "slope_seed_min": None, "slope_seed_max": None, "seeds_fitted": 0, "points": 0,
           "fit_stds": None, "time_min": None, "time_ratio_max": None, "lower_edge_extrapolated": None,
           "lower_edge_learning_rate": None}
    conv = np.isfinite(time_)
    if not conv.any():
        return out
    t_min = float(np.nanmin(time_))
    out.update(time_min=_round(t_min), time_ratio_max=_round(np.nanmax(time_) / t_min))
    fastest = np.array([np.nanargmin(row) if np.isfinite(row).any() else -1 for row in time_])
    branch = conv & (np.arange(stds.size)[None, :] <= fastest[:, None])
    use, kind = branch & (time_ >= dominance * t_min), "escape-dominated"
    if np.unique(np.nonzero(use)[1]).size < 2:
        use, kind = branch, "decreasing branch"
    columns = np.unique(np.nonzero(use)[1])
    if columns.size < 2:
        return {**out, "points": int(use.sum())}
    x, y = np.broadcast_to(stds, time_.shape)[use], time_[use]
    slope = loglog_slope(x, y)
    intercept = float(np.mean(np.log(y)) - slope * np.mean(np.log(x)))
    per_seed = [loglog_slope(stds[use[s]], time_[s, use[s]]) for s in range(len(seeds))
                if np.unique(stds[use[s]]).size >= 2]
    out.update(slope=_round(slope), intercept=_round(intercept, 6), range=kind, points=int(use.sum()), seeds_fitted=len(per_seed),
               slope_seed_min=_round(min(per_seed)) if per_seed else None,
               slope_seed_max=_round(max(per_seed)) if per_seed else None,
               fit_stds=[float(stds[columns[0]]), float(stds[columns[-1]])])
    if kind == "escape-dominated" and slope < 0:
        # The learning rate of the slowest runs: the best one at the smallest fitted std
        # (the most frequent over seeds; ties: the larger).
        rates, counts = np.unique(lr[use[:, columns[0]], columns[0]], return_counts=True)
        eta = float(rates[counts == counts.max()].max())
        edge = math.exp((math.log(eta * max_steps) - intercept) / slope)
        out.update(lower_edge_extrapolated=_round(edge), lower_edge_learning_rate=eta)
    return out


def _margin_outcomes(margin: np.ndarray, conv: np.ndarray, stds: np.ndarray, bal_init: np.ndarray,
                     lr: np.ndarray, *, phi_norm: float, depth: int) -> dict[str, Any]:
    """Cells ``(S, C)`` by the sign of their deficiency margin at init and by outcome, and
    what Theorem 1 asks of the positive-margin ones (:func:`~overparam_jax.theorem1_conditions`:
    δ-balance with δ ≤ δ_max(c), η ≤ η_max(c)); ``lr`` is each cell's best learning rate
    (NaN where not converged). ``theorem1_covered_converged`` counts the converged cells
    whose init and best learning rate met all three hypotheses."""
    pos = margin > 0
    conds = [theorem1_conditions(float(c), phi_norm, depth) for c in margin[pos]]
    ratios = [b / cond.delta_max for b, cond in zip(bal_init[pos], conds)]
    covered = [ok and r <= 1 and eta <= cond.eta_max
               for ok, r, eta, cond in zip(conv[pos], ratios, lr[pos], conds)]
    neg_conv = ~pos & conv
    return {
        "positive": {"converged": int((pos & conv).sum()), "not_converged": int((pos & ~conv).sum())},
        "nonpositive": {"converged": int(neg_conv.sum()), "not_converged": int((~pos & ~conv).sum())},
        "margin_max": _round(margin.max()),
        "margin_positive_min": _round(margin[pos].min()) if pos.any() else None,
        "nonpositive_converged_std_min": float(np.broadcast_to(stds, conv.shape)[neg_conv].min())
        if neg_conv.any() else None,
        "theorem1_eta_max_largest": _round(max(c.eta_max for c in conds)) if conds else None,
        "theorem1_delta_met": int(sum(r <= 1 for r in ratios)),
        "theorem1_delta_ratio_min": _round(min(ratios)) if ratios else None,
        "theorem1_covered_converged": int(sum(covered)),
        "converged": int(conv.sum()),
    }


def _balancedness_summary(max_bal_best: np.ndarray, bal_init: np.ndarray, stds: np.ndarray,
                          lr: np.ndarray) -> dict[str, Any]:
    """The balancedness along the best runs (``(S, C)``, NaN where not converged) and at init;
    where the largest one was (its std and best learning rate ``lr``)."""
    along = max_bal_best[np.isfinite(max_bal_best)]
    worst = np.unravel_index(np.nanargmax(max_bal_best), max_bal_best.shape) if along.size else None
    return {"max_along_best_runs": _round(along.max()) if along.size else None,
            "median_along_best_runs": _round(np.median(along)) if along.size else None,
            "std_of_max": float(stds[worst[1]]) if worst else None,
            "learning_rate_of_max": float(lr[worst]) if worst else None,
            "cells_small": int(np.sum(along <= BALANCEDNESS_SMALL)), "cells": int(along.size),
            "at_init_max": _round(bal_init.max()), "at_init_min": _round(bal_init.min())}


def _analysis(result: InitResult) -> dict[str, Any]:
    """Per depth and init: convergence over seeds, windows, the escape fit, margins vs
    outcome, balancedness (see the functions above); and the paper's observations' verdicts."""
    c = result.config
    stds, lrs = np.asarray(c.init_stds), np.asarray(c.learning_rates)
    per_depth = {}
    for depth, d in result.depths.items():
        entry = {}
        for i, init in enumerate(INITS):
            its, li = d.best_iterations[i], d.best_lr_index[i]
            conv = its >= 0
            lr = np.where(conv, lrs[np.maximum(li, 0)], np.nan)
            time_ = np.where(conv, lr * its, np.nan)
            best_bal = np.take_along_axis(d.max_balancedness[i], np.maximum(li, 0)[:, None, :], axis=1)[:, 0]
            entry[init] = {
                "convergence": _convergence(its, time_),
                "windows": _windows(stds, its, c.seeds),
                "escape": _escape_fit(stds, time_, lr, init=init, depth=depth, dominance=c.escape_dominance,
                                      max_steps=c.max_steps, seeds=c.seeds),
                "margins": _margin_outcomes(d.margin_init[i], conv, stds, d.balancedness_init[i], lr,
                                            phi_norm=result.phi_norm, depth=depth),
                "balancedness": _balancedness_summary(np.where(conv, best_bal, np.nan), d.balancedness_init[i],
                                                      stds, lr),
            }
        entry["certificate_check"] = {"runs": len(d.certificate_check),
                                      "converged": sum(r["first_hit"] >= 0 for r in d.certificate_check),
                                      "lowest_loss": _round(min((r["lowest_loss"] for r in d.certificate_check),
                                                                default=np.nan)),
                                      "certificate_ratio_min": _round(min(
                                          (r["certificate_ratio"] for r in d.certificate_check), default=np.nan))}
        per_depth[str(depth)] = entry
    cells = [per_depth[str(d)][init] for d in c.depths for init in INITS]
    checks = [per_depth[str(d)]["certificate_check"] for d in c.depths]
    balanced = [per_depth[str(d)]["balanced"] for d in c.depths]
    totals = {  # over depths and inits, so that the README prints no sum of its own
        "converged": sum(x["margins"]["converged"] for x in cells),
        "theorem1_covered_converged": sum(x["margins"]["theorem1_covered_converged"] for x in cells),
        "balanced_nonpositive_converged": sum(x["margins"]["nonpositive"]["converged"] for x in balanced),
        "certificate_runs": sum(x["runs"] for x in checks),
        "certificate_converged": sum(x["converged"] for x in checks),
        "balanced_cells_small": sum(x["balancedness"]["cells_small"] for x in balanced),
        "balanced_cells": sum(x["balancedness"]["cells"] for x in balanced),
    }
    return {"depths": per_depth, "verdicts": _verdicts(per_depth, c), "totals": totals}


def _verdict(flags: Sequence[bool]) -> str:
    return "holds" if all(flags) else ("partly" if any(flags) else "does not hold")


def _verdicts(per_depth: dict, config: InitConfig) -> list[dict[str, Any]]:
    """The paper's observations (THEORY.md §8, E2), each judged by a criterion fixed here:

    * narrow window (layer-wise Gaussian): at a depth, every seed's window has both edges
      inside the grid and spans at most half of it; per depth;
    * shrinking with depth: every seed's window at the deepest depth is narrower than at the
      shallowest (a window cut by the grid counts at its measured width, a lower bound; an
      empty one as narrower than any);
    * most runs fail at the deepest depth (layer-wise Gaussian): more than half of its cells
      do not converge;
    * balanced init converges across the range: every cell of every depth converges;
    * balancedness stays small (balanced init): the largest δ along every converged run is
      at most :data:`BALANCEDNESS_SMALL`.
    """
    depths = [str(d) for d in config.depths]
    gauss = {d: per_depth[d]["gaussian"] for d in depths}

    def narrow(d):
        w = gauss[d]["windows"]
        return all(not (s["below_grid"] or s["above_grid"]) and s["width_decades"] <= w["grid_span_decades"] / 2
                   for s in w["per_seed"] if s["width_decades"] is not None)

    shallow, deep = depths[0], depths[-1]
    pairs = zip(gauss[shallow]["windows"]["per_seed"], gauss[deep]["windows"]["per_seed"])
    shrinks = [b["width_decades"] is None or (a["width_decades"] is not None
                                              and b["width_decades"] < a["width_decades"]) for a, b in pairs]
    conv = gauss[deep]["convergence"]
    balanced = [per_depth[d]["balanced"] for d in depths]
    return [
        {"observation": "layer-wise Gaussian converges only in a narrow window of stds",
         "verdict": _verdict([narrow(d) for d in depths]), "narrow_at_depth": {d: narrow(d) for d in depths}},
        {"observation": "the window shrinks with depth", "verdict": _verdict(shrinks) if len(depths) > 1 else None,
         "seeds_narrower_at_deepest": sum(shrinks), "seeds": len(shrinks)},
        {"observation": f"at depth {deep} most layer-wise Gaussian runs fail",
         "verdict": "holds" if conv["cells"] - conv["cells_converged"] > conv["cells"] / 2 else "does not hold",
         "cells_failed": conv["cells"] - conv["cells_converged"], "cells": conv["cells"]},
        {"observation": "balanced init converges across the range of stds",
         "verdict": _verdict([b["convergence"]["cells_converged"] == b["convergence"]["cells"] for b in balanced])},
        {"observation": "balancedness stays small along the balanced runs",
         "verdict": _verdict([b["balancedness"]["cells_small"] == b["balancedness"]["cells"] for b in balanced])},
    ]


# --------------------------------------------------------------------------------------
# The report: the JSON document, the markdown summary, four figures, the README paragraph
# --------------------------------------------------------------------------------------


_COLORS = {"balanced": "tab:blue", "gaussian": "tab:red"}
_LABELS = {"balanced": "balanced", "gaussian": "layer-wise Gaussian"}
_CURVE_POINTS = 100  # per curve in the JSON (log-spaced)


def _status_counts(d: DepthResult, i: int) -> dict[str, int]:
    return {name: int(np.sum(d.status[i] == k)) for k, name in enumerate(STATUSES)}


def _shown_max_balancedness(d: DepthResult) -> np.ndarray:
    """``(init, seed, std)``: the largest balancedness along each cell's run shown."""
    return np.array([[[max_finite(cv["balancedness"]) for cv in row] for row in block] for block in d.curves])


def _document(result: InitResult, analysis: dict[str, Any]) -> dict[str, Any]:
    """Everything as JSON-ready objects; run arrays keep their axes (init, seed, lr, std)."""
    c = result.config
    depths = {}
    for depth, d in result.depths.items():
        curves = []
        for (i, init), (s, seed), (k, std) in itertools.product(
                enumerate(INITS), enumerate(c.seeds), enumerate(c.init_stds)):
            cv = d.curves[i][s][k]
            idx = log_spaced_indices(cv["step"].size, _CURVE_POINTS)
            curves.append({"init": init, "seed": seed, "std": std,
                           "learning_rate": c.learning_rates[cv["lr_index"]], "step": cv["step"][idx],
                           "loss": significant(cv["loss"][idx]),
                           "balancedness": significant(cv["balancedness"][idx])})
        lrs = np.asarray(c.learning_rates)
        depths[str(depth)] = {
            "runs": {
                "axes": ["init", "seed", "learning_rate", "std"],
                "first_hit": d.first_hit,
                "status": np.asarray(STATUSES)[d.status],
                "stopped_at": d.stopped_at,
                "max_balancedness": significant(d.max_balancedness),
                "final_loss": significant(d.final_loss),
                "certificate_ratio": significant(d.certificate_ratio),
            },
            "cells": {
                "axes": ["init", "seed", "std"],
                "best_iterations": d.best_iterations,
                "best_learning_rate": [[[c.learning_rates[k] if k >= 0 else None for k in row]
                                        for row in block] for block in d.best_lr_index],
                "best_time": significant(np.where(d.best_lr_index >= 0,
                                                  lrs[np.maximum(d.best_lr_index, 0)] * d.best_iterations, np.nan)),
                "loss_init": significant(d.loss_init, 10),
                "balancedness_init": significant(d.balancedness_init),
                "margin_init": significant(d.margin_init, 10),
                "margin_at_hit": significant(d.margin_at_hit),
                "max_balancedness_shown_run": significant(_shown_max_balancedness(d)),
            },
            **analysis["depths"][str(depth)],
            "certificate_check": {**analysis["depths"][str(depth)]["certificate_check"],
                                  "checked": d.certificate_check},
            "status_counts": {init: _status_counts(d, i) for i, init in enumerate(INITS)},
            "curves": curves,
            "executed_run_steps": d.executed_run_steps,
            "seconds": d.seconds,
        }
    return {
        "experiment": "E2 init_robustness",
        "config": c._asdict(),
        "num_seeds": len(c.seeds),
        "num_init_stds": len(c.init_stds),
        "num_learning_rates": len(c.learning_rates),
        "problem": {"input_dim": result.input_dim, "phi_norm": result.phi_norm,
                    "phi_sigma_min": result.phi_sigma_min, "label_scale": result.label_scale,
                    "loss": "whitened_l2_loss = 0.5 * ||W_e - Phi||_F^2, optimum 0"},
        "inits": list(INITS),
        "statuses": list(STATUSES),
        "margin_dtype": result.margin_dtype,
        "balancedness_small": BALANCEDNESS_SMALL,
        "verdicts": analysis["verdicts"],
        "totals": analysis["totals"],
        "depths": depths,
        "seconds": result.seconds,
        "minutes": round(result.seconds / 60, 1),
        "load_average_1min": {"start": result.load_average[0], "end": result.load_average[1],
                              "cpus": os.cpu_count()},
    }


def _g(x, spec: str = "g") -> str:
    """A number from the document as printed (``"—"`` for None)."""
    return "—" if x is None else format(x, spec)


def _summary(result: InitResult, doc: dict[str, Any]) -> str:
    """A markdown report: protocol, the paper's observations judged, convergence over seeds,
    windows, escape-time exponents, margins vs outcome, the certificate check, balancedness,
    and every cell of seed 0."""
    c = result.config
    stds, lrs, S = np.asarray(c.init_stds), np.asarray(c.learning_rates), len(c.seeds)
    depths = doc["depths"]
    verdicts = [[v["observation"], f"**{v['verdict']}**", _evidence(v, doc)] for v in doc["verdicts"]]
    sections = []
    for depth in map(str, c.depths):
        rows = []
        for k, std in enumerate(stds):
            row = [f"{std:.3g}"]
            for init in INITS:
                cv = depths[depth][init]["convergence"]
                row += [f"{cv['converged'][k]}/{cv['of']} [{cv['wilson_low'][k]:.2f}, {cv['wilson_high'][k]:.2f}]",
                        "—" if cv["iterations_median"][k] is None else
                        f"{cv['iterations_median'][k]:,.0f} ({cv['iterations_min'][k]:,.0f}–{cv['iterations_max'][k]:,.0f})"]
            rows.append(row)
        sections += [f"## Depth {depth}: convergence over the {S} seeds, per std",
                     markdown_table(["std", "balanced: converged [Wilson 95 %]", "iterations median (range)",
                                     "Gaussian: converged [Wilson 95 %]", "iterations median (range)"],
                                    rows, "rrrrr")]
    window_rows, escape_rows, margin_rows, bal_rows = [], [], [], []
    for depth, init in itertools.product(map(str, c.depths), INITS):
        a = depths[depth][init]
        w, e, m, b = a["windows"], a["escape"], a["margins"], a["balancedness"]
        per_seed = "; ".join("none" if s["low"] is None else
                             f"{'≤' if s['below_grid'] else ''}{s['low']:.3g}–{s['high']:.3g}"
                             f"{'+' if s['above_grid'] else ''}{'' if s['contiguous'] else ' (gaps)'}"
                             for s in w["per_seed"])
        window_rows.append([depth, init, per_seed, f"{_g(w['width_median'])} ({_g(w['width_min'])}–{_g(w['width_max'])})",
                            f"{w['seeds_censored']} of {S}"])
        escape_rows.append([depth, init, _g(e["predicted_slope"]), _g(e["slope"]),
                            f"{_g(e['slope_seed_min'])} … {_g(e['slope_seed_max'])} ({e['seeds_fitted']} seeds)",
                            "—" if e["fit_stds"] is None else f"{e['fit_stds'][0]:.3g}…{e['fit_stds'][1]:.3g}",
                            str(e["points"]), e["range"] or "no fit", _g(e["time_ratio_max"]),
                            _g(e["lower_edge_extrapolated"])])
        margin_rows.append([depth, init, str(m["positive"]["converged"]), str(m["positive"]["not_converged"]),
                            str(m["nonpositive"]["converged"]), str(m["nonpositive"]["not_converged"]),
                            _g(m["margin_max"]), _g(m["theorem1_eta_max_largest"]),
                            f"{m['theorem1_delta_met']} of {m['positive']['converged'] + m['positive']['not_converged']}"])
        bal_rows.append([depth, init, _g(b["max_along_best_runs"]), _g(b["median_along_best_runs"]),
                         f"{b['cells_small']} of {b['cells']}", f"{_g(b['at_init_min'])}–{_g(b['at_init_max'])}"])
    check_rows = [[depth, r["init"], str(r["seed"]), f"{r['std']:.3g}", f"{r['learning_rate']:.3g}",
                   f"{r['certified_at']:,}", f"{r['certificate_ratio']:.3g}", f"{r['ran_to']:,}",
                   "none" if r["first_hit"] < 0 else f"{r['first_hit']:,}", f"{r['lowest_loss']:.4g}",
                   f"{r['loss_at_cap']:.4g}", "—" if r["diverged_at"] < 0 else f"{r['diverged_at']:,}"]
                  for depth in map(str, c.depths) for r in depths[depth]["certificate_check"]["checked"]]
    per_depth = []
    for depth, d in result.depths.items():
        max_bal, cells = _shown_max_balancedness(d), [[f"{std:.3g}"] for std in stds]
        for i, _ in enumerate(INITS):
            for k, row in enumerate(cells):  # seed 0
                it, li = int(d.best_iterations[i, 0, k]), int(d.best_lr_index[i, 0, k])
                row += ["not converged" if it < 0 else f"{it:,}", format_value(lrs[li] if li >= 0 else None, ".3g"),
                        f"{d.margin_init[i, 0, k]:.3g}", f"{max_bal[i, 0, k]:.3g}"]
        outcomes = "; ".join(f"{init}: " + ", ".join(f"{n} {v}" for n, v in _status_counts(d, i).items() if v)
                             for i, init in enumerate(INITS))
        fewer = d.status.size * c.max_steps / max(d.executed_run_steps, 1)
        per_depth += [
            f"## Depth {depth}: every cell of seed {c.seeds[0]} (iterations at the best learning rate)",
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
         f"* Seeds: {S} ({', '.join(map(str, c.seeds))}), independent draws; each seed's draw is scaled "
         "over the stds, and every (seed, std) cell searches the whole learning-rate grid.",
         f"* Learning rates: {len(lrs)} values, {lrs.min():.3g} … {lrs.max():.3g} (log-spaced); each "
         "cell takes its best (the earliest first hit).",
         f"* Converged = loss ≤ {c.target:g} (the optimum is 0) within {c.max_steps:,} iterations. "
         f"Iterations are the first recorded step with loss ≤ {c.target:g}: recorded every "
         f"{c.fine_every} step(s) up to {c.fine_steps:,} (exact for fine_every = 1), every "
         f"{c.coarse_every} after (at most one interval late). Time = learning rate × iterations.",
         "* Runs are stopped once their outcome cannot change the cell's best: `dominated` (another "
         "learning rate of the cell already converged earlier), `certified` (a norm bound proves "
         "the loss cannot reach the target before the cap; see the module docstring), besides "
         "`converged`, `diverged` and `capped` (ran to the cap)."],
        "## Paper vs measured",
        "ACGH19 (THEORY.md §8, E2): layer-wise Gaussian init converges only inside a narrow window "
        "of stds that shrinks with depth (at depth 8 most runs fail); balanced init converges "
        "across the whole range, and its balancedness stays small along the trajectory. Each "
        "observation is judged by a criterion fixed in advance (`_verdicts` in the module).",
        markdown_table(["observation", "verdict", "measured"], verdicts, "lll"),
        *sections,
        "## Windows: the stds where an init converged, per seed",
        f"A window runs from the lowest to the highest converged std of a seed; its width is "
        f"log10(high/low) in decades, measured on the grid (one step = {_g(depths[str(c.depths[0])]['gaussian']['windows']['grid_step_decades'])} "
        "decade), so the true window is up to one step wider at each edge. ≤ marks a lower edge "
        "at the grid's lowest std and + an upper edge at its highest: there the window extends "
        "beyond the grid and its width is a lower bound.",
        markdown_table(["depth", "init", "per-seed windows (stds)", "width, decades: median (range)",
                        "seeds cut by the grid"], window_rows, "rllrr"),
        "## Escape-time exponent",
        "Near the saddle at W = 0 every layer of scale u gets a gradient of size u^(N−1), so "
        "u' ~ u^(N−1) and the escape takes time ~ u^−(N−2) (N ≥ 3). Layer-wise Gaussian: u ∝ std, "
        "time ∝ std^−(N−2). Balanced: layers Σ^(1/N) of an end-to-end matrix of norm ∝ std, so "
        "u ∝ std^(1/N) and time ∝ std^−(N−2)/N (the same exponent as ACH18's balanced end-to-end "
        "flow, homogeneous of degree 2 − 2/N near 0). Measured: the log–log slope of time = lr × "
        f"iterations at the best lr against std, pooled over seeds, over the stds where the time "
        f"is ≥ {c.escape_dominance:g}× the fastest time of that depth and init (there a fixed "
        "descent cost biases the slope by under 10 %) on the decreasing branch; `decreasing "
        "branch` marks a fit over all converged stds up to each seed's fastest (escape not "
        "dominant: biased toward 0). The lower edge is the std where the fitted time reaches "
        "the cap at the best lr of the smallest fitted std (an extrapolation).",
        markdown_table(["depth", "init", "predicted", "fitted slope", "per-seed slopes", "fit stds",
                        "points", "range", "max time / min time", "extrapolated lower edge"],
                       escape_rows, "rlrrllrlrr"),
        "## Deficiency margin at init vs outcome",
        "Cells (seed × std) by the sign of the deficiency margin c = σ_min(Φ) − ‖W_e(0) − Φ‖_F "
        f"(computed in {result.margin_dtype} without cancellation, so tiny margins keep their sign) "
        "and by outcome. Theorem 1 (ACGH19) guarantees convergence for c > 0 with δ-balance "
        "δ ≤ c²/(256 N³ ‖Φ‖^(2(N−1)/N)) and η ≤ η_max(c) = c^((4N−2)/N)/(6144 N³ ‖Φ‖^((6N−4)/N)); "
        "the last columns give its largest η_max over the positive-margin cells and how many of "
        "them meet the balance condition at init (measured δ; Procedure 1 is exactly balanced in "
        "exact arithmetic, so for the balanced init the measured δ is float32 round-off).",
        markdown_table(["depth", "init", "c > 0: converged", "c > 0: not", "c ≤ 0: converged", "c ≤ 0: not",
                        "largest c", "Thm 1: largest η_max", "δ ≤ δ_max at init"], margin_rows, "rlrrrrrrr"),
        "## The no-convergence certificate, checked",
        "Per depth, the certified runs closest to the certificate's threshold (τ / (η · steps "
        "left) just above the slack 2; at most one per cell) were run on from their certified "
        "state to the cap anyway.",
        markdown_table(["depth", "init", "seed", "std", "lr", "certified at", "τ/(η·steps left)", "ran to",
                        "first hit ≤ target", "lowest loss", "loss at cap", "diverged at"], check_rows,
                       "rlrrrrrrrrrr") if check_rows else "No run was certified.",
        "## Balancedness along the best runs",
        f"δ = max_j ‖W_(j+1)ᵀW_(j+1) − W_jW_jᵀ‖_F; 'small' = δ ≤ {BALANCEDNESS_SMALL:g} (10 % of "
        "‖W_j‖² = ‖Φ‖^(2/N) = 1 at a balanced optimum).",
        markdown_table(["depth", "init", "max δ along best runs", "median", "cells with δ small", "δ at init"],
                       bal_rows, "rlrrrl"),
        *per_depth,
        "Margin = deficiency margin at init; max bal. = the largest balancedness along the run "
        "shown (the best learning rate, or the longest-running one for a cell that did not converge).",
        f"Wall time {result.seconds:.0f} s on {jax.default_backend()} with {os.cpu_count()} CPUs; "
        f"1-minute load average {result.load_average[0]:.1f} at the start, "
        f"{result.load_average[1]:.1f} at the end (other jobs shared the machine when it exceeds "
        "the CPU count).",
    )


def _evidence(verdict: dict[str, Any], doc: dict[str, Any]) -> str:
    """The numbers behind one verdict, from the document."""
    depths = doc["depths"]
    if "narrow_at_depth" in verdict:
        parts = []
        for d in verdict["narrow_at_depth"]:
            w = depths[d]["gaussian"]["windows"]
            parts.append(f"depth {d}: width {_g(w['width_median'])} decades (median; {_g(w['width_min'])}–"
                         f"{_g(w['width_max'])}), cut by the grid in {w['seeds_censored']} of {len(w['per_seed'])} seeds")
        return "; ".join(parts)
    if "seeds_narrower_at_deepest" in verdict:
        return f"narrower at the deepest depth in {verdict['seeds_narrower_at_deepest']} of {verdict['seeds']} seeds"
    if "cells_failed" in verdict:
        return f"{verdict['cells_failed']} of {verdict['cells']} cells not converged"
    if verdict["observation"].startswith("balanced init"):
        return "; ".join(f"depth {d}: {depths[d]['balanced']['convergence']['cells_converged']} of "
                         f"{depths[d]['balanced']['convergence']['cells']} cells" for d in depths)
    return "; ".join(f"depth {d}: max δ {_g(depths[d]['balanced']['balancedness']['max_along_best_runs'])}, "
                     f"small in {depths[d]['balanced']['balancedness']['cells_small']} of "
                     f"{depths[d]['balanced']['balancedness']['cells']}" for d in depths)


def _std_panels(result: InitResult, rows: int, title: str, ylabel: str, **scales):
    """A figure with one column of panels per depth, init std (log scale) on the x-axis."""
    return figure_panels(rows, len(result.depths), panel_size=(5.2, 4.0), title=title, xlabel="init std",
                         ylabel=ylabel, xscale="log", sharex=True, layout="constrained", **scales)


def _iterations_figure(result: InitResult, doc: dict[str, Any]):
    """Top: the fraction of seeds that converged per std, with Wilson 95 % intervals.
    Bottom: iterations to converge at the best learning rate, median and range over the
    converged seeds, each seed a dot."""
    c = result.config
    stds = np.asarray(c.init_stds)
    fig, axes = _std_panels(result, 2, f"E2: convergence vs init std over {len(c.seeds)} seeds [ACGH19], "
                            "whitened gas-sensor Ethanol", None)
    for col, (depth, d) in enumerate(result.depths.items()):
        top, bottom = axes[0, col], axes[1, col]
        for i, init in enumerate(INITS):
            cv = doc["depths"][str(depth)][init]["convergence"]
            x = stds * (0.92 if i == 0 else 1.08)
            frac = np.asarray(cv["converged"]) / cv["of"]
            err = [frac - np.asarray(cv["wilson_low"]), np.asarray(cv["wilson_high"]) - frac]
            top.errorbar(x, frac, yerr=err, fmt="o-", color=_COLORS[init], label=_LABELS[init], ms=4, capsize=2)
            its = d.best_iterations[i].astype(float)
            conv = its >= 0
            med = np.array([np.nan if v is None else v for v in cv["iterations_median"]], float)
            lo = np.array([np.nan if v is None else v for v in cv["iterations_min"]], float)
            hi = np.array([np.nan if v is None else v for v in cv["iterations_max"]], float)
            bottom.errorbar(x, med, yerr=[med - lo, hi - med], fmt="o-", color=_COLORS[init], ms=5, capsize=3,
                            label=f"{_LABELS[init]}: median (range)")
            for s in range(its.shape[0]):
                bottom.plot(x[conv[s]], its[s, conv[s]], ".", color=_COLORS[init], alpha=0.3)
        top.set_ylim(-0.05, 1.05)
        top.set_title(f"depth {depth}, hidden width {c.hidden_width}")
        bottom.set_yscale("log")
        bottom.axhline(c.max_steps, color="0.4", ls="--", lw=1)
        bottom.text(stds.min(), c.max_steps * 1.25, "cap", fontsize=8, color="0.3")
    axes[0, 0].set_ylabel("fraction of seeds converged (Wilson 95 %)")
    axes[1, 0].set_ylabel(f"iterations to loss ≤ {c.target:g} (best lr)")
    axes[0, 0].legend(loc="lower left", fontsize=8)
    axes[1, 0].legend(loc="upper right", fontsize=8)
    return fig


def _escape_figure(result: InitResult, doc: dict[str, Any]):
    """Time to converge (lr × iterations at the best lr) vs std, log–log: every converged
    cell, the fitted escape law over its stds (dotted: extrapolated to the cap), and the
    predicted slope through the fit's middle (dashed)."""
    c = result.config
    stds, lrs = np.asarray(c.init_stds), np.asarray(c.learning_rates)
    fig, (axes,) = _std_panels(result, 1, "E2: escape time vs init std — fit (solid) vs the saddle-at-zero "
                               "prediction (dashed)\n× = extrapolated lower edge of the window (the fit "
                               "reaches lr × cap)", "time = lr × iterations (best lr)", yscale="log")
    for ax, (depth, d) in zip(axes, result.depths.items()):
        for i, init in enumerate(INITS):
            li, its = d.best_lr_index[i], d.best_iterations[i]
            conv = its >= 0
            time_ = np.where(conv, lrs[np.maximum(li, 0)] * its, np.nan)
            for s in range(its.shape[0]):
                ax.plot(stds[conv[s]], time_[s, conv[s]], "o", color=_COLORS[init], alpha=0.35, ms=4,
                        label=_LABELS[init] if s == 0 else None)
            e = doc["depths"][str(depth)][init]["escape"]
            if e["slope"] is None:
                continue
            lo, hi = e["fit_stds"]
            fit = lambda x: np.exp(e["intercept"]) * np.asarray(x) ** e["slope"]
            xs = np.geomspace(lo, hi, 20)
            ax.plot(xs, fit(xs), "-", color=_COLORS[init], lw=2,
                    label=f"fit {e['slope']:g} ({e['range']}; predicted {e['predicted_slope']:g})")
            mid = math.sqrt(lo * hi)
            ax.plot(xs, fit(mid) * (xs / mid) ** e["predicted_slope"], "--", color=_COLORS[init], lw=1)
            if e["lower_edge_extrapolated"] is not None:
                edge = e["lower_edge_extrapolated"]
                ex = np.geomspace(edge, lo, 20)
                ax.plot(ex, fit(ex), ":", color=_COLORS[init], lw=1.2)
                ax.plot(edge, e["lower_edge_learning_rate"] * c.max_steps, "x", color=_COLORS[init], ms=9, mew=2)
        ax.set_title(f"depth {depth}")
        ax.legend(fontsize=7, loc="upper right")
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
        title="E2: balancedness δ = max_j ‖W_{j+1}ᵀW_{j+1} − W_jW_jᵀ‖_F along the best-lr run, "
              f"seed {result.config.seeds[0]}\n"
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
    """|deficiency margin| at init vs std (▲ positive, ▼ not), filled where the cell
    converged, every seed, one panel per depth."""
    stds = np.asarray(result.config.init_stds)
    fig, (axes,) = _std_panels(result, 1, "E2: deficiency margin at init vs convergence (positive margin + "
                               "balance ⇒ convergence, ACGH19 Thm 1)",
                               "|margin|, c = σ_min(Φ) − ‖W_e(0) − Φ‖_F", yscale="log")
    for ax, (depth, d) in zip(axes, result.depths.items()):
        for (i, init), s in itertools.product(enumerate(INITS), range(len(result.config.seeds))):
            margin, ok = d.margin_init[i, s], d.best_iterations[i, s] >= 0
            for sign, marker in ((True, "^"), (False, "v")):
                for conv, fill in ((True, _COLORS[init]), (False, "none")):
                    pick = (ok == conv) & ((margin > 0) == sign) & (margin != 0)
                    label = (f"{_LABELS[init]}, c {'>' if sign else '≤'} 0, "
                             f"{'converged' if conv else 'not converged'}") if s == 0 else None
                    ax.plot(stds[pick], np.abs(margin[pick]), marker, color=_COLORS[init], mfc=fill, ms=6,
                            ls="none", alpha=0.7, label=label)
        ax.set_title(f"depth {depth}")
        if depth == result.config.depths[0]:
            ax.legend(fontsize=7, loc="lower right")
    return fig


def _write_outputs(result: InitResult, out_dir: str | Path) -> dict[str, Path]:
    """``init_results.json``, ``init_iterations.png``, ``init_escape.png``,
    ``init_balancedness.png``, ``init_margin.png`` and ``init_summary.md`` in ``out_dir``."""
    import json

    from overparam_jax.results import json_safe

    # The report reads the document as the JSON will hold it (rounded, None for missing),
    # so the summary, the figures and the README paragraph quote the same numbers.
    document = json.loads(json.dumps(json_safe(_document(result, _analysis(result)))))
    figures = {
        "iterations": (_iterations_figure(result, document), "E2: convergence over seeds vs init std, per depth"),
        "escape": (_escape_figure(result, document), "E2: escape time vs init std, fitted and predicted exponents"),
        "balancedness": (_balancedness_figure(result), "E2: balancedness along the trajectories"),
        "margin": (_margin_figure(result), "E2: deficiency margin at init vs convergence"),
    }
    return write_outputs(out_dir, "init", document=document, summary=_summary(result, document),
                         figures=figures)


def _summary_lines(result: InitResult) -> list[str]:
    """What the command line prints: per depth and init, the converged cells, the median
    window width and the escape-time exponent."""
    analysis = _analysis(result)["depths"]
    lines = []
    for depth, init in itertools.product(result.depths, INITS):
        a = analysis[str(depth)][init]
        cv, w, e = a["convergence"], a["windows"], a["escape"]
        lines.append(f"depth {depth} {init:9s}: converged in {cv['cells_converged']} of {cv['cells']} cells, "
                     f"window {_g(w['width_median'])} decades (median over seeds), escape slope "
                     f"{_g(e['slope'])} (predicted {_g(e['predicted_slope'])})")
    return lines + [f"wall time {result.seconds:.0f} s"]


# --------------------------------------------------------------------------------------
# The README paragraph
# --------------------------------------------------------------------------------------


def readme_paragraph(document: dict[str, Any]) -> str:
    """The README's paragraph on E2 (a markdown list item), from the results JSON as read
    back: every number in it is formatted from ``document``, and every qualitative
    statement (a verdict, "does not explain", "whatever the sign") is chosen by the numbers.

    Args:
        document: ``json.load`` of ``init_results.json``.

    Returns:
        The paragraph, without a trailing newline.
    """
    c, depths = document["config"], document["depths"]
    ds = [str(d) for d in c["depths"]]
    shallow, deep = ds[0], ds[-1]
    verdict = {v["observation"]: v for v in document["verdicts"]}
    narrow = next(v for v in document["verdicts"] if "narrow_at_depth" in v)
    A = lambda d, init: depths[d][init]  # noqa: E731
    S = document["num_seeds"]

    def cells(init):
        return " and ".join(f"{A(d, init)['convergence']['cells_converged']}/{A(d, init)['convergence']['cells']} "
                            f"cells at depth {d}" for d in ds)

    def window(d):
        w = A(d, "gaussian")["windows"]
        if w["width_median"] is None:
            return f"depth {d}: no seed converged"
        unit = "decade" if _g(w['width_median']) == "1" else "decades"
        text = (f"depth {d}: {_g(w['width_median'])} {unit} (median over seeds; range {_g(w['width_min'])}–"
                f"{_g(w['width_max'])}; grid step {_g(w['grid_step_decades'])})")
        if w["seeds_below_grid"]:
            text += (f", lower edge at the grid's lowest std {c['init_stds'][0]:g} in {w['seeds_below_grid']} "
                     f"of {S} seeds (there a lower bound)")
        if w["every_seed"]:
            text += f", every seed converging at {w['every_seed'][0]:.3g}–{w['every_seed'][1]:.3g}"
        return text

    def exponent(d, init):
        e = A(d, init)["escape"]
        if e["slope"] is None:
            return f"depth {d}: no fit (fewer than two converged stds below the fastest)"
        text = (f"depth {d}: {_g(e['slope'])} (seeds {_g(e['slope_seed_min'])} to {_g(e['slope_seed_max'])}; "
                f"predicted {_g(e['predicted_slope'])}")
        if e["range"] != "escape-dominated":
            text += (f"; the slowest time is only {_g(e['time_ratio_max'])}× the fastest, so the escape never "
                     "dominates and the slope is biased toward 0")
        return text + ")"

    def edge(d):
        e = A(d, "gaussian")["escape"]
        return "—" if e["lower_edge_extrapolated"] is None else f"{e['lower_edge_extrapolated']:g}"

    rows = [f"| {d} | {init} | {m['positive']['converged']} | {m['positive']['not_converged']} | "
            f"{m['nonpositive']['converged']} | {m['nonpositive']['not_converged']} |"
            for d in ds for init in INITS for m in [A(d, init)["margins"]]]
    margins = [A(d, init)["margins"] for d in ds for init in INITS]
    totals = document["totals"]
    converged, covered = totals["converged"], totals["theorem1_covered_converged"]
    gm = [A(d, "gaussian")["margins"] for d in ds]
    bm = [A(d, "balanced")["margins"] for d in ds]
    etas = [m["theorem1_eta_max_largest"] for m in margins if m["theorem1_eta_max_largest"] is not None]
    ratios = [m["theorem1_delta_ratio_min"] for m in gm if m["theorem1_delta_ratio_min"] is not None]
    neg_stds = [m["nonpositive_converged_std_min"] for m in bm if m["nonpositive_converged_std_min"] is not None]
    if covered < converged:
        theorem = (f"Theorem 1's hypotheses at init (c > 0, δ ≤ δ_max, best lr ≤ η_max) hold in {covered} of "
                   f"the {converged} converged cells: the theorem does not explain the outcomes.")
    else:
        theorem = f"Theorem 1's hypotheses at init hold in every one of the {converged} converged cells."
    details = [f"Layer-wise Gaussian margins are at most "
               + " and ".join(f"{_g(m['margin_max'], '.3g')} at depth {d}" for m, d in zip(gm, ds))]
    if ratios:
        details[-1] += f"; where positive, δ at init is at least {_g(min(ratios), '.3g')}× Theorem 1's δ_max"
    if neg_stds:
        details.append(f"balanced cells with c ≤ 0 converge ({totals['balanced_nonpositive_converged']} "
                       f"cells, from std {min(neg_stds):g} up)")
    if etas:
        relation = "below" if max(etas) < c["learning_rates"][0] else "within"
        details.append(f"Theorem 1's largest step bound η_max over the positive-margin cells is "
                       f"{_g(max(etas), '.3g')}, {relation} the grid's smallest lr {c['learning_rates'][0]:g}")
    check = [depths[d]["certificate_check"] for d in ds]
    lowest = [x["lowest_loss"] for x in check if x["lowest_loss"] is not None]
    bal = {d: A(d, "balanced")["balancedness"] for d in ds}
    worst = max(ds, key=lambda d: -math.inf if bal[d]["max_along_best_runs"] is None else bal[d]["max_along_best_runs"])
    gbal = max(A(d, "gaussian")["balancedness"]["at_init_max"] for d in ds)
    small = verdict["balancedness stays small along the balanced runs"]["verdict"]
    lines = [
        f"- `reproduce init` — ACGH19's E2 (balanced vs layer-wise Gaussian init, depths "
        f"{' and '.join(ds)}, width {c['hidden_width']}, whitened gas-sensor data): "
        f"{S} independent seeds (one draw each, scaled over the stds) × {document['num_init_stds']} stds "
        f"({c['init_stds'][0]:g}–{c['init_stds'][-1]:g}) per init, each (seed, std) cell at its best of "
        f"{document['num_learning_rates']} learning rates ({c['learning_rates'][0]:g}–{c['learning_rates'][-1]:g}); "
        f"converged = loss ≤ {c['target']:g} within {c['max_steps']:,} steps. Full run {document['minutes']:g} min "
        f"on the 2-core CPU (1-minute load average {document['load_average_1min']['start']:.1f} at its start). "
        f"Summary: [docs/figures/init_summary.md](docs/figures/init_summary.md).",
        "",
        f"  **Balanced** init converged in {cells('balanced')} (the paper's \"converges across the range\": "
        f"{verdict['balanced init converges across the range of stds']['verdict']}). "
        f"**Layer-wise Gaussian** converged in {cells('gaussian')}. Its window (the stds where a seed "
        f"converged) spans {window(shallow)}; {window(deep)}. It is narrower at depth {deep} in "
        f"{verdict['the window shrinks with depth']['seeds_narrower_at_deepest']} of "
        f"{verdict['the window shrinks with depth']['seeds']} seeds; the paper's \"narrow window\": "
        f"{narrow['verdict']} (" + ", ".join(f"depth {d}: {'narrow' if v else 'not narrow'}"
                                              for d, v in narrow["narrow_at_depth"].items()) + "). "
        f"The time to converge (lr × iterations) grows like a power of 1/std, the escape from the saddle "
        f"at 0, whose exponent the layer scale sets (∝ std for Gaussian, ∝ its N-th root for balanced; "
        f"derivation in the summary). Fitted exponents, layer-wise Gaussian: {exponent(shallow, 'gaussian')}, "
        f"{exponent(deep, 'gaussian')}; balanced: {exponent(shallow, 'balanced')}, {exponent(deep, 'balanced')}. "
        f"Extrapolated, the layer-wise Gaussian window's lower edge (where the fitted time reaches the cap) "
        f"is at std {edge(shallow)} at depth {shallow} and {edge(deep)} at depth {deep}.",
        "",
        f"  {theorem} Cells by the sign of the deficiency margin c at init:",
        "",
        "  | depth | init | c > 0, converged | c > 0, not | c ≤ 0, converged | c ≤ 0, not |",
        "  |---:|---|---:|---:|---:|---:|",
        *("  " + r for r in rows),
        "",
        "  " + "; ".join(details) + ".",
        "",
        f"  The certificate that stops hopeless runs early was checked by running "
        f"{totals['certificate_runs']} certified runs (the closest to its threshold) on to the cap: "
        f"{totals['certificate_converged']} reached the target"
        + (f" (lowest loss {_g(min(lowest), '.3g')})" if lowest else "") + ". "
        f"Balancedness along the balanced runs stays ≤ {document['balancedness_small']:g} in "
        f"{totals['balanced_cells_small']} of {totals['balanced_cells']} converged "
        f"cells (\"stays small\": {small}); the largest, {_g(bal[worst]['max_along_best_runs'])}, is at depth "
        f"{worst}, std {_g(bal[worst]['std_of_max'])}, lr {_g(bal[worst]['learning_rate_of_max'])}; the "
        f"layer-wise Gaussian init starts at up to {_g(gbal)}.",
        "",
        "  ![convergence over seeds vs init std](docs/figures/init_iterations.png)",
        "  ![escape time vs init std](docs/figures/init_escape.png)",
    ]
    return "\n".join(lines)


EXPERIMENT = Experiment(
    name="init",
    help="E2: balanced vs layer-wise Gaussian init across depths 3 and 8 (ACGH19)",
    description="Full-batch GD on the whitened gas-sensor Ethanol data (||Phi||_F = 1): depths 3 "
    "and 8, hidden width 32, balanced and layer-wise Gaussian inits over a log grid of stds and 5 "
    "seeds, each (seed, std) cell at its best learning rate from a log grid 1e-4..1; iterations "
    "until the loss is within 1e-5 of the optimum; windows, escape-time exponents, margins vs "
    "outcome, a check of the no-convergence certificate; write init_results.json, init_*.png and "
    "init_summary.md. --steps N: the iteration cap (default 10^6); --seeds S: seeds 0..S-1 "
    "(default 5); --quick: 5 stds, 4 learning rates, cap 20000. GD in float32, deficiency "
    "margins in float64 (x64 is enabled).",
    options=(),
    common=("steps", "seeds"),
    configure=_configure,
    load=_load_problem,
    run=run_init_experiment,
    write_outputs=_write_outputs,
    summary_lines=_summary_lines,
    x64=True,
)
