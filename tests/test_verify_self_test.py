"""Every verify check proves its power: PASS on the library, FAIL on each of its mutants.

This is ``overparam-jax verify --self-test`` in the default test run: the whole default
``verify`` once on the library (under the suite's strict settings) and once per declared
mutant, each a named wrong implementation injected through the check's hooks.
"""

import json
from pathlib import Path

import pytest

from overparam_jax.verify import all_checks
from overparam_jax.verify.report import format_markdown

CHECKS = all_checks()
MUTANTS = [(c.name, m.name) for c in CHECKS for m in c.mutants]
# The checks the audit rewrote or added: each draws its evidence under `--plots`.
PLOTTED = [
    "gf-balance-conserved", "aligned-flow-closed-form", "aligned-integrator-order", "aligned-gd-tracks-flow",
    "incremental-learning", "singular-value-dynamics", "theorem1-linear-convergence", "claim4-no-balance-fails",
    "claim5-no-margin-stalls", "margin-probability-exact", "theorem2-constant-probability",
    "strict-saddle-depth-2", "non-strict-saddle", "gaussian-init-balancedness", "lp-acceleration",
]


@pytest.fixture(scope="module")
def report(verify_report):
    return verify_report


@pytest.mark.parametrize("name", [c.name for c in CHECKS])
def test_check_passes_on_the_library(report, name):
    result = next(r for r in report.real if r.name == name)
    assert result.passed, (result.measured, result.threshold, result.details.get("error"))


@pytest.mark.parametrize("name, mutant", MUTANTS, ids=[f"{c}/{m}" for c, m in MUTANTS])
def test_check_catches_its_mutant(report, name, mutant):
    outcome = next(o for o in report.outcomes if (o.check, o.mutant) == (name, mutant))
    assert outcome.error is None, outcome.error  # a crash is not a catch
    assert outcome.caught, f"{name} PASSes on the wrong implementation {mutant!r}: {outcome.measured}"


def test_mutation_score_is_100_percent(report):
    assert report.ok and report.mutation_score == 1.0
    assert len(report.outcomes) >= len(CHECKS)


@pytest.mark.parametrize("name", PLOTTED)
def test_rewritten_checks_draw_their_evidence(report, name):
    result = next(r for r in report.real if r.name == name)
    assert result.plot is not None


DOCS = Path(__file__).resolve().parents[1] / "docs"


def test_committed_reference_page_is_generated_from_the_committed_self_test():
    """docs/verify.md is `format_markdown` of docs/verify_self_test.json: every number on the
    page is in the JSON, and the page lists today's checks and mutants."""
    document = json.loads((DOCS / "verify_self_test.json").read_text())
    assert [c["name"] for c in document["checks"]] == [c.name for c in CHECKS]
    assert [(o["check"], o["mutant"]) for o in document["mutants"]] == MUTANTS
    assert document["ok"] and document["mutation_score"] == 1.0
    assert (DOCS / "verify.md").read_text() == format_markdown(document, CHECKS)


def test_readme_verify_output_is_the_committed_run():
    """The README's `overparam-jax verify` table is the committed self-test's library run."""
    from overparam_jax.verify import CheckResult
    from overparam_jax.verify.report import format_table, summary_line

    document = json.loads((DOCS / "verify_self_test.json").read_text())
    fields = set(CheckResult._fields) - {"plot"}
    results = [CheckResult(**{k: (float(v) if k == "measured" else v) for k, v in r.items() if k in fields})
               for r in document["checks"]]
    expected = format_table(results, claims=False) + "\n" + summary_line(results, sum(r.seconds for r in results))
    readme = (DOCS.parent / "README.md").read_text()
    block = readme.split("Output of `overparam-jax verify`")[1].split("```text\n")[1].split("\n```")[0]
    assert block == expected
