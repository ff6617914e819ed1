"""Shared helpers of the benchmark scripts: timing, the machine's limits, metadata, output.

Not a library module: the scripts in this folder import it as ``_common`` (they run as
``python benchmarks/<script>.py``, which puts this folder on ``sys.path``).

* :func:`median_time` — steady-state wall-clock time: a warm-up call, then the median of
  ``repeats`` calls, each ended by ``jax.block_until_ready``.
* :func:`matmul_peak` — the machine's measured float32 matmul rate (GFLOP/s): the best of
  a few square ``jnp.matmul`` sizes, each a median of repeats.
* :func:`memory_bandwidth` — measured streaming bandwidth (GB/s) of a large array sum
  (read) and copy (read + write) in JAX, and of an array that stays in the last-level cache.
* :func:`machine` — CPU model, cores, versions, date, and the load average.
* :func:`update_results_md` — replace one script's section of ``benchmarks/RESULTS.md``
  (between ``<!-- begin:NAME -->`` and ``<!-- end:NAME -->``), leaving the others alone.
* :func:`no_progress` — pass as ``progress=`` to run ``k·S`` steps as ``k`` chunks of the
  same compiled ``S``-step program (``save_every = S``): the ``S`` and ``2S`` calls of
  :func:`slope_time` then share one compile.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

HERE = Path(__file__).resolve().parent
RESULTS_MD = HERE / "RESULTS.md"
RESULTS_DIR = HERE / "results"
sys.path.insert(0, str(HERE.parent))  # run from a checkout without installing, too

from overparam_jax.results import atomic_write_text, write_json  # noqa: E402


# --------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------


def base_parser(doc: str) -> argparse.ArgumentParser:
    """Flags every script has: ``--quick``, ``--repeats``, ``--json``, ``--results-md``, ``--device``."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="a small smoke run (what tests/test_benchmarks.py executes)")
    parser.add_argument("--repeats", type=int, default=None, help="timed repeats (median quoted)")
    parser.add_argument("--json", default=None, help="where to write the JSON results")
    parser.add_argument("--results-md", default=None,
                        help="the Markdown file whose section this script replaces "
                             "(default: benchmarks/RESULTS.md for a full run, none for --quick)")
    parser.add_argument("--device", default=None,
                        help="JAX platform to run on (cpu, gpu, tpu); PyTorch baselines use "
                             "'cuda' when this is gpu. Default: JAX's default backend.")
    return parser


def select_device(name: str | None) -> jax.Device:
    """The first device of platform ``name`` (default backend if None); made the default."""
    device = jax.devices(name)[0] if name else jax.devices()[0]
    jax.config.update("jax_default_device", device)
    return device


def torch_device_name(device: jax.Device) -> str:
    return "cuda" if device.platform == "gpu" else "cpu"


# --------------------------------------------------------------------------------------
# Timing
# --------------------------------------------------------------------------------------


def block(x: Any) -> Any:
    return jax.block_until_ready(x)


def time_call(fn: Callable[[], Any]) -> tuple[float, Any]:
    """Wall-clock seconds of one call of ``fn``, results blocked on."""
    t0 = time.perf_counter()
    out = block(fn())
    return time.perf_counter() - t0, out


def median_time(fn: Callable[[], Any], repeats: int, *, warmup: int = 1) -> dict[str, Any]:
    """Steady state: ``warmup`` untimed calls, then the median (and all) of ``repeats`` calls."""
    for _ in range(warmup):
        block(fn())
    times = [time_call(fn)[0] for _ in range(repeats)]
    return {"median_s": statistics.median(times), "min_s": min(times), "times_s": times}


def no_progress(progress) -> None:
    """A progress callback that does nothing: it makes the library run its scan in chunks of
    ``save_every`` steps, each a call of the same compiled program (one block per chunk)."""


def slope_time(run: Callable[[int], Any], steps: int, repeats: int, *,
               warm_long: bool = True) -> dict[str, Any]:
    """Per-step cost of ``run(num_steps)`` by the slope between ``steps`` and ``2 * steps``:
    ``step = (t(2S) − t(S)) / S``, each ``t`` a median of ``repeats`` calls.

    Fixed per-call costs (set-up, the t = 0 record, transfers) cancel in the difference.
    The first call of ``steps`` compiles; ``compile_s`` is it minus its steady time. With
    ``warm_long`` the ``2 * steps`` call is warmed up (compiled) first too; pass False when
    ``run`` runs ``2 * steps`` as two chunks of the ``steps`` program (see
    :func:`no_progress`), which has nothing left to compile.
    """
    first, _ = time_call(lambda: run(steps))
    if warm_long:
        time_call(lambda: run(2 * steps))
    t1 = median_time(lambda: run(steps), repeats, warmup=0)["median_s"]
    t2 = median_time(lambda: run(2 * steps), repeats, warmup=0)["median_s"]
    resolved = t2 > t1
    # Timing noise can make t(2S) <= t(S); then the slope says nothing and the whole-call
    # average t(2S) / 2S (an upper bound: fixed costs included) is reported instead.
    per_step = (t2 - t1) / steps if resolved else t2 / (2 * steps)
    return {"compile_s": max(first - t1, 0.0), "short_s": t1, "long_s": t2, "steps": steps,
            "step_s": per_step, "fixed_s": max(t1 - per_step * steps, 0.0), "slope_resolved": resolved}


# --------------------------------------------------------------------------------------
# The machine's limits
# --------------------------------------------------------------------------------------


def matmul_peak(sizes: tuple[int, ...] = (1024, 2048), repeats: int = 5,
                dtype=jnp.float32) -> dict[str, Any]:
    """Measured matmul rate: best median GFLOP/s of ``jnp.matmul`` on square ``n x n`` matrices."""
    per_size = {}
    matmul = jax.jit(jnp.matmul)
    for n in sizes:
        a = jax.random.normal(jax.random.key(0), (n, n), dtype)
        b = jax.random.normal(jax.random.key(1), (n, n), dtype)
        t = median_time(lambda: matmul(a, b), repeats)
        per_size[str(n)] = 2 * n**3 / t["median_s"] / 1e9
    return {"gflops": max(per_size.values()), "per_size_gflops": per_size,
            "dtype": jnp.dtype(dtype).name, "method": "median of jnp.matmul(n x n) float32, best n"}


def memory_bandwidth(repeats: int = 5) -> dict[str, Any]:
    """Measured bandwidth (GB/s): a 256 MiB array (DRAM) and an 8 MiB one (last-level cache).

    Per size: read = bytes / time of ``jnp.sum``; read_write = 2 · bytes / time of a JAX
    scale (``1.5 * x``) and of ``np.copyto`` (each reads and writes every byte), the
    better of the two. ``LEVEL_gbs`` = the best of these: what streaming can reach, the
    bandwidth a memory-bound kernel would be held to.
    """
    out = {}
    for label, n_bytes in (("dram", 256 << 20), ("cache_8MiB", 8 << 20)):
        x = jnp.ones((n_bytes // 4,), jnp.float32)
        total = jax.jit(jnp.sum)
        scale = jax.jit(lambda v: 1.5 * v)
        src, dst = np.ones(n_bytes // 4, np.float32), np.empty(n_bytes // 4, np.float32)
        t_read = median_time(lambda: total(x), repeats)["median_s"]
        t_copy = min(median_time(lambda: scale(x), repeats)["median_s"],
                     median_time(lambda: np.copyto(dst, src), repeats)["median_s"])
        out[f"{label}_read_gbs"] = n_bytes / t_read / 1e9
        out[f"{label}_read_write_gbs"] = 2 * n_bytes / t_copy / 1e9
        out[f"{label}_gbs"] = max(out[f"{label}_read_gbs"], out[f"{label}_read_write_gbs"])
    return out


# --------------------------------------------------------------------------------------
# Metadata
# --------------------------------------------------------------------------------------


def _cpu_model() -> str:
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        for line in text.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return platform.processor() or "unknown"


def _version(module: str) -> str | None:
    try:
        return importlib.import_module(module).__version__
    except Exception:  # noqa: BLE001 - optional packages: absent or broken means "not measured"
        return None


def load_average() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


def machine(device: jax.Device) -> dict[str, Any]:
    """CPU model, cores, versions and the date; the load average as of now."""
    return {
        "cpu_model": _cpu_model(),
        "logical_cores": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "jax": jax.__version__,
        "jaxlib": _version("jaxlib"),
        "numpy": np.__version__,
        "torch": _version("torch"),
        "device": str(device),
        "backend": device.platform,
        "date_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "load_average_1_5_15_min": load_average(),
    }


def machine_line(info: dict[str, Any], load_start: list[float], load_end: list[float]) -> str:
    return (f"Machine: {info['cpu_model']}, {info['logical_cores']} cores ({info['device']}); "
            f"jax {info['jax']}, jaxlib {info['jaxlib']}, numpy {info['numpy']}, "
            f"torch {info['torch'] or 'not installed'}, Python {info['python']}; "
            f"{info['date_utc']}; load average (1/5/15 min) {fmt_load(load_start)} at start, "
            f"{fmt_load(load_end)} at end.")


def fmt_load(load: list[float]) -> str:
    return "/".join(f"{v:.1f}" for v in load)


def gpu_line(info: dict[str, Any]) -> str:
    """What the GPU column of issue 9 says: measured on which device, or "not measured"."""
    if info["backend"] == "cpu":
        return "GPU: not measured (no GPU on this machine; see \"GPU\" at the top of this file)."
    return f"Measured on {info['device']} ({info['backend']})."


def section_name(name: str, device: jax.Device) -> str:
    """A script's RESULTS.md section and JSON name; a GPU run gets its own (``NAME_gpu``)."""
    return name if device.platform == "cpu" else f"{name}_{device.platform}"


# --------------------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------------------


def output_paths(args, name: str) -> tuple[Path | None, Path | None]:
    """(json, markdown) paths: explicit flags, else benchmarks/results/NAME.json and
    RESULTS.md for full runs, and nothing for ``--quick`` runs (smoke runs never
    overwrite the measured results)."""
    json_path = Path(args.json) if args.json else (None if args.quick else RESULTS_DIR / f"{name}.json")
    md_path = Path(args.results_md) if args.results_md else (None if args.quick else RESULTS_MD)
    return json_path, md_path


def save(json_path: Path | None, md_path: Path | None, name: str, payload: dict[str, Any],
         markdown: str) -> None:
    if json_path is not None:
        write_json(json_path, {"benchmark": name, **payload})
        print(f"wrote {json_path}")
    if md_path is not None:
        update_results_md(md_path, name, markdown)
        print(f"updated section '{name}' of {md_path}")


def update_results_md(path: Path, name: str, body: str) -> None:
    """Replace the section ``name`` of ``path`` (appended if absent), atomically."""
    begin, end = f"<!-- begin:{name} -->", f"<!-- end:{name} -->"
    block_text = f"{begin}\n{body.rstrip()}\n{end}"
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
    text = pattern.sub(lambda _: block_text, text) if pattern.search(text) else text.rstrip() + "\n\n" + block_text + "\n"
    atomic_write_text(path, text)


def table(header: list[str], rows: list[list[Any]]) -> str:
    """A Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def fmt(x: float | None, digits: int = 3) -> str:
    """A number with ``digits`` significant digits, or "—"."""
    if x is None or (isinstance(x, float) and not np.isfinite(x)):
        return "—"
    return f"{x:.{digits}g}" if abs(x) < 10 ** digits else f"{x:,.0f}"
