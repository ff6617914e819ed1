"""A sweep split across two processes under ``jax.distributed`` equals the one-process sweep.

Two CPU processes on localhost (JAX's gloo CPU collectives) run tests/distributed_sweep.py:
the sweep's runs are sharded over both processes' devices, the result is gathered on each,
and a checkpointed copy is interrupted after its first chunk and resumed. The gathered
losses and final weights must equal the sweep run here, in one process, and the resumed
sweep must equal the uninterrupted one bit for bit.
"""

import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np

from overparam_jax import sweep
from tests.distributed_sweep import GRID, problem

WORKER = Path(__file__).with_name("distributed_sweep.py")
TIMEOUT_S = 300


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def test_two_process_sweep_equals_the_single_process_sweep(tmp_path):
    port = str(_free_port())
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(WORKER.parents[1])}
    env.pop("XLA_FLAGS", None)
    workers = [subprocess.Popen([sys.executable, str(WORKER), str(i), port, str(tmp_path)], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
               for i in (0, 1)]
    outputs = [w.communicate(timeout=TIMEOUT_S)[0] for w in workers]
    assert [w.returncode for w in workers] == [0, 0], "\n".join(o[-3000:] for o in outputs)
    result = np.load(tmp_path / "result.npz")
    single = sweep(problem(), **GRID)
    np.testing.assert_allclose(result["loss"], single.trajectory.loss, rtol=1e-13)
    np.testing.assert_allclose(result["final"], single.trajectory.final[0], rtol=1e-12)
    assert result["stopped_at"].tolist() == [GRID["save_every"]]  # stopped after chunk 1 of 3
    np.testing.assert_array_equal(result["resumed"], result["loss"])
