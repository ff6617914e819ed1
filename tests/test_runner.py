"""run_concurrently: results by name, one combined progress, and a failure that stops the others."""

import threading
import time

import pytest

from overparam_jax.runner import Progress, run_concurrently


def _counting_job(steps: int, delay: float = 0.0, log: list | None = None):
    """A job that reports ``steps`` chunks of one step (as a sweep would) and returns ``steps``."""
    def job(progress):
        for done in range(1, steps + 1):
            time.sleep(delay)
            progress(Progress(done, steps, "inner"))
            if log is not None:
                log.append(done)
        return steps
    return job


def test_results_by_name_and_one_combined_progress():
    reports = []
    out = run_concurrently({"a": _counting_job(3), "b": _counting_job(5)}, workers=2,
                           progress=reports.append, stage="both")
    assert out == {"a": 3, "b": 5}
    assert {p.stage for p in reports} == {"both"}
    done = [p.done for p in reports]
    assert done == sorted(done) and len(done) == 8  # every chunk of both jobs, summed
    assert (reports[-1].done, reports[-1].total) == (8, 8)


def test_jobs_run_side_by_side():
    """Two jobs that each wait for the other to start finish only if they run at once."""
    started = [threading.Event(), threading.Event()]

    def job(i):
        def run(progress):
            started[i].set()
            return started[1 - i].wait(timeout=10)
        return run

    assert run_concurrently({"a": job(0), "b": job(1)}, workers=2) == {"a": True, "b": True}


def test_one_worker_runs_the_jobs_in_order():
    order = []
    run_concurrently({"a": lambda p: order.append("a"), "b": lambda p: order.append("b")}, workers=1)
    assert order == ["a", "b"]


def test_a_failure_stops_the_others_at_their_next_report_and_is_reraised():
    log = []

    def failing(progress):
        time.sleep(0.05)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_concurrently({"slow": _counting_job(1000, delay=0.01, log=log), "fails": failing}, workers=2)
    assert 0 < len(log) < 100  # it was running, and stopped long before its 1000 chunks


def test_refuses_no_workers():
    with pytest.raises(ValueError, match="`workers` must be at least 1"):
        run_concurrently({}, workers=0)
