"""scripts/library_mutants.py plants bugs in the library's source and runs verify on each.

The default run checks that every planted edit still applies to today's source (exactly
one match, a real change), so the script cannot rot silently; ``-m slow`` plants one bug
and runs ``verify --fail-fast`` against it end to end.
"""

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "library_mutants.py"
spec = importlib.util.spec_from_file_location("library_mutants", SCRIPT)
library_mutants = importlib.util.module_from_spec(spec)
spec.loader.exec_module(library_mutants)


@pytest.mark.parametrize("mutation", library_mutants.MUTATIONS, ids=lambda m: m.name)
def test_each_planted_bug_applies_to_the_current_source(mutation):
    text = (library_mutants.PACKAGE / mutation.module).read_text()
    assert text.count(mutation.find) == 1, mutation.name
    assert mutation.replace != mutation.find


def test_mutation_names_are_unique():
    names = [m.name for m in library_mutants.MUTATIONS]
    assert len(set(names)) == len(names)


def test_committed_report_covers_every_mutation_and_catches_all():
    report = json.loads((SCRIPT.parents[1] / "docs" / "verify_library_mutants.json").read_text())
    assert [o["name"] for o in report] == [m.name for m in library_mutants.MUTATIONS]
    assert all(o["caught"] for o in report), [o["name"] for o in report if not o["caught"]]


@pytest.mark.slow
def test_verify_fails_on_a_planted_bug(tmp_path):
    by_name = {m.name: m for m in library_mutants.MUTATIONS}
    outcome = library_mutants.run_mutation(by_name["gd-half-step"], tmp_path)
    assert outcome.caught and outcome.exit_code == 1, outcome
