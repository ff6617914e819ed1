r"""When is simulating the end-to-end dynamics cheaper than training the network?

Issue 9, item 4. Per-step cost, float32, of

* GD on the actual depth-N network — :func:`overparam_jax.gradient_descent`:
  :math:`6(N-1)n^3` FLOPs per step for square width n (N − 1 products forward,
  2(N − 1) backward), growing with depth;
* the discrete end-to-end update — :func:`overparam_jax.end_to_end_descent`:
  :math:`W_e \leftarrow W_e - \eta P_{W_e}\nabla\ell(W_e)`, one full SVD of the
  :math:`d_N \times d_0` end-to-end matrix and four products per step
  (≈ 26n³ + 8n³ FLOPs for a square one with the R-SVD count of Golub & Van Loan),
  independent of depth;
* :func:`overparam_jax.preconditioner_apply` alone, called as users call it (eager, with
  its input checks) and inside ``jax.jit``.

Square problem: whitened ℓ2 with a Gaussian target Φ (n × n), widths n = 32 … 512, depths
N ∈ {2, 4, 8}, balanced init, one run. Single-output problem: gas-sensor ℓ4 (d_0 = 128,
d_N = 1) with hidden widths h ∈ {32, 128, 512}: there ``W_e`` is a row vector, its SVD is
trivial, and both methods are dominated by the 4md FLOPs of the data.

Per-step costs are slopes between ``S`` and ``2S`` steps (fixed costs cancel).

    python benchmarks/e2e_cost.py [--quick] [--repeats 3] [--json PATH]
"""

from __future__ import annotations

import functools
import math
from typing import Any

import _common as C
import jax
import jax.numpy as jnp
import numpy as np

from overparam_jax import (
    end_to_end,
    end_to_end_descent,
    gradient_descent,
    init_balanced,
    load_gas_ethanol,
    lp_loss,
    preconditioner_apply,
    whitened_l2_loss,
)


def steps_for(est_s: float, quick: bool) -> int:
    if quick:
        return 2
    return int(min(max(4, round(0.4 / max(est_s, 1e-7))), 1000))


def per_step(run, steps, repeats, quick):
    if quick:
        first, _ = C.time_call(lambda: run(steps))
        steady, _ = C.time_call(lambda: run(steps))
        return {"step_s": steady / steps, "compile_s": max(first - steady, 0.0), "steps": steps}
    r = C.slope_time(run, steps, repeats)
    return {"step_s": r["step_s"], "compile_s": r["compile_s"], "steps": steps}


def compare(loss_fn, dims, lr, std, repeats, quick, gd_flops, e2e_flops):
    """GD on the network vs the end-to-end update from the same init, per step."""
    params = init_balanced(jax.random.key(0), dims, std=std, dtype=jnp.float32)
    W_e = end_to_end(params)
    N = len(dims) - 1
    gd = lambda steps: gradient_descent(loss_fn, params, learning_rate=lr, num_steps=steps,
                                        save_every=steps).loss
    e2e = lambda steps: end_to_end_descent(loss_fn, W_e, depth=float(N), learning_rate=lr,
                                           num_steps=steps, save_every=steps).loss
    est = lambda f: f / 30e9
    r_gd = per_step(gd, steps_for(est(gd_flops), quick), repeats, quick)
    r_e2e = per_step(e2e, steps_for(est(e2e_flops), quick), repeats, quick)
    return {"gd_step_us": 1e6 * r_gd["step_s"], "e2e_step_us": 1e6 * r_e2e["step_s"],
            "gd_compile_s": r_gd["compile_s"], "e2e_compile_s": r_e2e["compile_s"],
            "gd_steps": r_gd["steps"], "e2e_steps": r_e2e["steps"],
            "gd_flops": gd_flops, "e2e_flops_model": e2e_flops,
            "gd_gflops": gd_flops / r_gd["step_s"] / 1e9,
            "e2e_over_gd": r_e2e["step_s"] / r_gd["step_s"]}


def apply_cost(n, N, repeats, quick):
    """preconditioner_apply: eager as users call it, and inside jax.jit."""
    key_w, key_g = jax.random.split(jax.random.key(1))
    W = jax.random.normal(key_w, (n, n), jnp.float32) / math.sqrt(n)
    G = jax.random.normal(key_g, (n, n), jnp.float32)
    depth = float(N)
    eager = C.median_time(lambda: preconditioner_apply(W, G, depth), repeats)
    jitted_fn = jax.jit(preconditioner_apply)
    jitted = C.median_time(lambda: jitted_fn(W, G, depth), repeats)
    svd = jax.jit(lambda W: jnp.linalg.svd(W, full_matrices=True))
    svd_t = C.median_time(lambda: svd(W), repeats)
    return {"apply_eager_us": 1e6 * eager["median_s"], "apply_jit_us": 1e6 * jitted["median_s"],
            "svd_us": 1e6 * svd_t["median_s"]}


def square(args, repeats):
    widths = [8, 16] if args.quick else [32, 64, 128, 256, 512]
    depths = [2, 4] if args.quick else [2, 4, 8]
    out = []
    for n in widths:
        Phi = jax.random.normal(jax.random.key(10_000), (n, n), jnp.float32) / math.sqrt(n)
        loss_fn = functools.partial(whitened_l2_loss, Phi=Phi)
        for N in depths:
            r = compare(loss_fn, (n,) * (N + 1), 0.01, 1 / math.sqrt(n), repeats, args.quick,
                        6 * (N - 1) * n**3, 34 * n**3)
            r.update(width=n, depth=N, **apply_cost(n, N, repeats, args.quick), load_average=C.load_average())
            print(f"  n={n} N={N}: GD {r['gd_step_us']:.1f} us, e2e {r['e2e_step_us']:.1f} us, "
                  f"P_W apply {r['apply_jit_us']:.1f} us (eager {r['apply_eager_us']:.1f}), "
                  f"SVD {r['svd_us']:.1f} us -> e2e/GD {r['e2e_over_gd']:.2f}", flush=True)
            out.append(r)
    return out


def single_output(args, repeats):
    X, y = load_gas_ethanol(standardize=True)
    loss_fn = functools.partial(lp_loss, X=jnp.asarray(X, jnp.float32), Y=jnp.asarray(y, jnp.float32), p=4.0)
    m, d = X.shape
    widths = [8] if args.quick else [32, 128, 512]
    depths = [2] if args.quick else [2, 4, 8]
    out = []
    for h in widths:
        for N in depths:
            dims = (d,) + (h,) * (N - 1) + (1,)
            gd_flops = 4 * m * d + 6 * (d * h + (N - 2) * h * h + h)  # data + the layer chain
            r = compare(loss_fn, dims, 1e-3, 0.01, repeats, args.quick, gd_flops, 4 * m * d)
            r.update(width=h, depth=N, load_average=C.load_average())
            print(f"  gas h={h} N={N}: GD {r['gd_step_us']:.1f} us, e2e {r['e2e_step_us']:.1f} us "
                  f"-> e2e/GD {r['e2e_over_gd']:.2f}", flush=True)
            out.append(r)
    return out


def markdown(report):
    rows = [[r["width"], r["depth"], f"{r['gd_step_us']:.4g}", f"{r['e2e_step_us']:.4g}",
             f"{r['apply_jit_us']:.4g}", f"{r['apply_eager_us']:.4g}", f"{r['svd_us']:.4g}",
             f"**{r['e2e_over_gd']:.2f}**", C.fmt_load(r["load_average"])] for r in report["square"]]
    rows1 = [[r["width"], r["depth"], f"{r['gd_step_us']:.4g}", f"{r['e2e_step_us']:.4g}",
              f"**{r['e2e_over_gd']:.2f}**", C.fmt_load(r["load_average"])] for r in report["single_output"]]
    return "\n".join([
        "## End-to-end dynamics vs GD on the network (`benchmarks/e2e_cost.py`)", "",
        C.machine_line(report["machine"], report["load_start"], report["load_end"]), "",
        "Per-step cost (µs, slope between S and 2S steps), float32, one run. The end-to-end "
        "update is cheaper where the last ratio is below 1.", "",
        "### Square whitened ℓ2 (n × n end-to-end matrix)", "",
        C.table(["width n", "depth N", "GD step", "end-to-end step", "`preconditioner_apply` (jit)",
                 "… (eager call)", "full SVD alone", "e2e / GD", "load avg"], rows), "",
        "### Single output: gas-sensor ℓ4 (d_0 = 128, d_N = 1)", "",
        C.table(["hidden width h", "depth N", "GD step", "end-to-end step", "e2e / GD", "load avg"], rows1),
        "",
    ])


def main(argv=None):
    parser = C.base_parser(__doc__)
    args = parser.parse_args(argv)
    repeats = args.repeats or (1 if args.quick else 3)
    device = C.select_device(args.device)
    if device.platform == "gpu":
        jax.config.update("jax_default_matmul_precision", "highest")
    report: dict[str, Any] = {"quick": args.quick, "machine": C.machine(device), "load_start": C.load_average()}
    print("[square]", flush=True)
    report["square"] = square(args, repeats)
    print("[single output]", flush=True)
    report["single_output"] = single_output(args, repeats)
    report["load_end"] = C.load_average()
    json_path, md_path = C.output_paths(args, "e2e_cost")
    C.save(json_path, md_path, "e2e_cost", report, markdown(report))
    return report


if __name__ == "__main__":
    main()
