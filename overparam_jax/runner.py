"""The runner for long work: advance a computation chunk by chunk, report progress after
each chunk, save its state after each chunk and resume from it.

Every long computation of the toolkit goes through :func:`run_chunks` — the trajectories
of :mod:`overparam_jax.dynamics` (and so :func:`~overparam_jax.sweep`), the continuation
runs of the init experiment and the CNN training loop. A computation is

* a *carry* (any pytree of arrays: the network, an optimizer state, step counters), and
* ``advance(carry, start, size) -> (carry, records)``, which moves it ``size`` steps on
  from step ``start`` and returns what it recorded on the way (a *plain* tree: dicts,
  lists, tuples and arrays; see :mod:`overparam_jax.checkpoint`).

:func:`run_chunks` calls ``advance`` once per chunk, in order. With ``checkpoint=PATH`` it
saves the carry and every chunk's records there after each chunk (atomically) and, when
it finds a checkpoint of the same computation (the same ``fingerprint``), resumes after
its last saved chunk: a computation whose steps depend only on its carry and step index
(every computation here) then gives a result identical bit for bit to an uninterrupted
run on the same machine and versions. A checkpoint of another computation raises
:class:`~overparam_jax.checkpoint.CheckpointMismatch`. An interrupt (Ctrl-C, or SIGTERM,
which the command line turns into one) loses at most the chunk in progress.

Progress is one protocol everywhere: after each chunk, ``progress(Progress(...))`` with
the steps done, the total, the stage (which part of a larger job is running) and the
chunk's figures (``metrics(records)``, e.g. the last loss).

Independent long computations (say, the sweeps of several optimizers, each one run too
small to use more than one core) can run side by side with :func:`run_concurrently`:
threads, one combined progress report, and a failure or interrupt in one stops the others
at their next chunk (their checkpoints hold what they finished).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from typing import Any, NamedTuple, TypeVar

import jax
import numpy as np

from overparam_jax.checkpoint import leaves_into, load_checkpoint, save_checkpoint, tree_to_leaves

__all__ = ["Progress", "ProgressFn", "chunk_sizes", "on_host", "run_chunks", "run_concurrently"]


class Progress(NamedTuple):
    """What a long run reports after each chunk.

    Attributes:
        done: steps done (of this stage).
        total: steps of this stage in all.
        stage: which part of a larger job is running (``""`` for a single computation).
        metrics: the latest figures of the run (e.g. ``{"loss": 0.12}``).
    """

    done: int
    total: int
    stage: str = ""
    metrics: Mapping[str, float] = {}


ProgressFn = Callable[[Progress], None]
AdvanceFn = Callable[[Any, int, int], tuple[Any, Any]]


def chunk_sizes(total: int, num_chunks: int) -> list[int]:
    """``total`` split into at most ``num_chunks`` positive sizes that differ by at most one.

    Examples:
        >>> chunk_sizes(10, 4)
        [3, 3, 2, 2]
    """
    base, extra = divmod(total, num_chunks)
    return [base + (i < extra) for i in range(num_chunks) if base + (i < extra) > 0]


def _resume(path: Path, fingerprint: dict[str, Any], carry: Any) -> tuple[Any, list]:
    """The carry (placed like ``carry``) and the records saved at ``path``, or ``carry``
    and no records if there is no checkpoint yet."""
    saved = load_checkpoint(path, fingerprint)
    if saved is None:
        return carry, []
    restored = leaves_into(carry, saved["carry"])
    placed = jax.tree_util.tree_map(
        lambda x, like: jax.device_put(x, like.sharding) if isinstance(like, jax.Array) else x,
        restored, carry,
    )
    return placed, list(saved["records"])


def on_host(tree: Any) -> Any:
    """``tree`` with every array whole on the host (NumPy). Under ``jax.distributed`` an
    array sharded over several processes is gathered from all of them, so every process
    must call this at the same point."""

    def whole(x):
        if isinstance(x, jax.Array) and not x.is_fully_addressable:
            from jax.experimental import multihost_utils

            return np.asarray(multihost_utils.process_allgather(x, tiled=True))
        return np.asarray(x) if isinstance(x, jax.Array) else x

    return jax.tree_util.tree_map(whole, tree)


def _save(path, fingerprint: dict[str, Any], carry: Any, chunks: list) -> None:
    """Save the carry and the records. Under ``jax.distributed`` every process gathers
    them, the first writes the file (a shared filesystem is assumed), and all wait for it."""
    carry, chunks = on_host((carry, chunks))
    if jax.process_index() == 0:
        save_checkpoint(path, fingerprint, {"carry": tree_to_leaves(carry), "records": chunks})
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(f"checkpoint {path}")


def run_chunks(
    advance: AdvanceFn,
    carry: Any,
    sizes: Sequence[int],
    *,
    checkpoint: str | os.PathLike | None = None,
    fingerprint: dict[str, Any] | None = None,
    progress: ProgressFn | None = None,
    stage: str = "",
    steps_per_unit: int = 1,
    metrics: Callable[[Any], Mapping[str, float]] | None = None,
    until: Callable[[Any], bool] | None = None,
) -> tuple[Any, list]:
    """Run ``advance`` over the chunks ``sizes``, with progress, checkpoints and resume.

    Args:
        advance: ``advance(carry, start, size) -> (carry, records)``; ``start`` and ``size``
            count in the units of ``sizes``.
        carry: the initial carry (a pytree of arrays).
        sizes: the chunks, in order (their sum is the whole computation).
        checkpoint: optional file: the carry and the records are saved there after every
            chunk, and a run that finds a checkpoint of the same ``fingerprint`` resumes.
        fingerprint: what the checkpoint must match (JSON-serializable): whatever pins the
            computation down (its method, schedule, and a digest of its initial state).
        progress: optional callback, called after every chunk (and once on resume).
        stage: reported in :class:`Progress`.
        steps_per_unit: steps per unit of ``sizes`` (e.g. ``save_every`` when the units are
            records), so that :class:`Progress` counts steps.
        metrics: optional ``metrics(records) -> dict`` of the figures to report.
        until: optional ``until(carry) -> bool``: stop before the next chunk once it holds
            (work that has nothing left to do: no chunk is run or saved for nothing).

    Returns:
        ``(carry, records)``: the final carry and the list of every chunk's records.
    """
    chunks: list = []
    if checkpoint is not None:
        carry, chunks = _resume(Path(checkpoint), fingerprint or {}, carry)
    total = sum(sizes) * steps_per_unit
    done = sum(sizes[: len(chunks)])

    def report(records) -> None:
        if progress is not None:
            figures = dict(metrics(records)) if metrics is not None and records is not None else {}
            progress(Progress(done * steps_per_unit, total, stage, figures))

    if chunks:
        report(chunks[-1])
    for size in sizes[len(chunks):]:
        if until is not None and until(carry):
            break
        carry, records = advance(carry, done, size)
        chunks.append(records)
        done += size
        if checkpoint is not None:
            _save(checkpoint, fingerprint or {}, carry, chunks)
        if progress is not None:
            jax.block_until_ready(records)
            report(records)
    return carry, chunks


T = TypeVar("T")


class _Stopped(Exception):
    """Raised in a concurrent job's progress report once another job has failed."""


def run_concurrently(
    jobs: Mapping[str, Callable[[ProgressFn], T]],
    *,
    workers: int,
    progress: ProgressFn | None = None,
    stage: str = "",
) -> dict[str, T]:
    """Run independent jobs on ``workers`` threads and return their results by name.

    Each job is called with a :data:`ProgressFn` to pass to its computations (it may run
    several one after another). The caller's ``progress`` sees them as one stage: the steps
    done and the total summed over every computation started so far (so the total grows
    as jobs start), the latest figures of any. XLA releases the GIL while it computes, so
    jobs whose computations each use one core (a single small run) finish up to
    ``workers`` times sooner; results do not depend on ``workers`` (each job is the same
    computation). When a job raises (or the caller is interrupted), the others stop with
    their next progress report and the first error is re-raised; jobs that run with
    checkpoints resume from them on the next call. Under ``jax.distributed`` (more than
    one process) the jobs run one after another, in order, since every process must issue
    its collectives in the same order.

    Args:
        jobs: name -> ``job(progress)``, in the order to start them (longest first is best).
        workers: how many jobs run at once (1: one after another).
        progress: receives the combined :class:`Progress`.
        stage: the combined progress's stage.

    Examples:
        >>> run_concurrently({"a": lambda p: 1, "b": lambda p: 2}, workers=2)
        {'a': 1, 'b': 2}
    """
    if workers < 1:
        raise ValueError(f"`workers` must be at least 1, but is {workers}.")
    lock, stop, parts = threading.Lock(), threading.Event(), {}

    def reporter(name: str) -> ProgressFn:
        def report(p: Progress) -> None:
            if stop.is_set():
                raise _Stopped(name)
            with lock:
                parts[name, p.stage] = (p.done, p.total)
                if progress is not None:
                    done, total = (sum(v) for v in zip(*parts.values()))
                    progress(Progress(done, total, stage, p.metrics))
        return report

    if workers == 1 or jax.process_count() > 1:
        return {name: job(reporter(name)) for name, job in jobs.items()}
    pool = ThreadPoolExecutor(max_workers=workers)
    futures = {name: pool.submit(job, reporter(name)) for name, job in jobs.items()}
    try:
        wait(futures.values(), return_when=FIRST_EXCEPTION)
        failed = [f.exception() for f in futures.values() if f.done() and f.exception() is not None]
        if failed:
            raise failed[0]
        return {name: future.result() for name, future in futures.items()}
    except BaseException:
        stop.set()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
