"""Run the quick reproductions and ``verify --json`` on two revisions and compare their JSONs.

For refactors that must change no result: a git worktree of ``BEFORE`` (any revision) and
the working tree each run, in the same session,

* ``overparam-jax reproduce {acceleration,init,cnn} --quick`` (the CNN needs the MNIST
  copy, ``--mnist``), and
* ``overparam-jax verify --json``,

and each pair of JSONs is compared with :mod:`compare_results` (machine measurements
skipped). Prints one verdict line per output and the differences; exits 1 if any remain
beyond the tolerances.

Usage::

    python scripts/compare_revisions.py BEFORE [--mnist ../shared/data/mnist] [--rtol 1e-6]
        [--rename OLD=NEW ...] [--skip KEY ...] [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
from compare_results import SKIPPED, _renamed, differences  # noqa: E402

RUNS = {
    "acceleration": ["reproduce", "acceleration", "--quick"],
    "init": ["reproduce", "init", "--quick"],
    "cnn": ["reproduce", "cnn", "--quick"],
}


def _run(tree: Path, out: Path, mnist: str) -> dict[str, Path]:
    """Every output JSON of ``tree`` (a checkout), written under ``out``."""
    env = {**os.environ, "PYTHONPATH": str(tree), "OVERPARAM_JAX_NO_XLA_CACHE": "1"}
    paths = {}
    for name, argv in RUNS.items():
        extra = ["--data-dir", mnist] if name == "cnn" else []
        cmd = [sys.executable, "-m", "overparam_jax.cli", *argv, "--no-progress", "--no-checkpoint",
               "--out", str(out / name), *extra]
        subprocess.run(cmd, cwd=tree, env=env, check=True, capture_output=True)
        paths[name] = out / name / f"{name}_results.json"
    verify = out / "verify.json"
    subprocess.run([sys.executable, "-m", "overparam_jax.cli", "verify", "--json", str(verify)],
                   cwd=tree, env=env, check=True, capture_output=True)
    paths["verify"] = verify
    return paths


def main(argv: list[str] | None = None) -> int:
    import json

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("before", help="the revision to compare the working tree with")
    parser.add_argument("--mnist", default=str(ROOT.parent / "shared" / "data" / "mnist"))
    parser.add_argument("--rtol", type=float, default=1e-6)
    parser.add_argument("--rename", nargs="*", default=[], metavar="OLD=NEW")
    parser.add_argument("--skip", nargs="*", default=[])
    parser.add_argument("--keep", default=None, help="keep the outputs in this folder")
    args = parser.parse_args(argv)
    work = Path(args.keep or tempfile.mkdtemp())
    before_tree = work / "before_tree"
    if not before_tree.exists():
        subprocess.run(["git", "worktree", "add", "--detach", str(before_tree), args.before], cwd=ROOT,
                       check=True, capture_output=True)
    try:
        before = _run(before_tree, work / "before", args.mnist)
        after = _run(ROOT, work / "after", args.mnist)
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(before_tree)], cwd=ROOT, capture_output=True)
    renames = dict(r.split("=", 1) for r in args.rename)
    failed = False
    for name in before:
        a = _renamed(json.loads(before[name].read_text()), renames)
        b = json.loads(after[name].read_text())
        diff = differences(a, b, rtol=args.rtol, atol=0.0, skip=SKIPPED | set(args.skip))
        print(f"{name}: {len(diff)} difference(s) beyond rtol {args.rtol:g}")
        for line in diff[:20]:
            print(f"    {line}")
        failed |= bool(diff)
    print(f"outputs in {work}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
