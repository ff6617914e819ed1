"""Bad input, tried systematically (issue 11): the public API and the command line.

Every public function is called with each of its arguments replaced, one at a time, by
a bad value of that argument's kind: wrong ranks, shapes that do not match the other
arguments, empty arrays, NaN/Inf entries, zero/negative/huge sizes, wrong dtypes (int,
complex, bool), Python lists, strings, ``None``. Hypothesis draws the valid arguments
around the bad one (the deterministic profile of conftest.py). Each call must either

* raise ``ValueError``/``TypeError`` whose message names the argument in backticks, or
* work, and then return what the function documents (shapes, real floating dtype,
  finite values where every input was finite).

Never an exception of another type, a hang, or a silent NaN. NaN/Inf *inputs* may only
get through where the docs say so: weights propagate non-finite values (networks.py,
losses.py) and trajectories report them in ``diverged_at`` (dynamics.py); everything
else must refuse them. Each example also makes the valid call, whose result must be
finite. The CLI part runs ``overparam_jax.cli.main`` in-process on inputs that are
rejected before any training.
"""

from __future__ import annotations

import contextlib
import functools
import math
import re
import signal
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import overparam_jax as oj
from overparam_jax import datasets, theory
from overparam_jax.cli import main

RAISE, NONFINITE, MAYBE = "must raise", "non-finite", "may work"

# NaN/Inf inputs are deliberate here; NumPy says so when a NumPy operand meets them.
pytestmark = pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")

# --------------------------------------------------------------------------------------
# Corruptions: (label, make(value, draw) -> bad value, expectation)
# --------------------------------------------------------------------------------------


# Corruptions are built with NumPy: a JAX op would compile for each new shape.


def _np(v):
    return np.asarray(v)


def _set(v, index, value):
    out = np.array(v)
    out[index] = value
    return out


def _row(v):
    return np.concatenate([_np(v), _np(v)[:1]], axis=0)


def _col(v):
    return np.concatenate([_np(v), _np(v)[:, :1]], axis=1)


MATRIX = [
    ("rank 1", lambda v, d: _np(v)[0], RAISE),
    ("rank 3", lambda v, d: _np(v)[None], RAISE),
    ("rank 0", lambda v, d: _np(v)[0, 0], RAISE),
    ("extra row", lambda v, d: _row(v), RAISE),
    ("extra column", lambda v, d: _col(v), RAISE),
    ("no rows", lambda v, d: np.zeros((0, v.shape[1]), v.dtype), RAISE),
    ("no columns", lambda v, d: np.zeros((v.shape[0], 0), v.dtype), RAISE),
    ("NaN entry", lambda v, d: _set(v, (0, 0), np.nan), NONFINITE),
    ("Inf entry", lambda v, d: _set(v, (-1, -1), -np.inf), NONFINITE),
    ("int dtype", lambda v, d: np.round(_np(v)).astype(np.int32), RAISE),
    ("complex dtype", lambda v, d: _np(v).astype(np.complex128), RAISE),
    ("bool dtype", lambda v, d: _np(v) > 0, RAISE),
    ("Python list", lambda v, d: _np(v).tolist(), RAISE),
    ("string", lambda v, d: "W", RAISE),
    ("None", lambda v, d: None, RAISE),
    ("float32", lambda v, d: _np(v).astype(np.float32), MAYBE),
]

PARAMS = [
    ("broken chain", lambda p, d: _break_chain(p), RAISE),
    ("no layers", lambda p, d: (), RAISE),
    ("bare array", lambda p, d: p[0], RAISE),
    ("1-D layer", lambda p, d: (_np(p[0])[0],) + tuple(p[1:]), RAISE),
    ("int layer", lambda p, d: (np.round(_np(p[0])).astype(np.int32),) + tuple(p[1:]), RAISE),
    ("complex layer", lambda p, d: (_np(p[0]).astype(np.complex128),) + tuple(p[1:]), RAISE),
    ("empty layer", lambda p, d: (np.zeros((0, p[0].shape[1])),) + tuple(p[1:]), RAISE),
    ("mixed dtypes", lambda p, d: _mixed(p), RAISE),
    ("nested lists", lambda p, d: tuple(_np(W).tolist() for W in p), RAISE),
    ("string", lambda p, d: "params", RAISE),
    ("None", lambda p, d: None, RAISE),
    ("NaN entry", lambda p, d: (_set(p[0], (0, 0), np.nan),) + tuple(p[1:]), NONFINITE),
    ("Inf entry", lambda p, d: tuple(p[:-1]) + (_set(p[-1], (0, -1), np.inf),), NONFINITE),
    ("list container", lambda p, d: list(p), MAYBE),
]


def _break_chain(params):
    """A layer whose input size does not match the previous layer's output size."""
    last = params[-1]
    return tuple(params) + (np.ones((1, last.shape[0] + 1), last.dtype),)


def _mixed(params):
    if len(params) == 1:
        return (params[0], np.ones((1, params[0].shape[0]), np.float32))
    return (_np(params[0]).astype(np.float32),) + tuple(params[1:])


DIMS = [
    ("one entry", lambda v, d: tuple(v)[:1], RAISE),
    ("empty", lambda v, d: (), RAISE),
    ("zero width", lambda v, d: (0,) + tuple(v)[1:], RAISE),
    ("negative width", lambda v, d: tuple(v)[:-1] + (-2,), RAISE),
    ("float width", lambda v, d: (float(v[0]),) + tuple(v)[1:], RAISE),
    ("bool width", lambda v, d: (True,) + tuple(v)[1:], RAISE),
    ("string", lambda v, d: "23", RAISE),
    ("None", lambda v, d: None, RAISE),
    ("int", lambda v, d: 3, RAISE),
    ("overflowing size", lambda v, d: (2**40,) * len(v), RAISE),
    ("NumPy array", lambda v, d: np.asarray(v), MAYBE),
    ("list", lambda v, d: list(v), MAYBE),
]

_num = lambda v: 0.5 if v is None else v  # noqa: E731 - scalars whose valid value is None
_SCALAR_COMMON = [
    ("negative", lambda v, d: -abs(float(_num(v))) - 0.5, RAISE),
    ("NaN", lambda v, d: float("nan"), NONFINITE),
    ("Inf", lambda v, d: float("inf"), NONFINITE),
    ("-Inf", lambda v, d: -float("inf"), NONFINITE),
    ("int beyond float range", lambda v, d: 10**400, RAISE),
    ("complex", lambda v, d: complex(_num(v), 1.0), RAISE),
    ("complex array", lambda v, d: np.asarray(complex(_num(v), 1.0)), RAISE),
    ("string", lambda v, d: str(_num(v)), RAISE),
    ("None", lambda v, d: None, RAISE),
    ("bool", lambda v, d: True, RAISE),
    ("list", lambda v, d: [_num(v)], RAISE),
    ("vector", lambda v, d: np.full((2,), float(_num(v))), RAISE),
    ("NumPy float32", lambda v, d: np.float32(_num(v)), MAYBE),
    ("0-d array", lambda v, d: jnp.asarray(float(_num(v))), MAYBE),
]
POSITIVE = [("zero", lambda v, d: 0.0, RAISE)] + _SCALAR_COMMON
NON_NEGATIVE = [("zero", lambda v, d: 0.0, MAYBE)] + _SCALAR_COMMON
REAL = [entry for entry in _SCALAR_COMMON if entry[0] != "negative"] + [
    ("negative", lambda v, d: -float(v), MAYBE),
]


def _ints(minimum: int, *, huge: str | None = RAISE, optional: bool = False):
    below = minimum - 1
    num = lambda v: minimum + 2 if v is None else v  # noqa: E731
    return [
        (f"{below}", lambda v, d: below, RAISE),
        ("-3", lambda v, d: -3, RAISE),
        ("fraction", lambda v, d: num(v) + 0.5, RAISE),
        ("integral float", lambda v, d: float(num(v)), MAYBE),
        ("string", lambda v, d: str(num(v)), RAISE),
        ("None", lambda v, d: None, MAYBE if optional else RAISE),
        ("bool", lambda v, d: True, RAISE),
        ("NaN", lambda v, d: float("nan"), RAISE),
        ("list", lambda v, d: [num(v)], RAISE),
        ("NumPy int", lambda v, d: np.int64(num(v)), MAYBE),
    ] + ([("10**20", lambda v, d: 10**20, huge)] if huge else [])


CALLABLE = [
    ("None", lambda v, d: None, RAISE),
    ("int", lambda v, d: 3, RAISE),
    ("string", lambda v, d: "l2", RAISE),
    ("list", lambda v, d: [v], RAISE),
]
OPTIONAL_CALLABLE = [entry for entry in CALLABLE if entry[0] != "None"] + [
    ("None", lambda v, d: None, MAYBE),
]
FLAG = [
    ("list", lambda v, d: [1], RAISE),
    ("string", lambda v, d: "yes", RAISE),
    ("None", lambda v, d: None, RAISE),
    ("int", lambda v, d: 1, RAISE),
    ("NumPy bool", lambda v, d: np.bool_(v), MAYBE),
]
CHOICE = [
    ("unknown", lambda v, d: "nope", RAISE),
    ("None", lambda v, d: None, RAISE),
    ("int", lambda v, d: 3, RAISE),
    ("list", lambda v, d: [v], RAISE),
]
KEY = [
    ("int", lambda v, d: 0, RAISE),
    ("None", lambda v, d: None, RAISE),
    ("string", lambda v, d: "key", RAISE),
    ("float array", lambda v, d: jnp.zeros(2), RAISE),
    ("batch of keys", lambda v, d: jax.random.split(v, 2), RAISE),
    ("legacy PRNGKey", lambda v, d: jax.random.PRNGKey(3), MAYBE),
]
DTYPE = [
    ("int", lambda v, d: jnp.int32, RAISE),
    ("complex", lambda v, d: jnp.complex64, RAISE),
    ("bool", lambda v, d: bool, RAISE),
    ("string", lambda v, d: "foo", RAISE),
    ("list", lambda v, d: [1], RAISE),
    ("float32", lambda v, d: jnp.float32, MAYBE),
]
OPTIMIZER = [
    ("string", lambda v, d: "adam", RAISE),
    ("None", lambda v, d: None, RAISE),
    ("factory", lambda v, d: optax.adam, RAISE),
]
REAL_ARRAY = [
    ("string", lambda v, d: "abc", RAISE),
    ("None", lambda v, d: None, RAISE),
    ("complex", lambda v, d: np.asarray(v) + 1j, RAISE),
    ("bool", lambda v, d: np.asarray(v) > 0, RAISE),
    ("ragged", lambda v, d: [[1.0], [1.0, 2.0]], RAISE),
    ("NaN entry", lambda v, d: np.where(np.arange(np.size(v)).reshape(np.shape(v)) == 0, np.nan, v), NONFINITE),
    ("Inf entry", lambda v, d: np.full(np.shape(v), np.inf), NONFINITE),
    ("length 7", lambda v, d: np.ones(7), RAISE),
    ("list", lambda v, d: np.asarray(v).tolist(), MAYBE),
]
AXIS = [
    ("empty", lambda v, d: [], RAISE),
    ("None", lambda v, d: None, RAISE),
    ("string", lambda v, d: "0.1", RAISE),
    ("strings", lambda v, d: ["a"], RAISE),
    ("nested", lambda v, d: [list(v)], RAISE),
    ("complex", lambda v, d: [1j], RAISE),
    ("bools", lambda v, d: [True], RAISE),
    ("NaN", lambda v, d: [float("nan")], RAISE),
    ("Inf", lambda v, d: [float("inf")], RAISE),
    ("negative", lambda v, d: [-1], RAISE),
    ("fraction", lambda v, d: [1.5], MAYBE),
    ("zero", lambda v, d: [0], MAYBE),
    ("NumPy array", lambda v, d: np.asarray(v), MAYBE),
    ("tuple", lambda v, d: tuple(v), MAYBE),
]


def merge(*tables):
    """The entries of ``tables``, the first one of each label."""
    seen, merged = set(), []
    for table in tables:
        for entry in table:
            if entry[0] not in seen:
                seen.add(entry[0])
                merged.append(entry)
    return merged


def overrides(table, **changes):
    """``table`` with the expectations of some labels changed (``label=expectation``)."""
    changes = {k.replace("_", " "): v for k, v in changes.items()}
    return [(label, make, changes.get(label, expect)) for label, make, expect in table]


# --------------------------------------------------------------------------------------
# Valid inputs
# --------------------------------------------------------------------------------------

ELEMENTS = st.floats(-2.0, 2.0, allow_nan=False, allow_infinity=False)


def matrix(draw, shape):
    """A float64 array, NumPy or JAX (the library takes both)."""
    x = draw(hnp.arrays(np.float64, shape, elements=ELEMENTS))
    return jnp.asarray(x) if draw(st.booleans()) else x


def draw_dims(draw, *, min_depth=1, max_depth=3, width=(1, 3)):
    depth = draw(st.integers(min_depth, max_depth))
    return tuple(draw(st.integers(*width)) for _ in range(depth + 1))


def params_for(draw, dims):
    return tuple(matrix(draw, (dims[j + 1], dims[j])) for j in range(len(dims) - 1))


@functools.lru_cache(maxsize=None)
def whitened_loss(shape):
    """One loss object per shape, so that jitted callers compile once per shape."""
    Phi = jnp.asarray(np.random.default_rng(sum(shape)).normal(size=shape))
    return functools.partial(oj.whitened_l2_loss, Phi=Phi)


@functools.lru_cache(maxsize=None)
def lp4_loss(shape):
    rng = np.random.default_rng(7 + sum(shape))
    X = jnp.asarray(rng.normal(size=(5, shape[1])))
    Y = jnp.asarray(rng.normal(size=(5, shape[0])))
    return functools.partial(oj.lp_loss, X=X, Y=Y, p=4.0)


@functools.lru_cache(maxsize=None)
def linear_loss(shape):
    C = jnp.asarray(np.random.default_rng(3).normal(size=shape))

    def loss(W_e):
        if W_e.shape != shape:
            raise ValueError(f"`W_e` must have shape {shape}, but has shape {W_e.shape}.")
        return jnp.sum(C * W_e)

    return loss


LOSSES = {"whitened l2": whitened_loss, "l4": lp4_loss, "linear": linear_loss}


def draw_loss(draw, shape, kinds=tuple(LOSSES)):
    return LOSSES[draw(st.sampled_from(kinds))](shape)


# --------------------------------------------------------------------------------------
# Checks of results
# --------------------------------------------------------------------------------------


def check_array(out, shape=None, finite=True, dtype=None):
    assert isinstance(out, (jax.Array, np.ndarray)), f"returned {type(out).__name__}"
    assert jnp.issubdtype(out.dtype, jnp.floating), f"returned dtype {out.dtype}"
    if dtype is not None:
        assert out.dtype == jnp.dtype(dtype), f"returned dtype {out.dtype}, expected {dtype}"
    if shape is not None:
        assert out.shape == tuple(shape), f"returned shape {out.shape}, expected {tuple(shape)}"
    if finite:
        assert np.all(np.isfinite(np.asarray(out))), f"non-finite result from finite input: {out}"


def check_nonnegative_scalar(a, out, finite):
    check_array(out, (), finite)
    assert not finite or float(out) >= 0, f"returned {out} < 0"


def _assert(condition, message):
    assert condition, message


def tol(x, factor=100.0):
    """``factor`` ulps of ``x``'s dtype."""
    return factor * float(jnp.finfo(jnp.asarray(x).dtype).eps)


def check_params(out, dims, finite=True, dtype=None):
    assert isinstance(out, tuple) and len(out) == len(dims) - 1
    for j, W in enumerate(out):
        check_array(W, (dims[j + 1], dims[j]), finite, dtype)


def dims_of(params):
    return (params[0].shape[1],) + tuple(np.shape(W)[0] for W in params)


def check_trajectory(traj, args, finite, num_steps, final_shape):
    T = num_steps // args.get("save_every", 1) + 1
    for name in ("time", "loss", "balancedness", "norm", "sigma_min"):
        check_array(getattr(traj, name), (T,), finite=finite)
    assert traj.step.shape == (T,) and jnp.issubdtype(traj.step.dtype, jnp.integer)
    assert traj.diverged_at.shape == ()
    if args.get("record_end_to_end"):
        assert traj.end_to_end.shape[0] == T
    if finite:  # divergence is data: the records stay finite even when a run diverges
        for leaf in jax.tree_util.tree_leaves((traj.final, traj.end_to_end)):
            check_array(leaf, finite=True)
    else:  # a non-finite start is reported as divergence, never silently
        assert int(traj.diverged_at) >= 0 or num_steps == 0
    final = traj.final if isinstance(traj.final, tuple) else (traj.final,)
    assert [tuple(np.shape(W)) for W in final] == final_shape


# --------------------------------------------------------------------------------------
# The functions: how to call them, valid arguments, kinds of their arguments, checks
# --------------------------------------------------------------------------------------


class Spec(NamedTuple):
    call: Callable[[dict], Any]
    valid: Callable[[Any], dict]  # draw -> arguments
    check: Callable[[dict, Any, bool], None]  # (args, result, finite_input)
    kinds: dict[str, list]  # argument -> corruptions
    nan_ok: frozenset = frozenset()  # non-finite entries documented to propagate
    domain: frozenset = frozenset()  # valid draws may hit a documented ValueError naming these
    examples: int = 3  # valid draws; each new shape or dtype compiles


SPECS: dict[str, Spec] = {}


def spec(name, **kwargs):
    kwargs["nan_ok"] = frozenset(kwargs.get("nan_ok", ()))
    kwargs["domain"] = frozenset(kwargs.get("domain", ()))
    SPECS[name] = Spec(**kwargs)


# ---- networks ------------------------------------------------------------------------


def _network_args(draw):
    return {"params": params_for(draw, draw_dims(draw))}


spec("end_to_end",
     call=lambda a: oj.end_to_end(a["params"]),
     valid=_network_args,
     check=lambda a, out, finite: check_array(out, (dims_of(a["params"])[-1], dims_of(a["params"])[0]), finite),
     kinds={"params": PARAMS}, nan_ok={"params"}, examples=4)


def _layer_gradients_args(draw):
    params = params_for(draw, draw_dims(draw))
    dims = dims_of(params)
    return {"params": params, "grad_W_e": matrix(draw, (dims[-1], dims[0]))}


spec("layer_gradients",
     call=lambda a: oj.layer_gradients(a["params"], a["grad_W_e"]),
     valid=_layer_gradients_args,
     check=lambda a, out, finite: check_params(out, dims_of(a["params"]), finite),
     kinds={"params": PARAMS, "grad_W_e": MATRIX}, nan_ok={"params", "grad_W_e"})


def _factorization_args(draw):
    dims = list(draw_dims(draw))
    r = min(dims[0], dims[-1])
    dims[1:-1] = [max(d, r) for d in dims[1:-1]]
    return {"A": matrix(draw, (dims[-1], dims[0])), "dims": tuple(dims)}


def _check_factorization(a, out, finite):
    dims = tuple(int(d) for d in a["dims"])
    check_params(out, dims, finite)
    scale = max(1.0, float(jnp.max(jnp.abs(a["A"]))))
    np.testing.assert_allclose(oj.end_to_end(out), a["A"], atol=tol(out[0]) * scale)
    assert float(oj.balancedness(out)) <= tol(out[0]) * scale**2


spec("balanced_factorization",
     call=lambda a: oj.balanced_factorization(a["A"], a["dims"]),
     valid=_factorization_args, check=_check_factorization,
     kinds={"A": MATRIX, "dims": overrides(DIMS, list=MAYBE)}, examples=2)


def _init_args(draw):
    return {"key": jax.random.key(draw(st.integers(0, 3))), "dims": _factorization_args(draw)["dims"],
            "std": draw(st.floats(0.0, 2.0)), "dtype": draw(st.sampled_from([None, jnp.float64]))}


def _check_init(a, out, finite):
    dtype = jnp.float64 if a["dtype"] is None else a["dtype"]
    check_params(out, tuple(int(d) for d in a["dims"]), finite, dtype)


for _name, _fn in (("init_balanced", oj.init_balanced), ("init_gaussian", oj.init_gaussian)):
    spec(_name,
         call=functools.partial(lambda fn, a: fn(a["key"], a["dims"], std=a["std"], dtype=a["dtype"]), _fn),
         valid=_init_args, check=_check_init,
         kinds={"key": KEY, "dims": DIMS, "std": NON_NEGATIVE, "dtype": DTYPE}, examples=2)


def _identity_args(draw):
    d = draw(st.integers(1, 3))
    return {"dims": (d,) * draw(st.integers(2, 4)), "scale": draw(ELEMENTS),
            "dtype": draw(st.sampled_from([None, jnp.float64]))}


spec("init_identity",
     call=lambda a: oj.init_identity(a["dims"], scale=a["scale"], dtype=a["dtype"]),
     valid=_identity_args, check=_check_init,
     kinds={"dims": overrides(DIMS, one_entry=RAISE), "scale": REAL, "dtype": DTYPE}, examples=4)

spec("balancedness",
     call=lambda a: oj.balancedness(a["params"]),
     valid=_network_args,
     check=check_nonnegative_scalar,
     kinds={"params": PARAMS}, nan_ok={"params"}, examples=4)

spec("network_dims",
     call=lambda a: oj.network_dims(a["params"]),
     valid=_network_args,
     check=lambda a, out, finite: _assert(out == dims_of(a["params"]), f"returned {out}"),
     kinds={"params": PARAMS}, nan_ok={"params"}, examples=6)


def _margin_args(draw):
    shape = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    return {"W_e": matrix(draw, shape), "Phi": matrix(draw, shape)}


spec("deficiency_margin",
     call=lambda a: oj.deficiency_margin(a["W_e"], a["Phi"]),
     valid=_margin_args,
     check=lambda a, out, finite: check_array(out, (), finite),
     kinds={"W_e": MATRIX, "Phi": MATRIX}, nan_ok={"W_e"}, examples=4)

# ---- losses --------------------------------------------------------------------------


def _lp_args(draw):
    m, d_0, d_N = (draw(st.integers(1, 4)) for _ in range(3))
    return {"W_e": matrix(draw, (d_N, d_0)), "X": matrix(draw, (m, d_0)), "Y": matrix(draw, (m, d_N)),
            "p": draw(st.sampled_from([1.0, 1.5, 2.0, 3, 4.0])), "divide_by_p": draw(st.booleans())}


spec("lp_loss",
     call=lambda a: oj.lp_loss(a["W_e"], a["X"], a["Y"], p=a["p"], divide_by_p=a["divide_by_p"]),
     valid=_lp_args,
     check=check_nonnegative_scalar,
     kinds={"W_e": MATRIX, "X": MATRIX, "Y": MATRIX,
            "p": [("0.5", lambda v, d: 0.5, RAISE)] + POSITIVE},
     nan_ok={"W_e"}, examples=4)

spec("whitened_l2_loss",
     call=lambda a: oj.whitened_l2_loss(a["W_e"], a["Phi"]),
     valid=_margin_args,
     check=check_nonnegative_scalar,
     kinds={"W_e": MATRIX, "Phi": MATRIX}, nan_ok={"W_e"}, examples=4)


def _overparameterized_args(draw):
    params = params_for(draw, draw_dims(draw))
    dims = dims_of(params)
    return {"loss_fn": draw_loss(draw, (dims[-1], dims[0])), "params": params}


spec("overparameterized",
     call=lambda a: oj.overparameterized(a["loss_fn"])(a["params"]),
     valid=_overparameterized_args,
     check=lambda a, out, finite: check_array(out, (), finite),
     kinds={"loss_fn": CALLABLE})

# ---- preconditioner ------------------------------------------------------------------

DEPTH = [("0.0", lambda v, d: 0.0, RAISE)] + _SCALAR_COMMON + [("int", lambda v, d: 2, MAYBE)]


def _apply_args(draw):
    shape = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    return {"W_e": matrix(draw, shape), "G": matrix(draw, shape), "depth": draw(st.floats(1.0, 5.0))}


spec("preconditioner_apply",
     call=lambda a: oj.preconditioner_apply(a["W_e"], a["G"], a["depth"]),
     valid=_apply_args,
     check=lambda a, out, finite: check_array(out, np.shape(a["W_e"]), finite),
     kinds={"W_e": MATRIX, "G": MATRIX, "depth": DEPTH}, examples=4)


def _eigen_args(draw):
    shape = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    return {"W_e": matrix(draw, shape), "depth": draw(st.floats(1.0, 5.0))}


def _check_eigen(a, out, finite):
    check_array(out, np.shape(a["W_e"]), finite)
    assert not finite or float(jnp.min(out)) >= 0


spec("preconditioner_eigenvalues",
     call=lambda a: oj.preconditioner_eigenvalues(a["W_e"], a["depth"]),
     valid=_eigen_args, check=_check_eigen,
     kinds={"W_e": overrides(MATRIX, extra_row=MAYBE, extra_column=MAYBE), "depth": DEPTH})


def _matrix_args(draw):
    shape = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    return {"W_e": matrix(draw, shape), "depth": draw(st.integers(1, 4))}


def _check_matrix(a, out, finite):
    n = int(np.prod(np.shape(a["W_e"])))
    check_array(out, (n, n), finite)
    np.testing.assert_allclose(out, out.T, atol=tol(out) * max(1.0, float(jnp.max(jnp.abs(out)))))


spec("preconditioner_matrix",
     call=lambda a: oj.preconditioner_matrix(a["W_e"], a["depth"]),
     valid=_matrix_args, check=_check_matrix,
     kinds={"W_e": overrides(MATRIX, extra_row=MAYBE, extra_column=MAYBE),
            "depth": merge([("2.5", lambda v, d: 2.5, RAISE), ("2**31", lambda v, d: 2**31, RAISE)],
                           _ints(1, huge=RAISE), _SCALAR_COMMON)}, examples=2)


def _single_output_args(draw):
    d = draw(st.integers(1, 4))
    shape = draw(st.sampled_from([(1, d), (d,)]))
    return {"w": matrix(draw, shape), "grad": matrix(draw, shape), "depth": draw(st.floats(1.0, 5.0))}


VECTOR = [entry for entry in MATRIX if entry[0] not in ("rank 1", "rank 0", "extra row", "extra column",
                                                        "no rows", "no columns", "NaN entry", "Inf entry")] + [
    ("2 rows", lambda v, d: np.ones((2, v.shape[-1])), RAISE),
    ("longer", lambda v, d: np.concatenate([_np(v), _np(v)], axis=-1), RAISE),
    ("empty", lambda v, d: np.zeros(v.shape[:-1] + (0,)), RAISE),
    ("scalar", lambda v, d: np.ones(()), RAISE),
    ("NaN entry", lambda v, d: _set(v, (..., 0), np.nan), NONFINITE),
    ("Inf entry", lambda v, d: _set(v, (..., -1), np.inf), NONFINITE),
]

spec("single_output_velocity",
     call=lambda a: oj.single_output_velocity(a["w"], a["grad"], a["depth"]),
     valid=_single_output_args,
     check=lambda a, out, finite: check_array(out, np.shape(a["w"]), finite),
     kinds={"w": VECTOR, "grad": VECTOR, "depth": DEPTH}, examples=4)


def _velocity_args(draw):
    params = params_for(draw, draw_dims(draw))
    dims = dims_of(params)
    return {"params": params, "loss_fn": draw_loss(draw, (dims[-1], dims[0])),
            "weight_decay": draw(st.floats(0.0, 1.0))}


spec("end_to_end_velocity",
     call=lambda a: oj.end_to_end_velocity(a["params"], a["loss_fn"], weight_decay=a["weight_decay"]),
     valid=_velocity_args,
     check=lambda a, out, finite: check_array(out, (dims_of(a["params"])[-1], dims_of(a["params"])[0]), finite),
     kinds={"params": PARAMS, "loss_fn": CALLABLE, "weight_decay": NON_NEGATIVE}, examples=2)


def _field_args(draw):
    shape = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    return {"W_e": matrix(draw, shape), "loss_fn": draw_loss(draw, shape),
            "depth": draw(st.floats(1.0, 4.0)), "weight_decay": draw(st.floats(0.0, 1.0))}


spec("end_to_end_field",
     call=lambda a: oj.end_to_end_field(a["W_e"], a["loss_fn"], a["depth"], weight_decay=a["weight_decay"]),
     valid=_field_args,
     check=lambda a, out, finite: check_array(out, np.shape(a["W_e"]), finite),
     kinds={"W_e": MATRIX, "loss_fn": CALLABLE, "depth": DEPTH, "weight_decay": NON_NEGATIVE})


def _jacobian_args(draw):
    args = _field_args(draw)
    del args["weight_decay"]
    return args


def _check_jacobian(a, out, finite):
    n = int(np.prod(np.shape(a["W_e"])))
    check_array(out, (n, n), finite)


spec("field_jacobian",
     call=lambda a: oj.field_jacobian(a["W_e"], a["loss_fn"], a["depth"]),
     valid=_jacobian_args, check=_check_jacobian,
     kinds={"W_e": MATRIX, "loss_fn": CALLABLE, "depth": DEPTH},
     domain={"W_e"}, examples=2)  # documented: full rank, distinct singular values

spec("gradient_field_asymmetry",
     call=lambda a: oj.gradient_field_asymmetry(a["W_e"], a["loss_fn"], a["depth"]),
     valid=_jacobian_args,
     check=check_nonnegative_scalar,
     kinds={"W_e": MATRIX, "loss_fn": CALLABLE, "depth": DEPTH},
     domain={"W_e"}, examples=2)

# ---- dynamics ------------------------------------------------------------------------
# Few shapes, one loss object per shape and two steps: each distinct combination compiles.

DYNAMICS_DIMS = [(2, 2), (2, 3, 2)]
STEPS = 2
SCHEDULE = {"num_steps": _ints(0, huge=RAISE), "save_every": _ints(1, huge=RAISE)}
RUN_OPTIONS = {"loss_fn": CALLABLE, "record_end_to_end": FLAG, "progress": OPTIONAL_CALLABLE}


def _run_options(draw, shape):
    return {"loss_fn": whitened_loss(shape), "record_end_to_end": False, "progress": None,
            "num_steps": STEPS, "save_every": 1}


def _gd_args(draw):
    params = params_for(draw, draw(st.sampled_from(DYNAMICS_DIMS)))
    return {**_run_options(draw, (2, 2)), "params": params,
            "learning_rate": draw(st.floats(0.0, 1.0)), "weight_decay": draw(st.floats(0.0, 0.5))}


def _check_run(a, out, finite):
    final_shape = ([tuple(W.shape) for W in a["params"]] if "params" in a else [tuple(a["W_e"].shape)])
    check_trajectory(out, a, finite, a["num_steps"] if "num_steps" in a else STEPS, final_shape)


_RUN_KW = ("num_steps", "save_every", "record_end_to_end", "progress")

spec("gradient_descent",
     call=lambda a: oj.gradient_descent(a["loss_fn"], a["params"], learning_rate=a["learning_rate"],
                                        weight_decay=a["weight_decay"], **{k: a[k] for k in _RUN_KW}),
     valid=_gd_args, check=_check_run,
     kinds={"params": PARAMS, "learning_rate": NON_NEGATIVE, "weight_decay": NON_NEGATIVE,
            **SCHEDULE, **RUN_OPTIONS},
     nan_ok={"params"}, examples=2)


def _e2e_args(draw):
    return {**_run_options(draw, (2, 2)), "W_e": matrix(draw, (2, 2)),
            "depth": draw(st.floats(1.0, 4.0)), "learning_rate": draw(st.floats(0.0, 1.0)),
            "weight_decay": draw(st.floats(0.0, 0.5))}


spec("end_to_end_descent",
     call=lambda a: oj.end_to_end_descent(a["loss_fn"], a["W_e"], depth=a["depth"],
                                          learning_rate=a["learning_rate"], weight_decay=a["weight_decay"],
                                          **{k: a[k] for k in _RUN_KW}),
     valid=_e2e_args, check=_check_run,
     kinds={"W_e": MATRIX, "depth": DEPTH, "learning_rate": NON_NEGATIVE,
            "weight_decay": NON_NEGATIVE, **SCHEDULE, **RUN_OPTIONS},
     nan_ok={"W_e"}, examples=1)


def _optax_args(draw):
    params = params_for(draw, draw(st.sampled_from(DYNAMICS_DIMS)))
    return {**_run_options(draw, (2, 2)), "params": params, "optimizer": optax.adam(1e-2)}


spec("optax_descent",
     call=lambda a: oj.optax_descent(a["loss_fn"], a["params"], a["optimizer"], **{k: a[k] for k in _RUN_KW}),
     valid=_optax_args, check=_check_run,
     kinds={"params": PARAMS, "optimizer": OPTIMIZER, **SCHEDULE, **RUN_OPTIONS},
     nan_ok={"params"}, examples=1)


def _flow_args(draw):
    params = params_for(draw, draw(st.sampled_from(DYNAMICS_DIMS)))
    dt = draw(st.sampled_from([0.25, 0.5]))
    args = {**_run_options(draw, (2, 2)), "params": params, "dt": dt, "t_final": STEPS * dt,
            "method": draw(st.sampled_from(["euler", "rk4"])), "weight_decay": draw(st.floats(0.0, 0.5))}
    del args["num_steps"]
    return args


spec("gradient_flow",
     call=lambda a: oj.gradient_flow(a["loss_fn"], a["params"], t_final=a["t_final"], dt=a["dt"],
                                     method=a["method"], weight_decay=a["weight_decay"],
                                     save_every=a["save_every"], record_end_to_end=a["record_end_to_end"],
                                     progress=a["progress"]),
     valid=_flow_args, check=_check_run,
     kinds={"params": PARAMS, "t_final": overrides(POSITIVE, NumPy_float32=MAYBE),
            "dt": POSITIVE, "method": CHOICE, "weight_decay": NON_NEGATIVE,
            "save_every": overrides(_ints(1, huge=None), integral_float=RAISE), **RUN_OPTIONS},
     nan_ok={"params"}, examples=2)

# ---- sweeps --------------------------------------------------------------------------

SWEEP_LOSS = whitened_loss((2, 3))
SWEEP_BASE = dict(input_dim=3, output_dim=2, hidden_width=3, depths=[1, 2], seeds=[0], learning_rates=[0.1],
                  init_stds=[0.5], num_steps=STEPS, save_every=1, init="balanced", dynamics="network",
                  weight_decay=0.0, record_end_to_end=False, dtype=None, progress=None)


def _check_sweep(a, out, finite):
    shape = tuple(len(np.atleast_1d(a[k])) for k in ("seeds", "learning_rates", "init_stds", "depths"))
    T = a["num_steps"] // a["save_every"] + 1
    check_array(out.trajectory.loss, shape + (T,), finite)
    check_array(out.trajectory.sigma_min, shape + (T,), finite)


spec("sweep",
     call=lambda a: oj.sweep(a["loss_fn"], **{k: v for k, v in a.items() if k != "loss_fn"}),
     valid=lambda draw: {"loss_fn": SWEEP_LOSS, **SWEEP_BASE},
     check=_check_sweep,
     kinds={"loss_fn": CALLABLE,
            "input_dim": _ints(1, huge=None), "output_dim": _ints(1, huge=None),
            "hidden_width": _ints(1, huge=RAISE) + [("below min(input, output)", lambda v, d: 1, RAISE)],
            "depths": overrides(AXIS, zero=RAISE, fraction=RAISE),
            "seeds": overrides(AXIS, fraction=RAISE, negative=MAYBE, zero=MAYBE, NaN=RAISE, Inf=RAISE),
            "learning_rates": AXIS, "init_stds": overrides(AXIS, zero=RAISE),
            "num_steps": _ints(0, huge=RAISE), "save_every": _ints(1, huge=RAISE),
            "init": CHOICE, "dynamics": CHOICE, "weight_decay": NON_NEGATIVE,
            # (a NumPy bool flag is tried on the trajectories: here it would only cost a compile)
            "record_end_to_end": [e for e in FLAG if e[0] != "NumPy bool"], "dtype": DTYPE,
            "progress": OPTIONAL_CALLABLE},
     examples=1)


def _pad_args(draw):
    dims = list(draw_dims(draw, max_depth=3))
    dims[1:-1] = [dims[1]] * (len(dims) - 2) if len(dims) > 2 else []
    params = params_for(draw, tuple(dims))
    N = len(params)
    max_depth = N + draw(st.integers(0, 2))
    hidden = None if N > 1 or max_depth == 1 else dims[-1] + draw(st.integers(0, 1))
    return {"params": params, "max_depth": max_depth, "hidden_width": hidden}


def _check_pad(a, out, finite):
    layers, mask, _ = out
    assert len(layers) == len(mask) == a["max_depth"]
    for W, M in zip(layers, mask):
        check_array(W, finite=finite)
        assert W.shape == M.shape
    if finite:
        np.testing.assert_allclose(oj.end_to_end(layers), oj.end_to_end(a["params"]), atol=tol(layers[0]) * 10)


spec("pad_to_depth",
     call=lambda a: oj.pad_to_depth(a["params"], a["max_depth"], hidden_width=a["hidden_width"]),
     valid=_pad_args, check=_check_pad,
     kinds={"params": PARAMS, "max_depth": _ints(1, huge=None),
            # documented as needed only to pad depth 1: ignored otherwise
            "hidden_width": overrides(_ints(1, huge=None, optional=True), **{"0": MAYBE, "-3": MAYBE})},
     nan_ok={"params"}, domain={"hidden_width"}, examples=4)

# ---- datasets ------------------------------------------------------------------------


def _standardize_args(draw):
    shape = (draw(st.integers(1, 5)), draw(st.integers(1, 3)))
    return {"X": matrix(draw, shape)}


def _check_standardize(a, out, finite):
    check_array(out, np.shape(a["X"]), finite)
    if finite:
        np.testing.assert_allclose(np.mean(out, axis=0), 0.0, atol=tol(out, 1e4))
        np.testing.assert_allclose(np.std(out, axis=0), 1.0, rtol=tol(out, 1e4))


spec("standardize_columns",
     call=lambda a: oj.standardize_columns(a["X"]),
     valid=_standardize_args, check=_check_standardize,
     kinds={"X": overrides(MATRIX, extra_row=MAYBE, extra_column=MAYBE)},
     domain={"X"}, examples=6)  # documented: a constant column


def _whiten_args(draw):
    m = draw(st.integers(2, 6))
    return {"X": matrix(draw, (m, draw(st.integers(1, 3)))), "Y": matrix(draw, (m, draw(st.integers(1, 2)))),
            "rtol": draw(st.sampled_from([None, 1e-8, 0.1])), "scale_labels": draw(st.booleans())}


def _check_whiten(a, out, finite):
    m = np.shape(a["X"])[0]
    k = out.X.shape[1]
    assert out.X.shape[0] == m and 1 <= k <= np.shape(a["X"])[1]
    for x in (out.X, out.Y, out.Phi, out.mean, out.transform):
        check_array(x, finite=finite)
    np.testing.assert_allclose(out.X.T @ out.X / m, np.eye(k), atol=tol(out.X, 1e4))


spec("whiten",
     call=lambda a: oj.whiten(a["X"], a["Y"], rtol=a["rtol"], scale_labels=a["scale_labels"]),
     valid=_whiten_args, check=_check_whiten,
     kinds={"X": overrides(MATRIX, extra_column=MAYBE), "Y": overrides(MATRIX, extra_column=MAYBE),
            "rtol": [("1.0", lambda v, d: 1.0, RAISE)] + overrides(NON_NEGATIVE, **{"None": MAYBE})},
     domain={"X", "Y"}, examples=6)  # documented: no variance, Y uncorrelated with X when scaling labels

# ---- factorization -------------------------------------------------------------------

ANY_SHAPE_MATRIX = overrides(MATRIX, extra_row=MAYBE, extra_column=MAYBE)  # the only matrix argument
MASK = MATRIX + [("entry 0.5", lambda v, d: _set(v, (0, 0), 0.5), RAISE)]


def _completion_args(draw):
    """An observed set with at least one unobserved entry, where the target is non-zero (the
    unobserved error is then defined)."""
    shape = (draw(st.integers(1, 3)), draw(st.integers(2, 3)))
    mask = np.asarray(draw(hnp.arrays(np.float64, shape, elements=st.sampled_from([0.0, 1.0]))))
    mask[-1, -1] = 0.0
    target = np.array(matrix(draw, shape))
    target[-1, -1] = 1.0
    return {"W_e": matrix(draw, shape), "target": target, "mask": mask}


for _name in ("completion_loss", "unobserved_error"):
    spec(_name,
         call=functools.partial(lambda name, a: getattr(oj, name)(a["W_e"], a["target"], a["mask"]), _name),
         valid=_completion_args, check=check_nonnegative_scalar,
         kinds={"W_e": MATRIX, "target": MATRIX, "mask": MASK}, nan_ok={"W_e"}, examples=3)


def _sensing_args(draw):
    m, d_1, d_2 = (draw(st.integers(1, 3)) for _ in range(3))
    return {"W_e": matrix(draw, (d_1, d_2)), "measurements": matrix(draw, (m, d_1, d_2)),
            "observations": matrix(draw, (m,))}


spec("sensing_loss",
     call=lambda a: oj.sensing_loss(a["W_e"], a["measurements"], a["observations"]),
     valid=_sensing_args, check=check_nonnegative_scalar,
     kinds={"W_e": MATRIX, "measurements": MATRIX, "observations": VECTOR},
     nan_ok={"W_e"}, examples=3)


def _check_effective_rank(a, out, finite):
    check_array(out, (), finite=finite and bool(np.any(np.asarray(a["W"]))))  # NaN for W = 0, as documented
    assert not finite or not np.any(np.asarray(a["W"])) or 1 - tol(out) <= float(out) <= min(np.shape(a["W"])) + tol(out)


spec("effective_rank",
     call=lambda a: oj.effective_rank(a["W"]),
     valid=lambda draw: {"W": matrix(draw, (draw(st.integers(1, 3)), draw(st.integers(1, 3))))},
     check=_check_effective_rank, kinds={"W": ANY_SHAPE_MATRIX}, examples=4)


def _rates_args(draw):
    shape = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    return {"W_e": matrix(draw, shape), "grad": matrix(draw, shape), "depth": draw(st.floats(1.0, 4.0))}


spec("singular_value_rates",
     call=lambda a: oj.singular_value_rates(a["W_e"], a["grad"], a["depth"]),
     valid=_rates_args,
     check=lambda a, out, finite: check_array(out, (min(np.shape(a["W_e"])),), finite),
     kinds={"W_e": MATRIX, "grad": MATRIX, "depth": DEPTH}, examples=4)

SHAPE = [
    ("one entry", lambda v, d: tuple(v)[:1], RAISE),
    ("three entries", lambda v, d: tuple(v) + (2,), RAISE),
    ("zero", lambda v, d: (0, v[1]), RAISE),
    ("negative", lambda v, d: (v[0], -2), RAISE),
    ("float", lambda v, d: (float(v[0]), v[1]), RAISE),
    ("bool", lambda v, d: (True, v[1]), RAISE),
    ("string", lambda v, d: "34", RAISE),
    ("None", lambda v, d: None, RAISE),
    ("list", lambda v, d: list(v), MAYBE),
]


def _target_args(draw):
    shape = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    return {"key": jax.random.key(draw(st.integers(0, 3))), "shape": shape,
            "rank": draw(st.integers(1, min(shape))), "dtype": draw(st.sampled_from([None, jnp.float64]))}


spec("low_rank_target",
     call=lambda a: oj.low_rank_target(a["key"], a["shape"], a["rank"], dtype=a["dtype"]),
     valid=_target_args,
     check=lambda a, out, finite: check_array(out, tuple(int(d) for d in a["shape"]), finite),
     kinds={"key": KEY, "shape": SHAPE, "rank": _ints(1, huge=RAISE), "dtype": DTYPE}, examples=3)


def _mask_args(draw):
    shape = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    return {"key": jax.random.key(draw(st.integers(0, 3))), "shape": shape,
            "num_observations": draw(st.integers(0, shape[0] * shape[1])),
            "dtype": draw(st.sampled_from([None, jnp.float64]))}


def _check_mask(a, out, finite):
    check_array(out, tuple(int(d) for d in a["shape"]), finite)
    assert set(np.unique(np.asarray(out))) <= {0.0, 1.0} and int(np.sum(out)) == int(a["num_observations"])


spec("observation_mask",
     call=lambda a: oj.observation_mask(a["key"], a["shape"], a["num_observations"], dtype=a["dtype"]),
     valid=_mask_args, check=_check_mask,
     kinds={"key": KEY, "shape": SHAPE, "num_observations": _ints(0, huge=RAISE), "dtype": DTYPE}, examples=3)


def _measurements_args(draw):
    return {"key": jax.random.key(draw(st.integers(0, 3))),
            "target": matrix(draw, (draw(st.integers(1, 3)), draw(st.integers(1, 3)))),
            "num_measurements": draw(st.integers(1, 4))}


def _check_measurements(a, out, finite):
    A, y = out
    m = int(a["num_measurements"])
    check_array(A, (m, *np.shape(a["target"])), finite)
    check_array(y, (m,), finite)


spec("sensing_measurements",
     call=lambda a: oj.sensing_measurements(a["key"], a["target"], a["num_measurements"]),
     valid=_measurements_args, check=_check_measurements,
     kinds={"key": KEY, "target": ANY_SHAPE_MATRIX, "num_measurements": _ints(1, huge=RAISE)}, examples=3)


def _nuclear_args(draw):
    args = _completion_args(draw)
    return {"target": args["target"], "mask": args["mask"], "tolerance": 1e-6, "max_iters": 2000}


spec("nuclear_norm_completion",
     call=lambda a: oj.nuclear_norm_completion(a["target"], a["mask"], tolerance=a["tolerance"],
                                               max_iters=a["max_iters"]),
     valid=_nuclear_args,
     check=lambda a, out, finite: check_array(out.matrix, np.shape(a["target"]), finite),
     kinds={"target": MATRIX, "mask": MASK, "tolerance": POSITIVE, "max_iters": _ints(1, huge=RAISE)},
     examples=2)

# ---- theory --------------------------------------------------------------------------

THEORY_DEPTH = _ints(1, huge=MAYBE)


def _conditions_args(draw):
    return {"margin": draw(st.floats(1e-3, 10.0)), "phi_norm": draw(st.floats(1e-3, 10.0)),
            "depth": draw(st.integers(1, 8))}


def _check_floats(values, finite):
    for v in values:
        assert np.ndim(v) == 0 and np.isrealobj(v) and (not finite or math.isfinite(float(v))), values


spec("theorem1_conditions",
     call=lambda a: theory.theorem1_conditions(a["margin"], a["phi_norm"], a["depth"]),
     valid=_conditions_args,
     check=lambda a, out, finite: _check_floats(out, finite),
     kinds={"margin": POSITIVE, "phi_norm": POSITIVE, "depth": THEORY_DEPTH}, examples=8)


def _bound_args(draw):
    return {"loss0": np.asarray(draw(hnp.arrays(np.float64, (3, 1), elements=st.floats(0.0, 10.0)))),
            "eta": draw(st.floats(0.0, 0.1)), "margin": draw(st.floats(1e-3, 2.0)),
            "depth": draw(st.integers(1, 8)), "steps": np.arange(draw(st.integers(2, 5)))}


spec("theorem1_loss_bound",
     call=lambda a: theory.theorem1_loss_bound(a["loss0"], a["eta"], a["margin"], a["depth"], a["steps"]),
     valid=_bound_args,
     check=lambda a, out, finite: check_array(out, (3, len(np.atleast_1d(a["steps"]))), finite),
     kinds={"loss0": REAL_ARRAY, "eta": NON_NEGATIVE, "margin": POSITIVE, "depth": THEORY_DEPTH,
            "steps": overrides(REAL_ARRAY, length_7=MAYBE)},
     examples=8)


def _iterations_args(draw):
    return {"loss0": draw(st.floats(1e-3, 10.0)), "epsilon": draw(st.floats(1e-8, 1.0)),
            "eta": draw(st.floats(1e-4, 1.0)), "margin": draw(st.floats(1e-3, 2.0)),
            "depth": draw(st.integers(1, 8))}


spec("iterations_to_reach",
     call=lambda a: theory.iterations_to_reach(a["loss0"], a["epsilon"], a["eta"], a["margin"], a["depth"]),
     valid=_iterations_args,
     check=lambda a, out, finite: _check_floats([out], finite),
     kinds={"loss0": POSITIVE, "epsilon": POSITIVE, "eta": POSITIVE, "margin": POSITIVE,
            "depth": THEORY_DEPTH}, examples=8)


def _lemma_args(draw):
    arr = lambda lo, hi: draw(hnp.arrays(np.float64, (3,), elements=st.floats(lo, hi)))
    return {"loss": arr(0.0, 10.0), "sigma_min": arr(0.0, 3.0), "grad_norm_sq": arr(0.0, 10.0),
            "eta": draw(st.floats(0.0, 1.0)), "depth": draw(st.integers(1, 8))}


spec("descent_lemma_bound",
     call=lambda a: theory.descent_lemma_bound(a["loss"], a["sigma_min"], a["grad_norm_sq"], a["eta"], a["depth"]),
     valid=_lemma_args,
     check=lambda a, out, finite: check_array(np.asarray(out), (3,), finite),
     kinds={"loss": REAL_ARRAY, "grad_norm_sq": REAL_ARRAY, "eta": NON_NEGATIVE, "depth": THEORY_DEPTH,
            "sigma_min": REAL_ARRAY + [("negative", lambda v, d: -np.ones(3), RAISE)]},
     examples=8)


def _wilson_args(draw):
    trials = draw(st.integers(1, 1000))
    return {"successes": draw(st.integers(0, trials)), "trials": trials, "z": draw(st.floats(0.1, 4.0))}


def _check_wilson(a, out, finite):
    _check_floats(out, finite)
    slack = tol(out[1], 4)  # a float32 `z` computes in float32
    assert -slack <= out[0] <= out[1] <= 1.0 + slack, out


spec("wilson_interval",
     call=lambda a: theory.wilson_interval(a["successes"], a["trials"], a["z"]),
     valid=_wilson_args, check=_check_wilson,
     kinds={"successes": overrides(_ints(0, huge=RAISE)), "trials": overrides(_ints(1, huge=MAYBE)),
            "z": POSITIVE},
     examples=8)


def _theorem2_bound_args(draw):
    return {"a": draw(st.floats(2.0, 1e3)), "d_0": draw(st.integers(1, 10**4))}


spec("theorem2_probability_bound",
     call=lambda a: theory.theorem2_probability_bound(a["a"], a["d_0"]),
     valid=_theorem2_bound_args,
     check=lambda a, out, finite: _check_floats([out], finite),
     kinds={"a": POSITIVE, "d_0": _ints(1, huge=MAYBE)}, examples=8)


def _theorem2_args(draw):
    d_0, a, phi_norm = draw(st.integers(1, 500)), draw(st.floats(2.0, 1e3)), draw(st.floats(1e-2, 10.0))
    std_max = phi_norm / math.sqrt(a * d_0**2)
    return {"std": std_max * draw(st.floats(1e-3, 1.0)), "phi_norm": phi_norm, "d_0": d_0,
            "depth": draw(st.integers(1, 8)), "epsilon": draw(st.floats(1e-8, 1.0)), "a": a}


spec("theorem2_conditions",
     call=lambda a: theory.theorem2_conditions(a["std"], a["phi_norm"], a["d_0"], a["depth"], a["epsilon"],
                                               a=a["a"]),
     valid=_theorem2_args,
     check=lambda a, out, finite: _check_floats(out, finite),
     kinds={"std": POSITIVE, "phi_norm": POSITIVE, "d_0": _ints(1, huge=MAYBE), "depth": THEORY_DEPTH,
            "epsilon": POSITIVE, "a": POSITIVE},
     domain={"std", "phi_norm", "d_0", "a"},  # a corrupted value may push std above std_max
     examples=8)


def _margin_probability_args(draw):
    return {"std": draw(st.floats(1e-4, 1.0)), "d_0": draw(st.integers(1, 1000)),
            "phi_norm": draw(st.floats(1e-2, 10.0)), "margin": draw(st.floats(-1.0, 0.5))}


def _check_probability(a, out, finite):
    _check_floats([out], finite)
    assert 0.0 <= out <= 1.0, out


spec("margin_probability_exact",
     call=lambda a: theory.margin_probability_exact(a["std"], a["d_0"], a["phi_norm"], margin=a["margin"]),
     valid=_margin_probability_args, check=_check_probability,
     kinds={"std": POSITIVE, "d_0": _ints(1, huge=MAYBE), "phi_norm": POSITIVE, "margin": REAL},
     examples=8)


def _mode_args(draw, first: str):
    phi = draw(st.floats(0.1, 2.0))
    sigma0 = phi * draw(st.sampled_from([0.01, 0.5, 1.5, 3.0]))
    args = {"sigma0": sigma0, "phi": phi, "depth": draw(st.sampled_from([1.5, 2.0, 3.0, 4.0]))}
    if first == "sigma":  # strictly between sigma0 and phi
        args["sigma"] = sigma0 + draw(st.floats(0.0, 0.9)) * (phi - sigma0)
    else:
        args["t"] = draw(st.floats(0.0, 20.0))
    return args


def _check_mode(a, out, finite):
    check_array(np.asarray(out), np.broadcast_shapes(*(np.shape(v) for v in a.values())), finite)


# Broadcastable arguments: arrays are welcome (and broadcast), bad entries are not.
_BROADCAST = overrides(REAL_ARRAY, length_7=MAYBE)
_POSITIVE_ARRAY = _BROADCAST + [("zero", lambda v, d: 0.0, RAISE), ("negative", lambda v, d: -1.0, RAISE)]
_NON_NEGATIVE_ARRAY = _BROADCAST + [("zero", lambda v, d: 0.0, MAYBE), ("negative", lambda v, d: -1.0, RAISE)]
_MODE_KINDS = {"sigma0": _POSITIVE_ARRAY, "phi": _POSITIVE_ARRAY, "depth": _POSITIVE_ARRAY}

spec("aligned_flow_time",
     call=lambda a: theory.aligned_flow_time(a["sigma"], a["sigma0"], a["phi"], a["depth"]),
     valid=lambda draw: _mode_args(draw, "sigma"), check=_check_mode,
     kinds={"sigma": _BROADCAST, **_MODE_KINDS}, domain={"sigma", "sigma0", "phi"}, examples=6)

spec("aligned_flow_sigma",
     call=lambda a: theory.aligned_flow_sigma(a["t"], a["sigma0"], a["phi"], a["depth"]),
     valid=lambda draw: _mode_args(draw, "t"), check=_check_mode,
     kinds={"t": _NON_NEGATIVE_ARRAY, **_MODE_KINDS}, domain={"sigma0", "phi"}, examples=6)

spec("logistic_sigma",
     call=lambda a: theory.logistic_sigma(a["t"], a["sigma0"], a["phi"]),
     valid=lambda draw: {k: v for k, v in _mode_args(draw, "t").items() if k != "depth"}, check=_check_mode,
     kinds={"t": _NON_NEGATIVE_ARRAY, "sigma0": _POSITIVE_ARRAY, "phi": _POSITIVE_ARRAY}, examples=6)


# --------------------------------------------------------------------------------------
# The properties
# --------------------------------------------------------------------------------------


def _names(message: str, name: str) -> bool:
    """``message`` names ``name`` the way _validation.py does: `name` or `name[j]`."""
    return f"`{name}`" in message or f"`{name}[" in message


@contextlib.contextmanager
def time_limit(seconds: float):
    """Raise ``TimeoutError`` in the main thread after ``seconds``: a hang fails the test."""

    def expire(signum, frame):
        raise TimeoutError(f"no answer within {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _judge(fn_name: str, spec_: Spec, args: dict, name: str | None, label: str, expect: str) -> str | None:
    """``None`` if the call behaved, else what went wrong."""
    where = f"{fn_name}({name} = {label})" if name else f"{fn_name}(valid input)"
    try:
        with time_limit(60):  # compiles included; the calls take milliseconds
            out = spec_.call(args)
    except (ValueError, TypeError) as e:
        message = str(e)
        domain = isinstance(e, ValueError) and any(_names(message, n) for n in spec_.domain)
        if name is None and not domain:
            return f"{where} raised {type(e).__name__}: {message}"
        if name is not None and not (_names(message, name) or domain):
            return f"{where}: {type(e).__name__} does not name `{name}`: {message}"
        return None
    except Exception as e:  # noqa: BLE001 - the point: no other exception type
        return f"{where} raised {type(e).__name__} (not ValueError/TypeError): {e}"
    if expect == RAISE:
        return f"{where} was accepted; expected a ValueError/TypeError naming `{name}`"
    if expect == NONFINITE and name not in spec_.nan_ok:
        return f"{where} was accepted: NaN/Inf must be refused naming `{name}`"
    try:
        spec_.check(args, out, expect != NONFINITE)
    except AssertionError as e:
        return f"{where} returned a wrong result: {e}"
    return None


def _fuzz(fn_name: str, data) -> None:
    """The valid call, then every corruption of every argument, around one valid draw."""
    spec_ = SPECS[fn_name]
    valid = spec_.valid(data.draw)
    failures = [_judge(fn_name, spec_, dict(valid), None, "", "valid")]
    for name, table in spec_.kinds.items():
        for label, make, expect in table:
            args = dict(valid)
            args[name] = make(valid[name], data.draw)
            failures.append(_judge(fn_name, spec_, args, name, label, expect))
    failures = [f for f in failures if f is not None]
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("fn_name", list(SPECS))
def test_bad_arguments_are_refused_by_name_or_handled(fn_name):
    """Per function: ``examples`` valid draws; for each, the valid call and every
    corruption of every argument. (The @given test is built per call: settings on one
    parametrized @given test chain up across its ~30 parametrizations.)"""

    @settings(max_examples=SPECS[fn_name].examples)
    @given(data=st.data())
    def fuzz(data):
        _fuzz(fn_name, data)

    fuzz()


def test_every_public_function_is_fuzzed():
    public = {n for n in oj.__all__ if callable(getattr(oj, n)) and not isinstance(getattr(oj, n), type)}
    public -= {"load_mnist", "load_gas_ethanol", "Params", "LossFn"}  # file readers / type aliases
    public |= {n for n in theory.__all__ if n not in ("Theorem1Conditions", "Theorem2Conditions")}
    assert public <= set(SPECS), public - set(SPECS)


# --------------------------------------------------------------------------------------
# What the fuzzing found (each raised another exception type, crashed the process,
# hung, or passed bad input through silently before its fix)
# --------------------------------------------------------------------------------------

_W, _G = jnp.eye(2), jnp.ones((2, 2))
_LOSS = whitened_loss((2, 2))
_P = (jnp.eye(2), jnp.eye(2))

FOUND = [
    # (call, exception type, message pattern)
    (lambda: oj.init_identity((2**40, 2**40)), ValueError, r"`dims` asks for a layer"),  # XLA abort
    (lambda: oj.init_gaussian(0, (2, 3), std=1.0), TypeError, r"`key` must be a PRNG key"),
    (lambda: oj.init_gaussian(jax.random.key(0), (2, 3), std=1j), TypeError, r"`std` must be a real"),
    (lambda: oj.init_gaussian(jax.random.key(0), (2, 3), std=float("nan")), ValueError, r"`std`"),
    (lambda: oj.init_gaussian(jax.random.key(0), (2, 3), std=1.0, dtype=jnp.complex64), TypeError, r"`dtype`"),
    (lambda: oj.init_balanced(jax.random.key(0), (2, 3), std=1.0, dtype=jnp.int32), TypeError, r"`dtype`"),
    (lambda: oj.init_identity((2, 2), scale=1j), TypeError, r"`scale` must be a real number"),
    (lambda: oj.init_identity((2, 2), dtype=int), TypeError, r"`dtype`"),
    (lambda: oj.layer_gradients((_W,), [[1.0, 1.0], [1.0, 1.0]]), TypeError, r"`grad_W_e` must be an array"),
    (lambda: oj.layer_gradients((_W,), jnp.ones((2, 2), jnp.int32)), TypeError, r"`grad_W_e`"),
    (lambda: oj.end_to_end((jnp.ones((2, 3)), jnp.ones((2, 3)))), ValueError, r"`params` must chain"),
    (lambda: oj.balanced_factorization(jnp.full((2, 2), jnp.nan), (2, 2, 2)), ValueError, r"`A` must be finite"),
    (lambda: oj.deficiency_margin(_W, _W.at[0, 0].set(jnp.inf)), ValueError, r"`Phi` must be finite"),
    (lambda: oj.lp_loss(jnp.ones((1, 2)), jnp.ones((3, 2)), jnp.ones((3, 1)), p=float("inf")), ValueError, r"`p`"),
    (lambda: oj.lp_loss(jnp.ones((1, 2)), jnp.ones((3, 2)), jnp.ones((3, 1)), p="2"), TypeError, r"`p`"),
    (lambda: oj.preconditioner_apply(_W, _G, None), TypeError, r"`depth` must be a real number"),
    (lambda: oj.preconditioner_apply(_W, _G, "2"), TypeError, r"`depth` must be a real number"),
    (lambda: oj.preconditioner_apply(_W, _G.at[0, 0].set(jnp.nan), 2.0), ValueError, r"`G` must be finite"),
    (lambda: oj.preconditioner_matrix(_W, "2"), TypeError, r"`depth` must be a real number"),
    (lambda: oj.preconditioner_matrix(_W, 1e20), ValueError, r"`depth` must be at most"),
    (lambda: oj.single_output_velocity(jnp.ones(2), jnp.full(2, jnp.nan), 2.0), ValueError, r"`grad`"),
    (lambda: oj.end_to_end_velocity(_P, _LOSS, weight_decay="0"), TypeError, r"`weight_decay`"),
    (lambda: oj.end_to_end_velocity((_W, _W.at[0, 1].set(jnp.nan)), _LOSS), ValueError,
     r"`params\[1\]` must be finite"),
    (lambda: oj.gradient_descent([1], _P, learning_rate=0.1, num_steps=1), TypeError, r"`loss_fn`"),
    (lambda: oj.gradient_descent(_LOSS, _P, learning_rate=float("inf"), num_steps=1), ValueError,
     r"`learning_rate` must be finite"),
    (lambda: oj.gradient_descent(_LOSS, _P, learning_rate=jnp.ones(2), num_steps=1), ValueError,
     r"`learning_rate` must be a scalar"),
    (lambda: oj.gradient_descent(_LOSS, _P, learning_rate=0.1, num_steps=10**20), ValueError, r"`num_steps`"),
    (lambda: oj.gradient_descent(_LOSS, _P, learning_rate=0.1, num_steps=1, record_end_to_end=[1]),
     TypeError, r"`record_end_to_end`"),
    (lambda: oj.gradient_descent(_LOSS, _P, learning_rate=0.1, num_steps=1, progress=3), TypeError,
     r"`progress`"),
    (lambda: oj.end_to_end_descent(None, _W, depth=2.0, learning_rate=0.1, num_steps=1), TypeError,
     r"`loss_fn`"),
    (lambda: oj.end_to_end_descent(_LOSS, _W, depth=float("inf"), learning_rate=0.1, num_steps=1),
     ValueError, r"`depth` must be finite"),
    (lambda: oj.gradient_flow(_LOSS, _P, t_final=float("inf"), dt=0.1), ValueError, r"`t_final`"),
    (lambda: oj.gradient_flow(_LOSS, _P, t_final=1e300, dt=1e-300), ValueError, r"`t_final / dt`"),
    (lambda: oj.gradient_flow(_LOSS, _P, t_final="1", dt=0.5), TypeError, r"`t_final`"),
    (lambda: oj.pad_to_depth((), 3), ValueError, r"`params`"),
    (lambda: oj.pad_to_depth(_P, 2.5), TypeError, r"`max_depth` must be an int"),
    (lambda: oj.pad_to_depth((jnp.ones((3, 2)), jnp.ones((4, 3)), jnp.ones((1, 4))), 4), ValueError,
     r"`params` must have equal hidden widths"),
    (lambda: oj.pad_to_depth((jnp.ones((1, 2)),), 3, hidden_width=2.0), TypeError, r"`hidden_width`"),
    (lambda: oj.sweep(_LOSS, **{**SWEEP_BASE, "input_dim": 2, "output_dim": 2, "hidden_width": 1, "depths": [2]}),
     ValueError,
     r"`hidden_width` \(1\) must be >= min"),
    (lambda: oj.sweep(_LOSS, **{**SWEEP_BASE, "weight_decay": float("nan")}), ValueError, r"`weight_decay`"),
    (lambda: oj.sweep(_LOSS, **{**SWEEP_BASE, "init_stds": [True]}), TypeError, r"`init_stds`"),
    (lambda: oj.sweep(_LOSS, **{**SWEEP_BASE, "dtype": jnp.complex128}), TypeError, r"`dtype`"),
    (lambda: oj.sweep(_LOSS, **{**SWEEP_BASE, "init": 3}), TypeError, r"`init`"),
    (lambda: oj.whiten(np.eye(3), np.eye(3)[:, :1], rtol="0.1"), TypeError, r"`rtol`"),
    (lambda: theory.theorem1_conditions(float("inf"), 1.0, 2), ValueError, r"`margin` must be finite"),
    (lambda: theory.theorem1_conditions(0.5, 1.0, None), TypeError, r"`depth` must be an int"),
    (lambda: theory.theorem1_loss_bound(1.0, 0.1, 0.5, 0, [1, 2]), ValueError, r"`depth` must be >= 1"),
    (lambda: theory.theorem1_loss_bound(1.0, 0.1, -0.5, 3, [1, 2]), ValueError, r"`margin`"),
    (lambda: theory.iterations_to_reach(1.0, 0.0, 0.1, 0.5, 2), ValueError, r"`epsilon`"),
    (lambda: theory.iterations_to_reach(-1.0, 0.1, 0.1, 0.5, 2), ValueError, r"`loss0`"),
    (lambda: theory.descent_lemma_bound(np.ones(3), np.ones(2), 1.0, 0.1, 2), ValueError, r"`sigma_min`"),
    (lambda: theory.descent_lemma_bound(1.0, -1.0, 1.0, 0.1, 3), ValueError, r"`sigma_min` must be >= 0"),
    (lambda: theory.wilson_interval(5, 3), ValueError, r"`successes` must be <= `trials`"),
    (lambda: theory.wilson_interval(1, "3"), TypeError, r"`trials` must be an int"),
    # finite input, non-finite output: overflow in the derivatives, or XLA's flushed subnormals
    (lambda: oj.field_jacobian(jnp.array([[4.35e-105]]), whitened_loss((1, 1)), 2.0), ValueError,
     r"`W_e` must have singular values of at least"),
    (lambda: oj.standardize_columns(np.full((3, 1), -1.8361059042552212)), ValueError,  # std 2.2e-16
     r"`X` must have non-constant columns"),
    (lambda: oj.balanced_factorization(jnp.full((2, 2), -2.2e-313), (2, 2, 2))[0], None, None),  # was NaN
]


@pytest.mark.parametrize("call, error, pattern", FOUND, ids=[f"found-{i}" for i in range(len(FOUND))])
def test_found_bugs_stay_fixed(call, error, pattern):
    if error is None:  # must work, with a finite result
        check_array(call())
        return
    with pytest.raises(error, match=pattern):
        call()


def test_zero_jacobian_has_zero_asymmetry_not_nan():
    """A linear loss at depth 1: J = 0 is symmetric (it was 0/0 = NaN)."""
    asym = oj.gradient_field_asymmetry(jnp.array([[1.0, 2.0]]), lambda W: jnp.sum(W), 1.0)
    assert float(asym) == 0.0


def test_nonexistent_data_dir_is_refused_without_download(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"`data_dir` must be an existing folder"):
        oj.load_mnist(tmp_path / "nope")


# --------------------------------------------------------------------------------------
# The command line
# --------------------------------------------------------------------------------------

_ERROR_LINE = re.compile(r"^overparam-jax( [\w-]+)*: error: \S")


def run_cli(argv, capsys):
    try:
        code = main([str(a) for a in argv])
    except SystemExit as e:  # argparse
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_clear_error(code, err, *, before=()):
    """Non-zero exit; stderr ends with exactly one error line; before it only argparse's
    usage block or lines starting with one of ``before``; no traceback."""
    assert code not in (0, None), code
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    errors = [line for line in lines if _ERROR_LINE.match(line)]
    assert len(errors) == 1 and lines[-1] == errors[0], err
    rest = lines[:-1]
    if rest and rest[0].startswith("usage: "):  # argparse: usage (wrapped, indented) then error
        assert code == 2 and all(line.startswith(" ") for line in rest[1:]), err
    else:
        assert all(line.startswith(tuple(before)) for line in rest), err
    return errors[0]


@pytest.fixture
def out_dir(tmp_path):
    return tmp_path / "out"


def assert_nothing_left(folder):
    assert not folder.exists() or list(folder.iterdir()) == [], list(folder.iterdir())


@pytest.mark.parametrize("argv, message", [
    (["frobnicate"], "invalid choice: 'frobnicate'"),
    (["reproduce", "nope"], "invalid choice: 'nope'"),
    (["reproduce"], "required"),
    ([], "required"),
    (["reproduce", "acceleration", "--steps", "-3"], "--steps must be a positive integer, got -3"),
    (["reproduce", "acceleration", "--steps", "0"], "--steps must be a positive integer, got 0"),
    (["reproduce", "acceleration", "--seeds", "0"], "--seeds must be a positive integer, got 0"),
    (["reproduce", "acceleration", "--seeds", "-2"], "--seeds must be a positive integer"),
    (["reproduce", "acceleration", "--steps", "7"], "must be a multiple of"),
    (["reproduce", "init", "--steps", "-1"], "--steps must be a positive integer"),
    (["reproduce", "init", "--seeds", "0"], "--seeds must be a positive integer"),
    (["reproduce", "cnn", "--steps", "0"], "--steps must be a positive integer"),
    (["reproduce", "cnn", "--weight-decay", "-1"], "--weight-decay must be non-negative"),
    (["reproduce", "cnn", "--weight-decay", "nan"], "--weight-decay must be non-negative"),
    (["reproduce", "acceleration", "--steps", "abc"], "invalid int value: 'abc'"),
    (["reproduce", "init", "--steps", "1.5"], "invalid int value: '1.5'"),
    (["reproduce", "acceleration", "--seeds", "two"], "invalid int value: 'two'"),
    (["reproduce", "cnn", "--seed", "x"], "invalid int value: 'x'"),
    (["reproduce", "cnn", "--l2-on", "everything"], "invalid choice: 'everything'"),
    (["verify", "--seed", "abc"], "invalid int value: 'abc'"),
    (["verify", "--bogus"], "unrecognized arguments: --bogus"),
    (["verify", "--only", "no-such-check"], "Unknown check 'no-such-check'"),
])
def test_cli_bad_arguments(argv, message, out_dir, capsys):
    if argv[:1] == ["reproduce"] and len(argv) > 1 and argv[1] in ("acceleration", "init", "cnn"):
        argv = argv + ["--out", out_dir]
    code, _, err = run_cli(argv, capsys)
    line = assert_one_clear_error(code, err)
    assert message in line, line
    assert code == 2
    assert_nothing_left(out_dir)


@pytest.mark.parametrize("experiment", ["acceleration", "init"])
def test_cli_unwritable_out(experiment, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    code, _, err = run_cli(["reproduce", experiment, "--quick", "--no-progress", "--out", blocker / "out"], capsys)
    line = assert_one_clear_error(code, err)
    assert "--out" in line and str(blocker / "out") in line, line
    assert code == 2 and blocker.read_text() == "not a folder"
    assert [p.name for p in tmp_path.iterdir() if p.name != "cache"] == ["file"]


def test_cli_missing_data_dir(tmp_path, out_dir, capsys, monkeypatch):
    monkeypatch.setattr(datasets, "_MNIST_MIRRORS", ())  # never download, whatever happens
    missing = tmp_path / "no-such-folder"
    code, _, err = run_cli(["reproduce", "cnn", "--quick", "--data-dir", missing, "--out", out_dir], capsys)
    line = assert_one_clear_error(code, err)
    assert code == 2 and "data_dir" in line and str(missing) in line, line
    assert not missing.exists()
    assert_nothing_left(out_dir)


FAST_CHECK = "layer-gradients"  # the fastest of `overparam-jax verify --list` (~1 s)


@pytest.mark.parametrize("previous", [None, '{"old": "results"}\n'])
def test_cli_full_disk_leaves_no_partial_file(previous, tmp_path, capsys, monkeypatch):
    """``verify --json PATH`` on a full disk: exit 2, one line, no partial or temporary file,
    and a previous PATH intact."""
    folder = tmp_path / "results"
    folder.mkdir()
    target = folder / "verify.json"
    if previous is not None:
        target.write_text(previous)

    def no_space(fd):
        raise OSError(28, "No space left on device")

    import overparam_jax.results

    monkeypatch.setattr(overparam_jax.results.os, "fsync", no_space)
    code, out, err = run_cli(["verify", "--only", FAST_CHECK, "--json", target], capsys)
    line = assert_one_clear_error(code, err, before=("[1/1] ",))
    assert code == 2 and "No space left on device" in line and str(target) in line, line
    assert "1/1 checks passed" in out  # the check ran; only writing failed
    expected = [] if previous is None else ["verify.json"]
    assert sorted(p.name for p in folder.iterdir()) == expected
    if previous is not None:
        assert target.read_text() == previous
