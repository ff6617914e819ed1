"""The README stays true: its API example runs, and its commands are the CI's."""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_api_example_runs(capsys):
    block = re.search(r"```python\n(.*?)```", README.read_text(), re.S).group(1)
    exec(compile(block, "README.md", "exec"), {})
    lines = capsys.readouterr().out.strip().splitlines()
    assert float(lines[0]) < 1e-12  # the autodiff velocity equals −P_W ∇ℓ
    assert lines[-1] == "(4, 2, 1, 3, 11)"


def test_readme_gives_exactly_the_two_setup_commands_and_ci_runs_the_test_one():
    text = README.read_text()
    commands = re.findall(r"```bash\n(.*?)\n```", text, re.S)
    assert commands[:2] == ["pip install -e . && overparam-jax verify",
                            "pip install -e '.[dev]' && python -m pytest"]
    ci = (README.parent / ".ci" / "run").read_text()
    assert "\npip install -e '.[dev]' && python -m pytest\n" in ci
