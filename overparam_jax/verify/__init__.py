"""``overparam-jax verify``: a registry of numerical checks of the theory (THEORY.md)."""

from overparam_jax.verify.registry import (
    Check,
    CheckResult,
    Measurement,
    Mutant,
    MutantOutcome,
    SelfTestReport,
    VerifyConfig,
    all_checks,
    get_check,
    mutant,
    register,
    run_check,
    run_mutant,
    self_test,
)

__all__ = [
    "Check",
    "CheckResult",
    "Measurement",
    "Mutant",
    "MutantOutcome",
    "SelfTestReport",
    "VerifyConfig",
    "all_checks",
    "get_check",
    "mutant",
    "register",
    "run_check",
    "run_mutant",
    "self_test",
]
