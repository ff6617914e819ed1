"""The registry of numerical checks behind ``overparam-jax verify``.

A *check* is a function ``fn(config, **overrides) -> Measurement`` registered with
:func:`register`, together with the claim it tests (and its THEORY.md section), a
threshold and a relation (``"<="`` or ``">="``). :func:`run_check` runs it and turns the
measured figure into a :class:`CheckResult` with PASS/FAIL. A check never decides its
own verdict: the runner compares ``measured`` with ``threshold``, and a non-finite
measurement always fails.

Checks take their implementation under test as keyword arguments with the library's
functions as defaults, so a test can feed a deliberately wrong implementation (or a
violated assumption) and see the check report FAIL.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from overparam_jax.results import json_safe

__all__ = [
    "Check",
    "check_rng",
    "CheckResult",
    "Measurement",
    "VerifyConfig",
    "all_checks",
    "get_check",
    "register",
    "run_check",
]


class VerifyConfig(NamedTuple):
    """Size and seed of a verify run.

    Attributes:
        full: larger sizes and more samples (``--full``); the default is the quick run.
        seed: the integer seed every check derives its keys from.
    """

    full: bool = False
    seed: int = 0


class Measurement(NamedTuple):
    """What a check measured.

    Attributes:
        value: the figure compared with the check's threshold.
        details: further figures (JSON-serializable) reported beside it.
        plot: optional ``plot(ax)`` that draws the evidence on a matplotlib Axes.
    """

    value: float
    details: dict[str, Any] = {}
    plot: Callable[[Any], None] | None = None


class CheckResult(NamedTuple):
    """The verdict of one check; ``passed`` is computed by :func:`run_check`."""

    name: str
    section: str
    claim: str
    measured: float
    relation: str
    threshold: float
    passed: bool
    seconds: float
    details: dict[str, Any]
    plot: Callable[[Any], None] | None = None

    def to_json(self) -> dict[str, Any]:
        """The result without its plot callback, ready for ``json.dump``."""
        out = self._asdict()
        out.pop("plot")
        return json_safe(out)


@dataclasses.dataclass(frozen=True)
class Check:
    """A registered check: metadata plus the function that measures."""

    name: str
    section: str
    claim: str
    threshold: float
    relation: str
    fn: Callable[..., Measurement]


def check_rng(config: VerifyConfig, stream: int) -> np.random.Generator:
    """The NumPy generator for one check's problem data: ``default_rng([seed, stream])``.

    Problem data are sampled on the host: ``jax.random`` compiles a PRNG kernel for every
    new shape, and those compiles dominated the run time of ``verify``. Library sampling
    functions under test (``init_balanced``, ``init_gaussian``) still take JAX keys.
    """
    return np.random.default_rng([config.seed, stream])


def normal(rng: np.random.Generator, shape: tuple[int, ...], scale: float = 1.0) -> jax.Array:
    """Gaussian float64 array of ``shape`` from ``rng``, times ``scale``."""
    return jnp.asarray(scale * rng.standard_normal(shape), jnp.float64)


_REGISTRY: dict[str, Check] = {}
_RELATIONS = {"<=": lambda a, b: a <= b, ">=": lambda a, b: a >= b}


def register(
    name: str, *, section: str, claim: str, threshold: float, relation: str = "<="
) -> Callable[[Callable[..., Measurement]], Callable[..., Measurement]]:
    """Decorator adding a check to the registry (names must be unique)."""
    if relation not in _RELATIONS:
        raise ValueError(f"`relation` must be one of {sorted(_RELATIONS)}, got {relation!r}.")

    def decorate(fn: Callable[..., Measurement]) -> Callable[..., Measurement]:
        if name in _REGISTRY:
            raise ValueError(f"A check named {name!r} is already registered.")
        _REGISTRY[name] = Check(name, section, claim, float(threshold), relation, fn)
        return fn

    return decorate


def _load_checks() -> None:
    """Import the modules that register checks (they register on import)."""
    from overparam_jax.verify import checks  # noqa: F401


def all_checks() -> list[Check]:
    """Every registered check, in registration order."""
    _load_checks()
    return list(_REGISTRY.values())


def get_check(name: str) -> Check:
    """The check called ``name``; ``ValueError`` listing the known names otherwise."""
    _load_checks()
    if name not in _REGISTRY:
        raise ValueError(f"Unknown check {name!r}; known checks: {', '.join(_REGISTRY)}.")
    return _REGISTRY[name]


def run_check(check: Check, config: VerifyConfig = VerifyConfig(), **overrides) -> CheckResult:
    """Run ``check`` and compare its measurement with the threshold.

    ``overrides`` are passed to the check function (to inject a wrong implementation
    in tests). A non-finite measurement fails; so does a check that raises (the error
    is reported in ``details["error"]`` rather than aborting the whole run).
    """
    start = time.perf_counter()
    try:
        m = check.fn(config, **overrides)
    except Exception as e:  # noqa: BLE001 - reported as a FAIL with the error text
        m = Measurement(math.nan, {"error": f"{type(e).__name__}: {e}"})
    value = float(m.value)
    passed = math.isfinite(value) and _RELATIONS[check.relation](value, check.threshold)
    return CheckResult(
        name=check.name,
        section=check.section,
        claim=check.claim,
        measured=value,
        relation=check.relation,
        threshold=check.threshold,
        passed=bool(passed),
        seconds=time.perf_counter() - start,
        details=dict(m.details),
        plot=m.plot,
    )
