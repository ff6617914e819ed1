"""Input validation shared by the public functions (private module).

Every check runs in Python at trace time on static information (shapes, dtypes,
concrete values), so errors name the argument and say what was expected and what was
found, instead of surfacing later as an XLA shape error or a silent NaN. Values that are
traced (inside ``jit``/``vmap``) are not inspected: those checks only apply to concrete
inputs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import numpy as np


def is_concrete(x: Any) -> bool:
    """True if ``x`` holds a value that can be inspected now (not a tracer)."""
    return not isinstance(x, jax.core.Tracer)


def require_float_array(name: str, x: Any, *, ndim: int | None = None) -> None:
    """Raise unless ``x`` is a real floating-point array (of rank ``ndim`` if given)."""
    dtype = getattr(x, "dtype", None)
    shape = getattr(x, "shape", None)
    if dtype is None or shape is None:
        raise TypeError(f"`{name}` must be an array, but is {type(x).__name__}.")
    if not np.issubdtype(dtype, np.floating):
        raise TypeError(f"`{name}` must have a real floating dtype, but has dtype {dtype}.")
    if ndim is not None and len(shape) != ndim:
        raise ValueError(f"`{name}` must have rank {ndim}, but has shape {tuple(shape)}.")
    if 0 in shape:
        raise ValueError(f"`{name}` must not be empty, but has shape {tuple(shape)}.")


def require_finite(name: str, x: Any) -> None:
    """Raise if a concrete ``x`` contains NaN or Inf (tracers are not inspected)."""
    if is_concrete(x) and not bool(np.all(np.isfinite(np.asarray(x)))):
        bad = int(np.size(x) - np.count_nonzero(np.isfinite(np.asarray(x))))
        raise ValueError(f"`{name}` must be finite, but has {bad} NaN/Inf entries.")


def require_positive(name: str, value: Any, *, allow_zero: bool = False) -> None:
    """Raise if a concrete scalar is negative (or zero unless ``allow_zero``), or NaN."""
    if not is_concrete(value):
        return
    v = float(np.asarray(value))
    if np.isnan(v) or v < 0 or (v == 0 and not allow_zero):
        expected = "non-negative" if allow_zero else "positive"
        raise ValueError(f"`{name}` must be {expected}, but is {v}.")


def validate_dims(dims: Sequence[int], name: str = "dims") -> tuple[int, ...]:
    """Return ``dims`` as a tuple of ints ``(d_0, ..., d_N)`` with N >= 1, all positive."""
    try:
        dims = tuple(dims)
    except TypeError:
        raise TypeError(f"`{name}` must be a sequence of ints (d_0, ..., d_N), got {dims!r}.") from None
    if len(dims) < 2:
        raise ValueError(
            f"`{name}` must have at least 2 entries (d_0, ..., d_N with depth N >= 1), got {dims}."
        )
    for j, d in enumerate(dims):
        if isinstance(d, bool) or not isinstance(d, (int, np.integer)):
            raise TypeError(f"`{name}[{j}]` must be an int, got {d!r}.")
        if d <= 0:
            raise ValueError(f"`{name}[{j}]` must be positive, got {d}.")
    return tuple(int(d) for d in dims)


def validate_params(params: Any, name: str = "params") -> tuple[int, ...]:
    """Check that ``params = (W_1, ..., W_N)`` is a conforming chain; return its dims.

    ``W_j`` must have shape ``(d_j, d_{j-1})``, so ``params[j].shape[1]`` must equal
    ``params[j-1].shape[0]``. All layers must share one floating dtype.
    """
    if not isinstance(params, (tuple, list)):
        raise TypeError(
            f"`{name}` must be a tuple or list of 2-D arrays (W_1, ..., W_N), "
            f"got {type(params).__name__}."
        )
    if len(params) < 1:
        raise ValueError(f"`{name}` must hold at least one layer (depth >= 1), got none.")
    for j, W in enumerate(params):
        require_float_array(f"{name}[{j}]", W, ndim=2)
    dtypes = {np.dtype(W.dtype) for W in params}
    if len(dtypes) > 1:
        raise TypeError(f"`{name}` must share one dtype, got {sorted(str(d) for d in dtypes)}.")
    for j in range(1, len(params)):
        prev, cur = params[j - 1].shape, params[j].shape
        if cur[1] != prev[0]:
            raise ValueError(
                f"{name}[{j}] has shape {tuple(cur)}; expected ({cur[0]}, {prev[0]}) to follow "
                f"{name}[{j - 1}] of shape {tuple(prev)}."
            )
    return (params[0].shape[1],) + tuple(W.shape[0] for W in params)


def require_shape(name: str, x: Any, expected: tuple[int, ...], why: str = "") -> None:
    """Raise unless ``x.shape == expected``."""
    if tuple(x.shape) != tuple(expected):
        suffix = f" {why}" if why else ""
        raise ValueError(
            f"`{name}` must have shape {tuple(expected)}{suffix}, but has shape {tuple(x.shape)}."
        )
