"""Make the whole suite strict: float64 and no implicit rank promotion (STYLE.md)."""

import os
from pathlib import Path

import jax
import pytest
from hypothesis import settings

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_rank_promotion", "raise")

settings.register_profile("deterministic", derandomize=True, deadline=None, max_examples=25)
settings.load_profile("deterministic")

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data, or skip with the reason when this checkout has no copy (fail in CI)."""
    if not SHARED_DATA.is_dir():
        message = f"shared data not found at {SHARED_DATA} (only CI and dev machines have it)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return SHARED_DATA


@pytest.fixture(scope="session")
def mnist_dir(shared_data: Path) -> Path:
    path = shared_data / "mnist"
    if not path.is_dir():
        pytest.skip(f"MNIST copy not found at {path}")
    return path


@pytest.fixture(autouse=True)
def _no_network_data(monkeypatch, tmp_path):
    """Tests never download: point the data cache at an empty temp dir."""
    monkeypatch.setenv("OVERPARAM_JAX_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("OVERPARAM_JAX_DATA", raising=False)
    monkeypatch.setenv("OVERPARAM_JAX_NO_XLA_CACHE", "1")  # the CLI's disk cache is global state
    os.environ.setdefault("OVERPARAM_JAX_SMOKE", "1")


@pytest.fixture(scope="session")
def verify_report():
    """``overparam-jax verify --self-test`` once per session: every check on the library
    and on each of its mutants (tests/test_verify_self_test.py asserts the verdicts; other
    test modules read the details of the library runs)."""
    from overparam_jax.verify import VerifyConfig, all_checks, self_test

    return self_test(all_checks(), VerifyConfig())


@pytest.fixture(scope="session")
def verify_results(verify_report):
    """The library runs of :func:`verify_report`, by check name."""
    return {r.name: r for r in verify_report.real}
