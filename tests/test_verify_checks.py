"""Each verify check passes on the library and reports FAIL when fed a deliberately wrong
implementation or a violated assumption — so that no check can pass by construction."""

import functools

import jax.numpy as jnp
import pytest

from overparam_jax.dynamics import end_to_end_descent, gradient_descent, gradient_flow
from overparam_jax.verify import VerifyConfig, all_checks, get_check, run_check


@pytest.fixture(scope="module")
def verify_results():
    """The whole default `overparam-jax verify` run, under the suite's strict settings."""
    return {c.name: run_check(c, VerifyConfig()) for c in all_checks()}


@pytest.mark.parametrize("name", [c.name for c in all_checks()])
def test_every_check_passes(verify_results, name):
    result = verify_results[name]
    assert result.passed, (result.measured, result.threshold, result.details.get("error"))


def gradient_ascent(loss_fn, params, *, learning_rate, **kwargs):
    """A sign error: steps up the gradient. (The balance identity is blind to the sign, so
    that check is fed weight decay instead, which breaks its first-order cancellation.)"""
    return gradient_descent(lambda W: -loss_fn(W), params, learning_rate=learning_rate, **kwargs)


def euler_called_rk4(loss_fn, params, *, method="rk4", **kwargs):
    """An integrator that claims to be RK4 but is Euler."""
    return gradient_flow(loss_fn, params, method="euler", **kwargs)


def depth_ignored(loss_fn, W_e, *, depth, **kwargs):
    """An end-to-end update that forgets the depth (always the linear model)."""
    return end_to_end_descent(loss_fn, W_e, depth=1.0, **kwargs)


@pytest.mark.parametrize("name, override", [
    ("integrator-order-rk4", {"flow": euler_called_rk4}),
    ("gd-balance-identity", {"descend": functools.partial(gradient_descent, weight_decay=0.5)}),
    ("gd-tracks-end-to-end", {"end_to_end_update": depth_ignored}),
    ("margin-converges", {"descend": gradient_ascent}),
])
def test_check_fails_on_wrong_implementation(name, override):
    assert not run_check(get_check(name), VerifyConfig(), **override).passed, name


def test_no_balance_check_fails_when_the_init_is_balanced(monkeypatch):
    """Claim 4 needs the unbalance: with a balanced init of the same product, GD converges."""
    from overparam_jax.networks import balanced_factorization, end_to_end
    from overparam_jax.verify.checks import convergence

    original = convergence._claim4_init
    monkeypatch.setattr(convergence, "_claim4_init",
                        lambda K: balanced_factorization(end_to_end(original(K)), (2, 2, 2)))
    assert not run_check(get_check("no-balance-fails"), VerifyConfig()).passed


def test_no_margin_check_fails_when_target_has_no_negative_eigenvalue(monkeypatch):
    """Claim 5 needs Φ with a negative eigenvalue: on a PSD target the identity init converges."""
    from overparam_jax.verify.checks import convergence

    monkeypatch.setattr(convergence, "_symmetric_target_with_negative_eigenvalue",
                        lambda rng, d=3: jnp.diag(jnp.array([1.0, 0.5, 0.25])))
    assert not run_check(get_check("no-margin-stalls"), VerifyConfig()).passed


def test_lp_acceleration_fails_when_depth_is_ignored():
    result = run_check(get_check("lp-acceleration"), VerifyConfig(), update=depth_ignored)
    assert not result.passed
