"""The ``overparam-jax`` command.

``overparam-jax verify`` runs every registered numerical check of the theory and prints
a table; the exit status is non-zero if any check fails. ``overparam-jax reproduce
<experiment>`` reruns a paper experiment (THEORY.md §8, and ACHL19's deep matrix
factorization) and writes its JSON, figures and markdown summary. User mistakes print one line and exit
with status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any

from overparam_jax.checkpoint import CheckpointMismatch

__all__ = ["main"]


class UserError(Exception):
    """A mistake in the command line: reported as one line, exit status 2."""


def _build_parser(experiments: bool = True) -> argparse.ArgumentParser:
    """The command line. ``experiments=False`` leaves the experiment modules unimported
    (``verify`` neither needs them nor pays for their imports)."""
    parser = argparse.ArgumentParser(
        prog="overparam-jax",
        description="Deep linear networks and the theory of their optimization, verified numerically.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    v = sub.add_parser("verify", help="run the numerical checks of every theorem and claim")
    v.add_argument("--full", action="store_true", help="larger sizes and more samples")
    v.add_argument("--only", action="append", metavar="NAME", help="run only this check (repeatable)")
    v.add_argument("--list", action="store_true",
                   help="list the checks (claim, regime, threshold, mutants) and exit")
    v.add_argument("--self-test", action="store_true",
                   help="run every check on the library (must PASS) and on each of its mutants, "
                   "wrong implementations it must FAIL on; print the table and the mutation score")
    v.add_argument("--fail-fast", action="store_true", help="stop at the first check that fails")
    v.add_argument("--json", metavar="PATH", help="write every figure, the configuration and versions")
    v.add_argument("--markdown", metavar="PATH",
                   help="with --self-test: write the checks' reference page (claims, regimes, figures, "
                   "mutants) from the same numbers as --json")
    v.add_argument("--plots", metavar="DIR", help="write a PNG per check that has a picture")
    v.add_argument("--seed", type=int, default=0, help="integer seed (default 0)")
    v.set_defaults(handler=_cmd_verify)
    reproduce = sub.add_parser("reproduce", help="reproduce a paper experiment (THEORY.md §8)")
    if experiments:
        _add_reproduce_parsers(reproduce)
    return parser


def _add_reproduce_parsers(reproduce: argparse.ArgumentParser) -> None:
    """``reproduce <experiment>``: one sub-subcommand per :class:`~overparam_jax.experiments.Experiment`,
    all handled by :func:`_cmd_reproduce`."""
    from overparam_jax.experiments import EXPERIMENTS, get_experiment

    rsub = reproduce.add_subparsers(dest="experiment", required=True)
    for name in EXPERIMENTS:
        exp = get_experiment(name)
        p = rsub.add_parser(name, help=exp.help, description=exp.description)
        p.add_argument("--quick", action="store_true", help="a small smoke run (seconds to a minute)")
        if "steps" in exp.common:
            p.add_argument("--steps", type=int, metavar="N", help="the number of steps (see the default in --help's description)")
        if "seeds" in exp.common:
            p.add_argument("--seeds", type=int, metavar="S", help="the number of seeds")
        if "seed" in exp.common:
            p.add_argument("--seed", type=int, default=0, help="integer seed (default 0)")
        dests = [p.add_argument(*o.flags, **o.kwargs).dest for o in exp.options]
        p.add_argument("--out", default=f"out/{name}", metavar="DIR", help=f"output folder (default out/{name})")
        p.add_argument("--no-progress", action="store_true", help="no progress bars")
        _add_checkpoint_arguments(p)
        p.set_defaults(handler=_cmd_reproduce, option_dests=dests)


def _add_checkpoint_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--checkpoint", metavar="DIR",
                       help="save the run's state here after every chunk and resume from it when "
                       "the same command is run again (default OUT/checkpoint; removed once the "
                       "results are written)")
    group.add_argument("--no-checkpoint", action="store_true", help="do not save or resume state")


def _prepare_run(args: argparse.Namespace, experiment: str, config) -> Any:
    """Check that ``--out`` is writable (before hours of computing, not after) and open the
    checkpoint folder: a :class:`~overparam_jax.checkpoint.CheckpointDir`, or ``None``."""
    import os
    import tempfile
    from pathlib import Path

    import jax

    from overparam_jax.checkpoint import CheckpointDir

    _enable_compilation_cache(jax)
    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as e:
        raise UserError(f"cannot write to --out {out}: {e.strerror or e}") from None
    if args.no_checkpoint:
        return None
    path = Path(args.checkpoint) if args.checkpoint else out / "checkpoint"
    try:
        checkpoint = CheckpointDir(path, experiment=experiment, config=config._asdict())
    except OSError as e:
        raise UserError(f"cannot write the checkpoint folder {path}: {e.strerror or e}") from None
    args.resume_hint = f"rerun the same command to resume from {path}{os.sep}"
    if checkpoint.resumed:
        print(f"resuming from the checkpoint in {path}", file=sys.stderr)
    return checkpoint


def _finish_run(checkpoint, write, out: str) -> None:
    """Write the results, then delete the checkpoint (it is only for an unfinished run)."""
    paths: dict = {}
    _write_or_fail(lambda: paths.update(write()), out)
    for path in paths.values():
        print(f"wrote {path}")
    if checkpoint is not None:
        checkpoint.remove()


def _enable_compilation_cache(jax) -> None:
    """Keep compiled XLA programs on disk between runs (``$OVERPARAM_JAX_CACHE/xla``, by
    default ``~/.cache/overparam_jax/xla``): the checks are compile-bound, so a second
    ``verify`` is several times faster. ``OVERPARAM_JAX_NO_XLA_CACHE=1`` turns it off."""
    import os

    from overparam_jax.datasets import cache_root

    if os.environ.get("OVERPARAM_JAX_NO_XLA_CACHE"):
        return
    jax.config.update("jax_compilation_cache_dir", str(cache_root() / "xla"))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)


def _cmd_verify(args: argparse.Namespace) -> int:
    import jax

    jax.config.update("jax_enable_x64", True)  # theorem checks run in float64 (STYLE.md)
    _enable_compilation_cache(jax)
    from overparam_jax.verify import VerifyConfig, all_checks, get_check
    from overparam_jax.verify.report import format_check_list

    try:
        checks = [get_check(n) for n in args.only] if args.only else all_checks()
    except ValueError as e:
        raise UserError(str(e)) from None
    if args.list:
        print(format_check_list(checks))
        return 0
    if args.markdown and not args.self_test:
        raise UserError("--markdown needs --self-test (the page lists each check's mutants)")
    config = VerifyConfig(full=args.full, seed=args.seed)
    if args.self_test:
        return _verify_self_test(args, checks, config)
    return _verify_checks(args, checks, config)


def _verify_checks(args: argparse.Namespace, checks, config) -> int:
    from overparam_jax.verify import run_check
    from overparam_jax.verify.report import format_table, summary_line, write_plots, write_report_json

    start, results = time.perf_counter(), []
    for i, check in enumerate(checks, 1):
        print(f"[{i}/{len(checks)}] {check.name} ...", end="", file=sys.stderr, flush=True)
        results.append(run_check(check, config))
        r = results[-1]
        print(f" {'PASS' if r.passed else 'FAIL'} ({r.seconds:.1f} s)", file=sys.stderr, flush=True)
        if args.fail_fast and not r.passed:
            break
    print(format_table(results))
    print(summary_line(results, time.perf_counter() - start))
    if args.json:
        _write_or_fail(lambda: write_report_json(args.json, results, config), args.json)
    if args.plots:
        _write_or_fail(lambda: write_plots(args.plots, results), args.plots)
    return 0 if all(r.passed for r in results) else 1


def _verify_self_test(args: argparse.Namespace, checks, config) -> int:
    from overparam_jax.results import atomic_write_text
    from overparam_jax.verify import CheckResult, self_test
    from overparam_jax.verify.report import (
        format_markdown,
        format_self_test,
        self_test_document,
        write_document,
        write_plots,
    )

    start = time.perf_counter()
    total = sum(1 + len(c.mutants) for c in checks)
    done = 0

    def show(result) -> None:
        nonlocal done
        done += 1
        if isinstance(result, CheckResult):
            label, verdict = result.name, "PASS" if result.passed else "FAIL"
        else:
            label = f"{result.check} / {result.mutant}"
            verdict = "caught" if result.caught else ("ERROR" if result.error else "MISSED")
        print(f"[{done}/{total}] {label}: {verdict} ({result.seconds:.1f} s)", file=sys.stderr, flush=True)

    report = self_test(checks, config, on_result=show)
    print(format_self_test(report))
    print(f"self-test {'passed' if report.ok else 'FAILED'} in {time.perf_counter() - start:.1f} s")
    document = self_test_document(report, config)
    if args.json:
        _write_or_fail(lambda: write_document(args.json, document), args.json)
    if args.markdown:
        page = format_markdown(document, checks)
        _write_or_fail(lambda: atomic_write_text(args.markdown, page), args.markdown)
    if args.plots:
        _write_or_fail(lambda: write_plots(args.plots, report.real), args.plots)
    return 0 if report.ok else 1


class _ProgressBars:
    """The command line's view of :class:`~overparam_jax.runner.Progress`: one tqdm bar per
    stage (closed when the next stage starts), the run's figures as its postfix."""

    def __init__(self, enabled: bool):
        self.enabled, self.bar, self.stage = enabled, None, None

    def __call__(self, p) -> None:
        if not self.enabled:
            return
        if self.bar is None or p.stage != self.stage:
            from tqdm import tqdm

            self.close()
            self.bar = tqdm(total=p.total, desc=p.stage or None, unit="step", file=sys.stderr,
                            dynamic_ncols=True)
            self.stage = p.stage
        if p.total != self.bar.total:  # a combined stage whose total grows as its parts start
            self.bar.total = p.total
        self.bar.update(p.done - self.bar.n)
        if p.metrics:
            self.bar.set_postfix({k: f"{v:.3g}" for k, v in p.metrics.items()}, refresh=False)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _cmd_reproduce(args: argparse.Namespace) -> int:
    from overparam_jax.experiments import get_experiment

    exp = get_experiment(args.experiment)
    if exp.x64:
        import jax

        jax.config.update("jax_enable_x64", True)
    options = {dest: getattr(args, dest) for dest in args.option_dests}
    common = {k: getattr(args, k, None) for k in ("steps", "seeds", "seed")}
    try:
        config = exp.configure(quick=args.quick, **common, **options)
    except (TypeError, ValueError) as e:
        raise UserError(str(e)) from None
    try:
        data = exp.load(config)
    except (OSError, ValueError) as e:
        raise UserError(f"cannot load the data: {e}") from None
    checkpoint = _prepare_run(args, exp.name, config)
    bars = _ProgressBars(enabled=not args.no_progress)
    try:
        result = exp.run(config, data, progress=bars, checkpoint=checkpoint)
    finally:
        bars.close()
    for line in exp.summary_lines(result):
        print(line)
    _finish_run(checkpoint, lambda: exp.write_outputs(result, args.out), args.out)
    return 0


def _write_or_fail(write, target: str) -> None:
    try:
        write()
    except OSError as e:
        raise UserError(f"cannot write {target}: {e.strerror or e}") from None


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit status.

    Ctrl-C (SIGINT) and SIGTERM (what job schedulers send) stop a run the same way: the
    last completed chunk is in the checkpoint, one line says how to resume, exit 130.
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    args = _build_parser(experiments=argv[:1] != ["verify"]).parse_args(argv)
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _interrupt) if in_main_thread else None
    try:
        return args.handler(args)
    except (UserError, CheckpointMismatch) as e:  # a mismatch: the manifest or a stage's file
        print(f"overparam-jax: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        hint = getattr(args, "resume_hint", None)
        print(f"overparam-jax: interrupted{'; ' + hint if hint else ''}", file=sys.stderr)
        return 130
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
