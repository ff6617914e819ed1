"""Compare two results JSONs of the toolkit (``reproduce ... --quick``, ``verify --json``).

Used to show that a refactor changed no result: every key of both documents is compared
recursively, numbers to a relative tolerance (float noise), everything else exactly;
keys that hold machine-dependent measurements (run metadata, wall times, load averages,
steps per second) are skipped. Prints each difference with its path and exits 1 if any.

Usage::

    python scripts/compare_results.py BEFORE.json AFTER.json [--rtol 1e-6] [--skip KEY ...]
                                      [--rename OLD=NEW ...]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Any

# Keys whose values are measurements of the machine, not results.
SKIPPED = {"metadata", "seconds", "load_average", "load_average_1min", "wall_seconds", "steps_per_second", "train_seconds",
           "eval_seconds", "first_step_seconds", "utc_time"}


def _number(x: Any) -> float | None:
    if isinstance(x, bool):
        return None
    if isinstance(x, (int, float)):
        return float(x)
    if x in ("inf", "-inf", "nan"):
        return float(x)
    return None


def differences(a: Any, b: Any, *, rtol: float, atol: float, skip: set[str], path: str = "$") -> list[str]:
    """Every place where ``a`` and ``b`` differ beyond the tolerances."""
    x, y = _number(a), _number(b)
    if x is not None and y is not None:
        same = (math.isnan(x) and math.isnan(y)) or x == y or abs(x - y) <= atol + rtol * max(abs(x), abs(y))
        return [] if same else [f"{path}: {a!r} != {b!r}"]
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for key in sorted(set(a) | set(b)):
            if key in skip or "seconds" in key or "per second" in key:  # timings, under any name
                continue
            if key not in a or key not in b:
                out.append(f"{path}.{key}: only in {'the second' if key not in a else 'the first'}")
            else:
                out += differences(a[key], b[key], rtol=rtol, atol=atol, skip=skip, path=f"{path}.{key}")
        return out
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [f"{path}: lengths {len(a)} != {len(b)}"]
        out = []
        for i, (u, v) in enumerate(zip(a, b)):
            out += differences(u, v, rtol=rtol, atol=atol, skip=skip, path=f"{path}[{i}]")
        return out
    return [] if a == b else [f"{path}: {a!r} != {b!r}"]


def _renamed(doc: Any, names: dict[str, str]) -> Any:
    """``doc`` with every dict key in ``names`` renamed."""
    if isinstance(doc, dict):
        return {names.get(k, k): _renamed(v, names) for k, v in doc.items()}
    if isinstance(doc, list):
        return [_renamed(v, names) for v in doc]
    return doc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("before")
    parser.add_argument("after")
    parser.add_argument("--rtol", type=float, default=1e-6, help="relative tolerance of numbers")
    parser.add_argument("--atol", type=float, default=0.0, help="absolute tolerance of numbers")
    parser.add_argument("--skip", nargs="*", default=[], help="more keys to skip")
    parser.add_argument("--rename", nargs="*", default=[], metavar="OLD=NEW",
                        help="keys renamed between the two documents (applied to the first)")
    args = parser.parse_args(argv)
    with open(args.before) as f:
        a = _renamed(json.load(f), dict(r.split("=", 1) for r in args.rename))
    with open(args.after) as f:
        b = json.load(f)
    diff = differences(a, b, rtol=args.rtol, atol=args.atol, skip=SKIPPED | set(args.skip))
    for line in diff[:200]:
        print(line)
    print(f"{len(diff)} difference(s) beyond rtol {args.rtol:g}, atol {args.atol:g}")
    return 1 if diff else 0


if __name__ == "__main__":
    sys.exit(main())
