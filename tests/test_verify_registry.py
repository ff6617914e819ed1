"""The verify runner: verdicts come from the runner, wrong implementations FAIL."""

import jax.numpy as jnp
import pytest

from overparam_jax.networks import balanced_factorization, layer_gradients
from overparam_jax.verify import VerifyConfig, all_checks, get_check, run_check


def test_registry_names_are_unique_and_described():
    checks = all_checks()
    assert len({c.name for c in checks}) == len(checks) >= 2
    assert all(c.claim and c.section.startswith("§") for c in checks)


def test_unknown_check_lists_known_names():
    with pytest.raises(ValueError, match="Unknown check 'nope'; known checks: balanced-factorization"):
        get_check("nope")


def test_balanced_factorization_check_fails_on_unbalanced_factorization():
    def unbalanced(A, dims):  # exact product, but all the mass in the first layer
        params = balanced_factorization(A, dims)
        return (2.0 * params[0],) + params[1:-1] + (0.5 * params[-1],)

    assert run_check(get_check("balanced-factorization")).passed
    result = run_check(get_check("balanced-factorization"), VerifyConfig(), factorize=unbalanced)
    assert not result.passed and result.measured > 1e-2


def test_layer_gradient_check_fails_on_wrong_formula():
    def off_by_one_percent(params, G):  # a 1% error in the first layer
        grads = layer_gradients(params, G)
        return (grads[0] * 1.01,) + grads[1:]

    result = run_check(get_check("layer-gradients"), VerifyConfig(), closed_form=off_by_one_percent)
    assert not result.passed


def test_a_check_that_raises_is_reported_as_fail():
    def broken(A, dims):
        raise RuntimeError("boom")

    result = run_check(get_check("balanced-factorization"), factorize=broken)
    assert not result.passed and "RuntimeError: boom" in result.details["error"]
    assert result.to_json()["measured"] == "nan"


def test_non_finite_measurement_fails():
    result = run_check(get_check("balanced-factorization"), factorize=lambda A, dims: (A * jnp.nan,) * (len(dims) - 1))
    assert not result.passed
