"""The verify runner and registry: verdicts come from the runner, every check declares
mutants it must FAIL on, and the self-test counts only genuine catches."""

import math

import jax.numpy as jnp
import pytest

from overparam_jax.verify import (
    Measurement,
    VerifyConfig,
    all_checks,
    get_check,
    mutant,
    register,
    run_check,
    run_mutant,
    self_test,
)
from overparam_jax.verify import registry


@pytest.fixture
def scratch_registry(monkeypatch):
    """Register test checks into a private copy of the registry."""
    all_checks()  # load the real checks first
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))


def _threshold_check(*, value=lambda x: x):
    def fn(config, *, x=0.0):
        return Measurement(value(x))

    return fn


def test_registry_names_are_unique_and_described():
    checks = all_checks()
    assert len({c.name for c in checks}) == len(checks) >= 2
    assert all(c.claim and c.regime and c.section.startswith("§") for c in checks)
    assert all(c.mutants and c.threshold > 0 for c in checks)


def test_unknown_check_lists_known_names():
    with pytest.raises(ValueError, match="Unknown check 'nope'; known checks: balanced-factorization"):
        get_check("nope")


def test_registry_refuses_a_check_without_mutants(scratch_registry):
    with pytest.raises(ValueError, match="declares no mutant"):
        register("t-none", section="§0", claim="c", regime="r", threshold=1.0, mutants=[])


def test_registry_refuses_a_mutant_of_an_unknown_hook(scratch_registry):
    decorate = register("t-hook", section="§0", claim="c", regime="r", threshold=1.0,
                        mutants=[mutant("bad", "overrides a hook the check lacks", y=1.0)])
    with pytest.raises(ValueError, match=r"must override some of its hooks \['x'\], but overrides \['y'\]"):
        decorate(_threshold_check())


def test_registry_refuses_duplicate_mutants_and_bad_thresholds(scratch_registry):
    twice = [mutant("m", "a", x=1.0), mutant("m", "b", x=2.0)]
    with pytest.raises(ValueError, match="duplicate mutant names"):
        register("t-dup", section="§0", claim="c", regime="r", threshold=1.0, mutants=twice)
    with pytest.raises(ValueError, match="must be positive"):
        register("t-neg", section="§0", claim="c", regime="r", threshold=-1.0, mutants=twice[:1])


def test_self_test_counts_only_measured_failures(scratch_registry):
    """A mutant the check passes is MISSED; one that makes it raise is an ERROR, not a catch."""

    def crash(x):
        raise RuntimeError("boom")

    register("t-self", section="§0", claim="c", regime="r", threshold=1.0, mutants=[
        mutant("caught", "too large", x=2.0),
        mutant("missed", "within the threshold", x=0.5),
    ])(_threshold_check())
    register("t-crash", section="§0", claim="c", regime="r", threshold=1.0, mutants=[
        mutant("crash", "raises", x=-1.0),
    ])(_threshold_check(value=lambda x: crash(x) if x < 0 else x))
    report = self_test([get_check("t-self"), get_check("t-crash")])
    verdicts = {(o.check, o.mutant): (o.caught, o.error) for o in report.outcomes}
    assert verdicts == {("t-self", "caught"): (True, None), ("t-self", "missed"): (False, None),
                        ("t-crash", "crash"): (False, "RuntimeError: boom")}
    assert math.isclose(report.mutation_score, 1 / 3) and not report.ok


def test_a_check_that_raises_is_reported_as_fail():
    def broken(A, dims):
        raise RuntimeError("boom")

    result = run_check(get_check("balanced-factorization"), factorize=broken)
    assert not result.passed and "RuntimeError: boom" in result.details["error"]
    assert result.to_json()["measured"] == "nan"


def test_non_finite_measurement_fails():
    result = run_check(get_check("balanced-factorization"), factorize=lambda A, dims: (A * jnp.nan,) * (len(dims) - 1))
    assert not result.passed


def test_run_mutant_injects_the_declared_hooks():
    check = get_check("layer-gradients")
    outcome = run_mutant(check, check.mutants[0], VerifyConfig())
    assert outcome.caught and outcome.measured == pytest.approx(0.01, rel=1e-6)
