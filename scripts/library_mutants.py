"""Plant plausible bugs in the library and check that ``overparam-jax verify`` FAILs on each.

``verify --self-test`` proves each check against the wrong implementations it declares
(injected through its hooks). This script goes one step further, as an outside auditor
would: it edits the library's *source* — a wrong sign, scale, exponent, step or init in
a public function — in a scratch copy of the package, runs the whole default ``verify``
against that copy (``--fail-fast``: it stops at the first failing check), and records
which check caught the bug. A bug that every check passes is MISSED, and is a gap in
``verify`` to close.

Usage::

    python scripts/library_mutants.py                  # every mutation; writes the report
    python scripts/library_mutants.py --only rk4-weights --only gd-half-step
    python scripts/library_mutants.py --list

The report goes to ``docs/verify_library_mutants.md`` and ``.json`` (``--out`` to change).
Compiled programs are cached in a scratch XLA cache shared by the runs, so each run
recompiles only what its mutation changes.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "overparam_jax"


class Mutation(NamedTuple):
    name: str
    module: str  # path relative to the package
    find: str  # must occur exactly once in the module
    replace: str
    what: str


MUTATIONS = [
    # networks.py
    Mutation("product-order", "networks.py", "return _chain(tuple(params)[::-1])",
             "return _chain(tuple(params))", "end_to_end multiplies W_1 ... W_N (wrong order)"),
    Mutation("factorization-root", "networks.py", "root = jnp.maximum(sigma, 0) ** (1.0 / N)",
             "root = jnp.maximum(sigma, 0) ** (1.0 / (N + 1))", "Procedure 1 with Sigma^{1/(N+1)}"),
    Mutation("factorization-last-layer", "networks.py", "set(U * root[None, :])",
             "set(U * root[None, :] ** 2)", "Procedure 1's last layer U Sigma^{2/N}"),
    Mutation("balanced-init-variance", "networks.py",
             "A = std * jax.random.normal(key, (dims[-1], dims[0]), _default_dtype(dtype))",
             "A = std**2 * jax.random.normal(key, (dims[-1], dims[0]), _default_dtype(dtype))",
             "init_balanced uses std as a variance"),
    Mutation("gaussian-init-one-key", "networks.py",
             "std * jax.random.normal(k, (dims[j + 1], dims[j]), dtype) for j, k in enumerate(keys)",
             "std * jax.random.normal(key, (dims[j + 1], dims[j]), dtype) for j, k in enumerate(keys)",
             "init_gaussian reuses one key for every layer"),
    Mutation("gaussian-init-fan-in", "networks.py",
             "std * jax.random.normal(k, (dims[j + 1], dims[j]), dtype) for j, k in enumerate(keys)",
             "std / dims[j] ** 0.5 * jax.random.normal(k, (dims[j + 1], dims[j]), dtype) for j, k in enumerate(keys)",
             "init_gaussian divides std by sqrt(fan-in)"),
    Mutation("balancedness-transposes", "networks.py",
             "jnp.linalg.norm(params[j + 1].T @ params[j + 1] - params[j] @ params[j].T)",
             "jnp.linalg.norm(params[j + 1] @ params[j + 1].T - params[j].T @ params[j])",
             "balancedness with the Gram matrices on the wrong sides"),
    Mutation("margin-sigma-max", "networks.py",
             "sigma_min = jnp.linalg.svd(Phi, compute_uv=False)[-1]\n    return sigma_min",
             "sigma_min = jnp.linalg.svd(Phi, compute_uv=False)[0]\n    return sigma_min",
             "deficiency_margin uses sigma_max(Phi)"),
    Mutation("layer-gradient-sign", "networks.py", "grads.append(_chain(left + [grad_W_e] + right))",
             "grads.append(-_chain(left + [grad_W_e] + right))", "layer_gradients with the wrong sign"),
    Mutation("identity-scale", "networks.py", "eye = scale * jnp.eye(dims[0], dtype=_default_dtype(dtype))",
             "eye = jnp.eye(dims[0], dtype=_default_dtype(dtype))", "init_identity ignores its scale"),
    # losses.py
    Mutation("lp-sum-not-mean", "losses.py", "total = jnp.mean(jnp.sum(_abs_power(residual, p), axis=1))",
             "total = jnp.sum(_abs_power(residual, p))", "l_p summed over samples instead of averaged"),
    Mutation("lp-exponent", "losses.py", "total = jnp.mean(jnp.sum(_abs_power(residual, p), axis=1))",
             "total = jnp.mean(jnp.sum(_abs_power(residual, p - 1), axis=1))", "l_p with exponent p - 1"),
    Mutation("whitened-no-half", "losses.py", "return 0.5 * jnp.sum((W_e - Phi) ** 2)",
             "return jnp.sum((W_e - Phi) ** 2)", "whitened l2 without its 1/2"),
    # preconditioner.py
    Mutation("lambda-exponent", "preconditioner.py", "lead = jnp.where(hi_pos, safe_hi ** (2 * (N - 1) / N),",
             "lead = jnp.where(hi_pos, safe_hi ** (2 * N / (N + 1)),", "Lambda's leading power 2N/(N+1)"),
    Mutation("lambda-diagonal", "preconditioner.py", "g = jnp.where(ratio_ok, ratio, jnp.where(coincide, N, one))",
             "g = jnp.where(ratio_ok, ratio, jnp.where(coincide, N - 1, one))",
             "Lambda_rr = (N - 1) sigma^{2(N-1)/N} at equal singular values"),
    Mutation("preconditioner-one-percent", "preconditioner.py", "P = U @ (Lam * (U.T @ G @ Vt.T)) @ Vt",
             "P = 1.01 * U @ (Lam * (U.T @ G @ Vt.T)) @ Vt", "P_W 1% too large (shapes with d_N, d_0 > 1)"),
    Mutation("single-output-projection", "preconditioner.py",
             "return -scale * (g + (N - 1) * projection)", "return -scale * (g + N * projection)",
             "single-output form with N Pr_w instead of (N - 1) Pr_w"),
    Mutation("field-decay-sign", "preconditioner.py", "return -preconditioner_apply(W_e, G, N) - (weight_decay * N) * W_e",
             "return -preconditioner_apply(W_e, G, N) + (weight_decay * N) * W_e", "end_to_end_field's decay sign"),
    Mutation("velocity-decay-dropped", "preconditioner.py",
             "return phi(ps) + 0.5 * weight_decay * sum(jnp.sum(W * W) for W in ps)",
             "return phi(ps)", "end_to_end_velocity ignores weight decay"),
    # dynamics.py
    Mutation("gd-half-step", "dynamics.py", """    learning_rate: jax.Array = 0.0
    weight_decay: jax.Array = 0.0

    @property
    def time_unit(self):
        return self.learning_rate""", """    learning_rate: jax.Array = 0.0
    weight_decay: jax.Array = 0.0

    @property
    def time_unit(self):
        return 0.5 * self.learning_rate""", "GD steps eta/2"),
    Mutation("gd-decay-sign", "dynamics.py", "return loss, _axpy(self.weight_decay, grad, params)",
             "return loss, _axpy(-self.weight_decay, grad, params)", "weight decay pushes the weights out"),
    Mutation("rk4-weights", "dynamics.py", "(a + 2 * b + 2 * c + d) / 6", "(a + b + c + d) / 4",
             "RK4 with equal stage weights"),
    Mutation("rk4-last-stage", "dynamics.py", "k4 = self.evaluate(_axpy(-h, params, k3))[1]",
             "k4 = self.evaluate(_axpy(-h / 2, params, k3))[1]", "RK4's last stage at the midpoint"),
    Mutation("flow-half-step", "dynamics.py", """    def time_unit(self):
        return self.dt
""", """    def time_unit(self):
        return self.dt / 2
""", "gradient flow (Euler and RK4) steps dt/2"),
    Mutation("update-depth", "dynamics.py", "(preconditioner_apply(W_e, grad, N) + self.weight_decay * N * W_e)",
             "(preconditioner_apply(W_e, grad, N + 1) + self.weight_decay * N * W_e)",
             "the end-to-end update at depth N + 1"),
    Mutation("update-decay", "dynamics.py", "(preconditioner_apply(W_e, grad, N) + self.weight_decay * N * W_e)",
             "(preconditioner_apply(W_e, grad, N) + self.weight_decay * W_e)",
             "the end-to-end update's decay without the factor N"),
    Mutation("record-sigma-max", "dynamics.py", '"sigma_min": jnp.linalg.svd(W_e, compute_uv=False)[-1],',
             '"sigma_min": jnp.linalg.svd(W_e, compute_uv=False)[0],', "trajectories record sigma_max as sigma_min"),
    # sweeps.py
    Mutation("sweep-lr-order", "sweeps.py", "etas = learning_rates[l_idx]", "etas = learning_rates[::-1][l_idx]",
             "sweep applies its learning rates in reverse order"),
    Mutation("sweep-padding-trains", "sweeps.py",
             "mask += tuple(jnp.zeros_like(W_) for W_ in identities) + (jnp.ones_like(params[-1]),)",
             "mask += tuple(jnp.ones_like(W_) for W_ in identities) + (jnp.ones_like(params[-1]),)",
             "sweep trains the identity layers that pad shallow networks"),
    # datasets.py
    Mutation("whiten-scale", "datasets.py", "X_w = sqrt_m * U", "X_w = U", "whiten forgets the sqrt(m) scale"),
    Mutation("standardize-ddof", "datasets.py", "std = X64.std(axis=0)", "std = X64.std(axis=0, ddof=1)",
             "standardize_columns divides by the sample std"),
    Mutation("whiten-uncentered", "datasets.py", "X_c = X64 - mean", "X_c = X64",
             "whiten does not center the inputs"),
]


class Outcome(NamedTuple):
    name: str
    what: str
    caught: bool
    caught_by: list[str]
    exit_code: int
    seconds: float


def _apply(package_copy: Path, mutation: Mutation) -> None:
    path = package_copy / mutation.module
    text = path.read_text()
    count = text.count(mutation.find)
    if count != 1:
        raise ValueError(f"mutation {mutation.name!r}: the text to replace occurs {count} times in "
                         f"{mutation.module} (expected once); update the script.")
    path.write_text(text.replace(mutation.find, mutation.replace))


def _failed_checks(stdout: str) -> list[str]:
    """The check names of the FAIL rows of verify's table."""
    return [line.split()[0] for line in stdout.splitlines() if line.rstrip().endswith("FAIL")]


def run_mutation(mutation: Mutation, cache: Path) -> Outcome:
    """Copy the package, plant ``mutation``, run ``verify --fail-fast`` against the copy."""
    with tempfile.TemporaryDirectory() as scratch:
        copy = Path(scratch) / "overparam_jax"
        shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
        _apply(copy, mutation)
        env = {**os.environ, "PYTHONPATH": scratch, "OVERPARAM_JAX_CACHE": str(cache)}
        env.pop("OVERPARAM_JAX_NO_XLA_CACHE", None)
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "overparam_jax.cli", "verify", "--fail-fast"],
                              cwd=scratch, env=env, capture_output=True, text=True)
        failed = _failed_checks(proc.stdout)
    return Outcome(mutation.name, mutation.what, proc.returncode == 1 and bool(failed), failed,
                   proc.returncode, time.perf_counter() - start)


def _markdown(outcomes: list[Outcome]) -> str:
    caught = sum(o.caught for o in outcomes)
    lines = [
        "# `verify` against bugs planted in the library",
        "",
        "Generated by `python scripts/library_mutants.py`: each row edits one line of the library's",
        "source in a scratch copy and runs the default `overparam-jax verify --fail-fast` on it.",
        "",
        "| mutation | what is wrong | verdict | first check that failed |",
        "|---|---|---|---|",
    ]
    for o in outcomes:
        verdict = "caught" if o.caught else f"**MISSED** (exit {o.exit_code})"
        lines.append(f"| `{o.name}` | {o.what} | {verdict} | {', '.join(o.caught_by) or '-'} |")
    lines += ["", f"{caught}/{len(outcomes)} planted bugs caught."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", action="append", metavar="NAME", help="run only this mutation (repeatable)")
    parser.add_argument("--list", action="store_true", help="list the mutations and exit")
    parser.add_argument("--out", default=str(ROOT / "docs" / "verify_library_mutants"),
                        help="report path without extension (.md and .json are written)")
    args = parser.parse_args(argv)
    by_name = {m.name: m for m in MUTATIONS}
    if args.list:
        for m in MUTATIONS:
            print(f"{m.name:28s} {m.module:18s} {m.what}")
        return 0
    unknown = sorted(set(args.only or []) - set(by_name))
    if unknown:
        parser.error(f"unknown mutations {unknown}; see --list")
    chosen = [by_name[n] for n in args.only] if args.only else MUTATIONS
    outcomes = []
    with tempfile.TemporaryDirectory() as cache:
        for i, mutation in enumerate(chosen, 1):
            outcome = run_mutation(mutation, Path(cache))
            outcomes.append(outcome)
            verdict = f"caught by {outcome.caught_by[0]}" if outcome.caught else "MISSED"
            print(f"[{i}/{len(chosen)}] {mutation.name}: {verdict} ({outcome.seconds:.0f} s)", flush=True)
    if not args.only:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out + ".md").write_text(_markdown(outcomes))
        Path(args.out + ".json").write_text(json.dumps([o._asdict() for o in outcomes], indent=2) + "\n")
    return 0 if all(o.caught for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
