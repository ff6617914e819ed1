r"""How a sweep's cost scales: with seeds, depth and width; padded depth vs one compile per depth.

Issue 9, item 3. Every point is :func:`overparam_jax.sweep` in float32, its per-step cost
measured by the slope between ``S`` and ``2S`` steps (fixed per-call costs cancel; the
``2S`` call runs as two chunks of the same compiled ``S``-step program through sweep's
``progress`` option, so a point compiles once), the compile timed separately. Problems:

* **seeds** — workload A's problem (gas-sensor ℓ4, m = 2565, d = 128, hidden width 1),
  depth 4, one learning rate, seeds 1 … 1024 (= runs). Minimal work 4md FLOPs per run-step.
* **depth** — whitened ℓ2, square width 64, 8 seeds, depth N = 1 … 16 (one depth per sweep,
  so no padding): 6(N − 1)n³ FLOPs per run-step; and the gas ℓ4 problem at hidden width 1
  (4md + O(N), flat in N).
* **width** — whitened ℓ2, depth 4, 8 seeds, square width n = 32 … 512: 18n³ FLOPs per run-step.
* **padding** — workload A's depths {1, 2, 3, 4} swept either as one padded program (every
  run costs depth 4) or as one sweep per depth (4 compiles, no wasted work), for the gas
  ℓ4 problem (hidden width 1) and whitened ℓ2 at square widths 64 and 256. The total
  time of ``T`` steps is ``compile + T × step``; the crossover ``T*`` is where the two are
  equal.

A point is overhead-bound where the time per step stays flat as the size grows, and
compute-bound where it grows like the work (log–log slope 1 in runs, 1 in N − 1, 3 in
width); the tables give the measured slope from the previous point.

Steps per point: ``S`` such that one ``S``-step call takes about 0.2 s at 50 GFLOP/s
(2 ≤ S ≤ 1000), and no warm-up of the ``2S`` call (it has nothing to compile), so that the
36 points stay within ~4 minutes on 2 CPU cores (each costs one compile and 7 calls).

    python benchmarks/scaling.py [--quick] [--repeats 3] [--plot benchmarks/scaling.png]
"""

from __future__ import annotations

import functools
import math
from typing import Any

import _common as C
import jax
import jax.numpy as jnp
import numpy as np

from overparam_jax import load_gas_ethanol, lp_loss, sweep, whitened_l2_loss
from overparam_jax.results import save_figure

LR_GAS, STD_GAS = 1e-3, 0.01
TARGET_S, ASSUMED_GFLOPS, MIN_STEPS, MAX_STEPS = 0.2, 50e9, 2, 1000


@functools.lru_cache(maxsize=None)
def gas_loss():
    X, y = load_gas_ethanol(standardize=True)
    return functools.partial(lp_loss, X=jnp.asarray(X, jnp.float32), Y=jnp.asarray(y, jnp.float32), p=4.0)


@functools.lru_cache(maxsize=None)
def whitened_loss(n: int):
    Phi = jax.random.normal(jax.random.key(10_000), (n, n), jnp.float32) / math.sqrt(n)
    return functools.partial(whitened_l2_loss, Phi=Phi)


def _sweep(loss, depths, **kwargs):
    """The recorded losses of ``sweep``."""
    return sweep(loss, depths=depths, **kwargs).trajectory.loss


# --------------------------------------------------------------------------------------
# Problems: run(steps) with steps a multiple of S, chunks of S steps
# --------------------------------------------------------------------------------------


def gas_runner(seeds: int, depths: list[int], chunk: int, loss=None):
    loss = loss or gas_loss()
    return lambda steps: _sweep(loss, depths, input_dim=128, output_dim=1, hidden_width=1,
                                seeds=list(range(seeds)), learning_rates=[LR_GAS], init_stds=[STD_GAS],
                                num_steps=steps, save_every=chunk, dtype=jnp.float32,
                                progress=C.no_progress)


def whitened_runner(n: int, seeds: int, depths: list[int], chunk: int, loss=None):
    loss = loss or whitened_loss(n)
    return lambda steps: _sweep(loss, depths, input_dim=n, output_dim=n, hidden_width=n,
                                seeds=list(range(seeds)), learning_rates=[0.01], init_stds=[1 / math.sqrt(n)],
                                num_steps=steps, save_every=chunk, dtype=jnp.float32,
                                progress=C.no_progress)


def gas_flops(runs: int, depth: int) -> float:
    """4md per run-step (the O(N) scalar chain of hidden width 1 left out)."""
    return 4 * 2565 * 128 * runs


def whitened_flops(n: int, runs: int, depth: int) -> float:
    """6(N − 1)n³ per run-step."""
    return 6 * (depth - 1) * n**3 * runs


def steps_for(flops_per_step: float, quick: bool, target_s: float = TARGET_S) -> int:
    """S with one S-step call ≈ ``target_s`` at ``ASSUMED_GFLOPS`` (MIN_STEPS ≤ S ≤ MAX_STEPS)."""
    if quick:
        return 4
    return int(min(max(MIN_STEPS, round(target_s * ASSUMED_GFLOPS / max(flops_per_step, 1.0))), MAX_STEPS))


def point(make, flops_per_step: float, repeats: int, runs: int, *, quick: bool,
          target_s: float = TARGET_S, **extra) -> dict[str, Any]:
    """One sweep configuration: per-step cost by the slope method (``--quick``: one length
    only, time / steps, fixed costs included — a smoke run, not a measurement).

    ``make(chunk)`` returns ``run(steps)``.
    """
    steps = steps_for(flops_per_step, quick, target_s)
    run = make(steps)
    if quick:
        first, _ = C.time_call(lambda: run(steps))
        steady, _ = C.time_call(lambda: run(steps))
        r = {"compile_s": max(first - steady, 0.0), "fixed_s": 0.0, "step_s": steady / steps}
    else:
        r = C.slope_time(run, steps, repeats, warm_long=False)
    out = {**extra, "runs": runs, "steps": steps, "compile_s": r["compile_s"], "fixed_s": r["fixed_s"],
           "step_us": 1e6 * r["step_s"], "us_per_run_step": 1e6 * r["step_s"] / runs,
           "flops_per_step": flops_per_step, "gflops": flops_per_step / r["step_s"] / 1e9,
           "load_average": C.load_average()}
    print("  " + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in out.items()
                           if k in ("runs", "depth", "width", "steps", "step_us", "us_per_run_step", "gflops",
                                    "compile_s")), flush=True)
    return out


# --------------------------------------------------------------------------------------
# The four parts
# --------------------------------------------------------------------------------------


def scaling_seeds(args, repeats):
    seeds = [1, 4] if args.quick else [1, 4, 16, 64, 256, 1024]
    return [point(lambda c, s=s: gas_runner(s, [4], c), gas_flops(s, 4), repeats, s, quick=args.quick, seeds=s)
            for s in seeds]


def scaling_depth(args, repeats):
    depths = [1, 2] if args.quick else [1, 2, 4, 8, 16]
    n, seeds = (8, 2) if args.quick else (64, 8)
    whitened, gas = [], []
    for N in depths:
        whitened.append(point(lambda c, N=N: whitened_runner(n, seeds, [N], c), whitened_flops(n, seeds, N),
                              repeats, seeds, quick=args.quick, depth=N, width=n))
        gas.append(point(lambda c, N=N: gas_runner(seeds, [N], c), gas_flops(seeds, N), repeats, seeds,
                         quick=args.quick, depth=N, width=1))
    return {"whitened": whitened, "gas": gas}


def scaling_width(args, repeats):
    widths = [8, 16] if args.quick else [32, 64, 128, 256, 512]
    seeds = 2 if args.quick else 8
    return [point(lambda c, n=n: whitened_runner(n, seeds, [4], c), whitened_flops(n, seeds, 4), repeats, seeds,
                  quick=args.quick, width=n) for n in widths]


def crossover(compile_pad: float, step_pad: float, compile_sep: float, step_sep: float) -> tuple[float, str]:
    """T* with compile_pad + T* step_pad = compile_sep + T* step_sep, and which is faster."""
    if step_pad <= step_sep:
        t = math.inf if compile_pad <= compile_sep else 0.0
    else:  # padding saves compile time but costs more per step
        t = max((compile_sep - compile_pad) / (step_pad - step_sep), 0.0)
    winner = ("padded at every length" if t == math.inf else "per-depth at every length" if t == 0.0
              else f"padded below {t:,.0f} steps, per-depth above")
    return t, winner


def padding(args, repeats):
    """One padded sweep over workload A's depths {1, 2, 3, 4} vs one sweep per depth."""
    depths = [1, 2] if args.quick else [1, 2, 3, 4]
    seeds = 2 if args.quick else 8
    problems = [("gas ℓ4, width 1", None)] + [(f"whitened ℓ2, width {n}", n)
                                               for n in ([] if args.quick else [64, 256])]
    out = []
    for label, n in problems:
        # a new loss object: compiles cached by the other parts must not be reused here
        loss = gas_loss.__wrapped__() if n is None else whitened_loss.__wrapped__(n)
        make = ((lambda ds: lambda c: gas_runner(seeds, ds, c, loss)) if n is None
                else (lambda ds, n=n: lambda c: whitened_runner(n, seeds, ds, c, loss)))
        flops = (lambda N: gas_flops(seeds, N)) if n is None else (lambda N, n=n: whitened_flops(n, seeds, N))
        D = max(depths)
        print(f" padding: {label}", flush=True)
        padded = point(make(depths), len(depths) * flops(D), repeats, seeds * len(depths), quick=args.quick,
                       problem=label, mode="padded")
        per_depth = [point(make([N]), flops(N), repeats, seeds, quick=args.quick, target_s=TARGET_S / 2,
                           problem=label, mode="per_depth", depth=N) for N in depths]
        compile_sep = sum(p["compile_s"] for p in per_depth)
        step_sep = sum(p["step_us"] for p in per_depth) * 1e-6
        t, winner = crossover(padded["compile_s"], padded["step_us"] * 1e-6, compile_sep, step_sep)
        out.append({"problem": label, "width": n, "depths": depths, "seeds": seeds, "padded": padded,
                    "per_depth": per_depth, "compile_padded_s": padded["compile_s"],
                    "compile_per_depth_s": compile_sep, "step_padded_us": padded["step_us"],
                    "step_per_depth_us": step_sep * 1e6, "crossover_steps": t, "winner": winner})
    return out


# --------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------


def loglog_slopes(xs, ys) -> list[float | None]:
    """d log y / d log x between each point and the previous one (None for the first, or
    where a size is 0 or not positive)."""
    out: list[float | None] = [None]
    for (x0, y0), (x1, y1) in zip(zip(xs, ys), zip(xs[1:], ys[1:])):
        ok = min(x0, x1, y0, y1) > 0 and x0 != x1
        out.append(math.log(y1 / y0) / math.log(x1 / x0) if ok else None)
    return out


def plot(report, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(11, 8.5))

    def panel(ax, xs, ys, label, slope_ref=None, marker="o"):
        ax.loglog(xs, ys, marker=marker, label=label)
        if slope_ref:
            x0, y0 = xs[-1], ys[-1]
            ax.loglog(xs, [y0 * (x / x0) ** slope_ref for x in xs], ":", color="grey",
                      label=f"slope {slope_ref} (compute-bound)")

    s = report["seeds"]
    panel(axes[0, 0], [p["runs"] for p in s], [p["step_us"] for p in s], "gas ℓ4, depth 4", 1)
    axes[0, 0].set(xlabel="runs (seeds)", ylabel="µs per GD step of the whole batch",
                   title="vs seeds (one vmapped program)")
    d = report["depth"]
    panel(axes[0, 1], [p["depth"] for p in d["whitened"]], [p["step_us"] for p in d["whitened"]],
          f"whitened ℓ2, width {d['whitened'][0]['width']}")
    panel(axes[0, 1], [p["depth"] for p in d["gas"]], [p["step_us"] for p in d["gas"]], "gas ℓ4, width 1",
          marker="s")
    deep = [p for p in d["whitened"] if p["depth"] > 1]
    if deep:
        xs, y_last = [p["depth"] for p in deep], deep[-1]["step_us"]
        axes[0, 1].loglog(xs, [y_last * (x - 1) / (xs[-1] - 1) for x in xs], ":", color="grey",
                          label="∝ N − 1 (compute-bound)")
    axes[0, 1].set(xlabel="depth N", ylabel="µs per GD step", title=f"vs depth ({d['gas'][0]['runs']} runs)")
    w = report["width"]
    panel(axes[1, 0], [p["width"] for p in w], [p["step_us"] for p in w], "whitened ℓ2, depth 4", 3)
    axes[1, 0].set(xlabel="square width n", ylabel="µs per GD step", title=f"vs width ({w[0]['runs']} runs)")
    ax = axes[1, 1]
    T = np.logspace(0, 6, 200)
    for i, p in enumerate(report["padding"]):
        color = f"C{i}"
        ax.loglog(T, p["compile_padded_s"] + T * p["step_padded_us"] * 1e-6, "-", color=color,
                  label=f"{p['problem']}: padded")
        ax.loglog(T, p["compile_per_depth_s"] + T * p["step_per_depth_us"] * 1e-6, "--", color=color,
                  label="… one compile per depth")
    ax.set(xlabel="GD steps", ylabel="total seconds (compile + steps)",
           title=f"depths {report['padding'][0]['depths']}: padded vs per depth")
    for a in axes.flat:
        a.grid(True, which="both", alpha=0.3)
        a.legend(fontsize=7)
    info = report["machine"]
    fig.suptitle(f"overparam_jax sweep scaling, float32 — {info['cpu_model']}, {info['logical_cores']} cores, "
                 f"load {C.fmt_load(report['load_start'])}", fontsize=10)
    fig.tight_layout()
    save_figure(fig, path, caption="sweep scaling: seeds, depth, width, padding")
    plt.close(fig)


def _slope_cells(xs, ys):
    return ["—" if v is None else f"{v:.2f}" for v in loglog_slopes(xs, ys)]


def _gflops(p):
    return f"{p['gflops']:.1f}" if p["gflops"] > 0 else "—"


def markdown(report, plot_name):
    lines = ["## Scaling (`benchmarks/scaling.py`)", "",
             C.machine_line(report["machine"], report["load_start"], report["load_end"]), "",
             C.gpu_line(report["machine"]), "",
             f"![scaling]({plot_name})", "",
             "Per-step cost of one `sweep` call (slope between S and 2S steps, one compile per point), "
             "float32. \"slope\" is d log(time per step) / d log(size) from the previous row: ≈ 0 is "
             "overhead-bound, ≈ the work's exponent (1 for runs, 3 for width) is compute-bound.", ""]
    if not all(p in report for p in ("seeds", "depth", "width", "padding")):
        return "\n".join(lines + ["(partial run: see the JSON)"])
    s = report["seeds"]
    rows = [[p["runs"], p["steps"], f"{p['step_us']:.4g}", f"{p['us_per_run_step']:.3g}", slope, _gflops(p),
             f"{p['compile_s']:.2f}", C.fmt_load(p["load_average"])]
            for p, slope in zip(s, _slope_cells([p["runs"] for p in s], [p["step_us"] for p in s]))]
    lines += ["### vs seeds (gas ℓ4, depth 4, hidden width 1)", "",
              C.table(["runs", "S", "µs / step", "µs / run-step", "slope", "GFLOP/s", "compile (s)", "load avg"],
                      rows), ""]
    wd, gd = report["depth"]["whitened"], report["depth"]["gas"]
    w_slopes = _slope_cells([max(p["depth"] - 1, 0) for p in wd], [p["step_us"] for p in wd])
    rows = [[wp["depth"], f"{wp['step_us']:.4g}", ws, _gflops(wp), f"{wp['compile_s']:.2f}",
             f"{gp['step_us']:.4g}", _gflops(gp), f"{gp['compile_s']:.2f}", C.fmt_load(wp["load_average"])]
            for wp, gp, ws in zip(wd, gd, w_slopes)]
    lines += [f"### vs depth ({gd[0]['runs']} runs)", "",
              C.table(["depth N", f"whitened ℓ2 n={wd[0]['width']}: µs / step", "slope in N − 1", "GFLOP/s",
                       "compile (s)", "gas ℓ4 h=1: µs / step", "GFLOP/s", "compile (s)", "load avg"], rows), ""]
    w = report["width"]
    rows = [[p["width"], p["steps"], f"{p['step_us']:.4g}", f"{p['us_per_run_step']:.4g}", slope, _gflops(p),
             f"{p['compile_s']:.2f}", C.fmt_load(p["load_average"])]
            for p, slope in zip(w, _slope_cells([p["width"] for p in w], [p["step_us"] for p in w]))]
    lines += [f"### vs width (whitened ℓ2, depth 4, {w[0]['runs']} runs)", "",
              C.table(["width", "S", "µs / step", "µs / run-step", "slope", "GFLOP/s", "compile (s)", "load avg"],
                      rows), ""]
    rows = [[p["problem"], f"{p['compile_padded_s']:.2f}", f"{p['compile_per_depth_s']:.2f}",
             f"{p['step_padded_us']:.4g}", f"{p['step_per_depth_us']:.4g}", p["winner"]] for p in report["padding"]]
    lines += [f"### Padded depth vs one compile per depth (depths {report['padding'][0]['depths']}, "
              f"{report['padding'][0]['seeds']} seeds each)", "",
              "Total time of T steps = compile + T × step; \"faster\" compares the padded program with "
              "the sum of the per-depth ones.", "",
              C.table(["problem", "compile padded (s)", "compile per depth, sum (s)", "µs / step padded",
                       "µs / step per depth, sum", "faster"], rows), ""]
    return "\n".join(lines)


def main(argv=None):
    parser = C.base_parser(__doc__)
    parser.add_argument("--plot", default=None, help="PNG path (default benchmarks/scaling.png; none for --quick)")
    parser.add_argument("--parts", default="seeds,depth,width,padding")
    args = parser.parse_args(argv)
    repeats = args.repeats or (1 if args.quick else 3)
    device = C.select_device(args.device)
    if device.platform == "gpu":
        jax.config.update("jax_default_matmul_precision", "highest")
    report: dict[str, Any] = {"quick": args.quick, "machine": C.machine(device), "load_start": C.load_average(),
                              "target_s_per_call": TARGET_S, "assumed_gflops_for_steps": ASSUMED_GFLOPS / 1e9}
    parts = args.parts.split(",")
    for name, fn in (("seeds", scaling_seeds), ("depth", scaling_depth), ("width", scaling_width),
                     ("padding", padding)):
        if name in parts:
            print(f"[{name}]", flush=True)
            report[name] = fn(args, repeats)
    report["load_end"] = C.load_average()
    name = C.section_name("scaling", device)
    json_path, md_path = C.output_paths(args, name)
    plot_path = args.plot or (None if args.quick else str(C.HERE / f"{name}.png"))
    if plot_path and all(p in report for p in ("seeds", "depth", "width", "padding")):
        plot(report, plot_path)
        report["plot"] = plot_path
        print(f"wrote {plot_path}")
    C.save(json_path, md_path, name, report, markdown(report, f"{name}.png"))
    return report


if __name__ == "__main__":
    main()
