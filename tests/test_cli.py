"""The `overparam-jax` command line: output, exit codes, one-line user errors."""

import json
import subprocess
import sys

import pytest

from overparam_jax.cli import main


def test_verify_only_writes_json_with_metadata(tmp_path, capsys):
    out = tmp_path / "v.json"
    assert main(["verify", "--only", "layer-gradients", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "layer-gradients" in printed and "PASS" in printed and "1/1 checks passed" in printed
    doc = json.loads(out.read_text())
    assert doc["passed"] is True and doc["checks"][0]["name"] == "layer-gradients"
    assert doc["metadata"]["jax"] and doc["config"] == {"full": False, "seed": 0}


def test_verify_list_says_claim_regime_threshold_and_mutants(capsys):
    assert main(["verify", "--list"]) == 0
    out = capsys.readouterr().out
    assert "balanced-factorization  [§7]  pass if measured <= 1.00e-12" in out
    assert "\n  regime:  " in out and "\n  mutants: unbalanced (exact product" in out


def test_verify_self_test_prints_the_table_and_the_score(tmp_path, capsys):
    out = tmp_path / "self_test.json"
    assert main(["verify", "--self-test", "--only", "layer-gradients", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "layer-gradients" in printed and "first-layer-1pc" in printed and "caught" in printed
    assert "mutation score 100.0% (2/2 mutants caught by 1 checks)" in printed
    doc = json.loads(out.read_text())
    assert doc["ok"] is True and doc["mutation_score"] == 1.0
    assert [m["mutant"] for m in doc["mutants"]] == ["first-layer-1pc", "last-layer-sign"]


def test_verify_self_test_exits_1_when_a_mutant_is_missed(monkeypatch, capsys):
    """A check that passes its own mutant: the table says MISSED and the exit status is 1."""
    import dataclasses

    from overparam_jax.networks import layer_gradients
    from overparam_jax.verify import mutant, registry

    harmless = mutant("harmless", "the library's own formula", closed_form=layer_gradients)
    check = dataclasses.replace(registry.get_check("layer-gradients"), mutants=(harmless,))
    monkeypatch.setitem(registry._REGISTRY, "layer-gradients", check)
    assert main(["verify", "--self-test", "--only", "layer-gradients"]) == 1
    assert "MISSED" in capsys.readouterr().out


def test_verify_fail_fast_stops_at_the_first_failure(monkeypatch, capsys):
    import dataclasses

    from overparam_jax.verify import registry

    broken = dataclasses.replace(registry.get_check("layer-gradients"), threshold=1e-30)
    monkeypatch.setitem(registry._REGISTRY, "layer-gradients", broken)
    assert main(["verify", "--only", "layer-gradients", "--only", "balanced-factorization", "--fail-fast"]) == 1
    out = capsys.readouterr().out
    assert "layer-gradients" in out and "balanced-factorization" not in out.split("\n\n")[0]


def test_unknown_check_is_one_line_exit_2(capsys):
    assert main(["verify", "--only", "no-such-check"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("overparam-jax: error: Unknown check 'no-such-check'")


def test_unwritable_json_path_is_one_line_exit_2(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["verify", "--only", "layer-gradients", "--json", str(blocker / "v.json")]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith("overparam-jax: error: cannot write")


def test_console_script_runs_and_bad_flag_exits_nonzero():
    ok = subprocess.run(
        [sys.executable, "-m", "overparam_jax.cli", "verify", "--only", "balanced-factorization"],
        capture_output=True, text=True, timeout=300,
    )
    assert ok.returncode == 0, ok.stderr
    assert "1/1 checks passed" in ok.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "overparam_jax.cli", "verify", "--bogus"],
        capture_output=True, text=True, timeout=300,
    )
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
