"""Check of ACH18's ℓp acceleration claim with the discrete end-to-end update (THEORY.md §4).

The family. ℓ4 loss, scalar output, three examples: x = (s, 0) with y = s (a realizable
direction, the optimum's w_1 = 1), and x = (0, 1) with y = 1 and y = −0.8 (a non-realizable
direction: its curvature stays ≈ 8 near the optimum w_2 = 0.1). From w(0) = (0.5, 0.05):

* GD on the linear model is capped at η < 2/8 by the non-realizable direction, and the
  realizable ℓ4 direction then converges only sublinearly;
* the end-to-end update multiplies the component along w by N‖w‖^{2−2/N} and the
  orthogonal one by ‖w‖^{2−2/N} (P_W's eigenvalues, §4); near the optimum w is almost
  along the slow direction, so the same η moves it N times faster.

Members are depths N = 2, 4, 8, 16; k(N) = GD's iterations / the end-to-end update's to
reach ℓ − ℓ* ≤ 1e−8, each at its own best η from one log grid. k grows linearly in N, so
without bound. (For a fixed depth, the 1-D ℓp families we analysed give a bounded k —
the ratio max_s s^{2−2/N}(1−s)^{p−2} of stability constraints — see the issue note.)
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from overparam_jax.dynamics import end_to_end_descent
from overparam_jax.losses import lp_loss
from overparam_jax.verify.registry import Measurement, VerifyConfig, register

_DEPTHS = (1.0, 2.0, 4.0, 8.0, 16.0)


def _iterations_to_target(traj, optimum: float, epsilon: float) -> np.ndarray:
    """First recorded step with ℓ − ℓ* ≤ ε for each run (inf if never, or if it diverged)."""
    hit = (np.asarray(traj.loss) - optimum) <= epsilon
    first = np.argmax(hit, axis=-1)
    steps = np.take_along_axis(np.asarray(traj.step), first[..., None], axis=-1)[..., 0].astype(float)
    return np.where(hit.any(axis=-1) & (np.asarray(traj.diverged_at) < 0), steps, np.inf)


@register(
    "lp-acceleration",
    section="§4",
    claim="ACH18 (p = 4): a family where the discrete end-to-end update (depth N) reaches l - l* <= 1e-8 "
          "k(N) times faster than GD on the linear model, each at its best eta from one grid; "
          "k grows without bound (log-log slope of k vs N, members N = 2, 4, 8, 16)",
    threshold=0.8,
    relation=">=",
)
def check_lp_acceleration(config: VerifyConfig, *, update=end_to_end_descent) -> Measurement:
    s = 0.5
    X = jnp.array([[s, 0.0], [0.0, 1.0], [0.0, 1.0]], jnp.float64)
    Y = jnp.array([[s], [1.0], [-0.8]], jnp.float64)
    loss = functools.partial(lp_loss, X=X, Y=Y, p=4.0)
    optimum = float(loss(jnp.array([[1.0, 0.1]], jnp.float64)))  # w* = (1, 0.1)
    w0 = jnp.array([[0.5, 0.05]], jnp.float64)
    learning_rates = jnp.logspace(-3, 0.5, 15)
    num_steps = 60_000  # GD, the slowest, needs ~49k
    run = lambda N, lr: update(loss, w0, depth=N, learning_rate=lr, num_steps=num_steps, save_every=100)
    traj = jax.jit(jax.vmap(jax.vmap(run, (None, 0)), (0, None)))(jnp.asarray(_DEPTHS), learning_rates)
    iterations = _iterations_to_target(traj, optimum, 1e-8)  # (depth, lr)
    best = iterations.min(axis=1)
    best_lr = np.asarray(learning_rates)[iterations.argmin(axis=1)]
    speedups = best[0] / best[1:]
    if not np.all(np.isfinite(best)):
        return Measurement(float("nan"), {"iterations": best.tolist(), "error": "a method never reached the target"})
    slope = float(np.polyfit(np.log(_DEPTHS[1:]), np.log(speedups), 1)[0])

    def plot(ax):
        ax.loglog(_DEPTHS[1:], speedups, "o-", label=f"k(N), slope {slope:.2f}")
        ax.set_xlabel("depth N of the end-to-end update")
        ax.set_ylabel("k = GD iterations / end-to-end iterations")
        ax.legend()

    return Measurement(slope, {
        "depths": list(_DEPTHS), "best_iterations": best.tolist(), "best_learning_rates": best_lr.tolist(),
        "speedup_k": dict(zip([f"N={int(d)}" for d in _DEPTHS[1:]], speedups.tolist())),
        "target": "l - l* <= 1e-8", "grid": "15 log-spaced eta in [1e-3, 10^0.5]",
    }, plot)
