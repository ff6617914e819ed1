"""The ``overparam-jax`` command.

``overparam-jax verify`` runs every registered numerical check of the theory and prints
a table; the exit status is non-zero if any check fails. ``overparam-jax reproduce
<experiment>`` reruns a paper experiment of THEORY.md §8 and writes its JSON, figures
and markdown summary (``reproduce cnn``: E3). User mistakes print one line and exit
with status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

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
    v.add_argument("--list", action="store_true", help="list the checks and exit")
    v.add_argument("--json", metavar="PATH", help="write every figure, the configuration and versions")
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
    cnn.set_defaults(handler=_cmd_reproduce_cnn)


def _cmd_verify(args: argparse.Namespace) -> int:
    import jax

    jax.config.update("jax_enable_x64", True)  # theorem checks run in float64 (STYLE.md)
    from overparam_jax.verify import VerifyConfig, all_checks, get_check, run_check
    from overparam_jax.verify.report import (
        format_table,
        summary_line,
        write_plots,
        write_report_json,
    )

    if args.list:
        for c in all_checks():
            print(f"{c.name:32s} {c.section:6s} {c.claim}")
        return 0
    try:
        checks = [get_check(n) for n in args.only] if args.only else all_checks()
    except ValueError as e:
        raise UserError(str(e)) from None
    config = VerifyConfig(full=args.full, seed=args.seed)
    start, results = time.perf_counter(), []
    for i, check in enumerate(checks, 1):
        print(f"[{i}/{len(checks)}] {check.name} ...", end="", file=sys.stderr, flush=True)
        results.append(run_check(check, config))
        r = results[-1]
        print(f" {'PASS' if r.passed else 'FAIL'} ({r.seconds:.1f} s)", file=sys.stderr, flush=True)
    print(format_table(results))
    print(summary_line(results, time.perf_counter() - start))
    if args.json:
        _write_or_fail(lambda: write_report_json(args.json, results, config), args.json)
    if args.plots:
        _write_or_fail(lambda: write_plots(args.plots, results), args.plots)
    return 0 if all(r.passed for r in results) else 1


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
        result = cnn_mnist.run_cnn_experiment(data, config, progress=progress)
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
    paths: dict = {}
    _write_or_fail(lambda: paths.update(cnn_mnist.write_outputs(result, args.out)), args.out)
    for path in paths.values():
        print(f"wrote {path}")
    return 0


def _write_or_fail(write, target: str) -> None:
    try:
        write()
    except OSError as e:
        raise UserError(f"cannot write {target}: {e.strerror or e}") from None


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit status."""
    args = _build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except UserError as e:
        print(f"overparam-jax: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("overparam-jax: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
