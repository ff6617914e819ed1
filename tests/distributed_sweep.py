"""One process of a two-process ``jax.distributed`` sweep (tests/test_distributed.py).

Usage: ``python tests/distributed_sweep.py PROCESS_ID PORT OUT_DIR``. Both processes run
the same sweep over localhost with JAX's CPU collectives (gloo): its runs are split over
the two processes' devices, the result is gathered on both, and process 0 writes it to
OUT_DIR/result.npz. A second sweep of the same grid with a checkpoint exercises saving
from several processes (gathered, written once) and resuming from it.
"""

import sys

import jax

jax.config.update("jax_cpu_collectives_implementation", "gloo")
jax.config.update("jax_enable_x64", True)


def problem():
    """The loss of the sweep, the same in the test process and in the workers."""
    import functools

    import jax.numpy as jnp
    import numpy as np

    from overparam_jax import lp_loss

    rng = np.random.default_rng(7)
    X, Y = jnp.asarray(rng.standard_normal((30, 4))), jnp.asarray(rng.standard_normal((30, 2)))
    return functools.partial(lp_loss, X=X, Y=Y, p=4.0)


GRID = dict(input_dim=4, output_dim=2, hidden_width=3, depths=[1, 3], seeds=[0, 1, 2],
            learning_rates=[0.01, 0.03], init_stds=[0.4], num_steps=60, save_every=20)


def main(process_id: int, port: str, out_dir: str) -> None:
    import numpy as np

    jax.distributed.initialize(coordinator_address=f"localhost:{port}", num_processes=2,
                               process_id=process_id)
    from overparam_jax import sweep

    assert jax.process_count() == 2 and len(jax.devices()) == 2 and len(jax.local_devices()) == 1
    loss = problem()
    plain = sweep(loss, **GRID)
    checkpoint = f"{out_dir}/sweep.ckpt"
    stopped = []

    def stop_after_first_chunk(p):
        if not stopped:
            stopped.append(p.done)
            raise KeyboardInterrupt

    try:
        sweep(loss, **GRID, checkpoint=checkpoint, progress=stop_after_first_chunk)
    except KeyboardInterrupt:
        pass
    resumed = sweep(loss, **GRID, checkpoint=checkpoint)
    if process_id == 0:
        np.savez(f"{out_dir}/result.npz", loss=np.asarray(plain.trajectory.loss),
                 final=np.asarray(plain.trajectory.final[0]), resumed=np.asarray(resumed.trajectory.loss),
                 stopped_at=np.asarray(stopped))


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2], sys.argv[3])
