r"""What the sweep's GD step costs, by variants (issue 9: "find what actually costs time").

Workload A's problem (gas-sensor ℓ4, hidden width 1, depths {1, 2, 3, 4}, learning rates
{1e-4, 2e-4, 5e-4, 1e-3}, float32) with ``--seeds`` seeds (64 → 1024 runs), timed per
step by the slope method: each variant runs ``--steps`` and ``2 × --steps`` steps and the
difference is divided by ``steps × runs``, so fixed per-call costs (grid set-up, the t = 0
record, transfers) drop out; compile is timed separately (first call minus steady).
Variants, each a change of one thing against the library's ``sweep``:

* ``sweep`` — :func:`overparam_jax.sweep` as shipped (padded depth, finiteness checks and
  ``jnp.where`` freezing of every leaf, ``value_and_grad`` through ``multi_dot``, records
  with an SVD every ``save_every = steps / 10``: the S and 2S calls both record 10
  times, so the records cancel in the slope).
* ``sweep_old_loss_layout`` — the library with the loss written as ``lp_loss`` was before
  this issue: residual ``X @ W_e.T`` (batched, an (m, runs) array XLA transposes twice).
* ``sweep_no_checks`` — the library with the divergence checks and freezing removed
  (``sweep(..., check_finite=False)``).
* ``sweep_records_every_10`` — records (loss, balancedness, norm, σ_min by SVD) every 10 steps.
* ``sweep_float64`` — float64 (x64 enabled, in a subprocess).
* ``bare_padded`` — a hand-written vmapped ``lax.scan`` of ``p ← p − η·mask·∇φ(p)`` on the
  same padded layout, loss recorded every ``save_every`` steps, nothing else.
* ``bare_per_depth`` — the same, unpadded: one vmapped scan per depth (4 programs).
* ``floor_hand_gradients`` — the fewest operations: hidden width 1 makes every network
  ``W_e = (\prod_k s_k) w`` with a vector ``w`` and scalars ``s_k``; the step is the two
  matmuls ``P = W_e X^T`` (runs × m, run-major) and ``G = (4/m) (P - y^T)^{\circ 3} X``
  plus O(R d) work.
* ``matmul_only`` — the two matmuls alone with the same shapes (no elementwise work):
  what the matmul library achieves on these shapes.

Workload B's problem (whitened ℓ2, square width ``--b-width`` 256, depth 4,
``--b-seeds`` 8 runs, slope between ``--b-steps`` 10 and 20) with the variants ``sweep``,
``sweep_no_checks``, ``sweep_records_every_2``, ``bare`` (a hand-written vmapped scan of
plain GD, autodiff through ``multi_dot``) and ``matmul_only`` (the 3(N − 1) batched n × n
products of a step and nothing else).

Slope lengths: S = 50 steps for A (one S-step call of the 1024 runs takes ~0.6 s on 2
cores, so the difference of the S and 2S calls is well above timer noise) and S = 10 for B
(~0.5 s per call); chosen so the full run stays near 3.5 minutes on the 2-core machine.

    python benchmarks/sweep_profile.py [--seeds 64] [--steps 50] [--b-width 256] [--quick]
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from typing import Any

import _common as C
import jax
import jax.numpy as jnp
import numpy as np

from overparam_jax import (
    load_gas_ethanol,
    lp_loss,
    overparameterized,
    pad_to_depth,
    sweep,
    whitened_l2_loss,
)
from overparam_jax.networks import init_balanced

LRS = (1e-4, 2e-4, 5e-4, 1e-3)
DEPTHS = (1, 2, 3, 4)  # (1, 2) with --quick
STD = 0.01


def problem(dtype):
    X, y = load_gas_ethanol(standardize=True)
    return jnp.asarray(X, dtype), jnp.asarray(y, dtype)


def fresh_loss(X, Y):
    """A new ℓ4 function object: a new static argument, so a variant never reuses another's compile."""
    return functools.partial(lp_loss, X=X, Y=Y, p=4.0)


# --------------------------------------------------------------------------------------
# Library variants
# --------------------------------------------------------------------------------------


def old_layout_loss(X, Y):
    """ℓ4 written as before the fix in losses.py: residual X W_e^T (batched: (m, runs))."""
    def loss(W_e):
        return jnp.mean(jnp.sum((X @ W_e.T - Y) ** 4, axis=1))
    return loss


def library_runner(X, Y, seeds, dtype, save_every_of=lambda steps: steps // 10, loss=None, check_finite=True):
    loss = loss or fresh_loss(X, Y)

    def run(steps):
        res = sweep(loss, input_dim=128, output_dim=1, hidden_width=1, depths=list(DEPTHS),
                    seeds=list(range(seeds)), learning_rates=list(LRS), init_stds=[STD],
                    num_steps=steps, save_every=save_every_of(steps), dtype=dtype,
                    check_finite=check_finite)
        return res.trajectory.loss

    return run


# --------------------------------------------------------------------------------------
# Hand-written variants
# --------------------------------------------------------------------------------------


def initial_params(seeds, depth, dims_of, dtype):
    keys = [jax.random.key(s) for s in range(seeds)]
    return [init_balanced(k, dims_of(depth), std=STD, dtype=dtype) for k in keys]


def _stack(trees):
    return jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *trees)


def bare_runner(X, Y, seeds, dtype, *, padded: bool):
    """vmap over runs of lax.scan of plain GD; the loss recorded every steps // 10."""
    loss = fresh_loss(X, Y)
    phi = overparameterized(loss)
    dims_of = lambda depth: (128,) + (1,) * (depth - 1) + (1,)
    D = max(DEPTHS)

    def simulate(params, mask, eta, steps):
        every = steps // 10

        def step(p, _):
            g = jax.grad(phi)(p)
            return tuple(W - eta * m * G for W, m, G in zip(p, mask, g)), None

        def record(p, _):
            p, _ = jax.lax.scan(step, p, None, length=every)
            return p, phi(p)

        return jax.lax.scan(record, params, None, length=10)[1]

    compiled = jax.jit(jax.vmap(simulate, in_axes=(0, 0, 0, None)), static_argnums=3)
    groups = []  # (params, mask, eta) per program
    per_depth = []
    for depth in DEPTHS:
        runs = [(p, lr) for p in initial_params(seeds, depth, dims_of, dtype) for lr in LRS]
        if padded:
            padded_runs = [pad_to_depth(p, D, hidden_width=1) for p, _ in runs]
            per_depth.append((_stack([r.params for r in padded_runs]), _stack([r.mask for r in padded_runs]),
                              jnp.asarray([lr for _, lr in runs], dtype)))
        else:
            params = _stack([tuple(p) for p, _ in runs])
            mask = jax.tree_util.tree_map(jnp.ones_like, params)
            groups.append((params, mask, jnp.asarray([lr for _, lr in runs], dtype)))
    if padded:
        groups = [jax.tree_util.tree_map(lambda *xs: jnp.concatenate(xs), *per_depth)]

    def run(steps):
        return [compiled(p, m, e, steps) for p, m, e in groups]

    return run


def floor_runner(X, Y, seeds, dtype):
    """Hidden width 1: W_e = (prod_k s_k) w. Two matmuls per step for all runs together."""
    m = X.shape[0]
    y = Y[:, 0]
    D = max(DEPTHS)
    ws, ss, etas = [], [], []
    for depth in DEPTHS:
        for p in initial_params(seeds, depth, lambda n: (128,) + (1,) * (n - 1) + (1,), dtype):
            for lr in LRS:
                ws.append(p[0][0])  # (128,)
                scal = [W[0, 0] for W in p[1:]] + [jnp.ones((), dtype)] * (D - depth)
                ss.append(jnp.stack(scal) if scal else jnp.ones((0,), dtype))
                etas.append(lr)
    w0, s0, eta = jnp.stack(ws), jnp.stack(ss), jnp.asarray(etas, dtype)
    active = jnp.asarray([[k < depth - 1 for k in range(D - 1)] for depth in DEPTHS
                          for _ in range(seeds) for _ in LRS], dtype)

    @functools.partial(jax.jit, static_argnums=3)
    def simulate(w, s, eta, steps):
        every = steps // 10
        c = jnp.asarray(4.0 / m, dtype)

        def step(carry, _):
            w, s = carry
            prod = jnp.prod(s, axis=1)
            W_e = prod[:, None] * w                      # (R, d)
            r = W_e @ X.T - y[None, :]                   # (R, m), run-major
            G = (c * r**3) @ X                           # (R, d) = ∇ℓ(W_e) per run
            dw = prod[:, None] * G
            inner = jnp.sum(G * w, axis=1)               # ∇ℓ · w
            others = prod[:, None] / jnp.where(s == 0, 1, s)  # product of the other scalars
            ds = active * inner[:, None] * others
            return (w - eta[:, None] * dw, s - eta[:, None] * ds), None

        def record(carry, _):
            carry, _ = jax.lax.scan(step, carry, None, length=every)
            W_e = jnp.prod(carry[1], axis=1)[:, None] * carry[0]
            return carry, jnp.mean((W_e @ X.T - y[None, :]) ** 4, axis=1)

        return jax.lax.scan(record, (w, s), None, length=10)[1]

    return lambda steps: simulate(w0, s0, eta, steps)


def matmul_runner(X, seeds, dtype):
    R = seeds * len(LRS) * len(DEPTHS)
    B0 = 0.01 * jax.random.normal(jax.random.key(0), (R, X.shape[1]), dtype)

    @functools.partial(jax.jit, static_argnums=1)
    def simulate(B, steps):
        def step(B, _):
            r = B @ X.T                                   # (R, m)
            return 1e-6 * (r @ X), None                   # (R, d); scaled to stay finite
        return jax.lax.scan(step, B, None, length=steps)[0]

    return lambda steps: simulate(B0, steps)


# --------------------------------------------------------------------------------------
# Measuring
# --------------------------------------------------------------------------------------


def slope(run, steps: int, repeats: int, runs: int, quick: bool = False) -> dict[str, Any]:
    if quick:  # a smoke run: one length, time / steps (fixed costs included)
        first, _ = C.time_call(lambda: run(steps))
        steady, _ = C.time_call(lambda: run(steps))
        r = {"compile_s": max(first - steady, 0.0), "step_s": steady / steps, "fixed_s": 0.0}
    else:
        r = C.slope_time(run, steps, repeats)
    return {**r, "us_per_run_step": 1e6 * r["step_s"] / runs, "us_per_step": 1e6 * r["step_s"]}


def float64_subprocess(args, repeats: int) -> dict[str, Any]:
    """The library sweep in float64 (x64 must be enabled before anything is traced)."""
    cmd = [sys.executable, __file__, "--_float64-child", "--seeds", str(args.seeds),
           "--steps", str(args.steps), "--repeats", str(repeats)] + (["--quick"] if args.quick else [])
    out = subprocess.run(cmd, capture_output=True, text=True, check=True,
                         env={**os.environ, "JAX_ENABLE_X64": "1"})
    return json.loads(out.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------------------
# Workload B: whitened ℓ2, square width n, depth 4
# --------------------------------------------------------------------------------------


def whitened_problem(n):
    Phi = jax.random.normal(jax.random.key(10_000), (n, n), jnp.float32) / np.sqrt(n)
    return functools.partial(whitened_l2_loss, Phi=Phi), Phi


def b_library_runner(n, seeds, save_every_of=lambda steps: steps, check_finite=True):
    loss, _ = whitened_problem(n)

    def run(steps):
        return sweep(loss, input_dim=n, output_dim=n, hidden_width=n, depths=[B_DEPTH],
                     seeds=list(range(seeds)), learning_rates=[0.01], init_stds=[1 / np.sqrt(n)],
                     num_steps=steps, save_every=save_every_of(steps), dtype=jnp.float32,
                     check_finite=check_finite).trajectory.loss

    return run


def b_bare_runner(n, seeds):
    """vmap over runs of lax.scan of plain GD, ∇φ by autodiff through multi_dot."""
    loss, _ = whitened_problem(n)
    phi = overparameterized(loss)
    params = _stack([tuple(p) for p in initial_params(seeds, B_DEPTH, lambda N: (n,) * (N + 1), jnp.float32)])

    @functools.partial(jax.jit, static_argnums=1)
    def simulate(params, steps):
        def one(p):
            def step(p, _):
                g = jax.grad(phi)(p)
                return tuple(W - 0.01 * G for W, G in zip(p, g)), None
            p, _ = jax.lax.scan(step, p, None, length=steps)
            return phi(p)
        return jax.vmap(one)(params)

    return lambda steps: simulate(params, steps)


def b_matmul_runner(n, seeds):
    """The 3(N-1) batched n x n products of a GD step, nothing else."""
    A0 = jax.random.normal(jax.random.key(0), (seeds, n, n), jnp.float32) / np.sqrt(n)
    Q = jnp.linalg.qr(jax.random.normal(jax.random.key(1), (seeds, n, n), jnp.float32))[0]

    @functools.partial(jax.jit, static_argnums=1)
    def simulate(A, steps):
        def step(A, _):
            for _ in range(3 * (B_DEPTH - 1)):
                A = A @ Q  # orthogonal: the values neither grow nor become denormal
            return A, None
        return jax.lax.scan(step, A, None, length=steps)[0]

    return lambda steps: simulate(A0, steps)


B_DEPTH = 4


def run_variants(variants, steps, repeats, runs, quick):
    results = {}
    for name, make in variants.items():
        results[name] = slope(make(), steps, repeats, runs, quick)
        results[name]["load_average"] = C.load_average()
        print(f"{name:24s} {results[name]['us_per_run_step']:10.2f} us/run-step  "
              f"compile {results[name]['compile_s']:.1f} s  load {results[name]['load_average']}", flush=True)
    return results


def main(argv=None):
    parser = C.base_parser(__doc__)
    parser.add_argument("--seeds", type=int, default=64, help="workload A seeds (x16 runs)")
    parser.add_argument("--steps", type=int, default=50, help="workload A: slope between steps and 2 steps")
    parser.add_argument("--b-width", type=int, default=256)
    parser.add_argument("--b-seeds", type=int, default=8)
    parser.add_argument("--b-steps", type=int, default=10)
    parser.add_argument("--_float64-child", action="store_true", help=argparse_suppress())
    args = parser.parse_args(argv)
    global DEPTHS
    if args.quick:
        args.seeds, args.steps, DEPTHS = 1, 10, (1, 2)
        args.b_width, args.b_seeds, args.b_steps = 16, 2, 4
    repeats = args.repeats or (1 if args.quick else 3)
    runs = args.seeds * len(LRS) * len(DEPTHS)
    if args._float64_child:
        X, Y = problem(jnp.float64)
        print(json.dumps(slope(library_runner(X, Y, args.seeds, jnp.float64), args.steps, repeats, runs,
                               args.quick)))
        return None
    device = C.select_device(args.device)
    info, load_start = C.machine(device), C.load_average()
    peak = C.matmul_peak((256, 512) if args.quick else (1024, 2048), repeats=3 if args.quick else 5)
    X, Y = problem(jnp.float32)
    flops = 4 * X.shape[0] * X.shape[1]
    print(f"[A] {runs} runs; matmul peak {peak['gflops']:.1f} GFLOP/s", flush=True)
    variants = {
        "sweep": lambda: library_runner(X, Y, args.seeds, jnp.float32),
        "sweep_old_loss_layout": lambda: library_runner(X, Y, args.seeds, jnp.float32,
                                                        loss=old_layout_loss(X, Y)),
        "sweep_records_every_10": lambda: library_runner(X, Y, args.seeds, jnp.float32,
                                                         save_every_of=lambda s: 10),
        "sweep_no_checks": lambda: library_runner(X, Y, args.seeds, jnp.float32, check_finite=False),
        "bare_padded": lambda: bare_runner(X, Y, args.seeds, jnp.float32, padded=True),
        "bare_per_depth": lambda: bare_runner(X, Y, args.seeds, jnp.float32, padded=False),
        "floor_hand_gradients": lambda: floor_runner(X, Y, args.seeds, jnp.float32),
        "matmul_only": lambda: matmul_runner(X, args.seeds, jnp.float32),
    }
    results = run_variants(variants, args.steps, repeats, runs, args.quick)
    results["sweep_float64"] = float64_subprocess(args, repeats)
    results["sweep_float64"]["load_average"] = C.load_average()
    print(f"{'sweep_float64':24s} {results['sweep_float64']['us_per_run_step']:10.2f} us/run-step", flush=True)
    for r in results.values():
        r["gflops"] = flops / (r["us_per_run_step"] * 1e3)
        r["fraction_of_matmul_peak"] = r["gflops"] / peak["gflops"]

    n, b_runs = args.b_width, args.b_seeds
    b_flops = 6 * (B_DEPTH - 1) * n**3
    print(f"[B] width {n}, depth {B_DEPTH}, {b_runs} runs", flush=True)
    b_variants = {
        "sweep": lambda: b_library_runner(n, b_runs),
        "sweep_records_every_2": lambda: b_library_runner(n, b_runs, save_every_of=lambda s: 2),
        "sweep_no_checks": lambda: b_library_runner(n, b_runs, check_finite=False),
        "bare": lambda: b_bare_runner(n, b_runs),
        "matmul_only": lambda: b_matmul_runner(n, b_runs),
    }
    b_results = run_variants(b_variants, args.b_steps, repeats, b_runs, args.quick)
    for r in b_results.values():
        r["gflops"] = b_flops / (r["us_per_run_step"] * 1e3)
        r["fraction_of_matmul_peak"] = r["gflops"] / peak["gflops"]
    report = {"quick": args.quick, "machine": info, "load_start": load_start, "load_end": C.load_average(),
              "peak": peak, "runs": runs, "steps": args.steps, "flops_per_run_step": flops,
              "floor_us_per_run_step_at_peak": flops / peak["gflops"] / 1e3, "variants": results,
              "b": {"width": n, "depth": B_DEPTH, "runs": b_runs, "steps": args.b_steps,
                    "flops_per_run_step": b_flops, "floor_us_per_run_step_at_peak": b_flops / peak["gflops"] / 1e3,
                    "variants": b_results}}
    name = C.section_name("sweep_profile", device)
    json_path, md_path = C.output_paths(args, name)
    C.save(json_path, md_path, name, report, markdown(report))
    return report


def argparse_suppress():
    import argparse
    return argparse.SUPPRESS


DESCRIPTIONS = {
    "sweep": "library `sweep` as shipped",
    "sweep_old_loss_layout": "… with ℓ4 written `X @ W_e.T` (before the fix in `losses.py`)",
    "sweep_no_checks": "… without finiteness checks / `where` freezing",
    "sweep_records_every_10": "… recording (with SVD) every 10 steps instead of every steps/10",
    "sweep_float64": "… in float64",
    "bare_padded": "hand-written vmapped scan, padded layout, plain GD",
    "bare_per_depth": "… unpadded, one program per depth",
    "floor_hand_gradients": "fewest operations (two matmuls, hand gradients)",
    "matmul_only": "the two matmuls alone",
}
B_DESCRIPTIONS = {
    "sweep": "library `sweep` as shipped (records at the ends only)",
    "sweep_no_checks": "… without finiteness checks / `where` freezing",
    "sweep_records_every_2": "… recording (SVD of W_e, balancedness) every 2 steps",
    "bare": "hand-written vmapped scan of plain GD (autodiff through `multi_dot`)",
    "matmul_only": "the 3(N−1) batched products alone",
}


def _rows(variants, descriptions):
    base = variants["sweep"]["us_per_run_step"]
    rows = []
    for name, desc in descriptions.items():
        r = variants[name]
        rows.append([f"`{name}`", desc, f"{r['us_per_run_step']:.4g}", f"{r['us_per_run_step'] / base:.2f}",
                     f"{r['gflops']:.1f} ({100 * r['fraction_of_matmul_peak']:.0f}%)",
                     C.fmt(r["compile_s"], 2), C.fmt_load(r["load_average"])])
    return rows


def markdown(report):
    b = report["b"]
    header = ["variant", "what changes", "µs / run-step", "vs sweep", "GFLOP/s (% of peak)", "compile (s)",
              "load avg"]
    return "\n".join([
        "## What the sweep's step costs (`benchmarks/sweep_profile.py`)", "",
        C.machine_line(report["machine"], report["load_start"], report["load_end"]), "",
        C.gpu_line(report["machine"]), "",
        f"Per-step cost by the slope between S and 2S steps (fixed per-call costs excluded). "
        f"Matmul peak {report['peak']['gflops']:.1f} GFLOP/s.", "",
        f"### Workload A's problem: {report['runs']} runs, S = {report['steps']}; "
        f"floor at peak {report['floor_us_per_run_step_at_peak']:.2f} µs per run-step", "",
        C.table(header, _rows(report["variants"], DESCRIPTIONS)), "",
        f"### Workload B's problem: width {b['width']}, depth {b['depth']}, {b['runs']} runs, S = {b['steps']}; "
        f"floor at peak {b['floor_us_per_run_step_at_peak']:.4g} µs per run-step", "",
        C.table(header, _rows(b["variants"], B_DESCRIPTIONS)), "",
    ])


if __name__ == "__main__":
    main()
