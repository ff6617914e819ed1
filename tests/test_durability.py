"""Long runs survive interruption (issue 11): checkpoints resume bit for bit, checkpoints of
another computation or version are refused, results are written atomically, and the
``reproduce`` commands resume after SIGINT and SIGKILL to the JSON of an uninterrupted run.

The reference of every resumed run is the same computation run without interruption (and,
for the library functions, without a checkpoint at all): equality is exact, not within a
tolerance, since resuming must not change a single bit.
"""

from __future__ import annotations

import functools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from overparam_jax import (
    end_to_end_descent,
    gradient_descent,
    gradient_flow,
    init_balanced,
    optax_descent,
    sweep,
    whitened_l2_loss,
)
from overparam_jax import checkpoint as ckpt
from overparam_jax.experiments import cnn_mnist
from overparam_jax.results import atomic_write_text

PHI = jnp.asarray([[1.0, 0.2, 0.0], [0.0, 0.5, 0.1]])
LOSS = functools.partial(whitened_l2_loss, Phi=PHI)
P0 = init_balanced(jax.random.key(0), (3, 3, 2), std=0.3)
SWEEP_GRID = dict(input_dim=3, output_dim=2, hidden_width=3, depths=[1, 2, 3], seeds=[0, 1],
                  learning_rates=[0.1, 0.05], init_stds=[0.3], num_steps=100, save_every=5)


def _assert_identical(a, b):
    la, lb = jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)
    assert len(la) == len(lb)
    for x, y in zip(la, lb):
        x, y = np.asarray(x), np.asarray(y)
        assert x.dtype == y.dtype and x.shape == y.shape
        np.testing.assert_array_equal(x, y)


def _interrupt_after(steps: int):
    def callback(p):
        if p.done >= steps:
            raise KeyboardInterrupt

    return callback


RUNNERS = {
    "gradient_descent": lambda **kw: gradient_descent(LOSS, P0, learning_rate=0.1, num_steps=200,
                                                      save_every=10, **kw),
    "optax_adam": lambda **kw: optax_descent(LOSS, P0, optax.adam(1e-2), num_steps=200, save_every=10, **kw),
    "end_to_end_descent": lambda **kw: end_to_end_descent(LOSS, P0[1] @ P0[0], depth=2, learning_rate=0.1,
                                                          num_steps=200, save_every=10, **kw),
    "gradient_flow_rk4": lambda **kw: gradient_flow(LOSS, P0, t_final=2.0, dt=0.01, save_every=10, **kw),
    "sweep": lambda **kw: sweep(LOSS, **SWEEP_GRID, **kw).trajectory,
    "sweep_end_to_end": lambda **kw: sweep(LOSS, **SWEEP_GRID, dynamics="end_to_end", **kw).trajectory,
}


@pytest.mark.parametrize("name", sorted(RUNNERS))
def test_interrupted_run_resumes_bit_identical(tmp_path, name):
    run = RUNNERS[name]
    reference = run()
    path = tmp_path / "run.ckpt"
    with pytest.raises(KeyboardInterrupt):
        run(checkpoint=path, progress=_interrupt_after(70))
    assert path.exists()
    seen = []
    resumed = run(checkpoint=path, progress=lambda p: seen.append(p.done))
    _assert_identical(resumed, reference)
    assert 70 <= seen[0] < seen[-1] and len(seen) < 20  # it started part-way, not from 0


@pytest.mark.parametrize(
    "change",
    [
        dict(learning_rate=0.2),  # a hyperparameter
        dict(params=init_balanced(jax.random.key(1), (3, 3, 2), std=0.3)),  # the init
        dict(loss_fn=functools.partial(whitened_l2_loss, Phi=2 * PHI)),  # the loss's data
        dict(num_steps=300),  # the schedule
    ],
    ids=["learning_rate", "init", "loss_data", "num_steps"],
)
def test_checkpoint_of_another_computation_is_refused(tmp_path, change):
    path = tmp_path / "gd.ckpt"

    def run(loss_fn=LOSS, params=P0, learning_rate=0.1, num_steps=200):
        return gradient_descent(loss_fn, params, learning_rate=learning_rate, num_steps=num_steps,
                                save_every=10, checkpoint=path)

    run()
    with pytest.raises(ckpt.CheckpointMismatch, match="different configuration or version"):
        run(**change)


def test_checkpoint_of_another_optimizer_learning_rate_is_refused(tmp_path):
    path = tmp_path / "adam.ckpt"
    optax_descent(LOSS, P0, optax.adam(1e-2), num_steps=20, checkpoint=path)
    with pytest.raises(ckpt.CheckpointMismatch, match="first step"):
        optax_descent(LOSS, P0, optax.adam(2e-2), num_steps=20, checkpoint=path)


def test_checkpoint_of_another_library_version_is_refused(tmp_path, monkeypatch):
    path = tmp_path / "gd.ckpt"
    RUNNERS["gradient_descent"](checkpoint=path)
    real = ckpt.software_versions()
    monkeypatch.setattr("overparam_jax.dynamics.software_versions", lambda: {**real, "jax": "0.0.1"})
    with pytest.raises(ckpt.CheckpointMismatch, match="0.0.1"):
        RUNNERS["gradient_descent"](checkpoint=path)


def test_unreadable_checkpoint_is_refused_not_overwritten(tmp_path):
    path = tmp_path / "gd.ckpt"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(ckpt.CheckpointMismatch, match="unreadable"):
        RUNNERS["gradient_descent"](checkpoint=path)
    assert path.read_bytes() == b"not a checkpoint"


def test_a_failed_save_keeps_the_previous_checkpoint_and_leaves_no_temporary_file(tmp_path, monkeypatch):
    path = tmp_path / "state.ckpt"
    ckpt.save_checkpoint(path, {"k": 1}, {"x": np.arange(3)})

    def full_disk(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(OSError, match="No space"):
        ckpt.save_checkpoint(path, {"k": 1}, {"x": np.arange(5)})
    monkeypatch.undo()
    np.testing.assert_array_equal(ckpt.load_checkpoint(path, {"k": 1})["x"], np.arange(3))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.ckpt"]


def test_results_are_written_with_the_usual_file_mode(tmp_path):
    umask = os.umask(0o022)
    try:
        path = atomic_write_text(tmp_path / "r.json", "{}")
    finally:
        os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o644


def test_checkpoint_folder_of_another_configuration_is_refused(tmp_path):
    ckpt.CheckpointDir(tmp_path, experiment="cnn", config={"num_steps": 10, "seed": 0})
    again = ckpt.CheckpointDir(tmp_path, experiment="cnn", config={"num_steps": 10, "seed": 0})
    assert not again.resumed
    with pytest.raises(ckpt.CheckpointMismatch, match=r"config\.seed: 0 in the checkpoint, 1 now"):
        ckpt.CheckpointDir(tmp_path, experiment="cnn", config={"num_steps": 10, "seed": 1})
    with pytest.raises(ckpt.CheckpointMismatch, match="experiment"):
        ckpt.CheckpointDir(tmp_path, experiment="init", config={"num_steps": 10, "seed": 0})


def test_cli_stage_file_of_another_computation_is_one_error_line_exit_2(tmp_path, capsys):
    # The manifest matches, but a stage's file was written by another computation: the run
    # stops there with one error line, and the file is left as it was.
    from overparam_jax.cli import main
    from overparam_jax.experiments import acceleration

    folder = ckpt.CheckpointDir(tmp_path / "checkpoint", experiment="acceleration",
                                config=acceleration.configure(quick=True)._asdict())
    stage = ckpt.save_checkpoint(folder.stage("l2_pilot_a"), {"other": 1}, {"carry": None})
    before = stage.read_bytes()
    status = main(["reproduce", "acceleration", "--quick", "--no-progress", "--out", str(tmp_path)])
    lines = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(lines) == 2 and lines[0].startswith("resuming from"), lines
    assert lines[1].startswith("overparam-jax: error: checkpoint ") and "l2_pilot_a" in lines[1], lines
    assert stage.read_bytes() == before


def test_cnn_training_resumes_bit_identical(mnist_dir, tmp_path):
    from overparam_jax import load_mnist

    data = load_mnist(mnist_dir, download=False)
    config = cnn_mnist.quick_config(num_steps=30, checkpoint_every=10, validation_size=128, test_subset=250,
                                    arms=("twin",), seeds=(0,), variant_seeds=None)
    reference = cnn_mnist.run_cnn_experiment(config, data)

    def stop_at_20(p):
        if p.done >= 20:
            raise KeyboardInterrupt

    folder = ckpt.CheckpointDir(tmp_path, experiment="cnn", config=config._asdict())
    with pytest.raises(KeyboardInterrupt):
        cnn_mnist.run_cnn_experiment(config, data, progress=stop_at_20, checkpoint=folder)
    steps = []
    resumed = cnn_mnist.run_cnn_experiment(config, data, checkpoint=folder, progress=lambda p: steps.append(p.done))
    assert steps[0] == 20
    timing = {"first_step_seconds", "train_seconds", "eval_seconds"}
    (run,), (ref,) = resumed.runs, reference.runs
    assert run.arm == ref.arm == "twin"
    for field in cnn_mnist.CNNRun._fields:
        if field not in timing:
            _assert_identical(getattr(run, field), getattr(ref, field))


# --------------------------------------------------------------------------------------
# The command line: kill a reproduce run part-way, rerun it, compare with an uninterrupted run
# --------------------------------------------------------------------------------------

TIMING_KEYS = ("metadata", "seconds", "load_average")
RUN_TIMEOUT_S = 600


def _results(out: Path) -> dict:
    """The JSON results without wall times, load averages and run metadata (date, versions)."""

    def strip(x):
        if isinstance(x, dict):
            return {k: strip(v) for k, v in x.items() if not any(t in k for t in TIMING_KEYS)}
        if isinstance(x, list):
            return [strip(v) for v in x]
        return x

    return strip(json.loads((out / "acceleration_results.json").read_text()))


@pytest.fixture(scope="module")
def cli_env(tmp_path_factory, shared_data):
    """The subprocesses' environment: a shared XLA disk cache (the first run compiles, the
    others load the same executables), no x64 (as a user runs it)."""
    env = {k: v for k, v in os.environ.items() if k not in ("JAX_ENABLE_X64", "OVERPARAM_JAX_NO_XLA_CACHE")}
    env["OVERPARAM_JAX_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    return env


# `overparam-jax ...` with Ctrl-C's default handler: a job started in the background of a
# non-interactive shell (as CI may be) inherits SIGINT ignored, and Python then installs none.
_CLI = ("import runpy, signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
        "sys.argv[0] = 'overparam-jax'; runpy.run_module('overparam_jax.cli', run_name='__main__')")


def _command(out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-c", _CLI, "reproduce", "acceleration", "--quick", "--no-progress",
            "--out", str(out), *extra]


def _run(cmd, env) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT_S)


@pytest.fixture(scope="module")
def uninterrupted(cli_env, tmp_path_factory):
    out = tmp_path_factory.mktemp("uninterrupted")
    proc = _run(_command(out), cli_env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert not (out / "checkpoint").exists()  # removed once the results are written
    return _results(out)


def test_same_command_twice_gives_identical_results(uninterrupted, cli_env, tmp_path):
    proc = _run(_command(tmp_path, "--no-checkpoint"), cli_env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert _results(tmp_path) == uninterrupted


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["SIGINT", "SIGKILL"])
def test_killed_reproduce_run_resumes_to_the_uninterrupted_results(uninterrupted, cli_env, tmp_path, sig):
    checkpoint = tmp_path / "checkpoint"
    proc = subprocess.Popen(_command(tmp_path), env=cli_env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + RUN_TIMEOUT_S
    # Part-way: once two stages have saved state (the pilots), well before the main sweeps end.
    while len(list(checkpoint.glob("*.ckpt"))) < 2:
        assert proc.poll() is None, "the run ended before it could be interrupted"
        assert time.monotonic() < deadline
        time.sleep(0.05)
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=RUN_TIMEOUT_S)
    if sig == signal.SIGINT:  # Ctrl-C (SIGTERM goes through the same handler)
        assert proc.returncode == 130
        last = stderr.strip().splitlines()[-1]
        assert last.startswith("overparam-jax: interrupted; rerun the same command to resume"), stderr[-2000:]
        assert "Traceback" not in stderr
        assert not list(checkpoint.glob(".*.tmp"))  # a save in progress was cleaned up
    else:
        assert proc.returncode == -signal.SIGKILL  # may leave a temporary beside the intact file
    assert not (tmp_path / "acceleration_results.json").exists()
    assert not list(tmp_path.glob(".*.tmp"))

    resumed = _run(_command(tmp_path), cli_env)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming from the checkpoint" in resumed.stderr
    assert _results(tmp_path) == uninterrupted
    assert not checkpoint.exists()


def test_reproduce_refuses_a_checkpoint_of_another_configuration(cli_env, tmp_path):
    ckpt.CheckpointDir(tmp_path / "checkpoint", experiment="acceleration", config={"num_steps": 1})
    proc = _run(_command(tmp_path), cli_env)
    assert proc.returncode == 2
    assert proc.stderr.startswith("overparam-jax: error: checkpoint") and proc.stderr.count("\n") == 1
    assert "different configuration" in proc.stderr


def test_sigterm_stops_a_reproduce_run_like_ctrl_c(tmp_path, monkeypatch, capsys):
    # A job scheduler's SIGTERM: the same clean stop as Ctrl-C (exit 130, one line, resume hint).
    from overparam_jax.cli import main
    from overparam_jax.experiments import acceleration

    def terminated(config, data, *, progress=None, checkpoint=None):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler raises before this returns
        raise AssertionError("SIGTERM did not stop the run")

    monkeypatch.setattr(acceleration, "EXPERIMENT", acceleration.EXPERIMENT._replace(run=terminated))
    before = signal.getsignal(signal.SIGTERM)
    status = main(["reproduce", "acceleration", "--quick", "--no-progress", "--out", str(tmp_path)])
    assert status == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == f"overparam-jax: interrupted; rerun the same command to resume from {tmp_path / 'checkpoint'}{os.sep}"
    assert signal.getsignal(signal.SIGTERM) == before  # restored for the caller
