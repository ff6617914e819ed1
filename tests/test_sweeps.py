"""Sweeps: the vmapped grid equals the individual runs; depth padding is exact; sharding."""

import functools
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from overparam_jax import end_to_end, init_balanced, init_gaussian, lp_loss
from overparam_jax.dynamics import end_to_end_descent, gradient_descent
from overparam_jax.sweeps import pad_to_depth, sweep

PADDING_RTOL = 1e-12  # padded vs plain depth-N: only the matmul chain order differs


def problem():
    kx, kw = jax.random.split(jax.random.key(0))
    X = 0.4 * jax.random.normal(kx, (30, 6))
    Y = 0.5 * X @ jax.random.normal(kw, (6, 1))
    return functools.partial(lp_loss, X=X, Y=Y, p=4.0)


LOSS = problem()
GRID = dict(input_dim=6, output_dim=1, hidden_width=3, depths=[1, 2, 3, 4], seeds=[0, 1],
            init_stds=[0.1, 0.5], num_steps=60, save_every=20)


@pytest.fixture(scope="module")
def grid_with_divergence():
    return sweep(LOSS, learning_rates=[0.01, 0.1, 200.0], **GRID)


def test_sweep_shapes_and_coords(grid_with_divergence):
    traj = grid_with_divergence.trajectory
    assert traj.loss.shape == (2, 3, 2, 4, 4)
    assert traj.diverged_at.shape == (2, 3, 2, 4)
    assert grid_with_divergence.axes == ("seed", "learning_rate", "init_std", "depth")
    np.testing.assert_array_equal(grid_with_divergence.coords["depth"], [1, 2, 3, 4])


@pytest.mark.parametrize("seed_i, lr_i, scale_i, depth_i", [(0, 0, 0, 0), (1, 1, 1, 3), (0, 1, 0, 1), (1, 0, 1, 2)])
def test_sweep_cell_equals_solo_run(grid_with_divergence, seed_i, lr_i, scale_i, depth_i):
    seed, lr = GRID["seeds"][seed_i], [0.01, 0.1, 200.0][lr_i]
    std, depth = GRID["init_stds"][scale_i], GRID["depths"][depth_i]
    dims = (6,) + (3,) * (depth - 1) + (1,)
    solo = gradient_descent(LOSS, init_balanced(jax.random.key(seed), dims, std=std),
                            learning_rate=lr, num_steps=60, save_every=20)
    cell = jax.tree_util.tree_map(lambda x: x[seed_i, lr_i, scale_i, depth_i],
                                  grid_with_divergence.trajectory._replace(final=None))
    np.testing.assert_allclose(cell.loss, solo.loss, rtol=PADDING_RTOL)
    np.testing.assert_allclose(cell.balancedness, solo.balancedness, atol=1e-13)
    np.testing.assert_allclose(cell.sigma_min, solo.sigma_min, rtol=1e-10)
    np.testing.assert_allclose(cell.time, solo.time)


def test_diverging_cell_is_isolated(grid_with_divergence):
    traj = grid_with_divergence.trajectory
    assert np.all(np.asarray(traj.diverged_at[:, 2]) > 0)  # lr = 200 blows up everywhere
    assert np.all(np.asarray(traj.diverged_at[:, :2]) == -1)
    assert np.all(np.isfinite(traj.loss))
    clean = sweep(LOSS, learning_rates=[0.01, 0.1], **GRID)
    np.testing.assert_array_equal(clean.trajectory.loss, traj.loss[:, :2])  # bit-identical


def test_padded_network_product_and_gradient_are_exact():
    params = init_gaussian(jax.random.key(3), (6, 3, 3, 1), std=0.5)
    padded = pad_to_depth(params, 6)
    assert len(padded.params) == 6
    np.testing.assert_array_equal(end_to_end(padded.params), end_to_end(params))
    linear = pad_to_depth((params[0][:1] * 0 + 0.3,), 4, hidden_width=3)
    np.testing.assert_array_equal(end_to_end(linear.params), 0.3 * np.ones((1, 6)))


def test_end_to_end_sweep_matches_solo_run():
    result = sweep(LOSS, learning_rates=[0.05], dynamics="end_to_end", **GRID)
    W0 = end_to_end(init_balanced(jax.random.key(1), (6, 3, 3, 1), std=0.5))
    solo = end_to_end_descent(LOSS, W0, depth=3, learning_rate=0.05, num_steps=60, save_every=20)
    np.testing.assert_allclose(result.trajectory.loss[1, 0, 1, 2], solo.loss, rtol=1e-12)


def test_progress_in_chunks_gives_identical_sweep():
    calls = []
    a = sweep(LOSS, learning_rates=[0.05], **GRID)
    b = sweep(LOSS, learning_rates=[0.05], progress=lambda p: calls.append(p.done), **GRID)
    assert calls[-1] == 60
    np.testing.assert_array_equal(a.trajectory.loss, b.trajectory.loss)


SHARDED_SCRIPT = textwrap.dedent("""
    import functools, sys, jax, jax.numpy as jnp, numpy as np
    jax.config.update("jax_enable_x64", True)
    from overparam_jax import lp_loss
    from overparam_jax.sweeps import sweep
    assert jax.device_count() == 4, jax.devices()
    kx, kw = jax.random.split(jax.random.key(0))
    X = 0.4 * jax.random.normal(kx, (30, 6))
    Y = 0.5 * X @ jax.random.normal(kw, (6, 1))
    loss = functools.partial(lp_loss, X=X, Y=Y, p=4.0)
    r = sweep(loss, input_dim=6, output_dim=1, hidden_width=3, depths=[1, 3], seeds=[0, 1, 2, 3],
              learning_rates=[0.05, 0.1], init_stds=[0.3], num_steps=40, save_every=20)
    assert len(r.trajectory.loss.sharding.device_set) == 4, r.trajectory.loss.sharding
    np.save(sys.argv[1], np.asarray(r.trajectory.loss))
    # 3 seeds x 2 depths = 6 runs: padded to 8 (the last run twice more), copies dropped
    odd = sweep(loss, input_dim=6, output_dim=1, hidden_width=3, depths=[1, 3], seeds=[0, 1, 2],
                learning_rates=[0.1], init_stds=[0.3], num_steps=40, save_every=20)
    assert odd.trajectory.loss.shape[:4] == (3, 1, 1, 2), odd.trajectory.loss.shape
    np.save(sys.argv[2], np.asarray(odd.trajectory.loss))
""")


def test_sharded_sweep_over_four_cpu_devices_equals_single_device(tmp_path):
    out, out_odd = tmp_path / "sharded.npy", tmp_path / "odd.npy"
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4", "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run([sys.executable, "-c", SHARDED_SCRIPT, str(out), str(out_odd)], env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    single = sweep(LOSS, input_dim=6, output_dim=1, hidden_width=3, depths=[1, 3], seeds=[0, 1, 2, 3],
                   learning_rates=[0.05, 0.1], init_stds=[0.3], num_steps=40, save_every=20)
    np.testing.assert_allclose(np.load(out), single.trajectory.loss, rtol=1e-13)
    # a run count that does not divide over the devices: same runs as on one device
    np.testing.assert_allclose(np.load(out_odd), single.trajectory.loss[:3, 1:], rtol=1e-13)


# ---- bad input -----------------------------------------------------------------------


@pytest.mark.parametrize("override, error, match", [
    (dict(seeds=[]), ValueError, "`seeds` must be a non-empty 1-D sequence"),
    (dict(seeds=[0.5]), TypeError, "`seeds` must be integers"),
    (dict(depths=[0, 2]), ValueError, "`depths` must be positive"),
    (dict(depths=[1.5]), TypeError, "`depths` must be integers"),
    (dict(learning_rates=[-1.0]), ValueError, "`learning_rates` must be non-negative"),
    (dict(init_stds=[[0.1, 0.2]]), ValueError, "1-D"),
    (dict(init="xavier"), ValueError, "`init` must be one of"),
    (dict(dynamics="flow"), ValueError, "`dynamics` must be one of"),
    (dict(num_steps=50), ValueError, "multiple of `save_every`"),
    (dict(hidden_width=0), ValueError, r"`hidden_width` must be >= 1, got 0"),
])
def test_sweep_bad_input(override, error, match):
    kwargs = {**GRID, "learning_rates": [0.1], **override}
    with pytest.raises(error, match=match):
        sweep(LOSS, **kwargs)


def test_depth_one_beside_deeper_needs_width_at_least_output():
    kx = jax.random.normal(jax.random.key(0), (10, 4))
    loss = functools.partial(lp_loss, X=kx, Y=kx[:, :3], p=2.0)
    with pytest.raises(ValueError, match=r"`hidden_width` \(2\) must be >= `output_dim` \(3\)"):
        sweep(loss, input_dim=4, output_dim=3, hidden_width=2, depths=[1, 2], seeds=[0],
              learning_rates=[0.1], init_stds=[0.1], num_steps=1)
