r"""Sweep throughput against the tools people use today, and the distance to the machine's limit.

Issue 9, items 1 and 2. Two workloads, the same float32 maths in every implementation:

* **A — the paper's sweep** (E1 of THEORY.md §8): gas-sensor Ethanol, standardized
  columns (m = 2565, d = 128), ℓ4 loss :math:`\frac1m\sum_i (w^\top x_i - y_i)^4`, hidden
  width 1, depths {1, 2, 3, 4} × learning rates {1e-4, 2e-4, 5e-4, 1e-3} × 64 seeds,
  balanced init std 0.01, 2000 full-batch GD steps, the loss recorded every 200 steps.
  Minimal work: :math:`4md` FLOPs per run-step (the forward :math:`Xw` and the backward
  :math:`X^\top g`, 2md each; the O(m) elementwise and O(N) scalar work is left out).
  Batched over R runs these are two matmuls, (m × d)(d × R) and (R × m)(m × d).
* **B — compute-bound**: whitened ℓ2 :math:`\tfrac12\|W_e - \Phi\|_F^2`, square width
  n = 256, depth N = 4, 8 seeds, learning rate 0.01, balanced init std :math:`1/\sqrt n`,
  a fixed Gaussian target Φ (entries N(0, 1/n)), 500 GD steps, recorded every 50. Minimal
  work: :math:`6(N-1)n^3` FLOPs per run-step (N − 1 products forward, 2(N − 1) backward).

Implementations (every one starts from the same ``init_balanced`` params):

* ``sweep`` — :func:`overparam_jax.sweep`: every run in one vmapped, compiled ``lax.scan``.
* ``jax_scan_per_run`` — :func:`overparam_jax.gradient_descent` once per run (a compiled
  ``lax.scan`` per run, compiled once per depth).
* ``jax_step_loop`` — a Python loop over steps of one jitted GD step per run.
* ``torch_eager`` — PyTorch autograd, a Python loop per run (``torch.optim.SGD``), the
  way published research code is written.
* ``torch_compile`` — the same with the loss ``torch.compile``-d (if it works here).
* ``numpy`` — NumPy with the hand-written layer gradients, a Python loop per run.

Every baseline (all but ``sweep``) is timed on a documented subset of the runs and scaled
per run-step, as the issue allows: workload A — 4 runs, seed 0, depth k with the k-th
learning rate (every depth and every learning rate once, so the depths are in the grid's
proportions); workload B — 1 run (seed 0). Every run of a workload does the same work per
step up to its depth, so the per-run-step cost of the subset is that of the grid. (A
subset of 16 runs for A and 2 for B was the first plan; with ``torch.compile``'s per-depth
compiles it would have put the full run of this script near 12 minutes on the 2-core
machine, so the subsets were cut, never the workloads.) Every implementation's recorded
losses are checked against the sweep's cell for the same run (relative tolerance
``AGREE_RTOL``).

Reported: steady-state time (median of ``--repeats``), first-call time (compile included)
and compile = first call − its run-steps × the steady cost per run-step (the first call of
a baseline runs one run per depth, for the full length where the step count is compiled
in and for ``save_every`` steps otherwise), µs per run-step,
run-steps per second, the ratio of every baseline to ``sweep``, achieved GFLOP/s of the
minimal work against the float32 matmul peak measured in the same run, the issue's goals
(met or missed, from these numbers), and for workload A the bytes each step must move
against the bandwidth measured in the same run: the time floor is
:math:`\max(\text{FLOPs}/\text{peak},\ \text{bytes}/\text{bandwidth})` and the larger
term is the binding limit.

    python benchmarks/throughput.py [--workload A|B|all] [--quick] [--repeats 3]
        [--no-torch] [--device gpu] [--json PATH] [--results-md PATH]

PyTorch is optional: without it the torch columns say "not installed".
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Sequence
from typing import Any

import _common as C
import jax
import jax.numpy as jnp
import numpy as np

from overparam_jax import (
    gradient_descent,
    init_balanced,
    load_gas_ethanol,
    lp_loss,
    overparameterized,
    sweep,
    whitened_l2_loss,
)

# float32 round-off, accumulated over up to 2000 steps and summed in different orders by
# different BLAS/XLA kernels: at the full sizes NumPy, PyTorch eager and the jitted-step
# loop differ from `gradient_descent` by ≤ 7e-7 relative on A's and B's subsets (checked
# while preparing the full run); the JSON records each implementation's value.
AGREE_RTOL = 1e-3
IMPLEMENTATIONS = ("sweep", "jax_scan_per_run", "jax_step_loop", "torch_eager", "torch_compile", "numpy")
LABELS = {
    "sweep": "overparam_jax `sweep` (vmap + scan)",
    "jax_scan_per_run": "`gradient_descent` per run (jitted scan)",
    "jax_step_loop": "Python loop of jitted steps",
    "torch_eager": "PyTorch eager per run",
    "torch_compile": "PyTorch `torch.compile` per run",
    "numpy": "NumPy per run",
}
Run = tuple[int, float, int]  # (seed, learning_rate, depth)


# --------------------------------------------------------------------------------------
# Workloads
# --------------------------------------------------------------------------------------


@dataclasses.dataclass
class Workload:
    name: str
    loss: str  # "l4" or "whitened_l2"
    input_dim: int
    hidden_width: int
    output_dim: int
    depths: tuple[int, ...]
    seeds: tuple[int, ...]
    learning_rates: tuple[float, ...]
    init_std: float
    num_steps: int
    save_every: int
    subset: tuple[Run, ...]  # the runs slow baselines are timed on
    data: dict[str, np.ndarray]  # float32: X, Y (l4) or Phi (whitened_l2)

    @property
    def runs(self) -> list[Run]:
        """Every run, in the sweep's order (seed-major, depth fastest)."""
        return [(s, lr, d) for s in self.seeds for lr in self.learning_rates for d in self.depths]

    def dims(self, depth: int) -> tuple[int, ...]:
        return (self.input_dim,) + (self.hidden_width,) * (depth - 1) + (self.output_dim,)

    @functools.cached_property
    def jax_loss(self) -> Callable[[jax.Array], jax.Array]:
        """ℓ as one function object: it is a static argument of every compiled program, so a
        new object per call would recompile every time."""
        if self.loss == "l4":
            return functools.partial(lp_loss, X=jnp.asarray(self.data["X"]), Y=jnp.asarray(self.data["Y"]), p=4.0)
        return functools.partial(whitened_l2_loss, Phi=jnp.asarray(self.data["Phi"]))

    def flops_per_run_step(self, depth: int) -> int:
        """Minimal FLOPs of one GD step of one run (see the module docstring)."""
        if self.loss == "l4":
            m, d = self.data["X"].shape
            return 4 * m * d
        n = self.hidden_width
        return 6 * (depth - 1) * n**3

    def mean_flops_per_run_step(self) -> float:
        return float(np.mean([self.flops_per_run_step(d) for _, _, d in self.runs]))

    def init(self, seed: int, depth: int) -> list[np.ndarray]:
        params = init_balanced(jax.random.key(seed), self.dims(depth), std=self.init_std, dtype=jnp.float32)
        return [np.asarray(W) for W in params]

    def shortened(self, num_steps: int) -> Workload:
        """The same workload with ``num_steps`` steps, sharing ℓ (the same compiled programs)."""
        short = dataclasses.replace(self, num_steps=num_steps)
        short.__dict__["jax_loss"] = self.jax_loss  # the cached_property, shared
        return short

    def record_steps(self) -> list[int]:
        return list(range(0, self.num_steps + 1, self.save_every))


def workload_a(quick: bool) -> Workload:
    X, y = load_gas_ethanol(standardize=True)
    seeds = 2 if quick else 64
    steps, every = (40, 20) if quick else (2000, 200)
    lrs, depths = ((5e-4, 1e-3), (1, 2)) if quick else ((1e-4, 2e-4, 5e-4, 1e-3), (1, 2, 3, 4))
    subset = tuple((0, lr, d) for lr, d in zip(lrs, depths))  # every depth and rate once
    return Workload("A", "l4", 128, 1, 1, depths, tuple(range(seeds)), lrs, 0.01, steps, every,
                    subset, {"X": X.astype(np.float32), "Y": y.astype(np.float32)})


def workload_b(quick: bool) -> Workload:
    n = 16 if quick else 256
    seeds = 2 if quick else 8
    steps, every = (20, 10) if quick else (500, 50)
    Phi = np.asarray(jax.random.normal(jax.random.key(10_000), (n, n), jnp.float32)) / np.sqrt(n)
    subset = ((0, 0.01, 4),)
    return Workload("B", "whitened_l2", n, n, n, (4,), tuple(range(seeds)), (0.01,), 1 / math.sqrt(n),
                    steps, every, subset, {"Phi": Phi.astype(np.float32)})


# --------------------------------------------------------------------------------------
# Implementations: each runs `runs` and returns their recorded losses, (runs, T)
# --------------------------------------------------------------------------------------


def run_sweep(wl: Workload) -> np.ndarray:
    res = sweep(wl.jax_loss, input_dim=wl.input_dim, output_dim=wl.output_dim,
                hidden_width=wl.hidden_width, depths=list(wl.depths), seeds=list(wl.seeds),
                learning_rates=list(wl.learning_rates), init_stds=[wl.init_std],
                num_steps=wl.num_steps, save_every=wl.save_every, dtype=jnp.float32)
    loss = jax.block_until_ready(res.trajectory.loss)  # (S, L, 1, K, T)
    return np.asarray(loss)[:, :, 0].reshape(-1, loss.shape[-1])


def run_jax_scan_per_run(wl: Workload, runs: Sequence[Run]) -> np.ndarray:
    loss_fn = wl.jax_loss
    out = []
    for seed, lr, depth in runs:
        params = [jnp.asarray(W) for W in wl.init(seed, depth)]
        traj = gradient_descent(loss_fn, params, learning_rate=lr, num_steps=wl.num_steps,
                                save_every=wl.save_every)
        out.append(jax.block_until_ready(traj.loss))
    return np.asarray(out)


@functools.lru_cache(maxsize=None)
def _jitted_step(loss_fn):
    phi = overparameterized(loss_fn)

    @jax.jit
    def step(params, eta):
        loss, grads = jax.value_and_grad(phi)(params)
        return tuple(W - eta * G for W, G in zip(params, grads)), loss

    return step, jax.jit(phi)


def run_jax_step_loop(wl: Workload, runs: Sequence[Run]) -> np.ndarray:
    step, phi = _jitted_step(wl.jax_loss)
    out = []
    for seed, lr, depth in runs:
        params = tuple(jnp.asarray(W) for W in wl.init(seed, depth))
        eta = jnp.float32(lr)
        recorded = []
        for t in range(wl.num_steps):
            params, loss = step(params, eta)
            if t % wl.save_every == 0:
                recorded.append(loss)
        recorded.append(phi(params))
        out.append(np.asarray(jax.block_until_ready(recorded)))
    return np.asarray(out)


def numpy_value_and_grad(wl: Workload, params: list[np.ndarray]) -> tuple[float, list[np.ndarray]]:
    """φ and its layer gradients by the hand formula ∂φ/∂W_j = W_{N:j+1}ᵀ ∇ℓ(W_e) W_{j-1:1}ᵀ."""
    prefix = [params[0]]  # prefix[j] = W_{j+1} ... W_1
    for W in params[1:]:
        prefix.append(W @ prefix[-1])
    W_e = prefix[-1]
    if wl.loss == "l4":
        X, Y = wl.data["X"], wl.data["Y"]
        r = X @ W_e.T - Y
        r2 = r * r
        loss = np.mean(np.sum(r2 * r2, axis=1))
        G = (np.float32(4 / X.shape[0]) * (r2 * r)).T @ X
    else:
        D = W_e - wl.data["Phi"]
        loss = 0.5 * np.sum(D * D)
        G = D
    grads = [None] * len(params)
    S = G  # S = W_{N:j+1}^T G at layer j (going down)
    for j in range(len(params) - 1, 0, -1):
        grads[j] = S @ prefix[j - 1].T
        S = params[j].T @ S
    grads[0] = S
    return float(loss), grads


def run_numpy(wl: Workload, runs: Sequence[Run]) -> np.ndarray:
    out = []
    for seed, lr, depth in runs:
        params = wl.init(seed, depth)
        eta = np.float32(lr)
        recorded = []
        for t in range(wl.num_steps):
            loss, grads = numpy_value_and_grad(wl, params)
            if t % wl.save_every == 0:
                recorded.append(loss)
            params = [W - eta * G for W, G in zip(params, grads)]
        recorded.append(numpy_value_and_grad(wl, params)[0])
        out.append(recorded)
    return np.asarray(out)


def torch_available() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def _torch_loss(wl: Workload, device: str):
    import torch

    if wl.loss == "l4":
        X = torch.tensor(wl.data["X"], device=device)
        Y = torch.tensor(wl.data["Y"], device=device)

        def loss_of(params):
            W_e = params[0] if len(params) == 1 else torch.linalg.multi_dot(params[::-1])
            return ((X @ W_e.T - Y) ** 4).sum(dim=1).mean()
    else:
        Phi = torch.tensor(wl.data["Phi"], device=device)

        def loss_of(params):
            W_e = params[0] if len(params) == 1 else torch.linalg.multi_dot(params[::-1])
            return 0.5 * ((W_e - Phi) ** 2).sum()

    return loss_of


def run_torch(wl: Workload, runs: Sequence[Run], *, compiled: bool, device: str,
              compiled_cache: dict | None = None) -> np.ndarray:
    import torch

    loss_of = _torch_loss(wl, device)
    if compiled:
        cache = compiled_cache if compiled_cache is not None else {}
        loss_of = cache.setdefault("fn", torch.compile(loss_of))
    out = []
    for seed, lr, depth in runs:
        params = [torch.nn.Parameter(torch.tensor(W, device=device)) for W in wl.init(seed, depth)]
        opt = torch.optim.SGD(params, lr=lr)
        recorded = []
        for t in range(wl.num_steps):
            opt.zero_grad(set_to_none=True)
            loss = loss_of(params)
            loss.backward()
            opt.step()
            if t % wl.save_every == 0:
                recorded.append(loss.detach())
        with torch.no_grad():
            recorded.append(loss_of(params).detach())
        out.append(torch.stack(recorded).cpu().numpy())
    return np.asarray(out)


# --------------------------------------------------------------------------------------
# Measuring
# --------------------------------------------------------------------------------------


# Implementations whose compiled code (if any) depends on the shapes but not on the number
# of steps: their first call (one run per depth) can be short.
SHORT_WARMUP = ("jax_step_loop", "numpy", "torch_eager", "torch_compile")


def implementation(impl: str, torch_device: str) -> Callable[[Workload, Sequence[Run]], np.ndarray]:
    """``impl`` as ``call(workload, runs) -> recorded losses``."""
    if impl == "sweep":
        return lambda wl, runs: run_sweep(wl)
    if impl == "jax_scan_per_run":
        return run_jax_scan_per_run
    if impl == "jax_step_loop":
        return run_jax_step_loop
    if impl == "numpy":
        return run_numpy
    cache: dict = {}  # one torch.compile-d loss for every call (compiled once per depth)
    return lambda wl, runs: run_torch(wl, runs, compiled=impl == "torch_compile", device=torch_device,
                                      compiled_cache=cache)


def measure(wl: Workload, impl: str, repeats: int, torch_device: str) -> dict[str, Any]:
    """First call (compile) and steady state of one implementation on its runs.

    The first call runs every run (``sweep``) or one run per depth of the subset, at full
    length where the number of steps is compiled in (``sweep``, ``jax_scan_per_run``) and for
    ``save_every`` steps otherwise (``SHORT_WARMUP``). Compile = first call − its run-steps ×
    the steady cost per run-step.
    """
    call = implementation(impl, torch_device)
    runs = wl.runs if impl == "sweep" else list(wl.subset)
    warm_runs = runs if impl == "sweep" else [next(r for r in runs if r[2] == d) for d in sorted({r[2] for r in runs})]
    warm_wl = wl.shortened(wl.save_every) if impl in SHORT_WARMUP else wl
    first_s, _ = C.time_call(lambda: call(warm_wl, warm_runs))
    times, losses = [], None
    for _ in range(repeats):
        t, losses = C.time_call(lambda: call(wl, runs))
        times.append(t)
    steady = float(np.median(times))
    run_steps = len(runs) * wl.num_steps
    compile_s = max(first_s - steady / run_steps * len(warm_runs) * warm_wl.num_steps, 0.0)
    flops = float(np.mean([wl.flops_per_run_step(d) for _, _, d in runs])) * run_steps
    return {
        "runs_timed": len(runs),
        "runs_timed_list": [list(r) for r in runs] if impl != "sweep" else "all",
        "first_call": f"{len(warm_runs)} runs x {warm_wl.num_steps} steps",
        "first_call_s": first_s,
        "compile_s": compile_s,
        "steady_s": steady,
        "steady_times_s": times,
        "us_per_run_step": 1e6 * steady / run_steps,
        "run_steps_per_s": run_steps / steady,
        "full_grid_s": steady / run_steps * len(wl.runs) * wl.num_steps,
        "gflops": flops / steady / 1e9,
        "losses": losses,
        "runs": runs,
    }


def agreement(wl: Workload, reference: np.ndarray, result: dict[str, Any]) -> dict[str, Any]:
    """Max relative difference of the recorded losses against the sweep's cells."""
    index = {run: i for i, run in enumerate(wl.runs)}
    ref = reference[[index[tuple(r)] for r in result["runs"]]]
    rel = np.abs(result["losses"] - ref) / np.maximum(np.abs(ref), np.finfo(np.float32).tiny)
    worst = float(np.max(rel))
    return {"max_rel_diff": worst, "rtol": AGREE_RTOL, "agree": bool(worst <= AGREE_RTOL),
            "all_finite": bool(np.all(np.isfinite(result["losses"])))}


def bytes_per_step_a(wl: Workload, runs_in_batch: int) -> dict[str, float]:
    """Workload A: the bytes one GD step must move, batched over R runs and for one run.

    Batched: X is read twice (forward and backward matmul) for all R runs, and the m × R
    residual is written once and read once (it does not stay in registers between the two
    matmuls): ``(2 m d + 2 m R) * 4`` bytes per step. One run: X twice, ``2 m d * 4``.
    """
    m, d = wl.data["X"].shape
    R = runs_in_batch
    batched = (2 * m * d + 2 * m * R) * 4
    return {"batched_bytes_per_step": batched, "batched_bytes_per_run_step": batched / R,
            "single_run_bytes_per_step": 2 * m * d * 4,
            "flops_per_run_step": 4 * m * d,
            "batched_flops_per_byte": 4 * m * d * R / batched,
            "single_run_flops_per_byte": 4 * m * d / (2 * m * d * 4)}


def flop_formula(wl: Workload) -> str:
    """The minimal-work formula with this workload's sizes."""
    if wl.loss == "l4":
        m, d = wl.data["X"].shape
        return f"4·m·d (m = {m}, d = {d})"
    return f"6·(N−1)·n³ (N = {max(wl.depths)}, n = {wl.hidden_width})"


def bandwidth_floors(b: dict[str, float], bandwidth: dict[str, float], floor_compute_us: float) -> dict[str, Any]:
    """Workload A: µs per run-step that moving the bytes takes at the measured bandwidths,
    batched (the sweep) and for one run (a per-run loop), against the compute floor.

    Floor = max(FLOPs / peak, bytes / bandwidth); X (m·d·4 bytes) fits in the last-level
    cache, so the cache bandwidth is the relevant one and DRAM the pessimistic one.
    """
    out = {"compute_floor_us": floor_compute_us}
    for level in ("dram", "cache_8MiB"):
        bw = bandwidth[f"{level}_gbs"] * 1e9
        out[f"batched_{level}_us"] = 1e6 * b["batched_bytes_per_run_step"] / bw
        out[f"single_run_{level}_us"] = 1e6 * b["single_run_bytes_per_step"] / bw
    out["batched_binding"] = "compute" if floor_compute_us >= out["batched_dram_us"] else "memory bandwidth"
    out["single_run_binding"] = ("compute" if floor_compute_us >= out["single_run_cache_8MiB_us"]
                                 else "memory bandwidth")
    return out


def run_workload(wl: Workload, impls: Sequence[str], repeats: int, torch_device: str,
                 peak: dict[str, Any], bandwidth: dict[str, float]) -> dict[str, Any]:
    results: dict[str, Any] = {}
    reference = None
    for impl in impls:
        if impl.startswith("torch") and not torch_available():
            results[impl] = {"status": "not installed"}
            continue
        print(f"[{wl.name}] {impl} ...", flush=True)
        load_before = C.load_average()
        try:
            r = measure(wl, impl, repeats, torch_device)
        except Exception as exc:  # noqa: BLE001 - a baseline that fails here is reported, not fatal
            if impl == "sweep":
                raise
            results[impl] = {"status": f"failed: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}"}
            print(f"  failed: {results[impl]['status']}")
            continue
        r["load_average_before"] = load_before
        r["load_average_after"] = C.load_average()
        r["status"] = "measured"
        if impl == "sweep":
            reference = r["losses"]
        r["agreement"] = agreement(wl, reference, r)
        print(f"  {r['us_per_run_step']:.2f} us/run-step, first call {r['first_call_s']:.2f} s, "
              f"max rel diff {r['agreement']['max_rel_diff']:.1e}, load {r['load_average_after']}", flush=True)
        results[impl] = r
    base = results["sweep"]["us_per_run_step"]
    for impl, r in results.items():
        if r.get("status") == "measured":
            r["ratio_to_sweep"] = r["us_per_run_step"] / base
            r["fraction_of_matmul_peak"] = r["gflops"] / peak["gflops"]
            del r["losses"], r["runs"]
    out = {
        "config": {k: v for k, v in dataclasses.asdict(wl).items() if k != "data"},
        "num_runs": len(wl.runs),
        "minimal_flops_per_run_step": wl.mean_flops_per_run_step(),
        "flop_formula": flop_formula(wl),
        "floor_us_per_run_step_at_peak": 1e6 * wl.mean_flops_per_run_step() / (peak["gflops"] * 1e9),
        "implementations": results,
    }
    if wl.loss == "l4":
        out["bytes"] = bytes_per_step_a(wl, len(wl.runs))
        out["bandwidth_floors"] = bandwidth_floors(out["bytes"], bandwidth, out["floor_us_per_run_step_at_peak"])
    out["goals"] = goals(wl.name, results)
    return out


# The issue's goals: (implementation, what, threshold) per workload.
GOALS = {
    "A": (("torch_eager", "speedup", 30.0), ("jax_step_loop", "speedup", 3.0), ("sweep", "peak", 0.8)),
    "B": (("sweep", "peak", 0.6),),
}


def goals(name: str, results: dict[str, Any]) -> list[dict[str, Any]]:
    """Each goal of issue 9 for this workload, with the measured value and met / missed."""
    out = []
    for impl, what, threshold in GOALS[name]:
        r = results.get(impl, {})
        if r.get("status") != "measured":
            out.append({"impl": impl, "what": what, "threshold": threshold, "value": None, "met": None})
            continue
        value = r["ratio_to_sweep"] if what == "speedup" else r["fraction_of_matmul_peak"]
        out.append({"impl": impl, "what": what, "threshold": threshold, "value": value,
                    "met": bool(value >= threshold)})
    return out


def goals_line(items: list[dict[str, Any]]) -> str:
    parts = []
    for g in items:
        if g["what"] == "speedup":
            label, value = f"`sweep` ≥ {g['threshold']:g}× faster than {LABELS[g['impl']]}", g["value"]
            shown = "not measured" if value is None else f"{value:.1f}×"
        else:
            label, value = f"{LABELS[g['impl']]} at ≥ {100 * g['threshold']:.0f}% of the matmul peak", g["value"]
            shown = "not measured" if value is None else f"{100 * value:.0f}%"
        verdict = "—" if g["met"] is None else ("**met**" if g["met"] else "**missed**")
        parts.append(f"{label}: {shown}, {verdict}")
    return "Goals (issue 9): " + "; ".join(parts) + "."


# --------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------


def bytes_line(wl: dict[str, Any]) -> str:
    """Workload A's bytes against the measured bandwidth (see :func:`bandwidth_floors`)."""
    b, f = wl["bytes"], wl["bandwidth_floors"]
    return (f"Bytes: batched over all {wl['num_runs']} runs a step must move at least "
            f"{b['batched_bytes_per_step'] / 1e6:.1f} MB ({b['batched_flops_per_byte']:.0f} FLOP/byte), "
            f"{f['batched_dram_us']:.2f} µs per run-step at the DRAM bandwidth "
            f"({f['batched_cache_8MiB_us']:.2f} from cache) against the compute floor of "
            f"{f['compute_floor_us']:.2f} µs: the sweep is bound by **{f['batched_binding']}**. "
            f"One run alone moves {b['single_run_bytes_per_step'] / 1e6:.2f} MB per step for "
            f"{b['flops_per_run_step'] / 1e6:.2f} MFLOP ({b['single_run_flops_per_byte']:.2f} FLOP/byte): "
            f"{f['single_run_cache_8MiB_us']:.2f} µs per step even from cache "
            f"({f['single_run_dram_us']:.2f} from DRAM), so a per-run loop is bound by "
            f"**{f['single_run_binding']}** before any overhead.")


def markdown(report: dict[str, Any]) -> str:
    info = report["machine"]
    lines = ["## Sweep throughput (`benchmarks/throughput.py`)", "",
             C.machine_line(info, report["load_start"], report["load_end"]), "",
             f"Matmul peak measured in this run (float32 `jnp.matmul`, best of n = "
             f"{', '.join(report['peak_start']['per_size_gflops'])}): "
             f"**{report['peak_start']['gflops']:.1f} GFLOP/s** at start, "
             f"{report['peak_end']['gflops']:.1f} at end; % of peak below uses the start value. "
             f"Bandwidth (best of a JAX sum, a JAX scale and `np.copyto`): "
             f"{report['bandwidth']['dram_gbs']:.1f} GB/s from DRAM (256 MiB array), "
             f"{report['bandwidth']['cache_8MiB_gbs']:.1f} GB/s from an 8 MiB (cache-resident) array.",
             "", C.gpu_line(info), "",
             "Baselines are timed on a subset of the runs (column \"runs timed\"; A: seed 0, depth k "
             "with the k-th learning rate; B: seed 0) and scaled per run-step to the full grid "
             "(\"full grid\"). Compile = first call − steady state.", ""]
    gpu_cell = "not measured" if info["backend"] == "cpu" else "this table"
    for name, wl in report["workloads"].items():
        cfg = wl["config"]
        lines += [f"### Workload {name}: {'gas-sensor ℓ4, hidden width 1' if name == 'A' else 'whitened ℓ2, square width ' + str(cfg['hidden_width'])}, "
                  f"depths {cfg['depths']}, {len(cfg['learning_rates'])} learning rate(s), {len(cfg['seeds'])} seeds, "
                  f"{cfg['num_steps']} steps = {wl['num_runs']} runs", "",
                  f"Minimal work {wl['flop_formula']} = {wl['minimal_flops_per_run_step'] / 1e6:.3g} MFLOP per run-step; "
                  f"at the measured peak that is **{wl['floor_us_per_run_step_at_peak']:.2f} µs per run-step**.", ""]
        rows = []
        for impl in IMPLEMENTATIONS:
            r = wl["implementations"].get(impl)
            if r is None:
                continue
            if r.get("status") != "measured":
                rows.append([LABELS[impl], r.get("status")] + ["—"] * 8 + [gpu_cell])
                continue
            timed = "all" if impl == "sweep" else f"{r['runs_timed']} of {wl['num_runs']}"
            rows.append([
                LABELS[impl], timed, C.fmt(r["us_per_run_step"]), C.fmt(r["run_steps_per_s"]),
                f"**{r['ratio_to_sweep']:.1f}×**" if impl != "sweep" else "1×",
                C.fmt(r["compile_s"], 2), C.fmt(r["full_grid_s"], 3),
                f"{r['gflops']:.1f} ({100 * r['fraction_of_matmul_peak']:.0f}%)",
                f"{r['agreement']['max_rel_diff']:.1e}",
                "/".join(f"{v:.1f}" for v in r["load_average_after"]),
                gpu_cell,
            ])
        lines.append(C.table(["implementation", "runs timed", "µs / run-step", "run-steps / s",
                              "× slower than sweep", "compile (s)", "full grid (s)",
                              "GFLOP/s (% of peak)", "max rel. diff vs sweep", "load avg after",
                              "GPU"], rows))
        if "bytes" in wl:
            lines += ["", bytes_line(wl)]
        lines += ["", goals_line(wl["goals"]), ""]
    return "\n".join(lines)


def main(argv=None) -> dict[str, Any]:
    parser = C.base_parser(__doc__)
    parser.add_argument("--workload", choices=("A", "B", "all"), default="all")
    parser.add_argument("--no-torch", action="store_true", help="skip the PyTorch columns")
    parser.add_argument("--impls", default=None,
                        help="comma-separated subset of " + ", ".join(IMPLEMENTATIONS) + " (default: "
                             "all; with --quick all but torch_compile, whose compiles take minutes)")
    args = parser.parse_args(argv)
    repeats = args.repeats or (1 if args.quick else 3)
    device = C.select_device(args.device)
    if device.platform == "gpu":  # true float32 matmuls, as PyTorch's default
        jax.config.update("jax_default_matmul_precision", "highest")
    default = [i for i in IMPLEMENTATIONS if not (args.quick and i == "torch_compile")]
    impls = args.impls.split(",") if args.impls else default
    unknown = sorted(set(impls) - set(IMPLEMENTATIONS))
    if unknown:
        parser.error(f"unknown implementations {unknown}; choose from {IMPLEMENTATIONS}")
    impls = [i for i in impls if not (args.no_torch and i.startswith("torch"))]
    if "sweep" not in impls:
        impls.insert(0, "sweep")
    info = C.machine(device)
    load_start = C.load_average()
    peak_sizes = (256, 512) if args.quick else (1024, 2048)
    peak_start = C.matmul_peak(peak_sizes, repeats=3 if args.quick else 5)
    bandwidth = C.memory_bandwidth(repeats=2 if args.quick else 5)
    print(f"matmul peak {peak_start['gflops']:.1f} GFLOP/s; load {load_start}", flush=True)
    names = ("A", "B") if args.workload == "all" else (args.workload,)
    builders = {"A": workload_a, "B": workload_b}
    workloads = {n: run_workload(builders[n](args.quick), impls, repeats,
                                 C.torch_device_name(device), peak_start, bandwidth) for n in names}
    peak_end = C.matmul_peak(peak_sizes, repeats=3 if args.quick else 5)
    report = {"quick": args.quick, "machine": info, "load_start": load_start,
              "load_end": C.load_average(), "peak_start": peak_start, "peak_end": peak_end,
              "bandwidth": bandwidth, "torch_available": torch_available(), "agree_rtol": AGREE_RTOL,
              "workloads": workloads}
    name = C.section_name("throughput", device)
    json_path, md_path = C.output_paths(args, name)
    C.save(json_path, md_path, name, report, markdown(report))
    return report


if __name__ == "__main__":
    main()
