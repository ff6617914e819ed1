"""One compiled sweep vs a Python loop of individually jitted runs (issue 4's timing).

Grid: seeds × learning rates × depths {1,2,3,4} (hidden width 1) × num_steps GD steps on
the gas-sensor ℓ4 problem (standardized columns), float32. The loop baseline calls
``gradient_descent`` once per cell (each cell compiled once per depth, then cached) and is
timed on a subset of cells (``--loop-runs``), scaled per run to the whole grid.

    python benchmarks/sweep_vs_loop.py [--seeds 32] [--steps 10000] [--loop-runs 16] [--json PATH]
"""

from __future__ import annotations

import argparse
import functools
import time

import jax
import jax.numpy as jnp
import numpy as np

from overparam_jax import gradient_descent, init_balanced, load_gas_ethanol, lp_loss, sweep
from overparam_jax.results import write_json


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=32)
    parser.add_argument("--steps", type=int, default=10_000)
    parser.add_argument("--loop-runs", type=int, default=16)
    parser.add_argument("--json", default=None)
    parser.add_argument("--quick", action="store_true", help="4 seeds, 200 steps, 4 loop runs")
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds, args.steps, args.loop_runs = 4, 200, 4

    X, y = load_gas_ethanol(standardize=True)
    X, y = jnp.asarray(X, jnp.float32), jnp.asarray(y, jnp.float32)
    loss = functools.partial(lp_loss, X=X, Y=y, p=4.0)
    lrs, depths, std = [1e-4, 3e-4, 1e-3, 3e-3], [1, 2, 3, 4], 0.1
    grid = dict(input_dim=128, output_dim=1, hidden_width=1, depths=depths, seeds=list(range(args.seeds)),
                learning_rates=lrs, init_scales=[std], num_steps=args.steps, save_every=args.steps // 10,
                dtype=jnp.float32)

    small = {**grid, "num_steps": grid["save_every"]}  # same compiled program shape? no: compile separately
    t0 = time.perf_counter()
    jax.block_until_ready(sweep(loss, **small).trajectory.loss)
    compile_and_short = time.perf_counter() - t0
    t0 = time.perf_counter()
    result = sweep(loss, **grid)
    jax.block_until_ready(result.trajectory.loss)
    sweep_seconds = time.perf_counter() - t0
    num_runs = args.seeds * len(lrs) * len(depths)

    cells = [(s, lr, d) for s in range(args.seeds) for lr in lrs for d in depths][: args.loop_runs]
    for d in depths:  # warm the per-depth compile caches, as a loop user would after the first run
        p0 = init_balanced(jax.random.key(0), (128,) + (1,) * (d - 1) + (1,), std=std, dtype=jnp.float32)
        jax.block_until_ready(gradient_descent(loss, p0, learning_rate=1e-4, num_steps=args.steps,
                                               save_every=args.steps // 10).loss)
    t0 = time.perf_counter()
    for s, lr, d in cells:
        p0 = init_balanced(jax.random.key(s), (128,) + (1,) * (d - 1) + (1,), std=std, dtype=jnp.float32)
        jax.block_until_ready(gradient_descent(loss, p0, learning_rate=lr, num_steps=args.steps,
                                               save_every=args.steps // 10).loss)
    loop_per_run = (time.perf_counter() - t0) / len(cells)
    report = {
        "runs": num_runs, "steps": args.steps, "device": str(jax.devices()[0]),
        "sweep_seconds": sweep_seconds, "sweep_first_call_seconds_short_run": compile_and_short,
        "sweep_us_per_run_step": 1e6 * sweep_seconds / (num_runs * args.steps),
        "loop_seconds_per_run": loop_per_run, "loop_runs_timed": len(cells),
        "loop_seconds_extrapolated": loop_per_run * num_runs,
        "speedup": loop_per_run * num_runs / sweep_seconds,
        "diverged_cells": int(np.sum(np.asarray(result.trajectory.diverged_at) >= 0)),
    }
    for k, v in report.items():
        print(f"{k:40s} {v}")
    if args.json:
        write_json(args.json, {"benchmark": "sweep_vs_loop", "config": vars(args), "results": report})


if __name__ == "__main__":
    main()
