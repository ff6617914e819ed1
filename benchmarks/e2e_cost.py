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

Per-step costs are slopes between ``S`` and ``2S`` steps (fixed costs cancel; the ``2S``
call runs as two chunks of the compiled ``S``-step program through the ``progress``
option, so each measurement compiles once), ``S`` chosen so that one call takes about
0.2 s at 30 GFLOP/s (2 ≤ S ≤ 1000). The end-to-end update and ``preconditioner_apply``
take the depth as a number (traced, not compiled in): their cost does not depend on N, so
they are measured once per width (at the largest N, from that network's ``W_e``) and
compared with GD at every depth. This keeps the full run to about 2–3 minutes on 2 CPU
cores.

    python benchmarks/e2e_cost.py [--quick] [--repeats 3] [--json PATH]
"""

from __future__ import annotations

import functools
import math
from typing import Any

import _common as C
import jax
import jax.numpy as jnp

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


TARGET_S, ASSUMED_FLOPS_PER_S, MIN_STEPS, MAX_STEPS = 0.2, 30e9, 2, 1000


def steps_for(flops_per_step: float, quick: bool) -> int:
    """S with one S-step call ≈ TARGET_S at ASSUMED_FLOPS_PER_S (MIN_STEPS ≤ S ≤ MAX_STEPS)."""
    if quick:
        return 2
    est_s = flops_per_step / ASSUMED_FLOPS_PER_S
    return int(min(max(MIN_STEPS, round(TARGET_S / max(est_s, 1e-7))), MAX_STEPS))


def per_step(make, flops_per_step, repeats, quick):
    """Per-step seconds of ``make(S)(steps)`` (``steps`` a multiple of S) by the slope method
    (``--quick``: one length, time / steps — a smoke run, not a measurement)."""
    steps = steps_for(flops_per_step, quick)
    run = make(steps)
    if quick:
        first, _ = C.time_call(lambda: run(steps))
        steady, _ = C.time_call(lambda: run(steps))
        return {"step_s": steady / steps, "compile_s": max(first - steady, 0.0), "steps": steps}
    r = C.slope_time(run, steps, repeats, warm_long=False)
    return {"step_s": r["step_s"], "compile_s": r["compile_s"], "steps": steps}


def gd_cost(loss_fn, params, lr, flops, repeats, quick):
    """GD on the network (:func:`gradient_descent`), per step."""
    make = lambda chunk: lambda steps: gradient_descent(loss_fn, params, learning_rate=lr, num_steps=steps,
                                                        save_every=chunk, progress=C.no_progress).loss
    r = per_step(make, flops, repeats, quick)
    return {"gd_step_us": 1e6 * r["step_s"], "gd_compile_s": r["compile_s"], "gd_steps": r["steps"],
            "gd_flops": flops, "gd_gflops": flops / r["step_s"] / 1e9}


def e2e_cost(loss_fn, W_e, depth, lr, flops_model, repeats, quick):
    """The discrete end-to-end update (:func:`end_to_end_descent`), per step."""
    make = lambda chunk: lambda steps: end_to_end_descent(loss_fn, W_e, depth=float(depth), learning_rate=lr,
                                                          num_steps=steps, save_every=chunk,
                                                          progress=C.no_progress).loss
    r = per_step(make, flops_model, repeats, quick)
    return {"e2e_step_us": 1e6 * r["step_s"], "e2e_compile_s": r["compile_s"], "e2e_steps": r["steps"],
            "e2e_flops_model": flops_model, "e2e_measured_at_depth": depth}


def apply_cost(n, N, repeats):
    """preconditioner_apply: eager as users call it, and inside jax.jit; a full SVD alone."""
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
            "svd_us": 1e6 * svd_t["median_s"], "apply_measured_at_depth": N}


def square(args, repeats):
    """Whitened ℓ2, n × n: GD at every depth; the end-to-end update once per width."""
    widths = [8, 16] if args.quick else [32, 64, 128, 256, 512]
    depths = [2, 4] if args.quick else [2, 4, 8]
    out = []
    for n in widths:
        Phi = jax.random.normal(jax.random.key(10_000), (n, n), jnp.float32) / math.sqrt(n)
        loss_fn = functools.partial(whitened_l2_loss, Phi=Phi)
        inits = {N: init_balanced(jax.random.key(0), (n,) * (N + 1), std=1 / math.sqrt(n), dtype=jnp.float32)
                 for N in depths}
        N_max = max(depths)
        shared = e2e_cost(loss_fn, end_to_end(inits[N_max]), N_max, 0.01, 34 * n**3, repeats, args.quick)
        shared.update(apply_cost(n, N_max, repeats))
        for N in depths:
            r = {"width": n, "depth": N, **gd_cost(loss_fn, inits[N], 0.01, 6 * (N - 1) * n**3, repeats, args.quick),
                 **shared}
            r["e2e_over_gd"] = r["e2e_step_us"] / r["gd_step_us"]
            r["load_average"] = C.load_average()
            print(f"  n={n} N={N}: GD {r['gd_step_us']:.1f} us, e2e {r['e2e_step_us']:.1f} us, "
                  f"P_W apply {r['apply_jit_us']:.1f} us (eager {r['apply_eager_us']:.1f}), "
                  f"SVD {r['svd_us']:.1f} us -> e2e/GD {r['e2e_over_gd']:.2f}", flush=True)
            out.append(r)
    return out


def single_output(args, repeats):
    """Gas-sensor ℓ4 (d_0 = 128, d_N = 1): GD at each hidden width and depth; the end-to-end
    update (a 1 × 128 W_e, independent of h and N) once."""
    X, y = load_gas_ethanol(standardize=True)
    loss_fn = functools.partial(lp_loss, X=jnp.asarray(X, jnp.float32), Y=jnp.asarray(y, jnp.float32), p=4.0)
    m, d = X.shape
    widths = [8] if args.quick else [32, 128, 512]
    depths = [2] if args.quick else [2, 4, 8]
    dims_of = lambda h, N: (d,) + (h,) * (N - 1) + (1,)
    init = lambda h, N: init_balanced(jax.random.key(0), dims_of(h, N), std=0.01, dtype=jnp.float32)
    h_max, N_max = max(widths), max(depths)
    shared = e2e_cost(loss_fn, end_to_end(init(h_max, N_max)), N_max, 1e-3, 4 * m * d, repeats, args.quick)
    out = []
    for h in widths:
        for N in depths:
            gd_flops = 4 * m * d + 6 * (d * h + (N - 2) * h * h + h)  # data + the layer chain
            r = {"width": h, "depth": N, **gd_cost(loss_fn, init(h, N), 1e-3, gd_flops, repeats, args.quick),
                 **shared}
            r["e2e_over_gd"] = r["e2e_step_us"] / r["gd_step_us"]
            r["load_average"] = C.load_average()
            print(f"  gas h={h} N={N}: GD {r['gd_step_us']:.1f} us, e2e {r['e2e_step_us']:.1f} us "
                  f"-> e2e/GD {r['e2e_over_gd']:.2f}", flush=True)
            out.append(r)
    return out


def cheaper_from(rows) -> dict[int, int | None]:
    """Per depth: the smallest width from which on the end-to-end update is cheaper than GD
    (ratio < 1 at that width and every larger one), or None."""
    out = {}
    for N in sorted({r["depth"] for r in rows}):
        ordered = sorted((r for r in rows if r["depth"] == N), key=lambda r: r["width"])
        start = None
        for r in ordered:
            start = (start or r["width"]) if r["e2e_over_gd"] < 1 else None
        out[N] = start
    return out


def cheaper_line(rows, what: str) -> str:
    parts = [f"N = {N}: " + (f"from {what} {w} on" if w is not None else "at no measured width")
             for N, w in cheaper_from(rows).items()]
    return "End-to-end update cheaper than GD on the network — " + "; ".join(parts) + "."


def markdown(report):
    rows = [[r["width"], r["depth"], f"{r['gd_step_us']:.4g}", f"{r['e2e_step_us']:.4g}",
             f"{r['apply_jit_us']:.4g}", f"{r['apply_eager_us']:.4g}", f"{r['svd_us']:.4g}",
             f"**{r['e2e_over_gd']:.2f}**", C.fmt_load(r["load_average"])] for r in report["square"]]
    rows1 = [[r["width"], r["depth"], f"{r['gd_step_us']:.4g}", f"{r['e2e_step_us']:.4g}",
              f"**{r['e2e_over_gd']:.2f}**", C.fmt_load(r["load_average"])] for r in report["single_output"]]
    return "\n".join([
        "## End-to-end dynamics vs GD on the network (`benchmarks/e2e_cost.py`)", "",
        C.machine_line(report["machine"], report["load_start"], report["load_end"]), "",
        C.gpu_line(report["machine"]), "",
        "Per-step cost (µs, slope between S and 2S steps), float32, one run. The end-to-end "
        "update is cheaper where \"e2e / GD\" is below 1. Its cost (and `preconditioner_apply`'s) "
        "does not depend on N (a traced number), so it is measured once per width, at the largest N.", "",
        "### Square whitened ℓ2 (n × n end-to-end matrix)", "",
        C.table(["width n", "depth N", "GD step", "end-to-end step", "`preconditioner_apply` (jit)",
                 "… (eager call)", "full SVD alone", "e2e / GD", "load avg"], rows), "",
        cheaper_line(report["square"], "width"), "",
        "### Single output: gas-sensor ℓ4 (d_0 = 128, d_N = 1)", "",
        C.table(["hidden width h", "depth N", "GD step", "end-to-end step", "e2e / GD", "load avg"], rows1),
        "", cheaper_line(report["single_output"], "hidden width"), "",
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
    name = C.section_name("e2e_cost", device)
    json_path, md_path = C.output_paths(args, name)
    C.save(json_path, md_path, name, report, markdown(report))
    return report


if __name__ == "__main__":
    main()
