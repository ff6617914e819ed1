"""The ``overparam-jax`` command.

``overparam-jax verify`` runs every registered numerical check of the theory and prints
a table; the exit status is non-zero if any check fails. ``overparam-jax reproduce
<experiment>`` reruns a paper experiment of THEORY.md §8 and writes its JSON, figures
and markdown summary (``reproduce cnn``: E3). User mistakes print one line and exit
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


def _build_parser() -> argparse.ArgumentParser:
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
    _add_reproduce_parsers(sub)
    return parser


def _add_reproduce_parsers(sub: argparse._SubParsersAction) -> None:
    """``reproduce <experiment>``: one sub-subcommand and one ``_cmd_reproduce_*`` handler each."""
    reproduce = sub.add_parser("reproduce", help="reproduce a paper experiment (THEORY.md §8)")
    rsub = reproduce.add_subparsers(dest="experiment", required=True)

    cnn = rsub.add_parser(
        "cnn",
        help="E3: the TensorFlow-tutorial MNIST ConvNet vs its linearly overparameterized twin",
        description="Train the MNIST ConvNet of the TensorFlow tutorial and its twin whose dense "
        "layers are products of two matrices (ACH18), same seed, batches and dropout; write "
        "cnn_results.json, cnn_loss.png and cnn_summary.md.",
    )
    cnn.add_argument("--quick", action="store_true",
                     help="a short smoke run on a subset (120 steps of batch 32)")
    cnn.add_argument("--steps", type=int, metavar="N", help="training steps per net (default: 10 epochs)")
    cnn.add_argument("--seed", type=int, default=0, help="integer seed (default 0)")
    cnn.add_argument("--out", default="out/cnn", metavar="DIR", help="output folder (default out/cnn)")
    cnn.add_argument("--data-dir", metavar="DIR",
                     help="folder with the four MNIST files (else $OVERPARAM_JAX_DATA, the cache, download)")
    cnn.add_argument("--l2-on", choices=("product", "factors"), default="product",
                     help="twin's L2 term on the end-to-end products (default) or on every factor")
    cnn.add_argument("--weight-decay", type=float, default=5e-4, metavar="LAMBDA",
                     help="coefficient of the L2 term (default 5e-4, the tutorial's; 0 disables it)")
    cnn.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_checkpoint_arguments(cnn)
    cnn.set_defaults(handler=_cmd_reproduce_cnn)

    acc = rsub.add_parser(
        "acceleration",
        help="E1: acceleration by depth, GD on depth-1/2/3 linear networks, UCI gas-sensor data",
        description="Full-batch GD (float32) on the standardized gas-sensor Ethanol data with l2 "
        "and l4 losses: depths 1-3 (and 4-8) of hidden width 1 at one learning rate chosen by a "
        "recorded pilot protocol, AdaGrad/AdaDelta/Adam baselines and the discrete end-to-end "
        "update (ACH18); write acceleration_results.json, acceleration_*.png and "
        "acceleration_summary.md.",
    )
    acc.add_argument("--quick", action="store_true",
                     help="a small smoke run (1000 steps, 2 seeds, short pilots)")
    acc.add_argument("--steps", type=int, metavar="N", help="GD iterations per run (default 10^6)")
    acc.add_argument("--seeds", type=int, metavar="S", help="number of seeds of the main depths (default 5)")
    acc.add_argument("--out", default="out/acceleration", metavar="DIR",
                     help="output folder (default out/acceleration)")
    acc.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_checkpoint_arguments(acc)
    acc.set_defaults(handler=_cmd_reproduce_acceleration)

    init = rsub.add_parser(
        "init",
        help="E2: balanced vs layer-wise Gaussian init across depths 3 and 8 (ACGH19)",
        description="Full-batch GD on the whitened gas-sensor Ethanol data (||Phi||_F = 1): "
        "depths 3 and 8, hidden width 32, balanced and layer-wise Gaussian inits over a log grid "
        "of stds, each at its best learning rate from a log grid 1e-4..1; iterations until the "
        "loss is within 1e-5 of the optimum (cap 10^6); write init_results.json, init_*.png and "
        "init_summary.md.",
    )
    init.add_argument("--quick", action="store_true",
                      help="a smoke run (5 stds, 4 learning rates, cap 20000 steps)")
    init.add_argument("--steps", type=int, metavar="N", help="the iteration cap (default 10^6)")
    init.add_argument("--seeds", type=int, metavar="S", help="number of seeds (default 1)")
    init.add_argument("--out", default="out/init", metavar="DIR", help="output folder (default out/init)")
    init.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_checkpoint_arguments(init)
    init.set_defaults(handler=_cmd_reproduce_init)


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

    from overparam_jax.datasets import _cache_root

    if os.environ.get("OVERPARAM_JAX_NO_XLA_CACHE"):
        return
    jax.config.update("jax_compilation_cache_dir", str(_cache_root() / "xla"))
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


def _cmd_reproduce_cnn(args: argparse.Namespace) -> int:
    from overparam_jax.datasets import load_mnist
    from overparam_jax.experiments import cnn_mnist

    if args.steps is not None and args.steps < 1:
        raise UserError(f"--steps must be a positive integer, got {args.steps}")
    if not args.weight_decay >= 0:
        raise UserError(f"--weight-decay must be non-negative, got {args.weight_decay}")
    overrides = {"seed": args.seed, "l2_target": args.l2_on, "weight_decay": args.weight_decay}
    if args.steps is not None:
        overrides["num_steps"] = args.steps
    config = cnn_mnist.quick_config(**overrides) if args.quick else cnn_mnist.CNNConfig(**overrides)
    try:
        data = load_mnist(args.data_dir)
    except (OSError, ValueError) as e:
        raise UserError(f"cannot load MNIST: {e}") from None
    try:
        cnn_mnist.validate_config(config, data)
    except (TypeError, ValueError) as e:
        raise UserError(str(e)) from None
    checkpoint = _prepare_run(args, "cnn", config)

    bar = None

    def progress(p: cnn_mnist.Progress) -> None:
        nonlocal bar
        if args.no_progress:
            return
        if bar is None:
            from tqdm import tqdm

            bar = tqdm(total=2 * p.num_steps, unit="step", file=sys.stderr, dynamic_ncols=True)
        offset = 0 if p.net == "baseline" else p.num_steps
        bar.update(offset + p.step - bar.n)
        info = {"net": p.net}
        if p.loss == p.loss:  # not NaN (NaN before the first step)
            info["loss"] = f"{p.loss:.3g}"
        if p.test_accuracy is not None:
            info["test_acc"] = f"{100 * p.test_accuracy:.2f}%"
        bar.set_postfix(info, refresh=False)

    try:
        result = cnn_mnist.run_cnn_experiment(data, config, progress=progress, checkpoint=checkpoint)
    finally:
        if bar is not None:
            bar.close()
    for run in (result.baseline, result.overparameterized):
        print(
            f"{run.name:18s} {run.param_count:>9,} parameters  {run.steps_per_second:6.2f} steps/s  "
            f"final test accuracy {100 * run.test_accuracy[-1]:.2f} %"
        )
    extra = result.overparameterized.param_count - result.baseline.param_count
    ratio = extra / result.baseline.param_count
    print(f"overparameterization adds {extra:,} parameters (+{100 * ratio:.1f} %)")
    _finish_run(checkpoint, lambda: cnn_mnist.write_outputs(result, args.out), args.out)
    return 0


def _cmd_reproduce_acceleration(args: argparse.Namespace) -> int:
    from overparam_jax.experiments import acceleration

    for flag, value in (("--steps", args.steps), ("--seeds", args.seeds)):
        if value is not None and value < 1:
            raise UserError(f"{flag} must be a positive integer, got {value}")
    config = acceleration.quick_config() if args.quick else acceleration.AccelerationConfig()
    if args.steps is not None:
        config = acceleration.with_steps(config, args.steps)
    if args.seeds is not None:
        config = config._replace(
            seeds=tuple(range(args.seeds)), extra_seeds=min(config.extra_seeds, args.seeds),
            baseline_seeds=min(config.baseline_seeds, args.seeds),
        )
    try:
        acceleration.validate_config(config)
    except (TypeError, ValueError) as e:
        raise UserError(str(e)) from None
    checkpoint = _prepare_run(args, "acceleration", config)

    bar, stage = None, None

    def progress(p: acceleration.Progress) -> None:
        nonlocal bar, stage
        if p.stage != stage:
            from tqdm import tqdm

            if bar is not None:
                bar.close()
            bar, stage = tqdm(total=p.total, desc=p.stage, unit="step", file=sys.stderr,
                              dynamic_ncols=True), p.stage
        bar.update(p.done - bar.n)

    try:
        result = acceleration.run_acceleration_experiment(
            config, progress=None if args.no_progress else progress, checkpoint=checkpoint
        )
    finally:
        if bar is not None:
            bar.close()
    for name, rec in result.protocol.items():
        print(f"{name}: lr (every depth) {rec['lr_gd']:g}, linear model's largest stable lr "
              f"{rec['lr_linear']:g}")
    for claim in acceleration.result_to_dict(result)["claims"].values():
        print(f"{'HOLDS' if claim['holds'] else 'DOES NOT HOLD'}: {claim['statement']}")
    print(f"wall time {result.seconds['total']:.0f} s")
    _finish_run(checkpoint, lambda: acceleration.write_outputs(result, args.out), args.out)
    return 0


def _cmd_reproduce_init(args: argparse.Namespace) -> int:
    import jax

    jax.config.update("jax_enable_x64", True)  # margins in float64; GD runs in float32 (config)
    from overparam_jax.experiments import init_robustness

    for flag, value in (("--steps", args.steps), ("--seeds", args.seeds)):
        if value is not None and value < 1:
            raise UserError(f"{flag} must be a positive integer, got {value}")
    config = init_robustness.quick_config() if args.quick else init_robustness.InitConfig()
    if args.steps is not None:
        config = config._replace(max_steps=args.steps, fine_steps=min(config.fine_steps, args.steps))
    if args.seeds is not None:
        config = config._replace(seeds=tuple(range(args.seeds)))
    try:
        init_robustness.validate_config(config)
    except (TypeError, ValueError) as e:
        raise UserError(str(e)) from None
    checkpoint = _prepare_run(args, "init", config)

    bars: dict = {}

    def progress(p: init_robustness.InitProgress) -> None:
        if args.no_progress:
            return
        if p.depth not in bars:
            from tqdm import tqdm

            for bar in bars.values():
                bar.close()
            bars[p.depth] = tqdm(total=p.max_steps, desc=f"depth {p.depth}", unit="step",
                                 file=sys.stderr, dynamic_ncols=True)
        bars[p.depth].update(p.step - bars[p.depth].n)
        bars[p.depth].set_postfix({"open runs": f"{p.active}/{p.total}"}, refresh=False)

    try:
        result = init_robustness.run_init_experiment(config, progress=progress, checkpoint=checkpoint)
    finally:
        for bar in bars.values():
            bar.close()
    counts = init_robustness.result_to_dict(result)
    for depth, d in counts["depths"].items():
        for init, c in d["converged_stds"].items():
            print(f"depth {depth} {init:9s}: converged at {c['all_seeds']} of {c['of']} stds")
    print(f"wall time {result.seconds:.0f} s")
    _finish_run(checkpoint, lambda: init_robustness.write_outputs(result, args.out), args.out)
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
    args = _build_parser().parse_args(argv)
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
