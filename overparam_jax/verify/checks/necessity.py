r"""Checks that ACGH19's two conditions on the initialization are necessary (THEORY.md §5).

Theorem 1 of [ACGH19] asks for an (approximately) balanced init with a deficiency margin.
Neither can be dropped:

* ``claim4-no-balance-fails`` — Claim 4 (no balance), in the paper's order of quantifiers:
  the step size η is fixed first; then an unbalanced init with deficiency margin c,
  *chosen after* η, makes GD fail, while its balanced twin (same end-to-end matrix,
  Procedure 1) converges at the same η.
* ``claim5-no-margin-stalls`` — Claim 5 (no margin), two-sided: from the identity init
  (0-balanced, not stationary) on a symmetric Φ with a negative eigenvalue, GD at any η
  never goes below :math:`\lambda^2/2`, *and* it moves: it converges to that non-global
  stationary value (small η) or diverges (large η).

Claim 4: the construction and why it fails
------------------------------------------
Φ = I_d, depth N even, every width d. Every layer is ``diag(a_j, 1, ..., 1)``: GD keeps the
layers diagonal and the coordinates 2..d at the optimum (their residual is 0, so is their
gradient), and the loss is the scalar one, :math:`\ell = \frac12 (w - 1)^2`,
:math:`w = a_N \cdots a_1`. Scalar GD is

.. math:: a_j \leftarrow a_j - \eta\, r\, w / a_j = a_j (1 - s_j),
          \qquad r = w - 1, \quad s_j = \eta\, r\, w / a_j^2 .

*Lemma (invariant region).* If :math:`r > 0` and :math:`s_j \ge 3` for every j, the same
holds one step later, every :math:`a_j` has changed sign and at least doubled in size, and
:math:`r \leftarrow r' > 2^N r`, so :math:`\ell` grows at least :math:`4^N`-fold per step
forever. Proof: :math:`w' = w \prod_k (1 - s_k) = w \prod_k (s_k - 1) \ge 2^N w` (N even:
the N sign flips cancel), so :math:`r' \ge 2^N (r + 1) - 1 > 2^N r`; and
:math:`s_j' = (r'/r) \cdot s_j/(s_j - 1) \cdot \prod_{k \ne j} (s_k - 1) \ge 2^N 2^{N-1} \ge 3`.

*Construction* (:func:`claim4_init`). Alternate :math:`\alpha = K` and
:math:`\beta = q/K`, :math:`q = c^{2/N}`, so :math:`w(0) = q^{N/2} = c`: the margin w.r.t.
Φ = I is exactly c and :math:`\ell(0) = m^2/2`, :math:`m = 1 - c`. At t = 0,
:math:`r = -m < 0`, so :math:`\alpha(1) = K(1 + \eta m c/K^2) \in [K, 2K]` and
:math:`\beta(1) = (q/K)(1 + \eta m c K^2/q^2) \in [\eta m c K/q,\ 2\eta m c K/q]`, hence
:math:`z = \alpha(1)\beta(1) \ge \eta m c K^2/q` and :math:`w(1) = z^{N/2}`. With
:math:`K^2 \ge 2^{2/N} q/(\eta m c)`, :math:`w(1) \ge 2` and :math:`r(1) \ge w(1)/2`, so
:math:`s_\beta(1) \ge s_\alpha(1) \ge \eta w(1)^2/(8K^2) \ge \eta^{N+1} (mc/q)^N K^{2N-2}/8`
(using η ≤ 1, K ≥ 1). Choosing

.. math:: K^{2N-2} \ge \frac{24\, q^N}{\eta^{N+1} (mc)^N}

puts t = 1 in the region: the loss never goes below :math:`\ell(0) = (1 - c)^2/2 > 0`
(a positive constant) and grows at least exponentially; the layers flip sign every step
(the paper's "signs alternate"). K grows as η shrinks (:math:`K \propto \eta^{-(N+1)/(2N-2)}`):
the init depends on η, as the claim allows. An init chosen for one η does converge at
much smaller ones (the ``eta-independent-init`` mutant).

Claim 5: why GD stalls
----------------------
With :math:`\Phi = U \operatorname{diag}(\mu) U^\top` symmetric and :math:`W_j(0) = I`,
GD keeps :math:`W_j(t) = U \operatorname{diag}(x(t)) U^\top` (all layers equal and
symmetric), with :math:`x_i \leftarrow x_i - \eta\, x_i^{N-1} (x_i^N - \mu_i)`,
:math:`x_i(0) = 1`. For N even :math:`W_{1:N} = U \operatorname{diag}(x^N) U^\top` is PSD,
so :math:`\ell(t) \ge \tfrac12 \sum_{\mu_i < 0} \mu_i^2 = \lambda^2/2` at every step and
every η. Eigenvalue 1: x = 1 is fixed, stable iff :math:`\eta < 2/N`. Eigenvalue −λ = −1:
:math:`x(1) = 1 - 2\eta`; for η < 1, |x| decreases to 0, the stationary point where
:math:`\ell = \lambda^2/2` (linearly for N = 2, like :math:`\ell - \tfrac12 \approx
1/(4 (\eta t)^2)` for N = 4); for η > 1, |x| grows and GD diverges. For
2/N < η < 1 (N ≥ 4) the eigenvalue-1 directions sit on an unstable fixed point that
round-off leaves; only the floor is claimed there. Odd depth is different: x may cross 0
and :math:`W_{1:N}` reach Φ (reported from the scalar reduction at N = 3).

*Floating point.* The argument needs the layers to stay exactly equal and symmetric. At
N = 2 the limit point is a strict saddle of φ: a layer difference along the eigenvector of
−λ grows by :math:`1 + \eta\lambda` per step, so any round-off that breaks the symmetry
(XLA on CPU keeps the layers bit-exactly equal and symmetric here; a NumPy loop of the
same GD does not) lets GD escape to the global minimum after about
:math:`\ln(\varepsilon^{-1/2})/\ln(1+\eta)` steps (:func:`float_horizon`). The check
reads N = 2 on that horizon and measures the escape from a layer nudged by ε. At N ≥ 3
the saddle is degenerate and the escape is polynomial (none is seen in 20000 steps at N = 4).

References:
    [ACGH19] Arora, Cohen, Golowich, Hu. A Convergence Analysis of Gradient Descent for
    Deep Linear Neural Networks. ICLR 2019, Claims 4 and 5 (arXiv:1810.02281).
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from overparam_jax.dynamics import gradient_descent
from overparam_jax.losses import whitened_l2_loss
from overparam_jax.networks import init_identity
from overparam_jax.verify.mutants import frozen, mis_stepped
from overparam_jax.verify.registry import (
    Measurement,
    VerifyConfig,
    check_rng,
    mutant,
    register,
)

_TARGET_STREAM = 200  # the stream (and recipe) of margin-converges' Φ in convergence.py


@functools.cache
def _cached_loss(target_bytes: bytes, shape: tuple[int, int]):
    """One whitened ℓ2 loss object per target value, so that repeated runs of a check (and
    its mutants) reuse the library's compiled loops, which are keyed by the loss object."""
    Phi = jnp.asarray(np.frombuffer(target_bytes, np.float64).reshape(shape))
    return functools.partial(whitened_l2_loss, Phi=Phi)


def _loss_for(Phi) -> functools.partial:
    Phi = np.ascontiguousarray(np.asarray(Phi, np.float64))
    return _cached_loss(Phi.tobytes(), Phi.shape)


def _vmapped_descent(descend, loss, batch, etas, num_steps: int):
    """``descend`` from each init of ``batch`` (leading axis) at its own η, every step recorded."""
    run = lambda params, eta: descend(loss, params, learning_rate=eta, num_steps=num_steps)
    return jax.vmap(run)(batch, jnp.asarray(etas, jnp.float64))


def _stack(inits) -> tuple[jax.Array, ...]:
    """A list of params tuples as one params tuple with a leading batch axis."""
    return tuple(jnp.asarray(np.stack([np.asarray(p[j], np.float64) for p in inits])) for j in range(len(inits[0])))


def _product(params) -> np.ndarray:
    """W_e = W_N ... W_1 (NumPy)."""
    return functools.reduce(lambda acc, W: np.asarray(W) @ acc, params[1:], np.asarray(params[0], np.float64))


def _balanced_twin(W_e: np.ndarray, depth: int) -> tuple[np.ndarray, ...]:
    r"""ACGH19's Procedure 1 on square :math:`W_e = U \Sigma V^\top` (NumPy): layers
    :math:`\Sigma^{1/N} V^\top, \Sigma^{1/N}, \dots, U \Sigma^{1/N}`, exactly balanced, product W_e.
    (An independent twin of :func:`~overparam_jax.balanced_factorization`, which costs a
    compile per shape.)"""
    U, sigma, Vt = np.linalg.svd(W_e)
    root = sigma ** (1.0 / depth)
    return (root[:, None] * Vt, *[np.diag(root)] * (depth - 2), U * root[None, :])


def _genuine(loss: np.ndarray, diverged_at: int) -> np.ndarray:
    """The recorded losses of states GD actually reached (the library freezes a run at its
    last finite state from step ``diverged_at`` on)."""
    return loss if diverged_at < 0 else loss[:diverged_at]


# --------------------------------------------------------------------------- Claim 4


def claim4_scale(learning_rate: float, margin: float, depth: int) -> float:
    r"""The scale K of :func:`claim4_init`: the smallest K ≥ 1 with

    .. math:: K^{2N-2} \ge \frac{24 q^N}{\eta^{N+1} (mc)^N}, \qquad
              K^2 \ge \frac{2^{2/N} q}{\eta m c}, \qquad q = c^{2/N},\ m = 1 - c,

    which puts GD in the invariant region of the module's lemma after one step
    (valid for 0 < η ≤ 1, 0 < c < 1, N even).
    """
    eta, c, N = float(learning_rate), float(margin), int(depth)
    if not (0 < eta <= 1 and 0 < c < 1 and N >= 2 and N % 2 == 0):
        raise ValueError(f"Need 0 < eta <= 1, 0 < c < 1 and an even depth, got {eta}, {c}, {N}.")
    m, q = 1 - c, c ** (2 / N)
    region = (24 * q**N / (eta ** (N + 1) * (m * c) ** N)) ** (1 / (2 * N - 2))
    overshoot = math.sqrt(2 ** (2 / N) * q / (eta * m * c))
    return max(region, overshoot, 1.0)


def claim4_init(learning_rate: float, margin: float, dims) -> tuple[jax.Array, ...]:
    """ACGH19 Claim 4's unbalanced init for step size ``learning_rate`` and deficiency margin
    ``margin`` w.r.t. Φ = I_d: layers ``diag(a_j, 1, ..., 1)`` with the scalar chain
    ``a = (K, q/K, K, q/K, ...)``, ``q = c^{2/N}``, ``K = claim4_scale(η, c, N)`` (module docstring).
    """
    N, d = len(dims) - 1, dims[0]
    if len(set(dims)) != 1:
        raise ValueError(f"`dims` must all be equal, got {dims}.")
    K, q = claim4_scale(learning_rate, margin, N), margin ** (2 / N)
    first = [K if j % 2 == 0 else q / K for j in range(N)]
    return tuple(jnp.asarray(np.diag([a] + [1.0] * (d - 1))) for a in first)


def _scalar_chain(params) -> np.ndarray | None:
    """The first diagonal entries ``a_j`` if the layers are diagonal with the coordinates
    2..d at Φ = I (product 1), so that GD is the scalar map of the lemma; else None."""
    Ws = [np.asarray(W, np.float64) for W in params]
    diagonal = all(np.array_equal(W, np.diag(np.diag(W))) for W in Ws)
    rest = np.prod([np.diag(W)[1:] for W in Ws], axis=0)
    if not diagonal or not np.allclose(rest, 1.0, rtol=1e-12, atol=0):
        return None
    return np.array([W[0, 0] for W in Ws])


def _region_certificate(params, eta: float) -> dict:
    """One exact scalar GD step (NumPy, independent of the library) and the lemma's
    hypothesis at t = 1: r(1) > 0 and min_j s_j(1) >= 3."""
    a = _scalar_chain(params)
    if a is None:
        return {"holds": False, "r1": math.nan, "min_s1": math.nan}
    w = np.prod(a)
    a = a * (1 - eta * (w - 1) * w / a**2)
    w = np.prod(a)
    s = eta * (w - 1) * w / a**2
    return {"holds": bool(w - 1 > 0 and s.min() >= 3), "r1": float(w - 1), "min_s1": float(s.min())}


_C4_CASES = ((2, 1), (2, 2), (4, 1), (4, 2))  # (depth N, width d), cheapest first
_C4_ETA_MAX = 10**-0.5  # below 2/N = 0.5 for N = 4, where the balanced twin is stable
_C4_HORIZON = 10.0  # η_min · T: the balanced twin needs η t ≈ 7 to gain 1e-10 (N = 2, c = 0.1)
_C4_TWIN_TOLERANCE = 1e-10  # the twin converges: l(T) / l(0) <= this
_C4_FLOOR_ROUND_OFF = 1e-12  # "never below l(0)": min_t l(t) >= (1 - this) l(0)


def _c4_grid(config: VerifyConfig):
    """(η grid, margins): η log-spaced below 2/N_max = 0.5, where the balanced twin converges."""
    if config.full:
        return np.logspace(-4, math.log10(_C4_ETA_MAX), 8), (0.05, 0.5, 0.95)
    return np.logspace(-3, math.log10(_C4_ETA_MAX), 6), (0.1, 0.5, 0.9)


def _c4_point(depth, eta, c, init, loss_u, div_u, loss_b, div_b, balancedness) -> dict:
    """The verdict at one grid point: the unbalanced run fails forever (lemma certified at
    t = 1, loss never below l(0), diverged, >= 4^N growth per step) and the twin converges."""
    cert = _region_certificate(init, eta)
    genuine = _genuine(loss_u, div_u)
    with np.errstate(divide="ignore", invalid="ignore"):  # a run that reaches l = 0 exactly
        growth = genuine[2:] / genuine[1:-1]
    growth_min = float(growth.min()) if growth.size else math.inf
    floor = float(genuine.min() / genuine[0])
    fails = cert["holds"] and floor >= 1 - _C4_FLOOR_ROUND_OFF and div_u >= 0 and growth_min >= 4.0**depth
    twin_ratio = float(loss_b[-1] / loss_b[0])
    converges = div_b < 0 and twin_ratio <= _C4_TWIN_TOLERANCE
    W_e = _product(init)
    return {
        "eta": float(eta), "c": float(c),
        "margin": float(1.0 - np.linalg.norm(W_e - np.eye(W_e.shape[0]))),  # σ_min(I) − ||W_e − I||_F
        "balancedness": balancedness, "scale_K": float(abs(np.asarray(init[0])[0, 0])),
        "certificate_r1": cert["r1"], "certificate_min_s1": cert["min_s1"],
        "min_loss_over_l0": floor, "diverged_at": int(div_u), "min_growth_per_step": growth_min,
        "twin_loss_ratio": twin_ratio, "twin_diverged_at": int(div_b),
        "unbalanced_fails": bool(fails), "twin_converges": bool(converges), "ok": bool(fails and converges),
    }


def _c4_case(descend, unbalanced_init, depth: int, d: int, etas, margins) -> tuple[list[dict], dict]:
    """All grid points of one (N, d): unbalanced inits and their twins in one vmapped run."""
    dims = (d,) * (depth + 1)
    grid = [(eta, c) for c in margins for eta in etas]
    inits = [tuple(np.asarray(W, np.float64) for W in unbalanced_init(eta, c, dims)) for eta, c in grid]
    twins = [_balanced_twin(_product(p), depth) for p in inits]
    batch = _stack(inits + twins)
    etas_all = np.array([eta for eta, _ in grid] * 2)
    num_steps = math.ceil(_C4_HORIZON / min(etas))
    traj = _vmapped_descent(descend, _loss_for(np.eye(d)), batch, etas_all, num_steps)
    loss, div = np.asarray(traj.loss), np.asarray(traj.diverged_at)
    delta0 = np.asarray(traj.balancedness[:, 0])
    n = len(grid)
    rows = [
        {"depth": depth, "d": d, **_c4_point(depth, eta, c, inits[i], loss[i], int(div[i]), loss[n + i],
                                               int(div[n + i]), float(delta0[i])),
         "twin_balancedness": float(delta0[n + i])}
        for i, (eta, c) in enumerate(grid)
    ]
    curves = {"grid": grid, "unbalanced": loss[:n], "unbalanced_div": div[:n], "twin": loss[n:]}
    return rows, curves


def _c4_plot(depth, d, curves, margin):
    """Loss / l(0) against step + 1: unbalanced (solid, until it overflows) vs twin (dashed)."""

    def plot(ax):
        import matplotlib.pyplot as plt

        picks = [i for i, (_, c) in enumerate(curves["grid"]) if c == margin]
        colors = plt.cm.viridis(np.linspace(0, 0.9, len(picks)))
        for color, i in zip(colors, picks):
            eta = curves["grid"][i][0]
            u = _genuine(curves["unbalanced"][i], int(curves["unbalanced_div"][i]))
            b = curves["twin"][i]
            with np.errstate(over="ignore"):
                ax.loglog(np.arange(1, u.size + 1), np.clip(u / u[0], 1e-30, 1e100), "-o", ms=3, color=color,
                          label=f"η = {eta:.2g}")
            ax.loglog(np.arange(1, b.size + 1), np.clip(b / b[0], 1e-30, 1e100), "--", color=color)
        ax.axhline(1.0, color="red", lw=0.8, label="loss(0): the floor")
        ax.set_xlabel("step + 1")
        ax.set_ylabel("loss / loss(0)")
        ax.set_ylim(1e-20, 1e40)
        ax.legend(fontsize=7, title=f"N = {depth}, d = {d}, c = {margin}: unbalanced (—) vs twin (--)",
                  title_fontsize=7)

    return plot


def _eta_independent_init(learning_rate, margin, dims):
    """Wrong order of quantifiers: the init built for the largest η of the grid, used at every η."""
    return claim4_init(_C4_ETA_MAX, margin, dims)


def _balanced_twin_init(learning_rate, margin, dims):
    """The construction's end-to-end matrix, balanced (Procedure 1): no unbalance at all."""
    return _balanced_twin(_product(claim4_init(learning_rate, margin, dims)), len(dims) - 1)


@register(
    "claim4-no-balance-fails",
    section="§5",
    claim="ACGH19 Claim 4 (no balance), in the paper's order of quantifiers: for each eta of the grid and "
          "each margin c, an init with deficiency margin c w.r.t. Phi = I_d chosen after eta (diagonal "
          "layers, first entries K, c^(2/N)/K, K, ... with K ~ eta^-(N+1)/(2N-2)) makes GD fail: from "
          "t = 1 it is in an invariant region (certified by an exact NumPy step) where the loss grows "
          ">= 4^N-fold per step, so it never goes below l(0) = (1-c)^2/2 > 0; its balanced twin (same "
          "W_e, Procedure 1) at the same eta reaches l(T)/l(0) <= 1e-10. Measured: fraction of grid "
          "points where the unbalanced run fails (certificate, min_t l >= l(0), divergence, growth) and "
          "the twin converges",
    regime="depths N = 2, 4 (even, as the claim needs), widths d = 1, 2 (d = 2: coordinate 2 at the "
           "optimum); eta = 1e-3 .. 0.32 (6 log-spaced, below the twin's stability limit 2/N), "
           "c = 0.1, 0.5, 0.9 (full: eta from 1e-4, c = 0.05, 0.5, 0.95); T = 10/eta_min steps, every step "
           "recorded. The claim itself is about all t: the certificate at t = 1 makes the failure "
           "permanent; the twin's convergence is measured, not proved",
    threshold=1.0,
    relation=">=",
    mutants=[
        mutant("balanced-init", "the 'unbalanced' init is its balanced twin (same W_e, Procedure 1)",
               unbalanced_init=_balanced_twin_init),
        mutant("eta-independent-init", "one init for every eta (built for eta = 0.32): wrong order of "
               "quantifiers", unbalanced_init=_eta_independent_init),
        mutant("frozen-gd", "GD that never moves", descend=frozen(gradient_descent)),
        mutant("gd-step-a-tenth", "GD at eta/10 instead of the stated eta", descend=mis_stepped(gradient_descent, 0.1)),
    ],
)
def check_claim4(config: VerifyConfig, *, descend=gradient_descent, unbalanced_init=claim4_init) -> Measurement:
    """Every grid point of every (N, d): unbalanced init fails for good, balanced twin converges.

    Stops after the first (N, d) with a bad grid point (the verdict is then determined).
    """
    etas, margins = _c4_grid(config)
    rows, plots = [], {}
    for depth, d in _C4_CASES:
        case_rows, curves = _c4_case(descend, unbalanced_init, depth, d, etas, margins)
        rows += case_rows
        plots[depth, d] = curves
        if not all(r["ok"] for r in case_rows):
            break
    fraction = sum(r["ok"] for r in rows) / len(rows)
    shown = (4, 2) if (4, 2) in plots else next(iter(plots))
    details = {
        "fraction_ok": fraction, "grid_points": len(rows), "num_steps": math.ceil(_C4_HORIZON / min(etas)),
        "stopped_early": len(plots) < len(_C4_CASES),
        "loss_floor": "l(0) = (1 - c)^2 / 2 (the construction's positive constant)",
        "min_certificate_s1 (lemma needs >= 3)": min(r["certificate_min_s1"] for r in rows),
        "max_twin_loss_ratio": max(r["twin_loss_ratio"] for r in rows),
        "max_diverged_at": max(r["diverged_at"] for r in rows),
        "min_growth_per_step (lemma: >= 4^N)": min(r["min_growth_per_step"] for r in rows),
        "points": rows,
    }
    return Measurement(fraction, details, _c4_plot(*shown, plots[shown], margins[len(margins) // 2]))


# --------------------------------------------------------------------------- Claim 5

_C5_LAMBDA = 1.0  # Φ has eigenvalues (1, ..., 1, −λ): the floor is λ²/2
_C5_WIDTH = 3
_C5_DEPTHS = (2, 4)
_C5_ETAS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.4, 0.75, 1.2)
_C5_STEPS = 4000  # η_min T = 40: N = 4 reaches l − λ²/2 ≈ 1/(4 (η t)²) ≈ 1.6e-4
_C5_ROUND_OFF = 1e-12  # (a): min_t l(t) >= (1 − this) λ²/2
_C5_PLATEAU_TOLERANCE = 1e-3  # (b): |l(T) − λ²/2| <= this · (l(0) − λ²/2)
_C5_GRADIENT_TOLERANCE = 1e-2  # (b): ||∇φ(T)|| <= this · ||∇φ(0)||
_C5_DIVERGENCE_GROWTH = 1e3  # (b), η > 1: max_t l(t) >= this · l(0)


def _symmetric(rng: np.random.Generator, d: int, *, last_eigenvalue: float) -> np.ndarray:
    """Q diag(1, ..., 1, last_eigenvalue) Qᵀ, Q from the QR of a d x d Gaussian (NumPy), symmetrized."""
    Q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    Phi = Q @ np.diag(np.r_[np.ones(d - 1), last_eigenvalue]) @ Q.T
    return (Phi + Phi.T) / 2


def reflection_target(rng: np.random.Generator, d: int) -> np.ndarray:
    """Φ = Q diag(1, ..., 1, −λ) Qᵀ (λ = 1) with Q from the QR of a Gaussian matrix:
    symmetric, one negative eigenvalue (ACGH19 Claim 5); symmetrized exactly."""
    return _symmetric(rng, d, last_eigenvalue=-_C5_LAMBDA)


def c5_regime(learning_rate: float, depth: int) -> str:
    """What GD from the identity does at η (module docstring): ``"converges"`` (to λ²/2) for
    η < 2/N, ``"diverges"`` for η > 1, ``"unstable"`` in between (N ≥ 4: only the floor holds)."""
    if learning_rate < 2 / depth:
        return "converges"
    return "diverges" if learning_rate > 1 else "unstable"


def _layer_gradient_norm(params, Phi) -> float:
    r"""||∇φ||_F by the hand formula (NumPy, no autodiff):
    :math:`\partial\phi/\partial W_j = W_{N:j+1}^\top (W_e - \Phi) W_{j-1:1}^\top`."""
    Ws = [np.asarray(W, np.float64) for W in params]
    eye = np.eye(Ws[0].shape[0])
    chain = lambda ms: functools.reduce(lambda acc, W: W @ acc, ms, eye)
    G = chain(Ws) - Phi
    return float(np.sqrt(sum(np.sum((chain(Ws[j + 1:]).T @ G @ chain(Ws[:j]).T) ** 2) for j in range(len(Ws)))))


def scalar_reduction_losses(Phi, depth: int, etas, num_steps: int) -> np.ndarray:
    r"""Reference: l(t) of GD from W_j = I on symmetric Φ via the eigenvalue reduction
    :math:`x_i \leftarrow x_i - \eta x_i^{N-1}(x_i^N - \mu_i)`, :math:`\ell = \frac12\sum_i (x_i^N - \mu_i)^2`.
    Returns ``(len(etas), num_steps + 1)``; inf after overflow."""
    mu = np.linalg.eigvalsh(np.asarray(Phi, np.float64))
    eta = np.asarray(etas, np.float64)[:, None]
    x = np.ones((eta.shape[0], mu.size))
    out = np.empty((eta.shape[0], num_steps + 1))
    with np.errstate(over="ignore", invalid="ignore"):
        for t in range(num_steps + 1):
            out[:, t] = 0.5 * np.sum((x**depth - mu) ** 2, axis=1)
            x = x - eta * x ** (depth - 1) * (x**depth - mu)
    return np.where(np.isfinite(out), out, np.inf)


def float_horizon(learning_rate: float, depth: int, num_steps: int) -> int:
    r"""The last step at which a float64 run still stands for exact GD from the identity.

    At N = 2 the plateau is a *strict* saddle: a difference between the layers along the
    eigenvector of −λ (exactly 0 in exact arithmetic) grows by :math:`1 + \eta\lambda` per
    step, so a round-off seed ε (float64 machine epsilon) lowers the loss by ~ε after
    :math:`t_\eta = \ln(\varepsilon^{-1/2}) / \ln(1 + \eta\lambda)` steps and GD then leaves
    the plateau for the global minimum (``round_off_escape`` in the details measures it).
    For N ≥ 3 the saddle is degenerate (the growth factor tends to 1 like the layers), and
    the whole run counts.
    """
    if depth != 2:
        return num_steps
    escape = math.log(np.finfo(np.float64).eps ** -0.5) / math.log1p(learning_rate * _C5_LAMBDA)
    return min(num_steps, int(escape))


def _c5_errors(regime, loss, div, horizon, final, grad0, Phi) -> dict:
    """Normalized errors of (a) the floor and (b) the motion at one η (each <= 1 to pass),
    read on the steps ``0..horizon`` (the gradient at the end of the run)."""
    floor_value = _C5_LAMBDA**2 / 2
    genuine = _genuine(loss, div)[: horizon + 1]
    floor = float(genuine.min())
    moved = (genuine[-1] - floor_value) / (genuine[0] - floor_value)
    grad = _layer_gradient_norm(final, Phi) / max(grad0, np.finfo(np.float64).tiny)
    err = {"horizon": int(horizon), "min_loss_over_floor": floor / floor_value,
           "a": max(0.0, 1 - floor / floor_value) / _C5_ROUND_OFF, "b": 0.0,
           "loss_at_horizon": float(genuine[-1]), "loss_at_end": float(_genuine(loss, div)[-1]),
           "diverged_at": int(div), "plateau_distance": float(abs(moved)), "gradient_ratio_at_end": grad,
           "max_loss_over_l0": float(genuine.max() / genuine[0])}
    if regime == "converges":
        err["b"] = float(max(abs(moved) / _C5_PLATEAU_TOLERANCE, grad / _C5_GRADIENT_TOLERANCE))
    elif regime == "diverges":
        err["b"] = float(_C5_DIVERGENCE_GROWTH * genuine[0] / genuine.max())
    Ws = [np.asarray(W) for W in final]
    scale = max(max(np.linalg.norm(W) for W in Ws), np.finfo(np.float64).tiny)
    err["layer_asymmetry"] = float(max(max(np.linalg.norm(W - Ws[0]), np.linalg.norm(W - W.T)) for W in Ws) / scale)
    return err


def _round_off_escape(descend, loss, params, etas) -> dict:
    """Information: N = 2 from the identity with one layer nudged by machine epsilon (a
    fixed non-symmetric pattern): the first step below the floor and the final loss, per η,
    and the loss curves."""
    nudge = np.finfo(np.float64).eps * np.triu(np.ones(np.shape(params[-1])))  # not symmetric
    nudged = tuple(params[:-1]) + (np.asarray(params[-1]) + nudge,)
    batch = tuple(jnp.broadcast_to(jnp.asarray(W, jnp.float64), (len(etas),) + W.shape) for W in nudged)
    traj = _vmapped_descent(descend, loss, batch, etas, _C5_STEPS)
    out, curves = {}, []
    for eta, row, div in zip(etas, np.asarray(traj.loss), np.asarray(traj.diverged_at)):
        curves.append(_genuine(row, int(div)))
        below = np.flatnonzero(curves[-1] < (1 - _C5_ROUND_OFF) * _C5_LAMBDA**2 / 2)
        out[f"eta={eta:g}"] = {"first_step_below_floor": int(below[0]) if below.size else None,
                               "float_horizon": float_horizon(float(eta), 2, 10**9),
                               "final_loss": float(curves[-1][-1])}
    return out, curves


def _c5_plot(curves, escape_curves):
    """Loss against step + 1 for every η (color) and depth (style), with the floor λ²/2; dotted:
    N = 2 with one layer nudged by machine epsilon (the round-off escape)."""

    def plot(ax):
        import matplotlib.pyplot as plt

        floor = _C5_LAMBDA**2 / 2
        colors = plt.cm.viridis(np.linspace(0, 0.9, len(_C5_ETAS)))
        inset = ax.inset_axes([0.12, 0.07, 0.34, 0.32])
        for depth, (losses, divs) in curves.items():
            style = "-" if depth == 2 else "--"
            for color, eta, loss, div in zip(colors, _C5_ETAS, losses, divs):
                g = _genuine(loss, int(div))
                steps = np.arange(1, g.size + 1)
                ax.loglog(steps, g, style, color=color, lw=1, label=f"η = {eta:g}" if depth == _C5_DEPTHS[0] else None)
                if c5_regime(eta, depth) == "converges":
                    inset.loglog(steps, np.where(g > floor, g - floor, np.nan), style, color=color, lw=0.8)
        for color, eta, g in zip(colors, _C5_ETAS, escape_curves):
            if c5_regime(eta, 2) == "converges":
                ax.loglog(np.arange(1, g.size + 1), g, ":", color=color, lw=0.8)
        ax.axhline(floor, color="red", lw=1, label="λ²/2 (floor)")
        ax.set_xlabel("step + 1")
        ax.set_ylabel("loss")
        ax.set_ylim(1e-3, 1e3)
        ax.legend(fontsize=6, ncol=2, loc="upper right", title_fontsize=6,
                  title="N = 2 (—), N = 4 (--), N = 2 nudged by eps (··)")
        inset.set_ylabel("loss − λ²/2 (converging η)", fontsize=5)
        inset.tick_params(labelsize=5)
        inset.set_ylim(1e-17, 10)

    return plot


def _psd_target(rng, d):
    """A symmetric target with no negative eigenvalue: Q diag(1, ..., 1, 1/2) Qᵀ."""
    return _symmetric(rng, d, last_eigenvalue=0.5)


def _diagonal_target(rng, d):
    """Φ = diag(1, ..., 1, −1): a valid Claim 5 target (U = I)."""
    return np.diag(np.r_[np.ones(d - 1), -_C5_LAMBDA])


def _margin_init(dims):
    """A balanced init with deficiency margin 1/2 w.r.t. diag(1, ..., 1, −1): Procedure 1 of
    diag(1, ..., 1, −1/2) (not the identity)."""
    return _balanced_twin(np.diag(np.r_[np.ones(dims[0] - 1), -0.5]), len(dims) - 1)


@register(
    "claim5-no-margin-stalls",
    section="§5",
    claim="ACGH19 Claim 5 (no margin), two-sided: from the identity init W_j(0) = I (0-balanced, not "
          "stationary) on symmetric Phi with eigenvalues (1, 1, -1) (the Phi of margin-converges, where a "
          "balanced init WITH a margin reaches 0), GD at every eta of the grid (a) never goes below "
          "lambda^2/2 = 1/2 (min_t l >= (1 - 1e-12)/2), and (b) moves: for eta < 2/N it converges to the "
          "non-global stationary value (|l(t_end) - 1/2| <= 1e-3 (l(0) - 1/2), ||grad phi(T)|| <= 1e-2 "
          "||grad phi(0)||), for eta > 1 it diverges (loss grows >= 1e3-fold). Measured: the worst "
          "normalized error over the grid (each term divided by its tolerance). Holds in exact "
          "arithmetic; at N = 2 the plateau is a strict saddle and float round-off escapes it (details)",
    regime="d = 3, depths N = 2, 4 (even, as the claim needs); eta = 0.01 .. 1.2 (8 values: converging "
           "for eta < 2/N, diverging for eta > 1, N = 4 at eta = 0.75 between them: floor only); "
           "T = 4000 steps, every step recorded. N = 4: the whole run (l - 1/2 ~ 1/(4 (eta t)^2), so "
           "eta_min T = 40 leaves ~10x slack). N = 2: t_end = ln(eps^-1/2)/ln(1 + eta) (32 .. 1811 "
           "steps), the horizon on which a float64 run stands for exact GD; a layer nudged by eps "
           "leaves the plateau for l ~ 1e-30 soon after (measured in details)",
    threshold=1.0,
    mutants=[
        mutant("frozen-gd", "GD that never moves (the loss 'never goes below 1/2' trivially)",
               descend=frozen(gradient_descent)),
        mutant("psd-target", "a target with no negative eigenvalue: Q diag(1, 1, 1/2) Q^T", target=_psd_target),
        mutant("margin-init", "an init with deficiency margin 1/2 instead of the identity (on Phi = "
               "diag(1, 1, -1))", target=_diagonal_target, init=_margin_init),
        mutant("stationary-init", "the zero init (identity scaled by 0): stationary, GD cannot move",
               init=functools.partial(init_identity, scale=0.0)),
    ],
)
def check_claim5(config: VerifyConfig, *, descend=gradient_descent, target=reflection_target,
                 init=init_identity) -> Measurement:
    """Both depths, every η: (a) the floor and (b) the motion, each normalized by its tolerance.

    Stops after the first depth with an error above 1 (the verdict is then determined).
    """
    Phi = np.asarray(target(check_rng(config, _TARGET_STREAM), _C5_WIDTH), np.float64)
    etas = np.asarray(_C5_ETAS)
    rows, curves, reference, escape, escape_curves = [], {}, {}, {}, []
    for depth in _C5_DEPTHS:
        params = init((_C5_WIDTH,) * (depth + 1))
        batch = tuple(jnp.broadcast_to(jnp.asarray(W, jnp.float64), (etas.size,) + W.shape) for W in params)
        traj = _vmapped_descent(descend, _loss_for(Phi), batch, etas, _C5_STEPS)
        loss, div = np.asarray(traj.loss), np.asarray(traj.diverged_at)
        curves[depth] = (loss, div)
        scalar = scalar_reduction_losses(Phi, depth, etas, _C5_STEPS)
        grad0 = _layer_gradient_norm(params, Phi)
        for i, eta in enumerate(etas):
            final = tuple(np.asarray(W[i]) for W in traj.final)
            regime, horizon = c5_regime(float(eta), depth), float_horizon(float(eta), depth, _C5_STEPS)
            rows.append({"depth": depth, "eta": float(eta), "regime": regime,
                         **_c5_errors(regime, loss[i], int(div[i]), horizon, final, grad0, Phi)})
            if regime == "converges":
                deviation = np.abs(loss[i, : horizon + 1] - scalar[i, : horizon + 1])
                reference[f"N={depth}, eta={eta:g}"] = float(deviation.max() / loss[i, 0])
        if depth == 2:
            escape, escape_curves = _round_off_escape(descend, _loss_for(Phi), params, etas)
        if max(max(r["a"], r["b"]) for r in rows) > 1:
            break
    worst = max(max(r["a"], r["b"]) for r in rows)
    details = {
        "floor": _C5_LAMBDA**2 / 2, "optimum": 0.0,
        "target_eigenvalues": np.linalg.eigvalsh(Phi).tolist(),
        "stopped_early": len(curves) < len(_C5_DEPTHS),
        "max_layer_asymmetry (converging eta)": max(r["layer_asymmetry"] for r in rows if r["regime"] == "converges"),
        "scalar_reduction_max_deviation / l(0) (converging eta)": max(reference.values(), default=math.nan),
        "round_off_escape (N=2, one layer nudged by eps)": escape,
        "odd_depth_3_scalar_reduction": _odd_depth_report(Phi, etas),
        "rows": rows,
    }
    return Measurement(worst, details, _c5_plot(curves, escape_curves))


def _odd_depth_report(Phi, etas) -> dict:
    """Information: at N = 3 (outside the claim) the eigenvalue −1 direction can cross 0 when
    η > 1/2 and W_e reach Φ: min_t l(t) / (λ²/2) from the scalar reduction."""
    losses = scalar_reduction_losses(Phi, 3, etas, _C5_STEPS)
    return {f"eta={eta:g}": float(np.min(row) / (_C5_LAMBDA**2 / 2)) for eta, row in zip(etas, losses)}
