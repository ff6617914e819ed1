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
the compiled program). Runs that are still open continue in chunks of ``chunk_steps`` steps as
one vmapped :func:`~overparam_jax.gradient_descent` over all of them from their last state
(the batch is compacted between chunks, padded to a power of 2 so few shapes compile), and a
run stops as soon as its outcome for the best-learning-rate metric is decided:

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
(:func:`~overparam_jax.deficiency_margin`, computed in float64 when ``jax_enable_x64`` is on:
for a Gaussian depth-8 init at small std :math:`W_e(0) \approx 0` and the margin is below
float32 resolution) and at the first hit, where :math:`\|W_e - \Phi\|_F = \sqrt{2\ell}` gives
:math:`c = \sigma_{\min}(\Phi) - \sqrt{2\ell}` exactly.

**Precision.** GD runs in float32 (``dtype``): at the target the residual
:math:`\|W_e - \Phi\| \approx 4.5\cdot10^{-3}`, ~10⁴ times the float32 error of the product.

References:
    [ACGH19] Arora, Cohen, Golowich, Hu. A Convergence Analysis of Gradient Descent for Deep
    Linear Neural Networks. ICLR 2019 (Procedure 1: balanced initialization; the experiment
    comparing it with layer-wise independent initialization across depths).
"""

from __future__ import annotations

import functools
import math
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from overparam_jax.checkpoint import CheckpointDir, load_checkpoint, save_checkpoint
from overparam_jax.datasets import Whitened, load_gas_ethanol, whiten
from overparam_jax.dynamics import gradient_descent
from overparam_jax.losses import whitened_l2_loss
from overparam_jax.networks import (
    balancedness,
    deficiency_margin,
    end_to_end,
    init_balanced,
    init_gaussian,
)
from overparam_jax.sweeps import sweep

__all__ = [
    "INITS",
    "STATUSES",
    "DepthResult",
    "InitConfig",
    "InitProgress",
    "InitResult",
    "balancedness_figure",
    "escape_time_lower_bound",
    "first_hit",
    "iterations_figure",
    "load_problem",
    "margin_figure",
    "quick_config",
    "result_to_dict",
    "run_init_experiment",
    "summary_markdown",
    "validate_config",
    "write_outputs",
]

INITS = ("balanced", "gaussian")
_INIT_FNS = {"balanced": init_balanced, "gaussian": init_gaussian}
STATUSES = ("converged", "diverged", "dominated", "certified", "capped")
_ACTIVE = -1
_CONVERGED, _DIVERGED, _DOMINATED, _CERTIFIED, _CAPPED = range(len(STATUSES))


def _log_grid(lo: float, hi: float, num: int) -> tuple[float, ...]:
    return tuple(float(f"{x:.6g}") for x in np.logspace(math.log10(lo), math.log10(hi), num))


class InitConfig(NamedTuple):
    """Hyperparameters of E2 (defaults: the full run of ``reproduce init``).

    Attributes:
        depths: network depths N (>= 2).
        hidden_width: width of every hidden layer.
        init_scales: init stds, the x-axis (default 16 values, 10⁻⁵ … 1, three per decade).
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
        dtype: float dtype of the GD runs.
    """

    depths: tuple[int, ...] = (3, 8)
    hidden_width: int = 32
    init_scales: tuple[float, ...] = _log_grid(1e-5, 1.0, 16)
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


def quick_config(**overrides: Any) -> InitConfig:
    """A smoke run for ``--quick`` and the tests: 5 stds over four decades, 4 learning rates,
    cap 2·10⁴ steps (< 60 s on 2 cores)."""
    base = dict(
        init_scales=_log_grid(1e-4, 1.0, 5),
        learning_rates=_log_grid(1e-3, 1.0, 4),
        max_steps=20_000,
        chunk_steps=5_000,
    )
    return InitConfig(**{**base, **overrides})


def validate_config(config: InitConfig) -> None:
    """Raise ``ValueError``/``TypeError`` naming the first bad field of ``config``."""
    ints = ("hidden_width", "max_steps", "fine_steps", "fine_every", "chunk_steps", "coarse_every",
            "compact_min_steps")
    for name in ints:
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"`{name}` must be a positive integer, but is {value!r}.")
    for name in ("depths", "seeds"):
        values = getattr(config, name)
        if len(values) == 0 or any(isinstance(v, bool) or not isinstance(v, (int, np.integer))
                                   for v in values):
            raise TypeError(f"`{name}` must be a non-empty sequence of integers, but is {values!r}.")
    if min(config.depths) < 2:
        raise ValueError(f"`depths` must all be >= 2, but are {tuple(config.depths)}.")
    if len(set(config.depths)) != len(config.depths) or len(set(config.seeds)) != len(config.seeds):
        raise ValueError("`depths` and `seeds` must not repeat a value.")
    for name in ("init_scales", "learning_rates"):
        values = np.asarray(getattr(config, name), dtype=float)
        if values.ndim != 1 or values.size == 0 or not np.all(np.isfinite(values) & (values > 0)):
            raise ValueError(f"`{name}` must be a non-empty sequence of positive numbers, "
                             f"but is {getattr(config, name)!r}.")
    if config.fine_steps % config.fine_every:
        raise ValueError(f"`fine_steps` ({config.fine_steps}) must be a multiple of "
                         f"`fine_every` ({config.fine_every}).")
    if config.chunk_steps % config.coarse_every:
        raise ValueError(f"`chunk_steps` ({config.chunk_steps}) must be a multiple of "
                         f"`coarse_every` ({config.coarse_every}).")
    if config.fine_steps > config.max_steps:
        raise ValueError(f"`fine_steps` ({config.fine_steps}) must be <= `max_steps` "
                         f"({config.max_steps}).")
    if not (math.isfinite(config.target) and config.target > 0):
        raise ValueError(f"`target` must be a positive number, but is {config.target!r}.")
    if not config.certificate_slack >= 1:
        raise ValueError(f"`certificate_slack` must be >= 1, but is {config.certificate_slack!r}.")
    if np.dtype(config.dtype).kind != "f":
        raise TypeError(f"`dtype` must be a float dtype, but is {config.dtype!r}.")


class InitProgress(NamedTuple):
    """What the progress callback receives: depth ``depth`` has reached step ``step`` of
    ``max_steps`` with ``active`` of its ``total`` runs still open."""

    depth: int
    step: int
    max_steps: int
    active: int
    total: int


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
        margin_init: cell array, the deficiency margin of :math:`W_e(0)`.
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
# Problem, first hits, the certificate
# --------------------------------------------------------------------------------------


def load_problem() -> Whitened:
    """The whitened gas-sensor Ethanol problem with :math:`\\|\\Phi\\|_F = 1`."""
    X, y = load_gas_ethanol()
    return whiten(X, y, scale_labels=True)


def first_hit(steps: np.ndarray, loss: np.ndarray, target: float, *, max_step: int | None = None
              ) -> np.ndarray:
    """The first recorded step with ``loss <= target`` along the last axis, else -1.

    Args:
        steps: ``(T,)`` recorded steps.
        loss: ``(..., T)`` recorded losses.
        target: the level.
        max_step: records after this step are ignored.
    """
    steps = np.asarray(steps)
    hit = np.asarray(loss) <= target
    if max_step is not None:
        hit = hit & (steps <= max_step)
    index = np.argmax(hit, axis=-1)
    return np.where(hit.any(axis=-1), steps[index], -1)


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
# Running one depth
# --------------------------------------------------------------------------------------


@functools.partial(jax.jit, static_argnames=("loss_fn", "num_steps", "save_every"))
def _continue_runs(params, learning_rates, *, loss_fn, num_steps, save_every):
    """One chunk of GD for a batch of runs (a vmapped :func:`gradient_descent`)."""

    def run(p, eta):
        return gradient_descent(loss_fn, p, learning_rate=eta, num_steps=num_steps,
                                save_every=save_every)

    traj = jax.vmap(run)(params, learning_rates)
    return traj.loss[:, 1:], traj.balancedness[:, 1:], traj.diverged_at, traj.final


def _bucket(n: int) -> int:
    """The padded batch size: the smallest power of 2 >= n."""
    return 1 << max(0, int(n) - 1).bit_length()


class _Runs:
    """Bookkeeping of one depth's runs, flattened as ``((init * S + seed) * L + lr) * C + std``."""

    def __init__(self, shape: tuple[int, int, int, int]):
        self.shape = shape
        R = int(np.prod(shape))
        self.status = np.full(R, _ACTIVE, np.int64)
        self.first_hit = np.full(R, -1, np.int64)
        self.stopped_at = np.full(R, -1, np.int64)
        self.pieces: list[list[tuple[np.ndarray, np.ndarray, np.ndarray]]] = [[] for _ in range(R)]
        I, S, L, C = shape
        self.cell = np.arange(R).reshape(shape).transpose(0, 1, 3, 2).reshape(I * S * C, L)
        self.cell_of = np.empty(R, np.int64)
        self.cell_of[self.cell.ravel()] = np.repeat(np.arange(I * S * C), L)

    def record(self, runs: np.ndarray, steps: np.ndarray, loss: np.ndarray, bal: np.ndarray,
               diverged_at: np.ndarray, target: float, max_steps: int) -> None:
        """Store the records of ``runs`` and settle those that hit or diverged."""
        hits = first_hit(steps, loss, target, max_step=max_steps)
        for k, r in enumerate(runs):
            self.pieces[r].append((steps, loss[k], bal[k]))
            # A run that diverges freezes at its last finite state, so a recorded hit was
            # reached before any divergence.
            if hits[k] >= 0:
                self.status[r], self.first_hit[r], self.stopped_at[r] = _CONVERGED, hits[k], hits[k]
            elif 0 <= diverged_at[k] <= max_steps:
                self.status[r], self.stopped_at[r] = _DIVERGED, diverged_at[k]

    def prune(self, step: int, etas: np.ndarray, escape_time: np.ndarray, slack: float,
              max_steps: int) -> None:
        """Stop the open runs that are dominated or certified at ``step``."""
        hit = np.where(self.first_hit >= 0, self.first_hit, np.iinfo(np.int64).max)
        best = hit[self.cell].min(axis=1)[self.cell_of]
        active = self.status == _ACTIVE
        dominated = active & (best <= step)
        certified = active & ~dominated & (escape_time > slack * etas * (max_steps - step))
        self.status[dominated], self.stopped_at[dominated] = _DOMINATED, step
        self.status[certified], self.stopped_at[certified] = _CERTIFIED, step

    def series(self, r: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(steps, loss, balancedness)`` of run ``r`` up to where it stopped."""
        steps, loss, bal = (np.concatenate(x) for x in zip(*self.pieces[r]))
        keep = steps <= self.stopped_at[r]
        return steps[keep], loss[keep], bal[keep]


def _initial_cells(init: str, depth: int, config: InitConfig, Phi: np.ndarray):
    """``(margin, balancedness, margin dtype)`` of every (seed, std) initial network, arrays
    ``(S, C)``. The weights are drawn exactly as :func:`~overparam_jax.sweep` draws them; the
    deficiency margin is computed from them in the widest float dtype available (float64
    under x64), the balancedness in the run dtype.
    """
    dtype = jnp.dtype(config.dtype)
    dims = (Phi.shape[1],) + (config.hidden_width,) * (depth - 1) + (Phi.shape[0],)
    keys = jax.vmap(jax.random.key)(jnp.asarray(config.seeds))
    scales = jnp.asarray(config.init_scales, dtype)
    sample = lambda k, s: _INIT_FNS[init](k, dims, std=s, dtype=dtype)
    params = jax.vmap(lambda k: jax.vmap(lambda s: sample(k, s))(scales))(keys)
    wide = jnp.asarray(0.0).dtype  # float64 with x64, else float32
    params_wide = tuple(W.astype(wide) for W in params)
    Phi_wide = jnp.asarray(Phi, wide)
    per_cell = jax.vmap(jax.vmap(lambda p: deficiency_margin(end_to_end(p), Phi_wide)))
    margin = np.asarray(per_cell(params_wide), np.float64)
    bal = np.asarray(jax.vmap(jax.vmap(balancedness))(params), np.float64)
    return margin, bal, str(wide)


def _run_depth(depth: int, config: InitConfig, problem: Whitened,
               progress: Callable[[InitProgress], None] | None,
               checkpoint: CheckpointDir | None = None) -> tuple[DepthResult, str]:
    start = time.perf_counter()
    dtype = jnp.dtype(config.dtype)
    Phi = jnp.asarray(problem.Phi, dtype)
    loss_fn = functools.partial(whitened_l2_loss, Phi=Phi)
    phi_norm = float(np.linalg.norm(problem.Phi, 2))
    I, S, L, C = len(INITS), len(config.seeds), len(config.learning_rates), len(config.init_scales)
    runs = _Runs((I, S, L, C))
    R = I * S * L * C
    etas_grid = np.broadcast_to(np.asarray(config.learning_rates)[None, None, :, None], (I, S, L, C))
    etas = np.ascontiguousarray(etas_grid).ravel()

    # Phase 1: the whole grid, one vmapped sweep per init (one compiled program).
    finals, loss0, bal0, margins, bal_init = [], [], [], [], []
    for init in INITS:
        res = sweep(loss_fn, input_dim=Phi.shape[1], output_dim=Phi.shape[0],
                    hidden_width=config.hidden_width, depths=[depth], seeds=config.seeds,
                    learning_rates=config.learning_rates, init_scales=config.init_scales,
                    num_steps=config.fine_steps, save_every=config.fine_every, init=init,
                    dtype=dtype,
                    checkpoint=None if checkpoint is None else checkpoint.stage(f"depth{depth}_{init}_grid"))
        tr = res.trajectory
        steps = np.asarray(tr.step[0, 0, 0, 0])
        loss = np.asarray(tr.loss[..., 0, :], np.float64).reshape(-1, steps.size)
        bal = np.asarray(tr.balancedness[..., 0, :], np.float64).reshape(-1, steps.size)
        offset = len(finals) * S * L * C
        runs.record(np.arange(offset, offset + S * L * C), steps[1:], loss[:, 1:], bal[:, 1:],
                    np.asarray(tr.diverged_at[..., 0]).ravel(), config.target, config.max_steps)
        for k in range(S * L * C):
            runs.pieces[offset + k].insert(0, (steps[:1], loss[k, :1], bal[k, :1]))
        finals.append(jax.tree_util.tree_map(lambda x: x[:, :, :, 0].reshape((-1,) + x.shape[4:]),
                                             tr.final))
        loss0.append(loss[:, 0].reshape(S, L, C)[:, 0])
        margin, bi, margin_dtype = _initial_cells(init, depth, config, problem.Phi)
        margins.append(margin)
        bal_init.append(bi)
    state = jax.tree_util.tree_map(lambda *xs: jnp.concatenate(xs), *finals)
    state_runs = np.arange(R)
    batch_size = None
    executed = R * config.fine_steps
    step = config.fine_steps
    stage = None if checkpoint is None else checkpoint.stage(f"depth{depth}_chunks")
    fingerprint = {"depth": depth, "runs": R}
    saved = None if stage is None else load_checkpoint(stage, fingerprint)
    if saved is not None:  # the bookkeeping and open runs after the last saved chunk
        runs, state, state_runs = saved["runs"], saved["state"], saved["state_runs"]
        batch_size, executed, step = saved["batch_size"], saved["executed"], saved["step"]
    if progress is not None:
        progress(InitProgress(depth, step, config.max_steps, int(np.sum(runs.status == _ACTIVE)), R))

    # Phase 2: continue the open runs in chunks, stopping each once its outcome is decided.
    while step < config.max_steps:
        escape = np.full(R, 0.0)
        open_now = runs.status[state_runs] == _ACTIVE
        if open_now.any():
            where = np.flatnonzero(open_now)
            escape[state_runs[where]] = escape_time_lower_bound(
                [np.asarray(W)[where] for W in state], phi_norm=phi_norm, target=config.target)
        runs.prune(step, etas, escape, config.certificate_slack, config.max_steps)
        open_runs = np.flatnonzero(runs.status == _ACTIVE)
        if open_runs.size == 0:
            break
        position = np.searchsorted(state_runs, open_runs)
        size = _bucket(open_runs.size)
        if batch_size is not None and size < batch_size and (
                config.max_steps - step < config.compact_min_steps):
            size = batch_size  # not worth a compilation
        batch_size = size
        take = np.concatenate([position, np.full(size - open_runs.size, position[0])])
        batch = jax.tree_util.tree_map(lambda x: x[take], state)
        loss, bal, diverged_at, final = _continue_runs(
            batch, jnp.asarray(etas[state_runs[take]], dtype),
            loss_fn=loss_fn, num_steps=config.chunk_steps, save_every=config.coarse_every)
        n = open_runs.size
        steps = step + config.coarse_every * np.arange(1, config.chunk_steps // config.coarse_every + 1)
        diverged_at = np.asarray(diverged_at)[:n]
        runs.record(open_runs, steps, np.asarray(loss, np.float64)[:n], np.asarray(bal, np.float64)[:n],
                    np.where(diverged_at >= 0, step + diverged_at, -1), config.target, config.max_steps)
        state = jax.tree_util.tree_map(lambda x: x[:n], final)
        state_runs = open_runs
        executed += size * config.chunk_steps
        step += config.chunk_steps
        if stage is not None:
            save_checkpoint(stage, fingerprint, {"runs": runs, "state": state, "state_runs": state_runs,
                                                 "batch_size": batch_size, "executed": executed,
                                                 "step": step})
        if progress is not None:
            progress(InitProgress(depth, min(step, config.max_steps), config.max_steps,
                                  int(np.sum(runs.status == _ACTIVE)), R))
    capped = runs.status == _ACTIVE
    runs.status[capped], runs.stopped_at[capped] = _CAPPED, config.max_steps
    return _summarize(depth, config, runs, np.stack(loss0), np.stack(bal_init), np.stack(margins),
                      executed, time.perf_counter() - start, _phi_sigma_min(problem)), margin_dtype


def _phi_sigma_min(problem: Whitened) -> float:
    return float(np.linalg.svd(problem.Phi, compute_uv=False)[-1])


def _summarize(depth, config, runs: _Runs, loss_init, bal_init, margin_init, executed, seconds,
               sigma_min) -> DepthResult:
    I, S, L, C = runs.shape
    shape = runs.shape
    R = I * S * L * C
    max_bal = np.full(R, np.nan)
    final_loss = np.full(R, np.nan)
    for r in range(R):
        _, loss, bal = runs.series(r)
        finite = np.isfinite(loss)
        max_bal[r] = np.nanmax(np.where(np.isfinite(bal), bal, np.nan)) if np.isfinite(bal).any() else np.nan
        final_loss[r] = loss[finite][-1] if finite.any() else np.nan
    first = runs.first_hit.reshape(shape)
    hit = np.where(first >= 0, first, np.iinfo(np.int64).max)
    best_lr = np.argmin(hit, axis=2)  # (I, S, C): lowest lr wins ties
    best_it = np.take_along_axis(hit, best_lr[:, :, None, :], axis=2)[:, :, 0, :]
    converged = best_it < np.iinfo(np.int64).max
    best_lr = np.where(converged, best_lr, -1)
    best_it = np.where(converged, best_it, -1)
    margin_at_hit = np.full((I, S, C), np.nan)
    curves: list = [[[None] * C for _ in range(S)] for _ in range(I)]
    stopped = runs.stopped_at.reshape(shape)
    status = runs.status.reshape(shape)
    fl = final_loss.reshape(shape)
    for i in range(I):
        for s in range(S):
            for c in range(C):
                if converged[i, s, c]:
                    lr = int(best_lr[i, s, c])
                else:
                    ok = status[i, s, :, c] != _DIVERGED
                    if ok.any():
                        key = [(stopped[i, s, l, c], -np.nan_to_num(fl[i, s, l, c], nan=np.inf))
                               if ok[l] else (-1, -np.inf) for l in range(L)]
                    else:
                        key = [(stopped[i, s, l, c], 0.0) for l in range(L)]
                    lr = max(range(L), key=lambda l: key[l])
                r = ((i * S + s) * L + lr) * C + c
                steps, loss, bal = runs.series(r)
                if converged[i, s, c]:
                    margin_at_hit[i, s, c] = sigma_min - math.sqrt(2.0 * loss[-1])
                curves[i][s][c] = {"lr_index": lr, "step": steps, "loss": loss, "balancedness": bal}
    return DepthResult(
        depth=depth,
        first_hit=first,
        status=status,
        stopped_at=stopped,
        max_balancedness=max_bal.reshape(shape),
        final_loss=fl,
        best_iterations=best_it,
        best_lr_index=best_lr,
        loss_init=loss_init,
        balancedness_init=bal_init,
        margin_init=margin_init,
        margin_at_hit=margin_at_hit,
        curves=curves,
        executed_run_steps=int(executed),
        seconds=float(seconds),
    )


def run_init_experiment(config: InitConfig = InitConfig(), *, problem: Whitened | None = None,
                        progress: Callable[[InitProgress], None] | None = None,
                        checkpoint: CheckpointDir | None = None) -> InitResult:
    """Run E2: every depth, init, seed, std and learning rate (see the module docstring).

    Args:
        config: the grid and schedule (:func:`quick_config` for a smoke run).
        problem: the whitened data (default :func:`load_problem`); ``Phi`` must be ``(1, d_0)``.
        progress: optional ``callback(InitProgress)`` after the sweep and every chunk.
        checkpoint: if given, the grid sweeps and the open runs after every chunk are
            saved there, and a rerun with the same folder resumes where it stopped (same
            result, bit for bit).

    Returns:
        An :class:`InitResult`.

    Raises:
        ValueError / TypeError: a bad configuration, naming the field.
    """
    validate_config(config)
    problem = load_problem() if problem is None else problem
    if problem.Phi.ndim != 2 or problem.Phi.shape[0] != 1:
        raise ValueError(f"`problem.Phi` must have shape (1, d_0), but has shape {problem.Phi.shape}.")
    start, load_start = time.perf_counter(), _load_average()
    depths, margin_dtype = {}, ""
    for depth in config.depths:
        depths[int(depth)], margin_dtype = _run_depth(int(depth), config, problem, progress, checkpoint)
    return InitResult(
        config=config,
        input_dim=int(problem.Phi.shape[1]),
        phi_norm=float(np.linalg.norm(problem.Phi)),
        phi_sigma_min=_phi_sigma_min(problem),
        label_scale=float(problem.label_scale),
        depths=depths,
        seconds=time.perf_counter() - start,
        margin_dtype=margin_dtype,
        load_average=(load_start, _load_average()),
    )


def _load_average() -> float:
    try:
        return float(os.getloadavg()[0])
    except OSError:  # not available on this platform
        return float("nan")


# --------------------------------------------------------------------------------------
# Summaries, figures, files
# --------------------------------------------------------------------------------------


def _converged_stds(result: InitResult, depth: int, i: int) -> tuple[np.ndarray, np.ndarray]:
    """Per std: whether every seed converged, and whether some seed did."""
    conv = result.depths[depth].best_iterations[i] >= 0  # (S, C)
    return conv.all(axis=0), conv.any(axis=0)


def _window(stds: np.ndarray, mask: np.ndarray) -> str:
    if not mask.any():
        return "none"
    return f"{stds[mask].min():.3g} … {stds[mask].max():.3g}"


def _status_counts(d: DepthResult, i: int) -> dict[str, int]:
    return {name: int(np.sum(d.status[i] == k)) for k, name in enumerate(STATUSES)}


def _best_run_max_balancedness(d: DepthResult) -> np.ndarray:
    """``(init, seed, std)``: the largest balancedness along each cell's representative run."""
    I, S, C = d.best_iterations.shape
    out = np.full((I, S, C), np.nan)
    for i in range(I):
        for s in range(S):
            for c in range(C):
                bal = d.curves[i][s][c]["balancedness"]
                finite = bal[np.isfinite(bal)]
                out[i, s, c] = finite.max() if finite.size else np.nan
    return out


def _fmt_iter(it: int) -> str:
    return "not converged" if it < 0 else f"{it:,}"


def summary_markdown(result: InitResult, *, notes: Sequence[str] = ()) -> str:
    """A markdown report: protocol, what the paper saw, the converged counts and every cell."""
    c = result.config
    stds = np.asarray(c.init_scales)
    lrs = np.asarray(c.learning_rates)
    S = len(c.seeds)
    lines = [
        "# E2: balanced vs layer-wise Gaussian initialization across depths [ACGH19]",
        "",
        f"Gas-sensor Ethanol data, PCA-whitened ({result.input_dim} directions), labels scaled by "
        f"{result.label_scale:.4g} so that ‖Φ‖_F = {result.phi_norm:.6g}; whitened ℓ2 loss "
        "½‖W_e − Φ‖², optimum 0 at W_e = Φ. Hidden width "
        f"{c.hidden_width}, depths {', '.join(map(str, c.depths))}; full-batch GD in {c.dtype}.",
        "",
        f"* Init stds: {len(stds)} values, {stds.min():.3g} … {stds.max():.3g} (log-spaced); "
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
        "`converged`, `diverged` and `capped` (ran to the cap).",
        "",
        "## Paper vs measured",
        "",
        "ACGH19 (THEORY.md §8, E2): layer-wise Gaussian init converges only inside a narrow window "
        "of stds that shrinks with depth (at depth 8 most runs fail); balanced init converges "
        "across the whole range, and its balancedness stays small along the trajectory.",
        "",
        f"| depth | init | stds converged ({f'all {S} seeds' if S > 1 else f'seed {c.seeds[0]}'}) | "
        "(some seed) | window | median iterations | best lrs used | max balancedness, best runs |",
        "|---:|---|---:|---:|---|---:|---|---:|",
    ]
    for depth, d in result.depths.items():
        max_bal = _best_run_max_balancedness(d)
        for i, init in enumerate(INITS):
            all_ok, some_ok = _converged_stds(result, depth, i)
            its = d.best_iterations[i][d.best_iterations[i] >= 0]
            used = sorted({float(lrs[k]) for k in d.best_lr_index[i].ravel() if k >= 0})
            conv_bal = max_bal[i][d.best_iterations[i] >= 0]
            lines.append(
                f"| {depth} | {init} | {int(all_ok.sum())} / {len(stds)} | {int(some_ok.sum())} / "
                f"{len(stds)} | {_window(stds, all_ok)} | "
                f"{f'{np.median(its):,.0f}' if its.size else '—'} | "
                f"{', '.join(f'{x:.3g}' for x in used) or '—'} | "
                f"{f'{conv_bal.max():.3g}' if conv_bal.size else '—'} |"
            )
    for depth, d in result.depths.items():
        max_bal = _best_run_max_balancedness(d)
        lines += [
            "",
            f"## Depth {depth}: every cell (seed {c.seeds[0]}; iterations at the best learning rate)",
            "",
            "| std | balanced: iterations | lr | margin at init | max bal. | "
            "Gaussian: iterations | lr | margin at init | max bal. |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for k, std in enumerate(stds):
            cells = []
            for i in range(len(INITS)):
                it, li = int(d.best_iterations[i, 0, k]), int(d.best_lr_index[i, 0, k])
                cells += [_fmt_iter(it), f"{lrs[li]:.3g}" if li >= 0 else "—",
                          f"{d.margin_init[i, 0, k]:.3g}", f"{max_bal[i, 0, k]:.3g}"]
            lines.append(f"| {std:.3g} | " + " | ".join(cells) + " |")
        lines += ["", "Run outcomes (all learning rates, seeds and stds): " + "; ".join(
            f"{init}: " + ", ".join(f"{n} {v}" for n, v in _status_counts(d, i).items() if v)
            for i, init in enumerate(INITS)) + "."]
        full = d.status.size * c.max_steps
        lines.append(
            f"GD steps executed: {d.executed_run_steps:,} over {d.status.size} runs "
            f"({full / max(d.executed_run_steps, 1):,.0f}× fewer than running every run to the cap); "
            f"{d.seconds:.0f} s."
        )
    lines += [
        "",
        "Margin = deficiency margin σ_min(Φ) − ‖W_e(0) − Φ‖_F at init (ACGH19; positive margin plus "
        f"approximate balance guarantees convergence), computed in {result.margin_dtype}; "
        "|margin| ≲ 1e-16 is round-off (W_e(0) ≈ 0). Max bal. = the largest "
        "max_j ‖W_{j+1}ᵀW_{j+1} − W_jW_jᵀ‖_F along the run shown (the best learning rate, or the "
        "longest-running one for a cell that did not converge).",
        "",
        f"Wall time {result.seconds:.0f} s on {jax.default_backend()} with {os.cpu_count()} CPUs; "
        f"1-minute load average {result.load_average[0]:.1f} at the start, "
        f"{result.load_average[1]:.1f} at the end (other jobs shared the machine when it exceeds "
        "the CPU count).",
    ]
    lines += [f"{n}" for n in notes]
    return "\n".join(lines) + "\n"


_COLORS = {"balanced": "tab:blue", "gaussian": "tab:red"}
_LABELS = {"balanced": "balanced", "gaussian": "layer-wise Gaussian"}


def iterations_figure(result: InitResult):
    """Iterations to converge at the best learning rate vs init std, one panel per depth."""
    from matplotlib.figure import Figure

    c = result.config
    stds = np.asarray(c.init_scales)
    fig = Figure(figsize=(5.2 * len(result.depths), 4.2))
    axes = np.atleast_1d(fig.subplots(1, len(result.depths), sharey=True))
    for ax, (depth, d) in zip(axes, result.depths.items()):
        for i, init in enumerate(INITS):
            its = d.best_iterations[i].astype(float)  # (S, C)
            conv = its >= 0
            median = np.array([np.median(its[conv[:, k], k]) if conv[:, k].all() else np.nan
                               for k in range(stds.size)])
            ax.plot(stds, median, "o-", color=_COLORS[init], label=_LABELS[init], ms=5)
            for s in range(its.shape[0]):
                ok = conv[s]
                ax.plot(stds[ok], its[s, ok], ".", color=_COLORS[init], alpha=0.35)
                ax.plot(stds[~ok], np.full((~ok).sum(), c.max_steps), "x", color=_COLORS[init],
                        ms=9, mew=2)
        ax.axhline(c.max_steps, color="0.4", ls="--", lw=1)
        ax.text(stds.min(), c.max_steps * 1.25, "cap: × = not converged", fontsize=8, color="0.3")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("init std")
        ax.set_title(f"depth {depth}, hidden width {c.hidden_width}")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel(f"iterations to loss ≤ {c.target:g} (best lr)")
    axes[0].legend(loc="lower left")
    fig.suptitle("E2: iterations to converge vs init std [ACGH19], whitened gas-sensor Ethanol")
    return fig


def balancedness_figure(result: InitResult):
    """Balancedness along the representative run of every std (seed 0), depths × inits."""
    from matplotlib import colormaps
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import LogNorm
    from matplotlib.figure import Figure

    c = result.config
    stds = np.asarray(c.init_scales)
    norm = LogNorm(stds.min(), stds.max())
    cmap = colormaps["viridis"]
    depths = list(result.depths)
    fig = Figure(figsize=(11, 3.8 * len(depths)), layout="constrained")
    axes = np.asarray(fig.subplots(len(depths), len(INITS), sharey=True, squeeze=False))
    floor = 1e-12
    for row, depth in enumerate(depths):
        d = result.depths[depth]
        for i, init in enumerate(INITS):
            ax = axes[row, i]
            for k, std in enumerate(stds):
                curve = d.curves[i][0][k]
                steps, bal = curve["step"], np.maximum(curve["balancedness"], floor)
                ok = d.best_iterations[i, 0, k] >= 0
                ax.plot(steps + 1, bal, color=cmap(norm(std)), lw=1.2 if ok else 0.8,
                        ls="-" if ok else ":")
                if ok:
                    ax.plot(steps[-1] + 1, bal[-1], "o", color=cmap(norm(std)), ms=3)
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_title(f"depth {depth}, {_LABELS[init]} init")
            ax.grid(True, which="both", alpha=0.3)
            if row == len(depths) - 1:
                ax.set_xlabel("iteration + 1")
        axes[row, 0].set_ylabel("balancedness δ")
    fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=axes.ravel().tolist(), label="init std")
    fig.suptitle("E2: balancedness δ = max_j ‖W_{j+1}ᵀW_{j+1} − W_jW_jᵀ‖_F along the best-lr run\n"
                 f"(dotted: cell not converged, longest run shown; • first hit; δ < {floor:g} "
                 f"drawn at {floor:g})")
    return fig


def margin_figure(result: InitResult):
    """Deficiency margin at init vs std, filled where the cell converged, one panel per depth."""
    from matplotlib.figure import Figure

    c = result.config
    stds = np.asarray(c.init_scales)
    fig = Figure(figsize=(5.2 * len(result.depths), 4.2))
    axes = np.atleast_1d(fig.subplots(1, len(result.depths), sharey=True))
    for ax, (depth, d) in zip(axes, result.depths.items()):
        for i, init in enumerate(INITS):
            for s in range(len(c.seeds)):
                margin = d.margin_init[i, s]
                ok = d.best_iterations[i, s] >= 0
                kw = dict(color=_COLORS[init], ms=6, ls="none")
                ax.plot(stds[ok], margin[ok], "o", **kw,
                        label=f"{_LABELS[init]}, converged" if s == 0 else None)
                ax.plot(stds[~ok], margin[~ok], "o", mfc="none", **kw,
                        label=f"{_LABELS[init]}, not converged" if s == 0 else None)
        ax.axhline(0.0, color="0.3", lw=0.8)
        ax.set_xscale("log")
        ax.set_yscale("symlog", linthresh=1e-12)
        ax.set_xlabel("init std")
        ax.set_title(f"depth {depth}")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("deficiency margin at init  σ_min(Φ) − ‖W_e(0) − Φ‖_F")
    axes[0].legend(fontsize=8, loc="lower left")
    fig.suptitle("E2: deficiency margin at init vs convergence (positive margin + balance ⇒ "
                 "convergence, ACGH19 Thm 1)")
    return fig


def _thin(n: int, points: int = 300) -> np.ndarray:
    """About ``points`` indices of ``range(n)``, log-spaced, first and last included."""
    if n <= points:
        return np.arange(n)
    idx = np.unique(np.round(np.logspace(0, math.log10(n), points)).astype(int) - 1)
    return np.unique(np.concatenate([[0], idx, [n - 1]]))


def _sig(x: Any, digits: int = 6) -> Any:
    """Round floats (arrays) to ``digits`` significant digits; non-finite floats stay as they are."""
    arr = np.asarray(x, dtype=np.float64)
    out = np.array([float(f"{v:.{digits}g}") if np.isfinite(v) else v for v in arr.ravel()])
    return out.reshape(arr.shape)


def result_to_dict(result: InitResult) -> dict[str, Any]:
    """Everything as JSON-ready objects; run arrays keep their axes (init, seed, lr, std)."""
    c = result.config
    depths = {}
    for depth, d in result.depths.items():
        curves = []
        for i, init in enumerate(INITS):
            for s, seed in enumerate(c.seeds):
                for k, std in enumerate(c.init_scales):
                    cv = d.curves[i][s][k]
                    idx = _thin(cv["step"].size)
                    curves.append({
                        "init": init, "seed": seed, "std": std,
                        "learning_rate": c.learning_rates[cv["lr_index"]],
                        "step": cv["step"][idx].tolist(),
                        "loss": _sig(cv["loss"][idx]).tolist(),
                        "balancedness": _sig(cv["balancedness"][idx]).tolist(),
                    })
        depths[str(depth)] = {
            "runs": {
                "axes": ["init", "seed", "learning_rate", "std"],
                "first_hit": d.first_hit.tolist(),
                "status": np.asarray(STATUSES)[d.status].tolist(),
                "stopped_at": d.stopped_at.tolist(),
                "max_balancedness": _sig(d.max_balancedness).tolist(),
                "final_loss": _sig(d.final_loss).tolist(),
            },
            "cells": {
                "axes": ["init", "seed", "std"],
                "best_iterations": d.best_iterations.tolist(),
                "best_learning_rate": [[[c.learning_rates[k] if k >= 0 else None for k in row]
                                        for row in block] for block in d.best_lr_index],
                "loss_init": _sig(d.loss_init, 10).tolist(),
                "balancedness_init": _sig(d.balancedness_init).tolist(),
                "margin_init": _sig(d.margin_init, 10).tolist(),
                "margin_at_hit": _sig(d.margin_at_hit).tolist(),
                "max_balancedness_shown_run": _sig(_best_run_max_balancedness(d)).tolist(),
            },
            "converged_stds": {
                init: {"all_seeds": int(_converged_stds(result, depth, i)[0].sum()),
                       "some_seed": int(_converged_stds(result, depth, i)[1].sum()),
                       "of": len(c.init_scales)}
                for i, init in enumerate(INITS)
            },
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


def write_outputs(result: InitResult, out_dir: str | Path, *, notes: Sequence[str] = ()
                  ) -> dict[str, Path]:
    """Write ``init_results.json``, ``init_iterations.png``, ``init_balancedness.png``,
    ``init_margin.png`` and ``init_summary.md`` into ``out_dir``."""
    from overparam_jax.results import atomic_write_text, save_figure, write_json

    out = Path(out_dir)
    return {
        "json": write_json(out / "init_results.json", result_to_dict(result)),
        "iterations": save_figure(iterations_figure(result), out / "init_iterations.png",
                                  caption="E2: iterations to converge vs init std, per depth"),
        "balancedness": save_figure(balancedness_figure(result), out / "init_balancedness.png",
                                    caption="E2: balancedness along the trajectories"),
        "margin": save_figure(margin_figure(result), out / "init_margin.png",
                              caption="E2: deficiency margin at init vs convergence"),
        "summary": atomic_write_text(out / "init_summary.md", summary_markdown(result, notes=notes)),
    }
