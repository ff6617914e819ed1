"""Reading trajectories: first hits of a level, log–log slopes, rounding for reports.

Small NumPy functions that every experiment and several verify checks measure with:

* :func:`first_hit` — the first recorded step at which a curve reaches a level;
* :func:`loglog_slope` — the least-squares slope of :math:`\\log y` against :math:`\\log x`
  (orders of convergence, escape-time exponents, speed-up growth);
* :func:`significant` — floats rounded to a number of significant digits for JSON reports.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["first_hit", "loglog_slope", "significant"]


def first_hit(steps: Any, values: Any, level: float, *, max_step: int | None = None) -> np.ndarray:
    """The first recorded step with ``values <= level`` along the last axis, else -1.

    Args:
        steps: ``(T,)`` the recorded steps.
        values: ``(..., T)`` the recorded values (losses, excess losses).
        level: the level to reach.
        max_step: records after this step are ignored.

    Returns:
        An int array of the leading shape of ``values`` (a 0-d array for one curve).

    Examples:
        >>> int(first_hit([0, 10, 20, 30], [4.0, 2.0, 0.5, 0.1], 1.0))
        20
        >>> first_hit([0, 10, 20], [[3.0, 2.0, 1.0], [3.0, 3.0, 3.0]], 1.5).tolist()
        [20, -1]
    """
    steps = np.asarray(steps)
    hit = np.asarray(values) <= level
    if max_step is not None:
        hit = hit & (steps <= max_step)
    index = np.argmax(hit, axis=-1)
    return np.where(hit.any(axis=-1), steps[index], -1)


def loglog_slope(x: Any, y: Any) -> float:
    """The least-squares slope of ``log(y)`` against ``log(x)`` (positive ``x`` and ``y``).

    Examples:
        >>> round(loglog_slope([1.0, 2.0, 4.0], [3.0, 12.0, 48.0]), 12)
        2.0
    """
    return float(np.polyfit(np.log(np.asarray(x, np.float64)), np.log(np.asarray(y, np.float64)), 1)[0])


def significant(x: Any, digits: int = 6) -> np.ndarray:
    """Floats rounded to ``digits`` significant digits (same shape; non-finite values kept).

    Examples:
        >>> significant([3.14159265, float("inf")], 3).tolist()
        [3.14, inf]
    """
    arr = np.asarray(x, dtype=np.float64)
    out = np.array([float(f"{v:.{digits}g}") if np.isfinite(v) else v for v in arr.ravel()])
    return out.reshape(arr.shape)
