"""Presenting verify results: the text table, the JSON document and per-check PNGs."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from overparam_jax.results import save_figure, write_json
from overparam_jax.verify.registry import CheckResult, VerifyConfig

__all__ = ["format_table", "summary_line", "write_plots", "write_report_json"]


def _fmt(x: float) -> str:
    return f"{x:.3g}" if abs(x) >= 1e-3 or x == 0 else f"{x:.2e}"


def format_table(results: Sequence[CheckResult]) -> str:
    """One row per check: name, section, measured, relation and threshold, verdict; then claims."""
    header = ("check", "§", "measured", "threshold", "result")
    rows = [
        (r.name, r.section, _fmt(r.measured), f"{r.relation} {_fmt(r.threshold)}",
         "PASS" if r.passed else "FAIL")
        for r in results
    ]
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows)]
    line = lambda cells: "  ".join(str(c).ljust(w) for c, w in zip(cells, widths)).rstrip()
    out = [line(header), line("-" * w for w in widths)]
    out += [line(row) for row in rows]
    out.append("")
    out += [f"{r.name}: {r.claim}" for r in results]
    return "\n".join(out)


def summary_line(results: Sequence[CheckResult], seconds: float) -> str:
    failed = [r.name for r in results if not r.passed]
    verdict = "all passed" if not failed else f"FAILED: {', '.join(failed)}"
    return f"{len(results) - len(failed)}/{len(results)} checks passed in {seconds:.1f} s — {verdict}"


def write_report_json(path: str | Path, results: Sequence[CheckResult], config: VerifyConfig) -> Path:
    """Every figure with the configuration and library versions."""
    return write_json(
        path,
        {
            "config": config._asdict(),
            "passed": all(r.passed for r in results),
            "checks": [r.to_json() for r in results],
        },
    )


def write_plots(directory: str | Path, results: Sequence[CheckResult]) -> list[Path]:
    """A PNG per check that has a plot, named ``<check>.png``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    for r in results:
        if r.plot is None:
            continue
        fig, ax = plt.subplots(figsize=(6, 4))
        r.plot(ax)
        ax.set_title(f"{r.name} ({'PASS' if r.passed else 'FAIL'})", fontsize=10)
        written.append(save_figure(fig, Path(directory) / f"{r.name}.png", caption=r.claim))
        plt.close(fig)
    return written
