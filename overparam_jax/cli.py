"""The ``overparam-jax`` command.

``overparam-jax verify`` runs every registered numerical check of the theory and prints
a table; the exit status is non-zero if any check fails. User mistakes print one line
and exit with status 2, never a traceback.
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
    return parser


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
