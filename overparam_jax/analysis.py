"""Reading trajectories: first hits of a level, log–log slopes, rounding for reports.

Small NumPy functions that every experiment and several verify checks measure with:

* :func:`first_hit` — the first recorded step at which a curve reaches a level;
* :func:`crossover_step` — the first recorded step from which one curve stays below another;
* :func:`max_rise` — how far a curve ever climbs above its running minimum (a loss that
  should only fall);
* :func:`last_finite`, :func:`max_finite` — a curve's last and largest finite values
  (a run that diverged holds non-finite records);
* :func:`moving_average` — a trailing or centered moving average (noisy batch losses);
* :func:`loglog_slope` — the least-squares slope of :math:`\\log y` against :math:`\\log x`
  (orders of convergence, escape-time exponents, speed-up growth);
* :func:`significant` — floats rounded to a number of significant digits for JSON reports.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = [
    "crossover_step",
    "first_hit",
    "last_finite",
    "loglog_slope",
    "max_finite",
    "max_rise",
    "moving_average",
    "significant",
]


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


def crossover_step(steps: Any, a: Any, b: Any) -> np.ndarray:
    """The first recorded step from which ``a < b`` at every later record (``a`` overtakes
    ``b`` for good), along the last axis; -1 where ``a`` is not below ``b`` at the last record.

    A NaN on either side counts as "not below".

    Args:
        steps: ``(T,)`` the recorded steps.
        a, b: ``(..., T)`` two curves recorded at ``steps`` (broadcast together).

    Returns:
        An int array of the leading shape (a 0-d array for one pair of curves).

    Examples:
        >>> int(crossover_step([0, 10, 20, 30, 40], [5.0, 4.0, 2.0, 3.0, 1.0], [5.0, 3.0, 3.0, 2.0, 2.0]))
        40
        >>> crossover_step([0, 10, 20], [[1.0, 1.0, 1.0], [3.0, 1.0, 3.0]], [2.0, 2.0, 2.0]).tolist()
        [0, -1]
    """
    steps = np.asarray(steps)
    below = np.asarray(a) < np.asarray(b)
    n = below.shape[-1]
    last_not_below = n - 1 - np.argmax(~below[..., ::-1], axis=-1)
    start = np.where((~below).any(axis=-1), last_not_below + 1, 0)
    return np.where(below[..., -1], steps[np.minimum(start, n - 1)], -1)


def max_rise(values: Any) -> np.ndarray:
    r"""Along the last axis, the largest relative rise of a positive curve above its running
    minimum, :math:`\max_t v_t / \min_{s \le t} v_s - 1` (0 for a non-increasing curve;
    ``inf`` where any value is not finite).

    Examples:
        >>> max_rise([[4.0, 2.0, 3.0, 1.0], [3.0, 2.0, 2.0, 1.0]]).tolist()
        [0.5, 0.0]
        >>> float(max_rise([1.0, float("nan"), 0.5]))
        inf
    """
    v = np.asarray(values, dtype=np.float64)
    finite = np.all(np.isfinite(v), axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        rise = np.max(v / np.minimum.accumulate(v, axis=-1), axis=-1) - 1.0
    return np.where(finite, rise, np.inf)


def last_finite(values: Any, where: Any = True) -> np.ndarray:
    """Along the last axis, the last finite entry of ``values`` where ``where`` holds (NaN if none).

    Examples:
        >>> last_finite([[1.0, 2.0, float("nan")], [float("inf"), 4.0, 5.0]]).tolist()
        [2.0, 5.0]
        >>> last_finite([1.0, 2.0, 3.0], where=[True, True, False]).tolist()
        2.0
    """
    values = np.asarray(values)
    ok = np.broadcast_to(np.asarray(where) & np.isfinite(values), values.shape)
    last = values.shape[-1] - 1 - np.argmax(ok[..., ::-1], axis=-1)
    return np.where(ok.any(axis=-1), np.take_along_axis(values, last[..., None], axis=-1)[..., 0], np.nan)


def max_finite(values: Any, where: Any = True) -> np.ndarray:
    """Along the last axis, the largest finite entry of ``values`` where ``where`` holds (NaN if none).

    Examples:
        >>> max_finite([[1.0, float("inf"), 3.0], [float("nan"), float("nan"), float("nan")]]).tolist()
        [3.0, nan]
    """
    values = np.asarray(values)
    ok = np.asarray(where) & np.isfinite(values)
    return np.where(ok.any(axis=-1), np.max(np.where(ok, values, -np.inf), axis=-1), np.nan)


def moving_average(values: Any, window: int, *, centered: bool = False) -> np.ndarray:
    """Moving average of a 1-D series over ``window`` entries, shrinking at the ends.

    Trailing (default): entry ``t`` is the mean of ``values[max(0, t-window+1) : t+1]``,
    which uses no later entry. Centered: the mean of ``values[max(0, t-h) : t+h+1]`` with
    ``h = window // 2``, which does not lag.

    Examples:
        >>> moving_average([1.0, 3.0, 5.0, 7.0], 2).tolist()
        [1.0, 2.0, 4.0, 6.0]
        >>> moving_average([1.0, 3.0, 5.0, 7.0], 3, centered=True).tolist()
        [2.0, 3.0, 5.0, 6.0]
    """
    v = np.asarray(values, dtype=np.float64)
    c = np.concatenate([[0.0], np.cumsum(v)])
    t = np.arange(len(v))
    if centered:
        lo, hi = np.maximum(0, t - window // 2), np.minimum(len(v), t + window // 2 + 1)
    else:
        lo, hi = np.maximum(0, t + 1 - window), t + 1
    return (c[hi] - c[lo]) / (hi - lo)


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
