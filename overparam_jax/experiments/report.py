"""What every experiment writes, and how: one JSON, one markdown summary, PNG figures.

An experiment's module computes a result and turns it into a JSON-ready *document*, a
markdown *summary* and *figures*; :func:`write_outputs` writes them under one prefix
(``<prefix>_results.json``, ``<prefix>_summary.md``, ``<prefix>_<name>.png``) with the run
metadata (library versions, backend, devices, time) in the JSON and in each PNG, atomically
(a killed run never leaves a half-written file). The pieces they are built from:

* the summary: :func:`markdown` joins blocks (headings, paragraphs, lists, tables) and
  :func:`markdown_table` lays out a table; cells come from :func:`format_value` (``"—"``
  for a missing value), :func:`format_steps` (``"240"``, ``"250k"``, ``"1·10⁶"``) and
  :func:`format_percent`;
* the figures: :func:`figure_panels` makes a grid of panels with shared labels, scales and
  grid lines, and :func:`band` draws the usual element: the median over seeds with a
  min–max band, each seed cut at its divergence;
* the document: curves go in as arrays rounded by
  :func:`overparam_jax.analysis.significant` (non-finite values become ``"nan"``/``"inf"``
  strings when written), long ones thinned by :func:`log_spaced_indices`; the machine's
  :func:`load_average` goes beside the wall times.
"""

from __future__ import annotations

import math
import os
import re
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from overparam_jax.results import atomic_write_text, save_figure, write_json

__all__ = [
    "band",
    "figure_panels",
    "format_percent",
    "format_steps",
    "format_value",
    "load_average",
    "log_spaced_indices",
    "markdown",
    "markdown_table",
    "untraced_numbers",
    "write_outputs",
]


# --------------------------------------------------------------------------------------
# The markdown summary
# --------------------------------------------------------------------------------------


def format_value(value: Any, spec: str = ".4g") -> str:
    """A table cell: ``"—"`` for ``None``, a float by ``spec``, anything else by ``str``.

    Examples:
        >>> format_value(3.14159), format_value(None), format_value(1000), format_value(0.5, ".1%")
        ('3.142', '—', '1000', '50.0%')
    """
    if value is None:
        return "—"
    return format(value, spec) if isinstance(value, (float, np.floating)) else str(value)


def format_steps(n: int) -> str:
    """A step count in a heading: whole thousands as ``"250k"``, whole millions as ``"2·10⁶"``.

    Examples:
        >>> format_steps(240), format_steps(250_000), format_steps(1_000_000), format_steps(1500)
        ('240', '250k', '1·10⁶', '1500')
    """
    if n >= 1000 and n % 1000 == 0:
        k = n // 1000
        return f"{k // 1000}·10⁶" if k % 1000 == 0 else f"{k}k"
    return str(n)


def format_percent(fraction: float, digits: int = 2) -> str:
    """``fraction`` as a percentage, e.g. ``format_percent(0.934) == "93.40 %"``."""
    return f"{100 * fraction:.{digits}f} %"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]], align: str) -> list[str]:
    """The lines of a markdown table.

    Args:
        header: the column titles.
        rows: the cells, already formatted, one sequence per row.
        align: one letter per column, ``"l"`` (left) or ``"r"`` (right).

    Raises:
        ValueError: ``align`` or a row does not have one entry per column.

    Examples:
        >>> print("\\n".join(markdown_table(["net", "accuracy"], [["baseline", "90.90 %"]], "lr")))
        | net | accuracy |
        |---|---:|
        | baseline | 90.90 % |
    """
    if len(align) != len(header) or set(align) - {"l", "r"}:
        raise ValueError(f"`align` must have one letter l or r per column ({len(header)}), but is {align!r}.")
    for row in rows:
        if len(row) != len(header):
            raise ValueError(f"Every row must have {len(header)} cells, but {list(row)!r} has {len(row)}.")
    rule = "|" + "".join("---|" if a == "l" else "---:|" for a in align)
    return ["| " + " | ".join(header) + " |", rule, *("| " + " | ".join(row) + " |" for row in rows)]


def markdown(*blocks: str | Sequence[str]) -> str:
    """A markdown document: ``blocks`` (a line, or a sequence of lines such as a list or a
    :func:`markdown_table`) separated by blank lines, ending with a newline; empty blocks
    are left out.

    Examples:
        >>> markdown("# Title", "Some text.", ["- a", "- b"], [])
        '# Title\\n\\nSome text.\\n\\n- a\\n- b\\n'
    """
    return "\n\n".join(b if isinstance(b, str) else "\n".join(b) for b in blocks if b) + "\n"


_NUMBER = re.compile(r"(?<![\w.])(\d{1,3}(?:,\d{3})+|\d+)(?:\.(\d+))?(?!\w)(\s?%)?")


def _scalars(document: Any, max_list: int) -> list[float]:
    """Every int and float in ``document`` (nested dicts and lists), lists longer than
    ``max_list`` (the curves) left out."""
    if isinstance(document, Mapping):
        return [x for v in document.values() for x in _scalars(v, max_list)]
    if isinstance(document, (list, tuple)):
        return [] if len(document) > max_list else [x for v in document for x in _scalars(v, max_list)]
    if isinstance(document, (int, float)) and not isinstance(document, bool) and math.isfinite(document):
        return [float(document)]
    return []


_SIGNED_NUMBER = re.compile(
    r"(?<![\w.])([-−]?)(\d{1,3}(?:,\d{3})+|\d+)(?:\.(\d+))?(?:e([-+]?\d+))?(?!\w)(\s?%)?")


def untraced_numbers(text: str, document: Any, *, max_list: int = 100, signed: bool = False) -> list[str]:
    """The numbers printed in ``text`` that no number of ``document`` rounds to as printed.

    A number is a run of digits (with ``,`` thousands separators and decimals) that is not
    part of a word (``fc1``, ``E3``, ``cnn_10epochs`` are names, not numbers). It is traced
    when some number ``v`` of the document (a JSON document as read back; lists longer
    than ``max_list``, the curves, are left out so that they cannot match by chance)
    printed with the same decimals gives it — ``100 v`` too when it is followed by ``%``.
    With ``signed``, a ``-`` or ``−`` right before a number (not after a digit, so
    ``0.1-1`` stays a range) is its sign, and ``9.58e-05`` is one number, traced by a ``v``
    printed with as many digits in the same notation.

    Examples:
        >>> doc = {"accuracy": 0.99304, "steps": 8593, "speedup": 1.6812, "curve": list(range(200))}
        >>> untraced_numbers("99.30 % after 8,593 steps, 1.68× sooner", doc)
        []
        >>> untraced_numbers("1.69× sooner at step 150", doc)
        ['1.69', '150']
        >>> doc = {"slope": -0.9621, "target": 1e-05, "ratio": 1.43e11}
        >>> untraced_numbers("slope -0.962, target 1e-05, ratio 1.43e+11, lr 0.001-1", doc, signed=True)
        ['0.001', '1']
        >>> untraced_numbers("slope 0.962 and −0.96, 1.4e+11 not 1.5e+11", doc, signed=True)
        ['0.962', '1.5e+11']
    """
    values = np.asarray(_scalars(document, max_list), dtype=np.float64)
    missing = []
    for match in (_SIGNED_NUMBER if signed else _NUMBER).finditer(text):
        if signed:
            sign, whole, decimals, exponent, percent = match.groups()
        else:
            (whole, decimals, percent), sign, exponent = match.groups(), "", None
        printed = whole.replace(",", "") + ("" if decimals is None else "." + decimals)
        digits = 0 if decimals is None else len(decimals)
        negative = -1.0 if sign else 1.0
        if exponent is not None:
            target = negative * float(f"{printed}e{exponent}")
            found = any(float(f"{v:.{digits}e}") == target
                        for v in values[np.abs(values - target) <= abs(target) * 10.0 ** -digits])
        else:
            target, tolerance = negative * float(printed), 10.0 ** -digits
            found = False
            for scale in (1.0, 100.0) if percent else (1.0,):
                near = values[np.abs(scale * values - target) <= tolerance]
                if any(f"{scale * v:.{digits}f}" == f"{target:.{digits}f}" for v in near):
                    found = True
                    break
        if not found:
            missing.append(match.group(0).strip().rstrip("%").strip())
    return missing


# --------------------------------------------------------------------------------------
# Figures
# --------------------------------------------------------------------------------------


def figure_panels(
    rows: int,
    cols: int,
    *,
    panel_size: tuple[float, float],
    title: str,
    xlabel: str | None = None,
    ylabel: str | None = None,
    xscale: str | None = None,
    yscale: str | None = None,
    layout: str | None = None,
    **subplots: Any,
):
    """A ``matplotlib.figure.Figure`` (not registered with pyplot) of ``rows × cols`` panels.

    Every panel gets the scales, grid lines (major and minor) and ``xlabel``; the first
    column gets ``ylabel``; the figure gets ``title``.

    Args:
        rows, cols: the grid of panels.
        panel_size: ``(width, height)`` of one panel in inches.
        title: the figure's title.
        xlabel, ylabel: axis labels (``None``: none).
        xscale, yscale: axis scales such as ``"log"`` (``None``: linear).
        layout: the figure's layout engine (``"constrained"``, or ``None``).
        **subplots: passed to ``Figure.subplots`` (``sharex``, ``sharey``).

    Returns:
        ``(figure, axes)`` with ``axes`` a ``(rows, cols)`` array.

    Examples:
        >>> fig, axes = figure_panels(1, 2, panel_size=(4, 3), title="t", yscale="log")
        >>> axes.shape, fig.get_size_inches().tolist(), axes[0, 1].get_yscale()
        ((1, 2), [8.0, 3.0], 'log')
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(panel_size[0] * cols, panel_size[1] * rows), layout=layout)
    axes = np.asarray(fig.subplots(rows, cols, squeeze=False, **subplots))
    for ax in axes.flat:
        if xscale is not None:
            ax.set_xscale(xscale)
        if yscale is not None:
            ax.set_yscale(yscale)
        if xlabel is not None:
            ax.set_xlabel(xlabel)
        ax.grid(True, which="both", alpha=0.3)
    if ylabel is not None:
        for ax in axes[:, 0]:
            ax.set_ylabel(ylabel)
    fig.suptitle(title)
    return fig, axes


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


# --------------------------------------------------------------------------------------
# The document and the files
# --------------------------------------------------------------------------------------


def log_spaced_indices(n: int, points: int = 300) -> np.ndarray:
    """About ``points`` indices of ``range(n)``, log-spaced, the first and the last included
    (all of them when ``n <= points``): how a long curve is thinned for the JSON.

    Examples:
        >>> log_spaced_indices(1000, 5).tolist()
        [0, 5, 31, 177, 999]
    """
    if n <= points:
        return np.arange(n)
    idx = np.unique(np.round(np.logspace(0, math.log10(n), points)).astype(int) - 1)
    return np.unique(np.concatenate([[0], idx, [n - 1]]))


def load_average() -> list[float]:
    """The machine's 1-, 5- and 15-minute load averages (NaN where the platform has none)."""
    try:
        return list(os.getloadavg())
    except OSError:
        return [float("nan")] * 3


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
