"""``overparam-jax verify``: a registry of numerical checks of the theory (THEORY.md)."""

from overparam_jax.verify.registry import (
    Check,
    CheckResult,
    Measurement,
    VerifyConfig,
    all_checks,
    get_check,
    register,
    run_check,
)

__all__ = [
    "Check",
    "CheckResult",
    "Measurement",
    "VerifyConfig",
    "all_checks",
    "get_check",
    "register",
    "run_check",
]
