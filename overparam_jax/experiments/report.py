"""What every experiment writes, and how: one JSON, one markdown summary, PNG figures.

An experiment's module computes a result and turns it into a JSON-ready *document*, a
markdown *summary* and *figures*; :func:`write_outputs` writes them under one prefix
(``<prefix>_results.json``, ``<prefix>_summary.md``, ``<prefix>_<name>.png``) with the run
metadata (library versions, backend, devices, time) in the JSON and in each PNG, atomically
(a killed run never leaves a half-written file). :func:`band` draws the usual figure
element: the median over seeds with a min–max band, each seed cut at its divergence.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from overparam_jax.results import atomic_write_text, save_figure, write_json

__all__ = ["band", "write_outputs"]


def band(ax, steps, curves, *, color, label, diverged_at=None, ls: str = "-", lw: float = 1.6) -> np.ndarray:
    """Draw the median of ``curves`` over their first axis and their min–max band.

    Args:
        ax: a matplotlib Axes.
        steps: ``(T,)`` the recorded steps.
        curves: ``(seeds, T)`` values.
        color, label, ls, lw: line style.
        diverged_at: optional ``(seeds,)`` steps of divergence (-1: none); a diverged seed is
            drawn up to its last record before it, marked with ×.

    Returns:
        The drawn curves, NaN after any divergence.
    """
    steps = np.asarray(steps)
    values = np.array(curves, dtype=np.float64)
    for i, at in enumerate(() if diverged_at is None else diverged_at):
        if at >= 0:
            last = np.searchsorted(steps, at) - 1  # the last record before the divergence
            ax.plot(steps[last], values[i, last], marker="x", color=color, ms=7, mew=2)
            values[i, last + 1:] = np.nan
    with warnings.catch_warnings():  # records after every seed diverged are all-NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        median = np.nanmedian(values, axis=0)
        lo, hi = np.nanmin(values, axis=0), np.nanmax(values, axis=0)
    ax.plot(steps, median, color=color, lw=lw, ls=ls, label=label)
    if values.shape[0] > 1:
        ax.fill_between(steps, lo, hi, color=color, alpha=0.2, lw=0)
    return values


def write_outputs(
    out_dir: str | Path,
    prefix: str,
    *,
    document: Mapping[str, Any],
    summary: str,
    figures: Mapping[str, tuple[Any, str]],
) -> dict[str, Path]:
    """Write ``<prefix>_results.json`` (``document`` plus the run metadata), each figure
    ``(fig, caption)`` (a ``matplotlib.figure.Figure``, not registered with pyplot) as
    ``<prefix>_<name>.png`` and ``<prefix>_summary.md``.

    Returns:
        The written paths: ``"json"``, one per figure name, and ``"summary"``.
    """
    out = Path(out_dir)
    paths = {"json": write_json(out / f"{prefix}_results.json", dict(document))}
    for name, (fig, caption) in figures.items():
        paths[name] = save_figure(fig, out / f"{prefix}_{name}.png", caption=caption)
    paths["summary"] = atomic_write_text(out / f"{prefix}_summary.md", summary)
    return paths
