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


def test_verify_list(capsys):
    assert main(["verify", "--list"]) == 0
    assert "balanced-factorization" in capsys.readouterr().out


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
