"""Input validation shared by the public functions (private module).

Every check runs in Python at trace time on static information (shapes, dtypes,
concrete values), so errors name the argument and say what was expected and what was
found, instead of surfacing later as an XLA shape error or a silent NaN. Values that are
traced (inside ``jit``/``vmap``) are not inspected: those checks only apply to concrete
inputs.
"""

from __future__ import annotations

import reprlib
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

# Entries one array can index: XLA aborts the process (not an exception) on a larger
# static shape, so sizes are checked before any array is built.
MAX_ARRAY_ENTRIES = 2**63 - 1


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


def _describe(value: Any) -> str:
    """A short description of an unexpected argument: its type and a truncated repr."""
    return f"{type(value).__name__} {reprlib.repr(value)}"


def require_real_scalar(name: str, value: Any) -> None:
    """Raise unless ``value`` is one real number: a Python ``int``/``float``, or a NumPy or
    JAX integer/floating scalar or 0-d array (traced or not). Bools, complex numbers,
    strings, ``None``, lists and arrays of other shapes are refused."""
    dtype = getattr(value, "dtype", None)
    if dtype is None:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"`{name}` must be a real number, but is {_describe(value)}.")
        return
    if not (jnp.issubdtype(dtype, jnp.integer) or jnp.issubdtype(dtype, jnp.floating)):
        raise TypeError(f"`{name}` must be a real number, but has dtype {dtype}.")
    shape = tuple(getattr(value, "shape", ()))
    if shape != ():
        raise ValueError(f"`{name}` must be a scalar, but has shape {shape}.")


def _scalar_value(name: str, value: Any) -> float | None:
    """A real scalar ``value`` (:func:`require_real_scalar`) as a float; ``None`` if traced."""
    require_real_scalar(name, value)
    if not is_concrete(value):
        return None
    try:
        return float(np.asarray(value))
    except OverflowError:  # a Python int beyond the float range
        return float("inf") if value > 0 else float("-inf")


def require_finite_scalar(name: str, value: Any) -> None:
    """Raise unless ``value`` is a real scalar that, when concrete, is finite."""
    v = _scalar_value(name, value)
    if v is not None and not np.isfinite(v):
        raise ValueError(f"`{name}` must be finite, but is {v}.")


def require_positive(name: str, value: Any, *, allow_zero: bool = False) -> None:
    """Raise unless ``value`` is a real scalar (:func:`require_real_scalar`) that, when
    concrete, is positive (non-negative with ``allow_zero``) and finite."""
    v = _scalar_value(name, value)
    if v is None:
        return
    if np.isnan(v) or v < 0 or (v == 0 and not allow_zero):
        expected = "non-negative" if allow_zero else "positive"
        raise ValueError(f"`{name}` must be {expected}, but is {v}.")
    if np.isinf(v):
        raise ValueError(f"`{name}` must be finite, but is {v}.")


def require_regression_data(X: Any, Y: Any) -> None:
    """``X`` ``(m, d_0)`` and ``Y`` ``(m, d_N)``: real floating matrices with the same number
    of rows (samples)."""
    require_float_array("X", X, ndim=2)
    require_float_array("Y", Y, ndim=2)
    if X.shape[0] != Y.shape[0]:
        raise ValueError(
            f"`X` and `Y` must have the same number of rows (samples), got X {tuple(X.shape)} "
            f"and Y {tuple(Y.shape)}."
        )


def require_depth(depth: Any) -> None:
    """``depth`` must be a real scalar; when concrete, finite and positive (a network's depth
    N, or the end-to-end dynamics' depth, which may be traced and non-integer)."""
    dtype = getattr(depth, "dtype", None)
    if dtype is None and (isinstance(depth, bool) or not isinstance(depth, (int, float))):
        raise TypeError(f"`depth` must be a real number, but is {type(depth).__name__}.")
    dtype = np.result_type(depth) if dtype is None else np.dtype(dtype)
    if np.issubdtype(dtype, np.bool_) or not (
        np.issubdtype(dtype, np.integer) or np.issubdtype(dtype, np.floating)
    ):
        raise TypeError(f"`depth` must be a real number, but has dtype {dtype}.")
    shape = tuple(np.shape(depth))
    if shape != ():
        raise ValueError(
            f"`depth` must be a scalar (vmap to sweep several depths), but has shape {shape}."
        )
    require_positive("depth", depth)
    if is_concrete(depth) and not np.isfinite(float(np.asarray(depth))):
        raise ValueError(f"`depth` must be finite, but is {float(np.asarray(depth))}.")


def require_int(name: str, value: Any, *, minimum: int | None = None) -> None:
    """Raise unless ``value`` is a Python or NumPy integer (not a bool), ``>= minimum`` if given."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"`{name}` must be an int, got {_describe(value)}.")
    if minimum is not None and value < minimum:
        raise ValueError(f"`{name}` must be >= {minimum}, got {value}.")


def require_bool(name: str, value: Any) -> None:
    """Raise unless ``value`` is ``True`` or ``False``."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"`{name}` must be True or False, got {_describe(value)}.")


def require_callable(name: str, value: Any, *, optional: bool = False) -> None:
    """Raise unless ``value`` is callable (or ``None`` when ``optional``)."""
    if not (callable(value) or (optional and value is None)):
        expected = "callable or None" if optional else "callable"
        raise TypeError(f"`{name}` must be {expected}, got {type(value).__name__}.")


def validate_run_options(loss_fn: Any, record_end_to_end: Any, progress: Any) -> None:
    """The options every trajectory function shares: a callable ``loss_fn``, a bool
    ``record_end_to_end`` and an optional callable ``progress``."""
    require_callable("loss_fn", loss_fn)
    require_bool("record_end_to_end", record_end_to_end)
    require_callable("progress", progress, optional=True)


def float_dtype(name: str, dtype: Any) -> np.dtype:
    """``dtype`` (default float64, float32 without x64) canonicalized; raise unless it is a
    real floating dtype."""
    try:
        canonical = jax.dtypes.canonicalize_dtype(jnp.float64 if dtype is None else dtype)
    except (TypeError, ValueError):
        raise TypeError(f"`{name}` must be a real floating dtype, got {_describe(dtype)}.") from None
    if not jnp.issubdtype(canonical, jnp.floating):
        raise TypeError(f"`{name}` must be a real floating dtype, got {canonical}.")
    return canonical


def require_key(name: str, key: Any) -> None:
    """Raise unless ``key`` is one PRNG key: ``jax.random.key(seed)`` (a scalar key array,
    traced or not) or a legacy ``jax.random.PRNGKey(seed)`` (``uint32`` of shape ``(2,)``)."""
    dtype = getattr(key, "dtype", None)
    shape = tuple(getattr(key, "shape", ()))
    if dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key):
        if shape != ():
            raise ValueError(f"`{name}` must be a single PRNG key, but has shape {shape}.")
        return
    if dtype is not None and np.dtype(dtype) == np.uint32 and shape == (2,):
        return
    found = f"dtype {dtype} and shape {shape}" if dtype is not None else _describe(key)
    raise TypeError(f"`{name}` must be a PRNG key from jax.random.key(seed), got {found}.")


def require_real_values(name: str, x: Any) -> np.ndarray:
    """``x`` as a NumPy array; raise unless it holds finite real numbers (any shape)."""
    try:
        arr = np.asarray(x)
    except (TypeError, ValueError):  # ragged nested sequences
        raise TypeError(f"`{name}` must hold real numbers, but is {_describe(x)}.") from None
    if arr.dtype == np.bool_ or not (
        np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)
    ):
        raise TypeError(f"`{name}` must hold real numbers, but is {_describe(x)}.")
    if not np.all(np.isfinite(arr)):
        bad = int(arr.size - np.count_nonzero(np.isfinite(arr)))
        raise ValueError(f"`{name}` must be finite, but has {bad} NaN/Inf entries.")
    return arr


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
    for j in range(1, len(dims)):
        if int(dims[j]) * int(dims[j - 1]) > MAX_ARRAY_ENTRIES:
            raise ValueError(
                f"`{name}` asks for a layer of {dims[j]} x {dims[j - 1]} entries (`{name}[{j}]` x "
                f"`{name}[{j - 1}]`), more than an array can hold ({MAX_ARRAY_ENTRIES})."
            )
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
                f"`{name}` must chain: {name}[{j}] has shape {tuple(cur)}; expected "
                f"({cur[0]}, {prev[0]}) to follow {name}[{j - 1}] of shape {tuple(prev)}."
            )
    return (params[0].shape[1],) + tuple(W.shape[0] for W in params)


def require_shape(name: str, x: Any, expected: tuple[int, ...], why: str = "") -> None:
    """Raise unless ``x.shape == expected``."""
    if not hasattr(x, "shape"):
        raise TypeError(f"`{name}` must be an array, but is {type(x).__name__}.")
    if tuple(x.shape) != tuple(expected):
        suffix = f" {why}" if why else ""
        raise ValueError(
            f"`{name}` must have shape {tuple(expected)}{suffix}, but has shape {tuple(x.shape)}."
        )
