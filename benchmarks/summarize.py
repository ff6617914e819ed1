r"""The summary section of ``benchmarks/RESULTS.md``, derived from the four scripts' JSON.

Reads ``benchmarks/results/{throughput,sweep_profile,scaling,e2e_cost}.json`` (whichever
exist) and replaces the ``summary`` section with: the issue's goals met or missed (from
``throughput``), what bounds workload A's step (``sweep_profile``: the library sweep
against the hand-written floor, the two matmuls alone and the compute floor at the
measured peak), where the scaling turns compute-bound and which depth layout wins
(``scaling``), and from which width the end-to-end update is cheaper than GD
(``e2e_cost``). Every number is read from the JSON; nothing here is measured.

    python benchmarks/summarize.py [--results-dir benchmarks/results] [--results-md PATH]
        [--total-s SECONDS]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import _common as C
from e2e_cost import cheaper_line
from scaling import loglog_slopes
from throughput import goals_line


def _load(directory: Path, name: str) -> dict[str, Any] | None:
    path = directory / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def throughput_lines(doc: dict[str, Any]) -> list[str]:
    lines = []
    for name, wl in doc["workloads"].items():
        impls = wl["implementations"]
        sweep = impls["sweep"]
        others = [f"{impl} {r['ratio_to_sweep']:.1f}×" for impl, r in impls.items()
                  if impl != "sweep" and r.get("status") == "measured"]
        lines.append(f"- **Workload {name}**: `sweep` {sweep['us_per_run_step']:.3g} µs per run-step "
                     f"({100 * sweep['fraction_of_matmul_peak']:.0f}% of the measured matmul peak, floor "
                     f"{wl['floor_us_per_run_step_at_peak']:.3g} µs); baselines per run-step, times slower: "
                     f"{', '.join(others) or 'none measured'}. {goals_line(wl['goals'])}")
    return lines


def profile_lines(doc: dict[str, Any]) -> list[str]:
    v = doc["variants"]
    us = lambda k: v[k]["us_per_run_step"]
    return [f"- **What bounds A's step** ({doc['runs']} runs): library `sweep` {us('sweep'):.3g} µs per "
            f"run-step, hand-written fewest-operations step {us('floor_hand_gradients'):.3g}, the two "
            f"matmuls alone {us('matmul_only'):.3g}, compute floor at the measured peak "
            f"{doc['floor_us_per_run_step_at_peak']:.3g}; without checks/freezing {us('sweep_no_checks'):.3g}, "
            f"hand-written padded scan {us('bare_padded'):.3g}, per depth {us('bare_per_depth'):.3g}."]


def _turn(points: list[dict[str, Any]], key: str, exponent: float) -> str:
    """The first size whose log–log slope from the previous point is ≥ 0.7 × the work's exponent."""
    xs, ys = [p[key] for p in points], [p["step_us"] for p in points]
    for x, slope in zip(xs, loglog_slopes(xs, ys)):
        if slope is not None and slope >= 0.7 * exponent:
            return f"from {key} {x} on (slope {slope:.2f})"
    return "nowhere in the measured range"


def scaling_lines(doc: dict[str, Any]) -> list[str]:
    pads = "; ".join(f"{p['problem']}: {p['winner']}" for p in doc["padding"])
    return [f"- **Scaling**: time per step grows like the work vs seeds {_turn(doc['seeds'], 'runs', 1)}, "
            f"vs width {_turn(doc['width'], 'width', 3)}. Padded depth vs one compile per depth "
            f"(depths {doc['padding'][0]['depths']}): {pads}."]


def e2e_lines(doc: dict[str, Any]) -> list[str]:
    return [f"- **End-to-end dynamics** (square whitened ℓ2): {cheaper_line(doc['square'], 'width')} "
            f"Single output (gas ℓ4): {cheaper_line(doc['single_output'], 'hidden width')}"]


def summary(directory: Path, total_s: float | None) -> str:
    lines = ["## Summary", "", "Derived by `benchmarks/summarize.py` from the JSON of the sections below.", ""]
    for name, fn in (("throughput", throughput_lines), ("sweep_profile", profile_lines),
                     ("scaling", scaling_lines), ("e2e_cost", e2e_lines)):
        doc = _load(directory, name)
        if doc is None:
            lines.append(f"- `{name}`: not measured yet.")
        elif doc.get("quick"):
            lines.append(f"- `{name}`: only a `--quick` smoke run (not a measurement).")
        else:
            lines += fn(doc)
    if total_s is not None:
        lines += ["", f"`benchmarks/run_all.sh` took {total_s / 60:.1f} minutes in all."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> str:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results-dir", default=str(C.RESULTS_DIR))
    parser.add_argument("--results-md", default=str(C.RESULTS_MD))
    parser.add_argument("--total-s", type=float, default=None, help="wall time of the whole run, to quote")
    args = parser.parse_args(argv)
    text = summary(Path(args.results_dir), args.total_s)
    C.update_results_md(Path(args.results_md), "summary", text)
    print(text)
    return text


if __name__ == "__main__":
    main()
