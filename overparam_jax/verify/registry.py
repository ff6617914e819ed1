"""The registry of numerical checks behind ``overparam-jax verify``, and their mutants.

A *check* is a function ``fn(config, *, hook=default, ...) -> Measurement`` registered
with :func:`register`, together with the claim it tests (and its THEORY.md section), the
regime it tests it in, a threshold and a relation (``"<="`` or ``">="``). :func:`run_check`
runs it and turns the measured figure into a :class:`CheckResult` with PASS/FAIL. A check
never decides its own verdict: the runner compares ``measured`` with ``threshold``, and a
non-finite measurement always fails.

Checks take the implementation under test as keyword-only *hooks* whose defaults are the
library's functions (or the problem the statement is about: an init, a target). Every
check declares at least one :class:`Mutant`: a named wrong implementation injected
through those hooks (a wrong constant or exponent, a frozen or mis-stepped optimizer, an
unbalanced init, a stub). :func:`self_test` runs each check on the library, where it must
PASS, and on each of its mutants, where it must FAIL (without raising: a crash is not a
catch). The registry refuses a check without a mutant, and a mutant whose hooks the check
does not have.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from overparam_jax.results import json_safe

__all__ = [
    "Check",
    "CheckResult",
    "Measurement",
    "Mutant",
    "MutantOutcome",
    "SelfTestReport",
    "VerifyConfig",
    "all_checks",
    "check_rng",
    "get_check",
    "mutant",
    "register",
    "run_check",
    "run_mutant",
    "self_test",
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


@dataclasses.dataclass(frozen=True)
class Mutant:
    """A named wrong implementation of what a check verifies.

    Attributes:
        name: short kebab-case name, unique within its check.
        description: what is wrong, in one line.
        overrides: the check's keyword hooks to replace, and their wrong values.
    """

    name: str
    description: str
    overrides: Mapping[str, Any]


def mutant(name: str, description: str, **overrides: Any) -> Mutant:
    """A :class:`Mutant` replacing the check's hooks ``overrides``."""
    return Mutant(name, description, dict(overrides))


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

    @property
    def margin(self) -> float:
        """How many times inside its threshold the measurement is (< 1: outside).

        ``threshold / measured`` for ``"<="`` and ``measured / threshold`` for ``">="``
        (both positive in every registered check); inf when a ``"<="`` figure is 0.
        """
        num, den = (self.threshold, self.measured) if self.relation == "<=" else (self.measured, self.threshold)
        if not math.isfinite(self.measured) or num < 0 or den < 0:
            return math.nan
        return math.inf if den == 0 else num / den

    def to_json(self) -> dict[str, Any]:
        """The result without its plot callback, ready for ``json.dump``."""
        out = self._asdict()
        out.pop("plot")
        out["margin"] = self.margin
        return json_safe(out)


@dataclasses.dataclass(frozen=True)
class Check:
    """A registered check: metadata, the function that measures, and its mutants."""

    name: str
    section: str
    claim: str
    regime: str
    threshold: float
    relation: str
    fn: Callable[..., Measurement]
    mutants: tuple[Mutant, ...]

    @property
    def hooks(self) -> tuple[str, ...]:
        """The keyword-only arguments through which an implementation can be injected."""
        params = inspect.signature(self.fn).parameters.values()
        return tuple(p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY)


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
    name: str,
    *,
    section: str,
    claim: str,
    regime: str,
    threshold: float,
    relation: str = "<=",
    mutants: Sequence[Mutant],
) -> Callable[[Callable[..., Measurement]], Callable[..., Measurement]]:
    """Decorator adding a check to the registry.

    Args:
        name: unique kebab-case name.
        section: the THEORY.md section, e.g. ``"§5"``.
        claim: the statement tested, in one sentence, with what is measured.
        regime: where it is tested: sizes, depths, horizon, and why the statement bites there.
        threshold: the bound the measurement is compared with (positive).
        relation: ``"<="`` or ``">="``.
        mutants: at least one :class:`Mutant`; each must replace hooks the check has.

    Raises:
        ValueError: a duplicate name, an unknown relation, a non-positive threshold, no
            mutant, duplicate mutant names, or a mutant override that is not a hook.
    """
    if relation not in _RELATIONS:
        raise ValueError(f"`relation` must be one of {sorted(_RELATIONS)}, got {relation!r}.")
    if not threshold > 0:
        raise ValueError(f"`threshold` of check {name!r} must be positive, got {threshold}.")
    mutants = tuple(mutants)
    if not mutants:
        raise ValueError(
            f"Check {name!r} declares no mutant; every check needs at least one wrong "
            "implementation that it must FAIL on."
        )
    names = [m.name for m in mutants]
    if len(set(names)) != len(names):
        raise ValueError(f"Check {name!r} has duplicate mutant names: {names}.")

    def decorate(fn: Callable[..., Measurement]) -> Callable[..., Measurement]:
        if name in _REGISTRY:
            raise ValueError(f"A check named {name!r} is already registered.")
        check = Check(name, section, claim, regime, float(threshold), relation, fn, mutants)
        for m in mutants:
            unknown = sorted(set(m.overrides) - set(check.hooks))
            if unknown or not m.overrides:
                raise ValueError(
                    f"Mutant {m.name!r} of check {name!r} must override some of its hooks "
                    f"{list(check.hooks)}, but overrides {sorted(m.overrides)}."
                )
        _REGISTRY[name] = check
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

    ``overrides`` are passed to the check function (to inject a wrong implementation).
    A non-finite measurement fails; so does a check that raises (the error is reported
    in ``details["error"]`` rather than aborting the whole run).
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


class MutantOutcome(NamedTuple):
    """A check run on one of its mutants.

    ``caught`` is true when the check FAILed by measurement; a check that raised is
    not a catch (``error`` holds the message), since a crash proves nothing about the
    check's power.
    """

    check: str
    mutant: str
    description: str
    measured: float
    caught: bool
    error: str | None
    seconds: float

    def to_json(self) -> dict[str, Any]:
        return json_safe(self._asdict())


def run_mutant(check: Check, mutant: Mutant, config: VerifyConfig = VerifyConfig()) -> MutantOutcome:
    """Run ``check`` with ``mutant``'s hooks injected."""
    result = run_check(check, config, **mutant.overrides)
    error = result.details.get("error")
    return MutantOutcome(check.name, mutant.name, mutant.description, result.measured,
                         caught=not result.passed and error is None, error=error,
                         seconds=result.seconds)


class SelfTestReport(NamedTuple):
    """Every check on the library (``real``) and on each of its mutants (``outcomes``)."""

    real: list[CheckResult]
    outcomes: list[MutantOutcome]

    @property
    def mutation_score(self) -> float:
        """The fraction of mutants caught."""
        return sum(o.caught for o in self.outcomes) / max(len(self.outcomes), 1)

    @property
    def ok(self) -> bool:
        """Every check passes on the library and catches every one of its mutants."""
        return all(r.passed for r in self.real) and all(o.caught for o in self.outcomes)


def self_test(
    checks: Sequence[Check],
    config: VerifyConfig = VerifyConfig(),
    *,
    on_result: Callable[[CheckResult | MutantOutcome], None] | None = None,
) -> SelfTestReport:
    """Run each check on the library and on each of its mutants.

    ``on_result`` (optional) is called after every run, e.g. to show progress.
    """
    real, outcomes = [], []
    for check in checks:
        real.append(run_check(check, config))
        if on_result is not None:
            on_result(real[-1])
        for m in check.mutants:
            outcomes.append(run_mutant(check, m, config))
            if on_result is not None:
                on_result(outcomes[-1])
    return SelfTestReport(real, outcomes)
