"""Presenting verify results: the text table, the JSON document and per-check PNGs."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import json

from overparam_jax.results import atomic_write_text, json_safe, run_metadata, save_figure, write_json
from overparam_jax.verify.registry import Check, CheckResult, SelfTestReport, VerifyConfig

__all__ = [
    "format_check_list",
    "format_markdown",
    "format_self_test",
    "format_table",
    "summary_line",
    "write_plots",
    "self_test_document",
    "write_document",
    "write_report_json",
]


def _fmt(x: float) -> str:
    return f"{x:.3g}" if abs(x) >= 1e-3 or x == 0 else f"{x:.2e}"


def _margin(x: float) -> str:
    if x != x:
        return "-"
    return "inf" if x == float("inf") else f"{x:.3g}x"


def _columns(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows)]
    line = lambda cells: "  ".join(str(c).ljust(w) for c, w in zip(cells, widths)).rstrip()
    return [line(header), line("-" * w for w in widths)] + [line(row) for row in rows]


def format_table(results: Sequence[CheckResult], *, claims: bool = True) -> str:
    """One row per check: name, section, measured, relation and threshold, margin (how many
    times inside the threshold), verdict; then (``claims=True``) each check's claim."""
    header = ("check", "§", "measured", "threshold", "margin", "result")
    rows = [
        (r.name, r.section, _fmt(r.measured), f"{r.relation} {_fmt(r.threshold)}", _margin(r.margin),
         "PASS" if r.passed else "FAIL")
        for r in results
    ]
    out = _columns(header, rows)
    if claims:
        out += [""] + [f"{r.name}: {r.claim}" for r in results]
    return "\n".join(out)


def format_check_list(checks: Sequence[Check]) -> str:
    """Each check with its section, the statement it tests, its regime and its mutants."""
    blocks = []
    for c in checks:
        mutants = "; ".join(f"{m.name} ({m.description})" for m in c.mutants)
        blocks.append(
            f"{c.name}  [{c.section}]  pass if measured {c.relation} {_fmt(c.threshold)}\n"
            f"  claim:   {c.claim}\n  regime:  {c.regime}\n  mutants: {mutants}"
        )
    return "\n\n".join(blocks)


def format_self_test(report: SelfTestReport) -> str:
    """The check x mutant table (caught / MISSED / ERROR), then the mutation score."""
    real = {r.name: r for r in report.real}
    header = ("check", "on the library", "mutant", "measured", "verdict")
    rows = []
    for o in report.outcomes:
        verdict = "caught" if o.caught else ("ERROR" if o.error else "MISSED")
        r = real[o.check]
        rows.append((o.check, f"{'PASS' if r.passed else 'FAIL'} {_fmt(r.measured)}", o.mutant,
                     _fmt(o.measured), verdict))
    caught = sum(o.caught for o in report.outcomes)
    out = _columns(header, rows)
    failed_real = [r.name for r in report.real if not r.passed]
    out.append("")
    if failed_real:
        out.append(f"checks that FAIL on the library: {', '.join(failed_real)}")
    for o in report.outcomes:
        if o.error:
            out.append(f"{o.check} / {o.mutant} raised: {o.error}")
    out.append(
        f"mutation score {100 * report.mutation_score:.1f}% ({caught}/{len(report.outcomes)} mutants "
        f"caught by {len(report.real)} checks); "
        f"{len(report.real) - len(failed_real)}/{len(report.real)} checks pass on the library"
    )
    return "\n".join(out)


def summary_line(results: Sequence[CheckResult], seconds: float) -> str:
    failed = [r.name for r in results if not r.passed]
    verdict = "all passed" if not failed else f"FAILED: {', '.join(failed)}"
    return f"{len(results) - len(failed)}/{len(results)} checks passed in {seconds:.1f} s — {verdict}"


def write_report_json(path: str | Path, results: Sequence[CheckResult], config: VerifyConfig) -> Path:
    """Every figure with the configuration and library versions."""
    return write_json(
        path,
        {
            "config": config._asdict(),
            "passed": all(r.passed for r in results),
            "checks": [r.to_json() for r in results],
        },
    )


def self_test_document(report: SelfTestReport, config: VerifyConfig) -> dict:
    """The self-test as a JSON-ready document: every check on the library and on each mutant,
    the score, the configuration and library versions."""
    return json_safe({
        "config": config._asdict(),
        "ok": report.ok,
        "mutation_score": report.mutation_score,
        "checks": [r.to_json() for r in report.real],
        "mutants": [o.to_json() for o in report.outcomes],
        "metadata": run_metadata(),
    })


def write_document(path: str | Path, document: dict) -> Path:
    """``document`` as indented JSON, atomically."""
    return atomic_write_text(path, json.dumps(document, indent=2, allow_nan=False) + "\n")


def format_markdown(document: dict, checks: Sequence[Check]) -> str:
    """The reference page of the checks: for each, the statement, the regime, the threshold,
    what the run measured, and each mutant with the figure it produced.

    ``document`` is a :func:`self_test_document` (or the JSON file written from one), so every
    number on the page is a number of that file; ``checks`` give the regimes and the mutants'
    descriptions.
    """
    outcomes: dict[str, list[dict]] = {}
    for o in document["mutants"]:
        outcomes.setdefault(o["check"], []).append(o)
    meta = document["metadata"]
    lines = [
        "# The checks of `overparam-jax verify`",
        "",
        "Generated by `overparam-jax verify --self-test --json docs/verify_self_test.json "
        "--markdown docs/verify.md`",
        f"(seed {document['config']['seed']}, {'--full' if document['config']['full'] else 'default sizes'}; "
        f"jax {meta['jax']}, {meta['backend']}, float64). Each check PASSes when its measured figure "
        "satisfies the relation; *margin* is how many times inside the threshold it is. Each mutant is a "
        "wrong implementation injected through the check's hooks; the check must FAIL on it.",
        "",
        f"Mutation score: {100 * document['mutation_score']:.1f}% "
        f"({sum(o['caught'] for o in document['mutants'])}/{len(document['mutants'])} mutants caught by "
        f"{len(document['checks'])} checks).",
        "",
        "| check | § | measured | threshold | margin | result | mutants caught |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in document["checks"]:
        mine = outcomes.get(r["name"], [])
        lines.append(
            f"| [`{r['name']}`](#{r['name']}) | {r['section']} | {_fmt(float(r['measured']))} | "
            f"{r['relation']} {_fmt(r['threshold'])} | {_margin(float(r['margin']))} | "
            f"{'PASS' if r['passed'] else 'FAIL'} | {sum(o['caught'] for o in mine)}/{len(mine)} |"
        )
    by_name = {c.name: c for c in checks}
    for r in document["checks"]:
        c = by_name[r["name"]]
        lines += ["", f"## {c.name}", "", f"**Claim ({c.section}).** {c.claim}", "",
                  f"**Regime.** {c.regime}", "",
                  f"**Measured** {_fmt(float(r['measured']))} {c.relation} {_fmt(c.threshold)}: "
                  f"{'PASS' if r['passed'] else 'FAIL'}.", "",
                  "| mutant | what is wrong | measured | verdict |", "|---|---|---|---|"]
        descriptions = {m.name: m.description for m in c.mutants}
        for o in outcomes.get(c.name, []):
            verdict = "caught" if o["caught"] else ("ERROR" if o["error"] else "MISSED")
            lines.append(f"| `{o['mutant']}` | {descriptions.get(o['mutant'], o['description'])} | "
                         f"{_fmt(float(o['measured']))} | {verdict} |")
    return "\n".join(lines) + "\n"


def write_plots(directory: str | Path, results: Sequence[CheckResult]) -> list[Path]:
    """A PNG per check that has a plot, named ``<check>.png``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    for r in results:
        if r.plot is None:
            continue
        fig, ax = plt.subplots(figsize=(6, 4))
        r.plot(ax)
        ax.set_title(f"{r.name} ({'PASS' if r.passed else 'FAIL'})", fontsize=10)
        written.append(save_figure(fig, Path(directory) / f"{r.name}.png", caption=r.claim))
        plt.close(fig)
    return written
